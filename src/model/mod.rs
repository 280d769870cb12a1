//! Real LLMs on MX arithmetic: loaders for Llama-family checkpoints (llama2.c legacy and
//! version-1 files, Hugging Face safetensors folders) and tokenizers, a floating-point
//! reference forward (f32 or f64), a quantized forward driven by a per-role quantization
//! [`Plan`] whose matrix products run through a [`GemmBackend`] (fast dequantize-then-f32,
//! or a bit-exact datapath GEMM), and accuracy metrics (perplexity, KL divergence, top-1
//! agreement, per-layer SQNR and cosine similarity, zero-shot multiple choice).
//!
//! See `docs/models.md` for the user-level description.

pub mod config;
pub mod eval;
pub mod float;
pub mod forward;
pub mod hf;
pub mod llama2c;
pub mod mc;
pub mod online;
pub mod plan;
pub mod quant;
pub mod tokenizer;
pub mod weights;

pub use config::{Linear, ModelConfig};
pub use eval::{
    evaluate, paragraphs, perplexity, sequences, EvalOptions, EvalReport, LayerStat, Protocol,
};
pub use float::Float;
pub use forward::{forward, generate_greedy, Engine, KvCache, Reference, Site, Trace};
pub use hf::load_hf;
pub use llama2c::{load_llama2c, save_llama2c_v1};
pub use mc::{load_tasks, McItem, McReport};
pub use online::OnlineTransform;
pub use plan::{eight_bit_sibling, Plan};
pub use quant::{ideal_gemm, ExactGemmFn, GemmBackend, QuantEngine, QuantWeight};
pub use tokenizer::{load_tokenizer, Llama2cTokenizer, Tokenizer};
pub use weights::{LayerWeights, Model, Weights};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where the tokenizer of a model is when none is named: `tokenizer.json` inside a Hugging
/// Face folder; for a llama2.c file, `tokenizer.bin` or `tok<vocab_size>.bin` beside it.
pub fn default_tokenizer_path(model_path: &Path, vocab_size: usize) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = if model_path.is_dir() {
        vec![model_path.join("tokenizer.json")]
    } else {
        let dir = model_path.parent().unwrap_or(Path::new("."));
        vec![
            dir.join("tokenizer.bin"),
            dir.join(format!("tok{vocab_size}.bin")),
        ]
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::invalid(format!(
                "no tokenizer found (looked for {}); name one with --tokenizer",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Load a model and its tokenizer (the given one, or [`default_tokenizer_path`]).
pub fn load_with_tokenizer(
    model_path: &Path,
    tokenizer: Option<&Path>,
) -> Result<(Model, Box<dyn Tokenizer>)> {
    let model = Model::load(model_path)?;
    let c = &model.config;
    let tp = match tokenizer {
        Some(p) => p.to_path_buf(),
        None => default_tokenizer_path(model_path, c.vocab_size)?,
    };
    let tok = load_tokenizer(&tp, c.vocab_size, c.bos_id, c.eos_id)?;
    if tok.vocab_size() > c.vocab_size {
        return Err(Error::invalid(format!(
            "tokenizer {} has {} tokens but the model only {}",
            tp.display(),
            tok.vocab_size(),
            c.vocab_size
        )));
    }
    Ok((model, tok))
}
