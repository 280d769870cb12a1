//! PTQ methods on whole models: each method turns a model and a quantization plan into a
//! transformed model (float weights, folded norms, online input transforms) plus pre-quantized
//! weights that replace the plan's round-to-nearest weights, calibrated on token sequences.
//!
//! The transformed float model computes the same function as the original up to float32
//! rounding (rotations, smoothing and affine transforms are exact without quantization); every
//! lossy step (clipping, GPTQ's error feedback) lives in the pre-quantized weights only.
//!
//! Calibration activations of the transforms (SmoothQuant, AWQ, FlatQuant) are those of the
//! transformed float model: the inputs of every linear layer on the calibration tokens, after
//! the layer's online transform. GPTQ calibrates sequentially by default: block by block, on
//! the inputs of the model quantized so far. SpinQuant's rotation is optimised against the
//! block-output error of the whole quantized model.

use super::awq::{awq_with_act, AwqConfig};
use super::flat::{learn_flat, FlatConfig};
use super::gptq::{gptq, hessian, GptqConfig, ScalePolicy};
use super::hadamard::Rotation;
use super::linalg::Matrix;
use super::quant::{fake_quant_clipped, QuantSpec};
use super::smooth::smoothquant_scales;
use super::spin::{learn_rotation_objective, CayleyConfig};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::model::forward::{block, LayerTrace, Rope};
use crate::model::{
    forward, Engine, GemmBackend, KvCache, Linear, Model, OnlineTransform, Plan, QuantEngine,
    QuantWeight, Reference, Trace,
};
use crate::mx::{quantize_f64, MxConfig, ScaleRule, Scheme};
use rayon::prelude::*;

/// A transform step of a method (applied in the order given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// SmoothQuant, alpha migration folded into the preceding RMSNorm.
    SmoothQuant,
    /// AWQ scales (folded into the preceding RMSNorm / up projection); with the RTN quantizer
    /// also AWQ's clipping search.
    Awq,
    /// QuaRot: fold norms, random Hadamard on the residual stream, online Hadamard before
    /// `w2` and before `wo`.
    QuaRot,
    /// SpinQuant-style: as QuaRot with the residual rotation learned by Cayley SGD.
    SpinQuant,
    /// FlatQuant-style learned affine transform per linear group, with learned weight
    /// clipping.
    FlatQuant,
    /// Block-diagonal Hadamard of the weight's MX block size on every linear's input (online).
    BlockHadamard,
}

/// How weights are finally quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantizer {
    /// Round to nearest (the plan's own weight quantization).
    Rtn,
    /// GPTQ with the given scale policy.
    Gptq(ScalePolicy),
}

/// A model-level method: transforms, then a weight quantizer, with optional scale-rule
/// overrides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Method {
    /// The name it was parsed from.
    pub name: String,
    /// Transform steps, in order.
    pub transforms: Vec<Transform>,
    /// The weight quantizer.
    pub quantizer: Quantizer,
    /// Scale rule for every quantized role (`prescale`, `mse`, `4over6` methods).
    pub rule: Option<ScaleRule>,
    /// Scale rule for the weights only (MR-GPTQ's 3/4 pre-scale).
    pub weight_rule: Option<ScaleRule>,
    /// GPTQ processes columns by decreasing Hessian diagonal (act-order).
    pub act_order: bool,
}

/// Every method name [`Method::parse`] accepts (components can be joined with `+`).
pub const METHOD_NAMES: &[&str] = &[
    "rtn",
    "gptq",
    "gptq-static",
    "gptq-dynamic",
    "gptq-actorder",
    "gptq-static-actorder",
    "actorder",
    "awq",
    "smoothquant",
    "quarot",
    "spinquant",
    "flatquant",
    "mrgptq",
    "hadamard-block",
    "prescale",
    "mse",
    "4over6",
];

impl Method {
    /// Parse a method: one of [`METHOD_NAMES`] or several joined with `+` (for example
    /// `quarot+gptq`, `smoothquant+gptq-static`, `quarot+prescale`). `gptq` is GPTQ with dynamic
    /// scales; `mrgptq` is `hadamard-block` + static-scale GPTQ + the 3/4 pre-scale on weights
    /// (kept rule for NVFP4). `gptq-actorder` and `gptq-static-actorder` are GPTQ with
    /// act-order (columns by decreasing Hessian diagonal); `actorder` adds act-order to the
    /// GPTQ quantizer of a combination (`mrgptq+actorder`, `quarot+gptq+actorder`).
    pub fn parse(s: &str) -> Result<Self> {
        let mut m = Method {
            name: s.to_string(),
            transforms: Vec::new(),
            quantizer: Quantizer::Rtn,
            rule: None,
            weight_rule: None,
            act_order: false,
        };
        let bad = |p: &str| {
            Error::invalid(format!(
                "unknown PTQ method '{p}' in '{s}' (expected {} or a '+' combination)",
                METHOD_NAMES.join(", ")
            ))
        };
        if s.trim().is_empty() {
            return Err(bad(s));
        }
        let mut quantizers = 0;
        for part in s.split('+') {
            match part.trim().to_ascii_lowercase().as_str() {
                "rtn" => quantizers += 1,
                "gptq" | "gptq-dynamic" => {
                    m.quantizer = Quantizer::Gptq(ScalePolicy::Dynamic);
                    quantizers += 1;
                }
                "gptq-static" => {
                    m.quantizer = Quantizer::Gptq(ScalePolicy::Static);
                    quantizers += 1;
                }
                "gptq-actorder" | "gptq-dynamic-actorder" => {
                    m.quantizer = Quantizer::Gptq(ScalePolicy::Dynamic);
                    m.act_order = true;
                    quantizers += 1;
                }
                "gptq-static-actorder" => {
                    m.quantizer = Quantizer::Gptq(ScalePolicy::Static);
                    m.act_order = true;
                    quantizers += 1;
                }
                "actorder" | "act-order" => m.act_order = true,
                "awq" => m.transforms.push(Transform::Awq),
                "smoothquant" | "sq" => m.transforms.push(Transform::SmoothQuant),
                "quarot" => m.transforms.push(Transform::QuaRot),
                "spinquant" => m.transforms.push(Transform::SpinQuant),
                "flatquant" => m.transforms.push(Transform::FlatQuant),
                "hadamard-block" => m.transforms.push(Transform::BlockHadamard),
                "mrgptq" | "mr-gptq" => {
                    m.transforms.push(Transform::BlockHadamard);
                    m.quantizer = Quantizer::Gptq(ScalePolicy::Static);
                    m.weight_rule = Some(ScaleRule::Prescale(0.75));
                    quantizers += 1;
                }
                "prescale" => m.rule = Some(ScaleRule::Prescale(0.75)),
                "mse" => m.rule = Some(ScaleRule::Mse { alphas: 0 }),
                "4over6" => m.rule = Some(ScaleRule::FourOverSix),
                p => return Err(bad(p)),
            }
        }
        if quantizers > 1 {
            return Err(Error::invalid(format!(
                "method '{s}' names more than one weight quantizer"
            )));
        }
        if m.act_order && !matches!(m.quantizer, Quantizer::Gptq(_)) {
            return Err(Error::invalid(format!(
                "method '{s}': act-order needs a GPTQ quantizer (gptq, gptq-static, mrgptq)"
            )));
        }
        let rot = m
            .transforms
            .iter()
            .filter(|t| matches!(t, Transform::QuaRot | Transform::SpinQuant))
            .count();
        if rot > 1 {
            return Err(Error::invalid(format!(
                "method '{s}' names more than one residual rotation"
            )));
        }
        Ok(m)
    }
}

/// Parameters of the model-level methods.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PtqOptions {
    /// Calibration tokens used for Hessians and statistics.
    pub calib_tokens: usize,
    /// Calibration tokens used to train learned transforms (a prefix of the above).
    pub learn_tokens: usize,
    /// Seed of the random Hadamard signs.
    pub seed: u64,
    /// SmoothQuant alpha.
    pub smooth_alpha: f64,
    /// GPTQ parameters (the policy comes from the method).
    pub gptq: GptqConfig,
    /// AWQ parameters.
    pub awq: AwqConfig,
    /// Cayley SGD parameters.
    pub cayley: CayleyConfig,
    /// FlatQuant-style training parameters.
    pub flat: FlatConfig,
    /// GPTQ calibrates block by block on the partially quantized model (the reference
    /// implementation's sequential mode, the default); `false`: every layer on the inputs of
    /// the float model.
    pub gptq_sequential: bool,
}

impl Default for PtqOptions {
    fn default() -> Self {
        PtqOptions {
            calib_tokens: 4096,
            learn_tokens: 512,
            seed: 0,
            smooth_alpha: 0.5,
            gptq: GptqConfig::default(),
            awq: AwqConfig::default(),
            cayley: CayleyConfig {
                iters: 40,
                ..Default::default()
            },
            flat: FlatConfig {
                iters: 40,
                ..Default::default()
            },
            gptq_sequential: true,
        }
    }
}

/// A model prepared by a method: the transformed float model, the plan to run it with, and
/// pre-quantized weights (`None`: the plan's round-to-nearest).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Transformed model (same function as the original up to float32 rounding).
    pub model: Model,
    /// The plan (with the method's scale rules applied).
    pub plan: Plan,
    /// Pre-quantized weights per layer, indexed by [`Linear::index`].
    pub weights: Vec<[Option<QuantWeight>; 7]>,
    /// Activation clipping ratio per layer and linear (FlatQuant's learned clipping; 1: none),
    /// applied by the engine's activation quantizer ([`QuantEngine::set_act_clip`]).
    pub act_clip: Vec<[f64; 7]>,
    /// The residual-stream rotation `T` (`x -> T x`) of QuaRot/SpinQuant, if any.
    pub residual_rotation: Option<Matrix>,
}

/// The inputs of every linear layer of every block on the calibration tokens (after online
/// transforms), in f64: per layer, indexed by [`Linear::index`].
pub type Activations = Vec<[Matrix; 7]>;

fn dims(m: &Model, which: Linear) -> (usize, usize) {
    let c = &m.config;
    match which {
        Linear::Wq => (c.q_dim(), c.dim),
        Linear::Wk | Linear::Wv => (c.kv_dim(), c.dim),
        Linear::Wo => (c.dim, c.q_dim()),
        Linear::W1 | Linear::W3 => (c.hidden_dim, c.dim),
        Linear::W2 => (c.dim, c.hidden_dim),
    }
}

fn weight_mut(m: &mut Model, l: usize, which: Linear) -> &mut Vec<f32> {
    let lw = &mut m.weights.layers[l];
    match which {
        Linear::Wq => &mut lw.wq,
        Linear::Wk => &mut lw.wk,
        Linear::Wv => &mut lw.wv,
        Linear::Wo => &mut lw.wo,
        Linear::W1 => &mut lw.w1,
        Linear::W2 => &mut lw.w2,
        Linear::W3 => &mut lw.w3,
    }
}

/// A linear layer's weight as an f64 matrix.
pub fn weight_matrix(m: &Model, l: usize, which: Linear) -> Matrix {
    let (r, c) = dims(m, which);
    Matrix::from_f32(r, c, m.weights.layers[l].linear(which))
        .expect("weight shape validated at load")
}

fn set_weight(m: &mut Model, l: usize, which: Linear, w: &Matrix) {
    *weight_mut(m, l, which) = w.to_f32();
}

/// The first `max_tokens` tokens of `seqs` as whole sequences in order (the last one cut).
fn take_tokens(seqs: &[Vec<u32>], max_tokens: usize) -> Result<Vec<&[u32]>> {
    let mut take = Vec::new();
    let mut n = 0;
    for s in seqs {
        if n >= max_tokens {
            break;
        }
        let len = s.len().min(max_tokens - n);
        if len > 0 {
            take.push(&s[..len]);
        }
        n += len;
    }
    if n == 0 {
        return Err(Error::invalid("calibration text gave no tokens"));
    }
    Ok(take)
}

/// The input of linear `which` (after its online transforms) from block traces, stacked over
/// the sequences in order, in f64.
fn linear_input(model: &Model, l: usize, which: Linear, traces: &[&LayerTrace<f32>]) -> Matrix {
    let cfg = &model.config;
    type Field = fn(&LayerTrace<f32>) -> &Vec<f32>;
    let (get, width): (Field, usize) = match which {
        Linear::Wq | Linear::Wk | Linear::Wv => (|t| &t.xb, cfg.dim),
        Linear::Wo => (|t| &t.att, cfg.q_dim()),
        Linear::W1 | Linear::W3 => (|t| &t.xb2, cfg.dim),
        Linear::W2 => (|t| &t.g, cfg.hidden_dim),
    };
    let mut d = Vec::new();
    for tr in traces {
        d.extend(get(tr).iter().map(|&v| v as f64));
    }
    let mut x = Matrix::from_vec(d.len() / width, width, d).expect("trace widths");
    for t in &model.weights.layers[l].online[which.index()] {
        t.apply(&mut x.data, x.rows);
    }
    x
}

/// Collect calibration activations of `model` (with its online transforms) on `seqs`, at most
/// `max_tokens` tokens (whole sequences, in order).
pub fn collect_activations(
    model: &Model,
    seqs: &[Vec<u32>],
    max_tokens: usize,
) -> Result<Activations> {
    collect_activations_with(model, None, seqs, max_tokens)
}

/// [`collect_activations`] through a quantized engine (`None`: the float reference): the
/// inputs every linear receives in that model, before its activation quantization.
pub fn collect_activations_with(
    model: &Model,
    engine: Option<&QuantEngine>,
    seqs: &[Vec<u32>],
    max_tokens: usize,
) -> Result<Activations> {
    let cfg = &model.config;
    let traces = run_traced(model, engine, &take_tokens(seqs, max_tokens)?)?;
    let mut acts = Vec::with_capacity(cfg.n_layers);
    for l in 0..cfg.n_layers {
        let lt: Vec<&LayerTrace<f32>> = traces.iter().map(|t| &t.layers[l]).collect();
        let mut per: [Matrix; 7] = std::array::from_fn(|_| Matrix::zeros(0, 0));
        for which in Linear::ALL {
            per[which.index()] = linear_input(model, l, which, &lt);
        }
        acts.push(per);
    }
    Ok(acts)
}

/// Traced forward passes of every sequence (in parallel, results in order).
fn run_traced(
    model: &Model,
    engine: Option<&QuantEngine>,
    seqs: &[&[u32]],
) -> Result<Vec<Trace<f32>>> {
    let cfg = &model.config;
    seqs.par_iter()
        .map(|s| {
            let mut tr = Trace::default();
            let mut cache = KvCache::new(cfg);
            match engine {
                Some(e) => forward(cfg, &model.weights, e, s, &mut cache, Some(&mut tr))?,
                None => forward(
                    cfg,
                    &model.weights,
                    &Reference,
                    s,
                    &mut cache,
                    Some(&mut tr),
                )?,
            };
            Ok(tr)
        })
        .collect()
}

/// The output of every block (the residual stream leaving it) on the first `max_tokens`
/// tokens of `seqs`, per block as one `tokens x dim` matrix, through a quantized engine or
/// (`None`) the float reference.
pub fn block_outputs(
    model: &Model,
    engine: Option<&QuantEngine>,
    seqs: &[Vec<u32>],
    max_tokens: usize,
) -> Result<Vec<Matrix>> {
    block_outputs_of(model, engine, &take_tokens(seqs, max_tokens)?)
}

fn block_outputs_of(
    model: &Model,
    engine: Option<&QuantEngine>,
    seqs: &[&[u32]],
) -> Result<Vec<Matrix>> {
    let d = model.config.dim;
    let traces = run_traced(model, engine, seqs)?;
    (0..model.config.n_layers)
        .map(|l| {
            let mut v = Vec::new();
            for t in &traces {
                v.extend(t.layers[l].output.iter().map(|&x| x as f64));
            }
            Matrix::from_vec(v.len() / d, d, v)
        })
        .collect()
}

/// The block-output error SpinQuant's rotation minimises: for every block, the mean over
/// calibration tokens and residual channels of the squared difference between the block's
/// output in `reference` (the float model, outputs from [`block_outputs`]) and in `model`
/// quantized by `engine`, summed over blocks. `rotation` is the residual-stream rotation `T`
/// of `model` (`x -> T x`), undone before comparing (`None`: no rotation).
pub fn block_output_error(
    reference: &[Matrix],
    model: &Model,
    engine: &QuantEngine,
    rotation: Option<&Matrix>,
    seqs: &[Vec<u32>],
    max_tokens: usize,
) -> Result<f64> {
    let got = block_outputs(model, Some(engine), seqs, max_tokens)?;
    Ok(sum_block_mse(reference, &got, rotation))
}

fn sum_block_mse(reference: &[Matrix], got: &[Matrix], rotation: Option<&Matrix>) -> f64 {
    reference
        .iter()
        .zip(got)
        .map(|(r, g)| {
            // rows were rotated as x_row T^T; T orthogonal, so x_row = rotated_row T
            let g = match rotation {
                Some(t) => g.matmul(t),
                None => g.clone(),
            };
            r.sq_dist(&g) / (r.data.len().max(1)) as f64
        })
        .sum()
}

/// Row-major f64 weight transformed on its input axis by `t` (`x -> T x`): `W T^T`.
fn transform_input(w: &Matrix, t: &Matrix) -> Matrix {
    w.matmul_t(t)
}

/// Weight whose output is rotated by `t` (`y -> T y`): `T W`.
fn transform_output(w: &Matrix, t: &Matrix) -> Matrix {
    t.matmul(w)
}

/// Fold RMSNorm weights into the linears that read them (`W diag(g)`), set the norms to 1,
/// and untie the classifier.
pub fn fold_norms(m: &mut Model) {
    let n_layers = m.config.n_layers;
    for l in 0..n_layers {
        let an: Vec<f64> = m.weights.layers[l]
            .attn_norm
            .iter()
            .map(|&v| v as f64)
            .collect();
        let fnn: Vec<f64> = m.weights.layers[l]
            .ffn_norm
            .iter()
            .map(|&v| v as f64)
            .collect();
        for (which, g) in [
            (Linear::Wq, &an),
            (Linear::Wk, &an),
            (Linear::Wv, &an),
            (Linear::W1, &fnn),
            (Linear::W3, &fnn),
        ] {
            let mut w = weight_matrix(m, l, which);
            w.scale_cols(g);
            set_weight(m, l, which, &w);
        }
        m.weights.layers[l]
            .attn_norm
            .iter_mut()
            .for_each(|v| *v = 1.0);
        m.weights.layers[l]
            .ffn_norm
            .iter_mut()
            .for_each(|v| *v = 1.0);
    }
    let d = m.config.dim;
    let fnorm: Vec<f32> = m.weights.final_norm.clone();
    let mut head = m.weights.classifier().to_vec();
    for row in head.chunks_mut(d) {
        for (v, g) in row.iter_mut().zip(&fnorm) {
            *v = (*v as f64 * *g as f64) as f32;
        }
    }
    m.weights.lm_head = Some(head);
    m.config.tied_embeddings = false;
    m.weights.final_norm.iter_mut().for_each(|v| *v = 1.0);
}

/// Rotate the residual stream by the orthogonal `t` (`x -> T x`): embedding rows, every
/// reader's input axis, every writer's output axis. Norms must have been folded.
pub fn rotate_residual(m: &mut Model, t: &Matrix) {
    let d = m.config.dim;
    let rot_rows = |v: &mut Vec<f32>| {
        let mm = Matrix::from_f32(v.len() / d, d, v).expect("rows of dim");
        *v = transform_input(&mm, t).to_f32();
    };
    rot_rows(&mut m.weights.tok_emb);
    if let Some(h) = m.weights.lm_head.as_mut() {
        rot_rows(h);
    }
    for l in 0..m.config.n_layers {
        for which in [Linear::Wq, Linear::Wk, Linear::Wv, Linear::W1, Linear::W3] {
            let w = weight_matrix(m, l, which);
            set_weight(m, l, which, &transform_input(&w, t));
        }
        for which in [Linear::Wo, Linear::W2] {
            let w = weight_matrix(m, l, which);
            set_weight(m, l, which, &transform_output(&w, t));
        }
    }
}

/// Give linear `which` of layer `l` an online input transform `x -> T x` (composed after any
/// existing one) and transform its weight to match (`W T^T`).
fn add_online(m: &mut Model, l: usize, which: Linear, t: OnlineTransform) -> Result<()> {
    let w = weight_matrix(m, l, which);
    let dense = Matrix::from_vec(t.len(), t.len(), t.dense())?;
    set_weight(m, l, which, &transform_input(&w, &dense));
    m.weights.layers[l].online[which.index()].push(t);
    Ok(())
}

fn rotation_transform(r: &Rotation) -> OnlineTransform {
    OnlineTransform::Hadamard {
        blocks: r.blocks.clone(),
        signs: r.signs.clone(),
    }
}

fn spec_of(plan: &Plan, which: Linear) -> Option<QuantSpec> {
    plan.weights[which.index()].clone().map(|w| QuantSpec {
        weight: w,
        act: plan.activations[which.index()].clone(),
    })
}

/// Whether a scale rule may be used with a scheme (four-over-six needs FP4 elements).
fn rule_applies(rule: ScaleRule, s: Scheme) -> bool {
    !matches!(rule, ScaleRule::FourOverSix) || s.element() == Format::E2M1
}

/// The plan with a method's scale rules applied (roles where a rule does not apply keep
/// theirs).
pub fn method_plan(plan: &Plan, method: &Method) -> Plan {
    let mut p = plan.clone();
    let set = |c: &mut Option<MxConfig>, r: ScaleRule| {
        if let Some(c) = c {
            if rule_applies(r, c.scheme) {
                c.rule = r;
            }
        }
    };
    if let Some(r) = method.rule {
        for c in p.weights.iter_mut().chain(p.activations.iter_mut()) {
            set(c, r);
        }
        for c in [
            &mut p.kv_cache,
            &mut p.qk,
            &mut p.pv,
            &mut p.embedding,
            &mut p.lm_head_weights,
            &mut p.lm_head_activations,
        ] {
            set(c, r);
        }
    }
    if let Some(r) = method.weight_rule {
        for cfg in p.weights.iter_mut().flatten() {
            if cfg.scheme != Scheme::Nvfp4 {
                cfg.rule = r;
            }
        }
    }
    p
}

/// Prepare `model` for `plan` with `method`, calibrating on `calib` token sequences.
pub fn prepare(
    model: &Model,
    plan: &Plan,
    method: &Method,
    calib: &[Vec<u32>],
    opts: &PtqOptions,
) -> Result<Prepared> {
    let plan = method_plan(plan, method);
    let mut m = model.clone();
    let nl = m.config.n_layers;
    let mut pre: Vec<[Option<QuantWeight>; 7]> =
        (0..nl).map(|_| std::array::from_fn(|_| None)).collect();
    let mut act_clip = vec![[1.0f64; 7]; nl];
    let mut residual_rotation: Option<Matrix> = None;
    let uses_gptq = matches!(method.quantizer, Quantizer::Gptq(_));
    for (step, tr) in method.transforms.iter().enumerate() {
        // clipping results become pre-quantized weights only when nothing changes the weights
        // afterwards (no later transform, no GPTQ)
        let last_transform = step + 1 == method.transforms.len();
        let final_rtn = !uses_gptq && last_transform;
        let acts = collect_activations(&m, calib, opts.calib_tokens)?;
        match tr {
            Transform::SmoothQuant => {
                for (l, al) in acts.iter().enumerate() {
                    for (norm_is_attn, group) in [
                        (true, vec![Linear::Wq, Linear::Wk, Linear::Wv]),
                        (false, vec![Linear::W1, Linear::W3]),
                    ] {
                        let x = &al[group[0].index()];
                        let ws: Vec<Matrix> =
                            group.iter().map(|&w| weight_matrix(&m, l, w)).collect();
                        let s = smoothquant_scales(
                            x,
                            &ws.iter().collect::<Vec<_>>(),
                            opts.smooth_alpha,
                        );
                        apply_input_scaling(&mut m, l, &group, &s, norm_is_attn);
                    }
                }
            }
            Transform::Awq => awq_step(&mut m, &plan, &acts, opts, &mut pre, !final_rtn)?,
            Transform::QuaRot | Transform::SpinQuant => {
                fold_norms(&mut m);
                // QuaRot's online Hadamards before w2 and wo commute with the residual
                // rotation (they act on other axes of wo and w2), so they go in first
                add_online_hadamards(&mut m, opts.seed)?;
                let d = m.config.dim;
                let t = if *tr == Transform::QuaRot {
                    Rotation::hadamard(d, Some(opts.seed)).to_matrix()
                } else {
                    learn_residual_rotation(&m, &plan, calib, opts)?
                        .rotation
                        .t()
                };
                rotate_residual(&mut m, &t);
                residual_rotation = Some(match residual_rotation {
                    Some(prev) => t.matmul(&prev),
                    None => t,
                });
            }
            Transform::BlockHadamard => {
                for l in 0..nl {
                    for which in Linear::ALL {
                        let Some(wc) = &plan.weights[which.index()] else {
                            continue;
                        };
                        let b = 1usize << (usize::BITS - 1 - wc.block_size.max(1).leading_zeros());
                        let (_, k) = dims(&m, which);
                        add_online(
                            &mut m,
                            l,
                            which,
                            rotation_transform(&Rotation::block_hadamard(k, b, None)),
                        )?;
                    }
                }
            }
            Transform::FlatQuant => {
                let acts = collect_activations(&m, calib, opts.learn_tokens)?;
                let groups: [&[Linear]; 4] = [
                    &[Linear::Wq, Linear::Wk, Linear::Wv],
                    &[Linear::Wo],
                    &[Linear::W1, Linear::W3],
                    &[Linear::W2],
                ];
                let jobs: Vec<(usize, &[Linear])> = (0..nl)
                    .flat_map(|l| groups.iter().map(move |g| (l, *g)))
                    .collect();
                type FlatOut = Option<(OnlineTransform, Vec<Matrix>, f64, f64)>;
                let results: Vec<FlatOut> = jobs
                    .par_iter()
                    .map(|&(l, g)| {
                        let Some(spec) = spec_of(&plan, g[0]) else {
                            return Ok(None);
                        };
                        let x = &acts[l][g[0].index()];
                        let ws: Vec<Matrix> = g.iter().map(|&w| weight_matrix(&m, l, w)).collect();
                        let r = learn_flat(x, &ws.iter().collect::<Vec<_>>(), &spec, &opts.flat)?;
                        let p = r.transform.matrix();
                        let wts = ws
                            .iter()
                            .map(|w| r.transform.apply_weight(w))
                            .collect::<Result<Vec<_>>>()?;
                        // x -> x P as a column transform is x -> P^T x
                        let t = OnlineTransform::Dense {
                            n: p.rows,
                            m: p.t().data,
                        };
                        Ok(Some((t, wts, r.weight_clip, r.act_clip)))
                    })
                    .collect::<Result<_>>()?;
                for (&(l, g), r) in jobs.iter().zip(results) {
                    let Some((t, wts, clip, aclip)) = r else {
                        continue;
                    };
                    for (&which, wt) in g.iter().zip(&wts) {
                        set_weight(&mut m, l, which, wt);
                        m.weights.layers[l].online[which.index()].push(t.clone());
                        // the activation clip was chosen on these transformed activations:
                        // it holds while no later transform changes them
                        if last_transform && plan.activations[which.index()].is_some() {
                            act_clip[l][which.index()] = aclip;
                        }
                        if final_rtn && clip < 1.0 {
                            if let Some(wc) = &plan.weights[which.index()] {
                                let wt32 = weight_matrix(&m, l, which);
                                pre[l][which.index()] = Some(clipped_rtn(&wt32, wc, clip)?);
                            }
                        }
                    }
                }
            }
        }
    }
    if let Quantizer::Gptq(policy) = method.quantizer {
        let cfg = GptqConfig {
            policy,
            act_order: method.act_order || opts.gptq.act_order,
            ..opts.gptq
        };
        if opts.gptq_sequential {
            gptq_sequential(
                &m,
                &plan,
                calib,
                opts.calib_tokens,
                &cfg,
                &mut pre,
                &act_clip,
            )?;
        } else {
            let acts = collect_activations(&m, calib, opts.calib_tokens)?;
            let jobs: Vec<(usize, Linear)> = (0..nl)
                .flat_map(|l| Linear::ALL.into_iter().map(move |w| (l, w)))
                .collect();
            let out: Vec<Option<QuantWeight>> = jobs
                .par_iter()
                .map(|&(l, which)| {
                    let Some(wc) = &plan.weights[which.index()] else {
                        return Ok(None);
                    };
                    let w = weight_matrix(&m, l, which);
                    let q = gptq(&w, &hessian(&acts[l][which.index()]), wc, &cfg)?;
                    let deq = q.tensor.dequantize();
                    Ok(Some(QuantWeight { mx: q.tensor, deq }))
                })
                .collect::<Result<_>>()?;
            for (&(l, which), q) in jobs.iter().zip(out) {
                pre[l][which.index()] = q;
            }
        }
    }
    Ok(Prepared {
        model: m,
        plan,
        weights: pre,
        act_clip,
        residual_rotation,
    })
}

/// QuaRot's online Hadamards: before `w2` (hidden size) and before `wo` (across all heads),
/// random signs seeded per block.
fn add_online_hadamards(m: &mut Model, seed: u64) -> Result<()> {
    let (h, qd) = (m.config.hidden_dim, m.config.q_dim());
    for l in 0..m.config.n_layers {
        add_online(
            m,
            l,
            Linear::W2,
            rotation_transform(&Rotation::hadamard(h, Some(seed + 1 + l as u64))),
        )?;
        add_online(
            m,
            l,
            Linear::Wo,
            rotation_transform(&Rotation::hadamard(qd, Some(seed + 1001 + l as u64))),
        )?;
    }
    Ok(())
}

/// SpinQuant-style residual rotation for a norm-folded model `m` (with its online Hadamards):
/// Cayley steps on the block-output error ([`block_output_error`]) of the model rotated and
/// quantized by `plan` (round-to-nearest weights, activations as the plan says), on the first
/// `learn_tokens` calibration tokens. The search direction is the analytic gradient of the
/// layer-local surrogate (the summed output error of every linear reading the residual
/// stream); each step is accepted only if it lowers the block-output error (see
/// [`learn_rotation_objective`]). Returns `R` acting on rows (`X R`); the residual transform
/// is `T = R^T`.
fn learn_residual_rotation(
    m: &Model,
    plan: &Plan,
    calib: &[Vec<u32>],
    opts: &PtqOptions,
) -> Result<super::spin::SpinResult> {
    let nl = m.config.n_layers;
    let seqs = take_tokens(calib, opts.learn_tokens)?;
    let reference = block_outputs_of(m, None, &seqs)?;
    let acts = collect_activations(m, calib, opts.learn_tokens)?;
    let spec = spec_of(plan, Linear::Wq).unwrap_or(QuantSpec {
        weight: MxConfig::new(Scheme::Mxfp4),
        act: None,
    });
    let ws: Vec<[Matrix; 5]> = (0..nl)
        .map(|l| {
            [Linear::Wq, Linear::Wk, Linear::Wv, Linear::W1, Linear::W3]
                .map(|w| weight_matrix(m, l, w))
        })
        .collect();
    let mut groups = Vec::new();
    for l in 0..nl {
        groups.push((
            &acts[l][Linear::Wq.index()],
            vec![&ws[l][0], &ws[l][1], &ws[l][2]],
        ));
        groups.push((&acts[l][Linear::W1.index()], vec![&ws[l][3], &ws[l][4]]));
    }
    let objective = |r: &Matrix| -> Result<f64> {
        let t = r.t();
        let mut mr = m.clone();
        rotate_residual(&mut mr, &t);
        let engine = QuantEngine::new(&mr, plan.clone(), GemmBackend::Fast)?;
        let got = block_outputs_of(&mr, Some(&engine), &seqs)?;
        Ok(sum_block_mse(&reference, &got, Some(&t)))
    };
    let cfg = CayleyConfig {
        seed: opts.seed,
        ..opts.cayley
    };
    learn_rotation_objective(&groups, &spec, &cfg, &objective)
}

/// Sequential GPTQ calibration (the reference implementation's order): blocks in order, and
/// within a block the linear groups in the order the forward pass reaches them (`wq wk wv`,
/// `wo`, `w1 w3`, `w2`). Each group's Hessian comes from the calibration tokens run through the
/// model quantized as far as it is so far: earlier blocks and groups with their GPTQ weights,
/// the rest of the plan (activations, KV cache, attention operands) as the plan says, with the
/// activation clipping of `act_clip`. A group's input never depends on the groups after it,
/// so the not-yet-calibrated layers (round-to-nearest meanwhile) do not matter.
fn gptq_sequential(
    m: &Model,
    plan: &Plan,
    calib: &[Vec<u32>],
    max_tokens: usize,
    cfg: &GptqConfig,
    pre: &mut [[Option<QuantWeight>; 7]],
    act_clip: &[[f64; 7]],
) -> Result<()> {
    let mc = &m.config;
    let seqs = take_tokens(calib, max_tokens)?;
    let mut engine = engine_for(m, plan, pre.to_vec(), act_clip, GemmBackend::Fast)?;
    let d = mc.dim;
    // residual stream entering the current block, per sequence
    let mut xs: Vec<Vec<f32>> = {
        let emb = engine.embedding(&m.weights.tok_emb);
        seqs.iter()
            .map(|s| {
                let mut x = Vec::with_capacity(s.len() * d);
                for &tok in s.iter() {
                    let i = tok as usize;
                    if i >= mc.vocab_size {
                        return Err(Error::invalid(format!(
                            "token id {tok} is outside the vocabulary"
                        )));
                    }
                    x.extend_from_slice(&emb[i * d..(i + 1) * d]);
                }
                Ok(x)
            })
            .collect::<Result<_>>()?
    };
    let ropes: Vec<Rope<f32>> = seqs.iter().map(|s| Rope::new(mc, 0, s.len())).collect();
    let run_block = |engine: &QuantEngine, l: usize, xs: &[Vec<f32>], trace: bool| {
        xs.par_iter()
            .zip(&seqs)
            .zip(&ropes)
            .map(|((x, s), rope)| {
                let mut x = x.clone();
                let (mut kc, mut vc) = (Vec::new(), Vec::new());
                let mut lt = LayerTrace::default();
                block(
                    mc,
                    &m.weights.layers[l],
                    l,
                    engine,
                    &mut x,
                    s.len(),
                    rope,
                    0,
                    &mut kc,
                    &mut vc,
                    trace.then_some(&mut lt),
                )?;
                Ok((x, lt))
            })
            .collect::<Result<Vec<(Vec<f32>, LayerTrace<f32>)>>>()
    };
    let groups: [&[Linear]; 4] = [
        &[Linear::Wq, Linear::Wk, Linear::Wv],
        &[Linear::Wo],
        &[Linear::W1, Linear::W3],
        &[Linear::W2],
    ];
    #[allow(clippy::needless_range_loop)] // l indexes the model's blocks, pre and the engine
    for l in 0..mc.n_layers {
        for g in groups {
            let todo: Vec<Linear> = g
                .iter()
                .copied()
                .filter(|w| plan.weights[w.index()].is_some())
                .collect();
            if todo.is_empty() {
                continue;
            }
            let traced = run_block(&engine, l, &xs, true)?;
            let lts: Vec<&LayerTrace<f32>> = traced.iter().map(|(_, t)| t).collect();
            let out: Vec<QuantWeight> = todo
                .par_iter()
                .map(|&which| {
                    let wc = plan.weights[which.index()].as_ref().expect("filtered");
                    let x = linear_input(m, l, which, &lts);
                    let w = weight_matrix(m, l, which);
                    let q = gptq(&w, &hessian(&x), wc, cfg)?;
                    let deq = q.tensor.dequantize();
                    Ok(QuantWeight { mx: q.tensor, deq })
                })
                .collect::<Result<_>>()?;
            for (&which, q) in todo.iter().zip(out) {
                engine.set_weight(l, which, q.clone())?;
                pre[l][which.index()] = Some(q);
            }
        }
        if l + 1 < mc.n_layers {
            xs = run_block(&engine, l, &xs, false)?
                .into_iter()
                .map(|(x, _)| x)
                .collect();
        }
    }
    Ok(())
}

/// RTN of a weight clipped per block to `ratio` times the block maximum.
fn clipped_rtn(w: &Matrix, cfg: &MxConfig, ratio: f64) -> Result<QuantWeight> {
    let mut c = w.clone();
    let bs = cfg.block_size.max(1);
    for r in 0..c.rows {
        let cols = c.cols;
        for blk in c.data[r * cols..(r + 1) * cols].chunks_mut(bs) {
            let t = ratio * blk.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            blk.iter_mut().for_each(|v| *v = v.clamp(-t, t));
        }
    }
    let _ = fake_quant_clipped; // same clipping as the layer-level objective
    let mx = quantize_f64(&c.data, c.rows, c.cols, cfg)?;
    let deq = mx.dequantize();
    Ok(QuantWeight { mx, deq })
}

/// Divide a norm-fed group's input channels by `s`: the norm weight divided, the weights'
/// columns multiplied.
fn apply_input_scaling(m: &mut Model, l: usize, group: &[Linear], s: &[f64], attn: bool) {
    let norm = if attn {
        &mut m.weights.layers[l].attn_norm
    } else {
        &mut m.weights.layers[l].ffn_norm
    };
    for (g, f) in norm.iter_mut().zip(s) {
        *g = (*g as f64 / f) as f32;
    }
    for &which in group {
        let mut w = weight_matrix(m, l, which);
        w.scale_cols(s);
        set_weight(m, l, which, &w);
    }
}

/// AWQ on every block: scales for (attn_norm -> wq,wk,wv), (ffn_norm -> w1,w3), (w3 -> w2),
/// and (wv -> wo) when there is one value head per query head; then, unless another quantizer
/// follows (`scales_only`), the clipping search, whose result becomes the pre-quantized
/// weights (wo of a grouped-query model gets the clipping search alone).
fn awq_step(
    m: &mut Model,
    plan: &Plan,
    acts: &Activations,
    opts: &PtqOptions,
    pre: &mut [[Option<QuantWeight>; 7]],
    scales_only: bool,
) -> Result<()> {
    let nl = m.config.n_layers;
    let mha =
        m.config.n_kv_heads == m.config.n_heads && m.weights.layers.iter().all(|l| l.bv.is_none());
    for l in 0..nl {
        // consumers before producers: w2's scales are folded into w3's rows and wo's into wv's,
        // so w3 and wv must be searched (and clipped) after that
        let mut groups: Vec<Vec<Linear>> = vec![
            vec![Linear::W2],
            vec![Linear::Wo],
            vec![Linear::W1, Linear::W3],
            vec![Linear::Wq, Linear::Wk, Linear::Wv],
        ];
        for g in groups.drain(..) {
            let Some(wc) = plan.weights[g[0].index()].clone() else {
                continue;
            };
            let x = &acts[l][g[0].index()];
            let ws: Vec<Matrix> = g.iter().map(|&w| weight_matrix(m, l, w)).collect();
            let cat = concat_rows(&ws);
            let scalable = g[0] != Linear::Wo || mha;
            let cfg = AwqConfig {
                grid: if scalable { opts.awq.grid } else { 1 },
                clip_grid: if scales_only { 0 } else { opts.awq.clip_grid },
                ..opts.awq
            };
            let act = plan.activations[g[0].index()].as_ref();
            let r = awq_with_act(&cat, x, &wc, act, &cfg)?;
            let s = r.scales.clone();
            // fold 1/s into the producer of the group's input
            match g[0] {
                _ if !scalable => {}
                Linear::Wq => apply_input_scaling(m, l, &g, &s, true),
                Linear::W1 => apply_input_scaling(m, l, &g, &s, false),
                Linear::W2 | Linear::Wo => {
                    let producer = if g[0] == Linear::W2 {
                        Linear::W3
                    } else {
                        Linear::Wv
                    };
                    let mut p = weight_matrix(m, l, producer);
                    for (r_, f) in s.iter().enumerate() {
                        for c in 0..p.cols {
                            *p.at_mut(r_, c) /= f;
                        }
                    }
                    set_weight(m, l, producer, &p);
                    let mut w = weight_matrix(m, l, g[0]);
                    w.scale_cols(&s);
                    set_weight(m, l, g[0], &w);
                }
                _ => unreachable!("groups start with wq, w1, w2 or wo"),
            }
            if !scales_only {
                let mut row0 = 0;
                for &which in &g {
                    let (rows, cols) = dims(m, which);
                    let part = Matrix::from_vec(
                        rows,
                        cols,
                        r.clipped_weight.data[row0 * cols..(row0 + rows) * cols].to_vec(),
                    )?;
                    row0 += rows;
                    let mx = quantize_f64(&part.data, rows, cols, &wc)?;
                    let deq = mx.dequantize();
                    pre[l][which.index()] = Some(QuantWeight { mx, deq });
                }
            }
        }
    }
    Ok(())
}

fn concat_rows(ws: &[Matrix]) -> Matrix {
    let cols = ws[0].cols;
    let mut d = Vec::new();
    for w in ws {
        d.extend_from_slice(&w.data);
    }
    Matrix::from_vec(d.len() / cols, cols, d).expect("same widths")
}

/// Build the quantized engine of a prepared model (its plan, the method's pre-quantized
/// weights) and return it with the transformed model and plan.
pub fn build_engine(
    p: Prepared,
    backend: crate::model::GemmBackend,
) -> Result<(Model, Plan, crate::model::QuantEngine)> {
    let engine = engine_for(&p.model, &p.plan, p.weights, &p.act_clip, backend)?;
    Ok((p.model, p.plan, engine))
}

/// The quantized engine of `model` under `plan` with pre-quantized weights (replacing the
/// plan's RTN where given) and activation clipping ratios (below 1 only).
pub fn engine_for(
    model: &Model,
    plan: &Plan,
    weights: Vec<[Option<QuantWeight>; 7]>,
    act_clip: &[[f64; 7]],
    backend: crate::model::GemmBackend,
) -> Result<QuantEngine> {
    let mut engine = QuantEngine::new(model, plan.clone(), backend)?;
    for (l, mut ws) in weights.into_iter().enumerate() {
        for which in Linear::ALL {
            if let Some(w) = ws[which.index()].take() {
                engine.set_weight(l, which, w)?;
            }
        }
    }
    for (l, cs) in act_clip.iter().enumerate() {
        for which in Linear::ALL {
            let c = cs[which.index()];
            if c < 1.0 && plan.activations[which.index()].is_some() {
                engine.set_act_clip(l, which, c as f32)?;
            }
        }
    }
    Ok(engine)
}
