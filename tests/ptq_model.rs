//! Model-level PTQ methods on the shared stories260K model: transforms that are exact without
//! quantization leave the fp32 logits unchanged to within float32 rounding; methods are
//! deterministic; every method prepares a model that the quantized engine runs; bad method
//! names are rejected.

use mxsim::model::{
    forward, sequences, KvCache, Linear, Model, Plan, Protocol, QuantEngine, Reference, Tokenizer,
};
use mxsim::mx::Scheme;
use mxsim::ptq::methods::{prepare, Method, PtqOptions};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("MXSIM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models"));
    for f in [
        "stories260K.bin",
        "tok512.bin",
        "tinystories_calib.txt",
        "tinystories_dev.txt",
    ] {
        assert!(
            dir.join(f).is_file(),
            "shared model file {} is missing",
            dir.join(f).display()
        );
    }
    dir
}

fn setup() -> (Model, Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let d = models_dir();
    let model = Model::load(&d.join("stories260K.bin")).unwrap();
    let tok = mxsim::model::Llama2cTokenizer::load(&d.join("tok512.bin"), Some(512)).unwrap();
    let p = Protocol::Paragraphs { max_len: 256 };
    let calib_text = std::fs::read_to_string(d.join("tinystories_calib.txt")).unwrap();
    let dev_text = std::fs::read_to_string(d.join("tinystories_dev.txt")).unwrap();
    let calib = sequences(
        &tok as &dyn Tokenizer,
        model.config.bos_id,
        &calib_text,
        p,
        Some(1024),
    )
    .unwrap();
    let dev = sequences(
        &tok as &dyn Tokenizer,
        model.config.bos_id,
        &dev_text,
        p,
        Some(600),
    )
    .unwrap();
    (model, calib, dev)
}

fn fast_opts() -> PtqOptions {
    let mut o = PtqOptions {
        calib_tokens: 1024,
        learn_tokens: 256,
        ..Default::default()
    };
    o.cayley.iters = 8;
    o.flat.iters = 8;
    o
}

fn logits(m: &Model, seqs: &[Vec<u32>]) -> Vec<f32> {
    let mut out = Vec::new();
    for s in seqs {
        let mut cache = KvCache::new(&m.config);
        out.extend(forward(&m.config, &m.weights, &Reference, s, &mut cache, None).unwrap());
    }
    out
}

/// Every transform, alone, leaves the float32 model's logits unchanged up to float32 rounding:
/// the largest difference is a small multiple of f32's epsilon (2^-24 relative) times the
/// logit scale, accumulated over five blocks.
#[test]
fn transforms_leave_fp32_logits_unchanged() {
    let (model, calib, dev) = setup();
    let reference = logits(&model, &dev);
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    for (name, plan) in [
        ("smoothquant", "W4A4"),
        ("awq+gptq", "W4A4"), // AWQ scales without clipping (GPTQ weights are not used here)
        ("quarot", "W4A4"),
        ("spinquant", "W4A4"),
        ("flatquant", "W4A4"),
        ("hadamard-block", "W4A4"),
        ("mrgptq", "W4A8"),
        ("quarot+smoothquant", "W4A4"),
    ] {
        let plan = Plan::named(plan, Some(Scheme::Mxfp4)).unwrap();
        let p = prepare(
            &model,
            &plan,
            &Method::parse(name).unwrap(),
            &calib,
            &fast_opts(),
        )
        .unwrap();
        assert_ne!(p.model.weights, model.weights, "{name} changed the weights");
        let got = logits(&p.model, &dev);
        let diff = reference
            .iter()
            .zip(&got)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        assert!(
            diff <= 2e-5 * scale,
            "{name}: max logit difference {diff} (scale {scale})"
        );
    }
}

#[test]
fn methods_are_deterministic_and_run_quantized() {
    let (model, calib, dev) = setup();
    let plan = Plan::named("W4A4", Some(Scheme::Nvfp4)).unwrap();
    for name in [
        "gptq",
        "gptq-static",
        "awq",
        "spinquant+gptq",
        "flatquant",
        "mrgptq",
        "4over6",
    ] {
        let m = Method::parse(name).unwrap();
        let a = prepare(&model, &plan, &m, &calib, &fast_opts()).unwrap();
        let b = prepare(&model, &plan, &m, &calib, &fast_opts()).unwrap();
        assert_eq!(a.model.weights, b.model.weights, "{name}");
        for (x, y) in a.weights.iter().zip(&b.weights) {
            for (p, q) in x.iter().zip(y) {
                assert_eq!(
                    p.as_ref().map(|w| &w.deq),
                    q.as_ref().map(|w| &w.deq),
                    "{name}"
                );
            }
        }
        let mut engine =
            QuantEngine::new(&a.model, a.plan.clone(), mxsim::model::GemmBackend::Fast).unwrap();
        for (l, ws) in a.weights.iter().enumerate() {
            for which in Linear::ALL {
                if let Some(w) = &ws[which.index()] {
                    engine.set_weight(l, which, w.clone()).unwrap();
                }
            }
        }
        let mut cache = KvCache::new(&a.model.config);
        let lg = forward(
            &a.model.config,
            &a.model.weights,
            &engine,
            &dev[0],
            &mut cache,
            None,
        )
        .unwrap();
        assert!(lg.iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn gptq_lowers_layer_error_on_the_model() {
    // GPTQ's pre-quantized weights have a lower calibration output error than RTN's for every
    // linear layer of the model (the layer-local objective it optimises).
    let (model, calib, _) = setup();
    let plan = Plan::named("W4A16", Some(Scheme::Mxfp4)).unwrap();
    let p = prepare(
        &model,
        &plan,
        &Method::parse("gptq").unwrap(),
        &calib,
        &fast_opts(),
    )
    .unwrap();
    let acts = mxsim::ptq::methods::collect_activations(&model, &calib, 1024).unwrap();
    let wcfg = plan.weights[0].clone().unwrap();
    for (l, al) in acts.iter().enumerate() {
        for which in Linear::ALL {
            let w = mxsim::ptq::methods::weight_matrix(&model, l, which);
            let x = &al[which.index()];
            let rtn = mxsim::ptq::fake_quant(&w, &wcfg).unwrap();
            let g = p.weights[l][which.index()].as_ref().unwrap();
            let gq = mxsim::ptq::Matrix::from_f32(w.rows, w.cols, &g.deq).unwrap();
            let (er, eg) = (
                mxsim::ptq::quant::weight_output_error(x, &w, &rtn),
                mxsim::ptq::quant::weight_output_error(x, &w, &gq),
            );
            assert!(eg < er, "layer {l} {which:?}: gptq {eg} vs rtn {er}");
        }
    }
}

#[test]
fn bad_methods_are_rejected() {
    for bad in ["", "gptqq", "gptq+gptq-static", "quarot+spinquant", "rtn+"] {
        assert!(Method::parse(bad).is_err(), "{bad}");
    }
    assert!(Method::parse("quarot+gptq").is_ok());
}
