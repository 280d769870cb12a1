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
//!
//! On a model the objective is the block-output error rather than this layer-local loss:
//! [`learn_rotation_objective`] uses the layer-local gradient as its search direction and
//! accepts a Cayley step only when the given objective decreases.

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
    let sur = Surrogate::new(groups, spec)?;
    let n = sur.n;
    let eye = Matrix::identity(n);
    let had = Rotation::hadamard(n, Some(cfg.seed)).to_matrix().t();
    let l_id = sur.eval(&eye)?.0;
    let l_had = sur.eval(&had)?.0;
    let mut r = if l_had < l_id { had } else { eye };
    let mut best = (l_id.min(l_had), r.clone());
    for it in 0..cfg.iters {
        let (loss, grad) = sur.grad(&r)?;
        if loss < best.0 {
            best = (loss, r.clone());
        }
        let s = skew(&grad, &r);
        let norm = s.sq_norm().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            break;
        }
        let t = cfg.lr * (1.0 - it as f64 / cfg.iters as f64) / norm;
        r = cayley(&r, &s, t)?;
    }
    let (loss, _) = sur.eval(&r)?;
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

/// Learn one rotation shared by several groups (as [`learn_rotation_groups`]) against an
/// arbitrary objective `f(R)` evaluated on whole candidates (for a model: the block-output
/// error of the rotated and quantized model). Deterministic for a seed.
///
/// Start: the better of the identity and the random-sign Hadamard by `f`. Each iteration
/// proposes a Cayley step of `step` radians along the analytic gradient of the layer-local
/// surrogate of the groups (an estimate of the descent direction of `f` that costs no
/// evaluation of `f`); the step is taken only if `f` decreases. When it does not, a
/// zeroth-order probe follows: a random skew-symmetric generator (seeded, +-1 above the
/// diagonal, unit Frobenius norm) is tried in both directions (the two evaluations of an SPSA
/// estimate along it), and the better side is taken if `f` decreases. An accepted step grows
/// `step` by 1.5 (at most `4 lr`), a rejected iteration halves it; the search stops after
/// `iters` iterations or when `step` falls below `lr / 1000`. Only improvements are accepted,
/// so the returned rotation (the best iterate) never has a larger `f` than either start.
/// `loss_identity`, `loss_hadamard` and `loss` of the result are values of `f`.
pub fn learn_rotation_objective(
    groups: &[(&Matrix, Vec<&Matrix>)],
    spec: &QuantSpec,
    cfg: &CayleyConfig,
    objective: &dyn Fn(&Matrix) -> Result<f64>,
) -> Result<SpinResult> {
    use rand::{Rng, SeedableRng};
    let sur = Surrogate::new(groups, spec)?;
    let n = sur.n;
    let eye = Matrix::identity(n);
    let had = Rotation::hadamard(n, Some(cfg.seed)).to_matrix().t();
    let l_id = objective(&eye)?;
    let l_had = objective(&had)?;
    let (mut r, mut cur) = if l_had < l_id {
        (had, l_had)
    } else {
        (eye, l_id)
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_c0de_5b1d_0001);
    let mut step = cfg.lr;
    for _ in 0..cfg.iters {
        if step < cfg.lr * 1e-3 {
            break;
        }
        let (_, grad) = sur.grad(&r)?;
        let s = skew(&grad, &r);
        let norm = s.sq_norm().sqrt();
        let mut accepted = false;
        if norm > 0.0 && norm.is_finite() {
            let cand = cayley(&r, &s, step / norm)?;
            let f = objective(&cand)?;
            if f < cur {
                (r, cur, accepted) = (cand, f, true);
            }
        }
        if !accepted {
            let mut delta = Matrix::zeros(n, n);
            let scale = 1.0 / ((n * n.saturating_sub(1)) as f64).sqrt().max(1.0);
            for i in 0..n {
                for j in i + 1..n {
                    let v = if rng.gen::<bool>() { scale } else { -scale };
                    *delta.at_mut(i, j) = v;
                    *delta.at_mut(j, i) = -v;
                }
            }
            let plus = cayley(&r, &delta, step)?;
            let minus = cayley(&r, &delta, -step)?;
            let (fp, fm) = (objective(&plus)?, objective(&minus)?);
            let (cand, f) = if fp <= fm { (plus, fp) } else { (minus, fm) };
            if f < cur {
                (r, cur, accepted) = (cand, f, true);
            }
        }
        step = if accepted {
            (step * 1.5).min(4.0 * cfg.lr)
        } else {
            step * 0.5
        };
    }
    Ok(SpinResult {
        rotation: r,
        loss_identity: l_id,
        loss_hadamard: l_had,
        loss: cur,
    })
}

/// The layer-local surrogate of a rotation: relative quantized output error of groups of
/// linears sharing activations, and its analytic (straight-through) gradient.
struct Surrogate<'a> {
    groups: &'a [(&'a Matrix, Vec<&'a Matrix>)],
    refs: Vec<Vec<Matrix>>,
    den: f64,
    spec: &'a QuantSpec,
    n: usize,
}

impl<'a> Surrogate<'a> {
    fn new(groups: &'a [(&'a Matrix, Vec<&'a Matrix>)], spec: &'a QuantSpec) -> Result<Self> {
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
        Ok(Surrogate {
            groups,
            refs,
            den,
            spec,
            n,
        })
    }

    /// Loss (relative to all groups) and, per group, the quantized operands.
    #[allow(clippy::type_complexity)]
    fn eval(&self, r: &Matrix) -> Result<(f64, Vec<(Matrix, Vec<Matrix>)>)> {
        let mut total = 0.0;
        let mut ops = Vec::with_capacity(self.groups.len());
        for ((x, ws), ys) in self.groups.iter().zip(&self.refs) {
            let xt = x.matmul(r);
            let wts: Vec<Matrix> = ws.iter().map(|w| w.matmul(r)).collect();
            let (l, xq, wqs) = group_loss(ys, &xt, &wts, self.spec, (1.0, 1.0))?;
            let gden: f64 = ys.iter().map(|y| y.sq_norm()).sum();
            total += l * gden.max(f64::MIN_POSITIVE);
            ops.push((xq, wqs));
        }
        Ok((total / self.den, ops))
    }

    /// Loss and Euclidean gradient `dL/dR`.
    fn grad(&self, r: &Matrix) -> Result<(f64, Matrix)> {
        let n = self.n;
        let den = self.den;
        let (loss, ops) = self.eval(r)?;
        let mut grad = Matrix::zeros(n, n);
        for (((x, ws), ys), (xq, wqs)) in self.groups.iter().zip(&self.refs).zip(&ops) {
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
        Ok((loss, grad))
    }
}

/// The skew-symmetric Riemannian direction `S = G R^T - R G^T` of a Euclidean gradient `G`.
fn skew(grad: &Matrix, r: &Matrix) -> Matrix {
    let n = r.rows;
    let grt = grad.matmul_t(r);
    let mut s = grt.clone();
    for i in 0..n {
        for j in 0..n {
            *s.at_mut(i, j) = grt.at(i, j) - grt.at(j, i);
        }
    }
    s
}

/// Cayley retraction: `(I + t/2 S)^-1 (I - t/2 S) R` (orthogonal when `R` is and `S` skew).
fn cayley(r: &Matrix, s: &Matrix, t: f64) -> Result<Matrix> {
    let n = r.rows;
    let mut left = Matrix::identity(n);
    let mut right = Matrix::identity(n);
    for k in 0..n * n {
        left.data[k] += 0.5 * t * s.data[k];
        right.data[k] -= 0.5 * t * s.data[k];
    }
    Ok(Lu::new(&left)?.solve(&right.matmul(r)))
}
