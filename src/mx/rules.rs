//! Shared-scale rules: how a block's scale is chosen from its values.

use crate::format::{pow2, Format};
use serde::{Deserialize, Serialize};

/// How a block's shared scale is chosen (REFERENCE section 3; `docs/formats.md`).
///
/// For E8M0 scales (MX), with `amax` the block's largest magnitude and `emax` the element
/// format's largest normal exponent:
/// - `Floor`: `2^(floor(log2 amax) - emax)` (OCP v1.0, Rouhani et al. Alg. 1). May clip.
/// - `Ceil`: one more than `Floor` when amax is not a power of two.
/// - `Even`: torchao's rule: round amax's significand to the element's mantissa width (ties
///   up), then `Floor`.
/// - `Rceil`: the smallest `2^e` with `max_normal * 2^e >= amax` (NVIDIA cuBLAS/cuDNN, AMD);
///   never clips. Computed exactly (no floating-point division).
/// - `Prescale(F)`: `Floor` on the unscaled amax, elements quantized from `F * v / X`, results
///   multiplied by `1/F` (a global factor). `F = 0.75` is the 3/4 pre-scale.
/// - `Mse { alphas }`: per block, try `Floor`'s exponent and its two neighbours, keep the one
///   with the least squared error (ties to `Floor`, then the smaller); with `alphas >= 2`, also
///   search a global pre-scale `alpha` on an even grid of that many points in [0.75, 1].
/// - `FourOverSix`: candidates `2^ceil(log2(amax/6))` and `2^ceil(log2(amax/4))` (amax mapped
///   onto 6 or onto 4), least squared error wins (ties to the first).
///
/// For UE4M3 scales (NVFP4) the block scale is `amax / 6` (divided by the per-tensor scale when
/// used) encoded to UE4M3: `Floor` and `Even` round it to nearest-even (the NVFP4 recipe),
/// `Ceil` and `Rceil` round it up (never clips), `Prescale(F)` uses the nearest-even scale and
/// `F * v`, `Mse` tries the nearest code and its two neighbours, `FourOverSix` tries
/// `amax / 6` and `amax / 4`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScaleRule {
    /// OCP floor rule.
    #[default]
    Floor,
    /// Ceil rule.
    Ceil,
    /// torchao EVEN rule.
    Even,
    /// NVIDIA RCEIL rule.
    Rceil,
    /// Pre-scale by a factor (0.75 by default).
    Prescale(f64),
    /// Per-block least-squared-error search, optional global pre-scale grid.
    Mse {
        /// Number of global pre-scale grid points in [0.75, 1] (0 or 1: no global search).
        alphas: u32,
    },
    /// Four-over-six: the block max mapped to 6 or to 4, whichever errs less.
    FourOverSix,
}

impl std::str::FromStr for ScaleRule {
    type Err = crate::Error;
    /// Parses `floor`, `ceil`, `even`, `rceil`, `prescale`, `prescale:F`, `mse`, `mse:N`
    /// (N global grid points) and `4over6`.
    fn from_str(s: &str) -> crate::Result<Self> {
        let l = s.to_ascii_lowercase();
        let (head, arg) = match l.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (l.as_str(), None),
        };
        let bad = || {
            crate::Error::invalid(format!(
                "unknown scale rule '{s}' (expected floor, ceil, even, rceil, prescale[:F], mse[:N] or 4over6)"
            ))
        };
        let rule = match (head, arg) {
            ("floor" | "ocp", None) => ScaleRule::Floor,
            ("ceil", None) => ScaleRule::Ceil,
            ("even", None) => ScaleRule::Even,
            ("rceil", None) => ScaleRule::Rceil,
            ("prescale", None) => ScaleRule::Prescale(0.75),
            ("prescale", Some(a)) => {
                let f: f64 = a.parse().map_err(|_| bad())?;
                if !(f.is_finite() && f > 0.0) {
                    return Err(crate::Error::invalid(format!(
                        "pre-scale factor must be a positive number, got '{a}'"
                    )));
                }
                ScaleRule::Prescale(f)
            }
            ("mse", None) => ScaleRule::Mse { alphas: 0 },
            ("mse", Some(a)) => ScaleRule::Mse {
                alphas: a.parse().map_err(|_| bad())?,
            },
            ("4over6" | "four-over-six" | "fouroversix", None) => ScaleRule::FourOverSix,
            _ => return Err(bad()),
        };
        Ok(rule)
    }
}

impl std::fmt::Display for ScaleRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleRule::Floor => f.write_str("floor"),
            ScaleRule::Ceil => f.write_str("ceil"),
            ScaleRule::Even => f.write_str("even"),
            ScaleRule::Rceil => f.write_str("rceil"),
            ScaleRule::Prescale(x) => write!(f, "prescale:{x}"),
            ScaleRule::Mse { alphas: 0 } => f.write_str("mse"),
            ScaleRule::Mse { alphas } => write!(f, "mse:{alphas}"),
            ScaleRule::FourOverSix => f.write_str("4over6"),
        }
    }
}

/// Scale of a block whose values are all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroBlock {
    /// The smallest scale code, 0 (E8M0: 2^-127, as microxcaling's clamped -inf exponent;
    /// UE4M3: 0).
    #[default]
    Smallest,
    /// The `Floor` rule applied to FP32's smallest normal, 2^-126 (E8M0 code 127-126-emax);
    /// for UE4M3 the smallest normal code 0x08.
    FloorMinNormal,
}

impl std::str::FromStr for ZeroBlock {
    type Err = crate::Error;
    /// Parses `smallest` and `floor-min-normal`.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "smallest" | "min" => Ok(ZeroBlock::Smallest),
            "floor-min-normal" => Ok(ZeroBlock::FloorMinNormal),
            _ => Err(crate::Error::invalid(format!(
                "unknown zero-block policy '{s}' (expected smallest or floor-min-normal)"
            ))),
        }
    }
}

/// floor(log2(a)) for finite a > 0, read from the exponent bits (never a float log).
pub fn floor_log2(a: f64) -> i32 {
    let b = a.to_bits();
    let be = ((b >> 52) & 0x7FF) as i32;
    if be == 0 {
        let frac = b & ((1u64 << 52) - 1);
        (63 - frac.leading_zeros() as i32) - 1074
    } else {
        be - 1023
    }
}

/// The unclamped E8M0 exponent that `rule` gives a block with largest magnitude `amax`
/// (finite, > 0) for element format `elem`. `Mse` and `FourOverSix` return their first
/// candidate (`Floor` and the amax-onto-6 ceiling respectively); the search is done by the
/// quantizer. The caller clamps to [-127, 127].
pub fn e8m0_exponent(amax: f64, elem: Format, rule: ScaleRule) -> i32 {
    let emax = elem.emax();
    let fl = floor_log2(amax);
    match rule {
        ScaleRule::Floor | ScaleRule::Prescale(_) | ScaleRule::Mse { .. } => fl - emax,
        ScaleRule::Ceil => {
            let pow2 = pow2(fl) == amax;
            fl - emax + (!pow2) as i32
        }
        ScaleRule::Even => {
            // round amax's significand to the element's mantissa width, ties up
            let mb = match elem.spec().kind {
                crate::format::Kind::Int => elem.spec().man_bits - 1,
                _ => elem.spec().man_bits,
            };
            let sig = amax / pow2(fl); // in [1, 2), exact
            let rounded = (sig * pow2(mb as i32) + 0.5).floor();
            let carry = rounded >= pow2(mb as i32 + 1);
            fl + carry as i32 - emax
        }
        ScaleRule::Rceil => smallest_exp_covering(amax, elem.max_normal()),
        ScaleRule::FourOverSix => smallest_exp_covering(amax, 6.0),
    }
}

/// The smallest e with `top * 2^e >= amax` (exact: scaling by powers of two is exact).
pub fn smallest_exp_covering(amax: f64, top: f64) -> i32 {
    let e = floor_log2(amax) - floor_log2(top);
    if top * pow2(e) >= amax {
        // could a smaller exponent also cover? only if top's significand >= amax's
        if top * pow2(e - 1) >= amax {
            e - 1
        } else {
            e
        }
    } else {
        e + 1
    }
}
