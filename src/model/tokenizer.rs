//! Tokenizers: llama2.c's `tokenizer.bin` (SentencePiece-style BPE by scores, encoded
//! exactly as llama2.c's `encode` does) and, with the `hf-tokenizers` cargo feature,
//! Hugging Face `tokenizer.json` through the `tokenizers` crate.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// What the model code needs from a tokenizer.
pub trait Tokenizer: Send + Sync {
    /// Token ids of `text`, with the beginning-of-sequence token first when `bos`.
    fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>>;
    /// The bytes a token stands for (byte-fallback tokens give their byte).
    fn piece(&self, id: u32) -> Vec<u8>;
    /// Text of a token sequence: the concatenated pieces, decoded as UTF-8 (invalid
    /// sequences replaced). Special tokens (BOS/EOS) decode to nothing.
    fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if Some(id) != self.bos_id() && Some(id) != self.eos_id() {
                bytes.extend(self.piece(id));
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Beginning-of-sequence token, if any.
    fn bos_id(&self) -> Option<u32>;
    /// End-of-sequence token, if any.
    fn eos_id(&self) -> Option<u32>;
}

/// llama2.c's tokenizer (`tokenizer.bin`): an int32 maximum token length, then per token an
/// f32 merge score, an int32 byte length and the bytes. Token 1 is BOS, 2 is EOS, tokens
/// 3..=258 are the byte-fallback tokens `<0x00>`..`<0xFF>`.
#[derive(Debug, Clone)]
pub struct Llama2cTokenizer {
    vocab: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
    max_token_length: usize,
}

impl Llama2cTokenizer {
    /// Read `tokenizer.bin`; `vocab_size` tokens when given (the model's vocabulary, as
    /// llama2.c does), otherwise every token until the end of the file.
    pub fn load(path: &Path, vocab_size: Option<usize>) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &bytes, vocab_size)
    }

    /// Parse the bytes of a `tokenizer.bin` (`path` only names it in errors).
    pub fn parse(path: &Path, bytes: &[u8], vocab_size: Option<usize>) -> Result<Self> {
        let bad = |m: String| Error::malformed(path, m);
        let rd = |pos: usize| -> Option<[u8; 4]> {
            bytes.get(pos..pos + 4).map(|s| [s[0], s[1], s[2], s[3]])
        };
        let max_len = rd(0)
            .map(i32::from_le_bytes)
            .ok_or_else(|| bad("file too short for a tokenizer header".into()))?;
        if max_len <= 0 || max_len > 1 << 16 {
            return Err(bad(format!("max_token_length {max_len} is out of range")));
        }
        let mut pos = 4;
        let (mut vocab, mut scores) = (Vec::new(), Vec::new());
        loop {
            if let Some(n) = vocab_size {
                if vocab.len() == n {
                    break;
                }
            } else if pos == bytes.len() {
                break;
            }
            let i = vocab.len();
            let score = rd(pos).map(f32::from_le_bytes).ok_or_else(|| {
                bad(format!(
                    "truncated at token {i} (expected {} tokens)",
                    vocab_size.map_or("more".into(), |n| n.to_string())
                ))
            })?;
            let len = rd(pos + 4)
                .map(i32::from_le_bytes)
                .ok_or_else(|| bad(format!("truncated at token {i}")))?;
            if len < 0 || len > max_len {
                return Err(bad(format!(
                    "token {i} has length {len} (max_token_length {max_len})"
                )));
            }
            let s = bytes
                .get(pos + 8..pos + 8 + len as usize)
                .ok_or_else(|| bad(format!("truncated inside token {i}")))?;
            vocab.push(s.to_vec());
            scores.push(score);
            pos += 8 + len as usize;
        }
        if vocab.len() < 259 {
            return Err(bad(format!(
                "{} tokens: a llama2.c vocabulary needs at least 259 (special + 256 byte tokens)",
                vocab.len()
            )));
        }
        let mut lookup = HashMap::with_capacity(vocab.len());
        for (i, v) in vocab.iter().enumerate() {
            lookup.entry(v.clone()).or_insert(i as u32);
        }
        Ok(Llama2cTokenizer {
            vocab,
            scores,
            lookup,
            max_token_length: max_len as usize,
        })
    }

    /// The merge score of a token.
    pub fn score(&self, id: u32) -> f32 {
        self.scores[id as usize]
    }

    /// The longest token in bytes, as the file header says.
    pub fn max_token_length(&self) -> usize {
        self.max_token_length
    }
}

impl Tokenizer for Llama2cTokenizer {
    /// llama2.c's `encode`: BOS (optional), then a dummy-prefix space token when the text is
    /// not empty, then one token per UTF-8 character (or its bytes + 3 when the character is
    /// not in the vocabulary), then repeated merges of the adjacent pair whose concatenation
    /// is in the vocabulary with the highest score (the first such pair on ties).
    fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let mut tokens = Vec::with_capacity(text.len() + 2);
        if bos {
            tokens.push(1);
        }
        if !text.is_empty() {
            let sp = *self
                .lookup
                .get(&b" "[..])
                .ok_or_else(|| Error::invalid("tokenizer has no ' ' token for the dummy prefix"))?;
            tokens.push(sp);
        }
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            let s = ch.encode_utf8(&mut buf).as_bytes();
            match self.lookup.get(s) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(s.iter().map(|&b| b as u32 + 3)),
            }
        }
        let mut merged = Vec::with_capacity(self.max_token_length * 2);
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            // llama2.c scans every adjacent pair, BOS included (it never merges).
            for i in 0..tokens.len().saturating_sub(1) {
                merged.clear();
                merged.extend_from_slice(&self.vocab[tokens[i] as usize]);
                merged.extend_from_slice(&self.vocab[tokens[i + 1] as usize]);
                if let Some(&id) = self.lookup.get(&merged) {
                    let sc = self.scores[id as usize];
                    if best.is_none_or(|(b, _, _)| sc > b) {
                        best = Some((sc, i, id));
                    }
                }
            }
            match best {
                Some((_, i, id)) => {
                    tokens[i] = id;
                    tokens.remove(i + 1);
                }
                None => break,
            }
        }
        Ok(tokens)
    }

    /// The token's bytes; `<0xXX>` pieces give the byte XX (as llama2.c's `decode`).
    fn piece(&self, id: u32) -> Vec<u8> {
        let Some(p) = self.vocab.get(id as usize) else {
            return Vec::new();
        };
        if p.len() == 6 && p.starts_with(b"<0x") && p[5] == b'>' {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&p[3..5]).unwrap_or("zz"), 16) {
                return vec![b];
            }
        }
        p.clone()
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn bos_id(&self) -> Option<u32> {
        Some(1)
    }

    fn eos_id(&self) -> Option<u32> {
        Some(2)
    }
}

/// A Hugging Face `tokenizer.json`, through the `tokenizers` crate.
#[cfg(feature = "hf-tokenizers")]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
}

#[cfg(feature = "hf-tokenizers")]
impl HfTokenizer {
    /// Load `tokenizer.json`; `bos`/`eos` are the model's special token ids (from
    /// `config.json`).
    pub fn load(path: &Path, bos: Option<u32>, eos: Option<u32>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::malformed(path, format!("cannot read tokenizer.json: {e}")))?;
        Ok(HfTokenizer { inner, bos, eos })
    }
}

#[cfg(feature = "hf-tokenizers")]
impl Tokenizer for HfTokenizer {
    /// The tokenizer's own encoding without its post-processor's special tokens; BOS is
    /// prepended here when asked.
    fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::invalid(format!("tokenizer: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    fn piece(&self, id: u32) -> Vec<u8> {
        self.inner
            .decode(&[id], false)
            .map(|s| s.into_bytes())
            .unwrap_or_default()
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_default()
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    fn eos_id(&self) -> Option<u32> {
        self.eos
    }
}

/// Load a tokenizer from a path: a `tokenizer.json` (needs the `hf-tokenizers` feature) or
/// a llama2.c `tokenizer.bin`; `vocab_size` is the model's.
pub fn load_tokenizer(
    path: &Path,
    vocab_size: usize,
    bos: u32,
    eos: u32,
) -> Result<Box<dyn Tokenizer>> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    if is_json {
        #[cfg(feature = "hf-tokenizers")]
        {
            return Ok(Box::new(HfTokenizer::load(path, Some(bos), Some(eos))?));
        }
        #[cfg(not(feature = "hf-tokenizers"))]
        {
            let _ = (bos, eos);
            return Err(Error::invalid(format!(
                "{}: reading tokenizer.json needs mxsim built with `--features hf-tokenizers`",
                path.display()
            )));
        }
    }
    let _ = (bos, eos);
    Ok(Box::new(Llama2cTokenizer::load(path, Some(vocab_size))?))
}
