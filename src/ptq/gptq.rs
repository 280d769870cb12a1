//! GPTQ (Frantar et al., 2023) with MX block scales.
//!
//! Columns of the weight (the input/reduction axis) are quantized one at a time; each
//! column's rounding error is spread over the columns not yet quantized through the inverse
//! Hessian `H^-1` of the layer-local objective `||X W^T - X Q^T||^2`, `H = 2/n X^T X` (REFERENCE
//! section 6). The inverse is taken through the upper Cholesky factor of `(H + lambda I)^-1`
//! with `lambda = damp * mean(diag H)`, and the error of a lazy batch of columns is applied to
//! the later columns in one product (the "lazy batch" update), which is mathematically the same
//! as the column-by-column update.
//!
//! MX-awareness: each row is quantized in blocks of the scheme's block size along the columns,
//! one scale per (row, block). [`ScalePolicy::Static`] takes every scale from the original
//! weights up front (as MR-GPTQ does); [`ScalePolicy::Dynamic`] chooses a block's scales when
//! the first column of that block (in processing order) is reached, from the weights as updated
//! by the errors of the columns quantized so far (the lazy-batch updates still pending for that
//! block are applied to the copy the scale is computed from).
//!
//! Optional act-order processes columns by decreasing Hessian diagonal; block membership (and
//! so the scales) always follows the original column order, so the result is an ordinary MX
//! tensor.

use super::linalg::{cholesky_upper, spd_inverse, Matrix};
use super::quant::BlockQuantizer;
use crate::error::{Error, Result};
use crate::mx::{MxConfig, MxTensor};

/// Where GPTQ's per-block scales come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalePolicy {
    /// Scales from the original weights, fixed before any column is quantized.
    Static,
    /// Scales from the error-updated weights at each block's first processed column.
    Dynamic,
}

/// GPTQ parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GptqConfig {
    /// Damping as a fraction of the mean Hessian diagonal (0.01 = the usual 1%).
    pub damp: f64,
    /// Columns per lazy batch (128 in the reference implementation).
    pub batch: usize,
    /// Process columns by decreasing Hessian diagonal.
    pub act_order: bool,
    /// Where block scales come from.
    pub policy: ScalePolicy,
}

impl Default for GptqConfig {
    fn default() -> Self {
        GptqConfig {
            damp: 0.01,
            batch: 128,
            act_order: false,
            policy: ScalePolicy::Dynamic,
        }
    }
}

/// The Hessian of the layer-local objective, `H = 2/n X^T X` for `X` of `n` tokens.
pub fn hessian(x: &Matrix) -> Matrix {
    let mut h = x.t_matmul(x);
    let f = 2.0 / x.rows.max(1) as f64;
    h.data.iter_mut().for_each(|v| *v *= f);
    h
}

/// The result of quantizing a layer: the MX tensor and its dequantized values.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// Codes and scales (blocks along the input axis).
    pub tensor: MxTensor,
    /// The dequantized weight (`out x in`), exactly the values `tensor` represents.
    pub weight: Matrix,
}

/// Quantize `w` (`out x in`) with GPTQ given the Hessian `h` (`in x in`, e.g. from
/// [`hessian`]). Columns with a zero Hessian diagonal (inputs never active) are set to zero,
/// as in the reference implementation.
pub fn gptq(w: &Matrix, h: &Matrix, mx: &MxConfig, cfg: &GptqConfig) -> Result<Quantized> {
    let (rows, cols) = (w.rows, w.cols);
    if h.rows != cols || h.cols != cols {
        return Err(Error::invalid(format!(
            "GPTQ: Hessian is {} x {}, weight has {cols} inputs",
            h.rows, h.cols
        )));
    }
    if cfg.batch == 0 {
        return Err(Error::invalid("GPTQ: lazy batch size must be at least 1"));
    }
    if !(cfg.damp >= 0.0 && cfg.damp.is_finite()) {
        return Err(Error::invalid(
            "GPTQ: damping must be a non-negative number",
        ));
    }
    let bq = BlockQuantizer::new(mx, w)?;
    let bs = mx.block_size;
    let bpr = cols.div_ceil(bs);

    let mut w = w.clone();
    let mut h = h.clone();
    for i in 0..cols {
        if h.at(i, i) == 0.0 {
            *h.at_mut(i, i) = 1.0;
            for r in 0..rows {
                *w.at_mut(r, i) = 0.0;
            }
        }
    }
    // processing order
    let mut perm: Vec<usize> = (0..cols).collect();
    if cfg.act_order {
        // stable sort by decreasing diagonal: ties keep the natural order (deterministic)
        perm.sort_by(|&a, &b| h.at(b, b).total_cmp(&h.at(a, a)));
    }
    let mut scales = vec![0u8; rows * bpr];
    let mut scale_set = vec![false; bpr];
    if cfg.policy == ScalePolicy::Static {
        for r in 0..rows {
            for b in 0..bpr {
                let (lo, hi) = (b * bs, ((b + 1) * bs).min(cols));
                scales[r * bpr + b] = bq.choose_scale(&w.row(r)[lo..hi])?;
            }
        }
        scale_set.iter_mut().for_each(|s| *s = true);
    }
    // permuted W (columns) and H
    let mut wp = Matrix::zeros(rows, cols);
    for r in 0..rows {
        for (j, &p) in perm.iter().enumerate() {
            *wp.at_mut(r, j) = w.at(r, p);
        }
    }
    let mut hp = Matrix::zeros(cols, cols);
    for (i, &pi) in perm.iter().enumerate() {
        for (j, &pj) in perm.iter().enumerate() {
            *hp.at_mut(i, j) = h.at(pi, pj);
        }
    }
    let mean_diag = (0..cols).map(|i| hp.at(i, i)).sum::<f64>() / cols.max(1) as f64;
    let lambda = cfg.damp * mean_diag;
    for i in 0..cols {
        *hp.at_mut(i, i) += lambda;
    }
    let u = cholesky_upper(&spd_inverse(&hp)?)?;
    // position of each original column in processing order
    let mut pos = vec![0usize; cols];
    for (j, &p) in perm.iter().enumerate() {
        pos[p] = j;
    }

    let mut codes = vec![0u8; rows * cols];
    let mut qv = vec![0.0f64; rows * cols]; // dequantized, original column order
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + cfg.batch).min(cols);
        let cnt = i2 - i1;
        let mut w1 = wp.cols_range(i1, i2); // rows x cnt, updated within the batch
        let mut err1 = Matrix::zeros(rows, cnt);
        for i in 0..cnt {
            let j = i1 + i; // processing position
            let col = perm[j]; // original column
            let blk = col / bs;
            if !scale_set[blk] {
                // first processed column of this block: scales from the current weights
                let (lo, hi) = (blk * bs, ((blk + 1) * bs).min(cols));
                let mut cur = vec![0.0; hi - lo];
                for r in 0..rows {
                    for (k, c) in (lo..hi).enumerate() {
                        let p = pos[c];
                        cur[k] = if p >= i2 {
                            // pending lazy update from the batch's earlier columns
                            let mut v = wp.at(r, p);
                            for t in 0..i {
                                v -= err1.at(r, t) * u.at(i1 + t, p);
                            }
                            v
                        } else {
                            debug_assert!(p >= j);
                            w1.at(r, p - i1)
                        };
                    }
                    scales[r * bpr + blk] = bq.choose_scale(&cur)?;
                }
                scale_set[blk] = true;
            }
            let d = u.at(j, j);
            for r in 0..rows {
                let v = w1.at(r, i);
                let (code, q) =
                    bq.quantize_value(v, scales[r * bpr + blk], (r * cols + col) as u64);
                codes[r * cols + col] = code;
                qv[r * cols + col] = q;
                let e = (v - q) / d;
                *err1.at_mut(r, i) = e;
                for k in i + 1..cnt {
                    *w1.at_mut(r, k) -= e * u.at(j, i1 + k);
                }
            }
        }
        // lazy batch update of the later columns: W[:, i2:] -= Err1 U[i1:i2, i2:]
        if i2 < cols {
            let ublk = {
                let mut m = Matrix::zeros(cnt, cols - i2);
                for a in 0..cnt {
                    m.data[a * (cols - i2)..(a + 1) * (cols - i2)]
                        .copy_from_slice(&u.row(i1 + a)[i2..]);
                }
                m
            };
            let upd = err1.matmul(&ublk);
            for r in 0..rows {
                for c in 0..cols - i2 {
                    *wp.at_mut(r, i2 + c) -= upd.at(r, c);
                }
            }
        }
        i1 = i2;
    }
    // `clipped_blocks` is not tracked by GPTQ (saturation is part of its error feedback)
    let tensor = MxTensor {
        scheme: mx.scheme,
        block_size: bs,
        rows,
        cols,
        codes,
        scales,
        global_scale: bq.global_scale(),
        clipped_blocks: 0,
    };
    drop(qv);
    let weight = Matrix::from_vec(rows, cols, tensor.dequantize_f64())?;
    Ok(Quantized { tensor, weight })
}
