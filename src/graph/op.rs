//! The ops of a graph. One enum: an exhaustive `match` shows every place a new op must be
//! handled (shape rules in `plan::infer`, kernels in `kernels::table`, dumps).

use std::fmt;

use serde::Serialize;

pub use crate::vocab::{Epilogue, GateAct, RopeLayout};

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
/// The first block of variants can be written in a graph definition; the rest are made by
/// the planner: `KvWrite` and `Attend` by lowering `Attention`, the others by fusion passes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A graph input.
    Input {
        kind: InputKind,
    },
    /// Row lookup: `out[t] = table[tokens[t]]`. Weight: the embedding table.
    Embed,
    /// `out = x / sqrt(mean(x²) + eps) * gamma`, over each of `heads` equal slices of the
    /// row (1: the whole row). Weight: gamma, one slice long.
    RmsNorm {
        eps: f32,
        heads: usize,
    },
    /// Matrix–vector product per token: `out[t] = W · x[t]`. Weight: W, in whatever format
    /// the model stores it (Q4_0, Q4_1, Q8_0, F16, F32), resolved at plan time.
    Gemv,
    /// Rotary position embedding over `heads` heads of the input row. Weight, optional:
    /// `head_dim / 2` numbers that divide the pairs' frequencies (Llama 3's `rope_freqs`).
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
        /// Positions attended, the token's own included (0: every earlier one).
        window: usize,
    },
    /// SwiGLU MLP: `down(silu(gate(x)) * up(x))`. Weights: gate, up, down.
    Mlp,
    Add,
    Mul,
    /// `x * sigmoid(x)`.
    Silu,
    /// GELU, tanh approximation: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    Gelu,
    /// `x · factor`.
    Scale {
        factor: f32,
    },
    /// Softmax over each row.
    Softmax,
    /// `out[t] = x[t] + b`: a bias vector added to every row (Qwen2's Q/K/V biases).
    /// Weight: b, f32, one row long.
    Bias,
    /// Copies this step's K and V rows into row `pos[t]` of a layer's caches. Inputs: k, v,
    /// positions. Outputs: the K cache and the V cache, `[n_ctx, kv_dim]` each.
    KvWrite,
    /// Causal grouped-query attention of `q` over caches already written. Inputs: q, K cache,
    /// V cache, positions.
    Attend {
        heads: usize,
        kv_heads: usize,
        window: usize,
    },
    /// Several products of one input row (`fuse-qkv`), optionally RMS-normed on the fly with
    /// gamma as weight 0 (`fuse-rmsnorm`), each output finished by its epilogue
    /// (`fuse-rope-kv`). Inputs: x, positions. Weights: [gamma], then one matrix per output.
    Proj {
        norm: Option<f32>,
        outs: Vec<Epilogue>,
    },
    /// `act(gate · x) * (up · x)` in one pass (`fuse-mlp`), optionally normed on the fly:
    /// SwiGLU (SiLU) or GeGLU (GELU). Input: x. Weights: [gamma], gate, up.
    SwiGlu {
        norm: Option<f32>,
        #[serde(skip_serializing_if = "GateAct::is_silu")]
        act: GateAct,
    },
    /// `x + W · a`, accumulated in place into x's buffer (`fuse-residual`). Inputs: x, a.
    /// Weight: W.
    GemvAdd,
    /// The last token's row of x, `[1, n]`: a plan for prompts that only wants the last
    /// token's logits puts it before the output head, which then runs for one row.
    LastRow,
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
            Op::Gelu => "gelu",
            Op::Scale { .. } => "scale",
            Op::Softmax => "softmax",
            Op::Bias => "bias",
            Op::KvWrite => "kv_write",
            Op::Attend { .. } => "attend",
            Op::Proj { .. } => "proj",
            Op::SwiGlu {
                act: GateAct::Silu, ..
            } => "swiglu",
            Op::SwiGlu {
                act: GateAct::Gelu, ..
            } => "geglu",
            Op::GemvAdd => "gemv_add",
            Op::LastRow => "last_row",
        }
    }

    /// How many values the op produces.
    pub fn n_outputs(&self) -> usize {
        match self {
            Op::Proj { outs, .. } => outs.len(),
            Op::KvWrite => 2,
            _ => 1,
        }
    }

    /// The op's attributes for dumps, e.g. `eps=1e-5`.
    pub fn attrs(&self) -> String {
        match self {
            Op::Input { kind } => format!("kind={kind:?}").to_lowercase(),
            Op::RmsNorm { eps, heads: 1 } => format!("eps={eps:e}"),
            Op::RmsNorm { eps, heads } => format!("eps={eps:e} heads={heads}"),
            Op::Scale { factor } => format!("factor={factor}"),
            Op::Rope {
                heads,
                theta,
                layout,
            } => format!("heads={heads} theta={theta} layout={layout:?}").to_lowercase(),
            Op::Attention {
                heads,
                kv_heads,
                window,
            }
            | Op::Attend {
                heads,
                kv_heads,
                window,
            } => match window {
                0 => format!("heads={heads} kv_heads={kv_heads}"),
                w => format!("heads={heads} kv_heads={kv_heads} window={w}"),
            },
            Op::Proj { norm, outs } => {
                let outs: Vec<String> = outs
                    .iter()
                    .map(|e| match e {
                        Epilogue::Rope { heads, theta, .. }
                        | Epilogue::RopeToCache { heads, theta, .. } => {
                            let factors = if e.rope_factors() { " factors" } else { "" };
                            format!("{}(heads={heads} theta={theta}{factors})", e.name())
                        }
                        _ => e.name().to_string(),
                    })
                    .collect();
                let norm = norm.map_or(String::new(), |eps| format!("norm(eps={eps:e}) "));
                format!("{norm}outs=[{}]", outs.join(", "))
            }
            Op::SwiGlu {
                norm: Some(eps), ..
            } => format!("norm(eps={eps:e})"),
            _ => String::new(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
