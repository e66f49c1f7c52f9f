//! The op vocabulary every floor shares: words that a graph file spells, the planner
//! chooses, the executor dispatches on and the kernels take as arguments. It lives at the
//! bottom of the house, beside `quant/`, so that `kernels/` and `exec/` never reach up into
//! `graph/` for it.

use serde::Serialize;

/// How rope pairs the elements of a head: llama.cpp's "normal" rope rotates adjacent pairs
/// `(x[2i], x[2i+1])` (what llama GGUFs converted from Hugging Face need, their Q/K rows
/// being permuted by the converter); NeoX rotates `(x[i], x[i + head_dim/2])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeLayout {
    Normal,
    Neox,
}

/// The activation of a gated feed-forward (`down(act(gate · x) * (up · x))`): SiLU for
/// llama's SwiGLU, GELU (tanh) for Gemma's GeGLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateAct {
    Silu,
    Gelu,
}

impl GateAct {
    pub fn is_silu(&self) -> bool {
        *self == GateAct::Silu
    }
}

/// What a fused projection does with each output row after the product.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Epilogue {
    /// Store the row in an activation buffer.
    Store,
    /// Rotate the row (rope), then store it. `factors`: the pairs' frequencies are divided
    /// by a weight of the step (Llama 3's `rope_freqs`), one of those after its matrices.
    Rope {
        heads: usize,
        theta: f32,
        layout: RopeLayout,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        factors: bool,
    },
    /// Rotate the row, then store it at row `pos[t]` of a K cache (no copy step).
    RopeToCache {
        heads: usize,
        theta: f32,
        layout: RopeLayout,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        factors: bool,
    },
    /// Store the row at row `pos[t]` of a V cache (no copy step).
    ToCache,
}

impl Epilogue {
    pub fn name(&self) -> &'static str {
        match self {
            Epilogue::Store => "store",
            Epilogue::Rope { .. } => "rope",
            Epilogue::RopeToCache { .. } => "rope→kcache",
            Epilogue::ToCache => "→vcache",
        }
    }

    /// Whether the rope divides its frequencies by a weight (see `Rope::factors`).
    pub fn rope_factors(&self) -> bool {
        matches!(
            self,
            Epilogue::Rope { factors: true, .. } | Epilogue::RopeToCache { factors: true, .. }
        )
    }

    /// Whether the output is a KV cache rather than an activation.
    pub fn writes_cache(&self) -> bool {
        matches!(self, Epilogue::RopeToCache { .. } | Epilogue::ToCache)
    }
}

/// The element format of a KV cache. K and V may differ (`--cache-type-k`, `--cache-type-v`).
/// The layouts (K in tiles of eight positions, V in rows, one region per KV head) are
/// `kernels::kv`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    /// 4 bytes a value: exact.
    F32,
    /// 2 bytes a value: what llama.cpp keeps by default.
    F16,
    /// 34 bytes per 32 values: ggml's Q8_0 blocks (an f16 scale, 32 signed bytes).
    Q8_0,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes per 32 values (Q8_0's block), so sizes stay whole numbers for every type.
    pub fn bytes_per_32(self) -> usize {
        match self {
            KvType::F32 => 128,
            KvType::F16 => 64,
            KvType::Q8_0 => 34,
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = String;

    fn from_str(s: &str) -> Result<KvType, String> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown cache type `{s}`: f32, f16 or q8_0"))
    }
}

/// The K and V caches' formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct KvTypes {
    pub k: KvType,
    pub v: KvType,
}

impl Default for KvTypes {
    /// f16 for both, as llama.cpp: half of f32's bytes, and its rounding (relative 2⁻¹¹)
    /// is far below what 8-bit activations already cost.
    fn default() -> Self {
        KvTypes {
            k: KvType::F16,
            v: KvType::F16,
        }
    }
}
