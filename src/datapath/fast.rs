//! Fast path for the exact-block datapaths (`exact`, `ocp-fp32`, and any configuration with an
//! unbounded window, one instruction per block or per reduction, no flush-to-zero, no
//! promotion): every element becomes a small fixed-point integer, a block's dot product is an
//! exact integer dot product (i16 x i16 -> i32 for FP4/FP6/INT8 pairs, i32 x i32 -> i64, or
//! i64 x i64 -> i128 with E5M2), scaled by its block scales and summed exactly (a wide
//! accumulator) or rounded block by block, exactly as the general path does. Outputs whose
//! result is an exact zero (whose sign needs the IEEE zero rules) are recomputed by the
//! general path. Tested to equal the general path bit for bit (`tests/datapath_exact.rs`).

use super::config::{AccJoin, DatapathConfig, ScaleAt};
use super::engine::{El, Plan, Sc};
use super::float::{add_exact, round_fp, round_parts, FloatFormat, Fp, RoundMode};
use super::wide::Wide;
use crate::error::Result;
use crate::mx::MxTensor;

use super::fast_bounded::{has_avx2, idot16, idot32, idot64};

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

/// An operand decoded to fixed-point integers at a common lsb exponent.
struct Fixed {
    vals: Vec<i64>,
    lsb: i32,
    bits: u32,
    /// Scale parts per block: (sig, lsb).
    scales: Vec<(u32, i32)>,
}

fn fixed(t: &MxTensor, lut: &[El; 256], slut: &[Sc; 256]) -> Option<Fixed> {
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
        vals: t.codes.iter().map(|&c| table[c as usize]).collect(),
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

/// Element lanes of the block dot products.
enum Lanes {
    /// i16 values, i32 sums.
    L16(Vec<i16>, Vec<i16>),
    /// i32 values, i64 sums.
    L32(Vec<i32>, Vec<i32>),
    /// i64 values, i128 sums.
    L64(Vec<i64>, Vec<i64>),
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
    let (m, n, k) = (a.rows, b.rows, a.cols);
    let bs = a.block_size;
    let nb = k.div_ceil(bs);
    let width = fa.bits + fb.bits + (usize::BITS - bs.leading_zeros());
    let lanes = if fa.bits <= 15 && fb.bits <= 15 && width <= 31 {
        Lanes::L16(
            fa.vals.iter().map(|&v| v as i16).collect(),
            fb.vals.iter().map(|&v| v as i16).collect(),
        )
    } else if fa.bits <= 31 && fb.bits <= 31 && width <= 63 {
        Lanes::L32(
            fa.vals.iter().map(|&v| v as i32).collect(),
            fb.vals.iter().map(|&v| v as i32).collect(),
        )
    } else {
        Lanes::L64(fa.vals.clone(), fb.vals.clone())
    };
    let avx = has_avx2();
    let block_dot = |i: usize, j: usize, s: usize, e: usize| -> i128 {
        let (x0, y0) = (i * k, j * k);
        match &lanes {
            Lanes::L16(x, y) => idot16(avx, &x[x0 + s..x0 + e], &y[y0 + s..y0 + e]) as i128,
            Lanes::L32(x, y) => idot32(avx, &x[x0 + s..x0 + e], &y[y0 + s..y0 + e]) as i128,
            Lanes::L64(x, y) => idot64(avx, &x[x0 + s..x0 + e], &y[y0 + s..y0 + e]),
        }
    };
    let cfg = &plan.cfg;
    let base_lsb = fa.lsb + fb.lsb;
    let ra = scale_range(&fa, m, nb);
    let rb = scale_range(&fb, n, nb);
    let lg_nb = usize::BITS - nb.leading_zeros();
    // one output: Some(result in the output format) or None (recompute by the general path)
    let one = |i: usize, j: usize, cv: Fp| -> Option<Fp> {
        match sh {
            Shape::WholeExact => {
                let (alo, ahi, asb) = ra[i];
                let (blo, bhi, bsb) = rb[j];
                let e0 = alo + blo;
                let narrow = (ahi - alo + bhi - blo) as u32 + width + asb + bsb + lg_nb + 2 < 126;
                let mut w = Wide::new();
                let mut acc: i128 = 0;
                for blk in 0..nb {
                    let (s, e) = (blk * bs, ((blk + 1) * bs).min(k));
                    let (sga, sla) = fa.scales[i * nb + blk];
                    let (sgb, slb) = fb.scales[j * nb + blk];
                    let d = block_dot(i, j, s, e);
                    let v = d * (sga as i128 * sgb as i128);
                    if narrow {
                        acc += v << (sla + slb - e0);
                    } else {
                        w.add(v < 0, v.unsigned_abs(), base_lsb + sla + slb);
                    }
                }
                if narrow {
                    w.add(acc < 0, acc.unsigned_abs(), base_lsb + e0);
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
            Shape::BlockAfter => {
                let mut acc = round_fp(cv, cfg.accumulator, cfg.acc_rounding, false);
                for blk in 0..nb {
                    if !matches!(acc, Fp::Finite { .. } | Fp::Zero { .. }) {
                        return None;
                    }
                    let (s, e) = (blk * bs, ((blk + 1) * bs).min(k));
                    let (sga, sla) = fa.scales[i * nb + blk];
                    let (sgb, slb) = fb.scales[j * nb + blk];
                    let d = block_dot(i, j, s, e);
                    let v = d * (sga as i128 * sgb as i128);
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
    };
    super::fast_bounded::drive(plan, alpha, a, b, c, one).map(Some)
}
