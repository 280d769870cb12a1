//! `mxsim quantize`: MX / NVFP4 block quantization of a `.npy` array along any axis, with the
//! dequantized array, codes, scales and a packed file as optional outputs, and error
//! statistics (SQNR, max abs error, clipped-block fraction) printed.

use crate::error::{Error, Result};
use crate::format::Rounding;
use crate::io::{read_npy, write_atomic, write_npy, NpyArray, NpyData};
use crate::mx::fast;
use crate::mx::layout::{move_axis_last, move_last_to_axis, resolve_axis};
use crate::mx::pack::{packed_file_bytes, to_packed_bytes, unpack_codes};
use crate::mx::{
    quantize, quantize_f64, MxConfig, MxTensor, NvScaleApply, ScaleRule, Scheme, ZeroBlock,
};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `mxsim quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Scheme: mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8 or nvfp4.
    #[arg(long)]
    pub format: Scheme,
    /// Scale rule: floor, ceil, even, rceil, prescale, prescale:F, mse, mse:N or 4over6.
    #[arg(long, default_value = "floor")]
    pub scale_rule: ScaleRule,
    /// Element rounding: rne, rna, rtz or stochastic.
    #[arg(long, default_value = "rne")]
    pub rounding: Rounding,
    /// Seed of the stochastic-rounding stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Values per block (default: 32 for MX, 16 for NVFP4).
    #[arg(long)]
    pub block_size: Option<usize>,
    /// The axis along which blocks are formed (negative counts from the end).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub axis: i64,
    /// Scale of an all-zero block: smallest or floor-min-normal.
    #[arg(long, default_value = "smallest")]
    pub zero_block: ZeroBlock,
    /// NVFP4: do not use the per-tensor FP32 scale.
    #[arg(long)]
    pub no_tensor_scale: bool,
    /// NVFP4: apply scales by `divide` (exact) or `reciprocal` (float32 multiply by a rounded
    /// reciprocal, as GPU kernels do).
    #[arg(long, default_value = "divide")]
    pub nv_apply: NvScaleApply,
    /// Input `.npy` (float32 or float64, C order).
    #[arg(long)]
    pub input: PathBuf,
    /// Output `.npy` of the dequantized values (same dtype and shape as the input).
    #[arg(long)]
    pub output: PathBuf,
    /// Also write the element codes (uint8, the input's shape).
    #[arg(long)]
    pub codes: Option<PathBuf>,
    /// Also write the scale codes (uint8, the input's shape with the blocked axis replaced by
    /// the number of blocks).
    #[arg(long)]
    pub scales: Option<PathBuf>,
    /// Also write the packed file (layout in docs/formats.md).
    #[arg(long)]
    pub packed: Option<PathBuf>,
}

/// Run `mxsim quantize`.
pub fn run(a: QuantizeArgs) -> Result<i32> {
    let input = read_npy(&a.input)?;
    if !input.is_float() {
        return Err(Error::invalid(format!(
            "{}: expected a float32 or float64 array, found {}",
            a.input.display(),
            input.dtype_name()
        )));
    }
    let shape = input.shape.clone();
    let axis = resolve_axis(a.axis, shape.len())?;
    let cols = shape[axis];
    let rows: usize = shape
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != axis)
        .map(|(_, &d)| d)
        .product();
    let mut cfg = MxConfig::new(a.format).with_rule(a.scale_rule);
    cfg.block_size = a.block_size.unwrap_or(a.format.default_block());
    if cfg.block_size == 0 {
        return Err(Error::invalid("--block-size must be at least 1"));
    }
    cfg.rounding = a.rounding;
    cfg.seed = a.seed;
    cfg.zero_block = a.zero_block;
    cfg.nv_tensor_scale = a.format == Scheme::Nvfp4 && !a.no_tensor_scale;
    cfg.nv_apply = a.nv_apply;

    let original = input.to_f64();
    let moved_orig = move_axis_last(&original, &shape, axis);
    // packed sections straight from the fused kernels when the fast path serves the config
    let mut fused_packed = None;
    let (t, out_data) = match &input.data {
        NpyData::F32(v) if a.packed.is_some() && fast::eligible(&cfg) => {
            let moved = move_axis_last(v, &shape, axis);
            let p = fast::quantize_packed(&moved, rows, cols, &cfg)?;
            let t = MxTensor {
                scheme: cfg.scheme,
                block_size: cfg.block_size,
                rows,
                cols,
                codes: unpack_codes(&p.packed, cfg.scheme.element().bits(), rows * cols)?,
                scales: p.scales.clone(),
                global_scale: 1.0,
                clipped_blocks: p.clipped_blocks,
            };
            fused_packed = Some(p);
            let deq = move_last_to_axis(&t.dequantize(), &shape, axis);
            (t, NpyData::F32(deq))
        }
        NpyData::F32(v) => {
            let moved = move_axis_last(v, &shape, axis);
            let t = quantize(&moved, rows, cols, &cfg)?;
            let deq = move_last_to_axis(&t.dequantize(), &shape, axis);
            (t, NpyData::F32(deq))
        }
        _ => {
            let t = quantize_f64(&moved_orig, rows, cols, &cfg)?;
            let deq = move_last_to_axis(&t.dequantize_f64(), &shape, axis);
            (t, NpyData::F64(deq))
        }
    };
    let stats = t.stats(&moved_orig);

    // prepare every output before writing any, so that a failure leaves no output behind
    let codes_arr = a
        .codes
        .as_ref()
        .map(|_| NpyArray::u8(shape.clone(), move_last_to_axis(&t.codes, &shape, axis)));
    let scales_arr = a.scales.as_ref().map(|_| {
        let mut sshape = shape.clone();
        sshape[axis] = t.blocks_per_row();
        let s = move_last_to_axis(&t.scales, &sshape, axis);
        NpyArray::u8(sshape, s)
    });
    let packed = match &a.packed {
        Some(_) => Some(match &fused_packed {
            Some(p) => packed_file_bytes(
                t.scheme,
                t.block_size,
                t.global_scale,
                &p.scales,
                &p.packed,
                &shape,
                axis,
            )?,
            None => to_packed_bytes(&t, &shape, axis)?,
        }),
        None => None,
    };
    write_npy(
        &a.output,
        &NpyArray {
            shape: shape.clone(),
            data: out_data,
        },
    )?;
    if let (Some(p), Some(arr)) = (&a.codes, &codes_arr) {
        write_npy(p, arr)?;
    }
    if let (Some(p), Some(arr)) = (&a.scales, &scales_arr) {
        write_npy(p, arr)?;
    }
    if let (Some(p), Some(bytes)) = (&a.packed, &packed) {
        write_atomic(p, bytes)?;
    }

    let blocks = t.rows * t.blocks_per_row();
    println!(
        "{} rule {} rounding {} block {} axis {}: {} values, {} blocks",
        cfg.scheme,
        cfg.rule,
        cfg.rounding,
        cfg.block_size,
        axis,
        original.len(),
        blocks
    );
    println!("SQNR: {:.4} dB", stats.sqnr_db);
    println!("max abs error: {:e}", stats.max_abs_err);
    println!(
        "clipped blocks: {} of {} (fraction {:.6})",
        t.clipped_blocks, blocks, stats.clipped_fraction
    );
    Ok(0)
}
