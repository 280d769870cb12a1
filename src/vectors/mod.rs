//! Golden test vectors for RTL verification, in the conventions hardware teams use (Berkeley
//! TestFloat's level 1/2 case generation, `$readmemh` lines with fields joined by `_` as in
//! openhwgroup/cvw, a manifest with a SHA-256 per file; REFERENCE section 5).
//!
//! - [`generate`] builds a [`Pack`] for one operation (`cast`, `decode`, `quantize`, `dot`,
//!   `gemm-tile`) from a [`GenSpec`]; expected outputs come from the golden models in
//!   [`crate::format`], [`crate::mx`] and [`crate::datapath`].
//! - [`Pack::write`] writes `<op>.csv`, `<op>.hex` and `manifest.json` atomically; the same
//!   spec always gives byte-identical files.
//! - [`check()`] compares a device-under-test's output dump with a pack's golden outputs.
//!
//! File formats and case patterns are documented for users in `docs/vectors.md`.

pub mod check;
pub mod dot;
pub mod gen;
pub mod layout;
pub mod pack;
pub mod patterns;

pub use check::{check, CheckOptions, CheckReport};
pub use gen::{generate, GenSpec, Op};
pub use layout::{Dir, Field, FieldKind, Layout};
pub use pack::{read_pack, DatapathInfo, Manifest, Pack, GENERATOR_VERSION};
pub use patterns::Level;
