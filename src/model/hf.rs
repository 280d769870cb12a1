//! Hugging Face Llama-family model folders: `config.json` plus one `model.safetensors` or
//! shards listed in `model.safetensors.index.json`, with float32, float16 or bfloat16
//! tensors. Llama, Mistral and Qwen2 (`model_type` `llama`, `mistral`, `qwen2`): attention
//! biases (Qwen2, or Llama with `attention_bias`), tied or untied embeddings, `rope_theta`,
//! grouped-query attention, an explicit `head_dim`.
//!
//! Hugging Face Llama applies RoPE in the "rotate-half" layout (dimension `i` of a head is
//! paired with `i + head_dim/2`), and its conversion script permutes the rows of `q_proj` and
//! `k_proj` of Meta's interleaved-pair checkpoints accordingly
//! (`w.view(n_heads, head_dim/2, 2, dim).transpose(1, 2)`). This loader applies the inverse
//! permutation to `q_proj`, `k_proj` (and their biases), so that every model runs in the
//! interleaved layout of llama2.c: Hugging Face row `h*hd + p*hd/2 + i` becomes row
//! `h*hd + 2i + p`. Because the same relabelling is applied to queries and keys, attention
//! scores are unchanged, which makes this exact for natively trained rotate-half models
//! (Mistral, Qwen2) as well.

use super::config::ModelConfig;
use super::weights::{LayerWeights, Model, Weights};
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Parse a Hugging Face `config.json` of a Llama, Mistral or Qwen2 model.
pub fn parse_hf_config(path: &Path, text: &str) -> Result<ModelConfig> {
    let bad = |m: String| Error::malformed(path, m);
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    let model_type = obj
        .get("model_type")
        .and_then(|x| x.as_str())
        .unwrap_or("llama");
    if !matches!(model_type, "llama" | "mistral" | "qwen2") {
        return Err(bad(format!(
            "model_type '{model_type}' is not supported (llama, mistral or qwen2)"
        )));
    }
    if let Some(act) = obj.get("hidden_act").and_then(|x| x.as_str()) {
        if act != "silu" {
            return Err(bad(format!("hidden_act '{act}' is not supported (silu)")));
        }
    }
    if let Some(rs) = obj.get("rope_scaling") {
        if !rs.is_null() {
            return Err(bad(format!("rope_scaling {rs} is not supported")));
        }
    }
    let uint = |key: &str| -> Result<usize> {
        let x = obj
            .get(key)
            .ok_or_else(|| bad(format!("missing key '{key}'")))?;
        x.as_u64()
            .filter(|&n| n > 0 && n <= (1 << 24))
            .map(|n| n as usize)
            .ok_or_else(|| bad(format!("'{key}' must be a positive integer, got {x}")))
    };
    let opt_uint = |key: &str| -> Result<Option<usize>> {
        match obj.get(key) {
            None => Ok(None),
            Some(x) if x.is_null() => Ok(None),
            Some(_) => uint(key).map(Some),
        }
    };
    let float = |key: &str, default: f64| -> Result<f64> {
        match obj.get(key) {
            None => Ok(default),
            Some(x) if x.is_null() => Ok(default),
            Some(x) => x
                .as_f64()
                .ok_or_else(|| bad(format!("'{key}' must be a number, got {x}"))),
        }
    };
    let boolean = |key: &str, default: bool| -> Result<bool> {
        match obj.get(key) {
            None => Ok(default),
            Some(x) if x.is_null() => Ok(default),
            Some(x) => x
                .as_bool()
                .ok_or_else(|| bad(format!("'{key}' must be true or false, got {x}"))),
        }
    };
    let token_id = |key: &str, default: u32| -> Result<u32> {
        match obj.get(key) {
            None => Ok(default),
            Some(x) if x.is_null() => Ok(default),
            Some(x) => {
                let first = if let Some(a) = x.as_array() {
                    a.first()
                } else {
                    Some(x)
                };
                first
                    .and_then(|f| f.as_u64())
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(format!("'{key}' must be a token id, got {x}")))
            }
        }
    };
    let dim = uint("hidden_size")?;
    let n_heads = uint("num_attention_heads")?;
    let head_dim = match opt_uint("head_dim")? {
        Some(h) => h,
        None => {
            if dim % n_heads != 0 {
                return Err(bad(format!(
                    "hidden_size {dim} is not a multiple of num_attention_heads {n_heads}"
                )));
            }
            dim / n_heads
        }
    };
    let mut seq_len = opt_uint("max_position_embeddings")?.unwrap_or(2048);
    if model_type == "mistral" {
        if let Some(w) = opt_uint("sliding_window")? {
            // Positions past the window would need the sliding mask, which is not modelled.
            seq_len = seq_len.min(w);
        }
    }
    let cfg = ModelConfig {
        dim,
        hidden_dim: uint("intermediate_size")?,
        n_layers: uint("num_hidden_layers")?,
        n_heads,
        n_kv_heads: opt_uint("num_key_value_heads")?.unwrap_or(n_heads),
        head_dim,
        vocab_size: uint("vocab_size")?,
        seq_len,
        rope_theta: float("rope_theta", 10000.0)?,
        norm_eps: float("rms_norm_eps", 1e-6)?,
        attn_bias: model_type == "qwen2" || boolean("attention_bias", false)?,
        tied_embeddings: boolean("tie_word_embeddings", false)?,
        bos_id: token_id("bos_token_id", 1)?,
        eos_id: token_id("eos_token_id", 2)?,
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// The safetensors files of a model folder: those named by `model.safetensors.index.json`
/// when it exists, otherwise every `*.safetensors` file (sorted by name).
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::malformed(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::malformed(&index, "missing object 'weight_map'"))?;
        let mut files = BTreeSet::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| {
                Error::malformed(
                    &index,
                    format!("weight_map entry '{name}' is not a file name"),
                )
            })?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(Error::malformed(
                    &index,
                    format!("shard name '{f}' must be a plain file name in the folder"),
                ));
            }
            files.insert(dir.join(f));
        }
        return Ok(files.into_iter().collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::malformed(
            dir,
            "no *.safetensors file in the model folder (PyTorch .bin checkpoints are not read: convert them to safetensors)",
        ));
    }
    Ok(files)
}

/// Convert one tensor's raw little-endian bytes to f32.
fn to_f32(path: &Path, name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::malformed(
                path,
                format!("tensor '{name}' has dtype {other:?}; only F32, F16 and BF16 are read"),
            ))
        }
    })
}

/// Load a Hugging Face Llama-family model folder.
pub fn load_hf(dir: &Path) -> Result<Model> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg = parse_hf_config(&cfg_path, &text)?;
    let (d, h, q, kv, v) = (
        cfg.dim,
        cfg.hidden_dim,
        cfg.q_dim(),
        cfg.kv_dim(),
        cfg.vocab_size,
    );
    // Every tensor the model needs, with its expected shape.
    let mut want: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    want.insert("model.embed_tokens.weight".into(), vec![v, d]);
    want.insert("model.norm.weight".into(), vec![d]);
    for i in 0..cfg.n_layers {
        let p = format!("model.layers.{i}");
        want.insert(format!("{p}.input_layernorm.weight"), vec![d]);
        want.insert(format!("{p}.post_attention_layernorm.weight"), vec![d]);
        want.insert(format!("{p}.self_attn.q_proj.weight"), vec![q, d]);
        want.insert(format!("{p}.self_attn.k_proj.weight"), vec![kv, d]);
        want.insert(format!("{p}.self_attn.v_proj.weight"), vec![kv, d]);
        want.insert(format!("{p}.self_attn.o_proj.weight"), vec![d, q]);
        want.insert(format!("{p}.mlp.gate_proj.weight"), vec![h, d]);
        want.insert(format!("{p}.mlp.up_proj.weight"), vec![h, d]);
        want.insert(format!("{p}.mlp.down_proj.weight"), vec![d, h]);
        if cfg.attn_bias {
            want.insert(format!("{p}.self_attn.q_proj.bias"), vec![q]);
            want.insert(format!("{p}.self_attn.k_proj.bias"), vec![kv]);
            want.insert(format!("{p}.self_attn.v_proj.bias"), vec![kv]);
        }
    }
    let lm_name = "lm_head.weight";
    let mut got: HashMap<String, Vec<f32>> = HashMap::new();
    for file in shard_files(dir)? {
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::malformed(&file, format!("not a valid safetensors file: {e:?}")))?;
        for (name, view) in st.tensors() {
            let expected = if name == lm_name && !cfg.tied_embeddings {
                Some(vec![v, d])
            } else {
                want.get(&name).cloned()
            };
            let Some(shape) = expected else { continue };
            if view.shape() != shape.as_slice() {
                return Err(Error::malformed(
                    &file,
                    format!(
                        "tensor '{name}' has shape {:?}, config.json implies {shape:?}",
                        view.shape()
                    ),
                ));
            }
            got.insert(
                name.clone(),
                to_f32(&file, &name, view.dtype(), view.data())?,
            );
        }
    }
    let mut take = |name: &str| -> Result<Vec<f32>> {
        got.remove(name).ok_or_else(|| {
            Error::malformed(
                dir,
                format!("tensor '{name}' is missing from the safetensors files"),
            )
        })
    };
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let p = format!("model.layers.{i}");
        let hd = cfg.head_dim;
        let bias = |take: &mut dyn FnMut(&str) -> Result<Vec<f32>>,
                    n: &str,
                    heads: Option<usize>|
         -> Result<Option<Vec<f32>>> {
            if !cfg.attn_bias {
                return Ok(None);
            }
            let b = take(&format!("{p}.self_attn.{n}.bias"))?;
            Ok(Some(match heads {
                Some(nh) => unpermute_rows(&b, nh, hd, 1),
                None => b,
            }))
        };
        let bq = bias(&mut take, "q_proj", Some(cfg.n_heads))?;
        let bk = bias(&mut take, "k_proj", Some(cfg.n_kv_heads))?;
        let bv = bias(&mut take, "v_proj", None)?;
        layers.push(LayerWeights {
            attn_norm: take(&format!("{p}.input_layernorm.weight"))?,
            wq: unpermute_rows(
                &take(&format!("{p}.self_attn.q_proj.weight"))?,
                cfg.n_heads,
                hd,
                d,
            ),
            wk: unpermute_rows(
                &take(&format!("{p}.self_attn.k_proj.weight"))?,
                cfg.n_kv_heads,
                hd,
                d,
            ),
            wv: take(&format!("{p}.self_attn.v_proj.weight"))?,
            wo: take(&format!("{p}.self_attn.o_proj.weight"))?,
            bq,
            bk,
            bv,
            ffn_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
            w1: take(&format!("{p}.mlp.gate_proj.weight"))?,
            w2: take(&format!("{p}.mlp.down_proj.weight"))?,
            w3: take(&format!("{p}.mlp.up_proj.weight"))?,
            online: Default::default(),
        });
    }
    let tok_emb = take("model.embed_tokens.weight")?;
    let final_norm = take("model.norm.weight")?;
    let lm_head = if cfg.tied_embeddings {
        None
    } else {
        Some(take(lm_name).map_err(|_| {
            Error::malformed(
                dir,
                "tensor 'lm_head.weight' is missing and config.json does not set tie_word_embeddings",
            )
        })?)
    };
    Model::new(
        cfg,
        Weights {
            tok_emb,
            layers,
            final_norm,
            lm_head,
        },
    )
}

/// Undo Hugging Face's rotate-half permutation of the rows of a query/key projection
/// (`n_heads` heads of `head_dim` rows of `width` values): row `h*hd + p*hd/2 + i` of the
/// input becomes row `h*hd + 2i + p` of the output.
pub fn unpermute_rows(w: &[f32], n_heads: usize, head_dim: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    let half = head_dim / 2;
    for h in 0..n_heads {
        for p in 0..2 {
            for i in 0..half {
                let src = (h * head_dim + p * half + i) * width;
                let dst = (h * head_dim + 2 * i + p) * width;
                out[dst..dst + width].copy_from_slice(&w[src..src + width]);
            }
        }
    }
    out
}
