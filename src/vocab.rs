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

/// What a fused projection does with each output row after the product.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Epilogue {
    /// Store the row in an activation buffer.
    Store,
    /// Rotate the row (rope), then store it.
    Rope {
        heads: usize,
        theta: f32,
        layout: RopeLayout,
    },
    /// Rotate the row, then store it at row `pos[t]` of a K cache (no copy step).
    RopeToCache {
        heads: usize,
        theta: f32,
        layout: RopeLayout,
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

    /// Whether the output is a KV cache rather than an activation.
    pub fn writes_cache(&self) -> bool {
        matches!(self, Epilogue::RopeToCache { .. } | Epilogue::ToCache)
    }
}
