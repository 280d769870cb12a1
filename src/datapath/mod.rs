//! Bit-exact models of MX / NVFP4 dot-product datapaths and GEMM.
//!
//! The OCP MX v1.0 specification leaves "the internal precision of the dot product and order
//! of operations" to the implementation, so this module models a *family* of datapaths: a
//! [`DatapathConfig`] holds every choice (instruction size, exact group size, alignment
//! reference and window, treatment of shifted-out bits, where scales apply, accumulator
//! format and rounding, promotion to an outer FP32 accumulator, output rounding,
//! flush-to-zero, NaN rules), and presets reproduce known hardware (pulp-platform MXDOTP,
//! NVIDIA Blackwell and Hopper as modelled by MMA-Sim). See `docs/datapath.md`.
//!
//! Every step runs in exact integer arithmetic: element and scale codes are decoded to integer
//! significands and exponents ([`crate::format::decode_parts`]), products are exact integers,
//! alignment and summation use a wide fixed-point accumulator ([`wide::Wide`]), and rounding and
//! float packing are integer code ([`float::round_parts`]). No floating-point operation stands
//! in for a datapath step.
//!
//! [`gemm`] computes `D = A x B + C` for MX tensors blocked along K (B given transposed, N x K),
//! any pair of element formats, with K cut into the instructions the hardware issues and the
//! accumulator carried between them; it runs in parallel over output tiles and is bit-identical
//! for any thread count. Fast paths (exact small-integer block dot products) are used where a
//! preset allows and are tested to equal the general path.

mod acc32;
mod blockdot;
mod config;
mod engine;
mod fast;
mod fast_bounded;
pub mod float;
mod frame32;
mod lanedot;
mod lanes;
mod step;
mod v8;
pub mod wide;

pub use config::{
    preset_names, preset_text, AccJoin, AlignRef, DatapathConfig, Int8Mode, KRule, ScaleAt,
    Shifted, TermExponent, ZeroSign,
};
pub use engine::{global_alpha, instruction_chunks, OperandRow, Plan};
pub use float::{FloatFormat, Fp, RoundMode};
pub use step::{OutputAcc, Stepper};

use crate::error::{Error, Result};
use crate::mx::MxTensor;
use rayon::prelude::*;

/// One output of the datapath: the dot product of two operand rows plus the accumulator `c`
/// (an FP32 value), computed instruction by instruction with the general (reference) path.
/// Global tensor scales are not part of a row; see [`dot_rows`].
pub fn dot(a: OperandRow, b: OperandRow, c: f32, cfg: &DatapathConfig) -> Result<f32> {
    check_row(&a, "A")?;
    check_row(&b, "B")?;
    if a.codes.len() != b.codes.len() {
        return Err(Error::invalid(format!(
            "dot: operands have {} and {} elements",
            a.codes.len(),
            b.codes.len()
        )));
    }
    let plan = Plan::new(
        cfg,
        a.scheme,
        a.block_size,
        b.scheme,
        b.block_size,
        a.codes.len(),
    )?;
    let r = engine::dot_general(&plan, &a, &b, Fp::from_f32_bits(c.to_bits()))?;
    Ok(f32::from_bits(r.to_f32_bits(cfg.nan_bits)))
}

/// One output of [`gemm`] through the general path: row `i` of `a` against row `j` of `b`
/// (B transposed), accumulator `c`, with the tensors' global scales applied as [`gemm`] does.
pub fn dot_rows(
    a: &MxTensor,
    i: usize,
    b: &MxTensor,
    j: usize,
    c: f32,
    cfg: &DatapathConfig,
) -> Result<f32> {
    check_pair(a, b)?;
    if i >= a.rows || j >= b.rows {
        return Err(Error::invalid(format!(
            "dot_rows: row {i} / {j} out of range ({} / {})",
            a.rows, b.rows
        )));
    }
    let plan = Plan::new(cfg, a.scheme, a.block_size, b.scheme, b.block_size, a.cols)?;
    let alpha = global_alpha(a.global_scale, b.global_scale)?;
    let r = one_output(&plan, alpha, &row_of(a, i), &row_of(b, j), c)?;
    Ok(f32::from_bits(r))
}

fn check_row(r: &OperandRow, what: &str) -> Result<()> {
    if r.block_size == 0 {
        return Err(Error::invalid(format!(
            "{what}: block size must be at least 1"
        )));
    }
    if r.scales.len() != r.codes.len().div_ceil(r.block_size) {
        return Err(Error::invalid(format!(
            "{what}: {} elements in blocks of {} need {} scales, got {}",
            r.codes.len(),
            r.block_size,
            r.codes.len().div_ceil(r.block_size),
            r.scales.len()
        )));
    }
    Ok(())
}

fn check_pair(a: &MxTensor, b: &MxTensor) -> Result<()> {
    if a.cols != b.cols {
        return Err(Error::invalid(format!(
            "gemm: A has K = {} columns but B (transposed) has K = {}",
            a.cols, b.cols
        )));
    }
    for (t, w) in [(a, "A"), (b, "B")] {
        if t.codes.len() != t.rows * t.cols || t.scales.len() != t.rows * t.blocks_per_row() {
            return Err(Error::invalid(format!(
                "gemm: operand {w} has inconsistent code/scale counts"
            )));
        }
    }
    Ok(())
}

pub(crate) fn row_of(t: &MxTensor, r: usize) -> OperandRow<'_> {
    let bpr = t.blocks_per_row();
    OperandRow {
        scheme: t.scheme,
        block_size: t.block_size,
        codes: &t.codes[r * t.cols..(r + 1) * t.cols],
        scales: &t.scales[r * bpr..(r + 1) * bpr],
    }
}

fn one_output(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &OperandRow,
    b: &OperandRow,
    c: f32,
) -> Result<u32> {
    let cf = Fp::from_f32_bits(c.to_bits());
    let r = match alpha {
        None => engine::dot_general(plan, a, b, cf)?,
        Some(al) => {
            let p = engine::dot_general(plan, a, b, Fp::ZERO)?;
            engine::epilogue(al, p, cf, &plan.cfg)
        }
    };
    Ok(r.to_f32_bits(plan.cfg.nan_bits))
}

/// Work statistics of a GEMM for the cycle simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmStats {
    /// Instructions (fused operations) issued per output element along K.
    pub instructions_per_output: usize,
    /// Total fused operations, `M * N * instructions_per_output`.
    pub instructions: u64,
    /// Multiply-accumulates, `M * N * K`.
    pub macs: u64,
}

/// The instruction count of an `m x n x k` GEMM with the given operand schemes and block
/// sizes under `cfg`, without computing it (the hook the cycle simulator uses).
/// `a` and `b` are `(scheme, block_size)` of the two operands.
pub fn gemm_stats(
    cfg: &DatapathConfig,
    a: (crate::mx::Scheme, usize),
    b: (crate::mx::Scheme, usize),
    m: usize,
    n: usize,
    k: usize,
) -> Result<GemmStats> {
    let per = instruction_chunks(cfg, a.0, a.1, b.0, b.1, k)?.len();
    Ok(GemmStats {
        instructions_per_output: per,
        instructions: (m * n) as u64 * per as u64,
        macs: (m * n) as u64 * k as u64,
    })
}

/// `D = A x B + C` (M x N, row-major) with `a` = A (M x K, blocked along K) and `b` = B
/// transposed (N x K, blocked along K), `c` optional (M x N, zero when absent), through the
/// datapath `cfg`. Element formats may differ (e.g. MXFP8 x MXFP4). Global tensor scales
/// (NVFP4's FP32 tensor scale, the pre-scale factor) are applied after the MMA as
/// `D = fp32(alpha * P + C)` with `alpha = fp32_rne(ga * gb)` (see `docs/datapath.md`).
pub fn gemm(
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    cfg: &DatapathConfig,
) -> Result<Vec<f32>> {
    gemm_with_stats(a, b, c, cfg).map(|r| r.0)
}

/// [`gemm`] plus its [`GemmStats`].
pub fn gemm_with_stats(
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    cfg: &DatapathConfig,
) -> Result<(Vec<f32>, GemmStats)> {
    check_pair(a, b)?;
    let (m, n, k) = (a.rows, b.rows, a.cols);
    if let Some(c) = c {
        if c.len() != m * n {
            return Err(Error::invalid(format!(
                "gemm: C has {} values, expected M x N = {m} x {n}",
                c.len()
            )));
        }
    }
    let plan = Plan::new(cfg, a.scheme, a.block_size, b.scheme, b.block_size, k)?;
    let alpha = global_alpha(a.global_scale, b.global_scale)?;
    let stats = GemmStats {
        instructions_per_output: plan.instructions_per_output(),
        instructions: (m * n) as u64 * plan.instructions_per_output() as u64,
        macs: (m * n) as u64 * k as u64,
    };
    if let Some(out) = fast::gemm_fast(&plan, alpha, a, b, c)? {
        return Ok((out, stats));
    }
    if let Some(out) = fast_bounded::gemm_bounded(&plan, alpha, a, b, c)? {
        return Ok((out, stats));
    }
    let out = gemm_general(&plan, alpha, a, b, c)?;
    Ok((out, stats))
}

/// [`gemm`] through the general (reference) path only, never a fast path: what the fast
/// paths are tested against.
pub fn gemm_reference(
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    cfg: &DatapathConfig,
) -> Result<Vec<f32>> {
    check_pair(a, b)?;
    let plan = Plan::new(cfg, a.scheme, a.block_size, b.scheme, b.block_size, a.cols)?;
    let alpha = global_alpha(a.global_scale, b.global_scale)?;
    if let Some(c) = c {
        if c.len() != a.rows * b.rows {
            return Err(Error::invalid("gemm: C has the wrong number of values"));
        }
    }
    gemm_general(&plan, alpha, a, b, c)
}

fn gemm_general(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let (m, n) = (a.rows, b.rows);
    let mut out = vec![0f32; m * n];
    out.par_chunks_mut(n.max(1))
        .take(m)
        .enumerate()
        .try_for_each(|(i, row)| -> Result<()> {
            let ar = row_of(a, i);
            for (j, o) in row.iter_mut().enumerate() {
                let cv = c.map_or(0.0, |c| c[i * n + j]);
                *o = f32::from_bits(one_output(plan, alpha, &ar, &row_of(b, j), cv)?);
            }
            Ok(())
        })?;
    Ok(out)
}
