//! Shared helpers of the model tests: where the shared model files are.
#![allow(dead_code)]

use mxsim::model::{Llama2cTokenizer, Model};
use std::path::PathBuf;

/// The shared models folder: `$MXSIM_MODELS`, else `../shared/models` beside the repository.
/// Panics (the test FAILS) when the files are missing.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("MXSIM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models"));
    for f in ["stories260K.bin", "tok512.bin", "tinystories_dev.txt"] {
        assert!(
            dir.join(f).is_file(),
            "shared model file {} is missing (set MXSIM_MODELS or provide ../shared/models)",
            dir.join(f).display()
        );
    }
    dir
}

/// stories260K.
pub fn stories() -> Model {
    Model::load(&models_dir().join("stories260K.bin")).expect("load stories260K")
}

/// Its tokenizer.
pub fn tokenizer() -> Llama2cTokenizer {
    Llama2cTokenizer::load(&models_dir().join("tok512.bin"), Some(512)).expect("load tok512")
}

/// The dev text.
pub fn dev_text() -> String {
    std::fs::read_to_string(models_dir().join("tinystories_dev.txt")).expect("dev text")
}

/// The first `n` paragraphs of the dev text, joined by blank lines.
pub fn dev_paragraphs(n: usize) -> String {
    mxsim::model::paragraphs(&dev_text())[..n].join("\n\n")
}

/// The sentence fp32 stories260K produces greedily from BOS (shared/models/README.md).
pub const SENTENCE: &str =
    " Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
