//! `dead-code`: removes nodes whose outputs nobody reads and that are not graph outputs.
//! Graph inputs stay: they are the graph's interface.

use super::Pass;
use crate::graph::{Graph, Op};
use crate::plan::error::PlanError;

pub struct DeadCode;

impl Pass for DeadCode {
    fn name(&self) -> &'static str {
        "dead-code"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, PlanError> {
        let mut changed = false;
        loop {
            let dead: Vec<_> =
                g.g.node_indices()
                    .filter(|&n| !matches!(g.g[n].op, Op::Input { .. }))
                    .filter(|&n| !g.outputs.iter().any(|(_, o)| *o == n))
                    .filter(|&n| {
                        g.g.neighbors_directed(n, petgraph::Direction::Outgoing)
                            .next()
                            .is_none()
                    })
                    .collect();
            if dead.is_empty() {
                return Ok(changed);
            }
            for n in dead {
                g.g.remove_node(n);
            }
            changed = true;
        }
    }
}
