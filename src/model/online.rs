//! Online input transforms: a linear transform applied to the activations entering a linear
//! layer at run time, before the layer's activation quantization. Rotation-based PTQ methods
//! (QuaRot's Hadamard before `w2` and `wo`, MR-GPTQ's block Hadamard, FlatQuant's affine
//! transforms) put one in front of a layer whose weight has been transformed to match, so the
//! float model computes the same function while the quantized operands change.

use super::float::Float;

/// A linear map `x -> T x` on each row `x` of a layer's input.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OnlineTransform {
    /// `T = blockdiag(H_b1, H_b2, ...) diag(signs)`: orthonormal Sylvester Hadamard blocks
    /// (sizes are powers of two summing to the row length) after a sign flip per element.
    Hadamard {
        /// Block sizes.
        blocks: Vec<usize>,
        /// One sign (+1 or -1) per element.
        signs: Vec<f64>,
    },
    /// A dense `n x n` matrix `T`, row-major.
    Dense {
        /// Row length.
        n: usize,
        /// `T`, row-major.
        m: Vec<f64>,
    },
}

fn fwht(x: &mut [f64]) {
    let n = x.len();
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

impl OnlineTransform {
    /// Row length.
    pub fn len(&self) -> usize {
        match self {
            OnlineTransform::Hadamard { signs, .. } => signs.len(),
            OnlineTransform::Dense { n, .. } => *n,
        }
    }

    /// Whether the row length is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check the transform's own consistency (block sizes powers of two summing to the length,
    /// matrix size).
    pub fn validate(&self) -> crate::Result<()> {
        let ok = match self {
            OnlineTransform::Hadamard { blocks, signs } => {
                blocks.iter().all(|b| b.is_power_of_two())
                    && blocks.iter().sum::<usize>() == signs.len()
            }
            OnlineTransform::Dense { n, m } => n.checked_mul(*n) == Some(m.len()),
        };
        if ok {
            Ok(())
        } else {
            Err(crate::Error::invalid("malformed online transform"))
        }
    }

    /// Apply to one row in f64.
    pub fn apply_row(&self, x: &mut [f64]) {
        match self {
            OnlineTransform::Hadamard { blocks, signs } => {
                for (v, s) in x.iter_mut().zip(signs) {
                    *v *= s;
                }
                let mut o = 0;
                for &b in blocks {
                    fwht(&mut x[o..o + b]);
                    o += b;
                }
            }
            OnlineTransform::Dense { n, m } => {
                let y: Vec<f64> = (0..*n)
                    .map(|i| {
                        m[i * n..(i + 1) * n]
                            .iter()
                            .zip(x.iter())
                            .map(|(a, b)| a * b)
                            .sum()
                    })
                    .collect();
                x.copy_from_slice(&y);
            }
        }
    }

    /// Apply to every row of `x` (`rows x len`), computing in f64 and rounding once to `T`.
    pub fn apply<T: Float>(&self, x: &mut [T], rows: usize) {
        let n = self.len();
        let mut buf = vec![0.0f64; n];
        for r in 0..rows {
            let row = &mut x[r * n..(r + 1) * n];
            for (b, v) in buf.iter_mut().zip(row.iter()) {
                *b = v.to_f64();
            }
            self.apply_row(&mut buf);
            for (v, b) in row.iter_mut().zip(&buf) {
                *v = T::from_f64(*b);
            }
        }
    }

    /// The dense matrix `T` (`len x len`, row-major).
    pub fn dense(&self) -> Vec<f64> {
        let n = self.len();
        let mut cols = vec![0.0; n * n];
        for j in 0..n {
            let mut e = vec![0.0; n];
            e[j] = 1.0;
            self.apply_row(&mut e);
            for i in 0..n {
                cols[i * n + j] = e[i];
            }
        }
        cols
    }
}
