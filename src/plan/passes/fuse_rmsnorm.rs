//! `fuse-rmsnorm`: an RMS norm whose every reader is a product (gemv, proj or swiglu without
//! a norm) is folded into those readers: each normalises the row on the fly as it reads it,
//! so the normed row never makes a round trip through a buffer. A norm with any other
//! reader (an add, say) is left alone.

use super::{gemv_as_proj, Pass};
use crate::graph::{Graph, NodeId, Op};
use crate::plan::error::PlanError;

pub struct FuseRmsNorm;

impl Pass for FuseRmsNorm {
    fn name(&self) -> &'static str {
        "fuse-rmsnorm"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, PlanError> {
        let mut changed = false;
        for norm in g.topo_order() {
            // A per-head norm (heads > 1) is not the product's input norm.
            let Op::RmsNorm { eps, heads: 1 } = g.g[norm].op else {
                continue;
            };
            let v = super::value(norm, 0);
            let readers = g.readers_of(v);
            let is_output = g.outputs.iter().any(|(_, n)| *n == norm);
            if readers.is_empty()
                || is_output
                || !readers
                    .iter()
                    .all(|&(r, slot)| slot == 0 && absorbs_norm(g, r))
            {
                continue;
            }
            let x = g.input_values(norm)[0];
            let gamma = g.g[norm].weights[0];
            let mut readers: Vec<NodeId> = readers.into_iter().map(|(r, _)| r).collect();
            readers.dedup();
            for r in readers {
                gemv_as_proj(g, r);
                match &mut g.g[r].op {
                    Op::Proj { norm, .. } | Op::SwiGlu { norm, .. } => *norm = Some(eps),
                    _ => continue,
                }
                g.g[r].weights.insert(0, gamma);
                let mut ins = g.input_values(r);
                ins[0] = x;
                g.set_inputs(r, &ins);
            }
            g.g.remove_node(norm);
            changed = true;
        }
        Ok(changed)
    }
}

fn absorbs_norm(g: &Graph, n: NodeId) -> bool {
    matches!(
        g.g[n].op,
        Op::Gemv | Op::Proj { norm: None, .. } | Op::SwiGlu { norm: None, .. }
    )
}
