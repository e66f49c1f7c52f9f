//! A bound graph as text: what `qgraph check` prints and the snapshot tests pin.
//! Deterministic: file order and sorted maps only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Graph, NodeId, Op};

/// The summary: dimensions with their sources, parameters, inputs and outputs, node
/// counts by op, weights bound, then the nodes outside the block and layer 0's nodes.
pub fn summary(g: &Graph) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail: the results of writeln! are ignored below.
    let _ = writeln!(s, "graph `{}` ({})", g.name, g.file);
    let w = g
        .dims
        .iter()
        .map(|d| d.name.len())
        .chain(g.params.iter().map(|p| p.name.len()))
        .max()
        .unwrap_or(0);
    let _ = writeln!(s, "dimensions:");
    for d in &g.dims {
        let _ = writeln!(s, "  {:<w$} = {:<8} {}", d.name, d.value, d.source);
    }
    if !g.params.is_empty() {
        let _ = writeln!(s, "parameters:");
        for p in &g.params {
            let _ = writeln!(
                s,
                "  {:<w$} = {:<8} {}",
                p.name,
                format!("{}", p.value),
                p.source
            );
        }
    }
    let inputs: Vec<String> = g
        .inputs
        .iter()
        .map(|(n, id)| format!("{n} ({})", g.g[*id].op.attrs().trim_start_matches("kind=")))
        .collect();
    let _ = writeln!(s, "inputs: {}", inputs.join(", "));
    let outputs: Vec<String> = g
        .outputs
        .iter()
        .map(|(n, id)| format!("{n} ← {}", g.g[*id].name))
        .collect();
    let _ = writeln!(s, "outputs: {}", outputs.join(", "));
    match &g.block {
        Some((name, per_layer)) => {
            let _ = writeln!(
                s,
                "layers: {} × block `{name}` ({per_layer} nodes each)",
                g.n_layer
            );
        }
        None => {
            let _ = writeln!(s, "layers: none");
        }
    }
    let mut by_op: BTreeMap<&str, usize> = BTreeMap::new();
    for n in g.g.node_weights() {
        *by_op.entry(n.op.name()).or_default() += 1;
    }
    let _ = writeln!(s, "nodes: {}", g.g.node_count());
    for (op, n) in &by_op {
        let _ = writeln!(s, "  {op:<10} {n}");
    }
    let (tensors, bytes) = g.tensor_totals();
    let mut by_dtype: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for w in &g.weights {
        if seen.insert(&w.tensor) {
            let e = by_dtype.entry(w.dtype.name()).or_default();
            e.0 += 1;
            e.1 += w.n_bytes;
        }
    }
    let dtypes: Vec<String> = by_dtype
        .iter()
        .map(|(d, (n, b))| format!("{d} {n} ({b} bytes)"))
        .collect();
    let _ = writeln!(
        s,
        "weights: {tensors} tensors bound, {bytes} bytes: {}",
        dtypes.join(", ")
    );
    for w in g.weights.iter().filter(|w| w.fallback) {
        let _ = writeln!(s, "  `{}` → {} (fallback)", w.name, w.tensor);
    }
    if !g.unread.is_empty() {
        let _ = writeln!(
            s,
            "tensors in the model that the graph never reads: {} (commands that run the model refuse this graph)",
            g.unread.len()
        );
        for t in &g.unread {
            let _ = writeln!(s, "  {t}");
        }
    }
    let _ = writeln!(
        s,
        "nodes outside the block, and layer 0{}:",
        match g.n_layer {
            0 | 1 => String::new(),
            2 => " (layer 1 repeats it)".to_string(),
            n => format!(" (layers 1..{} repeat it)", n - 1),
        }
    );
    let shown: Vec<NodeId> = g
        .topo_order()
        .into_iter()
        .filter(|&id| matches!(g.g[id].layer, None | Some(0)))
        .collect();
    let nw = shown
        .iter()
        .map(|&id| g.g[id].name.len())
        .max()
        .unwrap_or(0);
    for id in shown {
        let n = &g.g[id];
        if matches!(n.op, Op::Input { .. }) {
            continue;
        }
        let ins: Vec<&str> = g
            .inputs_of(id)
            .iter()
            .map(|&i| g.g[i].name.as_str())
            .collect();
        let mut line = format!("  {:<nw$}  {:<9} ← {}", n.name, n.op.name(), ins.join(", "));
        for wid in &n.weights {
            let w = &g.weights[wid.0 as usize];
            let _ = write!(line, "  [{} {} {:?}]", w.tensor, w.dtype, w.dims);
        }
        let attrs = n.op.attrs();
        if !attrs.is_empty() {
            let _ = write!(line, "  {attrs}");
        }
        let _ = writeln!(s, "{line}");
    }
    s
}
