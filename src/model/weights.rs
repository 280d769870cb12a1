//! Model weights in memory: row-major `out x in` matrices (the `N x K` layout of the
//! datapath's `B` operand), queries and keys in the interleaved-pair RoPE layout of llama2.c.

use super::config::{Linear, ModelConfig};
use super::float::Float;
use super::online::OnlineTransform;
use crate::error::{Error, Result};

/// The weights of one transformer block. Every matrix is row-major `out x in`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights<T> {
    /// RMSNorm weight before attention (`dim`).
    pub attn_norm: Vec<T>,
    /// Query projection (`q_dim x dim`), rows of each head in interleaved RoPE order.
    pub wq: Vec<T>,
    /// Key projection (`kv_dim x dim`), rows of each head in interleaved RoPE order.
    pub wk: Vec<T>,
    /// Value projection (`kv_dim x dim`).
    pub wv: Vec<T>,
    /// Attention output projection (`dim x q_dim`).
    pub wo: Vec<T>,
    /// Query bias (`q_dim`, interleaved order), when the model has attention biases.
    pub bq: Option<Vec<T>>,
    /// Key bias (`kv_dim`, interleaved order).
    pub bk: Option<Vec<T>>,
    /// Value bias (`kv_dim`).
    pub bv: Option<Vec<T>>,
    /// RMSNorm weight before the feed-forward network (`dim`).
    pub ffn_norm: Vec<T>,
    /// Gate projection (`hidden_dim x dim`).
    pub w1: Vec<T>,
    /// Down projection (`dim x hidden_dim`).
    pub w2: Vec<T>,
    /// Up projection (`hidden_dim x dim`).
    pub w3: Vec<T>,
    /// Online input transforms of each linear layer (indexed by [`Linear::index`]), applied in
    /// order to the layer's input before its matrix product; empty for a plain model. PTQ
    /// methods that rotate activations at run time put them here.
    pub online: [Vec<OnlineTransform>; 7],
}

impl<T: Float> LayerWeights<T> {
    /// The shared input of a group of linears after their online transforms (which must be
    /// the same for every member), or `None` when they have none.
    pub fn group_online_input(
        &self,
        group: &[Linear],
        x: &[T],
        rows: usize,
    ) -> Result<Option<Vec<T>>> {
        let first = &self.online[group[0].index()];
        if group.iter().any(|w| &self.online[w.index()] != first) {
            return Err(Error::invalid(
                "linears that share an input must have the same online transforms",
            ));
        }
        Ok(self.online_input(group[0], x, rows))
    }

    /// The input of linear `which` after its online transforms (`rows` rows), or `None` when it
    /// has none.
    pub fn online_input(&self, which: Linear, x: &[T], rows: usize) -> Option<Vec<T>> {
        let ts = &self.online[which.index()];
        if ts.is_empty() {
            return None;
        }
        let mut v = x.to_vec();
        for t in ts {
            t.apply(&mut v, rows);
        }
        Some(v)
    }

    /// The matrix of a linear layer.
    pub fn linear(&self, l: Linear) -> &[T] {
        match l {
            Linear::Wq => &self.wq,
            Linear::Wk => &self.wk,
            Linear::Wv => &self.wv,
            Linear::Wo => &self.wo,
            Linear::W1 => &self.w1,
            Linear::W2 => &self.w2,
            Linear::W3 => &self.w3,
        }
    }
}

/// All weights of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights<T> {
    /// Token embedding (`vocab_size x dim`).
    pub tok_emb: Vec<T>,
    /// The blocks.
    pub layers: Vec<LayerWeights<T>>,
    /// Final RMSNorm weight (`dim`).
    pub final_norm: Vec<T>,
    /// Classifier (`vocab_size x dim`); `None` when tied to the token embedding.
    pub lm_head: Option<Vec<T>>,
}

impl<T: Float> Weights<T> {
    /// The classifier matrix (the embedding when tied).
    pub fn classifier(&self) -> &[T] {
        self.lm_head.as_deref().unwrap_or(&self.tok_emb)
    }

    /// Convert every weight to another float type (f32 -> f64 is exact).
    pub fn cast<U: Float>(&self) -> Weights<U> {
        let c = |v: &Vec<T>| {
            v.iter()
                .map(|&x| U::from_f64(x.to_f64()))
                .collect::<Vec<U>>()
        };
        let co = |v: &Option<Vec<T>>| v.as_ref().map(c);
        Weights {
            tok_emb: c(&self.tok_emb),
            layers: self
                .layers
                .iter()
                .map(|l| LayerWeights {
                    attn_norm: c(&l.attn_norm),
                    wq: c(&l.wq),
                    wk: c(&l.wk),
                    wv: c(&l.wv),
                    wo: c(&l.wo),
                    bq: co(&l.bq),
                    bk: co(&l.bk),
                    bv: co(&l.bv),
                    ffn_norm: c(&l.ffn_norm),
                    w1: c(&l.w1),
                    w2: c(&l.w2),
                    w3: c(&l.w3),
                    online: l.online.clone(),
                })
                .collect(),
            final_norm: c(&self.final_norm),
            lm_head: co(&self.lm_head),
        }
    }

    /// Check every tensor's length against the configuration.
    pub fn validate(&self, cfg: &ModelConfig) -> Result<()> {
        let chk = |name: String, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "weight {name} has {got} values, expected {want}"
                )))
            }
        };
        let (d, h, q, kv, v) = (
            cfg.dim,
            cfg.hidden_dim,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.vocab_size,
        );
        chk("tok_emb".into(), self.tok_emb.len(), v * d)?;
        chk("final_norm".into(), self.final_norm.len(), d)?;
        if let Some(w) = &self.lm_head {
            chk("lm_head".into(), w.len(), v * d)?;
        }
        chk("layers".into(), self.layers.len(), cfg.n_layers)?;
        for (i, l) in self.layers.iter().enumerate() {
            chk(format!("layers.{i}.attn_norm"), l.attn_norm.len(), d)?;
            chk(format!("layers.{i}.wq"), l.wq.len(), q * d)?;
            chk(format!("layers.{i}.wk"), l.wk.len(), kv * d)?;
            chk(format!("layers.{i}.wv"), l.wv.len(), kv * d)?;
            chk(format!("layers.{i}.wo"), l.wo.len(), d * q)?;
            chk(format!("layers.{i}.ffn_norm"), l.ffn_norm.len(), d)?;
            chk(format!("layers.{i}.w1"), l.w1.len(), h * d)?;
            chk(format!("layers.{i}.w2"), l.w2.len(), d * h)?;
            chk(format!("layers.{i}.w3"), l.w3.len(), h * d)?;
            for which in Linear::ALL {
                let k = match which {
                    Linear::Wo => q,
                    Linear::W2 => h,
                    _ => d,
                };
                for t in &l.online[which.index()] {
                    t.validate()?;
                    chk(format!("layers.{i}.online.{which:?}"), t.len(), k)?;
                }
            }
            for (n, b, want) in [("bq", &l.bq, q), ("bk", &l.bk, kv), ("bv", &l.bv, kv)] {
                if let Some(b) = b {
                    chk(format!("layers.{i}.{n}"), b.len(), want)?;
                }
            }
        }
        Ok(())
    }
}

/// A loaded model: its configuration and its weights in float32 (the precision of the
/// reference; an f64 copy is made with [`Weights::cast`] when needed).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Architecture.
    pub config: ModelConfig,
    /// Weights.
    pub weights: Weights<f32>,
}

impl Model {
    /// Build a model, checking that weights and configuration agree.
    pub fn new(config: ModelConfig, weights: Weights<f32>) -> Result<Self> {
        config.validate()?;
        weights.validate(&config)?;
        Ok(Model { config, weights })
    }

    /// Load a model from a llama2.c checkpoint file or a Hugging Face model folder
    /// (`config.json` plus `*.safetensors`), chosen by whether `path` is a directory.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        if path.is_dir() {
            super::hf::load_hf(path)
        } else {
            super::llama2c::load_llama2c(path)
        }
    }
}
