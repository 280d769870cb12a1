//! Transformer LLM shapes (`models/llm/*.json`) and the GEMMs of one decoder block, simulated
//! and totalled for a whole model.

use super::config::TensorCoreConfig;
use super::gemm::{simulate_gemm, Bound, GemmReport, GemmShape};
use crate::error::{Error, Result};
use crate::mx::Scheme;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shape of a decoder-only transformer with grouped-query attention and a gated (SwiGLU)
/// feed-forward network, as in Llama / Qwen2 / openPangu configuration files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmShape {
    /// Model name.
    pub name: String,
    /// Model dimension (`hidden_size`).
    pub hidden_size: u64,
    /// Feed-forward dimension (`intermediate_size`).
    pub intermediate_size: u64,
    /// Query heads (`num_attention_heads`).
    pub num_heads: u64,
    /// Key/value heads (`num_key_value_heads`).
    pub num_kv_heads: u64,
    /// Dimension per head.
    pub head_dim: u64,
    /// Decoder blocks (`num_hidden_layers`).
    pub num_layers: u64,
    /// Vocabulary (`vocab_size`): the lm_head has this many outputs.
    pub vocab_size: u64,
    /// Where the numbers come from.
    pub source: String,
}

/// The shipped LLM shapes: (name, JSON text).
pub const LLM_PRESETS: &[(&str, &str)] = &[
    (
        "llama-3.1-8b",
        include_str!("../../models/llm/llama-3.1-8b.json"),
    ),
    (
        "llama-3.1-70b",
        include_str!("../../models/llm/llama-3.1-70b.json"),
    ),
    (
        "qwen2.5-7b",
        include_str!("../../models/llm/qwen2.5-7b.json"),
    ),
    (
        "openpangu-embedded-7b",
        include_str!("../../models/llm/openpangu-embedded-7b.json"),
    ),
    (
        "stories260k",
        include_str!("../../models/llm/stories260k.json"),
    ),
];

impl LlmShape {
    /// Names of the shipped shapes.
    pub fn preset_names() -> Vec<&'static str> {
        LLM_PRESETS.iter().map(|(n, _)| *n).collect()
    }

    /// A shipped shape by name, or a JSON file path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((n, text)) = LLM_PRESETS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name_or_path))
        {
            return Self::from_json(text, &format!("<model {n}>"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(Error::invalid(format!(
                "'{name_or_path}' is neither a model shape ({}) nor an existing file",
                Self::preset_names().join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, name_or_path)
    }

    /// Parse and validate JSON text; `origin` names the source in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let s: LlmShape =
            serde_json::from_str(text).map_err(|e| Error::malformed(origin, e.to_string()))?;
        s.validate()
            .map_err(|e| Error::malformed(origin, e.to_string()))?;
        Ok(s)
    }

    /// Check that every dimension is positive and the heads divide evenly.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("num_layers", self.num_layers),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return Err(Error::invalid(format!("{what} must be >= 1")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::invalid(format!(
                "num_heads ({}) must be a multiple of num_kv_heads ({})",
                self.num_heads, self.num_kv_heads
            )));
        }
        Ok(())
    }
}

/// Inference phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Process a prompt of `tokens` tokens per sequence.
    Prefill,
    /// Generate `tokens` (usually 1) new tokens per sequence against a KV cache.
    Decode,
}

impl std::str::FromStr for Phase {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "prefill" => Ok(Phase::Prefill),
            "decode" => Ok(Phase::Decode),
            _ => Err(Error::invalid(format!(
                "unknown phase '{s}' (expected prefill or decode)"
            ))),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        })
    }
}

/// What is run: phase, tokens, batch, context and operand schemes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Phase.
    pub phase: Phase,
    /// New tokens per sequence.
    pub tokens: u64,
    /// Sequences.
    pub batch: u64,
    /// Tokens already in the KV cache before these.
    pub context: u64,
    /// Weight scheme (B operand of projections).
    pub weights: Scheme,
    /// Activation scheme (A operand everywhere, and P in P x V).
    pub activations: Scheme,
    /// KV-cache scheme (B operand of QK^T and PV).
    pub kv: Scheme,
}

/// One GEMM of a block with its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedGemm {
    /// q, k, v, o, gate, up, down, qk, pv, lm_head.
    pub name: String,
    /// Its shape.
    pub shape: GemmShape,
}

/// The GEMMs of one decoder block, then lm_head (last element).
///
/// Projections: M = batch x tokens, N = output features, K = input features. Attention per
/// (sequence, KV head): QK^T has M = (query heads per KV head) x tokens, N = keys
/// (context + tokens; the full rectangle, as a kernel without causal block skipping computes),
/// K = head_dim; PV has M the same, N = head_dim, K = keys. lm_head: in prefill only the last
/// token of each sequence (inference), in decode every new token.
pub fn block_gemms(s: &LlmShape, w: &Workload) -> Vec<NamedGemm> {
    let t = w.batch * w.tokens;
    let q_dim = s.num_heads * s.head_dim;
    let kv_dim = s.num_kv_heads * s.head_dim;
    let group = s.num_heads / s.num_kv_heads;
    let keys = w.context + w.tokens;
    let (act, wt, kv) = (w.activations, w.weights, w.kv);
    let lin = |name: &str, n: u64, k: u64| NamedGemm {
        name: name.into(),
        shape: GemmShape::new(t, n, k, act, wt),
    };
    let lm_m = match w.phase {
        Phase::Prefill => w.batch,
        Phase::Decode => t,
    };
    vec![
        lin("q", q_dim, s.hidden_size),
        lin("k", kv_dim, s.hidden_size),
        lin("v", kv_dim, s.hidden_size),
        NamedGemm {
            name: "qk".into(),
            shape: GemmShape::new(group * w.tokens, keys, s.head_dim, act, kv)
                .with_count(w.batch * s.num_kv_heads),
        },
        NamedGemm {
            name: "pv".into(),
            shape: GemmShape::new(group * w.tokens, s.head_dim, keys, act, kv)
                .with_count(w.batch * s.num_kv_heads),
        },
        lin("o", s.hidden_size, q_dim),
        lin("gate", s.intermediate_size, s.hidden_size),
        lin("up", s.intermediate_size, s.hidden_size),
        lin("down", s.hidden_size, s.intermediate_size),
        NamedGemm {
            name: "lm_head".into(),
            shape: GemmShape::new(lm_m, s.vocab_size, s.hidden_size, act, wt),
        },
    ]
}

/// One row of a performance report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfRow {
    /// GEMM name.
    pub name: String,
    /// How many times it runs in the model (layers for block GEMMs, 1 for lm_head).
    pub repeats: u64,
    /// The simulated report of one occurrence.
    pub report: GemmReport,
    /// Its shape.
    pub shape: GemmShape,
}

/// Whole-model totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfTotals {
    /// Cycles of one decoder block.
    pub block_cycles: u64,
    /// Cycles of the whole model (layers x block + lm_head).
    pub model_cycles: u64,
    /// Seconds of the whole model.
    pub model_time_s: f64,
    /// Useful MACs of the whole model.
    pub model_macs: u64,
    /// Off-chip bytes (read + write) of the whole model.
    pub model_offchip_bytes: u64,
    /// MAC utilization over the whole model.
    pub mac_utilization: f64,
    /// Achieved TFLOP/s over the whole model.
    pub tflops: f64,
    /// Cycles spent in memory-bound GEMMs.
    pub memory_bound_cycles: u64,
    /// Energy in joules, when configured.
    pub energy_j: Option<f64>,
}

/// A model performance report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfReport {
    /// Hardware name.
    pub hardware: String,
    /// Model name.
    pub model: String,
    /// Workload.
    pub workload: Workload,
    /// One row per GEMM of a block, then lm_head.
    pub rows: Vec<PerfRow>,
    /// Totals.
    pub totals: PerfTotals,
}

/// Simulate every GEMM of one block and lm_head, and total the model. Deterministic: the
/// GEMMs are simulated in parallel but combined in a fixed order.
pub fn simulate_model(cfg: &TensorCoreConfig, s: &LlmShape, w: &Workload) -> Result<PerfReport> {
    use rayon::prelude::*;
    if w.tokens == 0 || w.batch == 0 {
        return Err(Error::invalid("tokens and batch must be >= 1"));
    }
    let gemms = block_gemms(s, w);
    let reports: Vec<Result<GemmReport>> = gemms
        .par_iter()
        .map(|g| {
            simulate_gemm(cfg, &g.shape).map_err(|e| Error::invalid(format!("{}: {e}", g.name)))
        })
        .collect();
    let mut rows = Vec::with_capacity(gemms.len());
    for (g, r) in gemms.into_iter().zip(reports) {
        let repeats = if g.name == "lm_head" { 1 } else { s.num_layers };
        rows.push(PerfRow {
            name: g.name,
            repeats,
            report: r?,
            shape: g.shape,
        });
    }
    let block_cycles = rows
        .iter()
        .filter(|r| r.repeats == s.num_layers && r.name != "lm_head")
        .map(|r| r.report.cycles)
        .sum::<u64>();
    let mut model_cycles = 0u64;
    let mut macs = 0u64;
    let mut off = 0u64;
    let mut mem_cycles = 0u64;
    let mut energy: Option<f64> = None;
    for r in &rows {
        model_cycles += r.repeats * r.report.cycles;
        macs += r.repeats * r.report.macs;
        off += r.repeats * (r.report.offchip_read_bytes + r.report.offchip_write_bytes);
        if r.report.bound == Bound::Memory {
            mem_cycles += r.repeats * r.report.cycles;
        }
        if let Some(e) = &r.report.energy {
            *energy.get_or_insert(0.0) += r.repeats as f64 * e.total_j;
        }
    }
    let time = model_cycles as f64 / (cfg.clock_ghz * 1e9);
    let totals = PerfTotals {
        block_cycles,
        model_cycles,
        model_time_s: time,
        model_macs: macs,
        model_offchip_bytes: off,
        mac_utilization: weighted_util(&rows, model_cycles),
        tflops: 2.0 * macs as f64 / time / 1e12,
        memory_bound_cycles: mem_cycles,
        energy_j: energy,
    };
    Ok(PerfReport {
        hardware: cfg.name.clone(),
        model: s.name.clone(),
        workload: w.clone(),
        rows,
        totals,
    })
}

/// Cycle-weighted mean of the GEMMs' utilizations (each GEMM's peak depends on its schemes).
fn weighted_util(rows: &[PerfRow], total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let s: f64 = rows
        .iter()
        .map(|r| r.report.mac_utilization * (r.repeats * r.report.cycles) as f64)
        .sum();
    (s / total as f64).min(1.0)
}
