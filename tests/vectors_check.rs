//! The checker: passes exact dumps in every accepted form, reports mismatches (exit 1) with
//! decoded values and differing bits, rejects malformed dumps and tampered packs (exit 2)
//! naming the line, and never panics.

use mxsim::vectors::{check, generate, CheckOptions, GenSpec, Op};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn mxsim(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(args)
        .output()
        .expect("run mxsim");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A cast pack for E4M3 in `dir`; returns the golden hex lines.
fn cast_pack(dir: &Path) -> Vec<String> {
    let mut spec = GenSpec::new(Op::Cast, "e4m3");
    spec.count = Some(100);
    generate(&spec).unwrap().write(dir).unwrap();
    std::fs::read_to_string(dir.join("cast.hex"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// The output part of a golden cast line `xxxxxxxx_cc_ff`.
fn outputs(line: &str) -> String {
    line.split_once('_').unwrap().1.to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run_check(pack: &Path, dump: &Path) -> (i32, String, String) {
    mxsim(&[
        "vectors",
        "check",
        pack.to_str().unwrap(),
        "--actual",
        dump.to_str().unwrap(),
    ])
}

#[test]
fn exact_dumps_pass_in_every_form() {
    let t = tempfile::tempdir().unwrap();
    let pack = t.path().join("pack");
    let golden = cast_pack(&pack);
    // outputs only, with `_`
    let outs: String = golden.iter().map(|l| outputs(l) + "\n").collect();
    let p = write(t.path(), "a.hex", &outs);
    assert_eq!(run_check(&pack, &p).0, 0);
    // outputs without separators, with comments and blank lines ($fwrite("%h") style)
    let plain: String = golden
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{} // vector {i}\n\n", outputs(l).replace('_', "")))
        .collect();
    let p = write(t.path(), "b.hex", &plain);
    assert_eq!(run_check(&pack, &p).0, 0);
    // the whole vector echoed, inputs included
    let p = pack.join("cast.hex");
    let (code, out, _) = run_check(&pack, &p);
    assert_eq!(code, 0);
    assert!(out.starts_with("PASS:"), "{out}");
    // CSV with output columns only, 0x prefixes, an index column, columns reordered
    let mut csv = String::from("index,flags,code\n");
    for (i, l) in golden.iter().enumerate() {
        let f: Vec<&str> = l.split('_').collect();
        csv += &format!("{i},0x{},{}\n", f[2], f[1]);
    }
    let p = write(t.path(), "c.csv", &csv);
    let (code, out, err) = run_check(&pack, &p);
    assert_eq!(code, 0, "{out}{err}");
    // the pack's own CSV (inputs included)
    assert_eq!(run_check(&pack, &pack.join("cast.csv")).0, 0);
}

#[test]
fn mismatches_are_reported_with_decoded_values_and_bits() {
    let t = tempfile::tempdir().unwrap();
    let pack = t.path().join("pack");
    let golden = cast_pack(&pack);
    let mut lines: Vec<String> = golden.iter().map(|l| outputs(l)).collect();
    // vector 4 is the canonical NaN input 0x7fc00000 -> code 7f, flags 10 (invalid)
    assert_eq!(golden[4], "7fc00000_7f_10");
    lines[4] = "7e_10".into(); // 448 instead of NaN: differing bit 0
                               // vector 13 is 1.0 -> 38 exact; claim 39 (one ulp up) and set inexact
    assert_eq!(golden[13], "3f800000_38_00");
    lines[13] = "39_01".into();
    lines[20] = "xx_00".into();
    let dump: String = lines.iter().map(|l| l.clone() + "\n").collect();
    let p = write(t.path(), "bad.hex", &dump);
    let (code, out, _) = run_check(&pack, &p);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("MISMATCH vector 4 (golden cast.hex line 5, dump line 5)"),
        "{out}"
    );
    assert!(
        out.contains("code: expected 7f (e4m3 NaN), got 7e (e4m3 448); differing bit 0 (xor 01)"),
        "{out}"
    );
    assert!(out.contains("in   x=7fc00000 (NaN)"), "{out}");
    assert!(
        out.contains("code: expected 38 (e4m3 1), got 39 (e4m3 1.125)"),
        "{out}"
    );
    assert!(
        out.contains("flags: expected 00 (none), got 01 (inexact)"),
        "{out}"
    );
    assert!(out.contains("FAIL: 3 of"), "{out}");
    assert!(out.contains("1  code: NaN expected"), "{out}");
    assert!(out.contains("1  code: off by one ulp"), "{out}");
    assert!(out.contains("1  flags: inexact extra"), "{out}");
    assert!(out.contains("1  code: x/z"), "{out}");
    // only the first N in full, the rest counted
    let (code, out, _) = mxsim(&[
        "vectors",
        "check",
        pack.to_str().unwrap(),
        "--actual",
        p.to_str().unwrap(),
        "--max-show",
        "1",
    ]);
    assert_eq!(code, 1);
    assert_eq!(out.matches("MISMATCH").count(), 1);
    assert!(
        out.contains("2 more mismatching vectors not shown"),
        "{out}"
    );
}

#[test]
fn nan_any_accepts_other_nan_encodings_only_when_asked() {
    let t = tempfile::tempdir().unwrap();
    let pack = t.path().join("pack");
    let golden = cast_pack(&pack);
    let mut lines: Vec<String> = golden.iter().map(|l| outputs(l)).collect();
    lines[4] = "ff_10".into(); // negative NaN (S.1111.111) for a positive NaN input
    let p = write(t.path(), "nan.hex", &lines.join("\n"));
    let strict = check(&pack, &p, &CheckOptions::default()).unwrap();
    assert_eq!(strict.failed_vectors, 1);
    assert_eq!(strict.by_kind.get("code: other NaN encoding"), Some(&1));
    let lax = check(
        &pack,
        &p,
        &CheckOptions {
            nan_any: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(lax.passed());
}

#[test]
fn malformed_dumps_exit_2_naming_the_line() {
    let t = tempfile::tempdir().unwrap();
    let pack = t.path().join("pack");
    let golden = cast_pack(&pack);
    let good: Vec<String> = golden.iter().map(|l| outputs(l)).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "badchar.hex",
            {
                let mut g = good.clone();
                g[2] = "7g_00".into();
                g.join("\n")
            },
            "line 3: unexpected character 'g'",
        ),
        (
            "short.hex",
            {
                let mut g = good.clone();
                g[6] = "7e0".into();
                g.join("\n")
            },
            "line 7: 3 hex digits, expected 4",
        ),
        (
            "few.hex",
            good[..10].join("\n"),
            "10 vectors (last at line 10), the pack has",
        ),
        (
            "addr.hex",
            format!("@0\n{}", good.join("\n")),
            "line 1: address records",
        ),
        (
            "nohdr.csv",
            "code\n7e\n".into(),
            "missing output column 'flags'",
        ),
        (
            "unknown.csv",
            "code,flags,bogus\n".into(),
            "unknown column 'bogus'",
        ),
        (
            "val.csv",
            format!("code,flags\n{}\n7q,00\n", good[0].replace('_', ",")),
            "line 3: '7q' in column 'code' is not a hex value",
        ),
    ];
    for (name, text, want) in cases {
        let p = write(t.path(), name, &text);
        let (code, out, err) = run_check(&pack, &p);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    // a missing dump file, and a binary one
    let (code, _, err) = run_check(&pack, &t.path().join("nope.hex"));
    assert_eq!(code, 2, "{err}");
    let p = t.path().join("bin.hex");
    std::fs::write(&p, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    assert_eq!(run_check(&pack, &p).0, 2);
}

#[test]
fn tampered_or_missing_packs_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let pack = t.path().join("pack");
    let golden = cast_pack(&pack);
    let dump = write(
        t.path(),
        "d.hex",
        &golden
            .iter()
            .map(|l| outputs(l))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    // change one golden output: the manifest's SHA-256 no longer matches
    let mut g = golden.clone();
    g[13] = "3f800000_39_00".into();
    std::fs::write(pack.join("cast.hex"), g.join("\n") + "\n").unwrap();
    let (code, _, err) = run_check(&pack, &dump);
    assert_eq!(code, 2);
    assert!(err.contains("differs from the manifest"), "{err}");
    let (code, _, err) = run_check(&t.path().join("no-such-pack"), &dump);
    assert_eq!(code, 2);
    assert!(err.contains("manifest.json"), "{err}");
    std::fs::write(pack.join("manifest.json"), "{ not json").unwrap();
    assert_eq!(run_check(&pack, &dump).0, 2);
}

fn shared_pack() -> &'static Path {
    use std::sync::OnceLock;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let mut spec = GenSpec::new(Op::Quantize, "mxfp4");
        spec.count = Some(5);
        generate(&spec).unwrap().write(d.path()).unwrap();
        d
    })
    .path()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary bytes as a dump (hex or CSV) never panic the checker: the result is a report
    /// or an error.
    #[test]
    fn arbitrary_dumps_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), csv in any::<bool>()) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(if csv { "d.csv" } else { "d.hex" });
        std::fs::write(&p, &bytes).unwrap();
        let _ = check(shared_pack(), &p, &CheckOptions::default());
    }

    /// Dumps made of plausible characters (hex digits, x, _, separators, newlines) never panic
    /// either, and a report always counts every vector.
    #[test]
    fn plausible_dumps_never_panic(s in "[0-9a-fxz_,\\n ]{0,600}", csv in any::<bool>()) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(if csv { "d.csv" } else { "d.hex" });
        std::fs::write(&p, s.as_bytes()).unwrap();
        if let Ok(r) = check(shared_pack(), &p, &CheckOptions::default()) {
            prop_assert!(r.failed_vectors <= r.total);
        }
    }
}
