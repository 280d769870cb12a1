//! Exhaustive tests of the scalar codecs against an independent decoder and an independent
//! exact encoder written here from the OCP MX v1.0 format table (REFERENCE section 1), not
//! from the crate's own `decode_parts` or format table.

use mxsim::format::{
    decode_f32, decode_f64, encode, encode_with_flags, CastOptions, Format, Overflow, Rounding,
};

/// Independent parameters, copied from the OCP table: (exponent bits, mantissa bits, bias,
/// signed, NaN/Inf convention).
#[derive(Clone, Copy, PartialEq)]
enum Sp {
    None,
    E4m3,
    Ieee,
}

#[derive(Clone, Copy)]
enum Ref {
    Float {
        e: u32,
        m: u32,
        bias: i32,
        signed: bool,
        sp: Sp,
    },
    Int8,
    E8m0,
}

fn params(f: Format) -> Ref {
    match f {
        Format::E4M3 => Ref::Float {
            e: 4,
            m: 3,
            bias: 7,
            signed: true,
            sp: Sp::E4m3,
        },
        Format::E5M2 => Ref::Float {
            e: 5,
            m: 2,
            bias: 15,
            signed: true,
            sp: Sp::Ieee,
        },
        Format::E3M2 => Ref::Float {
            e: 3,
            m: 2,
            bias: 3,
            signed: true,
            sp: Sp::None,
        },
        Format::E2M3 => Ref::Float {
            e: 2,
            m: 3,
            bias: 1,
            signed: true,
            sp: Sp::None,
        },
        Format::E2M1 => Ref::Float {
            e: 2,
            m: 1,
            bias: 1,
            signed: true,
            sp: Sp::None,
        },
        Format::UE4M3 => Ref::Float {
            e: 4,
            m: 3,
            bias: 7,
            signed: false,
            sp: Sp::E4m3,
        },
        Format::Int8 => Ref::Int8,
        Format::E8M0 => Ref::E8m0,
    }
}

fn two(k: i32) -> f64 {
    2f64.powi(k)
}

/// Independent decoder: the OCP formulas (normal: 2^(E-bias) * (1 + M/2^m); subnormal:
/// 2^(1-bias) * M/2^m; INT8: k * 2^-6; E8M0: 2^(code-127)).
fn ref_decode(f: Format, code: u8) -> f64 {
    match params(f) {
        Ref::Int8 => (code as i8) as f64 / 64.0,
        Ref::E8m0 => {
            if code == 0xFF {
                f64::NAN
            } else {
                two(code as i32 - 127)
            }
        }
        Ref::Float {
            e,
            m,
            bias,
            signed,
            sp,
        } => {
            let width = 1 + e + m;
            let c = if width < 8 {
                code & ((1u16 << width) - 1) as u8
            } else {
                code
            };
            let neg = signed && (c >> (e + m)) & 1 == 1;
            let ef = ((c >> m) as u32) & ((1 << e) - 1);
            let mf = (c as u32) & ((1 << m) - 1);
            let emax_field = (1 << e) - 1;
            if sp == Sp::E4m3 && ef == emax_field && mf == (1 << m) - 1 {
                return f64::NAN;
            }
            if sp == Sp::Ieee && ef == emax_field {
                return if mf != 0 {
                    f64::NAN
                } else if neg {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                };
            }
            let mag = if ef == 0 {
                two(1 - bias) * mf as f64 / two(m as i32)
            } else {
                two(ef as i32 - bias) * (1.0 + mf as f64 / two(m as i32))
            };
            if neg {
                -mag
            } else {
                mag
            }
        }
    }
}

#[test]
fn every_code_decodes_like_the_ocp_formulas() {
    for f in Format::ALL {
        for c in 0..=255u8 {
            let r = ref_decode(f, c);
            let a = decode_f64(f, c);
            let b = decode_f32(f, c);
            if r.is_nan() {
                assert!(a.is_nan() && b.is_nan(), "{f} {c:#04x}");
                assert!(f.is_nan_code(c));
            } else {
                assert_eq!(a.to_bits(), r.to_bits(), "{f} {c:#04x}: {a} vs {r}");
                assert_eq!(b.to_bits(), (r as f32).to_bits(), "{f} {c:#04x}");
                assert_eq!(b as f64, r, "{f} {c:#04x}: f32 decode must be exact");
            }
        }
    }
}

/// Spot values straight from the OCP table and REFERENCE section 1.
#[test]
fn table_constants() {
    let expect = [
        (Format::E4M3, 448.0, two(-6), two(-9)),
        (Format::E5M2, 57344.0, two(-14), two(-16)),
        (Format::E3M2, 28.0, 0.25, two(-4)),
        (Format::E2M3, 7.5, 1.0, 0.125),
        (Format::E2M1, 6.0, 1.0, 0.5),
        (Format::UE4M3, 448.0, two(-6), two(-9)),
    ];
    for (f, max, minn, mins) in expect {
        assert_eq!(f.max_normal(), max, "{f}");
        assert_eq!(f.min_normal(), minn, "{f}");
        assert_eq!(f.min_subnormal(), mins, "{f}");
    }
    assert_eq!(Format::Int8.max_normal(), 127.0 / 64.0);
    let emax = [
        (Format::E4M3, 8),
        (Format::E5M2, 15),
        (Format::E3M2, 4),
        (Format::E2M3, 2),
        (Format::E2M1, 2),
        (Format::Int8, 0),
    ];
    for (f, e) in emax {
        assert_eq!(f.emax(), e, "{f}");
    }
    let fp4: Vec<f64> = (0..8).map(|c| decode_f64(Format::E2M1, c)).collect();
    assert_eq!(fp4, vec![0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
    assert_eq!(decode_f64(Format::E8M0, 0), two(-127));
    assert_eq!(decode_f64(Format::E8M0, 254), two(127));
    assert_eq!(decode_f64(Format::E8M0, 127), 1.0);
    assert_eq!(decode_f64(Format::Int8, 0x80), -2.0);
    assert_eq!(decode_f64(Format::E5M2, 0x7C), f64::INFINITY);
    assert_eq!(decode_f64(Format::E5M2, 0xFC), f64::NEG_INFINITY);
    assert!(decode_f64(Format::E4M3, 0x7F).is_nan() && decode_f64(Format::E4M3, 0xFF).is_nan());
    assert_eq!(
        decode_f64(Format::UE4M3, 0xB8),
        1.0,
        "UE4M3 ignores the sign bit"
    );
}

/// One representable magnitude with the integer used for tie parity.
#[derive(Clone, Copy, Debug)]
struct Mag {
    v: f64,
    code: u8,
    parity: u32,
}

/// Non-negative finite magnitudes in increasing order, then the virtual next value above
/// the largest (what an unbounded exponent range would give), used for overflow decisions.
type LadderCache = std::collections::HashMap<(Format, bool, bool), (Vec<Mag>, Mag)>;

fn ladder(f: Format, neg: bool, allow_min: bool) -> (Vec<Mag>, Mag) {
    thread_local! {
        static CACHE: std::cell::RefCell<LadderCache> = Default::default();
    }
    CACHE.with(|c| {
        c.borrow_mut()
            .entry((f, neg, allow_min))
            .or_insert_with(|| ladder_uncached(f, neg, allow_min))
            .clone()
    })
}

fn ladder_uncached(f: Format, neg: bool, allow_min: bool) -> (Vec<Mag>, Mag) {
    match params(f) {
        Ref::Int8 => {
            let top = if neg && allow_min { 128 } else { 127 };
            let l = (0..=top)
                .map(|n: u32| Mag {
                    v: n as f64 / 64.0,
                    code: n as u8,
                    parity: n,
                })
                .collect();
            (
                l,
                Mag {
                    v: (top + 1) as f64 / 64.0,
                    code: 0,
                    parity: top + 1,
                },
            )
        }
        Ref::E8m0 => {
            let l = (0..=254u32)
                .map(|c| Mag {
                    v: two(c as i32 - 127),
                    code: c as u8,
                    parity: c,
                })
                .collect();
            (
                l,
                Mag {
                    v: two(128),
                    code: 0xFF,
                    parity: 255,
                },
            )
        }
        Ref::Float { e, m, .. } => {
            let mut l: Vec<Mag> = (0..(1u32 << (e + m)))
                .map(|c| Mag {
                    v: ref_decode(f, c as u8),
                    code: c as u8,
                    parity: c,
                })
                .filter(|x| x.v.is_finite())
                .collect();
            l.sort_by(|a, b| a.v.total_cmp(&b.v));
            let last = *l.last().unwrap();
            // next code after the max: same ulp as the max (one more mantissa step)
            let ulp = last.v - l[l.len() - 2].v;
            let virt = Mag {
                v: last.v + ulp,
                code: 0,
                parity: last.parity + 1,
            };
            (l, virt)
        }
    }
}

/// The independent reference encoder (documented policies of docs/formats.md).
fn ref_encode(f: Format, x: f64, o: &CastOptions) -> u8 {
    let p = params(f);
    let signed = !matches!(f, Format::E8M0 | Format::UE4M3);
    let neg = signed && x.is_sign_negative();
    let signbit: u8 = match p {
        Ref::Float { e, m, .. } if signed => 1 << (e + m),
        _ => 0,
    };
    let apply_sign = |mag: u8| -> u8 {
        match p {
            Ref::Int8 => {
                if neg {
                    (-(mag as i32)) as i8 as u8
                } else {
                    mag
                }
            }
            _ => {
                if neg {
                    mag | signbit
                } else {
                    mag
                }
            }
        }
    };
    if x.is_nan() {
        return match f {
            Format::E4M3 => apply_sign(0x7F),
            Format::E5M2 => apply_sign(0x7E),
            Format::E3M2 | Format::E2M3 | Format::E2M1 => {
                // ml_dtypes: zero with the inverted sign bit
                if x.is_sign_negative() {
                    0
                } else {
                    signbit
                }
            }
            Format::Int8 => 0,
            Format::E8M0 => 0xFF,
            Format::UE4M3 => 0x7F,
        };
    }
    if f == Format::E8M0 && (x <= 0.0 || x.is_sign_negative()) {
        return 0xFF;
    }
    let a = x.abs();
    let (l, virt) = ladder(f, neg, o.int8_allow_min);
    let max = *l.last().unwrap();
    let overflow = |a_inf: bool| -> u8 {
        let nonsat = o.overflow == Overflow::Nonsat && (a_inf || o.rounding != Rounding::Rtz);
        if !nonsat {
            return apply_sign(max.code);
        }
        match f {
            Format::E4M3 => apply_sign(0x7F),
            Format::E5M2 => apply_sign(0x7C),
            Format::E8M0 => 0xFF,
            Format::UE4M3 => 0x7F,
            _ => apply_sign(max.code),
        }
    };
    if a.is_infinite() {
        return overflow(true);
    }
    if f == Format::E8M0 && a < two(-127) {
        return 0;
    }
    if a >= virt.v {
        return overflow(false);
    }
    // neighbours lo <= a < hi
    let mut ext = l.clone();
    ext.push(virt);
    let i = ext.iter().rposition(|m| m.v <= a).unwrap();
    let lo = ext[i];
    let pick = if lo.v == a {
        lo
    } else {
        let hi = ext[i + 1];
        let mid = (lo.v + hi.v) / 2.0;
        match o.rounding {
            Rounding::Rtz => lo,
            Rounding::Rna => {
                if a >= mid {
                    hi
                } else {
                    lo
                }
            }
            Rounding::Rne => {
                if a > mid || (a == mid && hi.parity % 2 == 0) {
                    hi
                } else {
                    lo
                }
            }
            Rounding::Stochastic => unreachable!(),
        }
    };
    if pick.parity == virt.parity && pick.v == virt.v {
        return overflow(false);
    }
    if o.flush_subnormals {
        if let Ref::Float { e: _, m, bias, .. } = p {
            if pick.v != 0.0 && pick.v < two(1 - bias) {
                let _ = m;
                return apply_sign(0);
            }
        }
    }
    apply_sign(pick.code)
}

fn next_up(x: f64) -> f64 {
    if x == 0.0 {
        f64::from_bits(1)
    } else {
        f64::from_bits(x.to_bits() + 1)
    }
}
fn next_down(x: f64) -> f64 {
    f64::from_bits(x.to_bits() - 1)
}
fn f32_up(x: f64) -> f64 {
    let y = x as f32;
    assert_eq!(y as f64, x);
    f32::from_bits(if y == 0.0 { 1 } else { y.to_bits() + 1 }) as f64
}
fn f32_down(x: f64) -> f64 {
    let y = x as f32;
    if y == 0.0 {
        return 0.0;
    }
    f32::from_bits(y.to_bits() - 1) as f64
}

/// Every representable value, every midpoint of neighbours (including the midpoint between
/// the largest value and the first value past it), the f64 and f32 values just either side of
/// each midpoint, quarter points, and far-out values, both signs.
fn probe_values(f: Format) -> Vec<f64> {
    let (l, virt) = ladder(f, false, false);
    let mut ext = l.clone();
    ext.push(virt);
    let mut v = Vec::new();
    for w in ext.windows(2) {
        let (lo, hi) = (w[0].v, w[1].v);
        let mid = (lo + hi) / 2.0;
        v.extend([
            lo,
            hi,
            mid,
            next_up(mid),
            next_down(mid),
            (lo + mid) / 2.0,
            (mid + hi) / 2.0,
        ]);
        if (mid as f32) as f64 == mid && mid > f32::MIN_POSITIVE as f64 * 2.0 {
            v.extend([f32_up(mid), f32_down(mid)]);
            let up2 = f32_up(f32_up(mid));
            v.push(up2);
        }
        if lo > 0.0 {
            v.extend([next_up(lo), next_down(lo)]);
        }
    }
    let top = virt.v;
    v.extend([
        top * 1.5,
        top * 2.0,
        top * 1e10,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e-300,
        5e-324,
    ]);
    v.extend([f32::MAX as f64, f32::MIN_POSITIVE as f64, 1.4e-45f32 as f64]);
    let neg: Vec<f64> = v.iter().map(|x| -x).collect();
    v.extend(neg);
    v.extend([
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
    ]);
    v
}

fn check_all(f: Format, o: &CastOptions) {
    for x in probe_values(f) {
        let got = encode(f, x, o, 0);
        let want = ref_encode(f, x, o);
        assert_eq!(
            got, want,
            "{f} {:?} {:?} flush={} allow_min={}: x = {x:e} ({:#018x}) gave {got:#04x}, expected {want:#04x}",
            o.rounding,
            o.overflow,
            o.flush_subnormals,
            o.int8_allow_min,
            x.to_bits()
        );
    }
}

#[test]
fn encode_matches_reference_every_mode() {
    for f in Format::ALL {
        for rounding in [Rounding::Rne, Rounding::Rna, Rounding::Rtz] {
            for overflow in [Overflow::Saturate, Overflow::Nonsat] {
                for flush in [false, true] {
                    for allow_min in [false, true] {
                        let o = CastOptions {
                            rounding,
                            overflow,
                            flush_subnormals: flush,
                            int8_allow_min: allow_min,
                            seed: 0,
                        };
                        check_all(f, &o);
                    }
                }
            }
        }
    }
}

/// Every f32 subnormal input pattern 0x00000001..0x007FFFFF (and its negation) into each
/// format, checked against the reference (stride 1 for the top bits; every pattern for E8M0,
/// where subnormals are inside the range).
#[test]
fn f32_subnormal_inputs() {
    let o = CastOptions::new(Rounding::Rne, Overflow::Nonsat);
    let orna = CastOptions::new(Rounding::Rna, Overflow::Nonsat);
    for bits in (1u32..0x0080_0000).step_by(97).chain([
        0x0040_0000,
        0x0060_0000,
        0x005F_FFFF,
        0x0040_0001,
        0x007F_FFFF,
    ]) {
        let x = f32::from_bits(bits) as f64;
        for f in Format::ALL {
            for o in [&o, &orna] {
                assert_eq!(encode(f, x, o, 0), ref_encode(f, x, o), "{f} {bits:#x}");
                assert_eq!(encode(f, -x, o, 0), ref_encode(f, -x, o), "{f} -{bits:#x}");
            }
        }
    }
}

/// Decode then encode gives the same code for every non-NaN code, every format, every
/// deterministic rounding mode and both overflow policies (E5M2's Inf codes only under
/// nonsat; -0 of INT8 does not exist).
#[test]
fn decode_encode_identity_every_code() {
    for f in Format::ALL {
        for c in 0..f.code_count() {
            let c = c as u8;
            let v = decode_f64(f, c);
            if v.is_nan() || (f == Format::UE4M3 && c >= 0x80) {
                continue;
            }
            for r in [
                Rounding::Rne,
                Rounding::Rna,
                Rounding::Rtz,
                Rounding::Stochastic,
            ] {
                for ov in [Overflow::Saturate, Overflow::Nonsat] {
                    if v.is_infinite() && ov == Overflow::Saturate {
                        continue;
                    }
                    let mut o = CastOptions::new(r, ov);
                    o.int8_allow_min = true;
                    let (code, flags) = encode_with_flags(f, v, &o, c as u64);
                    assert_eq!(code, c, "{f} {c:#04x} {r:?} {ov:?}");
                    assert!(!flags.inexact, "{f} {c:#04x}: exact value flagged inexact");
                }
            }
        }
    }
}

/// Stochastic rounding: results are always one of the two neighbours; the frequency of
/// rounding up matches the fraction (within 5 sigma over 20000 draws); exact values stay
/// exact; the same seed reproduces the same codes and another seed gives others.
#[test]
fn stochastic_statistics_and_determinism() {
    for f in Format::ELEMENTS {
        let (l, _) = ladder(f, false, false);
        for w in l.windows(2).step_by(7) {
            let (lo, hi) = (w[0], w[1]);
            for p in [0.1, 0.25, 0.5, 0.8] {
                let x = lo.v + p * (hi.v - lo.v);
                let o = CastOptions {
                    seed: 42,
                    ..CastOptions::new(Rounding::Stochastic, Overflow::Saturate)
                };
                let n = 20000;
                let codes: Vec<u8> = (0..n).map(|i| encode(f, x, &o, i)).collect();
                let ups = codes.iter().filter(|&&c| c == hi.code).count();
                assert!(
                    codes.iter().all(|&c| c == lo.code || c == hi.code),
                    "{f} {x}"
                );
                let sigma = (n as f64 * p * (1.0 - p)).sqrt();
                let dev = (ups as f64 - n as f64 * p).abs();
                assert!(dev < 5.0 * sigma, "{f} {x}: {ups} ups of {n}, p = {p}");
                let again: Vec<u8> = (0..n).map(|i| encode(f, x, &o, i)).collect();
                assert_eq!(codes, again, "reproducible");
                let o2 = CastOptions { seed: 43, ..o };
                let other: Vec<u8> = (0..n).map(|i| encode(f, x, &o2, i)).collect();
                assert_ne!(codes, other, "another seed gives another stream");
            }
        }
    }
}

/// The documented NaN and Inf policy for every format.
#[test]
fn nan_inf_policy() {
    let sat = CastOptions::new(Rounding::Rne, Overflow::Saturate);
    let non = CastOptions::new(Rounding::Rne, Overflow::Nonsat);
    let nan = f64::NAN;
    let nnan = -f64::NAN;
    // NaN
    assert_eq!(encode(Format::E4M3, nan, &sat, 0), 0x7F);
    assert_eq!(encode(Format::E4M3, nnan, &sat, 0), 0xFF);
    assert_eq!(encode(Format::E5M2, nan, &sat, 0), 0x7E);
    assert_eq!(
        encode(Format::E3M2, nan, &sat, 0),
        0x20,
        "FP6 NaN -> -0 (ml_dtypes)"
    );
    assert_eq!(encode(Format::E3M2, nnan, &sat, 0), 0x00);
    assert_eq!(encode(Format::E2M3, nan, &sat, 0), 0x20);
    assert_eq!(
        encode(Format::E2M1, nan, &sat, 0),
        0x08,
        "FP4 NaN -> -0 (ml_dtypes)"
    );
    assert_eq!(encode(Format::E2M1, nnan, &sat, 0), 0x00);
    assert_eq!(encode(Format::Int8, nan, &sat, 0), 0x00);
    assert_eq!(encode(Format::E8M0, nan, &sat, 0), 0xFF);
    assert_eq!(encode(Format::UE4M3, nan, &sat, 0), 0x7F);
    // Inf
    let inf = f64::INFINITY;
    assert_eq!(encode(Format::E4M3, inf, &sat, 0), 0x7E);
    assert_eq!(encode(Format::E4M3, inf, &non, 0), 0x7F);
    assert_eq!(encode(Format::E4M3, -inf, &non, 0), 0xFF);
    assert_eq!(encode(Format::E5M2, inf, &sat, 0), 0x7B);
    assert_eq!(encode(Format::E5M2, inf, &non, 0), 0x7C);
    assert_eq!(encode(Format::E5M2, -inf, &non, 0), 0xFC);
    assert_eq!(
        encode(Format::E2M1, inf, &non, 0),
        0x07,
        "FP4 has no Inf: saturates"
    );
    assert_eq!(encode(Format::E2M1, -inf, &non, 0), 0x0F);
    assert_eq!(encode(Format::E3M2, inf, &non, 0), 0x1F);
    assert_eq!(encode(Format::Int8, -inf, &sat, 0), 0x81);
    assert_eq!(encode(Format::E8M0, inf, &non, 0), 0xFF);
    assert_eq!(encode(Format::E8M0, inf, &sat, 0), 0xFE);
    assert_eq!(encode(Format::E8M0, -1.0, &sat, 0), 0xFF);
    assert_eq!(encode(Format::E8M0, 0.0, &sat, 0), 0xFF);
    // overflow boundaries: E4M3 464 (tie between 448 = 0x7E, even, and 480) stays 448;
    // anything above becomes NaN under nonsat. E5M2 61440 (tie between 57344 = 0x7B, odd,
    // and 65536) overflows to Inf.
    assert_eq!(encode(Format::E4M3, 464.0, &non, 0), 0x7E);
    assert_eq!(encode(Format::E4M3, 464.0001, &non, 0), 0x7F);
    assert_eq!(encode(Format::E4M3, 1e6, &sat, 0), 0x7E);
    assert_eq!(encode(Format::E5M2, 61440.0, &non, 0), 0x7C);
    assert_eq!(encode(Format::E5M2, 61439.99, &non, 0), 0x7B);
}

/// INT8: symmetric by default (-2 saturates to -127 = 0x81), -128 (0x80) only when allowed;
/// 2^-6 steps; RNE ties to even k.
#[test]
fn int8_symmetric_and_min() {
    let mut o = CastOptions::new(Rounding::Rne, Overflow::Saturate);
    assert_eq!(encode(Format::Int8, -2.0, &o, 0), 0x81);
    assert_eq!(encode(Format::Int8, 2.0, &o, 0), 0x7F);
    assert_eq!(encode(Format::Int8, 1.0, &o, 0), 64);
    assert_eq!(encode(Format::Int8, -1.0, &o, 0), 0xC0);
    // 1.5/64 is a tie between k = 1 and k = 2: RNE gives 2
    assert_eq!(encode(Format::Int8, 1.5 / 64.0, &o, 0), 2);
    assert_eq!(encode(Format::Int8, 2.5 / 64.0, &o, 0), 2);
    // regressions: -0.0 is INT8 code 0 (0x80 would be -2); huge magnitudes saturate in
    // two's complement (were sign | 127 = 0xFF = -1/64, and a shift overflow)
    assert_eq!(encode(Format::Int8, -0.0, &o, 0), 0x00);
    assert_eq!(encode(Format::Int8, -1e300, &o, 0), 0x81);
    assert_eq!(encode(Format::Int8, f64::MAX, &o, 0), 0x7F);
    assert_eq!(encode(Format::Int8, f64::NEG_INFINITY, &o, 0), 0x81);
    assert_eq!(encode(Format::Int8, -4.0, &o, 0), 0x81);
    o.int8_allow_min = true;
    assert_eq!(encode(Format::Int8, -1e300, &o, 0), 0x80);
    assert_eq!(encode(Format::Int8, -2.0, &o, 0), 0x80);
    assert_eq!(encode(Format::Int8, -3.0, &o, 0), 0x80);
    assert_eq!(
        encode(Format::Int8, 2.0, &o, 0),
        0x7F,
        "+2 is never representable"
    );
}

/// E8M0 and UE4M3 details: E8M0 ties go to the even code under RNE and up under RNA; values
/// below 2^-127 give code 0; UE4M3 encodes |x|.
#[test]
fn e8m0_and_ue4m3() {
    let rne = CastOptions::new(Rounding::Rne, Overflow::Nonsat);
    let rna = CastOptions::new(Rounding::Rna, Overflow::Nonsat);
    // 1.5 = tie between 2^0 (code 127, odd) and 2^1 (code 128, even)
    assert_eq!(encode(Format::E8M0, 1.5, &rne, 0), 128);
    assert_eq!(encode(Format::E8M0, 1.5, &rna, 0), 128);
    // 3 = tie between 2^1 (code 128, even) and 2^2 (129)
    assert_eq!(encode(Format::E8M0, 3.0, &rne, 0), 128);
    assert_eq!(encode(Format::E8M0, 3.0, &rna, 0), 129);
    assert_eq!(encode(Format::E8M0, two(-130), &rna, 0), 0);
    assert_eq!(encode(Format::E8M0, two(-127), &rna, 0), 0);
    assert_eq!(encode(Format::E8M0, two(127), &rna, 0), 254);
    assert_eq!(encode(Format::E8M0, 1.5 * two(127), &rna, 0), 0xFF);
    assert_eq!(encode(Format::UE4M3, -1.0, &rne, 0), 0x38);
    assert_eq!(encode(Format::UE4M3, 448.0, &rne, 0), 0x7E);
    assert_eq!(encode(Format::UE4M3, two(-9), &rne, 0), 0x01);
}
