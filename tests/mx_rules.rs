//! Worked examples of every scale rule and block-quantization policy, derived by hand (the
//! derivation is in each comment) from OCP MX v1.0 section 6.3, REFERENCE section 3 and
//! docs/formats.md. FP4 (E2M1) values: 0, 0.5, 1, 1.5, 2, 3, 4, 6 (codes 0..7); emax 2.

use mxsim::mx::{quantize, quantize_f64, MxConfig, NvScaleApply, ScaleRule, Scheme, ZeroBlock};

fn block(vals: &[f32], n: usize) -> Vec<f32> {
    let mut v = vals.to_vec();
    v.resize(n, 0.0);
    v
}

fn q(scheme: Scheme, rule: ScaleRule, v: &[f32]) -> mxsim::mx::MxTensor {
    quantize(v, 1, v.len(), &MxConfig::new(scheme).with_rule(rule)).unwrap()
}

/// amax = 7. floor: floor(log2 7) = 2, e = 2 - 2 = 0, X = 1: 7 saturates to 6 (clipped).
/// ceil: 7 is not a power of two, e = 1, X = 2: 7/2 = 3.5 is the tie between 3 (code 5, odd)
/// and 4 (code 6, even): RNE gives 4, i.e. 8. even: significand 1.75 rounded to 1 mantissa bit
/// with ties up is 2.0, carrying into the exponent: e = 3 - 2 = 1, same as ceil: 8.
/// rceil: smallest e with 6 * 2^e >= 7 is 1: 8.
#[test]
fn fp4_amax_7_under_each_rule() {
    let v = block(&[7.0, 1.0], 32);
    let f = q(Scheme::Mxfp4, ScaleRule::Floor, &v);
    assert_eq!(
        (f.scales[0], f.value(0, 0), f.clipped_blocks),
        (127, 6.0, 1)
    );
    for rule in [ScaleRule::Ceil, ScaleRule::Even, ScaleRule::Rceil] {
        let t = q(Scheme::Mxfp4, rule, &v);
        assert_eq!(
            (t.scales[0], t.value(0, 0), t.clipped_blocks),
            (128, 8.0, 0),
            "{rule}"
        );
        // 1.0 / 2 = 0.5 exactly: stays 1.0
        assert_eq!(t.value(0, 1), 1.0, "{rule}");
    }
}

/// amax = 6.5: even: significand 1.625 * 2 = 3.25, + 0.5 = 3.75, floor 3 < 4: no carry, so
/// e = 2 - 2 = 0 (X = 1) and 6.5 saturates to 6 (clipped), unlike ceil/rceil (X = 2, 6.5/2 =
/// 3.25 -> 3 -> 6, not clipped). amax = 4 (a power of two): ceil = floor = 0.
#[test]
fn even_rule_and_power_of_two() {
    let t = q(Scheme::Mxfp4, ScaleRule::Even, &block(&[6.5], 32));
    assert_eq!(
        (t.scales[0], t.value(0, 0), t.clipped_blocks),
        (127, 6.0, 1)
    );
    let t = q(Scheme::Mxfp4, ScaleRule::Rceil, &block(&[6.5], 32));
    assert_eq!(
        (t.scales[0], t.value(0, 0), t.clipped_blocks),
        (128, 6.0, 0)
    );
    let t = q(Scheme::Mxfp4, ScaleRule::Ceil, &block(&[4.0], 32));
    assert_eq!((t.scales[0], t.value(0, 0)), (127, 4.0));
}

/// amax = 13: floor: floor(log2 13) = 3, e = 1, 13/2 = 6.5 -> 6 (clipped): 12. rceil: 6*2 = 12
/// < 13, 6*4 = 24 >= 13, e = 2: 13/4 = 3.25 -> 3: 12, not clipped. amax = 12: rceil e = 1
/// (6*2 >= 12), 12/2 = 6 exact.
#[test]
fn rceil_vs_floor_13() {
    let f = q(Scheme::Mxfp4, ScaleRule::Floor, &block(&[13.0], 32));
    assert_eq!(
        (f.scales[0], f.value(0, 0), f.clipped_blocks),
        (128, 12.0, 1)
    );
    let r = q(Scheme::Mxfp4, ScaleRule::Rceil, &block(&[13.0], 32));
    assert_eq!(
        (r.scales[0], r.value(0, 0), r.clipped_blocks),
        (129, 12.0, 0)
    );
    let r = q(Scheme::Mxfp4, ScaleRule::Rceil, &block(&[12.0], 32));
    assert_eq!((r.scales[0], r.value(0, 0)), (128, 12.0));
}

/// MXFP8 E4M3 (emax 8): 957 in a block with max 960. floor: floor(log2 960) = 9, e = 1,
/// 957/2 = 478.5 > 448 saturates: 896. rceil: 448*2 = 896 < 960 <= 448*4, e = 2: 957/4 =
/// 239.25, E4M3 step in [128, 256) is 16: neighbours 224 and 240, nearer 240: 960.
#[test]
fn e4m3_957() {
    let v = block(&[960.0, 957.0], 32);
    let f = q(Scheme::Mxfp8E4m3, ScaleRule::Floor, &v);
    assert_eq!((f.scales[0], f.value(0, 1)), (128, 896.0));
    let r = q(Scheme::Mxfp8E4m3, ScaleRule::Rceil, &v);
    assert_eq!((r.scales[0], r.value(0, 1)), (129, 960.0));
}

/// Pre-scale 3/4 on amax 7: X from the unscaled amax with floor, X = 1; 0.75 * 7 = 5.25 -> 6
/// (nearer than 4), times 4/3 = 8; global scale 1/0.75. 1.0 -> 0.75 -> tie between 0.5 (code
/// 1, odd) and 1 (code 2, even) -> 1, times 4/3.
#[test]
fn prescale_three_quarters() {
    let t = q(
        Scheme::Mxfp4,
        ScaleRule::Prescale(0.75),
        &block(&[7.0, 1.0], 32),
    );
    assert_eq!(t.scales[0], 127);
    assert_eq!(t.global_scale, 1.0 / 0.75);
    assert_eq!(t.value(0, 0), 8.0);
    assert_eq!(t.value(0, 1), 4.0 / 3.0);
}

/// MSE search on [7.2, 1.0]: candidates e = 0 (floor), -1, 1. e = 0: 7.2 -> 6 (err 1.44),
/// 1 exact: SSE 1.44. e = -1 (X = 0.5): 14.4 -> 6 -> 3 (err 17.64): worse. e = 1 (X = 2): 3.6
/// -> 4 -> 8 (err 0.64), 0.5 exact -> 1: SSE 0.64. Best: e = 1, code 128, 7.2 -> 8.
/// On [7.0, 1.0] e = 0 and e = 1 tie (SSE 1 each): the first candidate (floor) wins.
#[test]
fn mse_search() {
    let t = q(
        Scheme::Mxfp4,
        ScaleRule::Mse { alphas: 0 },
        &block(&[7.2, 1.0], 32),
    );
    assert_eq!((t.scales[0], t.value(0, 0), t.value(0, 1)), (128, 8.0, 1.0));
    let t = q(
        Scheme::Mxfp4,
        ScaleRule::Mse { alphas: 0 },
        &block(&[7.0, 1.0], 32),
    );
    assert_eq!((t.scales[0], t.value(0, 0)), (127, 6.0));
}

/// Four-over-six with E8M0 on [5, 0.5]: amax onto 6: smallest e with 6*2^e >= 5 is 0; onto 4:
/// smallest e with 4*2^e >= 5 is 1. e = 0: 5 is the tie 4 (code 6, even) / 6: 4 (err 1),
/// 0.5 exact: SSE 1. e = 1: 2.5 -> tie 2 (code 4, even) / 3 -> 2 -> 4 (err 1), 0.25 -> tie 0
/// / 0.5 -> 0 (err 0.25): SSE 1.25. e = 0 wins.
#[test]
fn four_over_six_e8m0() {
    let t = q(
        Scheme::Mxfp4,
        ScaleRule::FourOverSix,
        &block(&[5.0, 0.5], 32),
    );
    assert_eq!((t.scales[0], t.value(0, 0), t.value(0, 1)), (127, 4.0, 0.5));
}

/// 4over6 is an FP4 rule: other element formats are rejected.
#[test]
fn four_over_six_needs_fp4() {
    let v = block(&[1.0], 32);
    let cfg = MxConfig::new(Scheme::Mxfp8E4m3).with_rule(ScaleRule::FourOverSix);
    assert!(quantize(&v, 1, 32, &cfg).is_err());
}

/// Zero block: scale code 0 (2^-127) by default; floor-min-normal applies floor to 2^-126:
/// FP4 -126 - 2 = -128 clamps to -127 (code 0), INT8 (emax 0) gives -126 (code 1). Codes are
/// signed zeros: -0.0 keeps its sign bit (FP4 0x8), INT8 has one zero.
#[test]
fn zero_blocks() {
    let mut v = vec![0.0f32; 32];
    v[3] = -0.0;
    let t = q(Scheme::Mxfp4, ScaleRule::Floor, &v);
    assert_eq!(t.scales[0], 0);
    assert_eq!(t.codes[3], 0x8);
    assert!(t.codes.iter().enumerate().all(|(i, &c)| i == 3 || c == 0));
    assert!(t.dequantize().iter().all(|&x| x == 0.0));
    for (scheme, code) in [
        (Scheme::Mxfp4, 0u8),
        (Scheme::Mxint8, 1),
        (Scheme::Mxfp8E4m3, 0),
    ] {
        let mut cfg = MxConfig::new(scheme);
        cfg.zero_block = ZeroBlock::FloorMinNormal;
        let t = quantize(&v, 1, 32, &cfg).unwrap();
        assert_eq!(t.scales[0], code, "{scheme}");
        if scheme == Scheme::Mxint8 {
            assert!(t.codes.iter().all(|&c| c == 0));
        }
    }
    // NVFP4 zero block: UE4M3 code 0, or 0x08 (2^-6) with floor-min-normal
    let t = q(Scheme::Nvfp4, ScaleRule::Floor, &[0.0f32; 16]);
    assert_eq!(t.scales[0], 0);
    let mut cfg = MxConfig::new(Scheme::Nvfp4);
    cfg.zero_block = ZeroBlock::FloorMinNormal;
    assert_eq!(
        quantize(&[0.0f32; 16], 1, 16, &cfg).unwrap().scales[0],
        0x08
    );
}

/// A NaN or Inf anywhere in a block: scale 0xFF (E8M0) / 0x7F (UE4M3), element codes 0, every
/// value of the block dequantizes to NaN; the other blocks are unaffected.
#[test]
fn nan_inf_blocks() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut v = vec![1.0f32; 64];
        v[40] = bad;
        for scheme in [Scheme::Mxfp4, Scheme::Mxfp8E5m2, Scheme::Mxint8] {
            for rule in [
                ScaleRule::Floor,
                ScaleRule::Even,
                ScaleRule::Mse { alphas: 0 },
            ] {
                let t = quantize(&v, 1, 64, &MxConfig::new(scheme).with_rule(rule)).unwrap();
                assert_eq!(t.scales[1], 0xFF, "{scheme} {rule}");
                assert!(t.codes[32..].iter().all(|&c| c == 0));
                let d = t.dequantize();
                assert!(d[32..].iter().all(|x| x.is_nan()));
                assert!(d[..32].iter().all(|&x| x == 1.0));
            }
        }
        let mut v = vec![1.0f32; 32];
        v[20] = bad;
        let t = q(Scheme::Nvfp4, ScaleRule::Floor, &v);
        assert_eq!(t.scales[1], 0x7F);
        assert_ne!(t.scales[0], 0x7F);
        assert!(t.dequantize()[16..].iter().all(|x| x.is_nan()));
    }
}

/// E8M0 clamping. Low end: INT8 (emax 0) block max 2^-128 (an f32 subnormal): floor gives e =
/// -128, clamped to -127 (code 0); 2^-128 / 2^-127 = 0.5 = 32/64: INT8 code 32, value exactly
/// 2^-128. FP4 block max 2^-130: e = -132 -> -127; 2^-130 / 2^-127 = 0.125 < 0.25 rounds to 0.
/// High end: INT8 block max 2^127: e = 127 (code 254), element 1.0 = code 64. FP4 (f64 input)
/// block max 2^140: e = 138 clamps to 127; 2^13 saturates to 6: 6 * 2^127, clipped.
#[test]
fn e8m0_clamping() {
    let t = q(
        Scheme::Mxint8,
        ScaleRule::Floor,
        &block(&[2f32.powi(-128)], 32),
    );
    assert_eq!((t.scales[0], t.codes[0]), (0, 32));
    assert_eq!(t.value(0, 0), 2f64.powi(-128));
    let t = q(
        Scheme::Mxfp4,
        ScaleRule::Floor,
        &block(&[2f32.powi(-130)], 32),
    );
    assert_eq!((t.scales[0], t.codes[0]), (0, 0));
    let t = q(
        Scheme::Mxint8,
        ScaleRule::Floor,
        &block(&[2f32.powi(127)], 32),
    );
    assert_eq!((t.scales[0], t.codes[0]), (254, 64));
    let mut v = vec![0.0f64; 32];
    v[0] = 2f64.powi(140);
    let t = quantize_f64(&v, 1, 32, &MxConfig::new(Scheme::Mxfp4)).unwrap();
    assert_eq!((t.scales[0], t.codes[0], t.clipped_blocks), (254, 7, 1));
    assert_eq!(t.value(0, 0), 6.0 * 2f64.powi(127));
}

/// Trailing partial block: 40 columns with block 32 give 2 blocks per row; the second covers
/// columns 32..40 and has its own scale. Row [1 x 32, 100, 3 x 7]: block 0 max 1: e = 0 - 2 =
/// -2 (code 125), 1 / 0.25 = 4 exact. Block 1 max 100: floor(log2 100) = 6, e = 4 (code 131):
/// 100/16 = 6.25 -> 6: 96; 3/16 = 0.1875 -> 0 (below 0.25).
#[test]
fn partial_trailing_block() {
    let mut v = vec![1.0f32; 32];
    v.push(100.0);
    v.extend([3.0f32; 7]);
    let t = quantize(&v, 1, 40, &MxConfig::new(Scheme::Mxfp4)).unwrap();
    assert_eq!(t.blocks_per_row(), 2);
    assert_eq!(t.scales, vec![125, 131]);
    assert_eq!(t.value(0, 0), 1.0);
    assert_eq!(t.value(0, 32), 96.0);
    assert_eq!(t.value(0, 39), 0.0);
    // two rows: each row starts a new block
    let two: Vec<f32> = v.iter().chain(v.iter()).copied().collect();
    let t2 = quantize(&two, 2, 40, &MxConfig::new(Scheme::Mxfp4)).unwrap();
    assert_eq!(t2.scales, vec![125, 131, 125, 131]);
}

/// Block sizes other than 32: with block 8 on [1 x 8, 100 x 8], each 8 has its own scale
/// (125 and 131 as above; 100 -> 96); with block 16 one scale (131) covers both, and 1/16 =
/// 0.0625 rounds to 0; with block 1 every value has its own scale (1 -> e = -2: code 125).
#[test]
fn other_block_sizes() {
    let mut v = vec![1.0f32; 8];
    v.extend([100.0f32; 8]);
    let t = quantize(&v, 1, 16, &MxConfig::new(Scheme::Mxfp4).with_block(8)).unwrap();
    assert_eq!(t.scales, vec![125, 131]);
    assert_eq!((t.value(0, 0), t.value(0, 8)), (1.0, 96.0));
    let t = quantize(&v, 1, 16, &MxConfig::new(Scheme::Mxfp4).with_block(16)).unwrap();
    assert_eq!(t.scales, vec![131]);
    assert_eq!(t.value(0, 0), 0.0);
    let t = quantize(&v, 1, 16, &MxConfig::new(Scheme::Mxfp4).with_block(1)).unwrap();
    assert_eq!(t.scales.len(), 16);
    assert_eq!(t.scales[0], 125);
    assert!(quantize(&v, 1, 16, &MxConfig::new(Scheme::Mxfp4).with_block(0)).is_err());
}

/// NVFP4 without tensor scale. Block max 9: 9/6 = 1.5, UE4M3 1.5 = exponent field 7,
/// mantissa 4: code 0x3C; 9/1.5 = 6; 4/1.5 = 2.667 between 2 and 3, nearer 3: 4.5.
/// Block max 6: scale 1.0 = 0x38.
#[test]
fn nvfp4_without_tensor_scale() {
    let mut cfg = MxConfig::new(Scheme::Nvfp4);
    cfg.nv_tensor_scale = false;
    let mut v = block(&[9.0, 4.0], 16);
    v.extend(block(&[6.0], 16));
    let t = quantize(&v, 1, 32, &cfg).unwrap();
    assert_eq!(t.global_scale, 1.0);
    assert_eq!(t.scales, vec![0x3C, 0x38]);
    assert_eq!(
        (t.value(0, 0), t.value(0, 1), t.value(0, 16)),
        (9.0, 4.5, 6.0)
    );
}

/// NVFP4 with the tensor scale: tensor max 168 gives s_t = 168 / (448 * 6) = 2^-4 exactly.
/// Block 0 max 168: 168 / 6 / 2^-4 = 448 = UE4M3 0x7E; 168 / (448 / 16) = 6. Block 1 max 1:
/// 1/6 * 16 = 2.667; UE4M3 step in [2, 4) is 0.25: 2.5 / 2.75, nearer 2.75 = 1.375 * 2
/// (field 8, mantissa 3): 0x43. 1 / (2.75/16) = 5.818 -> 6: 6 * 2.75/16 = 1.03125.
#[test]
fn nvfp4_with_tensor_scale() {
    let mut v = block(&[168.0], 16);
    v.extend(block(&[1.0], 16));
    let t = quantize(&v, 1, 32, &MxConfig::new(Scheme::Nvfp4)).unwrap();
    assert_eq!(t.global_scale, 1.0 / 16.0);
    assert_eq!(t.scales, vec![0x7E, 0x43]);
    assert_eq!((t.value(0, 0), t.value(0, 16)), (168.0, 1.03125));
}

/// The two NVFP4 application modes differ: block max 45, no tensor scale: s = 45/6 = 7.5
/// (UE4M3 1.875 * 4, exact). 37.5 / 7.5 = 5 exactly, the tie between 4 (code 6, even) and 6:
/// Divide gives 4 -> 30. ReciprocalMultiply: f32(1/7.5) = 0.13333334 (rounded up), 37.5 *
/// 0.13333334 rounds in f32 to 5.0000005, above the tie: 6 -> 45.
#[test]
fn nvfp4_apply_modes() {
    let v = block(&[45.0, 37.5], 16);
    let mut cfg = MxConfig::new(Scheme::Nvfp4);
    cfg.nv_tensor_scale = false;
    let d = quantize(&v, 1, 16, &cfg).unwrap();
    assert_eq!((d.value(0, 0), d.value(0, 1)), (45.0, 30.0));
    cfg.nv_apply = NvScaleApply::ReciprocalMultiply;
    let r = quantize(&v, 1, 16, &cfg).unwrap();
    assert_eq!((r.value(0, 0), r.value(0, 1)), (45.0, 45.0));
}

/// NVFP4 ceil/rceil round the UE4M3 scale up so that the block max never clips: max 7 ->
/// 7/6 = 1.1667; RNE gives 1.125 (step 0.125 in [1, 2): 1.125 / 1.25, nearer 1.125) and
/// 7/1.125 = 6.22 clips to 6; rounded up 1.25: 7/1.25 = 5.6 -> 6 -> 7.5, not clipped.
#[test]
fn nvfp4_rceil() {
    let v = block(&[7.0], 16);
    let mut cfg = MxConfig::new(Scheme::Nvfp4);
    cfg.nv_tensor_scale = false;
    let f = quantize(&v, 1, 16, &cfg).unwrap();
    assert_eq!((f.value(0, 0), f.clipped_blocks), (6.75, 1));
    let r = quantize(&v, 1, 16, &cfg.clone().with_rule(ScaleRule::Rceil)).unwrap();
    assert_eq!((r.value(0, 0), r.clipped_blocks), (7.5, 0));
}

/// Blocks follow the last axis: a 2 x 32 tensor whose rows have different maxima gets one
/// scale per row.
#[test]
fn blocks_run_along_rows() {
    let mut v = vec![1.0f32; 32];
    v.extend([8.0f32; 32]);
    let t = quantize(&v, 2, 32, &MxConfig::new(Scheme::Mxfp4)).unwrap();
    assert_eq!(t.scales, vec![125, 128]);
}

/// MXINT8 -0.0 in a non-zero block is code 0 (regression: it was 0x80 = -2 * X).
#[test]
fn mxint8_negative_zero() {
    let t = q(Scheme::Mxint8, ScaleRule::Floor, &block(&[1.0, -0.0], 32));
    assert_eq!(t.codes[1], 0);
    assert_eq!(t.value(0, 1), 0.0);
}
