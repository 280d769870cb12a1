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

/// Quantize one block: writes codes, returns (scale code, clipped).
#[inline(always)]
fn block(vals: &[f32], out: &mut [u8], p: &Params) -> (u8, bool) {
    let mut amax = 0u32;
    for &v in vals {
        let a = v.to_bits() & 0x7FFF_FFFF;
        amax = if a > amax { a } else { amax };
    }
    if amax >= 0x7F80_0000 {
        out.fill(0);
        return (0xFF, false);
    }
    // a zero block keeps its zeros' signs: the element loop with factor 1 gives sign | 0
    let (scale, inv, clipped) = if amax == 0 {
        (p.zero_code, 1.0, false)
    } else {
        let e = scale_exp(amax, p);
        let inv = pow2_f32(-e);
        (
            (e + 127) as u8,
            inv,
            f32::from_bits(amax) * inv > p.max_normal,
        )
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
    if bs == 32 && cols % 32 == 0 {
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

/// Whether [`dequantize_into`] serves tensor `t`: E8M0 scales (every MX scheme) and a global
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
