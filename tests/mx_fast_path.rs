//! The float32 fast paths (MXFP4 / MXFP8 E4M3 with `floor` / `rceil`, RNE; table-driven
//! dequantization) must equal the generic f64 path bit for bit.

use mxsim::mx::fast::{quantize_packed, quantize_packed_rows, Kernel};
use mxsim::mx::pack::pack_codes;
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

/// The kernels of the fused packed path that this CPU can run.
fn kernels() -> Vec<Kernel> {
    [Kernel::Portable, Kernel::Avx2, Kernel::Auto]
        .into_iter()
        .filter(|k| k.available())
        .collect()
}

/// The packed outputs (`quantize_packed`, and every fused kernel where the shape allows it)
/// equal the generic tensor `g` packed by `pack_codes`, byte for byte.
fn assert_packed_same(values: &[f32], rows: usize, cols: usize, cfg: &MxConfig, g: &MxTensor) {
    let bits = cfg.scheme.element().bits();
    let want = pack_codes(&g.codes, bits);
    let check = |what: &str, scales: &[u8], packed: &[u8], clipped: usize| {
        if packed != want.as_slice() {
            let i = packed.iter().zip(&want).position(|(a, b)| a != b).unwrap();
            let per = 8 / bits as usize;
            let v: Vec<String> = values[i * per..((i + 1) * per).min(values.len())]
                .iter()
                .map(|x| format!("{x:e} ({:#010x})", x.to_bits()))
                .collect();
            panic!(
                "{what} {cfg:?}: packed byte {i}: {:#04x} vs generic {:#04x}; values {v:?}, \
                 scale {} vs {}",
                packed[i],
                want[i],
                scales[i * per / cfg.block_size],
                g.scales[i * per / cfg.block_size]
            );
        }
        assert_eq!(scales, g.scales.as_slice(), "{what} {cfg:?}: scales");
        assert_eq!(clipped, g.clipped_blocks, "{what} {cfg:?}: clipped blocks");
    };
    let p = quantize_packed(values, rows, cols, cfg).unwrap();
    check("quantize_packed", &p.scales, &p.packed, p.clipped_blocks);
    if cfg.scheme == Scheme::Mxfp4 && cfg.zero_block == ZeroBlock::Smallest && cfg.block_size == 32
    {
        let p = fast::quantize_mxfp4_packed(values, rows, cols, cfg.rule).unwrap();
        check(
            "quantize_mxfp4_packed",
            &p.scales,
            &p.packed,
            p.clipped_blocks,
        );
    }
    if fast::fused_eligible(cfg, cols) {
        for k in kernels() {
            let mut scales = vec![0xAAu8; g.scales.len()];
            let mut packed = vec![0xAAu8; want.len()];
            let c = quantize_packed_rows(values, cols, cfg, &mut scales, &mut packed, k).unwrap();
            check(&format!("{k:?} kernel"), &scales, &packed, c);
        }
    }
}

fn assert_same(values: &[f32], rows: usize, cols: usize, cfg: &MxConfig) {
    assert!(fast::eligible(cfg));
    let f = quantize(values, rows, cols, cfg).unwrap();
    let g = quantize_generic(values, rows, cols, cfg).unwrap();
    assert_packed_same(values, rows, cols, cfg, &g);
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
        for amax_scale in [
            1.0f32,
            2.0f32.powi(-100),
            2.0f32.powi(-124),
            2.0f32.powi(60),
        ] {
            let mut vals = Vec::new();
            for k in kmin..=kmax {
                for hi in 0..2048u32 {
                    for lo in [0u32, 1, 0x7FF, 0x800, 0x801, 0xFFF] {
                        let m = (hi << 12) | lo;
                        let x = f32::from_bits(((127 + k) as u32) << 23 | m);
                        // with 2^-124 the smaller values become float32 subnormals (rounded by
                        // the multiplication; both paths get the same inputs)
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

/// Every float32 mantissa (all 2^23 patterns, both signs alternating) in every binade that
/// decides a rounding of the element format, relative to a block scale fixed by a block
/// maximum in element 0: FP4 binades 2^-3 .. 2^2 (2^-3 and below round to zero, 2^-2 holds the
/// 0 / 0.5 tie at 0.25), E4M3 binades 2^-10 (the 0 / 2^-9 tie) .. 2^-6 (subnormal to normal),
/// 2^0 and 2^8 (saturation at 448). Fused kernels and the unpacked fast path against the
/// generic path.
#[test]
fn element_rounding_every_mantissa() {
    for (scheme, top, binades) in [
        (Scheme::Mxfp4, 6.0f32, vec![-3, -2, -1, 0, 1, 2]),
        (Scheme::Mxfp8E4m3, 448.0f32, vec![-10, -9, -8, -7, -6, 0, 8]),
    ] {
        let cfg = MxConfig::new(scheme);
        for k in binades {
            let mut data = Vec::with_capacity((1 << 23) / 31 * 32 + 64);
            let mut m = 0u32;
            while m < 1 << 23 {
                data.push(top);
                for _ in 0..31 {
                    let x = if m < 1 << 23 {
                        f32::from_bits(((127 + k) as u32) << 23 | m)
                    } else {
                        0.0
                    };
                    data.push(if m & 1 == 1 { -x } else { x });
                    m += 1;
                }
            }
            assert_same(&data, data.len() / 32, 32, &cfg);
        }
    }
}

/// NaN and Inf blocks (scale 0xFF, element codes 0) with the special value at every position,
/// next to finite blocks; zero blocks of signed zeros (codes 0 / sign only) under both zero
/// block policies; subnormal-only blocks.
#[test]
fn special_blocks() {
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7F80_0001),
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut data = Vec::new();
    for (j, &sp) in specials.iter().enumerate() {
        for pos in 0..32 {
            for i in 0..32 {
                data.push(if i == pos {
                    sp
                } else {
                    (i as f32 - 15.5) * (j + 1) as f32
                });
            }
            // a finite neighbour block
            data.extend((0..32).map(|i| (i as f32 - 16.0) / 3.0));
        }
    }
    // zero blocks: every 32-bit sign pattern of a few kinds
    for pat in [0u32, 0xFFFF_FFFF, 0xAAAA_AAAA, 0x5555_5555, 0x8000_0001] {
        data.extend((0..32).map(|i| if pat >> i & 1 == 1 { -0.0f32 } else { 0.0 }));
    }
    // subnormal-only blocks: the smallest subnormals, the largest, and a mix with zeros
    data.extend((0..32).map(|i| f32::from_bits(i as u32) * if i % 3 == 0 { -1.0 } else { 1.0 }));
    data.extend((0..32).map(|i| -f32::from_bits(0x7F_FFFF - i as u32 * 977)));
    data.extend((0..32).map(|i| {
        if i % 2 == 0 {
            0.0
        } else {
            f32::from_bits(0x40_0000 + i)
        }
    }));
    for cfg in configs() {
        assert_same(&data, data.len() / 32, 32, &cfg);
        assert_same(&data, 1, data.len(), &cfg);
    }
}
