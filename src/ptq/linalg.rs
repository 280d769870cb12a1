//! Small dense linear algebra in f64 for the PTQ algorithms: a row-major matrix type, products,
//! Gram matrices, Cholesky factorisation and inversion, and LU solves.
//!
//! Layer sizes in PTQ are the hidden sizes of one linear layer (tens to a few thousand), so
//! plain cache-friendly loops (with `matrixmultiply` for the products) are enough; every loop
//! runs in a fixed order so results are bit-identical from run to run.

use crate::error::{Error, Result};

/// A dense row-major f64 matrix.
///
/// Conventions used throughout `ptq`: a linear layer's weight is `out x in` (one row per
/// output, the MX blocks run along the input/reduction axis), calibration activations are
/// `tokens x in`, so the layer output is `X W^T` (`tokens x out`).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// A zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// The identity matrix of order `n`.
    pub fn identity(n: usize) -> Self {
        let mut m = Matrix::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    /// Wrap row-major data; errors if the length is not `rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::invalid(format!(
                "matrix has {} values, not {rows} x {cols}",
                data.len()
            )));
        }
        Ok(Matrix { rows, cols, data })
    }

    /// Widen row-major f32 data (exact).
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        Matrix::from_vec(rows, cols, data.iter().map(|&v| v as f64).collect())
    }

    /// Round every value to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    /// Element (r, c).
    #[inline]
    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// Mutable element (r, c).
    #[inline]
    pub fn at_mut(&mut self, r: usize, c: usize) -> &mut f64 {
        &mut self.data[r * self.cols + c]
    }

    /// Row `r` as a slice.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The transpose.
    pub fn t(&self) -> Matrix {
        let mut out = Matrix::zeros(self.cols, self.rows);
        for r in 0..self.rows {
            for c in 0..self.cols {
                out.data[c * self.rows + r] = self.data[r * self.cols + c];
            }
        }
        out
    }

    /// `self * other`.
    pub fn matmul(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.rows, "matmul shape mismatch");
        let mut out = Matrix::zeros(self.rows, other.cols);
        gemm(
            self.rows,
            self.cols,
            other.cols,
            &self.data,
            self.cols as isize,
            1,
            &other.data,
            other.cols as isize,
            1,
            &mut out.data,
        );
        out
    }

    /// `self * other^T` (for `X W^T` with both stored row-major).
    pub fn matmul_t(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.cols, "matmul_t shape mismatch");
        let mut out = Matrix::zeros(self.rows, other.rows);
        gemm(
            self.rows,
            self.cols,
            other.rows,
            &self.data,
            self.cols as isize,
            1,
            &other.data,
            1,
            other.cols as isize,
            &mut out.data,
        );
        out
    }

    /// `self^T * other`.
    pub fn t_matmul(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.rows, other.rows, "t_matmul shape mismatch");
        let mut out = Matrix::zeros(self.cols, other.cols);
        gemm(
            self.cols,
            self.rows,
            other.cols,
            &self.data,
            1,
            self.cols as isize,
            &other.data,
            other.cols as isize,
            1,
            &mut out.data,
        );
        out
    }

    /// Sum of squared differences to `other` (same shape).
    pub fn sq_dist(&self, other: &Matrix) -> f64 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b) * (a - b))
            .sum()
    }

    /// Sum of squares.
    pub fn sq_norm(&self) -> f64 {
        self.data.iter().map(|a| a * a).sum()
    }

    /// Largest absolute difference to `other`.
    pub fn max_abs_diff(&self, other: &Matrix) -> f64 {
        self.data
            .iter()
            .zip(&other.data)
            .fold(0.0, |m, (a, b)| m.max((a - b).abs()))
    }

    /// Multiply column `c` by `s[c]` for every column.
    pub fn scale_cols(&mut self, s: &[f64]) {
        for r in 0..self.rows {
            for (v, &f) in self.data[r * self.cols..(r + 1) * self.cols]
                .iter_mut()
                .zip(s)
            {
                *v *= f;
            }
        }
    }

    /// Columns `lo..hi` as a new matrix.
    pub fn cols_range(&self, lo: usize, hi: usize) -> Matrix {
        let mut out = Matrix::zeros(self.rows, hi - lo);
        for r in 0..self.rows {
            out.data[r * (hi - lo)..(r + 1) * (hi - lo)]
                .copy_from_slice(&self.data[r * self.cols + lo..r * self.cols + hi]);
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    rsa: isize,
    csa: isize,
    b: &[f64],
    rsb: isize,
    csb: isize,
    c: &mut [f64],
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the strides describe matrices lying inside `a` (m x k), `b` (k x n) and `c`
    // (m x n, row-major), as the callers construct them from their shapes.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Lower-triangular Cholesky factor `L` with `A = L L^T` of a symmetric positive-definite
/// matrix; errors if a pivot is not positive.
pub fn cholesky(a: &Matrix) -> Result<Matrix> {
    let n = a.rows;
    let mut l = Matrix::zeros(n, n);
    for j in 0..n {
        let mut d = a.at(j, j);
        for k in 0..j {
            d -= l.at(j, k) * l.at(j, k);
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(Error::invalid(format!(
                "matrix is not positive definite (pivot {j} is {d})"
            )));
        }
        let d = d.sqrt();
        *l.at_mut(j, j) = d;
        for i in j + 1..n {
            let mut s = a.at(i, j);
            for k in 0..j {
                s -= l.at(i, k) * l.at(j, k);
            }
            *l.at_mut(i, j) = s / d;
        }
    }
    Ok(l)
}

/// Inverse of a symmetric positive-definite matrix through its Cholesky factor.
pub fn spd_inverse(a: &Matrix) -> Result<Matrix> {
    let n = a.rows;
    let l = cholesky(a)?;
    // L^-1 by forward substitution, column by column
    let mut linv = Matrix::zeros(n, n);
    for c in 0..n {
        for i in c..n {
            let mut s = if i == c { 1.0 } else { 0.0 };
            for k in c..i {
                s -= l.at(i, k) * linv.at(k, c);
            }
            *linv.at_mut(i, c) = s / l.at(i, i);
        }
    }
    // A^-1 = L^-T L^-1
    Ok(linv.t_matmul(&linv))
}

/// Upper-triangular `U` with `A = U^T U` (the transpose of the Cholesky factor), as GPTQ uses
/// for the inverse Hessian.
pub fn cholesky_upper(a: &Matrix) -> Result<Matrix> {
    Ok(cholesky(a)?.t())
}

/// LU factorisation with partial pivoting of a square matrix, for solves and inverses of
/// general (non-symmetric) matrices.
#[derive(Debug, Clone)]
pub struct Lu {
    lu: Matrix,
    perm: Vec<usize>,
}

impl Lu {
    /// Factorise; errors if the matrix is singular to working precision.
    pub fn new(a: &Matrix) -> Result<Self> {
        let n = a.rows;
        if a.cols != n {
            return Err(Error::invalid("LU needs a square matrix"));
        }
        let mut lu = a.clone();
        let mut perm: Vec<usize> = (0..n).collect();
        let scale = a
            .data
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(1e-300);
        for k in 0..n {
            let mut p = k;
            for i in k + 1..n {
                if lu.at(i, k).abs() > lu.at(p, k).abs() {
                    p = i;
                }
            }
            if lu.at(p, k).abs() <= 1e-14 * scale {
                return Err(Error::invalid("matrix is singular"));
            }
            if p != k {
                for c in 0..n {
                    lu.data.swap(k * n + c, p * n + c);
                }
                perm.swap(k, p);
            }
            let d = lu.at(k, k);
            for i in k + 1..n {
                let f = lu.at(i, k) / d;
                *lu.at_mut(i, k) = f;
                if f != 0.0 {
                    for c in k + 1..n {
                        let v = lu.at(k, c);
                        *lu.at_mut(i, c) -= f * v;
                    }
                }
            }
        }
        Ok(Lu { lu, perm })
    }

    /// Solve `A x = b` for one right-hand side.
    pub fn solve_vec(&self, b: &[f64]) -> Vec<f64> {
        let n = self.lu.rows;
        let mut x: Vec<f64> = self.perm.iter().map(|&p| b[p]).collect();
        for i in 0..n {
            for k in 0..i {
                x[i] -= self.lu.at(i, k) * x[k];
            }
        }
        for i in (0..n).rev() {
            for k in i + 1..n {
                x[i] -= self.lu.at(i, k) * x[k];
            }
            x[i] /= self.lu.at(i, i);
        }
        x
    }

    /// Solve `A X = B` for a matrix right-hand side.
    pub fn solve(&self, b: &Matrix) -> Matrix {
        let n = self.lu.rows;
        let bt = b.t();
        let mut out = Matrix::zeros(b.cols, n);
        for c in 0..b.cols {
            let x = self.solve_vec(bt.row(c));
            out.data[c * n..(c + 1) * n].copy_from_slice(&x);
        }
        out.t()
    }

    /// The inverse.
    pub fn inverse(&self) -> Matrix {
        self.solve(&Matrix::identity(self.lu.rows))
    }
}

/// Inverse of a general square matrix (LU with partial pivoting).
pub fn inverse(a: &Matrix) -> Result<Matrix> {
    Ok(Lu::new(a)?.inverse())
}
