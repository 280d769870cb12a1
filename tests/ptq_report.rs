//! Study tables: grading thresholds, CSV/JSON/Markdown output, SVG plots.

use mxsim::report::study::{
    markdown, plot_layer_error, plot_perplexity, write_csv, write_json, Grade, LayerError, StudyRow,
};

fn row(method: &str, plan: &str, format: &str, ppl: f64) -> StudyRow {
    StudyRow {
        method: method.into(),
        plan: plan.into(),
        format: format.into(),
        scale_rule: "floor".into(),
        ppl_fp32: 4.0,
        ppl,
        kl: 0.01,
        top1: 0.95,
        recovery: 0.0,
        drop_pct: 0.0,
        grade: Grade::HighRisk,
        tokens: 100,
        seconds: 1.0,
        layers: vec![LayerError {
            layer: 0,
            role: "wq".into(),
            mode: "local".into(),
            sqnr_db: 20.0,
        }],
    }
    .finish()
}

#[test]
fn grades_follow_the_seed_paper_thresholds() {
    // ppl 4 -> 4/0.99 is exactly a 1% drop in recovery
    assert_eq!(row("a", "W8A8", "mxfp8", 4.0).grade, Grade::Lossless);
    assert_eq!(
        row("a", "W8A8", "mxfp8", 4.0 / 0.995).grade,
        Grade::Lossless
    );
    assert_eq!(
        row("a", "W8A8", "mxfp8", 4.0 / 0.98).grade,
        Grade::Acceptable
    );
    assert_eq!(row("a", "W8A8", "mxfp8", 4.0 / 0.96).grade, Grade::HighRisk);
    assert_eq!(Grade::of_drop(1.0), Grade::Lossless);
    assert_eq!(Grade::of_drop(3.0), Grade::Acceptable);
    assert_eq!(Grade::of_drop(3.01), Grade::HighRisk);
    let r = row("a", "W4A4", "mxfp4", 5.0);
    assert!((r.recovery - 0.8).abs() < 1e-12 && (r.drop_pct - 20.0).abs() < 1e-9);
}

#[test]
fn tables_and_plots_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        row("rtn", "W4A4", "mxfp4", 6.0),
        row("gptq", "W4A4", "mxfp4", 5.0),
        row("rtn", "W8A8", "mxfp8", 4.01),
        row("gptq", "W8A8", "mxfp8", 4.02),
    ];
    write_csv(&dir.path().join("t.csv"), &rows).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("t.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv
        .lines()
        .nth(2)
        .unwrap()
        .starts_with("gptq,W4A4,mxfp4,floor,4.0000,5.0000,"));
    write_json(&dir.path().join("t.json"), &rows).unwrap();
    let back: Vec<StudyRow> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("t.json")).unwrap()).unwrap();
    // serde_json's float parsing may differ from the written value in the last bit
    assert_eq!(back.len(), rows.len());
    for (a, b) in back.iter().zip(&rows) {
        assert_eq!(
            (&a.method, &a.plan, &a.format, a.grade, &a.layers),
            (&b.method, &b.plan, &b.format, b.grade, &b.layers)
        );
        assert!((a.recovery - b.recovery).abs() <= 1e-15 && a.ppl == b.ppl);
    }
    let md = markdown(&rows, "Study", "notes");
    assert!(
        md.contains("| W4A4 | mxfp4 | gptq | 5.000 | 20.00 | 0 | 0 | 2 |"),
        "{md}"
    );
    plot_perplexity(&dir.path().join("p.svg"), &rows).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("p.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("W4A4") && svg.contains("gptq"));
    plot_layer_error(
        &dir.path().join("l.svg"),
        &rows.iter().collect::<Vec<_>>(),
        "t",
    )
    .unwrap();
    assert!(plot_perplexity(&dir.path().join("x.svg"), &[]).is_err());
    assert!(!dir.path().join("x.svg").exists());
}
