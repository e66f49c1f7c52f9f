//! Products with 16-bit float weights (F16, BF16). Eight weights convert to f32 in one
//! instruction (F16: `vcvtph2ps`) or two (BF16, the high half of an f32: a widening and a
//! shift); what bounded a dot with one accumulator per row was the FMA chain's latency (16
//! bytes of weights per 4-cycle FMA), not memory. So a row is summed in groups of 16
//! weights into two accumulators, a group's first eight weights into one and its last eight
//! into the other: the decode gemv then streams as fast as the F32 gemv, which reads twice
//! the bytes per FMA. (Four accumulators, even and odd groups apart, computed faster still
//! cache-resident but streamed no faster, and left the batched kernel registers for one row
//! at a time: prefill ran 40% slower.)
//!
//! The gemv and the batched gemm run the same FMAs into the same accumulators and sum them
//! in one order (`group_fma`, `half_step`, `row_sum`), so a prompt fed in a batch gives
//! bitwise the logits it gives token by token. The gemm walks a register block of rows ×
//! tokens eight weights at a time, each token's values loaded once for the block's rows and
//! each row's weights converted once for its tokens.
//!
//! Tried and left out: a repacked *pair order* (in each 32-bit word, weights l and l + 8 of
//! a group, so one 256-bit load, a shift and a mask give the group). Cache-resident it
//! computed 7% faster, but streamed and on a whole BF16 model it was no faster: the stream
//! was already the bound. Nor were, against `read_all` over the same matrix in turn (Zen 4
//! VM, three runs): an AVX-512 gemv whose one 512-bit accumulator holds a row's two (BF16
//! cache-resident 36 → 43 GiB/s; streamed 74–90 % vs 74–88 %), or a `prefetchnta` a line
//! per two groups, 4 KiB ahead (BF16 55–96 % vs 68–82 %, F32 63–84 % vs 82–103 %). Two rows
//! at a time, their chains interleaved, computed 15% faster cache-resident and streamed at
//! 25–37 %: two streams a row apart, each restarting every two rows, starve the hardware
//! prefetchers that the one sequential stream keeps busy.

use std::arch::x86_64::*;

use super::math::hsum;
use crate::kernels::scalar::act::BlockQ8Act;

/// Weights per group.
const GROUP: usize = 16;

/// The formats here: `KIND` 0 = F16, 1 = BF16.
const F16: u8 = 0;
const BF16: u8 = 1;

/// Group `g` (weights `16g..16g + 16`) of a row of format `KIND`, as f32: weights
/// `16g..16g + 8` and `16g + 8..16g + 16`.
///
/// # Safety
/// `row` holds at least `16g + 16` weights; the CPU has AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group<const KIND: u8>(row: *const u8, g: usize) -> (__m256, __m256) {
    // SAFETY: forwarded from the caller: both halves are in the row.
    unsafe {
        (
            eight::<KIND>(row, GROUP * g),
            eight::<KIND>(row, GROUP * g + 8),
        )
    }
}

/// Weights `i..i + 8` of a row of format `KIND`, as f32.
///
/// # Safety
/// `row` holds at least `i + 8` weights; the CPU has AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn eight<const KIND: u8>(row: *const u8, i: usize) -> __m256 {
    // SAFETY: forwarded from the caller.
    let h = unsafe { _mm_loadu_si128(row.add(2 * i) as *const __m128i) };
    match KIND {
        F16 => _mm256_cvtph_ps(h),
        _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h))),
    }
}

/// `acc += (lo, hi) × x[16g..16g + 16]`: a group's first eight weights into a row's first
/// accumulator, its last eight into the second.
///
/// # Safety
/// `x` holds at least `16g + 16` values; the CPU has AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_fma(acc: &mut [__m256; 2], lo: __m256, hi: __m256, x: *const f32, g: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        acc[0] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x.add(GROUP * g)), acc[0]);
        acc[1] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x.add(GROUP * g + 8)), acc[1]);
    }
}

/// A row of `k` weights whose last eight are not a whole group (`k % 16 == 8`): they are
/// group `k / 16`'s first half, into the first accumulator.
///
/// # Safety
/// `row` and `x` hold `k` weights and values; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_group<const KIND: u8>(
    acc: &mut [__m256; 2],
    row: *const u8,
    x: *const f32,
    k: usize,
) {
    let i = k - 8;
    // SAFETY: weights and values k - 8..k exist (caller).
    unsafe {
        acc[0] = _mm256_fmadd_ps(eight::<KIND>(row, i), _mm256_loadu_ps(x.add(i)), acc[0]);
    }
}

/// A row's two accumulators, summed in the one order every kernel here uses.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row_sum(acc: &[__m256; 2]) -> f32 {
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// # Safety
/// As `kernels::GemvFn`; `x.len()` is a multiple of 8; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv<const KIND: u8>(w: *const u8, row_bytes: usize, x: &[f32], out: &mut [f32]) {
    let (k, xp) = (x.len(), x.as_ptr());
    for (r, o) in out.iter_mut().enumerate() {
        let row = w.wrapping_add(r * row_bytes);
        let mut acc = [_mm256_setzero_ps(); 2];
        for g in 0..k / GROUP {
            // SAFETY: row r holds k weights (caller) and x k values; g < k / 16.
            unsafe {
                let (lo, hi) = group::<KIND>(row, g);
                group_fma(&mut acc, lo, hi, xp, g);
            }
        }
        if !k.is_multiple_of(GROUP) {
            // SAFETY: as above; k is a multiple of 8 (caller).
            unsafe { half_group::<KIND>(&mut acc, row, xp, k) };
        }
        *o = row_sum(&acc);
    }
}

/// Rows and tokens per register block of the batched kernel, per format, the fastest of
/// those tried (`cargo bench --bench kernels -- gemm/`, Zen 4 VM, 576×1536 × 128 tokens):
/// F16 (3, 2) 83–96 GFLOP/s, (2, 3) 45 (its twelve accumulators and the loads spill one);
/// BF16 (2, 2) 68–72, (3, 2) 42, (1, 4) 53, (2, 3) 45; F32's 4 × 3 kernel 80–88.
const F16_BLOCK: (usize, usize) = (3, 2);
const BF16_BLOCK: (usize, usize) = (2, 2);

/// Accumulator `H` of every (row, token) of a register block += weights `i..i + 8` × the
/// tokens' values `i..i + 8`: each token's values loaded once for the block's rows, each
/// row's weights converted once for the block's tokens.
///
/// # Safety
/// Every row at `ws` holds and every token row at `xs` has at least `i + 8` elements; the
/// CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_step<const KIND: u8, const H: usize, const ROWS: usize, const TOKS: usize>(
    acc: &mut [[[__m256; 2]; TOKS]; ROWS],
    ws: &[*const u8; ROWS],
    xs: &[*const f32; TOKS],
    i: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let xv: [__m256; TOKS] = std::array::from_fn(|t| _mm256_loadu_ps(xs[t].add(i)));
        for (a, &row) in acc.iter_mut().zip(ws) {
            let wv = eight::<KIND>(row, i);
            for (a, xv) in a.iter_mut().zip(&xv) {
                a[H] = _mm256_fmadd_ps(wv, *xv, a[H]);
            }
        }
    }
}

/// `out[t·ldo + r] = Σ W[r]·x_t`: each group's weights converted once for three tokens,
/// each token's values loaded once for two rows, and each (row, token) sees the gemv's
/// FMAs in the gemv's order.
///
/// # Safety
/// As `kernels::FloatGemmFn`; `x.len() / n_tok` is a multiple of 8; the CPU has AVX2, FMA
/// and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm<const KIND: u8, const ROWS: usize, const TOKS: usize>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    x: &[f32],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    if n_tok == 0 {
        return;
    }
    let k = x.len() / n_tok;
    for r0 in (0..rows).step_by(ROWS) {
        let nr = (rows - r0).min(ROWS);
        // Past the last row or token, lanes repeat it: computed, never stored.
        let ws: [*const u8; ROWS] =
            std::array::from_fn(|r| w.wrapping_add((r0 + r.min(nr - 1)) * row_bytes));
        for t0 in (0..n_tok).step_by(TOKS) {
            let nt = (n_tok - t0).min(TOKS);
            let xs: [*const f32; TOKS] =
                std::array::from_fn(|t| x.as_ptr().wrapping_add((t0 + t.min(nt - 1)) * k));
            let mut acc = [[[_mm256_setzero_ps(); 2]; TOKS]; ROWS];
            for g in 0..k / GROUP {
                // SAFETY: each row holds k weights (caller), each token's row k values.
                unsafe {
                    half_step::<KIND, 0, ROWS, TOKS>(&mut acc, &ws, &xs, GROUP * g);
                    half_step::<KIND, 1, ROWS, TOKS>(&mut acc, &ws, &xs, GROUP * g + 8);
                }
            }
            if !k.is_multiple_of(GROUP) {
                // SAFETY: as above; k is a multiple of 8 (caller).
                unsafe { half_step::<KIND, 0, ROWS, TOKS>(&mut acc, &ws, &xs, k - 8) };
            }
            for (r, a) in acc.iter().enumerate().take(nr) {
                for (t, a) in a.iter().enumerate().take(nt) {
                    // SAFETY: token t0 + t's row r0 + r is in `out` (caller: ldo ≥ rows).
                    unsafe { *out.add((t0 + t) * ldo + r0 + r) = row_sum(a) };
                }
            }
        }
    }
}

macro_rules! half_kernels {
    ($($kind:ident, $block:ident: $gemv:ident, $gemm:ident;)*) => {$(
        /// The gemv of this 16-bit float format; `x.len()` must be a multiple of 8.
        ///
        /// # Safety
        /// As `kernels::GemvFn`; the CPU has AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $gemv(
            w: *const u8,
            row_bytes: usize,
            x: &[f32],
            _xq: &[BlockQ8Act],
            out: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { gemv::<$kind>(w, row_bytes, x, out) }
        }

        /// The batched product of this 16-bit float format, bitwise the gemv per token.
        ///
        /// # Safety
        /// As `kernels::FloatGemmFn`; the CPU has AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $gemm(
            w: *const u8,
            row_bytes: usize,
            rows: usize,
            x: &[f32],
            n_tok: usize,
            out: *mut f32,
            ldo: usize,
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { gemm::<$kind, { $block.0 }, { $block.1 }>(w, row_bytes, rows, x, n_tok, out, ldo) }
        }
    )*};
}

half_kernels! {
    F16, F16_BLOCK: gemv_f16_avx2, gemm_f16_avx2;
    BF16, BF16_BLOCK: gemv_bf16_avx2, gemm_bf16_avx2;
}
