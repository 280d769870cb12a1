//! Hugging Face `tokenizer.json` through the `tokenizers` crate (only with the
//! `hf-tokenizers` feature).
#![cfg(feature = "hf-tokenizers")]

use mxsim::model::tokenizer::HfTokenizer;
use mxsim::model::{load_tokenizer, Tokenizer};

const WORD_LEVEL: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"<unk>":0,"<s>":1,"</s>":2,"hello":3,"world":4},"unk_token":"<unk>"}}"#;

#[test]
fn tokenizer_json_encodes_with_bos_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, WORD_LEVEL).unwrap();
    let t = HfTokenizer::load(&p, Some(1), Some(2)).unwrap();
    assert_eq!(t.encode("hello world", true).unwrap(), [1, 3, 4]);
    assert_eq!(t.encode("world zzz", false).unwrap(), [4, 0]);
    assert_eq!(t.decode(&[3, 4]), "hello world");
    assert_eq!(t.vocab_size(), 5);
    let boxed = load_tokenizer(&p, 5, 1, 2).unwrap();
    assert_eq!(boxed.encode("hello", true).unwrap(), [1, 3]);
    std::fs::write(&p, "{ broken").unwrap();
    assert!(HfTokenizer::load(&p, None, None).is_err());
}
