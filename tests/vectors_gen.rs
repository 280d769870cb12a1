//! Vector generation: reproducibility, file formats, and the expected outputs of cast and
//! quantize packs cross-checked against brute-force implementations written here (nearest
//! representable value found by scanning every code), not against the code under test.

use mxsim::format::{decode_f64, Format};
use mxsim::vectors::{generate, read_pack, GenSpec, Level, Op, Pack};
use std::path::Path;
use std::process::Command;

fn mxsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(args)
        .output()
        .expect("run mxsim")
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn same_arguments_give_byte_identical_files() {
    let t = tempfile::tempdir().unwrap();
    for (op, fmt) in [
        ("cast", "e4m3"),
        ("quantize", "mxfp4"),
        ("quantize", "nvfp4"),
        ("decode", "e5m2"),
    ] {
        let mut outs = Vec::new();
        for (run, seed) in [(0, "7"), (1, "7"), (2, "8")] {
            let d = t.path().join(format!("{op}-{fmt}-{run}"));
            let o = mxsim(&[
                "vectors",
                "gen",
                "--op",
                op,
                "--format",
                fmt,
                "--level",
                "2",
                "--count",
                "300",
                "--seed",
                seed,
                "--out",
                d.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            outs.push(files_of(&d));
        }
        assert_eq!(outs[0], outs[1], "{op} {fmt}: same seed, different files");
        assert_eq!(outs[0].len(), 3);
        if op != "decode" {
            assert_ne!(outs[0], outs[2], "{op} {fmt}: the seed changes nothing");
        }
    }
}

#[test]
fn manifest_describes_the_files() {
    let t = tempfile::tempdir().unwrap();
    let mut spec = GenSpec::new(Op::Quantize, "mxfp8_e4m3");
    spec.scale_rule = "rceil".parse().unwrap();
    spec.seed = 42;
    let pack = generate(&spec).unwrap();
    pack.write(t.path()).unwrap();
    let back = read_pack(t.path()).unwrap(); // verifies every SHA-256
    assert_eq!(back.rows, pack.rows);
    let m = &back.manifest;
    assert_eq!(m.op, "quantize");
    assert_eq!(m.formats["element"], "e4m3");
    assert_eq!(m.formats["scale"], "e8m0");
    assert_eq!(m.scale_rule.as_deref(), Some("rceil"));
    assert_eq!(m.block_size, Some(32));
    assert_eq!(m.seed, 42);
    assert_eq!(m.level, "1");
    assert_eq!(m.count, pack.rows.len());
    assert_eq!(m.generator, mxsim::vectors::GENERATOR_VERSION);
    // 32 f32 inputs, an 8-bit scale, 32 8-bit codes
    assert_eq!(m.fields.len(), 65);
    assert_eq!(m.line_bits, 32 * 32 + 8 + 32 * 8);
    assert_eq!(
        (m.fields[0].name.as_str(), m.fields[0].msb),
        ("x0", m.line_bits - 1)
    );
    assert_eq!(m.fields[64].lsb, 0);
    // CSV and hex hold the same values; every hex line has the declared width
    let csv = std::fs::read_to_string(t.path().join("quantize.csv")).unwrap();
    let hex = std::fs::read_to_string(t.path().join("quantize.hex")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "x0");
    assert_eq!(header[32], "scale");
    assert_eq!(header[33], "q0");
    for (c, h) in lines.zip(hex.lines()) {
        assert_eq!(c.replace(',', "_"), h);
        assert_eq!(h.replace('_', "").len() as u32 * 4, m.line_bits);
    }
    assert_eq!(hex.lines().count(), m.count);
    let files: Vec<&String> = m.files.keys().collect();
    assert_eq!(files, ["quantize.csv", "quantize.hex"]);
}

#[test]
fn bad_arguments_fail_cleanly_without_files() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("p");
    for args in [
        vec!["--op", "cast", "--format", "e9m9"],
        vec!["--op", "cast"],
        vec![
            "--op",
            "quantize",
            "--format",
            "mxfp8",
            "--scale-rule",
            "4over6",
        ],
        vec!["--op", "quantize", "--format", "mxfp8", "--block-size", "0"],
        vec!["--op", "frobnicate", "--format", "e4m3"],
        vec!["--op", "cast", "--format", "e4m3", "--level", "3"],
    ] {
        let mut a = vec!["vectors", "gen", "--out", out.to_str().unwrap()];
        a.extend(args.iter().copied());
        let o = mxsim(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!out.exists(), "{args:?} left files");
    }
}

/// Brute-force reference cast: scan every code of `fmt`, keep the nearest value (ties to the
/// code with an even last bit, i.e. an even integer significand), saturating at the largest
/// finite value. Returns (code, inexact, overflow).
fn nearest_code(fmt: Format, x: f64) -> (u8, bool, bool) {
    let maxn = fmt.max_normal();
    let neg = x < 0.0 || (x == 0.0 && x.is_sign_negative());
    let sign = if neg { fmt.sign_mask() } else { 0 };
    if x.abs() >= maxn {
        // (distances to huge inputs are not exact in f64; saturation is plain here)
        let prev = (0..fmt.code_count())
            .map(|k| decode_f64(fmt, k as u8))
            .filter(|d| d.is_finite() && *d < maxn)
            .fold(f64::NEG_INFINITY, f64::max);
        let boundary = maxn + (maxn - prev) / 2.0;
        let overflow = x.abs() > boundary || (x.abs() == boundary && fmt.max_code() & 1 == 1);
        let code = if fmt == Format::Int8 && neg {
            (-127i8) as u8
        } else {
            sign | fmt.max_code()
        };
        return (code, x.abs() != maxn, overflow);
    }
    let mut best: Option<(f64, u8)> = None;
    for c in 0..fmt.code_count() {
        let c = c as u8;
        let v = decode_f64(fmt, c);
        if !v.is_finite() || (fmt != Format::Int8 && (v.is_sign_negative() != neg)) {
            continue;
        }
        if fmt == Format::Int8 && (c == 0x80 || (v != 0.0 && (v < 0.0) != neg)) {
            continue;
        }
        let d = (v - x).abs();
        let better = match best {
            None => true,
            Some((bd, bc)) => d < bd || (d == bd && c & 1 == 0 && bc & 1 == 1),
        };
        if better {
            best = Some((d, c));
        }
    }
    let (_, c) = best.unwrap();
    let v = decode_f64(fmt, c);
    // overflow: rounding with an unbounded exponent would exceed the largest value: |x| past
    // the midpoint maxn + ulp/2, or on it when RNE rounds the tie up (the largest code is odd)
    let prev = (0..fmt.code_count())
        .map(|k| decode_f64(fmt, k as u8))
        .filter(|d| d.is_finite() && *d < maxn)
        .fold(f64::NEG_INFINITY, f64::max);
    let boundary = maxn + (maxn - prev) / 2.0;
    let overflow = x.abs() > boundary || (x.abs() == boundary && fmt.max_code() & 1 == 1);
    (c, v != x, overflow)
}

#[test]
fn cast_golden_outputs_match_brute_force_nearest_code() {
    for fmt in [
        Format::E4M3,
        Format::E5M2,
        Format::E3M2,
        Format::E2M3,
        Format::E2M1,
        Format::Int8,
    ] {
        for level in [Level::One, Level::Exhaustive] {
            let mut spec = GenSpec::new(Op::Cast, fmt.name());
            spec.level = level;
            spec.count = Some(2000);
            let pack = generate(&spec).unwrap();
            let mut checked = 0;
            for r in &pack.rows {
                let x = f32::from_bits(r[0] as u32) as f64;
                if !x.is_finite() {
                    continue;
                }
                let (code, inexact, overflow) = nearest_code(fmt, x);
                let flags = r[2];
                assert_eq!(r[1] as u8, code, "{fmt} x={x:e}");
                assert_eq!(flags & 1 == 1, inexact, "{fmt} x={x:e} inexact");
                assert_eq!(flags >> 2 & 1 == 1, overflow, "{fmt} x={x:e} overflow");
                checked += 1;
            }
            assert!(checked > 500, "{fmt}: only {checked} finite cases");
        }
    }
}

fn find_row(pack: &Pack, x: f32) -> &Vec<u64> {
    pack.rows
        .iter()
        .find(|r| r[0] == x.to_bits() as u64)
        .unwrap_or_else(|| panic!("{x} not in the pack"))
}

/// Worked E2M1 examples (values 0, 0.5, 1, 1.5, 2, 3, 4, 6; codes 0..7):
/// 2.5 is half-way between 2 (code 4) and 3 (code 5): RNE keeps the even code 4, RNA goes to 3.
/// 5 is half-way between 4 (code 6) and 6 (code 7): RNE gives code 6, RNA code 7.
/// 7 = 6 + half of the top quantum 2: rounds past 6, so it saturates to 6 with overflow.
/// 0.25 is half of the smallest subnormal 0.5: RNE gives +0 (underflow), RNA gives 0.5.
/// -1.25: between 1 (code 2) and 1.5 (code 3), tie: RNE code 2 with sign, 0xA.
#[test]
fn e2m1_cast_worked_examples() {
    let mut spec = GenSpec::new(Op::Cast, "e2m1");
    spec.level = Level::Exhaustive;
    let rne = generate(&spec).unwrap();
    spec.rounding = "rna".parse().unwrap();
    let rna = generate(&spec).unwrap();
    let (inexact, underflow, overflow) = (1, 2, 4);
    assert_eq!(find_row(&rne, 2.5)[1..], [0x4, inexact]);
    assert_eq!(find_row(&rna, 2.5)[1..], [0x5, inexact]);
    assert_eq!(find_row(&rne, 5.0)[1..], [0x6, inexact]);
    assert_eq!(find_row(&rna, 5.0)[1..], [0x7, inexact]);
    assert_eq!(find_row(&rne, 7.0)[1..], [0x7, inexact | overflow]);
    assert_eq!(find_row(&rne, 0.25)[1..], [0x0, inexact | underflow]);
    assert_eq!(find_row(&rna, 0.25)[1..], [0x1, inexact | underflow]);
    assert_eq!(find_row(&rne, -1.25)[1..], [0xA, inexact]);
    assert_eq!(find_row(&rne, 6.0)[1..], [0x7, 0]);
}

#[test]
fn exhaustive_cast_reaches_every_code() {
    for fmt in Format::ALL {
        let mut spec = GenSpec::new(Op::Cast, fmt.name());
        spec.level = Level::Exhaustive;
        let pack = generate(&spec).unwrap();
        let mut seen = vec![false; fmt.code_count() as usize];
        for r in &pack.rows {
            seen[r[1] as usize] = true;
        }
        for (c, s) in seen.iter().enumerate() {
            // every code is produced except alternative NaN encodings and INT8's -128
            // (symmetric range)
            // (saturating casts never give Inf; UE4M3 never sets the ignored sign bit)
            let special = fmt.is_nan_code(c as u8)
                || (fmt == Format::Int8 && c == 0x80)
                || (fmt == Format::UE4M3 && c >= 0x80)
                || decode_f64(fmt, c as u8).is_infinite();
            assert!(*s || special, "{fmt}: code {c:#x} never produced");
        }
    }
}

#[test]
fn decode_pack_lists_every_code_exactly() {
    for fmt in Format::ALL {
        let pack = generate(&GenSpec::new(Op::Decode, fmt.name())).unwrap();
        assert_eq!(pack.rows.len() as u32, fmt.code_count());
        for (c, r) in pack.rows.iter().enumerate() {
            assert_eq!(r[0], c as u64);
            let v = f32::from_bits(r[1] as u32) as f64;
            let want = decode_f64(fmt, c as u8);
            assert!(v == want || (v.is_nan() && want.is_nan()), "{fmt} {c}");
        }
    }
    // E4M3 0x01 is the smallest subnormal 2^-9; E8M0 0x00 is 2^-127 (an f32 subnormal)
    let p = generate(&GenSpec::new(Op::Decode, "e4m3")).unwrap();
    assert_eq!(p.rows[1][1], (2.0f32).powi(-9).to_bits() as u64);
    let p = generate(&GenSpec::new(Op::Decode, "e8m0")).unwrap();
    assert_eq!(p.rows[0][1], 0x0040_0000); // 2^-127 = 2^22 * 2^-149
    assert_eq!(p.rows[255][1], 0x7FC0_0000);
}

/// Independent FLOOR-rule quantizer: X = 2^(floor(log2 amax) - emax) clamped to 2^±127,
/// each element the brute-force nearest code of v / X.
#[test]
fn quantize_floor_golden_outputs_match_brute_force() {
    for (scheme, elem, emax) in [
        ("mxfp8_e4m3", Format::E4M3, 8),
        ("mxfp4", Format::E2M1, 2),
        ("mxfp6_e3m2", Format::E3M2, 4),
    ] {
        let mut spec = GenSpec::new(Op::Quantize, scheme);
        spec.count = Some(300);
        let pack = generate(&spec).unwrap();
        let mut checked = 0;
        for r in &pack.rows {
            let xs: Vec<f64> = r[..32]
                .iter()
                .map(|&b| f32::from_bits(b as u32) as f64)
                .collect();
            let (scale, codes) = (r[32], &r[33..]);
            if xs.iter().any(|x| !x.is_finite()) {
                assert_eq!(scale, 0xFF);
                assert!(codes.iter().all(|&c| c == 0));
                continue;
            }
            let amax = xs.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            if amax == 0.0 {
                assert_eq!(scale, 0);
                continue;
            }
            let e = (amax.log2().floor() as i32 - emax).clamp(-127, 127);
            // log2 in f64 can misround just below a power of two: confirm by comparison
            let e = if 2f64.powi(e + emax) > amax && e > -127 {
                e - 1
            } else {
                e
            };
            assert_eq!(scale, (e + 127) as u64, "{scheme} amax {amax:e}");
            for (x, &c) in xs.iter().zip(codes) {
                let y = x / 2f64.powi(e);
                let (want, _, _) = nearest_code(elem, y);
                // a zero keeps the sign of its input
                let want = if decode_f64(elem, want) == 0.0 && y.is_sign_negative() {
                    elem.sign_mask()
                } else {
                    want
                };
                assert_eq!(c as u8, want, "{scheme} x={x:e} scale 2^{e}");
            }
            checked += 1;
        }
        assert!(checked > 200, "{scheme}: {checked}");
    }
}

#[test]
fn quantize_pack_includes_the_mx_special_blocks() {
    let pack = generate(&GenSpec::new(Op::Quantize, "mxfp8_e4m3")).unwrap();
    let scales: std::collections::BTreeSet<u64> = pack.rows.iter().map(|r| r[32]).collect();
    // the E8M0 patterns 0, 1, 126, 127, 128, 253, 254 (all-max blocks under each scale whose
    // values fit f32) and 255 (NaN blocks)
    for s in [0u64, 1, 126, 127, 128, 255] {
        assert!(scales.contains(&s), "scale {s} missing: {scales:?}");
    }
    // a block of 32 zeros, and one whose elements are all the max code
    assert!(pack.rows.iter().any(|r| r[..32].iter().all(|&x| x == 0)));
    assert!(pack.rows.iter().any(|r| r[33..].iter().all(|&c| c == 0x7E)));
}

#[test]
fn nonsat_e5m2_cast_gives_infinities() {
    let mut spec = GenSpec::new(Op::Cast, "e5m2");
    spec.overflow = "nonsat".parse().unwrap();
    let pack = generate(&spec).unwrap();
    // 61440 = 57344 + 4096 (half the top quantum 8192): the tie rounds to the even
    // significand, which is past the largest value: +Inf (0x7C) with overflow|inexact
    assert_eq!(find_row(&pack, 61440.0)[1..], [0x7C, 0b101]);
    assert_eq!(find_row(&pack, f32::INFINITY)[1..], [0x7C, 0b1000]);
    assert_eq!(find_row(&pack, f32::NEG_INFINITY)[1..], [0xFC, 0b1000]);
}
