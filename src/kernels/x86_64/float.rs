//! Products with float weights (F32, F16): f32 FMAs, eight weights widened per step
//! by one shared load (`load8`). The batched twin (`gemm_float`) runs, for every (row,
//! token) pair, the gemv's exact sequence of FMAs and its final horizontal sum, so a prompt
//! fed in a batch gives bitwise the logits it gives token by token.
//!
//! BF16 has its own kernels (`bf16.rs`).

use std::arch::x86_64::*;

use super::math::hsum;
use crate::kernels::scalar::act::BlockQ8Act;

/// The weight formats here: 0 = F32, 1 = F16.
const F32: u8 = 0;
const F16: u8 = 1;

/// Eight weights `i..i + 8` of a row of format `KIND`, as f32.
///
/// # Safety
/// `row` holds at least `i + 8` weights; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<const KIND: u8>(row: *const u8, i: usize) -> __m256 {
    // SAFETY: forwarded from the caller.
    unsafe {
        match KIND {
            F32 => _mm256_loadu_ps((row as *const f32).add(i)),
            _ => _mm256_cvtph_ps(_mm_loadu_si128((row as *const u16).add(i) as *const __m128i)),
        }
    }
}

/// # Safety
/// As `kernels::GemvFn`; `x.len()` is a multiple of 8; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_float<const KIND: u8>(w: *const u8, row_bytes: usize, x: &[f32], out: &mut [f32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let row = w.wrapping_add(r * row_bytes);
        let mut acc = _mm256_setzero_ps();
        for i in (0..x.len()).step_by(8) {
            // SAFETY: row r of the matrix the caller vouched for; i + 8 <= x.len().
            acc = _mm256_fmadd_ps(
                unsafe { load8::<KIND>(row, i) },
                unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) },
                acc,
            );
        }
        *o = hsum(acc);
    }
}

/// Rows per register block and tokens per register block of the batched kernel.
const ROWS: usize = 4;
const TOKS: usize = 3;

/// `out[t·ldo + r] = Σ W[r]·x_t` for `rows` rows and the `n_tok` rows of `x` (`k` each):
/// blocks of 4 rows × 3 tokens keep 12 accumulators in registers, so each loaded weight
/// vector serves three tokens; each accumulator sees the gemv's FMAs in the gemv's order.
///
/// # Safety
/// As `kernels::FloatGemmFn`; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_float<const KIND: u8>(
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
        for t0 in (0..n_tok).step_by(TOKS) {
            let nt = (n_tok - t0).min(TOKS);
            let mut acc = [[_mm256_setzero_ps(); TOKS]; ROWS];
            for i in (0..k).step_by(8) {
                // SAFETY: rows r0..r0 + nr and tokens t0..t0 + nt exist (caller); i + 8 <= k.
                unsafe {
                    let xv: [__m256; TOKS] = std::array::from_fn(|t| {
                        _mm256_loadu_ps(x.as_ptr().add((t0 + t.min(nt - 1)) * k + i))
                    });
                    for (r, a) in acc.iter_mut().enumerate().take(nr) {
                        let wv = load8::<KIND>(w.add((r0 + r) * row_bytes), i);
                        for t in 0..TOKS {
                            a[t] = _mm256_fmadd_ps(wv, xv[t], a[t]);
                        }
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(nr) {
                for (t, v) in a.iter().enumerate().take(nt) {
                    // SAFETY: token t0 + t's row r0 + r is in `out` (caller: ldo ≥ rows).
                    unsafe { *out.add((t0 + t) * ldo + r0 + r) = hsum(*v) };
                }
            }
        }
    }
}

macro_rules! float_kernels {
    ($($kind:ident: $gemv:ident, $gemm:ident;)*) => {$(
        /// The gemv of this float format; `x.len()` must be a multiple of 8.
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
            unsafe { gemv_float::<$kind>(w, row_bytes, x, out) }
        }

        /// The batched product of this float format, bitwise the gemv per token.
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
            unsafe { gemm_float::<$kind>(w, row_bytes, rows, x, n_tok, out, ldo) }
        }
    )*};
}

float_kernels! {
    F32: gemv_f32_avx2, gemm_f32_avx2;
    F16: gemv_f16_avx2, gemm_f16_avx2;
}
