//! Fast paths for float32 -> MXFP4 and float32 -> MXFP8 (E4M3) block quantization with the
//! OCP `floor` and NVIDIA `rceil` scale rules and round-to-nearest-even elements, plus a
//! table-driven dequantization for every E8M0-scaled scheme.
//!
//! The fast paths compute exactly what the generic path ([`super::quantize_generic`])
//! computes, bit for bit (proven by `tests/mx_fast_path.rs`), using only float32 bit
//! arithmetic:
//! - the block maximum is the largest `bits & 0x7FFF_FFFF` (positive floats order like their
//!   bit patterns); a maximum at or above `0x7F80_0000` means the block holds a NaN or an Inf;
//! - the E8M0 exponent is read from the maximum's exponent field (subnormals normalized):
//!   `floor` is `floor(log2 amax) - emax`, `rceil` adds one when amax's significand exceeds the
//!   largest element's significand (1.5 for FP4, 1.75 for E4M3);
//! - each value is multiplied by `2^-e` (exact in float32 unless the product is far below
//!   the element's smallest subnormal, where every result rounds to zero anyway);
//! - FP4: normals (|y| >= 1) round their 23-bit mantissa to 1 bit with `bits + 0x1FFFFF +
//!   lsb` and rebias the exponent; |y| < 1 is rounded by the float32 addition `|y| + 2^22`,
//!   whose unit in the last place is FP4's subnormal step 0.5; results saturate at 6 (code 7);
//! - E4M3: normals round their 23-bit mantissa to 3 bits with the usual
//!   `bits + 0x7FFFF + lsb` trick and rebias the exponent; subnormals (below 2^-6) are rounded by
//!   the float32 addition `|y| + 2^14`, whose unit in the last place is E4M3's subnormal step
//!   2^-9; results saturate at 448 (code 0x7E).
//!
//! The loops are branch-free and auto-vectorize; on x86-64 an AVX2 copy of each kernel is
//! selected at run time when the CPU has AVX2.
//!
//! For the standard block of 32 (row length a multiple of 32), fused kernels
//! ([`quantize_packed_rows`], [`quantize_packed`], [`quantize_mxfp4_packed`]) write the final
//! packed bytes in one pass (FP4 two per byte, element `2j` in the low nibble of byte `j`, as
//! [`super::pack`] documents). The x86-64 AVX2 version computes the block maximum with vector
//! integer max, and the element codes of eight values at a time as the sum of two roundings
//! (see `avx2::fp4_mag`): the integer RNE of `max(|y|, 1)` and the float32 magic-number RNE of
//! `min(|y|, 1)`; saturation and the sign bit are applied per byte after narrowing. Every
//! kernel gives the same bits as the generic path (tested, each kernel separately).

use super::{MxConfig, MxTensor, ScaleRule, Scheme, ZeroBlock};
use crate::format::{decode_f32, Format, Rounding};
use rayon::prelude::*;

/// Whether `cfg` is served by the fast quantization path: MXFP4 or MXFP8 E4M3, `floor` or
/// `rceil`, RNE element rounding, E8M0 scales (any block size, any zero-block policy).
pub fn eligible(cfg: &MxConfig) -> bool {
    matches!(cfg.scheme, Scheme::Mxfp4 | Scheme::Mxfp8E4m3)
        && matches!(cfg.rule, ScaleRule::Floor | ScaleRule::Rceil)
        && cfg.rounding == Rounding::Rne
        && cfg.block_size >= 1
}

/// Element kind of a fast kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Elem {
    Fp4,
    E4m3,
}

/// Per-scheme constants of the fast kernels.
#[derive(Clone, Copy)]
struct Params {
    elem: Elem,
    /// emax of the element format (2 for FP4, 8 for E4M3).
    emax: i32,
    /// float32 mantissa field of the element's largest normal (6 = 1.5*2^2, 448 = 1.75*2^8).
    max_mant: u32,
    /// The element's largest normal.
    max_normal: f32,
    rceil: bool,
    zero_code: u8,
}

impl Params {
    fn new(cfg: &MxConfig) -> Params {
        let (elem, emax, max_mant, max_normal) = match cfg.scheme {
            Scheme::Mxfp4 => (Elem::Fp4, 2, 0x40_0000, 6.0),
            _ => (Elem::E4m3, 8, 0x60_0000, 448.0),
        };
        let zero_code = match cfg.zero_block {
            ZeroBlock::Smallest => 0,
            ZeroBlock::FloorMinNormal => (-126 - emax + 127).clamp(0, 254) as u8,
        };
        Params {
            elem,
            emax,
            max_mant,
            max_normal,
            rceil: cfg.rule == ScaleRule::Rceil,
            zero_code,
        }
    }
}

/// `2^k` as f32 for k in [-127, 127] (2^-127 is the subnormal 0x0040_0000).
#[inline(always)]
fn pow2_f32(k: i32) -> f32 {
    if k >= -126 {
        f32::from_bits(((k + 127) as u32) << 23)
    } else {
        f32::from_bits(0x0040_0000)
    }
}

/// The clamped E8M0 exponent of a block whose largest magnitude has bit pattern `amax`
/// (nonzero, finite).
#[inline(always)]
fn scale_exp(amax: u32, p: &Params) -> i32 {
    let field = (amax >> 23) as i32;
    let (fl, mant) = if field == 0 {
        let msb = 31 - amax.leading_zeros() as i32; // <= 22
        (msb - 149, (amax << (23 - msb)) & 0x7F_FFFF)
    } else {
        (field - 127, amax & 0x7F_FFFF)
    };
    let mut e = fl - p.emax;
    if p.rceil && mant > p.max_mant {
        e += 1;
    }
    e.clamp(-127, 127)
}

/// FP4 (E2M1) code of `y` with RNE and saturation at 6 (|y| < 2^126).
#[inline(always)]
fn fp4_code(y: f32) -> u8 {
    let b = y.to_bits();
    let a = b & 0x7FFF_FFFF;
    // normals (|y| >= 1): round the 23-bit mantissa to 1 bit (RNE), rebias 127 -> 1
    let rounded = a + 0x1F_FFFF + ((a >> 22) & 1);
    let norm = (rounded >> 22).wrapping_sub(126 << 1).min(7);
    // |y| < 1: |y| + 2^22 rounds |y| to a multiple of 0.5 (RNE); 2 = code of 1.0
    let sub = (f32::from_bits(a) + 4_194_304.0)
        .to_bits()
        .wrapping_sub(0x4A80_0000);
    let mag = if a < 0x3F80_0000 { sub } else { norm };
    (mag as u8) | ((b >> 28) as u8 & 8)
}

/// E4M3 code of `y` with RNE and saturation at 448 (|y| finite).
#[inline(always)]
fn e4m3_code(y: f32) -> u8 {
    let b = y.to_bits();
    let a = b & 0x7FFF_FFFF;
    let rounded = a + 0x7_FFFF + ((a >> 20) & 1);
    let norm = (rounded >> 20).wrapping_sub(120 << 3).min(0x7E);
    // |y| + 2^14 rounds |y| to a multiple of 2^-9 (RNE); the difference of bit patterns is
    // the multiple, i.e. the subnormal code (8 = 2^-6 is the smallest normal's code).
    let sub = (f32::from_bits(a) + 16384.0)
        .to_bits()
        .wrapping_sub(0x4680_0000);
    let mag = if a < 0x3C80_0000 { sub } else { norm };
    (mag as u8) | ((b >> 24) as u8 & 0x80)
}

/// Scale of a block from its largest magnitude's bit pattern `amax`: `None` for a NaN/Inf
/// block (scale 0xFF, zero element codes), else (scale code, factor `2^-e` applied to every
/// value, whether the block maximum clips).
#[inline(always)]
fn block_scale(amax: u32, p: &Params) -> Option<(u8, f32, bool)> {
    if amax >= 0x7F80_0000 {
        return None;
    }
    // a zero block keeps its zeros' signs: the element loop with factor 1 gives sign | 0
    Some(if amax == 0 {
        (p.zero_code, 1.0, false)
    } else {
        let e = scale_exp(amax, p);
        let inv = pow2_f32(-e);
        (
            (e + 127) as u8,
            inv,
            f32::from_bits(amax) * inv > p.max_normal,
        )
    })
}

/// Quantize one block: writes codes, returns (scale code, clipped).
#[inline(always)]
fn block(vals: &[f32], out: &mut [u8], p: &Params) -> (u8, bool) {
    let mut amax = 0u32;
    for &v in vals {
        let a = v.to_bits() & 0x7FFF_FFFF;
        amax = if a > amax { a } else { amax };
    }
    let Some((scale, inv, clipped)) = block_scale(amax, p) else {
        out.fill(0);
        return (0xFF, false);
    };
    match p.elem {
        Elem::Fp4 => {
            for (o, &v) in out.iter_mut().zip(vals) {
                *o = fp4_code(v * inv);
            }
        }
        Elem::E4m3 => {
            for (o, &v) in out.iter_mut().zip(vals) {
                *o = e4m3_code(v * inv);
            }
        }
    }
    (scale, clipped)
}

#[inline(always)]
fn rows_kernel(
    values: &[f32],
    cols: usize,
    bs: usize,
    codes: &mut [u8],
    scales: &mut [u8],
    p: &Params,
) -> usize {
    let bpr = cols.div_ceil(bs);
    let mut clipped = 0;
    if bs == 32 && cols.is_multiple_of(32) {
        // the standard block: fixed-size arrays let the compiler unroll and vectorize fully
        for ((vb, cb), s) in values
            .chunks_exact(32)
            .zip(codes.chunks_exact_mut(32))
            .zip(scales.iter_mut())
        {
            let vb: &[f32; 32] = vb.try_into().expect("32 values");
            let cb: &mut [u8; 32] = cb.try_into().expect("32 codes");
            let (sc, c) = block(vb, cb, p);
            *s = sc;
            clipped += c as usize;
        }
        return clipped;
    }
    for ((vrow, crow), srow) in values
        .chunks_exact(cols)
        .zip(codes.chunks_exact_mut(cols))
        .zip(scales.chunks_exact_mut(bpr))
    {
        for ((vb, cb), s) in vrow
            .chunks(bs)
            .zip(crow.chunks_mut(bs))
            .zip(srow.iter_mut())
        {
            let (sc, c) = block(vb, cb, p);
            *s = sc;
            clipped += c as usize;
        }
    }
    clipped
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_kernel_avx2(
    values: &[f32],
    cols: usize,
    bs: usize,
    codes: &mut [u8],
    scales: &mut [u8],
    p: &Params,
) -> usize {
    rows_kernel(values, cols, bs, codes, scales, p)
}

fn rows_dispatch(
    values: &[f32],
    cols: usize,
    bs: usize,
    codes: &mut [u8],
    scales: &mut [u8],
    p: &Params,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            if bs == 32
                && cols.is_multiple_of(32)
                && values.len().is_multiple_of(32)
                && codes.len() == values.len()
                && scales.len() == values.len() / 32
            {
                // SAFETY: the CPU supports AVX2 (checked just above); sizes checked just above.
                return unsafe { avx2::rows32::<false>(values, scales, codes, p) };
            }
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { rows_kernel_avx2(values, cols, bs, codes, scales, p) };
        }
    }
    rows_kernel(values, cols, bs, codes, scales, p)
}

/// Quantize whole rows on the calling thread (no rayon): `values` holds `rows x cols`
/// values, `codes` receives `rows * cols` element codes and `scales` `rows * ceil(cols / bs)`
/// scale codes. Returns the number of clipped blocks. `cfg` must be [`eligible`]; `cols` and
/// the slice lengths must agree (checked by the caller). This is the single-core kernel the
/// benches measure.
pub fn quantize_rows(
    values: &[f32],
    cols: usize,
    cfg: &MxConfig,
    codes: &mut [u8],
    scales: &mut [u8],
) -> usize {
    debug_assert!(eligible(cfg));
    if cols == 0 || values.is_empty() {
        return 0;
    }
    let p = Params::new(cfg);
    rows_dispatch(values, cols, cfg.block_size, codes, scales, &p)
}

/// Fast quantization of a row-major `rows x cols` float32 tensor (multi-threaded over groups
/// of rows; the result does not depend on the thread count). `cfg` must be [`eligible`] and
/// the sizes already checked.
pub(crate) fn quantize(values: &[f32], rows: usize, cols: usize, cfg: &MxConfig) -> MxTensor {
    let bs = cfg.block_size;
    let bpr = cols.div_ceil(bs);
    let mut codes = vec![0u8; rows * cols];
    let mut scales = vec![0u8; rows * bpr];
    let clipped = if cols == 0 || rows == 0 {
        0
    } else {
        // groups of rows of about 64 Ki values per task
        let rows_per = (65536 / cols).max(1);
        codes
            .par_chunks_mut(rows_per * cols)
            .zip(scales.par_chunks_mut(rows_per * bpr))
            .zip(values.par_chunks(rows_per * cols))
            .map(|((c, s), v)| quantize_rows(v, cols, cfg, c, s))
            .sum()
    };
    MxTensor {
        scheme: cfg.scheme,
        block_size: bs,
        rows,
        cols,
        codes,
        scales,
        global_scale: 1.0,
        clipped_blocks: clipped,
    }
}

// ---------------------------------------------------------------------------------------------
// Fused kernels for the standard block of 32: quantize and write the final byte layout in one
// pass (FP4 packed two per byte, element 0 of each pair in the low nibble; E4M3 one per byte).
// ---------------------------------------------------------------------------------------------

/// Which implementation of the fused 32-value-block kernels runs. Every choice gives the same
/// bits (tested); the choice exists so that tests can check each one on the same machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// AVX2 when the CPU has it (x86-64, detected at run time), else portable.
    #[default]
    Auto,
    /// Plain Rust, any target.
    Portable,
    /// Explicit x86-64 AVX2 intrinsics (an error where the CPU lacks AVX2).
    Avx2,
}

impl Kernel {
    /// Whether this kernel can run on the current CPU.
    pub fn available(self) -> bool {
        match self {
            Kernel::Auto | Kernel::Portable => true,
            Kernel::Avx2 => avx2_detected(),
        }
    }
}

fn avx2_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Output of packed block quantization of a `rows x cols` tensor (blocks along rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedMx {
    /// One E8M0 scale code per block, `rows x ceil(cols / block)` row-major.
    pub scales: Vec<u8>,
    /// Element codes packed as [`super::pack::pack_codes`] lays them out: FP4 two per byte
    /// (element `2j` in the low nibble of byte `j`), FP8 one per byte.
    pub packed: Vec<u8>,
    /// Number of blocks whose maximum exceeds the element's largest normal after scaling.
    pub clipped_blocks: usize,
}

/// Whether the fused single-pass kernels serve `cfg` on rows of `cols` values: the fast path
/// is [`eligible`], the block size is 32 and `cols` is a multiple of 32 (so every block
/// starts on a byte boundary of the packed stream).
pub fn fused_eligible(cfg: &MxConfig, cols: usize) -> bool {
    eligible(cfg) && cfg.block_size == 32 && cols.is_multiple_of(32)
}

/// Largest `bits & 0x7FFF_FFFF` of a block.
#[inline(always)]
fn amax32(vb: &[f32; 32]) -> u32 {
    let mut amax = 0u32;
    for &v in vb {
        amax = amax.max(v.to_bits() & 0x7FFF_FFFF);
    }
    amax
}

/// Portable fused kernel: `values` holds whole blocks of 32, `scales` one byte per block,
/// `out` 16 (FP4 packed) or 32 bytes per block. Returns the number of clipped blocks.
fn rows32_portable(values: &[f32], scales: &mut [u8], out: &mut [u8], p: &Params) -> usize {
    let ob = if p.elem == Elem::Fp4 { 16 } else { 32 };
    let mut clipped = 0;
    for ((vb, cb), s) in values
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(ob))
        .zip(scales.iter_mut())
    {
        let vb: &[f32; 32] = vb.try_into().expect("32 values");
        let Some((sc, inv, c)) = block_scale(amax32(vb), p) else {
            cb.fill(0);
            *s = 0xFF;
            continue;
        };
        *s = sc;
        clipped += c as usize;
        match p.elem {
            Elem::Fp4 => {
                let cb: &mut [u8; 16] = cb.try_into().expect("16 bytes");
                for (o, pair) in cb.iter_mut().zip(vb.chunks_exact(2)) {
                    *o = fp4_code(pair[0] * inv) | fp4_code(pair[1] * inv) << 4;
                }
            }
            Elem::E4m3 => {
                let cb: &mut [u8; 32] = cb.try_into().expect("32 bytes");
                for (o, &v) in cb.iter_mut().zip(vb) {
                    *o = e4m3_code(v * inv);
                }
            }
        }
    }
    clipped
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 versions of the fused kernels: the same float32 bit arithmetic as
    //! [`super::fp4_code`] / [`super::e4m3_code`], eight lanes at a time.
    use super::{block_scale, Elem, Params};
    use std::arch::x86_64::*;

    /// FP4 magnitude codes of eight scaled magnitudes `y = |x| * 2^-e` (non-negative, below
    /// 8), before saturation (8.0 gives 8; the caller clamps to 7 per byte). Two roundings
    /// are computed and added:
    /// - `norm`: `max(y, 1)` with its 23-bit mantissa rounded to 1 bit (RNE, `bits +
    ///   0x1FFFFF + lsb`), as `(bits >> 22) - 252`, i.e. code 2 for every `y < 1`;
    /// - `sub`: `min(y, 1) + 2^22` in float32 rounds to a multiple of 0.5 (RNE), whose bit
    ///   pattern minus that of `2^22` is the code (0, 1, 2), i.e. 2 for every `y >= 1`;
    ///
    /// so `norm + sub - 2` is the code of `y` in both ranges.
    #[inline(always)]
    unsafe fn fp4_mag(y: __m256) -> __m256i {
        let yc = _mm256_max_epi32(_mm256_castps_si256(y), _mm256_set1_epi32(0x3F80_0000));
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<22>(yc), _mm256_set1_epi32(1));
        let r = _mm256_add_epi32(_mm256_add_epi32(yc, _mm256_set1_epi32(0x1F_FFFF)), lsb);
        let s = _mm256_add_ps(
            _mm256_min_ps(y, _mm256_set1_ps(1.0)),
            _mm256_set1_ps(4_194_304.0),
        );
        // (r >> 22) - 252 + (bits(s) - 0x4A80_0000) - 2, constants combined (wrapping)
        _mm256_add_epi32(
            _mm256_add_epi32(_mm256_srli_epi32::<22>(r), _mm256_castps_si256(s)),
            _mm256_set1_epi32(-(0x4A80_0000 + 254)),
        )
    }

    /// E4M3 magnitude codes of eight scaled magnitudes (non-negative, below 2^9), before
    /// saturation: the same construction as [`fp4_mag`] with the smallest normal `2^-6` in
    /// place of 1 (code 8), a 3-bit mantissa, and `2^14` (unit in the last place `2^-9`, the
    /// subnormal step) as the magic addend: `norm + sub - 8`.
    #[inline(always)]
    unsafe fn e4m3_mag(y: __m256) -> __m256i {
        let yc = _mm256_max_epi32(_mm256_castps_si256(y), _mm256_set1_epi32(0x3C80_0000));
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<20>(yc), _mm256_set1_epi32(1));
        let r = _mm256_add_epi32(_mm256_add_epi32(yc, _mm256_set1_epi32(0x7_FFFF)), lsb);
        let s = _mm256_add_ps(
            _mm256_min_ps(y, _mm256_set1_ps(1.0 / 64.0)),
            _mm256_set1_ps(16384.0),
        );
        // (r >> 20) - 960 + (bits(s) - 0x4680_0000) - 8
        _mm256_add_epi32(
            _mm256_add_epi32(_mm256_srli_epi32::<20>(r), _mm256_castps_si256(s)),
            _mm256_set1_epi32(-(0x4680_0000 + 968)),
        )
    }

    /// Four vectors of eight 32-bit lanes as 32 bytes (unsigned saturating for `u`, signed
    /// saturating for `i`), both in the same shuffled order: packs work within 128-bit
    /// halves, so bytes come out as
    /// `[v0 0..4, v1 0..4, v2 0..4, v3 0..4 | v0 4..8, v1 4..8, v2 4..8, v3 4..8]`;
    /// [`unshuffle`] restores element order.
    #[inline(always)]
    unsafe fn pack_u(c0: __m256i, c1: __m256i, c2: __m256i, c3: __m256i) -> __m256i {
        _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3))
    }

    #[inline(always)]
    unsafe fn pack_i(c0: __m256i, c1: __m256i, c2: __m256i, c3: __m256i) -> __m256i {
        _mm256_packs_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3))
    }

    #[inline(always)]
    unsafe fn unshuffle(b: __m256i) -> __m256i {
        _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// See [`super::rows32_portable`]; with `NIBBLES` FP4 codes are packed two per byte,
    /// without it every code takes one byte. The caller guarantees AVX2 and the slice sizes
    /// (`values.len() == 32 * scales.len()`, `out.len() == 16 or 32 * scales.len()`).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows32<const NIBBLES: bool>(
        values: &[f32],
        scales: &mut [u8],
        out: &mut [u8],
        p: &Params,
    ) -> usize {
        let fp4 = p.elem == Elem::Fp4;
        let ob = if fp4 && NIBBLES { 16 } else { 32 };
        debug_assert_eq!(values.len(), 32 * scales.len());
        debug_assert_eq!(out.len(), ob * scales.len());
        let vp = values.as_ptr();
        let op = out.as_mut_ptr();
        let absmask = _mm256_set1_epi32(0x7FFF_FFFF);
        let mut clipped = 0;
        for (i, s) in scales.iter_mut().enumerate() {
            // SAFETY (all pointer arithmetic): block i is within the slices by the size
            // contract above.
            let x0 = _mm256_loadu_ps(vp.add(32 * i));
            let x1 = _mm256_loadu_ps(vp.add(32 * i + 8));
            let x2 = _mm256_loadu_ps(vp.add(32 * i + 16));
            let x3 = _mm256_loadu_ps(vp.add(32 * i + 24));
            let a0 = _mm256_and_si256(_mm256_castps_si256(x0), absmask);
            let a1 = _mm256_and_si256(_mm256_castps_si256(x1), absmask);
            let a2 = _mm256_and_si256(_mm256_castps_si256(x2), absmask);
            let a3 = _mm256_and_si256(_mm256_castps_si256(x3), absmask);
            // magnitudes are below 2^31, so signed 32-bit max orders them like unsigned
            let m = _mm256_max_epi32(_mm256_max_epi32(a0, a1), _mm256_max_epi32(a2, a3));
            let m = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
            let m = _mm_max_epi32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
            let m = _mm_max_epi32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
            let amax = _mm_cvtsi128_si32(m) as u32;
            let dst = op.add(ob * i);
            let Some((sc, inv, c)) = block_scale(amax, p) else {
                *s = 0xFF;
                std::ptr::write_bytes(dst, 0, ob);
                continue;
            };
            *s = sc;
            clipped += c as usize;
            let vinv = _mm256_set1_ps(inv);
            // scaled magnitudes: |x| * 2^-e (the factor is positive)
            let y0 = _mm256_mul_ps(_mm256_castsi256_ps(a0), vinv);
            let y1 = _mm256_mul_ps(_mm256_castsi256_ps(a1), vinv);
            let y2 = _mm256_mul_ps(_mm256_castsi256_ps(a2), vinv);
            let y3 = _mm256_mul_ps(_mm256_castsi256_ps(a3), vinv);
            // sign bits: signed saturating packs keep each value's sign in its byte's bit 7
            let sign = _mm256_and_si256(
                pack_i(
                    _mm256_castps_si256(x0),
                    _mm256_castps_si256(x1),
                    _mm256_castps_si256(x2),
                    _mm256_castps_si256(x3),
                ),
                _mm256_set1_epi8(-128),
            );
            if fp4 {
                let mag = pack_u(fp4_mag(y0), fp4_mag(y1), fp4_mag(y2), fp4_mag(y3));
                let mag = _mm256_min_epu8(mag, _mm256_set1_epi8(7));
                // sign to bit 3 of each byte (0x80 >> 4 within 16-bit lanes stays in its byte)
                let bytes = unshuffle(_mm256_or_si256(mag, _mm256_srli_epi16::<4>(sign)));
                if !NIBBLES {
                    _mm256_storeu_si256(dst as *mut __m256i, bytes);
                    continue;
                }
                // byte pairs (lo, hi) -> lo + 16 * hi in 16-bit lanes, then to 16 bytes
                let nib = _mm256_maddubs_epi16(bytes, _mm256_set1_epi16(0x1001));
                let packed = _mm_packus_epi16(
                    _mm256_castsi256_si128(nib),
                    _mm256_extracti128_si256::<1>(nib),
                );
                _mm_storeu_si128(dst as *mut __m128i, packed);
            } else {
                let mag = pack_u(e4m3_mag(y0), e4m3_mag(y1), e4m3_mag(y2), e4m3_mag(y3));
                let mag = _mm256_min_epu8(mag, _mm256_set1_epi8(0x7E));
                let bytes = unshuffle(_mm256_or_si256(mag, sign));
                _mm256_storeu_si256(dst as *mut __m256i, bytes);
            }
        }
        clipped
    }
}

/// Fused quantization of whole rows on the calling thread with the chosen [`Kernel`]:
/// `values` holds `rows x cols` float32 values, `scales` receives `rows * cols / 32` E8M0
/// codes and `packed` the element codes in their packed layout (`rows * cols / 2` bytes for
/// MXFP4, `rows * cols` for MXFP8 E4M3). Returns the number of clipped blocks. This is the
/// single-core kernel the benches measure.
///
/// Errors when `cfg` is not [`fused_eligible`] for `cols`, when the slice lengths disagree,
/// or when the requested kernel is not available on this CPU.
pub fn quantize_packed_rows(
    values: &[f32],
    cols: usize,
    cfg: &MxConfig,
    scales: &mut [u8],
    packed: &mut [u8],
    kernel: Kernel,
) -> crate::Result<usize> {
    use crate::Error;
    if !fused_eligible(cfg, cols) {
        return Err(Error::invalid(format!(
            "fused kernel needs MXFP4 or MXFP8 E4M3, floor or rceil, RNE, block 32 and a \
             multiple of 32 columns (got {} {} {} block {} with {cols} columns)",
            cfg.scheme, cfg.rule, cfg.rounding, cfg.block_size
        )));
    }
    let blocks = values.len() / 32;
    let ob = if cfg.scheme == Scheme::Mxfp4 { 16 } else { 32 };
    if !values.len().is_multiple_of(32) || scales.len() != blocks || packed.len() != blocks * ob {
        return Err(Error::invalid(format!(
            "fused kernel: {} values need {blocks} scale bytes and {} packed bytes, got {} and {}",
            values.len(),
            blocks * ob,
            scales.len(),
            packed.len()
        )));
    }
    if !kernel.available() {
        return Err(Error::invalid(format!(
            "kernel {kernel:?} is not available on this CPU"
        )));
    }
    let p = Params::new(cfg);
    #[cfg(target_arch = "x86_64")]
    {
        if kernel != Kernel::Portable && avx2_detected() {
            // SAFETY: the CPU supports AVX2 (checked just above); sizes checked above.
            return Ok(unsafe { avx2::rows32::<true>(values, scales, packed, &p) });
        }
    }
    Ok(rows32_portable(values, scales, packed, &p))
}

/// Block-quantize a row-major `rows x cols` float32 tensor (blocks along rows) straight to
/// the packed storage of [`super::pack`]: E8M0 scale codes plus element codes packed as
/// [`super::pack::pack_codes`] packs them (FP4 two per byte, element `2j` in the low nibble
/// of byte `j`; E4M3 one per byte). Bit-identical to [`super::quantize_generic`] followed by
/// `pack_codes` (tested). `cfg` must be [`eligible`] (MXFP4 or MXFP8 E4M3, `floor` or
/// `rceil`, RNE). Block 32 with `cols` a multiple of 32 takes the single-pass fused kernel;
/// other shapes quantize to codes and then pack. Multi-threaded over groups of rows; the
/// result does not depend on the thread count.
pub fn quantize_packed(
    values: &[f32],
    rows: usize,
    cols: usize,
    cfg: &MxConfig,
) -> crate::Result<PackedMx> {
    use crate::Error;
    if !eligible(cfg) {
        return Err(Error::invalid(format!(
            "packed fast path needs MXFP4 or MXFP8 E4M3, floor or rceil and RNE (got {} {} {})",
            cfg.scheme, cfg.rule, cfg.rounding
        )));
    }
    if rows.checked_mul(cols) != Some(values.len()) {
        return Err(Error::invalid(format!(
            "tensor has {} values, not {rows} x {cols}",
            values.len()
        )));
    }
    let bits = cfg.scheme.element().bits();
    if !fused_eligible(cfg, cols) || values.is_empty() {
        let t = quantize(values, rows, cols, cfg);
        return Ok(PackedMx {
            packed: super::pack::pack_codes(&t.codes, bits),
            scales: t.scales,
            clipped_blocks: t.clipped_blocks,
        });
    }
    let n = values.len();
    let ob = if bits == 4 { 16 } else { 32 };
    let mut scales = vec![0u8; n / 32];
    let mut packed = vec![0u8; n / 32 * ob];
    // groups of about 64 Ki values (whole blocks) per task
    let per = 2048;
    let clipped = scales
        .par_chunks_mut(per)
        .zip(packed.par_chunks_mut(per * ob))
        .zip(values.par_chunks(per * 32))
        .map(|((s, o), v)| {
            quantize_packed_rows(v, 32, cfg, s, o, Kernel::Auto).expect("sizes checked")
        })
        .sum();
    Ok(PackedMx {
        scales,
        packed,
        clipped_blocks: clipped,
    })
}

/// [`quantize_packed`] for MXFP4 with blocks of 32 and the given scale rule (`floor`, the
/// OCP rule, or `rceil`, NVIDIA's round-up rule), RNE elements, zero blocks scaled 2^-127.
pub fn quantize_mxfp4_packed(
    values: &[f32],
    rows: usize,
    cols: usize,
    rule: ScaleRule,
) -> crate::Result<PackedMx> {
    quantize_packed(
        values,
        rows,
        cols,
        &MxConfig::new(Scheme::Mxfp4).with_rule(rule),
    )
}

/// Whether [`dequantize_rows`] serves tensor `t`: E8M0 scales (every MX scheme) and a global
/// factor of exactly 1.
pub fn dequant_eligible(t: &MxTensor) -> bool {
    t.scheme.scale_format() == Format::E8M0 && t.global_scale == 1.0
}

/// The 256-entry decode table of an element format (codes above the format's width are
/// decoded like `decode_f32`, which ignores the extra bits).
pub fn decode_table(elem: Format) -> [f32; 256] {
    let mut t = [0.0f32; 256];
    for (c, v) in t.iter_mut().enumerate() {
        *v = decode_f32(elem, c as u8);
    }
    t
}

/// `2^(code - 127)` as f32, NaN for 0xFF.
#[inline(always)]
fn e8m0_f32(code: u8) -> f32 {
    if code == 0xFF {
        f32::NAN
    } else {
        pow2_f32(code as i32 - 127)
    }
}

#[inline(always)]
fn dequant_kernel(
    codes: &[u8],
    scales: &[u8],
    cols: usize,
    bs: usize,
    table: &[f32; 256],
    out: &mut [f32],
) {
    let bpr = cols.div_ceil(bs);
    for ((crow, srow), orow) in codes
        .chunks_exact(cols)
        .zip(scales.chunks_exact(bpr))
        .zip(out.chunks_exact_mut(cols))
    {
        for ((cb, &s), ob) in crow.chunks(bs).zip(srow).zip(orow.chunks_mut(bs)) {
            let sv = e8m0_f32(s);
            for (o, &c) in ob.iter_mut().zip(cb) {
                *o = table[c as usize] * sv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dequant_kernel_avx2(
    codes: &[u8],
    scales: &[u8],
    cols: usize,
    bs: usize,
    table: &[f32; 256],
    out: &mut [f32],
) {
    dequant_kernel(codes, scales, cols, bs, table, out)
}

/// Dequantize rows on the calling thread: `codes` (`rows * cols`) and `scales`
/// (`rows * ceil(cols / bs)`) of an E8M0-scaled scheme with element format `elem` into `out`
/// (`rows * cols` float32). Each value is `table[code] * 2^(scale - 127)` in float32, which is
/// exact (or the same Inf) and therefore equal to the generic f64 path rounded to f32.
pub fn dequantize_rows(
    elem: Format,
    codes: &[u8],
    scales: &[u8],
    cols: usize,
    block_size: usize,
    out: &mut [f32],
) {
    if cols == 0 || block_size == 0 {
        return;
    }
    let table = decode_table(elem);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { dequant_kernel_avx2(codes, scales, cols, block_size, &table, out) };
            return;
        }
    }
    dequant_kernel(codes, scales, cols, block_size, &table, out)
}

/// Fast dequantization of `t` to f32 (multi-threaded over groups of rows). `t` must satisfy
/// [`dequant_eligible`].
pub(crate) fn dequantize(t: &MxTensor) -> Vec<f32> {
    let mut out = vec![0.0f32; t.rows * t.cols];
    if t.cols == 0 || t.rows == 0 {
        return out;
    }
    let bpr = t.blocks_per_row();
    let rows_per = (65536 / t.cols).max(1);
    let elem = t.scheme.element();
    out.par_chunks_mut(rows_per * t.cols)
        .zip(t.codes.par_chunks(rows_per * t.cols))
        .zip(t.scales.par_chunks(rows_per * bpr))
        .for_each(|((o, c), s)| dequantize_rows(elem, c, s, t.cols, t.block_size, o));
    out
}
