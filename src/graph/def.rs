//! The checked graph definition (`GraphDef`): everything that can be checked without a
//! model has been (syntax, op names, arity, attributes, name resolution, cycles, unbound
//! dimensions) by `parse.rs` and `check.rs`; `bind.rs` binds it to a model.

use super::error::Location;
use super::expr::Expr;
use super::op::{InputKind, RopeLayout};

/// Where a dimension's value comes from.
#[derive(Debug, Clone)]
pub enum DimSource {
    Literal(u64),
    /// An expression over other dimensions (kept with its text for messages and dumps).
    Expr(Expr, String),
    /// A metadata key (`{arch}` is replaced by `general.architecture`); else the length of
    /// the array at `len`; else the expression `or` (`n_embd / n_head` for a head size the
    /// file may state); else `default`.
    Key {
        key: Option<String>,
        len: Option<String>,
        or: Option<(Expr, String)>,
        default: Option<u64>,
    },
}

impl DimSource {
    /// The dimensions this one may be computed from.
    pub fn deps(&self) -> Vec<&str> {
        match self {
            DimSource::Expr(e, _)
            | DimSource::Key {
                or: Some((e, _)), ..
            } => e.names(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DimSpec {
    pub name: String,
    pub at: Location,
    pub source: DimSource,
}

#[derive(Debug, Clone)]
pub enum ParamSource {
    Literal(f64),
    Key { key: String, default: Option<f64> },
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    pub at: Location,
    pub source: ParamSource,
}

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: String,
    pub at: Location,
    pub kind: InputKind,
}

#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub name: String,
    pub at: Location,
    pub node: String,
}

/// A weight: tensor name templates tried in order (`{layer}` is the layer index).
#[derive(Debug, Clone)]
pub struct WeightSpec {
    pub name: String,
    pub at: Location,
    pub templates: Vec<String>,
    /// A model may lack it: a node that reads it then runs without it (only ops whose
    /// weights may be absent, `OpKind::weights_may_be_absent`, may read one).
    pub optional: bool,
}

/// A float attribute: a literal, the name of a parameter, or an expression over parameters
/// and dimensions (and `layer`, inside a block), e.g.
/// `if(layer % 6 == 5, rope_global, rope_local)`.
#[derive(Debug, Clone)]
pub enum Scalar {
    Num(f64),
    Param(String),
    Expr(Expr, String),
}

/// The name that stands for the layer index in a block's attribute expressions.
pub const LAYER: &str = "layer";

/// An integer attribute: an expression over dimensions, with its text.
#[derive(Debug, Clone)]
pub struct DimExpr {
    pub expr: Expr,
    pub text: String,
    pub at: Location,
}

/// The op names a definition may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Embed,
    RmsNorm,
    Gemv,
    Rope,
    Attention,
    Mlp,
    Add,
    Mul,
    Silu,
    Gelu,
    Scale,
    Softmax,
    Bias,
    Repeat,
}

/// Op names as written in files (`gemv_q4` is an alias of `gemv`: the weight's format is
/// the model's, resolved at plan time).
pub(super) const OP_NAMES: &[(&str, OpKind)] = &[
    ("embed", OpKind::Embed),
    ("rmsnorm", OpKind::RmsNorm),
    ("gemv", OpKind::Gemv),
    ("gemv_q4", OpKind::Gemv),
    ("rope", OpKind::Rope),
    ("attention", OpKind::Attention),
    ("mlp", OpKind::Mlp),
    ("add", OpKind::Add),
    ("mul", OpKind::Mul),
    ("silu", OpKind::Silu),
    ("bias", OpKind::Bias),
    ("gelu", OpKind::Gelu),
    ("scale", OpKind::Scale),
    ("softmax", OpKind::Softmax),
    ("repeat", OpKind::Repeat),
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Attr {
    Eps,
    Theta,
    Heads,
    KvHeads,
    Layout,
    Block,
    Count,
    Factor,
    Window,
}

impl Attr {
    pub(super) fn name(self) -> &'static str {
        match self {
            Attr::Eps => "eps",
            Attr::Theta => "theta",
            Attr::Heads => "heads",
            Attr::KvHeads => "kv_heads",
            Attr::Layout => "layout",
            Attr::Block => "block",
            Attr::Count => "count",
            Attr::Factor => "factor",
            Attr::Window => "window",
        }
    }
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Embed => "embed",
            OpKind::RmsNorm => "rmsnorm",
            OpKind::Gemv => "gemv",
            OpKind::Rope => "rope",
            OpKind::Attention => "attention",
            OpKind::Mlp => "mlp",
            OpKind::Add => "add",
            OpKind::Mul => "mul",
            OpKind::Silu => "silu",
            OpKind::Gelu => "gelu",
            OpKind::Scale => "scale",
            OpKind::Softmax => "softmax",
            OpKind::Bias => "bias",
            OpKind::Repeat => "repeat",
        }
    }

    /// (inputs, weights) the op takes.
    pub(super) fn arity(self) -> (usize, usize) {
        match self {
            OpKind::Embed | OpKind::RmsNorm | OpKind::Gemv | OpKind::Bias => (1, 1),
            // The weight, optional: each pair's frequency divisor (Llama 3's rope_freqs).
            OpKind::Rope => (2, 1),
            OpKind::Attention => (4, 0),
            OpKind::Mlp => (1, 3),
            OpKind::Add | OpKind::Mul => (2, 0),
            OpKind::Silu | OpKind::Gelu | OpKind::Scale | OpKind::Softmax | OpKind::Repeat => {
                (1, 0)
            }
        }
    }

    /// Whether a node may read fewer weights than `arity` says, the missing ones being
    /// optional weights (`WeightSpec::optional`) that the model lacks.
    pub(super) fn weights_may_be_absent(self) -> bool {
        self == OpKind::Rope
    }

    /// (required, optional) attributes.
    pub(super) fn attrs(self) -> (&'static [Attr], &'static [Attr]) {
        match self {
            // `heads`: normalize each of that many equal slices of the row with one gamma of
            // the slice's length (Gemma's per-head Q/K norms).
            OpKind::RmsNorm => (&[Attr::Eps], &[Attr::Heads]),
            OpKind::Rope => (&[Attr::Heads, Attr::Theta], &[Attr::Layout]),
            // `window`: attend only the last `window` positions (0: all of them).
            OpKind::Attention => (&[Attr::Heads, Attr::KvHeads], &[Attr::Window]),
            OpKind::Scale => (&[Attr::Factor], &[]),
            OpKind::Repeat => (&[Attr::Block, Attr::Count], &[]),
            _ => (&[], &[]),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub at: Location,
    pub kind: OpKind,
    pub inputs: Vec<(String, Location)>,
    pub weights: Vec<(String, Location)>,
    pub eps: Option<(Scalar, Location)>,
    pub theta: Option<(Scalar, Location)>,
    pub factor: Option<(Scalar, Location)>,
    pub window: Option<DimExpr>,
    pub heads: Option<DimExpr>,
    pub kv_heads: Option<DimExpr>,
    pub layout: RopeLayout,
    pub block: Option<(String, Location)>,
    pub count: Option<DimExpr>,
}

#[derive(Debug, Clone)]
pub struct BlockSpec {
    pub name: String,
    pub at: Location,
    pub input: String,
    pub output: (String, Location),
    pub weights: Vec<WeightSpec>,
    pub nodes: Vec<NodeSpec>,
}

/// A checked graph definition, not yet bound to a model.
#[derive(Debug, Clone)]
pub struct GraphDef {
    pub file: String,
    pub name: String,
    /// The architectures (`general.architecture`) it accepts, where the file lists them
    /// (a graph without the list accepts any model its weights and keys fit).
    pub architectures: Option<(Vec<String>, Location)>,
    /// Name templates of tensors a model may hold unread (`{layer}`: any layer index).
    pub optional: Vec<String>,
    pub dims: Vec<DimSpec>,
    pub params: Vec<ParamSpec>,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    pub weights: Vec<WeightSpec>,
    pub blocks: Vec<BlockSpec>,
    pub nodes: Vec<NodeSpec>,
}

/// Names that plans bind at plan time: usable in shapes, not in bound dimensions.
pub const RUNTIME_DIMS: &[&str] = &["seq", "n_ctx"];
