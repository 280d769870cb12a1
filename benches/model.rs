//! Model evaluation speed on stories260K: float32 reference perplexity (the baseline) against
//! the quantized W4A4 MXFP4 forward in fast mode and through the `ideal` datapath hook, over
//! the first 2,000 tokens of the dev text (paragraph protocol). Needs `../shared/models` or
//! `MXSIM_MODELS`.

use criterion::{criterion_group, criterion_main, Criterion};
use mxsim::model::{
    evaluate, sequences, EvalOptions, GemmBackend, Llama2cTokenizer, Model, Plan, Protocol,
    QuantEngine,
};
use std::path::PathBuf;

fn models() -> PathBuf {
    std::env::var_os("MXSIM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models"))
}

fn bench(c: &mut Criterion) {
    let dir = models();
    let model =
        Model::load(&dir.join("stories260K.bin")).expect("stories260K.bin (set MXSIM_MODELS)");
    let tok = Llama2cTokenizer::load(&dir.join("tok512.bin"), Some(512)).expect("tok512.bin");
    let text =
        std::fs::read_to_string(dir.join("tinystories_dev.txt")).expect("tinystories_dev.txt");
    let seqs = sequences(&tok, 1, &text, Protocol::default(), Some(2000)).expect("sequences");
    let opts = EvalOptions {
        layer_stat_tokens: 0,
    };
    let plan = Plan::named("W4A4", None).expect("plan");
    let fast = QuantEngine::new(&model, plan.clone(), GemmBackend::Fast).expect("engine");
    let ideal = QuantEngine::new(&model, plan, GemmBackend::ideal()).expect("engine");
    let mut g = c.benchmark_group("model_eval_2000_tokens");
    g.sample_size(10);
    g.bench_function("fp32_reference", |b| {
        b.iter(|| evaluate(&model, None, &seqs, opts, &|_| {}).unwrap())
    });
    // The quantized evaluations also run the reference (for KL and top-1).
    g.bench_function("w4a4_mxfp4_fast", |b| {
        b.iter(|| evaluate(&model, Some(&fast), &seqs, opts, &|_| {}).unwrap())
    });
    g.bench_function("w4a4_mxfp4_ideal_datapath", |b| {
        b.iter(|| evaluate(&model, Some(&ideal), &seqs, opts, &|_| {}).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
