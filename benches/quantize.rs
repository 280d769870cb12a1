//! float32 -> packed MXFP4 / MXFP8 (E4M3) quantization and back, fast path and generic path,
//! with a memcpy of the same input bytes as the baseline measured in the same run. Everything
//! runs on one thread (a one-thread rayon pool), so figures are per core.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mxsim::mx::fast::{dequantize_rows, quantize_packed_rows, quantize_rows, Kernel};
use mxsim::mx::pack::{pack_codes, unpack_codes};
use mxsim::mx::{quantize_generic, MxConfig, Scheme};
use std::time::Duration;

const ROWS: usize = 256;
const COLS: usize = 4096;

/// Deterministic LLM-like data: a smooth pseudo-random spread with a few large channels.
fn data() -> Vec<f32> {
    let mut s = 0x1234_5678_u32;
    (0..ROWS * COLS)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let u = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let gain = if (i % COLS).is_multiple_of(509) {
                60.0
            } else {
                1.0
            };
            u * 4.0 * gain
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let x = data();
    let n = x.len();
    let mut g = c.benchmark_group("formats");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(n as u64));

    let mut dst = vec![0.0f32; n];
    g.bench_function("memcpy_f32_input_bytes", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&x));
            black_box(&dst);
        })
    });

    for scheme in [Scheme::Mxfp4, Scheme::Mxfp8E4m3] {
        let cfg = MxConfig::new(scheme);
        let bits = scheme.element().bits();
        let bpr = COLS.div_ceil(32);
        let mut codes = vec![0u8; n];
        let mut scales = vec![0u8; ROWS * bpr];
        let ob = if bits == 4 { n / 2 } else { n };
        let mut packed = vec![0u8; ob];
        // fused single-pass kernel (AVX2 where available), writing the packed bytes directly
        g.bench_function(format!("{scheme}_quantize_packed_fast"), |b| {
            b.iter(|| {
                quantize_packed_rows(
                    black_box(&x),
                    COLS,
                    &cfg,
                    &mut scales,
                    &mut packed,
                    Kernel::Auto,
                )
                .unwrap();
                black_box(&packed);
            })
        });
        g.bench_function(format!("{scheme}_quantize_packed_fast_portable"), |b| {
            b.iter(|| {
                quantize_packed_rows(
                    black_box(&x),
                    COLS,
                    &cfg,
                    &mut scales,
                    &mut packed,
                    Kernel::Portable,
                )
                .unwrap();
                black_box(&packed);
            })
        });
        // two passes: one code per byte, then pack_codes (allocates its output)
        g.bench_function(format!("{scheme}_quantize_then_pack"), |b| {
            b.iter(|| {
                quantize_rows(black_box(&x), COLS, &cfg, &mut codes, &mut scales);
                black_box(pack_codes(&codes, bits))
            })
        });
        quantize_rows(&x, COLS, &cfg, &mut codes, &mut scales);
        let packed = pack_codes(&codes, bits);
        let mut out = vec![0.0f32; n];
        g.bench_function(format!("{scheme}_dequantize_packed_fast"), |b| {
            b.iter(|| {
                let c = unpack_codes(black_box(&packed), bits, n).unwrap();
                dequantize_rows(scheme.element(), &c, &scales, COLS, 32, &mut out);
                black_box(&out);
            })
        });
        g.bench_function(format!("{scheme}_quantize_packed_generic"), |b| {
            b.iter(|| {
                pool.install(|| {
                    let t = quantize_generic(black_box(&x), ROWS, COLS, &cfg).unwrap();
                    black_box(pack_codes(&t.codes, bits))
                })
            })
        });
        let t = quantize_generic(&x, ROWS, COLS, &cfg).unwrap();
        g.bench_function(format!("{scheme}_dequantize_generic"), |b| {
            b.iter(|| pool.install(|| black_box(t.dequantize_generic())))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
