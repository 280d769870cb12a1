//! Worked examples of MX block quantization, derived by hand from OCP MX v1.0 section 6.3.

use mxsim::mx::{quantize, MxConfig, ScaleRule, Scheme};

/// 957 in an E4M3 block whose max is 960. floor: floor(log2 960) = 9, emax(E4M3) = 8, so
/// X = 2^1; 957/2 = 478.5 saturates to 448, giving 896. rceil: the smallest e with
/// 448 * 2^e >= 960 is 2, X = 4; 957/4 = 239.25 rounds to 240 (E4M3 step 16 in [128, 256)),
/// giving 960.
#[test]
fn e4m3_957_floor_vs_rceil() {
    let mut v = vec![1.0f32; 32];
    v[0] = 960.0;
    v[1] = 957.0;
    let floor = quantize(&v, 1, 32, &MxConfig::new(Scheme::Mxfp8E4m3)).unwrap();
    assert_eq!(floor.scales[0], 128);
    assert_eq!(floor.value(0, 1), 896.0);
    assert_eq!(floor.clipped_blocks, 1);
    let rceil = quantize(
        &v,
        1,
        32,
        &MxConfig::new(Scheme::Mxfp8E4m3).with_rule(ScaleRule::Rceil),
    )
    .unwrap();
    assert_eq!(rceil.scales[0], 129);
    assert_eq!(rceil.value(0, 1), 960.0);
    assert_eq!(rceil.clipped_blocks, 0);
}

/// MXFP4 block with max 7: floor gives X = 2^(2-2) = 1, 7 saturates to 6; the 3/4 pre-scale
/// quantizes 5.25 to 6 (RNE between 4 and 6: 5.25 is nearer 6) and multiplies by 4/3: 8.
#[test]
fn fp4_prescale() {
    let mut v = vec![0.0f32; 32];
    v[0] = 7.0;
    let floor = quantize(&v, 1, 32, &MxConfig::new(Scheme::Mxfp4)).unwrap();
    assert_eq!(floor.value(0, 0), 6.0);
    let pre = quantize(
        &v,
        1,
        32,
        &MxConfig::new(Scheme::Mxfp4).with_rule(ScaleRule::Prescale(0.75)),
    )
    .unwrap();
    assert_eq!(pre.value(0, 0), 8.0);
}
