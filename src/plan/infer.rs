//! Shape and dtype inference: the one place every shape rule lives. Runs after binding and
//! again after every pass; every mismatch names the node, the op, the weight and both shapes.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::error::PlanError;
use crate::graph::{BoundWeight, Epilogue, Graph, InputKind, Node, NodeId, Op, ValueId};
use crate::quant::GgmlType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    I32,
    /// Activations quantized to 8-bit blocks (`kernels::BlockQ8Act`, 44 bytes per 32).
    Q8Act,
}

/// Where a value lives once planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// A graph input, written by the executor before the first step.
    Input,
    /// An activation in the arena.
    Activation,
    /// A layer's K or V cache, `[n_ctx, kv_dim]`, in the KV region: it outlives the step.
    KvCache,
}

/// What is known about a value: its element type, shape (row-major, rows first) and home.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fact {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub storage: Storage,
}

impl Fact {
    fn act(shape: &[usize]) -> Fact {
        Fact {
            dtype: DType::F32,
            shape: shape.to_vec(),
            storage: Storage::Activation,
        }
    }

    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> usize {
        match self.dtype {
            DType::F32 | DType::I32 => self.elements() * 4,
            DType::Q8Act => {
                self.elements().div_ceil(32) * std::mem::size_of::<crate::kernels::BlockQ8Act>()
            }
        }
    }

    /// The row length (last dimension).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let dtype = match self.dtype {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::Q8Act => "q8",
        };
        write!(f, "[{}] {dtype}", dims.join(", "))
    }
}

/// Facts for every value of a graph.
#[derive(Debug, Clone, Default)]
pub struct Facts(pub HashMap<ValueId, Fact>);

impl Facts {
    pub fn get(&self, v: ValueId) -> &Fact {
        // Every value of the graph has a fact once infer() succeeded.
        &self.0[&v]
    }
}

struct Ctx<'a> {
    g: &'a Graph,
    id: NodeId,
    node: &'a Node,
    ins: Vec<Fact>,
}

impl Ctx<'_> {
    fn op(&self) -> &'static str {
        self.node.op.name()
    }

    fn shape_err(&self, slot: usize, want: String) -> PlanError {
        PlanError::Shape {
            at: self.node.at.clone(),
            node: self.node.name.clone(),
            op: self.op(),
            slot,
            got: self.ins[slot].to_string(),
            want,
        }
    }

    fn invalid(&self, message: String) -> PlanError {
        PlanError::Invalid {
            at: self.node.at.clone(),
            node: self.node.name.clone(),
            op: self.op(),
            message,
        }
    }

    fn weight(&self, i: usize) -> &BoundWeight {
        &self.g.weights[self.node.weights[i].0 as usize]
    }

    /// Input `slot` must be `[rows, cols]` f32 activations (cols given or any).
    fn rows_of(&self, slot: usize, rows: usize, cols: Option<usize>) -> Result<usize, PlanError> {
        let f = &self.ins[slot];
        let ok = f.dtype == DType::F32
            && f.shape.len() == 2
            && f.shape[0] == rows
            && f.storage != Storage::KvCache
            && cols.is_none_or(|c| f.shape[1] == c);
        if !ok {
            let c = cols.map_or("cols".to_string(), |c| c.to_string());
            return Err(self.shape_err(slot, format!("[{rows}, {c}] f32")));
        }
        Ok(f.shape[1])
    }

    fn positions(&self, slot: usize, seq: usize) -> Result<(), PlanError> {
        let f = &self.ins[slot];
        if f.dtype != DType::I32 || f.shape != [seq] {
            return Err(self.shape_err(slot, format!("[{seq}] i32 (positions)")));
        }
        Ok(())
    }

    fn cache(&self, slot: usize, n_ctx: usize, cols: usize) -> Result<(), PlanError> {
        let f = &self.ins[slot];
        if f.storage != Storage::KvCache || f.shape != [n_ctx, cols] {
            return Err(self.shape_err(slot, format!("a KV cache [{n_ctx}, {cols}] f32")));
        }
        Ok(())
    }

    /// Weight `i` must be a matrix of rows of `k` elements (ggml dims `[k, n]`) in a format
    /// with a gemv kernel; returns n.
    fn matrix(&self, i: usize, k: usize) -> Result<usize, PlanError> {
        let w = self.weight(i);
        if w.dims.len() != 2 || w.dims[0] as usize != k {
            return Err(PlanError::WeightShape {
                at: self.node.at.clone(),
                node: self.node.name.clone(),
                op: self.op(),
                weight: w.tensor.clone(),
                got: format!("{:?}", w.dims),
                want: format!("[{k}, n] (rows of {k}, the input's width)"),
            });
        }
        if !w.dtype.is_computable() {
            return Err(PlanError::WeightDtype {
                at: self.node.at.clone(),
                node: self.node.name.clone(),
                op: self.op(),
                weight: w.tensor.clone(),
                dtype: w.dtype,
                why: "qgraph has kernels for F32, F16, Q8_0, Q4_0 and Q4_1 only",
            });
        }
        Ok(w.dims[1] as usize)
    }

    /// Weight `i` must be an F32 vector of `n` (a norm's gamma).
    fn gamma(&self, i: usize, n: usize) -> Result<(), PlanError> {
        self.vector(i, n, "norm weights must be F32")
    }

    /// Weight `i` must be an F32 vector of `n`; `why` says so if it is another type.
    fn vector(&self, i: usize, n: usize, why: &'static str) -> Result<(), PlanError> {
        let w = self.weight(i);
        if w.dims != [n as u64] {
            return Err(PlanError::WeightShape {
                at: self.node.at.clone(),
                node: self.node.name.clone(),
                op: self.op(),
                weight: w.tensor.clone(),
                got: format!("{:?}", w.dims),
                want: format!("[{n}]"),
            });
        }
        if w.dtype != GgmlType::F32 {
            return Err(PlanError::WeightDtype {
                at: self.node.at.clone(),
                node: self.node.name.clone(),
                op: self.op(),
                weight: w.tensor.clone(),
                dtype: w.dtype,
                why,
            });
        }
        Ok(())
    }

    fn heads(&self, width: usize, heads: usize, what: &str) -> Result<usize, PlanError> {
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(self.invalid(format!(
                "{heads} {what} do not divide the row width {width}"
            )));
        }
        Ok(width / heads)
    }

    fn counts(&self, inputs: usize, weights: usize) -> Result<(), PlanError> {
        if self.ins.len() != inputs || self.node.weights.len() != weights {
            return Err(self.invalid(format!(
                "has {} inputs and {} weights, expected {inputs} and {weights}",
                self.ins.len(),
                self.node.weights.len()
            )));
        }
        Ok(())
    }
}

/// Infers the fact of every value for a plan of `seq` tokens per step and `n_ctx` positions.
pub fn infer(g: &Graph, seq: usize, n_ctx: usize) -> Result<Facts, PlanError> {
    let mut facts = Facts::default();
    // Nodes after a `LastRow` run for one row.
    let mut one_row = std::collections::HashSet::new();
    for id in g.topo_order() {
        let node = &g.g[id];
        let tail = g
            .inputs_of(id)
            .iter()
            .any(|p| one_row.contains(p) || g.g[*p].op == Op::LastRow);
        if tail {
            one_row.insert(id);
        }
        let seq = if tail { 1 } else { seq };
        let ins: Vec<Fact> = g
            .input_values(id)
            .into_iter()
            .map(|v| facts.get(v).clone())
            .collect();
        let cx = Ctx { g, id, node, ins };
        let outs = node_facts(&cx, seq, n_ctx)?;
        for (out, f) in outs.into_iter().enumerate() {
            facts.0.insert(ValueId { node: cx.id, out }, f);
        }
    }
    Ok(facts)
}

fn node_facts(cx: &Ctx, seq: usize, n_ctx: usize) -> Result<Vec<Fact>, PlanError> {
    let one = |f: Fact| Ok(vec![f]);
    match &cx.node.op {
        Op::Input { kind } => {
            let _ = kind == &InputKind::Tokens;
            one(Fact {
                dtype: DType::I32,
                shape: vec![seq],
                storage: Storage::Input,
            })
        }
        Op::Embed => {
            cx.counts(1, 1)?;
            if cx.ins[0].dtype != DType::I32 || cx.ins[0].shape != [seq] {
                return Err(cx.shape_err(0, format!("[{seq}] i32 (token ids)")));
            }
            let w = cx.weight(0);
            if w.dims.len() != 2 || !w.dtype.is_computable() {
                return Err(PlanError::WeightShape {
                    at: cx.node.at.clone(),
                    node: cx.node.name.clone(),
                    op: cx.op(),
                    weight: w.tensor.clone(),
                    got: format!("{:?} {}", w.dims, w.dtype),
                    want: "[n_embd, n_vocab] in F32, F16, Q8_0, Q4_0 or Q4_1".into(),
                });
            }
            one(Fact::act(&[seq, w.dims[0] as usize]))
        }
        Op::RmsNorm { heads, .. } => {
            cx.counts(1, 1)?;
            let n = cx.rows_of(0, seq, None)?;
            if *heads == 0 || n % heads != 0 {
                return Err(cx.invalid(format!(
                    "a row of {n} values does not split into {heads} heads"
                )));
            }
            cx.gamma(0, n / heads)?;
            one(Fact::act(&[seq, n]))
        }
        Op::Gemv => {
            cx.counts(1, 1)?;
            let k = cx.rows_of(0, seq, None)?;
            let n = cx.matrix(0, k)?;
            one(Fact::act(&[seq, n]))
        }
        Op::Rope { heads, .. } => {
            let factors = cx.node.weights.len().min(1);
            cx.counts(2, factors)?;
            let w = cx.rows_of(0, seq, None)?;
            let hd = cx.heads(w, *heads, "heads")?;
            if hd % 2 != 0 {
                return Err(cx.invalid(format!("head size {hd} is odd: rope rotates pairs")));
            }
            if factors == 1 {
                cx.vector(0, hd / 2, "rope frequency factors must be F32")?;
            }
            cx.positions(1, seq)?;
            one(Fact::act(&[seq, w]))
        }
        Op::Attention {
            heads, kv_heads, ..
        } => {
            cx.counts(4, 0)?;
            let w = cx.rows_of(0, seq, None)?;
            let hd = cx.heads(w, *heads, "heads")?;
            check_groups(cx, *heads, *kv_heads)?;
            cx.rows_of(1, seq, Some(kv_heads * hd))?;
            cx.rows_of(2, seq, Some(kv_heads * hd))?;
            cx.positions(3, seq)?;
            one(Fact::act(&[seq, w]))
        }
        Op::KvWrite => {
            cx.counts(3, 0)?;
            let kv = cx.rows_of(0, seq, None)?;
            cx.rows_of(1, seq, Some(kv))?;
            cx.positions(2, seq)?;
            let cache = Fact {
                dtype: DType::F32,
                shape: vec![n_ctx, kv],
                storage: Storage::KvCache,
            };
            Ok(vec![cache.clone(), cache])
        }
        Op::Attend {
            heads, kv_heads, ..
        } => {
            cx.counts(4, 0)?;
            let w = cx.rows_of(0, seq, None)?;
            let hd = cx.heads(w, *heads, "heads")?;
            check_groups(cx, *heads, *kv_heads)?;
            cx.cache(1, n_ctx, kv_heads * hd)?;
            cx.cache(2, n_ctx, kv_heads * hd)?;
            cx.positions(3, seq)?;
            one(Fact::act(&[seq, w]))
        }
        Op::Mlp => {
            cx.counts(1, 3)?;
            let n = cx.rows_of(0, seq, None)?;
            let ff = cx.matrix(0, n)?;
            let up = cx.matrix(1, n)?;
            if up != ff {
                return Err(cx.invalid(format!("gate gives {ff} and up {up} values per row")));
            }
            let down = cx.matrix(2, ff)?;
            if down != n {
                return Err(cx.invalid(format!(
                    "down gives {down} values per row, the input has {n}"
                )));
            }
            one(Fact::act(&[seq, n]))
        }
        Op::Add | Op::Mul => {
            cx.counts(2, 0)?;
            let n = cx.rows_of(0, seq, None)?;
            cx.rows_of(1, seq, Some(n))?;
            one(Fact::act(&[seq, n]))
        }
        Op::Bias => {
            cx.counts(1, 1)?;
            let n = cx.rows_of(0, seq, None)?;
            cx.vector(0, n, "biases must be F32")?;
            one(Fact::act(&[seq, n]))
        }
        Op::LastRow => {
            cx.counts(1, 0)?;
            let n = cx.rows_of(0, seq, None)?;
            one(Fact::act(&[1, n]))
        }
        Op::Silu | Op::Gelu | Op::Scale { .. } | Op::Softmax => {
            cx.counts(1, 0)?;
            let n = cx.rows_of(0, seq, None)?;
            one(Fact::act(&[seq, n]))
        }
        Op::Proj { norm, outs } => {
            let needs_pos = outs.iter().any(|e| !matches!(e, Epilogue::Store));
            let w0 = norm.is_some() as usize;
            // Frequency factors of roped outputs follow the matrices, in output order.
            let mut factor_at = w0 + outs.len();
            let n_factors = outs.iter().filter(|e| e.rope_factors()).count();
            cx.counts(1 + needs_pos as usize, factor_at + n_factors)?;
            let k = cx.rows_of(0, seq, None)?;
            if norm.is_some() {
                cx.gamma(0, k)?;
            }
            if needs_pos {
                cx.positions(1, seq)?;
            }
            let mut facts = Vec::with_capacity(outs.len());
            for (i, e) in outs.iter().enumerate() {
                let n = cx.matrix(w0 + i, k)?;
                if let Epilogue::Rope { heads, .. } | Epilogue::RopeToCache { heads, .. } = e {
                    let hd = cx.heads(n, *heads, "heads")?;
                    if hd % 2 != 0 {
                        return Err(
                            cx.invalid(format!("head size {hd} is odd: rope rotates pairs"))
                        );
                    }
                    if e.rope_factors() {
                        cx.vector(factor_at, hd / 2, "rope frequency factors must be F32")?;
                        factor_at += 1;
                    }
                }
                facts.push(if e.writes_cache() {
                    Fact {
                        dtype: DType::F32,
                        shape: vec![n_ctx, n],
                        storage: Storage::KvCache,
                    }
                } else {
                    Fact::act(&[seq, n])
                });
            }
            Ok(facts)
        }
        Op::SwiGlu { norm, .. } => {
            let w0 = norm.is_some() as usize;
            cx.counts(1, w0 + 2)?;
            let k = cx.rows_of(0, seq, None)?;
            if norm.is_some() {
                cx.gamma(0, k)?;
            }
            let ff = cx.matrix(w0, k)?;
            let up = cx.matrix(w0 + 1, k)?;
            if up != ff {
                return Err(cx.invalid(format!("gate gives {ff} and up {up} values per row")));
            }
            one(Fact::act(&[seq, ff]))
        }
        Op::GemvAdd => {
            cx.counts(2, 1)?;
            let n = cx.rows_of(0, seq, None)?;
            let k = cx.rows_of(1, seq, None)?;
            let out = cx.matrix(0, k)?;
            if out != n {
                return Err(cx.invalid(format!(
                    "W gives {out} values per row, the residual has {n}"
                )));
            }
            one(Fact::act(&[seq, n]))
        }
    }
}

fn check_groups(cx: &Ctx, heads: usize, kv_heads: usize) -> Result<(), PlanError> {
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(cx.invalid(format!(
            "{heads} query heads cannot be grouped over {kv_heads} KV heads"
        )));
    }
    Ok(())
}
