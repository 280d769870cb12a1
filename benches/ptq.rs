//! PTQ algorithm costs on one layer, each against its baseline in the same run: GPTQ against
//! RTN of the same weight, the fast Walsh-Hadamard rotation against the dense matrix product.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mxsim::mx::{MxConfig, Scheme};
use mxsim::ptq::{gptq, hessian, rtn, GptqConfig, Matrix, Rotation};

fn randm(rows: usize, cols: usize, seed: u64) -> Matrix {
    // xorshift for a dependency-free deterministic fill
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let d = (0..rows * cols)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    Matrix::from_vec(rows, cols, d).unwrap()
}

fn bench(c: &mut Criterion) {
    let mx = MxConfig::new(Scheme::Mxfp4);
    for (out, inp) in [(172usize, 64usize), (512, 512)] {
        let w = randm(out, inp, 1);
        let x = randm(1024, inp, 2);
        let h = hessian(&x);
        let mut g = c.benchmark_group(format!("layer_{out}x{inp}"));
        g.sample_size(10);
        g.bench_function("rtn (baseline)", |b| {
            b.iter(|| rtn(black_box(&w), &mx).unwrap())
        });
        g.bench_function("gptq", |b| {
            b.iter(|| gptq(black_box(&w), &h, &mx, &GptqConfig::default()).unwrap())
        });
        g.finish();
    }
    let x = randm(1024, 512, 3);
    let r = Rotation::hadamard(512, Some(1));
    let dense = r.to_matrix();
    let mut g = c.benchmark_group("rotate_1024x512");
    g.sample_size(10);
    g.bench_function("dense matmul (baseline)", |b| {
        b.iter(|| black_box(&x).matmul_t(&dense))
    });
    g.bench_function("fwht", |b| b.iter(|| r.apply_rows(black_box(&x))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
