//! Dot-product and GEMM-tile vectors computed through the bit-exact datapath model.

use super::gen::GenSpec;
use super::pack::Pack;
use crate::error::{Error, Result};

/// Generate a `dot` or `gemm-tile` pack.
pub fn generate(spec: &GenSpec) -> Result<Pack> {
    Err(Error::invalid(format!(
        "--op {} is not available in this build (no datapath model)",
        spec.op
    )))
}
