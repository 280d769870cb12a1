//! AWQ (Lin et al., 2024), activation-aware weight scaling, with MX block quantization.
//!
//! Per input channel `j`, `s_j = mean_t |x_tj| ^ alpha` (normalised by `sqrt(max s * min s)` as
//! in the reference implementation); the weight is quantized as `Q(W diag(s))` and the
//! activations are divided by `s` (folded into the preceding operation by the caller), so the
//! effective weight is `Q(W diag(s)) diag(1/s)`. `alpha` is chosen from an even grid of
//! `grid` points in [0, 1) (20 by default) for the least output error
//! `||X W^T - X W_eff^T||^2` with unquantized activations (AWQ's objective). Then a clipping
//! search: for each (output row, MX block), values are clipped to `ratio * amax` with `ratio`
//! from an even grid on `[clip_min, 1]`, keeping the ratio with the least output error of that
//! block's contribution `||X_b (w_b - q_b)||^2` (AWQ's per-group objective). Because that
//! per-block objective ignores cross terms between blocks, the clipped result is kept only when
//! it lowers the full objective (so AWQ never does worse than its own unclipped choice, and
//! alpha = 0 is RTN).

use super::gptq::Quantized;
use super::linalg::Matrix;
use super::quant::{rtn, weight_output_error, BlockQuantizer};
use crate::error::{Error, Result};
use crate::mx::MxConfig;

/// AWQ parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AwqConfig {
    /// Points of the alpha grid `i / grid`, `i = 0..grid` (20 in AWQ).
    pub grid: usize,
    /// Points of the clipping grid on `[clip_min, 1]` (0 or 1: no clipping search).
    pub clip_grid: usize,
    /// Smallest clipping ratio tried.
    pub clip_min: f64,
}

impl Default for AwqConfig {
    fn default() -> Self {
        AwqConfig {
            grid: 20,
            clip_grid: 20,
            clip_min: 0.5,
        }
    }
}

/// The outcome of AWQ on one layer.
#[derive(Debug, Clone)]
pub struct AwqResult {
    /// Per-input-channel scales `s` (multiply the weight's columns, divide the activations).
    pub scales: Vec<f64>,
    /// The chosen alpha.
    pub alpha: f64,
    /// Whether the clipping result was kept.
    pub clipped: bool,
    /// The scaled, clipped weight `clip(W diag(s))` before quantization.
    pub clipped_weight: Matrix,
    /// The quantized scaled weight `Q(clip(W diag(s)))`.
    pub quantized: Quantized,
    /// The effective weight in the original domain, `Q(...) diag(1/s)`.
    pub effective: Matrix,
    /// Output error of the effective weight (the objective).
    pub error: f64,
}

/// Per-channel mean absolute activation.
pub fn mean_abs(x: &Matrix) -> Vec<f64> {
    let mut m = vec![0.0; x.cols];
    for r in 0..x.rows {
        for (a, v) in m.iter_mut().zip(x.row(r)) {
            *a += v.abs();
        }
    }
    let n = x.rows.max(1) as f64;
    m.iter_mut().for_each(|a| *a /= n);
    m
}

/// AWQ's scales for one alpha: `mean|x|^alpha`, floored at 1e-4, normalised by
/// `sqrt(max * min)`.
pub fn awq_scales(mean_abs: &[f64], alpha: f64) -> Vec<f64> {
    let mut s: Vec<f64> = mean_abs.iter().map(|m| m.powf(alpha).max(1e-4)).collect();
    let mx = s.iter().cloned().fold(f64::MIN, f64::max);
    let mn = s.iter().cloned().fold(f64::MAX, f64::min);
    let norm = (mx * mn).sqrt();
    if norm > 0.0 && norm.is_finite() {
        s.iter_mut().for_each(|v| *v /= norm);
    }
    s
}

fn unscale(m: &Matrix, s: &[f64]) -> Matrix {
    let inv: Vec<f64> = s.iter().map(|v| 1.0 / v).collect();
    let mut e = m.clone();
    e.scale_cols(&inv);
    e
}

/// Run AWQ on `w` (`out x in`) with calibration activations `x` (`tokens x in`), with AWQ's
/// weight-only objective (activations unquantized).
pub fn awq(w: &Matrix, x: &Matrix, mx: &MxConfig, cfg: &AwqConfig) -> Result<AwqResult> {
    awq_with_act(w, x, mx, None, cfg)
}

/// AWQ whose alpha search and final clipping check measure the output error with the
/// activations quantized as a plan will quantize them (`act`), `||X W^T - Q_a(X/s) W_eff'^T||^2`
/// where `W_eff' = Q(W diag s)`: the MX-aware variant used when a plan quantizes activations
/// too, since dividing activations by `s` changes their block quantization. With `act = None`
/// it is plain AWQ. `alpha = 0` is RTN under either objective.
pub fn awq_with_act(
    w: &Matrix,
    x: &Matrix,
    mx: &MxConfig,
    act: Option<&MxConfig>,
    cfg: &AwqConfig,
) -> Result<AwqResult> {
    if x.cols != w.cols {
        return Err(Error::invalid(format!(
            "AWQ: activations have {} channels, weight has {} inputs",
            x.cols, w.cols
        )));
    }
    if cfg.grid == 0 {
        return Err(Error::invalid(
            "AWQ: the alpha grid needs at least one point",
        ));
    }
    let ma = mean_abs(x);
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    for i in 0..cfg.grid {
        let alpha = i as f64 / cfg.grid as f64;
        let s = awq_scales(&ma, alpha);
        let mut ws = w.clone();
        ws.scale_cols(&s);
        let (_, q) = rtn(&ws, mx)?;
        let err = objective(x, w, &q, &s, act)?;
        if best.as_ref().is_none_or(|b| err < b.0) {
            best = Some((err, alpha, s));
        }
    }
    let (err0, alpha, s) = best.expect("grid is not empty");
    let mut ws = w.clone();
    ws.scale_cols(&s);
    // clipping search on the scaled weight; inputs scaled by 1/s
    let mut xs = x.clone();
    xs.scale_cols(&s.iter().map(|v| 1.0 / v).collect::<Vec<_>>());
    let mut result_w = ws.clone();
    let mut clipped = false;
    let mut err = err0;
    if cfg.clip_grid >= 2 {
        let clipped_w = clip_search(&ws, &xs, mx, cfg)?;
        let (_, qc) = rtn(&clipped_w, mx)?;
        let errc = objective(x, w, &qc, &s, act)?;
        if errc < err0 {
            result_w = clipped_w;
            clipped = true;
            err = errc;
        }
    }
    let (tensor, q) = rtn(&result_w, mx)?;
    let effective = unscale(&q, &s);
    Ok(AwqResult {
        clipped_weight: result_w,
        scales: s,
        alpha,
        clipped,
        quantized: Quantized { tensor, weight: q },
        effective,
        error: err,
    })
}

/// Output error of the quantized scaled weight `q` (scales `s`) against the original layer.
fn objective(x: &Matrix, w: &Matrix, q: &Matrix, s: &[f64], act: Option<&MxConfig>) -> Result<f64> {
    match act {
        None => Ok(weight_output_error(x, w, &unscale(q, s))),
        Some(a) => {
            let mut xs = x.clone();
            xs.scale_cols(&s.iter().map(|v| 1.0 / v).collect::<Vec<_>>());
            let xq = super::quant::fake_quant(&xs, a)?;
            Ok(x.matmul_t(w).sq_dist(&xq.matmul_t(q)))
        }
    }
}

/// Per (row, block) clipping ratio search; returns the clipped weight.
fn clip_search(ws: &Matrix, xs: &Matrix, mx: &MxConfig, cfg: &AwqConfig) -> Result<Matrix> {
    let bq = BlockQuantizer::new(mx, ws)?;
    let gram = xs.t_matmul(xs);
    let bs = mx.block_size;
    let cols = ws.cols;
    let mut out = ws.clone();
    let ratios: Vec<f64> = (0..cfg.clip_grid)
        .map(|i| 1.0 - (1.0 - cfg.clip_min) * i as f64 / (cfg.clip_grid - 1) as f64)
        .collect();
    for r in 0..ws.rows {
        for lo in (0..cols).step_by(bs) {
            let hi = (lo + bs).min(cols);
            let orig = &ws.row(r)[lo..hi];
            let amax = orig.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if amax == 0.0 {
                continue;
            }
            let mut best = (f64::INFINITY, 1.0);
            for &ratio in &ratios {
                let t = ratio * amax;
                let cl: Vec<f64> = orig.iter().map(|v| v.clamp(-t, t)).collect();
                let sc = bq.choose_scale(&cl)?;
                let d: Vec<f64> = cl
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| orig[k] - bq.quantize_value(v, sc, (r * cols + lo + k) as u64).1)
                    .collect();
                // d^T G_bb d
                let mut e = 0.0;
                for (a, &da) in d.iter().enumerate() {
                    let grow = &gram.row(lo + a)[lo..hi];
                    e += da * grow.iter().zip(&d).map(|(g, db)| g * db).sum::<f64>();
                }
                if e < best.0 {
                    best = (e, ratio);
                }
            }
            let t = best.1 * amax;
            for c in lo..hi {
                let v = out.at(r, c);
                *out.at_mut(r, c) = v.clamp(-t, t);
            }
        }
    }
    Ok(out)
}
