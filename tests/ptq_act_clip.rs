//! FlatQuant-style learned activation clipping: the clip chosen on the layer-local objective
//! never increases it; the model's activation quantizer applies it (fast path and datapath
//! path alike, checked against the layer-level clipped quantizer); ratio 1 is the unclipped
//! quantizer bit for bit; FlatQuant's learned ratios reach the engine.

mod common;

use mxsim::model::{
    forward, sequences, Engine, GemmBackend, KvCache, Linear, Model, Plan, Protocol, QuantEngine,
    Site, Tokenizer,
};
use mxsim::mx::{MxConfig, Scheme};
use mxsim::ptq::methods::{build_engine, prepare, Method, PtqOptions};
use mxsim::ptq::quant::{fake_quant_clipped, group_loss, QuantSpec};
use mxsim::ptq::{learn_flat, FlatConfig, Matrix};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("MXSIM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models"));
    for f in ["stories260K.bin", "tok512.bin", "tinystories_calib.txt"] {
        assert!(
            dir.join(f).is_file(),
            "shared model file {} is missing",
            dir.join(f).display()
        );
    }
    dir
}

fn model() -> Model {
    Model::load(&models_dir().join("stories260K.bin")).unwrap()
}

fn calib(model: &Model, max: usize) -> Vec<Vec<u32>> {
    let d = models_dir();
    let tok = mxsim::model::Llama2cTokenizer::load(&d.join("tok512.bin"), Some(512)).unwrap();
    let text = std::fs::read_to_string(d.join("tinystories_calib.txt")).unwrap();
    sequences(
        &tok as &dyn Tokenizer,
        model.config.bos_id,
        &text,
        Protocol::Paragraphs { max_len: 256 },
        Some(max),
    )
    .unwrap()
}

fn logits(m: &Model, e: &QuantEngine, seq: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(&m.config);
    forward(&m.config, &m.weights, e, seq, &mut cache, None).unwrap()
}

/// The learned activation clip (chosen after the weight clip) never increases the objective
/// it was chosen on, on synthetic layers with outlier channels under 4-bit activations.
#[test]
fn learned_act_clip_does_not_increase_the_layer_objective() {
    for (seed, scheme) in (1..=3).flat_map(|s| [(s, Scheme::Mxfp4), (s, Scheme::Nvfp4)]) {
        let (x, w) = common::layer(256, 96, 64, 10.0, seed);
        let spec = QuantSpec {
            weight: MxConfig::new(scheme),
            act: Some(MxConfig::new(scheme)),
        };
        let cfg = FlatConfig {
            iters: 10,
            ..Default::default()
        };
        let r = learn_flat(&x, &[&w], &spec, &cfg).unwrap();
        let y = [x.matmul_t(&w)];
        let xt = r.transform.apply_act(&x);
        let wt = [r.transform.apply_weight(&w).unwrap()];
        let with = group_loss(&y, &xt, &wt, &spec, (r.act_clip, r.weight_clip))
            .unwrap()
            .0;
        let without = group_loss(&y, &xt, &wt, &spec, (1.0, r.weight_clip))
            .unwrap()
            .0;
        assert!(with <= without, "{scheme} seed {seed}: {with} > {without}");
        assert!((0.7..=1.0).contains(&r.act_clip));
    }
}

/// A layer where activation clipping must pay off: every block of every token holds one
/// spike 40 times the other values on a channel the weight ignores, so clipping the spike
/// costs nothing and the lower block scale refines every other value. The search picks a
/// ratio below 1 and lowers the objective by it (transform training off, so the clip alone
/// acts).
#[test]
fn learned_act_clip_is_chosen_when_it_pays() {
    let (tokens, n, out) = (128, 64, 32);
    let mut x = common::randn(tokens, n, 1.0, 11);
    let mut w = common::randn(out, n, 0.125, 12);
    for spike in [3, 35] {
        for t in 0..tokens {
            *x.at_mut(t, spike) = if t % 2 == 0 { 40.0 } else { -40.0 };
        }
        for o in 0..out {
            *w.at_mut(o, spike) = 0.0;
        }
    }
    for scheme in [Scheme::Mxfp4, Scheme::Nvfp4] {
        let spec = QuantSpec {
            weight: MxConfig::new(scheme),
            act: Some(MxConfig::new(scheme)),
        };
        let cfg = FlatConfig {
            iters: 0,
            ..Default::default()
        };
        let r = learn_flat(&x, &[&w], &spec, &cfg).unwrap();
        let y = [x.matmul_t(&w)];
        let without = group_loss(
            &y,
            &x,
            std::slice::from_ref(&w),
            &spec,
            (1.0, r.weight_clip),
        )
        .unwrap()
        .0;
        assert!(r.act_clip < 1.0, "{scheme}: act clip {}", r.act_clip);
        assert!(r.loss < without, "{scheme}: {} vs {without}", r.loss);
    }
}

/// Ratio 1 is the plain quantizer bit for bit; a ratio below 1 changes the logits.
#[test]
fn act_clip_one_is_the_unclipped_quantizer() {
    let m = model();
    let seq = &calib(&m, 200)[0];
    let plan = Plan::named("W4A4", Some(Scheme::Mxfp4)).unwrap();
    let plain = QuantEngine::new(&m, plan.clone(), GemmBackend::Fast).unwrap();
    let mut one = QuantEngine::new(&m, plan.clone(), GemmBackend::Fast).unwrap();
    let mut low = QuantEngine::new(&m, plan.clone(), GemmBackend::Fast).unwrap();
    for l in 0..m.config.n_layers {
        for which in Linear::ALL {
            one.set_act_clip(l, which, 1.0).unwrap();
            low.set_act_clip(l, which, 0.8).unwrap();
        }
    }
    let base = logits(&m, &plain, seq);
    assert_eq!(base, logits(&m, &one, seq));
    assert_ne!(base, logits(&m, &low, seq));
    // bad ratios and unquantized activations are rejected
    assert!(one.set_act_clip(0, Linear::Wq, 0.0).is_err());
    assert!(one.set_act_clip(0, Linear::Wq, 1.5).is_err());
    assert!(one.set_act_clip(0, Linear::Wq, f32::NAN).is_err());
    assert!(one.set_act_clip(99, Linear::Wq, 0.9).is_err());
    let w16 = Plan::named("W4A16", Some(Scheme::Mxfp4)).unwrap();
    let mut e16 = QuantEngine::new(&m, w16, GemmBackend::Fast).unwrap();
    assert!(e16.set_act_clip(0, Linear::Wq, 0.9).is_err());
}

/// The engine's clipped activation quantizer equals the layer-level one
/// (`fake_quant_clipped`, f64) on a linear product, for the fast path and for a datapath
/// (the ideal GEMM, which receives the quantized tensors), for MXFP4 and NVFP4 blocks.
#[test]
fn engine_clips_activations_like_the_layer_objective() {
    let m = model();
    let (k, n) = (m.config.dim, m.config.q_dim());
    let rows = 16;
    // activations with an outlier channel, exactly representable in f32
    let mut x = common::randn(rows, k, 1.0, 7);
    for r in 0..rows {
        *x.at_mut(r, 5) *= 12.0;
    }
    let x = Matrix::from_f32(rows, k, &x.to_f32()).unwrap();
    let x32 = x.to_f32();
    for scheme in [Scheme::Mxfp4, Scheme::Nvfp4] {
        let plan = Plan::named("W4A4", Some(scheme)).unwrap();
        let acfg = plan.activations[Linear::Wq.index()].clone().unwrap();
        for backend in [GemmBackend::Fast, GemmBackend::ideal()] {
            for ratio in [0.75f32, 0.9] {
                let mut e = QuantEngine::new(&m, plan.clone(), backend.clone()).unwrap();
                e.set_act_clip(0, Linear::Wq, ratio).unwrap();
                let wq = e.weight(0, Linear::Wq).unwrap();
                let wdeq = Matrix::from_f32(n, k, &wq.deq).unwrap();
                let got = e
                    .linear(
                        Site::Layer(0, Linear::Wq),
                        &x32,
                        rows,
                        &m.weights.layers[0].wq,
                        k,
                        n,
                    )
                    .unwrap();
                let want = fake_quant_clipped(&x, &acfg, ratio as f64)
                    .unwrap()
                    .matmul_t(&wdeq);
                let unclipped = fake_quant_clipped(&x, &acfg, 1.0).unwrap().matmul_t(&wdeq);
                let scale = want.data.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                let diff = want
                    .data
                    .iter()
                    .zip(&got)
                    .fold(0.0f64, |a, (w, g)| a.max((w - *g as f64).abs()));
                assert!(
                    diff <= 1e-5 * scale,
                    "{scheme} {} ratio {ratio}: diff {diff} (scale {scale})",
                    backend.label()
                );
                // and the clip really changed the product
                assert!(unclipped.max_abs_diff(&want) > 1e3 * diff.max(1e-9 * scale));
            }
        }
    }
}

/// FlatQuant's learned activation clipping ratios (one per linear, in range) reach the
/// engine's activation quantizer.
#[test]
fn flatquant_act_clips_reach_the_engine() {
    let m = model();
    let seqs = calib(&m, 512);
    let plan = Plan::named("W4A4", Some(Scheme::Nvfp4)).unwrap();
    let mut opts = PtqOptions {
        calib_tokens: 512,
        learn_tokens: 256,
        ..Default::default()
    };
    opts.flat.iters = 4;
    let p = prepare(
        &m,
        &plan,
        &Method::parse("flatquant").unwrap(),
        &seqs,
        &opts,
    )
    .unwrap();
    let clips = p.act_clip.clone();
    let (_, _, e) = build_engine(p, GemmBackend::Fast).unwrap();
    for (l, cs) in clips.iter().enumerate() {
        for which in Linear::ALL {
            let c = cs[which.index()];
            assert!((0.7..=1.0).contains(&c));
            assert_eq!(e.act_clip(l, which), c as f32, "layer {l} {which:?}");
        }
    }
}
