//! Zero-shot multiple-choice scoring in the manner of lm-evaluation-harness: for each
//! choice, the summed log-likelihood of the continuation given the context; the prediction
//! is the choice with the highest sum (`acc`) or the highest sum divided by the
//! continuation's length in bytes (`acc_norm`).
//!
//! Task files are JSON Lines, one question per line: `{"context": "...", "choices": ["...",
//! ...], "gold": 0}` (also accepted: `query`/`ctx` for the context, `endings` for the
//! choices, `label`/`answer` for the gold index; an optional `task` names the task for
//! per-task accuracy). As in the harness, a choice's tokens are those of `context + choice`
//! beyond the tokens of `context` alone (BOS prepended to both), so a choice should usually
//! start with a space.

use super::eval::log_softmax;
use super::float::Float;
use super::forward::{forward, Engine, KvCache};
use super::tokenizer::Tokenizer;
use super::weights::Model;
use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McItem {
    /// Task name (`default` when the line has none).
    pub task: String,
    /// The context (question).
    pub context: String,
    /// The candidate continuations.
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
}

/// Read a JSONL task file.
pub fn load_tasks(path: &Path) -> Result<Vec<McItem>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_tasks(path, &text)
}

/// Parse JSONL task text (`path` only names it in errors).
pub fn parse_tasks(path: &Path, text: &str) -> Result<Vec<McItem>> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: String| Error::malformed(path, format!("line {}: {m}", i + 1));
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let get = |keys: &[&str]| keys.iter().find_map(|k| v.get(*k));
        let context = get(&["context", "query", "ctx"])
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad("missing string 'context'".into()))?
            .to_string();
        let choices: Vec<String> = get(&["choices", "endings"])
            .and_then(|x| x.as_array())
            .ok_or_else(|| bad("missing array 'choices'".into()))?
            .iter()
            .map(|c| {
                c.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("choices must be strings".into()))
            })
            .collect::<Result<_>>()?;
        if choices.len() < 2 {
            return Err(bad("needs at least two choices".into()));
        }
        let gold = get(&["gold", "label", "answer"])
            .and_then(|x| {
                x.as_u64()
                    .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| bad("missing integer 'gold'".into()))? as usize;
        if gold >= choices.len() {
            return Err(bad(format!(
                "gold index {gold} but only {} choices",
                choices.len()
            )));
        }
        let task = v
            .get("task")
            .and_then(|x| x.as_str())
            .unwrap_or("default")
            .to_string();
        items.push(McItem {
            task,
            context,
            choices,
            gold,
        });
    }
    if items.is_empty() {
        return Err(Error::malformed(path, "no questions in the task file"));
    }
    Ok(items)
}

/// Accuracy figures of one task.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct McScore {
    /// Questions.
    pub n: usize,
    /// Accuracy by summed log-likelihood.
    pub acc: f64,
    /// Accuracy by log-likelihood per byte of the continuation.
    pub acc_norm: f64,
}

/// The results: per task and overall, and each question's choice log-likelihoods.
#[derive(Debug, Clone, Serialize)]
pub struct McReport {
    /// Per task.
    pub tasks: BTreeMap<String, McScore>,
    /// All questions together.
    pub overall: McScore,
    /// Summed log-likelihood of each choice of each question.
    pub loglik: Vec<Vec<f64>>,
}

/// Log-likelihood of `cont` after `ctx` (both token lists; `ctx` starts with BOS).
fn continuation_loglik<T: Float, E: Engine<T>>(
    model: &Model,
    w: &super::weights::Weights<T>,
    engine: &E,
    ctx: &[u32],
    cont: &[u32],
) -> Result<f64> {
    let cfg = &model.config;
    let mut all = ctx.to_vec();
    all.extend_from_slice(cont);
    if all.len() > cfg.seq_len {
        let cut = all.len() - cfg.seq_len;
        if cut >= ctx.len() {
            return Err(Error::invalid(
                "a choice is longer than the model's context",
            ));
        }
        all.drain(1..1 + cut); // keep BOS, drop the oldest context tokens
    }
    let mut cache = KvCache::new(cfg);
    let logits = forward(cfg, w, engine, &all, &mut cache, None)?;
    let v = cfg.vocab_size;
    let start = all.len() - cont.len();
    let mut ll = 0.0;
    for i in start..all.len() {
        let row: Vec<f32> = logits[(i - 1) * v..i * v]
            .iter()
            .map(|x| x.to_f32())
            .collect();
        ll += log_softmax(&row)[all[i] as usize];
    }
    Ok(ll)
}

/// Score every question (parallel over questions, deterministic).
pub fn score<T: Float, E: Engine<T>>(
    model: &Model,
    w: &super::weights::Weights<T>,
    engine: &E,
    tok: &dyn Tokenizer,
    items: &[McItem],
) -> Result<McReport> {
    let bos = model.config.bos_id;
    let loglik: Vec<Vec<f64>> = items
        .par_iter()
        .map(|it| {
            let mut ctx = tok.encode(&it.context, false)?;
            ctx.insert(0, bos);
            it.choices
                .iter()
                .map(|c| {
                    let mut whole = tok.encode(&format!("{}{}", it.context, c), false)?;
                    whole.insert(0, bos);
                    let n = ctx.len().min(whole.len());
                    let cont = &whole[n..];
                    if cont.is_empty() {
                        return Err(Error::invalid(format!(
                            "choice '{c}' adds no token to its context"
                        )));
                    }
                    continuation_loglik(model, w, engine, &whole[..n], cont)
                })
                .collect::<Result<Vec<f64>>>()
        })
        .collect::<Result<_>>()?;
    let mut tasks: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (it, ll) in items.iter().zip(&loglik) {
        let best = argmax_f64(ll.iter().copied());
        let best_norm = argmax_f64(
            ll.iter()
                .zip(&it.choices)
                .map(|(&l, c)| l / c.len().max(1) as f64),
        );
        for key in [it.task.clone(), "\u{0}overall".to_string()] {
            let e = tasks.entry(key).or_default();
            e.0 += 1;
            e.1 += (best == it.gold) as usize;
            e.2 += (best_norm == it.gold) as usize;
        }
    }
    let sc = |(n, a, b): (usize, usize, usize)| McScore {
        n,
        acc: a as f64 / n as f64,
        acc_norm: b as f64 / n as f64,
    };
    let overall = sc(tasks.remove("\u{0}overall").unwrap_or_default());
    Ok(McReport {
        tasks: tasks.into_iter().map(|(k, v)| (k, sc(v))).collect(),
        overall,
        loglik,
    })
}

fn argmax_f64(it: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
