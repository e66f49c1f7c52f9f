//! Products with F32 weights: f32 FMAs, eight weights per step. The batched twin
//! (`gemm_f32_avx2`) runs, for every (row, token) pair, the gemv's exact sequence of FMAs
//! and its final horizontal sum, so a prompt fed in a batch gives bitwise the logits it
//! gives token by token.
//!
//! The 16-bit float formats have their own kernels (`half.rs`): with half the bytes per
//! FMA, one accumulator per row left them waiting on the FMA latency.

use std::arch::x86_64::*;

use super::math::hsum;
use crate::kernels::scalar::act::BlockQ8Act;

/// Eight weights `i..i + 8` of an F32 row.
///
/// # Safety
/// `row` holds at least `i + 8` weights; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(row: *const u8, i: usize) -> __m256 {
    // SAFETY: forwarded from the caller.
    unsafe { _mm256_loadu_ps((row as *const f32).add(i)) }
}

/// The F32 gemv; `x.len()` must be a multiple of 8.
///
/// # Safety
/// As `kernels::GemvFn`; the CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_f32_avx2(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    for (r, o) in out.iter_mut().enumerate() {
        let row = w.wrapping_add(r * row_bytes);
        let mut acc = _mm256_setzero_ps();
        for i in (0..x.len()).step_by(8) {
            // SAFETY: row r of the matrix the caller vouched for; i + 8 <= x.len().
            acc = _mm256_fmadd_ps(
                unsafe { load8(row, i) },
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
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_f32_avx2(
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
                        let wv = load8(w.add((r0 + r) * row_bytes), i);
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
