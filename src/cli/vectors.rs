//! `mxsim vectors`: generate golden RTL test vectors (`gen`) and check a device-under-test's
//! output dump against them (`check`). See `docs/vectors.md`.

use crate::error::Result;
use crate::format::{Overflow, Rounding};
use crate::mx::ScaleRule;
use crate::vectors::{self, CheckOptions, GenSpec, Level, Op};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Arguments of `mxsim vectors`.
#[derive(Args, Debug)]
pub struct VectorsArgs {
    /// The vectors subcommand.
    #[command(subcommand)]
    pub cmd: VectorsCmd,
}

/// `mxsim vectors` subcommands.
#[derive(Subcommand, Debug)]
pub enum VectorsCmd {
    /// Generate a vector pack (OP.csv, OP.hex, manifest.json, OP the operation) into a folder.
    Gen(GenArgs),
    /// Compare a device-under-test's output dump with a pack's golden outputs
    /// (exit 0: all match, 1: mismatches, 2: bad input).
    Check(CheckArgs),
}

/// Arguments of `mxsim vectors gen`.
#[derive(Args, Debug)]
pub struct GenArgs {
    /// Operation: cast, decode, quantize, dot or gemm-tile.
    #[arg(long)]
    pub op: Op,
    /// Format: e4m3, e5m2, e3m2, e2m3, e2m1, int8, e8m0, ue4m3 (cast, decode); a scheme
    /// mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, nvfp4 (quantize, and
    /// both operands of dot/gemm-tile).
    #[arg(long)]
    pub format: Option<String>,
    /// Scheme of operand A (dot, gemm-tile).
    #[arg(long)]
    pub a_format: Option<String>,
    /// Scheme of operand B (dot, gemm-tile).
    #[arg(long)]
    pub b_format: Option<String>,
    /// Scale rule (quantize): floor, ceil, even, rceil, prescale, prescale:F, mse, mse:N, 4over6.
    #[arg(long, default_value = "floor")]
    pub scale_rule: ScaleRule,
    /// Elements per block (quantize); the scheme's default (32, NVFP4 16) when absent.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Rounding (cast, quantize): rne, rna, rtz, stochastic.
    #[arg(long, default_value = "rne")]
    pub rounding: Rounding,
    /// Overflow policy (cast): saturate or nonsat.
    #[arg(long, default_value = "saturate")]
    pub overflow: Overflow,
    /// Datapath preset name or TOML file (dot, gemm-tile).
    #[arg(long)]
    pub datapath: Option<String>,
    /// Tile shape MxN for gemm-tile (K is the datapath's instruction K), e.g. 4x4.
    #[arg(long)]
    pub tile: Option<String>,
    /// Level: 1, 2 or exhaustive.
    #[arg(long, default_value = "1")]
    pub level: Level,
    /// Number of random cases (default depends on op and level; 0 at exhaustive).
    #[arg(long)]
    pub count: Option<usize>,
    /// Seed of the random cases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `mxsim vectors check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The pack folder (holding manifest.json).
    pub dir: PathBuf,
    /// The DUT's output dump: .hex (one vector per line) or .csv (header naming the output
    /// columns).
    #[arg(long)]
    pub actual: PathBuf,
    /// Mismatching vectors to print in full.
    #[arg(long, default_value_t = 10)]
    pub max_show: usize,
    /// Accept any NaN encoding where a NaN is expected.
    #[arg(long)]
    pub nan_any: bool,
}

fn parse_tile(s: &str) -> Result<(usize, usize)> {
    let bad = || crate::Error::invalid(format!("bad --tile '{s}' (expected MxN, e.g. 4x4)"));
    let (m, n) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let m: usize = m.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if m == 0 || n == 0 || m > 256 || n > 256 {
        return Err(bad());
    }
    Ok((m, n))
}

/// Run `mxsim vectors`.
pub fn run(a: VectorsArgs) -> Result<i32> {
    match a.cmd {
        VectorsCmd::Gen(g) => {
            let spec = GenSpec {
                op: g.op,
                format: g.format,
                a_format: g.a_format,
                b_format: g.b_format,
                scale_rule: g.scale_rule,
                block_size: g.block_size,
                rounding: g.rounding,
                overflow: g.overflow,
                datapath: g.datapath,
                tile: g.tile.as_deref().map(parse_tile).transpose()?,
                level: g.level,
                count: g.count,
                seed: g.seed,
            };
            let pack = vectors::generate(&spec)?;
            pack.write(&g.out)?;
            eprintln!(
                "wrote {} {} vectors ({} bits per line) to {}",
                pack.rows.len(),
                pack.manifest.op,
                pack.layout().line_bits(),
                g.out.display()
            );
            Ok(0)
        }
        VectorsCmd::Check(c) => {
            let opts = CheckOptions {
                max_show: c.max_show,
                nan_any: c.nan_any,
            };
            let report = vectors::check(&c.dir, &c.actual, &opts)?;
            print!("{}", report.text);
            Ok(if report.passed() { 0 } else { 1 })
        }
    }
}
