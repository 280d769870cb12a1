//! `mxsim formats`: every element and scale format's parameters (from the format table) and
//! its set of values.

use crate::error::Result;
use crate::format::{decode_f64, Format, Kind, Specials};
use clap::Args;

/// Arguments of `mxsim formats`.
#[derive(Args, Debug)]
pub struct FormatsArgs {
    /// Show only this format (e4m3, e5m2, e3m2, e2m3, e2m1, int8, e8m0, ue4m3).
    #[arg(long)]
    pub format: Option<Format>,
    /// Print the parameter table only, without value sets.
    #[arg(long)]
    pub brief: bool,
}

fn specials_text(f: Format) -> &'static str {
    match f.spec().specials {
        Specials::None => "none (all codes finite)",
        Specials::NanAllOnes if f.spec().signed => "NaN = S.1111.111, no Inf",
        Specials::NanAllOnes => "NaN = 0x7F/0xFF (sign ignored), no Inf",
        Specials::Ieee => "Inf = S.11111.00, NaN = S.11111.{01,10,11}",
        Specials::NanMaxCode => "NaN = 0xFF, no zero, no sign",
    }
}

/// Human text of a value: exact decimal for these formats' values (at most 17 significant
/// digits needed; powers of two below 2^-20 or above 2^20 shown as 2^k).
fn value_text(v: f64) -> String {
    if v != 0.0 && v.is_finite() {
        let l = v.abs().log2();
        if l == l.round() && !(-20.0..=20.0).contains(&l) {
            return format!("2^{}", l as i32);
        }
    }
    format!("{v}")
}

/// Run `mxsim formats`.
pub fn run(a: FormatsArgs) -> Result<i32> {
    let list: Vec<Format> = match a.format {
        Some(f) => vec![f],
        None => Format::ALL.to_vec(),
    };
    println!(
        "{:<6} {:>4} {:>4} {:>4} {:>5} {:>5} {:>5} {:>12} {:>10} {:>12}  specials",
        "format", "bits", "exp", "man", "bias", "emax", "emin", "max", "min normal", "min subnorm"
    );
    for &f in &list {
        let s = f.spec();
        println!(
            "{:<6} {:>4} {:>4} {:>4} {:>5} {:>5} {:>5} {:>12} {:>10} {:>12}  {}",
            f.name(),
            s.bits,
            s.exp_bits,
            s.man_bits,
            s.bias,
            f.emax(),
            f.emin(),
            value_text(f.max_normal()),
            value_text(f.min_normal()),
            value_text(f.min_subnormal()),
            specials_text(f)
        );
    }
    if a.brief {
        return Ok(0);
    }
    for &f in &list {
        println!();
        let s = f.spec();
        match s.kind {
            Kind::PowerOfTwo => {
                println!(
                    "{}: 2^(code-127) for codes 0..=254, i.e. 2^-127 .. 2^127 (255 values); 0xFF is NaN",
                    f.name()
                );
            }
            Kind::Int => {
                println!(
                    "{}: two's complement code k means k * 2^{} ; values -127/64 .. 127/64 in steps of 1/64 \
                     (255 values; code 0x80 = -2 only with --int8-allow-min)",
                    f.name(),
                    s.int_exp
                );
            }
            Kind::Float => {
                let mut vals: Vec<(u8, f64)> = (0..f.code_count())
                    .map(|c| c as u8)
                    .filter(|&c| c & f.sign_mask() == 0 && (s.signed || c < 0x80))
                    .map(|c| (c, decode_f64(f, c)))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                vals.sort_by(|x, y| x.1.total_cmp(&y.1));
                let sign = if s.signed {
                    "; each also negated (sign bit set)"
                } else {
                    ""
                };
                println!(
                    "{}: {} non-negative finite values{}:",
                    f.name(),
                    vals.len(),
                    sign
                );
                let items: Vec<String> = vals
                    .iter()
                    .map(|(c, v)| format!("{:#04x}={}", c, value_text(*v)))
                    .collect();
                for chunk in items.chunks(8) {
                    println!("  {}", chunk.join("  "));
                }
            }
        }
    }
    Ok(0)
}
