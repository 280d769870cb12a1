//! SmoothQuant (Xiao et al., 2023): migrate activation outliers into the weights with a
//! per-input-channel factor `s_j = max|X_j|^a / max|W_j|^(1-a)` (`a = 0.5` by default), where
//! `max|W_j|` is taken over every weight that consumes the same activations (for example the
//! query, key and value projections together). Activations are divided by `s` (folded into the
//! preceding RMSNorm weight by the model-level method) and weight columns multiplied by `s`, so
//! without quantization the layer is unchanged.

use super::linalg::Matrix;

/// Per-column maximum absolute value of a matrix (activations: per channel over tokens;
/// weights: per input channel over output rows).
pub fn col_absmax(m: &Matrix) -> Vec<f64> {
    let mut a = vec![0.0f64; m.cols];
    for r in 0..m.rows {
        for (x, v) in a.iter_mut().zip(m.row(r)) {
            *x = x.max(v.abs());
        }
    }
    a
}

/// SmoothQuant factors from activation and weight per-channel maxima. Channels where either
/// maximum is zero get factor 1; factors are floored at 1e-5.
pub fn smooth_scales(act_absmax: &[f64], weight_absmax: &[f64], alpha: f64) -> Vec<f64> {
    act_absmax
        .iter()
        .zip(weight_absmax)
        .map(|(&a, &w)| {
            if a > 0.0 && w > 0.0 {
                (a.powf(alpha) / w.powf(1.0 - alpha)).max(1e-5)
            } else {
                1.0
            }
        })
        .collect()
}

/// SmoothQuant factors for activations `x` feeding the weights `ws` (all `out_i x in`).
pub fn smoothquant_scales(x: &Matrix, ws: &[&Matrix], alpha: f64) -> Vec<f64> {
    let xa = col_absmax(x);
    let mut wa = vec![0.0f64; x.cols];
    for w in ws {
        for (a, b) in wa.iter_mut().zip(col_absmax(w)) {
            *a = a.max(b);
        }
    }
    smooth_scales(&xa, &wa, alpha)
}

/// Apply smoothing factors: activations divided by `s`, weight columns multiplied by `s`.
pub fn apply_smoothing(x: &Matrix, w: &Matrix, s: &[f64]) -> (Matrix, Matrix) {
    let mut xs = x.clone();
    xs.scale_cols(&s.iter().map(|v| 1.0 / v).collect::<Vec<_>>());
    let mut ws = w.clone();
    ws.scale_cols(s);
    (xs, ws)
}
