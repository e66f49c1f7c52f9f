//! `fuse-residual`: `add(x, gemv(W, a))` becomes one `gemv_add` step that accumulates
//! `W · a` into x's own buffer: no add step, no buffer for the product. It applies only when
//! every other reader of x runs before the product (each is one of its ancestors), so
//! nothing can read x after it is overwritten, and when x is an activation (not a graph
//! input, a cache or a graph output).

use super::{only_reader, value, Pass};
use crate::graph::{Graph, NodeId, Op, ValueId};
use crate::plan::error::PlanError;

pub struct FuseResidual;

impl Pass for FuseResidual {
    fn name(&self) -> &'static str {
        "fuse-residual"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, PlanError> {
        let mut changed = false;
        for add in g.topo_order() {
            if g.g[add].op != Op::Add {
                continue;
            }
            let ins = g.input_values(add);
            let Some((x, prod)) = [(ins[0], ins[1]), (ins[1], ins[0])]
                .into_iter()
                .find(|&(x, p)| can_accumulate(g, add, x, p))
            else {
                continue;
            };
            let a = g.input_values(prod.node)[0];
            let node = crate::graph::Node {
                name: g.g[add].name.clone(),
                op: Op::GemvAdd,
                weights: g.g[prod.node].weights.clone(),
                ..g.g[add].clone()
            };
            let fused = g.g.add_node(node);
            g.set_inputs(fused, &[x, a]);
            g.replace_uses(value(add, 0), value(fused, 0));
            g.g.remove_node(add);
            g.g.remove_node(prod.node);
            changed = true;
        }
        Ok(changed)
    }
}

fn can_accumulate(g: &Graph, add: NodeId, x: ValueId, prod: ValueId) -> bool {
    if g.g[prod.node].op != Op::Gemv || only_reader(g, prod).map(|r| r.0) != Some(add) {
        return false;
    }
    let x_op = &g.g[x.node].op;
    if matches!(x_op, Op::Input { .. } | Op::KvWrite) || x.node == prod.node {
        return false;
    }
    if let Op::Proj { outs, .. } = x_op {
        if outs[x.out].writes_cache() {
            return false;
        }
    }
    if g.outputs.iter().any(|(_, n)| *n == x.node) {
        return false;
    }
    g.readers_of(x)
        .into_iter()
        .filter(|&(r, _)| r != add)
        .all(|(r, _)| r != prod.node && g.reaches(r, prod.node))
}
