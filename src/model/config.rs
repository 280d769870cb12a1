//! Hyper-parameters of a Llama-family decoder and the names of its tensor roles.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The architecture of a Llama-family decoder-only transformer (Llama 1/2/3, Mistral, Qwen2,
/// llama2.c's TinyStories models): pre-norm RMSNorm blocks, rotary position embeddings,
/// grouped-query attention and a SwiGLU feed-forward network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Width of the residual stream (`hidden_size`).
    pub dim: usize,
    /// Width of the feed-forward layer (`intermediate_size`).
    pub hidden_dim: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (grouped-query attention when smaller than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one attention head (`dim / n_heads` unless a checkpoint says otherwise).
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence the model was trained for (positions beyond it are refused).
    pub seq_len: usize,
    /// RoPE base frequency (`rope_theta`, 10000 for Llama 2).
    pub rope_theta: f64,
    /// RMSNorm epsilon (1e-5 for llama2.c; `rms_norm_eps` in Hugging Face configs).
    pub norm_eps: f64,
    /// Whether the query, key and value projections carry biases (Qwen2).
    pub attn_bias: bool,
    /// Whether the classifier (lm_head) shares the token-embedding matrix.
    pub tied_embeddings: bool,
    /// Token id of beginning-of-sequence.
    pub bos_id: u32,
    /// Token id of end-of-sequence.
    pub eos_id: u32,
}

impl ModelConfig {
    /// Width of all query heads together (`n_heads * head_dim`).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together (`n_kv_heads * head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Check that the numbers describe a model this crate can run; every size is bounded so
    /// that no later product overflows.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("model config: {m}")));
        for (name, v) in [
            ("dim", self.dim),
            ("hidden_dim", self.hidden_dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("seq_len", self.seq_len),
        ] {
            if v == 0 || v > (1 << 24) {
                return bad(format!("{name} = {v} is out of range (1..=16777216)"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rope_theta {} must be positive", self.rope_theta));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return bad(format!("norm_eps {} must be non-negative", self.norm_eps));
        }
        if self.bos_id as usize >= self.vocab_size || self.eos_id as usize >= self.vocab_size {
            return bad(format!(
                "bos/eos ids {}/{} outside the vocabulary of {}",
                self.bos_id, self.eos_id, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Number of f32 parameters (biases and untied classifier included); `None` on overflow.
    pub fn n_params(&self) -> Option<usize> {
        let d = self.dim;
        let per_layer = d
            .checked_mul(2)?
            .checked_add(d.checked_mul(self.q_dim())?.checked_mul(2)?)?
            .checked_add(d.checked_mul(self.kv_dim())?.checked_mul(2)?)?
            .checked_add(d.checked_mul(self.hidden_dim)?.checked_mul(3)?)?
            .checked_add(if self.attn_bias {
                self.q_dim() + 2 * self.kv_dim()
            } else {
                0
            })?;
        let emb = self.vocab_size.checked_mul(d)?;
        per_layer
            .checked_mul(self.n_layers)?
            .checked_add(emb.checked_mul(if self.tied_embeddings { 1 } else { 2 })?)?
            .checked_add(d)
    }
}

/// The seven linear layers of a transformer block, by their llama2.c names (Hugging Face
/// names in brackets): `wq` (q_proj), `wk` (k_proj), `wv` (v_proj), `wo` (o_proj), `w1`
/// (gate_proj), `w2` (down_proj), `w3` (up_proj).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Linear {
    /// Query projection.
    Wq,
    /// Key projection.
    Wk,
    /// Value projection.
    Wv,
    /// Attention output projection.
    Wo,
    /// Feed-forward gate projection (its output goes through SiLU).
    W1,
    /// Feed-forward down projection.
    W2,
    /// Feed-forward up projection.
    W3,
}

impl Linear {
    /// All seven, in block order.
    pub const ALL: [Linear; 7] = [
        Linear::Wq,
        Linear::Wk,
        Linear::Wv,
        Linear::Wo,
        Linear::W1,
        Linear::W3,
        Linear::W2,
    ];

    /// The llama2.c name (`wq` ... `w3`).
    pub const fn name(self) -> &'static str {
        match self {
            Linear::Wq => "wq",
            Linear::Wk => "wk",
            Linear::Wv => "wv",
            Linear::Wo => "wo",
            Linear::W1 => "w1",
            Linear::W2 => "w2",
            Linear::W3 => "w3",
        }
    }

    /// Index 0..7 (for per-linear tables).
    pub const fn index(self) -> usize {
        match self {
            Linear::Wq => 0,
            Linear::Wk => 1,
            Linear::Wv => 2,
            Linear::Wo => 3,
            Linear::W1 => 4,
            Linear::W2 => 5,
            Linear::W3 => 6,
        }
    }
}

impl std::fmt::Display for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Linear {
    type Err = Error;
    /// Accepts llama2.c names (`wq`..`w3`) and Hugging Face names (`q_proj`, `k_proj`,
    /// `v_proj`, `o_proj`, `gate_proj`, `down_proj`, `up_proj`).
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "wq" | "q_proj" => Linear::Wq,
            "wk" | "k_proj" => Linear::Wk,
            "wv" | "v_proj" => Linear::Wv,
            "wo" | "o_proj" => Linear::Wo,
            "w1" | "gate_proj" => Linear::W1,
            "w2" | "down_proj" => Linear::W2,
            "w3" | "up_proj" => Linear::W3,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown linear layer '{s}' (expected wq, wk, wv, wo, w1, w2, w3 or the Hugging Face names)"
                )))
            }
        })
    }
}
