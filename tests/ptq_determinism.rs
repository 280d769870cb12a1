//! Determinism: the same inputs and seed give bit-identical results, whatever the thread count.

mod common;

use mxsim::mx::{MxConfig, Scheme};
use mxsim::ptq::quant::QuantSpec;
use mxsim::ptq::{
    awq, gptq, hessian, learn_flat, learn_rotation, AwqConfig, CayleyConfig, FlatConfig, GptqConfig,
};

fn run_all() -> Vec<Vec<f64>> {
    let (x, w) = common::layer(128, 64, 32, 10.0, 21);
    let mx = MxConfig::new(Scheme::Mxfp4);
    let spec = QuantSpec {
        weight: mx.clone(),
        act: Some(mx.clone()),
    };
    let g = gptq(
        &w,
        &hessian(&x),
        &mx,
        &GptqConfig {
            act_order: true,
            ..Default::default()
        },
    )
    .unwrap();
    let a = awq(&w, &x, &mx, &AwqConfig::default()).unwrap();
    let r = learn_rotation(
        &x,
        &[&w],
        &spec,
        &CayleyConfig {
            iters: 10,
            seed: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let f = learn_flat(
        &x,
        &[&w],
        &spec,
        &FlatConfig {
            iters: 10,
            ..Default::default()
        },
    )
    .unwrap();
    vec![
        g.weight.data,
        a.effective.data,
        r.rotation.data,
        f.transform.matrix().data,
    ]
}

#[test]
fn same_seed_same_bits_any_thread_count() {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(run_all);
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(run_all);
    let again = run_all();
    for ((a, b), c) in one.iter().zip(&two).zip(&again) {
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(a.iter().zip(c).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn different_seed_different_rotation_start() {
    let (x, w) = common::layer(128, 64, 32, 10.0, 22);
    let mx = MxConfig::new(Scheme::Mxfp4);
    let spec = QuantSpec {
        weight: mx.clone(),
        act: Some(mx),
    };
    let a = learn_rotation(
        &x,
        &[&w],
        &spec,
        &CayleyConfig {
            iters: 0,
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let b = learn_rotation(
        &x,
        &[&w],
        &spec,
        &CayleyConfig {
            iters: 0,
            seed: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(a.loss_hadamard, b.loss_hadamard);
}
