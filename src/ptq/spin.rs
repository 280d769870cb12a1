//! SpinQuant-style learned rotation (Liu et al., 2024): an orthogonal matrix `R` applied to
//! the activations (`X R`) and to the weights that consume them (`W R`), learned by Cayley SGD
//! on the orthogonal manifold (Wen and Yin, 2013; Li et al., 2020) to minimise the quantized
//! output error of those layers.
//!
//! Loss: the relative output error of [`super::quant::group_loss`] for every weight fed by the
//! rotated activations. Gradients are analytic, with the straight-through estimator for the
//! quantizers (`dQ(z)/dz = 1`): with `A = X R`, `B_l = W_l R`, `G_l = 2 (Q(A) Q(B_l)^T - Y_l) / sum||Y||^2`,
//! `dL/dA = sum_l G_l Q(B_l)`, `dL/dB_l = G_l^T Q(A)`, `dL/dR = X^T dL/dA + sum_l W_l^T dL/dB_l`.
//! Cayley step: `S = G R^T - R G^T` (skew-symmetric), `R <- (I + t/2 S)^-1 (I - t/2 S) R`
//! with `t = lr / ||S||_F` (so each step turns by about `lr` radians, whatever the loss scale),
//! `lr` decaying linearly to zero. The step keeps `R` orthogonal exactly up to rounding.
//!
//! Start: the better of the identity and a random-sign Hadamard (QuaRot's rotation, SpinQuant's
//! initialisation). The best iterate (by the true quantized loss) is returned, so the result
//! never does worse on this objective than either starting point.

use super::hadamard::Rotation;
use super::linalg::{Lu, Matrix};
use super::quant::{group_loss, QuantSpec};
use crate::error::{Error, Result};

/// Cayley SGD parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CayleyConfig {
    /// Optimisation steps.
    pub iters: usize,
    /// Initial step (radians, Frobenius norm of the skew generator times the step).
    pub lr: f64,
    /// Seed of the random-sign Hadamard start.
    pub seed: u64,
}

impl Default for CayleyConfig {
    fn default() -> Self {
        CayleyConfig {
            iters: 60,
            lr: 0.05,
            seed: 0,
        }
    }
}

/// A learned rotation and its losses.
#[derive(Debug, Clone)]
pub struct SpinResult {
    /// The rotation `R` (`n x n`, orthogonal): activations become `X R`, weights `W R`.
    pub rotation: Matrix,
    /// Loss with no rotation (RTN).
    pub loss_identity: f64,
    /// Loss with the random Hadamard (QuaRot).
    pub loss_hadamard: f64,
    /// Loss of the returned rotation.
    pub loss: f64,
}

/// Learn a rotation for activations `x` (`tokens x n`) feeding the weights `ws` (`out_l x n`).
pub fn learn_rotation(
    x: &Matrix,
    ws: &[&Matrix],
    spec: &QuantSpec,
    cfg: &CayleyConfig,
) -> Result<SpinResult> {
    learn_rotation_groups(&[(x, ws.to_vec())], spec, cfg)
}

/// Learn one rotation shared by several groups, each a set of weights fed by its own
/// activations (for a model: every linear that reads the rotated residual stream, in every
/// block). The loss is the sum of the groups' squared output errors over the sum of their
/// squared reference outputs.
pub fn learn_rotation_groups(
    groups: &[(&Matrix, Vec<&Matrix>)],
    spec: &QuantSpec,
    cfg: &CayleyConfig,
) -> Result<SpinResult> {
    let n = match groups.first() {
        Some((x, _)) => x.cols,
        None => return Err(Error::invalid("rotation: no layers to learn from")),
    };
    if groups
        .iter()
        .any(|(x, ws)| x.cols != n || ws.iter().any(|w| w.cols != n))
    {
        return Err(Error::invalid(
            "rotation: weights and activations differ in width",
        ));
    }
    let refs: Vec<Vec<Matrix>> = groups
        .iter()
        .map(|(x, ws)| ws.iter().map(|w| x.matmul_t(w)).collect())
        .collect();
    let den: f64 = refs
        .iter()
        .flatten()
        .map(|y| y.sq_norm())
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    // loss (relative to all groups) and, per group, the quantized operands
    type Eval = (f64, Vec<(Matrix, Vec<Matrix>)>);
    let eval = |r: &Matrix| -> Result<Eval> {
        let mut total = 0.0;
        let mut ops = Vec::with_capacity(groups.len());
        for ((x, ws), ys) in groups.iter().zip(&refs) {
            let xt = x.matmul(r);
            let wts: Vec<Matrix> = ws.iter().map(|w| w.matmul(r)).collect();
            let (l, xq, wqs) = group_loss(ys, &xt, &wts, spec, (1.0, 1.0))?;
            let gden: f64 = ys.iter().map(|y| y.sq_norm()).sum();
            total += l * gden.max(f64::MIN_POSITIVE);
            ops.push((xq, wqs));
        }
        Ok((total / den, ops))
    };
    let eye = Matrix::identity(n);
    let had = Rotation::hadamard(n, Some(cfg.seed)).to_matrix().t();
    let l_id = eval(&eye)?.0;
    let l_had = eval(&had)?.0;
    let mut r = if l_had < l_id { had } else { eye };
    let mut best = (l_id.min(l_had), r.clone());
    for it in 0..cfg.iters {
        let (loss, ops) = eval(&r)?;
        if loss < best.0 {
            best = (loss, r.clone());
        }
        let mut grad = Matrix::zeros(n, n);
        for (((x, ws), ys), (xq, wqs)) in groups.iter().zip(&refs).zip(&ops) {
            let mut da = Matrix::zeros(x.rows, n);
            for ((w, y), wq) in ws.iter().zip(ys).zip(wqs) {
                let mut g = xq.matmul_t(wq);
                for (gv, yv) in g.data.iter_mut().zip(&y.data) {
                    *gv = 2.0 * (*gv - yv) / den;
                }
                let ga = g.matmul(wq); // tokens x n
                for (a, b) in da.data.iter_mut().zip(&ga.data) {
                    *a += b;
                }
                let db = g.t_matmul(xq); // out x n
                let gw = w.t_matmul(&db);
                for (a, b) in grad.data.iter_mut().zip(&gw.data) {
                    *a += b;
                }
            }
            let gx = x.t_matmul(&da);
            for (a, b) in grad.data.iter_mut().zip(&gx.data) {
                *a += b;
            }
        }
        // Cayley step
        let grt = grad.matmul_t(&r);
        let mut s = grt.clone();
        for i in 0..n {
            for j in 0..n {
                *s.at_mut(i, j) = grt.at(i, j) - grt.at(j, i);
            }
        }
        let norm = s.sq_norm().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            break;
        }
        let t = cfg.lr * (1.0 - it as f64 / cfg.iters as f64) / norm;
        let mut left = Matrix::identity(n);
        let mut right = Matrix::identity(n);
        for k in 0..n * n {
            left.data[k] += 0.5 * t * s.data[k];
            right.data[k] -= 0.5 * t * s.data[k];
        }
        r = Lu::new(&left)?.solve(&right.matmul(&r));
    }
    let (loss, _) = eval(&r)?;
    if loss < best.0 {
        best = (loss, r);
    }
    Ok(SpinResult {
        rotation: best.1,
        loss_identity: l_id,
        loss_hadamard: l_had,
        loss: best.0,
    })
}
