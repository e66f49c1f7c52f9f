//! The JSON dump. Its schema is documented in docs/plan-schema.md.

use serde_json::{json, Value};

use crate::plan::{BufId, Plan};

fn buffer(plan: &Plan, b: BufId) -> Value {
    let buf = &plan.buffers[b.0 as usize];
    json!({
        "id": b.0,
        "name": buf.name,
        "kind": buf.kind,
        "shape": buf.fact.shape,
        "dtype": buf.kv.map_or(serde_json::json!(buf.fact.dtype), |t| serde_json::json!(t)),
        "offset": buf.offset,
        "bytes": buf.bytes,
        "live": buf.live.map(|l| json!([l.first, l.last])),
    })
}

pub fn to_json(plan: &Plan) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "index": i,
                "name": s.name,
                "op": s.op.name(),
                "attrs": s.op,
                "kernels": s.kernels,
                "outputs": s.outputs.iter().map(|&b| buffer(plan, b)).collect::<Vec<_>>(),
                "inputs": s.inputs.iter().map(|&b| buffer(plan, b)).collect::<Vec<_>>(),
                "scratch": s.scratch.map(|b| buffer(plan, b)),
                "weights": s.weights,
                "weight_layouts": s.weight_layouts,
                "bytes_read": s.bytes_read,
                "bytes_written": s.bytes_written,
                "flops": s.flops,
            })
        })
        .collect();
    let buffers: Vec<Value> = (0..plan.buffers.len())
        .map(|i| buffer(plan, BufId(i as u32)))
        .collect();
    json!({
        "schema": "qgraph-plan/1",
        "graph": plan.graph_name,
        "seq": plan.seq,
        "n_ctx": plan.n_ctx,
        "kernels": plan.level,
        "threads": plan.threads,
        "last_row_only": plan.last_row_only,
        "phases": plan.phases,
        "passes": plan.passes.iter().map(|p| json!({
            "name": p.name,
            "changed": p.changed,
            "nodes_before": p.nodes_before,
            "nodes_after": p.nodes_after,
        })).collect::<Vec<_>>(),
        "steps": steps,
        "buffers": buffers,
        "arena": {
            "offset": plan.arena_offset,
            "peak_bytes": plan.peak_bytes,
            "naive_bytes": plan.naive_bytes,
        },
        "kv_cache": {
            "offset": plan.kv_offset,
            "bytes": plan.kv_bytes,
            "type_k": plan.kv_types.k,
            "type_v": plan.kv_types.v,
            "n_ctx": plan.n_ctx,
            "sequences": plan.sequences,
            "sequence_bytes": plan.kv_seq_bytes,
        },
        "totals": {
            "steps": plan.steps.len(),
            "barriers": plan.barriers(),
            "weight_bytes": plan.weight_bytes(),
            "panel_weights": plan.panel_weights().0,
            "panel_bytes": plan.panel_weights().1,
            "bytes_moved_per_token": plan.bytes_moved_per_token(),
            "flops_per_token": plan.steps.iter().map(|s| s.flops).sum::<u64>() / plan.seq as u64,
        },
    })
}
