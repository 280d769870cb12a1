//! Fast paths (placeholder until implemented): returns `None` so the general path runs.

use super::engine::Plan;
use super::float::Fp;
use crate::error::Result;
use crate::mx::MxTensor;

/// A fast GEMM for plans that allow one, or `None`.
pub(crate) fn gemm_fast(
    _plan: &Plan,
    _alpha: Option<Fp>,
    _a: &MxTensor,
    _b: &MxTensor,
    _c: Option<&[f32]>,
) -> Result<Option<Vec<f32>>> {
    Ok(None)
}
