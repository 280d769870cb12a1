//! Scalar element and scale formats of OCP Microscaling (MX) v1.0 and NVFP4.
//!
//! Every format is one row of the parameter table [`SPECS`] (bits, exponent and mantissa
//! widths, bias, signedness, which codes are special); one generic codec (module `codec`) serves
//! them all. Decoding is exact (every value of every format is an f32). Encoding takes an f64
//! (f32 inputs convert to f64 exactly) and a [`CastOptions`] (rounding, overflow, subnormal
//! and NaN handling) and returns the code plus IEEE-style exception [`Flags`].

mod codec;
mod spec;

pub use codec::{decode_f32, decode_f64, decode_parts, encode, encode_with_flags, stochastic_bits};
pub use spec::{Format, FormatSpec, Kind, Specials, SPECS};

use serde::{Deserialize, Serialize};

/// How a value that falls between two representable values is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// Round to nearest, ties to the even code (IEEE 754 default, usual hardware choice).
    #[default]
    Rne,
    /// Round to nearest, ties away from zero (microxcaling's default "nearest").
    Rna,
    /// Round toward zero (truncate; microxcaling's "floor" of the magnitude).
    Rtz,
    /// Stochastic rounding: round up in magnitude with probability equal to the discarded
    /// fraction, using 32 reproducible random bits per element derived from a seed and the
    /// element's index (see [`stochastic_bits`]).
    Stochastic,
}

impl std::str::FromStr for Rounding {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rne" | "even" | "nearest-even" => Ok(Rounding::Rne),
            "rna" | "nearest" | "away" => Ok(Rounding::Rna),
            "rtz" | "floor" | "trunc" | "toward-zero" => Ok(Rounding::Rtz),
            "stochastic" | "sr" | "dither" => Ok(Rounding::Stochastic),
            _ => Err(crate::Error::invalid(format!(
                "unknown rounding '{s}' (expected rne, rna, rtz or stochastic)"
            ))),
        }
    }
}

impl std::fmt::Display for Rounding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rounding::Rne => "rne",
            Rounding::Rna => "rna",
            Rounding::Rtz => "rtz",
            Rounding::Stochastic => "stochastic",
        })
    }
}

/// What happens to a finite value whose rounded magnitude exceeds the largest normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Clamp to the largest finite value (OCP MX conversion, microxcaling).
    #[default]
    Saturate,
    /// IEEE-style: become Inf where the format has Inf (E5M2), else NaN where it has NaN (E4M3,
    /// E8M0); formats with neither (FP6, FP4, INT8) still saturate. Under `rtz` an overflowing
    /// finite value becomes the largest finite value, as IEEE 754 specifies. This matches
    /// ml_dtypes' plain casts.
    Nonsat,
}

impl std::str::FromStr for Overflow {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "saturate" | "sat" => Ok(Overflow::Saturate),
            "nonsat" | "ieee" | "inf" | "nan" => Ok(Overflow::Nonsat),
            _ => Err(crate::Error::invalid(format!(
                "unknown overflow policy '{s}' (expected saturate or nonsat)"
            ))),
        }
    }
}

/// Options of a scalar conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CastOptions {
    /// Rounding mode.
    pub rounding: Rounding,
    /// Overflow policy.
    pub overflow: Overflow,
    /// Flush results that would be subnormal in the target format to zero (sign kept).
    pub flush_subnormals: bool,
    /// INT8 only: allow the code -128 (value -2); by default the range is symmetric
    /// [-127, 127] as microxcaling and the OCP spec's recommendation use.
    pub int8_allow_min: bool,
    /// Seed of the stochastic-rounding stream.
    pub seed: u64,
}

impl Default for CastOptions {
    fn default() -> Self {
        CastOptions {
            rounding: Rounding::Rne,
            overflow: Overflow::Saturate,
            flush_subnormals: false,
            int8_allow_min: false,
            seed: 0,
        }
    }
}

impl CastOptions {
    /// Options with the given rounding and overflow, everything else default.
    pub fn new(rounding: Rounding, overflow: Overflow) -> Self {
        CastOptions {
            rounding,
            overflow,
            ..Default::default()
        }
    }
}

/// IEEE 754-style exception flags of one conversion (TestFloat's order: bit 0 inexact,
/// bit 1 underflow, bit 2 overflow, bit 3 infinite, bit 4 invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Flags {
    /// The result differs from the input.
    pub inexact: bool,
    /// The result is subnormal or zero from a nonzero input, and inexact.
    pub underflow: bool,
    /// The rounded magnitude exceeded the largest finite value (saturated or became Inf/NaN).
    pub overflow: bool,
    /// An infinite input (TestFloat's "infinite" flag is for division by zero; here it marks
    /// Inf inputs).
    pub infinite: bool,
    /// A NaN input, or a value the format cannot represent at all (negative or zero into E8M0).
    pub invalid: bool,
}

impl Flags {
    /// The flags as a TestFloat-style byte.
    pub fn bits(&self) -> u8 {
        (self.inexact as u8)
            | (self.underflow as u8) << 1
            | (self.overflow as u8) << 2
            | (self.infinite as u8) << 3
            | (self.invalid as u8) << 4
    }
}

/// A code decoded into exact integer parts: value = (-1)^neg * sig * 2^exp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoded {
    /// Signed zero.
    Zero {
        /// Sign bit.
        neg: bool,
    },
    /// A nonzero finite value `(-1)^neg * sig * 2^exp` with `sig` a positive integer.
    Finite {
        /// Sign bit.
        neg: bool,
        /// Integer significand (hidden bit included for normals).
        sig: u32,
        /// Exponent of the significand's least significant bit.
        exp: i32,
    },
    /// Infinity (E5M2 only).
    Inf {
        /// Sign bit.
        neg: bool,
    },
    /// Not a number.
    Nan,
}

/// Exactly 2^k as f64 (k in [-1074, 1023]; saturates to 0 or Inf outside), built from bits
/// rather than a library exp2.
pub fn pow2(k: i32) -> f64 {
    if k > 1023 {
        f64::INFINITY
    } else if k >= -1022 {
        f64::from_bits(((k + 1023) as u64) << 52)
    } else if k >= -1074 {
        f64::from_bits(1u64 << (k + 1074))
    } else {
        0.0
    }
}
