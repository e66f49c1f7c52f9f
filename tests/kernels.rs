//! Every SIMD kernel against its scalar twin, on random shapes (row lengths that are not a
//! multiple of the vector width where the kernel allows them) and random data. Tolerances
//! come from the magnitudes summed (Σ|terms|), not from fixed epsilons.
#![cfg(target_arch = "x86_64")]

use proptest::prelude::*;
use qgraph::kernels::kv::{self, KvGeom};
use qgraph::kernels::scalar::{act, attention, elementwise, norm};
use qgraph::kernels::x86_64::{float, gemv, math};
use qgraph::kernels::{table, AttendFn, BlockQ8Act, GemvFn, KernelLevel};
use qgraph::quant::{quantize, GgmlType};
use qgraph::vocab::{KvType, KvTypes};

/// The SIMD tests must not pass by not running: fail loudly on a CPU without AVX2.
fn require_avx2() {
    assert!(
        table::supports(KernelLevel::Avx2),
        "this CPU lacks AVX2/FMA/F16C: the SIMD kernels cannot be tested here"
    );
}

/// Values whose magnitudes vary per 32-block, as real activations and weights do.
fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    (
        prop::collection::vec(0.01f32..8.0, n.div_ceil(32)),
        prop::collection::vec(-1.0f32..1.0, n),
    )
        .prop_map(|(scales, v)| {
            v.iter()
                .enumerate()
                .map(|(i, x)| x * scales[i / 32])
                .collect()
        })
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

/// Runs `f` and `twin` on the same matrix and compares row by row with a tolerance of
/// 1e-5 × Σ|w·x| (the dequantized terms).
fn compare_gemv(
    dtype: GgmlType,
    f: GemvFn,
    twin: GemvFn,
    rows: usize,
    k: usize,
    w: &[f32],
    x: &[f32],
) {
    let bytes = quantize(dtype, w).unwrap();
    let buf = aligned(&bytes);
    let mut deq = vec![0f32; w.len()];
    qgraph::quant::dequantize(dtype, &bytes, &mut deq).unwrap();
    let xq = q8(x);
    let (mut a, mut b) = (vec![0f32; rows], vec![0f32; rows]);
    let row_bytes = bytes.len() / rows;
    // SAFETY: buf holds rows × row_bytes bytes, 8-aligned; xq has k/32 blocks (or k is a
    // multiple of 8 for the f16/f32 kernels); AVX2 was checked.
    unsafe {
        f(buf.as_ptr() as *const u8, row_bytes, x, &xq, &mut a);
        twin(buf.as_ptr() as *const u8, row_bytes, x, &xq, &mut b);
    }
    for r in 0..rows {
        let mag: f32 = deq[r * k..(r + 1) * k]
            .iter()
            .zip(x)
            .map(|(p, q)| (p * q).abs())
            .sum();
        assert!(
            (a[r] - b[r]).abs() <= 1e-5 * mag + 1e-6,
            "{dtype} row {r} of {rows}×{k}: simd {} vs twin {} (Σ|terms| {mag})",
            a[r],
            b[r]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn quantized_gemv_matches_twin(rows in 1usize..7, blocks in 1usize..9, seed in any::<u64>()) {
        require_avx2();
        let k = blocks * 32;
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let w: Vec<f32> = (0..rows * k).map(|i| rng.next_f32() * (1.0 + (i / 32 % 5) as f32)).collect();
        let x: Vec<f32> = (0..k).map(|_| rng.next_f32() * 3.0).collect();
        for (dtype, f) in [
            (GgmlType::Q4_1, gemv::gemv_q4_1_avx2 as GemvFn),
            (GgmlType::Q4_0, gemv::gemv_q4_0_avx2 as GemvFn),
            (GgmlType::Q8_0, gemv::gemv_q8_0_avx2 as GemvFn),
        ] {
            compare_gemv(dtype, f, table::gemv_q8_twin(dtype).unwrap(), rows, k, &w, &x);
        }
    }

    #[test]
    fn float_gemv_matches_scalar(rows in 1usize..7, k8 in 1usize..20, seed in any::<u64>()) {
        require_avx2();
        let k = k8 * 8;
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let w: Vec<f32> = (0..rows * k).map(|_| rng.next_f32()).collect();
        let x: Vec<f32> = (0..k).map(|_| rng.next_f32() * 5.0).collect();
        compare_gemv(GgmlType::F32, float::gemv_f32_avx2, qgraph::kernels::scalar::gemv::gemv_f32_scalar, rows, k, &w, &x);
        compare_gemv(GgmlType::F16, qgraph::kernels::x86_64::half::gemv_f16_avx2, qgraph::kernels::scalar::gemv::gemv_f16_scalar, rows, k, &w, &x);
        compare_gemv(GgmlType::BF16, qgraph::kernels::x86_64::half::gemv_bf16_avx2, qgraph::kernels::scalar::gemv::gemv_bf16_scalar, rows, k, &w, &x);
    }

    #[test]
    fn activation_quantization_matches_twin(x in (1usize..12).prop_flat_map(|b| values(b * 32))) {
        require_avx2();
        let mut a = vec![BlockQ8Act::default(); x.len() / 32];
        // SAFETY: AVX2 checked; x.len() == 32 · a.len().
        unsafe { math::quantize_act_avx2(&x, &mut a) };
        let b = q8(&x);
        for (p, q) in a.iter().zip(&b) {
            prop_assert_eq!(p.qs, q.qs);
            prop_assert_eq!(p.d, q.d);
            prop_assert!((p.s - q.s).abs() <= 1e-6 * (q.d * 127.0 * 32.0));
        }
    }

    /// One scale per 256 values (Q2_K's and Q3_K's products): the twin gives the scalar blocks, every
    /// block of a whole run of 256 carries the run's scale, and a ragged last run's blocks
    /// keep their own.
    #[test]
    fn tiled_activation_quantization_matches_twin(x in (1usize..20).prop_flat_map(|b| values(b * 32))) {
        require_avx2();
        let n = x.len() / 32;
        let mut a = vec![BlockQ8Act::default(); n];
        // SAFETY: AVX2 checked; x.len() == 32 · a.len().
        unsafe { math::quantize_act_tiled_avx2(&x, &mut a) };
        let mut b = vec![BlockQ8Act::default(); n];
        act::quantize_act_tiled_scalar(&x, &mut b);
        for (p, q) in a.iter().zip(&b) {
            prop_assert_eq!(p.qs, q.qs);
            prop_assert_eq!(p.d, q.d);
            prop_assert_eq!(p.h, q.h);
            prop_assert!((p.s - q.s).abs() <= 1e-6 * (q.d * 127.0 * 32.0));
        }
        let own = q8(&x);
        for (i, (xs, bs)) in x.chunks(256).zip(b.chunks(8)).enumerate() {
            let whole = xs.len() == 256;
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (j, blk) in bs.iter().enumerate() {
                let want = if whole { amax / 127.0 } else { own[i * 8 + j].d };
                prop_assert_eq!(blk.d, want, "run {} block {}", i, j);
                let deq = blk.qs.map(|q| q as f32 * blk.d);
                for (v, r) in xs[j * 32..(j + 1) * 32].iter().zip(deq) {
                    prop_assert!((v - r).abs() <= 0.5 * blk.d * 1.0001 + f32::MIN_POSITIVE);
                }
            }
        }
    }

    #[test]
    fn rmsnorm_matches_scalar(x in (1usize..300).prop_flat_map(values), eps in 1e-6f32..1e-3) {
        require_avx2();
        let gamma: Vec<f32> = (0..x.len()).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
        let (mut a, mut b) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        // SAFETY: AVX2 checked; equal lengths.
        unsafe { math::rmsnorm_avx2(&x, &gamma, eps, &mut a) };
        norm::rmsnorm_scalar(&x, &gamma, eps, &mut b);
        for (p, q) in a.iter().zip(&b) {
            prop_assert!((p - q).abs() <= 1e-5 * q.abs().max(1e-3), "{} vs {}", p, q);
        }
    }

    #[test]
    fn silu_mul_matches_scalar(g in (1usize..200).prop_flat_map(|n| prop::collection::vec(-30.0f32..30.0, n)), seed in any::<u64>()) {
        require_avx2();
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let u: Vec<f32> = (0..g.len()).map(|_| rng.next_f32() * 4.0).collect();
        let (mut a, mut b) = (g.clone(), g.clone());
        // SAFETY: AVX2 checked; equal lengths.
        unsafe { math::silu_mul_avx2(&mut a, &u) };
        elementwise::silu_mul_scalar(&mut b, &u);
        for ((p, q), (gv, uv)) in a.iter().zip(&b).zip(g.iter().zip(&u)) {
            prop_assert!((p - q).abs() <= 1e-6 * (gv * uv).abs() + 1e-7, "{} vs {}", p, q);
        }
    }

    #[test]
    fn gelu_matches_scalar(x in (1usize..200).prop_flat_map(|n| prop::collection::vec(-40.0f32..40.0, n))) {
        require_avx2();
        let (mut a, mut b) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
        // SAFETY: AVX2 checked; equal lengths.
        unsafe { math::gelu_avx2(&x, &mut a) };
        elementwise::gelu_scalar(&x, &mut b);
        for ((p, q), v) in a.iter().zip(&b).zip(&x) {
            // GELU is x times a weight in [0, 1]: compare against |x|.
            prop_assert!((p - q).abs() <= 2e-6 * v.abs() + 1e-7, "gelu({}): {} vs {}", v, p, q);
        }
    }

    #[test]
    fn attention_matches_scalar(
        n_past in 1usize..200,
        kv_heads in 1usize..4,
        group in 1usize..7,
        hd16 in 1usize..5,
        types in 0usize..9,
        window in prop_oneof![Just(0usize), 1usize..150],
        seed in any::<u64>(),
    ) {
        require_avx2();
        let (k, v) = (KvType::ALL[types / 3], KvType::ALL[types % 3]);
        let head_dim = hd16 * 16;
        prop_assume!(head_dim % 32 == 0 || (k != KvType::Q8_0 && v != KvType::Q8_0));
        let mut c = AttnCase::new(KvTypes { k, v }, kv_heads, group, head_dim, n_past + 5, seed);
        // A sliding window (0: none) cuts the first tile anywhere, or skips whole tiles.
        c.params.window = window;
        let vmax = c.v.iter().fold(0f32, |m, x| m.max(x.abs()));
        for g in 0..kv_heads {
            let simd = c.run(table::attend(KernelLevel::Avx2, head_dim, c.types).f, g, n_past);
            let scalar = c.run(attention::attend_scalar, g, n_past);
            // The output is a convex combination of V rows: compare against their magnitude.
            for (p, r) in simd.iter().zip(&scalar) {
                prop_assert!((p - r).abs() <= 3e-5 * vmax, "{} vs {}", p, r);
            }
        }
    }
}

/// Random queries and caches of every head, written by the cache's own stores.
struct AttnCase {
    types: KvTypes,
    params: attention::AttnParams,
    q: Vec<f32>,
    v: Vec<f32>,
    kc: Vec<u8>,
    vc: Vec<u8>,
}

impl AttnCase {
    fn new(
        types: KvTypes,
        kv_heads: usize,
        group: usize,
        hd: usize,
        rows: usize,
        seed: u64,
    ) -> Self {
        let mut rng = qgraph::rng::SplitMix64(seed);
        let mut rand = |n: usize, s: f32| {
            (0..n)
                .map(|_| (rng.next_f32() - 0.5) * s)
                .collect::<Vec<f32>>()
        };
        let geom = KvGeom::new(types, kv_heads, hd, rows);
        let q = rand(kv_heads * group * hd, 4.0);
        let k = rand(rows * kv_heads * hd, 4.0);
        let v = rand(rows * kv_heads * hd, 6.0);
        let (mut kc, mut vc) = (vec![0u8; geom.k_bytes()], vec![0u8; geom.v_bytes()]);
        for p in 0..rows {
            for g in 0..kv_heads {
                let at = (p * kv_heads + g) * hd;
                // SAFETY: g < kv_heads, p < rows, hd values; the caches are the geometry's.
                unsafe {
                    kv::store_k(types.k).0(&k[at..at + hd], kc.as_mut_ptr(), &geom, g, p);
                    kv::store_v(types.v).0(&v[at..at + hd], vc.as_mut_ptr(), &geom, g, p);
                }
            }
        }
        let params = attention::AttnParams {
            geom,
            group,
            scale: 1.0 / (hd as f32).sqrt(),
            window: 0,
        };
        AttnCase {
            types,
            params,
            q,
            v,
            kc,
            vc,
        }
    }

    fn run(&self, f: AttendFn, g: usize, n_past: usize) -> Vec<f32> {
        let span = self.params.group * self.params.geom.head_dim;
        let mut out = vec![f32::NAN; span];
        let mut work = vec![f32::NAN; self.params.work_len()];
        let q = &self.q[g * span..(g + 1) * span];
        // SAFETY: the caches hold n_past ≤ rows positions of head g < kv_heads; the table
        // chose a kernel this CPU runs (require_avx2) for this head size.
        unsafe {
            f(
                &self.params,
                q,
                self.kc.as_ptr(),
                self.vc.as_ptr(),
                g,
                n_past,
                &mut work,
                &mut out,
            )
        };
        out
    }
}

#[test]
fn attention_ignores_what_lies_past_the_position() {
    // A stale or garbage cache beyond n_past (NaN, ±inf) must not change a bit of the result.
    require_avx2();
    for k in KvType::ALL {
        for v in KvType::ALL {
            let types = KvTypes { k, v };
            let mut c = AttnCase::new(types, 2, 3, 64, 80, 7);
            for n_past in [1, 5, 8, 9, 63, 64, 65, 71] {
                for level in [KernelLevel::Avx2, KernelLevel::Scalar] {
                    let f = table::attend(level, 64, types).f;
                    let clean = c.run(f, 1, n_past);
                    let saved = (c.kc.clone(), c.vc.clone());
                    let garbage = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30];
                    for p in n_past..80 {
                        let row = vec![garbage[p % 4]; 64];
                        for g in 0..2 {
                            // SAFETY: as in AttnCase::new.
                            unsafe {
                                kv::store_k(k).0(&row, c.kc.as_mut_ptr(), &c.params.geom, g, p);
                                kv::store_v(v).0(&row, c.vc.as_mut_ptr(), &c.params.geom, g, p);
                            }
                        }
                    }
                    let dirty = c.run(f, 1, n_past);
                    (c.kc, c.vc) = saved;
                    assert!(
                        clean.iter().all(|x| x.is_finite()),
                        "{k}/{v} {level:?} n_past {n_past}"
                    );
                    assert_eq!(
                        clean.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        dirty.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        "{k}/{v} {level:?} n_past {n_past}"
                    );
                }
            }
        }
    }
}

#[test]
fn vector_exp_is_accurate() {
    require_avx2();
    for i in -870..880 {
        let x = i as f32 / 10.0 + 0.037;
        let mut out = [0f32; 8];
        // SAFETY: AVX2 checked; out holds 8 lanes.
        unsafe {
            use std::arch::x86_64::*;
            _mm256_storeu_ps(out.as_mut_ptr(), math::exp(_mm256_set1_ps(x)));
        }
        let want = x.exp();
        assert!(
            (out[0] - want).abs() <= 4e-7 * want,
            "exp({x}) = {} vs {want}",
            out[0]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rope_matches_scalar(heads in 1usize..10, hd16 in 1usize..9, pos in 0i32..4096, neox in any::<bool>(), seed in any::<u64>()) {
        require_avx2();
        use qgraph::graph::RopeLayout;
        use qgraph::kernels::scalar::rope::{rope_freqs, rope_scalar};
        let head_dim = hd16 * 16;
        let layout = if neox { RopeLayout::Neox } else { RopeLayout::Normal };
        let freqs = rope_freqs(head_dim, 100000.0);
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let x: Vec<f32> = (0..heads * head_dim).map(|_| rng.next_f32() * 4.0).collect();
        let (mut a, mut b) = (x.clone(), x.clone());
        // SAFETY: AVX2 checked; head_dim is a multiple of 16 and ≤ 512.
        unsafe { math::rope_avx2(&mut a, heads, pos, &freqs, layout) };
        rope_scalar(&mut b, heads, pos, &freqs, layout);
        for (p, q) in a.iter().zip(&b) {
            prop_assert!((p - q).abs() <= 1e-5 * 8.0, "{} vs {}", p, q);
        }
    }

    #[test]
    fn embedding_rows_and_accumulate_match_scalar(blocks in 1usize..20, seed in any::<u64>()) {
        require_avx2();
        use qgraph::kernels::scalar::gemv::{row_blocks_scalar, row_half_scalar};
        let n = blocks * 32;
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let x: Vec<f32> = (0..n).map(|_| rng.next_f32() * 10.0).collect();
        for (dtype, f, twin) in [
            (GgmlType::Q8_0, math::row_q8_0_avx2 as qgraph::kernels::RowFn, row_blocks_scalar::<qgraph::quant::BlockQ8_0> as qgraph::kernels::RowFn),
            (GgmlType::F16, math::row_f16_avx2, row_half_scalar::<false>),
        ] {
            let buf = aligned(&quantize(dtype, &x).unwrap());
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            // SAFETY: AVX2 checked; buf holds one row of n elements, 8-aligned.
            unsafe {
                f(buf.as_ptr() as *const u8, &mut a);
                twin(buf.as_ptr() as *const u8, &mut b);
            }
            prop_assert_eq!(&a, &b, "{} row", dtype);
        }
        let y: Vec<f32> = (0..n + 3).map(|_| rng.next_f32()).collect();
        let (mut a, mut b) = (y.clone(), y.clone());
        let add: Vec<f32> = (0..n + 3).map(|_| rng.next_f32()).collect();
        // SAFETY: AVX2 checked; equal lengths.
        unsafe { math::accumulate_avx2(&mut a, &add) };
        elementwise::accumulate_scalar(&mut b, &add);
        prop_assert_eq!(a, b);
    }
}

/// The batched 4-bit kernels (prefill) against the scalar 8-bit-activation gemv applied
/// token by token, and against themselves: any row range and any token subset computes
/// bitwise the same values as the whole call, which is what makes a plan's logits the same
/// for every thread count.
fn check_gemm(dtype: GgmlType, rows: usize, k: usize, n_tok: usize, w: &[f32], xs: &[f32]) {
    require_avx2();
    let gemm = table::gemm(
        dtype,
        KernelLevel::Avx2,
        qgraph::kernels::WeightLayout::Rows,
    )
    .expect("a gemm for this format")
    .f;
    let twin = table::gemv_q8_twin(dtype).unwrap();
    let bytes = quantize(dtype, w).unwrap();
    let buf = aligned(&bytes);
    let wp = buf.as_ptr() as *const u8;
    let row_bytes = bytes.len() / rows;
    let mut deq = vec![0f32; w.len()];
    qgraph::quant::dequantize(dtype, &bytes, &mut deq).unwrap();
    let xq: Vec<BlockQ8Act> = xs.chunks(k).flat_map(q8).collect();
    let nb = k / 32;
    let mut full = vec![f32::NAN; n_tok * rows];
    // SAFETY: buf holds rows × row_bytes bytes; xq holds n_tok × k/32 blocks; out holds
    // n_tok rows of `rows`; AVX2 was checked.
    unsafe { gemm(wp, row_bytes, rows, &xq, n_tok, full.as_mut_ptr(), rows) };
    for t in 0..n_tok {
        let x = &xs[t * k..(t + 1) * k];
        let mut want = vec![0f32; rows];
        // SAFETY: as above, one token.
        unsafe { twin(wp, row_bytes, x, &xq[t * nb..(t + 1) * nb], &mut want) };
        for r in 0..rows {
            let mag: f32 = deq[r * k..(r + 1) * k]
                .iter()
                .zip(x)
                .map(|(p, q)| (p * q).abs())
                .sum();
            let got = full[t * rows + r];
            assert!(
                (got - want[r]).abs() <= 1e-5 * mag + 1e-6,
                "{dtype} token {t} row {r} of {rows}×{k}: gemm {got} vs gemv twin {} (Σ|terms| {mag})",
                want[r]
            );
        }
    }
    // Rows split at a multiple of 16 (as plans split them), and one token alone.
    let cut = (rows / 2) / 16 * 16;
    let mut parts = vec![f32::NAN; n_tok * rows];
    // SAFETY: as above, rows 0..cut and cut..rows of the same matrix.
    unsafe {
        gemm(wp, row_bytes, cut, &xq, n_tok, parts.as_mut_ptr(), rows);
        gemm(
            wp.add(cut * row_bytes),
            row_bytes,
            rows - cut,
            &xq,
            n_tok,
            parts.as_mut_ptr().add(cut),
            rows,
        );
    }
    assert_eq!(
        full.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        parts.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "{dtype}: split rows differ"
    );
    let last = n_tok - 1;
    let mut one = vec![f32::NAN; rows];
    // SAFETY: as above, one token.
    unsafe {
        gemm(
            wp,
            row_bytes,
            rows,
            &xq[last * nb..],
            1,
            one.as_mut_ptr(),
            rows,
        )
    };
    assert_eq!(
        &full[last * rows..]
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        &one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "{dtype}: a token alone differs from the same token in a batch"
    );
}

fn gemm_case() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>)> {
    // k up to 96 blocks crosses the kernel's 64-block packing chunk.
    (
        1usize..70,
        prop::sample::select(vec![32usize, 64, 160, 2304, 3072]),
        1usize..11,
    )
        .prop_flat_map(|(rows, k, n_tok)| {
            (
                Just(rows),
                Just(k),
                Just(n_tok),
                values(rows * k),
                values(n_tok * k),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn gemm_q4_1_matches_its_gemv_twin((rows, k, n_tok, w, x) in gemm_case()) {
        check_gemm(GgmlType::Q4_1, rows, k, n_tok, &w, &x);
    }

    #[test]
    fn gemm_q4_0_matches_its_gemv_twin((rows, k, n_tok, w, x) in gemm_case()) {
        check_gemm(GgmlType::Q4_0, rows, k, n_tok, &w, &x);
    }
}

/// More tokens than one pass over a panel holds (128), with a ragged last group.
#[test]
fn gemm_handles_long_batches() {
    let (rows, k, n_tok) = (24, 64, 131);
    let w: Vec<f32> = (0..rows * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
        .collect();
    let x: Vec<f32> = (0..n_tok * k)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
        .collect();
    check_gemm(GgmlType::Q4_1, rows, k, n_tok, &w, &x);
    check_gemm(GgmlType::Q4_0, rows, k, n_tok, &w, &x);
}

/// A matrix of `dtype` in the file's rows and in row panels (`kernels/panel.rs`).
fn rows_and_panels(
    dtype: GgmlType,
    rows: usize,
    k: usize,
    w: &[f32],
) -> (Vec<u64>, Vec<u64>, usize) {
    use qgraph::kernels::panel;
    let bytes = quantize(dtype, w).unwrap();
    let nb = k / 32;
    let mut packed = vec![0u8; panel::panel_bytes(dtype, rows, nb).unwrap()];
    assert!(panel::repack(dtype, &bytes, rows, nb, &mut packed));
    (aligned(&bytes), aligned(&packed), bytes.len() / rows)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The repack loses nothing: every panel gemv gives bitwise the values of its row-layout
    /// twin, for row counts that are not a multiple of the panel height too, and for a
    /// range of rows starting at any panel (as a worker of a threaded plan runs it).
    #[test]
    fn panel_gemv_is_bitwise_its_row_twin(
        rows in 1usize..41,
        blocks in 1usize..13,
        seed in any::<u64>(),
    ) {
        require_avx2();
        use qgraph::kernels::WeightLayout;
        let k = blocks * 32;
        let mut rng = qgraph::sample::rng::SplitMix64(seed);
        let w: Vec<f32> = (0..rows * k).map(|i| rng.next_f32() * (1.0 + (i / 32 % 5) as f32)).collect();
        let x: Vec<f32> = (0..k).map(|_| rng.next_f32() * 3.0).collect();
        let xq = q8(&x);
        for dtype in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0] {
            let (row_buf, panel_buf, row_bytes) = rows_and_panels(dtype, rows, k, &w);
            let by_rows = table::gemv(dtype, KernelLevel::Avx2, k, WeightLayout::Rows).unwrap().f;
            let by_panels = table::gemv(dtype, KernelLevel::Avx2, k, WeightLayout::Panels).unwrap().f;
            let (mut a, mut b) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
            // SAFETY: AVX2 checked; both buffers hold the matrix (rows, or padded panels)
            // of rows × row_bytes, 8-aligned; xq has k/32 blocks.
            unsafe {
                by_rows(row_buf.as_ptr() as *const u8, row_bytes, &x, &xq, &mut a);
                by_panels(panel_buf.as_ptr() as *const u8, row_bytes, &x, &xq, &mut b);
            }
            prop_assert_eq!(bits(&a), bits(&b), "{} {}×{}", dtype, rows, k);
            // Rows from panel 1 on, as a second worker runs them.
            if rows > 8 {
                let mut c = vec![f32::NAN; rows - 8];
                // SAFETY: as above, from row 8 (the start of panel 1).
                unsafe {
                    by_panels((panel_buf.as_ptr() as *const u8).add(8 * row_bytes), row_bytes, &x, &xq, &mut c)
                };
                prop_assert_eq!(bits(&a[8..]), bits(&c), "{} rows 8.. of {}", dtype, rows);
            }
            compare_gemv(dtype, by_rows, table::gemv_q8_twin(dtype).unwrap(), rows, k, &w, &x);
        }
    }

    /// The batched kernels read the same panels and compute bitwise what the row-layout
    /// gemm and the panel gemv compute (so prefill = decode holds with the repack on).
    #[test]
    fn panel_gemm_is_bitwise_the_row_gemm_and_the_panel_gemv((rows, k, n_tok, w, x) in gemm_case()) {
        require_avx2();
        use qgraph::kernels::WeightLayout;
        let nb = k / 32;
        let xq: Vec<BlockQ8Act> = x.chunks(k).flat_map(q8).collect();
        for dtype in [GgmlType::Q4_1, GgmlType::Q4_0] {
            let (row_buf, panel_buf, row_bytes) = rows_and_panels(dtype, rows, k, &w);
            let gemm = |layout| table::gemm(dtype, KernelLevel::Avx2, layout).unwrap().f;
            let (mut a, mut b) = (vec![f32::NAN; n_tok * rows], vec![f32::NAN; n_tok * rows]);
            // SAFETY: AVX2 checked; the buffers hold the matrix in each layout; xq holds
            // n_tok × k/32 blocks; the outputs n_tok rows of `rows`.
            unsafe {
                gemm(WeightLayout::Rows)(row_buf.as_ptr() as *const u8, row_bytes, rows, &xq, n_tok, a.as_mut_ptr(), rows);
                gemm(WeightLayout::Panels)(panel_buf.as_ptr() as *const u8, row_bytes, rows, &xq, n_tok, b.as_mut_ptr(), rows);
            }
            prop_assert_eq!(bits(&a), bits(&b), "{} gemm {}×{}×{}", dtype, rows, k, n_tok);
            let gemv = table::gemv(dtype, KernelLevel::Avx2, k, WeightLayout::Panels).unwrap().f;
            for t in 0..n_tok {
                let mut one = vec![f32::NAN; rows];
                // SAFETY: as above, token t alone.
                unsafe { gemv(panel_buf.as_ptr() as *const u8, row_bytes, &x[t * k..(t + 1) * k], &xq[t * nb..(t + 1) * nb], &mut one) };
                prop_assert_eq!(bits(&b[t * rows..(t + 1) * rows]), bits(&one), "{} token {}", dtype, t);
            }
        }
    }
}
