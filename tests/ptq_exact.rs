//! Transforms that are exact without quantization (rotations, smoothing, affine transforms)
//! leave a layer's output unchanged to within float32 rounding; the Hadamard transforms equal
//! independently built dense matrices; the analytic gradient of the learned affine transform
//! agrees with finite differences.

mod common;

use mxsim::mx::{MxConfig, Scheme};
use mxsim::ptq::flat::{flat_loss_grad, kron};
use mxsim::ptq::hadamard::{block_sizes, Rotation};
use mxsim::ptq::quant::{fake_quant, QuantSpec};
use mxsim::ptq::smooth::{apply_smoothing, smoothquant_scales};
use mxsim::ptq::{
    fwht, learn_flat, learn_rotation, CayleyConfig, FlatConfig, FlatTransform, Matrix,
};

/// Relative difference, with a float32-rounding budget: the outputs are sums of `n` products,
/// so the tolerance is a few f32 epsilons (2^-24 ~ 6e-8) times sqrt(n).
fn assert_same_output(y: &Matrix, y2: &Matrix, what: &str) {
    let scale = y.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let d = y.max_abs_diff(y2) / scale;
    assert!(
        d < 4.0 * 6e-8 * (y.cols as f64).sqrt().max(8.0),
        "{what}: relative diff {d}"
    );
}

/// Sylvester Hadamard built by the recursion H_2n = [[H, H], [H, -H]], unnormalised.
fn sylvester(n: usize) -> Vec<Vec<f64>> {
    let mut h = vec![vec![1.0]];
    while h.len() < n {
        let m = h.len();
        let mut g = vec![vec![0.0; 2 * m]; 2 * m];
        for i in 0..m {
            for j in 0..m {
                g[i][j] = h[i][j];
                g[i][j + m] = h[i][j];
                g[i + m][j] = h[i][j];
                g[i + m][j + m] = -h[i][j];
            }
        }
        h = g;
    }
    h
}

#[test]
fn fwht_equals_dense_sylvester_matrix() {
    for n in [1usize, 2, 4, 8, 32, 64] {
        let h = sylvester(n);
        let x = common::randn(1, n, 1.0, n as u64).data;
        let mut y = x.clone();
        fwht(&mut y);
        for i in 0..n {
            let want: f64 = (0..n).map(|j| h[i][j] * x[j]).sum::<f64>() / (n as f64).sqrt();
            assert!((y[i] - want).abs() < 1e-12, "n={n} i={i}");
        }
    }
}

#[test]
fn rotations_are_orthogonal_and_block_sizes_documented() {
    assert_eq!(block_sizes(172, 32), vec![32, 32, 32, 32, 32, 8, 4]);
    assert_eq!(Rotation::hadamard(172, None).blocks, vec![4; 43]);
    assert_eq!(Rotation::hadamard(64, None).blocks, vec![64]);
    for r in [
        Rotation::hadamard(64, Some(3)),
        Rotation::hadamard(172, Some(3)),
        Rotation::block_hadamard(172, 32, Some(1)),
        Rotation::block_hadamard(48, 16, None),
    ] {
        let t = r.to_matrix();
        let i = t.matmul_t(&t);
        assert!(i.max_abs_diff(&Matrix::identity(r.len())) < 1e-12);
        // apply_t inverts apply
        let mut x = common::randn(1, r.len(), 1.0, 4).data;
        let x0 = x.clone();
        r.apply(&mut x);
        r.apply_t(&mut x);
        assert!(x.iter().zip(&x0).all(|(a, b)| (a - b).abs() < 1e-12));
    }
    // different seeds give different signs, the same seed the same
    assert_ne!(
        Rotation::hadamard(64, Some(1)),
        Rotation::hadamard(64, Some(2))
    );
    assert_eq!(
        Rotation::hadamard(64, Some(1)),
        Rotation::hadamard(64, Some(1))
    );
}

#[test]
fn hadamard_rotations_leave_outputs_unchanged() {
    for n in [64usize, 172] {
        let (x, w) = common::layer(64, n, 24, 20.0, 11);
        let y = x.matmul_t(&w);
        for r in [
            Rotation::hadamard(n, Some(5)),
            Rotation::block_hadamard(n, 32, None),
            Rotation::block_hadamard(n, 16, Some(2)),
        ] {
            let y2 = r.apply_rows(&x).matmul_t(&r.apply_rows(&w));
            assert_same_output(&y, &y2, "hadamard");
        }
    }
}

#[test]
fn smoothing_leaves_outputs_unchanged() {
    let (x, w) = common::layer(64, 96, 24, 50.0, 12);
    let s = smoothquant_scales(&x, &[&w], 0.5);
    assert!(
        s.iter().any(|v| (v - 1.0).abs() > 0.5),
        "non-trivial factors"
    );
    let (xs, ws) = apply_smoothing(&x, &w, &s);
    assert_same_output(&x.matmul_t(&w), &xs.matmul_t(&ws), "smoothing");
}

#[test]
fn learned_rotation_and_affine_leave_outputs_unchanged() {
    let (x, w) = common::layer(128, 64, 24, 10.0, 13);
    let spec = QuantSpec {
        weight: MxConfig::new(Scheme::Mxfp4),
        act: Some(MxConfig::new(Scheme::Mxfp4)),
    };
    let y = x.matmul_t(&w);
    let r = learn_rotation(
        &x,
        &[&w],
        &spec,
        &CayleyConfig {
            iters: 20,
            ..Default::default()
        },
    )
    .unwrap();
    let rt = r.rotation.t_matmul(&r.rotation);
    assert!(
        rt.max_abs_diff(&Matrix::identity(64)) < 1e-10,
        "stays orthogonal"
    );
    assert_same_output(
        &y,
        &x.matmul(&r.rotation).matmul_t(&w.matmul(&r.rotation)),
        "rotation",
    );
    let f = learn_flat(
        &x,
        &[&w],
        &spec,
        &FlatConfig {
            iters: 20,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        f.transform.scales.iter().any(|s| (s - 1.0).abs() > 1e-3),
        "learned something"
    );
    let y2 = f
        .transform
        .apply_act(&x)
        .matmul_t(&f.transform.apply_weight(&w).unwrap());
    assert_same_output(&y, &y2, "affine");
}

#[test]
fn kron_matches_definition() {
    let a = common::randn(3, 3, 1.0, 1);
    let b = common::randn(2, 2, 1.0, 2);
    let k = kron(&a, &b);
    for i in 0..3 {
        for j in 0..3 {
            for c in 0..2 {
                for d in 0..2 {
                    assert_eq!(k.at(i * 2 + c, j * 2 + d), a.at(i, j) * b.at(c, d));
                }
            }
        }
    }
}

/// The straight-through gradient of the affine-transform loss is the exact gradient of the
/// surrogate in which each quantizer is replaced by adding its error at the current point,
/// frozen: `L_e(P) = ||(X P + Ea)(W P^-T + Ew)^T - Y||^2 / ||Y||^2`. Central differences of
/// that surrogate, written here from the definition, must match the analytic gradient.
#[test]
#[allow(clippy::needless_range_loop)]
fn affine_gradient_matches_finite_differences() {
    let (x, w) = common::layer(48, 12, 5, 5.0, 14);
    let spec = QuantSpec {
        weight: MxConfig::new(Scheme::Mxfp4).with_block(4),
        act: Some(MxConfig::new(Scheme::Mxfp4).with_block(4)),
    };
    let mut tr = FlatTransform::identity(12);
    // a non-trivial point
    let p1 = common::randn(3, 3, 0.1, 20);
    let p2 = common::randn(4, 4, 0.1, 21);
    for (d, v) in tr.p1.data.iter_mut().zip(&p1.data) {
        *d += v;
    }
    for (d, v) in tr.p2.data.iter_mut().zip(&p2.data) {
        *d += v;
    }
    tr.scales = (0..12).map(|i| (0.1 * i as f64 - 0.5).exp()).collect();
    let (_, g1, g2, gt) = flat_loss_grad(&tr, &x, &[&w], &spec).unwrap();
    let xt0 = tr.apply_act(&x);
    let wt0 = tr.apply_weight(&w).unwrap();
    let ea = {
        let q = fake_quant(&xt0, spec.act.as_ref().unwrap()).unwrap();
        Matrix::from_vec(
            q.rows,
            q.cols,
            q.data.iter().zip(&xt0.data).map(|(a, b)| a - b).collect(),
        )
        .unwrap()
    };
    let ew = {
        let q = fake_quant(&wt0, &spec.weight).unwrap();
        Matrix::from_vec(
            q.rows,
            q.cols,
            q.data.iter().zip(&wt0.data).map(|(a, b)| a - b).collect(),
        )
        .unwrap()
    };
    let y = x.matmul_t(&w);
    let surrogate = |t: &FlatTransform| {
        let mut a = t.apply_act(&x);
        for (v, e) in a.data.iter_mut().zip(&ea.data) {
            *v += e;
        }
        let mut b = t.apply_weight(&w).unwrap();
        for (v, e) in b.data.iter_mut().zip(&ew.data) {
            *v += e;
        }
        a.matmul_t(&b).sq_dist(&y) / y.sq_norm()
    };
    let h = 1e-6;
    let check = |an: f64, num: f64, what: &str| {
        assert!(
            (an - num).abs() <= 1e-5 * an.abs().max(num.abs()) + 1e-9,
            "{what}: analytic {an} numeric {num}"
        );
    };
    for k in 0..9 {
        let (mut a, mut b) = (tr.clone(), tr.clone());
        a.p1.data[k] += h;
        b.p1.data[k] -= h;
        check(
            g1.data[k],
            (surrogate(&a) - surrogate(&b)) / (2.0 * h),
            "P1",
        );
    }
    for k in 0..16 {
        let (mut a, mut b) = (tr.clone(), tr.clone());
        a.p2.data[k] += h;
        b.p2.data[k] -= h;
        check(
            g2.data[k],
            (surrogate(&a) - surrogate(&b)) / (2.0 * h),
            "P2",
        );
    }
    for k in 0..12 {
        let (mut a, mut b) = (tr.clone(), tr.clone());
        a.scales[k] *= h.exp();
        b.scales[k] *= (-h).exp();
        check(gt[k], (surrogate(&a) - surrogate(&b)) / (2.0 * h), "theta");
    }
}
