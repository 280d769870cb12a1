//! `mxsim eval`: perplexity, KL divergence, top-1 agreement and per-layer errors of a
//! quantized model against its floating-point reference on a text file.

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::{
    evaluate, load_with_tokenizer, sequences, EvalOptions, EvalReport, GemmBackend, Plan, Protocol,
    QuantEngine,
};
use crate::mx::{ScaleRule, Scheme};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// How quantized products are computed (shared by the model commands).
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Datapath for the quantized products: `ideal` (exact products, f64 accumulation, one
    /// rounding; a numerical reference, not hardware) or a bit-exact datapath preset (exact,
    /// ocp-fp32, mxdotp, blackwell-mxf8f6f4, blackwell-mxf4nvf4, hopper-fp8) or TOML file.
    /// Without it (or with --fast), the fast mode is used.
    #[arg(long)]
    pub datapath: Option<String>,
    /// Fast mode: quantize, dequantize, multiply in float32 (NOT bit-exact).
    #[arg(long)]
    pub fast: bool,
    /// Scale rule for every quantized role (floor, ceil, even, rceil, prescale, prescale:F, mse, mse:N,
    /// 4over6).
    #[arg(long)]
    pub scale_rule: Option<ScaleRule>,
}

/// The backend the options ask for.
pub fn backend_from_args(a: &BackendArgs) -> Result<GemmBackend> {
    match (&a.datapath, a.fast) {
        (Some(_), true) => Err(Error::invalid("--fast and --datapath exclude each other")),
        (None, _) => Ok(GemmBackend::Fast),
        (Some(p), false) if p == "ideal" => Ok(GemmBackend::ideal()),
        (Some(p), false) => {
            let cfg = crate::datapath::DatapathConfig::load(p)?;
            Ok(GemmBackend::exact(p.clone(), move |a, b, c| {
                crate::datapath::gemm(a, b, c, &cfg)
            }))
        }
    }
}

/// Arguments of `mxsim eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model: a llama2.c checkpoint file or a Hugging Face model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Tokenizer (default: found beside the model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Text to score (UTF-8).
    #[arg(long)]
    pub text: PathBuf,
    /// Quantization plan: W8A8, W4A8, W4A4, W4A16, W4A8KV8, none, or a TOML plan file.
    #[arg(long, default_value = "none")]
    pub plan: String,
    /// Element format of a named plan: mxfp8 (E4M3), mxfp8_e5m2, mxfp6 (E2M3), mxfp6_e3m2,
    /// mxfp4, nvfp4, mxint8.
    #[arg(long)]
    pub format: Option<Scheme>,
    /// Backend options.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Score at most this many tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Longest paragraph in tokens, BOS included (paragraph protocol).
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Use fixed windows of this many tokens (BOS included) over the whole text instead of
    /// paragraphs.
    #[arg(long)]
    pub window: Option<usize>,
    /// Measure per-layer errors over the first sequences up to this many tokens (0: off).
    #[arg(long, default_value_t = 4096)]
    pub layer_tokens: usize,
    /// PTQ method to apply before evaluating (see docs/ptq.md): rtn, gptq, gptq-static,
    /// gptq-actorder, gptq-static-actorder, awq, smoothquant, quarot, spinquant, flatquant,
    /// mrgptq, hadamard-block, prescale, mse, 4over6, or a '+' combination such as quarot+gptq
    /// (add 'actorder' for GPTQ act-order: mrgptq+actorder). Needs --calib.
    #[arg(long)]
    pub method: Option<String>,
    /// Calibration text for --method (never the evaluation text).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Calibration tokens for --method.
    #[arg(long, default_value_t = 4096)]
    pub calib_tokens: usize,
    /// Seed of the random rotations of --method.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the per-layer table as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// Run `mxsim eval`.
pub fn run(a: EvalArgs) -> Result<i32> {
    let t0 = Instant::now();
    let (model, tok) = load_with_tokenizer(&a.model, a.tokenizer.as_deref())?;
    let text = std::fs::read_to_string(&a.text).map_err(|e| Error::io(&a.text, e))?;
    let protocol = match a.window {
        Some(len) => Protocol::Windows { len },
        None => Protocol::Paragraphs { max_len: a.max_len },
    };
    let seqs = sequences(
        tok.as_ref(),
        model.config.bos_id,
        &text,
        protocol,
        a.max_tokens,
    )?;
    let mut plan = Plan::load(&a.plan, a.format)?;
    if let Some(r) = a.backend.scale_rule {
        plan = plan.with_rule(r);
    }
    let backend = backend_from_args(&a.backend)?;
    let (model, plan, engine) = match &a.method {
        Some(name) => {
            let method = crate::ptq::methods::Method::parse(name)?;
            let cp = a.calib.as_ref().ok_or_else(|| {
                Error::invalid("--method needs --calib FILE (the calibration text)")
            })?;
            if plan.is_none() {
                return Err(Error::invalid(
                    "--method needs a quantization plan (--plan)",
                ));
            }
            let ctext = std::fs::read_to_string(cp).map_err(|e| Error::io(cp, e))?;
            let calib = sequences(
                tok.as_ref(),
                model.config.bos_id,
                &ctext,
                Protocol::Paragraphs { max_len: 256 },
                Some(a.calib_tokens),
            )?;
            let opts = crate::ptq::methods::PtqOptions {
                calib_tokens: a.calib_tokens,
                seed: a.seed,
                ..Default::default()
            };
            let prep = crate::ptq::methods::prepare(&model, &plan, &method, &calib, &opts)?;
            let (m, p, e) = crate::ptq::methods::build_engine(prep, backend.clone())?;
            (m, p, Some(e))
        }
        None => {
            if a.calib.is_some() {
                return Err(Error::invalid("--calib is only used with --method"));
            }
            let engine = if plan.is_none() {
                None
            } else {
                Some(QuantEngine::new(&model, plan.clone(), backend.clone())?)
            };
            (model, plan, engine)
        }
    };
    let total: u64 = seqs.iter().map(|s| (s.len() - 1) as u64).sum();
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tokens {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let opts = EvalOptions {
        layer_stat_tokens: a.layer_tokens,
    };
    let t1 = Instant::now();
    let report = evaluate(&model, engine.as_ref(), &seqs, opts, &|n| pb.inc(n))?;
    pb.finish_and_clear();
    let secs = t1.elapsed().as_secs_f64();
    print_report(&a, &plan, &backend, &report, protocol, secs);
    if let Some(p) = &a.json {
        let doc = serde_json::json!({
            "model": a.model.display().to_string(),
            "text": a.text.display().to_string(),
            "plan": plan.name,
            "plan_roles": plan.describe(),
            "backend": backend.label(),
            "datapath_gemm": engine.is_some() && backend.is_exact(),
            "protocol": protocol,
            "max_tokens": a.max_tokens,
            "eval_seconds": secs,
            "total_seconds": t0.elapsed().as_secs_f64(),
            "report": report,
        });
        let s = serde_json::to_string_pretty(&doc).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(p, s.as_bytes())?;
    }
    if let Some(p) = &a.csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        for row in &report.layers {
            w.serialize(row)
                .map_err(|e| Error::invalid(e.to_string()))?;
        }
        let bytes = w.into_inner().map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(p, &bytes)?;
    }
    Ok(0)
}

fn print_report(
    a: &EvalArgs,
    plan: &Plan,
    backend: &GemmBackend,
    r: &EvalReport,
    protocol: Protocol,
    secs: f64,
) {
    println!("model      {}", a.model.display());
    println!(
        "protocol   {protocol:?}, {} sequences, {} scored tokens",
        r.sequences, r.tokens
    );
    println!("plan       {}", plan.name);
    if plan.is_none() {
        println!("perplexity {:.4} (float32 reference)", r.ppl_reference);
        println!("time       {secs:.2} s");
        return;
    }
    println!("backend    {}", backend.label());
    println!(
        "perplexity {:.4} (reference {:.4}, {:+.2}%)",
        r.ppl, r.ppl_reference, r.ppl_change_pct
    );
    println!("KL         {:.6} nats/token", r.kl_mean);
    println!("top-1      {:.4}", r.top1_agreement);
    println!("time       {secs:.2} s");
    if !r.layers.is_empty() {
        println!(
            "\nper-layer error over the first {} tokens (SQNR dB / cosine):",
            r.layer_stat_tokens
        );
        print!("{:<12}{:>6}", "mode", "layer");
        for role in crate::model::eval::ROLES {
            print!("{role:>15}");
        }
        println!();
        for chunk in r.layers.chunks(crate::model::eval::ROLES.len()) {
            print!("{:<12}{:>6}", chunk[0].mode, chunk[0].layer);
            for s in chunk {
                print!("{:>15}", format!("{:.1}/{:.4}", s.sqnr_db, s.cosine));
            }
            println!();
        }
    }
}
