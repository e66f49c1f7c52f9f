//! The model-independent checks of a whole definition: one namespace for dimensions and
//! parameters, references that resolve in their scope, no cycles among derived dimensions
//! or among nodes.

use std::collections::HashMap;

use super::def::{
    BlockSpec, DimSpec, GraphDef, NodeSpec, OpKind, Scalar, WeightSpec, LAYER, RUNTIME_DIMS,
};
use super::error::{GraphError, Location};

/// Model-independent checks: names, references, scopes, cycles.
pub(super) fn check(def: &GraphDef) -> Result<(), GraphError> {
    // Dimension and parameter names are one namespace.
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for (name, at) in def
        .dims
        .iter()
        .map(|d| (&d.name, &d.at))
        .chain(def.params.iter().map(|p| (&p.name, &p.at)))
    {
        if let Some(first) = seen.insert(name, at) {
            return Err(GraphError::Duplicate {
                at: at.clone(),
                name: name.clone(),
                first: first.clone(),
            });
        }
        if RUNTIME_DIMS.contains(&name.as_str()) {
            return Err(GraphError::Syntax {
                at: at.clone(),
                message: format!("`{name}` is bound at plan time and cannot be defined here"),
            });
        }
    }
    let is_dim = |n: &str| def.dims.iter().any(|d| d.name == n);
    let is_param = |n: &str| def.params.iter().any(|p| p.name == n);
    let unbound = |name: &str, at: &Location| GraphError::Unbound {
        at: at.clone(),
        name: name.to_string(),
        hint: if RUNTIME_DIMS.contains(&name) {
            " (it is bound at plan time, not from the model)".into()
        } else {
            String::new()
        },
    };
    for d in &def.dims {
        if let Some(n) = d.source.deps().into_iter().find(|n| !is_dim(n)) {
            return Err(unbound(n, &d.at));
        }
    }
    check_dim_cycles(def)?;

    // Attribute expressions: dimensions (integers), and parameters too in float ones;
    // `layer` inside a block only.
    let in_block = |n: &NodeSpec| {
        def.blocks
            .iter()
            .any(|b| b.nodes.iter().any(|x| std::ptr::eq(x, n)))
    };
    let all_nodes = def
        .nodes
        .iter()
        .chain(def.blocks.iter().flat_map(|b| b.nodes.iter()));
    for n in all_nodes {
        let layer_ok = |x: &str| x == LAYER && in_block(n);
        for e in [&n.heads, &n.kv_heads, &n.count, &n.window]
            .into_iter()
            .flatten()
        {
            if let Some(name) = e
                .expr
                .names()
                .into_iter()
                .find(|x| !is_dim(x) && !layer_ok(x))
            {
                return Err(unbound(name, &e.at));
            }
        }
        for (s, at) in [&n.eps, &n.theta, &n.factor].into_iter().flatten() {
            let missing = match s {
                Scalar::Num(_) => None,
                Scalar::Param(p) => (!is_param(p)).then_some(p.as_str()),
                Scalar::Expr(e, _) => e
                    .names()
                    .into_iter()
                    .find(|x| !is_param(x) && !is_dim(x) && !layer_ok(x)),
            };
            if let Some(name) = missing {
                return Err(unbound(name, at));
            }
        }
    }

    // Top-level scope: graph inputs and top-level nodes.
    let graph_inputs: Vec<(&str, &Location)> = def
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), &i.at))
        .collect();
    check_scope(
        def,
        &def.nodes,
        &graph_inputs,
        &def.weights,
        None,
        "the top-level [weights]",
    )?;
    for o in &def.outputs {
        if !def.nodes.iter().any(|n| n.name == o.node) {
            return Err(GraphError::UnknownOutput {
                at: o.at.clone(),
                output: o.name.clone(),
                node: o.node.clone(),
            });
        }
    }
    for n in def.nodes.iter().filter(|n| n.kind == OpKind::Repeat) {
        let Some((block, at)) = &n.block else {
            continue;
        };
        if !def.blocks.iter().any(|b| &b.name == block) {
            return Err(GraphError::BadAttr {
                at: at.clone(),
                node: n.name.clone(),
                message: format!("no block named `{block}`"),
            });
        }
    }
    // Block scopes: the block's input, its own nodes and the graph inputs.
    for b in &def.blocks {
        if let Some(n) = b.nodes.iter().find(|n| n.kind == OpKind::Repeat) {
            return Err(GraphError::BadAttr {
                at: n.at.clone(),
                node: n.name.clone(),
                message: "blocks cannot repeat other blocks".into(),
            });
        }
        let mut scope = graph_inputs.clone();
        scope.push((b.input.as_str(), &b.at));
        let weights: Vec<WeightSpec> = b
            .weights
            .iter()
            .chain(def.weights.iter())
            .cloned()
            .collect();
        let scope_name = format!("block `{}`'s weights or the top-level [weights]", b.name);
        check_scope(def, &b.nodes, &scope, &weights, Some(b), &scope_name)?;
        if !b.nodes.iter().any(|n| n.name == b.output.0) {
            return Err(GraphError::UnknownOutput {
                at: b.output.1.clone(),
                output: format!("block `{}`", b.name),
                node: b.output.0.clone(),
            });
        }
    }
    Ok(())
}

fn check_dim_cycles(def: &GraphDef) -> Result<(), GraphError> {
    fn visit<'a>(
        def: &'a GraphDef,
        d: &'a DimSpec,
        stack: &mut Vec<&'a str>,
    ) -> Result<(), GraphError> {
        if let Some(i) = stack.iter().position(|s| *s == d.name) {
            let mut path: Vec<&str> = stack[i..].to_vec();
            path.push(&d.name);
            return Err(GraphError::DimCycle {
                at: d.at.clone(),
                name: d.name.clone(),
                path: path.join(" → "),
            });
        }
        stack.push(&d.name);
        for n in d.source.deps() {
            if let Some(dep) = def.dims.iter().find(|x| x.name == n) {
                visit(def, dep, stack)?;
            }
        }
        stack.pop();
        Ok(())
    }
    for d in &def.dims {
        visit(def, d, &mut Vec::new())?;
    }
    Ok(())
}

fn check_scope(
    def: &GraphDef,
    nodes: &[NodeSpec],
    outer: &[(&str, &Location)],
    weights: &[WeightSpec],
    block: Option<&BlockSpec>,
    weight_scope: &str,
) -> Result<(), GraphError> {
    let mut names: HashMap<&str, &Location> = HashMap::new();
    for (name, at) in outer
        .iter()
        .copied()
        .chain(nodes.iter().map(|n| (n.name.as_str(), &n.at)))
    {
        if let Some(first) = names.insert(name, at) {
            return Err(GraphError::Duplicate {
                at: at.clone(),
                name: name.to_string(),
                first: first.clone(),
            });
        }
    }
    for n in nodes {
        for (input, at) in &n.inputs {
            if names.contains_key(input.as_str()) {
                continue;
            }
            let hint = if let Some(b) = def
                .blocks
                .iter()
                .find(|b| b.nodes.iter().any(|x| &x.name == input))
            {
                format!(
                    " (`{input}` is inside block `{}`: outside it, name the repeat node)",
                    b.name
                )
            } else if block.is_some() && def.nodes.iter().any(|x| &x.name == input) {
                " (a block sees only its input, its own nodes and the graph inputs)".to_string()
            } else {
                String::new()
            };
            return Err(GraphError::UnknownInput {
                at: at.clone(),
                node: n.name.clone(),
                input: input.clone(),
                hint,
            });
        }
        for (w, at) in &n.weights {
            let Some(spec) = weights.iter().find(|x| &x.name == w) else {
                return Err(GraphError::UnknownWeight {
                    at: at.clone(),
                    node: n.name.clone(),
                    weight: w.clone(),
                    scope: weight_scope.to_string(),
                });
            };
            if spec.optional && !n.kind.weights_may_be_absent() {
                return Err(GraphError::OptionalWeight {
                    at: at.clone(),
                    node: n.name.clone(),
                    op: n.kind.name(),
                    weight: w.clone(),
                });
            }
        }
    }
    // Cycles: depth-first search over input edges within this scope.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; nodes.len()];
    fn dfs(
        i: usize,
        nodes: &[NodeSpec],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Result<(), GraphError> {
        marks[i] = Mark::Open;
        stack.push(i);
        for (input, _) in &nodes[i].inputs {
            let Some(&j) = index.get(input.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::Open => {
                    let from = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut path: Vec<&str> = stack[from..]
                        .iter()
                        .map(|&k| nodes[k].name.as_str())
                        .collect();
                    path.push(&nodes[j].name);
                    return Err(GraphError::Cycle {
                        at: nodes[j].at.clone(),
                        node: nodes[j].name.clone(),
                        path: path.join(" ← "),
                    });
                }
                Mark::New => dfs(j, nodes, index, marks, stack)?,
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        Ok(())
    }
    for i in 0..nodes.len() {
        if marks[i] == Mark::New {
            dfs(i, nodes, &index, &mut marks, &mut Vec::new())?;
        }
    }
    Ok(())
}
