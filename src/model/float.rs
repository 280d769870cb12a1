//! The floating-point types the reference forward runs in (f32 and f64), with the few
//! operations it needs and a row-major GEMM on `matrixmultiply` (single-threaded, so results
//! do not depend on the number of threads).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

/// A float type the reference forward can run in: implemented for `f32` and `f64`.
pub trait Float:
    Copy
    + Default
    + Send
    + Sync
    + PartialOrd
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Short name (`f32`, `f64`).
    const NAME: &'static str;
    /// Round an f64 to this type.
    fn from_f64(x: f64) -> Self;
    /// Convert an f32 (exact).
    fn from_f32(x: f32) -> Self;
    /// Convert to f64 (exact).
    fn to_f64(self) -> f64;
    /// Convert to f32 (rounding).
    fn to_f32(self) -> f32;
    /// e^x.
    fn exp(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// x^y.
    fn powf(self, y: Self) -> Self;
    /// `c[m x n] = a[m x k] * b^T` with `b` stored row-major as `n x k` (the layout of a
    /// weight matrix `out x in`); `c` is overwritten.
    fn gemm_nt(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]);
}

macro_rules! impl_float {
    ($t:ty, $name:literal, $gemm:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline]
            fn powf(self, y: Self) -> Self {
                <$t>::powf(self, y)
            }
            fn gemm_nt(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]) {
                assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
                if m == 0 || n == 0 {
                    return;
                }
                if k == 0 {
                    c[..m * n].iter_mut().for_each(|x| *x = 0.0);
                    return;
                }
                // SAFETY: the slices hold at least m*k, n*k and m*n elements (checked above);
                // A is m x k with strides (k, 1); B^T is k x n read from the n x k row-major
                // `b` with strides (1, k); C is m x n with strides (n, 1); beta = 0 means C
                // is only written.
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        1,
                        k as isize,
                        0.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            }
        }
    };
}

impl_float!(f32, "f32", matrixmultiply::sgemm);
impl_float!(f64, "f64", matrixmultiply::dgemm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_nt_matches_naive() {
        // 2x3 times (2x3)^T, worked by hand: row0 . row0' = 1*7+2*8+3*9 = 50, etc.
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0f64, 8.0, 9.0, 1.0, 0.0, -1.0];
        let mut c = [0.0f64; 4];
        f64::gemm_nt(2, 3, 2, &a, &b, &mut c);
        assert_eq!(c, [50.0, -2.0, 122.0, -2.0]);
    }
}
