//! Post-training quantization (PTQ) methods under MX formats (REFERENCE section 6), as
//! matrix-level algorithms on one linear layer: a weight `W` (`out x in`, row-major) and
//! calibration activations `X` (`tokens x in`), with the MX blocks of the target
//! [`crate::mx::Scheme`] running along the input (reduction) axis of both.
//!
//! - [`quant`]: RTN (round-to-nearest with any [`crate::mx::ScaleRule`], which also makes the
//!   scale rules methods of their own), a block quantizer with fixed scales, layer objectives.
//! - [`gptq()`]: GPTQ with MX block scales (static or dynamic scale policy), damping, lazy
//!   batches, act-order.
//! - [`awq()`]: AWQ scale search and clipping search.
//! - [`smooth`]: SmoothQuant factors.
//! - [`hadamard`]: fast Walsh-Hadamard, random-sign and block-diagonal Hadamard rotations
//!   (QuaRot, MR-GPTQ).
//! - [`spin`]: SpinQuant-style rotation learned by Cayley SGD.
//! - [`flat`]: FlatQuant-style learned Kronecker affine transform with per-channel scales and
//!   learned clipping.
//! - [`linalg`]: the small dense linear algebra these need.
//! - [`methods`]: the methods applied to whole models (transforms plus quantization plans),
//!   calibrated on token sequences.
//!
//! All algorithms run in f64 with fixed loop orders and seeded randomness: the same inputs give
//! bit-identical outputs. See `docs/ptq.md`.

pub mod awq;
pub mod flat;
pub mod gptq;
pub mod hadamard;
pub mod linalg;
pub mod methods;
pub mod quant;
pub mod smooth;
pub mod spin;

pub use awq::{awq, awq_with_act, AwqConfig, AwqResult};
pub use flat::{learn_flat, FlatConfig, FlatResult, FlatTransform};
pub use gptq::{gptq, hessian, GptqConfig, Quantized, ScalePolicy};
pub use hadamard::{fwht, Rotation};
pub use linalg::Matrix;
pub use quant::{fake_quant, rtn, BlockQuantizer, QuantSpec};
pub use smooth::{smooth_scales, smoothquant_scales};
pub use spin::{
    learn_rotation, learn_rotation_groups, learn_rotation_objective, CayleyConfig, SpinResult,
};

use crate::error::Result;
use crate::mx::{MxConfig, ScaleRule, Scheme};

/// The scale rule MR-GPTQ uses for a scheme: the 3/4 pre-scale for E8M0-scaled MX schemes;
/// NVFP4 keeps the configured rule (its UE4M3 scale already fits the block maximum closely,
/// and a pre-scale would only waste range).
pub fn mr_gptq_rule(mx: &MxConfig) -> ScaleRule {
    if mx.scheme == Scheme::Nvfp4 {
        mx.rule
    } else {
        ScaleRule::Prescale(0.75)
    }
}

/// MR-GPTQ (FP-Quant) on one layer: rotate the input axis with a block-diagonal Hadamard whose
/// block is the MX block size (no random signs), then GPTQ with static scales and
/// [`mr_gptq_rule`]. Returns the rotation (apply it to the activations' rows online) and the
/// quantized rotated weight.
pub fn mr_gptq(
    w: &Matrix,
    x: &Matrix,
    mx: &MxConfig,
    cfg: &GptqConfig,
) -> Result<(Rotation, Quantized)> {
    // the largest power of two not above the block size (the block itself for 16 and 32)
    let b = 1usize << (usize::BITS - 1 - mx.block_size.max(1).leading_zeros());
    let rot = Rotation::block_hadamard(w.cols, b, None);
    let wr = rot.apply_rows(w);
    let xr = rot.apply_rows(x);
    let mx = mx.clone().with_rule(mr_gptq_rule(mx));
    let cfg = GptqConfig {
        policy: ScalePolicy::Static,
        ..*cfg
    };
    let q = gptq(&wr, &hessian(&xr), &mx, &cfg)?;
    Ok((rot, q))
}
