//! A vector pack on disk: `<op>.csv`, `<op>.hex` and `manifest.json`, written atomically and
//! read back with every file's SHA-256 verified against the manifest.

use super::layout::{Field, Layout};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the vector file formats and case generator. It changes whenever the same
/// arguments would produce different files, so a manifest names exactly how its vectors were
/// made.
pub const GENERATOR_VERSION: &str = "mxsim-vectors 1";

/// The datapath a pack's expected outputs were computed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatapathInfo {
    /// Preset name, or the configuration file's path as given.
    pub preset: String,
    /// SHA-256 of the full configuration serialized as compact JSON (field order fixed by the
    /// struct), so two packs agree on the datapath exactly when the hashes agree.
    pub sha256: String,
    /// Elements per instruction (K) the vectors use.
    pub k: usize,
}

/// `manifest.json`: everything needed to reproduce and interpret a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`GENERATOR_VERSION`] of the generator that wrote the pack.
    pub generator: String,
    /// Operation: `cast`, `decode`, `quantize`, `dot` or `gemm-tile`.
    pub op: String,
    /// Formats by role (`format`; or `scheme`, `element`, `scale`; or `a`, `b`, ...).
    pub formats: BTreeMap<String, String>,
    /// Scale rule (quantize), else null.
    pub scale_rule: Option<String>,
    /// Elements per block (quantize, dot, gemm-tile), else null.
    pub block_size: Option<usize>,
    /// Rounding mode of the conversion (cast, quantize), or of the datapath's output.
    pub rounding: String,
    /// Overflow policy (cast), else null.
    pub overflow: Option<String>,
    /// Datapath (dot, gemm-tile), else null.
    pub datapath: Option<DatapathInfo>,
    /// Further options that change the expected outputs.
    pub options: BTreeMap<String, String>,
    /// Seed of the random cases.
    pub seed: u64,
    /// Level: `1`, `2` or `exhaustive`.
    pub level: String,
    /// Number of random cases requested.
    pub random_count: usize,
    /// Number of vectors (lines) in each file.
    pub count: usize,
    /// Width of one `.hex` line read as a single `$readmemh` word.
    pub line_bits: u32,
    /// The fields of a vector, in line order.
    pub fields: Vec<Field>,
    /// SHA-256 of every other file of the pack, by file name.
    pub files: BTreeMap<String, String>,
}

/// A generated pack in memory: its manifest (without file hashes yet) and its vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    /// The manifest; `files` and `count` are filled in by [`Pack::render`].
    pub manifest: Manifest,
    /// One entry per vector: a value per field, in layout order.
    pub rows: Vec<Vec<u64>>,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Pack {
    /// The field layout.
    pub fn layout(&self) -> Layout {
        Layout {
            fields: self.manifest.fields.clone(),
        }
    }

    /// Base name of the data files (`cast`, `quantize`, `gemm-tile`, ...).
    pub fn stem(&self) -> &str {
        &self.manifest.op
    }

    /// Render every file: `(name, bytes)` for the CSV, the hex file and the manifest (last).
    pub fn render(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let layout = self.layout();
        let mut csv = String::with_capacity(self.rows.len() * layout.line_bits() as usize / 3);
        csv.push_str(&layout.csv_header());
        csv.push('\n');
        let mut hex = String::with_capacity(csv.capacity());
        for row in &self.rows {
            csv.push_str(&layout.hex_fields(row).join(","));
            csv.push('\n');
            hex.push_str(&layout.hex_line(row));
            hex.push('\n');
        }
        let csv_name = format!("{}.csv", self.stem());
        let hex_name = format!("{}.hex", self.stem());
        let mut m = self.manifest.clone();
        m.count = self.rows.len();
        m.line_bits = layout.line_bits();
        m.files = BTreeMap::new();
        m.files.insert(csv_name.clone(), sha256_hex(csv.as_bytes()));
        m.files.insert(hex_name.clone(), sha256_hex(hex.as_bytes()));
        let mut json = serde_json::to_string_pretty(&m)
            .map_err(|e| Error::invalid(format!("cannot serialize manifest: {e}")))?;
        json.push('\n');
        Ok(vec![
            (csv_name, csv.into_bytes()),
            (hex_name, hex.into_bytes()),
            ("manifest.json".into(), json.into_bytes()),
        ])
    }

    /// Write the pack into `dir` (created if missing). Every file is written atomically and
    /// the manifest last, so a reader never sees a manifest whose files are incomplete.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let files = self.render()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for (name, bytes) in files {
            write_atomic(&dir.join(name), &bytes)?;
        }
        Ok(())
    }
}

/// Read a pack's manifest and golden vectors from `dir`, verifying the SHA-256 of every file
/// the manifest lists and the shape of every line of the `.hex` file.
pub fn read_pack(dir: &Path) -> Result<Pack> {
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| Error::malformed(&mpath, format!("not a vector manifest: {e}")))?;
    for (name, want) in &manifest.files {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(Error::malformed(&mpath, format!("bad file name '{name}'")));
        }
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let got = sha256_hex(&bytes);
        if &got != want {
            return Err(Error::malformed(
                &p,
                format!("SHA-256 {got} differs from the manifest's {want}: the pack was modified"),
            ));
        }
    }
    let layout = Layout {
        fields: manifest.fields.clone(),
    };
    let hex_name = format!("{}.hex", manifest.op);
    let hpath = dir.join(&hex_name);
    if !manifest.files.contains_key(&hex_name) {
        return Err(Error::malformed(&mpath, format!("no entry for {hex_name}")));
    }
    let text = std::fs::read_to_string(&hpath).map_err(|e| Error::io(&hpath, e))?;
    let mut rows = Vec::with_capacity(manifest.count);
    let all = layout_all(&layout);
    for (i, line) in text.lines().enumerate() {
        let parsed = super::check::parse_hex_line(line, &layout, &all)
            .map_err(|msg| Error::malformed(&hpath, format!("line {}: {msg}", i + 1)))?;
        let row: Option<Vec<u64>> = parsed.into_iter().collect();
        rows.push(row.ok_or_else(|| {
            Error::malformed(
                &hpath,
                format!("line {}: x/z digits in a golden file", i + 1),
            )
        })?);
    }
    if rows.len() != manifest.count {
        return Err(Error::malformed(
            &hpath,
            format!("{} vectors, manifest says {}", rows.len(), manifest.count),
        ));
    }
    Ok(Pack { manifest, rows })
}

fn layout_all(l: &Layout) -> Vec<usize> {
    (0..l.fields.len()).collect()
}
