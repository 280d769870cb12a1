//! Validation of the cycle simulator: roofline agreement, instruction-K scaling, SCALE-Sim's
//! analytical weight-stationary count, hand-derived output-stationary cycles, utilization
//! bounds, determinism and error handling.

use mxsim::mx::Scheme;
use mxsim::sim::llm::{simulate_model, LlmShape, Phase, Workload};
use mxsim::sim::{simulate_gemm, tiling, GemmShape, TensorCoreConfig, TileOverride};
use proptest::prelude::*;

const FP8: Scheme = Scheme::Mxfp8E4m3;
const FP4: Scheme = Scheme::Mxfp4;

fn unlimited_memory(mut c: TensorCoreConfig) -> TensorCoreConfig {
    c.offchip_gbps = f64::INFINITY;
    c.l2_bytes_per_cycle = f64::INFINITY;
    c.buffer_bytes_per_cycle = f64::INFINITY;
    c
}

/// Large, well-tiled GEMMs (compute-bound, and memory-bound with a skinny M) land within 5%
/// of the roofline bound max(compute at peak, compulsory bytes at full bandwidth), and never
/// below it.
#[test]
fn large_gemms_within_5_percent_of_roofline() {
    let cases = [
        ("b200", 8192, 8192, 8192, FP8),
        ("b200", 8192, 8192, 8192, FP4),
        ("b200", 8192, 8192, 8192, Scheme::Nvfp4),
        ("h100-sxm", 8192, 8192, 8192, FP8),
        // Memory-bound: a GEMV-like decode GEMM streams the weights once.
        ("b200", 16, 28672, 8192, FP8),
        ("h100-sxm", 16, 28672, 8192, FP8),
    ];
    for (hw, m, n, k, s) in cases {
        let cfg = TensorCoreConfig::preset(hw).unwrap();
        let r = simulate_gemm(&cfg, &GemmShape::new(m, n, k, s, s)).unwrap();
        let ratio = r.cycles as f64 / r.roofline_cycles as f64;
        assert!(
            (1.0..=1.05).contains(&ratio),
            "{hw} {m}x{n}x{k} {s}: cycles {} vs roofline {} (ratio {ratio:.4})",
            r.cycles,
            r.roofline_cycles
        );
    }
}

/// Doubling K per instruction at the same instruction time (Blackwell kind::mxf4nvf4, K = 64,
/// against kind::mxf8f6f4, K = 32) halves the MMA cycles exactly for the same tiling, and the
/// total of a compute-bound GEMM to within 3%.
#[test]
fn doubling_instruction_k_halves_compute_bound_cycles() {
    let mut cfg = TensorCoreConfig::preset("b200").unwrap();
    cfg.tile = Some(TileOverride {
        m: 128,
        n: 256,
        k: 128,
    });
    let shape8 = GemmShape::new(8192, 8192, 8192, FP8, FP8);
    let shape4 = GemmShape::new(8192, 8192, 8192, FP4, FP4);
    let r8 = simulate_gemm(&cfg, &shape8).unwrap();
    let r4 = simulate_gemm(&cfg, &shape4).unwrap();
    // 8192 / 32 = 256 K-instructions per tile against 8192 / 64 = 128.
    assert_eq!(r8.compute_cycles, 2 * r4.compute_cycles);
    assert_eq!(r8.tiling.instructions, 2 * r4.tiling.instructions);
    let ratio = r8.cycles as f64 / r4.cycles as f64;
    assert!((1.94..=2.06).contains(&ratio), "ratio {ratio}");
    assert_eq!(r8.bound.to_string(), "compute");
    assert_eq!(r4.bound.to_string(), "compute");

    // The systolic array: FP4 holds 2 x 128 rows of K per fold, so half the folds.
    let sys = unlimited_memory(TensorCoreConfig::preset("systolic-128").unwrap());
    let a = simulate_gemm(
        &sys,
        &GemmShape::new(64, 256, 1024, Scheme::Mxint8, Scheme::Mxint8),
    )
    .unwrap();
    let b = simulate_gemm(&sys, &GemmShape::new(64, 256, 1024, FP4, FP4)).unwrap();
    assert_eq!(a.cycles, 2 * b.cycles);
}

/// SCALE-Sim (Samajdar et al., ISPASS 2020): a weight-stationary R x C array takes
/// 2R + C + T - 2 cycles per fold, times ceil(K/R) * ceil(N/C) folds, when memory never stalls.
#[test]
fn weight_stationary_matches_scale_sim_formula() {
    let cfg = unlimited_memory(TensorCoreConfig::preset("systolic-128").unwrap());
    let int8 = Scheme::Mxint8;
    // Single fold: K = 128 = R, N = 128 = C, T = M = 100.
    // 2 * 128 + 128 + 100 - 2 = 256 + 128 + 98 = 482.
    let r = simulate_gemm(&cfg, &GemmShape::new(100, 128, 128, int8, int8)).unwrap();
    assert_eq!(r.tiling.instructions, 1);
    assert_eq!(r.cycles, 482);
    assert_eq!(r.compute_cycles, 482);

    // Multi-fold: K = 300 -> ceil(300/128) = 3 folds of K, N = 200 -> ceil(200/128) = 2 folds
    // of N, 6 folds in all; T = M = 64: 2 * 128 + 128 + 64 - 2 = 446 per fold;
    // 6 * 446 = 2676.
    let r = simulate_gemm(&cfg, &GemmShape::new(64, 200, 300, int8, int8)).unwrap();
    assert_eq!(r.tiling.instructions, 6);
    assert_eq!(r.cycles, 2676);

    // Two independent GEMMs of the single-fold shape: 2 * 482 = 964.
    let r = simulate_gemm(
        &cfg,
        &GemmShape::new(100, 128, 128, int8, int8).with_count(2),
    )
    .unwrap();
    assert_eq!(r.cycles, 964);

    // With the shipped (finite) memory the compute part is unchanged and stalls only add.
    let real = TensorCoreConfig::preset("systolic-128").unwrap();
    let r = simulate_gemm(&real, &GemmShape::new(64, 200, 300, int8, int8)).unwrap();
    assert_eq!(r.compute_cycles, 2676);
    assert!(r.cycles > 2676);
    assert_eq!(r.stalls.total(), r.cycles);
}

/// A small output-stationary case derived by hand on the MXDOTP cluster preset
/// (instruction 8 x 1 x 8, 1 cycle; pipeline latency 4; 64 B/cycle off-chip; 256 B/cycle TCDM).
#[test]
fn output_stationary_hand_derived_cycles() {
    let mut cfg = TensorCoreConfig::preset("mxdotp-cluster").unwrap();
    cfg.tile = Some(TileOverride { m: 8, n: 1, k: 64 });
    let shape = GemmShape::new(16, 2, 64, FP8, FP8);
    // Tiles: 16/8 = 2 along M, 2/1 = 2 along N: 4 tiles, one K stage (64 = tile_k).
    // Per tile: ceil(8/8) = 1 row of instructions x ceil(64/8) = 8 along K x 1 along N
    // = 8 instructions of 1 cycle = 8 cycles.
    //
    // (a) Unlimited memory: each tile takes 8 + latency 4 = 12 cycles; 4 tiles = 48.
    let r = simulate_gemm(&unlimited_memory(cfg.clone()), &shape).unwrap();
    assert_eq!(r.tiling.instructions, 32);
    assert_eq!(r.cycles, 48);
    assert_eq!(r.stalls.compute, 32);
    assert_eq!(r.stalls.pipeline, 16);
    // Utilization: 16 * 2 * 64 = 2048 MACs over 48 cycles x 64 MAC/cycle = 2048 / 3072.
    assert!((r.mac_utilization - 2048.0 / 3072.0).abs() < 1e-12);

    // (b) Shipped memory. Bytes per tile: A = 8 rows x (64 FP8 bytes + 64/32 = 2 scale
    // bytes) = 528, B = 1 row x 66 = 66, stored C = 8 x 1 x 2 (BF16) = 16: 610 bytes at
    // 64 B/cycle = ceil(9.53) = 10 cycles. One K stage, so nothing overlaps inside a tile:
    // max(8, 10) + min(8, 10) / 1 + 4 = 10 + 8 + 4 = 22 cycles per tile, 88 in all.
    // (TCDM reads: 594 bytes at 256 B/cycle = 3 cycles < 8, no buffer stall.)
    let r = simulate_gemm(&cfg, &shape).unwrap();
    assert_eq!(r.cycles, 88);
    assert_eq!(r.stalls.offchip_bandwidth, 4 * 2);
    assert_eq!(r.stalls.fill, 4 * 8);
    assert_eq!(r.offchip_read_bytes, 4 * 594);
    assert_eq!(r.offchip_scale_bytes, 4 * (8 * 2 + 2));
    assert_eq!(r.offchip_write_bytes, 4 * 16);
    assert_eq!(r.bound.to_string(), "memory");
}

/// Scale bytes are charged per format: NVFP4 moves one UE4M3 scale per 16 elements (plus
/// a 4-byte tensor scale per operand), MXFP4 one E8M0 per 32.
#[test]
fn scale_bytes_follow_the_format() {
    use mxsim::sim::{row_bytes, scale_bytes};
    // 4096 FP4 elements = 2048 bytes; scales 4096/32 = 128 (MX) or 4096/16 = 256 (NVFP4).
    assert_eq!(row_bytes(FP4, 4096), 2048 + 128);
    assert_eq!(row_bytes(Scheme::Nvfp4, 4096), 2048 + 256);
    // FP6: 4096 * 6 / 8 = 3072 bytes.
    assert_eq!(row_bytes(Scheme::Mxfp6E2m3, 4096), 3072 + 128);
    assert_eq!(scale_bytes(FP8, 33), 2);
    let cfg = TensorCoreConfig::preset("b200").unwrap();
    let mx = simulate_gemm(&cfg, &GemmShape::new(1, 4096, 4096, FP4, FP4)).unwrap();
    let nv = simulate_gemm(
        &cfg,
        &GemmShape::new(1, 4096, 4096, Scheme::Nvfp4, Scheme::Nvfp4),
    )
    .unwrap();
    assert!(nv.offchip_scale_bytes > mx.offchip_scale_bytes);
    // Weights dominate: 4096 rows x 128 extra scale bytes, plus the 8 tensor-scale bytes.
    assert!(nv.offchip_read_bytes - mx.offchip_read_bytes >= 4096 * 128 + 8);
}

fn supported(cfg: &TensorCoreConfig) -> Vec<Scheme> {
    Scheme::ALL
        .iter()
        .copied()
        .filter(|&s| cfg.instr_for(s).is_some())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// On every preset and random shapes: utilization in [0, 1], the stall breakdown sums to
    /// the cycles, cycles never beat the roofline, executed MACs cover the useful ones, and
    /// the tiling covers the problem.
    #[test]
    fn utilization_never_exceeds_one(
        m in 1u64..3000, n in 1u64..3000, k in 1u64..3000, count in 1u64..4,
        hw in 0usize..4, sa in 0usize..7, sb in 0usize..7,
    ) {
        let cfg = TensorCoreConfig::preset(TensorCoreConfig::preset_names()[hw]).unwrap();
        let sup = supported(&cfg);
        let a = sup[sa % sup.len()];
        let b = sup[sb % sup.len()];
        let shape = GemmShape::new(m, n, k, a, b).with_count(count);
        let r = simulate_gemm(&cfg, &shape).unwrap();
        prop_assert!(r.mac_utilization > 0.0 && r.mac_utilization <= 1.0);
        let peak = cfg.peak_tflops(a, b).unwrap() * 1e12 / 2.0 / (cfg.clock_ghz * 1e9);
        prop_assert!(r.macs as f64 <= r.cycles as f64 * peak * (1.0 + 1e-12));
        prop_assert_eq!(r.stalls.total(), r.cycles);
        prop_assert!(r.cycles >= r.roofline_cycles);
        prop_assert!(r.executed_macs >= r.macs);
        let t = &r.tiling;
        prop_assert!(t.tiles_m * t.tile_m >= t.m && t.tiles_n * t.tile_n >= t.n);
        prop_assert!(t.k_steps * t.tile_k >= t.k);
        prop_assert_eq!(tiling(&cfg, &shape).unwrap(), r.tiling.clone());
    }
}

/// The same workload gives identical reports whatever the rayon thread count.
#[test]
fn deterministic_across_thread_counts() {
    let cfg = TensorCoreConfig::preset("b200").unwrap();
    let model = LlmShape::load("llama-3.1-8b").unwrap();
    let w = Workload {
        phase: Phase::Prefill,
        tokens: 2048,
        batch: 1,
        context: 0,
        weights: FP4,
        activations: FP8,
        kv: FP8,
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| simulate_model(&cfg, &model, &w).unwrap())
    };
    let one = run(1);
    let two = run(2);
    let four = run(4);
    assert_eq!(one, two);
    assert_eq!(one, four);
    assert_eq!(
        serde_json::to_string(&one).unwrap(),
        serde_json::to_string(&four).unwrap()
    );
    // Whole model = layers x block + lm_head.
    let lm = one.rows.iter().find(|r| r.name == "lm_head").unwrap();
    assert_eq!(
        one.totals.model_cycles,
        32 * one.totals.block_cycles + lm.report.cycles
    );
}

/// Every shipped preset and model loads, and every model runs on every preset in both phases.
#[test]
fn every_preset_runs_every_model() {
    for hw in TensorCoreConfig::preset_names() {
        let cfg = TensorCoreConfig::preset(hw).unwrap();
        let s = supported(&cfg)[0];
        for m in LlmShape::preset_names() {
            let model = LlmShape::load(m).unwrap();
            assert!(!model.source.is_empty());
            for phase in [Phase::Prefill, Phase::Decode] {
                let w = Workload {
                    phase,
                    tokens: if phase == Phase::Prefill { 128 } else { 1 },
                    batch: 2,
                    context: if phase == Phase::Prefill { 0 } else { 512 },
                    weights: s,
                    activations: s,
                    kv: s,
                };
                let r = simulate_model(&cfg, &model, &w).unwrap();
                assert_eq!(r.rows.len(), 10);
                assert!(r.totals.model_cycles > 0);
                assert!(r.totals.mac_utilization <= 1.0);
            }
        }
    }
}

/// stories260K's shape matches its checkpoint header (read from the shared model file).
#[test]
fn stories260k_shape_matches_checkpoint_header() {
    let dir = std::env::var("MXSIM_MODELS").unwrap_or_else(|_| "../shared/models".into());
    let path = std::path::Path::new(&dir).join("stories260K.bin");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set MXSIM_MODELS)", path.display()));
    let h: Vec<i32> = (0..7)
        .map(|i| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()))
        .collect();
    let s = LlmShape::load("stories260k").unwrap();
    assert_eq!(h[0] as u64, s.hidden_size);
    assert_eq!(h[1] as u64, s.intermediate_size);
    assert_eq!(h[2] as u64, s.num_layers);
    assert_eq!(h[3] as u64, s.num_heads);
    assert_eq!(h[4] as u64, s.num_kv_heads);
    assert_eq!(h[5].unsigned_abs() as u64, s.vocab_size);
    assert_eq!(s.head_dim * s.num_heads, s.hidden_size);
}

fn err_of(text: &str) -> String {
    TensorCoreConfig::from_toml(text, "test.toml")
        .unwrap_err()
        .to_string()
}

const MINIMAL: &str = r#"
name = "t"
clock_ghz = 1.0
cores = 1
dataflow = "output-stationary"
datapath = "exact"
accumulators = 64
buffer_bytes = 4096
buffer_bytes_per_cycle = 64.0
offchip_gbps = 10.0
double_buffer = true
[mma.mxfp8]
m = 8
n = 8
k = 32
cycles = 4
"#;

/// Bad hardware files give errors that name the file and the problem.
#[test]
fn bad_config_files_give_clear_errors() {
    let ok = TensorCoreConfig::from_toml(MINIMAL, "test.toml").unwrap();
    assert_eq!(ok.instr_for(FP8).unwrap().k, 32);
    let e = err_of(&MINIMAL.replace("cores = 1", "cores = 1\ncorse = 2"));
    assert!(e.contains("test.toml") && e.contains("corse"), "{e}");
    let e = err_of(&MINIMAL.replace("clock_ghz = 1.0\n", ""));
    assert!(e.contains("clock_ghz"), "{e}");
    let e = err_of(&MINIMAL.replace("clock_ghz = 1.0", "clock_ghz = -1.0"));
    assert!(e.contains("clock_ghz must be > 0"), "{e}");
    let e = err_of(&MINIMAL.replace("[mma.mxfp8]", "[mma.fp9]"));
    assert!(
        e.contains("mma.fp9") && e.contains("unknown MX format"),
        "{e}"
    );
    let e = err_of(&MINIMAL.replace("cycles = 4", "cycles = 0"));
    assert!(e.contains("cycles"), "{e}");
    let e = err_of(&MINIMAL.replace("accumulators = 64", "accumulators = 32"));
    assert!(e.contains("accumulators"), "{e}");
    let e = err_of(&MINIMAL.replace("output-stationary", "weight-stationary"));
    assert!(e.contains("[array]"), "{e}");
    let e = err_of(&MINIMAL.replace("output-stationary", "row-stationary"));
    assert!(
        e.contains("dataflow") || e.contains("row-stationary"),
        "{e}"
    );
    let e = err_of("not toml at all [");
    assert!(e.contains("test.toml"), "{e}");
    let e = TensorCoreConfig::load("no-such-chip")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-chip") && e.contains("b200"), "{e}");
    // A scheme the hardware lacks.
    let h100 = TensorCoreConfig::preset("h100-sxm").unwrap();
    let e = simulate_gemm(&h100, &GemmShape::new(64, 64, 64, FP4, FP4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no MMA instruction for mxfp4"), "{e}");
    // A buffer too small for any tile.
    let tiny = TensorCoreConfig::from_toml(
        &MINIMAL.replace("buffer_bytes = 4096", "buffer_bytes = 16"),
        "t",
    )
    .unwrap();
    let e = simulate_gemm(&tiny, &GemmShape::new(64, 64, 64, FP8, FP8))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tile fits"), "{e}");
    let e = simulate_gemm(&ok, &GemmShape::new(0, 64, 64, FP8, FP8))
        .unwrap_err()
        .to_string();
    assert!(e.contains("M = 0"), "{e}");
}

/// Bad model files give errors that name the file and the field.
#[test]
fn bad_model_files_give_clear_errors() {
    let good = include_str!("../models/llm/stories260k.json");
    LlmShape::from_json(good, "m.json").unwrap();
    let e = LlmShape::from_json(
        &good.replace("\"num_kv_heads\": 4", "\"num_kv_heads\": 3"),
        "m.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("m.json") && e.contains("num_kv_heads"), "{e}");
    let e = LlmShape::from_json(
        &good.replace("\"num_layers\": 5", "\"num_layers\": 0"),
        "m.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("num_layers must be >= 1"), "{e}");
    let e = LlmShape::from_json(&good.replace("\"vocab_size\": 512,", ""), "m.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("vocab_size"), "{e}");
    let e = LlmShape::from_json(
        &good.replace("\"hidden_size\": 64", "\"hidden_size\": -64"),
        "m.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("m.json"), "{e}");
    let e = LlmShape::load("gpt-9").unwrap_err().to_string();
    assert!(e.contains("gpt-9") && e.contains("llama-3.1-8b"), "{e}");
}

/// The CLI: a table plus CSV and JSON files; bad input exits 2 with a message and leaves no
/// output file behind.
#[test]
fn perf_cli_writes_csv_and_json_and_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out.csv");
    let json = dir.path().join("out.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args([
            "perf",
            "--hw",
            "b200",
            "--model",
            "stories260k",
            "--phase",
            "prefill",
            "--tokens",
            "64",
            "--weights",
            "mxfp4",
            "--activations",
            "mxfp8",
            "--csv",
        ])
        .arg(&csv)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    for g in [
        "q", "k", "v", "o", "gate", "up", "down", "qk", "pv", "lm_head",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{g} "))),
            "{g}\n{table}"
        );
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 1 + 10 + 2);
    assert!(text.lines().last().unwrap().starts_with("model,"));
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["rows"].as_array().unwrap().len(), 10);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "clock_ghz = 'fast'").unwrap();
    let csv2 = dir.path().join("never.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(["perf", "--hw"])
        .arg(&bad)
        .args([
            "--model",
            "stories260k",
            "--phase",
            "decode",
            "--weights",
            "mxfp8",
            "--activations",
            "mxfp8",
            "--csv",
        ])
        .arg(&csv2)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mxsim: error:") && err.contains("bad.toml"),
        "{err}"
    );
    assert!(!csv2.exists());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxsim"))
        .args(["hw", "show", "b200"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("tcgen05"));
}
