//! The generic codec: one decoder and one encoder driven by [`FormatSpec`] parameters.

use super::{CastOptions, Decoded, Flags, Format, Kind, Overflow, Rounding, Specials};

/// Decode a code into exact integer parts. Bits above the format's width are ignored; for
/// UE4M3 the sign bit is ignored.
pub fn decode_parts(fmt: Format, code: u8) -> Decoded {
    let s = fmt.spec();
    let code = if s.bits < 8 {
        code & ((1u16 << s.bits) - 1) as u8
    } else {
        code
    };
    match s.kind {
        Kind::PowerOfTwo => {
            if code == 0xFF {
                Decoded::Nan
            } else {
                Decoded::Finite {
                    neg: false,
                    sig: 1,
                    exp: code as i32 - s.bias,
                }
            }
        }
        Kind::Int => {
            let v = code as i8 as i32;
            if v == 0 {
                Decoded::Zero { neg: false }
            } else {
                Decoded::Finite {
                    neg: v < 0,
                    sig: v.unsigned_abs(),
                    exp: s.int_exp,
                }
            }
        }
        Kind::Float => {
            let mag_bits = s.exp_bits + s.man_bits;
            let neg = s.signed && (code >> mag_bits) & 1 == 1;
            let mag = code as u32 & ((1 << mag_bits) - 1);
            let e = mag >> s.man_bits;
            let m = mag & ((1 << s.man_bits) - 1);
            let e_all = (1 << s.exp_bits) - 1;
            match s.specials {
                Specials::NanAllOnes if mag == (1 << mag_bits) - 1 => return Decoded::Nan,
                Specials::Ieee if e == e_all => {
                    return if m == 0 {
                        Decoded::Inf { neg }
                    } else {
                        Decoded::Nan
                    }
                }
                _ => {}
            }
            if mag == 0 {
                Decoded::Zero { neg }
            } else if e == 0 {
                Decoded::Finite {
                    neg,
                    sig: m,
                    exp: 1 - s.bias - s.man_bits as i32,
                }
            } else {
                Decoded::Finite {
                    neg,
                    sig: (1 << s.man_bits) | m,
                    exp: e as i32 - s.bias - s.man_bits as i32,
                }
            }
        }
    }
}

/// Decode a code exactly to f64.
pub fn decode_f64(fmt: Format, code: u8) -> f64 {
    match decode_parts(fmt, code) {
        Decoded::Zero { neg } => {
            if neg {
                -0.0
            } else {
                0.0
            }
        }
        Decoded::Finite { neg, sig, exp } => {
            let v = sig as f64 * super::pow2(exp);
            if neg {
                -v
            } else {
                v
            }
        }
        Decoded::Inf { neg } => {
            if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        Decoded::Nan => f64::NAN,
    }
}

/// Decode a code exactly to f32 (every value of every format is an f32; E8M0's 2^-127 is an
/// f32 subnormal).
pub fn decode_f32(fmt: Format, code: u8) -> f32 {
    decode_f64(fmt, code) as f32
}

/// 32 reproducible random bits for stochastic rounding of element `index` under `seed`
/// (SplitMix64 of the pair): independent of thread count and of how work is split.
pub fn stochastic_bits(seed: u64, index: u64) -> u32 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index)
        .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// Split a finite nonzero |x| into (m, e) with |x| = m * 2^e, m < 2^53.
fn split(a: f64) -> (u64, i32) {
    let b = a.to_bits();
    let be = ((b >> 52) & 0x7FF) as i32;
    let frac = b & ((1u64 << 52) - 1);
    if be == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), be - 1075)
    }
}

/// Exponent of the leading bit of m * 2^e (m > 0).
fn lead_exp(m: u64, e: i32) -> i32 {
    63 - m.leading_zeros() as i32 + e
}

/// Round m * 2^e to a multiple of 2^q: returns (n, inexact) with the result n * 2^q.
/// `odd_if_down` tells whether keeping `n` (rounding down) gives an odd code, for RNE ties.
fn round_to_quantum(
    m: u64,
    e: i32,
    q: i32,
    mode: Rounding,
    rbits: u32,
    odd_if_down: impl Fn(u64) -> bool,
) -> (u64, bool) {
    if e >= q {
        // exact, no bits discarded (shift bounded by the callers' ranges)
        return (m << (e - q) as u32, false);
    }
    let s = (q - e) as u32;
    let (n, rem, half) = if s >= 64 {
        (0u64, m as u128, 1u128 << (s.min(127) - 1))
    } else {
        (m >> s, (m & ((1u64 << s) - 1)) as u128, 1u128 << (s - 1))
    };
    if rem == 0 {
        return (n, false);
    }
    let up = match mode {
        Rounding::Rtz => false,
        Rounding::Rna => rem >= half && s < 128,
        Rounding::Rne => s < 128 && (rem > half || (rem == half && odd_if_down(n))),
        Rounding::Stochastic => {
            // the top 32 bits of the discarded fraction, compared with 32 random bits
            let frac32 = if s <= 32 {
                (rem << (32 - s)) as u64
            } else if s < 128 {
                (rem >> (s - 32)) as u64
            } else {
                0
            };
            (rbits as u64) < frac32
        }
    };
    (n + up as u64, true)
}

/// Encode `x` into `fmt` with the given options; `index` selects the stochastic-rounding bits.
pub fn encode(fmt: Format, x: f64, opts: &CastOptions, index: u64) -> u8 {
    encode_with_flags(fmt, x, opts, index).0
}

/// Encode `x` into `fmt`, returning the code and the exception flags.
///
/// Policies (documented in `docs/formats.md`):
/// - NaN: E4M3 gives S.1111.111 and E5M2 S.11111.10 (sign kept); formats without NaN (FP6,
///   FP4) give a zero whose sign bit is the inverse of the NaN's sign bit, as ml_dtypes does;
///   INT8 gives 0; E8M0 gives 0xFF; UE4M3 gives 0x7F.
/// - Inf: E5M2 keeps it under `nonsat`; otherwise it overflows (saturates, or NaN for E4M3 under
///   `nonsat`).
/// - Negative values and zero into E8M0 (which has neither) give NaN (0xFF); values below
///   2^-127 give code 0 (2^-127). UE4M3 encodes |x|.
pub fn encode_with_flags(fmt: Format, x: f64, opts: &CastOptions, index: u64) -> (u8, Flags) {
    let s = fmt.spec();
    let mut flags = Flags::default();
    let rbits = if opts.rounding == Rounding::Stochastic {
        stochastic_bits(opts.seed, index)
    } else {
        0
    };
    let neg = s.signed && x.is_sign_negative();
    let sign = if neg { fmt.sign_mask() } else { 0 };
    let max_code = fmt.max_code();

    if x.is_nan() {
        flags.invalid = true;
        let code = match (s.kind, s.specials) {
            (Kind::PowerOfTwo, _) => 0xFF,
            (_, Specials::NanAllOnes) => sign | 0x7F,
            (_, Specials::Ieee) => sign | (max_code + 1 + (1 << (s.man_bits - 1))),
            (Kind::Int, _) => 0,
            _ => (!sign) & fmt.sign_mask(),
        };
        return (code, flags);
    }
    if s.kind == Kind::PowerOfTwo && (x <= 0.0 || x.is_sign_negative()) {
        flags.invalid = true;
        return (0xFF, flags);
    }
    let a = x.abs();
    let overflow_code = |flags: &mut Flags, rtz_finite: bool| -> u8 {
        flags.overflow = true;
        flags.inexact = true;
        if s.kind == Kind::Int {
            // two's complement: +127, or -127 (-128 when allowed); never sign | magnitude
            let limit = if neg && opts.int8_allow_min { 128 } else { 127 };
            return (if neg { -limit } else { limit }) as i8 as u8;
        }
        if opts.overflow == Overflow::Saturate || rtz_finite {
            return sign | max_code;
        }
        match (s.kind, s.specials) {
            (Kind::PowerOfTwo, _) => 0xFF,
            (_, Specials::NanAllOnes) => sign | 0x7F,
            (_, Specials::Ieee) => sign | (max_code + 1),
            _ => sign | max_code,
        }
    };
    if a.is_infinite() {
        flags.infinite = true;
        if s.specials == Specials::Ieee && opts.overflow == Overflow::Nonsat {
            return (sign | (max_code + 1), flags);
        }
        let c = overflow_code(&mut flags, false);
        flags.inexact = false;
        return (c, flags);
    }
    if a == 0.0 {
        // two's complement INT8 has a single zero (0x80 is -128 * 2^-6, not -0)
        let zero = if s.kind == Kind::Int { 0 } else { sign };
        return (zero, flags);
    }
    let (m, e) = split(a);
    let lead = lead_exp(m, e);
    match s.kind {
        Kind::Int => {
            if lead >= s.bits as i32 + s.int_exp {
                // |x| >= 2^(bits + int_exp) (4 for INT8) exceeds every code: overflow (this
                // also keeps the shift in round_to_quantum in range)
                return (overflow_code(&mut flags, false), flags);
            }
            let (n, inexact) =
                round_to_quantum(m, e, s.int_exp, opts.rounding, rbits, |n| n & 1 == 1);
            flags.inexact = inexact;
            let limit = if neg && opts.int8_allow_min { 128 } else { 127 };
            if n > limit {
                flags.overflow = true;
                flags.inexact = true;
                let v = if neg { -(limit as i32) } else { limit as i32 };
                return (v as i8 as u8, flags);
            }
            let v = if neg { -(n as i32) } else { n as i32 };
            if v == 0 && inexact {
                flags.underflow = true;
            }
            (v as i8 as u8, flags)
        }
        Kind::PowerOfTwo => {
            if lead < -127 {
                // below the smallest scale: clamp to 2^-127
                flags.inexact = true;
                flags.underflow = true;
                return (0, flags);
            }
            let (n, inexact) = round_to_quantum(m, e, lead, opts.rounding, rbits, |_| {
                (lead + s.bias) & 1 == 1
            });
            flags.inexact = inexact;
            let biased = lead + s.bias + (n == 2) as i32;
            if biased > 254 {
                let rtz = opts.rounding == Rounding::Rtz;
                return (overflow_code(&mut flags, rtz), flags);
            }
            (biased as u8, flags)
        }
        Kind::Float => {
            let mb = s.man_bits as i32;
            let emin = 1 - s.bias;
            let eq = lead.max(emin);
            let q = eq - mb;
            let code_of = |eq: i32, n: u64| -> u64 {
                if n >= 1 << mb {
                    (((eq + s.bias) as u64) << mb) + (n - (1 << mb))
                } else {
                    n
                }
            };
            let emax_field = (max_code >> s.man_bits) as i32;
            if lead > emax_field - s.bias + 1 {
                // far beyond the range: overflow regardless of rounding
                let rtz = opts.rounding == Rounding::Rtz;
                return (overflow_code(&mut flags, rtz), flags);
            }
            let (n, inexact) =
                round_to_quantum(m, e, q, opts.rounding, rbits, |n| code_of(eq, n) & 1 == 1);
            flags.inexact = inexact;
            let mag = code_of(eq, n);
            // n == 2^(mb+1) carries into the exponent: the addition in code_of yields the next binade
            // because ((eq + bias) << mb) + 2^mb == (eq + 1 + bias) << mb.
            if mag > max_code as u64 {
                let rtz = opts.rounding == Rounding::Rtz;
                return (overflow_code(&mut flags, rtz), flags);
            }
            let is_sub = mag < (1 << mb);
            if is_sub && inexact {
                flags.underflow = true;
            }
            if is_sub && mag != 0 && opts.flush_subnormals {
                flags.inexact = true;
                flags.underflow = true;
                return (sign, flags);
            }
            (sign | mag as u8, flags)
        }
    }
}
