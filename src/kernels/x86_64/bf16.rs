//! Products with BF16 weights. A BF16 weight is the high half of an f32, so converting is
//! a widening and a shift; what bounded a dot with one accumulator per row was the FMA
//! chain's latency (16 bytes of weights per 4-cycle FMA), not memory. So a row is summed in
//! groups of 16 weights into four accumulators: a group's first eight weights into one, its
//! last eight into another, and even and odd groups into separate pairs. The decode gemv
//! then streams as fast as the F32 gemv, which reads twice the bytes per FMA.
//!
//! The gemv and the batched gemm run the same FMAs into the same accumulators and sum them
//! in one order (`group_fma`, `row_sum`), so a prompt fed in a batch gives bitwise the
//! logits it gives token by token.
//!
//! Tried and left out: a repacked *pair order* (in each 32-bit word, weights l and l + 8 of
//! a group, so one 256-bit load, a shift and a mask give the group). Cache-resident it
//! computed 7% faster, but streamed and on a whole BF16 model it was no faster: the stream
//! was already the bound.

use std::arch::x86_64::*;

use super::math::hsum;
use crate::kernels::scalar::act::BlockQ8Act;

/// Weights per group.
const GROUP: usize = 16;

/// Group `g` (weights `16g..16g + 16`) of a row, as f32: weights `16g..16g + 8` and
/// `16g + 8..16g + 16`.
///
/// # Safety
/// `row` holds at least `16g + 16` weights; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group(row: *const u8, g: usize) -> (__m256, __m256) {
    // SAFETY: forwarded from the caller: both halves are in the row.
    unsafe { (eight(row, GROUP * g), eight(row, GROUP * g + 8)) }
}

/// Weights `i..i + 8` of a row in the file's order, as f32.
///
/// # Safety
/// `row` holds at least `i + 8` weights; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn eight(row: *const u8, i: usize) -> __m256 {
    // SAFETY: forwarded from the caller.
    let h = unsafe { _mm_loadu_si128(row.add(2 * i) as *const __m128i) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

/// `acc += (lo, hi) × x[16g..16g + 16]`: a row's even groups go to its first accumulator
/// pair and its odd groups to the second.
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
/// group `k / 16`'s first half, into that group's first accumulator.
///
/// # Safety
/// `row` and `x` hold `k` weights and values; the CPU has AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_group(
    even: &mut [__m256; 2],
    odd: &mut [__m256; 2],
    row: *const u8,
    x: *const f32,
    k: usize,
) {
    let g = k / GROUP;
    let acc = if g.is_multiple_of(2) { even } else { odd };
    // SAFETY: weights and values 16g..16g + 8 = k - 8..k exist (caller).
    unsafe {
        acc[0] = _mm256_fmadd_ps(
            eight(row, GROUP * g),
            _mm256_loadu_ps(x.add(GROUP * g)),
            acc[0],
        );
    }
}

/// A row's four accumulators, summed in the one order every kernel here uses.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row_sum(even: &[__m256; 2], odd: &[__m256; 2]) -> f32 {
    hsum(_mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(even[0], even[1]), odd[0]),
        odd[1],
    ))
}

/// The BF16 gemv; `x.len()` must be a multiple of 8.
///
/// # Safety
/// As `kernels::GemvFn`; the CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_bf16_avx2(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    let (k, xp) = (x.len(), x.as_ptr());
    let groups = k / GROUP;
    for (r, o) in out.iter_mut().enumerate() {
        let row = w.wrapping_add(r * row_bytes);
        let (mut even, mut odd) = ([_mm256_setzero_ps(); 2], [_mm256_setzero_ps(); 2]);
        let mut g = 0;
        while g + 1 < groups {
            // SAFETY: row r holds k weights (caller) and x k values: groups g, g + 1 < groups.
            unsafe {
                let (lo, hi) = group(row, g);
                group_fma(&mut even, lo, hi, xp, g);
                let (lo, hi) = group(row, g + 1);
                group_fma(&mut odd, lo, hi, xp, g + 1);
            }
            g += 2;
        }
        if g < groups {
            // SAFETY: as above, for the last (even) group.
            unsafe {
                let (lo, hi) = group(row, g);
                group_fma(&mut even, lo, hi, xp, g);
            }
        }
        if !k.is_multiple_of(GROUP) {
            // SAFETY: as above; k is a multiple of 8 (caller).
            unsafe { half_group(&mut even, &mut odd, row, xp, k) };
        }
        *o = row_sum(&even, &odd);
    }
}

/// Tokens per register block of the batched kernel: 3 tokens × 4 accumulators and a
/// group's two weight vectors fill the 16 registers.
const TOKS: usize = 3;

/// The batched BF16 product, bitwise the gemv per token: `out[t·ldo + r] = Σ W[r]·x_t`,
/// each group's weights converted once for three tokens, and each (row, token) sees the
/// gemv's FMAs in the gemv's order.
///
/// # Safety
/// As `kernels::FloatGemmFn`; `x.len() / n_tok` is a multiple of 8; the CPU has AVX2, FMA
/// and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_bf16_avx2(
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
    let groups = k / GROUP;
    for r in 0..rows {
        let row = w.wrapping_add(r * row_bytes);
        for t0 in (0..n_tok).step_by(TOKS) {
            let nt = (n_tok - t0).min(TOKS);
            // Past the last token, lanes repeat it: computed, never stored.
            let xs: [*const f32; TOKS] =
                std::array::from_fn(|t| x.as_ptr().wrapping_add((t0 + t.min(nt - 1)) * k));
            let mut even = [[_mm256_setzero_ps(); 2]; TOKS];
            let mut odd = even;
            for g in (0..groups).step_by(2) {
                // SAFETY: row r holds k weights (caller), each token's row k values.
                unsafe {
                    let (lo, hi) = group(row, g);
                    for (a, &xt) in even.iter_mut().zip(&xs) {
                        group_fma(a, lo, hi, xt, g);
                    }
                }
                if g + 1 < groups {
                    // SAFETY: as above, for the odd group that follows.
                    unsafe {
                        let (lo, hi) = group(row, g + 1);
                        for (a, &xt) in odd.iter_mut().zip(&xs) {
                            group_fma(a, lo, hi, xt, g + 1);
                        }
                    }
                }
            }
            if !k.is_multiple_of(GROUP) {
                for (t, &xt) in xs.iter().enumerate() {
                    // SAFETY: as above; k is a multiple of 8 (caller).
                    unsafe { half_group(&mut even[t], &mut odd[t], row, xt, k) };
                }
            }
            for t in 0..nt {
                // SAFETY: token t0 + t's row r is in `out` (caller: ldo ≥ rows).
                unsafe { *out.add((t0 + t) * ldo + r) = row_sum(&even[t], &odd[t]) };
            }
        }
    }
}
