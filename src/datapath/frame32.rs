//! FP32 round-to-nearest-even accumulation of exact block sums (the `ocp-fp32` step
//! `acc <- RNE32(acc + RNE32(sum * 2^lsb))`, as in [`super::acc32`]) computed in one
//! fixed-point frame per output.
//!
//! When every block term and every partial sum of an output is an integer multiple of a
//! common `2^L` below `2^(L + 62)` in magnitude, with `-126 <= L <= 64`, every nonzero
//! intermediate is a normal FP32 number, and an IEEE binary32 rounding to nearest even is the
//! rounding of a two's complement integer to 24 significant bits ([`rne24`]): no alignment,
//! renormalisation or range check per step. The caller establishes those bounds per output
//! (and otherwise uses [`super::acc32`]); within them the results equal the IEEE steps
//! ([`super::acc32::rne32`], [`super::acc32::add32`]) bit for bit (tested).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::acc32::{Acc32, ACC32_ZERO};

/// `x` rounded to nearest even to 24 significant bits (unchanged when it has at most 24),
/// in two's complement: `RNE32(x * 2^L) / 2^L` for any frame `L` in the range above.
#[inline(always)]
pub(crate) fn rne24(x: i64) -> i64 {
    let p = 40 - x.unsigned_abs().leading_zeros() as i32;
    if p <= 0 {
        return x;
    }
    let pw = 1i64 << p;
    // round half to even: add half - 1, plus one when the kept part is odd, then truncate
    let bias = (pw >> 1) - 1 + ((x >> p) & 1);
    (x + bias) & !(pw - 1)
}

/// The frame value `x * 2^l` (an [`rne24`] result) as an FP32 accumulator.
pub(crate) fn to_acc32(x: i64, l: i32) -> Acc32 {
    if x == 0 {
        return ACC32_ZERO;
    }
    let m = x.unsigned_abs();
    let nbits = 64 - m.leading_zeros() as i32;
    let sig = if nbits >= 24 {
        m >> (nbits - 24)
    } else {
        m << (24 - nbits)
    };
    Acc32 {
        neg: x < 0,
        sig,
        exp: l + nbits - 24,
    }
}

/// One row of A against sixteen outputs (lanes) in their frames: block sums
/// `dots[blk * 16 + q]`, each placed at shift `sa[blk] + sb[blk * 16 + q] + d[q]` above its
/// output's frame lsb (the caller guarantees shifts in `0..=62` and the bounds of the module
/// documentation), accumulators `acc` (frame integers, updated in place).
pub(crate) struct FrameRow<'a> {
    pub dots: &'a [i64],
    pub sa: &'a [i64],
    pub d: [i64; 16],
    pub acc: [i64; 16],
}

/// `acc[q] <- rne24(acc[q] + (rne24(dots[blk * 16 + q]) << shift))` block by block, for
/// every row; with `exact` the block sums are known to be below `2^24` (their rounding is the
/// identity). AVX-512 where the CPU has it (F and CD), the same steps in scalar code
/// otherwise.
pub(crate) fn accumulate_frames(exact: bool, rows: &mut [FrameRow], sb: &[i64], nb: usize) {
    for r in rows.iter() {
        assert!(r.dots.len() >= nb * 16 && r.sa.len() >= nb);
    }
    assert!(sb.len() >= nb * 16);
    #[cfg(target_arch = "x86_64")]
    if super::acc32::has_avx512() {
        for group in rows.chunks_mut(4) {
            // SAFETY: AVX-512 F/CD checked; lengths checked above.
            unsafe {
                if exact {
                    v512::accumulate::<true>(group, sb, nb)
                } else {
                    v512::accumulate::<false>(group, sb, nb)
                }
            }
        }
        return;
    }
    accumulate_scalar(rows, sb, nb);
}

/// The scalar steps of [`accumulate_frames`].
fn accumulate_scalar(rows: &mut [FrameRow], sb: &[i64], nb: usize) {
    for r in rows.iter_mut() {
        for blk in 0..nb {
            for q in 0..16 {
                let s = rne24(r.dots[blk * 16 + q]);
                let sh = r.sa[blk] + sb[blk * 16 + q] + r.d[q];
                r.acc[q] = rne24(r.acc[q] + (s << sh));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod v512 {
    use super::FrameRow;
    use std::arch::x86_64::*;

    /// Vector [`super::rne24`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512cd")]
    unsafe fn rne24(x: __m512i) -> __m512i {
        let one = _mm512_set1_epi64(1);
        let p = _mm512_sub_epi64(
            _mm512_set1_epi64(40),
            _mm512_lzcnt_epi64(_mm512_abs_epi64(x)),
        );
        let round = _mm512_cmpgt_epi64_mask(p, _mm512_setzero_si512());
        // lanes with p <= 0 keep x (their shift counts are out of range, masked off)
        let pw = _mm512_sllv_epi64(one, p);
        let low = _mm512_sub_epi64(pw, one);
        let odd = _mm512_test_epi64_mask(x, pw);
        // x + (2^(p-1) - 1) + (kept part odd), then the low p bits cleared
        let y = _mm512_add_epi64(x, _mm512_srli_epi64::<1>(low));
        let y = _mm512_mask_add_epi64(y, odd, y, one);
        _mm512_mask_andnot_epi64(x, round, low, y)
    }

    /// [`super::accumulate_frames`] for one to four rows: eight vectors (two halves of each
    /// row) interleaved, so the dependent steps of one chain overlap with the others.
    #[target_feature(enable = "avx512f,avx512cd")]
    pub(super) unsafe fn accumulate<const EXACT: bool>(
        rows: &mut [FrameRow],
        sb: &[i64],
        nb: usize,
    ) {
        const P: usize = 8;
        let n = rows.len();
        debug_assert!((1..=P / 2).contains(&n));
        // vector p: row p / 2 (the last row repeated past n; results dropped), half p % 2
        let row = |p: usize| (p / 2).min(n - 1);
        let load = |x: &[i64], at: usize| _mm512_loadu_si512(x.as_ptr().add(at) as *const _);
        let mut acc: [__m512i; P] = std::array::from_fn(|p| load(&rows[row(p)].acc, 8 * (p % 2)));
        let d: [__m512i; P] = std::array::from_fn(|p| load(&rows[row(p)].d, 8 * (p % 2)));
        for blk in 0..nb {
            for p in 0..P {
                let r = &rows[row(p)];
                let at = blk * 16 + 8 * (p % 2);
                let v = load(r.dots, at);
                let s = if EXACT { v } else { rne24(v) };
                let sh = _mm512_add_epi64(
                    _mm512_add_epi64(load(sb, at), _mm512_set1_epi64(*r.sa.get_unchecked(blk))),
                    d[p],
                );
                acc[p] = rne24(_mm512_add_epi64(acc[p], _mm512_sllv_epi64(s, sh)));
            }
        }
        for (p, a) in acc.iter().enumerate() {
            if p / 2 < n {
                let h = 8 * (p % 2);
                _mm512_storeu_si512(rows[p / 2].acc.as_mut_ptr().add(h) as *mut _, *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::acc32::{add32, rne32};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The IEEE steps of [`super::super::acc32`] on the frame's values.
    fn ieee_chain(start: i64, l: i32, terms: &[(i64, i64)]) -> Acc32 {
        let mut acc = to_acc32(start, l);
        for &(s, sh) in terms {
            if s == 0 {
                continue;
            }
            let (t, v1) = rne32(s < 0, s.unsigned_abs(), l + sh as i32);
            let (x, v2) = add32(acc, t);
            assert!(v1 && v2);
            acc = x;
        }
        acc
    }

    /// [`rne24`] is IEEE round-to-nearest-even to 24 bits: every tie pattern, both signs,
    /// against [`rne32`].
    #[test]
    fn rne24_is_ieee_rounding() {
        let mut rng = ChaCha8Rng::seed_from_u64(30);
        for nbits in 1..=62u32 {
            for _ in 0..200 {
                let top = 1i64 << (nbits - 1);
                let mut m = top | rng.gen_range(0..top);
                if nbits > 25 && rng.gen_bool(0.3) {
                    // an exact tie, or one unit either side of it
                    let p = nbits - 24;
                    m = (m >> p << p) | (1 << (p - 1));
                    m += rng.gen_range(-1..=1);
                }
                for x in [m, -m] {
                    let want = rne32(x < 0, x.unsigned_abs(), -40).0;
                    assert_eq!(to_acc32(rne24(x), -40), want, "x {x}");
                }
            }
        }
        assert_eq!(rne24(0), 0);
    }

    /// The frame accumulation (vector where available, and the scalar loop) equals the IEEE
    /// steps lane by lane, exact and rounded block sums, one to five rows.
    #[test]
    fn frames_equal_ieee_steps() {
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        let nb = 24;
        for round in 0..60usize {
            let n = 1 + round % 5;
            let exact = round.is_multiple_of(3);
            let lim: i64 = if exact { 1 << 24 } else { 1 << 44 };
            let dots: Vec<Vec<i64>> = (0..n)
                .map(|_| {
                    (0..nb * 16)
                        .map(|_| match rng.gen_range(0..6) {
                            0 => 0,
                            // ties when rounded to 24 bits: kept part even, then odd
                            1 => (1 << 25) + 2,
                            2 => -(1 << 25) - 6,
                            _ => rng.gen_range(-lim + 1..lim) >> rng.gen_range(0..30),
                        })
                        .map(|v| if exact { v % lim } else { v })
                        .collect()
                })
                .collect();
            let sa: Vec<Vec<i64>> = (0..n)
                .map(|_| (0..nb).map(|_| rng.gen_range(0..4)).collect())
                .collect();
            let sb: Vec<i64> = (0..nb * 16).map(|_| rng.gen_range(0..4)).collect();
            let d: [i64; 16] = std::array::from_fn(|q| (q % 3) as i64);
            let start: [i64; 16] = std::array::from_fn(|q| match q % 4 {
                0 => 0,
                1 => rne24(rng.gen_range(-(1i64 << 40)..1 << 40)),
                _ => rng.gen_range(-1000..1000),
            });
            let mk = || -> Vec<FrameRow> {
                (0..n)
                    .map(|r| FrameRow {
                        dots: &dots[r],
                        sa: &sa[r],
                        d,
                        acc: start,
                    })
                    .collect()
            };
            let (mut rows, mut scalar) = (mk(), mk());
            accumulate_frames(exact, &mut rows, &sb, nb);
            accumulate_scalar(&mut scalar, &sb, nb);
            let l = -60;
            for (r, row) in rows.iter().enumerate() {
                assert_eq!(row.acc, scalar[r].acc, "round {round} row {r}");
                for q in 0..16 {
                    let terms: Vec<(i64, i64)> = (0..nb)
                        .map(|blk| {
                            let sh = sa[r][blk] + sb[blk * 16 + q] + d[q];
                            (dots[r][blk * 16 + q], sh)
                        })
                        .collect();
                    let want = ieee_chain(start[q], l, &terms);
                    assert_eq!(
                        to_acc32(row.acc[q], l),
                        want,
                        "round {round} row {r} lane {q}"
                    );
                }
            }
        }
    }
}
