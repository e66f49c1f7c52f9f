//! The batch scheduler: which request runs where and what the next forward step is.
//!
//! The KV memory holds one region per slot (`PlanOptions::sequences`). A request waits in a
//! bounded queue until a slot is free, then takes the free slot whose cached tokens share the
//! longest prefix with its prompt when that is over half of it (a chat turn finds its
//! conversation still there), else the one used least recently, whose cache it evicts. Its prompt is then fed in chunks; once it
//! is in, the request decodes one token per step with every other decoding request, in one
//! batched call. While prompts and decodes are both pending the steps alternate — one
//! prompt chunk, one decode step — so a long prompt never stalls the streams already
//! running, and a new one never waits for them to finish. Short prompts (a quarter chunk
//! or less) go in back to back, so new requests join the batch at once.
//!
//! The scheduler knows token ids and counts, never logits or text: the engine samples and
//! decides on end-of-generation and stop strings, and tells the scheduler (`accept`,
//! `finish`). Nothing here allocates per step once the slots' caches have grown.

use std::collections::VecDeque;
use std::ops::Range;

use crate::exec::Row;

/// A request's id, the engine's to choose.
pub type JobId = u64;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Slots: sequences decoded together (the KV memory's regions).
    pub slots: usize,
    /// Positions each slot's region holds.
    pub n_ctx: usize,
    /// Prompt tokens fed per prefill step.
    pub chunk: usize,
    /// Requests that may wait for a slot.
    pub queue: usize,
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("every slot is busy and the queue is full ({0} waiting)")]
    Busy(usize),
    #[error("the prompt has {tokens} tokens; the context holds {n_ctx}, and one position is needed to generate")]
    TooLong { tokens: usize, n_ctx: usize },
    #[error("the prompt is empty")]
    Empty,
}

/// Why a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End of generation or a stop string (the engine's call).
    Stop,
    /// `max_tokens` reached, or the slot's context is full.
    Length,
}

/// The next forward step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Feed `prompt(slot)[range]` at positions `range` of the slot's region.
    Prefill { slot: usize, range: Range<usize> },
    /// One token of every decoding slot: the rows were written to the caller's buffer.
    Decode,
}

#[derive(Debug)]
struct Job {
    id: JobId,
    prompt: Vec<u32>,
    /// Tokens to generate at most.
    max_new: usize,
}

#[derive(Debug)]
struct Running {
    job: Job,
    /// Prompt tokens whose K and V are in the slot's region (positions 0..fed).
    fed: usize,
    generated: usize,
    /// The sampled token not yet fed (decoding), or none (prompt still going in).
    next: Option<u32>,
    /// Admission order, for first-come prefill.
    ticket: u64,
}

#[derive(Debug, Default)]
struct Slot {
    /// The tokens whose K and V sit at positions 0..len of this slot's region.
    cached: Vec<u32>,
    run: Option<Running>,
    last_used: u64,
}

pub struct Scheduler {
    limits: Limits,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    clock: u64,
    /// Whether the last step fed a prompt chunk (the next prefers a decode step).
    last_was_prefill: bool,
}

impl Scheduler {
    pub fn new(limits: Limits) -> Scheduler {
        assert!(limits.slots > 0 && limits.n_ctx > 1 && limits.chunk > 0);
        Scheduler {
            // Room for a whole context up front: caches never grow during a step.
            slots: (0..limits.slots)
                .map(|_| Slot {
                    cached: Vec::with_capacity(limits.n_ctx),
                    ..Slot::default()
                })
                .collect(),
            queue: VecDeque::with_capacity(limits.queue),
            clock: 0,
            last_was_prefill: false,
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Queues a request. `max_new` ≥ 1 tokens are generated at most (fewer when the
    /// context fills first).
    pub fn submit(&mut self, id: JobId, prompt: Vec<u32>, max_new: usize) -> Result<(), Reject> {
        if prompt.is_empty() {
            return Err(Reject::Empty);
        }
        if prompt.len() >= self.limits.n_ctx {
            return Err(Reject::TooLong {
                tokens: prompt.len(),
                n_ctx: self.limits.n_ctx,
            });
        }
        // Would it wait, with the queue already holding as many as may wait?
        let free = self.slots.iter().filter(|s| s.run.is_none()).count();
        if (self.queue.len() + 1).saturating_sub(free) > self.limits.queue {
            return Err(Reject::Busy(self.queue.len().saturating_sub(free)));
        }
        self.queue.push_back(Job {
            id,
            prompt,
            max_new: max_new.max(1),
        });
        Ok(())
    }

    /// Requests running or waiting.
    pub fn load(&self) -> (usize, usize) {
        let running = self.slots.iter().filter(|s| s.run.is_some()).count();
        (running, self.queue.len())
    }

    /// The slot running `id`, if any.
    pub fn slot_of(&self, id: JobId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.run.as_ref().is_some_and(|r| r.job.id == id))
    }

    /// The job running in `slot`.
    pub fn job_in(&self, slot: usize) -> Option<JobId> {
        self.slots[slot].run.as_ref().map(|r| r.job.id)
    }

    /// Jobs running, by slot, and waiting.
    pub fn jobs(&self) -> impl Iterator<Item = JobId> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.run.as_ref().map(|r| r.job.id))
            .chain(self.queue.iter().map(|j| j.id))
    }

    /// Prompt tokens `slot`'s request reused from the cache at admission.
    pub fn prompt(&self, slot: usize) -> &[u32] {
        self.slots[slot]
            .run
            .as_ref()
            .map_or(&[], |r| r.job.prompt.as_slice())
    }

    /// Moves queued requests into free slots, then picks the next step; decode rows go to
    /// `rows` (cleared first). None: nothing to do.
    pub fn next(&mut self, rows: &mut Vec<Row>) -> Option<Work> {
        self.admit();
        rows.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(Running {
                next: Some(token), ..
            }) = s.run
            {
                rows.push(Row {
                    seq: i,
                    pos: s.cached.len(),
                    token,
                });
            }
        }
        // The earliest-admitted request still feeding its prompt.
        let prefill = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.run.as_ref().map(|r| (i, r)))
            .filter(|(_, r)| r.next.is_none())
            .min_by_key(|(_, r)| r.ticket)
            .map(|(i, r)| {
                let end = (r.fed + self.limits.chunk).min(r.job.prompt.len());
                Work::Prefill {
                    slot: i,
                    range: r.fed..end,
                }
            });
        let work = match prefill {
            Some(p) if rows.is_empty() || !self.last_was_prefill => p,
            _ if !rows.is_empty() => Work::Decode,
            _ => return None,
        };
        // A short prompt (a quarter chunk or less) costs about one decode step and lets its
        // request join the batch sooner: it does not make the next step a decode step.
        self.last_was_prefill = match &work {
            Work::Prefill { range, .. } => range.len() > self.limits.chunk / 4,
            Work::Decode => false,
        };
        Some(work)
    }

    fn admit(&mut self) {
        while let Some(job) = self.queue.front() {
            let free = || {
                self.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.run.is_none())
            };
            // The slot sharing the longest prefix, if that is most of the prompt (as
            // llama-server's similarity threshold of 0.5); else the least recently used
            // (empty ones first), so one shared token does not evict a whole conversation.
            let shared = free()
                .map(|(i, s)| (common_prefix(&s.cached, &job.prompt), i))
                .max_by_key(|&(n, i)| (n, std::cmp::Reverse(i)))
                .filter(|&(n, _)| 2 * n > job.prompt.len())
                .map(|(_, i)| i);
            let best = shared.or_else(|| free().min_by_key(|(_, s)| s.last_used).map(|(i, _)| i));
            let Some(i) = best else { break };
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.clock += 1;
            let slot = &mut self.slots[i];
            // At least the last prompt token is fed again: its logits pick the first token.
            let keep = common_prefix(&slot.cached, &job.prompt).min(job.prompt.len() - 1);
            slot.cached.truncate(keep);
            slot.last_used = self.clock;
            slot.run = Some(Running {
                job,
                fed: keep,
                generated: 0,
                next: None,
                ticket: self.clock,
            });
        }
    }

    /// Records that the chunk `Work::Prefill { slot, range }` ran. True when the prompt is
    /// now in: the chunk's logits pick the first token (`accept`).
    pub fn prefilled(&mut self, slot: usize, range: Range<usize>) -> bool {
        let s = &mut self.slots[slot];
        let Some(r) = s.run.as_mut() else {
            return false;
        };
        debug_assert_eq!(r.fed, range.start);
        s.cached.extend_from_slice(&r.job.prompt[range.clone()]);
        r.fed = range.end;
        r.fed == r.job.prompt.len()
    }

    /// Takes `token`, sampled from `slot`'s last logits: after a decode step the token fed
    /// then is now cached. Some(Length) when the request has its `max_new` tokens or its
    /// context has no room to feed this one; it then leaves its slot.
    pub fn accept(&mut self, slot: usize, token: u32) -> Option<Finish> {
        let n_ctx = self.limits.n_ctx;
        let s = &mut self.slots[slot];
        let r = s.run.as_mut()?;
        if let Some(fed) = r.next.take() {
            s.cached.push(fed);
        }
        r.generated += 1;
        r.next = Some(token);
        if r.generated >= r.job.max_new || s.cached.len() >= n_ctx {
            s.run = None;
            return Some(Finish::Length);
        }
        None
    }

    /// Ends `slot`'s request (a stop the engine saw). Its cache stays for a later prompt.
    pub fn finish(&mut self, slot: usize) {
        self.slots[slot].run = None;
    }

    /// Drops request `id`, running or waiting. True if it was found.
    pub fn cancel(&mut self, id: JobId) -> bool {
        if let Some(slot) = self.slot_of(id) {
            self.finish(slot);
            return true;
        }
        let before = self.queue.len();
        self.queue.retain(|j| j.id != id);
        self.queue.len() != before
    }

    /// Tokens cached in each slot (for `/props` and the tests).
    pub fn cached(&self, slot: usize) -> &[u32] {
        &self.slots[slot].cached
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
#[path = "scheduler/tests.rs"]
mod tests;
