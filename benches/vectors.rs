//! Vector generation and checking speed, each against a baseline measured in the same run:
//! generating a cast pack vs only converting its inputs (the golden-model work alone), and
//! checking a dump vs only reading and hashing the pack's files.

use criterion::{criterion_group, criterion_main, Criterion};
use mxsim::format::{encode_with_flags, CastOptions};
use mxsim::vectors::{check, generate, CheckOptions, GenSpec, Level, Op};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vectors");
    let mut cast = GenSpec::new(Op::Cast, "e4m3");
    cast.level = Level::Two;
    let inputs: Vec<f64> = generate(&cast)
        .unwrap()
        .rows
        .iter()
        .map(|r| f32::from_bits(r[0] as u32) as f64)
        .collect();
    g.bench_function(
        format!("gen+render cast e4m3 level 2 ({} vectors)", inputs.len()),
        |b| b.iter(|| generate(black_box(&cast)).unwrap().render().unwrap()),
    );
    let opts = CastOptions::default();
    g.bench_function("baseline: encode_with_flags of the same inputs", |b| {
        b.iter(|| {
            inputs
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    encode_with_flags(mxsim::format::Format::E4M3, x, &opts, i as u64).0 as u64
                })
                .sum::<u64>()
        })
    });
    let mut q = GenSpec::new(Op::Quantize, "mxfp8_e4m3");
    q.count = Some(2000);
    g.bench_function("gen+render quantize mxfp8_e4m3 (2000 random blocks)", |b| {
        b.iter(|| generate(black_box(&q)).unwrap().render().unwrap())
    });
    let dir = tempfile::tempdir().unwrap();
    let pack = generate(&q).unwrap();
    pack.write(dir.path()).unwrap();
    let dump = dir.path().join("quantize.hex");
    g.bench_function(
        format!(
            "check quantize pack against itself ({} vectors)",
            pack.rows.len()
        ),
        |b| {
            b.iter(|| {
                assert!(check(dir.path(), &dump, &CheckOptions::default())
                    .unwrap()
                    .passed())
            })
        },
    );
    g.bench_function("baseline: read and SHA-256 the pack's files", |b| {
        b.iter(|| {
            for f in ["quantize.csv", "quantize.hex", "manifest.json"] {
                let bytes = std::fs::read(dir.path().join(f)).unwrap();
                black_box(mxsim::vectors::pack::sha256_hex(&bytes));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
