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
mod def;
pub mod dot;
mod error;
mod expr;
mod op;
pub mod summary;

pub use def::{parse, GraphDef, NodeSpec, OpKind, RUNTIME_DIMS};
pub use error::{GraphError, Location};
pub use expr::{EvalError, Expr};
pub use op::{InputKind, Op, RopeLayout};

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

/// A graph bound to a model: nodes are ops, edges are tensors (the edge weight is the
/// consumer's input slot).
#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    pub file: String,
    pub g: StableDiGraph<Node, usize>,
    pub dims: Vec<BoundDim>,
    pub params: Vec<BoundParam>,
    pub inputs: Vec<(String, NodeId)>,
    pub outputs: Vec<(String, NodeId)>,
    pub weights: Vec<BoundWeight>,
    /// Times the block was repeated (0 when the graph repeats none).
    pub n_layer: u32,
    /// The repeated block's name and its node count per layer.
    pub block: Option<(String, usize)>,
}

impl Graph {
    pub fn dim(&self, name: &str) -> Option<u64> {
        self.dims.iter().find(|d| d.name == name).map(|d| d.value)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// A node's inputs, in slot order.
    pub fn inputs_of(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, n)| n).collect()
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
