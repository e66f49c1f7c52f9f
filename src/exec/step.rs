//! Runs one worker's share of one phase of a plan: a range of tokens, of matrix rows or of
//! heads, fixed by the planner (`plan/parallel.rs`). No checks, no allocation: offsets,
//! lengths and kernels were all settled at plan time.

use crate::kernels::panel::PANEL_ROWS;
use crate::kernels::BlockQ8Act;
use crate::plan::{EmbedRow, Exec, KvOut, Matmul, Phase, PhaseKind, Plan, Prep, Split};
use crate::vocab::Epilogue;

/// Views `len` f32 at byte offset `off` of `mem`.
///
/// # Safety
/// The range lies in the session memory and no live `&mut` overlaps it: the planner gives
/// buffers live at the same step disjoint ranges (`plan/arena.rs`), and workers disjoint
/// ranges between barriers (`plan/parallel.rs`).
unsafe fn f32s<'a>(mem: *mut u8, off: usize, len: usize) -> &'a [f32] {
    // SAFETY: forwarded from the caller.
    unsafe { std::slice::from_raw_parts(mem.add(off) as *const f32, len) }
}

/// # Safety
/// As `f32s`, and no other reference to the range is live.
unsafe fn f32s_mut<'a>(mem: *mut u8, off: usize, len: usize) -> &'a mut [f32] {
    // SAFETY: forwarded from the caller.
    unsafe { std::slice::from_raw_parts_mut(mem.add(off) as *mut f32, len) }
}

/// # Safety
/// `off` holds at least `t + 1` i32.
unsafe fn i32_at(mem: *mut u8, off: usize, t: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { *(mem.add(off) as *const i32).add(t) }
}

/// # Safety
/// `at` holds `n` blocks in the session memory.
unsafe fn blocks<'a>(mem: *mut u8, at: usize, n: usize) -> &'a [BlockQ8Act] {
    // SAFETY: forwarded from the caller.
    unsafe { std::slice::from_raw_parts(mem.add(at) as *const BlockQ8Act, n) }
}

/// Stores `row`, the values of whole heads from column `c0` of one token's K or V row,
/// at position `p` of a cache in the KV region starting at `mem` (the row's sequence's).
///
/// # Safety
/// `kv` is the planner's for this session's memory and `mem` one of its sequences'
/// regions; `c0` and `row.len()` are multiples of
/// the head size; `p` < the cache's rows.
unsafe fn store_row(mem: *mut u8, kv: &KvOut, row: &[f32], c0: usize, p: usize) {
    let hd = kv.geom.head_dim;
    for (i, head) in row.chunks_exact(hd).enumerate() {
        // SAFETY: forwarded from the caller: head c0 / hd + i < kv_heads.
        unsafe { (kv.store)(head, mem.add(kv.cache), &kv.geom, c0 / hd + i, p) };
    }
}

/// Prepares token row `t` of a product's input into slot `s`: norm, then quantize.
///
/// # Safety
/// The prep's offsets are the planner's for this session's memory, `t` a row of the input
/// and `s` a slot of the step's scratch.
unsafe fn prepare(mem: *mut u8, p: &Prep, t: usize, s: usize) {
    // SAFETY: forwarded from the caller; the scratch slots never overlap the input.
    unsafe {
        let mut row = f32s(mem, p.x + 4 * t * p.k, p.k);
        if let Some(nm) = &p.norm {
            let normed = f32s_mut(mem, nm.scratch + 4 * s * p.k, p.k);
            (nm.rmsnorm)(
                row,
                std::slice::from_raw_parts(nm.gamma, p.k),
                nm.eps,
                normed,
            );
            row = normed;
        }
        if let Some(q) = &p.xq {
            let out = std::slice::from_raw_parts_mut(
                mem.add(q.at + s * q.blocks * std::mem::size_of::<BlockQ8Act>()) as *mut BlockQ8Act,
                q.blocks,
            );
            (q.f)(row, out);
        }
    }
}

/// The prepared input of slot `s` (token row `t`), as f32 and as 8-bit blocks.
///
/// # Safety
/// As `prepare`, after it ran for this slot.
unsafe fn prepared<'a>(
    mem: *mut u8,
    p: &Prep,
    t: usize,
    s: usize,
) -> (&'a [f32], &'a [BlockQ8Act]) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let row = match &p.norm {
            Some(nm) => f32s(mem, nm.scratch + 4 * s * p.k, p.k),
            None => f32s(mem, p.x + 4 * t * p.k, p.k),
        };
        let q = match &p.xq {
            Some(q) => blocks(
                mem,
                q.at + s * q.blocks * std::mem::size_of::<BlockQ8Act>(),
                q.blocks,
            ),
            None => &[],
        };
        (row, q)
    }
}

/// Up to this many tokens, a quantized product runs the few-token kernel
/// (`kernels/x86_64/few.rs`) rather than the batched gemm, whose per-chunk unpacking pays
/// off only over more tokens. All give the same bits.
const FEW_ROWS: usize = 8;

/// Rows `r0..r1` of `mm` times the prepared input of `n` tokens, into `out` (token t's row
/// at byte offset `out + 4·t·ldo`, rows from `r0`). Batched when the plan chose a gemm and
/// the call brings more than one token.
///
/// # Safety
/// As `prepare`; `out` holds `n` rows of `ldo ≥ r1` f32; `w` (slot of worker `w` in a plan
/// for one row) as the planner laid the slots out.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    mem: *mut u8,
    p: &Prep,
    mm: &Matmul,
    r0: usize,
    r1: usize,
    n: usize,
    slot_of: impl Fn(usize) -> usize,
    out: usize,
    ldo: usize,
) {
    if r0 >= r1 {
        return;
    }
    // SAFETY: forwarded from the caller; rows r0..r1 are rows of the matrix.
    unsafe {
        let w = mm.w.ptr.add(r0 * mm.w.row_bytes);
        match (mm.gemm, &p.xq) {
            (Some(gemm), Some(q)) if n <= FEW_ROWS => {
                // A few tokens (a server's decode step, one row per request): the
                // few-token kernel; where the format has none, the gemm for more than one
                // token and the decode gemv for one.
                let xq = blocks(
                    mem,
                    q.at + slot_of(0) * q.blocks * std::mem::size_of::<BlockQ8Act>(),
                    n * q.blocks,
                );
                let out = mem.add(out + 4 * r0) as *mut f32;
                match mm.few {
                    Some(few) => few(w, mm.w.row_bytes, r1 - r0, xq, n, out, ldo),
                    None if n > 1 => gemm(w, mm.w.row_bytes, r1 - r0, xq, n, out, ldo),
                    None => (mm.gemv)(
                        w,
                        mm.w.row_bytes,
                        prepared(mem, p, 0, slot_of(0)).0,
                        xq,
                        std::slice::from_raw_parts_mut(out, r1 - r0),
                    ),
                }
            }
            (Some(gemm), Some(q)) => {
                // One token: its slot (the worker's, in a plan for one row). Many: slot t
                // is token t, so the blocks are contiguous.
                let first = if n == 1 { slot_of(0) } else { 0 };
                let xq = blocks(
                    mem,
                    q.at + first * q.blocks * std::mem::size_of::<BlockQ8Act>(),
                    n * q.blocks,
                );
                gemm(
                    w,
                    mm.w.row_bytes,
                    r1 - r0,
                    xq,
                    n,
                    mem.add(out + 4 * r0) as *mut f32,
                    ldo,
                );
            }
            (None, None) if n > 1 && mm.float_gemm.is_some() => {
                // Many tokens: slot t is token t, so the prepared rows are contiguous.
                let (first, _) = prepared(mem, p, 0, slot_of(0));
                // SAFETY: the n prepared rows of p.k f32 follow each other from `first`
                // (the input, or the norm scratch's slots 0..n: plan/lower.rs sizes both
                // for seq ≥ n rows).
                let x = std::slice::from_raw_parts(first.as_ptr(), n * p.k);
                if let Some(g) = mm.float_gemm {
                    g(
                        w,
                        mm.w.row_bytes,
                        r1 - r0,
                        x,
                        n,
                        mem.add(out + 4 * r0) as *mut f32,
                        ldo,
                    );
                }
            }
            _ => {
                for t in 0..n {
                    let (row, q) = prepared(mem, p, t, slot_of(t));
                    (mm.gemv)(
                        w,
                        mm.w.row_bytes,
                        row,
                        q,
                        f32s_mut(mem, out + 4 * (t * ldo + r0), r1 - r0),
                    );
                }
            }
        }
    }
}

/// Runs worker `w`'s share of `phase` for a call of `n` tokens.
///
/// # Safety
/// `mem` holds the plan's whole session memory; `n ≤ plan.seq`; the tokens, positions
/// and sequence buffers hold, for the first `n` rows, ids < n_vocab, positions < n_ctx and
/// sequences < `plan.sequences`, no two rows at one position of one sequence; every worker runs the phases in order and waits at their barriers. Every offset,
/// row length and row count below comes from the planner, which sized each buffer for
/// `seq ≥ n` rows (plan/lower.rs), checked each weight's shape and format against its kernel
/// (plan/infer.rs), chose kernels this CPU can run (kernels/table.rs) and gave workers
/// disjoint writes between barriers (plan/parallel.rs).
pub unsafe fn run_phase(plan: &Plan, phase: &Phase, mem: *mut u8, n: usize, w: usize) {
    let (a, b) = phase.parts[w];
    if a >= b {
        return;
    }
    let step = &plan.steps[phase.step];
    // Rows of this call: all tokens, or the one row after a `LastRow`.
    let n = n.min(step.rows);
    let per_worker = step.rows == 1;
    let slot_of = move |t: usize| if per_worker { w } else { t };
    // Row t's KV region: its sequence's (plan/lower.rs lays them out one after another).
    let sequence_at = plan.sequence_ids.map(|b| plan.buffers[b.0 as usize].offset);
    let kv_seq_bytes = plan.kv_seq_bytes;
    // SAFETY: the sequence ids buffer holds `seq ≥ n` ids < `plan.sequences`, written by
    // the executor before the call (exec/session.rs checks them), so the region lies in the
    // KV memory.
    let kv_mem = move |t: usize| unsafe {
        match sequence_at {
            Some(at) => mem.add(i32_at(mem, at, t) as usize * kv_seq_bytes),
            None => mem,
        }
    };
    // SAFETY (for every block below): as stated in this function's contract.
    unsafe {
        if phase.kind == PhaseKind::Prep {
            let prep = crate::plan::parallel::prep_of(&step.exec).expect("a prep phase");
            if phase.split == Split::PerWorker {
                prepare(mem, prep, 0, w);
            } else {
                for t in a..b.min(n) {
                    prepare(mem, prep, t, t);
                }
            }
            return;
        }
        let (t0, t1) = (a.min(n), b.min(n));
        match &step.exec {
            Exec::Embed {
                row,
                table,
                tokens,
                out,
                n: width,
            } => {
                for t in t0..t1 {
                    let id = i32_at(mem, *tokens, t) as usize;
                    let dst = f32s_mut(mem, out + 4 * t * width, *width);
                    match row {
                        EmbedRow::Rows(f) => f(table.ptr.add(id * table.row_bytes), dst),
                        // Row id is lane id % 8 of panel id / 8, at 8 · row_bytes per panel.
                        EmbedRow::Panels(f) => {
                            let panel = table
                                .ptr
                                .add(id / PANEL_ROWS * PANEL_ROWS * table.row_bytes);
                            f(panel, id % PANEL_ROWS, dst)
                        }
                    }
                }
            }
            Exec::RmsNorm {
                f,
                x,
                gamma,
                out,
                n: width,
                heads,
                eps,
            } => {
                let part = width / heads;
                let gamma = std::slice::from_raw_parts(*gamma, part);
                for t in t0..t1 {
                    let o = f32s_mut(mem, out + 4 * t * width, *width);
                    let xs = f32s(mem, x + 4 * t * width, *width);
                    for (xh, oh) in xs.chunks_exact(part).zip(o.chunks_exact_mut(part)) {
                        f(xh, gamma, *eps, oh);
                    }
                }
            }
            Exec::Bias {
                f,
                x,
                bias,
                out,
                n: width,
            } => {
                // SAFETY: `bias` points at `width` f32s of the model's memory map, which the
                // plan keeps alive (infer() checked the vector's length and type).
                let bias = std::slice::from_raw_parts(*bias, *width);
                for t in t0..t1 {
                    let o = f32s_mut(mem, out + 4 * t * width, *width);
                    f(f32s(mem, x + 4 * t * width, *width), bias, o);
                }
            }
            Exec::Scale {
                x,
                out,
                n: width,
                factor,
            } => {
                for t in t0..t1 {
                    crate::kernels::scalar::elementwise::scale_scalar(
                        f32s(mem, x + 4 * t * width, *width),
                        *factor,
                        f32s_mut(mem, out + 4 * t * width, *width),
                    );
                }
            }
            Exec::Rope {
                f,
                x,
                pos,
                out,
                n: width,
                heads,
                freqs,
                layout,
            } => {
                for t in t0..t1 {
                    let dst = f32s_mut(mem, out + 4 * t * width, *width);
                    dst.copy_from_slice(f32s(mem, x + 4 * t * width, *width));
                    f(dst, *heads, i32_at(mem, *pos, t), freqs, *layout);
                }
            }
            Exec::KvWrite {
                k,
                v,
                pos,
                kc,
                vc,
                n: width,
            } => {
                for t in t0..t1 {
                    let p = i32_at(mem, *pos, t) as usize;
                    let kv = kv_mem(t);
                    store_row(kv, kc, f32s(mem, k + 4 * t * width, *width), 0, p);
                    store_row(kv, vc, f32s(mem, v + 4 * t * width, *width), 0, p);
                }
            }
            Exec::Attend {
                f,
                params,
                q,
                kc,
                vc,
                pos,
                out,
                work,
                n: width,
                kv_heads,
            } => {
                // Units a..b are (token row, KV head) pairs, row-major; each computes the
                // group's heads of one row whole.
                let span = params.group * params.geom.head_dim;
                let work = f32s_mut(mem, work + 4 * w * params.work_len(), params.work_len());
                for u in a..b {
                    let (t, g) = (u / kv_heads, u % kv_heads);
                    if t >= n {
                        break;
                    }
                    let at = t * width + g * span;
                    f(
                        params,
                        f32s(mem, q + 4 * at, span),
                        kv_mem(t).add(*kc),
                        kv_mem(t).add(*vc),
                        g,
                        i32_at(mem, *pos, t) as usize + 1,
                        work,
                        // This unit's heads only: other units hold the rest of the row.
                        f32s_mut(mem, out + 4 * at, span),
                    );
                }
            }
            Exec::Gemv {
                prep,
                mm,
                out,
                n: width,
            } => {
                product(mem, prep, mm, a, b, n, slot_of, *out, *width);
            }
            Exec::Proj { prep, pos, outs } => {
                for o in outs {
                    let (lo, hi) = (a.max(o.row0), b.min(o.row0 + o.n));
                    if lo >= hi {
                        continue;
                    }
                    let (r0, r1) = (lo - o.row0, hi - o.row0);
                    product(mem, prep, &o.mm, r0, r1, n, slot_of, o.dst, o.n);
                    if let Epilogue::Rope { heads, layout, .. }
                    | Epilogue::RopeToCache { heads, layout, .. } = o.epilogue
                    {
                        // The split keeps whole heads together (plan/parallel.rs).
                        let hd = o.n / heads;
                        for t in 0..n {
                            let row = f32s_mut(mem, o.dst + 4 * (t * o.n + r0), r1 - r0);
                            (o.rope)(row, (r1 - r0) / hd, i32_at(mem, *pos, t), &o.freqs, layout);
                        }
                    }
                    if let Some(kv) = &o.kv {
                        // The staged rows' heads r0..r1 (whole heads: plan/parallel.rs) go to
                        // position pos[t] of the cache.
                        for t in 0..n {
                            let p = i32_at(mem, *pos, t) as usize;
                            let row = f32s(mem, o.dst + 4 * (t * o.n + r0), r1 - r0);
                            store_row(kv_mem(t), kv, row, r0, p);
                        }
                    }
                }
            }
            Exec::SwiGlu {
                prep,
                out,
                n: width,
                gate,
                up,
                act_mul,
                up_scratch,
            } => {
                product(mem, prep, gate, a, b, n, slot_of, *out, *width);
                product(mem, prep, up, a, b, n, slot_of, *up_scratch, *width);
                for t in 0..n {
                    act_mul(
                        f32s_mut(mem, out + 4 * (t * width + a), b - a),
                        f32s(mem, up_scratch + 4 * (t * width + a), b - a),
                    );
                }
            }
            Exec::GemvAdd {
                prep,
                mm,
                acc,
                x,
                n: width,
                scratch,
            } => {
                product(mem, prep, mm, a, b, n, slot_of, *scratch, *width);
                for t in 0..n {
                    acc(
                        f32s_mut(mem, x + 4 * (t * width + a), b - a),
                        f32s(mem, scratch + 4 * (t * width + a), b - a),
                    );
                }
            }
            Exec::LastRow { x, out, n: width } => {
                f32s_mut(mem, *out, *width).copy_from_slice(f32s(
                    mem,
                    x + 4 * (n - 1) * width,
                    *width,
                ));
            }
            Exec::Binary {
                f,
                a: x,
                b: y,
                out,
                n: width,
            } => {
                for t in t0..t1 {
                    let o = f32s_mut(mem, out + 4 * t * width, *width);
                    f(
                        f32s(mem, x + 4 * t * width, *width),
                        f32s(mem, y + 4 * t * width, *width),
                        o,
                    );
                }
            }
            Exec::Unary {
                f,
                x,
                out,
                n: width,
            } => {
                for t in t0..t1 {
                    f(
                        f32s(mem, x + 4 * t * width, *width),
                        f32s_mut(mem, out + 4 * t * width, *width),
                    );
                }
            }
        }
    }
}

/// One worker's timings of a profiled call, in nanoseconds per plan step: time spent in
/// the step's kernels, and time spent waiting at the barriers before its phases.
pub struct WorkerTimes<'a> {
    pub work: &'a mut [u64],
    pub wait: &'a mut [u64],
}

/// Runs worker `w`'s part of a whole forward step: every phase in order, waiting at the
/// planned barriers. `times`, when given, receives each phase's work and barrier wait,
/// added to its step's entries.
///
/// # Safety
/// As `run_phase`, for every worker of the plan running it at once.
pub unsafe fn run_worker(
    plan: &Plan,
    mem: *mut u8,
    n: usize,
    w: usize,
    barrier: &super::threads::Barrier,
    mut times: Option<WorkerTimes<'_>>,
) {
    for phase in &plan.phases {
        let Some(t) = times.as_mut() else {
            if phase.barrier {
                barrier.wait();
            }
            // SAFETY: forwarded from the caller; the barrier above orders this phase after
            // every write it depends on.
            unsafe { run_phase(plan, phase, mem, n, w) };
            continue;
        };
        let start = std::time::Instant::now();
        if phase.barrier {
            barrier.wait();
        }
        let waited = std::time::Instant::now();
        // SAFETY: as above.
        unsafe { run_phase(plan, phase, mem, n, w) };
        t.wait[phase.step] += (waited - start).as_nanos() as u64;
        t.work[phase.step] += waited.elapsed().as_nanos() as u64;
    }
}
