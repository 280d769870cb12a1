//! The checker: compare a device-under-test's output dump with a pack's golden outputs.
//!
//! A dump is either a `$writememh`/`$fwrite`-style hex file (one vector per line, in pack
//! order; each line holds the output fields in layout order, or the whole vector, inputs
//! included; `_` and spaces between digits are ignored; blank lines and `//` comments are
//! skipped; `x`/`z` digits are allowed and count as mismatches), or a CSV file whose header
//! names the output columns (input columns and an `index` column are optional).

use super::layout::{Dir, Field, FieldKind, Layout};
use super::pack::{read_pack, Pack};
use crate::error::{Error, Result};
use crate::format::{decode_parts, Decoded};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Options of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Mismatching vectors printed in full (the rest are only counted by kind).
    pub max_show: usize,
    /// Accept any NaN encoding where a NaN is expected (default: bit-exact).
    pub nan_any: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_show: 10,
            nan_any: false,
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Vectors compared.
    pub total: usize,
    /// Vectors with at least one differing field.
    pub failed_vectors: usize,
    /// Differing fields by kind (`field: what`).
    pub by_kind: BTreeMap<String, usize>,
    /// The printable report.
    pub text: String,
}

impl CheckReport {
    /// Whether every vector matched.
    pub fn passed(&self) -> bool {
        self.failed_vectors == 0
    }
}

fn is_xz(c: char) -> bool {
    matches!(c, 'x' | 'X' | 'z' | 'Z' | '?')
}

/// Parse one hex line holding the fields `which` (indices into `layout`) in order: digits with
/// optional `_`/whitespace separators and an optional trailing `//` comment. Returns a value per
/// field (`None` where a field has `x`/`z` digits) or a message saying what is wrong.
pub fn parse_hex_line(
    line: &str,
    layout: &Layout,
    which: &[usize],
) -> std::result::Result<Vec<Option<u64>>, String> {
    let body = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    let want: usize = which
        .iter()
        .map(|&i| layout.fields[i].hex_digits as usize)
        .sum();
    // digit values (16 marks x/z), separators skipped
    let mut digits: Vec<u8> = Vec::with_capacity(want);
    for ch in body.chars() {
        if ch.is_whitespace() || ch == '_' {
            continue;
        }
        match ch.to_digit(16) {
            Some(d) => digits.push(d as u8),
            None if is_xz(ch) => digits.push(16),
            None => return Err(format!("unexpected character '{ch}'")),
        }
    }
    if digits.len() != want {
        return Err(format!("{} hex digits, expected {want}", digits.len()));
    }
    let mut out = Vec::with_capacity(which.len());
    let mut pos = 0;
    for &i in which {
        let n = layout.fields[i].hex_digits as usize;
        let chunk = &digits[pos..pos + n];
        pos += n;
        if n > 16 {
            return Err(format!(
                "field '{}' wider than 64 bits",
                layout.fields[i].name
            ));
        }
        if chunk.contains(&16) {
            out.push(None);
        } else {
            out.push(Some(chunk.iter().fold(0u64, |v, &d| v << 4 | d as u64)));
        }
    }
    Ok(out)
}

/// A parsed dump: the fields it holds and, per vector, a value for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// Layout indices of the fields present.
    pub fields: Vec<usize>,
    /// Values per vector (`None`: x/z).
    pub rows: Vec<Vec<Option<u64>>>,
    /// Line number of each vector in the dump file (1-based).
    pub lines: Vec<usize>,
}

/// Read a DUT dump (`.csv` by extension, otherwise hex) against `layout`.
pub fn read_dump(path: &Path, layout: &Layout) -> Result<Dump> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::malformed(path, format!("not UTF-8 text: {e}")))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        read_csv_dump(path, &text, layout)
    } else {
        read_hex_dump(path, &text, layout)
    }
}

fn read_hex_dump(path: &Path, text: &str, layout: &Layout) -> Result<Dump> {
    let outs = layout.outputs();
    let all: Vec<usize> = (0..layout.fields.len()).collect();
    let digits_of = |w: &[usize]| -> usize {
        w.iter()
            .map(|&i| layout.fields[i].hex_digits as usize)
            .sum()
    };
    let (n_out, n_all) = (digits_of(&outs), digits_of(&all));
    let mut fields: Option<Vec<usize>> = None;
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let body = line.split("//").next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        if body.starts_with('@') {
            return Err(Error::malformed(
                path,
                format!("line {}: address records (@...) are not supported; write one vector per line in pack order", ln + 1),
            ));
        }
        let which = fields.get_or_insert_with(|| {
            let n = body
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '_')
                .count();
            if n == n_all && n_all != n_out {
                all.clone()
            } else {
                outs.clone()
            }
        });
        let vals = parse_hex_line(body, layout, which).map_err(|m| {
            Error::malformed(
                path,
                format!(
                    "line {}: {m} (a line holds the output fields, {n_out} digits, or the whole vector, {n_all} digits)",
                    ln + 1
                ),
            )
        })?;
        rows.push(vals);
        lines.push(ln + 1);
    }
    Ok(Dump {
        fields: fields.unwrap_or(outs),
        rows,
        lines,
    })
}

fn read_csv_dump(path: &Path, text: &str, layout: &Layout) -> Result<Dump> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = rdr
        .headers()
        .map_err(|e| Error::malformed(path, format!("line 1: bad CSV header: {e}")))?
        .clone();
    let mut cols: Vec<(usize, usize)> = Vec::new(); // (csv column, layout field)
    for (c, name) in header.iter().enumerate() {
        if name.eq_ignore_ascii_case("index") {
            continue;
        }
        let f = layout
            .index_of(name)
            .ok_or_else(|| Error::malformed(path, format!("line 1: unknown column '{name}'")))?;
        if cols.iter().any(|&(_, g)| g == f) {
            return Err(Error::malformed(
                path,
                format!("line 1: column '{name}' twice"),
            ));
        }
        cols.push((c, f));
    }
    for o in layout.outputs() {
        if !cols.iter().any(|&(_, f)| f == o) {
            return Err(Error::malformed(
                path,
                format!("line 1: missing output column '{}'", layout.fields[o].name),
            ));
        }
    }
    cols.sort_by_key(|&(_, f)| f);
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            Error::malformed(path, format!("line {line}: {e}"))
        })?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.iter().all(|s| s.is_empty()) {
            continue;
        }
        let mut vals = Vec::with_capacity(cols.len());
        for &(c, f) in &cols {
            let field = &layout.fields[f];
            let raw = rec.get(c).ok_or_else(|| {
                Error::malformed(
                    path,
                    format!("line {line}: missing value for '{}'", field.name),
                )
            })?;
            let s = raw
                .strip_prefix("0x")
                .or_else(|| raw.strip_prefix("0X"))
                .unwrap_or(raw)
                .replace('_', "");
            if s.is_empty()
                || s.len() > 16
                || s.chars().any(|c| !c.is_ascii_hexdigit() && !is_xz(c))
            {
                return Err(Error::malformed(
                    path,
                    format!(
                        "line {line}: '{raw}' in column '{}' is not a hex value",
                        field.name
                    ),
                ));
            }
            if s.chars().any(is_xz) {
                vals.push(None);
            } else {
                let v = u64::from_str_radix(&s, 16).map_err(|e| {
                    Error::malformed(path, format!("line {line}: column '{}': {e}", field.name))
                })?;
                vals.push(Some(v));
            }
        }
        rows.push(vals);
        lines.push(line);
    }
    Ok(Dump {
        fields: cols.into_iter().map(|(_, f)| f).collect(),
        rows,
        lines,
    })
}

/// Field group name: the name without a trailing element index (`q17` -> `q`).
fn group(name: &str) -> &str {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if t.is_empty() {
        name
    } else {
        t
    }
}

fn is_nan(f: &Field, v: u64) -> bool {
    match f.kind {
        FieldKind::F32 => f32::from_bits(v as u32).is_nan() && v <= u32::MAX as u64,
        FieldKind::Code(fmt) => {
            v < fmt.code_count() as u64 && matches!(decode_parts(fmt, v as u8), Decoded::Nan)
        }
        _ => false,
    }
}

/// Classify how `actual` differs from `expected` in field `f`.
fn kind_of(f: &Field, expected: u64, actual: Option<u64>) -> String {
    let g = group(&f.name);
    let Some(a) = actual else {
        return format!("{g}: x/z");
    };
    if f.dir == Dir::In {
        return format!("{g}: input echo differs");
    }
    if a > f.mask() {
        return format!("{g}: bits beyond the field width");
    }
    match f.kind {
        FieldKind::Flags => {
            let names = ["inexact", "underflow", "overflow", "infinite", "invalid"];
            let d = expected ^ a;
            let mut parts = Vec::new();
            for (i, n) in names.iter().enumerate() {
                if d >> i & 1 == 1 {
                    parts.push(format!(
                        "{n} {}",
                        if a >> i & 1 == 1 { "extra" } else { "missing" }
                    ));
                }
            }
            if parts.is_empty() {
                parts.push("unknown bits".into());
            }
            format!("{g}: {}", parts.join(", "))
        }
        FieldKind::F32 | FieldKind::Code(_) => {
            let (en, an) = (is_nan(f, expected), is_nan(f, a));
            let what = if en && an {
                "other NaN encoding".to_string()
            } else if en {
                "NaN expected".into()
            } else if an {
                "NaN produced".into()
            } else {
                let sign = 1u64 << (f.bits - 1);
                let signed_fmt = match f.kind {
                    FieldKind::Code(fmt) => fmt.sign_mask() != 0,
                    _ => true,
                };
                let (em, am) = if signed_fmt {
                    (expected & !sign, a & !sign)
                } else {
                    (expected, a)
                };
                if signed_fmt && em == am {
                    "sign".into()
                } else if signed_fmt && (expected ^ a) & sign != 0 {
                    "sign and magnitude".into()
                } else if em.abs_diff(am) == 1 {
                    "off by one ulp".into()
                } else {
                    "magnitude".into()
                }
            };
            format!("{g}: {what}")
        }
        FieldKind::Random => format!("{g}: differs"),
    }
}

fn equal(f: &Field, e: u64, a: u64, opts: &CheckOptions) -> bool {
    e == a || (opts.nan_any && f.dir == Dir::Out && is_nan(f, e) && is_nan(f, a))
}

fn bit_list(x: u64) -> String {
    let bits: Vec<String> = (0..64)
        .rev()
        .filter(|i| x >> i & 1 == 1)
        .map(|i| i.to_string())
        .collect();
    if bits.len() > 8 {
        format!("{} bits", bits.len())
    } else {
        format!(
            "bit{} {}",
            if bits.len() == 1 { "" } else { "s" },
            bits.join(",")
        )
    }
}

/// Compare `dump` with the golden vectors of `pack`.
pub fn compare(
    pack: &Pack,
    dump: &Dump,
    dump_path: &Path,
    opts: &CheckOptions,
) -> Result<CheckReport> {
    let layout = pack.layout();
    let total = pack.rows.len();
    if dump.rows.len() != total {
        let last = dump.lines.last().copied().unwrap_or(0);
        return Err(Error::malformed(
            dump_path,
            format!(
                "{} vectors (last at line {last}), the pack has {total}: a dump holds one line per vector, in pack order",
                dump.rows.len()
            ),
        ));
    }
    let mut text = String::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0usize;
    for (v, (golden, got)) in pack.rows.iter().zip(&dump.rows).enumerate() {
        let mut diffs: Vec<(usize, Option<u64>)> = Vec::new();
        for (&fi, &a) in dump.fields.iter().zip(got) {
            let f = &layout.fields[fi];
            let e = golden[fi];
            if !a.is_some_and(|a| equal(f, e, a, opts)) {
                diffs.push((fi, a));
            }
        }
        if diffs.is_empty() {
            continue;
        }
        failed += 1;
        for &(fi, a) in &diffs {
            *by_kind
                .entry(kind_of(&layout.fields[fi], golden[fi], a))
                .or_default() += 1;
        }
        if failed <= opts.max_show {
            let _ = writeln!(
                text,
                "MISMATCH vector {v} (golden {}.hex line {}, dump line {}):",
                pack.stem(),
                v + 1,
                dump.lines[v]
            );
            let inputs: Vec<String> = layout
                .fields
                .iter()
                .zip(golden)
                .filter(|(f, _)| f.dir == Dir::In)
                .map(|(f, &x)| format!("{}={}", f.name, f.describe(x)))
                .collect();
            for chunk in inputs.chunks(4) {
                let _ = writeln!(text, "  in   {}", chunk.join("  "));
            }
            for &(fi, a) in &diffs {
                let f = &layout.fields[fi];
                let e = golden[fi];
                let (got, xor) = match a {
                    Some(a) => (
                        f.describe(a),
                        format!(
                            "differing {} (xor {:0w$x})",
                            bit_list(e ^ a),
                            e ^ a,
                            w = f.hex_digits as usize
                        ),
                    ),
                    None => ("x/z".into(), "unknown bits".into()),
                };
                let _ = writeln!(
                    text,
                    "  {:<5}{}: expected {}, got {}; {}",
                    if f.dir == Dir::Out { "out" } else { "echo" },
                    f.name,
                    f.describe(e),
                    got,
                    xor
                );
            }
        }
    }
    if failed > opts.max_show {
        let _ = writeln!(
            text,
            "... {} more mismatching vectors not shown",
            failed - opts.max_show
        );
    }
    if failed == 0 {
        let _ = writeln!(
            text,
            "PASS: {total} vectors of {} ({}) match bit for bit",
            pack.manifest.op,
            describe_pack(pack)
        );
    } else {
        let _ = writeln!(
            text,
            "FAIL: {failed} of {total} vectors mismatch ({}); differing fields by kind:",
            describe_pack(pack)
        );
        for (k, n) in &by_kind {
            let _ = writeln!(text, "  {n:>8}  {k}");
        }
    }
    Ok(CheckReport {
        total,
        failed_vectors: failed,
        by_kind,
        text,
    })
}

fn describe_pack(pack: &Pack) -> String {
    let m = &pack.manifest;
    let mut parts: Vec<String> = m.formats.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(d) = &m.datapath {
        parts.push(format!("datapath={}", d.preset));
    }
    parts.push(format!("level {}", m.level));
    parts.join(", ")
}

/// Check the dump at `actual` against the pack in `dir`.
pub fn check(dir: &Path, actual: &Path, opts: &CheckOptions) -> Result<CheckReport> {
    let pack = read_pack(dir)?;
    let dump = read_dump(actual, &pack.layout())?;
    compare(&pack, &dump, actual, opts)
}
