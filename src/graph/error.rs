use std::fmt;

/// A place in a graph definition file: `file:line:col` (1-based).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Shared by every location of one file.
    pub file: std::sync::Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Everything that can be wrong with a graph definition, or with binding it to a model.
/// Each variant names the place in the file and the name involved.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The cause is the I/O error (not repeated in the message: error chains print it).
    #[error("{path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{at}: syntax error: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: node `{node}`: unknown op `{op}` (known: {known})")]
    UnknownOp {
        at: Location,
        node: String,
        op: String,
        known: String,
    },
    #[error("{at}: node `{node}` ({op}) takes {want} input(s), got {got}")]
    Arity {
        at: Location,
        node: String,
        op: &'static str,
        want: usize,
        got: usize,
    },
    #[error("{at}: node `{node}` ({op}) takes {want} weight(s), got {got}")]
    WeightArity {
        at: Location,
        node: String,
        op: &'static str,
        want: usize,
        got: usize,
    },
    #[error(
        "{at}: node `{node}`: input `{input}` names no node, block input or graph input{hint}"
    )]
    UnknownInput {
        at: Location,
        node: String,
        input: String,
        hint: String,
    },
    #[error("{at}: node `{node}`: weight `{weight}` is not declared in {scope}")]
    UnknownWeight {
        at: Location,
        node: String,
        weight: String,
        scope: String,
    },
    #[error(
        "{at}: node `{node}` ({op}) reads weight `{weight}`, which is optional, but a {op} \
         cannot run without its weight (only rope's frequency factors may be absent)"
    )]
    OptionalWeight {
        at: Location,
        node: String,
        op: &'static str,
        weight: String,
    },
    #[error("{at}: node `{node}` ({op}): missing attribute `{attr}`")]
    MissingAttr {
        at: Location,
        node: String,
        op: &'static str,
        attr: &'static str,
    },
    #[error("{at}: node `{node}` ({op}) does not take attribute `{attr}`")]
    UnexpectedAttr {
        at: Location,
        node: String,
        op: &'static str,
        attr: &'static str,
    },
    #[error("{at}: node `{node}`: {message}")]
    BadAttr {
        at: Location,
        node: String,
        message: String,
    },
    #[error("{at}: cycle through node `{node}`: {path}")]
    Cycle {
        at: Location,
        node: String,
        path: String,
    },
    #[error("{at}: duplicate name `{name}` (first defined at {first})")]
    Duplicate {
        at: Location,
        name: String,
        first: Location,
    },
    #[error("{at}: `{name}` is never bound: no dimension or parameter has that name{hint}")]
    Unbound {
        at: Location,
        name: String,
        hint: String,
    },
    #[error("{at}: in `{expr}`: {message}")]
    Expr {
        at: Location,
        expr: String,
        message: String,
    },
    #[error("{at}: dimension `{name}`: cycle in its definition ({path})")]
    DimCycle {
        at: Location,
        name: String,
        path: String,
    },
    #[error(
        "{at}: graph `{graph}` describes {accepted}, but the model is `{arch}` \
         (general.architecture): use the graph written for it (graphs/{arch}.toml)"
    )]
    Architecture {
        at: Location,
        graph: String,
        accepted: String,
        arch: String,
    },
    #[error("{at}: `{name}`: the model has no metadata key `{key}`")]
    MissingKey {
        at: Location,
        name: String,
        key: String,
    },
    #[error("{at}: `{name}`: metadata key `{key}` is {found}, expected {expected}")]
    KeyType {
        at: Location,
        name: String,
        key: String,
        found: String,
        expected: &'static str,
    },
    #[error("{at}: weight `{weight}`{layer}: no tensor in the model matches (tried {tried})")]
    MissingWeight {
        at: Location,
        weight: String,
        layer: String,
        tried: String,
    },
    #[error("{at}: node `{node}` repeats block `{block}` zero times (`{count}` is 0)")]
    ZeroRepeat {
        at: Location,
        node: String,
        block: String,
        count: String,
    },
    #[error("{at}: output `{output}` names no node `{node}`")]
    UnknownOutput {
        at: Location,
        output: String,
        node: String,
    },
}
