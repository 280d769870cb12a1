//! Dot-product and GEMM-tile packs: layouts per datapath, every code pair's product against
//! an f64 oracle, hand-derived worked examples, and GEMM tiles against per-output dots.

use mxsim::datapath::{dot, DatapathConfig, OperandRow};
use mxsim::format::{decode_f64, Format};
use mxsim::mx::Scheme;
use mxsim::vectors::{generate, GenSpec, Level, Op, Pack};

fn spec(op: Op, scheme: &str, dp: &str, level: Level) -> GenSpec {
    let mut s = GenSpec::new(op, scheme);
    s.datapath = Some(dp.to_string());
    s.level = level;
    s
}

fn field(p: &Pack, name: &str) -> usize {
    p.manifest
        .fields
        .iter()
        .position(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[test]
fn layouts_follow_the_datapath_instruction_and_blocks() {
    // (scheme, preset, K, scales per operand, bits per line)
    for (scheme, dp, k, nsc) in [
        ("mxfp8_e4m3", "ocp-fp32", 32, 1),
        ("mxfp8_e4m3", "mxdotp", 32, 1), // four 8-pair operations per block
        ("mxfp4", "mxdotp", 32, 1),      // two 16-pair operations per block
        ("mxfp6_e2m3", "mxdotp", 32, 1), // 10/11/11
        ("mxfp8_e4m3", "blackwell-mxf8f6f4", 32, 1),
        ("nvfp4", "blackwell-mxf4nvf4", 64, 4),
        ("mxfp4", "blackwell-mxf4nvf4", 64, 2),
        ("nvfp4", "ocp-fp32", 16, 1),
        ("mxfp8_e4m3", "exact", 32, 1),
    ] {
        let mut s = spec(Op::Dot, scheme, dp, Level::One);
        s.count = Some(3);
        let p = generate(&s).unwrap();
        let m = &p.manifest;
        let dpi = m.datapath.as_ref().unwrap();
        assert_eq!(dpi.k, k, "{scheme} {dp}");
        let eb = scheme
            .parse::<Scheme>()
            .unwrap()
            .element()
            .bits()
            .div_ceil(4)
            * 4;
        assert_eq!(
            m.line_bits as usize,
            2 * k * eb as usize + 2 * 8 * nsc + 64,
            "{scheme} {dp}"
        );
        assert_eq!(m.fields.last().unwrap().name, "d");
        let cfg = DatapathConfig::preset(dp).unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(
            dpi.sha256,
            mxsim::vectors::pack::sha256_hex(json.as_bytes())
        );
        assert_eq!(dpi.preset, dp);
    }
}

/// Exhaustive level: every code pair as a one-hot product with unit scales and C = +0. The
/// product of two element values has at most 8 significant bits, so every preset (RNE, RTZ,
/// 13 to 34 fraction bits) must return it exactly: the f64 product converted to f32 is the
/// oracle. NaN operands or Inf x 0 give the preset's NaN; a zero product plus +0 is +0.
#[test]
fn every_code_pair_product_is_exact_on_every_preset() {
    for dp in [
        "ocp-fp32",
        "mxdotp",
        "blackwell-mxf8f6f4",
        "hopper-fp8",
        "exact",
    ] {
        let nan_bits = DatapathConfig::preset(dp).unwrap().nan_bits;
        for (scheme, fmt) in [
            ("mxfp8_e4m3", Format::E4M3),
            ("mxfp4", Format::E2M1),
            ("mxfp6_e2m3", Format::E2M3),
        ] {
            let p = generate(&spec(Op::Dot, scheme, dp, Level::Exhaustive)).unwrap();
            let k = p.manifest.datapath.as_ref().unwrap().k;
            let n = fmt.code_count() as usize;
            let (ia, ib, id) = (field(&p, "a0"), field(&p, "b0"), field(&p, "d"));
            for (v, row) in p.rows.iter().take(n * n).enumerate() {
                let (x, y) = ((v / n) as u8, (v % n) as u8);
                assert_eq!((row[ia] as u8, row[ib] as u8), (x, y));
                let (a, b) = (decode_f64(fmt, x), decode_f64(fmt, y));
                let want = if a.is_nan() || b.is_nan() {
                    nan_bits
                } else {
                    let pr = (a * b) as f32;
                    if pr == 0.0 {
                        0
                    } else {
                        pr.to_bits()
                    }
                };
                assert_eq!(
                    row[id] as u32, want,
                    "{dp} {scheme} {x:#x} x {y:#x} (K={k})"
                );
            }
        }
    }
}

fn find(p: &Pack, pred: impl Fn(&[u64]) -> bool) -> &Vec<u64> {
    p.rows
        .iter()
        .find(|r| pred(r))
        .expect("pattern vector present")
}

/// All-max E4M3 blocks: 32 products of 448 * 448 = 200704 sum to 6422528 (< 2^24, exact in
/// FP32) on every preset; times 2^(254-127) * 2^(254-127) it overflows; times 2^-127 * 2^-127
/// it is far below FP32's smallest subnormal 2^-149.
#[test]
fn all_max_blocks_worked_examples() {
    for (dp, inf, zero) in [
        ("ocp-fp32", 0x7F80_0000u32, 0u32),
        ("blackwell-mxf8f6f4", 0x7F7F_FFFF, 0), // RTZ: overflow gives the largest finite
        ("mxdotp", 0x7F80_0000, 0),
    ] {
        let p = generate(&spec(Op::Dot, "mxfp8_e4m3", dp, Level::Two)).unwrap();
        let (ia, isa, isb, ic, id) = (
            field(&p, "a0"),
            field(&p, "sa0"),
            field(&p, "sb0"),
            field(&p, "c"),
            field(&p, "d"),
        );
        let ib = field(&p, "b0");
        let allmax = |sa: u64, sb: u64| {
            find(&p, |r| {
                (0..32).all(|i| r[ia + i] == 0x7E && r[ib + i] == 0x7E)
                    && r[isa] == sa
                    && r[isb] == sb
                    && r[ic] == 0
            })[id] as u32
        };
        assert_eq!(allmax(127, 127), 6422528.0f32.to_bits(), "{dp}");
        assert_eq!(allmax(128, 127), 12845056.0f32.to_bits(), "{dp}");
        assert_eq!(allmax(254, 254), inf, "{dp}");
        assert_eq!(allmax(0, 0), zero, "{dp}");
    }
}

/// C = 1 + 2^-23 (odd last bit) plus one product of exactly 2^-24 (half an FP32 ulp of C):
/// under RNE the tie goes to the even neighbour 1 + 2^-22 (0x3F800002); under RTZ (Blackwell)
/// it stays 0x3F800001. With C = 1 (even), RNE stays 1.0.
#[test]
fn fp32_tie_worked_examples() {
    for (dp, odd_tie, even_tie) in [
        ("ocp-fp32", 0x3F80_0002u32, 0x3F80_0000u32),
        ("exact", 0x3F80_0002, 0x3F80_0000),
        ("blackwell-mxf8f6f4", 0x3F80_0001, 0x3F80_0000),
    ] {
        let p = generate(&spec(Op::Dot, "mxfp8_e4m3", dp, Level::One)).unwrap();
        let (ia, ib, isa, isb, ic, id) = (
            field(&p, "a0"),
            field(&p, "b0"),
            field(&p, "sa0"),
            field(&p, "sb0"),
            field(&p, "c"),
            field(&p, "d"),
        );
        let tie = |c: u64| {
            find(&p, |r| {
                r[ic] == c
                    && r[ia] == 0x38
                    && r[ib] == 0x38
                    && (1..32).all(|i| r[ia + i] == 0 && r[ib + i] == 0)
                    && r[isa] as i32 + r[isb] as i32 - 254 == -24
            })[id] as u32
        };
        assert_eq!(tie(0x3F80_0001), odd_tie, "{dp}");
        assert_eq!(tie(0x3F80_0000), even_tie, "{dp}");
    }
}

#[test]
fn nan_scales_give_the_preset_nan() {
    for (dp, nan) in [
        ("ocp-fp32", 0x7FC0_0000u64),
        ("blackwell-mxf8f6f4", 0x7FFF_FFFF),
    ] {
        let p = generate(&spec(Op::Dot, "mxfp4", dp, Level::One)).unwrap();
        let (isa, id) = (field(&p, "sa0"), field(&p, "d"));
        let rows: Vec<_> = p.rows.iter().filter(|r| r[isa] == 0xFF).collect();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r[id] == nan), "{dp}");
    }
}

/// A GEMM tile's D equals the per-output dot of A's row i and B's row j with C[i][j]: checks
/// the tile layout (a<i>_<k>, b<j>_<k>, c<i>_<j>, d<i>_<j>) against the one-output model.
#[test]
fn gemm_tile_outputs_equal_per_output_dots() {
    for (scheme, dp) in [
        ("mxfp8_e4m3", "blackwell-mxf8f6f4"),
        ("nvfp4", "blackwell-mxf4nvf4"),
        ("mxfp4", "mxdotp"),
    ] {
        let mut s = spec(Op::GemmTile, scheme, dp, Level::One);
        s.tile = Some((4, 3));
        s.count = Some(20);
        let p = generate(&s).unwrap();
        let sch: Scheme = scheme.parse().unwrap();
        let k = p.manifest.datapath.as_ref().unwrap().k;
        let bs = sch.default_block();
        let nsc = k / bs;
        let cfg = DatapathConfig::preset(dp).unwrap();
        assert!(p.rows.len() > 10);
        for r in &p.rows {
            for i in 0..4 {
                for j in 0..3 {
                    let a0 = field(&p, &format!("a{i}_0"));
                    let sa0 = field(&p, &format!("sa{i}_0"));
                    let b0 = field(&p, &format!("b{j}_0"));
                    let sb0 = field(&p, &format!("sb{j}_0"));
                    let codes = |at: usize, n: usize| {
                        r[at..at + n].iter().map(|&x| x as u8).collect::<Vec<u8>>()
                    };
                    let (ac, asc, bc, bsc) =
                        (codes(a0, k), codes(sa0, nsc), codes(b0, k), codes(sb0, nsc));
                    let c = f32::from_bits(r[field(&p, &format!("c{i}_{j}"))] as u32);
                    let want = dot(
                        OperandRow {
                            scheme: sch,
                            block_size: bs,
                            codes: &ac,
                            scales: &asc,
                        },
                        OperandRow {
                            scheme: sch,
                            block_size: bs,
                            codes: &bc,
                            scales: &bsc,
                        },
                        c,
                        &cfg,
                    )
                    .unwrap();
                    assert_eq!(
                        r[field(&p, &format!("d{i}_{j}"))] as u32,
                        want.to_bits(),
                        "{scheme} {dp} ({i},{j})"
                    );
                }
            }
        }
    }
}

#[test]
fn dot_needs_a_datapath_and_rejects_unknown_ones() {
    let s = GenSpec::new(Op::Dot, "mxfp8_e4m3");
    assert!(generate(&s).unwrap_err().to_string().contains("--datapath"));
    let s = spec(Op::Dot, "mxfp8_e4m3", "no-such-chip", Level::One);
    assert!(generate(&s).is_err());
}

/// Operands of different formats (Blackwell mxf8f6f4 takes FP8 x FP4), and a datapath from a
/// TOML file rather than a preset name: the manifest names the file and hashes the config, and
/// the file's outputs equal the preset's when the content is the same.
#[test]
fn mixed_formats_and_config_files() {
    let mut s = spec(Op::Dot, "mxfp8_e4m3", "blackwell-mxf8f6f4", Level::One);
    s.b_format = Some("mxfp4".into());
    s.count = Some(50);
    let p = generate(&s).unwrap();
    assert_eq!(p.manifest.formats["a"], "mxfp8_e4m3");
    assert_eq!(p.manifest.formats["b"], "mxfp4");
    // 32 8-bit A codes, 32 4-bit B codes, two scales, c, d
    assert_eq!(p.manifest.line_bits, 32 * 8 + 32 * 4 + 16 + 64);

    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("chip.toml");
    std::fs::write(&f, DatapathConfig::preset("mxdotp").unwrap().to_toml()).unwrap();
    let mut from_file = spec(Op::Dot, "mxfp4", f.to_str().unwrap(), Level::One);
    from_file.count = Some(50);
    let mut from_preset = spec(Op::Dot, "mxfp4", "mxdotp", Level::One);
    from_preset.count = Some(50);
    let (pf, pp) = (
        generate(&from_file).unwrap(),
        generate(&from_preset).unwrap(),
    );
    assert_eq!(pf.rows, pp.rows);
    let (df, dp) = (pf.manifest.datapath.unwrap(), pp.manifest.datapath.unwrap());
    assert_eq!(df.sha256, dp.sha256);
    assert!(df.preset.contains("chip.toml"), "{}", df.preset);
}
