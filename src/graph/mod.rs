//! Graph definitions: text → `GraphDef` (checked without a model) → `Graph` (a petgraph
//! graph with the layer block expanded, every dimension bound to a number from the model's
//! metadata and every weight bound to a GGUF tensor).
//!
//! ```
//! use qgraph::gguf::{tiny::TinyLlama, GgufFile};
//!
//! let def = qgraph::graph::load(concat!(env!("CARGO_MANIFEST_DIR"), "/graphs/llama.toml"))?;
//! let model = GgufFile::from_bytes(&TinyLlama::default().writer()?.to_bytes())?;
//! let graph = def.bind(&model)?;
//! assert_eq!(graph.dim("n_embd"), Some(64));
//! assert_eq!(graph.dim("head_dim"), Some(16));
//! assert_eq!(graph.n_layer, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bind;
mod check;
mod def;
pub mod dot;
mod error;
mod expr;
mod op;
mod parse;
mod raw;
pub mod summary;

pub use def::{GraphDef, NodeSpec, OpKind, RUNTIME_DIMS};
pub use error::{GraphError, Location};
pub use expr::{EvalError, Expr};
pub use op::{Epilogue, GateAct, InputKind, Op, RopeLayout};
pub use parse::parse;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::quant::GgmlType;

/// Reads and checks a graph definition file.
pub fn load(path: impl AsRef<std::path::Path>) -> Result<GraphDef, GraphError> {
    let path = path.as_ref();
    let src = std::fs::read_to_string(path).map_err(|source| GraphError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&src, &path.display().to_string())
}

/// A node's id in `Graph::g`. Stable across node removal, so passes can delete nodes.
pub type NodeId = NodeIndex;

/// Index into `Graph::weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(pub u32);

#[derive(Debug, Clone)]
pub struct Node {
    /// GGUF-style name: `blk.3.attn_q` inside the repeated block, the plain name outside.
    pub name: String,
    pub op: Op,
    pub weights: Vec<WeightId>,
    /// The layer this node was expanded for, if it comes from the repeated block.
    pub layer: Option<u32>,
    /// Where the node is written in the definition.
    pub at: Location,
}

/// A weight bound to a tensor of the model.
#[derive(Debug, Clone)]
pub struct BoundWeight {
    /// The weight's name in the definition (`attn_q`).
    pub name: String,
    pub layer: Option<u32>,
    /// The GGUF tensor it resolved to (`blk.3.attn_q.weight`).
    pub tensor: String,
    /// Whether an alternative after the first template matched (e.g. a tied embedding).
    pub fallback: bool,
    pub dtype: GgmlType,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub n_bytes: u64,
}

/// A dimension bound to a number, and where the number came from.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundDim {
    pub name: String,
    pub value: u64,
    /// `llama.embedding_length`, `n_embd / n_head`, `len(tokenizer.ggml.tokens)`, …
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BoundParam {
    pub name: String,
    pub value: f32,
    pub source: String,
}

/// An edge carries one tensor: output `out` of its source into input `slot` of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    pub out: usize,
    pub slot: usize,
}

/// One value in the graph: output `out` of node `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId {
    pub node: NodeId,
    pub out: usize,
}

/// A graph bound to a model: nodes are ops, edges are tensors.
#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    pub file: String,
    pub g: StableDiGraph<Node, Edge>,
    pub dims: Vec<BoundDim>,
    pub params: Vec<BoundParam>,
    pub inputs: Vec<(String, NodeId)>,
    pub outputs: Vec<(String, NodeId)>,
    pub weights: Vec<BoundWeight>,
    /// Times the block was repeated (0 when the graph repeats none).
    pub n_layer: u32,
    /// The repeated block's name and its node count per layer.
    pub block: Option<(String, usize)>,
    /// The model's tensors that no node reads and that the graph does not mark optional,
    /// in file order: `qgraph check` lists them, and commands that run the model refuse a
    /// graph that leaves any (a graph for another model, or one missing a part).
    pub unread: Vec<String>,
}

impl Graph {
    pub fn dim(&self, name: &str) -> Option<u64> {
        self.dims.iter().find(|d| d.name == name).map(|d| d.value)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// A node's input nodes, in slot order.
    pub fn inputs_of(&self, id: NodeId) -> Vec<NodeId> {
        self.input_values(id).into_iter().map(|v| v.node).collect()
    }

    /// A node's input values, in slot order.
    pub fn input_values(&self, id: NodeId) -> Vec<ValueId> {
        let mut edges: Vec<(usize, ValueId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| {
                let w = e.weight();
                (
                    w.slot,
                    ValueId {
                        node: e.source(),
                        out: w.out,
                    },
                )
            })
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, v)| v).collect()
    }

    /// The (consumer, input slot) pairs that read value `v`, sorted.
    pub fn readers_of(&self, v: ValueId) -> Vec<(NodeId, usize)> {
        let mut out: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(v.node, Direction::Outgoing)
            .filter(|e| e.weight().out == v.out)
            .map(|e| (e.target(), e.weight().slot))
            .collect();
        out.sort();
        out
    }

    /// Replaces a node's inputs with `inputs` (slot i reads `inputs[i]`).
    pub fn set_inputs(&mut self, id: NodeId, inputs: &[ValueId]) {
        let old: Vec<_> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (slot, v) in inputs.iter().enumerate() {
            self.g.add_edge(v.node, id, Edge { out: v.out, slot });
        }
    }

    /// Points every reader of `from` at `to` instead.
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        for (reader, slot) in self.readers_of(from) {
            let e = self
                .g
                .edges_directed(reader, Direction::Incoming)
                .find(|e| {
                    e.source() == from.node && e.weight().out == from.out && e.weight().slot == slot
                })
                .map(|e| e.id());
            if let Some(e) = e {
                self.g.remove_edge(e);
                self.g.add_edge(to.node, reader, Edge { out: to.out, slot });
            }
        }
        for o in self.outputs.iter_mut() {
            if o.1 == from.node && from.out == 0 {
                o.1 = to.node;
            }
        }
    }

    /// Whether `ancestor` reaches `node` through input edges (or is it).
    pub fn reaches(&self, ancestor: NodeId, node: NodeId) -> bool {
        let mut stack = vec![node];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            if n == ancestor {
                return true;
            }
            if seen.insert(n) {
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        false
    }

    /// The nodes that read `id`'s output (each once, in id order).
    pub fn consumers_of(&self, id: NodeId) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The node ids in a deterministic topological order (ties broken by id, which is
    /// creation order, so dumps follow the definition).
    pub fn topo_order(&self) -> Vec<NodeId> {
        let mut indegree: std::collections::BTreeMap<NodeId, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: std::collections::BTreeSet<NodeId> = indegree
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&e.target()) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(e.target());
                    }
                }
            }
        }
        order
    }

    /// Distinct GGUF tensors the graph reads, and their total bytes.
    pub fn tensor_totals(&self) -> (usize, u64) {
        let mut seen = std::collections::BTreeSet::new();
        let mut bytes = 0;
        for w in &self.weights {
            if seen.insert(w.tensor.as_str()) {
                bytes += w.n_bytes;
            }
        }
        (seen.len(), bytes)
    }
}
