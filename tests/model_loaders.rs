//! Loaders: llama2.c legacy and version-1 files, Hugging Face folders (exported here from
//! stories260K with Hugging Face's q/k permutation written independently of the loader),
//! the llama2.c tokenizer, and the errors on malformed input.

mod model_support;
use model_support::*;
use mxsim::model::{
    forward, llama2c, save_llama2c_v1, KvCache, Llama2cTokenizer, Model, Reference, Tokenizer,
};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;

fn logits(m: &Model, ids: &[u32]) -> Vec<f32> {
    forward(
        &m.config,
        &m.weights,
        &Reference,
        ids,
        &mut KvCache::new(&m.config),
        None,
    )
    .unwrap()
}

fn prompt() -> Vec<u32> {
    tokenizer()
        .encode(
            "Once upon a time, a little dog named Max found a shiny stone.",
            true,
        )
        .unwrap()
}

/// Hugging Face's `permute` from `convert_llama_weights_to_hf.py`:
/// `w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)`,
/// i.e. output row `h*hd + p*hd/2 + i` is input row `h*hd + 2*i + p`.
fn hf_permute(w: &[f32], n_heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    let hd = rows / n_heads;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_heads {
        for p in 0..2 {
            for i in 0..hd / 2 {
                let r = h * hd + 2 * i + p;
                out.extend_from_slice(&w[r * cols..(r + 1) * cols]);
            }
        }
    }
    out
}

enum Enc {
    F32,
    Bf16,
}

fn bytes_of(v: &[f32], enc: &Enc) -> Vec<u8> {
    match enc {
        Enc::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Enc::Bf16 => v
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect(),
    }
}

/// Write stories260K as a Hugging Face Llama folder: config.json and one or two
/// safetensors shards (with an index when two).
fn export_hf(m: &Model, dir: &Path, enc: Enc, shards: usize, untied: bool, qwen_zero_bias: bool) {
    let c = &m.config;
    let w = &m.weights;
    let (d, h, kvd) = (c.dim, c.hidden_dim, c.kv_dim());
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        (
            "model.embed_tokens.weight".into(),
            vec![c.vocab_size, d],
            w.tok_emb.clone(),
        ),
        ("model.norm.weight".into(), vec![d], w.final_norm.clone()),
    ];
    if untied {
        tensors.push((
            "lm_head.weight".into(),
            vec![c.vocab_size, d],
            w.tok_emb.clone(),
        ));
    }
    for (i, l) in w.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        tensors.push((
            format!("{p}.input_layernorm.weight"),
            vec![d],
            l.attn_norm.clone(),
        ));
        tensors.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
            l.ffn_norm.clone(),
        ));
        tensors.push((
            format!("{p}.self_attn.q_proj.weight"),
            vec![d, d],
            hf_permute(&l.wq, c.n_heads, d, d),
        ));
        tensors.push((
            format!("{p}.self_attn.k_proj.weight"),
            vec![kvd, d],
            hf_permute(&l.wk, c.n_kv_heads, kvd, d),
        ));
        tensors.push((
            format!("{p}.self_attn.v_proj.weight"),
            vec![kvd, d],
            l.wv.clone(),
        ));
        tensors.push((
            format!("{p}.self_attn.o_proj.weight"),
            vec![d, d],
            l.wo.clone(),
        ));
        tensors.push((
            format!("{p}.mlp.gate_proj.weight"),
            vec![h, d],
            l.w1.clone(),
        ));
        tensors.push((format!("{p}.mlp.up_proj.weight"), vec![h, d], l.w3.clone()));
        tensors.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![d, h],
            l.w2.clone(),
        ));
        if qwen_zero_bias {
            tensors.push((format!("{p}.self_attn.q_proj.bias"), vec![d], vec![0.0; d]));
            tensors.push((
                format!("{p}.self_attn.k_proj.bias"),
                vec![kvd],
                vec![0.0; kvd],
            ));
            tensors.push((
                format!("{p}.self_attn.v_proj.bias"),
                vec![kvd],
                vec![0.0; kvd],
            ));
        }
    }
    let dtype = match enc {
        Enc::F32 => Dtype::F32,
        Enc::Bf16 => Dtype::BF16,
    };
    let per = tensors.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (s, chunk) in tensors.chunks(per).enumerate() {
        let name = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{shards:05}.safetensors", s + 1)
        };
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = chunk
            .iter()
            .map(|(n, sh, v)| (n.clone(), sh.clone(), bytes_of(v, &enc)))
            .collect();
        let views: Vec<(String, TensorView)> = data
            .iter()
            .map(|(n, sh, b)| (n.clone(), TensorView::new(dtype, sh.clone(), b).unwrap()))
            .collect();
        let bytes = safetensors::tensor::serialize(views, &None).unwrap();
        std::fs::write(dir.join(&name), bytes).unwrap();
        for (n, _, _) in chunk {
            weight_map.insert(n.clone(), serde_json::Value::String(name.clone()));
        }
    }
    if shards > 1 {
        let idx = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
        std::fs::write(dir.join("model.safetensors.index.json"), idx.to_string()).unwrap();
    }
    let cfg = serde_json::json!({
        "architectures": [if qwen_zero_bias { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": if qwen_zero_bias { "qwen2" } else { "llama" },
        "hidden_size": d,
        "intermediate_size": h,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.seq_len,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": !untied,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "rope_scaling": null,
        "torch_dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

#[test]
fn hf_export_gives_identical_logits_to_llama2c() {
    let m = stories();
    let ids = prompt();
    let reference = logits(&m, &ids);
    for (shards, untied, qwen) in [(1, false, false), (2, true, false), (3, false, true)] {
        let dir = tempfile::tempdir().unwrap();
        export_hf(&m, dir.path(), Enc::F32, shards, untied, qwen);
        let hf = Model::load(dir.path()).unwrap();
        assert_eq!(hf.config.n_kv_heads, 4);
        assert_eq!(hf.config.tied_embeddings, !untied);
        assert_eq!(hf.config.attn_bias, qwen);
        assert_eq!(
            hf.weights.layers[2].wq, m.weights.layers[2].wq,
            "q un-permuted"
        );
        assert_eq!(
            hf.weights.layers[2].wk, m.weights.layers[2].wk,
            "k un-permuted"
        );
        let l = logits(&hf, &ids);
        assert_eq!(l, reference, "shards {shards} untied {untied} qwen {qwen}");
    }
}

#[test]
fn hf_bf16_export_loads_and_stays_close() {
    let m = stories();
    let dir = tempfile::tempdir().unwrap();
    export_hf(&m, dir.path(), Enc::Bf16, 1, false, false);
    let hf = Model::load(dir.path()).unwrap();
    let w = &hf.weights.layers[0].w1;
    assert!(w
        .iter()
        .zip(&m.weights.layers[0].w1)
        .all(|(a, b)| (a - b).abs() <= b.abs() / 128.0));
    assert!(
        w.iter().all(|x| x.to_bits() & 0xFFFF == 0),
        "bf16 values widened exactly"
    );
    let ids = prompt();
    let (a, b) = (logits(&hf, &ids), logits(&m, &ids));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst > 0.0 && worst < 1.0, "bf16 logits differ by {worst}");
}

#[test]
fn hf_folder_errors_are_clear() {
    let m = stories();
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        export_hf(&m, dir.path(), Enc::F32, 1, false, false);
        dir
    };
    let err = |dir: &Path| Model::load(dir).unwrap_err().to_string();
    // Bad JSON.
    let d = make();
    std::fs::write(d.path().join("config.json"), "{ not json").unwrap();
    assert!(err(d.path()).contains("invalid JSON"), "{}", err(d.path()));
    // Missing key.
    let d = make();
    std::fs::write(
        d.path().join("config.json"),
        r#"{"model_type":"llama","hidden_size":64}"#,
    )
    .unwrap();
    assert!(err(d.path()).contains("missing key"), "{}", err(d.path()));
    // Unsupported architecture.
    let d = make();
    let cfg = std::fs::read_to_string(d.path().join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gemma\"");
    std::fs::write(d.path().join("config.json"), cfg).unwrap();
    assert!(err(d.path()).contains("not supported"));
    // Config inconsistent with the tensors.
    let d = make();
    let cfg = std::fs::read_to_string(d.path().join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\":172", "\"intermediate_size\":173");
    std::fs::write(d.path().join("config.json"), cfg).unwrap();
    assert!(err(d.path()).contains("shape"), "{}", err(d.path()));
    // Truncated safetensors.
    let d = make();
    let f = d.path().join("model.safetensors");
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() - 100]).unwrap();
    assert!(
        err(d.path()).contains("not a valid safetensors"),
        "{}",
        err(d.path())
    );
    // Header claiming a huge size.
    let mut bad = u64::MAX.to_le_bytes().to_vec();
    bad.extend_from_slice(b"{}");
    std::fs::write(&f, &bad).unwrap();
    assert!(err(d.path()).contains("not a valid safetensors"));
    // Missing tensor (untied config without lm_head).
    let d = make();
    let cfg = std::fs::read_to_string(d.path().join("config.json"))
        .unwrap()
        .replace(
            "\"tie_word_embeddings\":true",
            "\"tie_word_embeddings\":false",
        );
    std::fs::write(d.path().join("config.json"), cfg).unwrap();
    assert!(
        err(d.path()).contains("lm_head.weight"),
        "{}",
        err(d.path())
    );
    // No safetensors at all.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("config.json"),
        std::fs::read(make().path().join("config.json")).unwrap(),
    )
    .unwrap();
    assert!(err(d.path()).contains("no *.safetensors"));
}

#[test]
fn version1_export_round_trips() {
    let m = stories();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v1.bin");
    save_llama2c_v1(&m, &p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[..4], b"24ka", "magic 0x616b3432 little-endian");
    assert_eq!(bytes.len(), 256 + 4 * m.config.n_params().unwrap());
    // The first weight of a v1 file is layer 0's attention RMSNorm (export.py order).
    assert_eq!(
        f32::from_le_bytes(bytes[256..260].try_into().unwrap()),
        m.weights.layers[0].attn_norm[0]
    );
    let m1 = Model::load(&p).unwrap();
    assert_eq!(m1, m);
}

#[test]
fn llama2c_errors_are_clear() {
    let path = models_dir().join("stories260K.bin");
    let good = std::fs::read(&path).unwrap();
    let p = Path::new("x.bin");
    let msg = |b: &[u8]| llama2c::parse_llama2c(p, b).unwrap_err().to_string();
    assert!(msg(&good[..good.len() - 4]).contains("truncated"));
    assert!(msg(&good[..10]).contains("too short"));
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 8]);
    assert!(msg(&longer).contains("longer"));
    // dim 65 with 8 heads.
    let mut b = good.clone();
    b[0..4].copy_from_slice(&65i32.to_le_bytes());
    assert!(msg(&b).contains("multiple"), "{}", msg(&b));
    // Zero layers; huge dimensions (must not allocate).
    let mut b = good.clone();
    b[8..12].copy_from_slice(&0i32.to_le_bytes());
    assert!(msg(&b).contains("n_layers"));
    let mut b = good.clone();
    b[0..4].copy_from_slice(&(1i32 << 24).to_le_bytes());
    b[4..8].copy_from_slice(&(1i32 << 24).to_le_bytes());
    assert!(msg(&b).contains("truncated"), "{}", msg(&b));
    // n_heads not a multiple of n_kv_heads.
    let mut b = good.clone();
    b[16..20].copy_from_slice(&3i32.to_le_bytes());
    assert!(msg(&b).contains("n_kv_heads"), "{}", msg(&b));
    // A version-2 (int8) export.
    let mut b = vec![0u8; 300];
    b[0..4].copy_from_slice(&llama2c::AK42_MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&2i32.to_le_bytes());
    assert!(msg(&b).contains("version 2"));
    assert!(Model::load(Path::new("/nonexistent/model.bin")).is_err());
}

#[test]
fn tokenizer_encodes_as_llama2c() {
    let tok = tokenizer();
    // Expected ids from an independent Python implementation of llama2.c's encode.
    assert_eq!(
        tok.encode(
            "Once upon a time, there was a little girl named Lily.",
            false
        )
        .unwrap(),
        [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]
    );
    // Byte fallback (+3) for characters outside the vocabulary.
    assert_eq!(
        tok.encode("Hello, wörld! 你好 ☃", false).unwrap(),
        [
            346, 306, 414, 432, 263, 198, 185, 420, 341, 443, 410, 231, 192, 163, 232, 168, 192,
            410, 229, 155, 134
        ]
    );
    assert_eq!(tok.encode("", true).unwrap(), [1]);
    let s = "The cat sat. 你好";
    let ids = tok.encode(s, true).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(
        tok.decode(&ids),
        format!(" {s}"),
        "decode gives the text with the dummy-prefix space"
    );
}

#[test]
fn tokenizer_errors_are_clear() {
    let good = std::fs::read(models_dir().join("tok512.bin")).unwrap();
    let p = Path::new("t.bin");
    let e = Llama2cTokenizer::parse(p, &good[..good.len() - 3], Some(512)).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    let e = Llama2cTokenizer::parse(p, &good, Some(600)).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    let mut b = good.clone();
    b[8..12].copy_from_slice(&(-5i32).to_le_bytes());
    assert!(Llama2cTokenizer::parse(p, &b, Some(512)).is_err());
    assert!(Llama2cTokenizer::parse(p, &[1, 0], None).is_err());
    assert_eq!(
        Llama2cTokenizer::parse(p, &good, None)
            .unwrap()
            .vocab_size(),
        512
    );
}
