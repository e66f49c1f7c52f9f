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

/// A scalar session at `threads` with a prefill plan of 3: a prompt of 4 (a chunk of 3,
/// then one token), then two decode steps; the last logits are finite and agree with the
/// first thread count's (`first`). Returns the session.
fn prefill_then_decode(
    graph: &qgraph::graph::Graph,
    model: &Arc<GgufFile>,
    threads: usize,
    first: &mut Option<Vec<f32>>,
) -> Session {
    let opts = PlanOptions {
        n_ctx: 8,
        level: KernelLevel::Scalar,
        threads,
        ..PlanOptions::default()
    };
    let decode = Arc::new(Plan::new(graph, model.clone(), &opts).unwrap());
    let prefill = PlanOptions {
        seq: 3,
        logits: Logits::Last,
        ..opts
    };
    let prefill = Arc::new(Plan::new(graph, model.clone(), &prefill).unwrap());
    let mut s = Session::with_prefill(decode, prefill).unwrap();
    s.forward(&[1, 2, 3, 4]).unwrap();
    s.forward(&[5]).unwrap();
    let logits = s.forward(&[6]).unwrap().to_vec();
    assert!(logits.iter().all(|v| v.is_finite()));
    // Natively the thread count changes no bit (tests/threads.rs); Miri perturbs the last
    // bits of functions like `exp` at random, as the platform may, so under it the runs
    // agree closely rather than bitwise.
    match first {
        None => *first = Some(logits),
        Some(f) if cfg!(miri) => {
            for (a, b) in f.iter().zip(&logits) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{threads} threads");
            }
        }
        Some(f) => assert_eq!(f, &logits, "{threads} threads"),
    }
    s
}

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
        let mut s = prefill_then_decode(&graph, &model, threads, &mut first);
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

/// A tiny random Gemma 3 (graphs/gemma3.toml as written: a 2-position window on layers 0-4,
/// full attention on layer 5, per-head norms, GELU, the scaled embedding), written with the
/// project's GGUF writer.
fn tiny_gemma3() -> Arc<GgufFile> {
    use qgraph::gguf::{GgufWriter, Value, ValueType};
    use qgraph::quant::GgmlType::F32;
    let (embd, heads, hd, ff, vocab, layers) = (16u32, 2u32, 8u32, 32u32, 16u32, 6u32);
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", "gemma3")
        .set_u32("gemma3.block_count", layers)
        .set_u32("gemma3.context_length", 64)
        .set_u32("gemma3.embedding_length", embd)
        .set_u32("gemma3.feed_forward_length", ff)
        .set_u32("gemma3.attention.head_count", heads)
        .set_u32("gemma3.attention.head_count_kv", 1)
        .set_u32("gemma3.attention.key_length", hd)
        .set_u32("gemma3.attention.sliding_window", 2)
        .set_f32("gemma3.rope.freq_base", 1e6)
        .set_f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6);
    let tokens: Vec<String> = (0..vocab).map(|i| format!("t{i}")).collect();
    w.set_str_array("tokenizer.ggml.tokens", &tokens);
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, (0..vocab).map(|_| Value::I32(1)).collect()),
    );
    let mut seed = 1u32;
    let mut values = |n: u32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    let (e, q, kv) = (embd as u64, (heads * hd) as u64, hd as u64);
    let mut add = |name: &str, dims: &[u64]| {
        let n = dims.iter().product::<u64>() as u32;
        w.add_tensor(name, dims, F32, &values(n)).unwrap();
    };
    add("token_embd.weight", &[e, vocab as u64]);
    add("output_norm.weight", &[e]);
    for l in 0..layers {
        let t = |n: &str| format!("blk.{l}.{n}.weight");
        add(&t("attn_norm"), &[e]);
        add(&t("attn_q"), &[e, q]);
        add(&t("attn_k"), &[e, kv]);
        add(&t("attn_v"), &[e, kv]);
        add(&t("attn_q_norm"), &[kv]);
        add(&t("attn_k_norm"), &[kv]);
        add(&t("attn_output"), &[q, e]);
        add(&t("post_attention_norm"), &[e]);
        add(&t("ffn_norm"), &[e]);
        add(&t("ffn_gate"), &[e, ff as u64]);
        add(&t("ffn_up"), &[e, ff as u64]);
        add(&t("ffn_down"), &[ff as u64, e]);
        add(&t("post_ffw_norm"), &[e]);
    }
    Arc::new(GgufFile::from_bytes(&w.to_bytes()).unwrap())
}

#[test]
fn gemma3_ops_prefill_decode_and_threads() {
    let model = tiny_gemma3();
    // Parsed from the text: Miri's isolation forbids opening files.
    let graph = qgraph::graph::parse(include_str!("../graphs/gemma3.toml"), "graphs/gemma3.toml")
        .unwrap()
        .bind(&model)
        .unwrap();
    assert!(graph.unread.is_empty(), "{:?}", graph.unread);
    let mut first: Option<Vec<f32>> = None;
    for threads in [1, 2] {
        // Past the 2-position window.
        prefill_then_decode(&graph, &model, threads, &mut first);
    }
}
