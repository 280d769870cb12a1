//! Synthetic layers for the PTQ tests: correlated activations with outlier channels and
//! weights with outlier input columns, from a fixed seed.
#![allow(dead_code)]

use mxsim::ptq::Matrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Standard normal by Box-Muller.
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen_range(1e-12..1.0);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A random matrix of independent normals times `scale`.
pub fn randn(rows: usize, cols: usize, scale: f64, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = (0..rows * cols).map(|_| normal(&mut rng) * scale).collect();
    Matrix::from_vec(rows, cols, d).unwrap()
}

/// A synthetic layer: activations `tokens x n` that are correlated across channels (a random
/// low-rank mix plus noise) with `outliers` channels amplified by `outlier_gain`, and a weight
/// `out x n` with a few larger input columns.
pub fn layer(
    tokens: usize,
    n: usize,
    out: usize,
    outlier_gain: f64,
    seed: u64,
) -> (Matrix, Matrix) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rank = n / 4;
    let z = randn(tokens, rank, 1.0, seed + 1);
    let mix = randn(rank, n, 1.0 / (rank as f64).sqrt(), seed + 2);
    let mut x = z.matmul(&mix);
    let noise = randn(tokens, n, 0.3, seed + 3);
    for (a, b) in x.data.iter_mut().zip(&noise.data) {
        *a += b;
    }
    let outliers: Vec<usize> = (0..4).map(|_| rng.gen_range(0..n)).collect();
    for r in 0..tokens {
        for &c in &outliers {
            *x.at_mut(r, c) *= outlier_gain;
        }
    }
    let mut w = randn(out, n, 1.0 / (n as f64).sqrt(), seed + 4);
    for _ in 0..3 {
        let c = rng.gen_range(0..n);
        for r in 0..out {
            *w.at_mut(r, c) *= 4.0;
        }
    }
    (x, w)
}
