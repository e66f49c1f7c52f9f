//! Work split between threads, decided once per plan: every step becomes one or two phases
//! (a product step's input preparation, then its products), each phase gives every worker a
//! fixed range (tokens, matrix rows or heads), and a barrier is placed before a phase only
//! where it is needed: where a worker would touch bytes another worker wrote, or write
//! bytes another worker read, since the last barrier.
//!
//! The hazard analysis works on byte ranges of the session memory (not on buffers), so it
//! also sees the arena's reuse of one buffer's bytes by another.
//!
//! Determinism: each output element is computed whole by one worker, with the same kernel
//! and the same operation order whatever the thread count. Product rows are split on
//! multiples of 16 (and of the head size where rope follows), so even the batched kernels'
//! row panels line up; logits are bitwise identical for any number of threads.

use super::step::{Exec, Prep};
use super::{BufKind, Buffer, PlanError, Step};
use crate::graph::Epilogue;

/// How a phase's work is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Token rows: worker w takes rows `a..b`.
    Tokens,
    /// Output rows of the step's matrices (concatenated in output order).
    Rows,
    /// Attention's (token row, KV head) units, row-major: a unit is the row's query heads
    /// of that KV head's group.
    Heads,
    /// Every worker prepares the (single) row into its own slot: no barrier after it.
    PerWorker,
    /// Worker 0 alone.
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// Norm and quantize a product step's input rows.
    Prep,
    /// The step itself.
    Run,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub step: usize,
    pub kind: PhaseKind,
    pub split: Split,
    /// Worker w's range `[a, b)` (empty when `a == b`).
    pub parts: Vec<(usize, usize)>,
    /// Whether every worker waits for all others before this phase.
    pub barrier: bool,
}

/// Splits `total` units of `unit` items into `n` contiguous ranges as even as possible.
fn even(total_items: usize, unit: usize, n: usize) -> Vec<(usize, usize)> {
    let units = total_items.div_ceil(unit);
    (0..n)
        .map(|w| {
            let a = ((units * w).div_ceil(n) * unit).min(total_items);
            let b = ((units * (w + 1)).div_ceil(n) * unit).min(total_items);
            (a, b)
        })
        .collect()
}

/// Total product rows of a step and the alignment of its row split.
fn rows_and_unit(exec: &Exec) -> Option<(usize, usize)> {
    match exec {
        Exec::Gemv { n, .. } | Exec::SwiGlu { n, .. } | Exec::GemvAdd { n, .. } => Some((*n, 16)),
        Exec::Proj { outs, .. } => {
            let total: usize = outs.iter().map(|o| o.n).sum();
            let mut unit = 16;
            for o in outs {
                if let Epilogue::Rope { heads, .. } | Epilogue::RopeToCache { heads, .. } =
                    o.epilogue
                {
                    unit = lcm(unit, o.n / heads);
                }
                // A cache receives whole heads (a Q8_0 block never straddles two workers).
                if let Some(kv) = &o.kv {
                    unit = lcm(unit, kv.geom.head_dim);
                }
            }
            // Every output must start on a unit boundary for its rows to split cleanly.
            let aligned = outs.iter().all(|o| o.row0 % unit == 0);
            Some((total, if aligned { unit } else { total.max(1) }))
        }
        _ => None,
    }
}

fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if a == 0 || b == 0 {
        a.max(b)
    } else {
        a / gcd(a, b) * b
    }
}

/// The prep of a product step, if it has one with work to do.
pub fn prep_of(exec: &Exec) -> Option<&Prep> {
    let p = match exec {
        Exec::Gemv { prep, .. }
        | Exec::Proj { prep, .. }
        | Exec::SwiGlu { prep, .. }
        | Exec::GemvAdd { prep, .. } => prep,
        _ => return None,
    };
    (p.norm.is_some() || p.xq.is_some()).then_some(p)
}

/// The phases of `steps` for `threads` workers, with their barriers.
pub fn schedule(
    steps: &[Step],
    buffers: &[Buffer],
    threads: usize,
) -> Result<Vec<Phase>, PlanError> {
    let mut phases = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if prep_of(&s.exec).is_some() {
            let (split, parts) = if s.rows == 1 {
                (Split::PerWorker, vec![(0, 1); threads])
            } else {
                (Split::Tokens, even(s.rows, 1, threads))
            };
            phases.push(Phase {
                step: i,
                kind: PhaseKind::Prep,
                split,
                parts,
                barrier: false,
            });
        }
        let (split, parts) = match &s.exec {
            Exec::Attend { kv_heads, .. } => (Split::Heads, even(s.rows * kv_heads, 1, threads)),
            // Only plans with passes off (or an attention whose K/V rows take a step of
            // their own first, as Gemma's per-head norms make them) copy into caches: one
            // worker does every row.
            Exec::LastRow { .. } | Exec::KvWrite { .. } => (Split::Single, single(s.rows, threads)),
            e => match rows_and_unit(e) {
                Some((total, unit)) => (Split::Rows, even(total, unit, threads)),
                None => (Split::Tokens, even(s.rows, 1, threads)),
            },
        };
        phases.push(Phase {
            step: i,
            kind: PhaseKind::Run,
            split,
            parts,
            barrier: false,
        });
    }
    place_barriers(&mut phases, steps, buffers, threads)?;
    Ok(phases)
}

/// All `rows` to worker 0.
fn single(rows: usize, threads: usize) -> Vec<(usize, usize)> {
    (0..threads)
        .map(|w| if w == 0 { (0, rows) } else { (0, 0) })
        .collect()
}

/// Sorted, merged byte ranges.
#[derive(Default, Clone)]
struct Ranges(Vec<(usize, usize)>);

impl Ranges {
    fn add(&mut self, a: usize, b: usize) {
        if a < b {
            self.0.push((a, b));
        }
    }

    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut out: Vec<(usize, usize)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        self.0 = out;
    }

    fn union(&mut self, other: &Ranges) {
        self.0.extend_from_slice(&other.0);
        self.normalize();
    }

    /// Both normalized.
    fn intersects(&self, other: &Ranges) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            if a.0 < b.1 && b.0 < a.1 {
                return true;
            }
            if a.1 <= b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }
}

/// What one worker reads and writes in one phase.
#[derive(Default, Clone)]
struct Access {
    reads: Ranges,
    writes: Ranges,
}

struct Mem<'a> {
    buffers: &'a [Buffer],
}

impl Mem<'_> {
    fn buf(&self, b: super::BufId) -> &Buffer {
        &self.buffers[b.0 as usize]
    }

    /// Rows `t0..t1` of a buffer (a cache: all of it).
    fn rows(&self, r: &mut Ranges, b: super::BufId, t0: usize, t1: usize) {
        let buf = self.buf(b);
        if buf.kind == BufKind::KvCache {
            return r.add(buf.offset, buf.offset + buf.bytes);
        }
        let n_rows = buf.fact.shape.first().copied().unwrap_or(1).max(1);
        let row = buf.bytes / n_rows;
        let (t0, t1) = (t0.min(n_rows), t1.min(n_rows));
        r.add(buf.offset + t0 * row, buf.offset + t1 * row);
    }

    fn whole(&self, r: &mut Ranges, b: super::BufId) {
        let buf = self.buf(b);
        r.add(buf.offset, buf.offset + buf.bytes);
    }

    /// Columns `c0..c1` of every row of a `[rows, cols]` f32 activation at `off`.
    fn cols(r: &mut Ranges, off: usize, rows: usize, cols: usize, c0: usize, c1: usize) {
        for t in 0..rows {
            r.add(off + 4 * (t * cols + c0), off + 4 * (t * cols + c1));
        }
    }
}

/// Bytes of slot `s` of a prep's normed rows and quantized rows.
fn prep_slots(prep: &Prep, s0: usize, s1: usize, r: &mut Ranges) {
    if let Some(n) = &prep.norm {
        r.add(n.scratch + 4 * prep.k * s0, n.scratch + 4 * prep.k * s1);
    }
    if let Some(q) = &prep.xq {
        let bytes = q.blocks * std::mem::size_of::<crate::kernels::BlockQ8Act>();
        r.add(q.at + bytes * s0, q.at + bytes * s1);
    }
}

fn access(m: &Mem, step: &Step, ph: &Phase, w: usize) -> Access {
    let (a, b) = ph.parts[w];
    let mut acc = Access::default();
    if a >= b {
        return acc;
    }
    let rows = step.rows;
    match (ph.kind, ph.split) {
        (PhaseKind::Prep, split) => {
            let prep = prep_of(&step.exec).expect("prep phase of a step with a prep");
            let (t0, t1, s0, s1) = if split == Split::PerWorker {
                (0, 1, w, w + 1)
            } else {
                (a, b, a, b)
            };
            acc.reads
                .add(prep.x + 4 * prep.k * t0, prep.x + 4 * prep.k * t1);
            prep_slots(prep, s0, s1, &mut acc.writes);
        }
        (PhaseKind::Run, Split::Tokens) => {
            for &i in &step.inputs {
                m.rows(&mut acc.reads, i, a, b);
            }
            for &o in &step.outputs {
                m.rows(&mut acc.writes, o, a, b);
            }
        }
        (PhaseKind::Run, Split::Heads) => {
            for &i in &step.inputs {
                m.whole(&mut acc.reads, i);
            }
            if let Exec::Attend {
                params,
                out,
                work,
                n,
                kv_heads,
                ..
            } = &step.exec
            {
                let span = params.group * params.geom.head_dim;
                for u in a..b {
                    let (t, g) = (u / kv_heads, u % kv_heads);
                    let at = out + 4 * (t * n + g * span);
                    acc.writes.add(at, at + 4 * span);
                }
                let per = 4 * params.work_len();
                acc.writes.add(work + w * per, work + (w + 1) * per);
            }
        }
        (PhaseKind::Run, Split::Rows) => {
            // The prepared input: every slot this worker's products read.
            if let Some(prep) = prep_of(&step.exec) {
                if rows == 1 {
                    prep_slots(prep, w, w + 1, &mut acc.reads);
                } else {
                    prep_slots(prep, 0, rows, &mut acc.reads);
                }
            }
            // gemv_add's input 0 is the sum it accumulates into: written by columns below.
            let skip = matches!(step.exec, Exec::GemvAdd { .. }) as usize;
            for &i in &step.inputs[skip..] {
                m.whole(&mut acc.reads, i);
            }
            match &step.exec {
                Exec::Gemv { out, n, .. } => Mem::cols(&mut acc.writes, *out, rows, *n, a, b),
                Exec::SwiGlu {
                    out, n, up_scratch, ..
                } => {
                    Mem::cols(&mut acc.writes, *out, rows, *n, a, b);
                    Mem::cols(&mut acc.writes, *up_scratch, rows, *n, a, b);
                }
                Exec::GemvAdd { x, n, scratch, .. } => {
                    Mem::cols(&mut acc.writes, *x, rows, *n, a, b);
                    Mem::cols(&mut acc.writes, *scratch, rows, *n, a, b);
                }
                Exec::Proj { outs, .. } => {
                    for (o, &buf) in outs.iter().zip(&step.outputs) {
                        let (lo, hi) = (a.max(o.row0), b.min(o.row0 + o.n));
                        if lo >= hi {
                            continue;
                        }
                        let (c0, c1) = (lo - o.row0, hi - o.row0);
                        Mem::cols(&mut acc.writes, o.dst, rows, o.n, c0, c1);
                        if let Some(kv) = &o.kv {
                            // The regions of heads c0..c1 (whole heads: rows_and_unit), at
                            // any position: positions are only known at run time.
                            let cache = m.buf(buf);
                            let per_head = cache.bytes / kv.geom.kv_heads;
                            let hd = kv.geom.head_dim;
                            let (g0, g1) = (c0 / hd, c1.div_ceil(hd));
                            acc.writes
                                .add(cache.offset + g0 * per_head, cache.offset + g1 * per_head);
                        }
                    }
                }
                _ => {}
            }
        }
        (PhaseKind::Run, _) => {
            for &i in &step.inputs {
                m.whole(&mut acc.reads, i);
            }
            for &o in step
                .outputs
                .iter()
                .chain(&step.scratch)
                .chain(&step.qscratch)
            {
                m.whole(&mut acc.writes, o);
            }
        }
    }
    acc.reads.normalize();
    acc.writes.normalize();
    acc
}

fn place_barriers(
    phases: &mut [Phase],
    steps: &[Step],
    buffers: &[Buffer],
    threads: usize,
) -> Result<(), PlanError> {
    if threads == 1 {
        return Ok(());
    }
    let m = Mem { buffers };
    let mut since: Vec<Access> = vec![Access::default(); threads];
    for ph in phases.iter_mut() {
        let step = &steps[ph.step];
        let now: Vec<Access> = (0..threads).map(|w| access(&m, step, ph, w)).collect();
        // Within a phase, workers must never touch each other's writes: that is the split.
        for w in 0..threads {
            for v in 0..threads {
                if v != w
                    && (now[v].writes.intersects(&now[w].writes)
                        || now[v].writes.intersects(&now[w].reads))
                {
                    return Err(PlanError::Options(format!(
                        "internal: step `{}` cannot be split between {threads} threads",
                        step.name
                    )));
                }
            }
        }
        let conflict = (0..threads).any(|w| {
            (0..threads).any(|v| {
                v != w
                    && (since[v].writes.intersects(&now[w].reads)
                        || since[v].writes.intersects(&now[w].writes)
                        || since[v].reads.intersects(&now[w].writes))
            })
        });
        if conflict {
            ph.barrier = true;
            for s in since.iter_mut() {
                *s = Access::default();
            }
        }
        for (s, n) in since.iter_mut().zip(&now) {
            s.reads.union(&n.reads);
            s.writes.union(&n.writes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_splits_cover_the_range_on_unit_boundaries() {
        assert_eq!(even(960, 64, 2), vec![(0, 512), (512, 960)]);
        assert_eq!(even(10, 16, 2), vec![(0, 10), (10, 10)]);
        assert_eq!(even(9, 1, 2), vec![(0, 5), (5, 9)]);
        let parts = even(1536, 16, 3);
        assert_eq!(parts.first().unwrap().0, 0);
        assert_eq!(parts.last().unwrap().1, 1536);
        for w in parts.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            assert_eq!(w[0].1 % 16, 0);
        }
    }

    #[test]
    fn ranges_intersect_only_when_they_overlap() {
        let mut a = Ranges::default();
        a.add(0, 10);
        a.add(20, 30);
        a.normalize();
        let mut b = Ranges::default();
        b.add(10, 20);
        b.normalize();
        assert!(!a.intersects(&b));
        b.add(29, 31);
        b.normalize();
        assert!(a.intersects(&b));
    }
}
