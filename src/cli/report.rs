//! `mxsim report`: the built-in quantization report (the default main job). Every MX /
//! NVFP4 scheme under every scale rule, applied to seeded LLM-like data (Gaussian activations
//! with a few large-outlier channels), printed as a table of SQNR, max abs error and the
//! fraction of blocks whose maximum was clipped.

use crate::error::{Error, Result};
use crate::format::Format;
use crate::io::write_atomic;
use crate::mx::{quantize, MxConfig, ScaleRule, Scheme};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `mxsim report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Rows (tokens) of the built-in data.
    #[arg(long, default_value_t = 128)]
    pub rows: usize,
    /// Columns (channels) of the built-in data; blocks run along this axis.
    #[arg(long, default_value_t = 4096)]
    pub cols: usize,
    /// Number of large-outlier channels.
    #[arg(long, default_value_t = 8)]
    pub outliers: usize,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the table as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the table as CSV to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    /// Scheme name.
    pub scheme: String,
    /// Scale rule name.
    pub rule: String,
    /// Signal-to-quantization-noise ratio in dB.
    pub sqnr_db: f64,
    /// Largest absolute error.
    pub max_abs_err: f64,
    /// Fraction of blocks whose maximum was clipped.
    pub clipped_fraction: f64,
}

/// Seeded LLM-like activations: `rows x cols` standard normal values (Box-Muller on ChaCha8),
/// with `outliers` channels (columns) scaled by a gain drawn uniformly from [20, 100], the
/// outlier-channel pattern seen in LLM activations.
pub fn llm_like_data(rows: usize, cols: usize, outliers: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gain = vec![1.0f64; cols];
    for _ in 0..outliers.min(cols) {
        let c = rng.gen_range(0..cols);
        gain[c] = rng.gen_range(20.0..100.0);
    }
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows * cols {
        let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
        let u2: f64 = rng.gen();
        let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        out.push((g * gain[i % cols]) as f32);
    }
    out
}

/// The rules the report runs for a scheme (4over6 only for FP4 elements).
pub fn rules_for(scheme: Scheme) -> Vec<ScaleRule> {
    let mut r = vec![
        ScaleRule::Floor,
        ScaleRule::Ceil,
        ScaleRule::Even,
        ScaleRule::Rceil,
        ScaleRule::Prescale(0.75),
        ScaleRule::Mse { alphas: 0 },
    ];
    if scheme.element() == Format::E2M1 {
        r.push(ScaleRule::FourOverSix);
    }
    r
}

/// Compute the report rows.
pub fn compute(rows: usize, cols: usize, outliers: usize, seed: u64) -> Result<Vec<ReportRow>> {
    if rows == 0 || cols == 0 {
        return Err(Error::invalid("--rows and --cols must be at least 1"));
    }
    let data = llm_like_data(rows, cols, outliers, seed);
    let orig: Vec<f64> = data.iter().map(|&x| x as f64).collect();
    let mut out = Vec::new();
    for scheme in Scheme::ALL {
        for rule in rules_for(scheme) {
            let cfg = MxConfig::new(scheme).with_rule(rule);
            let t = quantize(&data, rows, cols, &cfg)?;
            let s = t.stats(&orig);
            out.push(ReportRow {
                scheme: scheme.to_string(),
                rule: rule.to_string(),
                sqnr_db: s.sqnr_db,
                max_abs_err: s.max_abs_err,
                clipped_fraction: s.clipped_fraction,
            });
        }
    }
    Ok(out)
}

/// Run `mxsim report`.
pub fn run(a: ReportArgs) -> Result<i32> {
    let rows = compute(a.rows, a.cols, a.outliers, a.seed)?;
    let csv_bytes = match &a.csv {
        Some(p) => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in &rows {
                w.serialize(r)
                    .map_err(|e| Error::invalid(format!("{}: {e}", p.display())))?;
            }
            Some(
                w.into_inner()
                    .map_err(|e| Error::invalid(format!("{}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    if let (Some(p), Some(b)) = (&a.csv, &csv_bytes) {
        write_atomic(p, b)?;
    }
    if a.json {
        let s = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::invalid(format!("JSON output: {e}")))?;
        println!("{s}");
        return Ok(0);
    }
    println!(
        "Block quantization of {} x {} seeded LLM-like activations (N(0,1), {} outlier channels with gain 20..100, seed {}), RNE elements",
        a.rows, a.cols, a.outliers, a.seed
    );
    println!(
        "{:<11} {:<14} {:>9} {:>12} {:>9}",
        "scheme", "rule", "SQNR dB", "max abs err", "clipped"
    );
    for r in &rows {
        println!(
            "{:<11} {:<14} {:>9.3} {:>12.5} {:>9.5}",
            r.scheme, r.rule, r.sqnr_db, r.max_abs_err, r.clipped_fraction
        );
    }
    Ok(0)
}
