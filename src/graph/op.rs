//! The ops of a graph. One enum: an exhaustive `match` shows every place a new op must be
//! handled (shape rules in `plan::infer`, kernels in `kernels::table`, dumps).

use std::fmt;

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

/// What a graph input carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// Token ids, `[seq]`.
    Tokens,
    /// Absolute positions of those tokens, `[seq]`.
    Positions,
}

/// An op with its attributes bound to numbers. Weights are separate (`Node::weights`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A graph input.
    Input {
        kind: InputKind,
    },
    /// Row lookup: `out[t] = table[tokens[t]]`. Weight: the embedding table.
    Embed,
    /// `out = x / sqrt(mean(x²) + eps) * gamma`. Weight: gamma.
    RmsNorm {
        eps: f32,
    },
    /// Matrix–vector product per token: `out[t] = W · x[t]`. Weight: W, in whatever format
    /// the model stores it (Q4_0, Q4_1, Q8_0, F16, F32), resolved at plan time.
    Gemv,
    /// Rotary position embedding over `heads` heads of the input row.
    Rope {
        heads: usize,
        theta: f32,
        layout: RopeLayout,
    },
    /// Causal grouped-query attention over the KV cache: appends this step's K and V to the
    /// layer's cache, then attends. Inputs: q, k, v, positions.
    Attention {
        heads: usize,
        kv_heads: usize,
    },
    /// SwiGLU MLP: `down(silu(gate(x)) * up(x))`. Weights: gate, up, down.
    Mlp,
    Add,
    Mul,
    /// `x * sigmoid(x)`.
    Silu,
    /// Softmax over each row.
    Softmax,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Embed => "embed",
            Op::RmsNorm { .. } => "rmsnorm",
            Op::Gemv => "gemv",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::Mlp => "mlp",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Silu => "silu",
            Op::Softmax => "softmax",
        }
    }

    /// The op's attributes for dumps, e.g. `eps=1e-5`.
    pub fn attrs(&self) -> String {
        match self {
            Op::Input { kind } => format!("kind={kind:?}").to_lowercase(),
            Op::RmsNorm { eps } => format!("eps={eps:e}"),
            Op::Rope {
                heads,
                theta,
                layout,
            } => format!("heads={heads} theta={theta} layout={layout:?}").to_lowercase(),
            Op::Attention { heads, kv_heads } => format!("heads={heads} kv_heads={kv_heads}"),
            _ => String::new(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
