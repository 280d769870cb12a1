//! Quantization plans: which tensor roles of the model are block-quantized, and how.
//!
//! Roles: the weights of each of the seven linear layers (`wq wk wv wo w1 w2 w3`), the
//! activations entering each of them, the KV cache (keys and values rounded as they are
//! stored), the two attention matmuls (`qk`: both Q and K quantized along `head_dim`; `pv`:
//! the probabilities P and V quantized along the sequence axis, the reduction axis of that
//! product), and, only when a plan says so, the token embedding and the classifier
//! (`lm_head`). RMSNorm, RoPE, softmax, SiLU and the residual additions always stay in high
//! precision.
//!
//! Named plans (`W8A8`, `W4A8`, `W4A4`, `W4A16`, `W4A8KV8`) combine with an element format
//! given separately (see [`Plan::named`] for the mapping); a plan can also be a TOML file
//! ([`Plan::from_toml`]).

use super::config::Linear;
use crate::error::{Error, Result};
use crate::format::Rounding;
use crate::mx::{MxConfig, ScaleRule, Scheme};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The full quantization plan of a model: `None` means the role stays in high precision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// A name for reports.
    pub name: String,
    /// Weight quantization of each linear layer, indexed by [`Linear::index`].
    pub weights: [Option<MxConfig>; 7],
    /// Quantization of the activation entering each linear layer (per token, blocks along
    /// the layer's input features), indexed by [`Linear::index`].
    pub activations: [Option<MxConfig>; 7],
    /// KV cache storage (each position's keys or values of all heads as one row, blocks
    /// along that row).
    pub kv_cache: Option<MxConfig>,
    /// Q K^T: Q rows and K rows quantized along `head_dim`.
    pub qk: Option<MxConfig>,
    /// P V: probability rows quantized along the key positions, V along the key positions.
    pub pv: Option<MxConfig>,
    /// Token-embedding table (rounded once).
    pub embedding: Option<MxConfig>,
    /// Classifier weights.
    pub lm_head_weights: Option<MxConfig>,
    /// Classifier input activations.
    pub lm_head_activations: Option<MxConfig>,
}

/// The 8-bit format paired with a lower-precision one in the named plans: MXINT8 for
/// MXINT8, MXFP8 E5M2 for itself, MXFP8 E4M3 for every other format (MXFP8 E4M3, MXFP6,
/// MXFP4, NVFP4).
pub fn eight_bit_sibling(s: Scheme) -> Scheme {
    match s {
        Scheme::Mxint8 => Scheme::Mxint8,
        Scheme::Mxfp8E5m2 => Scheme::Mxfp8E5m2,
        _ => Scheme::Mxfp8E4m3,
    }
}

/// Configuration of a weight tensor in scheme `s`: the scheme's standard configuration
/// (OCP floor rule, RNE, NVFP4 with its per-tensor FP32 scale).
pub fn weight_config(s: Scheme) -> MxConfig {
    MxConfig::new(s)
}

/// Configuration of a run-time tensor (activations, KV cache, attention operands) in scheme
/// `s`: as [`weight_config`] but without NVFP4's per-tensor scale, which would make one
/// token's rounding depend on the other tokens of the batch (and so break causality).
pub fn activation_config(s: Scheme) -> MxConfig {
    let mut c = MxConfig::new(s);
    c.nv_tensor_scale = false;
    c
}

impl Plan {
    /// No quantization at all (the reference).
    pub fn none() -> Self {
        Plan {
            name: "none".into(),
            weights: std::array::from_fn(|_| None),
            activations: std::array::from_fn(|_| None),
            kv_cache: None,
            qk: None,
            pv: None,
            embedding: None,
            lm_head_weights: None,
            lm_head_activations: None,
        }
    }

    /// Whether no role is quantized.
    pub fn is_none(&self) -> bool {
        self.weights
            .iter()
            .chain(&self.activations)
            .all(|c| c.is_none())
            && self.kv_cache.is_none()
            && self.qk.is_none()
            && self.pv.is_none()
            && self.embedding.is_none()
            && self.lm_head_weights.is_none()
            && self.lm_head_activations.is_none()
    }

    /// A named plan with element format `format` (default: MXFP8 E4M3 for `W8A8`, MXFP4
    /// for the others).
    ///
    /// The bit widths in a name are nominal; the format given replaces the plan's lowest
    /// width, and the 8-bit slots above it take the format's [`eight_bit_sibling`]:
    /// - `W8A8`: weights and activations of every linear in `format`;
    /// - `W4A8`: weights in `format`, activations in its 8-bit sibling;
    /// - `W4A4`: weights and activations in `format`;
    /// - `W4A16`: weights in `format`, activations in high precision (f32);
    /// - `W4A8KV8`: `W4A8` plus the KV cache in the 8-bit sibling.
    ///
    /// So `W4A8` with `mxfp4` is MXFP4 weights and MXFP8 E4M3 activations, with `nvfp4`
    /// NVFP4 weights and MXFP8 E4M3 activations, with `mxint8` MXINT8 for both. The
    /// attention matmuls, embedding and classifier stay in high precision in every named
    /// plan (a TOML plan can quantize them). `none` (or `fp32`) is the empty plan.
    pub fn named(name: &str, format: Option<Scheme>) -> Result<Self> {
        let key = name.to_ascii_uppercase();
        if key == "NONE" || key == "FP32" {
            return Ok(Plan::none());
        }
        let default = if key == "W8A8" {
            Scheme::Mxfp8E4m3
        } else {
            Scheme::Mxfp4
        };
        let f = format.unwrap_or(default);
        let s8 = eight_bit_sibling(f);
        let (w, a, kv) = match key.as_str() {
            "W8A8" | "W4A4" => (Some(f), Some(f), None),
            "W4A8" => (Some(f), Some(s8), None),
            "W4A16" => (Some(f), None, None),
            "W4A8KV8" => (Some(f), Some(s8), Some(s8)),
            _ => {
                return Err(Error::invalid(format!(
                    "unknown plan '{name}' (expected W8A8, W4A8, W4A4, W4A16, W4A8KV8, none, or a TOML plan file)"
                )))
            }
        };
        let mut p = Plan::none();
        p.name = format!("{key}-{f}");
        p.weights = [0; 7].map(|_| w.map(weight_config));
        p.activations = [0; 7].map(|_| a.map(activation_config));
        p.kv_cache = kv.map(activation_config);
        Ok(p)
    }

    /// A plan from a TOML file's text, or a named plan when `name_or_path` is not a file.
    pub fn load(name_or_path: &str, format: Option<Scheme>) -> Result<Self> {
        let p = std::path::Path::new(name_or_path);
        if p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            let plan = Plan::from_toml(&text).map_err(|e| Error::malformed(p, e.to_string()))?;
            if format.is_some() {
                return Err(Error::invalid(
                    "--format applies to named plans only; a TOML plan names its formats",
                ));
            }
            return Ok(plan);
        }
        Plan::named(name_or_path, format)
    }

    /// Parse a TOML plan. Top-level keys (all optional): `name`; `weights` and `activations`
    /// (defaults for the seven linears); `kv_cache`, `qk`, `pv`, `embedding`,
    /// `lm_head_weights`, `lm_head_activations`; and tables `[linear.<wq|wk|wv|wo|w1|w2|w3>]`
    /// with `weights` / `activations` overriding the defaults for one linear. Each value is
    /// a table `{ format = "mxfp4", rule = "floor", block = 32, rounding = "rne",
    /// tensor_scale = true }` where only `format` is required and `format = "none"` means
    /// high precision. Example:
    ///
    /// ```toml
    /// name = "w4a8-fp8-down"
    /// weights = { format = "mxfp4", rule = "prescale" }
    /// activations = { format = "mxfp8" }
    /// [linear.w2]
    /// weights = { format = "mxfp8" }
    /// ```
    pub fn from_toml(text: &str) -> Result<Self> {
        let f: PlanFile =
            toml::from_str(text).map_err(|e| Error::invalid(format!("invalid plan: {e}")))?;
        let mut p = Plan::none();
        p.name = f.name.clone().unwrap_or_else(|| "custom".into());
        let dw = f
            .weights
            .as_ref()
            .map(|s| s.to_config(true))
            .transpose()?
            .flatten();
        let da = f
            .activations
            .as_ref()
            .map(|s| s.to_config(false))
            .transpose()?
            .flatten();
        p.weights = [0; 7].map(|_| dw.clone());
        p.activations = [0; 7].map(|_| da.clone());
        for (name, ov) in &f.linear {
            let l: Linear = name.parse()?;
            if let Some(s) = &ov.weights {
                p.weights[l.index()] = s.to_config(true)?;
            }
            if let Some(s) = &ov.activations {
                p.activations[l.index()] = s.to_config(false)?;
            }
        }
        let act = |s: &Option<QSpec>| {
            s.as_ref()
                .map(|s| s.to_config(false))
                .transpose()
                .map(Option::flatten)
        };
        p.kv_cache = act(&f.kv_cache)?;
        p.qk = act(&f.qk)?;
        p.pv = act(&f.pv)?;
        p.lm_head_activations = act(&f.lm_head_activations)?;
        p.embedding = f
            .embedding
            .as_ref()
            .map(|s| s.to_config(true))
            .transpose()?
            .flatten();
        p.lm_head_weights = f
            .lm_head_weights
            .as_ref()
            .map(|s| s.to_config(true))
            .transpose()?
            .flatten();
        Ok(p)
    }

    /// Use scale rule `rule` for every quantized role.
    pub fn with_rule(mut self, rule: ScaleRule) -> Self {
        let set = |c: &mut Option<MxConfig>| {
            if let Some(c) = c {
                c.rule = rule;
            }
        };
        self.weights.iter_mut().for_each(set);
        self.activations.iter_mut().for_each(set);
        for c in [
            &mut self.kv_cache,
            &mut self.qk,
            &mut self.pv,
            &mut self.embedding,
            &mut self.lm_head_weights,
            &mut self.lm_head_activations,
        ] {
            set(c);
        }
        self
    }

    /// One line per quantized role (`role: scheme block rule`), for reports.
    pub fn describe(&self) -> Vec<String> {
        let d = |c: &MxConfig| {
            format!(
                "{} block {} rule {}{}",
                c.scheme,
                c.block_size,
                c.rule,
                if c.nv_tensor_scale {
                    " +tensor-scale"
                } else {
                    ""
                }
            )
        };
        let mut out = Vec::new();
        for l in Linear::ALL {
            let w = self.weights[l.index()]
                .as_ref()
                .map_or("high precision".into(), d);
            let a = self.activations[l.index()]
                .as_ref()
                .map_or("high precision".into(), d);
            out.push(format!("{l}: weights {w}; activations {a}"));
        }
        for (n, c) in [
            ("kv_cache", &self.kv_cache),
            ("qk", &self.qk),
            ("pv", &self.pv),
            ("embedding", &self.embedding),
            ("lm_head weights", &self.lm_head_weights),
            ("lm_head activations", &self.lm_head_activations),
        ] {
            out.push(format!(
                "{n}: {}",
                c.as_ref().map_or("high precision".into(), d)
            ));
        }
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: Option<String>,
    weights: Option<QSpec>,
    activations: Option<QSpec>,
    kv_cache: Option<QSpec>,
    qk: Option<QSpec>,
    pv: Option<QSpec>,
    embedding: Option<QSpec>,
    lm_head_weights: Option<QSpec>,
    lm_head_activations: Option<QSpec>,
    #[serde(default)]
    linear: BTreeMap<String, LinearSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearSpec {
    weights: Option<QSpec>,
    activations: Option<QSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QSpec {
    format: String,
    rule: Option<String>,
    block: Option<usize>,
    rounding: Option<String>,
    tensor_scale: Option<bool>,
}

impl QSpec {
    fn to_config(&self, weight: bool) -> Result<Option<MxConfig>> {
        if self.format.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let s: Scheme = self.format.parse()?;
        let mut c = if weight {
            weight_config(s)
        } else {
            activation_config(s)
        };
        if let Some(r) = &self.rule {
            c.rule = r.parse()?;
        }
        if let Some(b) = self.block {
            if b == 0 {
                return Err(Error::invalid("block must be at least 1"));
            }
            c.block_size = b;
        }
        if let Some(r) = &self.rounding {
            c.rounding = r.parse::<Rounding>()?;
        }
        if let Some(t) = self.tensor_scale {
            c.nv_tensor_scale = t;
        }
        Ok(Some(c))
    }
}
