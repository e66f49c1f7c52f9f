//! Scalar reference kernels, written for clarity: every SIMD kernel is tested against these.

pub mod act;
pub mod attention;
pub mod elementwise;
pub mod gemv;
pub mod norm;
pub mod rope;
