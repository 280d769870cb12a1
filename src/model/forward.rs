//! The Llama forward pass, generic over the float type (f32 or f64) and over an [`Engine`]
//! that performs every matrix product (so the same code runs the floating-point reference
//! and the quantized model).
//!
//! Per block (pre-norm): `xb = rmsnorm(x) * g`; `q, k, v = xb Wq^T (+bq), xb Wk^T (+bk),
//! xb Wv^T (+bv)`; RoPE on interleaved pairs `(2i, 2i+1)` of each head with frequency
//! `theta^(-2i/head_dim)`; keys and values appended to the cache; causal softmax attention
//! with `n_heads / n_kv_heads` query heads per key/value head, scores scaled by
//! `1/sqrt(head_dim)`; `x += att Wo^T`; `xb = rmsnorm(x) * g2`;
//! `x += (silu(xb W1^T) * (xb W3^T)) W2^T`. Finally `logits = rmsnorm(x) * g_f  W_cls^T`.
//! RMSNorm is `x / sqrt(mean(x^2) + eps)` as llama2.c computes it (`1/sqrt` times `x`).
//!
//! A call processes `t` tokens at once (matrix-matrix products over the whole chunk: the
//! prefill) after the `cache.len()` positions already in the cache; generation calls it with
//! one token at a time.

use super::config::{Linear, ModelConfig};
use super::float::Float;
use super::weights::{LayerWeights, Weights};
use crate::error::{Error, Result};

/// Which matrix product a call of [`Engine::linear`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// A linear layer of block `layer`.
    Layer(usize, Linear),
    /// The classifier.
    LmHead,
}

/// The matrix products of a forward pass. The reference engine multiplies in the float
/// type; quantized engines quantize operands first and may run a bit-exact datapath.
pub trait Engine<T: Float>: Sync {
    /// `x [rows x k]` times `w^T` where `w` is the layer's `n x k` weight: returns
    /// `rows x n`.
    fn linear(
        &self,
        site: Site,
        x: &[T],
        rows: usize,
        w: &[T],
        k: usize,
        n: usize,
    ) -> Result<Vec<T>>;
    /// Several linear layers of block `layer` on the same input `x [rows x k]` (`wq wk wv`,
    /// or `w1 w3`): `(which, weight, n)` each; returns one output per entry. The default
    /// calls [`Engine::linear`] for each; a quantized engine quantizes `x` once.
    fn linear_multi(
        &self,
        layer: usize,
        x: &[T],
        rows: usize,
        k: usize,
        ws: &[(Linear, &[T], usize)],
    ) -> Result<Vec<Vec<T>>> {
        ws.iter()
            .map(|&(which, w, n)| self.linear(Site::Layer(layer, which), x, rows, w, k, n))
            .collect()
    }
    /// Attention scores before scaling: `q [t x hd]` times `k^T` (`k` is `s x hd`):
    /// returns `t x s`.
    fn qk(&self, layer: usize, q: &[T], t: usize, k: &[T], s: usize, hd: usize) -> Result<Vec<T>>;
    /// Attention output: probabilities `p [t x s]` times `V`, with `V` given transposed as
    /// `vt [hd x s]`: returns `t x hd`.
    fn pv(&self, layer: usize, p: &[T], t: usize, vt: &[T], hd: usize, s: usize) -> Result<Vec<T>>;
    /// Called on new key and value rows (`rows x width`, all heads of a position in one
    /// row) before they enter the cache: a quantized KV cache rounds them here.
    fn store_kv(&self, _layer: usize, _kv: &mut [T], _rows: usize, _width: usize) -> Result<()> {
        Ok(())
    }
    /// The token-embedding table to read from (a plan may quantize it).
    fn embedding<'a>(&'a self, table: &'a [T]) -> &'a [T] {
        table
    }
}

/// The floating-point reference: every product is a plain GEMM in the float type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference;

impl<T: Float> Engine<T> for Reference {
    fn linear(&self, _: Site, x: &[T], rows: usize, w: &[T], k: usize, n: usize) -> Result<Vec<T>> {
        let mut y = vec![T::ZERO; rows * n];
        T::gemm_nt(rows, k, n, x, w, &mut y);
        Ok(y)
    }
    fn qk(&self, _: usize, q: &[T], t: usize, k: &[T], s: usize, hd: usize) -> Result<Vec<T>> {
        let mut y = vec![T::ZERO; t * s];
        T::gemm_nt(t, hd, s, q, k, &mut y);
        Ok(y)
    }
    fn pv(&self, _: usize, p: &[T], t: usize, vt: &[T], hd: usize, s: usize) -> Result<Vec<T>> {
        let mut y = vec![T::ZERO; t * hd];
        T::gemm_nt(t, s, hd, p, vt, &mut y);
        Ok(y)
    }
}

/// Keys and values of the positions processed so far, per layer (`len x kv_dim` each).
#[derive(Debug, Clone, Default)]
pub struct KvCache<T> {
    /// Keys (after RoPE) per layer.
    pub k: Vec<Vec<T>>,
    /// Values per layer.
    pub v: Vec<Vec<T>>,
    /// Number of positions held.
    pub len: usize,
}

impl<T: Float> KvCache<T> {
    /// An empty cache for a model.
    pub fn new(cfg: &ModelConfig) -> Self {
        KvCache {
            k: vec![Vec::new(); cfg.n_layers],
            v: vec![Vec::new(); cfg.n_layers],
            len: 0,
        }
    }
}

/// Intermediate tensors of one block (all `t x width`, row-major), recorded for error
/// analysis.
#[derive(Debug, Clone, Default)]
pub struct LayerTrace<T> {
    /// Residual stream entering the block.
    pub input: Vec<T>,
    /// Normalized input of the attention projections.
    pub xb: Vec<T>,
    /// Output of `wq` (bias included, before RoPE).
    pub q: Vec<T>,
    /// Output of `wk` (bias included, before RoPE).
    pub k: Vec<T>,
    /// Output of `wv`.
    pub v: Vec<T>,
    /// Queries after RoPE.
    pub q_rot: Vec<T>,
    /// Keys after RoPE.
    pub k_rot: Vec<T>,
    /// Attention output (input of `wo`).
    pub att: Vec<T>,
    /// Output of `wo`.
    pub o: Vec<T>,
    /// Normalized input of the feed-forward network.
    pub xb2: Vec<T>,
    /// Output of `w1`.
    pub h1: Vec<T>,
    /// Output of `w3`.
    pub h3: Vec<T>,
    /// `silu(h1) * h3` (input of `w2`).
    pub g: Vec<T>,
    /// Output of `w2`.
    pub f: Vec<T>,
    /// Residual stream leaving the block.
    pub output: Vec<T>,
}

/// Everything recorded by a traced forward pass.
#[derive(Debug, Clone, Default)]
pub struct Trace<T> {
    /// One entry per block.
    pub layers: Vec<LayerTrace<T>>,
    /// Input of the classifier (after the final norm).
    pub final_x: Vec<T>,
}

/// RoPE cosines and sines for `t` positions (`t x head_dim/2` each), computed as llama2.c
/// does in the float type: `freq = 1 / theta^(2i/head_dim)`, angle `pos * freq`.
pub struct Rope<T> {
    cos: Vec<T>,
    sin: Vec<T>,
    half: usize,
}

impl<T: Float> Rope<T> {
    /// The table for positions `pos0 .. pos0 + t`.
    pub fn new(cfg: &ModelConfig, pos0: usize, t: usize) -> Self {
        let half = cfg.head_dim / 2;
        let theta = T::from_f64(cfg.rope_theta);
        let hd = T::from_f64(cfg.head_dim as f64);
        let freqs: Vec<T> = (0..half)
            .map(|i| T::ONE / theta.powf(T::from_f64((2 * i) as f64) / hd))
            .collect();
        let (mut cos, mut sin) = (Vec::with_capacity(t * half), Vec::with_capacity(t * half));
        for p in pos0..pos0 + t {
            let pf = T::from_f64(p as f64);
            for &f in &freqs {
                let a = pf * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Rope { cos, sin, half }
    }

    /// Rotate the interleaved pairs of every head of `x` (`t x (heads * head_dim)`).
    pub fn apply(&self, x: &mut [T], t: usize, width: usize) {
        let hd = 2 * self.half;
        for r in 0..t {
            let row = &mut x[r * width..(r + 1) * width];
            let (c, s) = (&self.cos[r * self.half..], &self.sin[r * self.half..]);
            for head in row.chunks_exact_mut(hd) {
                for i in 0..self.half {
                    let (v0, v1) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = v0 * c[i] - v1 * s[i];
                    head[2 * i + 1] = v0 * s[i] + v1 * c[i];
                }
            }
        }
    }
}

/// RMSNorm of each row of `x` (`t x d`) times `g`, as llama2.c: `ss = mean(x^2) + eps`,
/// `out = g * (x * (1/sqrt(ss)))`.
pub fn rmsnorm<T: Float>(x: &[T], g: &[T], d: usize, eps: f64) -> Vec<T> {
    let eps = T::from_f64(eps);
    let mut out = vec![T::ZERO; x.len()];
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mut ss = T::ZERO;
        for &v in xr {
            ss += v * v;
        }
        ss = ss / T::from_f64(d as f64) + eps;
        let inv = T::ONE / ss.sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(g) {
            *o = w * (inv * v);
        }
    }
    out
}

fn add_bias<T: Float>(y: &mut [T], b: Option<&Vec<T>>, n: usize) {
    if let Some(b) = b {
        for row in y.chunks_exact_mut(n) {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }
}

/// Causal attention of `t` new queries (`q`, `t x q_dim`, after RoPE) at positions
/// `pos0..pos0+t` over the `s = pos0 + t` cached keys and values (`s x kv_dim`): returns
/// `t x q_dim`.
#[allow(clippy::too_many_arguments)]
pub fn attention<T: Float, E: Engine<T>>(
    cfg: &ModelConfig,
    engine: &E,
    layer: usize,
    q: &[T],
    kc: &[T],
    vc: &[T],
    pos0: usize,
    t: usize,
) -> Result<Vec<T>> {
    let (hd, qd, kvd) = (cfg.head_dim, cfg.q_dim(), cfg.kv_dim());
    let s = pos0 + t;
    let group = cfg.n_heads / cfg.n_kv_heads;
    let scale = T::ONE / T::from_f64(hd as f64).sqrt();
    let mut out = vec![T::ZERO; t * qd];
    let mut kh = vec![T::ZERO; s * hd];
    let mut vt = vec![T::ZERO; hd * s];
    let mut qh = vec![T::ZERO; t * hd];
    for kvh in 0..cfg.n_kv_heads {
        for j in 0..s {
            kh[j * hd..(j + 1) * hd]
                .copy_from_slice(&kc[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd]);
            for c in 0..hd {
                vt[c * s + j] = vc[j * kvd + kvh * hd + c];
            }
        }
        for h in kvh * group..(kvh + 1) * group {
            for r in 0..t {
                qh[r * hd..(r + 1) * hd]
                    .copy_from_slice(&q[r * qd + h * hd..r * qd + (h + 1) * hd]);
            }
            let mut p = engine.qk(layer, &qh, t, &kh, s, hd)?;
            for r in 0..t {
                let row = &mut p[r * s..(r + 1) * s];
                let visible = pos0 + r + 1;
                let mut mx = row[0] * scale;
                for v in row[..visible].iter_mut() {
                    *v *= scale;
                    if *v > mx {
                        mx = *v;
                    }
                }
                let mut sum = T::ZERO;
                for v in row[..visible].iter_mut() {
                    *v = (*v - mx).exp();
                    sum += *v;
                }
                for v in row[..visible].iter_mut() {
                    *v = *v / sum;
                }
                for v in row[visible..].iter_mut() {
                    *v = T::ZERO;
                }
            }
            let o = engine.pv(layer, &p, t, &vt, hd, s)?;
            for r in 0..t {
                out[r * qd + h * hd..r * qd + (h + 1) * hd]
                    .copy_from_slice(&o[r * hd..(r + 1) * hd]);
            }
        }
    }
    Ok(out)
}

/// Run block `l` on `x` (`t x dim`, updated in place) for positions `cache.len ..`,
/// appending its keys and values to the cache's layer `l` (the caller advances
/// `cache.len` after the last block).
#[allow(clippy::too_many_arguments)]
pub fn block<T: Float, E: Engine<T>>(
    cfg: &ModelConfig,
    lw: &LayerWeights<T>,
    l: usize,
    engine: &E,
    x: &mut [T],
    t: usize,
    rope: &Rope<T>,
    pos0: usize,
    kc: &mut Vec<T>,
    vc: &mut Vec<T>,
    trace: Option<&mut LayerTrace<T>>,
) -> Result<()> {
    let (d, h, qd, kvd) = (cfg.dim, cfg.hidden_dim, cfg.q_dim(), cfg.kv_dim());
    let input = trace.as_ref().map(|_| x.to_vec());
    let xb = rmsnorm(x, &lw.attn_norm, d, cfg.norm_eps);
    let lin = |which: Linear, inp: &[T], k: usize, n: usize| match lw.online_input(which, inp, t) {
        Some(x) => engine.linear(Site::Layer(l, which), &x, t, lw.linear(which), k, n),
        None => engine.linear(Site::Layer(l, which), inp, t, lw.linear(which), k, n),
    };
    let xbo = lw.group_online_input(&[Linear::Wq, Linear::Wk, Linear::Wv], &xb, t)?;
    let mut qkv = engine
        .linear_multi(
            l,
            xbo.as_deref().unwrap_or(&xb),
            t,
            d,
            &[
                (Linear::Wq, &lw.wq, qd),
                (Linear::Wk, &lw.wk, kvd),
                (Linear::Wv, &lw.wv, kvd),
            ],
        )?
        .into_iter();
    let (mut q, mut k, mut v) = match (qkv.next(), qkv.next(), qkv.next()) {
        (Some(q), Some(k), Some(v)) => (q, k, v),
        _ => return Err(Error::invalid("engine returned too few outputs")),
    };
    add_bias(&mut q, lw.bq.as_ref(), qd);
    add_bias(&mut k, lw.bk.as_ref(), kvd);
    add_bias(&mut v, lw.bv.as_ref(), kvd);
    let (q0, k0) = if trace.is_some() {
        (q.clone(), k.clone())
    } else {
        (Vec::new(), Vec::new())
    };
    rope.apply(&mut q, t, qd);
    rope.apply(&mut k, t, kvd);
    let k_rot = if trace.is_some() {
        k.clone()
    } else {
        Vec::new()
    };
    let v_lin = if trace.is_some() {
        v.clone()
    } else {
        Vec::new()
    };
    engine.store_kv(l, &mut k, t, kvd)?;
    engine.store_kv(l, &mut v, t, kvd)?;
    kc.truncate(pos0 * kvd);
    vc.truncate(pos0 * kvd);
    kc.extend_from_slice(&k);
    vc.extend_from_slice(&v);
    let att = attention(cfg, engine, l, &q, kc, vc, pos0, t)?;
    let o = lin(Linear::Wo, &att, qd, d)?;
    for (a, &b) in x.iter_mut().zip(&o) {
        *a += b;
    }
    let xb2 = rmsnorm(x, &lw.ffn_norm, d, cfg.norm_eps);
    let xb2o = lw.group_online_input(&[Linear::W1, Linear::W3], &xb2, t)?;
    let mut h13 = engine
        .linear_multi(
            l,
            xb2o.as_deref().unwrap_or(&xb2),
            t,
            d,
            &[(Linear::W1, &lw.w1, h), (Linear::W3, &lw.w3, h)],
        )?
        .into_iter();
    let (h1, h3) = match (h13.next(), h13.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(Error::invalid("engine returned too few outputs")),
    };
    let g: Vec<T> = h1
        .iter()
        .zip(&h3)
        .map(|(&a, &b)| a / (T::ONE + (-a).exp()) * b)
        .collect();
    let f = lin(Linear::W2, &g, h, d)?;
    for (a, &b) in x.iter_mut().zip(&f) {
        *a += b;
    }
    if let Some(tr) = trace {
        *tr = LayerTrace {
            input: input.unwrap_or_default(),
            xb,
            q: q0,
            k: k0,
            v: v_lin,
            q_rot: q,
            k_rot,
            att,
            o,
            xb2,
            h1,
            h3,
            g,
            f,
            output: x.to_vec(),
        };
    }
    Ok(())
}

/// Check token ids and the position range of a forward call.
fn check_tokens(cfg: &ModelConfig, tokens: &[u32], pos0: usize) -> Result<()> {
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        return Err(Error::invalid(format!(
            "token id {bad} is outside the vocabulary of {}",
            cfg.vocab_size
        )));
    }
    if pos0 + tokens.len() > cfg.seq_len {
        return Err(Error::invalid(format!(
            "sequence of {} positions exceeds the model's maximum of {}",
            pos0 + tokens.len(),
            cfg.seq_len
        )));
    }
    Ok(())
}

/// Run `tokens` (at positions `cache.len ..`) through the model and return the logits of
/// every one (`t x vocab_size`, row-major). With `trace`, the intermediate tensors of every
/// block are recorded.
pub fn forward<T: Float, E: Engine<T>>(
    cfg: &ModelConfig,
    w: &Weights<T>,
    engine: &E,
    tokens: &[u32],
    cache: &mut KvCache<T>,
    mut trace: Option<&mut Trace<T>>,
) -> Result<Vec<T>> {
    let pos0 = cache.len;
    check_tokens(cfg, tokens, pos0)?;
    let (t, d) = (tokens.len(), cfg.dim);
    if t == 0 {
        return Ok(Vec::new());
    }
    let emb = engine.embedding(&w.tok_emb);
    let mut x = Vec::with_capacity(t * d);
    for &tok in tokens {
        x.extend_from_slice(&emb[tok as usize * d..(tok as usize + 1) * d]);
    }
    let rope = Rope::new(cfg, pos0, t);
    if let Some(tr) = trace.as_deref_mut() {
        tr.layers = vec![LayerTrace::default(); cfg.n_layers];
    }
    for (l, lw) in w.layers.iter().enumerate() {
        let lt = trace.as_deref_mut().map(|tr| &mut tr.layers[l]);
        block(
            cfg,
            lw,
            l,
            engine,
            &mut x,
            t,
            &rope,
            pos0,
            &mut cache.k[l],
            &mut cache.v[l],
            lt,
        )?;
    }
    cache.len = pos0 + t;
    let xf = rmsnorm(&x, &w.final_norm, d, cfg.norm_eps);
    let logits = engine.linear(Site::LmHead, &xf, t, w.classifier(), d, cfg.vocab_size)?;
    if let Some(tr) = trace {
        tr.final_x = xf;
    }
    Ok(logits)
}

/// Index of the largest value (the first on ties).
pub fn argmax<T: Float>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Greedy generation: run `prompt` (which should start with BOS), then repeatedly append
/// the most likely token, one position at a time through the KV cache, until `steps` new
/// tokens, an end-of-sequence or beginning-of-sequence token, or the model's maximum
/// length. Returns the new tokens.
pub fn generate_greedy<T: Float, E: Engine<T>>(
    cfg: &ModelConfig,
    w: &Weights<T>,
    engine: &E,
    prompt: &[u32],
    steps: usize,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(Error::invalid(
            "generation needs at least one prompt token (BOS)",
        ));
    }
    let mut cache = KvCache::new(cfg);
    let logits = forward(cfg, w, engine, prompt, &mut cache, None)?;
    let v = cfg.vocab_size;
    let mut next = argmax(&logits[logits.len() - v..]) as u32;
    let mut out = Vec::new();
    while out.len() < steps {
        // llama2.c stops at BOS (the start of the next sequence); Hugging Face models at EOS.
        if next == cfg.eos_id || next == cfg.bos_id {
            break;
        }
        out.push(next);
        if out.len() == steps || cache.len >= cfg.seq_len {
            break;
        }
        let logits = forward(cfg, w, engine, &[next], &mut cache, None)?;
        next = argmax(&logits) as u32;
    }
    Ok(out)
}
