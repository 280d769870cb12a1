//! `mxsim datapath list` and `mxsim datapath show <preset|file.toml>`: the datapath presets and
//! their parameters.

use crate::datapath::{preset_names, preset_text, DatapathConfig};
use crate::error::Result;
use clap::{Args, Subcommand};

/// Arguments of `mxsim datapath`.
#[derive(Args, Debug)]
pub struct DatapathArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DatapathAction,
}

/// `mxsim datapath` sub-commands.
#[derive(Subcommand, Debug)]
pub enum DatapathAction {
    /// List the built-in presets.
    List,
    /// Print a preset's (or a TOML file's) parameters, with its source notes.
    Show {
        /// Preset name or TOML file.
        name: String,
    },
}

/// Run `mxsim datapath`.
pub fn run(a: DatapathArgs) -> Result<i32> {
    match a.action {
        DatapathAction::List => {
            for n in preset_names() {
                let cfg = DatapathConfig::preset(n)?;
                println!("{n:<20} {}", cfg.description);
            }
        }
        DatapathAction::Show { name } => {
            let cfg = DatapathConfig::load(&name)?;
            if let Some(text) = preset_text(&name) {
                for l in text.lines().filter(|l| l.starts_with('#')) {
                    println!("{l}");
                }
            }
            print!("{}", cfg.to_toml());
            println!("# nan_bits = {:#010X}", cfg.nan_bits);
            if cfg.frac_bits.is_none() {
                println!("# frac_bits absent: unbounded window (exact alignment)");
            }
            if cfg.acc_far_bits.is_none() {
                println!("# acc_far_bits absent: the accumulator always joins the sum");
            }
        }
    }
    Ok(0)
}
