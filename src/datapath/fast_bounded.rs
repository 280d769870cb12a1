//! Fast paths for the bounded-window (truncating) datapaths: Blackwell `mxf8f6f4` and
//! `mxf4nvf4`, Hopper FP8, MXDOTP, and any configuration of the same shape.
//!
//! Operands are decoded once per GEMM, and rows of B are interleaved eight at a time so that
//! [`super::lanes`] runs eight outputs (one row of A against eight rows of B) in the lanes of
//! one vector. For per-product alignment (`group = 1`, scales at the product) every element
//! becomes a small signed integer `v` (its significand times its block scale's significand)
//! with the exponents of its least significant bit and of its leading bit (`lead`, the
//! exponent a multiplier sees; far below every real exponent for a zero element). For scales
//! applied to group sums (`mxf4nvf4`), elements become fixed-point integers at the format's
//! smallest step, and a group's exact sum is an integer dot product.
//!
//! Outputs with a NaN/Inf element or a NaN scale, and outputs a lane declines (a non-finite,
//! subnormal or `-0` start, a subnormal or overflowing step, a term too wide for 64 bits) are
//! recomputed by the general path. Tested to equal the general path bit for bit
//! (`tests/datapath_fast.rs`), and to decline nothing on ordinary data (below).

use super::blockdot::Isa;
use super::config::{AccJoin, ScaleAt, TermExponent};
use super::engine::{dot_general, epilogue, El, Plan, Sc};
use super::float::Fp;
use super::lanes::{
    self, GroupRow, GroupTile, Groups, ProdRow, ProdTile, Tile, Window, LANES, MAX_GROUPS, NO_LEAD,
};
use crate::error::Result;
use crate::mx::MxTensor;
use rayon::prelude::*;

/// Folded element significands must stay below this (products below 2^22).
const MAX_V: u64 = 1 << 11;
/// Largest magnitude of a folded element's lead exponent.
const MAX_LEAD: i32 = 4000;
/// Longest instruction the 64-bit product sum supports.
const MAX_CHUNK: usize = 4096;

/// Per-product operand data, block scale folded into each element; zero elements have
/// `v == 0` and lead [`NO_LEAD`].
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
    let mut lead = vec![NO_LEAD as i16; rows * k];
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
                        // far above NO_LEAD: a product with a zero factor never sets the window
                        if (d + sd).abs() > MAX_LEAD {
                            return None;
                        }
                        lead[idx] = (d + sd) as i16;
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

/// Group-sum operand data: elements as fixed-point integers at the format's smallest lsb,
/// scales per block.
struct Fixed {
    x: Vec<i32>,
    base: i32,
    bits: u32,
    /// Per row and block: (sig, lsb, lead); sig 0 for a zero scale.
    scales: Vec<(i64, i64, i64)>,
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
                Sc::Fin { sig, lsb, lead } => scales.push((sig as i64, lsb as i64, lead as i64)),
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

/// Which kernel a plan can use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Products,
    Groups,
}

fn kind(plan: &Plan) -> Option<Kind> {
    let c = &plan.cfg;
    if c.term_exponent != TermExponent::OperandSum
        || c.acc_join != AccJoin::Fused
        || plan.chunks.iter().any(|&(_, l)| l > MAX_CHUNK)
    {
        return None;
    }
    match c.scale_at {
        ScaleAt::Product if c.group == 1 => Some(Kind::Products),
        ScaleAt::GroupSum => Some(Kind::Groups),
        _ => None,
    }
}

/// Rows of B interleaved eight at a time (`out[(tile * k + t) * LANES + q]` holds element
/// `t` of row `tile * LANES + q`); missing rows of the last tile get `pad`.
fn interleave<T: Copy + Send + Sync>(x: &[T], rows: usize, k: usize, pad: T) -> Vec<T> {
    let tiles = rows.div_ceil(LANES);
    let mut out = vec![pad; tiles * k * LANES];
    out.par_chunks_mut(k * LANES)
        .enumerate()
        .for_each(|(tile, o)| {
            for q in 0..LANES {
                let r = tile * LANES + q;
                if r < rows {
                    for t in 0..k {
                        o[t * LANES + q] = x[r * k + t];
                    }
                }
            }
        });
    out
}

/// Run `f(i, tile, c)` for every row of A and every tile of eight rows of B (parallel over
/// row tiles of A, a fixed order inside), recomputing declined outputs with the general path;
/// applies the global-scale epilogue. Outputs of `special` rows of A or B (a NaN/Inf element
/// or NaN scale) always go to the general path. Also returns how many outputs the lanes
/// declined.
fn drive_lanes(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
    special: (&[bool], &[bool]),
    f: impl Fn(usize, usize, &[Fp; LANES]) -> [Option<Fp>; LANES] + Sync,
) -> Result<(Vec<f32>, u64)> {
    let (m, n) = (a.rows, b.rows);
    let mut out = vec![0f32; m * n];
    if n == 0 {
        return Ok((out, 0));
    }
    let declined = std::sync::atomic::AtomicU64::new(0);
    out.par_chunks_mut(n * TI)
        .enumerate()
        .try_for_each(|(ti, rows)| -> Result<()> {
            let i0 = ti * TI;
            for jt in 0..n.div_ceil(LANES) {
                for ii in 0..rows.len() / n {
                    let i = i0 + ii;
                    let mut craw = [Fp::ZERO; LANES];
                    let mut cv = [Fp::ZERO; LANES];
                    for q in 0..LANES {
                        let j = jt * LANES + q;
                        if j < n {
                            (craw[q], cv[q]) = c_of(alpha, c, i * n + j);
                        }
                    }
                    let r = f(i, jt, &cv);
                    for q in 0..LANES {
                        let j = jt * LANES + q;
                        if j < n {
                            let r = if special.0[i] || special.1[j] {
                                None
                            } else {
                                if r[q].is_none() {
                                    declined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                r[q]
                            };
                            rows[ii * n + j] = emit(plan, alpha, a, b, i, j, craw[q], cv[q], r)?;
                        }
                    }
                }
            }
            Ok(())
        })?;
    Ok((out, declined.into_inner()))
}

/// Fast GEMM for bounded-window plans ([`lanes`]), or `None` when the plan or the operands
/// need the general path.
pub(crate) fn gemm_bounded(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
) -> Result<Option<Vec<f32>>> {
    Ok(gemm_bounded_counted(plan, alpha, a, b, c)?.map(|(out, _)| out))
}

/// [`gemm_bounded`] and the number of outputs the lanes declined (recomputed by the general
/// path).
fn gemm_bounded_counted(
    plan: &Plan,
    alpha: Option<Fp>,
    a: &MxTensor,
    b: &MxTensor,
    c: Option<&[f32]>,
) -> Result<Option<(Vec<f32>, u64)>> {
    let (Some(kind), Some(w)) = (kind(plan), Window::of(&plan.cfg)) else {
        return Ok(None);
    };
    let isa = Isa::detect();
    let k = a.cols;
    match kind {
        Kind::Products => {
            let (Some(fa), Some(fb)) = (fold(a, &plan.ea, &plan.sa), fold(b, &plan.eb, &plan.sb))
            else {
                return Ok(None);
            };
            let n = b.rows;
            let bv = interleave(&fb.v, n, k, 0);
            let bl = interleave(&fb.lsb, n, k, 0);
            let bd = interleave(&fb.lead, n, k, NO_LEAD as i16);
            let f = |i: usize, jt: usize, cv: &[Fp; LANES]| {
                let row = ProdRow {
                    v: &fa.v[i * k..(i + 1) * k],
                    lsb: &fa.lsb[i * k..(i + 1) * k],
                    lead: &fa.lead[i * k..(i + 1) * k],
                };
                let tr = jt * k * LANES..(jt + 1) * k * LANES;
                let tile = ProdTile {
                    v: &bv[tr.clone()],
                    lsb: &bl[tr.clone()],
                    lead: &bd[tr],
                };
                lanes::tile(isa, &w, plan, &Tile::Products(&row, &tile), cv)
            };
            drive_lanes(plan, alpha, a, b, c, (&fa.special, &fb.special), f).map(Some)
        }
        Kind::Groups => {
            let (Some(xa), Some(xb)) = (fixed(a, &plan.ea, &plan.sa), fixed(b, &plan.eb, &plan.sb))
            else {
                return Ok(None);
            };
            let cfg = &plan.cfg;
            let (gmax, most) = plan.chunks.iter().fold((1, 1), |(g, n), &(_, l)| {
                let gs = if cfg.group == 0 { l } else { cfg.group.min(l) };
                (g.max(gs), n.max(l.div_ceil(gs)))
            });
            let lg = usize::BITS - gmax.leading_zeros();
            let sig_bits = |s: &[(i64, i64, i64)]| {
                64 - s.iter().map(|x| x.0).max().unwrap_or(0).leading_zeros()
            };
            if most > MAX_GROUPS
                || xa.bits + xb.bits + lg + sig_bits(&xa.scales) + sig_bits(&xb.scales) > 61
            {
                return Ok(None);
            }
            let g = Groups {
                group: cfg.group,
                ba: plan.ba,
                bb: plan.bb,
                base: (xa.base + xb.base) as i64,
            };
            let n = b.rows;
            let (bpa, bpb) = (a.blocks_per_row(), b.blocks_per_row());
            let bx = interleave(&xb.x, n, k, 0);
            let part = |f: fn(&(i64, i64, i64)) -> i64| {
                interleave(&xb.scales.iter().map(f).collect::<Vec<_>>(), n, bpb, 0)
            };
            let (bsig, blsb, blead) = (part(|s| s.0), part(|s| s.1), part(|s| s.2));
            let f = |i: usize, jt: usize, cv: &[Fp; LANES]| {
                let row = GroupRow {
                    x: &xa.x[i * k..(i + 1) * k],
                    scales: &xa.scales[i * bpa..(i + 1) * bpa],
                };
                let tile = GroupTile {
                    x: &bx[jt * k * LANES..(jt + 1) * k * LANES],
                    sig: &bsig[jt * bpb * LANES..(jt + 1) * bpb * LANES],
                    lsb: &blsb[jt * bpb * LANES..(jt + 1) * bpb * LANES],
                    lead: &blead[jt * bpb * LANES..(jt + 1) * bpb * LANES],
                };
                lanes::tile(isa, &w, plan, &Tile::Groups(&g, &row, &tile), cv)
            };
            drive_lanes(plan, alpha, a, b, c, (&xa.special, &xb.special), f).map(Some)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::{preset_names, DatapathConfig};
    use crate::mx::{quantize, MxConfig, Scheme};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// On ordinary data (uniform values, a C of the same size) every windowed preset computes
    /// every output in the lanes: none is handed to the general path, for every instruction
    /// set. (That the lanes equal the general path is `tests/datapath_fast.rs`.)
    #[test]
    fn lanes_decline_nothing_on_ordinary_data() {
        let (m, n, k) = (5, 19, 300);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut data =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect() };
        let (xa, xb, c) = (data(m * k), data(n * k), data(m * n));
        let mut ran = 0;
        for name in preset_names() {
            let cfg = DatapathConfig::preset(name).unwrap();
            for s in [
                Scheme::Mxfp4,
                Scheme::Mxfp8E4m3,
                Scheme::Mxfp6E2m3,
                Scheme::Nvfp4,
            ] {
                let (Ok(a), Ok(b)) = (
                    quantize(&xa, m, k, &MxConfig::new(s)),
                    quantize(&xb, n, k, &MxConfig::new(s)),
                ) else {
                    continue;
                };
                let Ok(plan) = Plan::new(&cfg, s, a.block_size, s, b.block_size, k) else {
                    continue;
                };
                if kind(&plan).is_none() {
                    continue;
                }
                let (_, declined) = gemm_bounded_counted(&plan, None, &a, &b, Some(&c))
                    .unwrap()
                    .unwrap_or_else(|| panic!("{name} {s}: lanes not used"));
                assert_eq!(declined, 0, "{name} {s}");
                ran += 1;
            }
        }
        assert!(ran >= 12, "only {ran} preset/scheme pairs ran in the lanes");
    }
}
