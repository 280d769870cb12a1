//! MX quantization helpers shared by the PTQ algorithms: fake quantization of whole matrices
//! (RTN), a per-block quantizer that lets an algorithm fix a block's scale and then quantize
//! its elements one at a time (GPTQ), and the layer-local output-error objectives.

use super::linalg::Matrix;
use crate::error::{Error, Result};
use crate::format::{decode_f64, encode, CastOptions, Overflow};
use crate::mx::{quantize_f64, MxConfig, MxTensor, ScaleRule, Scheme};

/// Quantize a matrix along its rows (blocks of the scheme run along the columns, i.e. the
/// reduction axis for both `out x in` weights and `tokens x in` activations), exactly as
/// [`crate::mx::quantize_f64`] does, and return the codes with the dequantized values.
pub fn rtn(m: &Matrix, cfg: &MxConfig) -> Result<(MxTensor, Matrix)> {
    let t = quantize_f64(&m.data, m.rows, m.cols, cfg)?;
    let deq = Matrix::from_vec(m.rows, m.cols, t.dequantize_f64())?;
    Ok((t, deq))
}

/// Quantize then dequantize (round-to-nearest with the configuration's scale rule).
pub fn fake_quant(m: &Matrix, cfg: &MxConfig) -> Result<Matrix> {
    Ok(rtn(m, cfg)?.1)
}

/// Fake-quantize when a configuration is given, copy otherwise (`None` = high precision).
pub fn maybe_fake_quant(m: &Matrix, cfg: Option<&MxConfig>) -> Result<Matrix> {
    match cfg {
        Some(c) => fake_quant(m, c),
        None => Ok(m.clone()),
    }
}

/// Quantizes one block at a time with the tensor-level context (NVFP4's per-tensor scale,
/// the pre-scale factor) fixed up front, so that an algorithm can choose a block's scale from
/// some values and later quantize other values with that scale.
///
/// The block scale is chosen by running [`crate::mx::quantize_f64`] on the block alone (so
/// every scale rule, including the MSE and four-over-six searches, behaves as in RTN); for
/// NVFP4 the per-tensor FP32 scale is taken from the whole tensor given to [`Self::new`] and
/// divided out of the block first. `Mse` with a global pre-scale grid (`mse:N`, N >= 2) picks
/// one factor per tensor and so cannot be decided per block: it is rejected.
#[derive(Debug, Clone)]
pub struct BlockQuantizer {
    cfg: MxConfig,
    block_cfg: MxConfig,
    tensor_scale: f64,
    pre: f64,
    opts: CastOptions,
}

impl BlockQuantizer {
    /// A quantizer for blocks of `whole` (only its per-tensor statistics are read).
    pub fn new(cfg: &MxConfig, whole: &Matrix) -> Result<Self> {
        if let ScaleRule::Mse { alphas } = cfg.rule {
            if alphas >= 2 {
                return Err(Error::invalid(
                    "scale rule mse:N with a global pre-scale grid cannot be used block by block (use mse)",
                ));
            }
        }
        if cfg.block_size == 0 {
            return Err(Error::invalid("block size must be at least 1"));
        }
        let tensor_scale = if cfg.scheme == Scheme::Nvfp4 && cfg.nv_tensor_scale {
            crate::mx::quantize_f64(&whole.data, 1, whole.data.len(), &{
                let mut c = cfg.clone();
                c.block_size = whole.data.len().max(1);
                c.rule = ScaleRule::Floor;
                c
            })
            // with the floor rule (no pre-scale) the global factor is the tensor scale itself
            .map(|t| t.global_scale)?
        } else {
            1.0
        };
        let pre = match cfg.rule {
            ScaleRule::Prescale(f) => f,
            _ => 1.0,
        };
        let mut block_cfg = cfg.clone();
        block_cfg.nv_tensor_scale = false;
        Ok(BlockQuantizer {
            cfg: cfg.clone(),
            block_cfg,
            tensor_scale,
            pre,
            opts: CastOptions {
                rounding: cfg.rounding,
                overflow: Overflow::Saturate,
                flush_subnormals: false,
                int8_allow_min: false,
                seed: cfg.seed,
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MxConfig {
        &self.cfg
    }

    /// The global factor of every value (`MxTensor::global_scale`): the NVFP4 tensor scale
    /// divided by the pre-scale factor.
    pub fn global_scale(&self) -> f64 {
        self.tensor_scale / self.pre
    }

    /// The scale code the configured rule chooses for a block holding `vals`.
    pub fn choose_scale(&self, vals: &[f64]) -> Result<u8> {
        let scaled: Vec<f64> = vals.iter().map(|v| v / self.tensor_scale).collect();
        let t = quantize_f64(&scaled, 1, scaled.len(), &{
            let mut c = self.block_cfg.clone();
            c.block_size = scaled.len().max(1);
            c
        })?;
        Ok(t.scales[0])
    }

    /// Quantize one value with a block scale code; returns (element code, dequantized value).
    /// `index` feeds stochastic rounding (the value's flat index in its tensor).
    #[inline]
    pub fn quantize_value(&self, v: f64, scale_code: u8, index: u64) -> (u8, f64) {
        let elem = self.cfg.scheme.element();
        let divisor = decode_f64(self.cfg.scheme.scale_format(), scale_code) * self.tensor_scale;
        let code = encode(elem, v * self.pre / divisor, &self.opts, index);
        (code, decode_f64(elem, code) * divisor / self.pre)
    }
}

/// Layer output with optionally fake-quantized operands: `Q_a(X) Q_w(W)^T`.
pub fn layer_output(
    x: &Matrix,
    w: &Matrix,
    act: Option<&MxConfig>,
    weight: Option<&MxConfig>,
) -> Result<Matrix> {
    let xq = maybe_fake_quant(x, act)?;
    let wq = maybe_fake_quant(w, weight)?;
    Ok(xq.matmul_t(&wq))
}

/// Squared output error `||X W^T - X W_hat^T||_F^2` of replacing `w` by `w_hat` (weight-only
/// objective of GPTQ and AWQ, activations unquantized).
pub fn weight_output_error(x: &Matrix, w: &Matrix, w_hat: &Matrix) -> f64 {
    x.matmul_t(w).sq_dist(&x.matmul_t(w_hat))
}

/// How a layer-local objective quantizes: the weight configuration and, when activations are
/// quantized too (W4A4, W4A8, W8A8), the activation configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantSpec {
    /// Weight quantization.
    pub weight: MxConfig,
    /// Activation quantization (`None`: activations stay in high precision).
    pub act: Option<MxConfig>,
}

/// Fake-quantize after clipping every block of every row to `ratio` times the block's largest
/// magnitude (`ratio = 1`: plain fake quantization). Clipping lowers the block maximum and so
/// the block scale; it is how learned clipping acts on MX tensors.
pub fn fake_quant_clipped(m: &Matrix, cfg: &MxConfig, ratio: f64) -> Result<Matrix> {
    if ratio >= 1.0 {
        return fake_quant(m, cfg);
    }
    let mut c = m.clone();
    let bs = cfg.block_size.max(1);
    for r in 0..m.rows {
        let row = &mut c.data[r * m.cols..(r + 1) * m.cols];
        for blk in row.chunks_mut(bs) {
            let t = ratio * blk.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            blk.iter_mut().for_each(|v| *v = v.clamp(-t, t));
        }
    }
    fake_quant(&c, cfg)
}

/// Relative output error of a group of linears sharing the activations `x`, after the
/// activations and weights have been transformed (`xt`, `wts`) and fake-quantized:
/// `sum_l ||Y_l - Q_a(xt) Q_w(wt_l)^T||^2 / sum_l ||Y_l||^2`, with `Y_l` the reference
/// outputs. Returns the loss, the quantized activations and weights (for gradients).
pub fn group_loss(
    refs: &[Matrix],
    xt: &Matrix,
    wts: &[Matrix],
    spec: &QuantSpec,
    clip: (f64, f64),
) -> Result<(f64, Matrix, Vec<Matrix>)> {
    let xq = match &spec.act {
        Some(a) => fake_quant_clipped(xt, a, clip.0)?,
        None => xt.clone(),
    };
    let mut wqs = Vec::with_capacity(wts.len());
    let (mut num, mut den) = (0.0, 0.0);
    for (wt, y) in wts.iter().zip(refs) {
        let wq = fake_quant_clipped(wt, &spec.weight, clip.1)?;
        num += xq.matmul_t(&wq).sq_dist(y);
        den += y.sq_norm();
        wqs.push(wq);
    }
    Ok((num / den.max(f64::MIN_POSITIVE), xq, wqs))
}
