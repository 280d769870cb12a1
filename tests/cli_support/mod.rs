//! Helpers for the tests that run the `mxsim` binary on generated `.npy` inputs.
#![allow(dead_code)]

use std::process::Command;

/// Run `mxsim` with `args`: (exit code, stdout, stderr).
pub fn mxsim(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// `n` deterministic pseudo-random values in [-4, 4) (an LCG, seeded).
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 8.0
        })
        .collect()
}
