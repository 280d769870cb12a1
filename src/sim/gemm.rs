//! Cycle-approximate simulation of one GEMM (or a batch of identical GEMMs) on a
//! [`TensorCoreConfig`].
//!
//! Output-stationary: the output is cut into `tile_m x tile_n` tiles, handed to cores in
//! raster order, `cores` at a time ("waves"). Every tile streams K in stages of `tile_k`:
//! each stage loads the A and B panels (elements and scales) from off-chip memory (through the
//! shared cache, where tiles running together share panels) into the core's buffer, then the
//! MMA units issue `ceil(rows/M) x ceil(cols/N) x ceil(tile_k/K)` instructions. With double
//! buffering, stage i+1 loads while stage i computes. At the end the accumulator tile drains
//! (pipeline latency) and is stored. Times are evaluated per wave from the classes of tiles in
//! it (full, edge in M, edge in N, corner), so the cost is O(waves), not O(instructions).
//!
//! Weight-stationary: SCALE-Sim's model, with one fold per instruction.

use super::config::{Dataflow, LoopOrder, MmaInstr, TensorCoreConfig, TileOverride};
use crate::error::{Error, Result};
use crate::mx::Scheme;
use serde::{Deserialize, Serialize};

/// One GEMM `C[M x N] = A[M x K] * B[N x K]^T`, repeated `count` times with different data
/// (for example one per attention head group). A and B are block-scaled along K.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmShape {
    /// Rows of A and C.
    pub m: u64,
    /// Rows of B (columns of C).
    pub n: u64,
    /// The reduction dimension.
    pub k: u64,
    /// Number of independent GEMMs of this shape.
    pub count: u64,
    /// Scheme of A (activations).
    pub a: Scheme,
    /// Scheme of B (weights).
    pub b: Scheme,
    /// Bytes per output element written back (2 for BF16, 4 for FP32).
    pub out_bytes: u32,
}

impl GemmShape {
    /// One GEMM with BF16 output.
    pub fn new(m: u64, n: u64, k: u64, a: Scheme, b: Scheme) -> Self {
        GemmShape {
            m,
            n,
            k,
            count: 1,
            a,
            b,
            out_bytes: 2,
        }
    }

    /// The same shape repeated `count` times.
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = count;
        self
    }

    /// Useful multiply-accumulates.
    pub fn macs(&self) -> u64 {
        self.m * self.n * self.k * self.count
    }
}

/// Bytes of one row of `k` elements of a scheme: packed elements plus one scale byte per
/// block (32 for MX, 16 for NVFP4).
pub fn row_bytes(s: Scheme, k: u64) -> u64 {
    elem_bytes(s, k) + scale_bytes(s, k)
}

/// Packed element bytes of `k` elements.
pub fn elem_bytes(s: Scheme, k: u64) -> u64 {
    (k * s.element().bits() as u64).div_ceil(8)
}

/// Scale bytes of a row of `k` elements (E8M0 or UE4M3: one byte per block).
pub fn scale_bytes(s: Scheme, k: u64) -> u64 {
    k.div_ceil(s.default_block() as u64)
}

/// Bytes of per-tensor scales (NVFP4's FP32 tensor scale).
pub fn tensor_scale_bytes(s: Scheme) -> u64 {
    if s == Scheme::Nvfp4 {
        4
    } else {
        0
    }
}

/// How a GEMM is cut into tiles and instructions: what the cycle model assumes, and what a
/// functional GEMM can follow to produce the same results in the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tiling {
    /// The dataflow.
    pub dataflow: Dataflow,
    /// Whether the operands are swapped (C^T = B A^T): `m`/`n` below are then the original
    /// N and M.
    pub swapped: bool,
    /// Rows of the mapped problem.
    pub m: u64,
    /// Columns of the mapped problem.
    pub n: u64,
    /// Reduction depth.
    pub k: u64,
    /// Independent GEMMs.
    pub count: u64,
    /// Output rows per tile (output-stationary) or streamed rows T per fold (weight-stationary).
    pub tile_m: u64,
    /// Output columns per tile (weight-stationary: array columns).
    pub tile_n: u64,
    /// K per pipeline stage (weight-stationary: K held in the array per fold).
    pub tile_k: u64,
    /// Tiles (folds) along M.
    pub tiles_m: u64,
    /// Tiles (folds) along N.
    pub tiles_n: u64,
    /// K stages per tile (weight-stationary: K folds).
    pub k_steps: u64,
    /// Raster order of tiles over cores.
    pub loop_order: LoopOrder,
    /// Instruction shape (M, N, K).
    pub instr_m: u32,
    /// Instruction N (maximum).
    pub instr_n: u32,
    /// Instruction K.
    pub instr_k: u32,
    /// Total MMA instructions (weight-stationary: folds).
    pub instructions: u64,
    /// Buffer stages (2 = double buffered).
    pub stages: u32,
    /// Waves of `cores` tiles.
    pub waves: u64,
    /// Datapath preset name of the instruction.
    pub datapath: String,
}

/// Where the cycles of the critical path went. The fields sum to the total cycles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StallBreakdown {
    /// MMA units busy (slowest core of each wave).
    pub compute: u64,
    /// Extra cycles because instructions could not issue faster (issue interval).
    pub issue: u64,
    /// Extra cycles because the per-core buffer could not feed the MMA units.
    pub buffer_bandwidth: u64,
    /// Waiting for off-chip memory beyond the overlapped compute.
    pub offchip_bandwidth: u64,
    /// Waiting for the shared cache beyond the overlapped compute.
    pub l2_bandwidth: u64,
    /// Pipeline fill: the first stage's load (or last stage's compute) that double buffering
    /// cannot hide.
    pub fill: u64,
    /// Accumulator drain (pipeline latency) at the end of each tile.
    pub pipeline: u64,
    /// Storing output tiles.
    pub store: u64,
}

impl StallBreakdown {
    /// Sum of all fields (equals the total cycles).
    pub fn total(&self) -> u64 {
        self.compute
            + self.issue
            + self.buffer_bandwidth
            + self.offchip_bandwidth
            + self.l2_bandwidth
            + self.fill
            + self.pipeline
            + self.store
    }

    fn add(&mut self, o: &StallBreakdown) {
        self.compute += o.compute;
        self.issue += o.issue;
        self.buffer_bandwidth += o.buffer_bandwidth;
        self.offchip_bandwidth += o.offchip_bandwidth;
        self.l2_bandwidth += o.l2_bandwidth;
        self.fill += o.fill;
        self.pipeline += o.pipeline;
        self.store += o.store;
    }
}

/// Energy estimate in joules (only when the configuration gives energies).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyReport {
    /// Total.
    pub total_j: f64,
    /// Multiply-accumulates.
    pub mac_j: f64,
    /// Off-chip traffic.
    pub offchip_j: f64,
    /// Shared-cache traffic.
    pub l2_j: f64,
    /// Per-core buffer reads.
    pub buffer_j: f64,
}

/// Whether the run is limited by compute or by memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// MMA issue dominates.
    Compute,
    /// Data movement dominates.
    Memory,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bound::Compute => "compute",
            Bound::Memory => "memory",
        })
    }
}

/// The cycle report of one GEMM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmReport {
    /// The tiling simulated.
    pub tiling: Tiling,
    /// Total cycles.
    pub cycles: u64,
    /// Cycles the MMA units alone need (compute plus issue limits, no memory stalls): for
    /// weight-stationary, SCALE-Sim's compute cycles.
    pub compute_cycles: u64,
    /// Wall time in seconds at the configured clock.
    pub time_s: f64,
    /// Useful multiply-accumulates (M x N x K x count).
    pub macs: u64,
    /// Multiply-accumulates executed including instruction padding.
    pub executed_macs: u64,
    /// Useful MACs / (cycles x cores x peak MACs per cycle), in [0, 1].
    pub mac_utilization: f64,
    /// Useful / executed MACs (the part of the instruction shape that does useful work).
    pub mapping_efficiency: f64,
    /// Achieved TFLOP/s (2 FLOP per useful MAC).
    pub tflops: f64,
    /// Bytes read from off-chip memory (elements, scales and tensor scales).
    pub offchip_read_bytes: u64,
    /// Of which scale bytes (block scales and tensor scales).
    pub offchip_scale_bytes: u64,
    /// Bytes written to off-chip memory (outputs and spilled partial sums).
    pub offchip_write_bytes: u64,
    /// Bytes moved from the shared cache into per-core buffers.
    pub l2_bytes: u64,
    /// Bytes read from per-core buffers by the MMA units.
    pub buffer_read_bytes: u64,
    /// FLOP per off-chip byte.
    pub arithmetic_intensity: f64,
    /// Roofline lower bound: max(compute at peak, compulsory off-chip traffic at full
    /// bandwidth), in cycles.
    pub roofline_cycles: u64,
    /// Compute- or memory-bound.
    pub bound: Bound,
    /// Where the cycles went.
    pub stalls: StallBreakdown,
    /// Energy, when the configuration has it.
    pub energy: Option<EnergyReport>,
}

fn cdiv(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

fn round_up(a: u64, b: u64) -> u64 {
    cdiv(a, b) * b.max(1)
}

/// Cycles to move `bytes` at `bpc` bytes per cycle (0 when bandwidth is unlimited).
fn xfer(bytes: u64, bpc: f64) -> u64 {
    if bytes == 0 || bpc.is_infinite() {
        0
    } else {
        (bytes as f64 / bpc).ceil() as u64
    }
}

/// The tiling the simulator uses for `shape` on `cfg` (automatically chosen unless the
/// configuration fixes tile sizes).
pub fn tiling(cfg: &TensorCoreConfig, shape: &GemmShape) -> Result<Tiling> {
    Ok(simulate_gemm(cfg, shape)?.tiling)
}

/// Simulate one GEMM shape; deterministic, single-threaded.
pub fn simulate_gemm(cfg: &TensorCoreConfig, shape: &GemmShape) -> Result<GemmReport> {
    if shape.m == 0 || shape.n == 0 || shape.k == 0 || shape.count == 0 {
        return Err(Error::invalid(format!(
            "GEMM dimensions must be >= 1 (M = {}, N = {}, K = {}, count = {})",
            shape.m, shape.n, shape.k, shape.count
        )));
    }
    if shape.out_bytes == 0 {
        return Err(Error::invalid("GEMM output bytes per element must be >= 1"));
    }
    shape
        .m
        .checked_mul(shape.n)
        .and_then(|x| x.checked_mul(shape.k))
        .and_then(|x| x.checked_mul(shape.count))
        .filter(|&x| x < (1u64 << 62))
        .ok_or_else(|| Error::invalid("GEMM too large: M x N x K x count must stay below 2^62"))?;
    let instr = cfg.instr(shape.a, shape.b)?.clone();
    let datapath = instr
        .datapath
        .clone()
        .unwrap_or_else(|| cfg.datapath.clone());
    match cfg.dataflow {
        Dataflow::OutputStationary => os::simulate(cfg, shape, &instr, datapath),
        Dataflow::WeightStationary => ws::simulate(cfg, shape, &instr, datapath),
    }
}

/// Fill the derived fields of a report.
#[allow(clippy::too_many_arguments)]
fn finish(
    cfg: &TensorCoreConfig,
    shape: &GemmShape,
    instr: &MmaInstr,
    tiling: Tiling,
    stalls: StallBreakdown,
    compute_cycles: u64,
    executed_macs: u64,
    off_read: u64,
    off_scale: u64,
    off_write: u64,
    l2: u64,
    buf: u64,
    memory_time: u64,
    peak_macs_per_cycle: f64,
) -> GemmReport {
    let cycles = stalls.total().max(1);
    let macs = shape.macs();
    let peak = peak_macs_per_cycle * cfg.cores as f64;
    let time_s = cycles as f64 / (cfg.clock_ghz * 1e9);
    // Compulsory off-chip traffic: A, B (with scales) and C once each.
    let compulsory = shape.count
        * (shape.m * row_bytes(shape.a, shape.k)
            + shape.n * row_bytes(shape.b, shape.k)
            + tensor_scale_bytes(shape.a)
            + tensor_scale_bytes(shape.b)
            + shape.m * shape.n * shape.out_bytes as u64);
    let compute_ideal = (macs as f64 / peak).ceil() as u64;
    let memory_ideal = xfer(compulsory, cfg.offchip_bytes_per_cycle());
    let energy = energy(cfg, instr, macs, off_read + off_write, l2, buf);
    let flops = 2.0 * macs as f64;
    GemmReport {
        tiling,
        cycles,
        compute_cycles,
        time_s,
        macs,
        executed_macs,
        mac_utilization: (macs as f64 / (cycles as f64 * peak)).min(1.0),
        mapping_efficiency: macs as f64 / executed_macs.max(1) as f64,
        tflops: flops / time_s / 1e12,
        offchip_read_bytes: off_read,
        offchip_scale_bytes: off_scale,
        offchip_write_bytes: off_write,
        l2_bytes: l2,
        buffer_read_bytes: buf,
        arithmetic_intensity: flops / (off_read + off_write).max(1) as f64,
        roofline_cycles: compute_ideal.max(memory_ideal),
        bound: if memory_time > compute_cycles {
            Bound::Memory
        } else {
            Bound::Compute
        },
        stalls,
        energy,
    }
}

fn energy(
    cfg: &TensorCoreConfig,
    instr: &MmaInstr,
    macs: u64,
    off: u64,
    l2: u64,
    buf: u64,
) -> Option<EnergyReport> {
    if instr.pj_per_mac.is_none() && cfg.energy.is_none() {
        return None;
    }
    let e = cfg.energy.clone().unwrap_or_default();
    let pj = 1e-12;
    let mac_j = instr.pj_per_mac.unwrap_or(0.0) * macs as f64 * pj;
    let offchip_j = e.offchip_pj_per_byte * off as f64 * pj;
    let l2_j = e.l2_pj_per_byte * l2 as f64 * pj;
    let buffer_j = e.buffer_pj_per_byte * buf as f64 * pj;
    Some(EnergyReport {
        total_j: mac_j + offchip_j + l2_j + buffer_j,
        mac_j,
        offchip_j,
        l2_j,
        buffer_j,
    })
}

mod os {
    //! Output-stationary (tensor-core) model.
    use super::*;

    /// The mapped problem: operands possibly swapped.
    #[derive(Clone, Copy)]
    pub(super) struct Problem {
        pub m: u64,
        pub n: u64,
        pub k: u64,
        pub count: u64,
        pub row_a: u64,
        pub row_b: u64,
        pub scale_row_a: u64,
        pub scale_row_b: u64,
        pub tensor_scales: u64,
        pub out_bytes: u64,
    }

    /// One tile class (full, edge-M, edge-N, corner).
    #[derive(Clone, Copy, Default)]
    struct Class {
        /// MMA cycles including issue limits.
        cyc: u64,
        /// MMA cycles at full occupancy (no issue floor).
        pure: u64,
        /// Critical compute time: max(cyc, buffer read time).
        crit: u64,
        /// Buffer bytes read (A and B panels over K).
        rd: u64,
        /// Output bytes stored.
        st: u64,
        instrs: u64,
        exec_macs: u64,
    }

    pub(super) struct Plan {
        pub tm: u64,
        pub tn: u64,
        pub tk: u64,
        pub stages: u32,
    }

    fn class(cfg: &TensorCoreConfig, p: &Problem, ins: &MmaInstr, r: u64, c: u64) -> Class {
        let im = ins.m as u64;
        let inn = ins.n as u64;
        let ik = ins.k as u64;
        let step = ins.n_step() as u64;
        let mi = cdiv(r, im);
        let ki = cdiv(p.k, ik);
        let c_pad = round_up(c, step);
        let full = c_pad / inn;
        let rem = c_pad % inn;
        let occ_pure = |w: u64| cdiv(ins.cycles as u64 * w, inn);
        let occ = |w: u64| occ_pure(w).max(cfg.issue_interval as u64);
        let per_row = full * occ(inn) + if rem > 0 { occ(rem) } else { 0 };
        let per_row_pure = full * occ_pure(inn) + if rem > 0 { occ_pure(rem) } else { 0 };
        let cyc = mi * ki * per_row;
        let pure = mi * ki * per_row_pure;
        let rd = r * p.row_a + c * p.row_b;
        Class {
            cyc,
            pure,
            crit: cyc.max(xfer(rd, cfg.buffer_bytes_per_cycle)),
            rd,
            st: r * c * p.out_bytes,
            instrs: mi * ki * (full + u64::from(rem > 0)),
            exec_macs: mi * im * ki * ik * c_pad,
        }
    }

    /// Counts of indices x in [0, n) of a raster (outer, inner) with `po` outer and `pi`
    /// inner positions per GEMM, by edge flags. Returns [neither, edge-outer only,
    /// edge-inner only, both].
    fn prefix(x: u64, po: u64, pi: u64) -> [u64; 4] {
        let per = po * pi;
        let g = x / per;
        let r = x % per;
        // Edge outer: the last outer row of each GEMM (pi indices).
        let eo = g * pi + r.saturating_sub((po - 1) * pi);
        // Edge inner: the last index of every outer row.
        let ei = x / pi;
        // Both: the last index of each GEMM.
        let both = g;
        [x + both - eo - ei, eo - both, ei - both, both]
    }

    /// Unique panels (full, edge) along the inner axis in the index range [s0, s1) of one GEMM.
    fn inner_unique(s0: u64, s1: u64, pi: u64) -> (u64, u64) {
        let len = s1 - s0;
        if len >= pi {
            return (pi - 1, 1);
        }
        let j0 = s0 % pi;
        let j1 = (s1 - 1) % pi;
        let edge = j0 > j1 || j1 == pi - 1;
        (len - u64::from(edge), u64::from(edge))
    }

    pub(super) struct Eval {
        pub stalls: StallBreakdown,
        pub compute_cycles: u64,
        pub memory_time: u64,
        pub exec_macs: u64,
        pub instrs: u64,
        pub off_read: u64,
        pub off_scale: u64,
        pub off_write: u64,
        pub l2: u64,
        pub buf: u64,
        pub waves: u64,
    }

    pub(super) fn evaluate(
        cfg: &TensorCoreConfig,
        p: &Problem,
        ins: &MmaInstr,
        plan: &Plan,
    ) -> Eval {
        let (tm, tn, tk) = (plan.tm, plan.tn, plan.tk);
        let ti = cdiv(p.m, tm);
        let tj = cdiv(p.n, tn);
        let em = p.m - (ti - 1) * tm;
        let en = p.n - (tj - 1) * tn;
        let ks = cdiv(p.k, tk);
        // Classes indexed by [edge_m][edge_n].
        let cls = [
            [class(cfg, p, ins, tm, tn), class(cfg, p, ins, tm, en)],
            [class(cfg, p, ins, em, tn), class(cfg, p, ins, em, en)],
        ];
        // Raster: outer/inner axes.
        let m_outer = cfg.loop_order == LoopOrder::MOuter;
        let (po, pi) = if m_outer { (ti, tj) } else { (tj, ti) };
        let per = po * pi;
        let total = per * p.count;
        let cores = cfg.cores as u64;
        let waves = cdiv(total, cores);
        let off_bpc = cfg.offchip_bytes_per_cycle();
        let share = cfg.l2_bytes > 0;
        let lat = cfg.pipeline_latency as u64;
        let double = plan.stages >= 2;
        let mut ev = Eval {
            stalls: StallBreakdown::default(),
            compute_cycles: 0,
            memory_time: 0,
            exec_macs: 0,
            instrs: 0,
            off_read: 0,
            off_scale: 0,
            off_write: 0,
            l2: 0,
            buf: 0,
            waves,
        };
        // Bytes of a panel of `rows` rows along the outer / inner axis.
        let (row_o, row_i, so, si, full_o, edge_o, full_i, edge_i) = if m_outer {
            (
                p.row_a,
                p.row_b,
                p.scale_row_a,
                p.scale_row_b,
                tm,
                em,
                tn,
                en,
            )
        } else {
            (
                p.row_b,
                p.row_a,
                p.scale_row_b,
                p.scale_row_a,
                tn,
                en,
                tm,
                em,
            )
        };
        let mut wave_eval = |t0: u64, t1: u64, first: bool, reps: u64| {
            let a = prefix(t0, po, pi);
            let b = prefix(t1, po, pi);
            let cnt: [u64; 4] = [b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3]];
            // Map (edge outer, edge inner) to (edge m, edge n).
            let pick = |eo: usize, ei: usize| -> &Class {
                if m_outer {
                    &cls[eo][ei]
                } else {
                    &cls[ei][eo]
                }
            };
            let order = [(0, 0), (1, 0), (0, 1), (1, 1)];
            let mut crit = 0;
            let mut cyc = 0;
            let mut pure = 0;
            let mut rd = 0;
            let mut st = 0;
            for (idx, &(eo, ei)) in order.iter().enumerate() {
                if cnt[idx] == 0 {
                    continue;
                }
                let c = pick(eo, ei);
                crit = crit.max(c.crit);
                cyc = cyc.max(c.cyc);
                pure = pure.max(c.pure);
                rd += cnt[idx] * c.rd;
                st += cnt[idx] * c.st;
                ev.exec_macs += reps * cnt[idx] * c.exec_macs;
                ev.instrs += reps * cnt[idx] * c.instrs;
            }
            // Off-chip bytes: unique panels when the shared cache lets tiles share them.
            let (off, off_sc) = if share {
                let u0 = t0 / pi;
                let u1 = (t1 - 1) / pi;
                let n_u = u1 - u0 + 1;
                let e_u = (u1 + 1) / po - u0 / po;
                let mut ui_full = 0;
                let mut ui_edge = 0;
                let g0 = t0 / per;
                let g1 = (t1 - 1) / per;
                for g in g0..=g1 {
                    let s0 = t0.max(g * per) - g * per;
                    let s1 = t1.min((g + 1) * per) - g * per;
                    let (f, e) = inner_unique(s0, s1, pi);
                    ui_full += f;
                    ui_edge += e;
                }
                let rows_o = (n_u - e_u) * full_o + e_u * edge_o;
                let rows_i = ui_full * full_i + ui_edge * edge_i;
                (rows_o * row_o + rows_i * row_i, rows_o * so + rows_i * si)
            } else {
                let mut sc = 0;
                for (idx, &(eo, ei)) in order.iter().enumerate() {
                    let (r_o, r_i) = (
                        if eo == 1 { edge_o } else { full_o },
                        if ei == 1 { edge_i } else { full_i },
                    );
                    sc += cnt[idx] * (r_o * so + r_i * si);
                }
                (rd, sc)
            };
            let off = off + if first { p.tensor_scales } else { 0 };
            let off_sc = off_sc + if first { p.tensor_scales } else { 0 };
            let l2 = if share { rd } else { 0 };
            // Double buffered: the output tile's store shares the off-chip port with the
            // loads and overlaps the MMAs (epilogue overlapped with the next tile's main
            // loop). Single buffered: loads, MMAs and the store run one after the other.
            let t_off = if double {
                xfer(off + st, off_bpc)
            } else {
                xfer(off, off_bpc)
            };
            let t_l2 = if share {
                xfer(l2, cfg.l2_bytes_per_cycle)
            } else {
                0
            };
            let load = t_off.max(t_l2);
            let store = if double { 0 } else { xfer(st, off_bpc) };
            let mut s = StallBreakdown {
                compute: pure,
                issue: cyc - pure,
                buffer_bandwidth: crit - cyc,
                pipeline: lat,
                store,
                ..Default::default()
            };
            let mem_stall;
            if double {
                mem_stall = load.saturating_sub(crit);
                s.fill = cdiv(crit.min(load), ks);
            } else {
                mem_stall = load;
            }
            if t_off >= t_l2 {
                s.offchip_bandwidth = mem_stall;
            } else {
                s.l2_bandwidth = mem_stall;
            }
            let scaled = StallBreakdown {
                compute: s.compute * reps,
                issue: s.issue * reps,
                buffer_bandwidth: s.buffer_bandwidth * reps,
                offchip_bandwidth: s.offchip_bandwidth * reps,
                l2_bandwidth: s.l2_bandwidth * reps,
                fill: s.fill * reps,
                pipeline: s.pipeline * reps,
                store: s.store * reps,
            };
            ev.stalls.add(&scaled);
            ev.compute_cycles += reps * cyc;
            ev.memory_time += reps * (load + store);
            ev.off_read += reps * off;
            ev.off_scale += reps * off_sc;
            ev.off_write += reps * st;
            ev.l2 += reps * l2;
            ev.buf += reps * rd;
        };
        if cores == 1 && !share {
            // One tile per wave and no sharing: every tile of a class costs the same, so
            // evaluate one representative per class and multiply.
            let counts = prefix(total, po, pi);
            // Representative index of each class within GEMM 0: neither edge, edge outer
            // only, edge inner only, both.
            let reps_idx = [0, (po - 1) * pi, pi - 1, per - 1];
            for (c, &ix) in reps_idx.iter().enumerate() {
                if counts[c] > 0 {
                    wave_eval(ix, ix + 1, false, counts[c]);
                }
            }
            // Per-tensor scales, loaded once before the first tile.
            let ts = p.tensor_scales;
            ev.off_read += ts;
            ev.off_scale += ts;
            ev.stalls.fill += xfer(ts, off_bpc);
            ev.memory_time += xfer(ts, off_bpc);
        } else {
            for w in 0..waves {
                let t0 = w * cores;
                let t1 = (t0 + cores).min(total);
                wave_eval(t0, t1, w == 0, 1);
            }
        }
        ev
    }

    fn plan_fits(cfg: &TensorCoreConfig, p: &Problem, tm: u64, tn: u64, tk: u64) -> Option<u32> {
        if tm * tn > cfg.accumulators {
            return None;
        }
        // One stage: A and B panels of tk elements (plus scales).
        let _ = p;
        let stage = tm * p_row(p.row_a, p.k, tk) + tn * p_row(p.row_b, p.k, tk);
        if cfg.double_buffer && 2 * stage <= cfg.buffer_bytes {
            Some(2)
        } else if stage <= cfg.buffer_bytes {
            Some(1)
        } else {
            None
        }
    }

    /// Bytes of `tk` elements of a row whose full K bytes are `row` (proportional share).
    fn p_row(row: u64, k: u64, tk: u64) -> u64 {
        cdiv(row * tk.min(k), k)
    }

    pub(super) fn simulate(
        cfg: &TensorCoreConfig,
        shape: &GemmShape,
        ins: &MmaInstr,
        datapath: String,
    ) -> Result<GemmReport> {
        let mk = |swap: bool| {
            let (m, n, a, b) = if swap {
                (shape.n, shape.m, shape.b, shape.a)
            } else {
                (shape.m, shape.n, shape.a, shape.b)
            };
            Problem {
                m,
                n,
                k: shape.k,
                count: shape.count,
                row_a: row_bytes(a, shape.k),
                row_b: row_bytes(b, shape.k),
                scale_row_a: scale_bytes(a, shape.k),
                scale_row_b: scale_bytes(b, shape.k),
                tensor_scales: tensor_scale_bytes(a) + tensor_scale_bytes(b),
                out_bytes: shape.out_bytes as u64,
            }
        };
        let im = ins.m as u64;
        let step = ins.n_step() as u64;
        let ik = ins.k as u64;
        let mut candidates: Vec<(bool, u64, u64, u64)> = Vec::new();
        let swaps: &[bool] = if cfg.allow_swap && shape.m != shape.n {
            &[false, true]
        } else {
            &[false]
        };
        match &cfg.tile {
            Some(TileOverride { m, n, k }) => {
                let (m, n, k) = (*m as u64, *n as u64, *k as u64);
                if m % im != 0 || n % step != 0 || k % ik != 0 {
                    return Err(Error::invalid(format!(
                        "tile {m} x {n} x {k} must be multiples of the instruction's M ({im}), N step ({step}) and K ({ik})"
                    )));
                }
                candidates.push((false, m, n, k));
            }
            None => {
                // Stage depth: at least 128 elements of K (and one instruction).
                let tk = round_up(128, ik).max(ik);
                for &sw in swaps {
                    let p = mk(sw);
                    let m_cap = round_up(p.m, im).next_power_of_two().max(im);
                    let n_cap = round_up(p.n, step).next_power_of_two().max(step);
                    let tk = tk.min(round_up(p.k, ik));
                    for a in 0..7 {
                        let tm = im << a;
                        if tm > m_cap.max(im) {
                            break;
                        }
                        for b in 0..10 {
                            let tn = step << b;
                            if tn > n_cap.max(step) {
                                break;
                            }
                            candidates.push((sw, tm, tn, tk));
                        }
                    }
                }
            }
        }
        let mut best: Option<(u64, bool, Plan, Eval)> = None;
        for (sw, tm, tn, tk) in candidates {
            let p = mk(sw);
            let Some(stages) = plan_fits(cfg, &p, tm, tn, tk) else {
                continue;
            };
            let plan = Plan { tm, tn, tk, stages };
            let ev = evaluate(cfg, &p, ins, &plan);
            let cyc = ev.stalls.total();
            if best.as_ref().is_none_or(|(b, ..)| cyc < *b) {
                best = Some((cyc, sw, plan, ev));
            }
        }
        let Some((_, sw, plan, ev)) = best else {
            return Err(Error::invalid(format!(
                "no tile fits hardware '{}': accumulators {} and buffer {} bytes are too small for one {} x {} x {} instruction tile",
                cfg.name, cfg.accumulators, cfg.buffer_bytes, ins.m, ins.n_step(), ins.k
            )));
        };
        let p = mk(sw);
        let tiling = Tiling {
            dataflow: Dataflow::OutputStationary,
            swapped: sw,
            m: p.m,
            n: p.n,
            k: p.k,
            count: p.count,
            tile_m: plan.tm,
            tile_n: plan.tn,
            tile_k: plan.tk,
            tiles_m: cdiv(p.m, plan.tm),
            tiles_n: cdiv(p.n, plan.tn),
            k_steps: cdiv(p.k, plan.tk),
            loop_order: cfg.loop_order,
            instr_m: ins.m,
            instr_n: ins.n,
            instr_k: ins.k,
            instructions: ev.instrs,
            stages: plan.stages,
            waves: ev.waves,
            datapath,
        };
        Ok(finish(
            cfg,
            shape,
            ins,
            tiling,
            ev.stalls,
            ev.compute_cycles,
            ev.exec_macs,
            ev.off_read,
            ev.off_scale,
            ev.off_write,
            ev.l2,
            ev.buf,
            ev.memory_time,
            ins.macs_per_cycle(),
        ))
    }
}

mod ws {
    //! Weight-stationary systolic array (SCALE-Sim).
    use super::*;

    pub(super) fn simulate(
        cfg: &TensorCoreConfig,
        shape: &GemmShape,
        ins: &MmaInstr,
        datapath: String,
    ) -> Result<GemmReport> {
        let arr = cfg
            .array
            .as_ref()
            .ok_or_else(|| Error::invalid("weight-stationary needs an [array] section"))?;
        let r = arr.rows as u64;
        let c = arr.cols as u64;
        let kr = ins.k as u64; // K held per fold (rows x pairs per PE)
        let t = shape.m;
        let (m, n, k) = (shape.m, shape.n, shape.k);
        let fk = cdiv(k, kr);
        let fn_ = cdiv(n, c);
        let per = fk * fn_;
        let total = per * shape.count;
        let cores = cfg.cores as u64;
        let waves = cdiv(total, cores);
        // SCALE-Sim: every fold takes 2R + C + T - 2 cycles (array padded to full size).
        let fold_cycles = 2 * r + c + t - 2;
        let (a, b) = (shape.a, shape.b);
        let out = shape.out_bytes as u64;
        let a_total = m * row_bytes(a, k);
        let a_resident = a_total <= cfg.buffer_bytes / 2;
        let psum_resident = t * c * 4 <= cfg.buffer_bytes / 4;
        let off_bpc = cfg.offchip_bytes_per_cycle();
        // Fold f of GEMM g: n-fold outer, k-fold inner. Returns (in bytes, scale bytes,
        // out bytes, buffer read bytes, executed MACs).
        let fold = |idx: u64| -> (u64, u64, u64, u64, u64) {
            let f = idx % per;
            let nf = f / fk;
            let kf = f % fk;
            let rows = kr.min(k - kf * kr);
            let cols = c.min(n - nf * c);
            let w = cols * row_bytes(b, rows);
            let w_sc = cols * scale_bytes(b, rows);
            let x = t * row_bytes(a, rows);
            let x_sc = t * scale_bytes(a, rows);
            let mut inb = w;
            let mut sc = w_sc;
            if !a_resident || nf == 0 {
                inb += x;
                sc += x_sc;
            }
            let mut outb = 0;
            if kf + 1 == fk {
                outb += t * cols * out;
            } else if !psum_resident {
                outb += t * cols * 4;
            }
            if kf > 0 && !psum_resident {
                inb += t * cols * 4;
            }
            if idx == 0 {
                inb += tensor_scale_bytes(a) + tensor_scale_bytes(b);
                sc += tensor_scale_bytes(a) + tensor_scale_bytes(b);
            }
            (inb, sc, outb, w + x, kr * c * t)
        };
        let wave = |w: u64| {
            let mut acc = (0, 0, 0, 0, 0);
            for i in w * cores..((w + 1) * cores).min(total) {
                let f = fold(i);
                acc.0 += f.0;
                acc.1 += f.1;
                acc.2 += f.2;
                acc.3 += f.3;
                acc.4 += f.4;
            }
            acc
        };
        let double = cfg.double_buffer;
        let mut s = StallBreakdown::default();
        let (mut off_r, mut off_sc, mut off_w, mut buf, mut exec) = (0, 0, 0, 0, 0);
        let mut mem_time = 0;
        let mut cur = wave(0);
        s.fill = if double { xfer(cur.0, off_bpc) } else { 0 };
        for w in 0..waves {
            let next = if w + 1 < waves {
                Some(wave(w + 1))
            } else {
                None
            };
            off_r += cur.0;
            off_sc += cur.1;
            off_w += cur.2;
            buf += cur.3;
            exec += cur.4;
            s.compute += fold_cycles;
            if double {
                // The next wave's loads and this wave's stores overlap this wave's compute;
                // the last wave's stores are exposed.
                let overlapped = xfer(next.map_or(0, |n| n.0), off_bpc)
                    + if next.is_some() {
                        xfer(cur.2, off_bpc)
                    } else {
                        0
                    };
                s.offchip_bandwidth += overlapped.saturating_sub(fold_cycles);
                mem_time += overlapped;
                if next.is_none() {
                    s.store += xfer(cur.2, off_bpc);
                    mem_time += xfer(cur.2, off_bpc);
                }
            } else {
                let l = xfer(cur.0, off_bpc);
                let st = xfer(cur.2, off_bpc);
                s.offchip_bandwidth += l;
                s.store += st;
                mem_time += l + st;
            }
            if let Some(n) = next {
                cur = n;
            }
        }
        mem_time += s.fill;
        let compute_cycles = s.compute;
        let tiling = Tiling {
            dataflow: Dataflow::WeightStationary,
            swapped: false,
            m,
            n,
            k,
            count: shape.count,
            tile_m: t,
            tile_n: c,
            tile_k: kr,
            tiles_m: 1,
            tiles_n: fn_,
            k_steps: fk,
            loop_order: LoopOrder::NOuter,
            instr_m: ins.m,
            instr_n: ins.n,
            instr_k: ins.k,
            instructions: total,
            stages: if double { 2 } else { 1 },
            waves,
            datapath,
        };
        let _ = r;
        Ok(finish(
            cfg,
            shape,
            ins,
            tiling,
            s,
            compute_cycles,
            exec,
            off_r,
            off_sc,
            off_w,
            0,
            buf,
            mem_time,
            (kr * c) as f64,
        ))
    }
}
