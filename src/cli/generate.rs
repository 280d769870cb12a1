//! `mxsim generate`: greedy text generation with the floating-point reference or a
//! quantized plan.

use super::eval::{backend_from_args, BackendArgs};
use crate::error::Result;
use crate::model::{generate_greedy, load_with_tokenizer, Plan, QuantEngine, Reference};
use crate::mx::Scheme;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `mxsim generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model: a llama2.c checkpoint file or a Hugging Face model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Tokenizer (llama2.c tokenizer.bin, or tokenizer.json with the hf-tokenizers feature);
    /// default: found beside the model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt text (BOS is always prepended; empty: generate from BOS alone).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Number of tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub steps: usize,
    /// Run in f64 instead of f32 (reference only).
    #[arg(long)]
    pub f64: bool,
    /// Quantization plan (W8A8, W4A8, W4A4, W4A16, W4A8KV8, or a TOML file); default none.
    #[arg(long)]
    pub plan: Option<String>,
    /// Element format of a named plan (mxfp8, mxfp6, mxfp4, nvfp4, mxint8, ...).
    #[arg(long)]
    pub format: Option<Scheme>,
    /// Backend options.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Run `mxsim generate`.
pub fn run(a: GenerateArgs) -> Result<i32> {
    let (model, tok) = load_with_tokenizer(&a.model, a.tokenizer.as_deref())?;
    let cfg = &model.config;
    let mut prompt = tok.encode(&a.prompt, false)?;
    prompt.insert(0, cfg.bos_id);
    let plan = match &a.plan {
        Some(p) => Plan::load(p, a.format)?,
        None => Plan::none(),
    };
    let plan = match &a.backend.scale_rule {
        Some(r) => plan.with_rule(*r),
        None => plan,
    };
    let out = if plan.is_none() {
        if a.f64 {
            let w = model.weights.cast::<f64>();
            generate_greedy(cfg, &w, &Reference, &prompt, a.steps)?
        } else {
            generate_greedy(cfg, &model.weights, &Reference, &prompt, a.steps)?
        }
    } else {
        if a.f64 {
            return Err(crate::Error::invalid(
                "--f64 applies to the unquantized reference only",
            ));
        }
        let engine = QuantEngine::new(&model, plan, backend_from_args(&a.backend)?)?;
        eprintln!(
            "mxsim: plan {} on {}",
            engine.plan().name,
            engine.backend().label()
        );
        generate_greedy(cfg, &model.weights, &engine, &prompt, a.steps)?
    };
    let text = tok.decode(&[&prompt[1..], &out[..]].concat());
    let mut so = std::io::stdout().lock();
    let _ = writeln!(so, "{text}");
    Ok(0)
}
