//! Accuracy metrics of a quantized model against its floating-point reference: perplexity,
//! KL divergence and top-1 agreement of the next-token distributions, and per-layer /
//! per-role error (SQNR in dB and cosine similarity), both layer-local and propagated.
//!
//! Evaluation protocols (how text becomes scored sequences):
//! - [`Protocol::Paragraphs`] (default): the text is split at blank lines; each paragraph
//!   (its lines joined with `\n`, surrounding whitespace trimmed) is encoded on its own with
//!   BOS prepended and cut to at most `max_len` tokens (BOS included); every token after BOS
//!   is predicted from the tokens before it in the same paragraph.
//! - [`Protocol::Windows`]: the whole text is encoded once (no BOS) and cut into consecutive,
//!   non-overlapping windows of `len - 1` tokens, each scored with BOS prepended.
//!
//! `max_tokens` caps the number of scored (predicted) tokens: sequences are taken in text
//! order and the last one is shortened to fit. Perplexity is `exp(total NLL / scored
//! tokens)`. Sequences are processed in parallel (rayon) and their sums reduced in text
//! order, so results do not depend on the number of threads.

use super::config::ModelConfig;
use super::float::Float;
use super::forward::{attention, block, forward, KvCache, Reference, Rope, Trace};
use super::quant::QuantEngine;
use super::tokenizer::Tokenizer;
use super::weights::Model;
use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;

/// How text is turned into scored sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Protocol {
    /// Each blank-line-separated paragraph on its own, BOS prepended, at most `max_len`
    /// tokens including BOS.
    Paragraphs {
        /// Longest sequence (tokens, BOS included).
        max_len: usize,
    },
    /// Consecutive windows of `len` tokens (BOS included) over the whole text.
    Windows {
        /// Window length (tokens, BOS included).
        len: usize,
    },
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol::Paragraphs { max_len: 256 }
    }
}

/// The paragraphs of a text: blocks of lines separated by blank (whitespace-only) lines,
/// each trimmed; empty ones dropped.
pub fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(cur.join("\n").trim().to_string());
                cur.clear();
            }
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        out.push(cur.join("\n").trim().to_string());
    }
    out.retain(|p| !p.is_empty());
    out
}

/// The token sequences a protocol scores (each starting with BOS), with at most
/// `max_tokens` predicted tokens in total.
pub fn sequences(
    tok: &dyn Tokenizer,
    bos: u32,
    text: &str,
    protocol: Protocol,
    max_tokens: Option<usize>,
) -> Result<Vec<Vec<u32>>> {
    let mut seqs = Vec::new();
    match protocol {
        Protocol::Paragraphs { max_len } => {
            if max_len < 2 {
                return Err(Error::invalid("paragraph length must be at least 2 tokens"));
            }
            let mut scored = 0;
            for p in paragraphs(text) {
                if max_tokens.is_some_and(|cap| scored >= cap) {
                    break;
                }
                let mut ids = tok.encode(&p, false)?;
                ids.insert(0, bos);
                ids.truncate(max_len);
                if ids.len() >= 2 {
                    scored += ids.len() - 1;
                    seqs.push(ids);
                }
            }
        }
        Protocol::Windows { len } => {
            if len < 2 {
                return Err(Error::invalid("window length must be at least 2 tokens"));
            }
            // Encoded paragraph by paragraph (llama2.c's encoder is quadratic in the text
            // length), each with its dummy-prefix space, tokens concatenated.
            let mut ids = Vec::new();
            for p in paragraphs(text) {
                if max_tokens.is_some_and(|cap| ids.len() >= cap) {
                    break;
                }
                ids.extend(tok.encode(&p, false)?);
            }
            for chunk in ids.chunks(len - 1) {
                let mut s = Vec::with_capacity(len);
                s.push(bos);
                s.extend_from_slice(chunk);
                seqs.push(s);
            }
        }
    }
    if let Some(cap) = max_tokens {
        let mut left = cap;
        let mut kept = Vec::new();
        for mut s in seqs {
            if left == 0 {
                break;
            }
            s.truncate(left + 1);
            left -= s.len() - 1;
            kept.push(s);
        }
        seqs = kept;
    }
    if seqs.is_empty() {
        return Err(Error::invalid("the text gives no sequence to score"));
    }
    Ok(seqs)
}

/// Log-softmax of one row of logits, in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let mx = logits
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let lse = mx
        + logits
            .iter()
            .map(|&x| (x as f64 - mx).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// Negative log-likelihood (nats, summed) of `seq[1..]` given logits of `seq` (`t x v`).
pub fn sequence_nll<T: Float>(logits: &[T], seq: &[u32], v: usize) -> f64 {
    let mut nll = 0.0;
    let mut row = vec![0f32; v];
    for i in 0..seq.len() - 1 {
        for (r, x) in row.iter_mut().zip(&logits[i * v..(i + 1) * v]) {
            *r = x.to_f32();
        }
        let ls = log_softmax(&row);
        nll -= ls[seq[i + 1] as usize];
    }
    nll
}

/// Perplexity of the floating-point reference in type `T` over sequences (each starting
/// with BOS), with the NLL sum and token count. Parallel over sequences, deterministic.
pub fn perplexity<T: Float>(
    model: &Model,
    w: &super::weights::Weights<T>,
    seqs: &[Vec<u32>],
) -> Result<(f64, f64, usize)> {
    let cfg = &model.config;
    let parts: Vec<(f64, usize)> = seqs
        .par_iter()
        .map(|s| {
            let mut cache = KvCache::new(cfg);
            let logits = forward(cfg, w, &Reference, s, &mut cache, None)?;
            Ok((sequence_nll(&logits, s, cfg.vocab_size), s.len() - 1))
        })
        .collect::<Result<_>>()?;
    let (nll, n) = parts
        .iter()
        .fold((0.0, 0), |(a, b), &(x, y)| (a + x, b + y));
    Ok(((nll / n as f64).exp(), nll, n))
}

/// Sums that give an SQNR and a cosine similarity between a reference and a test tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ErrAcc {
    /// Sum of squared reference values.
    pub sig: f64,
    /// Sum of squared differences.
    pub err: f64,
    /// Sum of products.
    pub dot: f64,
    /// Sum of squared test values.
    pub test: f64,
}

impl ErrAcc {
    /// Accumulate a pair of tensors.
    pub fn add(&mut self, reference: &[f32], test: &[f32]) {
        for (&r, &t) in reference.iter().zip(test) {
            let (r, t) = (r as f64, t as f64);
            self.sig += r * r;
            self.err += (r - t) * (r - t);
            self.dot += r * t;
            self.test += t * t;
        }
    }
    /// Merge another accumulator.
    pub fn merge(&mut self, o: &ErrAcc) {
        self.sig += o.sig;
        self.err += o.err;
        self.dot += o.dot;
        self.test += o.test;
    }
    /// `10 log10(sum ref^2 / sum (ref - test)^2)` (infinite when equal).
    pub fn sqnr_db(&self) -> f64 {
        10.0 * (self.sig / self.err).log10()
    }
    /// `sum ref*test / sqrt(sum ref^2 * sum test^2)` over the flattened tensors.
    pub fn cosine(&self) -> f64 {
        self.dot / (self.sig * self.test).sqrt()
    }
}

/// Roles whose output error is measured, per block.
pub const ROLES: [&str; 9] = ["wq", "wk", "wv", "attn", "wo", "w1", "w3", "w2", "block"];

/// Per-layer, per-role error accumulators: `[mode][layer][role]` with mode 0 = local
/// (each role or block fed the reference input), 1 = propagated (the quantized model's own
/// activations from the start).
#[derive(Debug, Clone, Default)]
pub struct LayerErrors {
    /// The accumulators.
    pub acc: [Vec<[ErrAcc; 9]>; 2],
}

impl LayerErrors {
    fn new(n_layers: usize) -> Self {
        LayerErrors {
            acc: [
                vec![[ErrAcc::default(); 9]; n_layers],
                vec![[ErrAcc::default(); 9]; n_layers],
            ],
        }
    }
    fn merge(&mut self, o: &LayerErrors) {
        for m in 0..2 {
            for (a, b) in self.acc[m].iter_mut().zip(&o.acc[m]) {
                for (x, y) in a.iter_mut().zip(b) {
                    x.merge(y);
                }
            }
        }
    }
}

/// One row of the per-layer error table.
#[derive(Debug, Clone, Serialize)]
pub struct LayerStat {
    /// Block index.
    pub layer: usize,
    /// Role (`wq` ... `w2`, `attn` for the attention core, `block` for the block output).
    pub role: String,
    /// `local` or `propagated`.
    pub mode: String,
    /// SQNR in dB.
    pub sqnr_db: f64,
    /// Cosine similarity.
    pub cosine: f64,
}

/// The result of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Scored sequences.
    pub sequences: usize,
    /// Scored tokens.
    pub tokens: usize,
    /// Reference (float32) perplexity.
    pub ppl_reference: f64,
    /// Quantized perplexity (equal to the reference without a plan).
    pub ppl: f64,
    /// Relative change of perplexity, percent.
    pub ppl_change_pct: f64,
    /// Mean KL divergence KL(reference || quantized) per token, nats.
    pub kl_mean: f64,
    /// Fraction of positions where both models' most likely next token agree.
    pub top1_agreement: f64,
    /// Tokens over which the per-layer errors were measured.
    pub layer_stat_tokens: usize,
    /// Per-layer and per-role errors.
    pub layers: Vec<LayerStat>,
}

#[derive(Default)]
struct SeqResult {
    nll_ref: f64,
    nll_q: f64,
    kl: f64,
    top1: usize,
    n: usize,
    layers: Option<LayerErrors>,
}

/// Options of [`evaluate`].
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Measure per-layer errors on the first sequences until this many tokens (0: none).
    pub layer_stat_tokens: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            layer_stat_tokens: 4096,
        }
    }
}

/// Evaluate the quantized engine (or only the reference when `quant` is `None`) on token
/// sequences. `progress` is called with the number of tokens of each finished sequence.
pub fn evaluate(
    model: &Model,
    quant: Option<&QuantEngine>,
    seqs: &[Vec<u32>],
    opts: EvalOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<EvalReport> {
    let cfg = &model.config;
    let v = cfg.vocab_size;
    // Sequences whose per-layer errors are measured: a prefix of the text.
    let mut stat_seqs = 0;
    let mut stat_tokens = 0;
    for s in seqs {
        if stat_tokens >= opts.layer_stat_tokens || quant.is_none() {
            break;
        }
        stat_tokens += s.len();
        stat_seqs += 1;
    }
    let results: Vec<SeqResult> = seqs
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let r = eval_sequence(model, quant, s, i < stat_seqs);
            progress((s.len() - 1) as u64);
            r
        })
        .collect::<Result<_>>()?;
    let _ = v;
    let mut total = SeqResult::default();
    let mut layers = LayerErrors::new(cfg.n_layers);
    for r in &results {
        total.nll_ref += r.nll_ref;
        total.nll_q += r.nll_q;
        total.kl += r.kl;
        total.top1 += r.top1;
        total.n += r.n;
        if let Some(l) = &r.layers {
            layers.merge(l);
        }
    }
    let n = total.n.max(1) as f64;
    let ppl_reference = (total.nll_ref / n).exp();
    let ppl = (total.nll_q / n).exp();
    let mut stats = Vec::new();
    if stat_seqs > 0 {
        for (m, mode) in ["local", "propagated"].iter().enumerate() {
            for (l, row) in layers.acc[m].iter().enumerate() {
                for (r, role) in ROLES.iter().enumerate() {
                    stats.push(LayerStat {
                        layer: l,
                        role: role.to_string(),
                        mode: mode.to_string(),
                        sqnr_db: row[r].sqnr_db(),
                        cosine: row[r].cosine(),
                    });
                }
            }
        }
    }
    Ok(EvalReport {
        sequences: seqs.len(),
        tokens: total.n,
        ppl_reference,
        ppl,
        ppl_change_pct: 100.0 * (ppl / ppl_reference - 1.0),
        kl_mean: total.kl / n,
        top1_agreement: total.top1 as f64 / n,
        layer_stat_tokens: if stat_seqs > 0 { stat_tokens } else { 0 },
        layers: stats,
    })
}

fn eval_sequence(
    model: &Model,
    quant: Option<&QuantEngine>,
    s: &[u32],
    layer_stats: bool,
) -> Result<SeqResult> {
    let cfg = &model.config;
    let w = &model.weights;
    let v = cfg.vocab_size;
    let t = s.len();
    let mut rtrace = Trace::default();
    let mut cache = KvCache::new(cfg);
    let rlog = forward(
        cfg,
        w,
        &Reference,
        s,
        &mut cache,
        layer_stats.then_some(&mut rtrace),
    )?;
    let mut out = SeqResult {
        n: t - 1,
        ..Default::default()
    };
    let Some(q) = quant else {
        out.nll_ref = sequence_nll(&rlog, s, v);
        out.nll_q = out.nll_ref;
        out.top1 = t - 1;
        return Ok(out);
    };
    let mut qtrace = Trace::default();
    let mut qcache = KvCache::new(cfg);
    let qlog = forward(
        cfg,
        w,
        q,
        s,
        &mut qcache,
        layer_stats.then_some(&mut qtrace),
    )?;
    for i in 0..t - 1 {
        let lr = log_softmax(&rlog[i * v..(i + 1) * v]);
        let lq = log_softmax(&qlog[i * v..(i + 1) * v]);
        let next = s[i + 1] as usize;
        out.nll_ref -= lr[next];
        out.nll_q -= lq[next];
        out.kl += lr
            .iter()
            .zip(&lq)
            .map(|(&a, &b)| a.exp() * (a - b))
            .sum::<f64>();
        if super::forward::argmax(&rlog[i * v..(i + 1) * v])
            == super::forward::argmax(&qlog[i * v..(i + 1) * v])
        {
            out.top1 += 1;
        }
    }
    if layer_stats {
        out.layers = Some(layer_errors(cfg, model, q, &rtrace, &qtrace, t)?);
    }
    Ok(out)
}

fn layer_errors(
    cfg: &ModelConfig,
    model: &Model,
    q: &QuantEngine,
    rt: &Trace<f32>,
    qt: &Trace<f32>,
    t: usize,
) -> Result<LayerErrors> {
    use super::config::Linear;
    use super::forward::{Engine, Site};
    let mut e = LayerErrors::new(cfg.n_layers);
    let (d, h, qd, kvd) = (cfg.dim, cfg.hidden_dim, cfg.q_dim(), cfg.kv_dim());
    let rope = Rope::new(cfg, 0, t);
    for l in 0..cfg.n_layers {
        let (r, p) = (&rt.layers[l], &qt.layers[l]);
        let lw = &model.weights.layers[l];
        // Propagated: the quantized model's own tensors against the reference's.
        let pairs: [(&[f32], &[f32]); 9] = [
            (&r.q, &p.q),
            (&r.k, &p.k),
            (&r.v, &p.v),
            (&r.att, &p.att),
            (&r.o, &p.o),
            (&r.h1, &p.h1),
            (&r.h3, &p.h3),
            (&r.f, &p.f),
            (&r.output, &p.output),
        ];
        for (i, (a, b)) in pairs.iter().enumerate() {
            e.acc[1][l][i].add(a, b);
        }
        // Local: each role fed the reference input of that role.
        let lin = |which: Linear, x: &[f32], k: usize, n: usize| -> Result<Vec<f32>> {
            let xo = lw.online_input(which, x, t);
            let mut y = q.linear(
                Site::Layer(l, which),
                xo.as_deref().unwrap_or(x),
                t,
                lw.linear(which),
                k,
                n,
            )?;
            let b = match which {
                Linear::Wq => lw.bq.as_ref(),
                Linear::Wk => lw.bk.as_ref(),
                Linear::Wv => lw.bv.as_ref(),
                _ => None,
            };
            if let Some(b) = b {
                for row in y.chunks_exact_mut(n) {
                    row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
                }
            }
            Ok(y)
        };
        e.acc[0][l][0].add(&r.q, &lin(Linear::Wq, &r.xb, d, qd)?);
        e.acc[0][l][1].add(&r.k, &lin(Linear::Wk, &r.xb, d, kvd)?);
        e.acc[0][l][2].add(&r.v, &lin(Linear::Wv, &r.xb, d, kvd)?);
        let (mut kc, mut vc) = (r.k_rot.clone(), r.v.clone());
        q.store_kv(l, &mut kc, t, kvd)?;
        q.store_kv(l, &mut vc, t, kvd)?;
        let att = attention(cfg, q, l, &r.q_rot, &kc, &vc, 0, t)?;
        e.acc[0][l][3].add(&r.att, &att);
        e.acc[0][l][4].add(&r.o, &lin(Linear::Wo, &r.att, qd, d)?);
        e.acc[0][l][5].add(&r.h1, &lin(Linear::W1, &r.xb2, d, h)?);
        e.acc[0][l][6].add(&r.h3, &lin(Linear::W3, &r.xb2, d, h)?);
        e.acc[0][l][7].add(&r.f, &lin(Linear::W2, &r.g, h, d)?);
        // Local block: the whole quantized block fed the reference block input.
        let mut x = r.input.clone();
        let (mut kc, mut vc) = (Vec::new(), Vec::new());
        block(cfg, lw, l, q, &mut x, t, &rope, 0, &mut kc, &mut vc, None)?;
        e.acc[0][l][8].add(&r.output, &x);
    }
    Ok(e)
}
