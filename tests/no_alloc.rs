//! The forward pass allocates nothing: a counting global allocator watches a 128-token
//! prompt (batched prefill, in chunks) and 64 decode steps on the real model, with one and
//! two worker threads, after the session is created and warmed once.
//! (Its own test binary, so no other test's allocations are counted.)

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use qgraph::exec::Session;
use qgraph::gguf::GgufFile;
use qgraph::plan::{Logits, Plan, PlanOptions};
use qgraph::sample::{Sampler, SamplerConfig};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static FREES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts them.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        FREES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counters are global: the tests of this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn counts() -> (usize, usize) {
    (ALLOCS.load(Ordering::SeqCst), FREES.load(Ordering::SeqCst))
}

#[test]
fn the_counter_sees_allocations() {
    let _turn = serial();
    let before = counts();
    let v = std::hint::black_box(vec![1u8; 100]);
    drop(v);
    let after = counts();
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "the counting allocator is not in use"
    );
}

fn session(level: qgraph::kernels::KernelLevel, threads: usize) -> Session {
    let model = Arc::new(GgufFile::open(common::real_model()).unwrap());
    let g = qgraph::graph::load(concat!(env!("CARGO_MANIFEST_DIR"), "/graphs/llama.toml"))
        .unwrap()
        .bind(&model)
        .unwrap();
    let opts = PlanOptions {
        n_ctx: 256,
        level,
        threads,
        ..PlanOptions::default()
    };
    let prefill = PlanOptions {
        seq: 48,
        logits: Logits::Last,
        ..opts.clone()
    };
    let decode = Plan::new(&g, model.clone(), &opts).unwrap();
    let prefill = Plan::new(&g, model, &prefill).unwrap();
    Session::with_prefill(Arc::new(decode), Arc::new(prefill)).unwrap()
}

#[test]
fn decode_and_prompt_allocate_nothing() {
    let _turn = serial();
    let simd = qgraph::kernels::table::detect();
    for (level, threads) in [
        (qgraph::kernels::KernelLevel::Scalar, 1),
        (simd, 1),
        (simd, 2),
    ] {
        let mut s = session(level, threads);
        let mut sampler = Sampler::new(SamplerConfig::default(), s.n_vocab());
        // Warm once: first touches, lazily initialised statics, both plans.
        s.forward(&[1, 2, 3]).unwrap();
        let t = sampler.sample(s.forward(&[1]).unwrap());
        sampler.accept(t);
        s.reset();
        // 128 tokens: two full prefill chunks of 48 and one of 32.
        let prompt: Vec<u32> = (0..128).map(|i| (i * 37 % 49000) as u32 + 10).collect();

        let before = counts();
        s.forward(&prompt).unwrap();
        let after_prompt = counts();
        let mut token = 42;
        for _ in 0..64 {
            let logits = s.forward(&[token]).unwrap();
            token = sampler.sample(logits);
            sampler.accept(token);
        }
        let after_decode = counts();
        assert_eq!(
            after_prompt, before,
            "{level:?}, {threads} threads: (allocations, frees) during the 128-token prompt"
        );
        assert_eq!(
            after_decode, after_prompt,
            "{level:?}, {threads} threads: (allocations, frees) during 64 decode steps"
        );
    }
}

/// What `qgraph serve`'s engine does per step on the model path — the scheduler picks a
/// prompt chunk or a batched decode step over four sequences, the session runs it, each
/// request's sampler picks its token — allocates nothing once the requests are in.
#[test]
fn batched_serving_steps_allocate_nothing() {
    let _turn = serial();
    use qgraph::exec::Row;
    use qgraph::serve::scheduler::{Limits, Scheduler, Work};
    let model = Arc::new(GgufFile::open(common::real_model()).unwrap());
    let g = qgraph::graph::load(concat!(env!("CARGO_MANIFEST_DIR"), "/graphs/llama.toml"))
        .unwrap()
        .bind(&model)
        .unwrap();
    for threads in [1, 2] {
        let opts = PlanOptions {
            seq: 4,
            n_ctx: 128,
            threads,
            sequences: 4,
            ..PlanOptions::default()
        };
        let prefill = PlanOptions {
            seq: 16,
            logits: Logits::Last,
            ..opts.clone()
        };
        let decode = Arc::new(Plan::new(&g, model.clone(), &opts).unwrap());
        let prefill = Arc::new(Plan::new(&g, model.clone(), &prefill).unwrap());
        let mut s = Session::with_prefill(decode, prefill).unwrap();
        let mut sched = Scheduler::new(Limits {
            slots: 4,
            n_ctx: 128,
            chunk: 16,
            queue: 8,
        });
        let mut samplers: Vec<Sampler> = (0..4)
            .map(|_| Sampler::new(SamplerConfig::default(), s.n_vocab()))
            .collect();
        let mut rows: Vec<Row> = Vec::with_capacity(4);
        let mut run = |sched: &mut Scheduler, rows: &mut Vec<Row>, steps: usize| {
            for _ in 0..steps {
                match sched.next(rows) {
                    Some(Work::Prefill { slot, range }) => {
                        let tokens = &sched.prompt(slot)[range.clone()];
                        let logits = s.forward_sequence(slot, range.start, tokens).unwrap();
                        let t = samplers[slot].sample(logits);
                        if sched.prefilled(slot, range) {
                            sched.accept(slot, t);
                        }
                    }
                    Some(Work::Decode) => {
                        let n = s.n_vocab();
                        let logits = s.forward_rows(rows).unwrap();
                        for (i, r) in rows.iter().enumerate() {
                            let t = samplers[r.seq].sample(&logits[i * n..][..n]);
                            samplers[r.seq].accept(t);
                            sched.accept(r.seq, t);
                        }
                    }
                    None => break,
                }
            }
        };
        for id in 0..4u64 {
            let prompt: Vec<u32> = (0..20 + 9 * id as u32)
                .map(|i| i * 31 % 40000 + 10)
                .collect();
            sched.submit(id, prompt, 1000).unwrap();
        }
        run(&mut sched, &mut rows, 12); // warm: both plans, first touches
        let before = counts();
        run(&mut sched, &mut rows, 40);
        assert_eq!(
            counts(),
            before,
            "{threads} threads: (allocations, frees) during 40 serving steps"
        );
        assert_eq!(sched.load(), (4, 0), "all four still running");
    }
}
