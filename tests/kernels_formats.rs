//! The panel kernels of the Q5 and K formats (and Q8_0's batched kernel): each decode gemv
//! against an independent reference (weights dequantized by `quant`, activations as their
//! 8-bit blocks read back), and each batched gemm bitwise against the gemv, token by token,
//! so a prompt fed as a batch gives exactly what it gives fed one token at a time.
#![cfg(target_arch = "x86_64")]

use proptest::prelude::*;
use qgraph::kernels::scalar::act;
use qgraph::kernels::{panel, table, BlockQ8Act, KernelLevel, WeightLayout};
use qgraph::quant::{dequantize, quantize, GgmlType};

const FORMATS: [GgmlType; 10] = [
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

fn require_avx2() {
    assert!(
        table::supports(KernelLevel::Avx2),
        "this CPU lacks AVX2/FMA/F16C: the SIMD kernels cannot be tested here"
    );
}

/// The SIMD levels this CPU runs: AVX2, and AVX-512 (whose VNNI twins must compute bitwise
/// what the AVX2 kernels do) where it has it.
fn simd_levels() -> Vec<KernelLevel> {
    [KernelLevel::Avx2, KernelLevel::Avx512]
        .into_iter()
        .filter(|&l| table::supports(l))
        .collect()
}

fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut v = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..bytes.len()].copy_from_slice(bytes);
    v
}

fn q8(x: &[f32]) -> Vec<BlockQ8Act> {
    let mut q = vec![BlockQ8Act::default(); x.len() / 32];
    act::quantize_act_scalar(x, &mut q);
    q
}

/// Rows of `k` activations quantized as a plan quantizes them for `dtype`'s products
/// (`table::quantize_act_reference`: one scale per 256 values for Q2_K and Q3_K).
fn q8_for(dtype: GgmlType, x: &[f32], k: usize) -> Vec<BlockQ8Act> {
    let mut q = vec![BlockQ8Act::default(); x.len() / 32];
    for (row, out) in x.chunks(k).zip(q.chunks_mut(k / 32)) {
        table::quantize_act_reference(dtype, row, out);
    }
    q
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A random matrix whose 32-blocks vary in magnitude (one in nine is all zero, one has
/// f16-subnormal scales), and its panels.
#[derive(Debug)]
struct Case {
    rows: usize,
    k: usize,
    w: Vec<f32>,
}

fn case() -> impl Strategy<Value = (Case, u64)> {
    (1usize..27, 1usize..4, any::<u64>()).prop_map(|(rows, k256, seed)| {
        let k = 256 * k256;
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let w = (0..rows * k)
            .map(|i| {
                let block = i / 32;
                // Zero blocks, f16-subnormal scales (1e-6: d < 2^-14), and large ones.
                let scale = [0.0, 1e-3, 0.1, 1.0, 7.0, 60.0, 0.5, 1e-6, 3000.0][block % 9];
                (rng.next_f32() - 0.5) * scale
            })
            .collect();
        (Case { rows, k, w }, seed)
    })
}

/// The matrix quantized to `dtype` and repacked, its dequantized values, and its row bytes.
fn panels_of(dtype: GgmlType, c: &Case) -> (Vec<u64>, Vec<f32>, usize) {
    let bytes = quantize(dtype, &c.w).unwrap();
    let mut deq = vec![0f32; c.w.len()];
    dequantize(dtype, &bytes, &mut deq).unwrap();
    let nb = c.k / dtype.block_len() as usize;
    let mut packed = vec![0u8; panel::panel_bytes(dtype, c.rows, nb).unwrap()];
    assert!(panel::repack(dtype, &bytes, c.rows, nb, &mut packed));
    (aligned(&packed), deq, bytes.len() / c.rows)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn panel_gemv_matches_the_dequantized_product((c, seed) in case()) {
        require_avx2();
        let mut rng = qgraph::sample::rng::SplitMix64(seed ^ 0x5eed);
        let x: Vec<f32> = (0..c.k).map(|_| (rng.next_f32() - 0.5) * 6.0).collect();
        for dtype in FORMATS {
            let xq = q8_for(dtype, &x, c.k);
            // The activations as the kernels see them.
            let xr: Vec<f32> = xq.iter().flat_map(|b| b.qs.map(|q| q as f32 * b.d)).collect();
            let (buf, deq, row_bytes) = panels_of(dtype, &c);
            let f = table::gemv(dtype, KernelLevel::Avx2, c.k, WeightLayout::Panels).unwrap().f;
            let mut out = vec![f32::NAN; c.rows];
            // SAFETY: AVX2 checked; buf holds the padded panels of rows × row_bytes, 8-aligned;
            // xq has k / 32 blocks.
            unsafe { f(buf.as_ptr() as *const u8, row_bytes, &x, &xq, &mut out) };
            for r in 0..c.rows {
                let row = &deq[r * c.k..(r + 1) * c.k];
                let want: f64 = row.iter().zip(&xr).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = row.iter().zip(&xr).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                prop_assert!(
                    (out[r] as f64 - want).abs() <= 1e-5 * mag + 1e-30,
                    "{} row {} of {}×{}: {} vs {}", dtype, r, c.rows, c.k, out[r], want
                );
            }
        }
    }

    #[test]
    fn panel_gemm_and_few_are_bitwise_the_panel_gemv((c, seed) in case(), n_tok in 1usize..11) {
        require_avx2();
        let mut rng = qgraph::sample::rng::SplitMix64(seed ^ 0x7);
        let x: Vec<f32> = (0..n_tok * c.k).map(|_| (rng.next_f32() - 0.5) * 4.0).collect();
        let nb = c.k / 32;
        for (dtype, level) in FORMATS.into_iter().flat_map(|d| simd_levels().into_iter().map(move |l| (d, l))) {
            let xq = q8_for(dtype, &x, c.k);
            let (buf, _, row_bytes) = panels_of(dtype, &c);
            let gemv = table::gemv(dtype, KernelLevel::Avx2, c.k, WeightLayout::Panels).unwrap().f;
            // The batched gemm and the few-token kernel (a server's decode step) alike.
            let kernels = [
                table::gemm(dtype, level, WeightLayout::Panels).unwrap(),
                table::few(dtype, level, WeightLayout::Panels).unwrap(),
            ];
            for k in kernels {
                let mut all = vec![f32::NAN; n_tok * c.rows];
                // SAFETY: the level is supported (simd_levels); buf holds the panels; xq
                // n_tok × k/32 blocks; the output n_tok rows of `rows`.
                unsafe { (k.f)(buf.as_ptr() as *const u8, row_bytes, c.rows, &xq, n_tok, all.as_mut_ptr(), c.rows) };
                for t in 0..n_tok {
                    let mut one = vec![f32::NAN; c.rows];
                    // SAFETY: as above, token t alone.
                    unsafe { gemv(buf.as_ptr() as *const u8, row_bytes, &x[t * c.k..(t + 1) * c.k], &xq[t * nb..(t + 1) * nb], &mut one) };
                    prop_assert_eq!(bits(&all[t * c.rows..(t + 1) * c.rows]), bits(&one), "{} {:?} {} token {}", dtype, level, k.name, t);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The float formats' batched kernel gives bitwise each token's gemv, for row and token
    /// counts that are not multiples of its 4 × 3 register blocks.
    #[test]
    fn float_gemm_is_bitwise_the_gemv(rows in 1usize..14, k8 in 1usize..40, n_tok in 1usize..9, seed in any::<u64>()) {
        require_avx2();
        let k = 8 * k8;
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let w: Vec<f32> = (0..rows * k).map(|_| rng.next_f32() - 0.5).collect();
        let x: Vec<f32> = (0..n_tok * k).map(|_| (rng.next_f32() - 0.5) * 4.0).collect();
        for dtype in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let buf = aligned(&quantize(dtype, &w).unwrap());
            let row_bytes = k * dtype.block_bytes() as usize;
            let gemm = table::float_gemm(dtype, KernelLevel::Avx2, k).unwrap().f;
            let gemv = table::gemv(dtype, KernelLevel::Avx2, k, WeightLayout::Rows).unwrap().f;
            let mut all = vec![f32::NAN; n_tok * rows];
            // SAFETY: AVX2 checked; buf holds rows × row_bytes, 8-aligned; x n_tok rows of k.
            unsafe { gemm(buf.as_ptr() as *const u8, row_bytes, rows, &x, n_tok, all.as_mut_ptr(), rows) };
            for t in 0..n_tok {
                let mut one = vec![f32::NAN; rows];
                // SAFETY: as above, token t alone.
                unsafe { gemv(buf.as_ptr() as *const u8, row_bytes, &x[t * k..(t + 1) * k], &[], &mut one) };
                prop_assert_eq!(bits(&all[t * rows..(t + 1) * rows]), bits(&one), "{} token {}", dtype, t);
            }
        }
    }
}

/// The VNNI gemm and the AVX2 one for biased codes (Q6_K) split a long batch into token
/// blocks sized by the row length (their activation sums sit on the stack), and the VNNI gemm
/// pairs panels two by two: a wide matrix with an odd panel count and a batch of several
/// token blocks still gives each token's AVX2 gemv bitwise at every level, and so does
/// each level's gemv.
#[test]
fn gemms_are_bitwise_the_avx2_gemv_across_token_blocks_and_odd_panels() {
    require_avx2();
    let (rows, k, n_tok) = (19, 8192, 70);
    let mut rng = qgraph::sample::rng::SplitMix64(99);
    let w: Vec<f32> = (0..rows * k).map(|_| rng.next_f32() - 0.5).collect();
    let c = Case { rows, k, w };
    let x: Vec<f32> = (0..n_tok * k)
        .map(|_| (rng.next_f32() - 0.5) * 4.0)
        .collect();
    let nb = k / 32;
    // Every panel format: the K, Q5, IQ4 and Q8_0 ones and the Q4s.
    let panel_formats = FORMATS.into_iter().chain([GgmlType::Q4_0, GgmlType::Q4_1]);
    for (level, dtype) in panel_formats.flat_map(|d| simd_levels().into_iter().map(move |l| (l, d)))
    {
        let xq = q8_for(dtype, &x, k);
        let (buf, _, row_bytes) = panels_of(dtype, &c);
        let gemm = table::gemm(dtype, level, WeightLayout::Panels).unwrap();
        assert!(
            level == KernelLevel::Avx2 || gemm.name.ends_with("_vnni"),
            "{dtype}: {}",
            gemm.name
        );
        let gemv = table::gemv(dtype, KernelLevel::Avx2, k, WeightLayout::Panels)
            .unwrap()
            .f;
        let mut all = vec![f32::NAN; n_tok * rows];
        // SAFETY: AVX-512 VNNI checked; buf holds the panels; xq n_tok × k/32 blocks; the
        // output n_tok rows of `rows`.
        unsafe {
            (gemm.f)(
                buf.as_ptr() as *const u8,
                row_bytes,
                rows,
                &xq,
                n_tok,
                all.as_mut_ptr(),
                rows,
            )
        };
        for t in 0..n_tok {
            let mut one = vec![f32::NAN; rows];
            // SAFETY: as above, token t alone.
            unsafe {
                gemv(
                    buf.as_ptr() as *const u8,
                    row_bytes,
                    &x[t * k..(t + 1) * k],
                    &xq[t * nb..(t + 1) * nb],
                    &mut one,
                )
            };
            assert_eq!(
                bits(&all[t * rows..(t + 1) * rows]),
                bits(&one),
                "{dtype} {level:?} token {t}"
            );
            let twin = table::gemv(dtype, level, k, WeightLayout::Panels).unwrap();
            let mut got = vec![f32::NAN; rows];
            // SAFETY: as above.
            unsafe {
                (twin.f)(
                    buf.as_ptr() as *const u8,
                    row_bytes,
                    &x[t * k..(t + 1) * k],
                    &xq[t * nb..(t + 1) * nb],
                    &mut got,
                )
            };
            assert_eq!(bits(&got), bits(&one), "{dtype} gemv token {t}");
        }
    }
}

/// Rows longer than the decode and few-token kernels keep activation sums for on the stack
/// (1024 blocks: 32768 weights) take their other loop, which must give the same bits as the
/// gemm (and so as the short-row path the proptests check).
#[test]
fn decode_of_rows_past_32768_weights_is_bitwise_the_gemm() {
    require_avx2();
    let c = Case {
        rows: 9,
        k: 256 * 132,
        w: {
            let mut rng = qgraph::sample::rng::SplitMix64(11);
            (0..9 * 256 * 132).map(|_| rng.next_f32() - 0.5).collect()
        },
    };
    let mut rng = qgraph::sample::rng::SplitMix64(12);
    let x: Vec<f32> = (0..c.k).map(|_| (rng.next_f32() - 0.5) * 4.0).collect();
    for (dtype, level) in FORMATS
        .into_iter()
        .flat_map(|d| simd_levels().into_iter().map(move |l| (d, l)))
    {
        let xq = q8_for(dtype, &x, c.k);
        let (buf, _, row_bytes) = panels_of(dtype, &c);
        let gemv = table::gemv(dtype, level, c.k, WeightLayout::Panels).unwrap();
        let gemm = table::gemm(dtype, level, WeightLayout::Panels).unwrap();
        let few = table::few(dtype, level, WeightLayout::Panels).unwrap();
        let (mut one, mut all) = (vec![f32::NAN; c.rows], vec![f32::NAN; c.rows]);
        let mut few_out = vec![f32::NAN; c.rows];
        // SAFETY: the level is supported (simd_levels); buf holds the padded panels; xq has
        // k / 32 blocks; the outputs hold `rows` values.
        unsafe {
            (gemv.f)(buf.as_ptr() as *const u8, row_bytes, &x, &xq, &mut one);
            (gemm.f)(
                buf.as_ptr() as *const u8,
                row_bytes,
                c.rows,
                &xq,
                1,
                all.as_mut_ptr(),
                c.rows,
            );
            let w = buf.as_ptr() as *const u8;
            (few.f)(w, row_bytes, c.rows, &xq, 1, few_out.as_mut_ptr(), c.rows);
        }
        assert_eq!(bits(&one), bits(&all), "{dtype} {level:?} {}", gemv.name);
        assert_eq!(bits(&one), bits(&few_out), "{dtype} {level:?} {}", few.name);
    }
}

/// On a CPU with GFNI the table hands out the GFNI twin of the Q3_K decode gemv;
/// the VNNI Q3_K gemv (for AVX-512 CPUs without GFNI) must still give the AVX2 gemv's bits,
/// for short rows and for rows past 32768 weights (its AVX2 fallback).
#[cfg(target_arch = "x86_64")]
#[test]
fn vnni_q3_k_gemv_without_gfni_is_bitwise_the_avx2_gemv() {
    if !table::supports(KernelLevel::Avx512) {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    let mut rng = qgraph::sample::rng::SplitMix64(21);
    for (rows, k) in [(13, 256 * 3), (9, 256 * 132)] {
        let c = Case {
            rows,
            k,
            w: (0..rows * k).map(|_| rng.next_f32() - 0.5).collect(),
        };
        let x: Vec<f32> = (0..k).map(|_| (rng.next_f32() - 0.5) * 4.0).collect();
        let xq = q8(&x);
        let (buf, _, row_bytes) = panels_of(GgmlType::Q3K, &c);
        let avx2 = table::gemv(GgmlType::Q3K, KernelLevel::Avx2, k, WeightLayout::Panels)
            .unwrap()
            .f;
        let (mut one, mut twin) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
        // SAFETY: AVX-512 VNNI checked (and AVX2 with it); buf holds the padded panels; xq
        // has k / 32 blocks; the outputs hold `rows` values.
        unsafe {
            avx2(buf.as_ptr() as *const u8, row_bytes, &x, &xq, &mut one);
            qgraph::kernels::x86_64::vnni::gemv_q3_kx8_vnni(
                buf.as_ptr() as *const u8,
                row_bytes,
                &x,
                &xq,
                &mut twin,
            );
        }
        assert_eq!(bits(&twin), bits(&one), "{rows}x{k}");
    }
}

/// A Q8_0 code of −128 is a valid i8 that the format reads as −128·d (ggml's dequantize),
/// though ggml's quantizer never writes one: every kernel that multiplies Q8_0 codes, on the
/// file's rows and on panels, at every level, gives the exact product for it, with
/// activations of both signs (the sign trick applied to the codes would read it as +128
/// against a negative activation).
#[test]
fn q8_0_codes_of_minus_128_multiply_as_the_format_says() {
    require_avx2();
    let (rows, k, n_tok) = (9, 256, 3);
    let mut rng = qgraph::sample::rng::SplitMix64(5);
    let w: Vec<f32> = (0..rows * k).map(|_| rng.next_f32() - 0.5).collect();
    let mut bytes = quantize(GgmlType::Q8_0, &w).unwrap();
    let block_bytes = 34;
    for (i, block) in bytes.chunks_mut(block_bytes).enumerate() {
        for j in (i % 3..32).step_by(3) {
            block[2 + j] = 0x80;
        }
    }
    let mut deq = vec![0f32; w.len()];
    dequantize(GgmlType::Q8_0, &bytes, &mut deq).unwrap();
    assert!(deq.iter().filter(|v| **v < 0.0).count() > w.len() / 3);
    let x: Vec<f32> = (0..n_tok * k)
        .map(|_| (rng.next_f32() - 0.5) * 4.0)
        .collect();
    let xq: Vec<BlockQ8Act> = x.chunks(k).flat_map(q8).collect();
    let xr: Vec<f32> = xq
        .iter()
        .flat_map(|b| b.qs.map(|q| q as f32 * b.d))
        .collect();
    let nb = k / 32;
    let mut packed = vec![0u8; panel::panel_bytes(GgmlType::Q8_0, rows, nb).unwrap()];
    assert!(panel::repack(GgmlType::Q8_0, &bytes, rows, nb, &mut packed));
    let (file, packed) = (aligned(&bytes), aligned(&packed));
    let check = |name: &str, t: usize, got: &[f32]| {
        for (r, g) in got.iter().enumerate() {
            let row = &deq[r * k..(r + 1) * k];
            let xs = &xr[t * k..(t + 1) * k];
            let want: f64 = row.iter().zip(xs).map(|(a, b)| *a as f64 * *b as f64).sum();
            let mag: f64 = row
                .iter()
                .zip(xs)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            assert!(
                (*g as f64 - want).abs() <= 1e-5 * mag,
                "{name} token {t} row {r}: {g} vs {want}"
            );
        }
    };
    for level in simd_levels() {
        for (layout, buf) in [(WeightLayout::Rows, &file), (WeightLayout::Panels, &packed)] {
            let w = buf.as_ptr() as *const u8;
            let row_bytes = nb * block_bytes;
            let gemv = table::gemv(GgmlType::Q8_0, level, k, layout).unwrap();
            for t in 0..n_tok {
                let mut out = vec![f32::NAN; rows];
                let (xt, qt) = (&x[t * k..(t + 1) * k], &xq[t * nb..(t + 1) * nb]);
                // SAFETY: the level is supported; buf holds the matrix in this layout; the
                // token's k / 32 blocks; `rows` outputs.
                unsafe { (gemv.f)(w, row_bytes, xt, qt, &mut out) };
                check(gemv.name, t, &out);
            }
            let batched = [
                table::gemm(GgmlType::Q8_0, level, layout),
                table::few(GgmlType::Q8_0, level, layout),
            ];
            for kernel in batched.into_iter().flatten() {
                let mut all = vec![f32::NAN; n_tok * rows];
                // SAFETY: as above, n_tok tokens into n_tok rows of `rows`.
                unsafe { (kernel.f)(w, row_bytes, rows, &xq, n_tok, all.as_mut_ptr(), rows) };
                for t in 0..n_tok {
                    check(kernel.name, t, &all[t * rows..(t + 1) * rows]);
                }
            }
        }
    }
}
