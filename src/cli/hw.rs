//! `mxsim hw`: list and show tensor-core hardware presets.

use crate::error::Result;
use crate::mx::Scheme;
use crate::sim::config::PRESETS;
use crate::sim::TensorCoreConfig;
use clap::{Args, Subcommand};

/// Arguments of `mxsim hw`.
#[derive(Args, Debug)]
pub struct HwArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: HwAction,
}

/// `mxsim hw` actions.
#[derive(Subcommand, Debug)]
pub enum HwAction {
    /// List the shipped presets with peak throughput per scheme.
    List,
    /// Show one preset (or a TOML file): its source text and derived peaks.
    Show {
        /// Preset name or TOML file path.
        preset: String,
    },
}

fn peaks(cfg: &TensorCoreConfig) -> String {
    Scheme::ALL
        .iter()
        .filter_map(|&s| {
            cfg.peak_tflops(s, s)
                .ok()
                .map(|t| format!("{s} {t:.1} TFLOP/s"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run `mxsim hw`.
pub fn run(a: HwArgs) -> Result<i32> {
    match a.action {
        HwAction::List => {
            for (name, _) in PRESETS {
                let cfg = TensorCoreConfig::preset(name)?;
                println!("{name:<16} {}", cfg.description);
                println!(
                    "{:<16} {} cores, {} GHz, {}, off-chip {} GB/s; peak: {}",
                    "",
                    cfg.cores,
                    cfg.clock_ghz,
                    cfg.dataflow,
                    cfg.offchip_gbps,
                    peaks(&cfg)
                );
            }
        }
        HwAction::Show { preset } => {
            let cfg = TensorCoreConfig::load(&preset)?;
            match PRESETS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&preset))
            {
                Some((_, text)) => print!("{text}"),
                None => print!(
                    "{}",
                    toml::to_string_pretty(&cfg)
                        .map_err(|e| crate::Error::invalid(e.to_string()))?
                ),
            }
            println!("# derived peak (dense): {}", peaks(&cfg));
        }
    }
    Ok(0)
}
