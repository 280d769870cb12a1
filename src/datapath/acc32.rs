//! FP32 round-to-nearest-even accumulation of exact block sums, in integers: the `ocp-fp32`
//! style step `acc <- RNE32(acc + RNE32(sum * 2^lsb))` (the OCP MX v1.0 dot product defines a
//! general dot product as the FP32 sum of block dots and leaves its internal precision and
//! order to the implementation; this is the IEEE 754 binary32 conversion and addition, as
//! Berkeley SoftFloat's `i64_to_f32` scaling and `f32_add` compute them).
//!
//! Only normal intermediates are handled: a step whose exact value lies outside the normal
//! range (where subnormal rounding or overflow would apply) marks the output as declined, and
//! the caller recomputes it with the general routines. A scalar version and an AVX-512
//! version over eight outputs per vector (four of each of two rows) (several vectors interleaved, so the dependent chain
//! of additions is not latency bound) compute identical results.

/// A round-to-nearest-even FP32 accumulator value: a normal number `(-1)^neg * sig * 2^exp`
/// with `2^23 <= sig < 2^24`, or zero (`sig == 0`, `exp` = [`ZERO_EXP`], below every normal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Acc32 {
    pub neg: bool,
    pub sig: u64,
    pub exp: i32,
}

/// Exponent given to a zero [`Acc32`].
const ZERO_EXP: i32 = -100_000;

/// The zero accumulator.
pub(crate) const ACC32_ZERO: Acc32 = Acc32 {
    neg: false,
    sig: 0,
    exp: ZERO_EXP,
};

/// `(-1)^neg * mag * 2^lsb` (`mag != 0`) rounded to nearest even into FP32, and whether that
/// is a normal number computed right (`false` when the exact value lies outside the normal
/// range). Branch-free on the data.
#[inline(always)]
pub(crate) fn rne32(neg: bool, mag: u64, lsb: i32) -> (Acc32, bool) {
    let nb = 64 - mag.leading_zeros() as i32;
    let lead = lsb + nb - 1;
    let shl = (24 - nb).max(0) as u32;
    let sh = (nb - 24).max(0) as u32;
    let m = mag << shl;
    let kept = m >> sh;
    let rem = m & ((1u64 << sh) - 1);
    let half = (1u64 << sh) >> 1;
    let up = (rem > half) | ((rem == half) & (sh > 0) & (kept & 1 == 1));
    let sig = kept + up as u64;
    let carry = (sig >> 24) as u32;
    let exp = lsb - shl as i32 + sh as i32 + carry as i32;
    let valid = (-126..=127 - carry as i32).contains(&lead);
    (
        Acc32 {
            neg,
            sig: sig >> carry,
            exp,
        },
        valid,
    )
}

/// IEEE FP32 round-to-nearest-even addition `acc + s` (each normal or zero), and whether the
/// result is a normal number or zero computed right.
#[inline(always)]
pub(crate) fn add32(acc: Acc32, s: Acc32) -> (Acc32, bool) {
    let (h, l) = if s.exp > acc.exp { (s, acc) } else { (acc, s) };
    let d = h.exp - l.exp;
    // beyond 39 bits the smaller term is below 2^-14 ulp of the larger (or of the binade
    // below it): RNE returns the larger, as the sum with zero does
    let far = d > 39;
    let dd = if far { 39 } else { d as u32 };
    let y = if far { 0 } else { l.sig as i64 };
    let x = (h.sig << dd) as i64;
    let t = (if h.neg { -x } else { x }) + (if l.neg { -y } else { y });
    if t == 0 {
        return (ACC32_ZERO, true);
    }
    rne32(t < 0, t.unsigned_abs(), h.exp - dd as i32)
}

/// One accumulation problem: four outputs (lanes) sharing a row of A.
pub(crate) struct Chain<'a> {
    /// Block sums, `dots[blk * 4 + lane]` (exact integers, `|sum| < 2^62`).
    pub dots: &'a [i64],
    /// Scale lsb exponent of each block of the row of A.
    pub sa: &'a [i32],
    /// Initial accumulators (normal or zero), updated in place.
    pub acc: [Acc32; 4],
    /// Whether each lane stayed within what is handled here (the caller sets `true`).
    pub ok: [bool; 4],
}

/// Accumulate every chain's block sums, block by block, into its accumulators:
/// `acc <- RNE32(acc + RNE32(dots[blk] * 2^(base + sa[blk] + sbq[blk * 4 + lane])))`, for
/// `blk` in order. A zero block sum leaves the accumulator unchanged: the caller never starts
/// a lane from `-0` (the accumulation only produces `+0`, and `+0 + (+-0) = +0` under RNE).
/// With `exact` set, every block sum is known to fit 24 bits, and its conversion is exact.
pub(crate) fn accumulate(
    avx512: bool,
    exact: bool,
    chains: &mut [Chain],
    sbq: &[i64],
    base: i32,
    nb: usize,
) {
    for c in chains.iter() {
        assert!(c.dots.len() >= nb * 4 && c.sa.len() >= nb);
    }
    assert!(sbq.len() >= nb * 4);
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        for group in chains.chunks_mut(8) {
            // SAFETY: only called when the CPU has AVX-512 F/CD; lengths checked above.
            unsafe {
                if exact {
                    v512::accumulate::<true>(group, sbq, base, nb)
                } else {
                    v512::accumulate::<false>(group, sbq, base, nb)
                }
            };
        }
        return;
    }
    let _ = (avx512, exact);
    for c in chains.iter_mut() {
        for blk in 0..nb {
            for lane in 0..4 {
                let v = c.dots[blk * 4 + lane];
                let acc = c.acc[lane];
                if v == 0 {
                    continue;
                }
                let lsb = base + c.sa[blk] + sbq[blk * 4 + lane] as i32;
                let (s, v1) = rne32(v < 0, v.unsigned_abs(), lsb);
                let (r, v2) = add32(acc, s);
                c.acc[lane] = r;
                c.ok[lane] &= v1 & v2;
            }
        }
    }
}

/// One row of A's accumulation against sixteen outputs (lanes) at once, block sums laid out
/// `dots[blk * 16 + lane]` (exact integers, `|sum| < 2^62`).
pub(crate) struct Row16<'a> {
    pub dots: &'a [i64],
    /// Scale lsb exponent of each block of the row of A.
    pub sa: &'a [i32],
    /// Initial accumulators (normal or zero), updated in place.
    pub acc: [Acc32; 16],
    /// Whether each lane stayed within what is handled here (the caller sets `true`).
    pub ok: [bool; 16],
}

/// [`accumulate`] for rows of sixteen outputs: `acc <- RNE32(acc + RNE32(dots[blk * 16 +
/// lane] * 2^(base + sa[blk] + sb[blk * 16 + lane])))`, block by block. AVX-512 only (the
/// caller checks [`has_avx512`]); equal lane by lane to the scalar steps ([`rne32`],
/// [`add32`]).
pub(crate) fn accumulate16(exact: bool, rows: &mut [Row16], sb: &[i64], base: i32, nb: usize) {
    for r in rows.iter() {
        assert!(r.dots.len() >= nb * 16 && r.sa.len() >= nb);
    }
    assert!(sb.len() >= nb * 16 && has_avx512());
    #[cfg(target_arch = "x86_64")]
    for pair in rows.chunks_mut(2) {
        // SAFETY: AVX-512 F/CD checked above; lengths checked above.
        unsafe {
            if exact {
                v512::accumulate16::<true>(pair, sb, base, nb)
            } else {
                v512::accumulate16::<false>(pair, sb, base, nb)
            }
        }
    }
}

/// Whether the AVX-512 version can run here.
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512cd")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod v512 {
    use super::{Acc32, Chain, Row16, ZERO_EXP};
    use std::arch::x86_64::*;

    /// Eight lanes: the four outputs of two rows of A. Lanes hold signed significands (`-sig`
    /// for negative values) and exponents, as i64.
    #[derive(Clone, Copy)]
    struct V {
        sig: __m512i,
        exp: __m512i,
    }

    /// Vector [`super::rne32`]: `mag` nonzero in every lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512cd")]
    unsafe fn rne(neg: __mmask8, mag: __m512i, lsb: __m512i) -> (V, __mmask8) {
        let zero = _mm512_setzero_si512();
        let one = _mm512_set1_epi64(1);
        let c24 = _mm512_set1_epi64(24);
        let nb = _mm512_sub_epi64(_mm512_set1_epi64(64), _mm512_lzcnt_epi64(mag));
        let lead = _mm512_add_epi64(lsb, _mm512_sub_epi64(nb, one));
        let shl = _mm512_max_epi64(_mm512_sub_epi64(c24, nb), zero);
        let sh = _mm512_max_epi64(_mm512_sub_epi64(nb, c24), zero);
        let m = _mm512_sllv_epi64(mag, shl);
        let kept = _mm512_srlv_epi64(m, sh);
        let pw = _mm512_sllv_epi64(one, sh);
        let rem = _mm512_and_si512(m, _mm512_sub_epi64(pw, one));
        let half = _mm512_srli_epi64::<1>(pw);
        let gt = _mm512_cmpgt_epu64_mask(rem, half);
        let tie = _mm512_cmpeq_epi64_mask(rem, half)
            & _mm512_cmpgt_epi64_mask(sh, zero)
            & _mm512_test_epi64_mask(kept, one);
        let sig = _mm512_mask_add_epi64(kept, gt | tie, kept, one);
        let carry = _mm512_srli_epi64::<24>(sig);
        let sig = _mm512_srlv_epi64(sig, carry);
        let exp = _mm512_add_epi64(_mm512_sub_epi64(lsb, shl), _mm512_add_epi64(sh, carry));
        let valid = _mm512_cmpge_epi64_mask(lead, _mm512_set1_epi64(-126))
            & _mm512_cmple_epi64_mask(_mm512_add_epi64(lead, carry), _mm512_set1_epi64(127));
        let sig = _mm512_mask_sub_epi64(sig, neg, zero, sig);
        (V { sig, exp }, valid)
    }

    /// [`rne`] for magnitudes below `2^24`: a normalisation, no rounding.
    #[inline]
    #[target_feature(enable = "avx512f,avx512cd")]
    unsafe fn norm(neg: __mmask8, mag: __m512i, lsb: __m512i) -> (V, __mmask8) {
        let zero = _mm512_setzero_si512();
        // 40 = leading zeros of a 24-bit significand in 64 bits
        let shl = _mm512_sub_epi64(_mm512_lzcnt_epi64(mag), _mm512_set1_epi64(40));
        let sig = _mm512_sllv_epi64(mag, shl);
        let exp = _mm512_sub_epi64(lsb, shl);
        let lead = _mm512_add_epi64(exp, _mm512_set1_epi64(23));
        let valid = _mm512_cmpge_epi64_mask(lead, _mm512_set1_epi64(-126))
            & _mm512_cmple_epi64_mask(lead, _mm512_set1_epi64(127));
        let sig = _mm512_mask_sub_epi64(sig, neg, zero, sig);
        (V { sig, exp }, valid)
    }

    /// Vector [`super::add32`] (operands normal or zero); returns the sum and the lanes
    /// computed right.
    #[inline]
    #[target_feature(enable = "avx512f,avx512cd")]
    unsafe fn add(a: V, s: V) -> (V, __mmask8) {
        let zero = _mm512_setzero_si512();
        let swap = _mm512_cmpgt_epi64_mask(s.exp, a.exp);
        let hs = _mm512_mask_blend_epi64(swap, a.sig, s.sig);
        let he = _mm512_mask_blend_epi64(swap, a.exp, s.exp);
        let ls = _mm512_mask_blend_epi64(swap, s.sig, a.sig);
        let le = _mm512_mask_blend_epi64(swap, s.exp, a.exp);
        let c39 = _mm512_set1_epi64(39);
        let d = _mm512_sub_epi64(he, le);
        let far = _mm512_cmpgt_epi64_mask(d, c39);
        let dd = _mm512_min_epi64(d, c39);
        let y = _mm512_maskz_mov_epi64(!far, ls);
        let t = _mm512_add_epi64(_mm512_sllv_epi64(hs, dd), y);
        let tz = _mm512_cmpeq_epi64_mask(t, zero);
        let neg = _mm512_cmplt_epi64_mask(t, zero);
        let mag = _mm512_mask_mov_epi64(_mm512_abs_epi64(t), tz, _mm512_set1_epi64(1));
        let (r, valid) = rne(neg, mag, _mm512_sub_epi64(he, dd));
        let r = V {
            sig: _mm512_maskz_mov_epi64(!tz, r.sig),
            exp: _mm512_mask_mov_epi64(r.exp, tz, _mm512_set1_epi64(ZERO_EXP as i64)),
        };
        (r, valid | tz)
    }

    /// Two 4-lane halves into one vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn pair(lo: *const i64, hi: *const i64) -> __m512i {
        let l = _mm256_loadu_si256(lo as *const __m256i);
        let h = _mm256_loadu_si256(hi as *const __m256i);
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l), h)
    }

    /// One block sum's rounding (or normalisation when `EXACT`), zero sums marked.
    #[inline]
    #[target_feature(enable = "avx512f,avx512cd")]
    unsafe fn block_term<const EXACT: bool>(v: __m512i, lsb: __m512i) -> (V, __mmask8) {
        let zero = _mm512_setzero_si512();
        let vz = _mm512_cmpeq_epi64_mask(v, zero);
        let neg = _mm512_cmplt_epi64_mask(v, zero);
        let mag = _mm512_mask_mov_epi64(_mm512_abs_epi64(v), vz, _mm512_set1_epi64(1));
        let (s, v1) = if EXACT {
            norm(neg, mag, lsb)
        } else {
            rne(neg, mag, lsb)
        };
        let s = V {
            sig: _mm512_maskz_mov_epi64(!vz, s.sig),
            exp: _mm512_mask_mov_epi64(s.exp, vz, _mm512_set1_epi64(ZERO_EXP as i64)),
        };
        (s, v1 | vz)
    }

    /// [`super::accumulate16`] for one or two rows: four vectors (two halves of each row)
    /// interleaved.
    #[target_feature(enable = "avx512f,avx512cd")]
    pub(super) unsafe fn accumulate16<const EXACT: bool>(
        rows: &mut [Row16],
        sb: &[i64],
        base: i32,
        nb: usize,
    ) {
        const P: usize = 4;
        let n = rows.len();
        debug_assert!((1..=2).contains(&n));
        // vector p: row p / 2 (the last row repeated when there is one), half p % 2
        let row = |p: usize| (p / 2).min(n - 1);
        let mut acc = [V {
            sig: _mm512_setzero_si512(),
            exp: _mm512_setzero_si512(),
        }; P];
        let mut ok = [0u8; P];
        for (p, a) in acc.iter_mut().enumerate() {
            let r = &rows[row(p)];
            let h = 8 * (p % 2);
            let sig: [i64; 8] = std::array::from_fn(|l| {
                let x = r.acc[h + l];
                if x.neg {
                    -(x.sig as i64)
                } else {
                    x.sig as i64
                }
            });
            let exp: [i64; 8] = std::array::from_fn(|l| r.acc[h + l].exp as i64);
            *a = V {
                sig: _mm512_loadu_si512(sig.as_ptr() as *const _),
                exp: _mm512_loadu_si512(exp.as_ptr() as *const _),
            };
            ok[p] = (0..8).fold(0u8, |m, l| m | (r.ok[h + l] as u8) << l);
        }
        let basev = _mm512_set1_epi64(base as i64);
        for blk in 0..nb {
            let mut sums = [acc[0]; P];
            let mut flags = [0u8; P];
            for p in 0..P {
                let r = &rows[row(p)];
                let at = blk * 16 + 8 * (p % 2);
                let v = _mm512_loadu_si512(r.dots.as_ptr().add(at) as *const _);
                let sbv = _mm512_loadu_si512(sb.as_ptr().add(at) as *const _);
                let sa = _mm512_set1_epi64(*r.sa.get_unchecked(blk) as i64);
                let lsb = _mm512_add_epi64(_mm512_add_epi64(basev, sa), sbv);
                (sums[p], flags[p]) = block_term::<EXACT>(v, lsb);
            }
            for p in 0..P {
                let (x, v2) = add(acc[p], sums[p]);
                acc[p] = x;
                ok[p] &= flags[p] & v2;
            }
        }
        for (p, a) in acc.iter().enumerate() {
            if p / 2 >= n {
                continue;
            }
            let mut sig = [0i64; 8];
            let mut exp = [0i64; 8];
            _mm512_storeu_si512(sig.as_mut_ptr() as *mut _, a.sig);
            _mm512_storeu_si512(exp.as_mut_ptr() as *mut _, a.exp);
            let r = &mut rows[p / 2];
            let h = 8 * (p % 2);
            for l in 0..8 {
                r.acc[h + l] = Acc32 {
                    neg: sig[l] < 0,
                    sig: sig[l].unsigned_abs(),
                    exp: exp[l] as i32,
                };
                r.ok[h + l] = ok[p] >> l & 1 == 1;
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512cd")]
    pub(super) unsafe fn accumulate<const EXACT: bool>(
        chains: &mut [Chain],
        sbq: &[i64],
        base: i32,
        nb: usize,
    ) {
        // four vectors of two rows each
        const P: usize = 4;
        let n = chains.len();
        debug_assert!((1..=2 * P).contains(&n));
        let zero = _mm512_setzero_si512();
        let zexp = _mm512_set1_epi64(ZERO_EXP as i64);
        // rows beyond n repeat the last one (their results are dropped), so that the loops
        // below have a fixed trip count and keep every accumulator in a register
        let rowi = |r: usize| r.min(n - 1);
        let mut acc = [V {
            sig: zero,
            exp: zexp,
        }; P];
        let mut ok = [0u8; P];
        for (p, a) in acc.iter_mut().enumerate() {
            let mut sig = [0i64; 8];
            let mut exp = [0i64; 8];
            let mut m = 0u8;
            for h in 0..2 {
                let c = &chains[rowi(2 * p + h)];
                for l in 0..4 {
                    let s = c.acc[l].sig as i64;
                    sig[4 * h + l] = if c.acc[l].neg { -s } else { s };
                    exp[4 * h + l] = c.acc[l].exp as i64;
                    m |= (c.ok[l] as u8) << (4 * h + l);
                }
            }
            *a = V {
                sig: pair(sig.as_ptr(), sig.as_ptr().add(4)),
                exp: pair(exp.as_ptr(), exp.as_ptr().add(4)),
            };
            ok[p] = m;
        }
        let basev = _mm512_set1_epi64(base as i64);
        let one = _mm512_set1_epi64(1);
        let mut sums = [V {
            sig: zero,
            exp: zexp,
        }; P];
        let mut flags = [0u8; P];
        for blk in 0..nb {
            let sb = sbq.as_ptr().add(blk * 4);
            let lsb0 = _mm512_add_epi64(basev, pair(sb, sb));
            // the block sums' roundings (independent of the accumulators), then the
            // dependent additions, the four vectors interleaved
            for p in 0..P {
                let (c0, c1) = (&chains[rowi(2 * p)], &chains[rowi(2 * p + 1)]);
                let v = pair(c0.dots.as_ptr().add(blk * 4), c1.dots.as_ptr().add(blk * 4));
                let sa = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_set1_epi64x(*c0.sa.get_unchecked(blk) as i64)),
                    _mm256_set1_epi64x(*c1.sa.get_unchecked(blk) as i64),
                );
                let vz = _mm512_cmpeq_epi64_mask(v, zero);
                let neg = _mm512_cmplt_epi64_mask(v, zero);
                let mag = _mm512_mask_mov_epi64(_mm512_abs_epi64(v), vz, one);
                let lsb = _mm512_add_epi64(lsb0, sa);
                let (s, v1) = if EXACT {
                    norm(neg, mag, lsb)
                } else {
                    rne(neg, mag, lsb)
                };
                sums[p] = V {
                    sig: _mm512_maskz_mov_epi64(!vz, s.sig),
                    exp: _mm512_mask_mov_epi64(s.exp, vz, zexp),
                };
                flags[p] = v1 | vz;
            }
            for p in 0..P {
                let (x, v2) = add(acc[p], sums[p]);
                acc[p] = x;
                ok[p] &= flags[p] & v2;
            }
        }
        for p in 0..P {
            let mut sig = [0i64; 8];
            let mut exp = [0i64; 8];
            _mm256_storeu_si256(
                sig.as_mut_ptr() as *mut __m256i,
                _mm512_castsi512_si256(acc[p].sig),
            );
            _mm256_storeu_si256(
                sig.as_mut_ptr().add(4) as *mut __m256i,
                _mm512_extracti64x4_epi64::<1>(acc[p].sig),
            );
            _mm256_storeu_si256(
                exp.as_mut_ptr() as *mut __m256i,
                _mm512_castsi512_si256(acc[p].exp),
            );
            _mm256_storeu_si256(
                exp.as_mut_ptr().add(4) as *mut __m256i,
                _mm512_extracti64x4_epi64::<1>(acc[p].exp),
            );
            for h in 0..2 {
                let r = 2 * p + h;
                if r >= n {
                    continue;
                }
                let c = &mut chains[r];
                for l in 0..4 {
                    let q = 4 * h + l;
                    c.acc[l] = Acc32 {
                        neg: sig[q] < 0,
                        sig: sig[q].unsigned_abs(),
                        exp: exp[q] as i32,
                    };
                    c.ok[l] = ok[p] >> q & 1 == 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sixteen-lane accumulation equals the scalar steps lane by lane (results and
    /// declines), exact and rounded, one row or two.
    #[test]
    fn sixteen_lanes_equal_scalar() {
        if !has_avx512() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let nb = 30;
        for round in 0..100usize {
            let n = 1 + round % 2;
            let exact = round.is_multiple_of(3);
            let lim: i64 = if exact { 1 << 24 } else { 1 << 61 };
            let dots: Vec<Vec<i64>> = (0..n)
                .map(|_| {
                    (0..nb * 16)
                        .map(|_| match rng.gen_range(0..5) {
                            0 => 0,
                            _ => rng.gen_range(-lim + 1..lim) >> rng.gen_range(0..40),
                        })
                        .collect()
                })
                .collect();
            let spread = if round.is_multiple_of(4) { 150 } else { 8 };
            let sa: Vec<Vec<i32>> = (0..n)
                .map(|_| (0..nb).map(|_| rng.gen_range(-spread..spread)).collect())
                .collect();
            let sb: Vec<i64> = (0..nb * 16)
                .map(|_| rng.gen_range(-spread..spread) as i64)
                .collect();
            let init = |l: usize| {
                if l.is_multiple_of(5) {
                    ACC32_ZERO
                } else {
                    Acc32 {
                        neg: l.is_multiple_of(3),
                        sig: (1 << 23) | l as u64,
                        exp: -30 + l as i32,
                    }
                }
            };
            let mut rows: Vec<Row16> = (0..n)
                .map(|r| Row16 {
                    dots: &dots[r],
                    sa: &sa[r],
                    acc: std::array::from_fn(init),
                    ok: std::array::from_fn(|l| l != 7),
                })
                .collect();
            accumulate16(exact, &mut rows, &sb, -20, nb);
            for (r, row) in rows.iter().enumerate() {
                for l in 0..16 {
                    let (mut acc, mut ok) = (init(l), l != 7);
                    for blk in 0..nb {
                        let v = dots[r][blk * 16 + l];
                        if v == 0 {
                            continue;
                        }
                        let lsb = -20 + sa[r][blk] + sb[blk * 16 + l] as i32;
                        let (s, v1) = rne32(v < 0, v.unsigned_abs(), lsb);
                        let (x, v2) = add32(acc, s);
                        acc = x;
                        ok &= v1 & v2;
                    }
                    assert_eq!(row.ok[l], ok, "round {round} row {r} lane {l}");
                    if ok {
                        assert_eq!(row.acc[l], acc, "round {round} row {r} lane {l}");
                    }
                }
            }
        }
    }
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The scalar and AVX-512 accumulations agree lane by lane (results and declines), on
    /// block sums of every magnitude, zeros, cancellations and out-of-range exponents.
    #[test]
    fn vector_equals_scalar() {
        if !has_avx512() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let nb = 40;
        for round in 0..200 {
            let n = 1 + round % 8;
            let dots: Vec<Vec<i64>> = (0..n)
                .map(|_| {
                    (0..nb * 4)
                        .map(
                            |_| match rng.gen_range(0..if round % 2 == 0 { 2 } else { 6 }) {
                                0 => 0,
                                1 => rng.gen_range(-100..100),
                                2 => rng.gen_range(-(1i64 << 30)..1 << 30),
                                _ => rng.gen_range(-(1i64 << 61)..1 << 61) >> rng.gen_range(0..60),
                            },
                        )
                        .collect()
                })
                .collect();
            let spread = if round % 3 == 0 { 150 } else { 8 };
            let sa: Vec<Vec<i32>> = (0..n)
                .map(|_| (0..nb).map(|_| rng.gen_range(-spread..spread)).collect())
                .collect();
            let sbq: Vec<i64> = (0..nb * 4)
                .map(|_| rng.gen_range(-spread..spread) as i64)
                .collect();
            let init = |l: usize| {
                if l == 0 {
                    ACC32_ZERO
                } else {
                    Acc32 {
                        neg: l == 2,
                        sig: (1 << 23) | l as u64,
                        exp: -30 + l as i32,
                    }
                }
            };
            let mk = || -> Vec<Chain> {
                (0..n)
                    .map(|r| Chain {
                        dots: &dots[r],
                        sa: &sa[r],
                        acc: std::array::from_fn(init),
                        ok: [true; 4],
                    })
                    .collect()
            };
            let (mut s, mut v) = (mk(), mk());
            let exact = dots.iter().flatten().all(|d| d.unsigned_abs() < 1 << 24);
            accumulate(false, exact, &mut s, &sbq, -20, nb);
            accumulate(true, exact, &mut v, &sbq, -20, nb);
            for r in 0..n {
                assert_eq!(s[r].ok, v[r].ok, "round {round} row {r}");
                for l in 0..4 {
                    if s[r].ok[l] {
                        assert_eq!(s[r].acc[l], v[r].acc[l], "round {round} row {r} lane {l}");
                    }
                }
            }
        }
    }
}
