//! `fuse-qkv`: plain products of the same input (the Q, K and V projections of one normed
//! row) become one `proj` step with one output per matrix, which reads the input once.

use std::collections::BTreeMap;

use super::{fused_name, value, Pass};
use crate::graph::{Epilogue, Graph, Node, Op, ValueId};
use crate::plan::error::PlanError;

pub struct FuseQkv;

impl Pass for FuseQkv {
    fn name(&self) -> &'static str {
        "fuse-qkv"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, PlanError> {
        let mut groups: BTreeMap<ValueId, Vec<_>> = BTreeMap::new();
        for id in g.topo_order() {
            if g.g[id].op == Op::Gemv {
                groups.entry(g.input_values(id)[0]).or_default().push(id);
            }
        }
        let mut changed = false;
        for (x, members) in groups.into_iter().filter(|(_, m)| m.len() >= 2) {
            let names: Vec<&str> = members.iter().map(|&m| g.g[m].name.as_str()).collect();
            let node = Node {
                name: fused_name(&names),
                op: Op::Proj {
                    norm: None,
                    outs: vec![Epilogue::Store; members.len()],
                },
                weights: members.iter().map(|&m| g.g[m].weights[0]).collect(),
                ..g.g[members[0]].clone()
            };
            let fused = g.g.add_node(node);
            g.set_inputs(fused, &[x]);
            for (i, &m) in members.iter().enumerate() {
                g.replace_uses(value(m, 0), value(fused, i));
                g.g.remove_node(m);
            }
            changed = true;
        }
        Ok(changed)
    }
}
