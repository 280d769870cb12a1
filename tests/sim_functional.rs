//! Functional and timing from one tiling: `sim::gemm_tiled` (the datapath run in the cycle
//! simulator's tile / K-step / instruction order, accumulators carried across K steps) equals
//! `datapath::gemm` bit for bit, and executes exactly the tiling's instruction count, for every
//! shipped core preset and every scheme it supports.

use mxsim::datapath::{gemm, gemm_stats, DatapathConfig};
use mxsim::mx::{quantize_f64, MxConfig, MxTensor, Scheme};
use mxsim::sim::{gemm_tiled, Dataflow, TensorCoreConfig};

fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 33) as f64 / (1u64 << 31) as f64 - 0.5;
            // a few large values per row so blocks have different scales and alignment drops bits
            if i % 37 == 5 {
                u * 3000.0
            } else {
                u * 6.0
            }
        })
        .collect()
}

fn tensor(s: Scheme, rows: usize, k: usize, seed: u64) -> MxTensor {
    quantize_f64(&data(rows * k, seed), rows, k, &MxConfig::new(s)).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Check one GEMM; returns whether the tiling was swapped and how many K steps / folds it had.
fn check(
    core: &TensorCoreConfig,
    sa: Scheme,
    sb: Scheme,
    m: usize,
    n: usize,
    k: usize,
) -> (bool, u64) {
    let a = tensor(sa, m, k, (m * 31 + k) as u64);
    let b = tensor(sb, n, k, (n * 17 + k + 1) as u64);
    let c: Vec<f32> = data(m * n, 99).iter().map(|&x| x as f32).collect();
    let dp = DatapathConfig::load(&core.datapath_for(sa, sb).unwrap()).unwrap();
    let want = gemm(&a, &b, Some(&c), &dp).unwrap();
    let got = gemm_tiled(core, &a, &b, Some(&c), &dp).unwrap();
    let ctx = format!(
        "{} {sa} x {sb} {m}x{n}x{k} tiling {:?}",
        core.name, got.report.tiling
    );
    assert_eq!(bits(&got.d), bits(&want), "{ctx}");
    assert_eq!(got.instructions, got.report.tiling.instructions, "{ctx}");
    let st = gemm_stats(&dp, (sa, a.block_size), (sb, b.block_size), m, n, k).unwrap();
    assert_eq!(got.datapath_ops, st.instructions, "{ctx}");
    // without C as well
    let want0 = gemm(&a, &b, None, &dp).unwrap();
    let got0 = gemm_tiled(core, &a, &b, None, &dp).unwrap();
    assert_eq!(bits(&got0.d), bits(&want0), "{ctx} (no C)");
    (got.report.tiling.swapped, got.report.tiling.k_steps)
}

/// Every shipped core preset x every scheme it has an instruction for, on shapes that are not
/// multiples of the tile or instruction (and a few that span several K steps / folds).
#[test]
fn every_preset_and_scheme_equals_datapath_gemm() {
    let mut swapped = 0;
    let mut multi_k = 0;
    let mut cases = 0;
    for name in TensorCoreConfig::preset_names() {
        let core = TensorCoreConfig::preset(name).unwrap();
        let shapes: &[(usize, usize, usize)] = match core.dataflow {
            // several folds along K and N
            Dataflow::WeightStationary => &[(3, 5, 40), (2, 130, 300), (5, 129, 257)],
            Dataflow::OutputStationary => &[
                (1, 1, 1),
                (3, 5, 40),
                (7, 2, 300),
                (2, 19, 161),
                (9, 33, 100),
            ],
        };
        for s in Scheme::ALL {
            if core.instr_for(s).is_none() {
                continue;
            }
            for &(m, n, k) in shapes {
                let (sw, ks) = check(&core, s, s, m, n, k);
                swapped += sw as usize;
                multi_k += (ks > 1) as usize;
                cases += 1;
            }
        }
    }
    assert!(cases >= 50, "{cases}");
    assert!(swapped > 0, "no case exercised a swapped tiling");
    assert!(multi_k > 0, "no case had several K steps");
}

/// Mixed operand schemes (FP8 activations x FP4 weights) use the slower instruction.
#[test]
fn mixed_schemes_equal_datapath_gemm() {
    let b200 = TensorCoreConfig::preset("b200").unwrap();
    check(&b200, Scheme::Mxfp8E4m3, Scheme::Mxfp4, 5, 3, 200);
    check(&b200, Scheme::Mxfp6E2m3, Scheme::Mxfp8E5m2, 3, 7, 97);
    let mx = TensorCoreConfig::preset("mxdotp-cluster").unwrap();
    check(&mx, Scheme::Mxfp8E4m3, Scheme::Mxfp4, 9, 2, 96);
}

/// A small made-up core with a fixed tile, so the instruction count can be derived by hand:
/// instruction 4 x 8 (n_step 4) x 32, tile 8 x 16 x 64, GEMM 10 x 20 x 100.
/// Tiles: M -> rows 8 + 2, N -> cols 16 + 4; K steps 64 + 36 (K slices 32, 32 | 32, 4: 4).
/// Per K slice: tile (8,16): 2 M-blocks x 2 N-blocks = 4; (8,4): 2 x 1 = 2 (4 columns padded to
/// n_step 4, one instruction); (2,16): 1 x 2 = 2; (2,4): 1 x 1 = 1. Total 4 x (4+2+2+1) = 36.
#[test]
fn hand_derived_instruction_count() {
    let toml = r#"
name = "tiny"
clock_ghz = 1.0
cores = 2
dataflow = "output-stationary"
datapath = "ocp-fp32"
accumulators = 4096
buffer_bytes = 65536
buffer_bytes_per_cycle = 64.0
l2_bytes = 0
offchip_gbps = 100.0
double_buffer = true
allow_swap = false
[tile]
m = 8
n = 16
k = 64
[mma.mxfp8_e4m3]
m = 4
n = 8
n_step = 4
k = 32
cycles = 8
"#;
    let core = TensorCoreConfig::from_toml(toml, "tiny").unwrap();
    let s = Scheme::Mxfp8E4m3;
    let a = tensor(s, 10, 100, 1);
    let b = tensor(s, 20, 100, 2);
    let dp = DatapathConfig::preset("ocp-fp32").unwrap();
    let got = gemm_tiled(&core, &a, &b, None, &dp).unwrap();
    assert_eq!(got.instructions, 36);
    assert_eq!(got.report.tiling.instructions, 36);
    // ocp-fp32: one operation per 32-block: ceil(100 / 32) = 4 per output, 200 outputs
    assert_eq!(got.datapath_ops, 800);
    assert_eq!(bits(&got.d), bits(&gemm(&a, &b, None, &dp).unwrap()));
}

/// NaN (scale 0xFF) and infinities stay sticky across K steps; NVFP4's global scales go
/// through the epilogue once, after the last K step.
#[test]
fn nan_and_global_scales_across_k_steps() {
    let b200 = TensorCoreConfig::preset("b200").unwrap();
    let dp = DatapathConfig::preset("blackwell-mxf8f6f4").unwrap();
    let mut a = tensor(Scheme::Mxfp8E4m3, 3, 300, 5);
    let b = tensor(Scheme::Mxfp8E4m3, 4, 300, 6);
    a.scales[2] = 0xFF; // row 0, block 2 (elements 64..96: the first K step)
    let got = gemm_tiled(&b200, &a, &b, None, &dp).unwrap();
    assert!(got.report.tiling.k_steps > 1);
    assert_eq!(bits(&got.d), bits(&gemm(&a, &b, None, &dp).unwrap()));
    assert_eq!(got.d[0].to_bits(), 0x7FFF_FFFF);
    let dp4 = DatapathConfig::preset("blackwell-mxf4nvf4").unwrap();
    let a = tensor(Scheme::Nvfp4, 3, 300, 7);
    let b = tensor(Scheme::Nvfp4, 5, 300, 8);
    assert!(a.global_scale != 1.0 && b.global_scale != 1.0);
    let c: Vec<f32> = data(15, 3).iter().map(|&x| x as f32).collect();
    let got = gemm_tiled(&b200, &a, &b, Some(&c), &dp4).unwrap();
    assert_eq!(bits(&got.d), bits(&gemm(&a, &b, Some(&c), &dp4).unwrap()));
}

/// Bad input is an error, not a panic: unsupported scheme, non-default block, K mismatch.
#[test]
fn bad_input_errors() {
    let h100 = TensorCoreConfig::preset("h100-sxm").unwrap();
    let dp = DatapathConfig::preset("exact").unwrap();
    let a = tensor(Scheme::Mxfp4, 2, 64, 1);
    let e = gemm_tiled(&h100, &a, &a, None, &dp)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no MMA instruction for mxfp4"), "{e}");
    let a16 = quantize_f64(
        &data(128, 1),
        2,
        64,
        &MxConfig::new(Scheme::Mxfp8E4m3).with_block(16),
    )
    .unwrap();
    let e = gemm_tiled(&h100, &a16, &a16, None, &dp)
        .unwrap_err()
        .to_string();
    assert!(e.contains("block size 16"), "{e}");
    let a = tensor(Scheme::Mxfp8E4m3, 2, 64, 1);
    let b = tensor(Scheme::Mxfp8E4m3, 2, 32, 1);
    assert!(gemm_tiled(&h100, &a, &b, None, &dp).is_err());
}

/// The result does not depend on the number of threads.
#[test]
fn thread_count_invariant() {
    let core = TensorCoreConfig::preset("mxdotp-cluster").unwrap();
    let dp = DatapathConfig::preset("mxdotp").unwrap();
    let a = tensor(Scheme::Mxfp6E3m2, 20, 100, 3);
    let b = tensor(Scheme::Mxfp6E3m2, 9, 100, 4);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| gemm_tiled(&core, &a, &b, None, &dp).unwrap())
    };
    let (one, four) = (run(1), run(4));
    assert_eq!(bits(&one.d), bits(&four.d));
    assert_eq!(one.instructions, four.instructions);
}
