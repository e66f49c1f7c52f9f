//! The executor's unsafe core on the scalar path, small enough to run under Miri: arena and
//! KV views, step dispatch, the worker pool's job handoff and barriers, prefill and decode
//! plans sharing one session memory, and the profiler's per-worker timing tables.
//!
//!     scripts/miri            # cargo +nightly miri test --test miri (a few minutes)
//!
//! Under plain `cargo test` it runs as an ordinary (fast) test too.

use std::sync::Arc;

use qgraph::exec::{Session, StepTimes};
use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::GgufFile;
use qgraph::kernels::KernelLevel;
use qgraph::plan::{Logits, Plan, PlanOptions};

const LLAMA: &str = include_str!("../graphs/llama.toml");

#[test]
fn scalar_sessions_prefill_decode_and_threads() {
    let model = TinyLlama {
        n_layer: 1,
        n_embd: 32,
        n_head: 2,
        n_kv_head: 1,
        n_ff: 64,
        n_vocab: 40,
        ..TinyLlama::default()
    };
    let model = Arc::new(GgufFile::from_bytes(&model.writer().unwrap().to_bytes()).unwrap());
    let graph = qgraph::graph::parse(LLAMA, "graphs/llama.toml")
        .unwrap()
        .bind(&model)
        .unwrap();
    let mut first: Option<Vec<f32>> = None;
    for threads in [1, 2] {
        let opts = PlanOptions {
            n_ctx: 8,
            level: KernelLevel::Scalar,
            threads,
            ..PlanOptions::default()
        };
        let decode = Arc::new(Plan::new(&graph, model.clone(), &opts).unwrap());
        let prefill = PlanOptions {
            seq: 3,
            logits: Logits::Last,
            ..opts
        };
        let prefill = Arc::new(Plan::new(&graph, model.clone(), &prefill).unwrap());
        let mut s = Session::with_prefill(decode, prefill).unwrap();
        // A prompt of 4 (a chunk of 3, then one token), then two decode steps.
        s.forward(&[1, 2, 3, 4]).unwrap();
        s.forward(&[5]).unwrap();
        let logits = s.forward(&[6]).unwrap().to_vec();
        assert!(logits.iter().all(|v| v.is_finite()));
        // Natively the thread count changes no bit (tests/threads.rs); Miri perturbs the
        // last bits of functions like `exp` at random, as the platform may, so under it the
        // runs agree closely rather than bitwise.
        match &first {
            None => first = Some(logits),
            Some(f) if cfg!(miri) => {
                for (a, b) in f.iter().zip(&logits) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{threads} threads");
                }
            }
            Some(f) => assert_eq!(f, &logits, "{threads} threads"),
        }
        // The profiler's tables: every worker writes its own rows.
        let mut times = StepTimes::new(&s);
        s.reset();
        s.forward_timed(&[7], &mut times).unwrap();
        // Errors are returned, never undefined behaviour.
        assert!(s.forward(&[40]).is_err(), "token id out of range");
        s.truncate(0);
        assert!(s.forward(&[1; 9]).is_err(), "more than the context");
    }
}
