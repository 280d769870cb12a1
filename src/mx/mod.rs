//! MX block quantization (OCP Microscaling v1.0) and NVFP4: shared scales per block of
//! consecutive values along the last axis, the scale rules that real implementations use, and
//! dequantization.
//!
//! A tensor of `rows x cols` values (row-major) is split into blocks of `block_size`
//! consecutive values of a row; the last block of a row may be shorter when `cols` is not a
//! multiple of the block size (it gets its own scale, computed over its own values only). Each
//! block gets one scale code (E8M0 for MX, UE4M3 for NVFP4) and each value one element code.
//! The value represented by element `j` of block `b` is
//! `decode(elem, code_j) * scale(b) * global_scale`, where `global_scale` is 1 for plain MX,
//! `1/F` for the pre-scale rule, and the FP32 per-tensor scale for NVFP4.

pub mod fast;
pub mod layout;
pub mod pack;
mod rules;
mod scheme;
mod tensor;

pub use rules::{e8m0_exponent, ScaleRule, ZeroBlock};
pub use scheme::{MxConfig, NvScaleApply, Scheme};
pub use tensor::{nv_tensor_scale, quantize, quantize_f64, quantize_generic, MxTensor, QuantStats};
