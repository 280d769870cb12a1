//! Reading and writing NumPy `.npy` files (format versions 1.0 to 3.0, C order, little-endian
//! `f4`, `f8`, `u1`, `i4`, `u4`), as produced by `numpy.save`.

use crate::error::{Error, Result};
use std::path::Path;

/// The element data of an array.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `|u1`
    U8(Vec<u8>),
    /// `<i4`
    I32(Vec<i32>),
    /// `<u4`
    U32(Vec<u32>),
}

/// An n-dimensional array in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, `shape.iter().product()` of them.
    pub data: NpyData,
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as f64 (exact for every supported dtype).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            NpyData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::F64(v) => v.clone(),
            NpyData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::U32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The elements as u8, or an error naming `what` if the dtype is not `uint8`.
    pub fn as_u8(&self, what: &str) -> Result<&[u8]> {
        match &self.data {
            NpyData::U8(v) => Ok(v),
            _ => Err(Error::invalid(format!(
                "{what}: expected a uint8 array, found {}",
                self.dtype_name()
            ))),
        }
    }

    /// The NumPy name of the dtype.
    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            NpyData::F32(_) => "float32",
            NpyData::F64(_) => "float64",
            NpyData::U8(_) => "uint8",
            NpyData::I32(_) => "int32",
            NpyData::U32(_) => "uint32",
        }
    }

    /// Whether the data is a floating-point dtype.
    pub fn is_float(&self) -> bool {
        matches!(self.data, NpyData::F32(_) | NpyData::F64(_))
    }

    /// Build a float32 array.
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Self {
        NpyArray {
            shape,
            data: NpyData::F32(v),
        }
    }

    /// Build a uint8 array.
    pub fn u8(shape: Vec<usize>, v: Vec<u8>) -> Self {
        NpyArray {
            shape,
            data: NpyData::U8(v),
        }
    }
}

fn parse_header(path: &Path, header: &str) -> Result<(String, bool, Vec<usize>)> {
    let bad = |m: &str| Error::malformed(path, format!("malformed .npy header: {m}"));
    let field = |key: &str| -> Result<&str> {
        let k = format!("'{key}':");
        let i = header
            .find(&k)
            .ok_or_else(|| bad(&format!("missing '{key}'")))?;
        Ok(header[i + k.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("descr is not a string"))?
        .to_string();
    let fortran = field("fortran_order")?;
    let fortran = if fortran.starts_with("True") {
        true
    } else if fortran.starts_with("False") {
        false
    } else {
        return Err(bad("fortran_order is not True/False"));
    };
    let shape = field("shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("shape is not a tuple"))?;
    let mut dims = Vec::new();
    for part in shape.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        dims.push(
            p.parse::<usize>()
                .map_err(|_| bad(&format!("shape entry '{p}' is not a size")))?,
        );
    }
    Ok((descr, fortran, dims))
}

/// Read a `.npy` file. Malformed, truncated or unsupported files give an error naming the
/// problem.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy(path, &bytes)
}

/// Parse the bytes of a `.npy` file; `path` is used in error messages only.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(Error::malformed(path, "not a .npy file (bad magic)"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(Error::malformed(path, "truncated .npy header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(Error::malformed(
                path,
                format!("unsupported .npy version {v}"),
            ))
        }
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| Error::malformed(path, "truncated .npy header"))?;
    let header = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| Error::malformed(path, "header is not text"))?;
    let (descr, fortran, shape) = parse_header(path, header)?;
    if fortran {
        return Err(Error::malformed(
            path,
            "Fortran-order arrays are not supported; save a C-order array",
        ));
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::malformed(path, "shape too large"))?;
    let body = &bytes[end..];
    let width = match descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        "|u1" | "<u1" | "u1" => 1,
        "<i4" | "<u4" => 4,
        d => {
            return Err(Error::malformed(
                path,
                format!("unsupported dtype '{d}' (use float32, float64 or uint8, little-endian)"),
            ))
        }
    };
    let need = n
        .checked_mul(width)
        .ok_or_else(|| Error::malformed(path, "shape too large"))?;
    if body.len() < need {
        return Err(Error::malformed(
            path,
            format!(
                "truncated data: shape {:?} needs {need} bytes, file has {}",
                shape,
                body.len()
            ),
        ));
    }
    let body = &body[..need];
    let data = match descr.as_str() {
        "<f4" => NpyData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<f8" => NpyData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<i4" => NpyData::I32(
            body.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<u4" => NpyData::U32(
            body.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        _ => NpyData::U8(body.to_vec()),
    };
    Ok(NpyArray { shape, data })
}

/// Serialize an array to `.npy` (version 1.0) bytes.
pub fn to_npy_bytes(a: &NpyArray) -> Vec<u8> {
    let descr = match a.data {
        NpyData::F32(_) => "<f4",
        NpyData::F64(_) => "<f8",
        NpyData::U8(_) => "|u1",
        NpyData::I32(_) => "<i4",
        NpyData::U32(_) => "<u4",
    };
    let shape = match a.shape.len() {
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    let pad = (64 - total % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + a.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &a.data {
        NpyData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::U8(v) => out.extend_from_slice(v),
        NpyData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::U32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

/// Write an array to `path` atomically.
pub fn write_npy(path: &Path, a: &NpyArray) -> Result<()> {
    super::write_atomic(path, &to_npy_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_dtypes() {
        let arrays = [
            NpyArray::f32(vec![2, 3], vec![1.0, -2.5, 3.0, 0.0, f32::MAX, 1e-40]),
            NpyArray {
                shape: vec![4],
                data: NpyData::F64(vec![1.0, 2.0, -0.0, 1e300]),
            },
            NpyArray::u8(vec![2, 2, 1], vec![0, 255, 7, 8]),
        ];
        for a in arrays {
            let b = parse_npy(Path::new("x"), &to_npy_bytes(&a)).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn truncated_and_malformed_are_errors() {
        let a = NpyArray::f32(vec![8], vec![1.0; 8]);
        let bytes = to_npy_bytes(&a);
        for cut in [0, 5, 9, 20, bytes.len() - 1] {
            assert!(
                parse_npy(Path::new("x"), &bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = bytes.clone();
        bad[20] = b'!';
        let _ = parse_npy(Path::new("x"), &bad); // must not panic
    }
}
