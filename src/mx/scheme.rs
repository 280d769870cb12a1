//! Named MX / NVFP4 schemes (element format + scale format + block size) and the full
//! quantization configuration.

use super::{ScaleRule, ZeroBlock};
use crate::format::{Format, Rounding};
use serde::{Deserialize, Serialize};

/// A block-scaled number scheme: element format, scale format and default block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// MXFP8 with E4M3 elements, E8M0 scale per 32.
    Mxfp8E4m3,
    /// MXFP8 with E5M2 elements, E8M0 scale per 32.
    Mxfp8E5m2,
    /// MXFP6 with E3M2 elements, E8M0 scale per 32.
    Mxfp6E3m2,
    /// MXFP6 with E2M3 elements, E8M0 scale per 32.
    Mxfp6E2m3,
    /// MXFP4 (E2M1 elements), E8M0 scale per 32.
    Mxfp4,
    /// MXINT8 (two's complement times 2^-6), E8M0 scale per 32.
    Mxint8,
    /// NVFP4: E2M1 elements, UE4M3 scale per 16, optional FP32 per-tensor scale.
    Nvfp4,
}

impl Scheme {
    /// Every scheme.
    pub const ALL: [Scheme; 7] = [
        Scheme::Mxfp8E4m3,
        Scheme::Mxfp8E5m2,
        Scheme::Mxfp6E3m2,
        Scheme::Mxfp6E2m3,
        Scheme::Mxfp4,
        Scheme::Mxint8,
        Scheme::Nvfp4,
    ];

    /// The element format.
    pub const fn element(self) -> Format {
        match self {
            Scheme::Mxfp8E4m3 => Format::E4M3,
            Scheme::Mxfp8E5m2 => Format::E5M2,
            Scheme::Mxfp6E3m2 => Format::E3M2,
            Scheme::Mxfp6E2m3 => Format::E2M3,
            Scheme::Mxfp4 | Scheme::Nvfp4 => Format::E2M1,
            Scheme::Mxint8 => Format::Int8,
        }
    }

    /// The scale format.
    pub const fn scale_format(self) -> Format {
        match self {
            Scheme::Nvfp4 => Format::UE4M3,
            _ => Format::E8M0,
        }
    }

    /// The standard block size (32 for MX, 16 for NVFP4).
    pub const fn default_block(self) -> usize {
        match self {
            Scheme::Nvfp4 => 16,
            _ => 32,
        }
    }

    /// Canonical name (`mxfp8_e4m3`, ..., `nvfp4`).
    pub const fn name(self) -> &'static str {
        match self {
            Scheme::Mxfp8E4m3 => "mxfp8_e4m3",
            Scheme::Mxfp8E5m2 => "mxfp8_e5m2",
            Scheme::Mxfp6E3m2 => "mxfp6_e3m2",
            Scheme::Mxfp6E2m3 => "mxfp6_e2m3",
            Scheme::Mxfp4 => "mxfp4",
            Scheme::Mxint8 => "mxint8",
            Scheme::Nvfp4 => "nvfp4",
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scheme {
    type Err = crate::Error;
    /// Accepts the canonical names plus `mxfp8` (= E4M3) and `mxfp6` (= E2M3).
    fn from_str(s: &str) -> crate::Result<Self> {
        let l = s.to_ascii_lowercase().replace('-', "_");
        Ok(match l.as_str() {
            "mxfp8_e4m3" | "mxfp8" | "e4m3" => Scheme::Mxfp8E4m3,
            "mxfp8_e5m2" | "e5m2" => Scheme::Mxfp8E5m2,
            "mxfp6_e3m2" | "e3m2" => Scheme::Mxfp6E3m2,
            "mxfp6_e2m3" | "mxfp6" | "e2m3" => Scheme::Mxfp6E2m3,
            "mxfp4" | "mxfp4_e2m1" | "e2m1" | "fp4" => Scheme::Mxfp4,
            "mxint8" | "int8" => Scheme::Mxint8,
            "nvfp4" => Scheme::Nvfp4,
            _ => {
                return Err(crate::Error::invalid(format!(
                    "unknown MX format '{s}' (expected mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8 or nvfp4)"
                )))
            }
        })
    }
}

/// How NVFP4 applies its scales to values before element rounding (implementations differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NvScaleApply {
    /// `x / (s_block * s_tensor)`, the division exact (as a reference model would do).
    #[default]
    Divide,
    /// `x * f32(1 / f32(s_block * s_tensor))` in float32, as GPU kernels that multiply by a
    /// precomputed reciprocal do (TransformerEngine-style).
    ReciprocalMultiply,
}

impl std::str::FromStr for NvScaleApply {
    type Err = crate::Error;
    /// Parses `divide` and `reciprocal` (or `reciprocal-multiply`).
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "divide" | "div" => Ok(NvScaleApply::Divide),
            "reciprocal" | "reciprocal-multiply" | "recip" => Ok(NvScaleApply::ReciprocalMultiply),
            _ => Err(crate::Error::invalid(format!(
                "unknown NVFP4 scale application '{s}' (expected divide or reciprocal)"
            ))),
        }
    }
}

/// Everything that determines how a tensor is block-quantized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MxConfig {
    /// The scheme (element and scale format).
    pub scheme: Scheme,
    /// Values per block (32 for MX, 16 for NVFP4 by default; any size >= 1 allowed).
    pub block_size: usize,
    /// How each block's shared scale is chosen.
    pub rule: ScaleRule,
    /// Element rounding (the element conversion always saturates, as OCP specifies).
    pub rounding: Rounding,
    /// Seed for stochastic rounding.
    pub seed: u64,
    /// Scale of an all-zero block.
    pub zero_block: ZeroBlock,
    /// NVFP4: use the per-tensor FP32 scale `amax / (448 * 6)`.
    pub nv_tensor_scale: bool,
    /// NVFP4: how scales are applied to values.
    pub nv_apply: NvScaleApply,
}

impl MxConfig {
    /// The standard configuration of a scheme: its default block size, the OCP `floor` rule
    /// (for NVFP4 the `amax/6` rule, stored as `floor`), RNE elements, per-tensor scale on for
    /// NVFP4.
    pub fn new(scheme: Scheme) -> Self {
        MxConfig {
            scheme,
            block_size: scheme.default_block(),
            rule: ScaleRule::Floor,
            rounding: Rounding::Rne,
            seed: 0,
            zero_block: ZeroBlock::Smallest,
            nv_tensor_scale: scheme == Scheme::Nvfp4,
            nv_apply: NvScaleApply::Divide,
        }
    }

    /// This configuration with another scale rule.
    pub fn with_rule(mut self, rule: ScaleRule) -> Self {
        self.rule = rule;
        self
    }

    /// This configuration with another block size.
    pub fn with_block(mut self, block_size: usize) -> Self {
        self.block_size = block_size;
        self
    }
}
