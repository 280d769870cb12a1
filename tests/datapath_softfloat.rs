//! Every FP32 (and BF16/FP16) rounding step of the datapath model checked against Berkeley
//! SoftFloat (through `softfloat-wrapper`), an independent implementation of IEEE 754.

use mxsim::datapath::float::{add_exact, fma_exact, round_parts, FloatFormat, Fp, RoundMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use softfloat_wrapper::{Float, RoundingMode, F32, F64};

fn sf_mode(m: RoundMode) -> RoundingMode {
    match m {
        RoundMode::Rne => RoundingMode::TiesToEven,
        RoundMode::Rtz => RoundingMode::TowardZero,
        RoundMode::Rdn => RoundingMode::TowardNegative,
        RoundMode::Rup => RoundingMode::TowardPositive,
        RoundMode::Rmm => RoundingMode::TiesToAway,
    }
}

/// Edge-case FP32 bit patterns: zeros, subnormals, normals near 1, the extremes, Inf, NaN.
fn edge_f32() -> Vec<u32> {
    let mut v = vec![
        0,
        1,
        2,
        3,
        0x7F_FFFF,
        0x80_0000,
        0x80_0001,
        0x3F80_0000,
        0x3F80_0001,
        0x3FFF_FFFF,
        0x4000_0000,
        0x7F7F_FFFF,
        0x7F7F_FFFE,
        0x7F00_0000,
        0x7F80_0000,
        0x7FC0_0000,
        0x3300_0000,
        0x3380_0000,
        0x3400_0000,
        0x4B80_0000,
        0x4B7F_FFFF,
        0x0080_0000,
        0x0100_0000,
    ];
    let neg: Vec<u32> = v.iter().map(|x| x | 0x8000_0000).collect();
    v.extend(neg);
    v
}

fn random_f32(rng: &mut ChaCha8Rng) -> u32 {
    match rng.gen_range(0..4) {
        0 => rng.gen(),
        // close exponents: cancellation and carries
        1 => (rng.gen::<u32>() & 0x807F_FFFF) | (rng.gen_range(120u32..=134) << 23),
        // tiny values: subnormal results
        2 => (rng.gen::<u32>() & 0x807F_FFFF) | (rng.gen_range(0u32..=3) << 23),
        _ => (rng.gen::<u32>() & 0x807F_FFFF) | (rng.gen_range(250u32..=254) << 23),
    }
}

fn same(ours: u32, theirs: u32) -> bool {
    let nan = |x: u32| (x & 0x7F80_0000) == 0x7F80_0000 && (x & 0x7F_FFFF) != 0;
    if nan(theirs) {
        nan(ours)
    } else {
        ours == theirs
    }
}

/// `add_exact` (an exact sum of two FP32 values rounded once) equals SoftFloat's `f32_add` in
/// every rounding mode, on the cross product of edge cases and on random pairs.
#[test]
fn fp32_add_matches_softfloat_all_modes() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let edges = edge_f32();
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for &x in &edges {
        for &y in &edges {
            pairs.push((x, y));
        }
    }
    for _ in 0..200_000 {
        pairs.push((random_f32(&mut rng), random_f32(&mut rng)));
    }
    for mode in RoundMode::ALL {
        for &(x, y) in &pairs {
            let ours = add_exact(
                Fp::from_f32_bits(x),
                Fp::from_f32_bits(y),
                FloatFormat::FP32,
                mode,
                false,
            )
            .to_f32_bits(0x7FC0_0000);
            let theirs = F32::from_bits(x)
                .add(F32::from_bits(y), sf_mode(mode))
                .to_bits();
            assert!(
                same(ours, theirs),
                "{mode}: {x:#010x} + {y:#010x}: ours {ours:#010x}, softfloat {theirs:#010x}"
            );
        }
    }
}

/// `fma_exact` (the epilogue `alpha * P + C`) equals SoftFloat's `f32_mulAdd` in every mode.
#[test]
fn fp32_fma_matches_softfloat_all_modes() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for mode in RoundMode::ALL {
        for _ in 0..100_000 {
            let (a, b, c) = (
                random_f32(&mut rng),
                random_f32(&mut rng),
                random_f32(&mut rng),
            );
            let ours = fma_exact(
                Fp::from_f32_bits(a),
                Fp::from_f32_bits(b),
                Fp::from_f32_bits(c),
                FloatFormat::FP32,
                mode,
                false,
            )
            .to_f32_bits(0x7FC0_0000);
            let theirs = F32::from_bits(a)
                .fused_mul_add(F32::from_bits(b), F32::from_bits(c), sf_mode(mode))
                .to_bits();
            assert!(
                same(ours, theirs),
                "{mode}: fma({a:#010x}, {b:#010x}, {c:#010x}): ours {ours:#010x}, softfloat {theirs:#010x}"
            );
        }
    }
}

/// Rounding an arbitrary 53-bit significand (an f64's exact parts) to FP32 with `round_parts`
/// equals SoftFloat's `f64_to_f32` in every mode, including overflow and subnormal results.
#[test]
fn round_to_fp32_matches_softfloat_f64_to_f32() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for mode in RoundMode::ALL {
        for i in 0..200_000 {
            let e = match i % 3 {
                0 => rng.gen_range(1023 - 160..=1023 + 130),
                1 => rng.gen_range(1023 - 152..=1023 - 120),
                _ => rng.gen_range(1023 + 120..=1023 + 129),
            } as u64;
            let bits = (rng.gen::<u64>() & 0x800F_FFFF_FFFF_FFFF) | e << 52;
            let neg = bits >> 63 == 1;
            let sig = (bits & ((1 << 52) - 1)) | 1 << 52;
            let exp = e as i32 - 1075;
            let ours = round_parts(neg, sig as u128, exp, false, FloatFormat::FP32, mode, false)
                .to_f32_bits(0x7FC0_0000);
            let theirs = F64::from_bits(bits).to_f32(sf_mode(mode)).to_bits();
            assert_eq!(ours, theirs, "{mode}: f64 {bits:#018x}");
        }
    }
}

/// Rounding FP32 values into FP16 (every mode) equals SoftFloat's `f32_to_f16`, and into BF16
/// (RNE) equals the `half` crate, for every FP32 exponent and random significands.
#[test]
fn round_to_fp16_bf16_matches_softfloat() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for mode in RoundMode::ALL {
        for e in 0u32..=254 {
            for _ in 0..64 {
                let bits = (rng.gen::<u32>() & 0x807F_FFFF) | e << 23;
                let x = Fp::from_f32_bits(bits);
                let r16 = mxsim::datapath::float::round_fp(x, FloatFormat::FP16, mode, false);
                let s16 = F32::from_bits(bits).to_f16(sf_mode(mode));
                let s16f = s16.to_f32(RoundingMode::TiesToEven).to_bits();
                assert_eq!(
                    r16.to_f32_bits(0x7FC0_0000),
                    s16f,
                    "{mode} fp16 of {bits:#010x}"
                );
                if mode == RoundMode::Rne {
                    // softfloat-wrapper's BF16 conversion truncates and is not SoftFloat code,
                    // so BF16 RNE is checked against the `half` crate instead.
                    let rb = mxsim::datapath::float::round_fp(x, FloatFormat::BF16, mode, false);
                    let hb = half::bf16::from_f32(f32::from_bits(bits))
                        .to_f32()
                        .to_bits();
                    assert_eq!(rb.to_f32_bits(0x7FC0_0000), hb, "bf16 of {bits:#010x}");
                }
            }
        }
    }
}
