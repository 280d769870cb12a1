//! Integration tests of `mxsim cast`, `mxsim quantize`, `mxsim formats` and `mxsim report`
//! through the built binary, including bad inputs (exit code 2, no output file).

use mxsim::io::{read_npy, write_npy, NpyArray, NpyData};
use mxsim::mx::pack::{from_packed_bytes, to_packed_bytes};
use mxsim::mx::{quantize, quantize_generic, MxConfig, ScaleRule, Scheme};
use std::path::Path;
use std::process::{Command, Output};

fn mxsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(args)
        .output()
        .expect("run mxsim")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn f32s(a: &NpyArray) -> Vec<f32> {
    match &a.data {
        NpyData::F32(v) => v.clone(),
        d => panic!("expected float32, got {d:?}"),
    }
}

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 37.0 * if i % 13 == 0 { 20.0 } else { 1.0 })
        .collect()
}

#[test]
fn cast_encode_decode() {
    let d = tempfile::tempdir().unwrap();
    let x = d.path().join("x.npy");
    let c = d.path().join("c.npy");
    let y = d.path().join("y.npy");
    write_npy(
        &x,
        &NpyArray::f32(vec![2, 3], vec![1.0, 448.0, 500.0, -0.5, 0.0, 1e-9]),
    )
    .unwrap();
    let o = mxsim(&["cast", "--to", "e4m3", "--input", p(&x), "--output", p(&c)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let codes = read_npy(&c).unwrap();
    assert_eq!(codes.shape, vec![2, 3]);
    // 1.0 = 0x38, 448 = 0x7E, 500 saturates to 0x7E, -0.5 = 0xB0, 0, 1e-9 -> 0
    assert_eq!(
        codes.as_u8("c").unwrap(),
        &[0x38, 0x7E, 0x7E, 0xB0, 0x00, 0x00]
    );
    let o = mxsim(&[
        "cast",
        "--decode",
        "--from",
        "e4m3",
        "--input",
        p(&c),
        "--output",
        p(&y),
    ]);
    assert!(o.status.success());
    assert_eq!(
        f32s(&read_npy(&y).unwrap()),
        vec![1.0, 448.0, 448.0, -0.5, 0.0, 0.0]
    );
}

/// `--axis 0` on a 3-D array equals quantizing the array with that axis moved last; codes,
/// scales and the packed file agree with the library.
#[test]
fn quantize_axis_codes_scales_packed() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (40usize, 3usize, 5usize);
    let v = data(a * b * c);
    let x = d.path().join("x.npy");
    write_npy(&x, &NpyArray::f32(vec![a, b, c], v.clone())).unwrap();
    let out = d.path().join("y.npy");
    let codes = d.path().join("codes.npy");
    let scales = d.path().join("scales.npy");
    let packed = d.path().join("t.bin");
    let o = mxsim(&[
        "quantize",
        "--format",
        "mxfp4",
        "--axis",
        "0",
        "--input",
        p(&x),
        "--output",
        p(&out),
        "--codes",
        p(&codes),
        "--scales",
        p(&scales),
        "--packed",
        p(&packed),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("SQNR") && stdout.contains("max abs error") && stdout.contains("clipped")
    );
    // library reference: move axis 0 last by hand ([i][j][k] -> [j][k][i])
    let mut moved = vec![0.0f32; v.len()];
    for i in 0..a {
        for j in 0..b {
            for k in 0..c {
                moved[(j * c + k) * a + i] = v[(i * b + j) * c + k];
            }
        }
    }
    let t = quantize(&moved, b * c, a, &MxConfig::new(Scheme::Mxfp4)).unwrap();
    let deq = t.dequantize();
    let y = f32s(&read_npy(&out).unwrap());
    let cz = read_npy(&codes).unwrap();
    let sz = read_npy(&scales).unwrap();
    assert_eq!(cz.shape, vec![a, b, c]);
    assert_eq!(
        sz.shape,
        vec![2, b, c],
        "40 values along axis 0 = 2 blocks of 32 (one partial)"
    );
    for i in 0..a {
        for j in 0..b {
            for k in 0..c {
                let m = (j * c + k) * a + i;
                let o = (i * b + j) * c + k;
                assert_eq!(y[o].to_bits(), deq[m].to_bits());
                assert_eq!(cz.as_u8("c").unwrap()[o], t.codes[m]);
            }
        }
    }
    for blk in 0..2 {
        for j in 0..b {
            for k in 0..c {
                assert_eq!(
                    sz.as_u8("s").unwrap()[(blk * b + j) * c + k],
                    t.scales[(j * c + k) * 2 + blk]
                );
            }
        }
    }
    let pf = from_packed_bytes(&packed, &std::fs::read(&packed).unwrap()).unwrap();
    assert_eq!(pf.shape, vec![a, b, c]);
    assert_eq!(pf.axis, 0);
    assert_eq!(pf.tensor.codes, t.codes);
    assert_eq!(pf.tensor.scales, t.scales);
}

/// `--packed` with blocks of 32 along a multiple-of-32 axis (the fused single-pass kernels):
/// the packed file is byte-identical to the generic path's tensor serialized by
/// `to_packed_bytes`, and the dequantized output matches.
#[test]
fn quantize_packed_fused_matches_generic() {
    let d = tempfile::tempdir().unwrap();
    let (r, c) = (3usize, 96usize);
    let mut v = data(r * c);
    v[5] = -0.0;
    v[40] = f32::NAN; // the second block of row 0 becomes a NaN block
    let x = d.path().join("x.npy");
    write_npy(&x, &NpyArray::f32(vec![r, c], v.clone())).unwrap();
    for (fmt, scheme) in [("mxfp4", Scheme::Mxfp4), ("mxfp8_e4m3", Scheme::Mxfp8E4m3)] {
        for rule in ["floor", "rceil"] {
            let out = d.path().join("y.npy");
            let packed = d.path().join("t.bin");
            let o = mxsim(&[
                "quantize",
                "--format",
                fmt,
                "--scale-rule",
                rule,
                "--input",
                p(&x),
                "--output",
                p(&out),
                "--packed",
                p(&packed),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let rule: ScaleRule = rule.parse().unwrap();
            let g = quantize_generic(&v, r, c, &MxConfig::new(scheme).with_rule(rule)).unwrap();
            let want = to_packed_bytes(&g, &[r, c], 1).unwrap();
            assert_eq!(std::fs::read(&packed).unwrap(), want, "{fmt} {rule}");
            let y = f32s(&read_npy(&out).unwrap());
            for (a, b) in y.iter().zip(g.dequantize_generic()) {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            }
        }
    }
}

/// float64 input gives float64 output; NVFP4 options are accepted.
#[test]
fn quantize_f64_and_nvfp4() {
    let d = tempfile::tempdir().unwrap();
    let x = d.path().join("x.npy");
    let y = d.path().join("y.npy");
    let v: Vec<f64> = data(64).iter().map(|&x| x as f64).collect();
    write_npy(
        &x,
        &NpyArray {
            shape: vec![64],
            data: NpyData::F64(v),
        },
    )
    .unwrap();
    let o = mxsim(&[
        "quantize",
        "--format",
        "nvfp4",
        "--no-tensor-scale",
        "--nv-apply",
        "reciprocal",
        "--scale-rule",
        "4over6",
        "--input",
        p(&x),
        "--output",
        p(&y),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(matches!(read_npy(&y).unwrap().data, NpyData::F64(_)));
}

#[test]
fn formats_lists_every_format() {
    let o = mxsim(&["formats"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for name in [
        "e4m3", "e5m2", "e3m2", "e2m3", "e2m1", "int8", "e8m0", "ue4m3",
    ] {
        assert!(s.contains(name), "{name}");
    }
    assert!(s.contains("448") && s.contains("57344") && s.contains("7.5"));
    assert!(s.contains("0x07=6"), "FP4 value set");
}

#[test]
fn report_table_csv_json() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("r.csv");
    let o = mxsim(&["report", "--rows", "4", "--cols", "256", "--csv", p(&csv)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    for scheme in [
        "mxfp8_e4m3",
        "mxfp8_e5m2",
        "mxfp6_e3m2",
        "mxfp6_e2m3",
        "mxfp4",
        "mxint8",
        "nvfp4",
    ] {
        for rule in ["floor", "ceil", "even", "rceil", "prescale", "mse"] {
            assert!(
                s.lines().any(|l| l.starts_with(scheme) && l.contains(rule)),
                "{scheme} {rule}"
            );
        }
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("scheme,rule,sqnr_db,max_abs_err,clipped_fraction"));
    assert_eq!(text.lines().count(), 1 + 7 * 6 + 2);
    let o = mxsim(&["report", "--rows", "2", "--cols", "64", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 44);
}

/// Bad inputs: exit code 2, a message on stderr, and no output file.
#[test]
fn bad_inputs_exit_2_without_output() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("x.npy");
    write_npy(&good, &NpyArray::f32(vec![4, 8], data(32))).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let trunc = d.path().join("trunc.npy");
    std::fs::write(&trunc, &bytes[..bytes.len() - 5]).unwrap();
    let u8s = d.path().join("u8.npy");
    write_npy(&u8s, &NpyArray::u8(vec![4], vec![1, 2, 3, 4])).unwrap();
    let garbage = d.path().join("garbage.npy");
    std::fs::write(&garbage, b"not an npy file").unwrap();
    let out = d.path().join("out.npy");
    let packed = d.path().join("out.bin");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            p(&trunc),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            p(&garbage),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            p(&u8s),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp5",
            "--input",
            p(&good),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--axis",
            "2",
            "--input",
            p(&good),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--axis",
            "-3",
            "--input",
            p(&good),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--block-size",
            "0",
            "--input",
            p(&good),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp8",
            "--scale-rule",
            "4over6",
            "--input",
            p(&good),
            "--output",
            p(&out),
            "--packed",
            p(&packed),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--scale-rule",
            "bogus",
            "--input",
            p(&good),
            "--output",
            p(&out),
        ],
        vec![
            "quantize",
            "--format",
            "mxfp4",
            "--input",
            "/nonexistent/x.npy",
            "--output",
            p(&out),
        ],
        vec![
            "cast",
            "--to",
            "e9m9",
            "--input",
            p(&good),
            "--output",
            p(&out),
        ],
        vec![
            "cast",
            "--to",
            "e4m3",
            "--input",
            p(&trunc),
            "--output",
            p(&out),
        ],
        vec![
            "cast",
            "--to",
            "e4m3",
            "--input",
            p(&u8s),
            "--output",
            p(&out),
        ],
        vec![
            "cast",
            "--decode",
            "--from",
            "e4m3",
            "--input",
            p(&good),
            "--output",
            p(&out),
        ],
    ];
    for args in cases {
        let o = mxsim(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stderr.is_empty(), "{args:?}: no message");
        assert!(
            !out.exists() && !packed.exists(),
            "{args:?}: output file left behind"
        );
    }
    // an output in a missing directory: exit 2, nothing written
    let o = mxsim(&[
        "quantize",
        "--format",
        "mxfp4",
        "--input",
        p(&good),
        "--output",
        "/nonexistent/dir/y.npy",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 4, "only the inputs remain: {leftovers:?}");
}
