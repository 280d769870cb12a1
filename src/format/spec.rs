//! The table of format parameters: one row per format.

use serde::{Deserialize, Serialize};

/// The kind of number a format encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Sign, biased exponent and mantissa with subnormals (IEEE-like).
    Float,
    /// Two's complement integer times 2^`int_exp` (MXINT8: 2^-6).
    Int,
    /// Unsigned power of two 2^(code - bias), no zero, no subnormals (E8M0).
    PowerOfTwo,
}

/// Which codes of a floating-point format are not finite numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Specials {
    /// Every code is a finite number (FP6, FP4, INT8).
    None,
    /// Only S.1111.111 is NaN, no Inf (OCP FP8 E4M3, "fn").
    NanAllOnes,
    /// IEEE 754: exponent all ones is Inf (mantissa 0) or NaN (E5M2).
    Ieee,
    /// The all-ones code (0xFF) is NaN, everything else finite (E8M0).
    NanMaxCode,
}

/// Parameters of one element or scale format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FormatSpec {
    /// Short name (`e4m3`, `int8`, ...).
    pub name: &'static str,
    /// Width of a code in bits.
    pub bits: u32,
    /// Exponent field width.
    pub exp_bits: u32,
    /// Mantissa (fraction) field width.
    pub man_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Whether the top bit is a sign bit.
    pub signed: bool,
    /// Number kind.
    pub kind: Kind,
    /// Non-finite codes.
    pub specials: Specials,
    /// For [`Kind::Int`]: the implied power-of-two scale of the integer.
    pub int_exp: i32,
}

/// An element or scale format of the MX / NVFP4 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// FP8 E4M3 (OCP "fn": no Inf, NaN = S.1111.111), max 448.
    E4M3,
    /// FP8 E5M2 (IEEE-like Inf and NaN), max 57344.
    E5M2,
    /// FP6 E3M2, max 28, all codes finite.
    E3M2,
    /// FP6 E2M3, max 7.5, all codes finite.
    E2M3,
    /// FP4 E2M1, values 0, 0.5, 1, 1.5, 2, 3, 4, 6.
    E2M1,
    /// MXINT8: two's complement with an implied scale of 2^-6.
    Int8,
    /// E8M0 shared scale: 2^(code-127), code 0xFF is NaN.
    E8M0,
    /// UE4M3 NVFP4 block scale: E4M3 with the sign bit ignored (always encoded 0).
    UE4M3,
}

/// The parameter table, indexed by `Format as usize`.
pub const SPECS: [FormatSpec; 8] = [
    FormatSpec {
        name: "e4m3",
        bits: 8,
        exp_bits: 4,
        man_bits: 3,
        bias: 7,
        signed: true,
        kind: Kind::Float,
        specials: Specials::NanAllOnes,
        int_exp: 0,
    },
    FormatSpec {
        name: "e5m2",
        bits: 8,
        exp_bits: 5,
        man_bits: 2,
        bias: 15,
        signed: true,
        kind: Kind::Float,
        specials: Specials::Ieee,
        int_exp: 0,
    },
    FormatSpec {
        name: "e3m2",
        bits: 6,
        exp_bits: 3,
        man_bits: 2,
        bias: 3,
        signed: true,
        kind: Kind::Float,
        specials: Specials::None,
        int_exp: 0,
    },
    FormatSpec {
        name: "e2m3",
        bits: 6,
        exp_bits: 2,
        man_bits: 3,
        bias: 1,
        signed: true,
        kind: Kind::Float,
        specials: Specials::None,
        int_exp: 0,
    },
    FormatSpec {
        name: "e2m1",
        bits: 4,
        exp_bits: 2,
        man_bits: 1,
        bias: 1,
        signed: true,
        kind: Kind::Float,
        specials: Specials::None,
        int_exp: 0,
    },
    FormatSpec {
        name: "int8",
        bits: 8,
        exp_bits: 0,
        man_bits: 7,
        bias: 0,
        signed: true,
        kind: Kind::Int,
        specials: Specials::None,
        int_exp: -6,
    },
    FormatSpec {
        name: "e8m0",
        bits: 8,
        exp_bits: 8,
        man_bits: 0,
        bias: 127,
        signed: false,
        kind: Kind::PowerOfTwo,
        specials: Specials::NanMaxCode,
        int_exp: 0,
    },
    FormatSpec {
        name: "ue4m3",
        bits: 8,
        exp_bits: 4,
        man_bits: 3,
        bias: 7,
        signed: false,
        kind: Kind::Float,
        specials: Specials::NanAllOnes,
        int_exp: 0,
    },
];

impl Format {
    /// Every format, in table order.
    pub const ALL: [Format; 8] = [
        Format::E4M3,
        Format::E5M2,
        Format::E3M2,
        Format::E2M3,
        Format::E2M1,
        Format::Int8,
        Format::E8M0,
        Format::UE4M3,
    ];

    /// The MX element formats (everything but the scale formats).
    pub const ELEMENTS: [Format; 6] = [
        Format::E4M3,
        Format::E5M2,
        Format::E3M2,
        Format::E2M3,
        Format::E2M1,
        Format::Int8,
    ];

    /// The format's row of [`SPECS`].
    pub const fn spec(self) -> &'static FormatSpec {
        &SPECS[self as usize]
    }

    /// Short name.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    /// Number of codes (2^bits).
    pub const fn code_count(self) -> u32 {
        1 << self.spec().bits
    }

    /// Width of a code in bits.
    pub const fn bits(self) -> u32 {
        self.spec().bits
    }

    /// Mask of the sign bit (0 for unsigned formats).
    pub const fn sign_mask(self) -> u8 {
        let s = self.spec();
        if s.signed {
            1 << (s.bits - 1)
        } else {
            0
        }
    }

    /// The code of the largest finite positive value.
    pub const fn max_code(self) -> u8 {
        let s = self.spec();
        match s.kind {
            Kind::Int => 127,
            Kind::PowerOfTwo => 254,
            Kind::Float => {
                let mag_bits = s.exp_bits + s.man_bits;
                let all = ((1u32 << mag_bits) - 1) as u8;
                match s.specials {
                    Specials::NanAllOnes => all - 1,
                    Specials::Ieee => all - (1 << s.man_bits) as u8,
                    _ => all,
                }
            }
        }
    }

    /// Exponent of the largest normal value (OCP's emax_elem; 0 for INT8 per OCP's table).
    pub fn emax(self) -> i32 {
        let s = self.spec();
        match s.kind {
            Kind::Int => 0,
            Kind::PowerOfTwo => 127,
            Kind::Float => {
                let code = self.max_code() as i32;
                (code >> s.man_bits) - s.bias
            }
        }
    }

    /// Exponent of the smallest normal value (1 - bias for floats).
    pub fn emin(self) -> i32 {
        let s = self.spec();
        match s.kind {
            Kind::Int => s.int_exp,
            Kind::PowerOfTwo => -127,
            Kind::Float => 1 - s.bias,
        }
    }

    /// The largest finite value.
    pub fn max_normal(self) -> f64 {
        super::decode_f64(self, self.max_code())
    }

    /// The smallest positive normal value (for INT8: the step 2^-6).
    pub fn min_normal(self) -> f64 {
        match self.spec().kind {
            Kind::Int => super::pow2(self.spec().int_exp),
            _ => super::pow2(self.emin()),
        }
    }

    /// The smallest positive value (subnormal for floats).
    pub fn min_subnormal(self) -> f64 {
        let s = self.spec();
        match s.kind {
            Kind::Float => super::pow2(self.emin() - s.man_bits as i32),
            _ => self.min_normal(),
        }
    }

    /// Whether this is a scale format (E8M0, UE4M3) rather than an element format.
    pub const fn is_scale(self) -> bool {
        matches!(self, Format::E8M0 | Format::UE4M3)
    }

    /// Whether `code` is a NaN code.
    pub fn is_nan_code(self, code: u8) -> bool {
        matches!(super::decode_parts(self, code), super::Decoded::Nan)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        let l = s.to_ascii_lowercase().replace('-', "_");
        let f = match l.as_str() {
            "e4m3" | "fp8_e4m3" | "float8_e4m3fn" | "e4m3fn" => Format::E4M3,
            "e5m2" | "fp8_e5m2" | "float8_e5m2" => Format::E5M2,
            "e3m2" | "fp6_e3m2" | "float6_e3m2fn" => Format::E3M2,
            "e2m3" | "fp6_e2m3" | "float6_e2m3fn" => Format::E2M3,
            "e2m1" | "fp4" | "fp4_e2m1" | "float4_e2m1fn" => Format::E2M1,
            "int8" | "mxint8" => Format::Int8,
            "e8m0" | "float8_e8m0fnu" | "e8m0fnu" => Format::E8M0,
            "ue4m3" => Format::UE4M3,
            _ => {
                return Err(crate::Error::invalid(format!(
                "unknown format '{s}' (expected e4m3, e5m2, e3m2, e2m3, e2m1, int8, e8m0 or ue4m3)"
            )))
            }
        };
        Ok(f)
    }
}
