//! `mxsim study`: every (PTQ method, plan, format) combination on one model, calibrated on one
//! text and evaluated on another; resumable, deterministic, with tables and plots.

use super::eval::{backend_from_args, BackendArgs};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::{evaluate, load_with_tokenizer, sequences, EvalOptions, Plan, Protocol};
use crate::mx::Scheme;
use crate::ptq::methods::{prepare, Method, PtqOptions};
use crate::report::study::{self as rs, LayerError, StudyRow};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

/// The methods of a full study (REFERENCE section 6).
pub const DEFAULT_METHODS: &str =
    "rtn,gptq,gptq-static,awq,smoothquant,quarot,spinquant,flatquant,mrgptq,prescale,mse,4over6,quarot+gptq";

/// Arguments of `mxsim study`.
#[derive(Args, Debug)]
pub struct StudyArgs {
    /// Model: a llama2.c checkpoint file or a Hugging Face model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Tokenizer (default: found beside the model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Calibration text (GPTQ Hessians, AWQ/SmoothQuant statistics, learned transforms).
    #[arg(long)]
    pub calib: PathBuf,
    /// Evaluation text.
    #[arg(long)]
    pub text: PathBuf,
    /// Comma-separated methods (see docs/ptq.md): rtn, gptq, gptq-static, gptq-actorder,
    /// gptq-static-actorder, awq, smoothquant, quarot, spinquant, flatquant, mrgptq,
    /// hadamard-block, prescale, mse, 4over6; combinations with '+' (quarot+gptq; add 'actorder'
    /// for GPTQ act-order: mrgptq+actorder).
    #[arg(long, default_value = DEFAULT_METHODS)]
    pub methods: String,
    /// Comma-separated named plans.
    #[arg(long, default_value = "W8A8,W4A8,W4A4")]
    pub plans: String,
    /// Comma-separated element formats.
    #[arg(long, default_value = "mxfp8,mxfp4,nvfp4")]
    pub formats: String,
    /// Backend options (the study uses the fast dequantize-then-f32 path unless a datapath
    /// is named).
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Output folder (results already there are reused).
    #[arg(long, default_value = "study")]
    pub out: PathBuf,
    /// Score at most this many evaluation tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Calibration tokens.
    #[arg(long, default_value_t = 4096)]
    pub calib_tokens: usize,
    /// Seed of random rotations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Per-layer error statistics over this many evaluation tokens.
    #[arg(long, default_value_t = 1024)]
    pub layer_tokens: usize,
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Run `mxsim study`.
pub fn run(a: StudyArgs) -> Result<i32> {
    let t0 = Instant::now();
    if a.backend.scale_rule.is_some() {
        return Err(Error::invalid("study: scale rules are methods here (prescale, mse, 4over6); --scale-rule is not accepted"));
    }
    let methods: Vec<Method> = split(&a.methods)
        .iter()
        .map(|m| Method::parse(m))
        .collect::<Result<_>>()?;
    let formats: Vec<Scheme> = split(&a.formats)
        .iter()
        .map(|f| f.parse())
        .collect::<Result<_>>()?;
    let plan_names = split(&a.plans);
    if methods.is_empty() || formats.is_empty() || plan_names.is_empty() {
        return Err(Error::invalid(
            "study: --methods, --plans and --formats must each name at least one",
        ));
    }
    // unique (plan, format) pairs: named plans that come out identical (W8A8 with mxfp4 is
    // W4A4 with mxfp4) run once, under the name whose weight width matches the format's
    let mut configs: Vec<(String, Scheme, Plan)> = Vec::new();
    let mut skipped = Vec::new();
    let nominal = |p: &str| {
        p.to_ascii_uppercase()
            .trim_start_matches('W')
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse::<u32>()
            .ok()
    };
    for p in &plan_names {
        for &f in &formats {
            let plan = Plan::named(p, Some(f))?;
            let name = p.to_ascii_uppercase();
            let matches_width = nominal(p) == Some(f.element().bits());
            match configs.iter_mut().find(|(_, _, q)| {
                q.weights == plan.weights
                    && q.activations == plan.activations
                    && q.kv_cache == plan.kv_cache
            }) {
                Some(c) => {
                    if matches_width && nominal(&c.0) != Some(f.element().bits()) {
                        skipped.push(format!("{} {} (= {name} {f})", c.0, c.1));
                        c.0 = name;
                    } else {
                        skipped.push(format!("{name} {f} (= {} {})", c.0, c.1));
                    }
                }
                None => configs.push((name, f, plan)),
            }
        }
    }
    let backend = backend_from_args(&a.backend)?;
    let (model, tok) = load_with_tokenizer(&a.model, a.tokenizer.as_deref())?;
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
    let proto = Protocol::Paragraphs { max_len: 256 };
    let calib = sequences(
        tok.as_ref(),
        model.config.bos_id,
        &read(&a.calib)?,
        proto,
        Some(a.calib_tokens),
    )?;
    let seqs = sequences(
        tok.as_ref(),
        model.config.bos_id,
        &read(&a.text)?,
        proto,
        a.max_tokens,
    )?;
    let runs = a.out.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
    let fp32 = evaluate(
        &model,
        None,
        &seqs,
        EvalOptions {
            layer_stat_tokens: 0,
        },
        &|_| {},
    )?;
    let opts = PtqOptions {
        calib_tokens: a.calib_tokens,
        seed: a.seed,
        ..Default::default()
    };
    let jobs: Vec<(&Method, &(String, Scheme, Plan))> = methods
        .iter()
        .flat_map(|m| configs.iter().map(move |c| (m, c)))
        .collect();
    let pb = ProgressBar::with_draw_target(Some(jobs.len() as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} runs, elapsed {elapsed}, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let rows: Vec<StudyRow> = jobs
        .par_iter()
        .map(|&(method, (plan_name, format, plan))| {
            let rule = crate::ptq::methods::method_plan(plan, method)
                .weights
                .iter()
                .flatten()
                .next()
                .map_or("none".to_string(), |c| c.rule.to_string());
            let key = StudyRow::key(&method.name, plan_name, format.name(), &rule);
            let file = runs.join(format!("{key}.json"));
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(row) = serde_json::from_str::<StudyRow>(&text) {
                    pb.inc(1);
                    return Ok(row);
                }
            }
            let t = Instant::now();
            let prep = prepare(&model, plan, method, &calib, &opts)?;
            let (pm, _, engine) = crate::ptq::methods::build_engine(prep, backend.clone())?;
            let rep = evaluate(
                &pm,
                Some(&engine),
                &seqs,
                EvalOptions {
                    layer_stat_tokens: a.layer_tokens,
                },
                &|_| {},
            )?;
            let row = StudyRow {
                method: method.name.clone(),
                plan: plan_name.clone(),
                format: format.name().to_string(),
                scale_rule: rule,
                ppl_fp32: fp32.ppl_reference,
                ppl: rep.ppl,
                kl: rep.kl_mean,
                top1: rep.top1_agreement,
                recovery: 0.0,
                drop_pct: 0.0,
                grade: rs::Grade::HighRisk,
                tokens: rep.tokens,
                seconds: t.elapsed().as_secs_f64(),
                layers: rep
                    .layers
                    .iter()
                    .map(|l| LayerError {
                        layer: l.layer,
                        role: l.role.clone(),
                        mode: l.mode.clone(),
                        sqnr_db: l.sqnr_db,
                    })
                    .collect(),
            }
            .finish();
            let json =
                serde_json::to_string_pretty(&row).map_err(|e| Error::invalid(e.to_string()))?;
            write_atomic(&file, json.as_bytes())?;
            pb.inc(1);
            pb.set_message(format!("{} {} {}", row.method, row.plan, row.format));
            Ok(row)
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    rs::write_csv(&a.out.join("results.csv"), &rows)?;
    rs::write_json(&a.out.join("results.json"), &rows)?;
    let notes = format!(
        "Model `{}`, calibration `{}` ({} tokens), evaluation `{}` ({} tokens, paragraph protocol, BOS, at most 256 tokens each); backend {}; fp32 perplexity {:.4}.{}",
        a.model.display(), a.calib.display(), calib.iter().map(|s| s.len()).sum::<usize>(), a.text.display(), fp32.tokens, backend.label(), fp32.ppl_reference,
        if skipped.is_empty() { String::new() } else { format!(" Skipped as duplicates: {}.", skipped.join(", ")) }
    );
    write_atomic(
        &a.out.join("summary.md"),
        rs::markdown(&rows, "PTQ study", &notes).as_bytes(),
    )?;
    rs::plot_perplexity(&a.out.join("perplexity.svg"), &rows)?;
    // per-layer plot: W4A4 MXFP4 when studied (the hardest common case), else the last pair
    let (pl, fm) = configs
        .iter()
        .find(|(p, f, _)| p == "W4A4" && *f == Scheme::Mxfp4)
        .or(configs.last())
        .map(|(p, f, _)| (p.clone(), f.name().to_string()))
        .unwrap_or_default();
    let sel: Vec<&StudyRow> = rows
        .iter()
        .filter(|r| r.plan == pl && r.format == fm && !r.layers.is_empty())
        .collect();
    if !sel.is_empty() {
        rs::plot_layer_error(
            &a.out.join("layer_error.svg"),
            &sel,
            &format!("layer-local SQNR, {pl} {fm}"),
        )?;
    }
    eprintln!(
        "study: {} runs in {:.1} s, results in {}",
        rows.len(),
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(0)
}
