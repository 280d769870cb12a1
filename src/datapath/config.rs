//! [`DatapathConfig`]: every choice a block-scaled dot-product datapath makes, as data.
//! Presets are TOML files under `models/hw/datapath/`, embedded in the binary.

use super::float::{FloatFormat, RoundMode};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// What happens to the bits of an aligned term that fall below the window's least
/// significant bit (each term is treated on its own before the terms are summed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shifted {
    /// Truncate the magnitude (toward zero), as NVIDIA tensor cores do (MMA-Sim).
    Trunc,
    /// Truncate the two's-complement value (toward minus infinity).
    Floor,
    /// Round the term to nearest, ties to even, using all of its dropped bits (guard + sticky).
    Rne,
    /// Round to odd: truncate and OR a sticky bit of the dropped bits into the lsb (jamming).
    Rto,
}

/// Which exponent the fused sum's window is aligned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlignRef {
    /// The largest product (or group) exponent; the accumulator is aligned to that window.
    Products,
    /// The largest exponent among products and the accumulator.
    ProductsAndAccumulator,
}

/// How a term's exponent (used for alignment) is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TermExponent {
    /// The exponent of the term's leading one bit (a normalized product).
    Normalized,
    /// The sum of the factors' exponents, as a multiplier without normalization produces it:
    /// `ea + eb` (+ scale exponents) for a product, whose significand then lies in `[1, 4)`;
    /// the scale exponents alone for a group sum scaled at the group (MMA-Sim's model).
    OperandSum,
}

/// Where the block scales enter the datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleAt {
    /// Scale exponents (and UE4M3 significands) multiply every product before alignment.
    Product,
    /// The group's exact sum of unscaled products is multiplied by the scales.
    GroupSum,
}

/// How the carried accumulator meets an instruction's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccJoin {
    /// The accumulator is one more term of the fused sum: one rounding per instruction.
    Fused,
    /// The products' sum is rounded to the accumulator format, then added to the accumulator
    /// with a second rounding (a separate adder).
    After,
}

/// How MXINT8 elements are valued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Int8Mode {
    /// OCP MX: two's complement times 2^-6.
    Mx,
    /// Plain integers (pulp-platform MXDOTP's MXDOTPI).
    Integer,
}

/// The sign of an exactly zero (or fully cancelled) fused sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroSign {
    /// IEEE 754: like-signed zero addends keep their sign; otherwise `+0`, or `-0` under RDN.
    Ieee,
    /// Always `+0`.
    Positive,
}

/// An override of the instruction size for operands whose widest element has `element_bits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KRule {
    /// Element width (4, 6 or 8) of the wider operand this rule applies to.
    pub element_bits: u32,
    /// Elements per instruction.
    pub k: usize,
    /// If not empty: instruction sizes inside each scale block, in order (e.g. MXDOTP's
    /// `[10, 11, 11]` for a 32-block of FP6); instructions then never span a block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_split: Vec<usize>,
}

/// A configurable bit-exact model of an MX / NVFP4 dot-product datapath (see
/// `docs/datapath.md` for the pipeline diagram).
///
/// Per output, the reduction axis is cut into instructions (`k` elements, or per the
/// `k_rules`); inside an instruction, `group` consecutive products are summed exactly; each
/// group (or product) is a term with an exponent (`term_exponent`), the terms (and the
/// accumulator when `acc_join = fused`) are aligned to the largest exponent (`align`), cut to
/// `frac_bits` fraction bits below it (`shifted_out` says how), summed exactly, and rounded
/// once into the accumulator format. Every `promote_every` elements the accumulator is added
/// into an outer FP32 accumulator (RNE) and cleared. The final value is rounded to `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatapathConfig {
    /// Preset or model name.
    pub name: String,
    /// One line saying what this models.
    #[serde(default)]
    pub description: String,
    /// Elements per fused instruction (0: the whole reduction is one fused operation).
    pub k: usize,
    /// Per-element-width overrides of `k` (the rule for the wider operand's width applies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub k_rules: Vec<KRule>,
    /// Instructions cover exactly one scale block each (the smaller operand block size);
    /// `k` is then ignored. Models "exact block sums" datapaths.
    #[serde(default)]
    pub op_per_block: bool,
    /// Consecutive products summed exactly before alignment (0: the whole instruction; 1:
    /// every product is aligned on its own).
    pub group: usize,
    /// Where the block scales are applied.
    pub scale_at: ScaleAt,
    /// How a term's alignment exponent is defined.
    pub term_exponent: TermExponent,
    /// Alignment reference.
    pub align: AlignRef,
    /// Fraction bits kept below the alignment exponent (absent: unbounded, exact alignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frac_bits: Option<u32>,
    /// Treatment of bits shifted below the window.
    pub shifted_out: Shifted,
    /// Accumulator format (carried between instructions).
    pub accumulator: FloatFormat,
    /// Rounding into the accumulator.
    pub acc_rounding: RoundMode,
    /// Whether the accumulator joins the fused sum or is added after it.
    pub acc_join: AccJoin,
    /// If set: when the (fused) accumulator's exponent exceeds the largest product exponent by
    /// more than this many bits, the result is the accumulator unchanged (MXDOTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_far_bits: Option<u32>,
    /// Elements after which the accumulator is added into an outer FP32 accumulator with RNE
    /// and cleared (0: never). `C` then initialises the outer accumulator.
    #[serde(default)]
    pub promote_every: usize,
    /// Output format (must fit in FP32).
    pub output: FloatFormat,
    /// Rounding into the output format.
    pub output_rounding: RoundMode,
    /// Flush subnormal elements and a subnormal `C` to zero.
    #[serde(default)]
    pub ftz_inputs: bool,
    /// Drop products whose magnitude is below the accumulator format's smallest normal.
    #[serde(default)]
    pub ftz_products: bool,
    /// Flush subnormal accumulator and output values to zero (after rounding).
    #[serde(default)]
    pub ftz_outputs: bool,
    /// The bit pattern written for a NaN result (e.g. 0x7FC00000 or 0x7FFFFFFF).
    pub nan_bits: u32,
    /// How MXINT8 elements are valued.
    pub int8: Int8Mode,
    /// Sign of an exactly zero fused sum.
    pub zero_sign: ZeroSign,
}

/// A preset: name and embedded TOML text.
struct PresetFile {
    name: &'static str,
    text: &'static str,
}

const PRESETS: &[PresetFile] = &[
    PresetFile {
        name: "exact",
        text: include_str!("../../models/hw/datapath/exact.toml"),
    },
    PresetFile {
        name: "ocp-fp32",
        text: include_str!("../../models/hw/datapath/ocp-fp32.toml"),
    },
    PresetFile {
        name: "mxdotp",
        text: include_str!("../../models/hw/datapath/mxdotp.toml"),
    },
    PresetFile {
        name: "blackwell-mxf8f6f4",
        text: include_str!("../../models/hw/datapath/blackwell-mxf8f6f4.toml"),
    },
    PresetFile {
        name: "blackwell-mxf4nvf4",
        text: include_str!("../../models/hw/datapath/blackwell-mxf4nvf4.toml"),
    },
    PresetFile {
        name: "hopper-fp8",
        text: include_str!("../../models/hw/datapath/hopper-fp8.toml"),
    },
];

/// Names of the built-in presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

/// The embedded TOML text of a preset (with its source comments).
pub fn preset_text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.name == name).map(|p| p.text)
}

impl DatapathConfig {
    /// A built-in preset by name (see [`preset_names`]).
    pub fn preset(name: &str) -> Result<Self> {
        let text = preset_text(name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown datapath preset '{name}' (expected one of: {})",
                preset_names().join(", ")
            ))
        })?;
        Self::from_toml(text, name)
    }

    /// A preset name, or the path of a TOML file in the same schema.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if preset_text(name_or_path).is_some() {
            return Self::preset(name_or_path);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Err(Error::invalid(format!(
                "'{name_or_path}' is neither a datapath preset ({}) nor an existing file",
                preset_names().join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, name_or_path).map_err(|e| match e {
            Error::Invalid(msg) => Error::malformed(path, msg),
            other => other,
        })
    }

    /// Parse and validate TOML text (`origin` names it in messages).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let cfg: DatapathConfig = toml::from_str(text)
            .map_err(|e| Error::invalid(format!("datapath config {origin}: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Check that every parameter is in the range the exact model supports.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("datapath '{}': {m}", self.name)));
        if self.k > 0 && self.group > 0 && !self.k.is_multiple_of(self.group) && !self.op_per_block
        {
            return bad(format!("group {} does not divide k {}", self.group, self.k));
        }
        for r in &self.k_rules {
            if ![4, 6, 8].contains(&r.element_bits) {
                return bad(format!(
                    "k_rules: element_bits {} is not 4, 6 or 8",
                    r.element_bits
                ));
            }
            if r.k == 0 && r.block_split.is_empty() {
                return bad("k_rules: k must be at least 1".into());
            }
            if r.block_split.contains(&0) {
                return bad("k_rules: block_split entries must be at least 1".into());
            }
        }
        if let Some(f) = self.frac_bits {
            if f > 200 {
                return bad(format!(
                    "frac_bits {f} exceeds 200 (leave it out for exact alignment)"
                ));
            }
        }
        if let Some(w) = self.acc_far_bits {
            if w > 300 {
                return bad(format!("acc_far_bits {w} exceeds 300"));
            }
        }
        if !self.output.fits_f32() {
            return bad(format!(
                "output format {} does not fit in FP32",
                self.output
            ));
        }
        Ok(())
    }

    /// Whether the model keeps every bit (no window) and rounds each instruction once: the
    /// datapaths whose block sums are exact.
    pub fn exact_alignment(&self) -> bool {
        self.frac_bits.is_none()
    }
}
