use crate::graph::{GraphError, Location};

/// Everything that can be wrong when planning: each variant names the node, its op and,
/// where one is involved, the weight, with both shapes.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("{at}: node `{node}` ({op}): input {slot} is {got}, expected {want}")]
    Shape {
        at: Location,
        node: String,
        op: &'static str,
        slot: usize,
        got: String,
        want: String,
    },
    #[error("{at}: node `{node}` ({op}): weight `{weight}` has shape {got}, expected {want}")]
    WeightShape {
        at: Location,
        node: String,
        op: &'static str,
        weight: String,
        got: String,
        want: String,
    },
    #[error("{at}: node `{node}` ({op}): weight `{weight}` is {dtype}: {why}")]
    WeightDtype {
        at: Location,
        node: String,
        op: &'static str,
        weight: String,
        dtype: crate::quant::GgmlType,
        why: &'static str,
    },
    #[error("{at}: node `{node}` ({op}): {message}")]
    Invalid {
        at: Location,
        node: String,
        op: &'static str,
        message: String,
    },
    #[error("unknown pass `{name}` (known: {known})")]
    UnknownPass { name: String, known: String },
    #[error("bad plan options: {0}")]
    Options(String),
    #[error("weight `{tensor}` is not in the model")]
    Weight {
        tensor: String,
        source: crate::gguf::GgufError,
    },
}
