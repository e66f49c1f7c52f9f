//! What each step of a plan runs: its kernels (fn pointers chosen at plan time), the byte
//! offsets of its buffers in session memory, its sizes as plain integers and its weights'
//! addresses. The executor (`exec/step.rs`) reads these and nothing else.

use crate::kernels::kv::{KvGeom, KvStoreFn};
use crate::kernels::scalar::attention::AttnParams;
use crate::kernels::{
    AccumulateFn, AttendFn, BinaryFn, FloatGemmFn, GemmFn, GemvFn, PanelRowFn, QuantizeActFn,
    RmsNormFn, RopeFn, RowFn, SiluMulFn, UnaryFn, WeightLayout,
};
use crate::vocab::{Epilogue, RopeLayout};

/// A weight matrix: `rows` rows of `row_bytes` bytes in the model's memory map, or the same
/// rows in panels of eight (`kernels/panel.rs`: panel p at `8 · p · row_bytes`) in the
/// model's repacked copy.
#[derive(Debug, Clone, Copy)]
pub struct WeightRef {
    pub ptr: *const u8,
    pub row_bytes: usize,
    pub rows: usize,
    pub layout: WeightLayout,
}

/// A norm folded into a product: gamma, eps, and where the normed rows go.
#[derive(Debug, Clone, Copy)]
pub struct Norm {
    pub gamma: *const f32,
    pub eps: f32,
    pub rmsnorm: RmsNormFn,
    /// Byte offset of slot 0 of the normed rows (`k` f32 per slot).
    pub scratch: usize,
}

/// Quantizing a step's input rows to 8-bit blocks, once, for the products that want them.
#[derive(Debug, Clone, Copy)]
pub struct Quant {
    pub f: QuantizeActFn,
    /// Byte offset of slot 0 of the blocks.
    pub at: usize,
    /// Blocks per slot (`k / 32`).
    pub blocks: usize,
}

/// A product step's input, prepared once per row before the products: normed when the step
/// folds a norm in, quantized when its kernels multiply 8-bit blocks. The prepared rows sit
/// in slots of the step's scratch: slot t is token t in a plan for many tokens; in a plan
/// for one row, slot w belongs to worker w, which prepares its own copy (no barrier).
#[derive(Debug, Clone, Copy)]
pub struct Prep {
    /// Byte offset of the raw input rows, `k` f32 each.
    pub x: usize,
    pub k: usize,
    pub norm: Option<Norm>,
    pub xq: Option<Quant>,
}

/// A matrix and its kernels: the gemv for one token, and the batched gemm where the format
/// has one (plans for many tokens use it when a call brings more than one): over 8-bit
/// activation blocks for quantized formats (`gemm`), over the f32 input for float ones
/// (`float_gemm`).
#[derive(Debug, Clone, Copy)]
pub struct Matmul {
    pub gemv: GemvFn,
    pub gemm: Option<GemmFn>,
    /// The product for a few tokens (up to `exec`'s `FEW_ROWS`), when the format has one.
    pub few: Option<GemmFn>,
    pub float_gemm: Option<FloatGemmFn>,
    pub w: WeightRef,
}

/// How an embedding lookup converts a row: from the file's rows, or from row panels (a
/// table tied to the output head, which reads it repacked).
#[derive(Debug, Clone, Copy)]
pub enum EmbedRow {
    Rows(RowFn),
    Panels(PanelRowFn),
}

/// One output of a fused projection.
#[derive(Debug, Clone)]
pub struct ProjOut {
    pub mm: Matmul,
    /// Values per row.
    pub n: usize,
    /// Its first row among the step's outputs taken together (how rows are split).
    pub row0: usize,
    /// Byte offset of the destination, an activation `[seq, n]` f32: the output itself,
    /// or, for a cache output, the staging rows the store converts from.
    pub dst: usize,
    pub epilogue: Epilogue,
    pub rope: RopeFn,
    /// Rope's angle per position for each pair (empty without rope).
    pub freqs: Box<[f32]>,
    /// For a cache output: where position `pos[t]` of each head receives token t's row.
    pub kv: Option<KvOut>,
}

/// A projection output (or a copy) that lands in a KV cache: each token's row, head by
/// head, converted to the cache's type at the token's position.
#[derive(Debug, Clone, Copy)]
pub struct KvOut {
    pub store: KvStoreFn,
    /// Byte offset of the layer's cache.
    pub cache: usize,
    pub geom: KvGeom,
}

/// What a step runs. Offsets are bytes from the start of the session's memory; sizes are
/// elements per row; every row loop runs over the tokens of the call.
#[derive(Debug, Clone)]
pub enum Exec {
    Embed {
        row: EmbedRow,
        table: WeightRef,
        tokens: usize,
        out: usize,
        n: usize,
    },
    /// RMSNorm of each of `heads` equal slices of every row (gamma: one slice long).
    RmsNorm {
        f: RmsNormFn,
        x: usize,
        gamma: *const f32,
        out: usize,
        n: usize,
        heads: usize,
        eps: f32,
    },
    /// `out[t] = x[t] + bias`, row by row (`f` is the add kernel).
    Bias {
        f: BinaryFn,
        x: usize,
        bias: *const f32,
        out: usize,
        n: usize,
    },
    /// `out = x · factor`, row by row.
    Scale {
        x: usize,
        out: usize,
        n: usize,
        factor: f32,
    },
    Gemv {
        prep: Prep,
        mm: Matmul,
        out: usize,
        n: usize,
    },
    Rope {
        f: RopeFn,
        x: usize,
        pos: usize,
        out: usize,
        n: usize,
        heads: usize,
        freqs: Box<[f32]>,
        layout: RopeLayout,
    },
    /// Stores token rows of k and v (`n` wide) at their positions of two caches.
    KvWrite {
        k: usize,
        v: usize,
        pos: usize,
        kc: KvOut,
        vc: KvOut,
        n: usize,
    },
    /// Attention of each token row of q (`n` wide) over a layer's caches; the work is
    /// split into (token row, KV head) units.
    Attend {
        f: AttendFn,
        params: AttnParams,
        q: usize,
        kc: usize,
        vc: usize,
        pos: usize,
        out: usize,
        /// Each worker's `params.work_len()` f32 of scratch, worker after worker.
        work: usize,
        n: usize,
        kv_heads: usize,
    },
    Proj {
        prep: Prep,
        pos: usize,
        outs: Vec<ProjOut>,
    },
    SwiGlu {
        prep: Prep,
        out: usize,
        n: usize,
        gate: Matmul,
        up: Matmul,
        /// `g = act(g) · u` (`kernels::table::silu_mul` / `gelu_mul`).
        act_mul: SiluMulFn,
        /// The up products, `[rows, n]`.
        up_scratch: usize,
    },
    GemvAdd {
        prep: Prep,
        mm: Matmul,
        acc: AccumulateFn,
        /// The sum accumulated into, `[rows, n]`.
        x: usize,
        n: usize,
        /// The products before they are added, `[rows, n]`.
        scratch: usize,
    },
    /// Copies the call's last token row of x (`n` wide) to row 0 of out.
    LastRow { x: usize, out: usize, n: usize },
    Binary {
        f: BinaryFn,
        a: usize,
        b: usize,
        out: usize,
        n: usize,
    },
    Unary {
        f: UnaryFn,
        x: usize,
        out: usize,
        n: usize,
    },
}
