//! Hadamard transforms: the fast Walsh-Hadamard transform, random-sign Hadamard rotations
//! (QuaRot), and block-diagonal Hadamard rotations (MR-GPTQ's block-local rotation whose block
//! equals the MX block).
//!
//! All transforms here are orthogonal and act on the rows of a matrix: a transform `T` maps a
//! row `x` to `T x`. Applying the same `T` to the rows of the activations `X` (`tokens x in`)
//! and of the weight `W` (`out x in`) leaves the layer output unchanged:
//! `(X T^T)(W T^T)^T = X T^T T W^T = X W^T`.
//!
//! Sizes that are not powers of two: a Sylvester Hadamard matrix exists only for powers of two.
//! [`Rotation::hadamard`] uses a block-diagonal Hadamard whose blocks have the largest power of
//! two dividing the size (for 172 = 4 * 43: 43 blocks of 4), which is orthogonal and cheap but
//! mixes less than a full Hadamard; [`Rotation::block_hadamard`] with a block that does not
//! divide the size ends with a tail split into power-of-two blocks (binary decomposition of the
//! remainder: 172 with block 32 gives 5 blocks of 32, then 8 and 4).

use super::linalg::Matrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// In-place orthonormal fast Walsh-Hadamard transform (Sylvester order) of a slice whose length
/// is a power of two: `x <- H x / sqrt(n)`.
pub fn fwht(x: &mut [f64]) {
    let n = x.len();
    assert!(n.is_power_of_two(), "fwht needs a power-of-two length");
    let mut h = 1;
    while h < n {
        for i in (0..n).step_by(2 * h) {
            for j in i..i + h {
                let (a, b) = (x[j], x[j + h]);
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
        h *= 2;
    }
    let s = 1.0 / (n as f64).sqrt();
    x.iter_mut().for_each(|v| *v *= s);
}

/// The largest power of two dividing `n` (1 for odd n, 0 for 0).
pub fn pow2_factor(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << n.trailing_zeros()
    }
}

/// Split `n` into blocks of `block` (a power of two) followed by a binary decomposition of the
/// remainder into decreasing powers of two.
pub fn block_sizes(n: usize, block: usize) -> Vec<usize> {
    assert!(block.is_power_of_two());
    let mut v = vec![block; n / block];
    let mut rem = n % block;
    while rem > 0 {
        let p = 1 << (usize::BITS - 1 - rem.leading_zeros());
        v.push(p);
        rem -= p;
    }
    v
}

/// An orthogonal transform `T = blockdiag(H_b1, H_b2, ...) * diag(signs)` of rows of length
/// `n`, where each `H_b` is an orthonormal Sylvester Hadamard matrix of its block's size.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// Sizes of the diagonal Hadamard blocks (sum = n, each a power of two).
    pub blocks: Vec<usize>,
    /// Random signs applied before the Hadamard (all +1 when not randomised).
    pub signs: Vec<f64>,
}

impl Rotation {
    /// Row length.
    pub fn len(&self) -> usize {
        self.signs.len()
    }

    /// Whether the transform is of length 0.
    pub fn is_empty(&self) -> bool {
        self.signs.is_empty()
    }

    /// The Hadamard of order `n` (block-diagonal with the largest power-of-two factor of `n`
    /// when `n` is not a power of two), with random signs from `seed` when given.
    pub fn hadamard(n: usize, seed: Option<u64>) -> Self {
        let b = pow2_factor(n).max(1);
        Self::with_blocks(vec![b; n / b.max(1)], n, seed)
    }

    /// Block-diagonal Hadamard with blocks of `block` (a power of two: MR-GPTQ uses the MX
    /// block size), tail as in [`block_sizes`], random signs from `seed` when given.
    pub fn block_hadamard(n: usize, block: usize, seed: Option<u64>) -> Self {
        Self::with_blocks(block_sizes(n, block), n, seed)
    }

    fn with_blocks(blocks: Vec<usize>, n: usize, seed: Option<u64>) -> Self {
        let signs = match seed {
            Some(s) => {
                let mut rng = ChaCha8Rng::seed_from_u64(s);
                (0..n)
                    .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
                    .collect()
            }
            None => vec![1.0; n],
        };
        Rotation { blocks, signs }
    }

    /// Apply `T` to a row in place.
    pub fn apply(&self, x: &mut [f64]) {
        for (v, s) in x.iter_mut().zip(&self.signs) {
            *v *= s;
        }
        let mut o = 0;
        for &b in &self.blocks {
            fwht(&mut x[o..o + b]);
            o += b;
        }
    }

    /// Apply `T^T` (the inverse) to a row in place. Sylvester Hadamard blocks are symmetric.
    pub fn apply_t(&self, x: &mut [f64]) {
        let mut o = 0;
        for &b in &self.blocks {
            fwht(&mut x[o..o + b]);
            o += b;
        }
        for (v, s) in x.iter_mut().zip(&self.signs) {
            *v *= s;
        }
    }

    /// Apply `T` to every row of `m` (rows of length `n`).
    pub fn apply_rows(&self, m: &Matrix) -> Matrix {
        assert_eq!(m.cols, self.len(), "rotation length mismatch");
        let mut out = m.clone();
        for r in 0..m.rows {
            self.apply(&mut out.data[r * m.cols..(r + 1) * m.cols]);
        }
        out
    }

    /// The dense matrix of `T` (`n x n`, `T[i][j]` = component i of `T e_j`).
    pub fn to_matrix(&self) -> Matrix {
        let n = self.len();
        let mut cols = Matrix::identity(n);
        for r in 0..n {
            self.apply(&mut cols.data[r * n..(r + 1) * n]);
        }
        cols.t()
    }
}

/// Apply a dense transform `T` (`n x n`) to every row: `M T^T`.
pub fn apply_dense_rows(m: &Matrix, t: &Matrix) -> Matrix {
    m.matmul_t(t)
}
