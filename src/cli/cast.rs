//! `mxsim cast`: scalar conversion of every element of a `.npy` array to a format's codes, or
//! (`--decode`) codes back to float32.

use crate::error::{Error, Result};
use crate::format::{decode_f32, encode, CastOptions, Format, Overflow, Rounding};
use crate::io::{read_npy, write_npy, NpyArray};
use clap::Args;
use rayon::prelude::*;
use std::path::PathBuf;

/// Arguments of `mxsim cast`.
#[derive(Args, Debug)]
pub struct CastArgs {
    /// Target format (e4m3, e5m2, e3m2, e2m3, e2m1, int8, e8m0, ue4m3).
    #[arg(long)]
    pub to: Option<Format>,
    /// Decode codes (uint8) of this format back to float32 instead of encoding.
    #[arg(long)]
    pub decode: bool,
    /// Format of the codes to decode (with --decode).
    #[arg(long)]
    pub from: Option<Format>,
    /// Rounding mode: rne, rna, rtz or stochastic.
    #[arg(long, default_value = "rne")]
    pub rounding: Rounding,
    /// Seed of the stochastic-rounding stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Overflow policy: saturate or nonsat.
    #[arg(long, default_value = "saturate")]
    pub overflow: Overflow,
    /// Flush results that would be subnormal to zero.
    #[arg(long)]
    pub flush_subnormals: bool,
    /// INT8: allow the code -128 (otherwise the range is symmetric).
    #[arg(long)]
    pub int8_allow_min: bool,
    /// Input `.npy` (float32/float64 to encode, uint8 to decode).
    #[arg(long)]
    pub input: PathBuf,
    /// Output `.npy` (uint8 codes, or float32 values with --decode).
    #[arg(long)]
    pub output: PathBuf,
}

/// Run `mxsim cast`.
pub fn run(a: CastArgs) -> Result<i32> {
    let input = read_npy(&a.input)?;
    if a.decode {
        let fmt = a
            .from
            .or(a.to)
            .ok_or_else(|| Error::invalid("cast --decode needs --from <format>"))?;
        let codes = input.as_u8(&a.input.display().to_string())?;
        let values: Vec<f32> = codes.iter().map(|&c| decode_f32(fmt, c)).collect();
        write_npy(&a.output, &NpyArray::f32(input.shape.clone(), values))?;
        return Ok(0);
    }
    let fmt = a
        .to
        .ok_or_else(|| Error::invalid("cast needs --to <format> (or --decode --from <format>)"))?;
    if !input.is_float() {
        return Err(Error::invalid(format!(
            "{}: expected a float32 or float64 array, found {}",
            a.input.display(),
            input.dtype_name()
        )));
    }
    let opts = CastOptions {
        rounding: a.rounding,
        overflow: a.overflow,
        flush_subnormals: a.flush_subnormals,
        int8_allow_min: a.int8_allow_min,
        seed: a.seed,
    };
    let values = input.to_f64();
    let codes: Vec<u8> = values
        .par_iter()
        .enumerate()
        .map(|(i, &x)| encode(fmt, x, &opts, i as u64))
        .collect();
    write_npy(&a.output, &NpyArray::u8(input.shape.clone(), codes))?;
    Ok(0)
}
