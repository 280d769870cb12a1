//! IEEE-754-style binary floating-point formats of the accumulator and output (FP32, BF16,
//! FP16, or any custom `eXmY` such as Hopper's `e8m13`), their rounding modes, and exact
//! rounding of integer significands: the packing step of every datapath, in integer code only.

use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Rounding modes of the accumulator and output (RISC-V `frm` names, as MXDOTP uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundMode {
    /// Round to nearest, ties to even (IEEE 754 default).
    Rne,
    /// Round toward zero.
    Rtz,
    /// Round down (toward minus infinity).
    Rdn,
    /// Round up (toward plus infinity).
    Rup,
    /// Round to nearest, ties away from zero (RISC-V RMM).
    Rmm,
}

impl RoundMode {
    /// Every rounding mode.
    pub const ALL: [RoundMode; 5] = [
        RoundMode::Rne,
        RoundMode::Rtz,
        RoundMode::Rdn,
        RoundMode::Rup,
        RoundMode::Rmm,
    ];
}

impl std::str::FromStr for RoundMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "rne" => RoundMode::Rne,
            "rtz" => RoundMode::Rtz,
            "rdn" => RoundMode::Rdn,
            "rup" => RoundMode::Rup,
            "rmm" => RoundMode::Rmm,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown rounding mode '{s}' (expected rne, rtz, rdn, rup or rmm)"
                )))
            }
        })
    }
}

impl std::fmt::Display for RoundMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoundMode::Rne => "rne",
            RoundMode::Rtz => "rtz",
            RoundMode::Rdn => "rdn",
            RoundMode::Rup => "rup",
            RoundMode::Rmm => "rmm",
        })
    }
}

/// An IEEE-754-like binary format with `exp_bits` exponent bits (bias `2^(exp_bits-1) - 1`),
/// `man_bits` fraction bits, gradual underflow, Inf and NaN. Written `fp32`, `bf16`, `fp16`
/// or `eXmY` (e.g. `e8m13`: FP32's exponent range with 13 fraction bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FloatFormat {
    /// Exponent field width (2..=8).
    pub exp_bits: u32,
    /// Fraction field width (1..=52).
    pub man_bits: u32,
}

impl FloatFormat {
    /// IEEE binary32.
    pub const FP32: FloatFormat = FloatFormat {
        exp_bits: 8,
        man_bits: 23,
    };
    /// bfloat16.
    pub const BF16: FloatFormat = FloatFormat {
        exp_bits: 8,
        man_bits: 7,
    };
    /// IEEE binary16.
    pub const FP16: FloatFormat = FloatFormat {
        exp_bits: 5,
        man_bits: 10,
    };

    /// Build and validate a format.
    pub fn new(exp_bits: u32, man_bits: u32) -> Result<Self> {
        if !(2..=8).contains(&exp_bits) || !(1..=52).contains(&man_bits) {
            return Err(Error::invalid(format!(
                "float format e{exp_bits}m{man_bits}: exponent bits must be 2..=8 and fraction bits 1..=52"
            )));
        }
        Ok(FloatFormat { exp_bits, man_bits })
    }

    /// Exponent bias.
    pub const fn bias(self) -> i32 {
        (1 << (self.exp_bits - 1)) - 1
    }

    /// Exponent of the smallest normal.
    pub const fn emin(self) -> i32 {
        1 - self.bias()
    }

    /// Exponent of the largest finite value.
    pub const fn emax(self) -> i32 {
        self.bias()
    }

    /// Whether every value of this format is exactly an f32.
    pub const fn fits_f32(self) -> bool {
        self.exp_bits <= 8 && self.man_bits <= 23
    }

    /// The largest finite value as parts.
    pub fn max_finite(self, neg: bool) -> Fp {
        Fp::Finite {
            neg,
            sig: (1u64 << (self.man_bits + 1)) - 1,
            exp: self.emax() - self.man_bits as i32,
        }
    }
}

impl std::fmt::Display for FloatFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FloatFormat::FP32 => f.write_str("fp32"),
            FloatFormat::BF16 => f.write_str("bf16"),
            FloatFormat::FP16 => f.write_str("fp16"),
            FloatFormat { exp_bits, man_bits } => write!(f, "e{exp_bits}m{man_bits}"),
        }
    }
}

impl std::str::FromStr for FloatFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let l = s.to_ascii_lowercase();
        match l.as_str() {
            "fp32" | "f32" | "float32" => return Ok(FloatFormat::FP32),
            "bf16" | "bfloat16" => return Ok(FloatFormat::BF16),
            "fp16" | "f16" | "float16" => return Ok(FloatFormat::FP16),
            _ => {}
        }
        let bad = || {
            Error::invalid(format!(
                "unknown float format '{s}' (expected fp32, bf16, fp16 or eXmY such as e8m13)"
            ))
        };
        let rest = l.strip_prefix('e').ok_or_else(bad)?;
        let (e, m) = rest.split_once('m').ok_or_else(bad)?;
        let e: u32 = e.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        FloatFormat::new(e, m)
    }
}

impl Serialize for FloatFormat {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FloatFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A value of a [`FloatFormat`] as exact parts: `(-1)^neg * sig * 2^exp` with `sig` below
/// `2^(man_bits+1)` (normals have the hidden bit set, subnormals use `exp = emin - man_bits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fp {
    /// Signed zero.
    Zero {
        /// Sign.
        neg: bool,
    },
    /// Finite nonzero value.
    Finite {
        /// Sign.
        neg: bool,
        /// Integer significand.
        sig: u64,
        /// Exponent of the significand's least significant bit.
        exp: i32,
    },
    /// Infinity.
    Inf {
        /// Sign.
        neg: bool,
    },
    /// NaN (the bit pattern written out is the datapath's canonical NaN).
    Nan,
}

impl Fp {
    /// Positive zero.
    pub const ZERO: Fp = Fp::Zero { neg: false };

    /// Decode an f32 bit pattern into parts (integer code, no float arithmetic).
    pub fn from_f32_bits(bits: u32) -> Fp {
        let neg = bits >> 31 == 1;
        let e = ((bits >> 23) & 0xFF) as i32;
        let m = (bits & 0x7F_FFFF) as u64;
        match e {
            0xFF if m == 0 => Fp::Inf { neg },
            0xFF => Fp::Nan,
            0 if m == 0 => Fp::Zero { neg },
            0 => Fp::Finite {
                neg,
                sig: m,
                exp: -149,
            },
            _ => Fp::Finite {
                neg,
                sig: m | 1 << 23,
                exp: e - 150,
            },
        }
    }

    /// Encode parts whose value is exactly representable in FP32 to f32 bits (`nan` is the bit
    /// pattern used for NaN). Values outside FP32 are a caller bug; they saturate to Inf/0.
    pub fn to_f32_bits(self, nan: u32) -> u32 {
        match self {
            Fp::Nan => nan,
            Fp::Zero { neg } => (neg as u32) << 31,
            Fp::Inf { neg } => (neg as u32) << 31 | 0x7F80_0000,
            Fp::Finite { neg, sig, exp } => {
                let s = (neg as u32) << 31;
                let nb = 64 - sig.leading_zeros() as i32;
                let p = exp + nb - 1;
                if p > 127 {
                    return s | 0x7F80_0000;
                }
                if p >= -126 {
                    // normal: shift so that the leading bit is at position 23
                    let sh = 23 - (nb - 1);
                    let m = if sh >= 0 { sig << sh } else { sig >> -sh };
                    s | ((p + 127) as u32) << 23 | (m as u32 & 0x7F_FFFF)
                } else {
                    let sh = exp + 149;
                    if sh < 0 {
                        return s;
                    }
                    s | (sig << sh) as u32
                }
            }
        }
    }

    /// Whether this is NaN.
    pub fn is_nan(self) -> bool {
        matches!(self, Fp::Nan)
    }

    /// The f32 with this exact value (NaN as 0x7FC00000).
    pub fn to_f32(self) -> f32 {
        f32::from_bits(self.to_f32_bits(0x7FC0_0000))
    }

    /// The most significant bit's exponent of a finite nonzero value.
    pub fn msb_exp(self) -> Option<i32> {
        match self {
            Fp::Finite { sig, exp, .. } => Some(exp + 63 - sig.leading_zeros() as i32),
            _ => None,
        }
    }
}

/// Round the exact nonzero value `(-1)^neg * (mag + f) * 2^exp` to `fmt` under `mode`, where
/// `0 <= f < 1` and `sticky` says whether `f > 0`. When `sticky` is set, `mag` must have at
/// least `man_bits + 3` significant bits (so the dropped fraction lies below the guard bit).
/// Overflow follows IEEE 754 per mode (Inf, or the largest finite value for directed modes
/// pointing toward zero); `ftz` flushes results below the smallest normal to signed zero.
pub fn round_parts(
    neg: bool,
    mag: u128,
    exp: i32,
    sticky: bool,
    fmt: FloatFormat,
    mode: RoundMode,
    ftz: bool,
) -> Fp {
    debug_assert!(mag != 0);
    if mag >> 64 == 0 {
        return round_parts64(neg, mag as u64, exp, sticky, fmt, mode, ftz);
    }
    let m = fmt.man_bits as i32;
    let nb = 128 - mag.leading_zeros() as i32;
    debug_assert!(!sticky || nb >= m + 3);
    let p = exp + nb - 1;
    let q = p.max(fmt.emin()) - m; // target lsb exponent
    let (sig, guard, rest) = if q <= exp {
        ((mag << (exp - q)) as u64, false, sticky)
    } else {
        let sh = (q - exp) as u32;
        if sh > 128 {
            (0u64, false, true)
        } else if sh == 128 {
            (0u64, mag >> 127 == 1, sticky || mag & (u128::MAX >> 1) != 0)
        } else {
            let kept = (mag >> sh) as u64;
            let g = (mag >> (sh - 1)) & 1 == 1;
            let low = if sh >= 2 {
                mag & ((1u128 << (sh - 1)) - 1) != 0
            } else {
                false
            };
            (kept, g, low || sticky)
        }
    };
    round_tail(neg, sig, q, guard, rest, fmt, mode, ftz)
}

/// The common end of [`round_parts`]: the kept significand `sig` at lsb exponent `q`, the
/// guard bit and whether anything below it is set; the increment per mode, the carry into a
/// new binade, overflow per IEEE 754 and flush-to-zero.
#[allow(clippy::too_many_arguments)]
#[inline]
fn round_tail(
    neg: bool,
    mut sig: u64,
    mut q: i32,
    guard: bool,
    rest: bool,
    fmt: FloatFormat,
    mode: RoundMode,
    ftz: bool,
) -> Fp {
    let m = fmt.man_bits as i32;
    let inexact = guard || rest;
    let inc = match mode {
        RoundMode::Rne => guard && (rest || sig & 1 == 1),
        RoundMode::Rtz => false,
        RoundMode::Rdn => neg && inexact,
        RoundMode::Rup => !neg && inexact,
        RoundMode::Rmm => guard,
    };
    if inc {
        sig += 1;
        if sig == 1u64 << (m + 1) {
            sig >>= 1;
            q += 1;
        }
    }
    if sig == 0 {
        return Fp::Zero { neg };
    }
    if q + m > fmt.emax() {
        let to_max = match mode {
            RoundMode::Rne | RoundMode::Rmm => false,
            RoundMode::Rtz => true,
            RoundMode::Rdn => !neg,
            RoundMode::Rup => neg,
        };
        return if to_max {
            fmt.max_finite(neg)
        } else {
            Fp::Inf { neg }
        };
    }
    if ftz && sig < 1u64 << m {
        return Fp::Zero { neg };
    }
    Fp::Finite { neg, sig, exp: q }
}

/// [`round_parts`] for magnitudes below `2^64`, in 64-bit integers (the same steps).
#[inline]
fn round_parts64(
    neg: bool,
    mag: u64,
    exp: i32,
    sticky: bool,
    fmt: FloatFormat,
    mode: RoundMode,
    ftz: bool,
) -> Fp {
    let m = fmt.man_bits as i32;
    let nb = 64 - mag.leading_zeros() as i32;
    debug_assert!(!sticky || nb >= m + 3);
    let p = exp + nb - 1;
    let q = p.max(fmt.emin()) - m; // target lsb exponent
    let (sig, guard, rest) = if q <= exp {
        (mag << (exp - q), false, sticky)
    } else {
        let sh = (q - exp) as u32;
        if sh > 64 {
            (0u64, false, true)
        } else if sh == 64 {
            (0u64, mag >> 63 == 1, sticky || mag & (u64::MAX >> 1) != 0)
        } else {
            let kept = mag >> sh;
            let g = (mag >> (sh - 1)) & 1 == 1;
            let low = mag & ((1u64 << (sh - 1)) - 1) != 0;
            (kept, g, low || sticky)
        }
    };
    round_tail(neg, sig, q, guard, rest, fmt, mode, ftz)
}

/// Round a value already given as parts (of any precision) into `fmt`.
pub fn round_fp(x: Fp, fmt: FloatFormat, mode: RoundMode, ftz: bool) -> Fp {
    match x {
        Fp::Finite { neg, sig, exp } => round_parts(neg, sig as u128, exp, false, fmt, mode, ftz),
        other => other,
    }
}

/// The exact IEEE 754 sum `a + b` rounded once into `fmt` (the operation Berkeley SoftFloat's
/// `f32_add` performs for FP32), including the signs of zero sums: `x + (-x)` is `+0`, or `-0`
/// under [`RoundMode::Rdn`]; `(-0) + (-0)` is `-0`.
pub fn add_exact(a: Fp, b: Fp, fmt: FloatFormat, mode: RoundMode, ftz: bool) -> Fp {
    use Fp::*;
    match (a, b) {
        (Nan, _) | (_, Nan) => Nan,
        (Inf { neg: x }, Inf { neg: y }) => {
            if x == y {
                Inf { neg: x }
            } else {
                Nan
            }
        }
        (Inf { neg }, _) | (_, Inf { neg }) => Inf { neg },
        (Zero { neg: x }, Zero { neg: y }) => Zero {
            neg: if x == y { x } else { mode == RoundMode::Rdn },
        },
        (Zero { .. }, f @ Finite { .. }) | (f @ Finite { .. }, Zero { .. }) => {
            round_fp(f, fmt, mode, ftz)
        }
        (
            Finite {
                neg: na,
                sig: sa,
                exp: ea,
            },
            Finite {
                neg: nb,
                sig: sb,
                exp: eb,
            },
        ) => {
            let mut w = super::wide::Wide::new();
            w.add(na, sa as u128, ea);
            w.add(nb, sb as u128, eb);
            w.round(fmt, mode, ftz, mode == RoundMode::Rdn)
        }
    }
}

/// The exact `a * b + c` rounded once into `fmt` (IEEE 754 fusedMultiplyAdd; Berkeley
/// SoftFloat's `f32_mulAdd` for FP32), with IEEE signs of zero results.
pub fn fma_exact(a: Fp, b: Fp, c: Fp, fmt: FloatFormat, mode: RoundMode, ftz: bool) -> Fp {
    use Fp::*;
    let prod = match (a, b) {
        (Nan, _) | (_, Nan) => Nan,
        (Inf { .. }, Zero { .. }) | (Zero { .. }, Inf { .. }) => Nan,
        (Inf { neg: x }, y) | (y, Inf { neg: x }) => Inf {
            neg: x ^ sign_of(y),
        },
        (Zero { neg: x }, y) | (y, Zero { neg: x }) => Zero {
            neg: x ^ sign_of(y),
        },
        (
            Finite {
                neg: x,
                sig: s1,
                exp: e1,
            },
            Finite {
                neg: y,
                sig: s2,
                exp: e2,
            },
        ) => {
            let p = s1 as u128 * s2 as u128;
            if let Finite {
                neg: nc,
                sig: sc,
                exp: ec,
            } = c
            {
                let mut w = super::wide::Wide::new();
                w.add(x ^ y, p, e1 + e2);
                w.add(nc, sc as u128, ec);
                return w.round(fmt, mode, ftz, mode == RoundMode::Rdn);
            }
            if let Zero { .. } = c {
                return round_parts(x ^ y, p, e1 + e2, false, fmt, mode, ftz);
            }
            // c is Inf or NaN: the product's value does not matter
            Zero { neg: x ^ y }
        }
    };
    match (prod, c) {
        (Nan, _) | (_, Nan) => Nan,
        (Zero { neg }, Zero { neg: nc }) => Zero {
            neg: if neg == nc {
                neg
            } else {
                mode == RoundMode::Rdn
            },
        },
        (Zero { .. }, c) => round_fp(c, fmt, mode, ftz),
        (p, c) => add_exact(p, c, fmt, mode, ftz),
    }
}

fn sign_of(x: Fp) -> bool {
    match x {
        Fp::Zero { neg } | Fp::Finite { neg, .. } | Fp::Inf { neg } => neg,
        Fp::Nan => false,
    }
}
