//! Lowers the composite ops a definition may use into the forms passes and kernels know:
//! `attention(q, k, v, pos)` → `kv_write(k, v, pos)` + `attend(q, kcache, vcache, pos)`
//! (the copy step `fuse-rope-kv` removes), and `mlp(x)` → gate, up, silu, mul, down
//! (which `fuse-mlp` fuses back into one step). Always runs, before the passes.

use crate::graph::{Graph, Node, Op, ValueId};

pub fn canonicalize(g: &mut Graph) {
    for id in g.topo_order() {
        let node = g.g[id].clone();
        match node.op {
            Op::Attention {
                heads,
                kv_heads,
                window,
            } => {
                let ins = g.input_values(id);
                let kv = g.g.add_node(Node {
                    name: format!("{}.kv_write", node.name),
                    op: Op::KvWrite,
                    weights: vec![],
                    ..node.clone()
                });
                g.set_inputs(kv, &[ins[1], ins[2], ins[3]]);
                g.g[id].op = Op::Attend {
                    heads,
                    kv_heads,
                    window,
                };
                g.set_inputs(
                    id,
                    &[
                        ins[0],
                        ValueId { node: kv, out: 0 },
                        ValueId { node: kv, out: 1 },
                        ins[3],
                    ],
                );
            }
            Op::Mlp => {
                let x = g.input_values(id)[0];
                let part = |suffix: &str, op: Op, weights| Node {
                    name: format!("{}.{suffix}", node.name),
                    op,
                    weights,
                    ..node.clone()
                };
                let w = &node.weights;
                let gate = g.g.add_node(part("gate", Op::Gemv, vec![w[0]]));
                let up = g.g.add_node(part("up", Op::Gemv, vec![w[1]]));
                let silu = g.g.add_node(part("silu", Op::Silu, vec![]));
                let mul = g.g.add_node(part("act", Op::Mul, vec![]));
                g.set_inputs(gate, &[x]);
                g.set_inputs(up, &[x]);
                g.set_inputs(silu, &[ValueId { node: gate, out: 0 }]);
                g.set_inputs(
                    mul,
                    &[ValueId { node: silu, out: 0 }, ValueId { node: up, out: 0 }],
                );
                g.g[id].op = Op::Gemv;
                g.g[id].weights = vec![w[2]];
                g.set_inputs(id, &[ValueId { node: mul, out: 0 }]);
            }
            _ => {}
        }
    }
}

/// For a plan that returns only the last token's logits: moves each output's row-local
/// tail (norms and products with one reader each) behind a `LastRow`, so the output head
/// runs for one row instead of `seq`.
/// Ops whose output row depends only on the same row of their one input.
fn is_row_local(op: &Op) -> bool {
    matches!(
        op,
        Op::RmsNorm { .. } | Op::Gemv | Op::Silu | Op::Gelu | Op::Scale { .. } | Op::Softmax
    )
}

pub fn last_row_only(g: &mut Graph) {
    for (_, out) in g.outputs.clone() {
        let mut top = out;
        loop {
            let node = &g.g[top];
            let row_local = is_row_local(&node.op);
            if !row_local {
                break;
            }
            let input = g.input_values(top)[0];
            let producer = input.node;
            let p = &g.g[producer];
            let single_reader = g.readers_of(input).len() == 1 && p.op.n_outputs() == 1;
            let p_local = is_row_local(&p.op);
            if single_reader && p_local && !g.outputs.iter().any(|(_, o)| *o == producer) {
                top = producer;
            } else {
                break;
            }
        }
        if !is_row_local(&g.g[top].op) {
            continue;
        }
        let input = g.input_values(top)[0];
        let node = g.g[top].clone();
        let last = g.g.add_node(Node {
            name: format!("{}.last_row", node.name),
            op: Op::LastRow,
            weights: vec![],
            ..node
        });
        g.set_inputs(last, &[input]);
        let mut ins = g.input_values(top);
        ins[0] = ValueId { node: last, out: 0 };
        g.set_inputs(top, &ins);
    }
}
