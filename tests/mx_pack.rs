//! Packed storage: exhaustive round trips over codes, the fast byte loops against `bitvec`,
//! both against an independent shift-register reference, and the packed file layout.

use mxsim::mx::pack::{
    from_packed_bytes, pack_codes, pack_codes_bitvec, packed_len, to_packed_bytes, unpack_codes,
    unpack_codes_bitvec,
};
use mxsim::mx::{quantize, MxConfig, Scheme};
use std::path::Path;

/// Independent reference: a little-endian bit accumulator (code i at bit offset i * bits).
fn reference_pack(codes: &[u8], bits: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut n) = (0u64, 0u32);
    for &c in codes {
        acc |= ((c as u64) & ((1 << bits) - 1)) << n;
        n += bits;
        while n >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            n -= 8;
        }
    }
    if n > 0 {
        out.push(acc as u8);
    }
    out
}

/// Every ordered pair of codes, at every phase of the packing group (offset 0..8 codes), for
/// 4-, 6- and 8-bit codes, plus odd lengths.
#[test]
fn exhaustive_pairs_every_phase() {
    for bits in [4u32, 6, 8] {
        let n = 1u32 << bits;
        for phase in 0..8 {
            let mut codes = vec![0u8; phase];
            for a in 0..n {
                for b in 0..n {
                    codes.push(a as u8);
                    codes.push(b as u8);
                }
            }
            for len in [codes.len(), codes.len() - 1] {
                let c = &codes[..len];
                let r = reference_pack(c, bits);
                assert_eq!(r.len(), packed_len(len, bits));
                assert_eq!(pack_codes(c, bits), r, "bits {bits} phase {phase}");
                assert_eq!(pack_codes_bitvec(c, bits), r, "bits {bits} phase {phase}");
                assert_eq!(unpack_codes(&r, bits, len).unwrap(), c);
                assert_eq!(unpack_codes_bitvec(&r, bits, len).unwrap(), c);
            }
        }
    }
}

/// Storage density: FP4 two per byte, FP6 four per three bytes, FP8 one per byte.
#[test]
fn density() {
    assert_eq!(packed_len(32, 4), 16);
    assert_eq!(packed_len(32, 6), 24);
    assert_eq!(packed_len(32, 8), 32);
    assert_eq!(packed_len(3, 4), 2);
    assert_eq!(packed_len(5, 6), 4);
    assert!(unpack_codes(&[0u8; 2], 4, 5).is_err());
    assert!(unpack_codes(&[0u8; 3], 6, 5).is_err());
}

/// The packed file round-trips every scheme (codes, scales, global scale, shape, axis), and
/// rejects bad magic, truncation and trailing bytes.
#[test]
fn packed_file_round_trip() {
    let v: Vec<f32> = (0..3 * 45)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    for scheme in Scheme::ALL {
        let t = quantize(&v, 3, 45, &MxConfig::new(scheme)).unwrap();
        let bytes = to_packed_bytes(&t, &[3, 45], 1).unwrap();
        let p = from_packed_bytes(Path::new("x.bin"), &bytes).unwrap();
        let mut back = p.tensor.clone();
        back.clipped_blocks = t.clipped_blocks;
        assert_eq!(back, t, "{scheme}");
        assert_eq!((p.shape, p.axis), (vec![3, 45], 1));
        let bits = scheme.element().bits() as usize;
        assert_eq!(
            bytes.len(),
            40 + 16 + t.scales.len() + (135 * bits).div_ceil(8),
            "{scheme}: header 24 + 8 per dim + 16"
        );
        assert!(from_packed_bytes(Path::new("x"), &bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(from_packed_bytes(Path::new("x"), &extra).is_err());
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(from_packed_bytes(Path::new("x"), &bad).is_err());
    }
    assert!(from_packed_bytes(Path::new("x"), b"MXSIMPK1").is_err());
}
