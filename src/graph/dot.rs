//! The unplanned graph as Graphviz DOT. Layer 0 is drawn in full; the other layers are
//! folded into one box (`blk.1 … blk.29 × 29`) so the picture stays readable.

use std::fmt::Write as _;

use super::{Graph, NodeId, Op};

fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

pub fn to_dot(g: &Graph) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "digraph {} {{", quote(&g.name));
    let _ = writeln!(
        s,
        "  rankdir=TB; node [shape=box, fontname=\"monospace\", fontsize=10];"
    );
    let folded = g.n_layer > 1;
    let id_of = |id: NodeId| format!("n{}", id.index());
    let shown = |id: NodeId| matches!(g.g[id].layer, None | Some(0)) || !folded;
    let label = |id: NodeId| {
        let n = &g.g[id];
        let mut l = format!("{}\n{}", n.name, n.op.name());
        for w in &n.weights {
            let w = &g.weights[w.0 as usize];
            let _ = write!(l, "\n{} {}", w.tensor, w.dtype);
        }
        l
    };
    let _ = writeln!(
        s,
        "  subgraph cluster_layer0 {{ label=\"layer 0\"; style=dashed;"
    );
    for id in g
        .topo_order()
        .into_iter()
        .filter(|&id| g.g[id].layer == Some(0))
    {
        let _ = writeln!(s, "    {} [label={}];", id_of(id), quote(&label(id)));
    }
    let _ = writeln!(s, "  }}");
    for id in g
        .topo_order()
        .into_iter()
        .filter(|&id| g.g[id].layer.is_none() || (!folded && g.g[id].layer != Some(0)))
    {
        let shape = if matches!(g.g[id].op, Op::Input { .. }) {
            ", shape=ellipse"
        } else {
            ""
        };
        let _ = writeln!(s, "  {} [label={}{shape}];", id_of(id), quote(&label(id)));
    }
    if folded {
        let _ = writeln!(
            s,
            "  folded [label=\"blk.1 … blk.{} (× {})\", shape=box3d, style=filled, fillcolor=lightgrey];",
            g.n_layer - 1,
            g.n_layer - 1
        );
    }
    let mut folded_edges = std::collections::BTreeSet::new();
    for e in g.g.edge_indices() {
        let Some((a, b)) = g.g.edge_endpoints(e) else {
            continue;
        };
        let (sa, sb) = (shown(a), shown(b));
        let from = if sa { id_of(a) } else { "folded".to_string() };
        let to = if sb { id_of(b) } else { "folded".to_string() };
        if from == "folded" && to == "folded" {
            continue;
        }
        // Edges into or out of the folded box are drawn once each.
        let touches_fold = !(sa && sb);
        if touches_fold && !folded_edges.insert((from.clone(), to.clone())) {
            continue;
        }
        let _ = writeln!(s, "  {from} -> {to};");
    }
    let _ = writeln!(s, "}}");
    s
}
