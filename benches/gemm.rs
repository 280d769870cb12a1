//! Bit-exact GEMM throughput per datapath preset against a float32 GEMM (`matrixmultiply`)
//! of the same shape, measured in the same run. Shape from `MXSIM_GEMM_BENCH="M,N,K"`
//! (default 128,512,1024); MXFP4 and MXFP8 (E4M3) operands, random data, floor scales.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mxsim::datapath::{gemm, preset_names, DatapathConfig};
use mxsim::mx::{quantize, MxConfig, Scheme};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn shape() -> (usize, usize, usize) {
    let s = std::env::var("MXSIM_GEMM_BENCH").unwrap_or_else(|_| "128,512,1024".into());
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse().expect("M,N,K"))
        .collect();
    (v[0], v[1], v[2])
}

fn bench(c: &mut Criterion) {
    let (m, n, k) = shape();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let a: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let bt: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let mut g = c.benchmark_group(format!("gemm_{m}x{n}x{k}"));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements((m * n * k) as u64));
    g.bench_function("f32_matrixmultiply", |bch| {
        let mut d = vec![0f32; m * n];
        bch.iter(|| unsafe {
            // A: m x k row-major; B = bt^T: k x n with strides (1, k)
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                bt.as_ptr(),
                1,
                k as isize,
                0.0,
                d.as_mut_ptr(),
                n as isize,
                1,
            );
            std::hint::black_box(&d);
        })
    });
    for scheme in [Scheme::Mxfp4, Scheme::Mxfp8E4m3] {
        let ta = quantize(&a, m, k, &MxConfig::new(scheme)).unwrap();
        let tb = quantize(&bt, n, k, &MxConfig::new(scheme)).unwrap();
        for name in preset_names() {
            let cfg = DatapathConfig::preset(name).unwrap();
            g.bench_function(format!("{name}/{scheme}"), |bch| {
                bch.iter(|| std::hint::black_box(gemm(&ta, &tb, None, &cfg).unwrap()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
