//! The few-token product (`few.rs`) with AVX-512 VNNI: each unpacked tile's codes made
//! unsigned once (`PanelFormat::unpack_biased`), then one 256-bit `vpdpbusd` per four codes
//! per token (`vnni::panel_dot`) where the AVX2 kernel runs the `maddubs`/`madd` chain. The
//! integer sums are the AVX2 kernel's exactly and the float steps the same, so the bits are
//! the gemv's. Every panel format; Q2_K takes its codes in place, times 4^j
//! (`kbits::Q2KInPlace`, `few_q2_kx8_vnni`).

use std::arch::x86_64::*;

use super::dot::{bias_sums, Acc};
use super::gemm::{PanelFormat, Q4_0, Q4_1};
use super::gemv::PREFETCH_BYTES;
use super::kbits::{Q2KInPlace, Q2K, Q3K};
use super::kpanel::{Iq4Nl, Iq4Xs, Q4K, Q5K, Q5_0, Q5_1, Q6K, Q8_0};
use super::panel::prefetch_share;
use super::panel::store_lanes;
use super::vnni::panel_dot;
use crate::kernels::panel::PANEL_ROWS;
use crate::kernels::scalar::act::BlockQ8Act;

/// Tokens per pass, as in `few.rs`.
const GROUP: usize = 4;
/// Bytes of weight rows in one block when more than one group passes over it.
const BLOCK_BYTES: usize = 16 << 10;
/// (token, block) bias sums on the stack (8 KiB); calls that need more run `few.rs`.
const SUMS: usize = 1024;

/// Rows `0..rows` (panels from `w`) times tokens `t0..t0 + N`, whose bias sums are
/// `sums[t · nb + b]` for token t0 + t.
///
/// # Safety
/// As `kernels::GemmFn` for these rows and tokens; the CPU has AVX2, FMA, F16C and
/// AVX-512 F/BW/VL/VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn group<F: PanelFormat, const N: usize>(
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
    let s: [&[[i32; 2]]; N] = std::array::from_fn(|i| &sums[(t0 + i) * nb..][..nb]);
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
                let u = unsafe { F::unpack_biased(t, &head, sub) };
                let b = tile * F::BLOCKS + sub;
                debug_assert!(b < nb);
                for i in 0..N {
                    // SAFETY: b < nb (tile < nb / BLOCKS, sub < BLOCKS), and every x[i] and
                    // s[i] holds nb blocks (cut above). Checked indexing here costs half the
                    // speed: LLVM then broadcasts every activation word ahead of its use and
                    // spills it (Q2_K, Q6_K at four tokens 2×, `examples/kernel_ceiling`).
                    let (xb, sb) = unsafe { (x[i].get_unchecked(b), *s[i].get_unchecked(b)) };
                    a[i] = panel_dot::<F>(&u, xb, sb, F::code_shift(b), a[i]);
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

/// # Safety
/// As `kernels::GemmFn`, with `w` the start of a panel of `F`'s layout; the CPU has AVX2,
/// FMA, F16C and AVX-512 F/BW/VL/VNNI.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn few_vnni<F: PanelFormat, L: PanelFormat>(
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
    if xq.len() > SUMS {
        debug_assert_eq!(
            L::code_shift(1),
            0,
            "the AVX2 kernel takes codes shifted down"
        );
        // SAFETY: forwarded from the caller; L is F's layout, and its AVX2 kernel gives the
        // same bits.
        return unsafe { super::few::few_panels::<L>(w, row_bytes, rows, xq, n_tok, out, ldo) };
    }
    let nb = xq.len() / n_tok;
    let mut sums = [[0i32; 2]; SUMS];
    bias_sums(F::BIAS, xq, &mut sums[..xq.len()]);
    let sums = &sums[..xq.len()];
    let block = if n_tok <= GROUP {
        rows
    } else {
        (BLOCK_BYTES / row_bytes.max(1) / PANEL_ROWS).max(1) * PANEL_ROWS
    };
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
                    1 => group::<F, 1>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                    2 => group::<F, 2>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                    3 => group::<F, 3>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                    _ => group::<F, GROUP>(wb, row_bytes, n, xq, sums, nb, t0, ob, ldo),
                }
            }
            t0 += (n_tok - t0).min(GROUP);
        }
        r0 += n;
    }
}

macro_rules! few_vnni_kernels {
    ($($fmt:ident $(/ $long:ident)?: $name:ident;)*) => {$(
        /// The few-token product over row panels of this format with AVX-512 VNNI: bitwise
        /// the AVX2 one and the gemv. Rows past the activation sums it keeps run the AVX2
        /// kernel of the format after the slash, where one is named: the same panels read as
        /// the AVX2 kernel reads them (Q2_K: its codes shifted down, not in place).
        ///
        /// # Safety
        /// As `kernels::GemmFn`, with `w` the start of a panel of the format's layout; the
        /// CPU has AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
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
            unsafe {
                few_vnni::<$fmt, few_vnni_kernels!(@long $fmt $($long)?)>(
                    w, row_bytes, rows, xq, n_tok, out, ldo,
                )
            }
        }
    )*};
    (@long $fmt:ident $long:ident) => { $long };
    (@long $fmt:ident) => { $fmt };
}

few_vnni_kernels! {
    // Cache-resident at four tokens, Zen 4 VM: 3.8–3.9 (the AVX2 kernel) → 4.8 GB/s of
    // weights (`cargo run --release --example kernel_ceiling -- Q2_K`).
    Q2KInPlace / Q2K: few_q2_kx8_vnni;
    Q4_0: few_q4_0x8_vnni;
    Q4_1: few_q4_1x8_vnni;
    Q5_0: few_q5_0x8_vnni;
    Q5_1: few_q5_1x8_vnni;
    Q4K: few_q4_kx8_vnni;
    Q5K: few_q5_kx8_vnni;
    Q8_0: few_q8_0x8_vnni;
    Q6K: few_q6_kx8_vnni;
    Q3K: few_q3_kx8_vnni;
    Iq4Nl: few_iq4_nlx8_vnni;
    Iq4Xs: few_iq4_xsx8_vnni;
}
