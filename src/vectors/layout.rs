//! The field layout of a vector: named fixed-width fields, inputs then outputs, and how one
//! vector is written as a `$readmemh` line and as a CSV row.

use crate::format::{decode_f64, Format};
use serde::{Deserialize, Serialize};

/// Whether a field is driven into the device under test or produced by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Stimulus: the testbench drives it.
    In,
    /// Golden response: the device must produce exactly this.
    Out,
}

/// What the bits of a field mean (used to print decoded values and classify mismatches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "format")]
pub enum FieldKind {
    /// A code of an element or scale format (right-aligned in the field).
    Code(Format),
    /// An IEEE 754 binary32 value (its bit pattern).
    F32,
    /// TestFloat-order exception flags: bit 0 inexact, 1 underflow, 2 overflow, 3 infinite
    /// (Inf input), 4 invalid (NaN input or unrepresentable value).
    Flags,
    /// Random bits consumed by stochastic rounding (round up in magnitude when the bits,
    /// as an unsigned integer, are below the top 32 bits of the discarded fraction).
    Random,
}

/// One field of a vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Column name (a valid Verilog identifier: letters, digits, `_`).
    pub name: String,
    /// Stimulus or response.
    pub dir: Dir,
    /// Meaningful bits (the value is right-aligned; higher bits are zero).
    pub bits: u32,
    /// Hex digits the field takes in a line: `ceil(bits / 4)`.
    pub hex_digits: u32,
    /// Most significant bit of the field in the line read as one `$readmemh` word
    /// (the first field is leftmost, i.e. most significant).
    pub msb: u32,
    /// Least significant bit of the field in that word.
    pub lsb: u32,
    /// Meaning of the bits.
    pub kind: FieldKind,
}

/// The ordered fields of a vector: every input field before every output field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Fields in line order (leftmost first).
    pub fields: Vec<Field>,
}

/// Builds a [`Layout`] field by field, computing positions at the end.
#[derive(Debug, Default)]
pub struct LayoutBuilder {
    fields: Vec<(String, Dir, u32, FieldKind)>,
}

impl LayoutBuilder {
    /// Add one field.
    pub fn field(mut self, name: impl Into<String>, dir: Dir, bits: u32, kind: FieldKind) -> Self {
        self.fields.push((name.into(), dir, bits, kind));
        self
    }

    /// Add `n` fields `prefix0 .. prefix{n-1}`.
    pub fn array(mut self, prefix: &str, n: usize, dir: Dir, bits: u32, kind: FieldKind) -> Self {
        for i in 0..n {
            self.fields.push((format!("{prefix}{i}"), dir, bits, kind));
        }
        self
    }

    /// A field holding a code of `fmt`.
    pub fn code(self, name: impl Into<String>, dir: Dir, fmt: Format) -> Self {
        self.field(name, dir, fmt.bits(), FieldKind::Code(fmt))
    }

    /// Finish: inputs are placed before outputs (stable within each group).
    pub fn build(self) -> Layout {
        let mut ordered: Vec<_> = self.fields.iter().filter(|f| f.1 == Dir::In).collect();
        ordered.extend(self.fields.iter().filter(|f| f.1 == Dir::Out));
        let total: u32 = ordered.iter().map(|f| f.2.div_ceil(4) * 4).sum();
        let mut pos = total;
        let fields = ordered
            .into_iter()
            .map(|(name, dir, bits, kind)| {
                let digits = bits.div_ceil(4);
                let msb = pos - 1;
                pos -= digits * 4;
                Field {
                    name: name.clone(),
                    dir: *dir,
                    bits: *bits,
                    hex_digits: digits,
                    msb,
                    lsb: pos,
                    kind: *kind,
                }
            })
            .collect();
        Layout { fields }
    }
}

impl Layout {
    /// Width in bits of a whole line read as one `$readmemh` word.
    pub fn line_bits(&self) -> u32 {
        self.fields.iter().map(|f| f.hex_digits * 4).sum()
    }

    /// Indices of the output fields.
    pub fn outputs(&self) -> Vec<usize> {
        (0..self.fields.len())
            .filter(|&i| self.fields[i].dir == Dir::Out)
            .collect()
    }

    /// Index of the field called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Format field values as hex, zero-padded to each field's width.
    pub fn hex_fields(&self, values: &[u64]) -> Vec<String> {
        self.fields
            .iter()
            .zip(values)
            .map(|(f, v)| format!("{:0w$x}", v, w = f.hex_digits as usize))
            .collect()
    }

    /// One `$readmemh` line (fields joined with `_`, no newline).
    pub fn hex_line(&self, values: &[u64]) -> String {
        self.hex_fields(values).join("_")
    }

    /// The CSV header row (no newline).
    pub fn csv_header(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Field {
    /// Mask of the meaningful bits.
    pub fn mask(&self) -> u64 {
        if self.bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        }
    }

    /// A human-readable rendering of a value of this field (hex and decoded meaning).
    pub fn describe(&self, v: u64) -> String {
        let hex = format!("{:0w$x}", v, w = self.hex_digits as usize);
        match self.kind {
            FieldKind::Code(fmt) => {
                if v > fmt.code_count() as u64 - 1 {
                    format!("{hex} (not a {fmt} code)")
                } else {
                    format!("{hex} ({fmt} {})", fmt_value(decode_f64(fmt, v as u8)))
                }
            }
            FieldKind::F32 => format!("{hex} ({})", fmt_value(f32::from_bits(v as u32) as f64)),
            FieldKind::Flags => format!("{hex} ({})", flag_names(v)),
            FieldKind::Random => hex,
        }
    }
}

/// Names of the set flags of a TestFloat-order flags byte.
pub fn flag_names(v: u64) -> String {
    const NAMES: [&str; 5] = ["inexact", "underflow", "overflow", "infinite", "invalid"];
    let mut out: Vec<String> = NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| v >> i & 1 == 1)
        .map(|(_, n)| n.to_string())
        .collect();
    if v >> 5 != 0 {
        out.push(format!("unknown bits {:#x}", v >> 5 << 5));
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join("|")
    }
}

/// A value printed exactly enough to tell neighbours apart (Rust's shortest round-trip form).
pub fn fmt_value(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x < 0.0 { "-Inf" } else { "Inf" }.into()
    } else if x == 0.0 {
        if x.is_sign_negative() { "-0" } else { "0" }.into()
    } else if x.abs() >= 1e6 || x.abs() < 1e-4 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_line_order() {
        let l = LayoutBuilder::default()
            .field("y", Dir::Out, 4, FieldKind::Code(Format::E2M1))
            .field("x", Dir::In, 32, FieldKind::F32)
            .field("f", Dir::Out, 5, FieldKind::Flags)
            .build();
        // inputs first: x (8 digits), then y (1 digit), f (2 digits) -> 44 bits
        assert_eq!(l.line_bits(), 44);
        let names: Vec<_> = l.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["x", "y", "f"]);
        assert_eq!((l.fields[0].msb, l.fields[0].lsb), (43, 12));
        assert_eq!((l.fields[1].msb, l.fields[1].lsb), (11, 8));
        assert_eq!((l.fields[2].msb, l.fields[2].lsb), (7, 0));
        assert_eq!(l.hex_line(&[0x3f800000, 0x2, 0x11]), "3f800000_2_11");
        assert_eq!(l.csv_header(), "x,y,f");
    }

    #[test]
    fn flag_names_list_set_bits() {
        assert_eq!(flag_names(0), "none");
        assert_eq!(flag_names(0b10101), "inexact|overflow|invalid");
        assert_eq!(flag_names(0x40), "unknown bits 0x40");
    }
}
