//! The worker pool a session runs its plan on. Workers are spawned once, when the session
//! is created; a forward step hands them a job by bumping an epoch counter (no lock, no
//! channel, no allocation), every worker walks the plan's phases taking its own share, and
//! waits at the barriers the planner placed (`plan/parallel.rs`). The caller's thread is
//! worker 0.
//!
//! Waiting is a short spin, then: between forward steps a worker parks (an idle session
//! burns no CPU), inside a step it yields (a barrier is a few microseconds away).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a waiting worker spins before it yields (in a barrier) or parks (between jobs).
const SPIN: Duration = Duration::from_micros(50);

/// A reusable barrier for a fixed number of threads: a counter and a generation.
pub struct Barrier {
    n: usize,
    count: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n,
            count: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Returns once all `n` threads have called it. Everything each thread wrote before it
    /// called is visible to every thread after it returns.
    pub fn wait(&self) {
        if self.n == 1 {
            return;
        }
        let gen = self.generation.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            self.generation
                .store(gen.wrapping_add(1), Ordering::Release);
            return;
        }
        spin_until(
            || self.generation.load(Ordering::Acquire) != gen,
            std::thread::yield_now,
        );
    }
}

/// Spins on `done` for `SPIN`, then calls `idle` between checks.
fn spin_until(done: impl Fn() -> bool, idle: impl Fn()) {
    let start = Instant::now();
    let mut spins = 0u32;
    while !done() {
        if spins < 64 || start.elapsed() < SPIN {
            std::hint::spin_loop();
            spins = spins.saturating_add(1);
        } else {
            idle();
        }
    }
}

/// What a worker runs for one job: `(worker index, barrier)`.
pub type Work<'a> = &'a (dyn Fn(usize, &Barrier) + Sync);

struct Shared {
    n: usize,
    /// Bumped once per job; workers run a job when they see a new value.
    epoch: AtomicUsize,
    /// Workers (other than 0) finished with the current job.
    done: AtomicUsize,
    quit: AtomicBool,
    barrier: Barrier,
    /// The current job, written by worker 0 only while every other worker is idle.
    job: UnsafeCell<Option<Work<'static>>>,
}

// SAFETY: `job` is written only by the pool's owner in `run`, before it publishes the job
// with a Release bump of `epoch` and after every worker has reported the previous job done
// (Acquire on `done`); workers read it only after seeing the new epoch (Acquire). All other
// fields are atomics.
unsafe impl Sync for Shared {}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<(Thread, JoinHandle<()>)>,
}

impl Pool {
    /// Starts `n - 1` workers (the caller is worker 0).
    pub fn new(n: usize) -> std::io::Result<Pool> {
        let n = n.max(1);
        let shared = Arc::new(Shared {
            n,
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            barrier: Barrier::new(n),
            job: UnsafeCell::new(None),
        });
        let mut workers = Vec::with_capacity(n - 1);
        for w in 1..n {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("qgraph-worker-{w}"))
                .spawn(move || worker(&s, w))?;
            workers.push((h.thread().clone(), h));
        }
        Ok(Pool { shared, workers })
    }

    pub fn threads(&self) -> usize {
        self.shared.n
    }

    /// Runs `work(w, barrier)` on every worker w and returns when all have finished.
    pub fn run(&self, work: Work<'_>) {
        let s = &*self.shared;
        if s.n == 1 {
            return work(0, &s.barrier);
        }
        // SAFETY: the job is only read by workers between the epoch bump below and their
        // `done` report, and `run` returns only after all of them reported: the reference
        // does not outlive this call, whatever lifetime the cell's type names.
        unsafe {
            *s.job.get() = Some(std::mem::transmute::<Work<'_>, Work<'static>>(work));
        }
        s.done.store(0, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::Release);
        for (t, _) in &self.workers {
            t.unpark();
        }
        work(0, &s.barrier);
        spin_until(
            || s.done.load(Ordering::Acquire) == s.n - 1,
            std::thread::yield_now,
        );
        // SAFETY: every worker is done with the job (just observed).
        unsafe { *s.job.get() = None };
    }
}

fn worker(s: &Shared, w: usize) {
    let mut seen = 0;
    loop {
        spin_until(
            || s.epoch.load(Ordering::Acquire) != seen || s.quit.load(Ordering::Acquire),
            || {
                if s.epoch.load(Ordering::Acquire) == seen && !s.quit.load(Ordering::Acquire) {
                    std::thread::park_timeout(Duration::from_millis(100));
                }
            },
        );
        if s.quit.load(Ordering::Acquire) {
            return;
        }
        seen = s.epoch.load(Ordering::Acquire);
        // SAFETY: see `Shared`: the job was published before the epoch this worker saw.
        if let Some(work) = unsafe { *s.job.get() } {
            work(w, &s.barrier);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        for (t, _) in &self.workers {
            t.unpark();
        }
        for (_, h) in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_runs_every_job_and_barriers_order_phases() {
        for n in [1, 2, 3, 5] {
            let pool = Pool::new(n).unwrap();
            let slots: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for job in 0..50 {
                pool.run(&|w, b: &Barrier| {
                    slots[w].store(job * 10 + 1, Ordering::Relaxed);
                    b.wait();
                    // After the barrier every worker's first write is visible.
                    for s in &slots {
                        assert!(s.load(Ordering::Relaxed) > job * 10);
                    }
                    b.wait();
                    slots[w].store(job * 10 + 2, Ordering::Relaxed);
                });
                for s in &slots {
                    assert_eq!(s.load(Ordering::Relaxed), job * 10 + 2);
                }
            }
        }
    }
}
