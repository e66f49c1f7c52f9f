//! What each step needs beside its inputs and outputs, sized once at plan time: the rows it
//! runs for, the room for its input quantized to 8-bit blocks, and its f32 scratch
//! (products kept before they are combined, normed rows, rows on their way into a cache,
//! attention's working memory). `lower.rs` places them in the arena.

use super::infer::Facts;
use super::kvcache::attn_params;
use super::PlanOptions;
use crate::graph::{Graph, NodeId, Op, ValueId, WeightId};
use crate::kernels::{table, KernelLevel, WeightLayout};

/// A product step's input slot and the weights it multiplies (after a folded norm's gamma);
/// `None` for other ops.
pub(super) fn product_of(node: &crate::graph::Node) -> Option<(usize, &[WeightId])> {
    let (slot, first_matrix) = match &node.op {
        Op::Gemv => (0, 0),
        Op::Proj { norm, .. } | Op::SwiGlu { norm, .. } => (0, norm.is_some() as usize),
        Op::GemvAdd => (1, 0),
        _ => return None,
    };
    Some((slot, node.weights.get(first_matrix..)?))
}

/// Elements of the step's input to quantize to 8-bit blocks: the product's row length when
/// one of its kernels multiplies 8-bit activations, else 0. With the repack on, a format
/// with panel kernels runs those (they all multiply 8-bit activations), whatever its
/// row-layout kernel is.
pub(super) fn q8_elements(
    g: &Graph,
    facts: &Facts,
    id: NodeId,
    level: KernelLevel,
    repack: bool,
) -> usize {
    let node = &g.g[id];
    let Some((slot, matrices)) = product_of(node) else {
        return 0;
    };
    let k = facts.get(g.input_values(id)[slot]).cols();
    let wants = matrices.iter().any(|w| {
        let dtype = g.weights[w.0 as usize].dtype;
        let wants = |layout| table::gemv(dtype, level, k, layout).is_some_and(|c| c.wants_q8);
        wants(WeightLayout::Rows) || (repack && wants(WeightLayout::Panels))
    });
    if wants {
        k
    } else {
        0
    }
}

/// The rows a step runs for: its first input's (the plan's `seq`, or 1 after a `LastRow`).
pub(super) fn step_rows(g: &Graph, facts: &Facts, id: NodeId) -> usize {
    g.input_values(id)
        .first()
        .map_or(1, |&v| facts.get(v).shape.first().copied().unwrap_or(1))
}

/// Scratch a step needs, in f32 elements: products kept before they are combined (`rows`
/// of them), normed input rows (one per slot), a projection's rows on their way into a
/// cache (`rows` of each), attention's working memory (per worker).
pub(super) fn scratch_elements(
    g: &Graph,
    facts: &Facts,
    id: NodeId,
    rows: usize,
    slots: usize,
    opts: &PlanOptions,
) -> usize {
    let x = |slot: usize| facts.get(g.input_values(id)[slot]).cols();
    let out = || facts.get(ValueId { node: id, out: 0 }).cols();
    match &g.g[id].op {
        Op::Attend {
            heads,
            kv_heads,
            window,
        } => opts.threads * attn_params(x(0) / heads, *heads, *kv_heads, *window, opts).work_len(),
        Op::Proj { norm, outs } => {
            let staged: usize = outs
                .iter()
                .enumerate()
                .filter(|(_, e)| e.writes_cache())
                .map(|(i, _)| rows * facts.get(ValueId { node: id, out: i }).cols())
                .sum();
            norm.map_or(0, |_| slots * x(0)) + staged
        }
        Op::SwiGlu { norm, .. } => rows * out() + norm.map_or(0, |_| slots * x(0)),
        Op::GemvAdd => rows * out(),
        _ => 0,
    }
}
