//! llama2.c checkpoints: the "legacy" format (a 28-byte header of seven int32 values, then
//! float32 weights) and the version-1 "ak42" export (a 256-byte header with magic
//! `0x616b3432`, version 1, the seven values and a shared-classifier flag), both as written by
//! karpathy/llama2.c `export.py`.
//!
//! Every size is computed with checked arithmetic and compared with the file length before
//! any weight is read, so a truncated or inconsistent file gives an error, never a panic or a
//! huge allocation.

use super::config::ModelConfig;
use super::weights::{LayerWeights, Model, Weights};
use crate::error::{Error, Result};
use std::path::Path;

/// Magic number of version-1 llama2.c exports ("ak42" as a little-endian uint32).
pub const AK42_MAGIC: u32 = 0x616b_3432;

/// Read a llama2.c checkpoint (legacy or version 1), choosing by the magic number.
pub fn load_llama2c(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_llama2c(path, &bytes)
}

/// Parse the bytes of a llama2.c checkpoint (`path` only names it in errors).
pub fn parse_llama2c(path: &Path, bytes: &[u8]) -> Result<Model> {
    let bad = |m: String| Error::malformed(path, m);
    if bytes.len() < 28 {
        return Err(bad(format!(
            "file of {} bytes is too short for a llama2.c header (28 bytes)",
            bytes.len()
        )));
    }
    let word = |i: usize| {
        i32::from_le_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    if word(0) as u32 == AK42_MAGIC {
        let version = word(1);
        if version != 1 {
            return Err(bad(format!(
                "llama2.c export version {version} is not supported (only the float32 version 1 and the legacy format)"
            )));
        }
        if bytes.len() < 256 {
            return Err(bad("version-1 header is truncated (needs 256 bytes)".into()));
        }
        let p: Vec<i32> = (2..9).map(word).collect();
        let shared = bytes[36];
        if shared > 1 {
            return Err(bad(format!(
                "shared-classifier flag is {shared}, expected 0 or 1"
            )));
        }
        let cfg = config_from_header(path, &p, shared == 1)?;
        let mut r = Reader::new(path, bytes, 256, &cfg, false)?;
        let n = cfg.n_layers;
        let (d, h, q, kv, v) = (
            cfg.dim,
            cfg.hidden_dim,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.vocab_size,
        );
        let attn_norm = r.many(n, d);
        let ffn_norm = r.many(n, d);
        let final_norm = r.take(d);
        let tok_emb = r.take(v * d);
        let wq = r.many(n, q * d);
        let wk = r.many(n, kv * d);
        let wv = r.many(n, kv * d);
        let wo = r.many(n, d * q);
        let w1 = r.many(n, h * d);
        let w2 = r.many(n, d * h);
        let w3 = r.many(n, h * d);
        let lm_head = (!cfg.tied_embeddings).then(|| r.take(v * d));
        let weights = assemble(
            tok_emb, attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, final_norm, lm_head,
        );
        return Model::new(cfg, weights);
    }
    let p: Vec<i32> = (0..7).map(word).collect();
    // A negative vocabulary size marks an unshared classifier in the legacy format.
    let shared = p[5] > 0;
    let mut p2 = p.clone();
    p2[5] = p[5].checked_abs().unwrap_or(0);
    let cfg = config_from_header(path, &p2, shared)?;
    let mut r = Reader::new(path, bytes, 28, &cfg, true)?;
    let n = cfg.n_layers;
    let (d, h, q, kv, v) = (
        cfg.dim,
        cfg.hidden_dim,
        cfg.q_dim(),
        cfg.kv_dim(),
        cfg.vocab_size,
    );
    let tok_emb = r.take(v * d);
    let attn_norm = r.many(n, d);
    let wq = r.many(n, q * d);
    let wk = r.many(n, kv * d);
    let wv = r.many(n, kv * d);
    let wo = r.many(n, d * q);
    let ffn_norm = r.many(n, d);
    let w1 = r.many(n, h * d);
    let w2 = r.many(n, d * h);
    let w3 = r.many(n, h * d);
    let final_norm = r.take(d);
    // RoPE tables (real and imaginary, seq_len * head_dim / 2 each): recomputed, skipped here.
    r.skip(cfg.seq_len * cfg.head_dim);
    let lm_head = (!cfg.tied_embeddings).then(|| r.take(v * d));
    let weights = assemble(
        tok_emb, attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, final_norm, lm_head,
    );
    Model::new(cfg, weights)
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    tok_emb: Vec<f32>,
    attn_norm: Vec<Vec<f32>>,
    wq: Vec<Vec<f32>>,
    wk: Vec<Vec<f32>>,
    wv: Vec<Vec<f32>>,
    wo: Vec<Vec<f32>>,
    ffn_norm: Vec<Vec<f32>>,
    w1: Vec<Vec<f32>>,
    w2: Vec<Vec<f32>>,
    w3: Vec<Vec<f32>>,
    final_norm: Vec<f32>,
    lm_head: Option<Vec<f32>>,
) -> Weights<f32> {
    let layers = attn_norm
        .into_iter()
        .zip(wq)
        .zip(wk)
        .zip(wv)
        .zip(wo)
        .zip(ffn_norm)
        .zip(w1)
        .zip(w2)
        .zip(w3)
        .map(
            |((((((((an, wq), wk), wv), wo), fnn), w1), w2), w3)| LayerWeights {
                attn_norm: an,
                wq,
                wk,
                wv,
                wo,
                bq: None,
                bk: None,
                bv: None,
                ffn_norm: fnn,
                w1,
                w2,
                w3,
                online: Default::default(),
            },
        )
        .collect();
    Weights {
        tok_emb,
        layers,
        final_norm,
        lm_head,
    }
}

fn config_from_header(path: &Path, p: &[i32], shared: bool) -> Result<ModelConfig> {
    let names = [
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ];
    for (n, &v) in names.iter().zip(p) {
        if v <= 0 || v > (1 << 24) {
            return Err(Error::malformed(
                path,
                format!("header field {n} = {v} is out of range (not a llama2.c checkpoint?)"),
            ));
        }
    }
    let u = |i: usize| p[i] as usize;
    if u(0) % u(3) != 0 {
        return Err(Error::malformed(
            path,
            format!("dim {} is not a multiple of n_heads {}", u(0), u(3)),
        ));
    }
    let cfg = ModelConfig {
        dim: u(0),
        hidden_dim: u(1),
        n_layers: u(2),
        n_heads: u(3),
        n_kv_heads: u(4),
        head_dim: u(0) / u(3),
        vocab_size: u(5),
        seq_len: u(6),
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        attn_bias: false,
        tied_embeddings: shared,
        bos_id: 1,
        eos_id: 2,
    };
    cfg.validate()
        .map_err(|e| Error::malformed(path, e.to_string()))?;
    Ok(cfg)
}

/// Sequential reader over float32 values whose total size was checked up front.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(
        path: &Path,
        bytes: &'a [u8],
        start: usize,
        cfg: &ModelConfig,
        legacy: bool,
    ) -> Result<Self> {
        let rope = if legacy {
            cfg.seq_len.checked_mul(cfg.head_dim)
        } else {
            Some(0)
        };
        let floats = cfg.n_params().zip(rope).and_then(|(a, b)| a.checked_add(b));
        let want = floats
            .and_then(|f| f.checked_mul(4))
            .and_then(|b| b.checked_add(start))
            .ok_or_else(|| Error::malformed(path, "header sizes overflow"))?;
        if bytes.len() != want {
            let what = if bytes.len() < want {
                "truncated"
            } else {
                "longer than its header describes"
            };
            return Err(Error::malformed(
                path,
                format!(
                    "file is {what}: the header (dim {}, hidden {}, layers {}, heads {}/{}, vocab {}, seq_len {}{}) needs {want} bytes, the file has {}",
                    cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size, cfg.seq_len,
                    if cfg.tied_embeddings { ", shared classifier" } else { ", separate classifier" },
                    bytes.len()
                ),
            ));
        }
        Ok(Reader { bytes, pos: start })
    }

    fn take(&mut self, n: usize) -> Vec<f32> {
        let s = &self.bytes[self.pos..self.pos + 4 * n];
        self.pos += 4 * n;
        s.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn many(&mut self, count: usize, n: usize) -> Vec<Vec<f32>> {
        (0..count).map(|_| self.take(n)).collect()
    }

    fn skip(&mut self, n: usize) {
        self.pos += 4 * n;
    }
}

/// Serialize a model (without attention biases) as a version-1 "ak42" llama2.c export, as
/// `export.py --version 1` writes it. Written atomically.
pub fn save_llama2c_v1(model: &Model, path: &Path) -> Result<()> {
    let c = &model.config;
    if c.attn_bias || c.head_dim * c.n_heads != c.dim {
        return Err(Error::invalid(
            "the llama2.c format cannot hold attention biases or a head_dim other than dim / n_heads",
        ));
    }
    let w = &model.weights;
    let mut out = Vec::new();
    out.extend_from_slice(&AK42_MAGIC.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    for v in [
        c.dim,
        c.hidden_dim,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.vocab_size,
        c.seq_len,
    ] {
        out.extend_from_slice(&(v as i32).to_le_bytes());
    }
    out.push(w.lm_head.is_none() as u8);
    out.resize(256, 0);
    let mut put = |v: &[f32]| {
        v.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
    };
    w.layers.iter().for_each(|l| put(&l.attn_norm));
    w.layers.iter().for_each(|l| put(&l.ffn_norm));
    put(&w.final_norm);
    put(&w.tok_emb);
    w.layers.iter().for_each(|l| put(&l.wq));
    w.layers.iter().for_each(|l| put(&l.wk));
    w.layers.iter().for_each(|l| put(&l.wv));
    w.layers.iter().for_each(|l| put(&l.wo));
    w.layers.iter().for_each(|l| put(&l.w1));
    w.layers.iter().for_each(|l| put(&l.w2));
    w.layers.iter().for_each(|l| put(&l.w3));
    if let Some(h) = &w.lm_head {
        put(h);
    }
    crate::io::write_atomic(path, &out)
}
