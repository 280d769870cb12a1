//! The float32 fast paths (MXFP4 / MXFP8 E4M3 with `floor` / `rceil`, RNE; table-driven
//! dequantization) must equal the generic f64 path bit for bit.

use mxsim::mx::{
    fast, quantize, quantize_generic, MxConfig, MxTensor, ScaleRule, Scheme, ZeroBlock,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn configs() -> Vec<MxConfig> {
    let mut v = Vec::new();
    for scheme in [Scheme::Mxfp4, Scheme::Mxfp8E4m3] {
        for rule in [ScaleRule::Floor, ScaleRule::Rceil] {
            for zb in [ZeroBlock::Smallest, ZeroBlock::FloorMinNormal] {
                let mut c = MxConfig::new(scheme).with_rule(rule);
                c.zero_block = zb;
                v.push(c);
            }
        }
    }
    v
}

fn assert_same(values: &[f32], rows: usize, cols: usize, cfg: &MxConfig) {
    assert!(fast::eligible(cfg));
    let f = quantize(values, rows, cols, cfg).unwrap();
    let g = quantize_generic(values, rows, cols, cfg).unwrap();
    if f != g {
        for (i, (fc, gc)) in f.codes.iter().zip(&g.codes).enumerate() {
            assert_eq!(
                fc,
                gc,
                "{cfg:?}: code {i} of value {:e} ({:#010x}) in block with scale {} / {}",
                values[i],
                values[i].to_bits(),
                f.scales[(i / cols) * f.blocks_per_row() + (i % cols) / cfg.block_size],
                g.scales[(i / cols) * g.blocks_per_row() + (i % cols) / cfg.block_size]
            );
        }
        assert_eq!(f.scales, g.scales, "{cfg:?}: scales");
        assert_eq!(
            f.clipped_blocks, g.clipped_blocks,
            "{cfg:?}: clipped blocks"
        );
        panic!("tensors differ in another field");
    }
    // dequantization: fast table path vs generic f64 path, compared as bits (NaN as NaN)
    let fd = f.dequantize();
    let gd = g.dequantize_generic();
    for (i, (a, b)) in fd.iter().zip(&gd).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{cfg:?}: dequantized value {i}: {a:e} vs {b:e}"
        );
    }
}

/// Every value y = m * 2^k relative to a block scale, for k covering the whole element range
/// and beyond (sub-subnormal to saturating), with every combination of the top 11 mantissa
/// bits and six patterns of the low 12 bits (zero, one, just below/at/above half, all ones):
/// these decide every RNE decision of FP4 and E4M3. Each block has a fixed maximum (so a known
/// scale) in element 0 and 31 test values.
#[test]
fn element_rounding_exhaustive_patterns() {
    for cfg in configs() {
        let (top, kmin, kmax) = match cfg.scheme {
            Scheme::Mxfp4 => (6.0f32, -6, 3),
            _ => (448.0f32, -14, 9),
        };
        for amax_scale in [1.0f32, 2.0f32.powi(-100), 2.0f32.powi(60)] {
            let mut vals = Vec::new();
            for k in kmin..=kmax {
                for hi in 0..2048u32 {
                    for lo in [0u32, 1, 0x7FF, 0x800, 0x801, 0xFFF] {
                        let m = (hi << 12) | lo;
                        let x = f32::from_bits(((127 + k) as u32) << 23 | m);
                        let x = x * amax_scale;
                        vals.push(if hi & 1 == 1 { -x } else { x });
                    }
                }
            }
            let blocks = vals.len().div_ceil(31);
            let mut data = Vec::with_capacity(blocks * 32);
            for chunk in vals.chunks(31) {
                data.push(top * amax_scale);
                data.extend_from_slice(chunk);
                data.resize(data.len() + 31 - chunk.len(), 0.0);
            }
            let rows = data.len() / 32;
            assert_same(&data, rows, 32, &cfg);
        }
    }
}

/// Block maxima over every float32 exponent field 0..=254 (subnormals included, so the E8M0
/// exponent is clamped at -127 at the low end) and many mantissas, with the rest of each
/// block random fractions of the maximum.
#[test]
fn scale_exponent_every_f32_binade() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut data = Vec::new();
    for field in 0..=254u32 {
        for m in [
            0u32, 1, 0x3F_FFFF, 0x40_0000, 0x40_0001, 0x5F_FFFF, 0x60_0000, 0x60_0001, 0x7F_FFFF,
        ] {
            if field == 0 && m == 0 {
                continue;
            }
            let amax = f32::from_bits(field << 23 | m);
            data.push(if rng.gen() { amax } else { -amax });
            for _ in 0..31 {
                let f: f32 = rng.gen_range(-1.0..1.0);
                data.push(amax * f);
            }
        }
    }
    for cfg in configs() {
        assert_same(&data, data.len() / 32, 32, &cfg);
    }
}

fn random_bits(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let x = f32::from_bits(rng.gen());
            if x.is_finite() {
                x
            } else {
                f32::from_bits(rng.gen::<u32>() & 0xBF7F_FFFF)
            }
        })
        .collect()
}

/// Large random inputs: random bit patterns over all exponents, Gaussian-like data with
/// outliers, NaN and Inf blocks, zero blocks, partial trailing blocks and block sizes other
/// than 32.
#[test]
fn random_tensors_partial_blocks_specials() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    for &(rows, cols, bs) in &[
        (64usize, 4096usize, 32usize),
        (37, 100, 32),
        (50, 33, 16),
        (20, 77, 7),
        (10, 64, 1),
        (16, 200, 64),
        (3, 5, 32),
    ] {
        let mut v = random_bits(&mut rng, rows * cols);
        // second half: small-range Gaussian-ish values with rare outliers and subnormals
        for x in v[rows * cols / 2..].iter_mut() {
            let g: f32 = rng.gen_range(-3.0..3.0);
            *x = match rng.gen_range(0..100) {
                0 => g * 1000.0,
                1 => g * 1e-40,
                2 => 0.0,
                3 => -0.0,
                _ => g,
            };
        }
        // a NaN block, an Inf block, a -Inf block, a zero block
        let n = v.len();
        v[rng.gen_range(0..n)] = f32::NAN;
        v[rng.gen_range(0..n)] = f32::INFINITY;
        v[rng.gen_range(0..n)] = f32::NEG_INFINITY;
        v[rng.gen_range(0..n)] = f32::from_bits(0xFFC0_0001);
        let z = rng.gen_range(0..rows);
        v[z * cols..z * cols + bs.min(cols)].fill(0.0);
        for cfg in configs() {
            let cfg = cfg.with_block(bs);
            assert_same(&v, rows, cols, &cfg);
        }
    }
}

/// The fast dequantization equals the generic one for every E8M0-scaled scheme, including
/// scale codes 0 (2^-127), 254 (2^127, overflow to Inf) and 0xFF (NaN), and every element code.
#[test]
fn dequantize_every_code_and_scale() {
    for scheme in [
        Scheme::Mxfp8E4m3,
        Scheme::Mxfp8E5m2,
        Scheme::Mxfp6E3m2,
        Scheme::Mxfp6E2m3,
        Scheme::Mxfp4,
        Scheme::Mxint8,
    ] {
        let n = scheme.element().code_count() as usize;
        let codes: Vec<u8> = (0..256 * n).map(|i| (i % n) as u8).collect();
        let scales: Vec<u8> = (0..256).map(|s| s as u8).collect();
        let t = MxTensor {
            scheme,
            block_size: n,
            rows: 256,
            cols: n,
            codes,
            scales,
            global_scale: 1.0,
            clipped_blocks: 0,
        };
        assert!(fast::dequant_eligible(&t));
        let a = t.dequantize();
        let b = t.dequantize_generic();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{scheme}: code {} scale {}: {x:e} vs {y:e}",
                i % n,
                i / n
            );
        }
    }
}

/// Ineligible configurations are not served by the fast path.
#[test]
fn eligibility() {
    assert!(fast::eligible(&MxConfig::new(Scheme::Mxfp4)));
    assert!(fast::eligible(
        &MxConfig::new(Scheme::Mxfp8E4m3).with_rule(ScaleRule::Rceil)
    ));
    assert!(!fast::eligible(&MxConfig::new(Scheme::Mxfp8E5m2)));
    assert!(!fast::eligible(&MxConfig::new(Scheme::Nvfp4)));
    assert!(!fast::eligible(
        &MxConfig::new(Scheme::Mxfp4).with_rule(ScaleRule::Even)
    ));
    let mut c = MxConfig::new(Scheme::Mxfp4);
    c.rounding = mxsim::format::Rounding::Rna;
    assert!(!fast::eligible(&c));
}
