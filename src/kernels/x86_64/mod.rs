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

pub mod attention;
pub mod bandwidth;
mod dot;
pub mod few;
pub mod few_vnni;
pub mod float;
pub mod gemm;
pub mod gemv;
pub mod kpanel;
pub mod math;
pub mod panel;
pub mod vnni;
