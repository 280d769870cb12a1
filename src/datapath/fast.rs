//! Fast path for the exact-block datapaths (`exact`, `ocp-fp32`, and any configuration with an
//! unbounded window, one instruction per block or per reduction, no flush-to-zero, no
//! promotion): every element becomes a small fixed-point integer, a block's dot product is an
//! exact integer dot product (i16 x i16 -> i32 for FP4/FP6/INT8 pairs, i32 x i32 -> i64, or
//! i64 x i64 -> i128 with E5M2), scaled by its block scales and summed exactly (a wide
//! accumulator) or rounded block by block, exactly as the general path does. Outputs whose
//! result is an exact zero (whose sign needs the IEEE zero rules) are recomputed by the
//! general path. Tested to equal the general path bit for bit (`tests/datapath_exact.rs`).

use super::config::{AccJoin, DatapathConfig, ScaleAt};
use super::engine::{dot_general, epilogue, El, Plan, Sc};
use super::float::{add_exact, round_fp, round_parts, Fp};
use super::wide::Wide;
use crate::error::Result;
use crate::mx::MxTensor;
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

/// The per-output state.
#[derive(Clone)]
enum State {
    Wide(Box<Wide>),
    Fp(Fp),
}

const TI: usize = 8;
const TJ: usize = 32;

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
    // choose the integer width of the block dot
    enum Lanes {
        L16(Vec<i16>, Vec<i16>),
        L32(Vec<i32>, Vec<i32>),
        L64,
    }
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
        Lanes::L64
    };
    let block_dot = |i: usize, j: usize, s: usize, e: usize| -> i128 {
        match &lanes {
            Lanes::L16(x, y) => {
                let xa = &x[i * k + s..i * k + e];
                let yb = &y[j * k + s..j * k + e];
                xa.iter()
                    .zip(yb)
                    .map(|(&p, &q)| p as i32 * q as i32)
                    .sum::<i32>() as i128
            }
            Lanes::L32(x, y) => {
                let xa = &x[i * k + s..i * k + e];
                let yb = &y[j * k + s..j * k + e];
                xa.iter()
                    .zip(yb)
                    .map(|(&p, &q)| p as i64 * q as i64)
                    .sum::<i64>() as i128
            }
            Lanes::L64 => {
                let xa = &fa.vals[i * k + s..i * k + e];
                let yb = &fb.vals[j * k + s..j * k + e];
                xa.iter()
                    .zip(yb)
                    .map(|(&p, &q)| p as i128 * q as i128)
                    .sum::<i128>()
            }
        }
    };
    let cfg = &plan.cfg;
    let base_lsb = fa.lsb + fb.lsb;
    let tiles_i = m.div_ceil(TI);
    let tiles_j = n.div_ceil(TJ);
    let results: Vec<Vec<(usize, u32)>> = (0..tiles_i * tiles_j)
        .into_par_iter()
        .map(|t| -> Result<Vec<(usize, u32)>> {
            let (ti, tj) = (t / tiles_j, t % tiles_j);
            let (i0, i1) = (ti * TI, ((ti + 1) * TI).min(m));
            let (j0, j1) = (tj * TJ, ((tj + 1) * TJ).min(n));
            let cval = |i: usize, j: usize| -> Fp {
                if alpha.is_some() {
                    Fp::ZERO
                } else {
                    Fp::from_f32_bits(c.map_or(0, |c| c[i * n + j].to_bits()))
                }
            };
            let mut st: Vec<State> = Vec::with_capacity((i1 - i0) * (j1 - j0));
            for i in i0..i1 {
                for j in j0..j1 {
                    st.push(match sh {
                        Shape::WholeExact => State::Wide(Box::default()),
                        Shape::BlockAfter => State::Fp(round_fp(
                            cval(i, j),
                            cfg.accumulator,
                            cfg.acc_rounding,
                            false,
                        )),
                    });
                }
            }
            let mut redo = vec![false; st.len()];
            for blk in 0..nb {
                let (s, e) = (blk * bs, ((blk + 1) * bs).min(k));
                for i in i0..i1 {
                    let (sga, sla) = fa.scales[i * nb + blk];
                    for j in j0..j1 {
                        let idx = (i - i0) * (j1 - j0) + (j - j0);
                        let (sgb, slb) = fb.scales[j * nb + blk];
                        let d = block_dot(i, j, s, e);
                        let ssig = sga as i128 * sgb as i128;
                        let v = d * ssig;
                        let lsb = base_lsb + sla + slb;
                        match &mut st[idx] {
                            State::Wide(w) => w.add(v < 0, v.unsigned_abs(), lsb),
                            State::Fp(acc) => {
                                if v == 0 {
                                    if matches!(acc, Fp::Zero { .. }) {
                                        redo[idx] = true;
                                    }
                                    continue;
                                }
                                let sfp = round_parts(
                                    v < 0,
                                    v.unsigned_abs(),
                                    lsb,
                                    false,
                                    cfg.accumulator,
                                    cfg.acc_rounding,
                                    false,
                                );
                                *acc =
                                    add_exact(*acc, sfp, cfg.accumulator, cfg.acc_rounding, false);
                            }
                        }
                    }
                }
            }
            let mut out = Vec::with_capacity(st.len());
            for i in i0..i1 {
                for j in j0..j1 {
                    let idx = (i - i0) * (j1 - j0) + (j - j0);
                    let cv = cval(i, j);
                    let r = match &mut st[idx] {
                        State::Wide(w) => {
                            if let Fp::Finite { neg, sig, exp } = cv {
                                w.add(neg, sig as u128, exp);
                            }
                            if w.is_zero() || !matches!(cv, Fp::Finite { .. } | Fp::Zero { .. }) {
                                redo[idx] = true;
                                Fp::ZERO
                            } else {
                                w.round(cfg.accumulator, cfg.acc_rounding, false, false)
                            }
                        }
                        State::Fp(acc) => *acc,
                    };
                    let r = if redo[idx] {
                        let ar = super::row_of(a, i);
                        let br = super::row_of(b, j);
                        dot_general(plan, &ar, &br, cv)?
                    } else {
                        round_fp(r, cfg.output, cfg.output_rounding, false)
                    };
                    let r = match alpha {
                        Some(al) => epilogue(
                            al,
                            r,
                            Fp::from_f32_bits(c.map_or(0, |c| c[i * n + j].to_bits())),
                            cfg,
                        ),
                        None => r,
                    };
                    out.push((i * n + j, r.to_f32_bits(cfg.nan_bits)));
                }
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut d = vec![0f32; m * n];
    for tile in results {
        for (idx, bits) in tile {
            d[idx] = f32::from_bits(bits);
        }
    }
    Ok(Some(d))
}
