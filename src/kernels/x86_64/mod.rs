//! AVX2 + FMA + F16C kernels: the baseline every x86-64 kernel has. Each has a scalar twin
//! with the same signature in `kernels/scalar/` and is property-tested against it.
//!
//! Every function here is `#[target_feature(enable = "avx2,fma,f16c")]` and `unsafe`: the
//! caller must have checked that the CPU has those features. `kernels::table` checks once
//! and hands these out only then; nothing here tests features itself.

/// Runs `$body` once per block of a tile, `$sub` bound to 0, 1, … 7 (those below `$n`) as
/// constants: each block's unpacking (`PanelFormat::unpack`, whose shift counts and chunk
/// offsets depend on the block) is then specialised at compile time, which a loop over a
/// runtime block number left to variable shifts. On the Zen 4 VM, cache-resident decode
/// gemv, GiB/s: Q3_K 7.2–9.5 → 11.1–11.5, Q4_K 23 → 29.5, Q5_K 18 → 22.5, Q2_K 10.4 → 11.8.
macro_rules! unrolled_blocks {
    ($n:expr, $sub:ident => $body:block) => {
        unrolled_blocks!(@ $n, $sub, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $n:expr, $sub:ident, $body:block, $($k:literal)*) => {$(
        if $k < $n {
            let $sub: usize = $k;
            $body
        }
    )*};
}

/// Defines `$name::<F>`, the decode loop over row panels of format `F` multiplied by
/// `vnni::panel_dot`, under the target features `$features`: the VNNI twins' (`vnni.rs`)
/// and the VNNI + GFNI twins' (`gfni.rs`), whose unpacking inlines only into a loop with
/// GFNI enabled. The signed-code formats' products read `BIAS·Σx` per half block, computed
/// once per call (rows up to `vnni::GEMV_SUMS` blocks; longer ones run the AVX2 gemv, which
/// gives the same bits).
///
/// The function's safety contract: as `kernels::GemvFn`, with `w` the start of a panel of
/// `F`'s layout and rows `0..out.len()` in panels from there; the CPU has `$features`.
macro_rules! vnni_gemv_loop {
    ($name:ident, $features:literal) => {
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $name<F: super::gemm::PanelFormat>(
            w: *const u8,
            row_bytes: usize,
            xq: &[crate::kernels::scalar::act::BlockQ8Act],
            out: &mut [f32],
        ) {
            use super::dot::Dot;
            use super::gemv::PREFETCH_BYTES;
            use super::vnni::GEMV_SUMS;
            use crate::kernels::panel::PANEL_ROWS;
            let signed = matches!(F::DOT, Dot::Signed | Dot::Signed2);
            if signed && xq.len() > GEMV_SUMS {
                // SAFETY: forwarded from the caller.
                return unsafe { super::panel::gemv_panels::<F>(w, row_bytes, xq, out) };
            }
            let mut sums = [[0i32; 2]; GEMV_SUMS];
            if signed {
                super::dot::bias_sums(F::BIAS, xq, &mut sums[..xq.len()]);
            }
            for (p, lanes) in out.chunks_mut(PANEL_ROWS).enumerate() {
                let panel = w.wrapping_add(p * PANEL_ROWS * row_bytes);
                let mut acc = std::arch::x86_64::_mm256_setzero_ps();
                for (i, xs) in xq.chunks(F::BLOCKS).enumerate() {
                    let t = panel.wrapping_add(i * F::TILE);
                    // SAFETY: tile i of panel p is in bounds (caller); the CPU has the
                    // features.
                    let head = unsafe { F::head(t) };
                    let mut a = super::dot::Acc::open::<F>(acc);
                    unrolled_blocks!(xs.len(), sub => {
                        super::panel::prefetch_share::<F>(t.wrapping_add(PREFETCH_BYTES), sub);
                        // SAFETY: as above.
                        let (u, bias) = unsafe {
                            if signed {
                                (F::unpack_biased(t, &head, sub), sums[i * F::BLOCKS + sub])
                            } else {
                                (F::unpack(t, &head, sub), [0; 2])
                            }
                        };
                        a = super::vnni::panel_dot::<F>(&u, &xs[sub], bias, F::code_shift(sub), a);
                        if sub + 1 == xs.len() {
                            acc = a.close::<F>(&u, &xs[sub], acc);
                        }
                    });
                }
                super::panel::store_lanes(acc, lanes);
            }
        }
    };
}

pub mod attention;
pub mod bandwidth;
mod dot;
pub mod few;
pub mod few_vnni;
pub mod float;
pub mod gemm;
pub mod gemv;
pub mod gfni;
pub mod half;
mod kbits;
pub mod kpanel;
pub mod math;
pub mod panel;
pub mod vnni;
