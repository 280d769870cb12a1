//! Packed storage of element codes (FP4 two per byte, FP6 four per three bytes, FP8/INT8 one
//! per byte; scales one byte each) and the `mxsim quantize --packed` file layout.
//!
//! # Bit order
//! Codes form one little-endian bit stream: code `i` of width `w` occupies stream bits
//! `i*w .. (i+1)*w`, its least significant bit first, and stream bit `k` is bit `k % 8`
//! (value `1 << (k % 8)`) of byte `k / 8`. Hence:
//! - FP4: element `2j` is the LOW nibble of byte `j`, element `2j+1` the high nibble;
//! - FP6: elements `4j..4j+4` fill bytes `3j..3j+3` read as a little-endian 24-bit integer
//!   `e0 | e1 << 6 | e2 << 12 | e3 << 18`;
//! - FP8/INT8: one code per byte, unchanged.
//!
//! The last byte is padded with zero bits. The stream runs over the whole row-major code array
//! (rows are not padded to byte boundaries). The reference implementation uses `bitvec`
//! (`BitVec<u8, Lsb0>` with `store_le`/`load_le`); 4- and 8-bit widths also have byte-loop
//! fast paths, tested equal to the `bitvec` path for every code.
//!
//! # Packed file (`--packed`)
//! All integers little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `MXSIMPK1` |
//! | 8 | 1 | scheme id: 0 mxfp8_e4m3, 1 mxfp8_e5m2, 2 mxfp6_e3m2, 3 mxfp6_e2m3, 4 mxfp4, 5 mxint8, 6 nvfp4 |
//! | 9 | 1 | element bits (8, 6 or 4) |
//! | 10 | 1 | number of dimensions `n` (1..=32) |
//! | 11 | 1 | blocked axis (0..n) of the original array |
//! | 12 | 4 | block size (u32) |
//! | 16 | 8 | global scale (f64; 1 for MX, 1/F for pre-scale, the FP32 tensor scale for NVFP4) |
//! | 24 | 8n | the original shape (u64 each) |
//! | 24+8n | 8 | number of scale bytes `S` (u64) |
//! | 32+8n | 8 | number of packed element bytes `P` (u64) |
//! | 40+8n | S | scale codes, one byte each, in the order of the blocked layout |
//! | 40+8n+S | P | packed element codes |
//!
//! The blocked layout is the array with the blocked axis moved last, viewed as
//! `rows x cols` (`cols` = length of the blocked axis): codes row-major, scales
//! `rows x ceil(cols / block)`.

use super::{MxTensor, Scheme};
use crate::error::{Error, Result};
use bitvec::prelude::*;

/// Number of bytes that `n` codes of `bits` bits occupy when packed.
pub fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

fn mask(bits: u32) -> u8 {
    ((1u16 << bits) - 1) as u8
}

/// Pack codes of width `bits` (1..=8) with `bitvec` (the reference implementation; bits of a
/// code above `bits` are ignored).
pub fn pack_codes_bitvec(codes: &[u8], bits: u32) -> Vec<u8> {
    assert!((1..=8).contains(&bits), "code width must be 1..=8 bits");
    let w = bits as usize;
    let mut bv: BitVec<u8, Lsb0> = BitVec::repeat(false, codes.len() * w);
    for (i, &c) in codes.iter().enumerate() {
        bv[i * w..(i + 1) * w].store_le(c & mask(bits));
    }
    let mut out = bv.into_vec();
    out.truncate(packed_len(codes.len(), bits));
    out
}

/// Unpack `n` codes of width `bits` (1..=8) with `bitvec` (reference implementation).
pub fn unpack_codes_bitvec(bytes: &[u8], bits: u32, n: usize) -> Result<Vec<u8>> {
    if !(1..=8).contains(&bits) {
        return Err(Error::invalid(format!(
            "code width {bits} is not 1..=8 bits"
        )));
    }
    if bytes.len() < packed_len(n, bits) {
        return Err(Error::invalid(format!(
            "{} packed bytes hold fewer than {n} codes of {bits} bits",
            bytes.len()
        )));
    }
    let bv = bytes.view_bits::<Lsb0>();
    let w = bits as usize;
    Ok((0..n)
        .map(|i| bv[i * w..(i + 1) * w].load_le::<u8>())
        .collect())
}

/// Pack codes of width `bits` (1..=8): byte loops for 4 and 8 bits, `bitvec` otherwise.
pub fn pack_codes(codes: &[u8], bits: u32) -> Vec<u8> {
    match bits {
        8 => codes.to_vec(),
        4 => {
            let mut out = vec![0u8; packed_len(codes.len(), 4)];
            let pairs = codes.chunks_exact(2);
            let rem = pairs.remainder();
            for (o, p) in out.iter_mut().zip(pairs) {
                *o = (p[0] & 0x0F) | (p[1] << 4);
            }
            if let [last] = rem {
                out[codes.len() / 2] = last & 0x0F;
            }
            out
        }
        _ => pack_codes_bitvec(codes, bits),
    }
}

/// Unpack `n` codes of width `bits` (1..=8): byte loops for 4 and 8 bits, `bitvec`
/// otherwise. Errors when `bytes` is too short.
pub fn unpack_codes(bytes: &[u8], bits: u32, n: usize) -> Result<Vec<u8>> {
    match bits {
        8 | 4 if bytes.len() < packed_len(n, bits) => unpack_codes_bitvec(bytes, bits, n),
        8 => Ok(bytes[..n].to_vec()),
        4 => {
            let mut out = vec![0u8; n];
            for (o, b) in out.chunks_mut(2).zip(bytes) {
                o[0] = b & 0x0F;
                if let Some(hi) = o.get_mut(1) {
                    *hi = b >> 4;
                }
            }
            Ok(out)
        }
        _ => unpack_codes_bitvec(bytes, bits, n),
    }
}

/// The file magic of a packed tensor.
pub const MAGIC: &[u8; 8] = b"MXSIMPK1";

/// A block-quantized tensor read back from a packed file, with the original array's shape
/// and blocked axis.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedFile {
    /// The tensor in its blocked layout (blocked axis last), codes unpacked one per byte.
    pub tensor: MxTensor,
    /// Shape of the original array.
    pub shape: Vec<usize>,
    /// The blocked axis of the original array.
    pub axis: usize,
}

/// Serialize `t` (blocked layout) as a packed file; `shape` and `axis` describe the original
/// array (the product of `shape` must be `t.rows * t.cols` and `shape[axis]` must be
/// `t.cols`).
pub fn to_packed_bytes(t: &MxTensor, shape: &[usize], axis: usize) -> Result<Vec<u8>> {
    let bits = t.scheme.element().bits();
    let packed = pack_codes(&t.codes, bits);
    packed_file_bytes(
        t.scheme,
        t.block_size,
        t.global_scale,
        &t.scales,
        &packed,
        shape,
        axis,
    )
}

/// Serialize already packed sections as a packed file (the same bytes as
/// [`to_packed_bytes`] of the equivalent tensor): `scales` one byte per block of the blocked
/// layout, `packed` the element codes as [`pack_codes`] packs them (for instance from
/// [`super::fast::quantize_packed`]); `shape` and `axis` describe the original array.
pub fn packed_file_bytes(
    scheme: Scheme,
    block_size: usize,
    global_scale: f64,
    scales: &[u8],
    packed: &[u8],
    shape: &[usize],
    axis: usize,
) -> Result<Vec<u8>> {
    if shape.is_empty() || shape.len() > 32 || axis >= shape.len() {
        return Err(Error::invalid(
            "packed file needs 1..=32 dimensions and a valid axis",
        ));
    }
    let bits = scheme.element().bits();
    let n: usize = shape.iter().product();
    let cols = shape[axis];
    let bpr = if cols == 0 || block_size == 0 {
        0
    } else {
        cols.div_ceil(block_size)
    };
    if scales.len() != n.checked_div(cols).unwrap_or(0) * bpr || packed.len() != packed_len(n, bits)
    {
        return Err(Error::invalid(
            "packed file shape does not match the tensor",
        ));
    }
    let mut out = Vec::with_capacity(40 + 8 * shape.len() + scales.len() + packed.len());
    out.extend_from_slice(MAGIC);
    let id = Scheme::ALL
        .iter()
        .position(|&s| s == scheme)
        .expect("every scheme is in Scheme::ALL") as u8;
    out.push(id);
    out.push(bits as u8);
    out.push(shape.len() as u8);
    out.push(axis as u8);
    let bs = u32::try_from(block_size)
        .map_err(|_| Error::invalid("block size does not fit the packed file's 32-bit field"))?;
    out.extend_from_slice(&bs.to_le_bytes());
    out.extend_from_slice(&global_scale.to_le_bytes());
    for &d in shape {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    out.extend_from_slice(&(scales.len() as u64).to_le_bytes());
    out.extend_from_slice(&(packed.len() as u64).to_le_bytes());
    out.extend_from_slice(scales);
    out.extend_from_slice(packed);
    Ok(out)
}

/// Parse a packed file (`path` names it in errors). `clipped_blocks` is not stored and reads
/// back as 0.
pub fn from_packed_bytes(path: &std::path::Path, bytes: &[u8]) -> Result<PackedFile> {
    let bad = |m: &str| Error::malformed(path, format!("packed MX file: {m}"));
    let take = |off: usize, n: usize| -> Result<&[u8]> {
        bytes
            .get(off..off.checked_add(n).ok_or_else(|| bad("size overflow"))?)
            .ok_or_else(|| bad("truncated"))
    };
    let u64_at = |off: usize| -> Result<u64> {
        Ok(u64::from_le_bytes(
            take(off, 8)?.try_into().expect("8 bytes"),
        ))
    };
    if take(0, 8)? != MAGIC {
        return Err(bad("bad magic (expected MXSIMPK1)"));
    }
    let head = take(8, 16)?;
    let scheme = *Scheme::ALL
        .get(head[0] as usize)
        .ok_or_else(|| bad("unknown scheme id"))?;
    let bits = head[1] as u32;
    if bits != scheme.element().bits() {
        return Err(bad("element width does not match the scheme"));
    }
    let ndim = head[2] as usize;
    let axis = head[3] as usize;
    if ndim == 0 || ndim > 32 || axis >= ndim {
        return Err(bad("bad number of dimensions or axis"));
    }
    let block_size = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    if block_size == 0 {
        return Err(bad("block size 0"));
    }
    let global_scale = f64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    let mut shape = Vec::with_capacity(ndim);
    for i in 0..ndim {
        shape.push(usize::try_from(u64_at(24 + 8 * i)?).map_err(|_| bad("dimension too large"))?);
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape too large"))?;
    let cols = shape[axis];
    let rows = n.checked_div(cols).unwrap_or(0);
    let off = 24 + 8 * ndim;
    let s_len = u64_at(off)? as usize;
    let p_len = u64_at(off + 8)? as usize;
    let bpr = if cols == 0 {
        0
    } else {
        cols.div_ceil(block_size)
    };
    if s_len != rows * bpr || p_len != packed_len(n, bits) {
        return Err(bad("section sizes do not match the shape"));
    }
    let scales = take(off + 16, s_len)?.to_vec();
    let packed = take(off + 16 + s_len, p_len)?;
    if bytes.len() != off + 16 + s_len + p_len {
        return Err(bad("trailing bytes after the packed elements"));
    }
    let codes = unpack_codes(packed, bits, n)?;
    Ok(PackedFile {
        tensor: MxTensor {
            scheme,
            block_size,
            rows,
            cols,
            codes,
            scales,
            global_scale,
            clipped_blocks: 0,
        },
        shape,
        axis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-derived bytes. FP4 codes [1, 2, 3] -> byte 0 = 1 | 2 << 4 = 0x21, byte 1 = 0x03.
    /// FP6 codes [0x01, 0x02, 0x03, 0x3F]: 24-bit LE integer 1 | 2<<6 | 3<<12 | 63<<18 =
    /// 0x1 + 0x80 + 0x3000 + 0xFC0000 = 0xFC3081 -> bytes 0x81, 0x30, 0xFC.
    #[test]
    fn hand_derived_layout() {
        assert_eq!(pack_codes(&[1, 2, 3], 4), vec![0x21, 0x03]);
        assert_eq!(pack_codes_bitvec(&[1, 2, 3], 4), vec![0x21, 0x03]);
        assert_eq!(pack_codes(&[1, 2, 3, 0x3F], 6), vec![0x81, 0x30, 0xFC]);
        // a fifth FP6 code 0x2A starts byte 3: 0x2A in bits 0..6
        assert_eq!(
            pack_codes(&[1, 2, 3, 0x3F, 0x2A], 6),
            vec![0x81, 0x30, 0xFC, 0x2A]
        );
        assert_eq!(pack_codes(&[0xAB, 0x01], 8), vec![0xAB, 0x01]);
    }
}
