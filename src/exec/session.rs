//! A `Session` owns the memory one plan runs in — the activation arena and the KV caches, one
//! bumpalo allocation made when the session is created — and runs forward steps.

use std::sync::Arc;

use crate::kernels::BlockQ8Act;
use crate::plan::{Exec, Plan, Quant, WeightRef};

/// The checks made once per call, before the step loop.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    #[error("context full: {needed} positions needed, the context holds {n_ctx}")]
    ContextFull { n_ctx: usize, needed: usize },
    #[error("token id {token} is out of range: the vocabulary has {n_vocab} tokens")]
    TokenOutOfRange { token: u32, n_vocab: usize },
    #[error("{got} tokens given, the plan takes at most {seq} per step")]
    TooManyTokens { got: usize, seq: usize },
    #[error("no tokens given")]
    Empty,
    #[error("the plan has no `{0}` input or output")]
    Interface(&'static str),
}

pub struct Session {
    plan: Arc<Plan>,
    /// Holds the single allocation `mem` points into.
    _bump: bumpalo::Bump,
    mem: *mut u8,
    /// Positions written to the KV caches so far.
    pos: usize,
    n_vocab: usize,
    logits_offset: usize,
    tokens_offset: usize,
    positions_offset: Option<usize>,
}

// SAFETY: `mem` points into `_bump`, owned by the session and only reached through `&mut self`
// while running; moving the session to another thread moves sole ownership with it.
unsafe impl Send for Session {}

impl Session {
    /// Allocates the arena and KV region once (64-byte aligned, zeroed).
    pub fn new(plan: Arc<Plan>) -> Result<Session, ExecError> {
        let tokens = plan.tokens.ok_or(ExecError::Interface("tokens"))?;
        let logits = plan
            .outputs
            .first()
            .map(|o| o.1)
            .ok_or(ExecError::Interface("logits"))?;
        let size = plan.session_bytes().max(64);
        // infallible: 64 is a power of two and size is far below isize::MAX for any plan
        let layout = std::alloc::Layout::from_size_align(size, 64).expect("arena layout");
        let bump = bumpalo::Bump::with_capacity(size + 64);
        let mem = bump.alloc_layout(layout).as_ptr();
        // SAFETY: `mem` is a fresh allocation of `size` bytes.
        unsafe { std::ptr::write_bytes(mem, 0, size) };
        let logits_buf = &plan.buffers[logits.0 as usize];
        Ok(Session {
            n_vocab: logits_buf.fact.cols(),
            logits_offset: logits_buf.offset,
            tokens_offset: plan.buffers[tokens.0 as usize].offset,
            positions_offset: plan.positions.map(|b| plan.buffers[b.0 as usize].offset),
            plan,
            _bump: bump,
            mem,
            pos: 0,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Positions filled so far (the next token's position).
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Forgets the context (the caches are overwritten as positions are reused).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Rewinds to `pos` (≤ the current position): later positions will be recomputed.
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }

    /// Runs `tokens` (at most the plan's `seq`) at the next positions and returns the
    /// logits of every token, `[tokens.len(), n_vocab]` row-major.
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<&[f32], ExecError> {
        self.forward_impl(tokens, None)
    }

    /// As `forward_all`, adding each step's wall time in nanoseconds to `step_ns`
    /// (one entry per plan step), for `qgraph profile`.
    pub fn forward_timed(
        &mut self,
        tokens: &[u32],
        step_ns: &mut [u64],
    ) -> Result<&[f32], ExecError> {
        if step_ns.len() != self.plan.steps.len() {
            return Err(ExecError::Interface("step timings"));
        }
        self.forward_impl(tokens, Some(step_ns))
    }

    fn forward_impl(
        &mut self,
        tokens: &[u32],
        step_ns: Option<&mut [u64]>,
    ) -> Result<&[f32], ExecError> {
        let n = tokens.len();
        if n == 0 {
            return Err(ExecError::Empty);
        }
        if n > self.plan.seq {
            return Err(ExecError::TooManyTokens {
                got: n,
                seq: self.plan.seq,
            });
        }
        if self.pos + n > self.plan.n_ctx {
            return Err(ExecError::ContextFull {
                n_ctx: self.plan.n_ctx,
                needed: self.pos + n,
            });
        }
        let n_vocab = self.n_vocab;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ExecError::TokenOutOfRange { token, n_vocab });
        }
        // SAFETY: the tokens and positions buffers hold `seq` i32 each (plan/infer.rs), n ≤ seq.
        unsafe {
            let t = self.mem.add(self.tokens_offset) as *mut i32;
            for (i, &tok) in tokens.iter().enumerate() {
                *t.add(i) = tok as i32;
            }
            if let Some(p) = self.positions_offset {
                let p = self.mem.add(p) as *mut i32;
                for i in 0..n {
                    *p.add(i) = (self.pos + i) as i32;
                }
            }
        }
        // SAFETY: every offset and length in the steps was computed by the planner for this
        // plan's arena and KV region, which `mem` holds in full; token ids are < n_vocab and
        // positions < n_ctx, checked just above.
        unsafe { run_steps(&self.plan, self.mem, n, step_ns) };
        self.pos += n;
        // SAFETY: the logits buffer holds `seq * n_vocab` f32 in the arena.
        Ok(unsafe {
            std::slice::from_raw_parts(self.mem.add(self.logits_offset) as *const f32, n * n_vocab)
        })
    }

    /// Runs `tokens` and returns the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], ExecError> {
        let n_vocab = self.n_vocab;
        let all = self.forward_all(tokens)?;
        Ok(&all[all.len() - n_vocab..])
    }
}

/// # Safety
/// `mem` holds the plan's whole session memory; `n ≤ plan.seq`; the tokens and positions
/// buffers hold valid ids (< n_vocab) and positions (< n_ctx) for the first `n` rows.
unsafe fn run_steps(plan: &Plan, mem: *mut u8, n: usize, step_ns: Option<&mut [u64]>) {
    match step_ns {
        None => {
            for step in &plan.steps {
                // SAFETY: forwarded from the caller.
                unsafe { run_step(&step.exec, mem, n) };
            }
        }
        Some(times) => {
            for (step, t) in plan.steps.iter().zip(times.iter_mut()) {
                let start = std::time::Instant::now();
                // SAFETY: forwarded from the caller.
                unsafe { run_step(&step.exec, mem, n) };
                *t += start.elapsed().as_nanos() as u64;
            }
        }
    }
}

/// Views `len` f32 at byte offset `off` of `mem`.
///
/// # Safety
/// The range lies in the session memory, and no live `&mut` overlaps it (the planner gives
/// buffers live at the same step disjoint ranges; see `plan/arena.rs`).
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

/// Quantizes `x` into the step's 8-bit scratch when the step has one; returns the blocks.
///
/// # Safety
/// `q.at` holds `q.blocks` blocks in the session memory, disjoint from `x`.
unsafe fn quantize<'a>(mem: *mut u8, q: &Option<Quant>, x: &[f32]) -> &'a [BlockQ8Act] {
    match q {
        None => &[],
        Some(q) => {
            // SAFETY: forwarded from the caller.
            let blocks = unsafe {
                std::slice::from_raw_parts_mut(mem.add(q.at) as *mut BlockQ8Act, q.blocks)
            };
            // SAFETY: the planner chose `q.f` for this CPU; x.len() == 32 * q.blocks.
            unsafe { (q.f)(x, blocks) };
            blocks
        }
    }
}

/// Row `t` of the `k`-wide input at `x`, normed into the step's scratch first when the step
/// folds a norm in.
///
/// # Safety
/// As `f32s`; `norm.scratch` holds `k` f32 disjoint from `x`, and `norm.gamma` `k` f32.
unsafe fn input_row<'a>(
    mem: *mut u8,
    x: usize,
    t: usize,
    k: usize,
    norm: &Option<crate::plan::Norm>,
) -> &'a [f32] {
    // SAFETY: forwarded from the caller.
    unsafe {
        let row = f32s(mem, x + 4 * t * k, k);
        match norm {
            None => row,
            Some(nm) => {
                let normed = f32s_mut(mem, nm.scratch, k);
                (nm.rmsnorm)(row, std::slice::from_raw_parts(nm.gamma, k), nm.eps, normed);
                normed
            }
        }
    }
}

/// # Safety
/// `w` is a weight matrix of the plan; `row < w.rows`.
unsafe fn weight_row(w: &WeightRef, row: usize) -> *const u8 {
    // SAFETY: forwarded from the caller.
    unsafe { w.ptr.add(row * w.row_bytes) }
}

/// Runs one step over `n` tokens.
///
/// # Safety
/// See `run_steps`. Every offset, row length and row count below comes from the planner,
/// which sized each buffer for `seq ≥ n` rows (plan/lower.rs), checked each weight's shape
/// and format against its kernel (plan/infer.rs), and chose kernels this CPU can run
/// (kernels/table.rs).
unsafe fn run_step(exec: &Exec, mem: *mut u8, n: usize) {
    use crate::graph::Epilogue;
    // SAFETY (for every block below): as stated in this function's contract; the input,
    // output and scratch ranges of one step never overlap (gemv_add accumulates into x
    // through one `&mut`, from a product kept in its scratch).
    unsafe {
        match exec {
            Exec::Embed {
                row,
                table,
                tokens,
                out,
                n: width,
            } => {
                for t in 0..n {
                    let id = i32_at(mem, *tokens, t) as usize;
                    row(
                        weight_row(table, id),
                        f32s_mut(mem, out + 4 * t * width, *width),
                    );
                }
            }
            Exec::RmsNorm {
                f,
                x,
                gamma,
                out,
                n: width,
                eps,
            } => {
                let gamma = std::slice::from_raw_parts(*gamma, *width);
                for t in 0..n {
                    let o = f32s_mut(mem, out + 4 * t * width, *width);
                    f(f32s(mem, x + 4 * t * width, *width), gamma, *eps, o);
                }
            }
            Exec::Gemv {
                gemv,
                w,
                x,
                xq,
                out,
                k,
                n: rows,
            } => {
                for t in 0..n {
                    let row = f32s(mem, x + 4 * t * k, *k);
                    let q = quantize(mem, xq, row);
                    gemv(
                        w.ptr,
                        w.row_bytes,
                        row,
                        q,
                        f32s_mut(mem, out + 4 * t * rows, *rows),
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
                for t in 0..n {
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
                for t in 0..n {
                    let p = i32_at(mem, *pos, t) as usize;
                    f32s_mut(mem, kc + 4 * p * width, *width).copy_from_slice(f32s(
                        mem,
                        k + 4 * t * width,
                        *width,
                    ));
                    f32s_mut(mem, vc + 4 * p * width, *width).copy_from_slice(f32s(
                        mem,
                        v + 4 * t * width,
                        *width,
                    ));
                }
            }
            Exec::Attend {
                f,
                q,
                kc,
                vc,
                pos,
                out,
                scores,
                n: width,
                heads,
                kv_heads,
            } => {
                let kv = width / heads * kv_heads;
                for t in 0..n {
                    let n_past = i32_at(mem, *pos, t) as usize + 1;
                    f(
                        f32s(mem, q + 4 * t * width, *width),
                        f32s(mem, *kc, n_past * kv),
                        f32s(mem, *vc, n_past * kv),
                        n_past,
                        *heads,
                        *kv_heads,
                        f32s_mut(mem, *scores, n_past),
                        f32s_mut(mem, out + 4 * t * width, *width),
                    );
                }
            }
            Exec::Proj {
                x,
                pos,
                k,
                norm,
                xq,
                outs,
            } => {
                for t in 0..n {
                    let row = input_row(mem, *x, t, *k, norm);
                    let q = quantize(mem, xq, row);
                    for o in outs {
                        let dst_row = match o.epilogue {
                            Epilogue::Store | Epilogue::Rope { .. } => t,
                            Epilogue::RopeToCache { .. } | Epilogue::ToCache => {
                                i32_at(mem, *pos, t) as usize
                            }
                        };
                        let dst = f32s_mut(mem, o.dst + 4 * dst_row * o.n, o.n);
                        (o.gemv)(o.w.ptr, o.w.row_bytes, row, q, dst);
                        if let Epilogue::Rope { heads, layout, .. }
                        | Epilogue::RopeToCache { heads, layout, .. } = o.epilogue
                        {
                            (o.rope)(dst, heads, i32_at(mem, *pos, t), &o.freqs, layout);
                        }
                    }
                }
            }
            Exec::SwiGlu {
                x,
                out,
                k,
                n: width,
                norm,
                xq,
                gate,
                up,
                silu_mul,
                up_scratch,
            } => {
                for t in 0..n {
                    let row = input_row(mem, *x, t, *k, norm);
                    let q = quantize(mem, xq, row);
                    let g = f32s_mut(mem, out + 4 * t * width, *width);
                    let u = f32s_mut(mem, *up_scratch, *width);
                    (gate.0)(gate.1.ptr, gate.1.row_bytes, row, q, g);
                    (up.0)(up.1.ptr, up.1.row_bytes, row, q, u);
                    silu_mul(g, u);
                }
            }
            Exec::GemvAdd {
                gemv,
                acc,
                w,
                x,
                a,
                xq,
                k,
                n: width,
                scratch,
            } => {
                for t in 0..n {
                    let prod = f32s_mut(mem, *scratch, *width);
                    let row = f32s(mem, a + 4 * t * k, *k);
                    let q = quantize(mem, xq, row);
                    gemv(w.ptr, w.row_bytes, row, q, prod);
                    acc(f32s_mut(mem, x + 4 * t * width, *width), prod);
                }
            }
            Exec::Binary {
                f,
                a,
                b,
                out,
                n: width,
            } => {
                for t in 0..n {
                    let o = f32s_mut(mem, out + 4 * t * width, *width);
                    f(
                        f32s(mem, a + 4 * t * width, *width),
                        f32s(mem, b + 4 * t * width, *width),
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
                for t in 0..n {
                    f(
                        f32s(mem, x + 4 * t * width, *width),
                        f32s_mut(mem, out + 4 * t * width, *width),
                    );
                }
            }
        }
    }
}
