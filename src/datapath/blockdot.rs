//! Exact integer block dot products of one operand row against [`JB`] rows of the other: the
//! inner loop of the exact-block fast path ([`super::fast`]). Elements are fixed-point
//! integers (see there); a block's dot product is an exact integer sum, computed with AVX2
//! or AVX-512 (`vpmaddwd` for 16-bit lanes, `vpmuldq` for 32-bit lanes) when the CPU has it, else by
//! plain loops. Integer sums are exact and associative, so both give identical results; the
//! caller guarantees that no sum overflows its lane (i32 sums for 16-bit lanes, i64 for
//! 32-bit lanes).

/// Rows of the second operand processed per pass over a row of the first.
pub(crate) const JB: usize = 4;

/// Which kernels run: plain loops, AVX2, or AVX-512 F (AVX2 for the 16-bit lanes and for
/// block sizes the AVX-512 kernel does not cover).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Isa {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The best this CPU supports, or a lower level named by the environment variable
    /// `MXSIM_ISA` (`portable`, `avx2`; any other value selects the best): results are
    /// identical, only speed differs.
    pub(crate) fn detect() -> Isa {
        let cap = match std::env::var("MXSIM_ISA").as_deref() {
            Ok("portable") => return Isa::Portable,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        #[cfg(target_arch = "x86_64")]
        {
            if cap == Isa::Avx2 && std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        let _ = cap;
        Isa::Portable
    }
}

/// Block dot products of `x` against each of `ys` (AVX2 also where AVX-512 is available:
/// measured no faster for 16-bit lanes) (every slice at least `x.len()` long), for
/// blocks of `bs` elements (the last one possibly partial): `out[blk * JB + jj]` is block
/// `blk`'s dot product of `x` and `ys[jj]`.
pub(crate) fn block_dots_i16(isa: Isa, x: &[i16], ys: [&[i16]; JB], bs: usize, out: &mut [i64]) {
    check(x.len(), &ys.map(|y| y.len()), bs, out.len());
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        // SAFETY: only called when the CPU supports AVX2; lengths checked above.
        unsafe { avx2::block_dots_i16(x, ys, bs, out) };
        return;
    }
    let _ = isa;
    portable(x, ys, bs, out, 0);
}

/// As [`block_dots_i16`] for 32-bit lanes whose block sums fit i64.
pub(crate) fn block_dots_i32(isa: Isa, x: &[i32], ys: [&[i32]; JB], bs: usize, out: &mut [i64]) {
    check(x.len(), &ys.map(|y| y.len()), bs, out.len());
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && bs.is_multiple_of(16) {
        // SAFETY: only called when the CPU supports AVX-512 F; lengths checked above.
        unsafe { avx512::block_dots_i32(x, ys, bs, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        // SAFETY: only called when the CPU supports AVX2; lengths checked above.
        unsafe { avx2::block_dots_i32(x, ys, bs, out) };
        return;
    }
    let _ = isa;
    portable(x, ys, bs, out, 0);
}

fn check(k: usize, ys: &[usize; JB], bs: usize, out: usize) {
    assert!(bs > 0 && ys.iter().all(|&l| l >= k) && out >= k.div_ceil(bs) * JB);
}

/// Plain-loop block dots from block `first` on.
fn portable<T: Copy + Into<i64>>(
    x: &[T],
    ys: [&[T]; JB],
    bs: usize,
    out: &mut [i64],
    first: usize,
) {
    let k = x.len();
    for blk in first..k.div_ceil(bs) {
        let (s, e) = (blk * bs, ((blk + 1) * bs).min(k));
        for (jj, y) in ys.iter().enumerate() {
            out[blk * JB + jj] = x[s..e]
                .iter()
                .zip(&y[s..e])
                .map(|(&a, &b)| a.into() * b.into())
                .sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::JB;
    use std::arch::x86_64::*;

    /// 16 lanes per step; blocks whose size is not a multiple of 16 (and a partial last
    /// block) go to the plain loop.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn block_dots_i16(x: &[i16], ys: [&[i16]; JB], bs: usize, out: &mut [i64]) {
        let k = x.len();
        let full = if bs.is_multiple_of(16) { k / bs } else { 0 };
        let (px, py) = (x.as_ptr(), ys.map(|y| y.as_ptr()));
        for blk in 0..full {
            let mut acc = [_mm256_setzero_si256(); JB];
            let mut p = blk * bs;
            while p < (blk + 1) * bs {
                let xa = _mm256_loadu_si256(px.add(p) as *const __m256i);
                for jj in 0..JB {
                    let yb = _mm256_loadu_si256(py[jj].add(p) as *const __m256i);
                    acc[jj] = _mm256_add_epi32(acc[jj], _mm256_madd_epi16(xa, yb));
                }
                p += 16;
            }
            // [a01 a23 b01 b23 | a45 a67 b45 b67], then [a b c d | a' b' c' d']
            let h01 = _mm256_hadd_epi32(acc[0], acc[1]);
            let h23 = _mm256_hadd_epi32(acc[2], acc[3]);
            let h = _mm256_hadd_epi32(h01, h23);
            let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            let s64 = _mm256_cvtepi32_epi64(s);
            _mm256_storeu_si256(out.as_mut_ptr().add(blk * JB) as *mut __m256i, s64);
        }
        super::portable(x, ys, bs, out, full);
    }

    /// The lane sums of four vectors of i64 lanes, stored as four i64 at `out`: pairwise
    /// sums, then the two 128-bit halves, giving `[a b c d]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn store_sums_i64(acc: [__m256i; JB], out: *mut i64) {
        let s01 = _mm256_add_epi64(
            _mm256_unpacklo_epi64(acc[0], acc[1]),
            _mm256_unpackhi_epi64(acc[0], acc[1]),
        );
        let s23 = _mm256_add_epi64(
            _mm256_unpacklo_epi64(acc[2], acc[3]),
            _mm256_unpackhi_epi64(acc[2], acc[3]),
        );
        let s = _mm256_add_epi64(
            _mm256_permute2x128_si256::<0x20>(s01, s23),
            _mm256_permute2x128_si256::<0x31>(s01, s23),
        );
        _mm256_storeu_si256(out as *mut __m256i, s);
    }

    /// 8 lanes per step, even and odd lanes multiplied separately into 64-bit products.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn block_dots_i32(x: &[i32], ys: [&[i32]; JB], bs: usize, out: &mut [i64]) {
        let k = x.len();
        let full = if bs.is_multiple_of(8) { k / bs } else { 0 };
        let (px, py) = (x.as_ptr(), ys.map(|y| y.as_ptr()));
        for blk in 0..full {
            let mut acc = [_mm256_setzero_si256(); JB];
            let mut p = blk * bs;
            while p < (blk + 1) * bs {
                let xe = _mm256_loadu_si256(px.add(p) as *const __m256i);
                let xo = _mm256_srli_epi64::<32>(xe);
                for jj in 0..JB {
                    let ye = _mm256_loadu_si256(py[jj].add(p) as *const __m256i);
                    let yo = _mm256_srli_epi64::<32>(ye);
                    let t = _mm256_add_epi64(_mm256_mul_epi32(xe, ye), _mm256_mul_epi32(xo, yo));
                    acc[jj] = _mm256_add_epi64(acc[jj], t);
                }
                p += 8;
            }
            store_sums_i64(acc, out.as_mut_ptr().add(blk * JB));
        }
        super::portable(x, ys, bs, out, full);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::avx2::store_sums_i64;
    use super::JB;
    use std::arch::x86_64::*;

    /// Four 512-bit accumulators of i64 lanes, reduced to one 256-bit vector each (halves
    /// added).
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn halves(acc: [__m512i; JB]) -> [__m256i; JB] {
        acc.map(|v| _mm256_add_epi64(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v)))
    }

    /// 16 lanes per step, even and odd lanes multiplied separately (`vpmuldq`), block sizes a
    /// multiple of 16.
    #[target_feature(enable = "avx512f,avx2")]
    pub(super) unsafe fn block_dots_i32(x: &[i32], ys: [&[i32]; JB], bs: usize, out: &mut [i64]) {
        let k = x.len();
        let full = k / bs;
        let (px, py) = (x.as_ptr(), ys.map(|y| y.as_ptr()));
        for blk in 0..full {
            let mut acc = [_mm512_setzero_si512(); JB];
            let mut p = blk * bs;
            while p < (blk + 1) * bs {
                let xe = _mm512_loadu_si512(px.add(p) as *const _);
                let xo = _mm512_srli_epi64::<32>(xe);
                for jj in 0..JB {
                    let ye = _mm512_loadu_si512(py[jj].add(p) as *const _);
                    let yo = _mm512_srli_epi64::<32>(ye);
                    let t = _mm512_add_epi64(_mm512_mul_epi32(xe, ye), _mm512_mul_epi32(xo, yo));
                    acc[jj] = _mm512_add_epi64(acc[jj], t);
                }
                p += 16;
            }
            let acc = halves(acc);
            store_sums_i64(acc, out.as_mut_ptr().add(blk * JB));
        }
        super::portable(x, ys, bs, out, full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn naive<T: Copy + Into<i64>>(x: &[T], y: &[T], bs: usize) -> Vec<i64> {
        x.chunks(bs)
            .zip(y.chunks(bs))
            .map(|(a, b)| a.iter().zip(b).map(|(&p, &q)| p.into() * q.into()).sum())
            .collect()
    }

    #[test]
    fn simd_and_portable_equal_naive() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let best = Isa::detect();
        for &(k, bs) in &[
            (96usize, 32usize),
            (100, 32),
            (48, 16),
            (33, 11),
            (7, 32),
            (64, 64),
        ] {
            let x16: Vec<i16> = (0..k).map(|_| rng.gen_range(-4096..4096)).collect();
            let y16: Vec<Vec<i16>> = (0..JB)
                .map(|_| (0..k).map(|_| rng.gen_range(-4096..4096)).collect())
                .collect();
            let x32: Vec<i32> = (0..k).map(|_| rng.gen_range(-(1 << 26)..1 << 26)).collect();
            let y32: Vec<Vec<i32>> = (0..JB)
                .map(|_| (0..k).map(|_| rng.gen_range(-(1 << 26)..1 << 26)).collect())
                .collect();
            let nb = k.div_ceil(bs);
            let mut isas = vec![Isa::Portable];
            if best != Isa::Portable {
                isas.push(Isa::Avx2);
            }
            if best == Isa::Avx512 {
                isas.push(Isa::Avx512);
            }
            for isa in isas {
                let mut o16 = vec![0i64; nb * JB];
                block_dots_i16(isa, &x16, [0, 1, 2, 3].map(|j| &y16[j][..]), bs, &mut o16);
                let mut o32 = vec![0i64; nb * JB];
                block_dots_i32(isa, &x32, [0, 1, 2, 3].map(|j| &y32[j][..]), bs, &mut o32);
                for jj in 0..JB {
                    let (n16, n32) = (naive(&x16, &y16[jj], bs), naive(&x32, &y32[jj], bs));
                    for blk in 0..nb {
                        assert_eq!(o16[blk * JB + jj], n16[blk], "i16 k={k} bs={bs}");
                        assert_eq!(o32[blk * JB + jj], n32[blk], "i32 k={k} bs={bs}");
                    }
                }
            }
        }
    }
}
