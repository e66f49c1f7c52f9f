//! Graph definition text → `GraphDef`: TOML through serde (`raw.rs`), every value located at
//! `file:line:col`, ops, attributes and weights checked one node at a time, then the
//! whole-definition checks of `check.rs`.

use std::collections::BTreeMap;

use toml::Spanned;

use super::def::{
    Attr, BlockSpec, DimExpr, DimSource, DimSpec, GraphDef, InputSpec, NodeSpec, OutputSpec,
    ParamSource, ParamSpec, Scalar, WeightSpec, OP_NAMES,
};
use super::error::{GraphError, Location};
use super::expr::Expr;
use super::op::{InputKind, RopeLayout};
use super::raw::{RawDim, RawFile, RawNames, RawNode, RawParam, RawScalar, RawWeight};

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
                if k.key.is_none() && k.len.is_none() && k.or.is_none() && k.default.is_none() {
                    return Err(GraphError::Syntax {
                        at,
                        message: format!(
                            "dimension `{name}` needs `key`, `len`, `or` or `default`"
                        ),
                    });
                }
                let or = match &k.or {
                    Some(text) => Some((
                        Expr::parse(text).map_err(|message| GraphError::Expr {
                            at: at.clone(),
                            expr: text.clone(),
                            message,
                        })?,
                        text.clone(),
                    )),
                    None => None,
                };
                DimSource::Key {
                    key: k.key.clone(),
                    len: k.len.clone(),
                    or,
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

    let architectures = raw
        .graph
        .architectures
        .as_ref()
        .map(|a| (a.get_ref().clone(), loc.span(a)));
    if let Some((list, at)) = &architectures {
        if list.is_empty() {
            return Err(GraphError::Syntax {
                at: at.clone(),
                message: "`architectures` lists no architecture".to_string(),
            });
        }
    }
    let def = GraphDef {
        file: file.to_string(),
        name: raw.graph.name,
        architectures,
        optional: raw.graph.optional,
        dims,
        params,
        inputs,
        outputs,
        weights,
        blocks,
        nodes,
    };
    super::check::check(&def)?;
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
                RawWeight::Table(t) => match &t.tensor {
                    RawNames::One(s) => vec![s.clone()],
                    RawNames::Many(v) => v.clone(),
                },
            },
            optional: matches!(w.get_ref(), RawWeight::Table(t) if t.optional),
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
    // Ops whose weights may be optional ones (rope's frequency factors) take fewer.
    if weights.len() != want_w && !(kind.weights_may_be_absent() && weights.len() < want_w) {
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
        (Attr::Factor, n.factor.as_ref().map(|s| loc.span(s))),
        (Attr::Window, n.window.as_ref().map(|s| loc.span(s))),
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
    let scalar = |s: &Option<Spanned<RawScalar>>| -> Result<_, GraphError> {
        let Some(s) = s else { return Ok(None) };
        let at = loc.span(s);
        let is_name = |n: &str| {
            n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let v = match s.get_ref() {
            RawScalar::Num(v) => Scalar::Num(*v),
            RawScalar::Name(n) if is_name(n) => Scalar::Param(n.clone()),
            RawScalar::Name(text) => Scalar::Expr(
                Expr::parse(text).map_err(|message| GraphError::Expr {
                    at: at.clone(),
                    expr: text.clone(),
                    message,
                })?,
                text.clone(),
            ),
        };
        Ok(Some((v, at)))
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
        eps: scalar(&n.eps)?,
        theta: scalar(&n.theta)?,
        factor: scalar(&n.factor)?,
        window: dim_expr(&n.window)?,
        heads: dim_expr(&n.heads)?,
        kv_heads: dim_expr(&n.kv_heads)?,
        layout,
        block: n.block.as_ref().map(|b| (b.get_ref().clone(), loc.span(b))),
        count: dim_expr(&n.count)?,
        name,
    })
}
