//! Fast paths for the bounded-window (truncating) datapaths: Blackwell `mxf8f6f4` and
//! `mxf4nvf4`, Hopper FP8, MXDOTP, and any configuration of the same shape.
//!
//! Operands are decoded once per GEMM. For per-product alignment (`group = 1`, scales at the
//! product) every element becomes a small signed integer `v` (its significand times its block
//! scale's significand) with the exponents of its least significant bit and of its leading bit
//! (`lead`, the exponent a multiplier sees). One instruction of one output is then two
//! branch-free passes over contiguous arrays: the largest operand-sum exponent among nonzero
//! products, and the sum of the products aligned to the window and treated (truncated, floored,
//! rounded or jammed) exactly as [`super::engine`] treats each term, in 64-bit integers. For
//! scales applied to group sums (`mxf4nvf4`), elements become fixed-point integers at the
//! format's smallest step, a group's exact sum is an integer dot product, and the few group
//! terms per instruction go through the general term treatment. The accumulator, the far-
//! accumulator rule, promotion and rounding reuse the general path's integer routines.
//!
//! Outputs with a NaN/Inf element, a NaN scale, a non-finite `C` or accumulator, or an exact
//! zero sum whose sign needs the IEEE rules are recomputed by the general path. Tested to equal
//! the general path bit for bit (`tests/datapath_fast.rs`).

use super::config::{AccJoin, AlignRef, DatapathConfig, ScaleAt, Shifted, TermExponent, ZeroSign};
use super::engine::{dot_general, epilogue, run_chunks, treat, El, Plan, Sc, Term};
use super::float::{round_parts, FloatFormat, Fp, RoundMode};
use crate::error::Result;
use crate::mx::MxTensor;
use rayon::prelude::*;

/// Folded element significands must stay below this (products below 2^22).
const MAX_V: u64 = 1 << 11;
/// Pre-shift of product magnitudes so that every alignment is a right shift.
const PRE: i32 = 40;
/// Longest instruction the 64-bit product sum supports.
const MAX_CHUNK: usize = 4096;

/// Per-product operand data, block scale folded into each element.
struct Folded {
    v: Vec<i16>,
    lsb: Vec<i16>,
    lead: Vec<i16>,
    special: Vec<bool>,
}

fn fold(t: &MxTensor, lut: &[El; 256], slut: &[Sc; 256]) -> Option<Folded> {
    let (rows, k, bs, bpr) = (t.rows, t.cols, t.block_size, t.blocks_per_row());
    let mut v = vec![0i16; rows * k];
    let mut lsb = vec![0i16; rows * k];
    let mut lead = vec![0i16; rows * k];
    let mut special = vec![false; rows];
    for r in 0..rows {
        for c in 0..k {
            let idx = r * k + c;
            let sc = slut[t.scales[r * bpr + c / bs] as usize];
            match (lut[t.codes[idx] as usize], sc) {
                (_, Sc::Nan) | (El::Nan, _) | (El::Inf { .. }, _) => special[r] = true,
                (El::Zero { .. }, _) => {}
                (
                    El::Fin {
                        neg,
                        sig,
                        lsb: l,
                        lead: d,
                    },
                    Sc::Fin {
                        sig: ss,
                        lsb: sl,
                        lead: sd,
                    },
                ) => {
                    let m = sig as u64 * ss as u64;
                    if m >= MAX_V {
                        return None;
                    }
                    if m != 0 {
                        v[idx] = if neg { -(m as i16) } else { m as i16 };
                        lsb[idx] = i16::try_from(l + sl).ok()?;
                        lead[idx] = i16::try_from(d + sd).ok()?;
                    }
                }
            }
        }
    }
    Some(Folded {
        v,
        lsb,
        lead,
        special,
    })
}

/// Per-instruction fixed-point view of a folded operand, for instructions in which no product
/// can lose bits to the window: each element as `v << (lsb - cmin)` (an exact integer in units
/// of the chunk's smallest nonzero lsb `cmin`), and per row and instruction chunk
/// `(cmin, cmax_lead, bits)`; `bits` is the widest `|x|` (0: all zero, [`NO_EXACT`]: does
/// not fit 31 bits).
struct Exact {
    x: Vec<i32>,
    chunk: Vec<(i32, i32, u32)>,
}

/// Marks a chunk whose fixed-point values do not fit 31 bits.
const NO_EXACT: u32 = u32::MAX;

fn exact_view(f: &Folded, rows: usize, k: usize, chunks: &[(usize, usize)]) -> Exact {
    let mut x = vec![0i32; rows * k];
    let mut chunk = Vec::with_capacity(rows * chunks.len());
    for r in 0..rows {
        for &(s, l) in chunks {
            let idx = r * k + s..r * k + s + l;
            let mut cmin = i32::MAX;
            let mut lead = i32::MIN;
            for t in idx.clone() {
                if f.v[t] != 0 {
                    cmin = cmin.min(f.lsb[t] as i32);
                    lead = lead.max(f.lead[t] as i32);
                }
            }
            if cmin == i32::MAX {
                chunk.push((0, 0, 0));
                continue;
            }
            let mut bits = 0u32;
            for t in idx.clone() {
                if f.v[t] != 0 {
                    let m = f.v[t].unsigned_abs() as u32;
                    let b = 32 - m.leading_zeros() + (f.lsb[t] as i32 - cmin) as u32;
                    bits = bits.max(b);
                }
            }
            if bits > 31 {
                chunk.push((cmin, lead, NO_EXACT));
                continue;
            }
            for t in idx {
                // zero elements may sit at any lsb: shift only nonzero ones (bits <= 31 above)
                x[t] = if f.v[t] == 0 {
                    0
                } else {
                    (f.v[t] as i32) << (f.lsb[t] as i32 - cmin)
                };
            }
            chunk.push((cmin, lead, bits));
        }
    }
    Exact { x, chunk }
}

/// Group-sum operand data: elements as fixed-point integers at the format's smallest lsb,
/// scales per block.
struct Fixed {
    x: Vec<i32>,
    base: i32,
    bits: u32,
    /// Per row and block: (sig, lsb, lead); sig 0 for a zero scale.
    scales: Vec<(u32, i32, i32)>,
    special: Vec<bool>,
}

fn fixed(t: &MxTensor, lut: &[El; 256], slut: &[Sc; 256]) -> Option<Fixed> {
    let base = lut
        .iter()
        .filter_map(|e| match e {
            El::Fin { lsb, .. } => Some(*lsb),
            _ => None,
        })
        .min()
        .unwrap_or(0);
    let mut table = [0i64; 256];
    let mut bad = [false; 256];
    let mut maxmag = 0u64;
    for (c, e) in lut.iter().enumerate() {
        match *e {
            El::Zero { .. } => {}
            El::Fin { neg, sig, lsb, .. } => {
                let m = (sig as u64) << (lsb - base);
                maxmag = maxmag.max(m);
                table[c] = if neg { -(m as i64) } else { m as i64 };
            }
            _ => bad[c] = true,
        }
    }
    let bits = 64 - maxmag.leading_zeros();
    if bits > 31 {
        return None;
    }
    let (rows, k, bpr) = (t.rows, t.cols, t.blocks_per_row());
    let mut special = vec![false; rows];
    let mut x = vec![0i32; rows * k];
    for r in 0..rows {
        for c in 0..k {
            let code = t.codes[r * k + c] as usize;
            special[r] |= bad[code];
            x[r * k + c] = table[code] as i32;
        }
    }
    let mut scales = Vec::with_capacity(rows * bpr);
    for r in 0..rows {
        for b in 0..bpr {
            match slut[t.scales[r * bpr + b] as usize] {
                Sc::Fin { sig, lsb, lead } => scales.push((sig, lsb, lead)),
                Sc::Nan => {
                    special[r] = true;
                    scales.push((0, 0, 0));
                }
            }
        }
    }
    Some(Fixed {
        x,
        base,
        bits,
        scales,
        special,
    })
}

// ---- vectorizable inner loops (compiled for AVX2 when the CPU has it) ----

/// Largest `lead_a + lead_b` over nonzero products (`i32::MIN` if none).
#[inline(always)]
fn rmax_impl(va: &[i16], vb: &[i16], da: &[i16], db: &[i16]) -> i32 {
    let n = va.len();
    let (vb, da, db) = (&vb[..n], &da[..n], &db[..n]);
    let mut r = i32::MIN;
    for t in 0..n {
        let p = va[t] as i32 * vb[t] as i32;
        let e = da[t] as i32 + db[t] as i32;
        r = r.max(if p != 0 { e } else { i32::MIN });
    }
    r
}

/// Sum of the products aligned to window lsb `l` (in units of `2^l`), each treated by `M`
/// (0 trunc, 1 floor, 2 rne, 3 rto) as `engine::treat` does.
#[inline(always)]
fn tsum_impl<const M: u8>(va: &[i16], vb: &[i16], la: &[i16], lb: &[i16], l: i32) -> i64 {
    let n = va.len();
    let (vb, la, lb) = (&vb[..n], &la[..n], &lb[..n]);
    let mut s = 0i64;
    for t in 0..n {
        let p = va[t] as i32 * vb[t] as i32;
        let neg = p < 0;
        // |p| < 2^22, so m < 2^62; value in units 2^l is m >> (l - lsb + PRE)
        let m = (p.unsigned_abs() as u64) << PRE;
        let sh = (l - (la[t] as i32 + lb[t] as i32) + PRE).clamp(0, 63) as u32;
        let kept = m >> sh;
        let rem = m & ((1u64 << sh) - 1);
        let kept = match M {
            0 => kept,
            1 => kept + (neg & (rem != 0)) as u64,
            2 => {
                let h = (1u64 << sh) >> 1;
                kept + ((rem > h) | ((rem == h) & (rem != 0) & (kept & 1 == 1))) as u64
            }
            _ => kept | (rem != 0) as u64,
        };
        let k = kept as i64;
        s += if neg { -k } else { k };
    }
    s
}

/// Exact integer dot product.
#[inline(always)]
fn dot_impl(x: &[i32], y: &[i32]) -> i64 {
    let n = x.len();
    let y = &y[..n];
    let mut s = 0i64;
    for t in 0..n {
        s += x[t] as i64 * y[t] as i64;
    }
    s
}

/// Exact integer dot product whose partial sums fit i32.
#[inline(always)]
fn dot32_impl(x: &[i32], y: &[i32]) -> i64 {
    let n = x.len();
    let y = &y[..n];
    let mut s = 0i32;
    for t in 0..n {
        s = s.wrapping_add(x[t].wrapping_mul(y[t]));
    }
    s as i64
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rmax(va: &[i16], vb: &[i16], da: &[i16], db: &[i16]) -> i32 {
        super::rmax_impl(va, vb, da, db)
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tsum<const M: u8>(
        va: &[i16],
        vb: &[i16],
        la: &[i16],
        lb: &[i16],
        l: i32,
    ) -> i64 {
        super::tsum_impl::<M>(va, vb, la, lb, l)
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot(x: &[i32], y: &[i32]) -> i64 {
        super::dot_impl(x, y)
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot32(x: &[i32], y: &[i32]) -> i64 {
        super::dot32_impl(x, y)
    }
}

#[inline]
pub(crate) fn has_avx2() -> bool {
    super::blockdot::Isa::detect() != super::blockdot::Isa::Portable
}

#[inline]
fn rmax(avx: bool, va: &[i16], vb: &[i16], da: &[i16], db: &[i16]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: only called when the CPU supports AVX2.
        return unsafe { avx2::rmax(va, vb, da, db) };
    }
    let _ = avx;
    rmax_impl(va, vb, da, db)
}

#[inline]
fn tsum<const M: u8>(avx: bool, va: &[i16], vb: &[i16], la: &[i16], lb: &[i16], l: i32) -> i64 {
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: only called when the CPU supports AVX2.
        return unsafe { avx2::tsum::<M>(va, vb, la, lb, l) };
    }
    let _ = avx;
    tsum_impl::<M>(va, vb, la, lb, l)
}

#[inline]
fn dot(avx: bool, narrow: bool, x: &[i32], y: &[i32]) -> i64 {
    if x.len() <= 8 {
        // short instructions (MXDOTP's 8 FP8 pairs): a call and a vector reduction cost
        // more than the loop
        return dot_impl(x, y);
    }
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: only called when the CPU supports AVX2.
        return unsafe {
            if narrow {
                avx2::dot32(x, y)
            } else {
                avx2::dot(x, y)
            }
        };
    }
    let _ = avx;
    if narrow {
        dot32_impl(x, y)
    } else {
        dot_impl(x, y)
    }
}

// ---- one instruction ----

/// Shared configuration of the instruction kernels.
struct Ctx<'a> {
    cfg: &'a DatapathConfig,
    fb: i32,
    accf: FloatFormat,
    mode: RoundMode,
    avx: bool,
}

/// The accumulator as a term (operand-sum exponent: its leading bit, at least emin).
fn acc_term(ctx: &Ctx, acc: Fp) -> Option<Option<Term>> {
    match acc {
        Fp::Finite { neg, sig, exp } => {
            let msb = exp + 63 - sig.leading_zeros() as i32;
            Some(Some(Term {
                neg,
                mag: sig as u128,
                lsb: exp,
                refe: msb.max(ctx.accf.emin()),
            }))
        }
        Fp::Zero { .. } => Some(None),
        _ => None,
    }
}

/// A sum that is exactly zero: `+0` under `zero_sign = positive`, else the general path.
fn zero_result(ctx: &Ctx) -> Option<Fp> {
    (ctx.cfg.zero_sign == ZeroSign::Positive).then_some(Fp::Zero { neg: false })
}

/// The common tail of an instruction: given the largest product exponent `rp` and a function
/// giving the products' treated sum in units of `2^l`, add the accumulator and round once.
#[inline]
fn finish(
    ctx: &Ctx,
    acc: Fp,
    rp: Option<i32>,
    psum: impl FnOnce(i32) -> Option<i128>,
) -> Option<Fp> {
    let cfg = ctx.cfg;
    let at = acc_term(ctx, acc)?;
    if let (Some(w), Some(at), Some(rp)) = (cfg.acc_far_bits, at, rp) {
        if at.refe - rp > w as i32 {
            return Some(acc);
        }
    }
    let r = match (cfg.align, at) {
        (AlignRef::ProductsAndAccumulator, Some(at)) => {
            Some(rp.map_or(at.refe, |x| x.max(at.refe)))
        }
        _ => rp,
    };
    let Some(r) = r else {
        // no product term; the accumulator (if any) is added exactly
        return match at {
            Some(at) => Some(round_parts(
                at.neg,
                at.mag,
                at.lsb,
                false,
                ctx.accf,
                ctx.mode,
                cfg.ftz_outputs,
            )),
            None => zero_result(ctx),
        };
    };
    let l = r - ctx.fb;
    let mut total = psum(l)?;
    if let Some(at) = at {
        let kept = treat(&at, l, cfg.shifted_out);
        let sh = at.lsb.max(l) - l;
        if kept != 0 {
            if sh > 124 - (128 - kept.leading_zeros() as i32) {
                return None;
            }
            let v = (kept as i128) << sh;
            total += if at.neg { -v } else { v };
        }
    }
    if total == 0 {
        return zero_result(ctx);
    }
    Some(round_parts(
        total < 0,
        total.unsigned_abs(),
        l,
        false,
        ctx.accf,
        ctx.mode,
        cfg.ftz_outputs,
    ))
}

/// One per-product instruction when no product and not the accumulator can lose bits to the
/// window, or `None` when that cannot be shown cheaply (the caller then runs the two-pass
/// kernel). `xa`/`xb` are the instruction's fixed-point elements with chunk data `ca`/`cb`
/// (see [`Exact`]).
///
/// Why it equals the windowed sum: let `rp` be the largest operand-sum exponent over nonzero
/// products. `rp <= rup = max lead_a + max lead_b` over the chunk, so the window lsb
/// `l = R - fb` satisfies `l <= lw`, where `lw` uses `rup` in place of `rp`. Every product's
/// lsb is at least `cmin_a + cmin_b`, so when `cmin_a + cmin_b >= lw` (and the accumulator's
/// lsb too) no term has bits below `l`: every treatment (trunc, floor, rne, rto) keeps each
/// term exactly and the instruction's sum is the exact sum of the products and the
/// accumulator, which `round_parts` rounds by value alone. The far-accumulator rule needs
/// `rp` itself: it holds surely when `acc_refe - rup > w`, and surely not when
/// `acc_refe - rlo <= w` with the lower bound `rlo` below (else: declined).
#[inline]
fn exact_instr(
    ctx: &Ctx,
    xa: &[i32],
    xb: &[i32],
    ca: (i32, i32, u32),
    cb: (i32, i32, u32),
    acc: Fp,
) -> Option<Fp> {
    let ((mina, leada, bitsa), (minb, leadb, bitsb)) = (ca, cb);
    if bitsa == 0 || bitsb == 0 || bitsa == NO_EXACT || bitsb == NO_EXACT {
        return None;
    }
    let n = xa.len();
    let lg = usize::BITS - n.leading_zeros();
    let width = bitsa + bitsb + lg;
    if width > 62 {
        return None;
    }
    let cfg = ctx.cfg;
    let dl = mina + minb;
    let rup = leada + leadb;
    let at = acc_term(ctx, acc)?;
    // the window checks first: they need no product sum (a chunk with no nonzero product
    // shows as d == 0 below and is declined)
    let r = match (cfg.align, at) {
        (AlignRef::ProductsAndAccumulator, Some(at)) => rup.max(at.refe),
        _ => rup,
    };
    let lw = r - ctx.fb;
    if dl < lw || at.is_some_and(|at| at.lsb < lw) {
        return None;
    }
    let d = dot(ctx.avx, width <= 31, xa, xb);
    if d == 0 {
        // no nonzero product, or an exact cancellation: left to the two-pass kernel
        return None;
    }
    if let (Some(w), Some(at)) = (cfg.acc_far_bits, at) {
        // d != 0: some product is nonzero, and rp <= rup
        if at.refe - rup > w as i32 {
            return Some(acc);
        }
        // each folded operand is below 2^(lead + 2), each product below 2^(rp + 4), so
        // |sum| < n 2^(rp + 4) < 2^(rp + 4 + lg): rp > msb(sum) - 4 - lg
        let dmsb = dl + 63 - d.unsigned_abs().leading_zeros() as i32;
        let rlo = dmsb - 4 - lg as i32;
        if at.refe - rlo > w as i32 {
            return None;
        }
    }
    let (total, lo) = match at {
        None => (d as i128, dl),
        Some(at) => {
            let lo = dl.min(at.lsb);
            let (sd, sa) = (dl - lo, at.lsb - lo);
            let abits = 128 - at.mag.leading_zeros() as i32;
            if sd + 64 > 124 || sa + abits > 124 {
                return None;
            }
            let av = (at.mag as i128) << sa;
            let dv = (d as i128) << sd;
            (dv + if at.neg { -av } else { av }, lo)
        }
    };
    if total == 0 {
        return zero_result(ctx);
    }
    Some(round_parts(
        total < 0,
        total.unsigned_abs(),
        lo,
        false,
        ctx.accf,
        ctx.mode,
        cfg.ftz_outputs,
    ))
}

/// The instruction sequence of one output with a fast instruction `instr(start, len, acc)`
/// ([`run_chunks`], as the general path runs it; no input flushing: the kernels require
/// `ftz_inputs` off); `None` when `c` is not finite or an instruction declines.
fn dot_seq(
    plan: &Plan,
    c: Fp,
    mut instr: impl FnMut(usize, usize, Fp) -> Option<Fp>,
) -> Option<Fp> {
    if !matches!(c, Fp::Finite { .. } | Fp::Zero { .. }) {
        return None;
    }
    run_chunks(plan, c, |s, l, acc| instr(s, l, acc).ok_or(())).ok()
}

/// Which kernel a plan can use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Products,
    Groups,
}

fn kind(plan: &Plan) -> Option<Kind> {
    let c = &plan.cfg;
    let fb = c.frac_bits?;
    if c.term_exponent != TermExponent::OperandSum
        || c.acc_join != AccJoin::Fused
        || c.ftz_inputs
        || c.ftz_products
        || plan.chunks.iter().any(|&(_, l)| l > MAX_CHUNK)
    {
        return None;
    }
    match c.scale_at {
        ScaleAt::Product if c.group == 1 && fb <= PRE as u32 => Some(Kind::Products),
        ScaleAt::GroupSum if fb <= 60 => Some(Kind::Groups),
        _ => None,
    }
}

const TI: usize = 4;
const TJ: usize = 16;

/// Run `f(i, j, c)` for every output in a fixed tiled order (parallel over row tiles),
/// falling back to the general path where `f` declines; applies the global-scale epilogue.
pub(super) fn drive(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    f: impl Fn(usize, usize, Fp) -> Option<Fp> + Sync,
) -> Result<Vec<f32>> {
    let (m, n) = (a.rows, b.rows);
    let mut out = vec![0f32; m * n];
    if n == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(n * TI)
        .enumerate()
        .try_for_each(|(ti, rows)| -> Result<()> {
            let i0 = ti * TI;
            let ni = rows.len() / n;
            for j0 in (0..n).step_by(TJ) {
                for j in j0..(j0 + TJ).min(n) {
                    for ii in 0..ni {
                        let i = i0 + ii;
                        let (craw, cv) = c_of(alpha, c, i * n + j);
                        let r = f(i, j, cv);
                        rows[ii * n + j] = emit(plan, alpha, a, b, i, j, craw, cv, r)?;
                    }
                }
            }
            Ok(())
        })?;
    Ok(out)
}

/// The raw `C` value of output `idx` and the accumulator's initial value (zero when a
/// global-scale epilogue adds `C` after the product).
#[inline]
pub(super) fn c_of(alpha: Option<Fp>, c: Option<&[f32]>, idx: usize) -> (Fp, Fp) {
    let craw = Fp::from_f32_bits(c.map_or(0, |c| c[idx].to_bits()));
    let cv = if alpha.is_some() { Fp::ZERO } else { craw };
    (craw, cv)
}

/// One output's f32 result: the fast kernel's `r`, or the general path where it declined,
/// followed by the global-scale epilogue.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn emit(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    i: usize,
    j: usize,
    craw: Fp,
    cv: Fp,
    r: Option<Fp>,
) -> Result<f32> {
    let r = match r {
        Some(r) => r,
        None => dot_general(plan, &super::row_of(a, i), &super::row_of(b, j), cv)?,
    };
    let r = match alpha {
        Some(al) => epilogue(al, r, craw, &plan.cfg),
        None => r,
    };
    Ok(f32::from_bits(r.to_f32_bits(plan.cfg.nan_bits)))
}

/// Fast GEMM for bounded-window plans, or `None` when the plan or the operands need the
/// general path.
pub(crate) fn gemm_bounded(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
) -> Result<Option<Vec<f32>>> {
    let Some(kind) = kind(plan) else {
        return Ok(None);
    };
    let cfg = &plan.cfg;
    let ctx = Ctx {
        cfg,
        fb: cfg.frac_bits.unwrap_or(0) as i32,
        accf: cfg.accumulator,
        mode: cfg.acc_rounding,
        avx: has_avx2(),
    };
    let k = a.cols;
    match kind {
        Kind::Products => {
            let (Some(fa), Some(fbb)) = (fold(a, &plan.ea, &plan.sa), fold(b, &plan.eb, &plan.sb))
            else {
                return Ok(None);
            };
            let how = cfg.shifted_out;
            let nc = plan.chunks.len();
            let ea = exact_view(&fa, a.rows, k, &plan.chunks);
            let eb = exact_view(&fbb, b.rows, k, &plan.chunks);
            let ctx = &ctx;
            let f = |i: usize, j: usize, cv: Fp| -> Option<Fp> {
                if fa.special[i] || fbb.special[j] {
                    return None;
                }
                let (ra, rb) = (i * k, j * k);
                let mut ci = 0usize;
                dot_seq(plan, cv, |s, l, acc| {
                    let (a0, b0) = (ra + s, rb + s);
                    let (ca, cb) = (ea.chunk[i * nc + ci], eb.chunk[j * nc + ci]);
                    ci += 1;
                    let (xa, xb) = (&ea.x[a0..a0 + l], &eb.x[b0..b0 + l]);
                    if let Some(r) = exact_instr(ctx, xa, xb, ca, cb, acc) {
                        return Some(r);
                    }
                    let va = &fa.v[a0..a0 + l];
                    let vb = &fbb.v[b0..b0 + l];
                    let r = rmax(ctx.avx, va, vb, &fa.lead[a0..a0 + l], &fbb.lead[b0..b0 + l]);
                    let rp = (r != i32::MIN).then_some(r);
                    finish(ctx, acc, rp, |lw| {
                        let (la, lb) = (&fa.lsb[a0..a0 + l], &fbb.lsb[b0..b0 + l]);
                        let s = match how {
                            Shifted::Trunc => tsum::<0>(ctx.avx, va, vb, la, lb, lw),
                            Shifted::Floor => tsum::<1>(ctx.avx, va, vb, la, lb, lw),
                            Shifted::Rne => tsum::<2>(ctx.avx, va, vb, la, lb, lw),
                            Shifted::Rto => tsum::<3>(ctx.avx, va, vb, la, lb, lw),
                        };
                        Some(s as i128)
                    })
                })
            };
            drive(plan, alpha, a, b, c, f).map(Some)
        }
        Kind::Groups => {
            let (Some(xa), Some(xb)) = (fixed(a, &plan.ea, &plan.sa), fixed(b, &plan.eb, &plan.sb))
            else {
                return Ok(None);
            };
            let gmax = plan
                .chunks
                .iter()
                .map(|&(_, l)| if cfg.group == 0 { l } else { cfg.group.min(l) })
                .max()
                .unwrap_or(1);
            let lg = usize::BITS - gmax.leading_zeros();
            if xa.bits + xb.bits + lg > 62 {
                return Ok(None);
            }
            let narrow = xa.bits + xb.bits + lg <= 31;
            let base = xa.base + xb.base;
            let (bpa, bpb) = (a.blocks_per_row(), b.blocks_per_row());
            let (ba, bb) = (plan.ba, plan.bb);
            let ctx = &ctx;
            let f = |i: usize, j: usize, cv: Fp| -> Option<Fp> {
                if xa.special[i] || xb.special[j] {
                    return None;
                }
                let (ra, rb) = (i * k, j * k);
                let mut terms: Vec<Term> = Vec::with_capacity(8);
                dot_seq(plan, cv, |s, l, acc| {
                    terms.clear();
                    let g = if cfg.group == 0 { l } else { cfg.group };
                    let mut p = s;
                    while p < s + l {
                        let e = (p + g).min(s + l);
                        let sum = dot(
                            ctx.avx,
                            narrow,
                            &xa.x[ra + p..ra + e],
                            &xb.x[rb + p..rb + e],
                        );
                        let (s1, l1, d1) = xa.scales[i * bpa + p / ba];
                        let (s2, l2, d2) = xb.scales[j * bpb + p / bb];
                        let ssig = s1 as u128 * s2 as u128;
                        if sum != 0 && ssig != 0 {
                            terms.push(Term {
                                neg: sum < 0,
                                mag: sum.unsigned_abs() as u128 * ssig,
                                lsb: base + l1 + l2,
                                refe: d1 + d2,
                            });
                        }
                        p = e;
                    }
                    let rp = terms.iter().map(|t| t.refe).max();
                    finish(ctx, acc, rp, |lw| {
                        let mut tot = 0i128;
                        for t in terms.iter() {
                            let kept = treat(t, lw, cfg.shifted_out);
                            if kept == 0 {
                                continue;
                            }
                            let sh = t.lsb.max(lw) - lw;
                            if sh > 120 - (128 - kept.leading_zeros() as i32) {
                                return None;
                            }
                            let v = (kept as i128) << sh;
                            tot += if t.neg { -v } else { v };
                        }
                        Some(tot)
                    })
                })
            };
            drive(plan, alpha, a, b, c, f).map(Some)
        }
    }
}

// ---- exact integer dot products of 64-bit lanes for the exact-block fast path ----

/// Exact dot product of i64 lanes in i128.
#[inline]
pub(crate) fn idot64(x: &[i64], y: &[i64]) -> i128 {
    let n = x.len();
    let y = &y[..n];
    let mut s = 0i128;
    for t in 0..n {
        s += x[t] as i128 * y[t] as i128;
    }
    s
}
