//! `fuse-mlp`: `mul(silu(gemv(gate, x)), gemv(up, x))` becomes one `swiglu` step that reads
//! x once and writes `n_ff` values; the down projection and its residual add are left to
//! `fuse-residual`.

use super::{fused_name, only_reader, value, Pass};
use crate::graph::{Graph, NodeId, Op};
use crate::plan::error::PlanError;

pub struct FuseMlp;

impl Pass for FuseMlp {
    fn name(&self) -> &'static str {
        "fuse-mlp"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, PlanError> {
        let mut changed = false;
        for mul in g.topo_order() {
            let Some((gate, up)) = match_swiglu(g, mul) else {
                continue;
            };
            let x = g.input_values(gate)[0];
            let silu = g
                .inputs_of(mul)
                .into_iter()
                .find(|&n| g.g[n].op == Op::Silu);
            let name = fused_name(&[&g.g[gate].name, &g.g[up].name]);
            let weights = vec![g.g[gate].weights[0], g.g[up].weights[0]];
            let node = crate::graph::Node {
                name,
                op: Op::SwiGlu { norm: None },
                weights,
                ..g.g[mul].clone()
            };
            let fused = g.g.add_node(node);
            g.set_inputs(fused, &[x]);
            g.replace_uses(value(mul, 0), value(fused, 0));
            for n in [Some(mul), silu, Some(gate), Some(up)]
                .into_iter()
                .flatten()
            {
                g.g.remove_node(n);
            }
            changed = true;
        }
        Ok(changed)
    }
}

/// `mul` is `silu(gate · x) * (up · x)` with every intermediate read only there: returns
/// the gate and up gemv nodes.
fn match_swiglu(g: &Graph, mul: NodeId) -> Option<(NodeId, NodeId)> {
    if !g.g.contains_node(mul) || g.g[mul].op != Op::Mul {
        return None;
    }
    let ins = g.input_values(mul);
    let (silu_v, up_v) = match (&g.g[ins[0].node].op, &g.g[ins[1].node].op) {
        (Op::Silu, Op::Gemv) => (ins[0], ins[1]),
        (Op::Gemv, Op::Silu) => (ins[1], ins[0]),
        _ => return None,
    };
    let gate_v = g.input_values(silu_v.node)[0];
    if g.g[gate_v.node].op != Op::Gemv {
        return None;
    }
    let x = g.input_values(gate_v.node)[0];
    if g.input_values(up_v.node)[0] != x {
        return None;
    }
    only_reader(g, silu_v)?;
    if only_reader(g, gate_v)?.0 != silu_v.node || only_reader(g, up_v)?.0 != mul {
        return None;
    }
    Some((gate_v.node, up_v.node))
}
