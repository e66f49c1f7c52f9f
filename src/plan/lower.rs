//! Lowering: the optimised graph → a flat schedule of steps, each with its kernel (a fn
//! pointer chosen once from the CPU level), its buffers' byte offsets and its sizes as
//! plain integers. Buffers get live intervals and arena offsets here.

use std::collections::HashMap;
use std::sync::Arc;

use super::arena;
use super::infer::{Facts, Storage};
use super::liveness::{self, Interval};
use super::passes::PassReport;
use super::{BufId, BufKind, Buffer, Plan, PlanError, PlanOptions, Step};
use crate::gguf::GgufFile;
use crate::graph::{Epilogue, Graph, InputKind, NodeId, Op, RopeLayout, ValueId, WeightId};
use crate::kernels::scalar::rope::rope_freqs;
use crate::kernels::{
    table, AccumulateFn, AttendFn, BinaryFn, GemmFn, GemvFn, KernelLevel, PanelRowFn,
    QuantizeActFn, RmsNormFn, RopeFn, RowFn, SiluMulFn, UnaryFn, WeightLayout,
};

/// A weight matrix: `rows` rows of `row_bytes` bytes in the model's memory map, or the same
/// rows in panels of eight (`kernels/panel.rs`: panel p at `8 · p · row_bytes`) in the
/// model's repacked copy.
#[derive(Debug, Clone, Copy)]
pub struct WeightRef {
    pub ptr: *const u8,
    pub row_bytes: usize,
    pub rows: usize,
    pub layout: WeightLayout,
}

/// A norm folded into a product: gamma, eps, and where the normed rows go.
#[derive(Debug, Clone, Copy)]
pub struct Norm {
    pub gamma: *const f32,
    pub eps: f32,
    pub rmsnorm: RmsNormFn,
    /// Byte offset of slot 0 of the normed rows (`k` f32 per slot).
    pub scratch: usize,
}

/// Quantizing a step's input rows to 8-bit blocks, once, for the products that want them.
#[derive(Debug, Clone, Copy)]
pub struct Quant {
    pub f: QuantizeActFn,
    /// Byte offset of slot 0 of the blocks.
    pub at: usize,
    /// Blocks per slot (`k / 32`).
    pub blocks: usize,
}

/// A product step's input, prepared once per row before the products: normed when the step
/// folds a norm in, quantized when its kernels multiply 8-bit blocks. The prepared rows sit
/// in slots of the step's scratch: slot t is token t in a plan for many tokens; in a plan
/// for one row, slot w belongs to worker w, which prepares its own copy (no barrier).
#[derive(Debug, Clone, Copy)]
pub struct Prep {
    /// Byte offset of the raw input rows, `k` f32 each.
    pub x: usize,
    pub k: usize,
    pub norm: Option<Norm>,
    pub xq: Option<Quant>,
}

/// A matrix and its kernels: the gemv for one token, and the batched gemm where the format
/// has one (plans for many tokens use it when a call brings more than one).
#[derive(Debug, Clone, Copy)]
pub struct Matmul {
    pub gemv: GemvFn,
    pub gemm: Option<GemmFn>,
    pub w: WeightRef,
}

/// How an embedding lookup converts a row: from the file's rows, or from row panels (a
/// table tied to the output head, which reads it repacked).
#[derive(Debug, Clone, Copy)]
pub enum EmbedRow {
    Rows(RowFn),
    Panels(PanelRowFn),
}

/// One output of a fused projection.
#[derive(Debug, Clone)]
pub struct ProjOut {
    pub mm: Matmul,
    /// Values per row.
    pub n: usize,
    /// Its first row among the step's outputs taken together (how rows are split).
    pub row0: usize,
    /// Byte offset of the destination: an activation `[seq, n]`, or a cache `[n_ctx, n]`
    /// whose row `pos[t]` receives token t.
    pub dst: usize,
    pub epilogue: Epilogue,
    pub rope: RopeFn,
    /// Rope's angle per position for each pair (empty without rope).
    pub freqs: Box<[f32]>,
}

/// What a step runs. Offsets are bytes from the start of the session's memory; sizes are
/// elements per row; every row loop runs over the tokens of the call.
#[derive(Debug, Clone)]
pub enum Exec {
    Embed {
        row: EmbedRow,
        table: WeightRef,
        tokens: usize,
        out: usize,
        n: usize,
    },
    RmsNorm {
        f: RmsNormFn,
        x: usize,
        gamma: *const f32,
        out: usize,
        n: usize,
        eps: f32,
    },
    Gemv {
        prep: Prep,
        mm: Matmul,
        out: usize,
        n: usize,
    },
    Rope {
        f: RopeFn,
        x: usize,
        pos: usize,
        out: usize,
        n: usize,
        heads: usize,
        freqs: Box<[f32]>,
        layout: RopeLayout,
    },
    KvWrite {
        k: usize,
        v: usize,
        pos: usize,
        kc: usize,
        vc: usize,
        n: usize,
    },
    Attend {
        f: AttendFn,
        q: usize,
        kc: usize,
        vc: usize,
        pos: usize,
        out: usize,
        scores: usize,
        n: usize,
        heads: usize,
        kv_heads: usize,
    },
    Proj {
        prep: Prep,
        pos: usize,
        outs: Vec<ProjOut>,
    },
    SwiGlu {
        prep: Prep,
        out: usize,
        n: usize,
        gate: Matmul,
        up: Matmul,
        silu_mul: SiluMulFn,
        /// The up products, `[rows, n]`.
        up_scratch: usize,
    },
    GemvAdd {
        prep: Prep,
        mm: Matmul,
        acc: AccumulateFn,
        /// The sum accumulated into, `[rows, n]`.
        x: usize,
        n: usize,
        /// The products before they are added, `[rows, n]`.
        scratch: usize,
    },
    /// Copies the call's last token row of x (`n` wide) to row 0 of out.
    LastRow { x: usize, out: usize, n: usize },
    Binary {
        f: BinaryFn,
        a: usize,
        b: usize,
        out: usize,
        n: usize,
    },
    Unary {
        f: UnaryFn,
        x: usize,
        out: usize,
        n: usize,
    },
}

struct Draft {
    node: NodeId,
    /// Rows the step runs for: the plan's `seq`, or 1 after a `LastRow`.
    rows: usize,
    inputs: Vec<BufId>,
    outputs: Vec<BufId>,
    scratch: Option<BufId>,
    qscratch: Option<BufId>,
}

pub fn lower(
    g: &Graph,
    facts: &Facts,
    model: Arc<GgufFile>,
    opts: &PlanOptions,
    passes: Vec<PassReport>,
) -> Result<Plan, PlanError> {
    let order = g.topo_order();
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut of_value: HashMap<ValueId, BufId> = HashMap::new();
    let new_buf = |buffers: &mut Vec<Buffer>, name: String, kind: BufKind, fact: &super::Fact| {
        let id = BufId(buffers.len() as u32);
        buffers.push(Buffer {
            name,
            kind,
            fact: fact.clone(),
            bytes: fact.bytes(),
            offset: 0,
            live: None,
        });
        id
    };

    let (mut tokens, mut positions) = (None, None);
    let mut drafts: Vec<Draft> = Vec::new();
    for &id in &order {
        let node = &g.g[id];
        if let Op::Input { kind } = node.op {
            let v = ValueId { node: id, out: 0 };
            let b = new_buf(
                &mut buffers,
                node.name.clone(),
                BufKind::Input,
                facts.get(v),
            );
            match kind {
                InputKind::Tokens => tokens = Some(b),
                InputKind::Positions => positions = Some(b),
            }
            of_value.insert(v, b);
            continue;
        }
        let inputs: Vec<BufId> = g.input_values(id).iter().map(|v| of_value[v]).collect();
        let mut outputs = Vec::new();
        for out in 0..node.op.n_outputs() {
            let v = ValueId { node: id, out };
            let fact = facts.get(v);
            let b = if node.op == Op::GemvAdd {
                inputs[0] // accumulates in place: fuse-residual checked nobody reads x later
            } else {
                let kind = if fact.storage == Storage::KvCache {
                    BufKind::KvCache
                } else {
                    BufKind::Activation
                };
                let name = if node.op.n_outputs() > 1 {
                    format!("{}:{out}", node.name)
                } else {
                    node.name.clone()
                };
                new_buf(&mut buffers, name, kind, fact)
            };
            of_value.insert(v, b);
            outputs.push(b);
        }
        // Working memory of this step alone: f32 rows, and the input quantized to 8 bits.
        let mut scratch_buf = |suffix: &str, dtype: super::DType, len: usize| {
            (len > 0).then(|| {
                let fact = super::Fact {
                    dtype,
                    shape: vec![len],
                    storage: Storage::Activation,
                };
                new_buf(
                    &mut buffers,
                    format!("{}.{suffix}", node.name),
                    BufKind::Scratch,
                    &fact,
                )
            })
        };
        let rows = step_rows(g, facts, id);
        let slots = if rows == 1 { opts.threads } else { rows };
        let scratch = scratch_buf(
            "scratch",
            super::DType::F32,
            scratch_elements(g, facts, id, rows, slots, opts.threads),
        );
        let qscratch = scratch_buf(
            "q8",
            super::DType::Q8Act,
            slots * q8_elements(g, facts, id, opts.level),
        );
        drafts.push(Draft {
            node: id,
            rows,
            inputs,
            outputs,
            scratch,
            qscratch,
        });
    }

    // Liveness: inputs are written before step 0; graph outputs are read after the last.
    let n_steps = drafts.len();
    let mut live: Vec<Option<Interval>> = vec![None; buffers.len()];
    for (i, b) in buffers.iter().enumerate() {
        if b.kind == BufKind::Input {
            liveness::touch(&mut live[i], 0);
        }
    }
    for (s, d) in drafts.iter().enumerate() {
        for b in d
            .inputs
            .iter()
            .chain(&d.outputs)
            .chain(&d.scratch)
            .chain(&d.qscratch)
        {
            liveness::touch(&mut live[b.0 as usize], s);
        }
    }
    let outputs: Vec<(String, BufId)> = g
        .outputs
        .iter()
        .map(|(n, id)| (n.clone(), of_value[&ValueId { node: *id, out: 0 }]))
        .collect();
    for (_, b) in &outputs {
        liveness::touch(&mut live[b.0 as usize], n_steps.saturating_sub(1));
    }

    // The arena: everything but the caches, packed by live interval.
    let in_arena: Vec<usize> = (0..buffers.len())
        .filter(|&i| buffers[i].kind != BufKind::KvCache)
        .collect();
    let items: Vec<(Interval, usize)> = in_arena
        .iter()
        .map(|&i| {
            (
                live[i].unwrap_or(Interval { first: 0, last: 0 }),
                buffers[i].bytes,
            )
        })
        .collect();
    let (offsets, peak_bytes) = arena::pack(&items);
    let naive_bytes = items.iter().map(|(_, b)| arena::align_up(*b)).sum();
    // The KV region comes first, one cache after another, so that plans for different
    // `seq` (prefill and decode) over the same graph and context place the caches at the
    // same offsets and can share one session's memory. The arena follows.
    let kv_offset = 0;
    let mut kv_bytes = 0;
    for b in buffers.iter_mut().filter(|b| b.kind == BufKind::KvCache) {
        b.offset = kv_offset + kv_bytes;
        kv_bytes += arena::align_up(b.bytes);
    }
    let arena_offset = kv_bytes;
    for (k, &i) in in_arena.iter().enumerate() {
        buffers[i].offset = arena_offset + offsets[k];
        buffers[i].live = live[i];
    }

    let mut steps = Vec::with_capacity(n_steps);
    let mut repacking = Repacking {
        stats: Default::default(),
        // Tensors some product multiplies: an embedding among them (tied to the output
        // head) is read from the head's panels, so the file's copy need not stay resident.
        products: g
            .g
            .node_weights()
            .filter_map(product_of)
            .flat_map(|(_, ws)| ws.iter().map(|w| g.weights[w.0 as usize].tensor.as_str()))
            .collect(),
    };
    for d in &drafts {
        steps.push(make_step(
            g,
            facts,
            &model,
            opts,
            &buffers,
            d,
            &mut repacking,
        )?);
    }
    let repack = repacking.stats;
    let phases = super::parallel::schedule(&steps, &buffers, opts.threads)?;
    Ok(Plan {
        graph_name: g.name.clone(),
        seq: opts.seq,
        n_ctx: opts.n_ctx,
        level: opts.level,
        steps,
        buffers,
        peak_bytes,
        naive_bytes,
        kv_offset,
        kv_bytes,
        arena_offset,
        threads: opts.threads,
        phases,
        last_row_only: opts.logits == super::Logits::Last && opts.seq > 1,
        tokens,
        positions,
        outputs,
        passes,
        repack,
        model,
    })
}

/// A product step's input slot and the weights it multiplies (after a folded norm's gamma);
/// `None` for other ops.
fn product_of(node: &crate::graph::Node) -> Option<(usize, &[WeightId])> {
    let (slot, first_matrix) = match &node.op {
        Op::Gemv => (0, 0),
        Op::Proj { norm, .. } | Op::SwiGlu { norm } => (0, norm.is_some() as usize),
        Op::GemvAdd => (1, 0),
        _ => return None,
    };
    Some((slot, node.weights.get(first_matrix..)?))
}

/// Elements of the step's input to quantize to 8-bit blocks: the product's row length when
/// one of its kernels multiplies 8-bit activations, else 0.
fn q8_elements(g: &Graph, facts: &Facts, id: NodeId, level: KernelLevel) -> usize {
    let node = &g.g[id];
    let Some((slot, matrices)) = product_of(node) else {
        return 0;
    };
    let k = facts.get(g.input_values(id)[slot]).cols();
    let wants = matrices.iter().any(|w| {
        let dtype = g.weights[w.0 as usize].dtype;
        table::gemv(dtype, level, k, WeightLayout::Rows).is_some_and(|c| c.wants_q8)
    });
    if wants {
        k
    } else {
        0
    }
}

/// The rows a step runs for: its first input's (the plan's `seq`, or 1 after a `LastRow`).
fn step_rows(g: &Graph, facts: &Facts, id: NodeId) -> usize {
    g.input_values(id)
        .first()
        .map_or(1, |&v| facts.get(v).shape.first().copied().unwrap_or(1))
}

/// Scratch a step needs, in f32 elements: products kept before they are combined (`rows`
/// of them), normed input rows (one per slot), attention scores (one cache's rows per
/// worker).
fn scratch_elements(
    g: &Graph,
    facts: &Facts,
    id: NodeId,
    rows: usize,
    slots: usize,
    threads: usize,
) -> usize {
    let x = |slot: usize| facts.get(g.input_values(id)[slot]).cols();
    let out = || facts.get(ValueId { node: id, out: 0 }).cols();
    match &g.g[id].op {
        // one score per cache row, per worker
        Op::Attend { .. } => threads * facts.get(g.input_values(id)[1]).shape[0],
        Op::Proj { norm: Some(_), .. } => slots * x(0),
        Op::SwiGlu { norm } => rows * out() + norm.map_or(0, |_| slots * x(0)),
        Op::GemvAdd => rows * out(),
        _ => 0,
    }
}

fn make_step(
    g: &Graph,
    facts: &Facts,
    model: &GgufFile,
    opts: &PlanOptions,
    buffers: &[Buffer],
    d: &Draft,
    repacking: &mut Repacking,
) -> Result<Step, PlanError> {
    let node = &g.g[d.node];
    let level = opts.level;
    let seq = opts.seq as u64;
    let off = |b: BufId| buffers[b.0 as usize].offset;
    let cols = |b: BufId| buffers[b.0 as usize].fact.cols();
    let mut acc = Acc::default();
    let mut flops = 0u64;
    let mut wcx = WeightCx {
        g,
        model,
        level,
        node,
        batched: d.rows > 1,
        repack: opts.repack.then_some(&mut repacking.stats),
    };
    let pos_of = |slot: usize| d.inputs.get(slot).map_or(usize::MAX, |&b| off(b));
    let quant = |acc: &mut Acc, k: usize| -> Option<Quant> {
        d.qscratch.map(|b| {
            let q = table::quantize_act(level);
            // It runs after a folded norm, before the products.
            let at = acc
                .kernels
                .iter()
                .position(|k| k.starts_with("gemv"))
                .unwrap_or(0);
            acc.kernels.insert(at, q.name);
            Quant {
                f: q.f,
                at: off(b),
                blocks: k / 32,
            }
        })
    };

    let exec = match &node.op {
        Op::Input { .. } => unreachable!("inputs are buffers, not steps"),
        Op::Embed => {
            let bw = &g.weights[node.weights[0].0 as usize];
            let no_kernel = || PlanError::WeightDtype {
                at: node.at.clone(),
                node: node.name.clone(),
                op: "embed",
                weight: bw.tensor.clone(),
                dtype: bw.dtype,
                why: "no row kernel for this format",
            };
            let tied = repacking.products.contains(bw.tensor.as_str());
            let panel_row = table::row_panels(bw.dtype).filter(|_| tied);
            let panels = match panel_row {
                Some(_) => wcx.panels(node.weights[0])?,
                None => None,
            };
            let (row, table) = match (panel_row, panels) {
                (Some(k), Some(w)) => {
                    acc.kernels.push(k.name);
                    (EmbedRow::Panels(k.f), w)
                }
                _ => {
                    let n = bw.dims[0] as usize;
                    let k = table::row(bw.dtype, level, n).ok_or_else(no_kernel)?;
                    acc.kernels.push(k.name);
                    (EmbedRow::Rows(k.f), wcx.rows(node.weights[0])?)
                }
            };
            // Only the rows of the step's tokens are read, not the table.
            acc.weight_bytes = seq * table.row_bytes as u64;
            Exec::Embed {
                row,
                table,
                tokens: off(d.inputs[0]),
                out: off(d.outputs[0]),
                n: cols(d.outputs[0]),
            }
        }
        Op::RmsNorm { eps } => {
            let k = table::rmsnorm(level);
            acc.kernels.push(k.name);
            let n = cols(d.outputs[0]);
            flops = 4 * n as u64 * seq;
            Exec::RmsNorm {
                f: k.f,
                x: off(d.inputs[0]),
                gamma: wcx.gamma(node.weights[0], &mut acc)?,
                out: off(d.outputs[0]),
                n,
                eps: *eps,
            }
        }
        Op::Gemv => {
            let mm = wcx.matrix(node.weights[0], &mut acc)?;
            let (k, n) = (cols(d.inputs[0]), cols(d.outputs[0]));
            flops = 2 * (k * n) as u64 * seq;
            Exec::Gemv {
                prep: Prep {
                    x: off(d.inputs[0]),
                    k,
                    norm: None,
                    xq: quant(&mut acc, k),
                },
                mm,
                out: off(d.outputs[0]),
                n,
            }
        }
        Op::Rope {
            heads,
            theta,
            layout,
        } => {
            let n = cols(d.outputs[0]);
            let k = table::rope(level, n / heads);
            acc.kernels.push(k.name);
            flops = 3 * n as u64 * seq;
            Exec::Rope {
                f: k.f,
                x: off(d.inputs[0]),
                pos: off(d.inputs[1]),
                out: off(d.outputs[0]),
                n,
                heads: *heads,
                freqs: rope_freqs(n / heads, *theta).into_boxed_slice(),
                layout: *layout,
            }
        }
        Op::KvWrite => {
            acc.kernels.push("copy");
            Exec::KvWrite {
                k: off(d.inputs[0]),
                v: off(d.inputs[1]),
                pos: off(d.inputs[2]),
                kc: off(d.outputs[0]),
                vc: off(d.outputs[1]),
                n: cols(d.inputs[0]),
            }
        }
        Op::Attend { heads, kv_heads } => {
            let n = cols(d.outputs[0]);
            let k = table::attend(level, n / heads);
            acc.kernels.push(k.name);
            // Counted at a full cache: an upper bound, the real cost grows with position.
            flops = 4 * (n * opts.n_ctx) as u64 * seq;
            Exec::Attend {
                f: k.f,
                q: off(d.inputs[0]),
                kc: off(d.inputs[1]),
                vc: off(d.inputs[2]),
                pos: off(d.inputs[3]),
                out: off(d.outputs[0]),
                scores: d.scratch.map_or(0, off),
                n,
                heads: *heads,
                kv_heads: *kv_heads,
            }
        }
        Op::Proj { norm, outs } => {
            let k = cols(d.inputs[0]);
            let w0 = norm.is_some() as usize;
            let norm = wcx.folded_norm(*norm, d.scratch.map_or(0, off), &mut acc)?;
            let mut pouts = Vec::with_capacity(outs.len());
            let mut row0 = 0;
            for (i, e) in outs.iter().enumerate() {
                let mm = wcx.matrix(node.weights[w0 + i], &mut acc)?;
                let n = cols(d.outputs[i]);
                let rope = match e {
                    Epilogue::Rope { heads, .. } | Epilogue::RopeToCache { heads, .. } => {
                        table::rope(level, n / heads)
                    }
                    Epilogue::Store | Epilogue::ToCache => table::rope(KernelLevel::Scalar, 0),
                };
                flops += 2 * (k * n) as u64 * seq;
                let freqs = match e {
                    Epilogue::Rope { heads, theta, .. }
                    | Epilogue::RopeToCache { heads, theta, .. } => {
                        if !acc.kernels.contains(&rope.name) {
                            acc.kernels.push(rope.name);
                        }
                        rope_freqs(n / heads, *theta)
                    }
                    Epilogue::Store | Epilogue::ToCache => Vec::new(),
                };
                pouts.push(ProjOut {
                    mm,
                    n,
                    row0,
                    dst: off(d.outputs[i]),
                    epilogue: *e,
                    rope: rope.f,
                    freqs: freqs.into_boxed_slice(),
                });
                row0 += n;
            }
            Exec::Proj {
                prep: Prep {
                    x: off(d.inputs[0]),
                    k,
                    norm,
                    xq: quant(&mut acc, k),
                },
                pos: pos_of(1),
                outs: pouts,
            }
        }
        Op::SwiGlu { norm } => {
            let k = cols(d.inputs[0]);
            let n = cols(d.outputs[0]);
            let scratch = d.scratch.map_or(0, off);
            let w0 = norm.is_some() as usize;
            // The normed rows sit after the up values (`rows` of them) in the scratch.
            let norm = wcx.folded_norm(*norm, scratch + 4 * n * d.rows, &mut acc)?;
            let gate = wcx.matrix(node.weights[w0], &mut acc)?;
            let up = wcx.matrix(node.weights[w0 + 1], &mut acc)?;
            let silu_mul = table::silu_mul(level);
            acc.kernels.push(silu_mul.name);
            flops = (4 * k * n + 4 * n) as u64 * seq;
            Exec::SwiGlu {
                prep: Prep {
                    x: off(d.inputs[0]),
                    k,
                    norm,
                    xq: quant(&mut acc, k),
                },
                out: off(d.outputs[0]),
                n,
                gate,
                up,
                silu_mul: silu_mul.f,
                up_scratch: scratch,
            }
        }
        Op::GemvAdd => {
            let mm = wcx.matrix(node.weights[0], &mut acc)?;
            let accumulate = table::accumulate(level);
            acc.kernels.push(accumulate.name);
            let (k, n) = (cols(d.inputs[1]), cols(d.outputs[0]));
            flops = (2 * k * n + n) as u64 * seq;
            Exec::GemvAdd {
                prep: Prep {
                    x: off(d.inputs[1]),
                    k,
                    norm: None,
                    xq: quant(&mut acc, k),
                },
                mm,
                acc: accumulate.f,
                x: off(d.inputs[0]),
                n,
                scratch: d.scratch.map_or(0, off),
            }
        }
        Op::LastRow => {
            acc.kernels.push("copy");
            Exec::LastRow {
                x: off(d.inputs[0]),
                out: off(d.outputs[0]),
                n: cols(d.outputs[0]),
            }
        }
        Op::Add | Op::Mul => {
            let k = if node.op == Op::Add {
                table::add(level)
            } else {
                table::mul(level)
            };
            acc.kernels.push(k.name);
            let n = cols(d.outputs[0]);
            flops = n as u64 * seq;
            Exec::Binary {
                f: k.f,
                a: off(d.inputs[0]),
                b: off(d.inputs[1]),
                out: off(d.outputs[0]),
                n,
            }
        }
        Op::Silu | Op::Softmax => {
            let k = if node.op == Op::Silu {
                table::silu(level)
            } else {
                table::softmax(level)
            };
            acc.kernels.push(k.name);
            let n = cols(d.outputs[0]);
            flops = 4 * n as u64 * seq;
            Exec::Unary {
                f: k.f,
                x: off(d.inputs[0]),
                out: off(d.outputs[0]),
                n,
            }
        }
        Op::Attention { .. } | Op::Mlp => {
            unreachable!("canonicalize lowers {} before planning", node.op.name())
        }
    };

    // Activations in and out (caches: only the rows this step touches).
    let act_bytes = |bs: &[BufId]| -> u64 {
        bs.iter()
            .map(|b| {
                let buf = &buffers[b.0 as usize];
                match buf.kind {
                    BufKind::KvCache => 4 * (buf.fact.cols() as u64) * seq,
                    _ => buf.bytes as u64,
                }
            })
            .sum()
    };
    let mut bytes_read = acc.weight_bytes + act_bytes(&d.inputs);
    if let Exec::Attend {
        n, heads, kv_heads, ..
    } = &exec
    {
        // Reads the K and V rows of every past position (counted at a full cache).
        let kv = n / heads * kv_heads;
        bytes_read += 2 * 4 * (kv * opts.n_ctx) as u64 * seq;
    }
    let _ = facts;
    Ok(Step {
        name: node.name.clone(),
        op: node.op.clone(),
        kernels: acc.kernels,
        inputs: d.inputs.clone(),
        outputs: d.outputs.clone(),
        scratch: d.scratch,
        qscratch: d.qscratch,
        weights: acc.weights,
        weight_layouts: acc.layouts,
        weight_bytes: acc.weight_bytes,
        bytes_read,
        bytes_written: act_bytes(&d.outputs),
        flops,
        rows: d.rows,
        exec,
    })
}

/// The repack's state while a plan's steps are made.
struct Repacking<'g> {
    stats: super::repack::RepackStats,
    /// Tensors that some product step multiplies.
    products: std::collections::BTreeSet<&'g str>,
}

/// What a step has gathered while its kernels and weights were chosen.
#[derive(Default)]
struct Acc {
    kernels: Vec<&'static str>,
    weights: Vec<String>,
    layouts: Vec<WeightLayout>,
    weight_bytes: u64,
}

struct WeightCx<'a> {
    g: &'a Graph,
    model: &'a GgufFile,
    level: crate::kernels::KernelLevel,
    node: &'a crate::graph::Node,
    /// Whether the step runs for many rows (and so uses batched kernels where there are).
    batched: bool,
    /// Repack matrices into panels where a kernel reads them (`PlanOptions::repack`).
    repack: Option<&'a mut super::repack::RepackStats>,
}

impl<'a> WeightCx<'a> {
    fn tensor(&self, w: WeightId) -> Result<&'a crate::gguf::TensorInfo, PlanError> {
        let bw = &self.g.weights[w.0 as usize];
        self.model
            .tensor(&bw.tensor)
            .map_err(|source| PlanError::Weight {
                tensor: bw.tensor.clone(),
                source,
            })
    }

    /// A matrix in the file's rows, read in place (an embedding table).
    fn rows(&self, w: WeightId) -> Result<WeightRef, PlanError> {
        let t = self.tensor(w)?;
        // infer() checked the matrix is 2-D with whole blocks per row.
        let row_bytes = t.dtype.bytes_for(t.dims[0]).unwrap_or(0) as usize;
        Ok(WeightRef {
            ptr: self.model.tensor_bytes(t).as_ptr(),
            row_bytes,
            rows: (t.n_elements / t.dims[0].max(1)) as usize,
            layout: WeightLayout::Rows,
        })
    }

    /// The matrix in row panels, when repacking is on and the format has panel kernels at
    /// this level (made on first use, then shared); else `None`.
    fn panels(&mut self, w: WeightId) -> Result<Option<WeightRef>, PlanError> {
        let t = self.tensor(w)?;
        let k = t.dims[0] as usize;
        let Some(stats) = self.repack.as_deref_mut() else {
            return Ok(None);
        };
        if table::gemv(t.dtype, self.level, k, WeightLayout::Panels).is_none() {
            return Ok(None);
        }
        let Some(copy) = super::repack::panels(self.model, t, stats) else {
            return Ok(None);
        };
        Ok(Some(WeightRef {
            ptr: copy.bytes().as_ptr(),
            layout: WeightLayout::Panels,
            ..self.rows(w)?
        }))
    }

    /// A matrix and the kernels for its format: in row panels when repacking is on and the
    /// format has panel kernels at this level, else in the file's rows.
    fn matrix(&mut self, w: WeightId, acc: &mut Acc) -> Result<Matmul, PlanError> {
        let t = self.tensor(w)?;
        let k = t.dims[0] as usize;
        let weight = match self.panels(w)? {
            Some(p) => p,
            None => self.rows(w)?,
        };
        let chosen = table::gemv(t.dtype, self.level, k, weight.layout).ok_or_else(|| {
            PlanError::WeightDtype {
                at: self.node.at.clone(),
                node: self.node.name.clone(),
                op: self.node.op.name(),
                weight: t.name.clone(),
                dtype: t.dtype,
                why: "no kernel for this format",
            }
        })?;
        acc.kernels.push(chosen.name);
        let gemm = self
            .batched
            .then(|| table::gemm(t.dtype, self.level, weight.layout))
            .flatten()
            .filter(|g| g.wants_q8 == chosen.wants_q8);
        if let Some(g) = gemm {
            acc.kernels.push(g.name);
        }
        acc.weights.push(t.name.clone());
        acc.layouts.push(weight.layout);
        acc.weight_bytes += t.n_bytes;
        Ok(Matmul {
            gemv: chosen.f,
            gemm: gemm.map(|g| g.f),
            w: weight,
        })
    }

    /// The norm a product step folds in (gamma is the step's weight 0), normalising into the
    /// scratch at `scratch`; `None` when the step has none.
    fn folded_norm(
        &self,
        eps: Option<f32>,
        scratch: usize,
        acc: &mut Acc,
    ) -> Result<Option<Norm>, PlanError> {
        let Some(eps) = eps else { return Ok(None) };
        let f = table::rmsnorm(self.level);
        acc.kernels.push(f.name);
        Ok(Some(Norm {
            gamma: self.gamma(self.node.weights[0], acc)?,
            eps,
            rmsnorm: f.f,
            scratch,
        }))
    }

    /// A norm's gamma (F32, checked by infer()).
    fn gamma(&self, w: WeightId, acc: &mut Acc) -> Result<*const f32, PlanError> {
        let t = self.tensor(w)?;
        acc.weights.push(t.name.clone());
        acc.layouts.push(WeightLayout::Rows);
        acc.weight_bytes += t.n_bytes;
        Ok(self.model.tensor_bytes(t).as_ptr() as *const f32)
    }
}
