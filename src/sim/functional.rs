//! Functional and timing results from one tiling: [`gemm_tiled`] computes a GEMM bit-exactly
//! through the datapath model in the order of the cycle simulator's [`Tiling`](super::gemm::Tiling) (its tiles,
//! K steps and MMA instructions), carrying each output's accumulator across K steps as the
//! hardware keeps it in accumulator registers, and checks that the MMA instructions it
//! executed are exactly the ones the cycle model counted.
//!
//! Output-stationary: for each output tile (raster order of the tiling, operands swapped when
//! the tiling computes `C^T = B A^T`), each K step of `tile_k` elements, each instruction K
//! slice of `instr_k` elements, each `instr_m`-row block and each `instr_n`-column block of the
//! tile (the last one narrower, rounded up to `n_step`, as the cycle model issues it), one MMA
//! instruction runs: every output inside it executes the datapath operations
//! (`datapath::instruction_chunks`) that end inside that K slice. Weight-stationary: one
//! instruction per fold (n-folds outer, k-folds inner), each fold running the datapath
//! operations of its K range for all `M x cols` outputs.
//!
//! A datapath operation wider than the MMA instruction's K (the `exact` preset fuses the whole
//! reduction) is evaluated when its last element has been issued; its exact partial sum is
//! what the accumulator carries until then, so the result is that of the datapath.

use super::config::{Dataflow, TensorCoreConfig};
use super::gemm::{simulate_gemm, GemmReport, GemmShape};
use crate::datapath::{global_alpha, DatapathConfig, OperandRow, OutputAcc, Plan, Stepper};
use crate::error::{Error, Result};
use crate::mx::MxTensor;
use rayon::prelude::*;

/// The result of [`gemm_tiled`]: D and the cycle report of the same tiling.
#[derive(Debug, Clone)]
pub struct TiledGemm {
    /// `D = A x B + C`, M x N row-major (in the original orientation, also when swapped).
    pub d: Vec<f32>,
    /// MMA instructions executed by the functional loop (equals `report.tiling.instructions`).
    pub instructions: u64,
    /// Datapath operations executed (all outputs; equals `datapath::gemm_stats(..).instructions`).
    pub datapath_ops: u64,
    /// The cycle report whose tiling the functional loop followed.
    pub report: GemmReport,
}

fn row(t: &MxTensor, r: usize) -> OperandRow<'_> {
    let bpr = t.blocks_per_row();
    OperandRow {
        scheme: t.scheme,
        block_size: t.block_size,
        codes: &t.codes[r * t.cols..(r + 1) * t.cols],
        scales: &t.scales[r * bpr..(r + 1) * bpr],
    }
}

/// The cycle-model shape of a GEMM of `a` (M x K) and `b` (B transposed, N x K): one GEMM with
/// FP32 outputs (4 bytes each, what `mxsim gemm` writes).
pub fn shape_of(a: &MxTensor, b: &MxTensor) -> GemmShape {
    let mut s = GemmShape::new(
        a.rows as u64,
        b.rows as u64,
        a.cols as u64,
        a.scheme,
        b.scheme,
    );
    s.out_bytes = 4;
    s
}

/// `D = A x B + C` on the hardware `core`: simulate the GEMM (its tiling and cycle report),
/// then compute D through the datapath `dp` tile by tile, K step by K step and instruction by
/// instruction in that tiling, with the accumulators carried across K steps. `a` is A
/// (M x K), `b` is B transposed (N x K), both blocked along K with their scheme's default
/// block size (the block the cycle model counts bytes for); `c` is M x N or absent (zero).
///
/// The result equals [`crate::datapath::gemm`] with `dp` bit for bit (the order of
/// instructions within one output is the datapath's, whatever the tiling). Errors: shapes that
/// disagree, a non-default block size, a scheme the hardware has no instruction for, and, never
/// silently, an executed instruction count different from the tiling's.
pub fn gemm_tiled(
    core: &TensorCoreConfig,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    dp: &DatapathConfig,
) -> Result<TiledGemm> {
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
        if t.block_size != t.scheme.default_block() {
            return Err(Error::invalid(format!(
                "operand {w}: block size {} differs from {}'s block of {}, which the cycle model assumes",
                t.block_size,
                t.scheme,
                t.scheme.default_block()
            )));
        }
    }
    let (m, n) = (a.rows, b.rows);
    if let Some(c) = c {
        if c.len() != m * n {
            return Err(Error::invalid(format!(
                "gemm: C has {} values, expected M x N = {m} x {n}",
                c.len()
            )));
        }
    }
    let report = simulate_gemm(core, &shape_of(a, b))?;
    let t = &report.tiling;
    if t.count != 1 {
        return Err(Error::invalid("gemm_tiled: the tiling must be of one GEMM"));
    }
    // The mapped problem: C' = A' B'^T with A' = B, B' = A when swapped.
    let (ma, mb) = if t.swapped { (b, a) } else { (a, b) };
    if t.m != ma.rows as u64 || t.n != mb.rows as u64 || t.k != a.cols as u64 {
        return Err(Error::invalid(format!(
            "tiling of {} x {} x {} does not match the operands ({} x {} x {})",
            t.m, t.n, t.k, ma.rows, mb.rows, a.cols
        )));
    }
    let (pm, pn) = (ma.rows, mb.rows);
    let c_mapped = |i: usize, j: usize| -> f32 {
        c.map_or(0.0, |c| {
            if t.swapped {
                c[j * n + i]
            } else {
                c[i * n + j]
            }
        })
    };
    let plan = Plan::new(
        dp,
        ma.scheme,
        ma.block_size,
        mb.scheme,
        mb.block_size,
        a.cols,
    )?;
    let alpha = global_alpha(ma.global_scale, mb.global_scale)?;
    let ops_per_output = plan.chunks().len() as u64;
    // Each unit of parallel work owns a disjoint rectangle of the mapped output:
    // (rows, cols, values row-major, MMA instructions, datapath operations).
    type Block = (
        std::ops::Range<usize>,
        std::ops::Range<usize>,
        Vec<f32>,
        u64,
        u64,
    );
    let blocks: Vec<Block> = match t.dataflow {
        Dataflow::OutputStationary => {
            let instr = core.instr(a.scheme, b.scheme)?;
            let step = instr.n_step() as usize;
            let (tm, tn, tk) = (t.tile_m as usize, t.tile_n as usize, t.tile_k as usize);
            let (im, inn, ik) = (t.instr_m as usize, t.instr_n as usize, t.instr_k as usize);
            if tm == 0 || tn == 0 || tk == 0 || im == 0 || inn == 0 || ik == 0 || step == 0 {
                return Err(Error::invalid("tiling has a zero tile or instruction size"));
            }
            let (tiles_m, tiles_n) = (t.tiles_m as usize, t.tiles_n as usize);
            // Raster order of the tiling (results do not depend on it: tiles are disjoint).
            let order: Vec<(usize, usize)> = match t.loop_order {
                super::config::LoopOrder::MOuter => (0..tiles_m)
                    .flat_map(|i| (0..tiles_n).map(move |j| (i, j)))
                    .collect(),
                super::config::LoopOrder::NOuter => (0..tiles_n)
                    .flat_map(|j| (0..tiles_m).map(move |i| (i, j)))
                    .collect(),
            };
            let k_steps = t.k_steps as usize;
            let k = a.cols;
            order
                .par_iter()
                .map(|&(ti, tj)| -> Result<Block> {
                    let rows = ti * tm..((ti + 1) * tm).min(pm);
                    let cols = tj * tn..((tj + 1) * tn).min(pn);
                    let (r, w) = (rows.len(), cols.len());
                    let mut st = Stepper::new(&plan, alpha);
                    let mut acc: Vec<OutputAcc> = Vec::with_capacity(r * w);
                    for i in rows.clone() {
                        for j in cols.clone() {
                            acc.push(st.begin(c_mapped(i, j)));
                        }
                    }
                    let n_subs = w.div_ceil(step) * step;
                    let n_subs = n_subs.div_ceil(inn);
                    let mut instrs = 0u64;
                    let mut ops = 0u64;
                    for ks in 0..k_steps {
                        let k0 = ks * tk;
                        let k1 = (k0 + tk).min(k);
                        let mut kk = k0;
                        while kk < k1 {
                            let ke = (kk + ik).min(k1);
                            for mb0 in (0..r).step_by(im) {
                                for ns in 0..n_subs {
                                    instrs += 1;
                                    for li in mb0..(mb0 + im).min(r) {
                                        let ar = row(ma, rows.start + li);
                                        for lj in (ns * inn).min(w)..((ns + 1) * inn).min(w) {
                                            let br = row(mb, cols.start + lj);
                                            ops +=
                                                st.run_until(&mut acc[li * w + lj], &ar, &br, ke)?
                                                    as u64;
                                        }
                                    }
                                }
                            }
                            kk = ke;
                        }
                    }
                    let vals = acc.iter().map(|s| st.finish(s)).collect::<Result<_>>()?;
                    Ok((rows, cols, vals, instrs, ops))
                })
                .collect::<Result<_>>()?
        }
        Dataflow::WeightStationary => {
            let (cols_per, kr) = (t.tile_n as usize, t.tile_k as usize);
            if cols_per == 0 || kr == 0 {
                return Err(Error::invalid("tiling has a zero fold size"));
            }
            let (folds_n, folds_k) = (t.tiles_n as usize, t.k_steps as usize);
            let k = a.cols;
            (0..folds_n)
                .into_par_iter()
                .map(|nf| -> Result<Block> {
                    let cols = nf * cols_per..((nf + 1) * cols_per).min(pn);
                    let w = cols.len();
                    let mut st = Stepper::new(&plan, alpha);
                    let mut acc: Vec<OutputAcc> = Vec::with_capacity(pm * w);
                    for i in 0..pm {
                        for j in cols.clone() {
                            acc.push(st.begin(c_mapped(i, j)));
                        }
                    }
                    let mut instrs = 0u64;
                    let mut ops = 0u64;
                    for kf in 0..folds_k {
                        let ke = ((kf + 1) * kr).min(k);
                        instrs += 1;
                        for i in 0..pm {
                            let ar = row(ma, i);
                            for lj in 0..w {
                                let br = row(mb, cols.start + lj);
                                ops += st.run_until(&mut acc[i * w + lj], &ar, &br, ke)? as u64;
                            }
                        }
                    }
                    let vals = acc.iter().map(|s| st.finish(s)).collect::<Result<_>>()?;
                    Ok((0..pm, cols, vals, instrs, ops))
                })
                .collect::<Result<_>>()?
        }
    };
    let mut d = vec![0f32; m * n];
    let mut instructions = 0u64;
    let mut outputs = 0u64;
    let mut datapath_ops = 0u64;
    for (rows, cols, vals, ins, ops) in blocks {
        instructions += ins;
        datapath_ops += ops;
        let w = cols.len();
        for (li, i) in rows.clone().enumerate() {
            for (lj, j) in cols.clone().enumerate() {
                let v = vals[li * w + lj];
                if t.swapped {
                    d[j * n + i] = v;
                } else {
                    d[i * n + j] = v;
                }
                outputs += 1;
            }
        }
    }
    if outputs != (m * n) as u64 {
        return Err(Error::invalid(format!(
            "the tiling covered {outputs} outputs, expected {}",
            m * n
        )));
    }
    if datapath_ops != outputs * ops_per_output {
        return Err(Error::invalid(format!(
            "the functional GEMM executed {datapath_ops} datapath operations, expected {} ({ops_per_output} per output)",
            outputs * ops_per_output
        )));
    }
    if instructions != t.instructions {
        return Err(Error::invalid(format!(
            "the functional GEMM executed {instructions} MMA instructions but the cycle model's tiling counts {} (hardware '{}', tile {} x {} x {}, instruction {} x {} x {})",
            t.instructions, core.name, t.tile_m, t.tile_n, t.tile_k, t.instr_m, t.instr_n, t.instr_k
        )));
    }
    Ok(TiledGemm {
        d,
        instructions,
        datapath_ops,
        report,
    })
}
