//! Graph definition text → `GraphDef`: everything that can be checked without a model
//! (syntax, op names, arity, attributes, name resolution, cycles, unbound dimensions).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use toml::Spanned;

use super::error::{GraphError, Location};
use super::expr::Expr;
use super::op::{InputKind, RopeLayout};

// ---- the file as serde reads it -----------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    graph: RawGraph,
    #[serde(default)]
    dims: BTreeMap<String, Spanned<RawDim>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<RawParam>>,
    #[serde(default)]
    inputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    outputs: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    weights: BTreeMap<String, Spanned<RawWeight>>,
    #[serde(default)]
    block: BTreeMap<String, Spanned<RawBlock>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    name: String,
    #[serde(default)]
    #[allow(dead_code)] // documentation for readers of the file
    description: Option<String>,
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDim {
    Literal(u64),
    Expr(String),
    Key(RawDimKey),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimKey {
    key: Option<String>,
    len: Option<String>,
    default: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawParam {
    Literal(f64),
    Key(RawParamKey),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParamKey {
    key: String,
    default: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawWeight {
    One(String),
    Alternatives(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    input: String,
    output: Spanned<String>,
    #[serde(default)]
    weights: BTreeMap<String, Spanned<RawWeight>>,
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawNames {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawScalar {
    Num(f64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    op: Spanned<String>,
    #[serde(rename = "in", default)]
    inputs: Vec<Spanned<String>>,
    weight: Option<Spanned<RawNames>>,
    eps: Option<Spanned<RawScalar>>,
    theta: Option<Spanned<RawScalar>>,
    heads: Option<Spanned<String>>,
    kv_heads: Option<Spanned<String>>,
    layout: Option<Spanned<String>>,
    block: Option<Spanned<String>>,
    count: Option<Spanned<String>>,
}

// ---- the checked definition ---------------------------------------------------------------

/// Where a dimension's value comes from.
#[derive(Debug, Clone)]
pub enum DimSource {
    Literal(u64),
    /// An expression over other dimensions (kept with its text for messages and dumps).
    Expr(Expr, String),
    /// A metadata key (`{arch}` is replaced by `general.architecture`); else the length of
    /// the array at `len`; else `default`.
    Key {
        key: Option<String>,
        len: Option<String>,
        default: Option<u64>,
    },
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
}

/// A float attribute: a literal or the name of a parameter.
#[derive(Debug, Clone)]
pub enum Scalar {
    Num(f64),
    Param(String),
}

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
    Softmax,
    Repeat,
}

/// Op names as written in files (`gemv_q4` is an alias of `gemv`: the weight's format is
/// the model's, resolved at plan time).
const OP_NAMES: &[(&str, OpKind)] = &[
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
    ("softmax", OpKind::Softmax),
    ("repeat", OpKind::Repeat),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Attr {
    Eps,
    Theta,
    Heads,
    KvHeads,
    Layout,
    Block,
    Count,
}

impl Attr {
    fn name(self) -> &'static str {
        match self {
            Attr::Eps => "eps",
            Attr::Theta => "theta",
            Attr::Heads => "heads",
            Attr::KvHeads => "kv_heads",
            Attr::Layout => "layout",
            Attr::Block => "block",
            Attr::Count => "count",
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
            OpKind::Softmax => "softmax",
            OpKind::Repeat => "repeat",
        }
    }

    /// (inputs, weights) the op takes.
    fn arity(self) -> (usize, usize) {
        match self {
            OpKind::Embed | OpKind::RmsNorm | OpKind::Gemv => (1, 1),
            OpKind::Rope => (2, 0),
            OpKind::Attention => (4, 0),
            OpKind::Mlp => (1, 3),
            OpKind::Add | OpKind::Mul => (2, 0),
            OpKind::Silu | OpKind::Softmax | OpKind::Repeat => (1, 0),
        }
    }

    /// (required, optional) attributes.
    fn attrs(self) -> (&'static [Attr], &'static [Attr]) {
        match self {
            OpKind::RmsNorm => (&[Attr::Eps], &[]),
            OpKind::Rope => (&[Attr::Heads, Attr::Theta], &[Attr::Layout]),
            OpKind::Attention => (&[Attr::Heads, Attr::KvHeads], &[]),
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

/// Turns byte offsets into `file:line:col`.
struct Locator<'a> {
    file: std::sync::Arc<str>,
    line_starts: Vec<usize>,
    src: &'a str,
}

impl<'a> Locator<'a> {
    fn new(file: &str, src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Locator {
            file: file.into(),
            line_starts,
            src,
        }
    }

    fn at(&self, offset: usize) -> Location {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .src
            .get(start..offset.min(self.src.len()))
            .map_or(1, |s| s.chars().count() + 1);
        Location {
            file: self.file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }

    fn span<T>(&self, s: &Spanned<T>) -> Location {
        self.at(s.span().start)
    }
}

/// Parses and checks a graph definition. `file` names the source in error messages.
pub fn parse(src: &str, file: &str) -> Result<GraphDef, GraphError> {
    let loc = Locator::new(file, src);
    let raw: RawFile = toml::from_str(src).map_err(|e| GraphError::Syntax {
        at: loc.at(e.span().map_or(0, |s| s.start)),
        message: e.message().to_string(),
    })?;

    let mut dims = Vec::new();
    for (name, d) in &raw.dims {
        let at = loc.span(d);
        let source = match d.get_ref() {
            RawDim::Literal(v) => DimSource::Literal(*v),
            RawDim::Expr(text) => {
                let expr = Expr::parse(text).map_err(|message| GraphError::Expr {
                    at: at.clone(),
                    expr: text.clone(),
                    message,
                })?;
                DimSource::Expr(expr, text.clone())
            }
            RawDim::Key(k) => {
                if k.key.is_none() && k.len.is_none() && k.default.is_none() {
                    return Err(GraphError::Syntax {
                        at,
                        message: format!("dimension `{name}` needs `key`, `len` or `default`"),
                    });
                }
                DimSource::Key {
                    key: k.key.clone(),
                    len: k.len.clone(),
                    default: k.default,
                }
            }
        };
        dims.push(DimSpec {
            name: name.clone(),
            at,
            source,
        });
    }
    dims.sort_by(|a, b| a.at.cmp(&b.at));

    let mut params: Vec<ParamSpec> = raw
        .params
        .iter()
        .map(|(name, p)| ParamSpec {
            name: name.clone(),
            at: loc.span(p),
            source: match p.get_ref() {
                RawParam::Literal(v) => ParamSource::Literal(*v),
                RawParam::Key(k) => ParamSource::Key {
                    key: k.key.clone(),
                    default: k.default,
                },
            },
        })
        .collect();
    params.sort_by(|a, b| a.at.cmp(&b.at));

    let mut inputs = Vec::new();
    for (name, kind) in &raw.inputs {
        let at = loc.span(kind);
        let kind = match kind.get_ref().as_str() {
            "tokens" => InputKind::Tokens,
            "positions" => InputKind::Positions,
            other => {
                return Err(GraphError::Syntax {
                    at,
                    message: format!(
                        "input `{name}`: unknown kind `{other}` (tokens or positions)"
                    ),
                })
            }
        };
        inputs.push(InputSpec {
            name: name.clone(),
            at,
            kind,
        });
    }
    inputs.sort_by(|a, b| a.at.cmp(&b.at));

    let mut outputs: Vec<OutputSpec> = raw
        .outputs
        .iter()
        .map(|(name, node)| OutputSpec {
            name: name.clone(),
            at: loc.span(node),
            node: node.get_ref().clone(),
        })
        .collect();
    outputs.sort_by(|a, b| a.at.cmp(&b.at));

    let weights = weight_specs(&loc, &raw.weights);
    let nodes = raw
        .graph
        .nodes
        .iter()
        .map(|n| node_spec(&loc, n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut blocks = Vec::new();
    for (name, b) in &raw.block {
        let at = loc.span(b);
        let b = b.get_ref();
        blocks.push(BlockSpec {
            name: name.clone(),
            at,
            input: b.input.clone(),
            output: (b.output.get_ref().clone(), loc.span(&b.output)),
            weights: weight_specs(&loc, &b.weights),
            nodes: b
                .nodes
                .iter()
                .map(|n| node_spec(&loc, n))
                .collect::<Result<Vec<_>, _>>()?,
        });
    }
    blocks.sort_by(|a, b| a.at.cmp(&b.at));

    let def = GraphDef {
        file: file.to_string(),
        name: raw.graph.name,
        dims,
        params,
        inputs,
        outputs,
        weights,
        blocks,
        nodes,
    };
    check(&def)?;
    Ok(def)
}

fn weight_specs(loc: &Locator, raw: &BTreeMap<String, Spanned<RawWeight>>) -> Vec<WeightSpec> {
    let mut out: Vec<WeightSpec> = raw
        .iter()
        .map(|(name, w)| WeightSpec {
            name: name.clone(),
            at: loc.span(w),
            templates: match w.get_ref() {
                RawWeight::One(s) => vec![s.clone()],
                RawWeight::Alternatives(v) => v.clone(),
            },
        })
        .collect();
    out.sort_by(|a, b| a.at.cmp(&b.at));
    out
}

fn node_spec(loc: &Locator, n: &RawNode) -> Result<NodeSpec, GraphError> {
    let name = n.name.get_ref().clone();
    let at = loc.span(&n.name);
    let op_text = n.op.get_ref();
    let kind = OP_NAMES
        .iter()
        .find(|(s, _)| s == op_text)
        .map(|&(_, k)| k)
        .ok_or_else(|| GraphError::UnknownOp {
            at: loc.span(&n.op),
            node: name.clone(),
            op: op_text.clone(),
            known: OP_NAMES
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let (want_in, want_w) = kind.arity();
    if n.inputs.len() != want_in {
        return Err(GraphError::Arity {
            at,
            node: name,
            op: kind.name(),
            want: want_in,
            got: n.inputs.len(),
        });
    }
    let weights: Vec<(String, Location)> = match &n.weight {
        None => vec![],
        Some(w) => {
            let at = loc.span(w);
            match w.get_ref() {
                RawNames::One(name) => vec![(name.clone(), at)],
                RawNames::Many(names) => names.iter().map(|n| (n.clone(), at.clone())).collect(),
            }
        }
    };
    if weights.len() != want_w {
        return Err(GraphError::WeightArity {
            at,
            node: name,
            op: kind.name(),
            want: want_w,
            got: weights.len(),
        });
    }
    let (required, optional) = kind.attrs();
    let present = [
        (Attr::Eps, n.eps.as_ref().map(|s| loc.span(s))),
        (Attr::Theta, n.theta.as_ref().map(|s| loc.span(s))),
        (Attr::Heads, n.heads.as_ref().map(|s| loc.span(s))),
        (Attr::KvHeads, n.kv_heads.as_ref().map(|s| loc.span(s))),
        (Attr::Layout, n.layout.as_ref().map(|s| loc.span(s))),
        (Attr::Block, n.block.as_ref().map(|s| loc.span(s))),
        (Attr::Count, n.count.as_ref().map(|s| loc.span(s))),
    ];
    for (attr, attr_at) in &present {
        match attr_at {
            Some(a) if !required.contains(attr) && !optional.contains(attr) => {
                return Err(GraphError::UnexpectedAttr {
                    at: a.clone(),
                    node: name,
                    op: kind.name(),
                    attr: attr.name(),
                })
            }
            None if required.contains(attr) => {
                return Err(GraphError::MissingAttr {
                    at,
                    node: name,
                    op: kind.name(),
                    attr: attr.name(),
                })
            }
            _ => {}
        }
    }
    let scalar = |s: &Option<Spanned<RawScalar>>| {
        s.as_ref().map(|s| {
            let v = match s.get_ref() {
                RawScalar::Num(v) => Scalar::Num(*v),
                RawScalar::Name(n) => Scalar::Param(n.clone()),
            };
            (v, loc.span(s))
        })
    };
    let dim_expr = |s: &Option<Spanned<String>>| -> Result<Option<DimExpr>, GraphError> {
        let Some(s) = s else { return Ok(None) };
        let at = loc.span(s);
        let text = s.get_ref().clone();
        let expr = Expr::parse(&text).map_err(|message| GraphError::Expr {
            at: at.clone(),
            expr: text.clone(),
            message,
        })?;
        Ok(Some(DimExpr { expr, text, at }))
    };
    let layout = match n
        .layout
        .as_ref()
        .map(|l| (l.get_ref().as_str(), loc.span(l)))
    {
        None | Some(("normal", _)) => RopeLayout::Normal,
        Some(("neox", _)) => RopeLayout::Neox,
        Some((other, at)) => {
            return Err(GraphError::BadAttr {
                at,
                node: name,
                message: format!("unknown rope layout `{other}` (normal or neox)"),
            })
        }
    };
    Ok(NodeSpec {
        at,
        kind,
        inputs: n
            .inputs
            .iter()
            .map(|i| (i.get_ref().clone(), loc.span(i)))
            .collect(),
        weights,
        eps: scalar(&n.eps),
        theta: scalar(&n.theta),
        heads: dim_expr(&n.heads)?,
        kv_heads: dim_expr(&n.kv_heads)?,
        layout,
        block: n.block.as_ref().map(|b| (b.get_ref().clone(), loc.span(b))),
        count: dim_expr(&n.count)?,
        name,
    })
}

/// Model-independent checks: names, references, scopes, cycles.
fn check(def: &GraphDef) -> Result<(), GraphError> {
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
        if let DimSource::Expr(e, _) = &d.source {
            if let Some(n) = e.names().into_iter().find(|n| !is_dim(n)) {
                return Err(unbound(n, &d.at));
            }
        }
    }
    check_dim_cycles(def)?;

    let all_nodes = def
        .nodes
        .iter()
        .chain(def.blocks.iter().flat_map(|b| b.nodes.iter()));
    for n in all_nodes {
        for e in [&n.heads, &n.kv_heads, &n.count].into_iter().flatten() {
            if let Some(name) = e.expr.names().into_iter().find(|x| !is_dim(x)) {
                return Err(unbound(name, &e.at));
            }
        }
        for (s, at) in [&n.eps, &n.theta].into_iter().flatten() {
            if let Scalar::Param(p) = s {
                if !is_param(p) {
                    return Err(unbound(p, at));
                }
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
        if let DimSource::Expr(e, _) = &d.source {
            stack.push(&d.name);
            for n in e.names() {
                if let Some(dep) = def.dims.iter().find(|x| x.name == n) {
                    visit(def, dep, stack)?;
                }
            }
            stack.pop();
        }
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
            if !weights.iter().any(|x| &x.name == w) {
                return Err(GraphError::UnknownWeight {
                    at: at.clone(),
                    node: n.name.clone(),
                    weight: w.clone(),
                    scope: weight_scope.to_string(),
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
