//! `mxsim gemm` and `mxsim datapath` end to end, including bad inputs.

mod cli_support;
use cli_support::{data, mxsim};
use mxsim::datapath::{gemm, DatapathConfig};
use mxsim::io::{read_npy, write_npy, NpyArray, NpyData};
use mxsim::mx::{quantize_f64, MxConfig, Scheme};
use std::path::Path;
use std::process::Command;

fn f32s(p: &Path) -> Vec<f32> {
    match read_npy(p).unwrap().data {
        NpyData::F32(v) => v,
        _ => panic!("not f32"),
    }
}

/// Every pair of schemes: float inputs quantized by the CLI give the same D as the library
/// (quantize A along K, B^T along K, gemm), and replaying the dumped codes/scales reproduces D
/// bit for bit.
#[test]
fn gemm_every_format_pair_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (m, k, n) = (3, 40, 2);
    let a = data(m * k, 1);
    let b = data(k * n, 2);
    let c = data(m * n, 3);
    let pa = dir.path().join("a.npy");
    let pb = dir.path().join("b.npy");
    let pc = dir.path().join("c.npy");
    write_npy(&pa, &NpyArray::f32(vec![m, k], a.clone())).unwrap();
    write_npy(&pb, &NpyArray::f32(vec![k, n], b.clone())).unwrap();
    write_npy(&pc, &NpyArray::f32(vec![m, n], c.clone())).unwrap();
    for preset in ["exact", "blackwell-mxf8f6f4"] {
        let cfg = DatapathConfig::preset(preset).unwrap();
        for sa in Scheme::ALL {
            for sb in Scheme::ALL {
                let out = dir.path().join("d.npy");
                let q = dir.path().join("q");
                let (code, _, err) = mxsim(&[
                    "gemm",
                    "--a",
                    pa.to_str().unwrap(),
                    "--b",
                    pb.to_str().unwrap(),
                    "--c",
                    pc.to_str().unwrap(),
                    "--a-format",
                    sa.name(),
                    "--b-format",
                    sb.name(),
                    "--datapath",
                    preset,
                    "--output",
                    out.to_str().unwrap(),
                    "--dump-quantized",
                    q.to_str().unwrap(),
                ]);
                assert_eq!(code, 0, "{sa} x {sb}: {err}");
                let d = f32s(&out);
                // library
                let av: Vec<f64> = a.iter().map(|&x| x as f64).collect();
                let mut bt = vec![0f64; n * k];
                for r in 0..k {
                    for cc in 0..n {
                        bt[cc * k + r] = b[r * n + cc] as f64;
                    }
                }
                let ta = quantize_f64(&av, m, k, &MxConfig::new(sa)).unwrap();
                let tb = quantize_f64(&bt, n, k, &MxConfig::new(sb)).unwrap();
                let want = gemm(&ta, &tb, Some(&c), &cfg).unwrap();
                assert_eq!(
                    d.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "{preset} {sa} x {sb}"
                );
                // replay
                let g: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(q.join("globals.json")).unwrap())
                        .unwrap();
                let ga = g["a_global_scale"].as_f64().unwrap().to_string();
                let gb = g["b_global_scale"].as_f64().unwrap().to_string();
                let out2 = dir.path().join("d2.npy");
                let qs = |f: &str| q.join(f).to_str().unwrap().to_string();
                let (code, _, err) = mxsim(&[
                    "gemm",
                    "--a-codes",
                    &qs("a_codes.npy"),
                    "--a-scales",
                    &qs("a_scales.npy"),
                    "--b-codes",
                    &qs("b_codes.npy"),
                    "--b-scales",
                    &qs("b_scales.npy"),
                    "--a-global",
                    &ga,
                    "--b-global",
                    &gb,
                    "--c",
                    pc.to_str().unwrap(),
                    "--a-format",
                    sa.name(),
                    "--b-format",
                    sb.name(),
                    "--datapath",
                    preset,
                    "--output",
                    out2.to_str().unwrap(),
                ]);
                assert_eq!(code, 0, "replay {sa} x {sb}: {err}");
                assert_eq!(
                    f32s(&out2).iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    d.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }
}

/// Bad inputs: exit status 2, a message naming the problem, and no output file.
#[test]
fn gemm_bad_inputs_exit_2_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    write_npy(
        Path::new(&p("a.npy")),
        &NpyArray::f32(vec![2, 32], vec![1.0; 64]),
    )
    .unwrap();
    write_npy(
        Path::new(&p("b.npy")),
        &NpyArray::f32(vec![32, 3], vec![1.0; 96]),
    )
    .unwrap();
    write_npy(
        Path::new(&p("b_bad.npy")),
        &NpyArray::f32(vec![31, 3], vec![1.0; 93]),
    )
    .unwrap();
    write_npy(
        Path::new(&p("u8.npy")),
        &NpyArray::u8(vec![2, 32], vec![1; 64]),
    )
    .unwrap();
    write_npy(
        Path::new(&p("c_bad.npy")),
        &NpyArray::f32(vec![3, 3], vec![0.0; 9]),
    )
    .unwrap();
    write_npy(
        Path::new(&p("fp4codes.npy")),
        &NpyArray::u8(vec![2, 32], vec![0x1F; 64]),
    )
    .unwrap();
    write_npy(
        Path::new(&p("s.npy")),
        &NpyArray::u8(vec![2, 1], vec![127; 2]),
    )
    .unwrap();
    std::fs::write(p("bad.toml"), "name = \"x\"\nk = 'nope'\n").unwrap();
    let out = p("d.npy");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "gemm".into(),
            "--a-format".into(),
            "mxfp4".into(),
            "--b-format".into(),
            "mxfp4".into(),
            "--output".into(),
            out.clone(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            base(&["--a", &p("missing.npy"), "--b", &p("b.npy")]),
            "missing.npy",
        ),
        (
            base(&["--a", &p("a.npy"), "--b", &p("b_bad.npy")]),
            "inner dimensions",
        ),
        (base(&["--a", &p("u8.npy"), "--b", &p("b.npy")]), "float32"),
        (
            base(&[
                "--a",
                &p("a.npy"),
                "--b",
                &p("b.npy"),
                "--c",
                &p("c_bad.npy"),
            ]),
            "expected M x N",
        ),
        (
            base(&[
                "--a",
                &p("a.npy"),
                "--b",
                &p("b.npy"),
                "--datapath",
                "nonesuch",
            ]),
            "neither a datapath preset",
        ),
        (
            base(&[
                "--a",
                &p("a.npy"),
                "--b",
                &p("b.npy"),
                "--datapath",
                &p("bad.toml"),
            ]),
            "bad.toml",
        ),
        (base(&["--a", &p("a.npy")]), "both --a and --b"),
        (base(&[]), "missing inputs"),
        (
            base(&[
                "--a-codes",
                &p("fp4codes.npy"),
                "--a-scales",
                &p("s.npy"),
                "--b-codes",
                &p("fp4codes.npy"),
                "--b-scales",
                &p("s.npy"),
            ]),
            "does not fit",
        ),
        (
            base(&[
                "--a",
                &p("a.npy"),
                "--b",
                &p("b.npy"),
                "--a-codes",
                &p("fp4codes.npy"),
            ]),
            "not both",
        ),
    ];
    for (args, msg) in cases {
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let (code, _, err) = mxsim(&refs);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("mxsim: error:") && err.contains(msg),
            "{args:?}: {err}"
        );
        assert!(!Path::new(&out).exists(), "{args:?} left an output file");
    }
}

/// `datapath list` names every preset; `datapath show` prints parameters and sources; an
/// unknown preset is exit 2.
#[test]
fn datapath_list_and_show() {
    let (code, out, _) = mxsim(&["datapath", "list"]);
    assert_eq!(code, 0);
    for n in mxsim::datapath::preset_names() {
        assert!(out.contains(n));
        let (code, show, err) = mxsim(&["datapath", "show", n]);
        assert_eq!(code, 0, "{err}");
        assert!(
            show.contains("acc_rounding") && show.contains('#'),
            "{show}"
        );
    }
    let (code, _, err) = mxsim(&["datapath", "show", "nonesuch"]);
    assert_eq!(code, 2);
    assert!(err.contains("nonesuch"));
}

/// The kernels chosen by CPU feature (AVX-512, AVX2, plain loops; forced lower with
/// `MXSIM_ISA`) give bit-identical GEMM results for every exact-block and windowed preset,
/// on a shape with partial tiles and partial groups of B rows, with C.
#[test]
fn gemm_same_bits_for_every_instruction_set() {
    let dir = tempfile::tempdir().unwrap();
    let (m, k, n) = (11, 200, 7);
    let pa = dir.path().join("a.npy");
    let pb = dir.path().join("b.npy");
    let pc = dir.path().join("c.npy");
    write_npy(&pa, &NpyArray::f32(vec![m, k], data(m * k, 11))).unwrap();
    write_npy(&pb, &NpyArray::f32(vec![k, n], data(k * n, 12))).unwrap();
    write_npy(&pc, &NpyArray::f32(vec![m, n], data(m * n, 13))).unwrap();
    for preset in [
        "exact",
        "ocp-fp32",
        "mxdotp",
        "blackwell-mxf4nvf4",
        "blackwell-mxf8f6f4",
        "hopper-fp8",
    ] {
        for (fa, fb) in [("mxfp4", "mxfp4"), ("mxfp8", "mxfp8"), ("mxfp8", "mxfp4")] {
            let mut outs = Vec::new();
            for isa in ["portable", "avx2", "best"] {
                let out = dir.path().join(format!("d_{isa}.npy"));
                let o = Command::new(env!("CARGO_BIN_EXE_mxsim"))
                    .env("MXSIM_ISA", isa)
                    .args([
                        "gemm",
                        "--a",
                        pa.to_str().unwrap(),
                        "--b",
                        pb.to_str().unwrap(),
                    ])
                    .args([
                        "--c",
                        pc.to_str().unwrap(),
                        "--a-format",
                        fa,
                        "--b-format",
                        fb,
                    ])
                    .args(["--datapath", preset, "--output", out.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{preset} {isa}: {o:?}");
                outs.push(f32s(&out).iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
            assert_eq!(outs[0], outs[1], "{preset} {fa}x{fb}: portable vs avx2");
            assert_eq!(outs[0], outs[2], "{preset} {fa}x{fb}: portable vs best");
        }
    }
}
