//! Kernels: a plain scalar reference for every op (`scalar/`) and, later, SIMD twins with the
//! same signatures (`x86_64/`). `table` picks one per step, once, at plan time.

pub mod scalar;
pub mod table;

use serde::Serialize;

/// The instruction set a plan's kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelLevel {
    Scalar,
}

impl KernelLevel {
    pub fn name(self) -> &'static str {
        match self {
            KernelLevel::Scalar => "scalar",
        }
    }
}

/// `out[r] = Σ_c W[r][c] · x[c]` for every row `r < out.len()` of a row-major matrix whose
/// rows are `x.len()` elements stored in one format, `row_bytes` bytes each.
///
/// # Safety
/// `w` points to `out.len() * row_bytes` readable bytes, aligned for the format's blocks,
/// and `x.len()` is the row length in elements (a whole number of blocks). The planner
/// checks both for every step (`plan/infer.rs`, `plan/lower.rs`).
pub type GemvFn = unsafe fn(w: *const u8, row_bytes: usize, x: &[f32], out: &mut [f32]);

/// Converts one row of `out.len()` elements stored in a format to f32.
///
/// # Safety
/// `w` points to one row of `out.len()` elements in the format, aligned for its blocks.
pub type RowFn = unsafe fn(w: *const u8, out: &mut [f32]);

/// A kernel chosen for a step, with its name for dumps.
#[derive(Clone, Copy)]
pub struct Chosen<F> {
    pub f: F,
    pub name: &'static str,
}

impl<F> std::fmt::Debug for Chosen<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// `out = x / sqrt(mean(x²) + eps) * gamma` for one row.
pub type RmsNormFn = fn(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]);
/// Rotates each of `heads` heads of one row in place, for position `pos`.
pub type RopeFn =
    fn(x: &mut [f32], heads: usize, pos: i32, theta: f32, layout: crate::graph::RopeLayout);
/// Attention of one query row over the first `n_past` rows of a K and a V cache.
pub type AttendFn = fn(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_past: usize,
    heads: usize,
    kv_heads: usize,
    scores: &mut [f32],
    out: &mut [f32],
);
/// `out[i] = f(a[i], b[i])` over one row.
pub type BinaryFn = fn(a: &[f32], b: &[f32], out: &mut [f32]);
/// `acc[i] += x[i]` over one row, in place.
pub type AccumulateFn = fn(acc: &mut [f32], x: &[f32]);
/// `out = f(x)` over one row.
pub type UnaryFn = fn(x: &[f32], out: &mut [f32]);
