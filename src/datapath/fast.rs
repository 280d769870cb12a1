//! Fast path for the exact-block datapaths (`exact`, `ocp-fp32`, and any configuration with an
//! unbounded window, one instruction per block or per reduction, no flush-to-zero, no
//! promotion): every element becomes a small fixed-point integer, a block's dot product is an
//! exact integer dot product (i16 x i16 -> i32 for FP4/FP6/INT8 pairs, i32 x i32 -> i64, or
//! i64 x i64 -> i128 with E5M2), scaled by its block scales and summed exactly (a wide
//! accumulator) or rounded block by block, exactly as the general path does. Outputs whose
//! result is an exact zero (whose sign needs the IEEE zero rules) are recomputed by the
//! general path. Tested to equal the general path bit for bit (`tests/datapath_exact.rs`).
//!
//! For 16- and 32-bit lanes the block dot products of one row of A against [`JB`] rows of B
//! are computed in one pass ([`super::blockdot`]); rows of A are processed in tiles so that
//! a group of B rows is reused from cache. With AVX-512 VNNI, values of up to 18 bits (FP4,
//! FP6, INT8, E4M3) instead go through [`super::lanedot`]: four rows of A against sixteen
//! rows of B held in the lanes of a vector, E4M3 values split into 16-bit halves (rows of A
//! renormalised block by block where that fits 16 bits). With an FP32 round-to-nearest-even
//! accumulator the block-by-block accumulation runs in a fixed-point frame per output where
//! its terms fit one ([`super::frame32`]), otherwise with a rounding and an addition
//! specialised to normal FP32 values ([`super::acc32`]; a subnormal or overflowing
//! intermediate takes the general rounding routines).

use super::config::{AccJoin, DatapathConfig, ScaleAt};
use super::engine::{El, Plan, Sc};
use super::float::{add_exact, round_fp, round_parts, FloatFormat, Fp, RoundMode};
use super::wide::Wide;
use crate::error::Result;
use crate::mx::MxTensor;

use super::acc32::{accumulate, has_avx512, Acc32, Chain, ACC32_ZERO};
#[cfg(target_arch = "x86_64")]
use super::acc32::{accumulate16, Row16};
use super::blockdot::{block_dots_i16, block_dots_i32, Isa, JB};
use super::fast_bounded::{c_of, emit, idot64};
#[cfg(target_arch = "x86_64")]
use super::frame32::{accumulate_frames, to_acc32, FrameRow};
#[cfg(target_arch = "x86_64")]
use super::lanedot::{self, Norm, Parts, LT, RA};
#[cfg(target_arch = "x86_64")]
use super::v8::V8;
use rayon::prelude::*;

/// Which exact-block shape a plan has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One fused instruction over the whole reduction, exact, one rounding.
    WholeExact,
    /// One instruction per block, exact block sum rounded then added (ocp-fp32).
    BlockAfter,
}

fn shape(plan: &Plan, a: &MxTensor, b: &MxTensor) -> Option<Shape> {
    let c: &DatapathConfig = &plan.cfg;
    if c.frac_bits.is_some()
        || c.ftz_inputs
        || c.ftz_products
        || c.ftz_outputs
        || c.promote_every != 0
        || c.scale_at != ScaleAt::Product
        || a.block_size != b.block_size
    {
        return None;
    }
    let bs = a.block_size;
    let one = plan.chunks.len() <= 1 && c.acc_join == AccJoin::Fused;
    let per_block = c.acc_join == AccJoin::After
        && plan
            .chunks
            .iter()
            .enumerate()
            .all(|(i, &(s, l))| s == i * bs && (l == bs || s + l == a.cols));
    if one {
        Some(Shape::WholeExact)
    } else if per_block {
        Some(Shape::BlockAfter)
    } else {
        None
    }
}

/// An operand decoded to fixed-point integers at a common lsb exponent: element `e` is
/// `table[codes[e]] * 2^lsb`.
struct Fixed<'a> {
    codes: &'a [u8],
    table: [i64; 256],
    lsb: i32,
    bits: u32,
    /// Scale parts per block: (sig, lsb).
    scales: Vec<(u32, i32)>,
}

impl Fixed<'_> {
    /// Element `e`'s fixed-point value.
    #[inline]
    fn val(&self, e: usize) -> i64 {
        self.table[self.codes[e] as usize]
    }

    /// Every element's value through `f`.
    fn vals<T: Send>(&self, f: impl Fn(i64) -> T + Sync + Send) -> Vec<T> {
        self.codes
            .par_iter()
            .map(|&c| f(self.table[c as usize]))
            .collect()
    }
}

fn fixed<'a>(t: &'a MxTensor, lut: &[El; 256], slut: &[Sc; 256]) -> Option<Fixed<'a>> {
    let mut minlsb = i32::MAX;
    for e in lut.iter() {
        if let El::Fin { lsb, .. } = e {
            minlsb = minlsb.min(*lsb);
        }
    }
    let mut table = [0i64; 256];
    let mut ok = [true; 256];
    let mut maxmag = 0u64;
    for (c, e) in lut.iter().enumerate() {
        match *e {
            El::Zero { .. } => table[c] = 0,
            El::Fin { neg, sig, lsb, .. } => {
                let v = (sig as u64) << (lsb - minlsb);
                maxmag = maxmag.max(v);
                table[c] = if neg { -(v as i64) } else { v as i64 };
            }
            _ => ok[c] = false,
        }
    }
    if t.codes.iter().any(|&c| !ok[c as usize]) {
        return None;
    }
    let mut scales = Vec::with_capacity(t.scales.len());
    for &s in &t.scales {
        match slut[s as usize] {
            Sc::Fin { sig, lsb, .. } => scales.push((sig, lsb)),
            Sc::Nan => return None,
        }
    }
    Some(Fixed {
        codes: &t.codes,
        table,
        lsb: minlsb,
        bits: 64 - maxmag.leading_zeros(),
        scales,
    })
}

/// The exact IEEE sum `a + b` rounded once into `fmt`: equal to [`add_exact`], in 128-bit
/// integers when the exponents are within 60 bits of each other.
fn add_fast(a: Fp, b: Fp, fmt: FloatFormat, mode: RoundMode) -> Fp {
    if let (
        Fp::Finite {
            neg: na,
            sig: sa,
            exp: ea,
        },
        Fp::Finite {
            neg: nb,
            sig: sb,
            exp: eb,
        },
    ) = (a, b)
    {
        if (ea - eb).abs() <= 60 && sa < 1 << 60 && sb < 1 << 60 {
            let e = ea.min(eb);
            let x = (sa as i128) << (ea - e);
            let y = (sb as i128) << (eb - e);
            let s = if na { -x } else { x } + if nb { -y } else { y };
            if s == 0 {
                return Fp::Zero {
                    neg: mode == RoundMode::Rdn,
                };
            }
            return round_parts(s < 0, s.unsigned_abs(), e, false, fmt, mode, false);
        }
    }
    add_exact(a, b, fmt, mode, false)
}

/// Per-row range of the scale exponents (lsb) over its blocks.
fn scale_range(f: &Fixed, rows: usize, nb: usize) -> Vec<(i32, i32, u32)> {
    (0..rows)
        .map(|r| {
            let s = &f.scales[r * nb..(r + 1) * nb];
            let lo = s.iter().map(|x| x.1).min().unwrap_or(0);
            let hi = s.iter().map(|x| x.1).max().unwrap_or(0);
            let sb = s
                .iter()
                .map(|x| 32 - x.0.leading_zeros())
                .max()
                .unwrap_or(0);
            (lo, hi, sb)
        })
        .collect()
}

/// Data the per-output combination needs.
struct Combine<'a> {
    plan: &'a Plan,
    sh: Shape,
    fa: &'a Fixed<'a>,
    fb: &'a Fixed<'a>,
    ra: Vec<(i32, i32, u32)>,
    rb: Vec<(i32, i32, u32)>,
    nb: usize,
    width: u32,
    /// The FP32 RNE specialisation applies (FP32 accumulator, RNE, block sums fit 63 bits).
    f32_rne: bool,
    /// Every block scale's significand is 1 (E8M0 scales).
    unit_sig: bool,
    /// The AVX-512 accumulation can run.
    avx512: bool,
    /// Scale lsb exponents per (row, block) of A and of B.
    sla: Vec<i32>,
    slb: Vec<i32>,
}

/// The fixed-point frames of sixteen outputs: lsb exponent, shift of the row's lowest block
/// term above it, and the starting value in frame units.
#[cfg(target_arch = "x86_64")]
struct Frames {
    lsb: [i32; LT],
    d: [i64; LT],
    start: [i64; LT],
}

/// FP32 starting values as [`Acc32`] accumulators and whether each is handled there (`+0` or
/// normal; anything else starts from zero, marked not handled).
fn acc32_starts<const N: usize>(cv: &[Fp; N]) -> ([Acc32; N], [bool; N]) {
    let start = cv.map(|c| match c {
        Fp::Zero { neg: false } => Some(ACC32_ZERO),
        Fp::Finite { neg, sig, exp } if sig >> 23 == 1 => Some(Acc32 { neg, sig, exp }),
        _ => None,
    });
    (
        start.map(|s| s.unwrap_or(ACC32_ZERO)),
        start.map(|s| s.is_some()),
    )
}

impl Combine<'_> {
    /// A finished FP32 accumulator rounded to the output format.
    fn acc32_output(&self, a: Acc32) -> Fp {
        let cfg = &self.plan.cfg;
        let r = if a.sig == 0 {
            Fp::Zero { neg: false }
        } else {
            Fp::Finite {
                neg: a.neg,
                sig: a.sig,
                exp: a.exp,
            }
        };
        round_fp(r, cfg.output, cfg.output_rounding, false)
    }

    /// One output from its block dot products `dot(blk)`: `Some` result in the output format,
    /// or `None` (recompute by the general path).
    #[inline]
    fn one(&self, i: usize, j: usize, cv: Fp, dot: impl Fn(usize) -> i128) -> Option<Fp> {
        let (fa, fb, nb) = (self.fa, self.fb, self.nb);
        let base_lsb = fa.lsb + fb.lsb;
        match self.sh {
            Shape::WholeExact => {
                let (alo, ahi, asb) = self.ra[i];
                let (blo, bhi, bsb) = self.rb[j];
                let e0 = alo + blo;
                let lg_nb = usize::BITS - nb.leading_zeros();
                let span = (ahi - alo + bhi - blo) as u32 + self.width + asb + bsb + lg_nb + 2;
                if span < 126 {
                    // every block term fits one i128 at the lsb 2^(base + e0)
                    let mut acc: i128 = 0;
                    for blk in 0..nb {
                        let (sga, sla) = fa.scales[i * nb + blk];
                        let (sgb, slb) = fb.scales[j * nb + blk];
                        let v = dot(blk) * (sga as i128 * sgb as i128);
                        acc += v << (sla + slb - e0);
                    }
                    if let Some(r) = self.round_whole(acc, base_lsb + e0, cv) {
                        return Some(r);
                    }
                }
                self.wide(i, j, cv, dot)
            }
            Shape::BlockAfter => self.block_after(i, j, cv, dot),
        }
    }

    /// The outputs of rows `i0..i0 + cvs.len()` and columns `j0..j0 + jn` from their block
    /// dot products (`dots[ii * nb * JB..]` per row, see [`Combine::group`]) into `res`: the
    /// FP32 RNE block-by-block accumulation runs all rows' chains together
    /// ([`accumulate`]); everything else goes row by row through [`Combine::group`].
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        i0: usize,
        j0: usize,
        jn: usize,
        cvs: &[[Fp; JB]],
        dots: &[i64],
        sbq: &mut Vec<i64>,
        res: &mut [[Option<Fp>; JB]],
    ) {
        let nb = self.nb;
        if self.sh == Shape::BlockAfter && self.f32_rne && self.unit_sig && jn == JB {
            sbq.clear();
            for blk in 0..nb {
                sbq.extend((0..JB).map(|jj| self.slb[(j0 + jj) * nb + blk] as i64));
            }
            let mut chains: Vec<Chain> = cvs
                .iter()
                .enumerate()
                .map(|(ii, cv)| {
                    let (acc, ok) = acc32_starts(cv);
                    let i = i0 + ii;
                    Chain {
                        dots: &dots[ii * nb * JB..(ii + 1) * nb * JB],
                        sa: &self.sla[i * nb..(i + 1) * nb],
                        acc,
                        ok,
                    }
                })
                .collect();
            let base = self.fa.lsb + self.fb.lsb;
            accumulate(self.avx512, self.width <= 24, &mut chains, sbq, base, nb);
            for (ii, ch) in chains.iter().enumerate() {
                for jj in 0..JB {
                    res[ii][jj] = if ch.ok[jj] {
                        Some(self.acc32_output(ch.acc[jj]))
                    } else {
                        let d = &ch.dots;
                        self.one(i0 + ii, j0 + jj, cvs[ii][jj], |blk| {
                            d[blk * JB + jj] as i128
                        })
                    };
                }
            }
            return;
        }
        for (ii, cv) in cvs.iter().enumerate() {
            res[ii] = self.group(i0 + ii, j0, jn, cv, &dots[ii * nb * JB..(ii + 1) * nb * JB]);
        }
    }

    /// The outputs of rows `i0..i0 + cvs.len()` and the [`LT`] columns `j0..j0 + LT` from
    /// block dots laid out by lanes (`lanes[(ii * nb + blk) * LT + q]`, B's scale lsbs
    /// `sb[blk * LT + q]`) into `res`, for the two common cases with unit scale
    /// significands: the FP32 RNE block-by-block accumulation ([`accumulate16`]) and the
    /// whole exact sum in i64; `false` (nothing written) for anything else. Outputs those
    /// decline go through [`Combine::one`].
    #[cfg(target_arch = "x86_64")]
    fn tile16(
        &self,
        i0: usize,
        j0: usize,
        cvs: &[[Fp; LT]],
        lanes: &[i64],
        sb: &[i64],
        res: &mut [[Option<Fp>; LT]],
    ) -> bool {
        let nb = self.nb;
        let base = self.fa.lsb + self.fb.lsb;
        let dots = |ii: usize| &lanes[ii * nb * LT..(ii + 1) * nb * LT];
        let fallback = |ii: usize, q: usize| {
            let d = dots(ii);
            self.one(i0 + ii, j0 + q, cvs[ii][q], |blk| d[blk * LT + q] as i128)
        };
        if !self.unit_sig || !self.avx512 {
            return false;
        }
        match self.sh {
            Shape::BlockAfter if self.f32_rne => {
                let exact = self.width <= 24;
                let blo: [i64; LT] = std::array::from_fn(|q| self.rb[j0 + q].0 as i64);
                // B's scale lsbs relative to each lane's lowest
                let sbf: Vec<i64> = (0..nb * LT).map(|x| sb[x] - blo[x % LT]).collect();
                // rows whose sixteen outputs fit frames (with the row's scale lsbs relative
                // to its lowest), and the others
                let mut frames = Vec::new();
                let mut general = Vec::new();
                let mut rows16: Vec<Row16> = Vec::new();
                for (ii, cv) in cvs.iter().enumerate() {
                    let (acc, ok) = acc32_starts(cv);
                    let i = i0 + ii;
                    match self.frame(i, j0, &acc, &ok) {
                        Some(f) => {
                            let sa = &self.sla[i * nb..(i + 1) * nb];
                            let alo = self.ra[i].0;
                            let sa: Vec<i64> = sa.iter().map(|&x| (x - alo) as i64).collect();
                            frames.push((ii, f, sa));
                        }
                        None => {
                            general.push(ii);
                            rows16.push(Row16 {
                                dots: dots(ii),
                                sa: &self.sla[i * nb..(i + 1) * nb],
                                acc,
                                ok,
                            });
                        }
                    }
                }
                let mut rows: Vec<FrameRow> = frames
                    .iter()
                    .map(|(ii, f, sa)| FrameRow {
                        dots: dots(*ii),
                        sa,
                        d: f.d,
                        acc: f.start,
                    })
                    .collect();
                accumulate_frames(exact, &mut rows, &sbf, nb);
                for ((ii, f, _), row) in frames.iter().zip(&rows) {
                    for (q, out) in res[*ii].iter_mut().enumerate() {
                        *out = Some(self.acc32_output(to_acc32(row.acc[q], f.lsb[q])));
                    }
                }
                accumulate16(exact, &mut rows16, sb, base, nb);
                for (ii, row) in general.iter().zip(&rows16) {
                    for (q, out) in res[*ii].iter_mut().enumerate() {
                        *out = if row.ok[q] {
                            Some(self.acc32_output(row.acc[q]))
                        } else {
                            fallback(*ii, q)
                        };
                    }
                }
                true
            }
            Shape::WholeExact => {
                let lg_nb = usize::BITS - nb.leading_zeros();
                for (ii, cv) in cvs.iter().enumerate() {
                    let i = i0 + ii;
                    let (alo, ahi, _) = self.ra[i];
                    let mut e0 = [0i64; LT];
                    let mut fits = [false; LT];
                    for q in 0..LT {
                        let (blo, bhi, _) = self.rb[j0 + q];
                        fits[q] = (ahi - alo + bhi - blo) as u32 + self.width + lg_nb < 62;
                        e0[q] = (alo + blo) as i64;
                    }
                    let sa = &self.sla[i * nb..(i + 1) * nb];
                    // SAFETY: self.avx512 holds (AVX-512 F).
                    let acc = unsafe { shifted_sums(dots(ii), sa, sb, &e0, nb) };
                    for q in 0..LT {
                        let r = fits[q]
                            .then(|| self.round_whole(acc[q] as i128, base + e0[q] as i32, cv[q]))
                            .flatten();
                        res[ii][q] = r.or_else(|| fallback(ii, q));
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// The fixed-point frames ([`super::frame32`]) of the outputs `(i, j0 + q)` for `q <
    /// LT`, started from the FP32 values `acc` (handled where `ok`), or `None` when one of
    /// them does not fit: its lowest block term or its start below `2^-126`, or its terms
    /// and sums beyond 62 bits above the frame's lsb.
    #[cfg(target_arch = "x86_64")]
    fn frame(&self, i: usize, j0: usize, acc: &[Acc32; LT], ok: &[bool; LT]) -> Option<Frames> {
        let base = self.fa.lsb + self.fb.lsb;
        let lg_nb = (usize::BITS - self.nb.leading_zeros()) as i32;
        let (alo, ahi, _) = self.ra[i];
        let mut f = Frames {
            lsb: [0; LT],
            d: [0; LT],
            start: [0; LT],
        };
        for q in 0..LT {
            let (blo, bhi, _) = self.rb[j0 + q];
            let low = base + alo + blo;
            let c = acc[q];
            let l = if c.sig == 0 { low } else { low.min(c.exp) };
            let top = self.width as i32 + (ahi - alo) + (bhi - blo) + (low - l) + lg_nb + 2;
            if !ok[q] || top > 62 || c.sig != 0 && c.exp - l > 37 || !(-126..=64).contains(&l) {
                return None;
            }
            let m = (c.sig as i64) << (if c.sig == 0 { 0 } else { c.exp - l });
            f.lsb[q] = l;
            f.d[q] = (low - l) as i64;
            f.start[q] = if c.neg { -m } else { m };
        }
        Some(f)
    }

    /// The outputs `(i, j0 + jj)` for `jj < jn` from the block dot products `dots[blk * JB +
    /// jj]`: the common cases (unit scale significands, as with E8M0) run the [`JB`] outputs'
    /// block loops interleaved; anything else, or an output those decline, goes through
    /// [`Combine::one`].
    #[inline]
    fn group(
        &self,
        i: usize,
        j0: usize,
        jn: usize,
        cvs: &[Fp; JB],
        dots: &[i64],
    ) -> [Option<Fp>; JB] {
        let mut res: [Option<Fp>; JB] = [None; JB];
        let mut done = [false; JB];
        if self.unit_sig && jn == JB {
            match self.sh {
                Shape::WholeExact => self.whole_i64(i, j0, cvs, dots, &mut res, &mut done),
                Shape::BlockAfter => {}
            }
        }
        for jj in 0..jn {
            if !done[jj] {
                res[jj] = self.one(i, j0 + jj, cvs[jj], |blk| dots[blk * JB + jj] as i128);
            }
        }
        res
    }

    /// Whole exact sums in i64 when every block term fits 62 bits at the pair's lowest scale.
    #[inline]
    fn whole_i64(
        &self,
        i: usize,
        j0: usize,
        cvs: &[Fp; JB],
        dots: &[i64],
        res: &mut [Option<Fp>; JB],
        done: &mut [bool; JB],
    ) {
        let nb = self.nb;
        let (alo, ahi, _) = self.ra[i];
        let lg_nb = usize::BITS - nb.leading_zeros();
        let mut e0 = [0i32; JB];
        for (e, &(blo, bhi, _)) in e0.iter_mut().zip(&self.rb[j0..j0 + JB]) {
            if (ahi - alo + bhi - blo) as u32 + self.width + lg_nb + 1 > 62 {
                return;
            }
            *e = alo + blo;
        }
        let sa = &self.sla[i * nb..(i + 1) * nb];
        let sb: [&[i32]; JB] =
            std::array::from_fn(|jj| &self.slb[(j0 + jj) * nb..(j0 + jj + 1) * nb]);
        let dots = &dots[..nb * JB];
        let mut acc = [0i64; JB];
        for blk in 0..nb {
            for jj in 0..JB {
                acc[jj] += dots[blk * JB + jj] << (sa[blk] + sb[jj][blk] - e0[jj]);
            }
        }
        let base = self.fa.lsb + self.fb.lsb;
        for jj in 0..JB {
            let l = base + e0[jj];
            res[jj] = self.round_whole(acc[jj] as i128, l, cvs[jj]);
            done[jj] = res[jj].is_some();
        }
    }

    /// The exact sum `acc * 2^l + C` rounded to the accumulator format, then to the output
    /// format; `None` when C is not finite, the sum is an exact zero (whose sign follows the
    /// IEEE rules of the general path), or the aligned terms do not fit 125 bits.
    fn round_whole(&self, acc: i128, l: i32, cv: Fp) -> Option<Fp> {
        let (total, lo) = match cv {
            Fp::Zero { .. } => (acc, l),
            Fp::Finite { neg, sig, exp } => {
                let lo = l.min(exp);
                let (s1, s2) = ((l - lo) as u32, (exp - lo) as u32);
                let bits = 128 - acc.unsigned_abs().leading_zeros();
                if bits + s1 > 125 || 64 + s2 > 125 {
                    return None;
                }
                let cpart = (sig as i128) << s2;
                ((acc << s1) + if neg { -cpart } else { cpart }, lo)
            }
            _ => return None,
        };
        if total == 0 {
            return None;
        }
        let cfg = &self.plan.cfg;
        let r = round_parts(
            total < 0,
            total.unsigned_abs(),
            lo,
            false,
            cfg.accumulator,
            cfg.acc_rounding,
            false,
        );
        Some(round_fp(r, cfg.output, cfg.output_rounding, false))
    }

    /// Whole exact sum in a wide accumulator.
    fn wide(&self, i: usize, j: usize, cv: Fp, dot: impl Fn(usize) -> i128) -> Option<Fp> {
        let cfg = &self.plan.cfg;
        let (fa, fb, nb) = (self.fa, self.fb, self.nb);
        let mut w = Wide::new();
        for blk in 0..nb {
            let (sga, sla) = fa.scales[i * nb + blk];
            let (sgb, slb) = fb.scales[j * nb + blk];
            let v = dot(blk) * (sga as i128 * sgb as i128);
            w.add(v < 0, v.unsigned_abs(), fa.lsb + fb.lsb + sla + slb);
        }
        match cv {
            Fp::Finite { neg, sig, exp } => w.add(neg, sig as u128, exp),
            Fp::Zero { .. } => {}
            _ => return None,
        }
        if w.is_zero() {
            return None;
        }
        let r = w.round(cfg.accumulator, cfg.acc_rounding, false, false);
        Some(round_fp(r, cfg.output, cfg.output_rounding, false))
    }

    /// Block-by-block accumulation through the general rounding routines.
    fn block_after(&self, i: usize, j: usize, cv: Fp, dot: impl Fn(usize) -> i128) -> Option<Fp> {
        let cfg = &self.plan.cfg;
        let (fa, fb, nb) = (self.fa, self.fb, self.nb);
        let base_lsb = fa.lsb + fb.lsb;
        let mut acc = round_fp(cv, cfg.accumulator, cfg.acc_rounding, false);
        for blk in 0..nb {
            if !matches!(acc, Fp::Finite { .. } | Fp::Zero { .. }) {
                return None;
            }
            let (sga, sla) = fa.scales[i * nb + blk];
            let (sgb, slb) = fb.scales[j * nb + blk];
            let v = dot(blk) * (sga as i128 * sgb as i128);
            if v == 0 {
                if matches!(acc, Fp::Zero { .. }) {
                    return None;
                }
                continue;
            }
            let sfp = round_parts(
                v < 0,
                v.unsigned_abs(),
                base_lsb + sla + slb,
                false,
                cfg.accumulator,
                cfg.acc_rounding,
                false,
            );
            acc = add_fast(acc, sfp, cfg.accumulator, cfg.acc_rounding);
        }
        if !matches!(acc, Fp::Finite { .. } | Fp::Zero { .. }) {
            return None;
        }
        Some(round_fp(acc, cfg.output, cfg.output_rounding, false))
    }
}

/// Rows of A per parallel task of the tiled driver (a group of B rows is reused across them).
const TILE_ROWS: usize = 8;
/// Rows of A per parallel task of the VNNI driver for `m` rows: up to 32 (a chunk of the B
/// tile is reused from L1 by all of them), fewer where that would leave a thread idle.
#[cfg(target_arch = "x86_64")]
fn vnni_rows(m: usize) -> usize {
    let per_thread = m.div_ceil(2 * rayon::current_num_threads());
    per_thread.next_multiple_of(RA).clamp(RA, 32)
}
/// Blocks per K chunk of the VNNI driver: the chunk of the B tile (up to 16 KiB with split
/// values) and of the rows of A stay in L1.
#[cfg(target_arch = "x86_64")]
const KC_BLOCKS: usize = 8;

/// Per-task buffers for combining groups of [`JB`] outputs.
struct Groups {
    sbq: Vec<i64>,
    cvs: Vec<[Fp; JB]>,
    craws: Vec<[Fp; JB]>,
    res: Vec<[Option<Fp>; JB]>,
}

impl Groups {
    fn new(ni: usize, nb: usize) -> Self {
        Groups {
            sbq: Vec::with_capacity(nb * JB),
            cvs: vec![[Fp::ZERO; JB]; ni],
            craws: vec![[Fp::ZERO; JB]; ni],
            res: vec![[None; JB]; ni],
        }
    }

    /// The outputs of rows `i0..i0 + ni` (`rows` holds them, `n` per row) and columns
    /// `j0..j0 + jn` from their block dots (`dots[(ii * nb + blk) * JB + jj]`): their C
    /// values, [`Combine::tile`], then each output emitted (or recomputed by the general path).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        comb: &Combine,
        alpha: Option<Fp>,
        (a, b, c): (&MxTensor, &MxTensor, Option<&[f32]>),
        (i0, j0, jn): (usize, usize, usize),
        dots: &[i64],
        rows: &mut [f32],
    ) -> Result<()> {
        let n = b.rows;
        let ni = self.cvs.len();
        for ii in 0..ni {
            for jj in 0..JB {
                let idx = (i0 + ii) * n + j0 + jj.min(jn - 1);
                (self.craws[ii][jj], self.cvs[ii][jj]) = c_of(alpha, c, idx);
            }
        }
        comb.tile(i0, j0, jn, &self.cvs, dots, &mut self.sbq, &mut self.res);
        for ii in 0..ni {
            for jj in 0..jn {
                let (i, j) = (i0 + ii, j0 + jj);
                let (craw, cv) = (self.craws[ii][jj], self.cvs[ii][jj]);
                rows[ii * n + j] = emit(comb.plan, alpha, a, b, i, j, craw, cv, self.res[ii][jj])?;
            }
        }
        Ok(())
    }
}

/// Tiled driver for 16/32-bit lanes: for each tile of A rows and each group of [`JB`] B rows,
/// the block dot products of one A row against the group in one pass, then each output's
/// combination; outputs the kernel declines go to the general path.
#[allow(clippy::too_many_arguments)]
fn drive_tiled<T: Copy + Sync>(
    comb: &Combine,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    xa: &[T],
    xb: &[T],
    kernel: impl Fn(&[T], [&[T]; JB], &mut [i64]) + Sync,
) -> Result<Vec<f32>> {
    let (m, n, k) = (a.rows, b.rows, a.cols);
    let nb = comb.nb;
    let mut out = vec![0f32; m * n];
    if n == 0 || m == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(n * TILE_ROWS)
        .enumerate()
        .try_for_each(|(ti, rows)| -> Result<()> {
            let i0 = ti * TILE_ROWS;
            let ni = rows.len() / n;
            let mut dots = vec![0i64; ni * nb * JB];
            let mut outs = Groups::new(ni, nb);
            for j0 in (0..n).step_by(JB) {
                let jn = JB.min(n - j0);
                // a short last group repeats its last row (results unused)
                let ys: [&[T]; JB] = std::array::from_fn(|jj| {
                    let j = j0 + jj.min(jn - 1);
                    &xb[j * k..(j + 1) * k]
                });
                for ii in 0..ni {
                    let i = i0 + ii;
                    kernel(
                        &xa[i * k..(i + 1) * k],
                        ys,
                        &mut dots[ii * nb * JB..(ii + 1) * nb * JB],
                    );
                }
                outs.emit(comb, alpha, (a, b, c), (i0, j0, jn), &dots, rows)?;
            }
            Ok(())
        })?;
    Ok(out)
}

/// `sum over blk of dots[blk * LT + q] << (sa[blk] + sb[blk * LT + q] - e0[q])` for the
/// [`LT`] lanes, in i64 (the caller uses only lanes whose terms fit; shifts are taken mod 64).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn shifted_sums(
    dots: &[i64],
    sa: &[i32],
    sb: &[i64],
    e0: &[i64; LT],
    nb: usize,
) -> [i64; LT] {
    let mut acc = [V8::splat(0); 2];
    let e = [V8::from_i64(&e0[..8]), V8::from_i64(&e0[8..])];
    for (blk, &sa) in sa.iter().enumerate().take(nb) {
        let s = V8::splat(sa as i64);
        for h in 0..2 {
            let at = blk * LT + 8 * h;
            let sh = s + V8::from_i64(&sb[at..]) - e[h];
            acc[h] = acc[h] + V8::from_i64(&dots[at..]).shl(sh);
        }
    }
    std::array::from_fn(|q| acc[q / 8].0[q % 8])
}

/// [`drive_tiled`] with the AVX-512 VNNI kernel ([`lanedot`]): per task of [`vnni_rows`] rows
/// of A, the block dots of [`RA`] rows against [`LT`] interleaved rows of B per call, K in
/// chunks of [`KC_BLOCKS`] blocks (elements split into 16-bit halves and rows of A
/// renormalised when `split`), then the sixteen outputs' combination ([`Combine::tile16`]) or
/// each group of [`JB`] outputs' ([`Groups::emit`]).
#[cfg(target_arch = "x86_64")]
fn drive_vnni(
    comb: &Combine,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    split: bool,
) -> Result<Vec<f32>> {
    let (m, n, k) = (a.rows, b.rows, a.cols);
    let (plan, nb, bs) = (comb.plan, comb.nb, a.block_size);
    let mut out = vec![0f32; m * n];
    if n == 0 || m == 0 {
        return Ok(out);
    }
    let (fa, fb) = (comb.fa, comb.fb);
    let (ah, al) = if split {
        rayon::join(
            || fa.vals(|v| lanedot::split(v).0),
            || fa.vals(|v| lanedot::split(v).1),
        )
    } else {
        (fa.vals(|v| v as i16), Vec::new())
    };
    // split values: A also renormalised block by block (two `vpdpwssd` per pair where a
    // group of rows fits 16 bits)
    let (an, ash) = if split {
        lanedot::normalise(m, k, bs, |e| fa.val(e))
    } else {
        (Vec::new(), Vec::new())
    };
    let (th, tl) = if split {
        rayon::join(
            || lanedot::interleave_pairs(n, k, |e| lanedot::split(fb.val(e)).0),
            || lanedot::interleave_pairs(n, k, |e| lanedot::split(fb.val(e)).1),
        )
    } else {
        (
            lanedot::interleave_pairs(n, k, |e| fb.val(e) as i16),
            Vec::new(),
        )
    };
    // B's scale lsbs per tile, block and lane (zero past the last row)
    let tiles = n.div_ceil(LT);
    let mut sbt = vec![0i64; tiles * nb * LT];
    for j in 0..n {
        for blk in 0..nb {
            sbt[((j / LT) * nb + blk) * LT + j % LT] = comb.slb[j * nb + blk] as i64;
        }
    }
    let (vr, kc) = (vnni_rows(m), KC_BLOCKS);
    out.par_chunks_mut(n * vr)
        .enumerate()
        .try_for_each(|(ti, rows)| -> Result<()> {
            let i0 = ti * vr;
            let ni = rows.len() / n;
            // RA rows per kernel call; rows past the end repeat the last one (results unused)
            let row = |g: usize, r: usize| i0 + (g * RA + r).min(ni - 1);
            let groups: Vec<([Parts; RA], Option<[Norm; RA]>)> = (0..ni.div_ceil(RA))
                .map(|g| {
                    let parts = std::array::from_fn(|r| {
                        let i = row(g, r);
                        Parts {
                            hi: &ah[i * k..(i + 1) * k],
                            lo: if split { &al[i * k..(i + 1) * k] } else { &[] },
                        }
                    });
                    let norms = split.then(|| {
                        std::array::from_fn(|r| {
                            let i = row(g, r);
                            Norm {
                                vals: &an[i * k..(i + 1) * k],
                                shift: &ash[i * nb..(i + 1) * nb],
                            }
                        })
                    });
                    (parts, norms)
                })
                .collect();
            let mut lanes = vec![0i64; groups.len() * RA * nb * LT];
            let mut dots = vec![0i64; ni * nb * JB];
            let mut outs = Groups::new(ni, nb);
            let mut cvs16 = vec![[Fp::ZERO; LT]; ni];
            let mut craws16 = vec![[Fp::ZERO; LT]; ni];
            let mut res16 = vec![[None; LT]; ni];
            for tile in 0..tiles {
                let tr = tile * k * LT..(tile + 1) * k * LT;
                let bt = Parts {
                    hi: &th[tr.clone()],
                    lo: if split { &tl[tr] } else { &[] },
                };
                // K in chunks whose part of the B tile stays in L1 across the row groups
                for c0 in (0..nb).step_by(kc) {
                    let chunk = c0..nb.min(c0 + kc);
                    for (g, (parts, norms)) in groups.iter().enumerate() {
                        let o = &mut lanes[g * RA * nb * LT..(g + 1) * RA * nb * LT];
                        let c = chunk.clone();
                        // SAFETY: only reached where lanedot::available() holds.
                        unsafe { lanedot::block_dots(*parts, *norms, bt, k, bs, c, o) };
                    }
                }
                let j0 = tile * LT;
                if j0 + LT <= n {
                    for ii in 0..ni {
                        for q in 0..LT {
                            let idx = (i0 + ii) * n + j0 + q;
                            (craws16[ii][q], cvs16[ii][q]) = c_of(alpha, c, idx);
                        }
                    }
                    let sb = &sbt[tile * nb * LT..(tile + 1) * nb * LT];
                    if comb.tile16(i0, j0, &cvs16, &lanes[..ni * nb * LT], sb, &mut res16) {
                        for ii in 0..ni {
                            for q in 0..LT {
                                let (i, j) = (i0 + ii, j0 + q);
                                let (craw, cv) = (craws16[ii][q], cvs16[ii][q]);
                                rows[ii * n + j] =
                                    emit(plan, alpha, a, b, i, j, craw, cv, res16[ii][q])?;
                            }
                        }
                        continue;
                    }
                }
                for g in 0..LT / JB {
                    let j0 = tile * LT + g * JB;
                    if j0 >= n {
                        break;
                    }
                    let jn = JB.min(n - j0);
                    for ii in 0..ni {
                        for blk in 0..nb {
                            let at = (ii * nb + blk) * LT + g * JB;
                            dots[(ii * nb + blk) * JB..(ii * nb + blk + 1) * JB]
                                .copy_from_slice(&lanes[at..at + JB]);
                        }
                    }
                    outs.emit(comb, alpha, (a, b, c), (i0, j0, jn), &dots, rows)?;
                }
            }
            Ok(())
        })?;
    Ok(out)
}

/// Fast GEMM, or `None` when the plan or the data needs the general path.
pub(crate) fn gemm_fast(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
) -> Result<Option<Vec<f32>>> {
    let Some(sh) = shape(plan, a, b) else {
        return Ok(None);
    };
    let (Some(fa), Some(fb)) = (fixed(a, &plan.ea, &plan.sa), fixed(b, &plan.eb, &plan.sb)) else {
        return Ok(None);
    };
    let k = a.cols;
    let bs = a.block_size;
    let nb = k.div_ceil(bs);
    let width = fa.bits + fb.bits + (usize::BITS - bs.leading_zeros());
    let ra = scale_range(&fa, a.rows, nb);
    let rb = scale_range(&fb, b.rows, nb);
    let sbits =
        ra.iter().map(|r| r.2).max().unwrap_or(0) + rb.iter().map(|r| r.2).max().unwrap_or(0);
    let cfg = &plan.cfg;
    let comb = Combine {
        plan,
        sh,
        fa: &fa,
        fb: &fb,
        ra,
        rb,
        nb,
        width,
        f32_rne: cfg.accumulator == FloatFormat::FP32
            && cfg.acc_rounding == RoundMode::Rne
            && width + sbits <= 62,
        unit_sig: fa.scales.iter().chain(&fb.scales).all(|s| s.0 == 1),
        avx512: has_avx512() && Isa::detect() == Isa::Avx512,
        sla: fa.scales.iter().map(|s| s.1).collect(),
        slb: fb.scales.iter().map(|s| s.1).collect(),
    };
    let isa = Isa::detect();
    let narrow = fa.bits <= 15 && fb.bits <= 15 && width <= 31;
    // E4M3-sized values split into 16-bit halves: each half's block sums fit 32 bits
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512
        && lanedot::available()
        && has_avx512()
        && (narrow || (fa.bits <= 18 && fb.bits <= 18 && bs <= 64))
        && bs.is_multiple_of(2)
        && k.is_multiple_of(bs)
    {
        return drive_vnni(&comb, alpha, a, b, c, !narrow).map(Some);
    }
    if narrow {
        let (xa, xb) = (fa.vals(|v| v as i16), fb.vals(|v| v as i16));
        let kern = |x: &[i16], ys: [&[i16]; JB], o: &mut [i64]| block_dots_i16(isa, x, ys, bs, o);
        return drive_tiled(&comb, alpha, a, b, c, &xa, &xb, kern).map(Some);
    }
    if fa.bits <= 31 && fb.bits <= 31 && width <= 63 {
        let (xa, xb) = (fa.vals(|v| v as i32), fb.vals(|v| v as i32));
        let kern = |x: &[i32], ys: [&[i32]; JB], o: &mut [i64]| block_dots_i32(isa, x, ys, bs, o);
        return drive_tiled(&comb, alpha, a, b, c, &xa, &xb, kern).map(Some);
    }
    // 64-bit lanes (E5M2 pairs): one block dot at a time
    let (xa, xb) = (&fa.vals(|v| v), &fb.vals(|v| v));
    let one = |i: usize, j: usize, cv: Fp| -> Option<Fp> {
        comb.one(i, j, cv, |blk| {
            let (s, e) = (blk * bs, ((blk + 1) * bs).min(k));
            idot64(&xa[i * k + s..i * k + e], &xb[j * k + s..j * k + e])
        })
    };
    super::fast_bounded::drive(plan, alpha, a, b, c, one).map(Some)
}
