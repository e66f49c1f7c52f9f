//! Per-kernel throughput at SmolLM2's shapes, in GB/s of weight bytes (criterion's
//! throughput) — and GFLOP/s, printed once per kernel at the end.
//!
//! Decode streams ~97 MB of weights per token, far more than any cache, so each benchmark
//! rotates through copies of its matrix totalling about 128 MB: the figures are for the
//! memory-bound regime decode runs in, not for a matrix sitting in L2.
//!
//!     cargo bench --bench kernels

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qgraph::kernels::{table, BlockQ8Act, GemvFn, KernelLevel};
use qgraph::quant::{quantize, GgmlType};
use qgraph::sample::rng::SplitMix64;

const STREAM_BYTES: usize = 128 << 20;

struct Case {
    name: &'static str,
    dtype: GgmlType,
    rows: usize,
    cols: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "attn_q 576x576",
        dtype: GgmlType::Q4_1,
        rows: 576,
        cols: 576,
    },
    Case {
        name: "ffn_up 1536x576",
        dtype: GgmlType::Q4_1,
        rows: 1536,
        cols: 576,
    },
    Case {
        name: "ffn_down 576x1536",
        dtype: GgmlType::Q4_1,
        rows: 576,
        cols: 1536,
    },
    Case {
        name: "output 49152x576",
        dtype: GgmlType::Q8_0,
        rows: 49152,
        cols: 576,
    },
    Case {
        name: "q4_0 1536x576",
        dtype: GgmlType::Q4_0,
        rows: 1536,
        cols: 576,
    },
    Case {
        name: "f16 576x576",
        dtype: GgmlType::F16,
        rows: 576,
        cols: 576,
    },
    Case {
        name: "f32 576x576",
        dtype: GgmlType::F32,
        rows: 576,
        cols: 576,
    },
];

fn bench_gemv(c: &mut Criterion) {
    let mut rng = SplitMix64(7);
    let mut gflops = Vec::new();
    for case in CASES {
        let w: Vec<f32> = (0..case.rows * case.cols).map(|_| rng.next_f32()).collect();
        let bytes = quantize(case.dtype, &w).unwrap();
        let copies = (STREAM_BYTES / bytes.len()).max(1);
        // 8-byte aligned copies, one after another.
        let stride = bytes.len().div_ceil(8);
        let mut buf = vec![0u64; stride * copies];
        for i in 0..copies {
            bytemuck::cast_slice_mut::<u64, u8>(&mut buf[i * stride..])[..bytes.len()]
                .copy_from_slice(&bytes);
        }
        let x: Vec<f32> = (0..case.cols).map(|_| rng.next_f32()).collect();
        let mut xq = vec![BlockQ8Act::default(); case.cols / 32];
        qgraph::kernels::scalar::act::quantize_act_scalar(&x, &mut xq);
        let mut out = vec![0f32; case.rows];
        let row_bytes = bytes.len() / case.rows;
        let mut group = c.benchmark_group("gemv");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        for level in [KernelLevel::Scalar, table::detect()] {
            if level == KernelLevel::Scalar && case.rows > 4096 {
                continue; // the scalar output projection takes seconds per sample
            }
            let Some(k) = table::gemv(case.dtype, level, case.cols) else {
                continue;
            };
            let variants: [(GemvFn, &str); 1] = [(k.f, k.name)];
            for (f, kname) in variants {
                let mut i = 0;
                let mut run = || {
                    let w = buf[(i % copies) * stride..].as_ptr() as *const u8;
                    i += 1;
                    // SAFETY: each copy holds rows × row_bytes bytes, 8-aligned; xq matches x;
                    // the table chose the kernel for this CPU.
                    unsafe { f(w, row_bytes, &x, &xq, &mut out) };
                };
                group.bench_function(format!("{} {}", case.name, kname), |b| b.iter(&mut run));
                let t = Instant::now();
                let n = 50;
                for _ in 0..n {
                    run();
                }
                let secs = t.elapsed().as_secs_f64() / n as f64;
                gflops.push(format!(
                    "{:<22} {:<18} {:>7.2} GFLOP/s {:>7.2} GB/s",
                    case.name,
                    kname,
                    2.0 * (case.rows * case.cols) as f64 / secs / 1e9,
                    bytes.len() as f64 / secs / 1e9
                ));
            }
        }
        group.finish();
    }
    eprintln!(
        "\nstreaming over {} MB of copies, 50 calls each:",
        STREAM_BYTES >> 20
    );
    for l in gflops {
        eprintln!("  {l}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench_gemv
}
criterion_main!(benches);
