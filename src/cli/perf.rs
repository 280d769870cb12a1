//! `mxsim perf`: cycle estimate of every GEMM of an LLM on a tensor-core configuration.

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::mx::Scheme;
use crate::sim::llm::{simulate_model, LlmShape, PerfReport, Phase, Workload};
use crate::sim::TensorCoreConfig;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `mxsim perf`.
#[derive(Args, Debug)]
pub struct PerfArgs {
    /// Hardware preset (see `mxsim hw list`) or TOML file.
    #[arg(long)]
    pub hw: String,
    /// Model shape preset (llama-3.1-8b, llama-3.1-70b, qwen2.5-7b, openpangu-embedded-7b,
    /// stories260k) or JSON file.
    #[arg(long)]
    pub model: String,
    /// prefill or decode.
    #[arg(long)]
    pub phase: Phase,
    /// New tokens per sequence (default: 2048 for prefill, 1 for decode).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Sequences in the batch.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Tokens already in the KV cache (default: 0 for prefill, 2048 for decode).
    #[arg(long)]
    pub context: Option<u64>,
    /// Weight scheme (mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, nvfp4).
    #[arg(long)]
    pub weights: Scheme,
    /// Activation scheme.
    #[arg(long)]
    pub activations: Scheme,
    /// KV-cache scheme (default: the activation scheme).
    #[arg(long)]
    pub kv: Option<Scheme>,
    /// Write the rows and totals as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the full report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Render the report as CSV: one row per GEMM, then `block` and `model` total rows.
pub fn to_csv(r: &PerfReport) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::invalid(format!("CSV: {e}"));
    w.write_record([
        "gemm",
        "repeats",
        "m",
        "n",
        "k",
        "count",
        "a",
        "b",
        "cycles",
        "time_s",
        "mac_utilization",
        "tflops",
        "bound",
        "instructions",
        "offchip_read_bytes",
        "offchip_scale_bytes",
        "offchip_write_bytes",
        "arithmetic_intensity",
        "tile_m",
        "tile_n",
        "tile_k",
        "swapped",
    ])
    .map_err(err)?;
    for row in &r.rows {
        let g = &row.report;
        let t = &g.tiling;
        w.write_record([
            row.name.clone(),
            row.repeats.to_string(),
            row.shape.m.to_string(),
            row.shape.n.to_string(),
            row.shape.k.to_string(),
            row.shape.count.to_string(),
            row.shape.a.to_string(),
            row.shape.b.to_string(),
            g.cycles.to_string(),
            format!("{:e}", g.time_s),
            format!("{:.6}", g.mac_utilization),
            format!("{:.3}", g.tflops),
            g.bound.to_string(),
            t.instructions.to_string(),
            g.offchip_read_bytes.to_string(),
            g.offchip_scale_bytes.to_string(),
            g.offchip_write_bytes.to_string(),
            format!("{:.3}", g.arithmetic_intensity),
            t.tile_m.to_string(),
            t.tile_n.to_string(),
            t.tile_k.to_string(),
            t.swapped.to_string(),
        ])
        .map_err(err)?;
    }
    let tt = &r.totals;
    let blank = || String::new();
    for (name, cycles) in [("block", tt.block_cycles), ("model", tt.model_cycles)] {
        let mut rec = vec![name.to_string()];
        rec.extend((0..7).map(|_| blank()));
        rec.push(cycles.to_string());
        if name == "model" {
            rec.push(format!("{:e}", tt.model_time_s));
            rec.push(format!("{:.6}", tt.mac_utilization));
            rec.push(format!("{:.3}", tt.tflops));
        } else {
            rec.extend((0..3).map(|_| blank()));
        }
        rec.extend((0..10).map(|_| blank()));
        w.write_record(&rec).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::invalid(format!("CSV: {e}")))
}

/// Run `mxsim perf`.
pub fn run(a: PerfArgs) -> Result<i32> {
    let cfg = TensorCoreConfig::load(&a.hw)?;
    let shape = LlmShape::load(&a.model)?;
    let (dt, dc) = match a.phase {
        Phase::Prefill => (2048, 0),
        Phase::Decode => (1, 2048),
    };
    let w = Workload {
        phase: a.phase,
        tokens: a.tokens.unwrap_or(dt),
        batch: a.batch,
        context: a.context.unwrap_or(dc),
        weights: a.weights,
        activations: a.activations,
        kv: a.kv.unwrap_or(a.activations),
    };
    let r = simulate_model(&cfg, &shape, &w)?;
    println!(
        "{} on {}: {} tokens x {} sequences, context {}, weights {}, activations {}, kv {}",
        r.model, r.hardware, w.tokens, w.batch, w.context, w.weights, w.activations, w.kv
    );
    println!(
        "{:<8} {:>5} {:>8} {:>8} {:>7} {:>6} {:>14} {:>11} {:>6} {:>9} {:>7} {:>12}",
        "gemm",
        "x",
        "M",
        "N",
        "K",
        "count",
        "cycles",
        "time_us",
        "util%",
        "TFLOP/s",
        "bound",
        "instructions"
    );
    for row in &r.rows {
        let g = &row.report;
        println!(
            "{:<8} {:>5} {:>8} {:>8} {:>7} {:>6} {:>14} {:>11.3} {:>6.1} {:>9.1} {:>7} {:>12}",
            row.name,
            row.repeats,
            row.shape.m,
            row.shape.n,
            row.shape.k,
            row.shape.count,
            g.cycles,
            g.time_s * 1e6,
            g.mac_utilization * 100.0,
            g.tflops,
            g.bound.to_string(),
            g.tiling.instructions
        );
    }
    let t = &r.totals;
    println!(
        "block: {} cycles; model ({} layers x block + lm_head): {} cycles = {:.3} ms, {:.1} TFLOP/s, utilization {:.1}%, off-chip {:.3} GB, memory-bound cycles {:.1}%{}",
        t.block_cycles,
        shape.num_layers,
        t.model_cycles,
        t.model_time_s * 1e3,
        t.tflops,
        t.mac_utilization * 100.0,
        t.model_offchip_bytes as f64 / 1e9,
        100.0 * t.memory_bound_cycles as f64 / t.model_cycles.max(1) as f64,
        t.energy_j.map(|e| format!(", energy {:.3} J", e)).unwrap_or_default()
    );
    if let Some(p) = &a.csv {
        write_atomic(p, &to_csv(&r)?)?;
    }
    if let Some(p) = &a.json {
        let j = serde_json::to_vec_pretty(&r).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(p, &j)?;
    }
    Ok(0)
}
