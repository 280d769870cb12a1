//! Block quantization of a row-major tensor along its last axis, and dequantization.

use super::rules::{e8m0_exponent, smallest_exp_covering};
use super::{MxConfig, NvScaleApply, ScaleRule, Scheme, ZeroBlock};
use crate::error::{Error, Result};
use crate::format::{decode_f64, encode, pow2, CastOptions, Format, Overflow, Rounding};
use rayon::prelude::*;
use serde::Serialize;

/// A block-quantized tensor: element codes, one scale code per block, and a global factor.
///
/// Layout: `codes[r * cols + c]` is the code of value (r, c) (one byte per code, unpacked);
/// `scales[r * blocks_per_row + b]` is the scale code of block `b` of row `r`, covering columns
/// `b * block_size .. min((b + 1) * block_size, cols)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MxTensor {
    /// The scheme.
    pub scheme: Scheme,
    /// Values per block.
    pub block_size: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of values per row (the blocked axis).
    pub cols: usize,
    /// Element codes, `rows * cols`.
    pub codes: Vec<u8>,
    /// Scale codes, `rows * blocks_per_row`.
    pub scales: Vec<u8>,
    /// Factor applied to every value after the block scale: 1 for MX, `1/F` for the pre-scale
    /// rule, the FP32 per-tensor scale for NVFP4 (times `1/F` under pre-scale).
    pub global_scale: f64,
    /// Number of blocks whose largest value saturated (was clipped to the element's max).
    pub clipped_blocks: usize,
}

/// Error statistics of a quantization against the original values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuantStats {
    /// Signal-to-quantization-noise ratio in dB (infinite when exact).
    pub sqnr_db: f64,
    /// Largest absolute error.
    pub max_abs_err: f64,
    /// Fraction of blocks whose maximum was clipped.
    pub clipped_fraction: f64,
    /// Sum of squared errors.
    pub sse: f64,
}

impl MxTensor {
    /// Blocks per row: `ceil(cols / block_size)`.
    pub fn blocks_per_row(&self) -> usize {
        self.cols.div_ceil(self.block_size)
    }

    /// The value of scale code `code` (NaN for E8M0 0xFF).
    pub fn scale_value(&self, code: u8) -> f64 {
        decode_f64(self.scheme.scale_format(), code)
    }

    /// The exact value of element (r, c) as f64 (before the global factor's rounding, this is
    /// exact: element times power-of-two or UE4M3 scale).
    pub fn value(&self, r: usize, c: usize) -> f64 {
        let s = self.scales[r * self.blocks_per_row() + c / self.block_size];
        decode_f64(self.scheme.element(), self.codes[r * self.cols + c])
            * self.scale_value(s)
            * self.global_scale
    }

    /// Dequantize to f32 (each value computed exactly, rounded once to f32). E8M0-scaled
    /// tensors with a global factor of 1 take the table-driven fast path
    /// ([`super::fast::dequantize_rows`]), which gives the same bits.
    pub fn dequantize(&self) -> Vec<f32> {
        if super::fast::dequant_eligible(self) {
            return super::fast::dequantize(self);
        }
        self.dequantize_generic()
    }

    /// Dequantize to f32 through the generic f64 path (reference for the fast path).
    pub fn dequantize_generic(&self) -> Vec<f32> {
        self.dequantize_f64()
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// Dequantize to f64.
    pub fn dequantize_f64(&self) -> Vec<f64> {
        let elem = self.scheme.element();
        let table: Vec<f64> = (0..elem.code_count())
            .map(|c| decode_f64(elem, c as u8))
            .collect();
        let bpr = self.blocks_per_row();
        let mut out = vec![0.0; self.rows * self.cols];
        out.par_chunks_mut(self.cols.max(1))
            .enumerate()
            .for_each(|(r, row)| {
                for (c, o) in row.iter_mut().enumerate() {
                    let s = self.scale_value(self.scales[r * bpr + c / self.block_size]);
                    *o = table[self.codes[r * self.cols + c] as usize] * s * self.global_scale;
                }
            });
        out
    }

    /// Error statistics of this tensor against `original` (same layout).
    pub fn stats(&self, original: &[f64]) -> QuantStats {
        let deq = self.dequantize_f64();
        let (mut sig, mut err, mut maxe) = (0.0f64, 0.0f64, 0.0f64);
        for (&o, &d) in original.iter().zip(&deq) {
            let e = o - d;
            sig += o * o;
            err += e * e;
            maxe = maxe.max(e.abs());
        }
        let blocks = (self.rows * self.blocks_per_row()).max(1);
        QuantStats {
            sqnr_db: 10.0 * (sig / err).log10(),
            max_abs_err: maxe,
            clipped_fraction: self.clipped_blocks as f64 / blocks as f64,
            sse: err,
        }
    }
}

/// Quantize a row-major `rows x cols` f32 tensor along its last axis. Configurations that
/// [`super::fast::eligible`] accepts (MXFP4 / MXFP8 E4M3, `floor` / `rceil`, RNE) take the
/// fast float32 path, which gives bit-identical results to [`quantize_generic`].
pub fn quantize(values: &[f32], rows: usize, cols: usize, cfg: &MxConfig) -> Result<MxTensor> {
    check(values.len(), rows, cols, cfg)?;
    if super::fast::eligible(cfg) {
        return Ok(super::fast::quantize(values, rows, cols, cfg));
    }
    quantize_generic(values, rows, cols, cfg)
}

/// Quantize a row-major `rows x cols` f32 tensor through the generic (table-driven, f64)
/// path, never the fast path: the reference the fast path is tested against.
pub fn quantize_generic(
    values: &[f32],
    rows: usize,
    cols: usize,
    cfg: &MxConfig,
) -> Result<MxTensor> {
    let v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    quantize_f64(&v, rows, cols, cfg)
}

fn check(len: usize, rows: usize, cols: usize, cfg: &MxConfig) -> Result<()> {
    if cfg.block_size == 0 {
        return Err(Error::invalid("block size must be at least 1"));
    }
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::invalid(format!(
            "tensor has {len} values, not {rows} x {cols}"
        )));
    }
    Ok(())
}

/// Quantize a row-major `rows x cols` f64 tensor along its last axis.
pub fn quantize_f64(values: &[f64], rows: usize, cols: usize, cfg: &MxConfig) -> Result<MxTensor> {
    if cfg.block_size == 0 {
        return Err(Error::invalid("block size must be at least 1"));
    }
    if rows.checked_mul(cols) != Some(values.len()) {
        return Err(Error::invalid(format!(
            "tensor has {} values, not {rows} x {cols}",
            values.len()
        )));
    }
    if cfg.scheme.element() == Format::E2M1 || cfg.rule != ScaleRule::FourOverSix {
        // ok
    } else {
        return Err(Error::invalid(
            "the 4over6 rule applies to FP4 element formats only",
        ));
    }
    if let ScaleRule::Mse { alphas } = cfg.rule {
        if alphas >= 2 {
            let mut best: Option<(f64, MxTensor)> = None;
            for i in 0..alphas {
                let alpha = 0.75 + 0.25 * i as f64 / (alphas - 1) as f64;
                let t = quantize_with_prescale(values, rows, cols, cfg, alpha)?;
                let sse = t.stats(values).sse;
                if best.as_ref().is_none_or(|(b, _)| sse < *b) {
                    best = Some((sse, t));
                }
            }
            return Ok(best.expect("alphas >= 2").1);
        }
    }
    let pre = match cfg.rule {
        ScaleRule::Prescale(f) => f,
        _ => 1.0,
    };
    quantize_with_prescale(values, rows, cols, cfg, pre)
}

fn element_opts(cfg: &MxConfig) -> CastOptions {
    CastOptions {
        rounding: cfg.rounding,
        overflow: Overflow::Saturate,
        flush_subnormals: false,
        int8_allow_min: false,
        seed: cfg.seed,
    }
}

/// Quantize with a pre-scale factor `pre` applied to values (global factor 1/pre).
fn quantize_with_prescale(
    values: &[f64],
    rows: usize,
    cols: usize,
    cfg: &MxConfig,
    pre: f64,
) -> Result<MxTensor> {
    let bs = cfg.block_size;
    let bpr = cols.div_ceil(bs);
    let scheme = cfg.scheme;
    let tensor_scale = if scheme == Scheme::Nvfp4 && cfg.nv_tensor_scale {
        nv_tensor_scale(values)
    } else {
        1.0
    };
    let mut codes = vec![0u8; rows * cols];
    let mut scales = vec![0u8; rows * bpr];
    let clipped: usize = codes
        .par_chunks_mut(cols.max(1))
        .zip(scales.par_chunks_mut(bpr.max(1)))
        .enumerate()
        .take(rows)
        .map(|(r, (crow, srow))| {
            let mut clipped = 0;
            for (b, sb) in srow.iter_mut().enumerate() {
                let lo = b * bs;
                let hi = (lo + bs).min(cols);
                let base = (r * cols + lo) as u64;
                let (s, c) = quantize_block(
                    &values[r * cols + lo..r * cols + hi],
                    cfg,
                    pre,
                    tensor_scale,
                    &mut crow[lo..hi],
                    base,
                );
                *sb = s;
                clipped += c as usize;
            }
            clipped
        })
        .sum();
    Ok(MxTensor {
        scheme,
        block_size: bs,
        rows,
        cols,
        codes,
        scales,
        global_scale: tensor_scale / pre,
        clipped_blocks: clipped,
    })
}

/// NVFP4 per-tensor FP32 scale: `f32(amax) / (448 * 6)` in float32; 1 for an all-zero or
/// non-finite tensor.
pub fn nv_tensor_scale(values: &[f64]) -> f64 {
    let amax = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, &v| a.max(v.abs()));
    if amax == 0.0 {
        return 1.0;
    }
    let s = (amax as f32) / (448.0f32 * 6.0f32);
    if s == 0.0 || !s.is_finite() {
        1.0
    } else {
        s as f64
    }
}

/// Encode the elements of one block given its total divisor, writing codes; returns the
/// sum of squared errors and whether the block maximum was clipped.
fn encode_elements(
    vals: &[f64],
    divisor: f64,
    pre: f64,
    recip: Option<f32>,
    cfg: &MxConfig,
    out: &mut [u8],
    base: u64,
) -> (f64, bool) {
    let elem = cfg.scheme.element();
    let opts = element_opts(cfg);
    let maxn = elem.max_normal();
    let mut sse = 0.0;
    let mut clipped = false;
    for (i, (&v, o)) in vals.iter().zip(out.iter_mut()).enumerate() {
        let y = match recip {
            Some(r) => ((v * pre) as f32 * r) as f64,
            None => v * pre / divisor,
        };
        if y.abs() > maxn {
            clipped = true;
        }
        *o = encode(elem, y, &opts, base + i as u64);
        let d = decode_f64(elem, *o) * divisor / pre;
        sse += (v - d) * (v - d);
    }
    (sse, clipped)
}

/// Quantize one block: returns (scale code, clipped).
fn quantize_block(
    vals: &[f64],
    cfg: &MxConfig,
    pre: f64,
    tensor_scale: f64,
    out: &mut [u8],
    base: u64,
) -> (u8, bool) {
    let elem = cfg.scheme.element();
    let scale_fmt = cfg.scheme.scale_format();
    if vals.iter().any(|v| !v.is_finite()) {
        out.fill(0);
        let nan_scale = if scale_fmt == Format::E8M0 {
            0xFF
        } else {
            0x7F
        };
        return (nan_scale, false);
    }
    let amax = vals.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
    if amax == 0.0 {
        // signed zeros keep their sign (FP: sign | 0; INT8 has one zero)
        let opts = element_opts(cfg);
        for (o, &v) in out.iter_mut().zip(vals) {
            *o = encode(elem, v, &opts, 0);
        }
        let code = match (cfg.zero_block, scale_fmt) {
            (ZeroBlock::Smallest, _) => 0,
            (ZeroBlock::FloorMinNormal, Format::E8M0) => {
                (-126 - elem.emax() + 127).clamp(0, 254) as u8
            }
            (ZeroBlock::FloorMinNormal, _) => 0x08,
        };
        return (code, false);
    }
    if scale_fmt == Format::E8M0 {
        let e0 = e8m0_exponent(amax, elem, cfg.rule).clamp(-127, 127);
        let candidates: Vec<i32> = match cfg.rule {
            ScaleRule::Mse { .. } => [e0, e0 - 1, e0 + 1]
                .into_iter()
                .filter(|e| (-127..=127).contains(e))
                .collect(),
            ScaleRule::FourOverSix => {
                let e4 = smallest_exp_covering(amax, 4.0).clamp(-127, 127);
                vec![e0, e4]
            }
            _ => vec![e0],
        };
        let (e, clipped) = best_candidate(&candidates, |&e| pow2(e), vals, pre, cfg, out, base);
        ((e + 127) as u8, clipped)
    } else {
        // UE4M3 block scale: amax / 6 / tensor_scale
        let target = amax / elem.max_normal() / tensor_scale;
        let rne = CastOptions::new(Rounding::Rne, Overflow::Saturate);
        let nearest = encode(Format::UE4M3, target, &rne, 0).max(1);
        let up = {
            let c = nearest;
            if decode_f64(Format::UE4M3, c) < target && c < Format::UE4M3.max_code() {
                c + 1
            } else {
                c
            }
        };
        let candidates: Vec<u8> = match cfg.rule {
            ScaleRule::Ceil | ScaleRule::Rceil => vec![up],
            ScaleRule::Mse { .. } => [nearest, nearest - 1, nearest + 1]
                .into_iter()
                .filter(|&c| (1..=Format::UE4M3.max_code()).contains(&c))
                .collect(),
            ScaleRule::FourOverSix => {
                let t4 = amax / 4.0 / tensor_scale;
                vec![nearest, encode(Format::UE4M3, t4, &rne, 0).max(1)]
            }
            _ => vec![nearest],
        };
        let scale_of = |&c: &u8| decode_f64(Format::UE4M3, c) * tensor_scale;
        let (c, clipped) = best_candidate(&candidates, scale_of, vals, pre, cfg, out, base);
        (c, clipped)
    }
}

/// Try each candidate scale, keep the first with the least squared error; leaves its codes in
/// `out`.
fn best_candidate<T: Copy>(
    candidates: &[T],
    scale_of: impl Fn(&T) -> f64,
    vals: &[f64],
    pre: f64,
    cfg: &MxConfig,
    out: &mut [u8],
    base: u64,
) -> (T, bool) {
    let recip_of = |s: f64| -> Option<f32> {
        (cfg.scheme == Scheme::Nvfp4 && cfg.nv_apply == NvScaleApply::ReciprocalMultiply)
            .then(|| 1.0f32 / (s as f32))
    };
    if candidates.len() == 1 {
        let s = scale_of(&candidates[0]);
        let (_, clipped) = encode_elements(vals, s, pre, recip_of(s), cfg, out, base);
        return (candidates[0], clipped);
    }
    let mut best = (f64::INFINITY, 0usize, false);
    let mut tmp = vec![0u8; out.len()];
    for (i, c) in candidates.iter().enumerate() {
        let s = scale_of(c);
        let (sse, clipped) = encode_elements(vals, s, pre, recip_of(s), cfg, &mut tmp, base);
        if sse < best.0 {
            best = (sse, i, clipped);
            out.copy_from_slice(&tmp);
        }
    }
    (candidates[best.1], best.2)
}
