//! Optimisation passes over a bound graph. Each is a unit struct in its own file, can be
//! switched off by name, and says whether it changed the graph; the manager re-runs shape
//! inference after every pass, so a pass that breaks a shape is caught at once.

mod dead_code;
mod fuse_mlp;
mod fuse_qkv;
mod fuse_residual;
mod fuse_rmsnorm;
mod fuse_rope_kv;

pub use dead_code::DeadCode;
pub use fuse_mlp::FuseMlp;
pub use fuse_qkv::FuseQkv;
pub use fuse_residual::FuseResidual;
pub use fuse_rmsnorm::FuseRmsNorm;
pub use fuse_rope_kv::FuseRopeKv;

use super::error::PlanError;
use crate::graph::{Graph, NodeId, Op, ValueId};

pub trait Pass {
    fn name(&self) -> &'static str;
    /// Rewrites the graph; returns whether anything changed.
    fn run(&self, g: &mut Graph) -> Result<bool, PlanError>;
}

/// Every pass, in the order the manager runs them. `fuse-mlp` runs before `fuse-qkv`, which
/// would otherwise merge the gate and up projections as two plain products of one input.
pub const ALL: &[&dyn Pass] = &[
    &FuseMlp,
    &FuseQkv,
    &FuseRopeKv,
    &FuseRmsNorm,
    &FuseResidual,
    &DeadCode,
];

/// Which passes to run: `all`, `none`, or a comma-separated list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassSelection {
    All,
    None,
    Only(Vec<String>),
}

impl std::str::FromStr for PassSelection {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, PlanError> {
        match s.trim() {
            "all" => Ok(PassSelection::All),
            "none" | "" => Ok(PassSelection::None),
            list => {
                let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
                for n in &names {
                    if !ALL.iter().any(|p| p.name() == n) {
                        return Err(PlanError::UnknownPass {
                            name: n.clone(),
                            known: ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
                        });
                    }
                }
                Ok(PassSelection::Only(names))
            }
        }
    }
}

impl PassSelection {
    pub fn includes(&self, name: &str) -> bool {
        match self {
            PassSelection::All => true,
            PassSelection::None => false,
            PassSelection::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// What one pass did, for `--diff-passes`.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub name: &'static str,
    pub changed: bool,
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// Op counts after the pass, sorted by op name.
    pub ops_after: Vec<(&'static str, usize)>,
}

pub fn op_counts(g: &Graph) -> Vec<(&'static str, usize)> {
    let mut m = std::collections::BTreeMap::new();
    for n in g.g.node_weights() {
        *m.entry(n.op.name()).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

/// Runs the selected passes in order, re-inferring every shape after each.
pub fn run(
    g: &mut Graph,
    selection: &PassSelection,
    seq: usize,
    n_ctx: usize,
) -> Result<Vec<PassReport>, PlanError> {
    let mut reports = Vec::new();
    for pass in ALL.iter().filter(|p| selection.includes(p.name())) {
        let nodes_before = g.g.node_count();
        let changed = pass.run(g)?;
        super::infer::infer(g, seq, n_ctx)?;
        reports.push(PassReport {
            name: pass.name(),
            changed,
            nodes_before,
            nodes_after: g.g.node_count(),
            ops_after: op_counts(g),
        });
    }
    Ok(reports)
}

// ---- helpers shared by the passes ------------------------------------------------------------

pub(crate) fn value(node: NodeId, out: usize) -> ValueId {
    ValueId { node, out }
}

/// The single reader of a value, if it has exactly one and is not a graph output.
pub(crate) fn only_reader(g: &Graph, v: ValueId) -> Option<(NodeId, usize)> {
    let readers = g.readers_of(v);
    let is_output = v.out == 0 && g.outputs.iter().any(|(_, n)| *n == v.node);
    match readers.as_slice() {
        [one] if !is_output => Some(*one),
        _ => None,
    }
}

/// The name of a fused node: the common prefix of its parts' names, then their suffixes
/// joined by `+` (`blk.0.attn_q+attn_k+attn_v`).
pub(crate) fn fused_name(names: &[&str]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut prefix = first.rfind('.').map_or(0, |i| i + 1);
    while !names
        .iter()
        .all(|n| n.len() >= prefix && n[..prefix] == first[..prefix])
    {
        prefix = first[..prefix.saturating_sub(1)]
            .rfind('.')
            .map_or(0, |i| i + 1);
    }
    let suffixes: Vec<&str> = names.iter().map(|n| &n[prefix..]).collect();
    format!("{}{}", &first[..prefix], suffixes.join("+"))
}

/// Turns a plain `gemv` node into a one-output `proj` in place (same id, same output).
pub(crate) fn gemv_as_proj(g: &mut Graph, id: NodeId) {
    if g.g[id].op == Op::Gemv {
        g.g[id].op = Op::Proj {
            norm: None,
            outs: vec![crate::graph::Epilogue::Store],
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_names() {
        assert_eq!(
            fused_name(&["blk.0.attn_q", "blk.0.attn_k"]),
            "blk.0.attn_q+attn_k"
        );
        assert_eq!(fused_name(&["a", "b"]), "a+b");
        assert_eq!(fused_name(&["blk.1.x", "out"]), "blk.1.x+out");
    }

    #[test]
    fn selection_parses_and_rejects_unknown_names() {
        assert_eq!("all".parse::<PassSelection>().unwrap(), PassSelection::All);
        assert_eq!(
            "none".parse::<PassSelection>().unwrap(),
            PassSelection::None
        );
        let only: PassSelection = "fuse-qkv, dead-code".parse().unwrap();
        assert!(
            only.includes("fuse-qkv") && only.includes("dead-code") && !only.includes("fuse-mlp")
        );
        let e = "fuse-qkv,fuse-everything"
            .parse::<PassSelection>()
            .unwrap_err();
        assert!(
            e.to_string().contains("fuse-everything") && e.to_string().contains("fuse-rmsnorm")
        );
    }
}
