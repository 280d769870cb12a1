//! A wide two's-complement fixed-point accumulator (a Kulisch accumulator) that holds any sum
//! of datapath terms exactly: bit `i` has weight `2^(i + LSB)`, with `LIMBS * 64` bits.

use super::float::{round_parts, FloatFormat, Fp, RoundMode};

const LIMBS: usize = 16;
/// Weight exponent of bit 0.
pub const LSB: i32 = -512;
/// Largest term exponent (of a term's least significant bit) that can be added safely: the
/// term's 128 bits plus 60 carry bits stay below the sign bit.
pub const MAX_TERM_EXP: i32 = LSB + (LIMBS as i32) * 64 - 128 - 64;

/// Exact signed sum of terms `(-1)^neg * mag * 2^exp` with `exp` in `[LSB, MAX_TERM_EXP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wide {
    limbs: [u64; LIMBS],
}

impl Default for Wide {
    fn default() -> Self {
        Self::new()
    }
}

impl Wide {
    /// Zero.
    pub fn new() -> Self {
        Wide { limbs: [0; LIMBS] }
    }

    /// Add `(-1)^neg * mag * 2^exp` exactly. Panics (a bug, not bad input) if `exp` is out of
    /// the range the datapath validation guarantees.
    pub fn add(&mut self, neg: bool, mag: u128, exp: i32) {
        if mag == 0 {
            return;
        }
        assert!(
            (LSB..=MAX_TERM_EXP).contains(&exp),
            "wide accumulator term exponent {exp} out of range"
        );
        let pos = (exp - LSB) as u32;
        let li = (pos / 64) as usize;
        let off = pos % 64;
        let lo = mag << off;
        let hi = if off == 0 {
            0
        } else {
            (mag >> (128 - off)) as u64
        };
        let words = [lo as u64, (lo >> 64) as u64, hi];
        if !neg {
            let mut carry = false;
            for (k, &w) in words.iter().enumerate() {
                let (s1, c1) = self.limbs[li + k].overflowing_add(w);
                let (s2, c2) = s1.overflowing_add(carry as u64);
                self.limbs[li + k] = s2;
                carry = c1 || c2;
            }
            let mut i = li + 3;
            while carry && i < LIMBS {
                let (s, c) = self.limbs[i].overflowing_add(1);
                self.limbs[i] = s;
                carry = c;
                i += 1;
            }
        } else {
            let mut borrow = false;
            for (k, &w) in words.iter().enumerate() {
                let (s1, b1) = self.limbs[li + k].overflowing_sub(w);
                let (s2, b2) = s1.overflowing_sub(borrow as u64);
                self.limbs[li + k] = s2;
                borrow = b1 || b2;
            }
            let mut i = li + 3;
            while borrow && i < LIMBS {
                let (s, b) = self.limbs[i].overflowing_sub(1);
                self.limbs[i] = s;
                borrow = b;
                i += 1;
            }
        }
    }

    /// Add another accumulator.
    pub fn add_wide(&mut self, o: &Wide) {
        let mut carry = false;
        for i in 0..LIMBS {
            let (s1, c1) = self.limbs[i].overflowing_add(o.limbs[i]);
            let (s2, c2) = s1.overflowing_add(carry as u64);
            self.limbs[i] = s2;
            carry = c1 || c2;
        }
    }

    /// Whether the sum is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.limbs.iter().all(|&l| l == 0)
    }

    /// Whether the sum is negative.
    pub fn is_neg(&self) -> bool {
        self.limbs[LIMBS - 1] >> 63 == 1
    }

    fn magnitude(&self) -> [u64; LIMBS] {
        if !self.is_neg() {
            return self.limbs;
        }
        let mut out = [0u64; LIMBS];
        let mut carry = true;
        for (o, &l) in out.iter_mut().zip(self.limbs.iter()) {
            let (s, c) = (!l).overflowing_add(carry as u64);
            *o = s;
            carry = c;
        }
        out
    }

    /// The sum as `(neg, top, exp, sticky)`: `top` holds the leading (at most) 128 significant
    /// bits of the magnitude with weight `2^exp` on its lsb, `sticky` whether any lower bit is
    /// set. `None` when the sum is zero.
    pub fn parts(&self) -> Option<(bool, u128, i32, bool)> {
        let neg = self.is_neg();
        let m = self.magnitude();
        let top_limb = (0..LIMBS).rev().find(|&i| m[i] != 0)?;
        let msb = top_limb as i32 * 64 + 63 - m[top_limb].leading_zeros() as i32;
        let lsb_bit = (msb - 127).max(0);
        let mut top: u128 = 0;
        let get64 = |bit: i32| -> u64 {
            // 64 bits starting at `bit`
            let li = (bit / 64) as usize;
            let off = (bit % 64) as u32;
            let lo = m[li] >> off;
            let hi = if off == 0 || li + 1 >= LIMBS {
                0
            } else {
                m[li + 1] << (64 - off)
            };
            lo | hi
        };
        let w0 = get64(lsb_bit) as u128;
        let w1 = if lsb_bit + 64 < LIMBS as i32 * 64 {
            get64(lsb_bit + 64) as u128
        } else {
            0
        };
        top |= w0 | w1 << 64;
        let nbits = msb - lsb_bit + 1;
        if nbits < 128 {
            top &= (1u128 << nbits) - 1;
        }
        let sticky = if lsb_bit == 0 {
            false
        } else {
            let li = (lsb_bit / 64) as usize;
            let off = (lsb_bit % 64) as u32;
            m[..li].iter().any(|&x| x != 0) || (off > 0 && m[li] & ((1u64 << off) - 1) != 0)
        };
        Some((neg, top, lsb_bit + LSB, sticky))
    }

    /// Round the exact sum once into `fmt`. An exactly zero sum gives `-0` when `zero_neg`,
    /// else `+0`.
    pub fn round(&self, fmt: FloatFormat, mode: RoundMode, ftz: bool, zero_neg: bool) -> Fp {
        match self.parts() {
            None => Fp::Zero { neg: zero_neg },
            Some((neg, top, exp, sticky)) => round_parts(neg, top, exp, sticky, fmt, mode, ftz),
        }
    }
}
