//! `mxsim study` and `mxsim eval --method` end to end on the shared model: outputs, resumption,
//! and errors (exit status 2, message, no partial files).

use std::path::PathBuf;
use std::process::Command;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("MXSIM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models"));
    assert!(
        dir.join("stories260K.bin").is_file(),
        "shared model files missing in {}",
        dir.display()
    );
    dir
}

fn mxsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn study_writes_tables_and_plots_and_resumes() {
    let m = models_dir();
    let out = tempfile::tempdir().unwrap();
    let model = m.join("stories260K.bin");
    let calib = m.join("tinystories_calib.txt");
    let text = m.join("tinystories_dev.txt");
    let args = [
        "study",
        "--model",
        model.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--methods",
        "rtn,gptq",
        "--plans",
        "W8A8,W4A4",
        "--formats",
        "mxfp4",
        "--max-tokens",
        "300",
        "--calib-tokens",
        "512",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let o = mxsim(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "results.csv",
        "results.json",
        "summary.md",
        "perplexity.svg",
        "layer_error.svg",
    ] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    let csv = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    // W8A8 with mxfp4 is the same plan as W4A4 with mxfp4: one row per method
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains("rtn,W4A4,mxfp4,floor,") && csv.contains("gptq,W4A4,mxfp4,floor,"));
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        md.contains("Skipped as duplicates: W8A8 mxfp4 (= W4A4 mxfp4)"),
        "{md}"
    );
    // resumption: a second run reuses the per-run files untouched
    let run = out
        .path()
        .join("runs")
        .join("gptq__W4A4__mxfp4__floor.json");
    let before = std::fs::read(&run).unwrap();
    let mut doctored: serde_json::Value = serde_json::from_slice(&before).unwrap();
    doctored["seconds"] = serde_json::json!(12345.0);
    std::fs::write(&run, serde_json::to_vec(&doctored).unwrap()).unwrap();
    let o = mxsim(&args);
    assert!(o.status.success());
    let csv2 = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    assert!(
        csv2.contains("12345.0"),
        "the stored result was reused: {csv2}"
    );
    // the same results otherwise
    assert_eq!(csv.lines().nth(1), csv2.lines().nth(1));
}

#[test]
fn study_and_eval_errors() {
    let m = models_dir();
    let out = tempfile::tempdir().unwrap();
    let model = m.join("stories260K.bin");
    let text = m.join("tinystories_dev.txt");
    let o = mxsim(&[
        "study",
        "--model",
        model.to_str().unwrap(),
        "--calib",
        text.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--methods",
        "rtn,nosuch",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown PTQ method 'nosuch'"));
    assert!(!out.path().join("results.csv").exists());
    let o = mxsim(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--plan",
        "W4A4",
        "--method",
        "gptq",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--method needs --calib"));
}

#[test]
fn eval_with_method_beats_rtn() {
    let m = models_dir();
    let model = m.join("stories260K.bin");
    let text = m.join("tinystories_dev.txt");
    let calib = m.join("tinystories_calib.txt");
    let ppl = |extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
            "--plan",
            "W4A16",
            "--format",
            "mxfp4",
            "--max-tokens",
            "2000",
            "--layer-tokens",
            "0",
        ];
        a.extend_from_slice(extra);
        let o = mxsim(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        let line = s
            .lines()
            .find(|l| l.starts_with("perplexity"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let rtn = ppl(&[]);
    let gptq = ppl(&["--method", "gptq", "--calib", calib.to_str().unwrap()]);
    assert!(gptq < rtn, "gptq {gptq} vs rtn {rtn}");
}

/// GPTQ act-order is selected by method name in `mxsim eval` (`gptq-actorder`, or `actorder`
/// added to a GPTQ combination) and in `mxsim study`; it changes the result; without a GPTQ
/// quantizer it is an error.
#[test]
fn act_order_methods_in_eval_and_study() {
    let m = models_dir();
    let model = m.join("stories260K.bin");
    let text = m.join("tinystories_dev.txt");
    let calib = m.join("tinystories_calib.txt");
    let eval = |method: &str| {
        mxsim(&[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
            "--plan",
            "W4A8",
            "--format",
            "mxfp4",
            "--max-tokens",
            "500",
            "--layer-tokens",
            "0",
            "--calib-tokens",
            "512",
            "--method",
            method,
            "--calib",
            calib.to_str().unwrap(),
        ])
    };
    let ppl = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        s.lines()
            .find(|l| l.starts_with("perplexity"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let plain = ppl(&eval("gptq"));
    let ordered = ppl(&eval("gptq-actorder"));
    assert!(
        ordered.is_finite() && ordered != plain,
        "{ordered} vs {plain}"
    );
    assert_eq!(ppl(&eval("gptq+actorder")), ordered);
    let bad = eval("rtn+actorder");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("act-order needs a GPTQ quantizer"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let out = tempfile::tempdir().unwrap();
    let o = mxsim(&[
        "study",
        "--model",
        model.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--methods",
        "gptq-actorder,mrgptq+actorder",
        "--plans",
        "W4A8",
        "--formats",
        "mxfp4",
        "--max-tokens",
        "300",
        "--calib-tokens",
        "512",
        "--layer-tokens",
        "0",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    assert!(csv.contains("\ngptq-actorder,W4A8,mxfp4,floor,"), "{csv}");
    assert!(
        csv.contains("\nmrgptq+actorder,W4A8,mxfp4,prescale"),
        "{csv}"
    );
}
