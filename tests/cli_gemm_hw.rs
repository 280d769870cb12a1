//! `mxsim gemm --hw`: D from the hardware's tiling equals the datapath-only `mxsim gemm` bit for
//! bit, the cycle report is printed and written, and bad combinations exit 2 writing nothing.

mod cli_support;
use cli_support::{data, mxsim};
use mxsim::io::{read_npy, write_npy, NpyArray, NpyData};
use std::path::Path;

fn f32_bits(p: &Path) -> Vec<u32> {
    match read_npy(p).unwrap().data {
        NpyData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
        _ => panic!("not f32"),
    }
}

fn inputs(dir: &Path, m: usize, k: usize, n: usize) -> (String, String, String) {
    let pa = dir.join("a.npy");
    let pb = dir.join("b.npy");
    let pc = dir.join("c.npy");
    write_npy(&pa, &NpyArray::f32(vec![m, k], data(m * k, 1))).unwrap();
    write_npy(&pb, &NpyArray::f32(vec![k, n], data(k * n, 2))).unwrap();
    write_npy(&pc, &NpyArray::f32(vec![m, n], data(m * n, 3))).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    (s(&pa), s(&pb), s(&pc))
}

/// Every shipped preset with a scheme it supports: exit 0, D equal to the datapath-only run
/// with the hardware's datapath, report printed and written as JSON with matching counts.
#[test]
fn gemm_hw_equals_datapath_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = inputs(dir.path(), 6, 300, 9);
    for (hw, fmt, dp) in [
        ("b200", "mxfp8_e4m3", "blackwell-mxf8f6f4"),
        ("b200", "nvfp4", "blackwell-mxf4nvf4"),
        ("h100-sxm", "mxfp8_e5m2", "hopper-fp8"),
        ("h100-sxm", "mxint8", "exact"),
        ("mxdotp-cluster", "mxfp6_e3m2", "mxdotp"),
        ("systolic-128", "mxfp4", "ocp-fp32"),
    ] {
        let d_hw = dir.path().join(format!("d_{hw}_{fmt}.npy"));
        let d_dp = dir.path().join(format!("e_{hw}_{fmt}.npy"));
        let rj = dir.path().join(format!("r_{hw}_{fmt}.json"));
        let common = [
            "gemm",
            "--a",
            &a,
            "--b",
            &b,
            "--c",
            &c,
            "--a-format",
            fmt,
            "--b-format",
            fmt,
        ];
        let mut args = common.to_vec();
        args.extend([
            "--hw",
            hw,
            "--output",
            d_hw.to_str().unwrap(),
            "--report-json",
            rj.to_str().unwrap(),
        ]);
        let (code, out, err) = mxsim(&args);
        assert_eq!(code, 0, "{hw} {fmt}: {err}");
        for word in [
            "cycles",
            "utilization",
            "TFLOP/s",
            "off-chip read",
            "stalls",
            "energy",
        ] {
            assert!(out.contains(word), "{hw} {fmt}: no '{word}' in {out}");
        }
        assert!(out.contains(&format!("datapath '{dp}'")), "{out}");
        let mut args = common.to_vec();
        args.extend(["--datapath", dp, "--output", d_dp.to_str().unwrap()]);
        let (code, _, err) = mxsim(&args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(f32_bits(&d_hw), f32_bits(&d_dp), "{hw} {fmt}");
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&rj).unwrap()).unwrap();
        assert_eq!(j["hardware"], hw);
        assert_eq!(j["datapath"], dp);
        assert_eq!(
            j["functional_mma_instructions"],
            j["report"]["tiling"]["instructions"]
        );
        assert!(j["report"]["cycles"].as_u64().unwrap() > 0);
        // an explicit --datapath equal to the hardware's is accepted
        let mut args = common.to_vec();
        args.extend([
            "--hw",
            hw,
            "--datapath",
            dp,
            "--output",
            d_dp.to_str().unwrap(),
        ]);
        let (code, _, err) = mxsim(&args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(f32_bits(&d_hw), f32_bits(&d_dp));
    }
}

/// Rejected runs exit 2 with a message naming the problem and write no file.
#[test]
fn gemm_hw_bad_combinations_exit_2_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = inputs(dir.path(), 3, 64, 4);
    let d = dir.path().join("d.npy");
    let rj = dir.path().join("r.json");
    let (ds, rs) = (d.to_str().unwrap(), rj.to_str().unwrap());
    let cases: [(&[&str], &str); 5] = [
        // datapath differs from the hardware's
        (
            &[
                "--a-format",
                "mxfp8",
                "--b-format",
                "mxfp8",
                "--hw",
                "b200",
                "--datapath",
                "exact",
            ],
            "differs from datapath 'blackwell-mxf8f6f4'",
        ),
        // scheme without an instruction on this hardware
        (
            &[
                "--a-format",
                "mxfp4",
                "--b-format",
                "mxfp4",
                "--hw",
                "h100-sxm",
            ],
            "no MMA instruction for mxfp4",
        ),
        // non-default block size: the cycle model counts bytes for the scheme's block
        (
            &[
                "--a-format",
                "mxfp8",
                "--b-format",
                "mxfp8",
                "--hw",
                "b200",
                "--block",
                "16",
            ],
            "block size 16",
        ),
        // unknown hardware
        (
            &[
                "--a-format",
                "mxfp8",
                "--b-format",
                "mxfp8",
                "--hw",
                "no-such-core",
            ],
            "no-such-core",
        ),
        // report without hardware
        (
            &["--a-format", "mxfp8", "--b-format", "mxfp8"],
            "--report-json needs --hw",
        ),
    ];
    for (extra, msg) in cases {
        let mut args = vec![
            "gemm",
            "--a",
            &a,
            "--b",
            &b,
            "--output",
            ds,
            "--report-json",
            rs,
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = mxsim(&args);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains(msg), "{extra:?}: {err}");
        assert!(!d.exists() && !rj.exists(), "{extra:?} left a file");
    }
}
