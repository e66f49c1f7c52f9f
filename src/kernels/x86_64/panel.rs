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

use super::dot::{dot, Acc, Dot};
use super::gemm::{PanelFormat, Q4_0, Q4_1};
use super::gemv::{prefetch_once, PREFETCH_BYTES};
use crate::kernels::panel::PANEL_ROWS;
use crate::kernels::scalar::act::BlockQ8Act;

/// Stores the first `out.len()` (≤ 8) lanes of `acc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn store_lanes(acc: __m256, out: &mut [f32]) {
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

/// The decode product over row panels of format `F`: for each panel, each activation block
/// unpacked from its tile and multiplied as the batched gemm does it.
///
/// # Safety
/// As `kernels::GemvFn`, with `w` the start of a panel of `F`'s panel layout and rows
/// `0..out.len()` in panels from there (`8 · row_bytes` bytes each); the CPU has AVX2, FMA
/// and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn gemv_panels<F: PanelFormat>(
    w: *const u8,
    row_bytes: usize,
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    if F::DOT == Dot::Signed2 && F::BIAS <= 32 && xq.len() <= BIASED_SUMS {
        // SAFETY: forwarded from the caller.
        return unsafe { gemv_biased_panels::<F>(w, row_bytes, xq, out) };
    }
    for (p, lanes) in out.chunks_mut(PANEL_ROWS).enumerate() {
        let panel = w.wrapping_add(p * PANEL_ROWS * row_bytes);
        let mut acc = _mm256_setzero_ps();
        if F::BLOCKS == 1 {
            for (b, x) in xq.iter().enumerate() {
                let t = panel.wrapping_add(b * F::TILE);
                prefetch_once(t.wrapping_add(PREFETCH_BYTES), F::TILE);
                // SAFETY: tile b of panel p is in bounds (caller); the CPU has the features.
                let u = unsafe { F::unpack(t, &F::head(t), 0) };
                acc = dot::<F>(&u, x, Acc::open::<F>(acc)).close::<F>(&u, x, acc);
            }
        } else {
            for (i, xs) in xq.chunks(F::BLOCKS).enumerate() {
                let t = panel.wrapping_add(i * F::TILE);
                // SAFETY: tile i of panel p is in bounds (caller); the CPU has the features.
                let head = unsafe { F::head(t) };
                let mut a = Acc::open::<F>(acc);
                unrolled_blocks!(xs.len(), sub => {
                    prefetch_share::<F>(t.wrapping_add(PREFETCH_BYTES), sub);
                    // SAFETY: as above.
                    let u = unsafe { F::unpack(t, &head, sub) };
                    a = dot::<F>(&u, &xs[sub], a);
                    if sub + 1 == xs.len() {
                        acc = a.close::<F>(&u, &xs[sub], acc);
                    }
                });
            }
        }
        store_lanes(acc, lanes);
    }
}

/// Activation blocks whose bias sums `gemv_biased_panels` holds on the stack (8 KiB): rows
/// up to 32768 weights; longer ones take the sign-trick loop, which gives the same bits.
const BIASED_SUMS: usize = 1024;

/// `gemv_panels` for a `Dot::Signed2` format with small biased codes (Q6_K: the stored
/// codes, 0..64): `dot::signed2_biased_dot` on `unpack_biased` blocks, with `BIAS·Σx` per
/// half block computed once per call. The same integer sums and float operations as the
/// sign-trick loop, for about a fifth fewer instructions per block.
///
/// # Safety
/// As `gemv_panels`, and `xq.len() ≤ BIASED_SUMS`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_biased_panels<F: PanelFormat>(
    w: *const u8,
    row_bytes: usize,
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    debug_assert!(F::DOT == Dot::Signed2 && F::BIAS <= 32);
    let mut sums = [[0i32; 2]; BIASED_SUMS];
    super::dot::bias_sums(F::BIAS, xq, &mut sums[..xq.len()]);
    for (p, lanes) in out.chunks_mut(PANEL_ROWS).enumerate() {
        let panel = w.wrapping_add(p * PANEL_ROWS * row_bytes);
        let mut acc = _mm256_setzero_ps();
        for (i, (xs, ss)) in xq.chunks(F::BLOCKS).zip(sums.chunks(F::BLOCKS)).enumerate() {
            let t = panel.wrapping_add(i * F::TILE);
            // SAFETY: tile i of panel p is in bounds (caller); the CPU has the features.
            let head = unsafe { F::head(t) };
            unrolled_blocks!(xs.len(), sub => {
                prefetch_share::<F>(t.wrapping_add(PREFETCH_BYTES), sub);
                // SAFETY: as above.
                let u = unsafe { F::unpack_biased(t, &head, sub) };
                acc = super::dot::signed2_biased_dot(&u, &xs[sub], ss[sub], acc);
            });
        }
        store_lanes(acc, lanes);
    }
}

/// Prefetches the `sub`-th of `F::BLOCKS` equal shares of the tile at `t`: a big tile's
/// lines are asked for a few at a time as its blocks are multiplied, not all at once. A
/// burst of 27 requests per Q6_K tile (18 for Q4_K) left the stream waiting: on the Zen 4
/// VM, spreading them took the Q6_K decode gemv from 11 to 18 GB/s and Q5_K's from 12 to
/// 17 (`cargo bench --bench kernels -- gemv`, alternating runs).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_share<F: PanelFormat>(t: *const u8, sub: usize) {
    let from = (sub * F::TILE / F::BLOCKS) & !63;
    let to = ((sub + 1) * F::TILE / F::BLOCKS + 63) & !63;
    prefetch_once(t.wrapping_add(from), to - from);
}

/// Q4_1 in row panels × 8-bit activations: the panel twin of `gemv::gemv_q4_1_avx2`.
///
/// # Safety
/// As `gemv_panels`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_1x8_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_panels::<Q4_1>(w, row_bytes, xq, out) }
}

/// Q4_0 in row panels × 8-bit activations: the panel twin of `gemv::gemv_q4_0_avx2`.
///
/// # Safety
/// As `gemv_panels`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_0x8_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_panels::<Q4_0>(w, row_bytes, xq, out) }
}
