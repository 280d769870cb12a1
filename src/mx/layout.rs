//! Moving the blocked axis of an n-dimensional C-order array to the end and back, so that
//! blocks can be formed along any axis (`mxsim quantize --axis N`).

use crate::error::{Error, Result};

/// Resolve a possibly negative axis (`-1` is the last) against `ndim` dimensions.
pub fn resolve_axis(axis: i64, ndim: usize) -> Result<usize> {
    let n = ndim as i64;
    let a = if axis < 0 { axis + n } else { axis };
    if ndim == 0 || a < 0 || a >= n {
        return Err(Error::invalid(format!(
            "axis {axis} is out of range for an array with {ndim} dimension(s)"
        )));
    }
    Ok(a as usize)
}

/// (outer, axis length, inner) of `shape` split at `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Copy C-order `data` of `shape` into the layout with `axis` moved last: element
/// `[o, a, i]` goes to `[o, i, a]` (o: axes before, i: axes after). The result viewed as
/// `rows x shape[axis]` has one row per combination of the other indices.
pub fn move_axis_last<T: Copy>(data: &[T], shape: &[usize], axis: usize) -> Vec<T> {
    let (outer, n, inner) = split(shape, axis);
    if inner == 1 {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len());
    for o in 0..outer {
        let base = o * n * inner;
        for i in 0..inner {
            out.extend((0..n).map(|a| data[base + a * inner + i]));
        }
    }
    out
}

/// Inverse of [`move_axis_last`]: `data` is in the moved layout of an array of `shape`.
pub fn move_last_to_axis<T: Copy + Default>(data: &[T], shape: &[usize], axis: usize) -> Vec<T> {
    let (outer, n, inner) = split(shape, axis);
    if inner == 1 {
        return data.to_vec();
    }
    let mut out = vec![T::default(); data.len()];
    for o in 0..outer {
        let base = o * n * inner;
        for i in 0..inner {
            for a in 0..n {
                out[base + a * inner + i] = data[base + i * n + a];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2x3x2 array moved along axis 1: [o][a][i] = 100o + 10a + i; the moved layout lists
    /// for each (o, i) the three a values.
    #[test]
    fn round_trip_and_order() {
        let shape = [2, 3, 2];
        let data: Vec<u32> = (0..2)
            .flat_map(|o| (0..3).flat_map(move |a| (0..2).map(move |i| 100 * o + 10 * a + i)))
            .collect();
        let m = move_axis_last(&data, &shape, 1);
        assert_eq!(&m[..6], &[0, 10, 20, 1, 11, 21]);
        assert_eq!(&m[6..], &[100, 110, 120, 101, 111, 121]);
        assert_eq!(move_last_to_axis(&m, &shape, 1), data);
        for axis in 0..3 {
            let m = move_axis_last(&data, &shape, axis);
            assert_eq!(move_last_to_axis(&m, &shape, axis), data);
        }
        assert_eq!(resolve_axis(-1, 3).unwrap(), 2);
        assert!(resolve_axis(3, 3).is_err());
        assert!(resolve_axis(-4, 3).is_err());
    }
}
