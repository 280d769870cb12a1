//! The `mxsim generate`, `mxsim eval` and `mxsim mc` commands end to end, and the
//! multiple-choice scorer.

mod model_support;
use model_support::*;
use mxsim::model::{forward, mc, KvCache, Reference, Tokenizer};
use std::process::Command;

fn mxsim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn model_arg() -> String {
    models_dir().join("stories260K.bin").display().to_string()
}

#[test]
fn generate_command_prints_the_sentence() {
    let (code, out, err) = mxsim(&["generate", "--model", &model_arg(), "--steps", "40"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(SENTENCE), "{out}");
    let (code, out, _) = mxsim(&[
        "generate",
        "--model",
        &model_arg(),
        "--prompt",
        "Once upon a time",
        "--steps",
        "5",
        "--plan",
        "W8A8",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with(" Once upon a time"), "{out}");
}

#[test]
fn eval_command_writes_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let csv = dir.path().join("r.csv");
    let text = models_dir()
        .join("tinystories_dev.txt")
        .display()
        .to_string();
    let (code, out, err) = mxsim(&[
        "eval",
        "--model",
        &model_arg(),
        "--text",
        &text,
        "--plan",
        "W4A4",
        "--format",
        "mxfp4",
        "--max-tokens",
        "400",
        "--layer-tokens",
        "200",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("perplexity") && out.contains("not bit-exact"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["report"]["tokens"], 400);
    assert_eq!(v["datapath_gemm"], false);
    assert!(v["report"]["ppl"].as_f64().unwrap() > v["report"]["ppl_reference"].as_f64().unwrap());
    let c = std::fs::read_to_string(&csv).unwrap();
    assert!(c.starts_with("layer,role,mode,sqnr_db,cosine"));
    assert_eq!(c.lines().count(), 1 + 2 * 5 * 9);
    // The ideal datapath backend is labelled as a datapath.
    let (code, out, _) = mxsim(&[
        "eval",
        "--model",
        &model_arg(),
        "--text",
        &text,
        "--plan",
        "W8A8",
        "--max-tokens",
        "100",
        "--datapath",
        "ideal",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("datapath ideal-f64"), "{out}");
}

#[test]
fn bad_input_exits_2_without_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let text = models_dir()
        .join("tinystories_dev.txt")
        .display()
        .to_string();
    for args in [
        vec!["eval", "--model", "/nonexistent.bin", "--text", &text],
        vec![
            "eval",
            "--model",
            &model_arg(),
            "--text",
            &text,
            "--plan",
            "W9A9",
            "--json",
            json.to_str().unwrap(),
        ],
        vec![
            "eval",
            "--model",
            &model_arg(),
            "--text",
            &text,
            "--plan",
            "W4A4",
            "--datapath",
            "no-such-preset",
        ],
        vec![
            "eval",
            "--model",
            &model_arg(),
            "--text",
            "/nonexistent.txt",
        ],
        vec![
            "mc",
            "--model",
            &model_arg(),
            "--tasks",
            "/nonexistent.jsonl",
        ],
    ] {
        let (code, _, err) = mxsim(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.starts_with("mxsim: error:"), "{err}");
    }
    assert!(!json.exists());
}

#[test]
fn multiple_choice_scores_handmade_tasks() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mc_stories.jsonl");
    let items = mc::load_tasks(&path).unwrap();
    assert_eq!(items.len(), 8);
    let m = stories();
    let tok = tokenizer();
    let r = mc::score(&m, &m.weights, &Reference, &tok, &items).unwrap();
    assert_eq!(r.overall.n, 8);
    assert_eq!(r.tasks["names"].n, 2);
    // Recompute one choice's log-likelihood directly from the forward pass.
    let it = &items[4];
    let ctx = tok.encode(&it.context, true).unwrap();
    let whole = tok
        .encode(&format!("{}{}", it.context, it.choices[1]), true)
        .unwrap();
    assert_eq!(&whole[..ctx.len()], &ctx[..]);
    let lg = forward(
        &m.config,
        &m.weights,
        &Reference,
        &whole,
        &mut KvCache::new(&m.config),
        None,
    )
    .unwrap();
    let v = m.config.vocab_size;
    let mut ll = 0.0;
    for i in ctx.len()..whole.len() {
        ll += mxsim::model::eval::log_softmax(&lg[(i - 1) * v..i * v])[whole[i] as usize];
    }
    assert!((ll - r.loglik[4][1]).abs() < 1e-9);
    // Accuracy is the fraction of questions whose best choice is the gold one.
    let acc = items
        .iter()
        .zip(&r.loglik)
        .filter(|(it, ll)| {
            let best = (0..ll.len()).fold(0, |b, i| if ll[i] > ll[b] { i } else { b });
            best == it.gold
        })
        .count() as f64
        / 8.0;
    assert_eq!(acc, r.overall.acc);
    assert!(
        r.overall.acc >= 0.75,
        "a TinyStories model should get these easy questions: {:?}",
        r.overall
    );
    // The command.
    let (code, out, err) = mxsim(&[
        "mc",
        "--model",
        &model_arg(),
        "--tasks",
        path.to_str().unwrap(),
        "--plan",
        "W8A8",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("overall"));
}

#[test]
fn malformed_task_files_are_errors() {
    let p = std::path::Path::new("t.jsonl");
    for bad in [
        "{\"context\": \"a\", \"choices\": [\" b\"], \"gold\": 0}",
        "{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"gold\": 2}",
        "{\"choices\": [\" b\", \" c\"], \"gold\": 0}",
        "not json",
        "",
    ] {
        assert!(mc::parse_tasks(p, bad).is_err(), "{bad}");
    }
    let ok = mc::parse_tasks(
        p,
        "{\"query\": \"a\", \"endings\": [\" b\", \" c\"], \"label\": \"1\"}",
    )
    .unwrap();
    assert_eq!(ok[0].gold, 1);
}
