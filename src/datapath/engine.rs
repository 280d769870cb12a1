//! The general (reference) path of the datapath model: one output at a time, instruction by
//! instruction, every step in exact integer arithmetic. Fast paths elsewhere are tested to
//! equal this path bit for bit.

use super::config::{
    AccJoin, AlignRef, DatapathConfig, Int8Mode, ScaleAt, Shifted, TermExponent, ZeroSign,
};
use super::float::{add_exact, fma_exact, round_fp, round_parts, FloatFormat, Fp, RoundMode};
use super::wide::Wide;
use crate::error::{Error, Result};
use crate::format::{decode_parts, Decoded, Format};
use crate::mx::Scheme;

/// One row (one output's reduction vector) of an operand: element codes of the `k` reduction
/// elements and the scale codes of its blocks (`scales[i / block_size]` scales element `i`).
#[derive(Debug, Clone, Copy)]
pub struct OperandRow<'a> {
    /// The operand's scheme (element and scale format).
    pub scheme: Scheme,
    /// Elements per scale block.
    pub block_size: usize,
    /// Element codes, one byte each.
    pub codes: &'a [u8],
    /// Scale codes, `ceil(codes.len() / block_size)` of them.
    pub scales: &'a [u8],
}

/// A decoded element: `(-1)^neg * sig * 2^lsb`, with `lead` the exponent a float multiplier
/// sees (`lsb + man_bits`: the leading-bit exponent of normals, `emin` for subnormals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum El {
    Zero {
        neg: bool,
    },
    Fin {
        neg: bool,
        sig: u32,
        lsb: i32,
        lead: i32,
    },
    Inf {
        neg: bool,
    },
    Nan,
}

/// A decoded scale: `sig * 2^lsb` (sig 0 for a zero UE4M3 scale), `lead` its float exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sc {
    Fin { sig: u32, lsb: i32, lead: i32 },
    Nan,
}

pub(crate) fn element_lut(fmt: Format, cfg: &DatapathConfig) -> [El; 256] {
    let mut t = [El::Nan; 256];
    let man = fmt.spec().man_bits as i32;
    for (c, slot) in t.iter_mut().enumerate() {
        *slot = match decode_parts(fmt, c as u8) {
            Decoded::Zero { neg } => El::Zero { neg },
            Decoded::Inf { neg } => El::Inf { neg },
            Decoded::Nan => El::Nan,
            Decoded::Finite { neg, sig, exp } => {
                let exp = if fmt == Format::Int8 && cfg.int8 == Int8Mode::Integer {
                    0
                } else {
                    exp
                };
                let subnormal = fmt != Format::Int8 && sig < (1 << man);
                if cfg.ftz_inputs && subnormal {
                    El::Zero { neg }
                } else {
                    // INT8 elements enter as normalized values (their leading bit's exponent);
                    // float elements with the format's exponent (emin for subnormals).
                    let lead = if fmt == Format::Int8 {
                        exp + 31 - sig.leading_zeros() as i32
                    } else {
                        exp + man
                    };
                    El::Fin {
                        neg,
                        sig,
                        lsb: exp,
                        lead,
                    }
                }
            }
        };
    }
    t
}

pub(crate) fn scale_lut(fmt: Format) -> [Sc; 256] {
    let mut t = [Sc::Nan; 256];
    let man = fmt.spec().man_bits as i32;
    for (c, slot) in t.iter_mut().enumerate() {
        *slot = match decode_parts(fmt, c as u8) {
            Decoded::Zero { .. } => Sc::Fin {
                sig: 0,
                lsb: 0,
                lead: 0,
            },
            Decoded::Finite { sig, exp, .. } => Sc::Fin {
                sig,
                lsb: exp,
                lead: exp + man,
            },
            _ => Sc::Nan,
        };
    }
    t
}

/// Instruction boundaries `(start, len)` along a reduction of `k` elements for operands of
/// schemes `a`, `b` with block sizes `ba`, `bb`: the instruction sequence the hardware issues
/// for one output. Its length is the instruction count per output.
pub fn instruction_chunks(
    cfg: &DatapathConfig,
    a: Scheme,
    ba: usize,
    b: Scheme,
    bb: usize,
    k: usize,
) -> Result<Vec<(usize, usize)>> {
    if ba == 0 || bb == 0 {
        return Err(Error::invalid("block size must be at least 1"));
    }
    let bits = a.element().bits().max(b.element().bits());
    let rule = cfg.k_rules.iter().find(|r| r.element_bits == bits);
    let mut out = Vec::new();
    let blk_min = ba.min(bb);
    if cfg.op_per_block {
        if !ba.max(bb).is_multiple_of(blk_min) {
            return Err(Error::invalid(format!(
                "datapath '{}' needs block sizes that divide each other (got {ba} and {bb})",
                cfg.name
            )));
        }
        let mut s = 0;
        while s < k {
            let l = blk_min.min(k - s);
            out.push((s, l));
            s += l;
        }
    } else if let Some(r) = rule.filter(|r| !r.block_split.is_empty()) {
        if ba != bb {
            return Err(Error::invalid(format!(
                "datapath '{}' splits instructions inside blocks and needs equal block sizes (got {ba} and {bb})",
                cfg.name
            )));
        }
        let mut s = 0;
        while s < k {
            let end = (s + ba).min(k);
            let mut p = s;
            let mut i = 0;
            while p < end {
                let l = r.block_split[i % r.block_split.len()].min(end - p);
                out.push((p, l));
                p += l;
                i += 1;
            }
            s = end;
        }
    } else {
        let kk = rule.map(|r| r.k).unwrap_or(cfg.k);
        if kk == 0 {
            if k > 0 {
                out.push((0, k));
            }
        } else {
            let mut s = 0;
            while s < k {
                let l = kk.min(k - s);
                out.push((s, l));
                s += l;
            }
        }
    }
    // groups scaled at the group sum must lie inside one block of each operand
    if cfg.scale_at == ScaleAt::GroupSum {
        for &(s, l) in &out {
            let g = if cfg.group == 0 { l } else { cfg.group };
            let mut p = s;
            while p < s + l {
                let e = (p + g).min(s + l);
                if p / ba != (e - 1) / ba || p / bb != (e - 1) / bb {
                    return Err(Error::invalid(format!(
                        "datapath '{}' applies scales to groups of {g}, but a group would span two scale blocks (block sizes {ba} and {bb})",
                        cfg.name
                    )));
                }
                p = e;
            }
        }
    }
    Ok(out)
}

/// Everything precomputed for one operand-format pair and reduction length.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) cfg: DatapathConfig,
    pub(crate) chunks: Vec<(usize, usize)>,
    pub(crate) ea: [El; 256],
    pub(crate) eb: [El; 256],
    pub(crate) sa: [Sc; 256],
    pub(crate) sb: [Sc; 256],
    pub(crate) ba: usize,
    pub(crate) bb: usize,
}

impl Plan {
    /// Plan a reduction of `k` elements for the given operand schemes and block sizes.
    pub fn new(
        cfg: &DatapathConfig,
        a: Scheme,
        ba: usize,
        b: Scheme,
        bb: usize,
        k: usize,
    ) -> Result<Plan> {
        cfg.validate()?;
        Ok(Plan {
            cfg: cfg.clone(),
            chunks: instruction_chunks(cfg, a, ba, b, bb, k)?,
            ea: element_lut(a.element(), cfg),
            eb: element_lut(b.element(), cfg),
            sa: scale_lut(a.scale_format()),
            sb: scale_lut(b.scale_format()),
            ba,
            bb,
        })
    }

    /// Instructions per output.
    pub fn instructions_per_output(&self) -> usize {
        self.chunks.len()
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Term {
    pub(crate) neg: bool,
    pub(crate) mag: u128,
    pub(crate) lsb: i32,
    pub(crate) refe: i32,
}

fn msb(mag: u128, lsb: i32) -> i32 {
    lsb + 127 - mag.leading_zeros() as i32
}

/// Sign bookkeeping of zero addends for [`ZeroSign::Ieee`].
#[derive(Default, Clone, Copy)]
struct Zeros {
    any_pos: bool,
    any_neg: bool,
    any_nonzero: bool,
}

impl Zeros {
    fn note(&mut self, z: Option<bool>) {
        match z {
            Some(true) => self.any_neg = true,
            Some(false) => self.any_pos = true,
            None => self.any_nonzero = true,
        }
    }
    fn sign(&self, cfg: &DatapathConfig, mode: RoundMode) -> bool {
        match cfg.zero_sign {
            ZeroSign::Positive => false,
            ZeroSign::Ieee => {
                if !self.any_nonzero && self.any_neg != self.any_pos {
                    self.any_neg
                } else {
                    mode == RoundMode::Rdn
                }
            }
        }
    }
}

/// Apply the shifted-out treatment to a term whose lsb is below the window lsb `l`.
pub(crate) fn treat(t: &Term, l: i32, how: Shifted) -> u128 {
    if t.lsb >= l {
        return t.mag;
    }
    let s = (l - t.lsb) as u32;
    let (kept, rem_nonzero, half, above_half) = if s >= 128 {
        (0u128, true, false, false)
    } else {
        let kept = t.mag >> s;
        let rem = t.mag & ((1u128 << s) - 1);
        let h = 1u128 << (s - 1);
        (kept, rem != 0, rem == h, rem > h)
    };
    match how {
        Shifted::Trunc => kept,
        Shifted::Floor => kept + (t.neg && rem_nonzero) as u128,
        Shifted::Rne => kept + (above_half || (half && kept & 1 == 1)) as u128,
        Shifted::Rto => kept | rem_nonzero as u128,
    }
}

/// Run one instruction on elements `start..start+len` with accumulator `acc` (in the
/// accumulator format); returns the new accumulator.
#[allow(clippy::too_many_arguments)]
pub(crate) fn instruction(
    plan: &Plan,
    a: &OperandRow,
    b: &OperandRow,
    start: usize,
    len: usize,
    acc: Fp,
    terms: &mut Vec<Term>,
    members: &mut Vec<(bool, u64, i32, i32)>,
) -> Result<Fp> {
    let cfg = &plan.cfg;
    let accf = cfg.accumulator;
    let mode = cfg.acc_rounding;
    let mut nan = acc.is_nan();
    let (mut pinf, mut ninf) = match acc {
        Fp::Inf { neg } => (!neg, neg),
        _ => (false, false),
    };
    let mut zeros = Zeros::default();
    terms.clear();
    let bounded = cfg.frac_bits.is_some();
    let g = if cfg.group == 0 { len } else { cfg.group };
    let ftz_min = accf.emin();
    // products sum for unbounded windows goes straight into a wide accumulator
    let mut wide = Wide::new();
    let mut p = start;
    while p < start + len {
        let e = (p + g).min(start + len);
        members.clear();
        let mut gscale: Option<(u32, i32, i32)> = None;
        for i in p..e {
            let ea = plan.ea[a.codes[i] as usize];
            let eb = plan.eb[b.codes[i] as usize];
            let sa = plan.sa[a.scales[i / plan.ba] as usize];
            let sb = plan.sb[b.scales[i / plan.bb] as usize];
            let (sa, sb) = match (sa, sb) {
                (
                    Sc::Fin {
                        sig: s1,
                        lsb: l1,
                        lead: d1,
                    },
                    Sc::Fin {
                        sig: s2,
                        lsb: l2,
                        lead: d2,
                    },
                ) => ((s1, l1, d1), (s2, l2, d2)),
                _ => {
                    nan = true;
                    continue;
                }
            };
            let ssig = sa.0 * sb.0;
            let (slsb, slead) = (sa.1 + sb.1, sa.2 + sb.2);
            match (ea, eb) {
                (El::Nan, _) | (_, El::Nan) => nan = true,
                (El::Inf { .. }, El::Zero { .. }) | (El::Zero { .. }, El::Inf { .. }) => nan = true,
                (El::Inf { neg: x }, y) | (y, El::Inf { neg: x }) => {
                    let ny = match y {
                        El::Inf { neg } | El::Zero { neg } | El::Fin { neg, .. } => neg,
                        El::Nan => false,
                    };
                    if ssig == 0 {
                        nan = true;
                    } else if x ^ ny {
                        ninf = true;
                    } else {
                        pinf = true;
                    }
                }
                (El::Zero { neg: x }, El::Zero { neg: y })
                | (El::Zero { neg: x }, El::Fin { neg: y, .. })
                | (El::Fin { neg: x, .. }, El::Zero { neg: y }) => zeros.note(Some(x ^ y)),
                (
                    El::Fin {
                        neg: n1,
                        sig: s1,
                        lsb: l1,
                        lead: d1,
                    },
                    El::Fin {
                        neg: n2,
                        sig: s2,
                        lsb: l2,
                        lead: d2,
                    },
                ) => {
                    let neg = n1 ^ n2;
                    let psig = s1 as u64 * s2 as u64;
                    if ssig == 0 {
                        zeros.note(Some(neg));
                        continue;
                    }
                    let (mag, lsb, lead) = match cfg.scale_at {
                        ScaleAt::Product => (psig * ssig as u64, l1 + l2 + slsb, d1 + d2 + slead),
                        ScaleAt::GroupSum => (psig, l1 + l2, d1 + d2),
                    };
                    if cfg.ftz_products && msb(mag as u128, lsb) < ftz_min {
                        zeros.note(Some(neg));
                        continue;
                    }
                    zeros.note(None);
                    if !bounded && cfg.scale_at == ScaleAt::Product {
                        wide.add(neg, mag as u128, lsb);
                        continue;
                    }
                    if g == 1 && cfg.scale_at == ScaleAt::Product {
                        let refe = match cfg.term_exponent {
                            TermExponent::Normalized => msb(mag as u128, lsb),
                            TermExponent::OperandSum => lead,
                        };
                        terms.push(Term {
                            neg,
                            mag: mag as u128,
                            lsb,
                            refe,
                        });
                        continue;
                    }
                    gscale = Some((ssig, slsb, slead));
                    members.push((neg, mag, lsb, lead));
                }
            }
        }
        // fold the members of this group into an exact sum at their smallest lsb
        let mut gsum: i128 = 0;
        let glsb = members.iter().map(|m| m.2).min().unwrap_or(0);
        let mut glead = i32::MIN;
        for m in members.iter() {
            let sh = (m.2 - glsb) as u32;
            if sh > 100 {
                return Err(Error::invalid(format!(
                    "datapath '{}': a group's products span more than 100 bits of exponent (scales differ inside a group); not supported with a bounded window",
                    cfg.name
                )));
            }
            let v = (m.1 as i128) << sh;
            gsum += if m.0 { -v } else { v };
            glead = glead.max(m.3);
        }
        if gsum != 0 {
            let neg = gsum < 0;
            let mut mag = gsum.unsigned_abs();
            let mut lsb = glsb;
            let (ssig, slsb, slead) = gscale.unwrap_or((1, 0, 0));
            let refe = match cfg.scale_at {
                ScaleAt::GroupSum => {
                    mag *= ssig as u128;
                    lsb += slsb;
                    match cfg.term_exponent {
                        TermExponent::Normalized => msb(mag, lsb),
                        TermExponent::OperandSum => slead,
                    }
                }
                ScaleAt::Product => match cfg.term_exponent {
                    TermExponent::Normalized => msb(mag, lsb),
                    TermExponent::OperandSum => glead,
                },
            };
            if bounded {
                terms.push(Term {
                    neg,
                    mag,
                    lsb,
                    refe,
                });
            } else {
                wide.add(neg, mag, lsb);
            }
        }
        p = e;
    }
    if nan || (pinf && ninf) {
        return Ok(Fp::Nan);
    }
    if pinf || ninf {
        return Ok(Fp::Inf { neg: ninf });
    }
    // the accumulator as a term
    let acc_term = match acc {
        Fp::Finite { neg, sig, exp } => {
            let m = sig as u128;
            let refe = match cfg.term_exponent {
                TermExponent::Normalized => msb(m, exp),
                TermExponent::OperandSum => msb(m, exp).max(accf.emin()),
            };
            Some(Term {
                neg,
                mag: m,
                lsb: exp,
                refe,
            })
        }
        _ => None,
    };
    let acc_zero_sign = match acc {
        Fp::Zero { neg } => Some(neg),
        _ => None,
    };
    if let Some(fb) = cfg.frac_bits {
        let rp = terms.iter().map(|t| t.refe).max();
        if let (Some(w), Some(at), Some(rp), AccJoin::Fused) =
            (cfg.acc_far_bits, acc_term, rp, cfg.acc_join)
        {
            if at.refe - rp > w as i32 {
                return Ok(acc);
            }
        }
        let r = match (cfg.align, cfg.acc_join, acc_term) {
            (AlignRef::ProductsAndAccumulator, AccJoin::Fused, Some(at)) => {
                Some(rp.map_or(at.refe, |x| x.max(at.refe)))
            }
            _ => rp,
        };
        let l = r.map(|r| r - fb as i32);
        for t in terms.iter() {
            let l = l.expect("terms exist");
            let kept = treat(t, l, cfg.shifted_out);
            wide.add(t.neg, kept, t.lsb.max(l));
        }
        if cfg.acc_join == AccJoin::Fused {
            if let Some(at) = acc_term {
                match l {
                    Some(l) => {
                        let kept = treat(&at, l, cfg.shifted_out);
                        wide.add(at.neg, kept, at.lsb.max(l));
                    }
                    None => wide.add(at.neg, at.mag, at.lsb),
                }
            }
        }
    } else if cfg.acc_join == AccJoin::Fused {
        if let Some(at) = acc_term {
            wide.add(at.neg, at.mag, at.lsb);
        }
    }
    match cfg.acc_join {
        AccJoin::Fused => {
            zeros.note(if acc_term.is_some() {
                None
            } else {
                acc_zero_sign
            });
            Ok(wide.round(accf, mode, cfg.ftz_outputs, zeros.sign(cfg, mode)))
        }
        AccJoin::After => {
            let s = wide.round(accf, mode, cfg.ftz_outputs, zeros.sign(cfg, mode));
            Ok(add_exact(acc, s, accf, mode, cfg.ftz_outputs))
        }
    }
}

/// The general path for one output: `c` is the initial accumulator (already an FP32 value,
/// given as parts). Returns the value in the output format.
pub(crate) fn dot_general(plan: &Plan, a: &OperandRow, b: &OperandRow, c: Fp) -> Result<Fp> {
    let cfg = &plan.cfg;
    let c = match c {
        Fp::Finite { neg, sig, exp }
            if cfg.ftz_inputs && (sig as u128) < (1u128 << 23) && exp == -149 =>
        {
            Fp::Zero { neg }
        }
        other => other,
    };
    let mut terms = Vec::with_capacity(64);
    let mut members = Vec::with_capacity(64);
    run_chunks(plan, c, |s, l, acc| {
        instruction(plan, a, b, s, l, acc, &mut terms, &mut members)
    })
}

/// The instruction sequence of one output: the accumulator starts from `c` (rounded to the
/// accumulator format, or zero with promotion), each instruction `instr(start, len, acc)`
/// returns the next accumulator, partial sums are promoted into an FP32 RNE outer sum every
/// `promote_every` elements, and the result is rounded to the output format. Shared by the
/// general path and the fast kernels (whose instructions may decline with an error value).
pub(crate) fn run_chunks<E>(
    plan: &Plan,
    c: Fp,
    mut instr: impl FnMut(usize, usize, Fp) -> std::result::Result<Fp, E>,
) -> std::result::Result<Fp, E> {
    let cfg = &plan.cfg;
    let promote = cfg.promote_every > 0;
    let mut outer = c;
    let mut acc = if promote {
        Fp::ZERO
    } else {
        round_fp(c, cfg.accumulator, cfg.acc_rounding, cfg.ftz_outputs)
    };
    let mut since = 0usize;
    for &(s, l) in &plan.chunks {
        acc = instr(s, l, acc)?;
        since += l;
        if promote && since >= cfg.promote_every {
            outer = add_exact(outer, acc, FloatFormat::FP32, RoundMode::Rne, false);
            acc = Fp::ZERO;
            since = 0;
        }
    }
    let fin = if promote {
        add_exact(outer, acc, FloatFormat::FP32, RoundMode::Rne, false)
    } else {
        acc
    };
    Ok(round_fp(
        fin,
        cfg.output,
        cfg.output_rounding,
        cfg.ftz_outputs,
    ))
}

/// Decompose a positive finite f64 into `(sig, exp)` with `value = sig * 2^exp`, by bits.
fn f64_parts(x: f64) -> Option<(u64, i32)> {
    let b = x.to_bits();
    if b >> 63 == 1 {
        return None;
    }
    let e = ((b >> 52) & 0x7FF) as i32;
    let m = b & ((1u64 << 52) - 1);
    match e {
        0x7FF => None,
        0 if m == 0 => None,
        0 => Some((m, -1074)),
        _ => Some((m | 1 << 52, e - 1075)),
    }
}

/// The FP32 factor `alpha = fp32_rne(ga * gb)` that applies two tensors' global scales after
/// the MMA (the cuBLAS/CUTLASS epilogue convention): the f64 product is formed exactly from
/// integer significands and rounded once. `None` when both are exactly 1 (no epilogue).
pub fn global_alpha(ga: f64, gb: f64) -> Result<Option<Fp>> {
    if ga == 1.0 && gb == 1.0 {
        return Ok(None);
    }
    let (sa, ea) = f64_parts(ga).ok_or_else(|| {
        Error::invalid(format!("global scale {ga} is not a positive finite number"))
    })?;
    let (sb, eb) = f64_parts(gb).ok_or_else(|| {
        Error::invalid(format!("global scale {gb} is not a positive finite number"))
    })?;
    let prod = sa as u128 * sb as u128;
    // a 106-bit product: round with full precision (no sticky needed, it is exact)
    let r = round_parts(
        false,
        prod,
        ea + eb,
        false,
        FloatFormat::FP32,
        RoundMode::Rne,
        false,
    );
    Ok(Some(r))
}

/// The epilogue `D = round(alpha * P + C)` computed as one exact fused multiply-add, rounded
/// once into the output format with the output rounding.
pub(crate) fn epilogue(alpha: Fp, p: Fp, c: Fp, cfg: &DatapathConfig) -> Fp {
    fma_exact(
        alpha,
        p,
        c,
        cfg.output,
        cfg.output_rounding,
        cfg.ftz_outputs,
    )
}
