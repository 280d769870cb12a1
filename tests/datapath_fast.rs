//! The fast GEMM kernels (`gemm`) against the general path (`gemm_reference`), bit for bit:
//! every preset, every pair of operand schemes (FP8/FP6/FP4/INT8/NVFP4, mixed), partial
//! blocks, extreme and zero scales, NaN/Inf elements, accumulators C of large magnitude,
//! exact cancellations, global scales. A sensitivity check shows the same random data tells
//! apart datapaths that differ by one window bit or in the treatment of shifted-out bits, so a
//! kernel with such an error would fail these tests.

use mxsim::datapath::{gemm, gemm_reference, preset_names, DatapathConfig, Shifted};
use mxsim::format::decode_f64;
use mxsim::mx::{MxTensor, Scheme};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SCHEMES: [Scheme; 7] = [
    Scheme::Mxfp8E4m3,
    Scheme::Mxfp8E5m2,
    Scheme::Mxfp6E3m2,
    Scheme::Mxfp6E2m3,
    Scheme::Mxfp4,
    Scheme::Mxint8,
    Scheme::Nvfp4,
];

/// Data styles of a random operand.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// Uniformly random finite codes, scales near 2^0.
    Plain,
    /// Scales anywhere in E8M0's range (2^-127 .. 2^127), or any UE4M3 scale incl. zero.
    Extreme,
    /// Mostly small codes with a few large ones: wide exponent spread inside a block.
    Spread,
    /// Scales spread over 2^-40 .. 2^40 (blocks of one instruction tens of bits apart).
    Wide,
    /// Like Plain, with a few NaN/Inf element codes and NaN scales.
    Special,
}

impl Style {
    /// Every style.
    const ALL: [Style; 5] = [
        Style::Plain,
        Style::Extreme,
        Style::Spread,
        Style::Special,
        Style::Wide,
    ];
}

fn random_tensor(
    rng: &mut ChaCha8Rng,
    scheme: Scheme,
    rows: usize,
    cols: usize,
    style: Style,
) -> MxTensor {
    let f = scheme.element();
    let bs = scheme.default_block();
    let bpr = cols.div_ceil(bs);
    let finite = |c: u8| {
        let v = decode_f64(f, c);
        !v.is_nan() && v.is_finite()
    };
    let codes = (0..rows * cols)
        .map(|_| {
            if matches!(style, Style::Special) && rng.gen_range(0..40) == 0 {
                return rng.gen_range(0..f.code_count()) as u8;
            }
            loop {
                let c = rng.gen_range(0..f.code_count()) as u8;
                let c = if matches!(style, Style::Spread) && rng.gen_range(0..4) != 0 {
                    // keep sign, small magnitude codes
                    (c & f.sign_mask()) | (c & 0x07)
                } else {
                    c
                };
                if finite(c) {
                    break c;
                }
            }
        })
        .collect();
    let scales = (0..rows * bpr)
        .map(|_| {
            if scheme == Scheme::Nvfp4 {
                match style {
                    Style::Extreme => rng.gen_range(0..0x7Fu8),
                    Style::Special if rng.gen_range(0..10) == 0 => 0x7F,
                    _ => rng.gen_range(0x30..0x48u8),
                }
            } else {
                match style {
                    Style::Extreme => match rng.gen_range(0..4) {
                        0 => rng.gen_range(0..8),
                        1 => rng.gen_range(247..=254),
                        _ => rng.gen_range(0..=254),
                    },
                    Style::Special if rng.gen_range(0..10) == 0 => 0xFF,
                    Style::Wide => rng.gen_range(87..=167),
                    _ => rng.gen_range(117..=137),
                }
            }
        })
        .collect();
    MxTensor {
        scheme,
        block_size: bs,
        rows,
        cols,
        codes,
        scales,
        global_scale: 1.0,
        clipped_blocks: 0,
    }
}

/// Random C values: zeros of both signs, small, large (up to 2^100) and tiny magnitudes.
fn random_c(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| match rng.gen_range(0..6) {
            0 => 0.0,
            1 => -0.0,
            2 => rng.gen_range(-4.0f32..4.0),
            3 => rng.gen_range(-1.0f32..1.0) * 2f32.powi(rng.gen_range(-60..100)),
            4 => f32::from_bits(rng.gen::<u32>() & 0xBFFF_FFFF),
            _ => rng.gen_range(-1.0f32..1.0) * 2f32.powi(rng.gen_range(10..30)),
        })
        .collect()
}

/// Make every other row `j` of `b` cancel row `j % a.rows` of `a` (same scheme): pairs of
/// elements `(2t, 2t+1)` of B are `(A[2t+1], -A[2t])`, so `A[2t] A[2t+1] - A[2t+1] A[2t]`
/// is an exact zero inside every block (INT8 -128 negates to itself: partial cancellation).
fn add_cancellation(a: &MxTensor, b: &mut MxTensor) {
    if a.scheme != b.scheme || a.block_size != b.block_size {
        return;
    }
    let (k, bpr) = (a.cols, a.blocks_per_row());
    let sm = a.scheme.element().sign_mask();
    let neg = |code: u8| {
        if a.scheme.element() == mxsim::format::Format::Int8 {
            (code as i8).wrapping_neg() as u8
        } else {
            code ^ sm
        }
    };
    for j in (0..b.rows).step_by(2) {
        let i = j % a.rows;
        for t in (0..k - k % 2).step_by(2) {
            b.codes[j * k + t] = a.codes[i * k + t + 1];
            b.codes[j * k + t + 1] = neg(a.codes[i * k + t]);
        }
        b.scales[j * bpr..(j + 1) * bpr].copy_from_slice(&a.scales[i * bpr..(i + 1) * bpr]);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn check(cfg: &DatapathConfig, a: &MxTensor, b: &MxTensor, c: Option<&[f32]>, what: &str) {
    let fast = gemm(a, b, c, cfg);
    let reference = gemm_reference(a, b, c, cfg);
    match (fast, reference) {
        (Ok(f), Ok(r)) => {
            let (f, r) = (bits(&f), bits(&r));
            for (idx, (x, y)) in f.iter().zip(&r).enumerate() {
                assert_eq!(
                    x, y,
                    "{what}: output {idx}: fast {x:#010x} reference {y:#010x}"
                );
            }
        }
        (Err(_), Err(_)) => {}
        (f, r) => panic!("{what}: fast {:?} vs reference {:?}", f.is_ok(), r.is_ok()),
    }
}

/// Every preset x every ordered pair of schemes x several data styles and K values
/// (partial trailing blocks included), with and without C and with cancelling rows.
#[test]
fn fast_equals_reference_every_preset_every_scheme_pair() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let styles = Style::ALL;
    let ks = [1usize, 17, 32, 64, 96, 150, 256];
    let mut round = 0usize;
    for name in preset_names() {
        let cfg = DatapathConfig::preset(name).unwrap();
        for &sa in &SCHEMES {
            for &sb in &SCHEMES {
                for rep in 0..2 {
                    round += 1;
                    let style = styles[(round + rep) % styles.len()];
                    let k = ks[round % ks.len()];
                    let (m, n) = (3 + rep, 6);
                    let a = random_tensor(&mut rng, sa, m, k, style);
                    let mut b = random_tensor(&mut rng, sb, n, k, style);
                    if rep == 1 {
                        add_cancellation(&a, &mut b);
                    }
                    let c = random_c(&mut rng, m * n);
                    let what = format!("{name} {sa}x{sb} {style:?} k={k}");
                    check(&cfg, &a, &b, Some(&c), &what);
                    check(&cfg, &a, &b, None, &what);
                }
            }
        }
    }
}

/// Wide outputs (N past sixteen, so whole lane tiles of B rows and a partial one) for the
/// exact-block presets, every style of data, with and without C, rows of A past a multiple
/// of the kernels' row tiles.
#[test]
fn fast_equals_reference_wide_tiles_exact_block_presets() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let styles = Style::ALL;
    let mut round = 0usize;
    for name in ["exact", "ocp-fp32"] {
        let cfg = DatapathConfig::preset(name).unwrap();
        for (sa, sb) in [
            (Scheme::Mxfp4, Scheme::Mxfp4),
            (Scheme::Mxfp8E4m3, Scheme::Mxfp8E4m3),
            (Scheme::Mxfp8E4m3, Scheme::Mxfp4),
            (Scheme::Mxfp6E3m2, Scheme::Mxfp6E2m3),
            (Scheme::Mxint8, Scheme::Mxfp8E4m3),
        ] {
            for style in styles {
                round += 1;
                let (m, n, k) = (9 + round % 3, 37, [64, 256, 96][round % 3]);
                let a = random_tensor(&mut rng, sa, m, k, style);
                let mut b = random_tensor(&mut rng, sb, n, k, style);
                if round.is_multiple_of(2) {
                    add_cancellation(&a, &mut b);
                }
                let c = random_c(&mut rng, m * n);
                let what = format!("{name} {sa}x{sb} {style:?} k={k}");
                check(&cfg, &a, &b, Some(&c), &what);
                check(&cfg, &a, &b, None, &what);
            }
        }
    }
}

/// Longer reductions (several promotions, many instructions) on larger tiles, MXFP4 x MXFP4,
/// MXFP8 x MXFP4 and NVFP4, and global scales (NVFP4 tensor scale, epilogue).
#[test]
fn fast_equals_reference_long_reductions_and_global_scales() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for name in preset_names() {
        let cfg = DatapathConfig::preset(name).unwrap();
        for (sa, sb) in [
            (Scheme::Mxfp4, Scheme::Mxfp4),
            (Scheme::Mxfp8E4m3, Scheme::Mxfp4),
            (Scheme::Mxfp8E4m3, Scheme::Mxfp8E4m3),
            (Scheme::Nvfp4, Scheme::Nvfp4),
            (Scheme::Mxint8, Scheme::Mxint8),
        ] {
            for style in [Style::Plain, Style::Spread] {
                let (m, n, k) = (9, 21, 1000);
                let mut a = random_tensor(&mut rng, sa, m, k, style);
                let mut b = random_tensor(&mut rng, sb, n, k, style);
                let c = random_c(&mut rng, m * n);
                check(&cfg, &a, &b, Some(&c), &format!("{name} {sa}x{sb} long"));
                a.global_scale = 0.375;
                b.global_scale = 3.0e-3;
                check(&cfg, &a, &b, Some(&c), &format!("{name} {sa}x{sb} global"));
            }
        }
    }
}

/// Custom configurations the fast kernels also serve: other shifted-out treatments and window
/// widths, BF16/FP16 accumulators with other rounding modes, IEEE zero signs.
#[test]
fn fast_equals_reference_config_variants() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut variants = Vec::new();
    for base in [
        "blackwell-mxf8f6f4",
        "mxdotp",
        "hopper-fp8",
        "blackwell-mxf4nvf4",
    ] {
        let cfg = DatapathConfig::preset(base).unwrap();
        for how in [Shifted::Trunc, Shifted::Floor, Shifted::Rne, Shifted::Rto] {
            for fb in [3u32, 10, 24, 40] {
                let mut v = cfg.clone();
                v.shifted_out = how;
                v.frac_bits = Some(fb);
                variants.push(v);
            }
        }
        let mut v = cfg.clone();
        v.accumulator = "bf16".parse().unwrap();
        v.acc_rounding = "rdn".parse().unwrap();
        v.zero_sign = mxsim::datapath::ZeroSign::Ieee;
        variants.push(v);
        let mut v = cfg.clone();
        v.accumulator = "bf16".parse().unwrap();
        v.acc_rounding = "rdn".parse().unwrap();
        variants.push(v);
        let mut v = cfg.clone();
        v.acc_rounding = "rmm".parse().unwrap();
        v.align = mxsim::datapath::AlignRef::Products;
        variants.push(v);
        let mut v = cfg.clone();
        v.accumulator = "fp16".parse().unwrap();
        v.acc_rounding = "rup".parse().unwrap();
        v.ftz_outputs = true;
        variants.push(v);
    }
    for (vi, cfg) in variants.iter().enumerate() {
        for (sa, sb) in [
            (Scheme::Mxfp8E4m3, Scheme::Mxfp8E5m2),
            (Scheme::Mxfp4, Scheme::Mxfp4),
            (Scheme::Nvfp4, Scheme::Nvfp4),
        ] {
            let style = [Style::Plain, Style::Extreme, Style::Spread][vi % 3];
            let (m, n, k) = (4, 7, 200);
            let a = random_tensor(&mut rng, sa, m, k, style);
            let mut b = random_tensor(&mut rng, sb, n, k, style);
            add_cancellation(&a, &mut b);
            let c = random_c(&mut rng, m * n);
            check(cfg, &a, &b, Some(&c), &format!("variant {vi} {sa}x{sb}"));
        }
    }
}

/// The random data above is sensitive to the details a kernel could get wrong: for each
/// truncating preset, a datapath one window bit narrower or wider, or with another
/// treatment of shifted-out bits, gives different results on it. A fast kernel with such an
/// error would therefore fail the equality tests.
#[test]
fn random_data_detects_a_wrong_kernel() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for name in [
        "blackwell-mxf8f6f4",
        "blackwell-mxf4nvf4",
        "hopper-fp8",
        "mxdotp",
    ] {
        let cfg = DatapathConfig::preset(name).unwrap();
        let s = if name == "blackwell-mxf4nvf4" {
            Scheme::Mxfp4
        } else {
            Scheme::Mxfp8E4m3
        };
        // group sums of FP4 span few bits: the window shows with scales far apart
        let style = if name == "blackwell-mxf4nvf4" {
            Style::Wide
        } else {
            Style::Spread
        };
        let fb = cfg.frac_bits.unwrap();
        let other = match cfg.shifted_out {
            Shifted::Trunc => Shifted::Rto,
            _ => Shifted::Trunc,
        };
        let mut wrongs = Vec::new();
        for f in [fb - 1, fb + 1] {
            let mut w = cfg.clone();
            w.frac_bits = Some(f);
            wrongs.push(w);
        }
        let mut w = cfg.clone();
        w.shifted_out = other;
        wrongs.push(w);
        // a few random GEMMs (the same draws the equality tests use), with and without C
        let (m, n, k) = (6, 8, 256);
        let draws: Vec<_> = (0..6)
            .map(|d| {
                let a = random_tensor(&mut rng, s, m, k, style);
                let mut b = random_tensor(&mut rng, s, n, k, style);
                if d >= 3 {
                    // near cancellation: B rows negate A rows except for a few small codes,
                    // so the sum lands near the bottom of the window
                    add_cancellation(&a, &mut b);
                    for x in b.codes.iter_mut() {
                        if rng.gen_range(0..16) == 0 {
                            *x &= 0x87;
                        }
                    }
                }
                let c = (d % 2 == 0).then(|| random_c(&mut rng, m * n));
                let good = bits(&gemm(&a, &b, c.as_deref(), &cfg).unwrap());
                (a, b, c, good)
            })
            .collect();
        for w in &wrongs {
            let differs = draws.iter().any(|(a, b, c, good)| {
                &bits(&gemm_reference(a, b, c.as_deref(), w).unwrap()) != good
            });
            assert!(
                differs,
                "{name}: data does not distinguish frac_bits {:?} / {:?}",
                w.frac_bits, w.shifted_out
            );
        }
    }
}

/// Accumulators near MXDOTP's far-accumulator boundary (`acc_far_bits`): C sweeps exponents
/// so that `acc exponent - largest product exponent` falls on both sides of the reach in
/// different instructions, where the kernels must decide the rule from the exact largest
/// product exponent (a kernel deciding it from a bound that is off would differ here).
#[test]
fn fast_equals_reference_far_accumulator_boundary() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let base = DatapathConfig::preset("mxdotp").unwrap();
    let mut cfgs = vec![base.clone()];
    // the same rule on a Blackwell-shaped datapath (32 products per instruction) with a reach
    // shorter than the window, so that far accumulators meet products the window keeps whole
    for w in [4u32, 8, 20] {
        let mut bw = DatapathConfig::preset("blackwell-mxf8f6f4").unwrap();
        bw.acc_far_bits = Some(w);
        cfgs.push(bw);
    }
    for cfg in &cfgs {
        for (sa, sb) in [
            (Scheme::Mxfp8E4m3, Scheme::Mxfp8E4m3),
            (Scheme::Mxfp4, Scheme::Mxfp4),
            (Scheme::Mxfp8E5m2, Scheme::Mxfp4),
        ] {
            for style in [Style::Plain, Style::Spread] {
                let (m, n, k) = (8, 16, 96);
                let a = random_tensor(&mut rng, sa, m, k, style);
                let b = random_tensor(&mut rng, sb, n, k, style);
                let c: Vec<f32> = (0..m * n)
                    .map(|t| {
                        let e = -10 + (t as i32 % 90);
                        let s = if rng.gen::<bool>() { -1.0f32 } else { 1.0 };
                        s * rng.gen_range(1.0f32..2.0) * 2f32.powi(e)
                    })
                    .collect();
                check(cfg, &a, &b, Some(&c), &format!("far {sa}x{sb} {style:?}"));
            }
        }
    }
}
