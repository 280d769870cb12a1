//! The bounded-window instruction sequence of eight outputs at once: Blackwell `mxf8f6f4` and
//! `mxf4nvf4`, Hopper FP8, MXDOTP, and any configuration of the same shape (fused
//! accumulator, operand-sum exponents, a window of `frac_bits`).
//!
//! Eight outputs (one row of A against eight rows of B) are the eight lanes of every step:
//! the largest term exponent, the window, each term's treatment of its shifted-out bits, the
//! accumulator as one more term, the rounding into the accumulator format, promotion to the
//! outer FP32 sum. Each output's instructions still run one after the other, exactly as
//! [`super::engine`] runs them; the lanes only make eight independent chains advance
//! together. The steps are written with the lane-wise operations of [`super::v8`], compiled
//! once per instruction set (AVX-512, AVX2, portable) from the same source, so every build
//! computes the same bits.
//!
//! A lane covers normal accumulators only (and `+0`): a step whose result would be subnormal
//! or overflow, a `-0` starting value, or a term too wide for 64-bit lanes marks its output
//! as declined, and the caller recomputes that output with the general path.

use super::acc32::{add32, Acc32, ACC32_ZERO};
use super::blockdot::Isa;
use super::config::{AlignRef, DatapathConfig, Shifted};
use super::engine::Plan;
use super::float::{round_fp, Fp, RoundMode};
use super::v8::V8;

/// Outputs per lane group.
pub(super) const LANES: usize = 8;
/// The leading-bit exponent stored for a zero element: a product or group with a zero factor
/// gets an exponent far below [`NONE`], so it never sets the window.
pub(super) const NO_LEAD: i32 = -16384;
/// Largest exponents at or below this mean "no nonzero term".
const NONE: i64 = -8192;
/// Pre-shift of product magnitudes so that every alignment is a right shift.
const PRE: i64 = 40;
/// Exponent of a zero accumulator lane.
const ZERO_EXP: i64 = -100_000;

/// The instruction parameters the lanes need, as numbers.
#[derive(Clone, Copy)]
pub(super) struct Window {
    fb: i64,
    /// Accumulator fraction bits.
    m: i64,
    emin: i64,
    emax: i64,
    mode: RoundMode,
    align_acc: bool,
    far_on: bool,
    far: i64,
}

impl Window {
    /// The lane parameters of a fused, operand-sum-exponent, bounded-window plan, or `None`
    /// when the lanes do not cover it (no window or one wider than 40 bits, an accumulator
    /// wider than FP32's significand, zero signs by IEEE rules, flushed inputs or products).
    pub(super) fn of(cfg: &DatapathConfig) -> Option<Window> {
        let fb = cfg.frac_bits? as i64;
        let accf = cfg.accumulator;
        if fb > PRE
            || accf.man_bits > 23
            || cfg.zero_sign != super::config::ZeroSign::Positive
            || cfg.ftz_inputs
            || cfg.ftz_products
        {
            return None;
        }
        Some(Window {
            fb,
            m: accf.man_bits as i64,
            emin: accf.emin() as i64,
            emax: accf.emax() as i64,
            mode: cfg.acc_rounding,
            align_acc: cfg.align == AlignRef::ProductsAndAccumulator,
            far_on: cfg.acc_far_bits.is_some(),
            far: cfg.acc_far_bits.unwrap_or(0) as i64,
        })
    }
}

/// Eight accumulators: normal numbers `sig * 2^exp` (`sig` signed, `2^m <= |sig| < 2^(m+1)`)
/// or `+0` (`sig == 0`).
#[derive(Clone, Copy)]
pub(super) struct Accs {
    sig: V8,
    exp: V8,
}

const ONE: V8 = V8([1; LANES]);
const ZERO: V8 = V8([0; LANES]);

/// `mag >> sh` with the dropped bits treated by `S` (0 truncate, 1 floor, 2 nearest-even,
/// 3 round-to-odd), as [`super::engine::treat`] does; `neg` the sign mask, `sh` in `0..=63`,
/// `0 <= mag < 2^63`.
#[inline(always)]
fn treat<const S: u8>(neg: V8, mag: V8, sh: V8) -> V8 {
    let kept = mag.shr(sh);
    if S == 0 {
        return kept;
    }
    let back = kept.shl(sh);
    let rem_nz = !back.eq(mag);
    match S {
        1 => kept + (neg & rem_nz & ONE),
        2 => {
            let rem = mag - back;
            let h = ONE.shl(sh).shr(ONE);
            let odd = (kept & ONE).eq(ONE);
            let up = rem.gt(h) | (rem.eq(h) & rem_nz & odd);
            kept + (up & ONE)
        }
        _ => kept | (rem_nz & ONE),
    }
}

/// Nonzero `total * 2^l` rounded into the accumulator format (as
/// [`super::float::round_parts`] does for normal results): the signed significand, its
/// exponent, and the mask of lanes whose result is normal.
#[inline(always)]
fn round(w: &Window, total: V8, l: V8) -> (V8, V8, V8) {
    let neg = total.sign();
    let mag = total.abs();
    let nb = mag.bits();
    let p = V8::splat(w.m + 1);
    let pe = l + nb - ONE;
    let shr = (nb - p).max(ZERO);
    let shl = (p - nb).max(ZERO);
    let mm = mag.shl(shl);
    let kept = mm.shr(shr);
    let g1 = shr.max(ONE) - ONE;
    let guard = shr.gt(ZERO) & (mm.shr(g1) & ONE).eq(ONE);
    let rest = !(mm & (ONE.shl(g1) - ONE)).is_zero();
    let inexact = guard | rest;
    let inc = match w.mode {
        RoundMode::Rne => guard & (rest | (kept & ONE).eq(ONE)),
        RoundMode::Rtz => ZERO,
        RoundMode::Rdn => neg & inexact,
        RoundMode::Rup => !neg & inexact,
        RoundMode::Rmm => guard,
    };
    let sig = kept + (inc & ONE);
    let carry = sig.shr(p);
    let sig = sig.shr(carry);
    let exp = l - shl + shr + carry;
    let normal = !V8::splat(w.emin).gt(pe) & !(exp + V8::splat(w.m)).gt(V8::splat(w.emax));
    (sig.negate_where(neg), exp, normal)
}

/// The window of one instruction in every lane: given the largest term exponent `rp` (at
/// most [`NONE`] when a lane has no nonzero term), the window's lsb exponent `l`, and the
/// mask of lanes that keep their accumulator unchanged (no term to add, or the accumulator
/// beyond the far-accumulator distance). Mirrors [`super::engine`]'s fused instruction.
#[inline(always)]
fn window(w: &Window, acc: &Accs, rp: V8) -> (V8, V8) {
    let none = V8::splat(NONE);
    let anyp = rp.gt(none);
    let has = !acc.sig.is_zero();
    let arefe = acc.exp + V8::splat(w.m);
    let far = if w.far_on {
        anyp & has & (arefe - rp).gt(V8::splat(w.far))
    } else {
        ZERO
    };
    let r = if w.align_acc {
        has.select(rp.max(arefe), rp)
    } else {
        rp
    };
    let keep = far | !r.gt(none);
    (r - V8::splat(w.fb), keep)
}

/// One instruction's end in every lane: `ps` the treated term sums in units of `2^l` (`pok`
/// the mask of lanes computed right); add the accumulator as one more term and round once.
#[inline(always)]
fn finish<const S: u8>(w: &Window, acc: &mut Accs, ok: &mut V8, l: V8, keep: V8, ps: V8, pok: V8) {
    let neg = acc.sig.sign();
    let mag = acc.sig.abs();
    let d = acc.exp - l;
    // the accumulator in units of 2^l stays below 2^60 (the term sums below 2^60)
    let fits = mag.is_zero() | !(d + V8::splat(w.m + 1)).gt(V8::splat(60));
    let at = treat::<S>(neg, mag.shl(d.shift_count()), (ZERO - d).shift_count());
    let total = ps + at.negate_where(neg);
    let z = total.is_zero();
    let (s, e, normal) = round(w, total, l);
    let valid = pok & fits & (z | normal);
    let sig = z.select(ZERO, s);
    let exp = z.select(V8::splat(ZERO_EXP), e);
    acc.sig = keep.select(acc.sig, sig);
    acc.exp = keep.select(acc.exp, exp);
    *ok = *ok & (keep | valid);
}

/// An accumulator of `m` fraction bits in FP32 layout (for the outer promotion sum).
fn to_acc32(m: i64, sig: i64, exp: i64) -> Acc32 {
    if sig == 0 {
        return ACC32_ZERO;
    }
    let up = 23 - m;
    Acc32 {
        neg: sig < 0,
        sig: sig.unsigned_abs() << up,
        exp: (exp - up) as i32,
    }
}

/// A normal value of `m` fraction bits and exponent range `emin..=emax` (or `+0`) as lane
/// parts; `None` for anything else (`-0`, subnormal, infinite, NaN).
fn from_fp(x: Fp, m: i64, emin: i64, emax: i64) -> Option<(i64, i64)> {
    match x {
        Fp::Zero { neg: false } => Some((0, ZERO_EXP)),
        Fp::Finite { neg, sig, exp } => {
            let nb = 64 - sig.leading_zeros() as i64;
            if nb > m + 1 {
                return None;
            }
            let up = m + 1 - nb;
            let (s, e) = ((sig << up) as i64, exp as i64 - up);
            let lead = e + m;
            ((emin..=emax).contains(&lead)).then_some((if neg { -s } else { s }, e))
        }
        _ => None,
    }
}

fn to_fp(sig: i64, exp: i64) -> Fp {
    if sig == 0 {
        Fp::ZERO
    } else {
        Fp::Finite {
            neg: sig < 0,
            sig: sig.unsigned_abs(),
            exp: exp as i32,
        }
    }
}

/// One instruction of eight outputs.
trait Instr {
    /// Advance every lane by the instruction over elements `start..start+len`; `ok` is the
    /// mask of lanes still computed right.
    fn step(&self, start: usize, len: usize, acc: &mut Accs, ok: &mut V8);
}

/// Run the plan's instruction sequence ([`super::engine::run_chunks`]) for eight outputs with
/// starting values `c`. Returns each output before any global-scale epilogue, or `None` where
/// a lane declined.
#[inline(always)]
fn run(w: &Window, plan: &Plan, c: &[Fp; LANES], instr: &impl Instr) -> [Option<Fp>; LANES] {
    let cfg = &plan.cfg;
    let promote = cfg.promote_every > 0;
    let mut ok = !ZERO;
    let mut acc = Accs {
        sig: ZERO,
        exp: V8::splat(ZERO_EXP),
    };
    let mut outer = [ACC32_ZERO; LANES];
    for q in 0..LANES {
        let start = if promote {
            from_fp(c[q], 23, -126, 127).map(|(s, e)| outer[q] = to_acc32(23, s, e))
        } else {
            let c0 = round_fp(c[q], cfg.accumulator, cfg.acc_rounding, cfg.ftz_outputs);
            from_fp(c0, w.m, w.emin, w.emax).map(|(s, e)| (acc.sig.0[q], acc.exp.0[q]) = (s, e))
        };
        if start.is_none() {
            ok.0[q] = 0;
        }
    }
    let mut since = 0usize;
    for &(s, l) in &plan.chunks {
        instr.step(s, l, &mut acc, &mut ok);
        since += l;
        if promote && since >= cfg.promote_every {
            promote_lanes(w, &mut outer, &mut acc, &mut ok);
            since = 0;
        }
    }
    if promote {
        promote_lanes(w, &mut outer, &mut acc, &mut ok);
    }
    std::array::from_fn(|q| {
        if ok.0[q] == 0 {
            return None;
        }
        let fin = if promote {
            let o = outer[q];
            let s = o.sig as i64;
            to_fp(if o.neg { -s } else { s }, o.exp as i64)
        } else {
            to_fp(acc.sig.0[q], acc.exp.0[q])
        };
        Some(round_fp(
            fin,
            cfg.output,
            cfg.output_rounding,
            cfg.ftz_outputs,
        ))
    })
}

/// `outer <- RNE32(outer + acc)`, `acc <- +0` in every lane.
fn promote_lanes(w: &Window, outer: &mut [Acc32; LANES], acc: &mut Accs, ok: &mut V8) {
    for (q, o) in outer.iter_mut().enumerate() {
        let (r, v) = add32(*o, to_acc32(w.m, acc.sig.0[q], acc.exp.0[q]));
        *o = r;
        if !v {
            ok.0[q] = 0;
        }
    }
    acc.sig = ZERO;
    acc.exp = V8::splat(ZERO_EXP);
}

// ---- per-product alignment (scales at each product) ----

/// One row of A for per-product alignment: each element's folded significand (block scale
/// included), the exponents of its lsb and of its leading bit ([`NO_LEAD`] for zero).
pub(super) struct ProdRow<'a> {
    pub v: &'a [i16],
    pub lsb: &'a [i16],
    pub lead: &'a [i16],
}

/// The same data for eight rows of B, interleaved by element: `x[t * LANES + q]`.
pub(super) type ProdTile<'a> = ProdRow<'a>;

/// Per-product instructions with treatment `S`.
struct Products<'a, const S: u8> {
    w: &'a Window,
    a: &'a ProdRow<'a>,
    b: &'a ProdTile<'a>,
}

impl<const S: u8> Instr for Products<'_, S> {
    #[inline(always)]
    fn step(&self, s: usize, len: usize, acc: &mut Accs, ok: &mut V8) {
        let (w, a, b) = (self.w, self.a, self.b);
        let (av, al, ad) = (&a.v[s..s + len], &a.lsb[s..s + len], &a.lead[s..s + len]);
        let r = s * LANES..(s + len) * LANES;
        let (bv, bl, bd) = (&b.v[r.clone()], &b.lsb[r.clone()], &b.lead[r]);
        // the largest operand-sum exponent of a nonzero product (zero elements lead NO_LEAD)
        let mut rp = V8::splat(2 * NO_LEAD as i64);
        for t in 0..len {
            let e = V8::from_i16(&bd[t * LANES..]) + V8::splat(ad[t] as i64);
            rp = rp.max(e);
        }
        let (l, keep) = window(w, acc, rp);
        // every product aligned to the window and treated on its own
        let lpre = l + V8::splat(PRE);
        let mut ps = ZERO;
        for t in 0..len {
            let p = V8::from_i16(&bv[t * LANES..]) * V8::splat(av[t] as i64);
            let neg = p.sign();
            let sh =
                (lpre - V8::splat(al[t] as i64) - V8::from_i16(&bl[t * LANES..])).shift_count();
            let kept = treat::<S>(neg, p.abs().shl_c::<{ PRE as u32 }>(), sh);
            ps = ps + kept.negate_where(neg);
        }
        finish::<S>(w, acc, ok, l, keep, ps, !ZERO);
    }
}

// ---- scales at group sums ----

/// One row of A for scales applied to group sums: elements as fixed-point integers at the
/// format's smallest lsb, and per block the scale's `(sig, lsb, lead)` (sig 0: zero scale).
pub(super) struct GroupRow<'a> {
    pub x: &'a [i32],
    pub scales: &'a [(i64, i64, i64)],
}

/// Eight rows of B for scales applied to group sums, interleaved: `x[t * LANES + q]`, and
/// per block `sig[blk * LANES + q]`, `lsb[..]`, `lead[..]`.
pub(super) struct GroupTile<'a> {
    pub x: &'a [i32],
    pub sig: &'a [i64],
    pub lsb: &'a [i64],
    pub lead: &'a [i64],
}

/// Shape of the group-sum instruction.
#[derive(Clone, Copy)]
pub(super) struct Groups {
    /// Elements per exactly summed group (0: the whole instruction).
    pub group: usize,
    /// Block sizes of A and B.
    pub ba: usize,
    pub bb: usize,
    /// `base_a + base_b`: the exponent of one unit of a product of fixed-point elements.
    pub base: i64,
}

/// Most groups one instruction may hold.
pub(super) const MAX_GROUPS: usize = 16;

/// Group-sum instructions with treatment `S`.
struct GroupStep<'a, const S: u8> {
    w: &'a Window,
    g: &'a Groups,
    a: &'a GroupRow<'a>,
    b: &'a GroupTile<'a>,
}

impl<const S: u8> Instr for GroupStep<'_, S> {
    #[inline(always)]
    fn step(&self, s: usize, len: usize, acc: &mut Accs, ok: &mut V8) {
        let (w, g, a, b) = (self.w, self.g, self.a, self.b);
        let gs = if g.group == 0 { len } else { g.group };
        let mut mag = [ZERO; MAX_GROUPS];
        let mut neg = [ZERO; MAX_GROUPS];
        let mut lsb = [ZERO; MAX_GROUPS];
        let mut rp = V8::splat(2 * NO_LEAD as i64);
        let mut n = 0usize;
        let mut p = s;
        while p < s + len {
            let e = (p + gs).min(s + len);
            // the group's exact sum, then its scales
            let mut sum = ZERO;
            for t in p..e {
                sum = sum + V8::from_i32(&b.x[t * LANES..]) * V8::splat(a.x[t] as i64);
            }
            let (s1, l1, d1) = a.scales[p / g.ba];
            let sb = (p / g.bb) * LANES;
            let m = sum.abs() * (V8::from_i64(&b.sig[sb..]) * V8::splat(s1));
            mag[n] = m;
            neg[n] = sum.sign();
            lsb[n] = V8::splat(g.base + l1) + V8::from_i64(&b.lsb[sb..]);
            let refe = V8::splat(d1) + V8::from_i64(&b.lead[sb..]);
            rp = rp.max(m.is_zero().select(V8::splat(2 * NO_LEAD as i64), refe));
            n += 1;
            p = e;
        }
        let (l, keep) = window(w, acc, rp);
        let mut ps = ZERO;
        let mut fit = !ZERO;
        for t in 0..n {
            let d = lsb[t] - l;
            // each term below 2^56, so sixteen of them stay below 2^60
            fit = fit & (mag[t].is_zero() | !(mag[t].bits() + d).gt(V8::splat(56)));
            let kept = treat::<S>(
                neg[t],
                mag[t].shl(d.shift_count()),
                (ZERO - d).shift_count(),
            );
            ps = ps + kept.negate_where(neg[t]);
        }
        finish::<S>(w, acc, ok, l, keep, ps, fit);
    }
}

/// Eight outputs of a per-product plan: row `a` of A against the eight rows of `b`.
#[inline(always)]
fn products_tile<const S: u8>(
    w: &Window,
    plan: &Plan,
    a: &ProdRow,
    b: &ProdTile,
    c: &[Fp; LANES],
) -> [Option<Fp>; LANES] {
    run(w, plan, c, &Products::<S> { w, a, b })
}

/// Eight outputs of a group-sum plan.
#[inline(always)]
fn groups_tile<const S: u8>(
    w: &Window,
    plan: &Plan,
    g: &Groups,
    a: &GroupRow,
    b: &GroupTile,
    c: &[Fp; LANES],
) -> [Option<Fp>; LANES] {
    run(w, plan, c, &GroupStep::<S> { w, g, a, b })
}

// ---- one entry per instruction set ----

/// What one call computes: eight outputs of a per-product or a group-sum plan.
pub(super) enum Tile<'a> {
    Products(&'a ProdRow<'a>, &'a ProdTile<'a>),
    Groups(&'a Groups, &'a GroupRow<'a>, &'a GroupTile<'a>),
}

#[inline(always)]
fn tile_impl(w: &Window, plan: &Plan, t: &Tile, c: &[Fp; LANES]) -> [Option<Fp>; LANES] {
    macro_rules! by_treatment {
        ($f:ident, $($arg:expr),*) => {
            match plan.cfg.shifted_out {
                Shifted::Trunc => $f::<0>($($arg),*),
                Shifted::Floor => $f::<1>($($arg),*),
                Shifted::Rne => $f::<2>($($arg),*),
                Shifted::Rto => $f::<3>($($arg),*),
            }
        };
    }
    match *t {
        Tile::Products(a, b) => by_treatment!(products_tile, w, plan, a, b, c),
        Tile::Groups(g, a, b) => by_treatment!(groups_tile, w, plan, g, a, b, c),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    #[target_feature(enable = "avx512f,avx512cd,avx512dq,avx512bw,avx512vl")]
    pub(super) unsafe fn tile_avx512(
        w: &Window,
        plan: &Plan,
        t: &Tile,
        c: &[Fp; LANES],
    ) -> [Option<Fp>; LANES] {
        tile_impl(w, plan, t, c)
    }
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile_avx2(
        w: &Window,
        plan: &Plan,
        t: &Tile,
        c: &[Fp; LANES],
    ) -> [Option<Fp>; LANES] {
        tile_impl(w, plan, t, c)
    }
}

/// Eight outputs through the plan's instruction sequence (see the module docs), with the
/// instruction set `isa` (results do not depend on it).
pub(super) fn tile(
    isa: Isa,
    w: &Window,
    plan: &Plan,
    t: &Tile,
    c: &[Fp; LANES],
) -> [Option<Fp>; LANES] {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = isa == Isa::Avx512
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512cd")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl");
        // SAFETY: each version runs only where the CPU has its features.
        unsafe {
            if avx512 {
                return x86::tile_avx512(w, plan, t, c);
            }
            if isa != Isa::Portable {
                return x86::tile_avx2(w, plan, t, c);
            }
        }
    }
    let _ = isa;
    tile_impl(w, plan, t, c)
}
