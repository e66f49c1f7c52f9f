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

fn counts() -> (usize, usize) {
    (ALLOCS.load(Ordering::SeqCst), FREES.load(Ordering::SeqCst))
}

#[test]
fn the_counter_sees_allocations() {
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
