//! Exact integer block dot products of [`RA`] rows of A against [`LT`] rows of B at once, with
//! the sixteen B rows in the lanes of one vector: the AVX-512 VNNI inner loop of the
//! exact-block fast path ([`super::fast`]).
//!
//! Rows of B are interleaved by element pairs (`[pair][row][2]`), so one `vpdpwssd` multiplies
//! a broadcast pair of A elements with the same pair of all sixteen B rows and adds both
//! products into each row's 32-bit lane: no horizontal sums, and every B load serves
//! [`RA`] rows of A. Elements wider than 16 bits (E4M3's 18-bit fixed-point values) are split
//! as `x = xh * 2^9 + xl` with `0 <= xl < 2^9`, and a block dot becomes
//! `HH * 2^18 + (HL + LH) * 2^9 + LL`, four `vpdpwssd` per pair. Integer sums are exact, so
//! the results equal the plain block dots ([`super::blockdot`]) bit for bit; the caller
//! guarantees that no 32-bit lane overflows.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

/// B rows per lane tile.
pub(crate) const LT: usize = 16;
/// A rows per pass.
pub(crate) const RA: usize = 4;
/// Low part width of a split element.
pub(crate) const SPLIT: u32 = 9;

/// Whether this CPU can run the kernel (AVX-512 F/BW and VNNI).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `rows` rows of `k` (even) elements, element `e` of row `r` being `x(r * k + e)`,
/// interleaved by pairs in tiles of [`LT`] rows: `out[((tile * k / 2 + p) * LT + q) * 2 + h]`
/// is element `2p + h` of row `tile * LT + q` (zero for rows past the end).
pub(crate) fn interleave_pairs(rows: usize, k: usize, x: impl Fn(usize) -> i16 + Sync) -> Vec<i16> {
    use rayon::prelude::*;
    let tiles = rows.div_ceil(LT);
    let mut out = vec![0i16; tiles * k * LT];
    out.par_chunks_mut(k * LT)
        .enumerate()
        .for_each(|(tile, o)| {
            for q in 0..LT.min(rows - tile * LT) {
                let r = tile * LT + q;
                for p in 0..k / 2 {
                    o[(p * LT + q) * 2] = x(r * k + 2 * p);
                    o[(p * LT + q) * 2 + 1] = x(r * k + 2 * p + 1);
                }
            }
        });
    out
}

/// The operand halves of a split (or the whole 16-bit values, `lo` empty).
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub hi: &'a [i16],
    pub lo: &'a [i16],
}

/// A row of A renormalised block by block ([`normalise`]): `vals[e] * 2^shift[blk]` is the
/// row's element `e` of block `blk` where `shift[blk] >= 0`; `-1` marks a block whose values
/// do not fit 16 bits that way.
#[derive(Clone, Copy)]
pub(crate) struct Norm<'a> {
    pub vals: &'a [i16],
    pub shift: &'a [i8],
}

/// Largest magnitude of a renormalised value: with B's 16-bit halves below `2^9`, a block
/// of up to 128 products stays below `2^31`.
const NORM_MAX: i64 = 32767;

/// Each row's blocks of `bs` fixed-point values shifted right by their common trailing zero
/// bits, as 16-bit values where they then fit ([`Norm`]); `rows` rows of `k` values, element
/// `e` of row `r` being `x(r * k + e)`.
pub(crate) fn normalise(
    rows: usize,
    k: usize,
    bs: usize,
    x: impl Fn(usize) -> i64 + Sync,
) -> (Vec<i16>, Vec<i8>) {
    use rayon::prelude::*;
    let nb = k / bs;
    let mut vals = vec![0i16; rows * k];
    let mut shift = vec![0i8; rows * nb];
    vals.par_chunks_mut(k)
        .zip(shift.par_chunks_mut(nb))
        .enumerate()
        .for_each(|(r, (v, sh))| {
            let mut xs = vec![0i64; bs];
            for blk in 0..nb {
                for (t, v) in xs.iter_mut().enumerate() {
                    *v = x(r * k + blk * bs + t);
                }
                let tz = xs
                    .iter()
                    .map(|&e| e.trailing_zeros())
                    .min()
                    .unwrap_or(0)
                    .min(62);
                if xs.iter().all(|&e| (e >> tz).abs() <= NORM_MAX) {
                    for (o, &e) in v[blk * bs..(blk + 1) * bs].iter_mut().zip(&xs) {
                        *o = (e >> tz) as i16;
                    }
                    sh[blk] = tz as i8;
                } else {
                    sh[blk] = -1;
                }
            }
        });
    (vals, shift)
}

/// Block dots of rows `a[r]` (each `k` elements, `k` a multiple of the even block size `bs`)
/// against one interleaved tile `b` of [`LT`] rows, for the blocks in `blocks`:
/// `out[(r * nb + blk) * LT + q]` with `nb = k / bs`. With split B values and the rows
/// renormalised (`an`), a block where all [`RA`] rows fit 16 bits multiplies the whole
/// renormalised A values by B's halves (two `vpdpwssd` per pair instead of four).
///
/// # Safety
/// Only call where [`available`] is true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)] // r indexes several register arrays in step
pub(crate) unsafe fn block_dots(
    a: [Parts; RA],
    an: Option<[Norm; RA]>,
    b: Parts,
    k: usize,
    bs: usize,
    blocks: std::ops::Range<usize>,
    out: &mut [i64],
) {
    use std::arch::x86_64::*;
    let nb = k / bs;
    let split = !b.lo.is_empty();
    assert!(bs.is_multiple_of(2) && k.is_multiple_of(bs) && out.len() >= RA * nb * LT);
    assert!(blocks.end <= nb);
    assert!(b.hi.len() >= k * LT && (!split || b.lo.len() >= k * LT));
    for p in a.iter() {
        assert!(p.hi.len() >= k && (!split || p.lo.len() >= k));
    }
    if let Some(an) = &an {
        assert!(split && bs <= 128);
        for n in an {
            assert!(n.vals.len() >= k && n.shift.len() >= nb);
        }
    }
    // a pair of A elements as one broadcast 32-bit value
    let pair = |x: &[i16], e: usize| -> __m512i {
        _mm512_set1_epi32((x.as_ptr().add(e) as *const i32).read_unaligned())
    };
    // pair p of the sixteen rows of a B plane
    let bvec = |plane: &[i16], p: usize| -> __m512i {
        _mm512_loadu_si512(plane.as_ptr().add(p * 2 * LT) as *const _)
    };
    let widen = |v: __m512i| -> [__m512i; 2] {
        [
            _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)),
            _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(v)),
        ]
    };
    let store = |out: &mut [i64], at: usize, v: [__m512i; 2]| {
        _mm512_storeu_si512(out.as_mut_ptr().add(at) as *mut _, v[0]);
        _mm512_storeu_si512(out.as_mut_ptr().add(at + 8) as *mut _, v[1]);
    };
    let zero = _mm512_setzero_si512();
    for blk in blocks {
        let (p0, p1) = (blk * bs / 2, (blk + 1) * bs / 2);
        if !split {
            // two chains per row (even and odd pairs): the dependent `vpdpwssd` latency
            // is hidden behind 2 * RA independent accumulations
            let mut acc = [[zero; RA]; 2];
            let mut p = p0;
            while p + 1 < p1 {
                for (h, acc) in acc.iter_mut().enumerate() {
                    let bv = bvec(b.hi, p + h);
                    for r in 0..RA {
                        acc[r] = _mm512_dpwssd_epi32(acc[r], bv, pair(a[r].hi, 2 * (p + h)));
                    }
                }
                p += 2;
            }
            if p < p1 {
                let bv = bvec(b.hi, p);
                for r in 0..RA {
                    acc[0][r] = _mm512_dpwssd_epi32(acc[0][r], bv, pair(a[r].hi, 2 * p));
                }
            }
            for r in 0..RA {
                store(
                    out,
                    (r * nb + blk) * LT,
                    widen(_mm512_add_epi32(acc[0][r], acc[1][r])),
                );
            }
        } else if let Some(an) = an.filter(|an| an.iter().all(|n| n.shift[blk] >= 0)) {
            let mut h = [zero; RA];
            let mut l = [zero; RA];
            for p in p0..p1 {
                let bh = bvec(b.hi, p);
                let bl = bvec(b.lo, p);
                for r in 0..RA {
                    let av = pair(an[r].vals, 2 * p);
                    h[r] = _mm512_dpwssd_epi32(h[r], bh, av);
                    l[r] = _mm512_dpwssd_epi32(l[r], bl, av);
                }
            }
            for r in 0..RA {
                let (hw, lw) = (widen(h[r]), widen(l[r]));
                let count = _mm_cvtsi32_si128(an[r].shift[blk] as i32);
                let v = [0, 1].map(|i| {
                    let t = _mm512_add_epi64(_mm512_slli_epi64::<SPLIT>(hw[i]), lw[i]);
                    _mm512_sll_epi64(t, count)
                });
                store(out, (r * nb + blk) * LT, v);
            }
        } else {
            let mut hh = [zero; RA];
            let mut x = [zero; RA];
            let mut ll = [zero; RA];
            for p in p0..p1 {
                let bh = bvec(b.hi, p);
                let bl = bvec(b.lo, p);
                for r in 0..RA {
                    let (ah, al) = (pair(a[r].hi, 2 * p), pair(a[r].lo, 2 * p));
                    hh[r] = _mm512_dpwssd_epi32(hh[r], bh, ah);
                    x[r] = _mm512_dpwssd_epi32(x[r], bl, ah);
                    x[r] = _mm512_dpwssd_epi32(x[r], bh, al);
                    ll[r] = _mm512_dpwssd_epi32(ll[r], bl, al);
                }
            }
            for r in 0..RA {
                let (h, m, l) = (widen(hh[r]), widen(x[r]), widen(ll[r]));
                let v = [0, 1].map(|i| {
                    let t = _mm512_add_epi64(
                        _mm512_slli_epi64::<{ 2 * SPLIT }>(h[i]),
                        _mm512_slli_epi64::<SPLIT>(m[i]),
                    );
                    _mm512_add_epi64(t, l[i])
                });
                store(out, (r * nb + blk) * LT, v);
            }
        }
    }
}

/// A fixed-point value of up to 25 bits as 16-bit halves `x = hi * 2^SPLIT + lo`.
pub(crate) fn split(x: i64) -> (i16, i16) {
    ((x >> SPLIT) as i16, (x & ((1 << SPLIT) - 1)) as i16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The kernel's block dots equal plain integer block dots, whole and split, with the
    /// extreme values of each range and rows past the end of B.
    #[test]
    fn lane_dots_equal_plain_dots() {
        if !available() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for (lim, split_it, renorm) in [
            (1i64 << 10, false, false),
            (1 << 18, true, false),
            (1 << 18, true, true),
        ] {
            let (k, bs, rows) = (96usize, 32usize, 13usize);
            let nb = k / bs;
            let mut val = |_| match rng.gen_range(0..8) {
                0 => lim - 1,
                1 => -(lim - 1),
                2 => 0,
                _ => rng.gen_range(-(lim - 1)..lim),
            };
            let xb: Vec<i64> = (0..rows * k).map(&mut val).collect();
            // A blocks of 16-bit values times 2^t (renormalisable), or of any values
            let mut xa: Vec<i64> = (0..RA * k).map(&mut val).collect();
            for blk in 0..RA * nb {
                if renorm && rng.gen_range(0..4) > 0 {
                    let t = rng.gen_range(0..=3);
                    for e in &mut xa[blk * bs..(blk + 1) * bs] {
                        *e = match rng.gen_range(0..6) {
                            0 => NORM_MAX << t,
                            1 => -NORM_MAX << t,
                            _ => rng.gen_range(-NORM_MAX..=NORM_MAX) << t,
                        };
                    }
                }
            }
            let (an, ash) = normalise(RA, k, bs, |e| xa[e]);
            if renorm {
                assert!(ash.iter().any(|&s| s > 0) && ash.contains(&-1));
            }
            let (ah, al, bh, bl) = if split_it {
                let halves =
                    |x: &[i64]| -> (Vec<i16>, Vec<i16>) { x.iter().map(|&v| split(v)).unzip() };
                let ((ah, al), (bh, bl)) = (halves(&xa), halves(&xb));
                (ah, al, bh, bl)
            } else {
                let w = |x: &[i64]| x.iter().map(|&v| v as i16).collect::<Vec<_>>();
                (w(&xa), vec![], w(&xb), vec![])
            };
            let (th, tl) = (
                interleave_pairs(rows, k, |e| bh[e]),
                if split_it {
                    interleave_pairs(rows, k, |e| bl[e])
                } else {
                    vec![]
                },
            );
            for tile in 0..rows.div_ceil(LT) {
                let mut out = vec![0i64; RA * nb * LT];
                let parts: [Parts; RA] = std::array::from_fn(|r| Parts {
                    hi: &ah[r * k..(r + 1) * k],
                    lo: if split_it {
                        &al[r * k..(r + 1) * k]
                    } else {
                        &[]
                    },
                });
                let tr = tile * k * LT..(tile + 1) * k * LT;
                let b = Parts {
                    hi: &th[tr.clone()],
                    lo: if split_it { &tl[tr] } else { &[] },
                };
                let norms: [Norm; RA] = std::array::from_fn(|r| Norm {
                    vals: &an[r * k..(r + 1) * k],
                    shift: &ash[r * nb..(r + 1) * nb],
                });
                unsafe { block_dots(parts, renorm.then_some(norms), b, k, bs, 0..nb, &mut out) };
                for r in 0..RA {
                    for blk in 0..nb {
                        for q in 0..LT {
                            let j = tile * LT + q;
                            let want: i64 = if j < rows {
                                (blk * bs..(blk + 1) * bs)
                                    .map(|t| xa[r * k + t] * xb[j * k + t])
                                    .sum()
                            } else {
                                0
                            };
                            assert_eq!(out[(r * nb + blk) * LT + q], want, "r {r} blk {blk} j {j}");
                        }
                    }
                }
            }
        }
    }
}
