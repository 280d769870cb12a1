//! The datapath against independent computations: exhaustive products of every code pair,
//! the `exact` preset against big-integer rational arithmetic, fast paths against the general
//! path, thread-count invariance, GEMM against per-output dot, and accuracy ordering.

use mxsim::datapath::{dot_rows, gemm, gemm_reference, preset_names, DatapathConfig};
use mxsim::format::{decode_f64, Format};
use mxsim::mx::{MxTensor, Scheme};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn scheme_of(f: Format) -> Scheme {
    match f {
        Format::E4M3 => Scheme::Mxfp8E4m3,
        Format::E5M2 => Scheme::Mxfp8E5m2,
        Format::E3M2 => Scheme::Mxfp6E3m2,
        Format::E2M3 => Scheme::Mxfp6E2m3,
        Format::E2M1 => Scheme::Mxfp4,
        _ => Scheme::Mxint8,
    }
}

/// A tensor of `rows x 1`: every code of the format as its own row, scale 1.
fn all_codes(f: Format) -> MxTensor {
    let n = f.code_count() as usize;
    MxTensor {
        scheme: scheme_of(f),
        block_size: 32,
        rows: n,
        cols: 1,
        codes: (0..n).map(|c| c as u8).collect(),
        scales: vec![127; n],
        global_scale: 1.0,
        clipped_blocks: 0,
    }
}

/// Every pair of codes of every pair of element formats (FP8 E4M3/E5M2, FP6 E3M2/E2M3, FP4,
/// INT8): a one-element dot product under every preset equals the product computed
/// independently in f64 (exact: at most 16 significant bits) and converted to f32 by the
/// hardware's conversion (RNE; one product is exact in FP32 so the rounding mode does not
/// matter). NaN elements give NaN; E5M2 Inf times zero gives NaN. MXDOTP values INT8 as plain
/// integers, i.e. 2^6 times the OCP value per INT8 operand.
#[test]
fn exhaustive_products_all_code_pairs_all_presets() {
    for name in preset_names() {
        let cfg = DatapathConfig::preset(name).unwrap();
        for fa in Format::ELEMENTS {
            for fb in Format::ELEMENTS {
                let (ta, tb) = (all_codes(fa), all_codes(fb));
                let d = gemm(&ta, &tb, None, &cfg).unwrap();
                let n = tb.rows;
                for i in 0..ta.rows {
                    for j in 0..n {
                        let mut va = decode_f64(fa, i as u8);
                        let mut vb = decode_f64(fb, j as u8);
                        if name == "mxdotp" {
                            if fa == Format::Int8 {
                                va *= 64.0;
                            }
                            if fb == Format::Int8 {
                                vb *= 64.0;
                            }
                        }
                        let want = va * vb;
                        let got = d[i * n + j];
                        if want.is_nan() {
                            assert!(got.is_nan(), "{name} {fa:?}x{fb:?} {i:#x} {j:#x}");
                        } else if want == 0.0 {
                            assert_eq!(got, 0.0, "{name} {fa:?}x{fb:?} {i:#x} {j:#x}");
                        } else {
                            assert_eq!(got, want as f32, "{name} {fa:?}x{fb:?} {i:#x} {j:#x}");
                        }
                    }
                }
            }
        }
    }
}

fn rat_of_f64(x: f64) -> BigRational {
    BigRational::from_float(x).expect("finite")
}

/// Round a rational to FP32 with round-to-nearest-even, independently of the crate: find the
/// binade by comparing with powers of two, scale to a 24-bit integer, round, rebuild the bits.
fn rational_to_f32_rne(x: &BigRational) -> u32 {
    if x.is_zero() {
        return 0;
    }
    let neg = x.is_negative();
    let a = x.abs();
    let two = BigRational::from_integer(BigInt::from(2));
    let pow2 = |e: i32| -> BigRational {
        if e >= 0 {
            BigRational::from_integer(BigInt::one() << e as usize)
        } else {
            BigRational::new(BigInt::one(), BigInt::one() << (-e) as usize)
        }
    };
    let mut e: i32 = 0;
    while a >= pow2(e + 1) {
        e += 1;
    }
    while a < pow2(e) {
        e -= 1;
    }
    let q = e.max(-126) - 23;
    let scaled = &a / pow2(q);
    let fl = scaled.floor();
    let frac = &scaled - &fl;
    let half = BigRational::one() / &two;
    let mut n = fl.to_integer();
    if frac > half || (frac == half && (&n % 2u32) == BigInt::one()) {
        n += 1;
    }
    let mut q = q;
    if n == (BigInt::one() << 24usize) {
        n >>= 1usize;
        q += 1;
    }
    let s = (neg as u32) << 31;
    if q + 23 > 127 {
        return s | 0x7F80_0000;
    }
    let n: u32 = n.try_into().unwrap();
    if n < (1 << 23) {
        s | n
    } else {
        s | ((q + 23 + 127) as u32) << 23 | (n & 0x7F_FFFF)
    }
}

fn random_tensor(
    rng: &mut ChaCha8Rng,
    scheme: Scheme,
    rows: usize,
    cols: usize,
    extreme: bool,
) -> MxTensor {
    let f = scheme.element();
    let bs = scheme.default_block();
    let bpr = cols.div_ceil(bs);
    let codes = (0..rows * cols)
        .map(|_| loop {
            let c = rng.gen_range(0..f.code_count()) as u8;
            if !decode_f64(f, c).is_nan() && decode_f64(f, c).is_finite() {
                break c;
            }
        })
        .collect();
    let scales = (0..rows * bpr)
        .map(|_| {
            if scheme == Scheme::Nvfp4 {
                rng.gen_range(0..0x7Fu8)
            } else if extreme {
                match rng.gen_range(0..4) {
                    0 => rng.gen_range(0..8),
                    1 => rng.gen_range(247..=254),
                    _ => rng.gen_range(0..=254),
                }
            } else {
                rng.gen_range(117..=137)
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

/// The exact value of element (r, c) as a rational.
fn rat_value(t: &MxTensor, r: usize, c: usize) -> BigRational {
    let e = rat_of_f64(decode_f64(t.scheme.element(), t.codes[r * t.cols + c]));
    let s = rat_of_f64(decode_f64(
        t.scheme.scale_format(),
        t.scales[r * t.blocks_per_row() + c / t.block_size],
    ));
    e * s
}

/// The `exact` preset equals the rational sum `sum_k A[i,k] B[j,k] + C[i,j]` rounded to FP32
/// RNE by an independent big-rational rounding, on random blocks with extreme E8M0 scales
/// (2^-127 .. 2^127), partial trailing blocks, mixed element formats and NVFP4.
#[test]
fn exact_preset_equals_big_rational() {
    let cfg = DatapathConfig::preset("exact").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let pairs = [
        (Scheme::Mxfp8E4m3, Scheme::Mxfp8E4m3),
        (Scheme::Mxfp8E5m2, Scheme::Mxfp4),
        (Scheme::Mxfp6E3m2, Scheme::Mxfp6E2m3),
        (Scheme::Mxint8, Scheme::Mxfp8E4m3),
        (Scheme::Mxfp4, Scheme::Mxfp4),
        (Scheme::Nvfp4, Scheme::Nvfp4),
    ];
    for (round, &(sa, sb)) in pairs.iter().cycle().take(24).enumerate() {
        let k = [1, 31, 32, 45, 96, 200][round % 6];
        let extreme = round % 2 == 0;
        let (m, n) = (3, 4);
        let a = random_tensor(&mut rng, sa, m, k, extreme);
        let b = random_tensor(&mut rng, sb, n, k, extreme);
        let c: Vec<f32> = (0..m * n)
            .map(|_| f32::from_bits(rng.gen::<u32>() & 0xBFFF_FFFF))
            .collect();
        let d = gemm(&a, &b, Some(&c), &cfg).unwrap();
        for i in 0..m {
            for j in 0..n {
                let mut s = rat_of_f64(c[i * n + j] as f64);
                for kk in 0..k {
                    s += rat_value(&a, i, kk) * rat_value(&b, j, kk);
                }
                let want = rational_to_f32_rne(&s);
                let got = d[i * n + j].to_bits();
                // an exact zero sum: IEEE sign rules, compare as values
                if s.is_zero() {
                    assert_eq!(f32::from_bits(got), 0.0);
                } else {
                    assert_eq!(
                        got, want,
                        "{sa}x{sb} k={k} ({i},{j}): got {got:#010x} want {want:#010x}"
                    );
                }
            }
        }
    }
}

/// The GEMM (with any fast path) equals the general path output by output (`dot_rows`), for
/// every preset and several format pairs, with C.
#[test]
fn gemm_equals_per_output_dot_every_preset() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for name in preset_names() {
        let cfg = DatapathConfig::preset(name).unwrap();
        for (sa, sb) in [
            (Scheme::Mxfp8E4m3, Scheme::Mxfp8E4m3),
            (Scheme::Mxfp4, Scheme::Mxfp4),
            (Scheme::Mxfp8E5m2, Scheme::Mxfp6E2m3),
            (Scheme::Mxint8, Scheme::Mxint8),
        ] {
            let (m, n, k) = (5, 6, 160);
            let a = random_tensor(&mut rng, sa, m, k, false);
            let b = random_tensor(&mut rng, sb, n, k, false);
            let c: Vec<f32> = (0..m * n).map(|_| rng.gen_range(-4.0f32..4.0)).collect();
            let d = gemm(&a, &b, Some(&c), &cfg).unwrap();
            let r = gemm_reference(&a, &b, Some(&c), &cfg).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let one = dot_rows(&a, i, &b, j, c[i * n + j], &cfg).unwrap();
                    assert_eq!(
                        d[i * n + j].to_bits(),
                        one.to_bits(),
                        "{name} {sa}x{sb} ({i},{j})"
                    );
                    assert_eq!(
                        r[i * n + j].to_bits(),
                        one.to_bits(),
                        "{name} {sa}x{sb} ({i},{j})"
                    );
                }
            }
        }
    }
}

/// Results are bit-identical whatever the number of rayon threads (1, 2, 3, 5).
#[test]
fn thread_count_invariance() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let a = random_tensor(&mut rng, Scheme::Mxfp8E4m3, 37, 96, false);
    let b = random_tensor(&mut rng, Scheme::Mxfp8E4m3, 29, 96, false);
    let a4 = random_tensor(&mut rng, Scheme::Mxfp4, 37, 128, false);
    let b4 = random_tensor(&mut rng, Scheme::Mxfp4, 29, 128, false);
    for name in preset_names() {
        let cfg = DatapathConfig::preset(name).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let x = gemm(&a, &b, None, &cfg).unwrap();
                let y = gemm(&a4, &b4, None, &cfg).unwrap();
                (
                    x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            })
        };
        let base = run(1);
        for t in [2, 3, 5] {
            assert_eq!(run(t), base, "{name} with {t} threads");
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// No preset is more accurate than `exact` on average: over random MXFP8/MXFP4 GEMMs,
        /// the mean absolute error against the exact rational result is never smaller than
        /// the exact preset's (which is correctly rounded, so this holds element-wise too).
        #[test]
        fn no_preset_beats_exact(seed in 0u64..1_000_000, fp4 in any::<bool>()) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let s = if fp4 { Scheme::Mxfp4 } else { Scheme::Mxfp8E4m3 };
            let (m, n, k) = (3, 3, 256);
            let a = random_tensor(&mut rng, s, m, k, false);
            let b = random_tensor(&mut rng, s, n, k, false);
            let mut truth = vec![BigRational::zero(); m * n];
            for i in 0..m {
                for j in 0..n {
                    for kk in 0..k {
                        truth[i * n + j] += rat_value(&a, i, kk) * rat_value(&b, j, kk);
                    }
                }
            }
            let err = |d: &[f32]| -> BigRational {
                d.iter().zip(&truth).map(|(x, t)| (rat_of_f64(*x as f64) - t).abs())
                    .fold(BigRational::zero(), |acc, e| acc + e)
            };
            let e_exact = err(&gemm(&a, &b, None, &DatapathConfig::preset("exact").unwrap()).unwrap());
            for name in preset_names() {
                if name == "mxdotp" { continue; } // INT8-free data: identical semantics apply
                let e = err(&gemm(&a, &b, None, &DatapathConfig::preset(name).unwrap()).unwrap());
                prop_assert!(e >= e_exact, "{} more accurate than exact", name);
            }
            let e = err(&gemm(&a, &b, None, &DatapathConfig::preset("mxdotp").unwrap()).unwrap());
            prop_assert!(e >= e_exact);
        }
    }
}
