//! The quantized forward: an [`Engine`] that block-quantizes the operands of every matrix
//! product according to a [`Plan`] and multiplies them through a [`GemmBackend`].
//!
//! Weights are quantized once when the engine is built; activations, KV-cache rows and
//! attention operands are quantized at every call (per token row, so one token's rounding
//! never depends on another token, and a prefill gives the same result as token-by-token
//! decoding).

use super::config::{Linear, ModelConfig};
use super::forward::{Engine, Site};
use super::plan::Plan;
use super::weights::Model;
use crate::error::{Error, Result};
use crate::mx::{quantize, MxConfig, MxTensor};
use rayon::prelude::*;
use std::sync::Arc;

/// A bit-exact GEMM: `a` is `M x K` and `b` is `N x K` (B transposed), both blocked along
/// K; `c` is an optional `M x N` addend; the result is `M x N` float32. This is the
/// signature of `mxsim::datapath::gemm` with its datapath configuration bound.
pub type ExactGemmFn =
    dyn Fn(&MxTensor, &MxTensor, Option<&[f32]>) -> Result<Vec<f32>> + Send + Sync;

/// How quantized matrix products are computed.
#[derive(Clone)]
pub enum GemmBackend {
    /// Quantize, dequantize to float32, multiply in float32 (`matrixmultiply`). Fast, and
    /// NOT bit-exact: the accumulation order and precision are those of an f32 GEMM, not of
    /// any MX datapath.
    Fast,
    /// Hand both quantized operands to a datapath GEMM of [`ExactGemmFn`]'s signature (a
    /// bit-exact model of a hardware datapath, e.g. `mxsim::datapath::gemm` with a preset).
    Exact {
        /// Name for reports (e.g. the datapath preset).
        name: String,
        /// The GEMM.
        gemm: Arc<ExactGemmFn>,
    },
}

impl std::fmt::Debug for GemmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl GemmBackend {
    /// A backend that calls `gemm` for every product whose two operands are quantized.
    pub fn exact(
        name: impl Into<String>,
        gemm: impl Fn(&MxTensor, &MxTensor, Option<&[f32]>) -> Result<Vec<f32>> + Send + Sync + 'static,
    ) -> Self {
        GemmBackend::Exact {
            name: name.into(),
            gemm: Arc::new(gemm),
        }
    }

    /// The "ideal" datapath: exact element-times-scale values, products and sums in f64,
    /// one rounding to f32 at the end. It is a numerical reference for the MX dot product
    /// (OCP leaves internal precision to implementations), not a model of any hardware.
    pub fn ideal() -> Self {
        GemmBackend::exact("ideal-f64", ideal_gemm)
    }

    /// Whether products run through a datapath GEMM (bit-exact when that GEMM is).
    pub fn is_exact(&self) -> bool {
        matches!(self, GemmBackend::Exact { .. })
    }

    /// A label for reports.
    pub fn label(&self) -> String {
        match self {
            GemmBackend::Fast => "fast (dequantize + f32 GEMM, not bit-exact)".into(),
            GemmBackend::Exact { name, .. } => format!("datapath {name}"),
        }
    }
}

/// The GEMM of [`GemmBackend::ideal`]: `a` (`M x K`) times `b^T` (`b` is `N x K`) plus `c`,
/// from the exact values of both tensors, accumulated in f64 and rounded once to f32.
pub fn ideal_gemm(a: &MxTensor, b: &MxTensor, c: Option<&[f32]>) -> Result<Vec<f32>> {
    if a.cols != b.cols {
        return Err(Error::invalid(format!(
            "GEMM operands disagree on K: {} vs {}",
            a.cols, b.cols
        )));
    }
    let (m, k, n) = (a.rows, a.cols, b.rows);
    if let Some(c) = c {
        if c.len() != m * n {
            return Err(Error::invalid("GEMM addend has the wrong size"));
        }
    }
    let (av, bv) = (a.dequantize_f64(), b.dequantize_f64());
    let mut out = vec![0.0f64; m * n];
    <f64 as super::float::Float>::gemm_nt(m, k, n, &av, &bv, &mut out);
    Ok(out
        .iter()
        .enumerate()
        .map(|(i, &v)| (v + c.map_or(0.0, |c| c[i] as f64)) as f32)
        .collect())
}

/// A quantized weight: its block codes and its dequantized float32 values.
#[derive(Debug, Clone)]
pub struct QuantWeight {
    /// The quantized tensor (`out x in`, blocked along `in`).
    pub mx: MxTensor,
    /// `mx` dequantized.
    pub deq: Vec<f32>,
}

impl QuantWeight {
    fn new(w: &[f32], rows: usize, cols: usize, cfg: &MxConfig) -> Result<Self> {
        let mx = quantize(w, rows, cols, cfg)?;
        let deq = mx.dequantize();
        Ok(QuantWeight { mx, deq })
    }
}

/// The quantized model's engine (float32).
pub struct QuantEngine {
    plan: Plan,
    backend: GemmBackend,
    config: ModelConfig,
    weights: Vec<[Option<QuantWeight>; 7]>,
    lm_head: Option<QuantWeight>,
    embedding: Option<Vec<f32>>,
    act_clip: Vec<[f32; 7]>,
}

impl QuantEngine {
    /// Quantize the model's weights as the plan says (once, in parallel) and keep the plan
    /// and backend for the run-time operands.
    pub fn new(model: &Model, plan: Plan, backend: GemmBackend) -> Result<Self> {
        let cfg = &model.config;
        let w = &model.weights;
        let shape = |l: Linear| -> (usize, usize) {
            match l {
                Linear::Wq => (cfg.q_dim(), cfg.dim),
                Linear::Wk | Linear::Wv => (cfg.kv_dim(), cfg.dim),
                Linear::Wo => (cfg.dim, cfg.q_dim()),
                Linear::W1 | Linear::W3 => (cfg.hidden_dim, cfg.dim),
                Linear::W2 => (cfg.dim, cfg.hidden_dim),
            }
        };
        let jobs: Vec<(usize, Linear)> = (0..cfg.n_layers)
            .flat_map(|l| Linear::ALL.into_iter().map(move |x| (l, x)))
            .collect();
        let quantized: Vec<Option<QuantWeight>> = jobs
            .par_iter()
            .map(|&(l, which)| {
                plan.weights[which.index()]
                    .as_ref()
                    .map(|c| {
                        let (r, k) = shape(which);
                        QuantWeight::new(w.layers[l].linear(which), r, k, c)
                    })
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let mut weights: Vec<[Option<QuantWeight>; 7]> = (0..cfg.n_layers)
            .map(|_| std::array::from_fn(|_| None))
            .collect();
        for (&(l, which), q) in jobs.iter().zip(quantized) {
            weights[l][which.index()] = q;
        }
        let lm_head = plan
            .lm_head_weights
            .as_ref()
            .map(|c| QuantWeight::new(w.classifier(), cfg.vocab_size, cfg.dim, c))
            .transpose()?;
        let embedding = plan
            .embedding
            .as_ref()
            .map(|c| quantize(&w.tok_emb, cfg.vocab_size, cfg.dim, c).map(|t| t.dequantize()))
            .transpose()?;
        Ok(QuantEngine {
            plan,
            backend,
            config: cfg.clone(),
            act_clip: vec![[1.0; 7]; cfg.n_layers],
            weights,
            lm_head,
            embedding,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The backend.
    pub fn backend(&self) -> &GemmBackend {
        &self.backend
    }

    /// Replace the quantized weight of a linear layer (for example by a PTQ method's result).
    /// The plan must quantize that weight, and the replacement must have the same shape,
    /// scheme and block size as the plan's configuration.
    pub fn set_weight(&mut self, layer: usize, which: Linear, w: QuantWeight) -> Result<()> {
        let cfg = self.plan.weights[which.index()]
            .as_ref()
            .ok_or_else(|| Error::invalid(format!("the plan does not quantize {which:?}")))?;
        let slot = self
            .weights
            .get_mut(layer)
            .ok_or_else(|| Error::invalid(format!("no layer {layer}")))?;
        let old = slot[which.index()].as_ref().expect("quantized by the plan");
        if (w.mx.rows, w.mx.cols, w.mx.scheme, w.mx.block_size)
            != (old.mx.rows, old.mx.cols, cfg.scheme, cfg.block_size)
            || w.deq.len() != w.mx.rows * w.mx.cols
        {
            return Err(Error::invalid(format!(
                "replacement weight for layer {layer} {which:?} does not match the plan's shape or format"
            )));
        }
        slot[which.index()] = Some(w);
        Ok(())
    }

    /// Clip the activations entering a linear layer before they are quantized: every MX
    /// block (of the activation configuration's block size, along the row) is clamped to
    /// `ratio` times its largest magnitude, which lowers the block's scale (FlatQuant-style
    /// learned activation clipping). `ratio = 1` (the default) is the plain quantizer,
    /// bit for bit. The plan must quantize that layer's activations; `ratio` must lie in
    /// `(0, 1]`. Applies to both backends (the datapath receives the clipped quantized tensor).
    pub fn set_act_clip(&mut self, layer: usize, which: Linear, ratio: f32) -> Result<()> {
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(Error::invalid(format!(
                "activation clipping ratio {ratio} is not in (0, 1]"
            )));
        }
        if self.plan.activations[which.index()].is_none() {
            return Err(Error::invalid(format!(
                "the plan does not quantize the activations of {which:?}"
            )));
        }
        let slot = self
            .act_clip
            .get_mut(layer)
            .ok_or_else(|| Error::invalid(format!("no layer {layer}")))?;
        slot[which.index()] = ratio;
        Ok(())
    }

    /// The activation clipping ratio of a linear layer (1: no clipping).
    pub fn act_clip(&self, layer: usize, which: Linear) -> f32 {
        self.act_clip.get(layer).map_or(1.0, |c| c[which.index()])
    }

    /// The quantized weight of a linear layer, when the plan quantizes it.
    pub fn weight(&self, layer: usize, which: Linear) -> Option<&QuantWeight> {
        self.weights
            .get(layer)
            .and_then(|w| w[which.index()].as_ref())
    }

    /// `a [m x k]` (already quantized as `aq` when its role is quantized) times `b^T`.
    #[allow(clippy::too_many_arguments)]
    fn product_q(
        &self,
        a: &[f32],
        aq: Option<&(MxTensor, Vec<f32>)>,
        m: usize,
        k: usize,
        b: &[f32],
        n: usize,
        bq: Option<&QuantWeight>,
    ) -> Result<Vec<f32>> {
        if let (GemmBackend::Exact { gemm, .. }, Some((aq, _)), Some(bq)) = (&self.backend, aq, bq)
        {
            let y = gemm(aq, &bq.mx, None)?;
            if y.len() != m * n {
                return Err(Error::invalid(format!(
                    "datapath GEMM returned {} values for a {m} x {n} product",
                    y.len()
                )));
            }
            return Ok(y);
        }
        let a = aq.map_or(a, |(_, d)| &d[..]);
        let b = bq.map_or(b, |q| &q.deq[..]);
        let mut y = vec![0.0f32; m * n];
        <f32 as super::float::Float>::gemm_nt(m, k, n, a, b, &mut y);
        Ok(y)
    }

    /// `a [m x k]` times `b^T` (`b` is `n x k`) with optional quantization of each side.
    /// When both sides are quantized and the backend is a datapath, the datapath computes
    /// it; otherwise quantized sides are dequantized and multiplied in float32.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        a: &[f32],
        m: usize,
        k: usize,
        acfg: Option<&MxConfig>,
        b: &[f32],
        n: usize,
        bq: Option<&QuantWeight>,
        bcfg: Option<&MxConfig>,
    ) -> Result<Vec<f32>> {
        let bq_owned;
        let bq = match (bq, bcfg) {
            (Some(q), _) => Some(q),
            (None, Some(c)) => {
                bq_owned = QuantWeight::new(b, n, k, c)?;
                Some(&bq_owned)
            }
            (None, None) => None,
        };
        self.product_clipped(a, m, k, acfg, 1.0, b, n, bq)
    }

    /// [`Self::product`] with a pre-quantized right side and the left side clipped per
    /// block to `clip` times the block maximum before quantization.
    #[allow(clippy::too_many_arguments)]
    fn product_clipped(
        &self,
        a: &[f32],
        m: usize,
        k: usize,
        acfg: Option<&MxConfig>,
        clip: f32,
        b: &[f32],
        n: usize,
        bq: Option<&QuantWeight>,
    ) -> Result<Vec<f32>> {
        let aq = acfg
            .map(|c| quantize_act_clipped(a, m, k, c, clip))
            .transpose()?;
        self.product_q(a, aq.as_ref(), m, k, b, n, bq)
    }
}

/// Clamp every block (`block` consecutive values of a row of `cols`) of `a` to `ratio` times
/// the block's largest magnitude. `ratio >= 1` returns the values unchanged.
pub fn clip_blocks(a: &[f32], cols: usize, block: usize, ratio: f32) -> Vec<f32> {
    let mut c = a.to_vec();
    if ratio >= 1.0 || cols == 0 {
        return c;
    }
    let bs = block.max(1);
    for row in c.chunks_mut(cols) {
        for blk in row.chunks_mut(bs) {
            let t = ratio * blk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            blk.iter_mut().for_each(|v| *v = v.clamp(-t, t));
        }
    }
    c
}

/// Quantize a run-time operand after clipping its blocks to `clip` times their maximum
/// ([`clip_blocks`]; `clip = 1`: no clipping); keep the tensor and its dequantized values.
pub fn quantize_act_clipped(
    a: &[f32],
    m: usize,
    k: usize,
    c: &MxConfig,
    clip: f32,
) -> Result<(MxTensor, Vec<f32>)> {
    let t = if clip < 1.0 {
        quantize(&clip_blocks(a, k, c.block_size, clip), m, k, c)?
    } else {
        quantize(a, m, k, c)?
    };
    let d = t.dequantize();
    Ok((t, d))
}

impl Engine<f32> for QuantEngine {
    fn linear_multi(
        &self,
        layer: usize,
        x: &[f32],
        rows: usize,
        k: usize,
        ws: &[(Linear, &[f32], usize)],
    ) -> Result<Vec<Vec<f32>>> {
        // Quantize the shared input once per distinct activation configuration and clip.
        let mut done: Vec<(MxConfig, f32, (MxTensor, Vec<f32>))> = Vec::new();
        let mut out = Vec::with_capacity(ws.len());
        for &(which, w, n) in ws {
            let acfg = self.plan.activations[which.index()].as_ref();
            let clip = self.act_clip(layer, which);
            let idx = match acfg {
                None => None,
                Some(c) => Some(
                    match done.iter().position(|(d, r, _)| d == c && *r == clip) {
                        Some(i) => i,
                        None => {
                            done.push((
                                c.clone(),
                                clip,
                                quantize_act_clipped(x, rows, k, c, clip)?,
                            ));
                            done.len() - 1
                        }
                    },
                ),
            };
            let aq = idx.map(|i| &done[i].2);
            out.push(self.product_q(x, aq, rows, k, w, n, self.weight(layer, which))?);
        }
        Ok(out)
    }

    fn linear(
        &self,
        site: Site,
        x: &[f32],
        rows: usize,
        w: &[f32],
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        let (wq, acfg, clip) = match site {
            Site::Layer(l, which) => (
                self.weight(l, which),
                self.plan.activations[which.index()].as_ref(),
                self.act_clip(l, which),
            ),
            Site::LmHead => (
                self.lm_head.as_ref(),
                self.plan.lm_head_activations.as_ref(),
                1.0,
            ),
        };
        self.product_clipped(x, rows, k, acfg, clip, w, n, wq)
    }

    fn qk(
        &self,
        _: usize,
        q: &[f32],
        t: usize,
        k: &[f32],
        s: usize,
        hd: usize,
    ) -> Result<Vec<f32>> {
        let c = self.plan.qk.as_ref();
        self.product(q, t, hd, c, k, s, None, c)
    }

    fn pv(
        &self,
        _: usize,
        p: &[f32],
        t: usize,
        vt: &[f32],
        hd: usize,
        s: usize,
    ) -> Result<Vec<f32>> {
        let c = self.plan.pv.as_ref();
        self.product(p, t, s, c, vt, hd, None, c)
    }

    fn store_kv(&self, _: usize, kv: &mut [f32], rows: usize, width: usize) -> Result<()> {
        if let Some(c) = &self.plan.kv_cache {
            let d = quantize(kv, rows, width, c)?.dequantize();
            kv.copy_from_slice(&d);
        }
        Ok(())
    }

    fn embedding<'a>(&'a self, table: &'a [f32]) -> &'a [f32] {
        match &self.embedding {
            Some(e) if e.len() == table.len() && self.config.vocab_size > 0 => e,
            _ => table,
        }
    }
}
