//! Kernels: a plain scalar reference for every op (`scalar/`) and, later, SIMD twins with the
//! same signatures (`x86_64/`). `table` picks one per step, once, at plan time.

pub mod kv;
pub mod panel;
mod recode;
pub mod scalar;
pub mod table;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use scalar::act::BlockQ8Act;

use serde::Serialize;

/// The instruction set a plan's kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelLevel {
    /// Plain Rust, f32 throughout: the reference every other level is tested against.
    Scalar,
    /// AVX2 + FMA + F16C, activations quantized to 8-bit blocks for quantized weights.
    Avx2,
    /// The AVX2 kernels, with AVX-512 (F, BW, VL, VNNI) twins where a benchmark on a CPU
    /// that has them showed a win (`x86_64/vnni.rs`). Every twin computes bitwise what its
    /// AVX2 kernel does, so a plan's results do not depend on which of the two it picked.
    Avx512,
}

/// How a weight matrix's bytes are arranged for its kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightLayout {
    /// As in the file: row after row, read in place from the memory map.
    Rows,
    /// Row panels of eight (`panel.rs`), made once by the planner's repack.
    Panels,
}

impl WeightLayout {
    pub fn name(self) -> &'static str {
        match self {
            WeightLayout::Rows => "rows",
            WeightLayout::Panels => "panels",
        }
    }
}

impl KernelLevel {
    pub fn name(self) -> &'static str {
        match self {
            KernelLevel::Scalar => "scalar",
            KernelLevel::Avx2 => "avx2",
            KernelLevel::Avx512 => "avx512",
        }
    }

    /// Whether the level runs the AVX2 kernels (both SIMD levels do).
    pub fn has_avx2(self) -> bool {
        self != KernelLevel::Scalar
    }
}

impl std::str::FromStr for KernelLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "scalar" => Ok(KernelLevel::Scalar),
            "avx2" => Ok(KernelLevel::Avx2),
            "avx512" => Ok(KernelLevel::Avx512),
            "auto" => Ok(table::detect()),
            other => Err(format!(
                "unknown kernel level `{other}` (scalar, avx2, avx512, auto)"
            )),
        }
    }
}

/// `out[r] = Σ_c W[r][c] · x[c]` for every row `r < out.len()` of a row-major matrix whose
/// rows are `x.len()` elements stored in one format, `row_bytes` bytes each. Kernels that
/// multiply 8-bit activations (`Chosen::wants_q8`) read `xq`, `x` quantized by the step;
/// the others read `x` (and `xq` may be empty). Q2_K's and Q3_K's sum a tile's blocks in
/// integers: their `xq` must share one scale per 256 values (`table::quantize_act_for`), or
/// the result is wrong (never unsafe).
///
/// # Safety
/// `w` points to `out.len() * row_bytes` readable bytes, aligned for the format's blocks,
/// `x.len()` is the row length in elements (a whole number of blocks), `xq` holds
/// `x.len() / 32` blocks for a `wants_q8` kernel, and the CPU has the kernel's features. The
/// planner checks all of it for every step (`plan/infer.rs`, `plan/lower.rs`, `table.rs`).
pub type GemvFn =
    unsafe fn(w: *const u8, row_bytes: usize, x: &[f32], xq: &[BlockQ8Act], out: &mut [f32]);

/// `out[t·ldo + r] = Σ_c W[r][c] · x_t[c]` for rows `r < rows` and tokens `t < n_tok`: the
/// product of a matrix and a batch of activation rows quantized to 8-bit blocks, `xq`
/// holding `n_tok` rows of `k / 32` blocks one after another. The batched twin of a
/// `wants_q8` gemv: each weight block is read once for all the tokens.
///
/// # Safety
/// `w` points to `rows * row_bytes` readable bytes of the format, `xq.len()` is `n_tok`
/// times the blocks per row, `out` is writable for `(n_tok - 1) * ldo + rows` f32 with
/// `ldo ≥ rows`, and the CPU has the kernel's features (checked by the planner as for gemv).
pub type GemmFn = unsafe fn(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
);

/// `out[t·ldo + r] = Σ_c W[r][c] · x_t[c]` for rows `r < rows` of a float matrix (F32, F16,
/// BF16) and the `n_tok` f32 rows of `x` (`x.len() / n_tok` elements each): the batched
/// twin of a float gemv, bitwise the gemv per token.
///
/// # Safety
/// `w` points to `rows * row_bytes` readable bytes of the format, `x.len()` is `n_tok`
/// times the row length (a multiple of 8), `out` is writable for `(n_tok - 1) * ldo + rows`
/// f32 with `ldo ≥ rows`, and the CPU has the kernel's features.
pub type FloatGemmFn = unsafe fn(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    x: &[f32],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
);

/// Quantizes a row to 8-bit blocks (`x.len() == 32 * out.len()`).
pub type QuantizeActFn = unsafe fn(x: &[f32], out: &mut [BlockQ8Act]);
/// `g = silu(g) · u` over one row.
pub type SiluMulFn = unsafe fn(g: &mut [f32], u: &[f32]);

/// Converts one row of `out.len()` elements stored in a format to f32.
///
/// # Safety
/// `w` points to one row of `out.len()` elements in the format, aligned for its blocks.
pub type RowFn = unsafe fn(w: *const u8, out: &mut [f32]);

/// Converts row `lane` (< 8) of a panel (`panel.rs`) of `out.len() / 32` tiles to f32.
///
/// # Safety
/// `panel` points to a whole panel of the format's panel layout.
pub type PanelRowFn = unsafe fn(panel: *const u8, lane: usize, out: &mut [f32]);

/// How `read_all` reads: with plain loads, the hardware prefetchers running ahead, or with
/// the software prefetch hints the decode kernels use as well. Which is faster depends on
/// the CPU, so a roofline takes the faster (`ReadWay::BOTH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadWay {
    Plain,
    Prefetched,
}

impl ReadWay {
    pub const BOTH: [ReadWay; 2] = [ReadWay::Plain, ReadWay::Prefetched];
}

/// Reads every byte of `buf` the way `way` says; returns a value that depends on all of it.
/// `qgraph bench` and the kernel benchmarks time it both ways to measure read bandwidth.
pub fn read_all(buf: &[u8], way: ReadWay) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if table::supports(KernelLevel::Avx2) {
        // SAFETY: AVX2, FMA and F16C were just checked.
        return unsafe {
            match way {
                ReadWay::Plain => x86_64::bandwidth::read_all_avx2::<false>(buf),
                ReadWay::Prefetched => x86_64::bandwidth::read_all_avx2::<true>(buf),
            }
        };
    }
    let _ = way;
    buf.chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .fold(0u64, u64::wrapping_add)
}

/// A kernel chosen for a step, with its name for dumps.
#[derive(Clone, Copy)]
pub struct Chosen<F> {
    pub f: F,
    pub name: &'static str,
    /// Whether it reads the step's input quantized to 8-bit blocks (gemv only).
    pub wants_q8: bool,
}

impl<F> std::fmt::Debug for Chosen<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// `out = x / sqrt(mean(x²) + eps) * gamma` for one row.
pub type RmsNormFn = unsafe fn(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]);
/// Rotates each of `heads` heads of one row in place, for position `pos`. `freqs[i]` is
/// pair i's angle per position, `theta^(-2i / head_dim)`, tabled at plan time.
pub type RopeFn = unsafe fn(
    x: &mut [f32],
    heads: usize,
    pos: i32,
    freqs: &[f32],
    layout: crate::vocab::RopeLayout,
);
/// Causal attention of one query row over its first `n_past` cache positions, for the
/// query heads of KV head `g` (`scalar::attention` describes the arguments and the tiled
/// softmax every level computes). `q` and `out` are the group's heads of the row only, so
/// workers never hold overlapping `&mut` to one row.
pub type AttendFn = unsafe fn(
    p: &scalar::attention::AttnParams,
    q: &[f32],
    kc: *const u8,
    vc: *const u8,
    g: usize,
    n_past: usize,
    work: &mut [f32],
    out: &mut [f32],
);
/// `out[i] = f(a[i], b[i])` over one row.
pub type BinaryFn = unsafe fn(a: &[f32], b: &[f32], out: &mut [f32]);
/// `acc[i] += x[i]` over one row, in place.
pub type AccumulateFn = unsafe fn(acc: &mut [f32], x: &[f32]);
/// `out = f(x)` over one row.
pub type UnaryFn = unsafe fn(x: &[f32], out: &mut [f32]);
