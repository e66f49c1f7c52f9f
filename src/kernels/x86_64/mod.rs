//! AVX2 + FMA + F16C kernels: the baseline every x86-64 kernel has. Each has a scalar twin
//! with the same signature in `kernels/scalar/` and is property-tested against it.
//!
//! Every function here is `#[target_feature(enable = "avx2,fma,f16c")]` and `unsafe`: the
//! caller must have checked that the CPU has those features. `kernels::table` checks once
//! and hands these out only then; nothing here tests features itself.

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
