//! Property tests of the scalar codecs and block quantization.

use mxsim::format::{decode_f64, encode, CastOptions, Format, Overflow, Rounding};
use mxsim::mx::{quantize, quantize_f64, MxConfig, ScaleRule, Scheme};
use proptest::prelude::*;

fn any_format() -> impl Strategy<Value = Format> {
    prop::sample::select(Format::ALL.to_vec())
}
fn det_rounding() -> impl Strategy<Value = Rounding> {
    prop::sample::select(vec![Rounding::Rne, Rounding::Rna, Rounding::Rtz])
}
fn any_scheme() -> impl Strategy<Value = Scheme> {
    prop::sample::select(Scheme::ALL.to_vec())
}
fn any_rule() -> impl Strategy<Value = ScaleRule> {
    prop::sample::select(vec![
        ScaleRule::Floor,
        ScaleRule::Ceil,
        ScaleRule::Even,
        ScaleRule::Rceil,
        ScaleRule::Prescale(0.75),
        ScaleRule::Mse { alphas: 0 },
        ScaleRule::Mse { alphas: 3 },
        ScaleRule::FourOverSix,
    ])
}
/// Finite f32 values from every binade (random bit patterns, NaN/Inf excluded).
fn finite_f32() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(|b| {
        let x = f32::from_bits(b);
        if x.is_finite() {
            x
        } else {
            f32::from_bits(b & 0xBF7F_FFFF)
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// x <= y implies decode(encode(x)) <= decode(encode(y)) (signed formats; E8M0/UE4M3 on
    /// positive inputs), for each deterministic rounding and both overflow policies.
    #[test]
    fn encode_is_monotonic(f in any_format(), r in det_rounding(), sat in any::<bool>(),
                           a in finite_f32(), b in finite_f32()) {
        let (mut x, mut y) = (a as f64, b as f64);
        if !f.spec().signed { x = x.abs(); y = y.abs(); }
        if f == Format::E8M0 && (x == 0.0 || y == 0.0) { return Ok(()); }
        if x > y { std::mem::swap(&mut x, &mut y); }
        let o = CastOptions::new(r, if sat { Overflow::Saturate } else { Overflow::Nonsat });
        let dx = decode_f64(f, encode(f, x, &o, 0));
        let dy = decode_f64(f, encode(f, y, &o, 0));
        if dx.is_nan() || dy.is_nan() {
            // only overflow to NaN (E4M3/E8M0 nonsat) is allowed, and only at the top
            prop_assert!(!sat);
            prop_assert!(dy.is_nan() || dx.is_nan() && x.abs() >= f.max_normal());
        } else {
            prop_assert!(dx <= dy, "{f}: {x} -> {dx}, {y} -> {dy}");
        }
    }

    /// decode then encode returns the code (every non-NaN code, any rounding incl. stochastic).
    #[test]
    fn decode_encode_identity(f in any_format(), c in any::<u8>(), seed in any::<u64>(),
                              r in prop::sample::select(vec![Rounding::Rne, Rounding::Rna, Rounding::Rtz, Rounding::Stochastic])) {
        let c = if f.bits() < 8 { c & ((1u16 << f.bits()) - 1) as u8 } else { c };
        let v = decode_f64(f, c);
        prop_assume!(!(v.is_nan() || f == Format::UE4M3 && c >= 0x80));
        let o = CastOptions { seed, int8_allow_min: true, ..CastOptions::new(r, Overflow::Nonsat) };
        prop_assert_eq!(encode(f, v, &o, seed), c);
    }

    /// The encoded value is one of the two neighbours of x (or saturated at the max).
    #[test]
    fn encode_is_a_neighbour(f in prop::sample::select(Format::ELEMENTS.to_vec()), r in det_rounding(), a in finite_f32()) {
        let x = a as f64;
        let o = CastOptions::new(r, Overflow::Saturate);
        let d = decode_f64(f, encode(f, x, &o, 0));
        let vals: Vec<f64> = (0..f.code_count()).map(|c| decode_f64(f, c as u8)).filter(|v| v.is_finite()).collect();
        let below = vals.iter().cloned().filter(|&v| v <= x).fold(f64::NEG_INFINITY, f64::max);
        let above = vals.iter().cloned().filter(|&v| v >= x).fold(f64::INFINITY, f64::min);
        prop_assert!(d == below || d == above || (x.abs() > f.max_normal() && d.abs() == f.max_normal()) || (d == 0.0 && (below == 0.0 || above == 0.0)),
            "{f} {r:?}: {x} -> {d} (neighbours {below}, {above})");
    }

    /// Quantizing a dequantized tensor again (floor rule, RNE) gives the same codes, and the
    /// same scales for every block that is not all zero after dequantization. MX schemes only:
    /// under floor the dequantized block maximum stays in amax's binade, so the E8M0 exponent
    /// is unchanged. NVFP4 is excluded because its scale is RNE(amax / 6), and a dequantized
    /// maximum of e.g. 4 * s gives another scale RNE(4s / 6).
    #[test]
    fn quantize_is_idempotent(s in prop::sample::select(Scheme::ALL[..6].to_vec()), bs in 1usize..40, cols in 1usize..70,
                              v in prop::collection::vec(finite_f32(), 140)) {
        let rows = v.len() / cols;
        let v = &v[..rows * cols];
        prop_assume!(rows > 0);
        let cfg = MxConfig::new(s).with_block(bs);
        let cfg = MxConfig { nv_tensor_scale: false, ..cfg };
        let t = quantize(v, rows, cols, &cfg).unwrap();
        let d: Vec<f64> = t.dequantize_f64();
        let t2 = quantize_f64(&d, rows, cols, &cfg).unwrap();
        prop_assert_eq!(&t.codes, &t2.codes);
        let bpr = t.blocks_per_row();
        for r in 0..rows {
            for b in 0..bpr {
                let lo = r * cols + b * bs;
                let hi = r * cols + ((b + 1) * bs).min(cols);
                if d[lo..hi].iter().any(|&x| x != 0.0) {
                    prop_assert_eq!(t.scales[r * bpr + b], t2.scales[r * bpr + b], "row {} block {}", r, b);
                }
            }
        }
    }

    /// Finite input never yields a NaN scale (E8M0 0xFF, UE4M3 0x7F), under every rule.
    #[test]
    fn scale_never_nan_for_finite_input(s in any_scheme(), rule in any_rule(), bs in 1usize..40,
                                        v in prop::collection::vec(finite_f32(), 1..100)) {
        prop_assume!(rule != ScaleRule::FourOverSix || s.element() == Format::E2M1);
        let cfg = MxConfig::new(s).with_rule(rule).with_block(bs);
        let t = quantize(&v, 1, v.len(), &cfg).unwrap();
        let nan = if s == Scheme::Nvfp4 { 0x7F } else { 0xFF };
        prop_assert!(t.scales.iter().all(|&c| c != nan && c != 0xFF), "{:?}", t.scales);
        prop_assert!(t.dequantize().iter().all(|x| !x.is_nan()));
    }

    /// Stochastic rounding in block quantization is reproducible for a seed, and the mean of
    /// many independent roundings is close to the value (unbiased-ish).
    #[test]
    fn stochastic_quantize_reproducible_and_unbiased(s in any_scheme(), x in 0.05f32..1.0, seed in any::<u64>()) {
        let mut v = vec![x; 4096];
        for (i, e) in v.iter_mut().enumerate() { if i % 32 == 0 { *e = 1.0; } }
        let mut cfg = MxConfig::new(s).with_block(32);
        cfg.nv_tensor_scale = false;
        cfg.rounding = Rounding::Stochastic;
        cfg.seed = seed;
        let a = quantize(&v, 1, v.len(), &cfg).unwrap();
        let b = quantize(&v, 1, v.len(), &cfg).unwrap();
        prop_assert_eq!(&a, &b);
        let d = a.dequantize_f64();
        let vals: Vec<f64> = d.iter().enumerate().filter(|(i, _)| i % 32 != 0).map(|(_, &y)| y).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        // one element step at this scale is at most x/2 (FP4 near 0.5) ; 3968 draws
        let step = match s.element() { Format::E2M1 => 0.5, Format::E3M2 | Format::E2M3 => 0.125, _ => 0.0625 };
        prop_assert!((mean - x as f64).abs() < 4.0 * step / (vals.len() as f64).sqrt() + 1e-9,
            "{s}: mean {mean} vs {x}");
    }
}
