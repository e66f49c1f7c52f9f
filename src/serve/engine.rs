//! The engine thread: owns the session (one KV memory, a region per slot), runs the
//! scheduler's steps, samples each request's tokens and streams its text back.
//!
//! Requests arrive as `Command`s over a channel; each carries the sender its events go
//! back on. A request whose receiver is gone (the client left) is cancelled before the next
//! step. Per step the engine allocates nothing on the model path: the rows buffer, the
//! samplers and the session memory were made when the engine or the request started.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::api::Generation;
use super::metrics::Metrics;
use super::scheduler::{Finish, JobId, Limits, Reject, Scheduler, Work};
use super::text::{Piece, TextStream};
use crate::exec::{Row, Session};
use crate::sample::Sampler;
use crate::tokenizer::Tokenizer;

pub enum Command {
    Submit(Submit),
    /// Stop taking requests; with `cancel`, end the running ones now, else let them finish.
    Shutdown {
        cancel: bool,
    },
}

pub struct Submit {
    pub prompt: Vec<u32>,
    pub gen: Generation,
    pub events: UnboundedSender<Event>,
}

#[derive(Debug)]
pub enum Event {
    /// Queued: a slot will take it.
    Accepted,
    Rejected(Reject),
    /// More text (never empty).
    Text(String),
    Done(Done),
    /// The step failed or the server is stopping; nothing more follows.
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache (not computed again).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub prompt_ms: f64,
    pub predicted_ms: f64,
}

/// What the engine runs on, made by the loader on the engine thread.
pub struct Loaded {
    /// Plans for `slots` sequences: a decode plan of `seq ≥ slots` rows with every row's
    /// logits, and a prefill plan.
    pub session: Session,
    pub tokenizer: Arc<Tokenizer>,
    pub limits: Limits,
}

struct Job {
    events: UnboundedSender<Event>,
    sampler: Sampler,
    text: TextStream,
    ignore_eos: bool,
    prompt_tokens: usize,
    cached_tokens: Option<usize>,
    generated: usize,
    /// When its first prompt chunk ran (a wait for a slot is not prompt time).
    prefill_start: Option<Instant>,
    first_token: Option<Instant>,
}

pub struct Engine {
    session: Session,
    tokenizer: Arc<Tokenizer>,
    sched: Scheduler,
    jobs: HashMap<JobId, Job>,
    next_id: JobId,
    rows: Vec<Row>,
    metrics: Arc<Metrics>,
    draining: bool,
}

impl Engine {
    pub fn new(loaded: Loaded, metrics: Arc<Metrics>) -> Engine {
        let slots = loaded.limits.slots;
        Engine {
            session: loaded.session,
            tokenizer: loaded.tokenizer,
            sched: Scheduler::new(loaded.limits),
            jobs: HashMap::new(),
            next_id: 1,
            rows: Vec::with_capacity(slots),
            metrics,
            draining: false,
        }
    }

    /// Runs until a shutdown command and every request it lets finish have ended, or the
    /// channel closes.
    pub fn run(mut self, rx: Receiver<Command>) {
        loop {
            // Take what arrived; wait when there is nothing to run.
            loop {
                let got = if self.sched.load() == (0, 0) {
                    if self.draining {
                        return;
                    }
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                } else {
                    match rx.try_recv() {
                        Ok(c) => Some(c),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.draining = true;
                            break;
                        }
                    }
                };
                match got {
                    Some(Command::Submit(s)) => self.submit(s),
                    Some(Command::Shutdown { cancel }) => {
                        self.draining = true;
                        if cancel {
                            self.cancel_all("the server is shutting down");
                        }
                    }
                    None => {}
                }
            }
            self.drop_departed();
            self.publish_load();
            let Some(work) = self.sched.next(&mut self.rows) else {
                continue;
            };
            self.step(work);
        }
    }

    fn submit(&mut self, s: Submit) {
        if self.draining {
            let _ = s
                .events
                .send(Event::Failed("the server is shutting down".into()));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let prompt_tokens = s.prompt.len();
        let mut sampler = Sampler::new(s.gen.sampler.clone(), self.session.n_vocab());
        // The penalties look at the prompt's last tokens too, as llama.cpp's do.
        let window = s.gen.sampler.repeat_last_n.min(prompt_tokens);
        for &t in &s.prompt[prompt_tokens - window..] {
            sampler.accept(t);
        }
        match self.sched.submit(id, s.prompt, s.gen.max_tokens) {
            Err(r) => {
                Metrics::add(&self.metrics.rejected, 1);
                let _ = s.events.send(Event::Rejected(r));
            }
            Ok(()) => {
                Metrics::add(&self.metrics.requests, 1);
                let _ = s.events.send(Event::Accepted);
                self.jobs.insert(
                    id,
                    Job {
                        events: s.events,
                        sampler,
                        text: TextStream::new(s.gen.stops),
                        ignore_eos: s.gen.ignore_eos,
                        prompt_tokens,
                        cached_tokens: None,
                        generated: 0,
                        prefill_start: None,
                        first_token: None,
                    },
                );
            }
        }
    }

    /// Cancels requests whose client is gone: their slots free before the next step.
    fn drop_departed(&mut self) {
        let sched = &mut self.sched;
        let metrics = &self.metrics;
        self.jobs.retain(|&id, job| {
            if job.events.is_closed() {
                sched.cancel(id);
                Metrics::add(&metrics.cancelled, 1);
                false
            } else {
                true
            }
        });
    }

    fn cancel_all(&mut self, why: &str) {
        for (id, job) in self.jobs.drain() {
            self.sched.cancel(id);
            let _ = job.events.send(Event::Failed(why.into()));
        }
    }

    fn publish_load(&self) {
        let (running, waiting) = self.sched.load();
        Metrics::set(&self.metrics.processing, running as u64);
        Metrics::set(&self.metrics.deferred, waiting as u64);
    }

    fn step(&mut self, work: Work) {
        Metrics::add(&self.metrics.decode_steps, 1);
        match work {
            Work::Prefill { slot, range } => {
                let Some(id) = self.sched.job_in(slot) else {
                    return;
                };
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.cached_tokens.get_or_insert(range.start);
                    job.prefill_start.get_or_insert_with(Instant::now);
                }
                Metrics::add(&self.metrics.decode_rows, range.len() as u64);
                let tokens = &self.sched.prompt(slot)[range.clone()];
                let result = self.session.forward_sequence(slot, range.start, tokens);
                let logits = match result {
                    Ok(l) => l,
                    Err(e) => return fail(&mut self.sched, &mut self.jobs, id, &e.to_string()),
                };
                if self.sched.prefilled(slot, range) {
                    let token = sample(&mut self.jobs, id, logits);
                    self.take(slot, id, token);
                }
            }
            Work::Decode => {
                Metrics::add(&self.metrics.decode_rows, self.rows.len() as u64);
                let n_vocab = self.session.n_vocab();
                let logits = match self.session.forward_rows(&self.rows) {
                    Ok(l) => l,
                    Err(e) => {
                        for r in &self.rows {
                            if let Some(id) = self.sched.job_in(r.seq) {
                                fail(&mut self.sched, &mut self.jobs, id, &e.to_string());
                            }
                        }
                        return;
                    }
                };
                for (i, r) in self.rows.iter().enumerate() {
                    let Some(id) = self.sched.job_in(r.seq) else {
                        continue;
                    };
                    let token = sample(&mut self.jobs, id, &logits[i * n_vocab..][..n_vocab]);
                    take_token(
                        &mut self.sched,
                        &mut self.jobs,
                        &self.tokenizer,
                        &self.metrics,
                        (r.seq, id, token),
                    );
                }
            }
        }
    }

    fn take(&mut self, slot: usize, id: JobId, token: u32) {
        take_token(
            &mut self.sched,
            &mut self.jobs,
            &self.tokenizer,
            &self.metrics,
            (slot, id, token),
        );
    }
}

fn sample(jobs: &mut HashMap<JobId, Job>, id: JobId, logits: &[f32]) -> u32 {
    match jobs.get_mut(&id) {
        Some(job) => job.sampler.sample(logits),
        None => 0,
    }
}

fn fail(sched: &mut Scheduler, jobs: &mut HashMap<JobId, Job>, id: JobId, why: &str) {
    sched.cancel(id);
    if let Some(job) = jobs.remove(&id) {
        let _ = job
            .events
            .send(Event::Failed(format!("internal error: {why}")));
    }
}

/// A request's new token: end of generation, a stop string, its length, or more text.
fn take_token(
    sched: &mut Scheduler,
    jobs: &mut HashMap<JobId, Job>,
    tokenizer: &Tokenizer,
    metrics: &Metrics,
    (slot, id, token): (usize, JobId, u32),
) {
    let Some(job) = jobs.get_mut(&id) else {
        sched.cancel(id);
        return;
    };
    let now = Instant::now();
    if job.first_token.is_none() {
        job.first_token = Some(now);
    }
    job.sampler.accept(token);
    job.generated += 1;
    let send = |job: &Job, text: String| {
        if !text.is_empty() {
            let _ = job.events.send(Event::Text(text));
        }
    };
    // A stop string's held prefix is not sent; other ends flush what is held.
    let mut by_stop_string = false;
    let finish = if !job.ignore_eos && tokenizer.is_end_of_generation(token) {
        sched.finish(slot);
        Some(Finish::Stop)
    } else {
        match job.text.push(tokenizer.token_bytes(token, false)) {
            Piece::Stop(text) => {
                send(job, text);
                sched.finish(slot);
                by_stop_string = true;
                Some(Finish::Stop)
            }
            Piece::Text(text) => {
                send(job, text);
                sched.accept(slot, token)
            }
        }
    };
    let Some(finish) = finish else { return };
    let Some(mut job) = jobs.remove(&id) else {
        return;
    };
    let rest = job.text.finish();
    if !by_stop_string {
        send(&job, rest);
    }
    let first = job.first_token.unwrap_or(now);
    let cached = job.cached_tokens.unwrap_or(0);
    let done = Done {
        finish,
        prompt_tokens: job.prompt_tokens,
        cached_tokens: cached,
        completion_tokens: job.generated,
        prompt_ms: (first - job.prefill_start.unwrap_or(first)).as_secs_f64() * 1e3,
        predicted_ms: (now - first).as_secs_f64() * 1e3,
    };
    Metrics::add(&metrics.prompt_tokens, (job.prompt_tokens - cached) as u64);
    Metrics::add(&metrics.prompt_us, (done.prompt_ms * 1e3) as u64);
    Metrics::add(&metrics.predicted_tokens, job.generated as u64);
    Metrics::add(&metrics.predicted_us, (done.predicted_ms * 1e3) as u64);
    let _ = job.events.send(Event::Done(done));
}
