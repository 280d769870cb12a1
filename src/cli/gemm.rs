//! `mxsim gemm`: `D = A x B + C` through a bit-exact datapath model, from float32/float64
//! `.npy` inputs (quantized along K here) or from already-quantized codes and scales (replay of
//! exact hardware operands).
//!
//! With `--hw <core preset or TOML>`, D is computed in that tensor core's tiling
//! ([`crate::sim::gemm_tiled`]: tile by tile, K step by K step, accumulators carried across K
//! steps) and the cycle report of the same tiling is printed (and written with
//! `--report-json`); the executed MMA instruction count must equal the tiling's. The datapath
//! is the one the hardware uses for the operand schemes; an explicit `--datapath` that is a
//! different configuration is rejected.
//!
//! Quantized operand layout (what `--dump-quantized DIR` writes and the `--*-codes/--*-scales`
//! options read), all uint8 `.npy`, row-major:
//! - `a_codes.npy`: M x K element codes of A (one code per byte, low bits for FP6/FP4);
//! - `a_scales.npy`: M x ceil(K / block) scale codes of A (E8M0, or UE4M3 for NVFP4);
//! - `b_codes.npy`: N x K element codes of B TRANSPOSED (row j holds column j of B);
//! - `b_scales.npy`: N x ceil(K / block) scale codes of B transposed;
//! - `globals.json`: `{"a_global_scale": ..., "b_global_scale": ...}` (1 for MX; NVFP4's FP32
//!   tensor scale or the pre-scale factor otherwise), read back with `--a-global/--b-global`.

use crate::datapath::{gemm_stats, gemm_with_stats, DatapathConfig, GemmStats};
use crate::error::{Error, Result};
use crate::io::{read_npy, write_atomic, write_npy, NpyArray};
use crate::mx::{quantize_f64, MxConfig, MxTensor, ScaleRule, Scheme};
use crate::sim::{gemm_tiled, GemmReport, TensorCoreConfig, TiledGemm};
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `mxsim gemm`.
#[derive(Args, Debug)]
pub struct GemmArgs {
    /// A: M x K float32/float64 `.npy` (quantized along K).
    #[arg(long)]
    pub a: Option<PathBuf>,
    /// B: K x N float32/float64 `.npy` (its columns are quantized along K).
    #[arg(long)]
    pub b: Option<PathBuf>,
    /// C: M x N float32/float64 `.npy` (the accumulator input; zero when absent).
    #[arg(long)]
    pub c: Option<PathBuf>,
    /// Replay: A's element codes, uint8 M x K.
    #[arg(long)]
    pub a_codes: Option<PathBuf>,
    /// Replay: A's scale codes, uint8 M x ceil(K/block).
    #[arg(long)]
    pub a_scales: Option<PathBuf>,
    /// Replay: B's element codes, uint8 N x K (B transposed).
    #[arg(long)]
    pub b_codes: Option<PathBuf>,
    /// Replay: B's scale codes, uint8 N x ceil(K/block).
    #[arg(long)]
    pub b_scales: Option<PathBuf>,
    /// Replay: A's global scale (default 1).
    #[arg(long, default_value_t = 1.0)]
    pub a_global: f64,
    /// Replay: B's global scale (default 1).
    #[arg(long, default_value_t = 1.0)]
    pub b_global: f64,
    /// A's scheme (mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, nvfp4).
    #[arg(long)]
    pub a_format: Scheme,
    /// B's scheme.
    #[arg(long)]
    pub b_format: Scheme,
    /// Datapath preset name (see `mxsim datapath list`) or a TOML file. Default: `exact`, or
    /// with `--hw` the datapath the hardware uses for these schemes (an explicit `--datapath`
    /// must then be the same configuration, or the command is rejected).
    #[arg(long)]
    pub datapath: Option<String>,
    /// Tensor-core preset (see `mxsim hw list`) or TOML file: compute D in that hardware's
    /// tiling and print its cycle report (same tiling, same instruction count).
    #[arg(long)]
    pub hw: Option<String>,
    /// With `--hw`: write the cycle report as JSON.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Scale rule for quantizing float inputs (floor, ceil, even, rceil, prescale, prescale:F, mse, mse:N, 4over6).
    #[arg(long, default_value = "floor")]
    pub scale_rule: ScaleRule,
    /// Block size (default: the scheme's, 32 for MX and 16 for NVFP4).
    #[arg(long)]
    pub block: Option<usize>,
    /// Output D: M x N float32 `.npy`.
    #[arg(long)]
    pub output: PathBuf,
    /// Also write the quantized operands actually used (layout in the command's docs).
    #[arg(long)]
    pub dump_quantized: Option<PathBuf>,
}

/// A fully prepared GEMM: operands, accumulator input, datapath. The seam where a cycle model
/// (`--hw <core-preset>`) can take the same job and its [`GemmStats`].
pub struct GemmJob {
    /// A, M x K.
    pub a: MxTensor,
    /// B transposed, N x K.
    pub b: MxTensor,
    /// C, M x N.
    pub c: Option<Vec<f32>>,
    /// The datapath.
    pub cfg: DatapathConfig,
    /// The tensor core whose tiling the GEMM follows (`--hw`), if any.
    pub hw: Option<TensorCoreConfig>,
}

impl GemmJob {
    /// Compute D and the instruction statistics (datapath alone, no tiling).
    pub fn execute(&self) -> Result<(Vec<f32>, GemmStats)> {
        gemm_with_stats(&self.a, &self.b, self.c.as_deref(), &self.cfg)
    }

    /// With `hw`: compute D in the hardware's tiling ([`gemm_tiled`]) together with the cycle
    /// report of that tiling. `None` without `hw`.
    pub fn execute_on_hw(&self) -> Result<Option<TiledGemm>> {
        self.hw
            .as_ref()
            .map(|hw| gemm_tiled(hw, &self.a, &self.b, self.c.as_deref(), &self.cfg))
            .transpose()
    }
}

/// The datapath of a run: `--datapath` alone (default `exact`); with `--hw`, the datapath the
/// hardware uses for `A x B`, which an explicit `--datapath` must equal (name aside).
fn resolve_datapath(a: &GemmArgs) -> Result<(DatapathConfig, Option<TensorCoreConfig>)> {
    let Some(hw) = &a.hw else {
        if a.report_json.is_some() {
            return Err(Error::invalid("--report-json needs --hw"));
        }
        return Ok((
            DatapathConfig::load(a.datapath.as_deref().unwrap_or("exact"))?,
            None,
        ));
    };
    let core = TensorCoreConfig::load(hw)?;
    let name = core.datapath_for(a.a_format, a.b_format)?;
    let hw_cfg = DatapathConfig::load(&name)?;
    if let Some(given) = &a.datapath {
        let mut g = DatapathConfig::load(given)?;
        g.name = hw_cfg.name.clone();
        if g != hw_cfg {
            return Err(Error::invalid(format!(
                "--datapath {given} differs from datapath '{name}', which hardware '{}' uses for {} x {}; omit --datapath (or give '{name}') to run on this hardware",
                core.name, a.a_format, a.b_format
            )));
        }
    }
    Ok((hw_cfg, Some(core)))
}

fn read_float_2d(p: &Path, what: &str) -> Result<(Vec<f64>, usize, usize)> {
    let arr = read_npy(p)?;
    if !arr.is_float() {
        return Err(Error::invalid(format!(
            "{what} ({}): expected a float32 or float64 array, found {}",
            p.display(),
            arr.dtype_name()
        )));
    }
    if arr.shape.len() != 2 {
        return Err(Error::invalid(format!(
            "{what} ({}): expected a 2-D array, found shape {:?}",
            p.display(),
            arr.shape
        )));
    }
    Ok((arr.to_f64(), arr.shape[0], arr.shape[1]))
}

fn read_u8_2d(p: &Path, what: &str) -> Result<(Vec<u8>, usize, usize)> {
    let arr = read_npy(p)?;
    let v = arr.as_u8(&format!("{what} ({})", p.display()))?.to_vec();
    if arr.shape.len() != 2 {
        return Err(Error::invalid(format!(
            "{what} ({}): expected a 2-D array, found shape {:?}",
            p.display(),
            arr.shape
        )));
    }
    Ok((v, arr.shape[0], arr.shape[1]))
}

fn replay_tensor(
    scheme: Scheme,
    block: usize,
    codes: &Path,
    scales: &Path,
    global: f64,
    what: &str,
) -> Result<MxTensor> {
    let (c, rows, cols) = read_u8_2d(codes, &format!("{what} codes"))?;
    let (s, srows, scols) = read_u8_2d(scales, &format!("{what} scales"))?;
    let bpr = cols.div_ceil(block);
    if srows != rows || scols != bpr {
        return Err(Error::invalid(format!(
            "{what} scales ({}): expected shape [{rows}, {bpr}] for {rows} x {cols} codes in blocks of {block}, found [{srows}, {scols}]",
            scales.display()
        )));
    }
    let bits = scheme.element().bits();
    if bits < 8 {
        if let Some(bad) = c.iter().find(|&&x| x >> bits != 0) {
            return Err(Error::invalid(format!(
                "{what} codes ({}): code {bad:#04x} does not fit the {bits}-bit {} element",
                codes.display(),
                scheme.element().name()
            )));
        }
    }
    if !(global.is_finite() && global > 0.0) {
        return Err(Error::invalid(format!(
            "{what} global scale {global} must be positive and finite"
        )));
    }
    Ok(MxTensor {
        scheme,
        block_size: block,
        rows,
        cols,
        codes: c,
        scales: s,
        global_scale: global,
        clipped_blocks: 0,
    })
}

/// Build the job from the arguments (reads and validates every input; writes nothing).
pub fn prepare(a: &GemmArgs) -> Result<GemmJob> {
    let (cfg, hw) = resolve_datapath(a)?;
    let block_a = a.block.unwrap_or(a.a_format.default_block());
    let block_b = a.block.unwrap_or(a.b_format.default_block());
    if block_a == 0 {
        return Err(Error::invalid("--block must be at least 1"));
    }
    let float_mode = a.a.is_some() || a.b.is_some();
    let replay_mode =
        a.a_codes.is_some() || a.a_scales.is_some() || a.b_codes.is_some() || a.b_scales.is_some();
    let (ta, tb) = match (float_mode, replay_mode) {
        (true, true) => {
            return Err(Error::invalid(
                "give either --a/--b (float inputs) or --a-codes/--a-scales/--b-codes/--b-scales (quantized inputs), not both",
            ))
        }
        (false, false) => {
            return Err(Error::invalid(
                "missing inputs: give --a and --b (float), or --a-codes, --a-scales, --b-codes and --b-scales",
            ))
        }
        (true, false) => {
            let (pa, pb) = match (&a.a, &a.b) {
                (Some(x), Some(y)) => (x, y),
                _ => return Err(Error::invalid("float inputs need both --a and --b")),
            };
            let (va, m, k) = read_float_2d(pa, "A")?;
            let (vb, kb, n) = read_float_2d(pb, "B")?;
            if kb != k {
                return Err(Error::invalid(format!(
                    "A is {m} x {k} but B is {kb} x {n}: inner dimensions differ"
                )));
            }
            // B^T: N x K
            let mut bt = vec![0f64; n * k];
            for r in 0..k {
                for c in 0..n {
                    bt[c * k + r] = vb[r * n + c];
                }
            }
            let ca = MxConfig::new(a.a_format).with_rule(a.scale_rule).with_block(block_a);
            let cb = MxConfig::new(a.b_format).with_rule(a.scale_rule).with_block(block_b);
            (quantize_f64(&va, m, k, &ca)?, quantize_f64(&bt, n, k, &cb)?)
        }
        (false, true) => {
            let need = |p: &Option<PathBuf>, name: &str| {
                p.clone().ok_or_else(|| Error::invalid(format!("quantized inputs need --{name}")))
            };
            let ta = replay_tensor(a.a_format, block_a, &need(&a.a_codes, "a-codes")?, &need(&a.a_scales, "a-scales")?, a.a_global, "A")?;
            let tb = replay_tensor(a.b_format, block_b, &need(&a.b_codes, "b-codes")?, &need(&a.b_scales, "b-scales")?, a.b_global, "B")?;
            if ta.cols != tb.cols {
                return Err(Error::invalid(format!(
                    "A codes are {} x {} but B codes (B transposed) are {} x {}: K differs",
                    ta.rows, ta.cols, tb.rows, tb.cols
                )));
            }
            (ta, tb)
        }
    };
    let c = match &a.c {
        None => None,
        Some(p) => {
            let (v, r, cc) = read_float_2d(p, "C")?;
            if r != ta.rows || cc != tb.rows {
                return Err(Error::invalid(format!(
                    "C ({}) is {r} x {cc}, expected M x N = {} x {}",
                    p.display(),
                    ta.rows,
                    tb.rows
                )));
            }
            Some(v.iter().map(|&x| x as f32).collect())
        }
    };
    Ok(GemmJob {
        a: ta,
        b: tb,
        c,
        cfg,
        hw,
    })
}

/// Run `mxsim gemm`.
pub fn run(args: GemmArgs) -> Result<i32> {
    let job = prepare(&args)?;
    let (d, stats, tiled) = match job.execute_on_hw()? {
        Some(t) => {
            let (m, n, k) = (job.a.rows, job.b.rows, job.a.cols);
            let st = gemm_stats(
                &job.cfg,
                (job.a.scheme, job.a.block_size),
                (job.b.scheme, job.b.block_size),
                m,
                n,
                k,
            )?;
            let TiledGemm {
                d,
                instructions,
                datapath_ops,
                report,
            } = t;
            (d, st, Some((instructions, datapath_ops, report)))
        }
        None => {
            let (d, st) = job.execute()?;
            (d, st, None)
        }
    };
    let report_json = match (&tiled, &args.report_json) {
        (Some((ins, ops, r)), Some(_)) => Some(
            serde_json::to_vec_pretty(&serde_json::json!({
                "hardware": job.hw.as_ref().map(|h| h.name.clone()),
                "datapath": job.cfg.name,
                "functional_mma_instructions": ins,
                "functional_datapath_operations": ops,
                "report": r,
            }))
            .map_err(|e| Error::invalid(format!("report JSON: {e}")))?,
        ),
        _ => None,
    };
    // everything computed: now write (each file atomically)
    if let Some(dir) = &args.dump_quantized {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let t = [(&job.a, "a"), (&job.b, "b")];
        for (t, n) in t {
            write_npy(
                &dir.join(format!("{n}_codes.npy")),
                &NpyArray::u8(vec![t.rows, t.cols], t.codes.clone()),
            )?;
            write_npy(
                &dir.join(format!("{n}_scales.npy")),
                &NpyArray::u8(vec![t.rows, t.blocks_per_row()], t.scales.clone()),
            )?;
        }
        let g = serde_json::json!({
            "a_global_scale": job.a.global_scale,
            "b_global_scale": job.b.global_scale,
            "a_format": job.a.scheme.name(),
            "b_format": job.b.scheme.name(),
            "a_block": job.a.block_size,
            "b_block": job.b.block_size,
        });
        write_atomic(&dir.join("globals.json"), format!("{g:#}\n").as_bytes())?;
    }
    write_npy(
        &args.output,
        &NpyArray::f32(vec![job.a.rows, job.b.rows], d),
    )?;
    println!(
        "D = {} x {} ({} MACs, {} instructions of datapath '{}', {} per output)",
        job.a.rows,
        job.b.rows,
        stats.macs,
        stats.instructions,
        job.cfg.name,
        stats.instructions_per_output
    );
    if let (Some((ins, _, r)), Some(hw)) = (&tiled, &job.hw) {
        print_report(hw, r, *ins);
    }
    if let (Some(p), Some(j)) = (&args.report_json, &report_json) {
        write_atomic(p, j)?;
    }
    Ok(0)
}

/// Print the cycle report of a `--hw` run.
fn print_report(hw: &TensorCoreConfig, r: &GemmReport, functional_instructions: u64) {
    let t = &r.tiling;
    println!(
        "hardware '{}' ({}, {} cores at {} GHz), datapath '{}'",
        hw.name, t.dataflow, hw.cores, hw.clock_ghz, t.datapath
    );
    println!(
        "tiling: tile {} x {} x {}{}, {} x {} tiles, {} K steps, {} waves, {} stage(s), loop {}; instruction {} x {} x {}: {} instructions (functional loop executed {})",
        t.tile_m,
        t.tile_n,
        t.tile_k,
        if t.swapped { " (swapped: C^T = B A^T)" } else { "" },
        t.tiles_m,
        t.tiles_n,
        t.k_steps,
        t.waves,
        t.stages,
        t.loop_order,
        t.instr_m,
        t.instr_n,
        t.instr_k,
        t.instructions,
        functional_instructions
    );
    println!(
        "cycles {} ({:.3} us), compute {} cycles, roofline {} cycles; MAC utilization {:.2}%, mapping efficiency {:.2}%, {:.3} TFLOP/s, {}-bound",
        r.cycles,
        r.time_s * 1e6,
        r.compute_cycles,
        r.roofline_cycles,
        r.mac_utilization * 100.0,
        r.mapping_efficiency * 100.0,
        r.tflops,
        r.bound
    );
    println!(
        "bytes: off-chip read {} (scales {}), off-chip write {}, L2 {}, buffer reads {}; arithmetic intensity {:.3} FLOP/byte",
        r.offchip_read_bytes,
        r.offchip_scale_bytes,
        r.offchip_write_bytes,
        r.l2_bytes,
        r.buffer_read_bytes,
        r.arithmetic_intensity
    );
    let s = &r.stalls;
    println!(
        "stalls (cycles): compute {}, issue {}, buffer_bandwidth {}, offchip_bandwidth {}, l2_bandwidth {}, fill {}, pipeline {}, store {}",
        s.compute, s.issue, s.buffer_bandwidth, s.offchip_bandwidth, s.l2_bandwidth, s.fill, s.pipeline, s.store
    );
    match &r.energy {
        Some(e) => println!(
            "energy: {:.6e} J (MAC {:.6e}, off-chip {:.6e}, L2 {:.6e}, buffer {:.6e})",
            e.total_j, e.mac_j, e.offchip_j, e.l2_j, e.buffer_j
        ),
        None => println!("energy: not configured for this hardware"),
    }
}
