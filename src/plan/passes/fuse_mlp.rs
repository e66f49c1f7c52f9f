//! `fuse-mlp`: `mul(act(gemv(gate, x)), gemv(up, x))`, act SiLU or GELU, becomes one
//! `swiglu` / `geglu` step that reads x once and writes `n_ff` values; the down projection
//! and its residual add are left to `fuse-residual`.

use super::{fused_name, only_reader, value, Pass};
use crate::graph::{GateAct, Graph, NodeId, Op};
use crate::plan::error::PlanError;

pub struct FuseMlp;

impl Pass for FuseMlp {
    fn name(&self) -> &'static str {
        "fuse-mlp"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, PlanError> {
        let mut changed = false;
        for mul in g.topo_order() {
            let Some((gate, up, act)) = match_gated(g, mul) else {
                continue;
            };
            let x = g.input_values(gate)[0];
            let activation = g
                .inputs_of(mul)
                .into_iter()
                .find(|&n| matches!(g.g[n].op, Op::Silu | Op::Gelu));
            let name = fused_name(&[&g.g[gate].name, &g.g[up].name]);
            let weights = vec![g.g[gate].weights[0], g.g[up].weights[0]];
            let node = crate::graph::Node {
                name,
                op: Op::SwiGlu { norm: None, act },
                weights,
                ..g.g[mul].clone()
            };
            let fused = g.g.add_node(node);
            g.set_inputs(fused, &[x]);
            g.replace_uses(value(mul, 0), value(fused, 0));
            for n in [Some(mul), activation, Some(gate), Some(up)]
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

/// `mul` is `act(gate · x) * (up · x)` (act SiLU or GELU) with every intermediate read only
/// there: returns the gate and up gemv nodes and the activation.
fn match_gated(g: &Graph, mul: NodeId) -> Option<(NodeId, NodeId, GateAct)> {
    if !g.g.contains_node(mul) || g.g[mul].op != Op::Mul {
        return None;
    }
    let ins = g.input_values(mul);
    let act = |op: &Op| match op {
        Op::Silu => Some(GateAct::Silu),
        Op::Gelu => Some(GateAct::Gelu),
        _ => None,
    };
    let (ops0, ops1) = (&g.g[ins[0].node].op, &g.g[ins[1].node].op);
    let (silu_v, up_v, act) = match (act(ops0), act(ops1)) {
        (Some(a), None) if *ops1 == Op::Gemv => (ins[0], ins[1], a),
        (None, Some(a)) if *ops0 == Op::Gemv => (ins[1], ins[0], a),
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
    Some((gate_v.node, up_v.node, act))
}
