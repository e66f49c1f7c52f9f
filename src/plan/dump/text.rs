//! The text dump: one line per step, then totals.

use std::fmt::Write as _;

use super::describe;
use crate::plan::Plan;

pub fn to_text(plan: &Plan) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "plan `{}`: seq {}, n_ctx {}, kernels {}, threads {} ({} barriers){}, passes [{}]",
        plan.graph_name,
        plan.seq,
        plan.n_ctx,
        plan.level.name(),
        plan.threads,
        plan.barriers(),
        if plan.last_row_only {
            ", last token's logits"
        } else {
            ""
        },
        plan.passes
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "step op name {{attrs}} | kernel | out: buffer [shape] dtype @offset live | in: … | scratch | weights | read B, written B, flop"
    );
    for (i, step) in plan.steps.iter().enumerate() {
        let list = |bs: &[crate::plan::BufId]| {
            bs.iter()
                .map(|&b| describe(plan, b))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let attrs = step.op.attrs();
        let _ = writeln!(
            s,
            "{i:>4} {} {}{} | {} | out: {} | in: {} | scratch: {} | weights: {} | {} B, {} B, {} flop",
            step.op.name(),
            step.name,
            if attrs.is_empty() { String::new() } else { format!(" {{{attrs}}}") },
            step.kernels.join("+"),
            list(&step.outputs),
            list(&step.inputs),
            step.scratch.map_or("-".to_string(), |b| describe(plan, b)),
            weights(step),
            step.bytes_read,
            step.bytes_written,
            step.flops
        );
        if plan.threads > 1 {
            let _ = writeln!(s, "       {}", work(plan, i));
        }
    }
    let _ = writeln!(s, "totals:");
    let _ = writeln!(s, "  steps                {}", plan.steps.len());
    let _ = writeln!(s, "  weight bytes         {}", plan.weight_bytes());
    let (n, bytes) = plan.panel_weights();
    let _ = writeln!(
        s,
        "  panel weights        {n} matrices, {bytes} bytes (repacked at plan time)"
    );
    let _ = writeln!(s, "  arena peak_bytes     {}", plan.peak_bytes);
    let _ = writeln!(s, "  arena naive_bytes    {}", plan.naive_bytes);
    let _ = writeln!(
        s,
        "  kv cache bytes       {} (K {}, V {}, {} positions)",
        plan.kv_bytes, plan.kv_types.k, plan.kv_types.v, plan.n_ctx
    );
    if plan.sequences > 1 {
        let _ = writeln!(
            s,
            "  kv sequences         {} regions of {} bytes, rows pick theirs",
            plan.sequences, plan.kv_seq_bytes
        );
    }
    let _ = writeln!(s, "  bytes moved / token  {}", plan.bytes_moved_per_token());
    let flops: u64 = plan.steps.iter().map(|st| st.flops).sum();
    let _ = writeln!(
        s,
        "  flop / token         {} (attention counted at a full context)",
        flops / plan.seq as u64
    );
    s
}

/// A step's weights, each marked `(panels)` when it is read as repacked row panels.
fn weights(step: &crate::plan::Step) -> String {
    if step.weights.is_empty() {
        return "-".to_string();
    }
    step.weights
        .iter()
        .zip(&step.weight_layouts)
        .map(|(w, l)| match l {
            crate::kernels::WeightLayout::Rows => w.clone(),
            crate::kernels::WeightLayout::Panels => format!("{w} (panels)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What each pass changed: nodes before and after, and the op counts it left.
pub fn pass_diff(plan: &Plan) -> String {
    let mut s = String::new();
    for r in &plan.passes {
        let ops: Vec<String> = r
            .ops_after
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "{:<14} {:<9} nodes {:>4} → {:<4} ops: {}",
            r.name,
            if r.changed { "changed" } else { "no change" },
            r.nodes_before,
            r.nodes_after,
            ops.join(", ")
        );
    }
    s
}

/// How a step's phases split between workers, and where workers wait:
/// `| prep tokens 0..32 32..64 | ‖ rows 0..448 448..960` (‖ marks a barrier before).
fn work(plan: &Plan, step: usize) -> String {
    plan.phases
        .iter()
        .filter(|p| p.step == step)
        .map(|p| {
            let parts: Vec<String> = p
                .parts
                .iter()
                .map(|&(a, b)| {
                    if a < b {
                        format!("{a}..{b}")
                    } else {
                        "-".into()
                    }
                })
                .collect();
            let kind = match p.kind {
                crate::plan::PhaseKind::Prep => "prep ",
                crate::plan::PhaseKind::Run => "",
            };
            let split = serde_json::to_value(p.split)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            format!(
                "{}{kind}{split} {}",
                if p.barrier { "‖ " } else { "" },
                parts.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
