//! Eight 64-bit integer lanes with one method per lane-wise operation. Each method is a plain
//! loop over the eight lanes, which the compiler turns into one vector instruction under
//! AVX-512 (two under AVX2, eight scalar ones otherwise), so a kernel written with these
//! methods vectorizes the same way wherever it is compiled, and computes the same bits.
//!
//! Masks are lanes of all ones (true) or zero (false).

use std::ops::{Add, BitAnd, BitOr, BitXor, Mul, Not, Sub};

/// Lanes per vector.
pub(super) const N: usize = 8;

/// Eight `i64` lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(align(64))]
pub(super) struct V8(pub [i64; N]);

macro_rules! lanewise {
    ($tr:ident, $f:ident, $op:ident) => {
        impl $tr for V8 {
            type Output = V8;
            #[inline(always)]
            fn $f(self, o: V8) -> V8 {
                V8(std::array::from_fn(|q| self.0[q].$op(o.0[q])))
            }
        }
    };
}
lanewise!(Add, add, wrapping_add);
lanewise!(Sub, sub, wrapping_sub);
lanewise!(Mul, mul, wrapping_mul);
lanewise!(BitAnd, bitand, bitand);
lanewise!(BitOr, bitor, bitor);
lanewise!(BitXor, bitxor, bitxor);

impl Not for V8 {
    type Output = V8;
    #[inline(always)]
    fn not(self) -> V8 {
        self.map(|x| !x)
    }
}

impl V8 {
    /// Every lane `x`.
    #[inline(always)]
    pub fn splat(x: i64) -> V8 {
        V8([x; N])
    }
    /// Lanes sign-extended from eight `i16`.
    #[inline(always)]
    pub fn from_i16(x: &[i16]) -> V8 {
        let x: &[i16; N] = x[..N].try_into().unwrap();
        V8(std::array::from_fn(|q| x[q] as i64))
    }
    /// The first eight values.
    #[inline(always)]
    pub fn from_i64(x: &[i64]) -> V8 {
        V8(x[..N].try_into().unwrap())
    }
    /// Lanes sign-extended from eight `i32`.
    #[inline(always)]
    pub fn from_i32(x: &[i32]) -> V8 {
        let x: &[i32; N] = x[..N].try_into().unwrap();
        V8(std::array::from_fn(|q| x[q] as i64))
    }
    #[inline(always)]
    fn map(self, f: impl Fn(i64) -> i64) -> V8 {
        V8(std::array::from_fn(|q| f(self.0[q])))
    }
    #[inline(always)]
    fn zip(self, o: V8, f: impl Fn(i64, i64) -> i64) -> V8 {
        V8(std::array::from_fn(|q| f(self.0[q], o.0[q])))
    }
    /// Lane-wise signed maximum.
    #[inline(always)]
    pub fn max(self, o: V8) -> V8 {
        self.zip(o, |a, b| a.max(b))
    }
    /// Lanes clamped to `0..=63` (a valid shift count).
    #[inline(always)]
    pub fn shift_count(self) -> V8 {
        self.map(|a| a.clamp(0, 63))
    }
    /// Logical left shift by per-lane counts in `0..=63`.
    #[inline(always)]
    pub fn shl(self, s: V8) -> V8 {
        self.zip(s, |a, b| ((a as u64) << (b as u64 & 63)) as i64)
    }
    /// Logical right shift by per-lane counts in `0..=63`.
    #[inline(always)]
    pub fn shr(self, s: V8) -> V8 {
        self.zip(s, |a, b| ((a as u64) >> (b as u64 & 63)) as i64)
    }
    /// Logical left shift by a constant.
    #[inline(always)]
    pub fn shl_c<const C: u32>(self) -> V8 {
        self.map(|a| ((a as u64) << C) as i64)
    }
    /// Arithmetic right shift by 63: the sign mask of each lane.
    #[inline(always)]
    pub fn sign(self) -> V8 {
        self.map(|a| a >> 63)
    }
    /// Lane-wise absolute value (wrapping).
    #[inline(always)]
    pub fn abs(self) -> V8 {
        self.map(|a| a.wrapping_abs())
    }
    /// Number of significant bits of each lane as unsigned (64 minus leading zeros).
    #[inline(always)]
    pub fn bits(self) -> V8 {
        self.map(|a| 64 - (a as u64).leading_zeros() as i64)
    }
    /// Mask of lanes with `self > o` (signed).
    #[inline(always)]
    pub fn gt(self, o: V8) -> V8 {
        self.zip(o, |a, b| -((a > b) as i64))
    }
    /// Mask of lanes with `self == o`.
    #[inline(always)]
    pub fn eq(self, o: V8) -> V8 {
        self.zip(o, |a, b| -((a == b) as i64))
    }
    /// Mask of lanes that are zero.
    #[inline(always)]
    pub fn is_zero(self) -> V8 {
        self.eq(V8::splat(0))
    }
    /// Lanes of `a` where the mask `self` is set, else of `b`.
    #[inline(always)]
    pub fn select(self, a: V8, b: V8) -> V8 {
        V8(std::array::from_fn(|q| {
            if self.0[q] != 0 {
                a.0[q]
            } else {
                b.0[q]
            }
        }))
    }
    /// `self` negated in the lanes where the mask `neg` is set (`neg` all ones or zero).
    #[inline(always)]
    pub fn negate_where(self, neg: V8) -> V8 {
        (self ^ neg) - neg
    }
}
