//! Hand-derived worked examples of each datapath preset. Each test's comment derives the
//! expected bits from the preset's documented rules (docs/datapath.md), not from the code.

// The expected values are exact binary fractions, written out in full on purpose.
#![allow(clippy::excessive_precision)]

use mxsim::datapath::{dot_rows, gemm_stats, DatapathConfig, RoundMode};
use mxsim::mx::{MxTensor, Scheme};

fn row(scheme: Scheme, codes: &[u8], scales: &[u8]) -> MxTensor {
    MxTensor {
        scheme,
        block_size: scheme.default_block(),
        rows: 1,
        cols: codes.len(),
        codes: codes.to_vec(),
        scales: scales.to_vec(),
        global_scale: 1.0,
        clipped_blocks: 0,
    }
}

fn run(preset: &DatapathConfig, a: &MxTensor, b: &MxTensor, c: f32) -> f32 {
    dot_rows(a, 0, b, 0, c, preset).unwrap()
}

fn p(name: &str) -> DatapathConfig {
    DatapathConfig::preset(name).unwrap()
}

// E4M3 codes: 1.0 = 0x38, 0.5 = 0x30, 256 = 0x78 (exponent field 15, 2^(15-7)), 2^-9 = 0x01
// (smallest subnormal), 2^-6 = 0x08 (smallest normal), 2^-4 = 0x18, 32 = 0x60, 4.0 = 0x48.
// E8M0 scale 127 = 1.0, 0xFF = NaN.
const E4_1: u8 = 0x38;
const E4_HALF: u8 = 0x30;
const E4_256: u8 = 0x78;
const E4_TINY: u8 = 0x01;

/// Blackwell mxf8f6f4, truncation at the alignment boundary. Products: 256*256 = 2^16 with
/// exponent 8 + 8 = 16, and 31 products 1.0 * 2^-9 = 2^-9 (exponents 0 + emin(-6) = -6,
/// significand 1.0 * 0.001b). Window lsb = 16 - 25 = -9, so each 2^-9 sits exactly on the
/// boundary and is kept: sum = 2^16 + 31 * 2^-9 = 2^16 + 7.75 * 2^-7; FP32 ulp at 2^16 is 2^-7,
/// RTZ gives 2^16 + 7 * 2^-7 = 65536.0546875. With 0.5 instead of 1.0 the small products are
/// 2^-10 (exponent -7), one bit below the window: all truncated, result exactly 65536.
/// The exact preset rounds 2^16 + 31 * 2^-9 to nearest: 7.75 ulp -> 8 ulp = 65536.0625, and
/// 2^16 + 31 * 2^-10 (3.875 ulp) -> 4 ulp = 65536.03125.
#[test]
fn blackwell_f8_truncation_at_alignment_boundary() {
    let bw = p("blackwell-mxf8f6f4");
    let ex = p("exact");
    let mut a = vec![E4_1; 32];
    a[0] = E4_256;
    let mut b = vec![E4_TINY; 32];
    b[0] = E4_256;
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127]),
        row(Scheme::Mxfp8E4m3, &b, &[127]),
    );
    assert_eq!(run(&bw, &ta, &tb, 0.0), 65536.0546875);
    assert_eq!(run(&ex, &ta, &tb, 0.0), 65536.0625);
    let mut a2 = vec![E4_HALF; 32];
    a2[0] = E4_256;
    let ta2 = row(Scheme::Mxfp8E4m3, &a2, &[127]);
    assert_eq!(run(&bw, &ta2, &tb, 0.0), 65536.0);
    assert_eq!(run(&ex, &ta2, &tb, 0.0), 65536.03125);
}

/// Blackwell mxf8f6f4, cancellation: 256*256 - 256*256 + 2^-9*2^-9. The largest exponent is 16,
/// the window lsb -9; the product 2^-18 (exponent -12) is truncated to 0, the big products
/// cancel: the result is +0 (an exactly zero sum is +0). The exact preset returns 2^-18.
#[test]
fn blackwell_f8_cancellation_loses_small_term() {
    let bw = p("blackwell-mxf8f6f4");
    let mut a = vec![0u8; 32];
    let mut b = vec![0u8; 32];
    a[0] = E4_256;
    b[0] = E4_256;
    a[1] = E4_256;
    b[1] = E4_256 | 0x80; // -256
    a[2] = E4_TINY;
    b[2] = E4_TINY;
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127]),
        row(Scheme::Mxfp8E4m3, &b, &[127]),
    );
    assert_eq!(run(&bw, &ta, &tb, 0.0).to_bits(), 0);
    assert_eq!(run(&p("exact"), &ta, &tb, 0.0), 2f32.powi(-18));
}

/// Blackwell mxf8f6f4, accumulator larger than all products: C = 2^30 joins the alignment, so
/// the window lsb is 30 - 25 = 5; the 32 products 4 * 4 = 16 = 2^4 are each truncated to 0 and
/// the result is C unchanged. Exactly, 2^30 + 512 is representable (ulp 128): 1073742336.
#[test]
fn blackwell_f8_accumulator_dominates() {
    let bw = p("blackwell-mxf8f6f4");
    let a = vec![0x48u8; 32];
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127]),
        row(Scheme::Mxfp8E4m3, &a, &[127]),
    );
    let c = 2f32.powi(30);
    assert_eq!(run(&bw, &ta, &tb, c), c);
    assert_eq!(run(&p("exact"), &ta, &tb, c), 1073742336.0);
}

/// NaN scale: an E8M0 scale of 0xFF makes the result NaN, written 0x7FFFFFFF by the Blackwell
/// and Hopper presets (MMA-Sim) and 0x7FC00000 by MXDOTP and the exact preset.
#[test]
fn nan_scale_gives_canonical_nan() {
    let a = vec![E4_1; 32];
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[0xFF]),
        row(Scheme::Mxfp8E4m3, &a, &[127]),
    );
    for (name, bits) in [
        ("blackwell-mxf8f6f4", 0x7FFF_FFFFu32),
        ("hopper-fp8", 0x7FFF_FFFF),
        ("mxdotp", 0x7FC0_0000),
        ("exact", 0x7FC0_0000),
        ("ocp-fp32", 0x7FC0_0000),
    ] {
        assert_eq!(run(&p(name), &ta, &tb, 1.0).to_bits(), bits, "{name}");
    }
}

/// Overflow: C = FP32 max, one product 448 * 448 with both scales 2^127 (code 254), i.e.
/// 200704 * 2^254, far above FP32's range. Round-toward-zero (Blackwell) gives the largest
/// finite value 0x7F7FFFFF (IEEE 754 RTZ overflow rule); round-to-nearest (exact) gives +Inf.
#[test]
fn overflow_saturates_under_rtz_and_is_inf_under_rne() {
    let mut a = vec![0u8; 32];
    a[0] = 0x7E; // 448
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[254]),
        row(Scheme::Mxfp8E4m3, &a, &[254]),
    );
    let c = f32::MAX;
    assert_eq!(
        run(&p("blackwell-mxf8f6f4"), &ta, &tb, c).to_bits(),
        0x7F7F_FFFF
    );
    assert_eq!(run(&p("exact"), &ta, &tb, c), f32::INFINITY);
}

/// Blackwell mxf4nvf4 (NVFP4, UE4M3 scales per 16, K = 64, groups of 16). Group 1: 16 products
/// 6 * 6 = 576 times scales 448 * 448 (UE4M3 0x7E, exponent 8 each: term exponent 16).
/// Group 2: the same with -6 (cancels group 1 exactly). Group 3: one product 0.5 * 0.5 times
/// scales 2^-9 * 2^-9 (UE4M3 0x01, exponent emin = -6 each): 2^-20 with term exponent -12.
/// Window lsb = 16 - 35 = -19: 2^-20 is truncated; the result is +0. The exact preset gives
/// 2^-20.
#[test]
fn blackwell_f4_group_truncation_after_cancellation() {
    let bw = p("blackwell-mxf4nvf4");
    let mut a = vec![0u8; 64];
    let mut b = vec![0u8; 64];
    for i in 0..16 {
        a[i] = 0x7; // 6
        b[i] = 0x7;
        a[16 + i] = 0x7;
        b[16 + i] = 0xF; // -6
    }
    a[32] = 0x1; // 0.5
    b[32] = 0x1;
    let sa = [0x7E, 0x7E, 0x01, 0x01];
    let (ta, tb) = (row(Scheme::Nvfp4, &a, &sa), row(Scheme::Nvfp4, &b, &sa));
    assert_eq!(run(&bw, &ta, &tb, 0.0).to_bits(), 0);
    assert_eq!(run(&p("exact"), &ta, &tb, 0.0), 2f32.powi(-20));
}

/// MXDOTP, accumulator far above the products: with round-up, acc = 2^60 and 8 products
/// 1 * 1 = 8 (largest product exponent 0): 60 - 0 > 36, so the result is the accumulator
/// unchanged, 2^60 (correct rounding up would give 2^60 + 2^37). With acc = 2^30 (within
/// reach) the exact sum 2^30 + 8 rounds up to the next FP32, 2^30 + 128.
#[test]
fn mxdotp_far_accumulator_unchanged() {
    let mut cfg = p("mxdotp");
    cfg.acc_rounding = RoundMode::Rup;
    cfg.output_rounding = RoundMode::Rup;
    let a = vec![E4_1; 8];
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127]),
        row(Scheme::Mxfp8E4m3, &a, &[127]),
    );
    assert_eq!(run(&cfg, &ta, &tb, 2f32.powi(60)), 2f32.powi(60));
    assert_eq!(run(&cfg, &ta, &tb, 2f32.powi(30)), 1073741952.0);
    let mut ex = p("exact");
    ex.acc_rounding = RoundMode::Rup;
    assert_eq!(
        run(&ex, &ta, &tb, 2f32.powi(60)),
        f32::from_bits(2f32.powi(60).to_bits() + 1)
    );
}

/// MXDOTP sticky jamming (E5M2, RTZ): X = 57344 * 57344 = 49 * 2^26 (exponent 15 + 15 = 30),
/// +2^-16 * 2^-16 = 2^-32 and -(2^-16 * 2^11) = -2^-5. Window lsb = 30 - 34 = -4: both small
/// products lie below it and are jammed to +-2^-4, which cancel: the sum is X, representable,
/// so RTZ gives X = 3288334336. The exact sum X - 2^-5 + 2^-32 is just below X, so the exact
/// datapath under RTZ gives the FP32 below X: X - 256 = 3288334080.
#[test]
fn mxdotp_sticky_jamming_differs_from_exact_rtz() {
    let mut cfg = p("mxdotp");
    cfg.acc_rounding = RoundMode::Rtz;
    cfg.output_rounding = RoundMode::Rtz;
    let mut a = vec![0u8; 8];
    let mut b = vec![0u8; 8];
    a[0] = 0x7B; // 57344
    b[0] = 0x7B;
    a[1] = 0x01; // 2^-16
    b[1] = 0x01;
    a[2] = 0x01;
    b[2] = 0xE8; // -2048
    let (ta, tb) = (
        row(Scheme::Mxfp8E5m2, &a, &[127]),
        row(Scheme::Mxfp8E5m2, &b, &[127]),
    );
    assert_eq!(run(&cfg, &ta, &tb, 0.0), 3288334336.0);
    let mut ex = p("exact");
    ex.acc_rounding = RoundMode::Rtz;
    ex.output_rounding = RoundMode::Rtz;
    assert_eq!(run(&ex, &ta, &tb, 0.0), 3288334080.0);
}

/// MXDOTP: an exactly zero result is +0 even under round-down (IEEE would give -0 for
/// 1 - 1); MXINT8 elements are plain integers: 127 * 127 = 16129 (the OCP value is
/// 16129 * 2^-12 = 3.937744140625); a 32-block of FP6 takes 3 operations (10/11/11).
#[test]
fn mxdotp_zero_sign_int8_and_fp6_split() {
    let mut cfg = p("mxdotp");
    cfg.acc_rounding = RoundMode::Rdn;
    let a = [E4_1, E4_1, 0, 0, 0, 0, 0, 0];
    let b = [E4_1, E4_1 | 0x80, 0, 0, 0, 0, 0, 0];
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127]),
        row(Scheme::Mxfp8E4m3, &b, &[127]),
    );
    assert_eq!(run(&cfg, &ta, &tb, 0.0).to_bits(), 0);
    let mut ex = p("exact");
    ex.acc_rounding = RoundMode::Rdn;
    ex.output_rounding = RoundMode::Rdn;
    assert_eq!(run(&ex, &ta, &tb, 0.0).to_bits(), 0x8000_0000);
    let i = [127u8, 0, 0, 0, 0, 0, 0, 0];
    let (ti, tj) = (
        row(Scheme::Mxint8, &i, &[127]),
        row(Scheme::Mxint8, &i, &[127]),
    );
    assert_eq!(run(&p("mxdotp"), &ti, &tj, 0.0), 16129.0);
    assert_eq!(run(&p("exact"), &ti, &tj, 0.0), 3.937744140625);
    let s = gemm_stats(
        &p("mxdotp"),
        (Scheme::Mxfp6E2m3, 32),
        (Scheme::Mxfp6E2m3, 32),
        1,
        1,
        64,
    )
    .unwrap();
    assert_eq!(s.instructions_per_output, 6);
    let s = gemm_stats(
        &p("mxdotp"),
        (Scheme::Mxfp4, 32),
        (Scheme::Mxfp4, 32),
        1,
        1,
        64,
    )
    .unwrap();
    assert_eq!(s.instructions_per_output, 4);
}

/// Hopper FP8: 1*1 + 2^-6*2^-6 + 2^-9*2^-6. Largest exponent 0, 13 fraction bits: window lsb
/// -13. 2^-12 is kept, 2^-15 truncated: e8m13 value 1 + 2^-12, output 1.000244140625. The
/// exact preset: 1 + 2^-12 + 2^-15 = 1.000274658203125.
#[test]
fn hopper_13_bit_window() {
    let mut a = vec![0u8; 32];
    let mut b = vec![0u8; 32];
    a[0] = E4_1;
    b[0] = E4_1;
    a[1] = 0x08;
    b[1] = 0x08;
    a[2] = E4_TINY;
    b[2] = 0x08;
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127]),
        row(Scheme::Mxfp8E4m3, &b, &[127]),
    );
    assert_eq!(run(&p("hopper-fp8"), &ta, &tb, 0.0), 1.000244140625);
    assert_eq!(run(&p("exact"), &ta, &tb, 0.0), 1.000274658203125);
}

/// Hopper FP8 promotion every 128 elements. K = 256: element 0 is 32 * 32 = 1024 (exponent
/// 10), elements 1..255 are 1 * 2^-4. Instructions 1-4 (elements 0..127): the inner e8m13
/// accumulator holds 1024 (exponent 10, window lsb -3), so every 2^-4 product is truncated:
/// 1024. Promotion: outer = 0 + 1024. Instructions 5-8 start from 0: 32 * 2^-4 = 2 per
/// instruction, all kept: 8. Promotion: outer = 1032. Without promotion the result stays 1024;
/// the exact value is 1024 + 255/16 = 1039.9375.
#[test]
fn hopper_promotion_every_128() {
    let mut a = vec![E4_1; 256];
    let mut b = vec![0x18u8; 256];
    a[0] = 0x60;
    b[0] = 0x60;
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127; 8]),
        row(Scheme::Mxfp8E4m3, &b, &[127; 8]),
    );
    assert_eq!(run(&p("hopper-fp8"), &ta, &tb, 0.0), 1032.0);
    let mut nopromo = p("hopper-fp8");
    nopromo.promote_every = 0;
    assert_eq!(run(&nopromo, &ta, &tb, 0.0), 1024.0);
    assert_eq!(run(&p("exact"), &ta, &tb, 0.0), 1039.9375);
}

/// OCP FP32 (block dots rounded to FP32): block 1 = 256*256 + 2^-9*1 = 2^16 + 2^-9, which
/// rounds to 2^16 (a quarter ulp); block 2 = -256*256. FP32 sum: +0. Exact: 2^-9.
#[test]
fn ocp_fp32_rounds_each_block() {
    let mut a = vec![0u8; 64];
    let mut b = vec![0u8; 64];
    a[0] = E4_256;
    b[0] = E4_256;
    a[1] = E4_TINY;
    b[1] = E4_1;
    a[32] = E4_256;
    b[32] = E4_256 | 0x80;
    let (ta, tb) = (
        row(Scheme::Mxfp8E4m3, &a, &[127, 127]),
        row(Scheme::Mxfp8E4m3, &b, &[127, 127]),
    );
    assert_eq!(run(&p("ocp-fp32"), &ta, &tb, 0.0).to_bits(), 0);
    assert_eq!(run(&p("exact"), &ta, &tb, 0.0), 2f32.powi(-9));
}
