//! The scheduled graph as Graphviz DOT: one box per step (op, kernel), one edge per buffer
//! passed from step to step. `layers` keeps only some layers' steps (others are folded into
//! one box) so a 30-layer plan stays readable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{layer_of, LayerRange};
use crate::plan::{BufKind, Plan};

fn quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

pub fn to_dot(plan: &Plan, layers: Option<LayerRange>) -> String {
    let shown = |name: &str| match (layers, layer_of(name)) {
        (Some(r), Some(l)) => r.start <= l && l < r.end,
        _ => true,
    };
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "digraph {} {{",
        quote(&format!("{} plan", plan.graph_name))
    );
    let _ = writeln!(
        s,
        "  rankdir=TB; node [shape=box, fontname=\"monospace\", fontsize=10];"
    );
    // Who writes each buffer (the last writer before a read is the producer in schedule order).
    let mut writer: BTreeMap<u32, usize> = BTreeMap::new();
    let node_of = |i: usize| -> String {
        if shown(&plan.steps[i].name) {
            format!("s{i}")
        } else {
            "folded".to_string()
        }
    };
    let mut any_folded = false;
    let mut edges = BTreeSet::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let id = node_of(i);
        if id == "folded" {
            any_folded = true;
        } else {
            let label = format!(
                "#{i} {}\n{}\n{}",
                step.name,
                step.op.name(),
                step.kernels.join(" + ")
            );
            let _ = writeln!(s, "  {id} [label={}];", quote(&label));
        }
        for b in &step.inputs {
            let buf = &plan.buffers[b.0 as usize];
            let from = match (buf.kind, writer.get(&b.0)) {
                (BufKind::Input, _) => format!("in_{}", b.0),
                (_, Some(&w)) => node_of(w),
                _ => continue,
            };
            if from != id {
                edges.insert((from, id.clone(), buf.name.clone()));
            }
        }
        for b in &step.outputs {
            writer.insert(b.0, i);
        }
    }
    for b in plan
        .buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| b.kind == BufKind::Input)
    {
        let _ = writeln!(
            s,
            "  in_{} [label={}, shape=ellipse];",
            b.0,
            quote(&b.1.name)
        );
    }
    if any_folded {
        let _ = writeln!(
            s,
            "  folded [label=\"other layers\", shape=box3d, style=filled, fillcolor=lightgrey];"
        );
    }
    let mut seen = BTreeSet::new();
    for (from, to, label) in edges {
        let folded = from == "folded" || to == "folded";
        if folded && !seen.insert((from.clone(), to.clone())) {
            continue;
        }
        let label = if folded {
            String::new()
        } else {
            format!(" [label={}]", quote(&label))
        };
        let _ = writeln!(s, "  {from} -> {to}{label};");
    }
    let _ = writeln!(s, "}}");
    s
}
