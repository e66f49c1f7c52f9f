//! Decode products over row panels (`kernels/panel.rs`): the weight stream is one contiguous
//! run of tiles, each tile eight rows' blocks, so every 256-bit load feeds all eight rows'
//! lanes and no horizontal sum is needed. Per Q4 tile (256 multiply-adds): 4 loads, 12
//! mask/shift ops, 8 `maddubs`, 7 adds, 1 `madd`, the eight rows' scales in one conversion
//! and 2 FMAs; the row-layout kernel (`gemv.rs`) spends 6 `hadd`s and eight scalar scale
//! loads on top of that.
//!
//! Each row's arithmetic is the same as the row-layout kernels' and the batched gemm's
//! (exact integer block sums, then the same FMAs in the same order), so a model gives
//! bitwise the same logits with or without the repack, in a batch or token by token.

use std::arch::x86_64::*;

use super::gemm::{block_dot, unpack_tile, Q4Block, Q4_0, Q4_1};
use super::gemv::{prefetch_once, PREFETCH_BYTES};
use crate::kernels::panel::PANEL_ROWS;
use crate::kernels::scalar::act::BlockQ8Act;

/// Stores the first `out.len()` (≤ 8) lanes of `acc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_lanes(acc: __m256, out: &mut [f32]) {
    if out.len() == PANEL_ROWS {
        // SAFETY: out holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    } else {
        let mut lanes = [0f32; PANEL_ROWS];
        // SAFETY: lanes is 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        out.copy_from_slice(&lanes[..out.len()]);
    }
}

/// # Safety
/// As `kernels::GemvFn`, with `w` the start of a panel of `B`'s panel layout and rows
/// `0..out.len()` in panels from there (`8 · row_bytes` bytes each); the CPU has AVX2, FMA
/// and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_q4_panels<B: Q4Block>(
    w: *const u8,
    row_bytes: usize,
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    let tile = PANEL_ROWS * B::BYTES;
    for (p, lanes) in out.chunks_mut(PANEL_ROWS).enumerate() {
        let panel = w.wrapping_add(p * PANEL_ROWS * row_bytes);
        let mut acc = _mm256_setzero_ps();
        for (b, x) in xq.iter().enumerate() {
            let t = panel.wrapping_add(b * tile);
            prefetch_once(t.wrapping_add(PREFETCH_BYTES), tile);
            // SAFETY: tile b of panel p is in bounds (caller).
            let pk = unsafe { unpack_tile::<B>(t) };
            acc = block_dot(&pk, x, acc);
        }
        store_lanes(acc, lanes);
    }
}

/// Q4_1 in row panels × 8-bit activations: the panel twin of `gemv::gemv_q4_1_avx2`.
///
/// # Safety
/// As `gemv_q4_panels`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_1x8_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_q4_panels::<Q4_1>(w, row_bytes, xq, out) }
}

/// Q4_0 in row panels × 8-bit activations: the panel twin of `gemv::gemv_q4_0_avx2`.
///
/// # Safety
/// As `gemv_q4_panels`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_0x8_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_q4_panels::<Q4_0>(w, row_bytes, xq, out) }
}

/// Bytes of a Q8_0 tile: d[8] f16, then eight 32-byte chunks of codes.
const Q8_TILE: usize = 16 + 8 * 32;

/// `acc + d_w·d_x·Σ q_w·q_x` for one Q8_0 tile and one activation block, every lane a row.
/// `maddubs` needs an unsigned operand: it gets |x| and w·sign(x), whose products are the
/// same; each `maddubs` is widened at once (two of its sums could overflow an i16).
///
/// # Safety
/// `t` points to a whole Q8_0 tile.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_tile_dot(t: *const u8, x: &BlockQ8Act, acc: __m256) -> __m256 {
    let qs = x.qs.as_ptr() as *const i32;
    let ones = _mm256_set1_epi16(1);
    // SAFETY: the tile is d[8] then eight 32-byte chunks (caller); x.qs is 8 words.
    let (d, s) = unsafe {
        let d = _mm256_cvtph_ps(_mm_loadu_si128(t as *const __m128i));
        let c = t.add(16) as *const __m256i;
        let s: [__m256i; 8] = std::array::from_fn(|j| {
            let xb = _mm256_set1_epi32(qs.add(j).read_unaligned());
            let wv = _mm256_loadu_si256(c.add(j));
            _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(wv, xb)),
                ones,
            )
        });
        (d, s)
    };
    let dot = _mm256_add_epi32(
        _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), _mm256_add_epi32(s[2], s[3])),
        _mm256_add_epi32(_mm256_add_epi32(s[4], s[5]), _mm256_add_epi32(s[6], s[7])),
    );
    let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.d));
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc)
}

/// Q8_0 in row panels × 8-bit activations: the panel twin of `gemv::gemv_q8_0_avx2`.
///
/// # Safety
/// As `gemv_q4_panels`, for Q8_0's panel layout.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q8_0x8_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    debug_assert_eq!(PANEL_ROWS * row_bytes, xq.len() * Q8_TILE);
    for (p, lanes) in out.chunks_mut(PANEL_ROWS).enumerate() {
        let panel = w.wrapping_add(p * PANEL_ROWS * row_bytes);
        let mut acc = _mm256_setzero_ps();
        for (b, x) in xq.iter().enumerate() {
            let t = panel.wrapping_add(b * Q8_TILE);
            prefetch_once(t.wrapping_add(PREFETCH_BYTES), Q8_TILE);
            // SAFETY: tile b of panel p is in bounds (caller).
            acc = unsafe { q8_tile_dot(t, x, acc) };
        }
        store_lanes(acc, lanes);
    }
}
