//! Per-kernel throughput at SmolLM2's shapes, in GB/s of weight bytes (criterion's
//! throughput) — and GFLOP/s, printed once per kernel at the end.
//!
//! Decode streams ~97 MB of weights per token, far more than any cache, so each benchmark
//! rotates through copies of its matrix totalling about 128 MB: the figures are for the
//! memory-bound regime decode runs in, not for a matrix sitting in L2.
//!
//!     cargo bench --bench kernels
//!     cargo bench --bench kernels -- gemm    (prefill products, GFLOP/s per level)
//!
//! The copies and the read probes sit in huge pages, as a model's weights do (the repack
//! moves every matrix into a huge-page slab at load); `BENCH_SMALL_PAGES=1` leaves them in
//! 4 KiB pages, where the hardware prefetchers restart at every page (`--repack off`, or a
//! host whose transparent huge pages are off, where the hint does nothing).
//! `BENCH_HOT=1` keeps one copy in cache (a kernel's compute ceiling); `BENCH_SIMD_ONLY=1`
//! skips the scalar kernels.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qgraph::kernels::{
    panel, read_all, table, BlockQ8Act, GemvFn, KernelLevel, ReadWay, WeightLayout,
};
use qgraph::quant::{quantize, GgmlType};
use qgraph::sample::rng::SplitMix64;

const STREAM_BYTES: usize = 128 << 20;

/// The design not taken, kept here so the choice stays measured: Q4_1 weights times f32
/// activations (nibbles widened to f32, four FMAs per block) instead of 8-bit activations
/// and integer dots. Same prefetching as the real kernel.
///
/// # Safety
/// AVX2, FMA and F16C; as `kernels::GemvFn`, with `x.len() <= 8192`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_q4_1_f32act_avx2(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    use qgraph::kernels::x86_64::gemv::{prefetch, PREFETCH_BYTES};
    use qgraph::kernels::x86_64::math::{f16_to_f32, hsum};
    use qgraph::quant::BlockQ4_1;
    use std::arch::x86_64::*;
    // Σx per block, once per call: the m·Σx term of every row.
    let mut xsum = [0f32; 256];
    for (s, xs) in xsum.iter_mut().zip(x.chunks_exact(32)) {
        *s = xs.iter().sum();
    }
    let nb = x.len() / 32;
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r of the matrix the caller vouched for.
        let row =
            unsafe { std::slice::from_raw_parts(w.add(r * row_bytes) as *const BlockQ4_1, nb) };
        prefetch(w.wrapping_add(r * row_bytes + PREFETCH_BYTES), row_bytes);
        let mut acc = _mm256_setzero_ps();
        let mut offset = 0f32;
        for (bi, b) in row.iter().enumerate() {
            // SAFETY: qs is 16 bytes; x holds 32 values from 32·bi.
            unsafe {
                let qs = _mm_loadu_si128(b.qs.as_ptr() as *const __m128i);
                let lo = _mm_and_si128(qs, _mm_set1_epi8(0x0f));
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), _mm_set1_epi8(0x0f));
                let xp = x.as_ptr().add(32 * bi);
                let f = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
                let mut t = _mm256_mul_ps(f(lo), _mm256_loadu_ps(xp));
                t = _mm256_fmadd_ps(f(_mm_srli_si128::<8>(lo)), _mm256_loadu_ps(xp.add(8)), t);
                t = _mm256_fmadd_ps(f(hi), _mm256_loadu_ps(xp.add(16)), t);
                t = _mm256_fmadd_ps(f(_mm_srli_si128::<8>(hi)), _mm256_loadu_ps(xp.add(24)), t);
                acc = _mm256_fmadd_ps(t, _mm256_set1_ps(f16_to_f32(b.d.to_bits())), acc);
            }
            offset += f16_to_f32(b.m.to_bits()) * xsum[bi];
        }
        *o = hsum(acc) + offset;
    }
}

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
        name: "q5_0 1536x576",
        dtype: GgmlType::Q5_0,
        rows: 1536,
        cols: 576,
    },
    Case {
        name: "q5_1 1536x576",
        dtype: GgmlType::Q5_1,
        rows: 1536,
        cols: 576,
    },
    Case {
        name: "iq4_nl 1536x576",
        dtype: GgmlType::Iq4Nl,
        rows: 1536,
        cols: 576,
    },
    Case {
        name: "q8_0 1536x576",
        dtype: GgmlType::Q8_0,
        rows: 1536,
        cols: 576,
    },
    Case {
        name: "q2_k 576x1536",
        dtype: GgmlType::Q2K,
        rows: 576,
        cols: 1536,
    },
    Case {
        name: "q3_k 576x1536",
        dtype: GgmlType::Q3K,
        rows: 576,
        cols: 1536,
    },
    Case {
        name: "q4_k 576x1536",
        dtype: GgmlType::Q4K,
        rows: 576,
        cols: 1536,
    },
    Case {
        name: "q5_k 576x1536",
        dtype: GgmlType::Q5K,
        rows: 576,
        cols: 1536,
    },
    Case {
        name: "q6_k 576x1536",
        dtype: GgmlType::Q6K,
        rows: 576,
        cols: 1536,
    },
    Case {
        name: "iq4_xs 576x1536",
        dtype: GgmlType::Iq4Xs,
        rows: 576,
        cols: 1536,
    },
    Case {
        name: "bf16 576x576",
        dtype: GgmlType::BF16,
        rows: 576,
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

/// Copies of a matrix one after another, 8-byte aligned, and the stride between them in words.
type Copies = (Vec<u64>, usize);

/// `copies` 8-byte-aligned copies of `bytes`, one after another, and the stride in words.
fn copies_of(bytes: &[u8], copies: usize) -> Copies {
    let stride = bytes.len().div_ceil(8);
    let mut buf = vec![0u64; stride * copies];
    if std::env::var_os("BENCH_SMALL_PAGES").is_none() {
        advise_huge_pages(&mut buf);
    }
    for i in 0..copies {
        bytemuck::cast_slice_mut::<u64, u8>(&mut buf[i * stride..])[..bytes.len()]
            .copy_from_slice(bytes);
    }
    (buf, stride)
}

/// Asks the kernel to back `buf`'s whole pages with huge pages, before they are first
/// written (unless `BENCH_SMALL_PAGES=1`). A hint: where transparent huge pages are off it
/// does nothing.
fn advise_huge_pages(buf: &mut [u64]) {
    let (p, end) = (
        buf.as_mut_ptr() as usize,
        buf.as_mut_ptr() as usize + buf.len() * 8,
    );
    let start = (p + 4095) & !4095;
    if end > start {
        // SAFETY: [start, start + len) lies inside `buf`, memory this process owns and keeps;
        // MADV_HUGEPAGE changes how its pages are backed, never their contents or mapping.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                (end - start) & !4095,
                libc::MADV_HUGEPAGE,
            )
        };
    }
}

/// Streaming read bandwidth over `STREAM_BYTES`, GB/s: the best of 5 sweeps each way
/// (`ReadWay`), on the same footing as the copies (huge pages, or 4 KiB ones with
/// `BENCH_SMALL_PAGES=1`).
fn read_bandwidth() -> f64 {
    let (buf, _) = copies_of(&[1u8; 4096], STREAM_BYTES / 4096);
    let buf: &[u8] = bytemuck::cast_slice(&buf);
    (0..5)
        .flat_map(|_| ReadWay::BOTH)
        .map(|way| {
            let t = Instant::now();
            std::hint::black_box(read_all(std::hint::black_box(buf), way));
            STREAM_BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Seconds `read_all` takes over a copy of a matrix (`len` bytes at `w`) one way, to set
/// each kernel's calls against a read of the same size, copies and timing
/// (`read_bandwidth` is one 128 MB sweep, taken minutes after most kernels ran).
///
/// # Safety
/// `w` points to `len` readable bytes.
unsafe fn read_matrix(w: *const u8, len: usize, way: ReadWay) -> f64 {
    // SAFETY: the caller's matrix.
    let bytes = unsafe { std::slice::from_raw_parts(w, len) };
    let t = Instant::now();
    std::hint::black_box(read_all(std::hint::black_box(bytes), way));
    t.elapsed().as_secs_f64()
}

fn bench_gemv(c: &mut Criterion) {
    let mut rng = SplitMix64(7);
    // (case, kernel, GFLOP/s, GB/s, share of `read_matrix`'s speed in the same calls).
    let mut gflops: Vec<(&str, &str, f64, f64, f64)> = Vec::new();
    for case in CASES {
        let w: Vec<f32> = (0..case.rows * case.cols).map(|_| rng.next_f32()).collect();
        let bytes = quantize(case.dtype, &w).unwrap();
        // BENCH_HOT=1: one copy, which stays in cache: the kernel's compute ceiling, to
        // tell a kernel that waits on memory from one that waits on its arithmetic.
        let copies = if std::env::var_os("BENCH_HOT").is_some() {
            1
        } else {
            (STREAM_BYTES / bytes.len()).max(1)
        };
        let row_bytes = bytes.len() / case.rows;
        let rows = copies_of(&bytes, copies);
        // What `read_matrix` reads: its own copies, never the ones a kernel just read.
        let reads = copies_of(&bytes, copies);
        // The same matrix in row panels, as the planner's repack leaves it.
        let nb = case.cols / case.dtype.block_len() as usize;
        let panels = panel::panel_bytes(case.dtype, case.rows, nb).map(|n| {
            let mut packed = vec![0u8; n];
            assert!(panel::repack(
                case.dtype,
                &bytes,
                case.rows,
                nb,
                &mut packed
            ));
            copies_of(&packed, copies)
        });
        let x: Vec<f32> = (0..case.cols).map(|_| rng.next_f32()).collect();
        let mut xq = vec![BlockQ8Act::default(); case.cols / 32];
        table::quantize_act_reference(case.dtype, &x, &mut xq);
        let mut out = vec![0f32; case.rows];
        let mut group = c.benchmark_group("gemv");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        // A format without a SIMD kernel in the file's rows runs the scalar one at both
        // levels: bench it once.
        let mut seen = std::collections::BTreeSet::new();
        let mut levels = vec![KernelLevel::Scalar, KernelLevel::Avx2, KernelLevel::Avx512];
        levels.retain(|&l| table::supports(l));
        for level in levels {
            if level == KernelLevel::Scalar
                && (case.rows > 4096 || std::env::var_os("BENCH_SIMD_ONLY").is_some())
            {
                continue; // the scalar output projection takes seconds per sample
            }
            let mut variants: Vec<(GemvFn, &str, &Copies)> = Vec::new();
            for (layout, buf) in [
                (WeightLayout::Rows, Some(&rows)),
                (WeightLayout::Panels, panels.as_ref()),
            ] {
                if let (Some(k), Some(buf)) =
                    (table::gemv(case.dtype, level, case.cols, layout), buf)
                {
                    variants.push((k.f, k.name, buf));
                }
            }
            #[cfg(target_arch = "x86_64")]
            if level != KernelLevel::Scalar && case.dtype == GgmlType::Q4_1 {
                variants.push((
                    gemv_q4_1_f32act_avx2,
                    "gemv_q4_1_f32act_avx2 (not used)",
                    &rows,
                ));
            }
            for (f, kname, (buf, stride)) in variants {
                if !seen.insert(kname) {
                    continue;
                }
                let mut i = 0;
                let mut run = || {
                    let w = buf[(i % copies) * stride..].as_ptr() as *const u8;
                    i += 1;
                    // SAFETY: each copy holds the matrix in the kernel's layout (rows ×
                    // row_bytes, or its padded panels), 8-aligned; xq matches x; the table
                    // chose the kernel for this CPU.
                    unsafe { f(w, row_bytes, &x, &xq, &mut out) };
                };
                group.bench_function(format!("{} {}", case.name, kname), |b| b.iter(&mut run));
                // The kernel and `read_matrix` in turn, each on the next copy of its own
                // buffer: both see the same state of a shared host's memory, which drifts by
                // ±30% within a minute. Five rounds of 100 calls of each; per round, the
                // faster way's reads against the kernel's calls; the median round's ratio.
                let mut read_i = 0;
                let mut read = |way| {
                    let w = reads.0[(read_i % copies) * reads.1..].as_ptr() as *const u8;
                    read_i += 1;
                    // SAFETY: each copy holds the matrix's bytes.
                    unsafe { read_matrix(w, bytes.len(), way) }
                };
                let (mut kernel_secs, mut ratios) = (0.0, Vec::new());
                for _ in 0..5 {
                    let (mut k, mut r) = (0.0, [0.0; 2]);
                    for i in 0..100 {
                        let t = Instant::now();
                        run();
                        k += t.elapsed().as_secs_f64();
                        r[i % 2] += read(ReadWay::BOTH[i % 2]);
                    }
                    kernel_secs += k;
                    ratios.push(r[0].min(r[1]) * 2.0 / k);
                }
                ratios.sort_by(f64::total_cmp);
                let secs = kernel_secs / 500.0;
                let gbs = bytes.len() as f64 / secs / 1e9;
                let gflop = 2.0 * (case.rows * case.cols) as f64 / secs / 1e9;
                gflops.push((case.name, kname, gflop, gbs, ratios[2]));
            }
        }
        group.finish();
    }
    let bw = read_bandwidth();
    eprintln!(
        "\nstreaming over {} MB of copies, 500 calls each, alternating with `read_all` over the same \
         matrix (median of 5 rounds; the faster way each time); read bandwidth (one 128 MB \
         stream, best of 5 each way): {bw:.2} GB/s",
        STREAM_BYTES >> 20,
    );
    for (case, kname, gflop, gbs, ratio) in gflops {
        eprintln!(
            "  {case:<22} {kname:<34} {gflop:>7.2} GFLOP/s {gbs:>7.2} GB/s {:>4.0}% of bandwidth {:>4.0}% of read_all",
            100.0 * gbs / bw,
            100.0 * ratio
        );
    }
}

/// Decode attention of one token row over every KV head of a SmolLM2 layer (3 KV heads, 3
/// query heads each, head size 64), at a depth whose cache sits in L3 (4096) and at one
/// that streams from memory (65536), for each cache type; in GB/s of K and V read. The
/// caches sit in a huge-page mapping, as a session's do.
fn bench_attend(c: &mut Criterion) {
    use qgraph::kernels::kv::{self, KvGeom};
    use qgraph::kernels::scalar::attention::AttnParams;
    use qgraph::vocab::{KvType, KvTypes};
    let (kv_heads, group, hd) = (3, 3, 64);
    let mut group_b = c.benchmark_group("attend");
    for depth in [4096usize, 65536] {
        for ty in KvType::ALL {
            let types = KvTypes { k: ty, v: ty };
            let geom = KvGeom::new(types, kv_heads, hd, depth);
            let huge = |bytes: usize| {
                let m = memmap2::MmapMut::map_anon(bytes + (2 << 20)).unwrap();
                let _ = m.advise(memmap2::Advice::HugePage);
                let skip = (m.as_ptr() as usize).next_multiple_of(2 << 20) - m.as_ptr() as usize;
                (m, skip)
            };
            let ((mut km, ks), (mut vm, vs)) = (huge(geom.k_bytes()), huge(geom.v_bytes()));
            let mut rng = SplitMix64(depth as u64);
            for p in 0..depth {
                for g in 0..kv_heads {
                    let row: Vec<f32> = (0..hd).map(|_| rng.next_f32() - 0.5).collect();
                    // SAFETY: g < kv_heads, p < rows, hd values; the maps hold the caches.
                    unsafe {
                        kv::store_k(ty).0(&row, km.as_mut_ptr().add(ks), &geom, g, p);
                        kv::store_v(ty).0(&row, vm.as_mut_ptr().add(vs), &geom, g, p);
                    }
                }
            }
            let params = AttnParams {
                window: 0,
                geom,
                group,
                scale: 0.125,
            };
            let k = table::attend(table::detect(), hd, types);
            let q: Vec<f32> = (0..group * hd).map(|_| rng.next_f32() - 0.5).collect();
            let (mut out, mut work) = (vec![0f32; group * hd], vec![0f32; params.work_len()]);
            group_b.throughput(Throughput::Bytes(
                (kv::value_bytes(ty, hd) * 2 * kv_heads * depth) as u64,
            ));
            group_b.bench_function(format!("{} depth {depth}", k.name), |b| {
                b.iter(|| {
                    for g in 0..kv_heads {
                        // SAFETY: the caches hold `depth` positions of every head; the table
                        // chose a kernel this CPU runs.
                        unsafe {
                            (k.f)(
                                &params,
                                &q,
                                km.as_ptr().add(ks),
                                vm.as_ptr().add(vs),
                                g,
                                depth,
                                &mut work,
                                &mut out,
                            )
                        }
                    }
                })
            });
        }
    }
    group_b.finish();
}

/// Prefill products of 128 tokens at SmolLM2's shapes, each panel gemm at every SIMD level
/// this CPU runs (the AVX2 kernels and their AVX-512 VNNI twins side by side), in GFLOP/s.
/// Prefill is compute-bound, so the matrix is not rotated through copies.
/// Benches one batched kernel call (`flop` operations) under `name`, and times 20 more
/// calls for the GFLOP/s summary: `(name, GFLOP/s)`.
fn bench_batched(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    name: String,
    flop: f64,
    run: &mut impl FnMut(),
) -> (String, f64) {
    group.bench_function(&name, |b| b.iter(&mut *run));
    let t = Instant::now();
    for _ in 0..20 {
        run();
    }
    (name, flop * 20.0 / t.elapsed().as_secs_f64() / 1e9)
}

fn bench_gemm(c: &mut Criterion) {
    const N_TOK: usize = 128;
    let shapes = [
        (GgmlType::Q8_0, 1536, 576),
        (GgmlType::Q6K, 576, 1536),
        (GgmlType::Q3K, 576, 1536),
        (GgmlType::Iq4Xs, 576, 1536),
        (GgmlType::Q2K, 576, 1536),
        (GgmlType::Q4K, 576, 1536),
        (GgmlType::Q5K, 576, 1536),
        (GgmlType::Q4_0, 1536, 576),
        (GgmlType::Q4_1, 1536, 576),
        (GgmlType::Q5_0, 1536, 576),
    ];
    let levels: Vec<KernelLevel> = [KernelLevel::Avx2, KernelLevel::Avx512]
        .into_iter()
        .filter(|&l| table::supports(l))
        .collect();
    let mut rng = SplitMix64(11);
    let mut group = c.benchmark_group("gemm");
    let mut report = Vec::new();
    for (dtype, rows, cols) in shapes {
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() - 0.5).collect();
        let bytes = quantize(dtype, &w).unwrap();
        let nb = cols / dtype.block_len() as usize;
        let mut packed = vec![0u8; panel::panel_bytes(dtype, rows, nb).unwrap()];
        assert!(panel::repack(dtype, &bytes, rows, nb, &mut packed));
        let packed = copies_of(&packed, 1).0;
        let x: Vec<f32> = (0..cols * N_TOK).map(|_| rng.next_f32() - 0.5).collect();
        let mut xq = vec![BlockQ8Act::default(); cols / 32 * N_TOK];
        table::quantize_act_reference(dtype, &x, &mut xq);
        let mut out = vec![0f32; rows * N_TOK];
        let flop = 2.0 * (rows * cols * N_TOK) as f64;
        group.throughput(Throughput::Elements(flop as u64));
        let mut seen = std::collections::BTreeSet::new();
        for &level in &levels {
            let Some(k) = table::gemm(dtype, level, WeightLayout::Panels) else {
                continue;
            };
            if !seen.insert(k.name) {
                continue;
            }
            let mut run = || {
                // SAFETY: `packed` holds the matrix's panels, 8-aligned; xq holds N_TOK rows
                // of its blocks; out holds N_TOK rows of `rows`; the table chose the kernel
                // for a level this CPU supports.
                unsafe {
                    (k.f)(
                        packed.as_ptr() as *const u8,
                        bytes.len() / rows,
                        rows,
                        &xq,
                        N_TOK,
                        out.as_mut_ptr(),
                        rows,
                    )
                }
            };
            let name = format!("{dtype:?} {rows}x{cols} x{N_TOK} {}", k.name);
            report.push(bench_batched(&mut group, name, flop, &mut run));
        }
    }
    // The float formats' batched kernels, in the file's rows (no repack).
    for (dtype, rows, cols) in [
        (GgmlType::F32, 576, 1536),
        (GgmlType::F16, 576, 1536),
        (GgmlType::BF16, 576, 1536),
    ] {
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() - 0.5).collect();
        let bytes = copies_of(&quantize(dtype, &w).unwrap(), 1).0;
        let x: Vec<f32> = (0..cols * N_TOK).map(|_| rng.next_f32() - 0.5).collect();
        let mut out = vec![0f32; rows * N_TOK];
        let flop = 2.0 * (rows * cols * N_TOK) as f64;
        group.throughput(Throughput::Elements(flop as u64));
        let k = match table::float_gemm(dtype, KernelLevel::Avx2, cols) {
            Some(k) if levels.contains(&KernelLevel::Avx2) => k,
            _ => continue,
        };
        let mut run = || {
            // SAFETY: `bytes` holds the matrix's rows (2 or 4 bytes per weight), 8-aligned; x
            // holds N_TOK rows of `cols`; out N_TOK rows of `rows`; this CPU runs AVX2
            // (`levels` holds only supported levels).
            unsafe {
                (k.f)(
                    bytes.as_ptr() as *const u8,
                    cols * dtype.block_bytes() as usize,
                    rows,
                    &x,
                    N_TOK,
                    out.as_mut_ptr(),
                    rows,
                )
            }
        };
        let name = format!("{dtype:?} {rows}x{cols} x{N_TOK} {}", k.name);
        report.push(bench_batched(&mut group, name, flop, &mut run));
    }
    group.finish();
    for (name, gflops) in report {
        eprintln!("  {name:<52} {gflops:>7.1} GFLOP/s");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench_gemv, bench_gemm, bench_attend
}
criterion_main!(benches);
