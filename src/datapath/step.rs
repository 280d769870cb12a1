//! One output's reduction, resumable between instructions: what a tiled GEMM (the cycle
//! simulator's tile and K-step order, `sim::functional`) needs to carry each output's
//! accumulator across K steps exactly as the hardware keeps it in its accumulator registers.
//!
//! [`Stepper`] runs the same instruction sequence ([`Plan`]'s `instruction_chunks`), the same
//! accumulator initialisation, promotion, output rounding and global-scale epilogue as
//! [`super::gemm`]'s general path, but lets the caller stop after any instruction and resume
//! later. The state in between ([`OutputAcc`]) is the datapath's full internal state (the
//! accumulator in its own format, the outer FP32 accumulator and the elements since the last
//! promotion), so splitting a reduction never adds a rounding. Tested equal to [`super::gemm`]
//! bit for bit for every preset (`tests/sim_functional.rs`).

use super::engine::{epilogue, instruction, OperandRow, Plan, Term};
use super::float::{add_exact, round_fp, FloatFormat, Fp, RoundMode};
use crate::error::{Error, Result};

/// The carried state of one output between instructions: the accumulator (in the datapath's
/// accumulator format), the outer FP32 accumulator of promoting datapaths, the elements
/// accumulated since the last promotion, and how many of the plan's instructions have run.
#[derive(Debug, Clone, Copy)]
pub struct OutputAcc {
    c: Fp,
    outer: Fp,
    acc: Fp,
    since: usize,
    next: usize,
}

impl OutputAcc {
    /// Instructions of the plan already executed for this output.
    pub fn executed(&self) -> usize {
        self.next
    }
}

impl Plan {
    /// The instruction sequence `(start, len)` along K of one output.
    pub fn chunks(&self) -> &[(usize, usize)] {
        &self.chunks
    }
}

/// Runs outputs of one [`Plan`] instruction by instruction (with scratch space reused across
/// calls). `alpha` is the global-scale factor of [`super::global_alpha`]: when present the MMA
/// runs from a zero accumulator and `D = fma(alpha, D_mma, C)` is applied at [`Stepper::finish`],
/// as [`super::gemm`] does.
pub struct Stepper<'p> {
    plan: &'p Plan,
    alpha: Option<Fp>,
    terms: Vec<Term>,
    members: Vec<(bool, u64, i32, i32)>,
}

impl<'p> Stepper<'p> {
    /// A stepper for `plan` with the global-scale factor `alpha`.
    pub fn new(plan: &'p Plan, alpha: Option<Fp>) -> Self {
        Stepper {
            plan,
            alpha,
            terms: Vec::with_capacity(64),
            members: Vec::with_capacity(64),
        }
    }

    /// The state of an output before its first instruction, from the FP32 accumulator input
    /// `c` (flushed when the datapath flushes subnormal inputs; rounded into the accumulator
    /// format, or held in the outer accumulator when the datapath promotes).
    pub fn begin(&self, c: f32) -> OutputAcc {
        let cfg = &self.plan.cfg;
        let cf = Fp::from_f32_bits(c.to_bits());
        let start = if self.alpha.is_some() { Fp::ZERO } else { cf };
        let start = match start {
            Fp::Finite { neg, sig, exp }
                if cfg.ftz_inputs && (sig as u128) < (1u128 << 23) && exp == -149 =>
            {
                Fp::Zero { neg }
            }
            other => other,
        };
        let promote = cfg.promote_every > 0;
        OutputAcc {
            c: cf,
            outer: start,
            acc: if promote {
                Fp::ZERO
            } else {
                round_fp(start, cfg.accumulator, cfg.acc_rounding, cfg.ftz_outputs)
            },
            since: 0,
            next: 0,
        }
    }

    /// Run, in order, every not yet executed instruction of `st` whose last element lies
    /// before `end` (an exclusive K index). `a` and `b` are the output's full operand rows.
    /// Returns the number of instructions run.
    pub fn run_until(
        &mut self,
        st: &mut OutputAcc,
        a: &OperandRow,
        b: &OperandRow,
        end: usize,
    ) -> Result<usize> {
        let cfg = &self.plan.cfg;
        let chunks = &self.plan.chunks;
        let mut ran = 0;
        while let Some(&(s, l)) = chunks.get(st.next) {
            if s + l > end {
                break;
            }
            st.acc = instruction(
                self.plan,
                a,
                b,
                s,
                l,
                st.acc,
                &mut self.terms,
                &mut self.members,
            )?;
            st.since += l;
            if cfg.promote_every > 0 && st.since >= cfg.promote_every {
                st.outer = add_exact(st.outer, st.acc, FloatFormat::FP32, RoundMode::Rne, false);
                st.acc = Fp::ZERO;
                st.since = 0;
            }
            st.next += 1;
            ran += 1;
        }
        Ok(ran)
    }

    /// The output (FP32 bits as f32) once every instruction has run: final promotion, output
    /// rounding and the global-scale epilogue. An output with instructions left is an error.
    pub fn finish(&self, st: &OutputAcc) -> Result<f32> {
        let cfg = &self.plan.cfg;
        if st.next != self.plan.chunks.len() {
            return Err(Error::invalid(format!(
                "output finished after {} of its {} datapath instructions",
                st.next,
                self.plan.chunks.len()
            )));
        }
        let fin = if cfg.promote_every > 0 {
            add_exact(st.outer, st.acc, FloatFormat::FP32, RoundMode::Rne, false)
        } else {
            st.acc
        };
        let r = round_fp(fin, cfg.output, cfg.output_rounding, cfg.ftz_outputs);
        let r = match self.alpha {
            None => r,
            Some(al) => epilogue(al, r, st.c, cfg),
        };
        Ok(f32::from_bits(r.to_f32_bits(cfg.nan_bits)))
    }
}
