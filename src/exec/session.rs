//! A `Session` owns the memory one plan runs in — the KV caches and the activation arena, one
//! zeroed block made when the session is created (`memory.rs`) — and runs forward steps.

use std::sync::Arc;

use super::memory::SessionMemory;
use super::step::{run_worker, WorkerTimes};
use super::threads::{Barrier, Pool};
use crate::plan::Plan;

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
    #[error("sequence {seq} is out of range: the KV memory holds {sequences}")]
    SequenceOutOfRange { seq: usize, sequences: usize },
    #[error("rows {a} and {b} both write position {pos} of sequence {seq}")]
    DuplicateRow {
        a: usize,
        b: usize,
        seq: usize,
        pos: usize,
    },
}

/// One row of a batched call: `token` at position `pos` of sequence `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub seq: usize,
    pub pos: usize,
    pub token: u32,
}

/// The rows of one call: a run of tokens of one sequence from a position, or a batch.
#[derive(Clone, Copy)]
enum Rows<'a> {
    Run {
        seq: usize,
        pos: usize,
        tokens: &'a [u32],
    },
    Batch(&'a [Row]),
}

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::Run { tokens, .. } => tokens.len(),
            Rows::Batch(rows) => rows.len(),
        }
    }

    fn get(&self, i: usize) -> Row {
        match *self {
            Rows::Run { seq, pos, tokens } => Row {
                seq,
                pos: pos + i,
                token: tokens[i],
            },
            Rows::Batch(rows) => rows[i],
        }
    }
}

/// Where a plan's interface buffers sit in session memory.
#[derive(Clone, Copy)]
struct Io {
    tokens: usize,
    positions: Option<usize>,
    sequences: Option<usize>,
    logits: usize,
}

impl Io {
    fn of(plan: &Plan) -> Result<Io, ExecError> {
        let tokens = plan.tokens.ok_or(ExecError::Interface("tokens"))?;
        let logits = plan
            .outputs
            .first()
            .map(|o| o.1)
            .ok_or(ExecError::Interface("logits"))?;
        Ok(Io {
            tokens: plan.buffers[tokens.0 as usize].offset,
            positions: plan.positions.map(|b| plan.buffers[b.0 as usize].offset),
            sequences: plan.sequence_ids.map(|b| plan.buffers[b.0 as usize].offset),
            logits: plan.buffers[logits.0 as usize].offset,
        })
    }
}

pub struct Session {
    /// The plan for one token at a time (or for `seq` tokens with every token's logits).
    plan: Arc<Plan>,
    /// An optional plan for prompts: many tokens per step, batched kernels, the last
    /// token's logits. It shares the KV region with `plan`.
    prefill: Option<Arc<Plan>>,
    io: Io,
    prefill_io: Option<Io>,
    pool: Pool,
    /// The block every offset of the plans is relative to (`mem` is its first byte).
    _memory: SessionMemory,
    mem: *mut u8,
    /// Positions written to the KV caches so far.
    pos: usize,
    n_vocab: usize,
}

// SAFETY: `mem` points into `_memory`, owned by the session and only reached through `&mut self`
// while running; moving the session to another thread moves sole ownership with it (the
// workers only touch it inside `forward_*`, which returns after they all finished).
unsafe impl Send for Session {}

impl Session {
    /// Allocates the arena and KV region once (64-byte aligned, zeroed) and starts the
    /// plan's worker threads.
    pub fn new(plan: Arc<Plan>) -> Result<Session, ExecError> {
        Session::build(plan, None)
    }

    /// A session that feeds prompts through `prefill` (a plan for many tokens, usually
    /// with `Logits::Last`) in chunks of its `seq`, and single tokens through `decode`. Both
    /// must be plans of the same graph, context and thread count: their KV caches then sit
    /// at the same offsets (plan/lower.rs) and one memory holds both.
    pub fn with_prefill(decode: Arc<Plan>, prefill: Arc<Plan>) -> Result<Session, ExecError> {
        Session::build(decode, Some(prefill))
    }

    fn build(plan: Arc<Plan>, prefill: Option<Arc<Plan>>) -> Result<Session, ExecError> {
        let io = Io::of(&plan)?;
        let prefill_io = prefill.as_deref().map(Io::of).transpose()?;
        let mut size = plan.session_bytes();
        if let Some(p) = &prefill {
            let caches = |q: &Plan| -> Vec<(String, usize, usize)> {
                q.buffers
                    .iter()
                    .filter(|b| b.kind == crate::plan::BufKind::KvCache)
                    .map(|b| (b.name.clone(), b.offset, b.bytes))
                    .collect()
            };
            if p.n_ctx != plan.n_ctx
                || p.threads != plan.threads
                || p.sequences != plan.sequences
                || caches(p) != caches(&plan)
            {
                return Err(ExecError::Interface(
                    "a prefill plan with the decode plan's context, threads, sequences and KV caches",
                ));
            }
            size = size.max(p.session_bytes());
        }
        let pool = Pool::new(plan.threads).map_err(|_| ExecError::Interface("worker threads"))?;
        let memory = SessionMemory::new(size).ok_or(ExecError::Interface(
            "session memory (the system gave none)",
        ))?;
        let mem = memory.ptr();
        let logits_buf = &plan.buffers[plan.outputs[0].1 .0 as usize];
        Ok(Session {
            n_vocab: logits_buf.fact.cols(),
            io,
            prefill_io,
            plan,
            prefill,
            pool,
            _memory: memory,
            mem,
            pos: 0,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn prefill_plan(&self) -> Option<&Plan> {
        self.prefill.as_deref()
    }

    /// Positions filled so far (the next token's position).
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Sequences the KV memory holds (the plans' `sequences`).
    pub fn sequences(&self) -> usize {
        self.plan.sequences
    }

    /// Forgets the context (the caches are overwritten as positions are reused).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Rewinds to `pos` (≤ the current position): later positions will be recomputed.
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }

    /// Runs `tokens` (at most the main plan's `seq`) at the next positions and returns the
    /// logits of every token, `[tokens.len(), n_vocab]` row-major.
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<&[f32], ExecError> {
        self.check(tokens, self.plan.seq)?;
        let (plan, io) = (self.plan.clone(), self.io);
        let rows = self.run_of(tokens);
        self.pos += tokens.len();
        Ok(self.run(&plan, io, rows, None))
    }

    /// Runs a batch of rows — any sequences, any positions — through the main plan in one
    /// step and returns every row's logits, `[rows.len(), n_vocab]`. Rows of one sequence
    /// may follow each other (a chunk of its prompt); a row attends its sequence's positions
    /// up to its own, which earlier calls or earlier rows of this one must have written.
    /// Each row's logits are bitwise those it gets alone: rows share weights, never sums.
    /// Leaves `position()` alone: the caller keeps each sequence's position.
    pub fn forward_rows(&mut self, rows: &[Row]) -> Result<&[f32], ExecError> {
        self.check_rows(Rows::Batch(rows), self.plan.seq)?;
        let (plan, io) = (self.plan.clone(), self.io);
        Ok(self.run(&plan, io, Rows::Batch(rows), None))
    }

    /// Runs `tokens` of sequence `seq` at positions `pos..` — through the prefill plan in
    /// chunks of its `seq` when it has one — and returns the last token's logits. Leaves
    /// `position()` alone.
    pub fn forward_sequence(
        &mut self,
        seq: usize,
        pos: usize,
        tokens: &[u32],
    ) -> Result<&[f32], ExecError> {
        self.check_rows(Rows::Run { seq, pos, tokens }, usize::MAX)?;
        Ok(self.chunks(seq, pos, tokens, &mut |_| {}))
    }

    /// As `forward_all` for one call, adding every worker's time in each step's kernels and
    /// at the barriers before them to `times` (for `qgraph profile`).
    pub fn forward_timed(
        &mut self,
        tokens: &[u32],
        times: &mut StepTimes,
    ) -> Result<&[f32], ExecError> {
        let steps = self.plan.steps.len();
        if times.work.len() != steps * self.threads() || times.wait.len() != times.work.len() {
            return Err(ExecError::Interface("step timings"));
        }
        self.check(tokens, self.plan.seq)?;
        let (plan, io) = (self.plan.clone(), self.io);
        let rows = self.run_of(tokens);
        self.pos += tokens.len();
        Ok(self.run(&plan, io, rows, Some(times)))
    }

    /// Runs `tokens`, any number that fits in the context, and returns the logits of the
    /// last one. With a prefill plan, runs of more than one token go through it in chunks
    /// of its `seq`; single tokens (and sessions without one) go through the main plan.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<&[f32], ExecError> {
        self.forward_with(tokens, &mut |_| {})
    }

    /// As `forward`, calling `progress(done)` after each chunk with the tokens run so far
    /// (long prompts take seconds; the caller may show how far it got).
    pub fn forward_with(
        &mut self,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
    ) -> Result<&[f32], ExecError> {
        self.check(tokens, usize::MAX)?;
        let pos = self.pos;
        self.pos += tokens.len();
        Ok(self.chunks(0, pos, tokens, progress))
    }

    /// The rows of a call of `tokens` at the session's position, in sequence 0.
    fn run_of<'a>(&self, tokens: &'a [u32]) -> Rows<'a> {
        Rows::Run {
            seq: 0,
            pos: self.pos,
            tokens,
        }
    }

    /// Runs `tokens` (checked) of sequence `seq` from `pos`, in prefill-plan chunks, and
    /// returns the last token's logits.
    fn chunks(
        &mut self,
        seq: usize,
        pos: usize,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
    ) -> &[f32] {
        let mut rest = tokens;
        let mut last: (usize, usize) = (0, 0);
        while !rest.is_empty() {
            let (plan, io) = match (&self.prefill, self.prefill_io) {
                (Some(p), Some(io)) if rest.len() > 1 => (p.clone(), io),
                _ => (self.plan.clone(), self.io),
            };
            let take = rest.len().min(plan.seq);
            let (chunk, tail) = rest.split_at(take);
            let done = tokens.len() - rest.len();
            let run = Rows::Run {
                seq,
                pos: pos + done,
                tokens: chunk,
            };
            let rows = self.run(&plan, io, run, None).len() / self.n_vocab;
            last = (io.logits, rows);
            rest = tail;
            progress(tokens.len() - rest.len());
        }
        let (off, rows) = last;
        // SAFETY: the last plan run left `rows` rows of logits at `off` in the arena, and
        // nothing has run since.
        let all = unsafe {
            std::slice::from_raw_parts(self.mem.add(off) as *const f32, rows * self.n_vocab)
        };
        &all[all.len() - self.n_vocab..]
    }

    /// The per-call checks of a run at the session's position.
    fn check(&self, tokens: &[u32], max: usize) -> Result<(), ExecError> {
        self.check_rows(self.run_of(tokens), max)
    }

    /// The per-call checks: the only ones a forward step makes. No allocation.
    fn check_rows(&self, rows: Rows<'_>, max: usize) -> Result<(), ExecError> {
        let n = rows.len();
        if n == 0 {
            return Err(ExecError::Empty);
        }
        if n > max {
            return Err(ExecError::TooManyTokens { got: n, seq: max });
        }
        let (n_ctx, n_vocab, sequences) = (self.plan.n_ctx, self.n_vocab, self.plan.sequences);
        if let Rows::Run { pos, .. } = rows {
            if pos.saturating_add(n) > n_ctx {
                return Err(ExecError::ContextFull {
                    n_ctx,
                    needed: pos.saturating_add(n),
                });
            }
        }
        for i in 0..n {
            let r = rows.get(i);
            if r.seq >= sequences {
                return Err(ExecError::SequenceOutOfRange {
                    seq: r.seq,
                    sequences,
                });
            }
            if r.pos >= n_ctx {
                return Err(ExecError::ContextFull {
                    n_ctx,
                    needed: r.pos.saturating_add(1),
                });
            }
            if r.token as usize >= n_vocab {
                return Err(ExecError::TokenOutOfRange {
                    token: r.token,
                    n_vocab,
                });
            }
        }
        if let Rows::Batch(batch) = rows {
            // Two rows at one cache position would be two workers writing the same bytes.
            for (a, x) in batch.iter().enumerate() {
                if let Some(b) = batch[a + 1..]
                    .iter()
                    .position(|y| (y.seq, y.pos) == (x.seq, x.pos))
                {
                    return Err(ExecError::DuplicateRow {
                        a,
                        b: a + 1 + b,
                        seq: x.seq,
                        pos: x.pos,
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs one call of `plan` (checked by `check_rows`: at most `plan.seq` rows, ids,
    /// positions and sequences in range) and returns its logits rows.
    fn run(
        &mut self,
        plan: &Plan,
        io: Io,
        rows: Rows<'_>,
        times: Option<&mut StepTimes>,
    ) -> &[f32] {
        let n = rows.len();
        // SAFETY: the tokens, positions and sequence buffers hold `seq` i32 each
        // (plan/infer.rs, plan/lower.rs), and n ≤ seq (checked by the callers).
        unsafe {
            let (t, p, s) = (
                self.mem.add(io.tokens) as *mut i32,
                io.positions.map(|p| self.mem.add(p) as *mut i32),
                io.sequences.map(|s| self.mem.add(s) as *mut i32),
            );
            for i in 0..n {
                let r = rows.get(i);
                *t.add(i) = r.token as i32;
                if let Some(p) = p {
                    *p.add(i) = r.pos as i32;
                }
                if let Some(s) = s {
                    *s.add(i) = r.seq as i32;
                }
            }
        }
        let mem = SharedMem(self.mem);
        let steps = plan.steps.len();
        let times = times.map(|t| Times(t.work.as_mut_ptr(), t.wait.as_mut_ptr()));
        let work = |w: usize, barrier: &Barrier| {
            // SAFETY: worker w takes rows w·steps.. of both tables, which `times` lends for
            // this call (forward_timed checked they hold a row per worker): no two workers
            // touch the same entries.
            let times = times.map(|t| unsafe {
                WorkerTimes {
                    work: std::slice::from_raw_parts_mut(t.0.add(w * steps), steps),
                    wait: std::slice::from_raw_parts_mut(t.1.add(w * steps), steps),
                }
            });
            // SAFETY: `mem` holds the session memory for both plans (sized in `build`); the
            // plan's offsets are valid in it; token ids are < n_vocab and positions < n_ctx
            // (checked by the callers); every worker runs `run_worker` for the same call.
            unsafe { run_worker(plan, mem.get(), n, w, barrier, times) };
        };
        self.pool.run(&work);
        let rows = if plan.last_row_only { 1 } else { n };
        // SAFETY: the logits buffer holds `rows * n_vocab` f32 in the arena.
        unsafe {
            std::slice::from_raw_parts(self.mem.add(io.logits) as *const f32, rows * self.n_vocab)
        }
    }
}

/// Every worker's timings of profiled calls: `[threads][steps]` row-major, in nanoseconds.
pub struct StepTimes {
    /// Time in each step's kernels.
    pub work: Vec<u64>,
    /// Time waiting at the barriers before each step's phases.
    pub wait: Vec<u64>,
}

impl StepTimes {
    /// Zeroed tables for a session's plan.
    pub fn new(session: &Session) -> StepTimes {
        let n = session.plan.steps.len() * session.threads();
        StepTimes {
            work: vec![0; n],
            wait: vec![0; n],
        }
    }
}

/// The timing tables of a profiled call, lent to the workers (each its own rows).
#[derive(Clone, Copy)]
struct Times(*mut u64, *mut u64);
// SAFETY: each worker dereferences only its own rows, during the call that lent them.
unsafe impl Sync for Times {}
unsafe impl Send for Times {}

/// The session memory's base pointer, handed to the workers of one call.
#[derive(Clone, Copy)]
struct SharedMem(*mut u8);

impl SharedMem {
    fn get(self) -> *mut u8 {
        self.0
    }
}

// SAFETY: workers write disjoint byte ranges between barriers (plan/parallel.rs) and the
// call returns only after all of them finished (exec/threads.rs).
unsafe impl Sync for SharedMem {}
unsafe impl Send for SharedMem {}
