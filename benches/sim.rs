//! Cycle-simulator speed: a whole Llama-3.1-8B prefill of 2048 tokens (every GEMM of one block
//! plus lm_head, tiling search included) against a trivial roofline over the same GEMM list
//! (the baseline: the least work any estimate must do).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mxsim::mx::Scheme;
use mxsim::sim::gemm::row_bytes;
use mxsim::sim::llm::{block_gemms, simulate_model, LlmShape, Phase, Workload};
use mxsim::sim::TensorCoreConfig;

fn bench(c: &mut Criterion) {
    let model = LlmShape::load("llama-3.1-8b").unwrap();
    let w = Workload {
        phase: Phase::Prefill,
        tokens: 2048,
        batch: 1,
        context: 0,
        weights: Scheme::Mxfp8E4m3,
        activations: Scheme::Mxfp8E4m3,
        kv: Scheme::Mxfp8E4m3,
    };
    let mut g = c.benchmark_group("llama-3.1-8b prefill 2048");
    for hw in ["b200", "h100-sxm", "mxdotp-cluster", "systolic-128"] {
        let cfg = TensorCoreConfig::preset(hw).unwrap();
        g.bench_function(format!("cycle model {hw}"), |b| {
            b.iter(|| simulate_model(black_box(&cfg), black_box(&model), black_box(&w)).unwrap())
        });
    }
    let cfg = TensorCoreConfig::preset("b200").unwrap();
    let gemms = block_gemms(&model, &w);
    let peak = cfg.peak_tflops(w.activations, w.weights).unwrap() * 1e12 / 2.0 / 1.86e9;
    let bpc = cfg.offchip_bytes_per_cycle();
    g.bench_function("roofline baseline b200", |b| {
        b.iter(|| {
            let mut total = 0f64;
            for ng in black_box(&gemms) {
                let s = &ng.shape;
                let macs = (s.m * s.n * s.k * s.count) as f64;
                let bytes = (s.count
                    * (s.m * row_bytes(s.a, s.k)
                        + s.n * row_bytes(s.b, s.k)
                        + s.m * s.n * s.out_bytes as u64)) as f64;
                let rep = if ng.name == "lm_head" { 1.0 } else { 32.0 };
                total += rep * (macs / peak).max(bytes / bpc);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
