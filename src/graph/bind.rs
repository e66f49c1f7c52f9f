//! `GraphDef` + model → `Graph`: dimensions and parameters from metadata, weights bound to
//! tensors, the repeated block expanded layer by layer.

use std::collections::HashMap;

use super::def::{
    BlockSpec, DimExpr, DimSource, GraphDef, NodeSpec, OpKind, ParamSource, Scalar, WeightSpec,
    LAYER,
};
use super::error::{GraphError, Location};
use super::op::Op;
use super::{BoundDim, BoundParam, BoundWeight, Graph, Node, NodeId, WeightId};
use crate::gguf::{GgufError, GgufFile};

/// GGUF names layer tensors `blk.N.*`; expanded nodes are named the same way.
const LAYER_PREFIX: &str = "blk";

impl GraphDef {
    /// Binds the definition to a model: every dimension to a number, every weight to a
    /// tensor, the repeated block expanded.
    pub fn bind(&self, model: &GgufFile) -> Result<Graph, GraphError> {
        let mut b = Binder {
            def: self,
            model,
            dims: Vec::new(),
            params: Vec::new(),
            graph: Graph {
                name: self.name.clone(),
                file: self.file.clone(),
                g: Default::default(),
                dims: Vec::new(),
                params: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                weights: Vec::new(),
                n_layer: 0,
                block: None,
                unread: Vec::new(),
            },
            weight_ids: HashMap::new(),
        };
        b.check_architecture()?;
        b.bind_dims()?;
        b.bind_params()?;
        b.expand()?;
        b.graph.dims = b.dims;
        b.graph.params = b.params;
        b.graph.unread = unread_tensors(&b.graph, model, &self.optional);
        Ok(b.graph)
    }
}

/// The model's tensors that `graph` binds to no weight and that match no `optional`
/// template (`{layer}` stands for any layer index).
fn unread_tensors(graph: &Graph, model: &GgufFile, optional: &[String]) -> Vec<String> {
    let read: std::collections::HashSet<&str> =
        graph.weights.iter().map(|w| w.tensor.as_str()).collect();
    let matches = |template: &str, name: &str| match template.split_once("{layer}") {
        None => template == name,
        Some((head, tail)) => name
            .strip_prefix(head)
            .and_then(|rest| rest.strip_suffix(tail))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())),
    };
    model
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !read.contains(n) && !optional.iter().any(|o| matches(o, n)))
        .map(str::to_string)
        .collect()
}

struct Binder<'a> {
    def: &'a GraphDef,
    model: &'a GgufFile,
    dims: Vec<BoundDim>,
    params: Vec<BoundParam>,
    graph: Graph,
    weight_ids: HashMap<(String, Option<u32>), WeightId>,
}

impl Binder<'_> {
    /// A graph that lists its architectures binds only models of one of them.
    fn check_architecture(&self) -> Result<(), GraphError> {
        let Some((accepted, at)) = &self.def.architectures else {
            return Ok(());
        };
        let arch = self
            .model
            .get_str("general.architecture")
            .map_err(|e| self.key_error(e, "architectures", at))?;
        if accepted.iter().any(|a| a == arch) {
            return Ok(());
        }
        let list: Vec<String> = accepted.iter().map(|a| format!("`{a}`")).collect();
        Err(GraphError::Architecture {
            at: at.clone(),
            graph: self.def.name.clone(),
            accepted: format!(
                "architecture{} {}",
                if list.len() == 1 { "" } else { "s" },
                list.join(", ")
            ),
            arch: arch.to_string(),
        })
    }

    fn key(&self, template: &str, name: &str, at: &Location) -> Result<String, GraphError> {
        if !template.contains("{arch}") {
            return Ok(template.to_string());
        }
        let arch = self
            .model
            .get_str("general.architecture")
            .map_err(|e| self.key_error(e, name, at))?;
        Ok(template.replace("{arch}", arch))
    }

    fn key_error(&self, e: GgufError, name: &str, at: &Location) -> GraphError {
        match e {
            GgufError::WrongType {
                key,
                expected,
                found,
                ..
            } => GraphError::KeyType {
                at: at.clone(),
                name: name.to_string(),
                key,
                found,
                expected,
            },
            GgufError::MissingKey { key } => GraphError::MissingKey {
                at: at.clone(),
                name: name.to_string(),
                key,
            },
            other => GraphError::KeyType {
                at: at.clone(),
                name: name.to_string(),
                key: String::new(),
                found: other.to_string(),
                expected: "a readable value",
            },
        }
    }

    fn bind_dims(&mut self) -> Result<(), GraphError> {
        // Expressions may name dimensions defined further down: resolve in dependency order.
        // check_dim_cycles (def.rs) has ruled out cycles, so this terminates.
        let mut pending: Vec<usize> = (0..self.def.dims.len()).collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for i in pending {
                let d = &self.def.dims[i];
                let ready = d
                    .source
                    .deps()
                    .iter()
                    .all(|n| self.dims.iter().any(|b| b.name == *n));
                if ready {
                    let bound = self.bind_dim(i)?;
                    self.dims.push(bound);
                } else {
                    still.push(i);
                }
            }
            if still.len() == before {
                // Unreachable after check_dim_cycles; report rather than loop.
                let d = &self.def.dims[still[0]];
                return Err(GraphError::DimCycle {
                    at: d.at.clone(),
                    name: d.name.clone(),
                    path: d.name.clone(),
                });
            }
            pending = still;
        }
        // Report in file order.
        let order: HashMap<&str, usize> = self
            .def
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.as_str(), i))
            .collect();
        self.dims
            .sort_by_key(|d| order.get(d.name.as_str()).copied());
        Ok(())
    }

    fn bind_dim(&self, i: usize) -> Result<BoundDim, GraphError> {
        let d = &self.def.dims[i];
        let (value, source) = match &d.source {
            DimSource::Literal(v) => (*v, "literal".to_string()),
            DimSource::Expr(e, text) => {
                let v = self.eval(e, text, &d.at, None)?;
                (v, text.clone())
            }
            DimSource::Key {
                key,
                len,
                or,
                default,
            } => 'found: {
                let fallback = len.is_some() || or.is_some() || default.is_some();
                if let Some(key) = key {
                    let key = self.key(key, &d.name, &d.at)?;
                    match self.model.get_u64(&key) {
                        Ok(v) => break 'found (v, key),
                        Err(GgufError::MissingKey { .. }) if fallback => {}
                        Err(e) => return Err(self.key_error(e, &d.name, &d.at)),
                    }
                }
                if let Some(len) = len {
                    let len = self.key(len, &d.name, &d.at)?;
                    match self.model.get_array(&len) {
                        Ok(items) => break 'found (items.len() as u64, format!("len({len})")),
                        Err(GgufError::MissingKey { .. }) if or.is_some() || default.is_some() => {}
                        Err(e) => return Err(self.key_error(e, &d.name, &d.at)),
                    }
                }
                if let Some((e, text)) = or {
                    break 'found (self.eval(e, text, &d.at, None)?, text.clone());
                }
                match default {
                    Some(v) => (*v, "default".to_string()),
                    // check() guarantees one of key/len/default; here both lookups missed
                    None => {
                        return Err(GraphError::MissingKey {
                            at: d.at.clone(),
                            name: d.name.clone(),
                            key: key.clone().or(len.clone()).unwrap_or_default(),
                        })
                    }
                }
            }
        };
        Ok(BoundDim {
            name: d.name.clone(),
            value,
            source,
        })
    }

    /// `e` as an integer over the bound dimensions (and `layer`, inside a block).
    fn eval(
        &self,
        e: &super::Expr,
        text: &str,
        at: &Location,
        layer: Option<u32>,
    ) -> Result<u64, GraphError> {
        e.eval(&|n| match (n, layer) {
            (LAYER, Some(l)) => Some(l as u64),
            _ => self.dims.iter().find(|d| d.name == n).map(|d| d.value),
        })
        .map_err(|err| Self::eval_error(err, text, at, layer))
    }

    fn eval_error(
        err: super::EvalError,
        text: &str,
        at: &Location,
        layer: Option<u32>,
    ) -> GraphError {
        match err {
            super::EvalError::Unbound(name) => GraphError::Unbound {
                at: at.clone(),
                name,
                hint: String::new(),
            },
            other => GraphError::Expr {
                at: at.clone(),
                expr: text.to_string(),
                message: match layer {
                    Some(l) => format!("{other} (at layer {l})"),
                    None => other.to_string(),
                },
            },
        }
    }

    fn dim_expr(&self, e: &Option<DimExpr>, layer: Option<u32>) -> Result<usize, GraphError> {
        // check() guarantees required attributes are present; a missing one evaluates to 0
        // and is rejected by the planner's shape rules.
        let Some(e) = e else { return Ok(0) };
        let v = self.eval(&e.expr, &e.text, &e.at, layer)?;
        usize::try_from(v).map_err(|_| GraphError::Expr {
            at: e.at.clone(),
            expr: e.text.clone(),
            message: format!("{v} does not fit in usize"),
        })
    }

    fn bind_params(&mut self) -> Result<(), GraphError> {
        for p in &self.def.params {
            let (value, source) = match &p.source {
                ParamSource::Literal(v) => (*v as f32, "literal".to_string()),
                ParamSource::Key { key, default } => {
                    let key = self.key(key, &p.name, &p.at)?;
                    match (self.model.get_f32(&key), default) {
                        (Ok(v), _) => (v, key),
                        (Err(GgufError::MissingKey { .. }), Some(d)) => {
                            (*d as f32, "default".to_string())
                        }
                        (Err(e), _) => return Err(self.key_error(e, &p.name, &p.at)),
                    }
                }
            };
            self.params.push(BoundParam {
                name: p.name.clone(),
                value,
                source,
            });
        }
        Ok(())
    }

    fn scalar(
        &self,
        s: &Option<(Scalar, Location)>,
        layer: Option<u32>,
    ) -> Result<f32, GraphError> {
        let param = |p: &str| self.params.iter().find(|x| x.name == p).map(|x| x.value);
        Ok(match s {
            Some((Scalar::Num(v), _)) => *v as f32,
            // check() verified the parameter exists; bind_params bound every parameter.
            Some((Scalar::Param(p), _)) => param(p).unwrap_or(0.0),
            Some((Scalar::Expr(e, text), at)) => {
                let v = e
                    .eval_f64(&|n| match (n, layer) {
                        (LAYER, Some(l)) => Some(l as f64),
                        _ => param(n).map(f64::from).or_else(|| {
                            self.dims
                                .iter()
                                .find(|d| d.name == n)
                                .map(|d| d.value as f64)
                        }),
                    })
                    .map_err(|err| Self::eval_error(err, text, at, layer))?;
                if !v.is_finite() {
                    return Err(GraphError::Expr {
                        at: at.clone(),
                        expr: text.clone(),
                        message: format!("the value {v} is not finite"),
                    });
                }
                v as f32
            }
            None => 0.0,
        })
    }

    fn weight(&mut self, spec: &WeightSpec, layer: Option<u32>) -> Result<WeightId, GraphError> {
        let key = (spec.name.clone(), layer);
        if let Some(&id) = self.weight_ids.get(&key) {
            return Ok(id);
        }
        let names: Vec<String> = spec
            .templates
            .iter()
            .map(|t| match layer {
                Some(l) => t.replace("{layer}", &l.to_string()),
                None => t.clone(),
            })
            .collect();
        let found = names
            .iter()
            .enumerate()
            .find_map(|(i, n)| self.model.tensor(n).ok().map(|t| (i, t)));
        let Some((i, t)) = found else {
            return Err(GraphError::MissingWeight {
                at: spec.at.clone(),
                weight: spec.name.clone(),
                layer: layer.map_or(String::new(), |l| format!(" for layer {l}")),
                tried: names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let id = WeightId(self.graph.weights.len() as u32);
        self.graph.weights.push(BoundWeight {
            name: spec.name.clone(),
            layer,
            tensor: t.name.clone(),
            fallback: i > 0,
            dtype: t.dtype,
            dims: t.dims.clone(),
            n_bytes: t.n_bytes,
        });
        self.weight_ids.insert(key, id);
        Ok(id)
    }

    fn make_op(&self, n: &NodeSpec, layer: Option<u32>) -> Result<Op, GraphError> {
        Ok(match n.kind {
            OpKind::Embed => Op::Embed,
            OpKind::RmsNorm => Op::RmsNorm {
                eps: self.scalar(&n.eps, layer)?,
                heads: match &n.heads {
                    Some(_) => self.dim_expr(&n.heads, layer)?,
                    None => 1,
                },
            },
            OpKind::Gemv => Op::Gemv,
            OpKind::Rope => Op::Rope {
                heads: self.dim_expr(&n.heads, layer)?,
                theta: self.scalar(&n.theta, layer)?,
                layout: n.layout,
            },
            OpKind::Attention => Op::Attention {
                heads: self.dim_expr(&n.heads, layer)?,
                kv_heads: self.dim_expr(&n.kv_heads, layer)?,
                window: self.dim_expr(&n.window, layer)?,
            },
            OpKind::Mlp => Op::Mlp,
            OpKind::Add => Op::Add,
            OpKind::Mul => Op::Mul,
            OpKind::Silu => Op::Silu,
            OpKind::Gelu => Op::Gelu,
            OpKind::Scale => Op::Scale {
                factor: self.scalar(&n.factor, layer)?,
            },
            OpKind::Softmax => Op::Softmax,
            OpKind::Bias => Op::Bias,
            // Repeat nodes are expanded, never made into ops.
            OpKind::Repeat => unreachable!("repeat nodes are expanded by expand()"),
        })
    }

    /// Adds `nodes` (one scope) in topological order. `names` maps the names visible in
    /// the scope to graph nodes and receives the new ones.
    fn add_scope(
        &mut self,
        nodes: &[NodeSpec],
        weights: &[&WeightSpec],
        layer: Option<u32>,
        names: &mut HashMap<String, NodeId>,
    ) -> Result<(), GraphError> {
        for i in scope_order(nodes) {
            let n = &nodes[i];
            if n.kind == OpKind::Repeat {
                self.expand_repeat(n, names)?;
                continue;
            }
            let op = self.make_op(n, layer)?;
            let mut ws = Vec::new();
            for (w, _) in &n.weights {
                // check() resolved every weight name within the scope.
                let Some(spec) = weights.iter().find(|s| &s.name == w) else {
                    continue;
                };
                match self.weight(spec, layer) {
                    Ok(id) => ws.push(id),
                    // check() allowed optional weights only where the op runs without them.
                    Err(GraphError::MissingWeight { .. }) if spec.optional => {}
                    Err(e) => return Err(e),
                }
            }
            let name = match layer {
                Some(l) => format!("{LAYER_PREFIX}.{l}.{}", n.name),
                None => n.name.clone(),
            };
            let id = self.graph.g.add_node(Node {
                name,
                op,
                weights: ws,
                layer,
                at: n.at.clone(),
            });
            for (slot, (input, _)) in n.inputs.iter().enumerate() {
                // check() resolved every input within the scope; scope_order added it first.
                if let Some(&src) = names.get(input) {
                    self.graph.g.add_edge(src, id, super::Edge { out: 0, slot });
                }
            }
            names.insert(n.name.clone(), id);
        }
        Ok(())
    }

    fn expand_repeat(
        &mut self,
        n: &NodeSpec,
        names: &mut HashMap<String, NodeId>,
    ) -> Result<(), GraphError> {
        let def = self.def;
        let Some((block_name, _)) = &n.block else {
            return Ok(());
        };
        let Some(block) = def.blocks.iter().find(|b| &b.name == block_name) else {
            return Ok(());
        };
        let count = self.dim_expr(&n.count, None)?;
        if count == 0 {
            let c = n.count.as_ref();
            return Err(GraphError::ZeroRepeat {
                at: c.map_or(n.at.clone(), |c| c.at.clone()),
                node: n.name.clone(),
                block: block.name.clone(),
                count: c.map_or(String::new(), |c| c.text.clone()),
            });
        }
        let (input, input_at) = &n.inputs[0];
        let mut stream = *names.get(input).ok_or_else(|| GraphError::UnknownInput {
            at: input_at.clone(),
            node: n.name.clone(),
            input: input.clone(),
            hint: String::new(),
        })?;
        for layer in 0..count as u32 {
            stream = self.expand_layer(block, layer, stream)?;
        }
        self.graph.n_layer = count as u32;
        self.graph.block = Some((block.name.clone(), block.nodes.len()));
        names.insert(n.name.clone(), stream);
        Ok(())
    }

    fn expand_layer(
        &mut self,
        block: &BlockSpec,
        layer: u32,
        input: NodeId,
    ) -> Result<NodeId, GraphError> {
        let mut names: HashMap<String, NodeId> = self
            .graph
            .inputs
            .iter()
            .map(|(n, id)| (n.clone(), *id))
            .collect();
        names.insert(block.input.clone(), input);
        let def = self.def;
        let weights: Vec<&WeightSpec> = block.weights.iter().chain(def.weights.iter()).collect();
        self.add_scope(&block.nodes, &weights, Some(layer), &mut names)?;
        names
            .get(&block.output.0)
            .copied()
            .ok_or_else(|| GraphError::UnknownOutput {
                at: block.output.1.clone(),
                output: format!("block `{}`", block.name),
                node: block.output.0.clone(),
            })
    }

    fn expand(&mut self) -> Result<(), GraphError> {
        let def = self.def;
        let mut names = HashMap::new();
        for i in &def.inputs {
            let id = self.graph.g.add_node(Node {
                name: i.name.clone(),
                op: Op::Input { kind: i.kind },
                weights: vec![],
                layer: None,
                at: i.at.clone(),
            });
            self.graph.inputs.push((i.name.clone(), id));
            names.insert(i.name.clone(), id);
        }
        let weights: Vec<&WeightSpec> = def.weights.iter().collect();
        self.add_scope(&def.nodes, &weights, None, &mut names)?;
        for o in &def.outputs {
            // check() verified every output names a top-level node.
            if let Some(&id) = names.get(&o.node) {
                self.graph.outputs.push((o.name.clone(), id));
            }
        }
        Ok(())
    }
}

/// The nodes of one scope in an order where each comes after the inputs it reads from the
/// same scope (file order otherwise). check() has ruled out cycles.
fn scope_order(nodes: &[NodeSpec]) -> Vec<usize> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut done = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    fn visit(
        i: usize,
        nodes: &[NodeSpec],
        index: &HashMap<&str, usize>,
        done: &mut [bool],
        order: &mut Vec<usize>,
    ) {
        if done[i] {
            return;
        }
        done[i] = true;
        for (input, _) in &nodes[i].inputs {
            if let Some(&j) = index.get(input.as_str()) {
                visit(j, nodes, index, done, order);
            }
        }
        order.push(i);
    }
    for i in 0..nodes.len() {
        visit(i, nodes, &index, &mut done, &mut order);
    }
    order
}
