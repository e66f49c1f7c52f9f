//! Lowering: the optimised graph → a flat schedule of steps, each with its kernel (a fn
//! pointer chosen once from the CPU level), its buffers' byte offsets and its sizes as
//! plain integers. Buffers get live intervals and arena offsets here.

use std::collections::HashMap;
use std::sync::Arc;

use super::arena;
use super::infer::{Facts, Storage};
use super::kvcache::{attn_params, cache_geometry, unread_cache, CacheSide};
use super::liveness::{self, Interval};
use super::passes::PassReport;
use super::sizes::{product_of, q8_elements, scratch_elements, step_rows};
use super::step::{EmbedRow, Exec, Prep, ProjOut, Quant};
use super::weights::{Acc, Repacking, WeightCx};
use super::{BufId, BufKind, Buffer, Plan, PlanError, PlanOptions, Step};
use crate::gguf::GgufFile;
use crate::graph::{Epilogue, GateAct, Graph, InputKind, NodeId, Op, ValueId};
use crate::kernels::kv;
use crate::kernels::scalar::rope::rope_freqs;
use crate::kernels::{table, KernelLevel};

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
    let caches = cache_geometry(g, facts, opts)?;
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
            kv: None,
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
                let b = new_buf(&mut buffers, name, kind, fact);
                if kind == BufKind::KvCache {
                    let side = caches.get(&v).ok_or_else(|| unread_cache(node))?;
                    buffers[b.0 as usize].bytes = side.bytes();
                    buffers[b.0 as usize].kv = Some(side.ty());
                }
                b
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
            scratch_elements(g, facts, id, rows, slots, opts),
        );
        let qscratch = scratch_buf(
            "q8",
            super::DType::Q8Act,
            slots * q8_elements(g, facts, id, opts.level, opts.repack),
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

    // With several sequences, one more input: every row's sequence, read by every step
    // that touches a cache, so live for the whole call.
    let sequence_ids = (opts.sequences > 1).then(|| {
        let fact = super::Fact {
            dtype: super::DType::I32,
            shape: vec![opts.seq],
            storage: Storage::Input,
        };
        new_buf(&mut buffers, "sequence".into(), BufKind::Input, &fact)
    });

    // Liveness: inputs are written before step 0; graph outputs are read after the last.
    let n_steps = drafts.len();
    let mut live: Vec<Option<Interval>> = vec![None; buffers.len()];
    for (i, b) in buffers.iter().enumerate() {
        if b.kind == BufKind::Input {
            liveness::touch(&mut live[i], 0);
        }
    }
    if let Some(b) = sequence_ids {
        liveness::touch(&mut live[b.0 as usize], n_steps.saturating_sub(1));
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
    // Sequence s's caches sit one whole region further on: [sequence][layer cache].
    let kv_seq_bytes = kv_bytes;
    let kv_bytes = kv_seq_bytes.checked_mul(opts.sequences).ok_or_else(|| {
        PlanError::Options(format!(
            "{} sequences of {kv_seq_bytes} bytes of KV cache overflow the address space",
            opts.sequences
        ))
    })?;
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
            (&buffers, &caches),
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
        kv_types: opts.kv,
        kv_offset,
        kv_bytes,
        sequences: opts.sequences,
        kv_seq_bytes,
        sequence_ids,
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

fn make_step(
    g: &Graph,
    facts: &Facts,
    model: &GgufFile,
    opts: &PlanOptions,
    (buffers, caches): (&[Buffer], &HashMap<ValueId, CacheSide>),
    d: &Draft,
    repacking: &mut Repacking,
) -> Result<Step, PlanError> {
    let node = &g.g[d.node];
    let side = |out: usize| -> Result<CacheSide, PlanError> {
        caches
            .get(&ValueId { node: d.node, out })
            .copied()
            .ok_or_else(|| unread_cache(node))
    };
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
    // One quantizer for all the step's products, chosen by their formats (Q2_K, Q3_K: tiled).
    let dtypes = node.weights.iter().map(|w| g.weights[w.0 as usize].dtype);
    let q8 = table::quantize_act_for(dtypes, level);
    let quant = |acc: &mut Acc, k: usize| -> Option<Quant> {
        d.qscratch.map(|b| {
            let q = q8;
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
                    (EmbedRow::Rows(k.f), wcx.table_rows(node.weights[0], tied)?)
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
        Op::RmsNorm { eps, heads } => {
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
                heads: *heads,
                eps: *eps,
            }
        }
        Op::Scale { factor } => {
            acc.kernels.push("scale_scalar");
            let n = cols(d.outputs[0]);
            flops = n as u64 * seq;
            Exec::Scale {
                x: off(d.inputs[0]),
                out: off(d.outputs[0]),
                n,
                factor: *factor,
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
                freqs: match node.weights.first() {
                    Some(&w) => divided(rope_freqs(n / heads, *theta), &wcx.values(w, &mut acc)?),
                    None => rope_freqs(n / heads, *theta),
                }
                .into_boxed_slice(),
                layout: *layout,
            }
        }
        Op::Bias => {
            let k = table::add(level);
            acc.kernels.push(k.name);
            let n = cols(d.outputs[0]);
            flops = n as u64 * seq;
            Exec::Bias {
                f: k.f,
                x: off(d.inputs[0]),
                bias: wcx.gamma(node.weights[0], &mut acc)?,
                out: off(d.outputs[0]),
                n,
            }
        }
        Op::KvWrite => {
            let (ks, vs) = (side(0)?, side(1)?);
            acc.kernels.push(ks.store_name());
            acc.kernels.push(vs.store_name());
            Exec::KvWrite {
                k: off(d.inputs[0]),
                v: off(d.inputs[1]),
                pos: off(d.inputs[2]),
                kc: ks.out(off(d.outputs[0])),
                vc: vs.out(off(d.outputs[1])),
                n: cols(d.inputs[0]),
            }
        }
        Op::Attend {
            heads,
            kv_heads,
            window,
        } => {
            let n = cols(d.outputs[0]);
            let params = attn_params(n / heads, *heads, *kv_heads, *window, opts);
            let k = table::attend(level, n / heads, opts.kv);
            acc.kernels.push(k.name);
            // Counted at a full cache: an upper bound, the real cost grows with position.
            flops = 4 * (n * opts.n_ctx) as u64 * seq;
            Exec::Attend {
                f: k.f,
                params,
                q: off(d.inputs[0]),
                kc: off(d.inputs[1]),
                vc: off(d.inputs[2]),
                pos: off(d.inputs[3]),
                out: off(d.outputs[0]),
                work: d.scratch.map_or(0, off),
                n,
                kv_heads: *kv_heads,
            }
        }
        Op::Proj { norm, outs } => {
            let k = cols(d.inputs[0]);
            let w0 = norm.is_some() as usize;
            let scratch = d.scratch.map_or(0, off);
            // Cache outputs are staged as f32 rows after the normed slots (scratch_elements).
            let slots = if d.rows == 1 { opts.threads } else { d.rows };
            let mut staging = scratch + 4 * norm.map_or(0, |_| slots * k);
            let norm = wcx.folded_norm(*norm, scratch, &mut acc)?;
            let mut pouts = Vec::with_capacity(outs.len());
            let mut row0 = 0;
            // Rope frequency factors follow the matrices, in output order (infer checked).
            let mut factor_at = w0 + outs.len();
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
                        let freqs = rope_freqs(n / heads, *theta);
                        if e.rope_factors() {
                            factor_at += 1;
                            divided(freqs, &wcx.values(node.weights[factor_at - 1], &mut acc)?)
                        } else {
                            freqs
                        }
                    }
                    Epilogue::Store | Epilogue::ToCache => Vec::new(),
                };
                let (dst, kv) = if e.writes_cache() {
                    let cache = side(i)?;
                    acc.kernels.push(cache.store_name());
                    let at = staging;
                    staging += 4 * d.rows * n;
                    (at, Some(cache.out(off(d.outputs[i]))))
                } else {
                    (off(d.outputs[i]), None)
                };
                pouts.push(ProjOut {
                    mm,
                    n,
                    row0,
                    dst,
                    epilogue: *e,
                    rope: rope.f,
                    freqs: freqs.into_boxed_slice(),
                    kv,
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
        Op::SwiGlu { norm, act } => {
            let k = cols(d.inputs[0]);
            let n = cols(d.outputs[0]);
            let scratch = d.scratch.map_or(0, off);
            let w0 = norm.is_some() as usize;
            // The normed rows sit after the up values (`rows` of them) in the scratch.
            let norm = wcx.folded_norm(*norm, scratch + 4 * n * d.rows, &mut acc)?;
            let gate = wcx.matrix(node.weights[w0], &mut acc)?;
            let up = wcx.matrix(node.weights[w0 + 1], &mut acc)?;
            let act_mul = match act {
                GateAct::Silu => table::silu_mul(level),
                GateAct::Gelu => table::gelu_mul(level),
            };
            acc.kernels.push(act_mul.name);
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
                act_mul: act_mul.f,
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
        Op::Silu | Op::Gelu | Op::Softmax => {
            let k = match node.op {
                Op::Silu => table::silu(level),
                Op::Gelu => table::gelu(level),
                _ => table::softmax(level),
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
    let kv_rows = kv::cache_rows(opts.n_ctx);
    let act_bytes = |bs: &[BufId]| -> u64 {
        bs.iter()
            .map(|b| {
                let buf = &buffers[b.0 as usize];
                match buf.kind {
                    // One position of every head, in the cache's type.
                    BufKind::KvCache => (buf.bytes / kv_rows) as u64 * seq,
                    _ => buf.bytes as u64,
                }
            })
            .sum()
    };
    let mut bytes_read = acc.weight_bytes + act_bytes(&d.inputs);
    if let Exec::Attend { params, .. } = &exec {
        // Reads the K and V values of every past position (counted at a full cache).
        bytes_read += (params.geom.k_bytes() + params.geom.v_bytes()) as u64 * seq;
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

/// Rope frequencies divided pair by pair by a model's factors (Llama 3's `rope_freqs`, as
/// ggml's rope applies them: the angle is `pos · freq / factor`).
fn divided(mut freqs: Vec<f32>, factors: &[f32]) -> Vec<f32> {
    for (f, d) in freqs.iter_mut().zip(factors) {
        *f /= d;
    }
    freqs
}
