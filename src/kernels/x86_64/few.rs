//! Products of a few tokens (a server's decode step: one row per request) over row panels:
//! each tile is unpacked once and multiplied by every token's activation block while it is
//! in registers, so the weights stream from memory once and the unpacking is paid once,
//! where the decode gemv per token would pay both per token and the batched gemm stages
//! 64 unpacked tiles through memory before it multiplies (a cost that pays off only over
//! many tokens). Each token's sums are the gemv's, in the gemv's order: the same bits.

use std::arch::x86_64::*;

use super::dot::{bias_sums, dot, signed2_biased_dot, Acc, Dot};
use super::gemm::{PanelFormat, Q4_0, Q4_1};
use super::gemv::PREFETCH_BYTES;
use super::kbits::{Q2K, Q3K};
use super::kpanel::{Iq4Nl, Iq4Xs, Q4K, Q5K, Q5_0, Q5_1, Q6K, Q8_0};
use super::panel::prefetch_share;
use super::panel::store_lanes;
use crate::kernels::panel::PANEL_ROWS;
use crate::kernels::scalar::act::BlockQ8Act;

/// Tokens multiplied per pass over the weights: their accumulators and one unpacked tile
/// fit in the sixteen AVX2 registers.
const GROUP: usize = 4;
/// Bytes of weight rows in one block: the tokens past the first group re-read the block
/// from L1/L2, not memory.
const BLOCK_BYTES: usize = 16 << 10;
/// (token, block) bias sums on the stack (8 KiB) for a format with small biased codes
/// (Q6_K), which then multiplies them as they are (`dot::signed2_biased_dot`, as its gemv
/// and gemm do); calls that need more take the sign trick, which gives the same bits.
const BIASED_SUMS: usize = 1024;

/// Rows `0..rows` (panels from `w`) times tokens `t0..t0 + N` of `xq` (`nb` blocks each),
/// into `out` (token t's row at `out + t · ldo`).
///
/// # Safety
/// As `kernels::GemmFn` for these rows and tokens; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn group<F: PanelFormat, const N: usize, const BIASED: bool>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    sums: &[[i32; 2]],
    nb: usize,
    t0: usize,
    out: *mut f32,
    ldo: usize,
) {
    let x: [&[BlockQ8Act]; N] = std::array::from_fn(|i| &xq[(t0 + i) * nb..][..nb]);
    for p in 0..rows.div_ceil(PANEL_ROWS) {
        let panel = w.wrapping_add(p * PANEL_ROWS * row_bytes);
        let mut acc = [_mm256_setzero_ps(); N];
        for tile in 0..nb / F::BLOCKS {
            let t = panel.wrapping_add(tile * F::TILE);
            // SAFETY: tile `tile` of panel p is in bounds (caller).
            let head = unsafe { F::head(t) };
            let mut a: [Acc; N] = std::array::from_fn(|i| Acc::open::<F>(acc[i]));
            unrolled_blocks!(F::BLOCKS, sub => {
                prefetch_share::<F>(t.wrapping_add(PREFETCH_BYTES), sub);
                // SAFETY: as above.
                let u = unsafe {
                    if BIASED {
                        F::unpack_biased(t, &head, sub)
                    } else {
                        F::unpack(t, &head, sub)
                    }
                };
                let b = tile * F::BLOCKS + sub;
                debug_assert!(b < nb && (!BIASED || (t0 + N) * nb <= sums.len()));
                for i in 0..N {
                    // SAFETY: b < nb (tile < nb / BLOCKS, sub < BLOCKS), and every x[i] holds
                    // nb blocks (cut above). Checked, LLVM loads and spills every token's
                    // activation words ahead of their use (as in `few_vnni.rs`).
                    let xb = unsafe { x[i].get_unchecked(b) };
                    a[i] = if BIASED {
                        // SAFETY: sums holds nb blocks of every token up to t0 + N (caller).
                        let sb = unsafe { *sums.get_unchecked((t0 + i) * nb + b) };
                        a[i].with_sum(signed2_biased_dot(&u, xb, sb, a[i].sum))
                    } else {
                        dot::<F>(&u, xb, a[i])
                    };
                    if sub + 1 == F::BLOCKS {
                        acc[i] = a[i].close::<F>(&u, xb, acc[i]);
                    }
                }
            });
        }
        let live = (rows - p * PANEL_ROWS).min(PANEL_ROWS);
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: out holds `live` rows from p · 8 of token t0 + i (caller: ldo ≥ rows).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(out.add((t0 + i) * ldo + p * PANEL_ROWS), live)
            };
            store_lanes(*a, dst);
        }
    }
}

/// The few-token product for format `F` (`kernels::GemmFn`): blocks of rows, and in each
/// the tokens in groups of four.
///
/// # Safety
/// As `kernels::GemmFn`, with `w` the start of a panel of `F`'s layout; the CPU has AVX2,
/// FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn few_panels<F: PanelFormat>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    if rows == 0 || n_tok == 0 {
        return;
    }
    let block = if n_tok <= GROUP {
        rows
    } else {
        (BLOCK_BYTES / row_bytes.max(1) / PANEL_ROWS).max(1) * PANEL_ROWS
    };
    if F::DOT == Dot::Signed2 && F::BIAS <= 32 && xq.len() <= BIASED_SUMS {
        let mut sums = [[0i32; 2]; BIASED_SUMS];
        bias_sums(F::BIAS, xq, &mut sums[..xq.len()]);
        // SAFETY: forwarded from the caller; `sums` holds every token's blocks.
        return unsafe {
            groups::<F, true>(
                w,
                row_bytes,
                rows,
                xq,
                &sums[..xq.len()],
                n_tok,
                block,
                out,
                ldo,
            )
        };
    }
    // SAFETY: forwarded from the caller.
    unsafe { groups::<F, false>(w, row_bytes, rows, xq, &[], n_tok, block, out, ldo) }
}

/// `few_panels`' blocks of `block` rows, each taken by the tokens in groups of four, with
/// the bias sums `sums` of every token's blocks when `BIASED`.
///
/// # Safety
/// As `few_panels`; `block` is a multiple of 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn groups<F: PanelFormat, const BIASED: bool>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    sums: &[[i32; 2]],
    n_tok: usize,
    block: usize,
    out: *mut f32,
    ldo: usize,
) {
    let nb = xq.len() / n_tok;
    let mut r0 = 0;
    while r0 < rows {
        let n = (rows - r0).min(block);
        let (wb, ob) = (w.wrapping_add(r0 * row_bytes), out.wrapping_add(r0));
        let mut t0 = 0;
        while t0 < n_tok {
            // SAFETY: rows r0..r0 + n and tokens t0.. are in bounds (caller); r0 is a
            // multiple of 8, so `wb` starts a panel.
            unsafe {
                match n_tok - t0 {
                    1 => group::<F, 1, BIASED>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                    2 => group::<F, 2, BIASED>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                    3 => group::<F, 3, BIASED>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                    _ => group::<F, GROUP, BIASED>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                }
            }
            t0 += (n_tok - t0).min(GROUP);
        }
        r0 += n;
    }
}

macro_rules! few_kernels {
    ($($fmt:ident: $name:ident;)*) => {$(
        /// The few-token product over row panels of this format (`few_panels`).
        ///
        /// # Safety
        /// As `kernels::GemmFn`, with `w` the start of a panel of the format's layout; the
        /// CPU has AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $name(
            w: *const u8,
            row_bytes: usize,
            rows: usize,
            xq: &[BlockQ8Act],
            n_tok: usize,
            out: *mut f32,
            ldo: usize,
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { few_panels::<$fmt>(w, row_bytes, rows, xq, n_tok, out, ldo) }
        }
    )*};
}

few_kernels! {
    Q4_0: few_q4_0x8_avx2;
    Q4_1: few_q4_1x8_avx2;
    Q8_0: few_q8_0x8_avx2;
    Q2K: few_q2_kx8_avx2;
    Q5_0: few_q5_0x8_avx2;
    Q5_1: few_q5_1x8_avx2;
    Q4K: few_q4_kx8_avx2;
    Q5K: few_q5_kx8_avx2;
    Q6K: few_q6_kx8_avx2;
    Q3K: few_q3_kx8_avx2;
    Iq4Nl: few_iq4_nlx8_avx2;
    Iq4Xs: few_iq4_xsx8_avx2;
}
