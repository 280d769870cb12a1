//! `mxsim mc`: zero-shot multiple-choice accuracy on lm-evaluation-harness-style JSONL tasks.

use super::eval::{backend_from_args, BackendArgs};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::{load_tasks, load_with_tokenizer, mc, Plan, QuantEngine, Reference};
use crate::mx::Scheme;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `mxsim mc`.
#[derive(Args, Debug)]
pub struct McArgs {
    /// Model: a llama2.c checkpoint file or a Hugging Face model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Tokenizer (default: found beside the model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Task file (JSON Lines: context, choices, gold).
    #[arg(long)]
    pub tasks: PathBuf,
    /// Quantization plan (W8A8, W4A8, W4A4, W4A16, W4A8KV8, none, or a TOML file).
    #[arg(long, default_value = "none")]
    pub plan: String,
    /// Element format of a named plan.
    #[arg(long)]
    pub format: Option<Scheme>,
    /// Backend options.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Run `mxsim mc`.
pub fn run(a: McArgs) -> Result<i32> {
    let (model, tok) = load_with_tokenizer(&a.model, a.tokenizer.as_deref())?;
    let items = load_tasks(&a.tasks)?;
    let mut plan = Plan::load(&a.plan, a.format)?;
    if let Some(r) = a.backend.scale_rule {
        plan = plan.with_rule(r);
    }
    let report = if plan.is_none() {
        mc::score(&model, &model.weights, &Reference, tok.as_ref(), &items)?
    } else {
        let engine = QuantEngine::new(&model, plan.clone(), backend_from_args(&a.backend)?)?;
        mc::score(&model, &model.weights, &engine, tok.as_ref(), &items)?
    };
    println!("plan {}", plan.name);
    println!("{:<24}{:>6}{:>10}{:>10}", "task", "n", "acc", "acc_norm");
    for (name, s) in &report.tasks {
        println!("{name:<24}{:>6}{:>10.4}{:>10.4}", s.n, s.acc, s.acc_norm);
    }
    let o = &report.overall;
    println!(
        "{:<24}{:>6}{:>10.4}{:>10.4}",
        "overall", o.n, o.acc, o.acc_norm
    );
    if let Some(p) = &a.json {
        let doc = serde_json::json!({ "plan": plan.name, "report": report });
        let s = serde_json::to_string_pretty(&doc).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(p, s.as_bytes())?;
    }
    Ok(0)
}
