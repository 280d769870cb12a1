//! FlatQuant-style learned affine transform (Sun et al., 2024): for a group of linears sharing
//! the activations `X`, an invertible `P = diag(s) (P1 (x) P2)` (per-channel scales times a
//! Kronecker product of two small matrices, `n = n1 * n2` with `n1` the divisor of `n` nearest
//! `sqrt(n)`), applied as `X P` to the activations and `W P^-T` to each weight, so that without
//! quantization `X P (W P^-T)^T = X W^T` exactly. Trained with Adam to minimise the relative
//! quantized output error ([`super::quant::group_loss`]), then learned clipping: the weight and
//! activation clipping ratios (per tensor, applied per MX block to the block maximum) are chosen
//! by a grid search on the same objective.
//!
//! Gradients are analytic (straight-through estimator for the quantizers). With `Xt = X P`,
//! `Wt_l = W_l P^-T`, `G_l = 2 (Q(Xt) Q(Wt_l)^T - Y_l) / sum||Y||^2`, `dXt = sum_l G_l Q(Wt_l)`,
//! `dWt_l = G_l^T Q(Xt)`:
//! `dL/dP = X^T dXt - P^-T sum_l dWt_l^T Wt_l` (from `d(P^-1) = -P^-1 dP P^-1`);
//! `dL/dK = diag(s) dL/dP`, `dL/ds_i = sum_j (dL/dP)_ij K_ij`, parametrised as `s = exp(theta)`;
//! `dL/dP1[a,b] = sum_{c,d} dL/dK[(a,c),(b,d)] P2[c,d]` and symmetrically for `P2`.
//! `P^-1 = (P1^-1 (x) P2^-1) diag(1/s)` uses the Kronecker structure.
//!
//! The start is the identity (the RTN loss) and the best iterate by the true quantized loss is
//! returned; the clipping grids contain ratio 1. So the result never does worse than RTN on
//! this objective.

use super::linalg::{inverse, Matrix};
use super::quant::{group_loss, QuantSpec};
use crate::error::{Error, Result};

/// FlatQuant-style training parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlatConfig {
    /// Adam steps.
    pub iters: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Points of each clipping grid on `[clip_min, 1]` (0 or 1: no clipping).
    pub clip_grid: usize,
    /// Smallest clipping ratio.
    pub clip_min: f64,
}

impl Default for FlatConfig {
    fn default() -> Self {
        FlatConfig {
            iters: 60,
            lr: 5e-3,
            clip_grid: 7,
            clip_min: 0.7,
        }
    }
}

/// A learned transform `P = diag(s) (P1 (x) P2)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatTransform {
    /// Left Kronecker factor (`n1 x n1`).
    pub p1: Matrix,
    /// Right Kronecker factor (`n2 x n2`).
    pub p2: Matrix,
    /// Per-channel scales (`n`).
    pub scales: Vec<f64>,
}

/// The divisor of `n` nearest `sqrt(n)` from below, and its cofactor.
pub fn kron_split(n: usize) -> (usize, usize) {
    let mut a = (n as f64).sqrt() as usize;
    while a > 1 && !n.is_multiple_of(a) {
        a -= 1;
    }
    let a = a.max(1);
    (a, n / a)
}

/// Kronecker product.
pub fn kron(a: &Matrix, b: &Matrix) -> Matrix {
    let (n1, n2) = (a.rows, b.rows);
    let n = n1 * n2;
    let mut k = Matrix::zeros(n, n);
    for i in 0..n1 {
        for j in 0..n1 {
            let f = a.at(i, j);
            for c in 0..n2 {
                for d in 0..n2 {
                    *k.at_mut(i * n2 + c, j * n2 + d) = f * b.at(c, d);
                }
            }
        }
    }
    k
}

impl FlatTransform {
    /// The identity transform of width `n`.
    pub fn identity(n: usize) -> Self {
        let (n1, n2) = kron_split(n);
        FlatTransform {
            p1: Matrix::identity(n1),
            p2: Matrix::identity(n2),
            scales: vec![1.0; n],
        }
    }

    /// Width.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether the width is 0.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// The dense `P` (`n x n`).
    pub fn matrix(&self) -> Matrix {
        let mut k = kron(&self.p1, &self.p2);
        let n = k.rows;
        for i in 0..n {
            for j in 0..n {
                *k.at_mut(i, j) *= self.scales[i];
            }
        }
        k
    }

    /// The dense `P^-1`; errors if a factor is singular.
    pub fn inverse(&self) -> Result<Matrix> {
        let mut k = kron(&inverse(&self.p1)?, &inverse(&self.p2)?);
        let n = k.rows;
        for i in 0..n {
            for j in 0..n {
                *k.at_mut(i, j) /= self.scales[j];
            }
        }
        Ok(k)
    }

    /// Transformed activations `X P`.
    pub fn apply_act(&self, x: &Matrix) -> Matrix {
        x.matmul(&self.matrix())
    }

    /// Transformed weight `W P^-T`.
    pub fn apply_weight(&self, w: &Matrix) -> Result<Matrix> {
        Ok(w.matmul_t(&self.inverse()?))
    }
}

/// The learned transform, clipping ratios and losses.
#[derive(Debug, Clone)]
pub struct FlatResult {
    /// The transform.
    pub transform: FlatTransform,
    /// Activation clipping ratio (1: none).
    pub act_clip: f64,
    /// Weight clipping ratio (1: none).
    pub weight_clip: f64,
    /// Loss with the identity transform and no clipping (RTN).
    pub loss_rtn: f64,
    /// Loss of the result.
    pub loss: f64,
}

struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    fn new(n: usize) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }
    fn step(&mut self, p: &mut [f64], g: &[f64], lr: f64) {
        self.t += 1;
        let (b1, b2) = (0.9f64, 0.999f64);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for i in 0..p.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            p[i] -= lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-12);
        }
    }
}

/// Loss and gradients (w.r.t. P1, P2, theta = ln s) of a transform.
fn loss_and_grad(
    tr: &FlatTransform,
    x: &Matrix,
    ws: &[&Matrix],
    refs: &[Matrix],
    spec: &QuantSpec,
) -> Result<(f64, Matrix, Matrix, Vec<f64>)> {
    let p = tr.matrix();
    let pinv = tr.inverse()?;
    let xt = x.matmul(&p);
    let wts: Vec<Matrix> = ws.iter().map(|w| w.matmul_t(&pinv)).collect();
    let (loss, xq, wqs) = group_loss(refs, &xt, &wts, spec, (1.0, 1.0))?;
    let den: f64 = refs
        .iter()
        .map(|y| y.sq_norm())
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let n = x.cols;
    let mut dxt = Matrix::zeros(x.rows, n);
    let mut wterm = Matrix::zeros(n, n);
    for ((y, wq), wt) in refs.iter().zip(&wqs).zip(&wts) {
        let mut g = xq.matmul_t(wq);
        for (gv, yv) in g.data.iter_mut().zip(&y.data) {
            *gv = 2.0 * (*gv - yv) / den;
        }
        let a = g.matmul(wq);
        for (d, v) in dxt.data.iter_mut().zip(&a.data) {
            *d += v;
        }
        let dwt = g.t_matmul(&xq); // out x n
        let t = dwt.t_matmul(wt); // n x n
        for (d, v) in wterm.data.iter_mut().zip(&t.data) {
            *d += v;
        }
    }
    let mut dp = x.t_matmul(&dxt);
    let corr = pinv.t_matmul(&wterm);
    for (d, c) in dp.data.iter_mut().zip(&corr.data) {
        *d -= c;
    }
    let k = kron(&tr.p1, &tr.p2);
    let mut dk = dp.clone();
    let mut dtheta = vec![0.0; n];
    for (i, (dt, &s)) in dtheta.iter_mut().zip(&tr.scales).enumerate() {
        let mut acc = 0.0;
        for j in 0..n {
            acc += dp.at(i, j) * k.at(i, j);
            *dk.at_mut(i, j) *= s;
        }
        *dt = acc * s;
    }
    let (n1, n2) = (tr.p1.rows, tr.p2.rows);
    let mut g1 = Matrix::zeros(n1, n1);
    let mut g2 = Matrix::zeros(n2, n2);
    for a in 0..n1 {
        for b in 0..n1 {
            for c in 0..n2 {
                for d in 0..n2 {
                    let v = dk.at(a * n2 + c, b * n2 + d);
                    *g1.at_mut(a, b) += v * tr.p2.at(c, d);
                    *g2.at_mut(c, d) += v * tr.p1.at(a, b);
                }
            }
        }
    }
    Ok((loss, g1, g2, dtheta))
}

/// The loss of a transform and its analytic gradient, exposed for gradient checks: returns
/// `(loss, dL/dP1, dL/dP2, dL/dtheta)` with `s = exp(theta)`.
pub fn flat_loss_grad(
    tr: &FlatTransform,
    x: &Matrix,
    ws: &[&Matrix],
    spec: &QuantSpec,
) -> Result<(f64, Matrix, Matrix, Vec<f64>)> {
    let refs: Vec<Matrix> = ws.iter().map(|w| x.matmul_t(w)).collect();
    loss_and_grad(tr, x, ws, &refs, spec)
}

/// Learn a FlatQuant-style transform for activations `x` feeding the weights `ws`.
pub fn learn_flat(
    x: &Matrix,
    ws: &[&Matrix],
    spec: &QuantSpec,
    cfg: &FlatConfig,
) -> Result<FlatResult> {
    let n = x.cols;
    if ws.iter().any(|w| w.cols != n) {
        return Err(Error::invalid(
            "affine transform: weights and activations differ in width",
        ));
    }
    let refs: Vec<Matrix> = ws.iter().map(|w| x.matmul_t(w)).collect();
    let mut tr = FlatTransform::identity(n);
    let mut theta = vec![0.0; n];
    let (mut a1, mut a2, mut a3) = (
        Adam::new(tr.p1.data.len()),
        Adam::new(tr.p2.data.len()),
        Adam::new(n),
    );
    let mut best: Option<(f64, FlatTransform)> = None;
    let mut loss_rtn = f64::NAN;
    for it in 0..=cfg.iters {
        let (loss, g1, g2, gt) = match loss_and_grad(&tr, x, ws, &refs, spec) {
            Ok(v) => v,
            Err(_) if it > 0 => break, // a singular factor: keep the best so far
            Err(e) => return Err(e),
        };
        if it == 0 {
            loss_rtn = loss;
        }
        if best.as_ref().is_none_or(|b| loss < b.0) {
            best = Some((loss, tr.clone()));
        }
        if it == cfg.iters {
            break;
        }
        a1.step(&mut tr.p1.data, &g1.data, cfg.lr);
        a2.step(&mut tr.p2.data, &g2.data, cfg.lr);
        a3.step(&mut theta, &gt, cfg.lr);
        tr.scales = theta.iter().map(|t| t.exp()).collect();
    }
    let (mut loss, tr) = best.expect("at least one evaluation");
    // learned clipping: weight ratio, then activation ratio
    let xt = tr.apply_act(x);
    let wts: Vec<Matrix> = ws
        .iter()
        .map(|w| tr.apply_weight(w))
        .collect::<Result<_>>()?;
    let ratios: Vec<f64> = if cfg.clip_grid >= 2 {
        (0..cfg.clip_grid)
            .map(|i| 1.0 - (1.0 - cfg.clip_min) * i as f64 / (cfg.clip_grid - 1) as f64)
            .collect()
    } else {
        vec![1.0]
    };
    let mut clip = (1.0, 1.0);
    for &r in &ratios[1..] {
        let l = group_loss(&refs, &xt, &wts, spec, (1.0, r))?.0;
        if l < loss {
            loss = l;
            clip.1 = r;
        }
    }
    if spec.act.is_some() {
        for &r in &ratios[1..] {
            let l = group_loss(&refs, &xt, &wts, spec, (r, clip.1))?.0;
            if l < loss {
                loss = l;
                clip.0 = r;
            }
        }
    }
    Ok(FlatResult {
        transform: tr,
        act_clip: clip.0,
        weight_clip: clip.1,
        loss_rtn,
        loss,
    })
}
