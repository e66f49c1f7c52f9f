//! A graph file as serde reads it: TOML tables with a byte span on every value, before any
//! check. `parse.rs` turns these into the checked `GraphDef`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) graph: RawGraph,
    #[serde(default)]
    pub(super) dims: BTreeMap<String, Spanned<RawDim>>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, Spanned<RawParam>>,
    #[serde(default)]
    pub(super) inputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) outputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) weights: BTreeMap<String, Spanned<RawWeight>>,
    #[serde(default)]
    pub(super) block: BTreeMap<String, Spanned<RawBlock>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGraph {
    pub(super) name: String,
    #[serde(default)]
    #[allow(dead_code)] // documentation for readers of the file
    pub(super) description: Option<String>,
    /// The `general.architecture` values of the models this graph describes.
    #[serde(default)]
    pub(super) architectures: Option<Spanned<Vec<String>>>,
    /// Tensors a model may hold that the graph does not read (`{layer}`: any layer).
    #[serde(default)]
    pub(super) optional: Vec<String>,
    pub(super) nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawDim {
    Literal(u64),
    Expr(String),
    Key(RawDimKey),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDimKey {
    pub(super) key: Option<String>,
    pub(super) len: Option<String>,
    pub(super) or: Option<String>,
    pub(super) default: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawParam {
    Literal(f64),
    Key(RawParamKey),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParamKey {
    pub(super) key: String,
    pub(super) default: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawWeight {
    One(String),
    Alternatives(Vec<String>),
    /// `{ tensor = "rope_freqs.weight", optional = true }`: a weight that some models of
    /// the architecture lack; a node reading it then runs without it.
    Table(RawWeightTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightTable {
    pub(super) tensor: RawNames,
    #[serde(default)]
    pub(super) optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlock {
    pub(super) input: String,
    pub(super) output: Spanned<String>,
    #[serde(default)]
    pub(super) weights: BTreeMap<String, Spanned<RawWeight>>,
    pub(super) nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawNames {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawScalar {
    Num(f64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) name: Spanned<String>,
    pub(super) op: Spanned<String>,
    #[serde(rename = "in", default)]
    pub(super) inputs: Vec<Spanned<String>>,
    pub(super) weight: Option<Spanned<RawNames>>,
    pub(super) eps: Option<Spanned<RawScalar>>,
    pub(super) theta: Option<Spanned<RawScalar>>,
    pub(super) factor: Option<Spanned<RawScalar>>,
    pub(super) window: Option<Spanned<String>>,
    pub(super) heads: Option<Spanned<String>>,
    pub(super) kv_heads: Option<Spanned<String>>,
    pub(super) layout: Option<Spanned<String>>,
    pub(super) block: Option<Spanned<String>>,
    pub(super) count: Option<Spanned<String>>,
}
