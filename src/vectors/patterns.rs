//! Case patterns in the spirit of Berkeley TestFloat (`genCases_*.c`), adapted to MX: exponent
//! patterns relative to the target format (below its smallest subnormal, every subnormal binade,
//! its smallest normal, around 1, its largest normal and beyond), significand patterns (0, 1, all
//! ones, walking ones and zeros) and values on and beside every rounding boundary, crossed with
//! both signs; block patterns (zero, one-hot, all-max, cancelling signs, exact codes under every
//! interesting scale, scale-rule boundaries, element rounding boundaries, wide dynamic range,
//! NaN/Inf); and a seeded random stream that only uses `ChaCha8Rng::next_u64`, so the cases are
//! the same on every platform and `rand` version.

use crate::format::{decode_f64, pow2, Format, Kind};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// E8M0 scale codes every MX pack exercises: the two smallest, around 1, the two largest
/// finite, and NaN.
pub const E8M0_SCALES: [u8; 8] = [0, 1, 126, 127, 128, 253, 254, 255];

/// UE4M3 (NVFP4) block scale codes exercised: smallest subnormal, largest subnormal, smallest
/// normal, 1.0, largest finite, and NaN.
pub const UE4M3_SCALES: [u8; 6] = [0x01, 0x07, 0x08, 0x38, 0x7E, 0x7F];

/// Case-generation effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Every pattern crossed with a small set of significands, plus the random cases.
    One,
    /// Every pattern crossed with every significand pattern (walking ones and zeros at every
    /// position), plus the random cases.
    Two,
    /// Every code (every code pair for products).
    Exhaustive,
}

impl std::str::FromStr for Level {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "1" => Ok(Level::One),
            "2" => Ok(Level::Two),
            "exhaustive" | "all" => Ok(Level::Exhaustive),
            _ => Err(crate::Error::invalid(format!(
                "unknown level '{s}' (expected 1, 2 or exhaustive)"
            ))),
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::One => "1",
            Level::Two => "2",
            Level::Exhaustive => "exhaustive",
        })
    }
}

/// floor(log2 |x|) of a finite nonzero f64, from its bits.
pub fn ilog2(x: f64) -> i32 {
    let b = x.abs().to_bits();
    let be = (b >> 52) as i32;
    if be == 0 {
        (63 - (b & ((1u64 << 52) - 1)).leading_zeros() as i32) - 1074
    } else {
        be - 1023
    }
}

/// Exponent of the quantum (value of one unit in the last place) of `fmt` for a value whose
/// leading bit has exponent `e`.
pub fn quantum_exp(fmt: Format, e: i32) -> i32 {
    let s = fmt.spec();
    match s.kind {
        Kind::Float => e.max(fmt.emin()) - s.man_bits as i32,
        Kind::Int => s.int_exp,
        Kind::PowerOfTwo => e,
    }
}

/// Bits of the normal f32 `(-1)^neg * 1.frac * 2^e` (e in [-126, 127]).
fn f32_bits(neg: bool, e: i32, frac: u32) -> u32 {
    debug_assert!((-126..=127).contains(&e));
    ((neg as u32) << 31) | (((e + 127) as u32) << 23) | (frac & 0x7F_FFFF)
}

/// Non-finite and extreme f32 inputs every cast pack includes.
pub const F32_SPECIALS: [u32; 14] = [
    0x0000_0000, // +0
    0x8000_0000, // -0
    0x7F80_0000, // +Inf
    0xFF80_0000, // -Inf
    0x7FC0_0000, // canonical quiet NaN
    0xFFC0_0000, // negative quiet NaN
    0x7F80_0001, // signalling NaN
    0x7FFF_FFFF, // NaN, all payload bits
    0x0000_0001, // smallest f32 subnormal
    0x807F_FFFF, // largest f32 subnormal, negative
    0x0080_0000, // smallest f32 normal
    0x7F7F_FFFF, // largest f32
    0xFF7F_FFFF, // most negative f32
    0x3F80_0000, // 1.0
];

/// The exponent patterns for casting into `fmt`: below the smallest subnormal, every
/// subnormal binade, the smallest normal, around 1, the largest normal and beyond, and f32's
/// extremes. Sorted, deduplicated, restricted to f32 normals.
pub fn exponent_patterns(fmt: Format) -> Vec<i32> {
    let lo = ilog2(fmt.min_subnormal());
    let emin = ilog2(fmt.min_normal());
    let emax = ilog2(fmt.max_normal());
    let mut v = vec![lo - 2, lo - 1];
    v.extend(lo..=emin + 1);
    v.extend([
        -1,
        0,
        1,
        emax - 1,
        emax,
        emax + 1,
        emax + 2,
        -126,
        -125,
        126,
        127,
    ]);
    v.retain(|e| (-126..=127).contains(e));
    v.sort_unstable();
    v.dedup();
    v
}

/// The f32 fraction patterns for a value with exponent `e` cast into `fmt`: 0, 1, all ones,
/// 1.5, walking ones (a few positions at level 1, all 23 and walking zeros at level 2), and
/// the fractions on and one f32 ulp beside the half-way point of `fmt`'s quantum at `e`, with
/// the kept last bit both even and odd (the RNE/RNA tie cases) and with every kept bit set (the
/// tie whose rounding carries into the next binade, or past the largest value).
pub fn significand_patterns(fmt: Format, e: i32, level: Level) -> Vec<u32> {
    let mut v = vec![0u32, 1, 0x7F_FFFF, 0x40_0000];
    match level {
        Level::One => v.extend([1 << 11, 1 << 21, 1 << 22]),
        _ => {
            v.extend((0..23).map(|i| 1u32 << i));
            v.extend((0..23).map(|i| 0x7F_FFFF & !(1u32 << i)));
        }
    }
    let jh = quantum_exp(fmt, e) - 1 - e + 23;
    if (0..23).contains(&jh) {
        let h = 1u32 << jh;
        let mut b = vec![h, h + 1, h - 1];
        if h > 1 {
            b[2] = h - 1;
        }
        if jh + 1 < 23 {
            let odd = 1u32 << (jh + 1);
            b.extend([h | odd, (h + 1) | odd, (h - 1) | odd]);
            // every kept bit set: the tie that carries into the next binade (at the largest
            // exponent, the overflow boundary)
            let top = 0x7F_FFFF & !((1u32 << (jh + 1)) - 1);
            b.extend([top | h, (top | h) + 1, (top | h) - 1]);
        }
        v.extend(b);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Cast inputs of levels 1 and 2: the specials, then exponent patterns x significand patterns
/// x both signs (level 2 adds the exact value of every code, both signs).
pub fn cast_patterns(fmt: Format, level: Level) -> Vec<u32> {
    let mut out: Vec<u32> = F32_SPECIALS.to_vec();
    for e in exponent_patterns(fmt) {
        for frac in significand_patterns(fmt, e, level) {
            for neg in [false, true] {
                out.push(f32_bits(neg, e, frac));
            }
        }
    }
    if level != Level::One {
        out.extend(code_values(fmt).into_iter().flat_map(|x| {
            let b = (x as f32).to_bits();
            [b, b ^ 0x8000_0000]
        }));
    }
    out
}

/// Exact magnitudes of every finite code of `fmt` (as f64, each an f32), ascending, distinct.
pub fn code_values(fmt: Format) -> Vec<f64> {
    let mut v: Vec<f64> = (0..fmt.code_count())
        .map(|c| decode_f64(fmt, c as u8).abs())
        .filter(|x| x.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn next_up(b: u32) -> u32 {
    b + 1
}

fn next_down(b: u32) -> u32 {
    if b & 0x7FFF_FFFF == 0 {
        0x8000_0001
    } else {
        b - 1
    }
}

/// Exhaustive cast inputs: every finite code's exact value, every midpoint between adjacent
/// values (the rounding boundaries), the overflow boundary past the largest value and the
/// underflow boundary under the smallest, each with its two f32 neighbours, both signs, plus
/// the specials.
pub fn cast_exhaustive(fmt: Format) -> Vec<u32> {
    let vals = code_values(fmt);
    let mut points: Vec<f64> = vals.clone();
    for w in vals.windows(2) {
        points.push((w[0] + w[1]) / 2.0);
    }
    let n = vals.len();
    let max = vals[n - 1];
    // the rounding boundary above the largest value is half a quantum of its binade (for
    // E8M0, whose next value would be 2^128, half-way is 1.5 * 2^127)
    let top_gap = match fmt.spec().kind {
        Kind::PowerOfTwo => max,
        _ => pow2(quantum_exp(fmt, ilog2(max))),
    };
    points.push(max + top_gap / 2.0);
    points.push(max + top_gap);
    let min = vals.iter().copied().find(|&x| x > 0.0).unwrap_or(1.0);
    points.push(min / 2.0);
    points.push(min / 4.0);
    let mut out: Vec<u32> = F32_SPECIALS.to_vec();
    for p in points {
        let f = p as f32;
        if !f.is_finite() || f as f64 != p {
            continue;
        }
        let b = f.to_bits();
        let mut group = vec![b];
        if b != 0 {
            group.push(next_down(b));
        }
        if b < 0x7F7F_FFFF {
            group.push(next_up(b));
        }
        for g in group {
            out.push(g);
            out.push(g ^ 0x8000_0000);
        }
    }
    out
}

/// A random f32 for casting into `fmt`: a quarter of the time any 32-bit pattern, otherwise a
/// random sign, an exponent uniform over the format's range widened by 3 binades each side, and
/// a random fraction, with a random number of trailing bits cleared (to reach exact values and
/// ties often).
pub fn random_cast_input(fmt: Format, rng: &mut ChaCha8Rng) -> u32 {
    let r = rng.next_u64();
    if r & 3 == 0 {
        return (r >> 32) as u32;
    }
    let lo = (ilog2(fmt.min_subnormal()) - 3).max(-126);
    let hi = (ilog2(fmt.max_normal()) + 3).min(127);
    let e = lo + ((r >> 2) % (hi - lo + 1) as u64) as i32;
    let neg = (r >> 12) & 1 == 1;
    let clear = ((r >> 13) % 24) as u32;
    let frac = ((r >> 40) as u32 & 0x7F_FFFF) >> clear << clear;
    f32_bits(neg, e, frac)
}

/// Uniform integer in [0, n) from one `next_u64` (n small; the bias is negligible and the
/// stream is portable).
pub fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    (((rng.next_u64() >> 11) as u128 * n as u128) >> 53) as u64
}

/// The scale factors (as values) exercised for blocks of a scheme whose scale format is
/// `scale_fmt`: the values of [`E8M0_SCALES`] or [`UE4M3_SCALES`] without the NaN code.
pub fn scale_values(scale_fmt: Format) -> Vec<f64> {
    let codes: &[u8] = if scale_fmt == Format::E8M0 {
        &E8M0_SCALES
    } else {
        &UE4M3_SCALES
    };
    codes
        .iter()
        .map(|&c| decode_f64(scale_fmt, c))
        .filter(|x| x.is_finite())
        .collect()
}

/// `v` as an f32 when it is exactly representable and finite.
pub fn exact_f32(v: f64) -> Option<f32> {
    let f = v as f32;
    (f.is_finite() && f as f64 == v).then_some(f)
}

/// Special blocks of `k` values for quantizing into element format `elem` with scales of
/// `scale_fmt`: zero blocks, one-hot blocks, all-max blocks under every interesting scale,
/// cancelling signs, exact codes under every scale, scale-rule boundaries, element rounding
/// boundaries, wide dynamic range, f32 extremes, NaN and Inf.
pub fn quantize_patterns(elem: Format, scale_fmt: Format, k: usize, level: Level) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = Vec::new();
    let maxn = elem.max_normal();
    let vals = code_values(elem);
    let scales = scale_values(scale_fmt);
    // zero blocks
    out.push(vec![0.0; k]);
    out.push(vec![-0.0; k]);
    out.push(
        (0..k)
            .map(|i| if i % 2 == 0 { 0.0 } else { -0.0 })
            .collect(),
    );
    // one-hot blocks
    let positions: Vec<usize> = match level {
        Level::One => vec![0, k - 1],
        _ => vec![0, 1, k / 2, k - 1],
    };
    let mut hot: Vec<f64> = vec![1.0, -1.0, maxn, elem.min_subnormal(), f32::MAX as f64];
    hot.push(pow2(-149));
    hot.extend(scales.iter().map(|s| maxn * s));
    for &p in &positions {
        for &h in &hot {
            if let Some(f) = exact_f32(h) {
                let mut b = vec![0.0f32; k];
                b[p] = f;
                out.push(b);
            }
        }
    }
    // all-max blocks, and alternating signs that cancel, under every scale
    for &s in &scales {
        if let Some(f) = exact_f32(maxn * s) {
            out.push(vec![f; k]);
            out.push((0..k).map(|i| if i % 2 == 0 { f } else { -f }).collect());
        }
    }
    // exact codes under every scale: every finite code cycled through the block
    let nv = vals.len();
    for (j, &s) in scales.iter().enumerate() {
        let b: Option<Vec<f32>> = (0..k)
            .map(|i| {
                let v = vals[(j * k + i) % nv] * s;
                let v = if i % 3 == 1 { -v } else { v };
                exact_f32(v)
            })
            .collect();
        if let Some(mut b) = b {
            b[0] = exact_f32(maxn * s).unwrap_or(b[0]);
            out.push(b);
        }
    }
    // scale-rule boundaries: the block maximum on and beside powers of two, the element
    // maximum, and the clipping boundary half a quantum above it
    let top_q = pow2(quantum_exp(elem, ilog2(maxn)));
    let exps: Vec<i32> = match level {
        Level::One => vec![0, -10, 20],
        _ => vec![0, -10, 20, -100, 100],
    };
    for &m in &exps {
        let sm = pow2(m);
        for amax in [
            1.0,
            maxn,
            maxn + top_q / 2.0,
            maxn + top_q,
            2.0 * maxn - top_q / 4.0,
        ] {
            let Some(a) = exact_f32(amax * sm) else {
                continue;
            };
            let ab = a.to_bits();
            for a2 in [ab, ab - 1, ab + 1] {
                let mut b: Vec<f32> = (0..k)
                    .map(|i| (i as f32 + 1.0) * a / (4 * k) as f32)
                    .collect();
                b[k / 3] = f32::from_bits(a2);
                out.push(b);
            }
        }
    }
    // element rounding boundaries: amax = largest element (fixes the floor scale), the other
    // elements on and beside midpoints between adjacent element values
    let mids: Vec<f64> = vals.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    for &s in scales
        .iter()
        .filter(|&&s| s == 1.0 || s == pow2(-20))
        .chain(&[pow2(30)])
    {
        let mut b: Vec<f32> = Vec::new();
        let mut i = 0usize;
        for &mid in &mids {
            let Some(f) = exact_f32(mid * s) else {
                continue;
            };
            for g in [f.to_bits(), f.to_bits() - 1, f.to_bits() + 1] {
                let v = f32::from_bits(g);
                b.push(if i.is_multiple_of(2) { v } else { -v });
                i += 1;
            }
        }
        for chunk in b.chunks(k - 1) {
            let mut blk = vec![exact_f32(maxn * s).unwrap_or(1.0)];
            blk.extend_from_slice(chunk);
            blk.resize(k, 0.0);
            out.push(blk);
        }
    }
    // wide dynamic range: one large value, the rest far below (underflow to zero / subnormal)
    for (big, small) in [(20, -20), (0, -30), (127, 0), (-100, -149)] {
        let mut b: Vec<f32> = (0..k)
            .map(|i| (pow2(small) * (1 + i % 5) as f64) as f32)
            .collect();
        b[k - 1] = pow2(big) as f32;
        out.push(b);
    }
    // f32 extremes: all f32 max (scale clamps), all smallest subnormal (scale clamps low)
    out.push(vec![f32::MAX; k]);
    out.push(vec![f32::from_bits(1); k]);
    out.push(
        (0..k)
            .map(|i| f32::from_bits(0x7F_FFFF - i as u32))
            .collect(),
    );
    // NaN and Inf anywhere make the whole block NaN-scaled
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for &p in &positions {
            let mut b: Vec<f32> = (0..k).map(|i| i as f32 - 3.0).collect();
            b[p] = bad;
            out.push(b);
        }
    }
    out
}

/// A random block of `k` values: a random base binade in [-40, 40] (level 2: the whole f32
/// range), each value a random sign, a binade up to `spread` below the base and a random
/// fraction; one block in four is exact codes under a random scale.
pub fn random_block(
    elem: Format,
    scale_fmt: Format,
    k: usize,
    level: Level,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let kind = below(rng, 4);
    if kind == 0 {
        let vals = code_values(elem);
        let sc = if scale_fmt == Format::E8M0 {
            pow2(below(rng, 61) as i32 - 30)
        } else {
            decode_f64(Format::UE4M3, 1 + below(rng, 126) as u8)
        };
        return (0..k)
            .map(|_| {
                let v = vals[below(rng, vals.len() as u64) as usize] * sc;
                let v = if rng.next_u64() & 1 == 1 { -v } else { v };
                v as f32
            })
            .collect();
    }
    let (lo, hi) = match level {
        Level::One => (-40, 40),
        _ => (-120, 120),
    };
    let base = lo + below(rng, (hi - lo + 1) as u64) as i32;
    let spread = [1u64, 4, 16, 40][below(rng, 4) as usize];
    (0..k)
        .map(|_| {
            let r = rng.next_u64();
            let e = (base - (r % spread) as i32).max(-126);
            let neg = (r >> 8) & 1 == 1;
            f32::from_bits(f32_bits(neg, e, (r >> 20) as u32))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_exponent_patterns_cover_subnormals_and_extremes() {
        // E4M3: min subnormal 2^-9, min normal 2^-6, max 448 = 1.75 * 2^8
        let e = exponent_patterns(Format::E4M3);
        for x in [
            -11, -10, -9, -8, -7, -6, -5, -1, 0, 1, 7, 8, 9, 10, -126, 127,
        ] {
            assert!(e.contains(&x), "missing {x}");
        }
    }

    #[test]
    fn tie_patterns_sit_on_half_quantum() {
        // E2M1 at exponent 0 (values 1, 1.5): quantum 2^-1, half-quantum 2^-2 -> f32 frac bit 21
        let s = significand_patterns(Format::E2M1, 0, Level::One);
        assert!(s.contains(&(1 << 21)));
        assert!(s.contains(&((1 << 21) + 1)));
        assert!(s.contains(&((1 << 21) - 1)));
        assert!(s.contains(&((1 << 21) | (1 << 22))));
    }

    #[test]
    fn exhaustive_cast_contains_every_value_and_midpoint() {
        let v = cast_exhaustive(Format::E2M1);
        for x in [
            0.0f32, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.25, 0.75, 1.25, 2.5, 3.5, 5.0, 7.0,
        ] {
            assert!(v.contains(&x.to_bits()), "missing {x}");
            assert!(v.contains(&(-x).to_bits()), "missing -{x}");
        }
        // 7 = 6 + half of the top binade's quantum (2): the overflow rounding boundary
        assert!(v.contains(&(7.0f32.to_bits() + 1)));
    }
}
