//! The `mxsim` command-line interface (clap). One file per command.

use clap::{Parser, Subcommand};

pub mod cast;
pub mod datapath;
pub mod eval;
pub mod formats;
pub mod gemm;
pub mod generate;
pub mod hw;
pub mod mc;
pub mod perf;
pub mod quantize;
pub mod report;
pub mod study;
pub mod vectors;

/// mxsim: bit-exact golden model and simulator of Microscaling (MX) tensor cores.
#[derive(Parser, Debug)]
#[command(name = "mxsim", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every `mxsim` command.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert every element of an array to a format's codes, or codes back to float32.
    Cast(cast::CastArgs),
    /// List or show tensor-core hardware presets.
    Hw(hw::HwArgs),
    /// Cycle estimate of every GEMM of an LLM on a tensor-core configuration.
    Perf(perf::PerfArgs),
    /// Print every element and scale format's parameters and value set.
    Formats(formats::FormatsArgs),
    /// Block-quantize an array (MX or NVFP4) along an axis; print SQNR, max error and the
    /// fraction of clipped blocks.
    Quantize(quantize::QuantizeArgs),
    /// The built-in quantization report: every scheme and scale rule on seeded LLM-like data.
    Report(report::ReportArgs),
    /// D = A x B + C through a bit-exact MX datapath model.
    Gemm(Box<gemm::GemmArgs>),
    /// List datapath presets or show one's parameters.
    Datapath(datapath::DatapathArgs),
    /// Greedy text generation with a Llama-family model (reference or quantized).
    Generate(generate::GenerateArgs),
    /// Perplexity, KL divergence and per-layer errors of a quantized model on a text.
    Eval(eval::EvalArgs),
    /// Run every (PTQ method, plan, format) combination on a model: tables, summary, plots.
    Study(study::StudyArgs),
    /// Zero-shot multiple-choice accuracy on JSONL tasks.
    Mc(mc::McArgs),
    /// Generate golden RTL test vectors, or check a device's output dump against them.
    Vectors(vectors::VectorsArgs),
}

/// Parse the process arguments, run the command, and return the process exit status:
/// 0 on success, 1 when a check found mismatches, 2 on bad input (message on stderr).
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mxsim: error: {e}");
            2
        }
    }
}

/// Run a parsed command; returns the exit status.
pub fn run(cli: Cli) -> crate::Result<i32> {
    match cli.command {
        Command::Cast(a) => cast::run(a),
        Command::Hw(a) => hw::run(a),
        Command::Perf(a) => perf::run(a),
        Command::Formats(a) => formats::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Report(a) => report::run(a),
        Command::Gemm(a) => gemm::run(*a),
        Command::Datapath(a) => datapath::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Study(a) => study::run(a),
        Command::Mc(a) => mc::run(a),
        Command::Vectors(a) => vectors::run(a),
    }
}
