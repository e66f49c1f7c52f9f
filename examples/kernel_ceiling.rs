//! The compute ceilings of the panel kernels: one 576×1536 matrix of each format, small
//! enough to stay in cache, multiplied again and again; each figure is the fastest of 60
//! timed batches, taken in turn with the other kernels, so a noisy host that slows some
//! batches does not move it (the criterion bench's means move by ±10% here).
//!
//! ```sh
//! cargo run --release --example kernel_ceiling -- [FORMAT ...]
//! ```
//!
//! FORMAT is a ggml type name (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q5_0, Q5_1, Q8_0, IQ4_NL,
//! IQ4_XS; all of them when none is given). For each, at every kernel level this CPU runs:
//! the decode gemv in GB/s of weights, the 128-token prefill gemm in Gelem/s (rows × k ×
//! tokens per second) and the 4-token product in GB/s of weights. Two binaries measured in
//! turn (A, B, A, B) compare a change; the weights' stream (`cargo bench --bench kernels --
//! gemv`) is what these ceilings are set against.

use std::time::Instant;

use qgraph::kernels::{panel, table, BlockQ8Act, KernelLevel, WeightLayout};
use qgraph::quant::{quantize, GgmlType};

const FORMATS: [GgmlType; 10] = [
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
];
const ROWS: usize = 576;
const K: usize = 1536;
const TOKENS: usize = 128;
const FEW: usize = 4;
const BATCHES: usize = 60;
const CALLS: usize = 200;

fn main() -> Result<(), String> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let formats: Vec<GgmlType> = if names.is_empty() {
        FORMATS.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                FORMATS
                    .iter()
                    .copied()
                    .find(|f| f.name().eq_ignore_ascii_case(n))
                    .ok_or_else(|| {
                        format!("unknown format {n}: use one of Q2_K … IQ4_XS (the panel formats)")
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let levels: Vec<KernelLevel> = [KernelLevel::Avx2, KernelLevel::Avx512]
        .into_iter()
        .filter(|&l| table::supports(l))
        .collect();
    if levels.is_empty() {
        return Err("this CPU has no SIMD kernel level (AVX2 + FMA + F16C)".into());
    }
    let mut rng = qgraph::sample::rng::SplitMix64(7);
    let x: Vec<f32> = (0..K * TOKENS)
        .map(|_| rng.next_f32() * 4.0 - 2.0)
        .collect();
    let mut xq = vec![BlockQ8Act::default(); K / 32 * TOKENS];
    let w: Vec<f32> = (0..ROWS * K).map(|_| rng.next_f32() - 0.5).collect();
    for dtype in formats {
        // As a plan quantizes a step's input for this format (K is a multiple of 256).
        table::quantize_act_reference(dtype, &x, &mut xq);
        let bytes = quantize(dtype, &w).map_err(|e| e.to_string())?;
        let nb = K / dtype.block_len() as usize;
        let len = panel::panel_bytes(dtype, ROWS, nb).ok_or("no panel layout")?;
        // u64s: the panels 8-aligned, as the loader places them.
        let mut words = vec![0u64; len.div_ceil(8)];
        // SAFETY: the u64 buffer holds at least `len` bytes; any byte pattern is a u64.
        let packed = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, len) };
        if !panel::repack(dtype, &bytes, ROWS, nb, packed) {
            return Err(format!("{}: no panel repack", dtype.name()));
        }
        let row_bytes = bytes.len() / ROWS;
        let w = packed.as_ptr();
        let mut out = vec![0f32; ROWS * TOKENS];
        let n = levels.len();
        let mut best = vec![f64::MAX; 3 * n];
        for _ in 0..BATCHES {
            for (li, &level) in levels.iter().enumerate() {
                let gemv = table::gemv(dtype, level, K, WeightLayout::Panels).ok_or("no gemv")?;
                let gemm = table::gemm(dtype, level, WeightLayout::Panels).ok_or("no gemm")?;
                let few = table::few(dtype, level, WeightLayout::Panels).ok_or("no few")?;
                let t = Instant::now();
                for _ in 0..CALLS {
                    // SAFETY: the CPU has `level` (checked); w holds ROWS rows of panels with
                    // row_bytes each, 8-aligned; xq has K / 32 blocks per token.
                    unsafe { (gemv.f)(w, row_bytes, &x[..K], &xq[..K / 32], &mut out[..ROWS]) };
                }
                best[li] = best[li].min(t.elapsed().as_secs_f64() / CALLS as f64);
                let t = Instant::now();
                // SAFETY: as above, for TOKENS tokens; out holds ROWS per token.
                unsafe { (gemm.f)(w, row_bytes, ROWS, &xq, TOKENS, out.as_mut_ptr(), ROWS) };
                best[n + li] = best[n + li].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                for _ in 0..CALLS / 4 {
                    // SAFETY: as above, for FEW tokens.
                    let xs = &xq[..FEW * K / 32];
                    unsafe { (few.f)(w, row_bytes, ROWS, xs, FEW, out.as_mut_ptr(), ROWS) };
                }
                best[2 * n + li] =
                    best[2 * n + li].min(t.elapsed().as_secs_f64() / (CALLS / 4) as f64);
            }
        }
        let gb = (ROWS * row_bytes) as f64 / 1e9;
        for (li, level) in levels.iter().enumerate() {
            println!(
                "{:7} {:7}  gemv {:5.1} GB/s   gemm×{TOKENS} {:6.1} Gelem/s   few×{FEW} {:5.1} GB/s",
                dtype.name(),
                format!("{level:?}"),
                gb / best[li],
                (ROWS * K * TOKENS) as f64 / best[n + li] / 1e9,
                gb / best[2 * n + li],
            );
        }
    }
    Ok(())
}
