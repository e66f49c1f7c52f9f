//! The ops Gemma 3 brought (`scale`, `gelu`, per-head `rmsnorm`, `attention` with a
//! per-layer `window`, a per-layer `theta`) on a tiny random model, through a llama graph
//! rewritten to use all of them: a prompt fed as a batch gives bitwise the logits it gives
//! token by token, at every thread count and level (their steps split rows between workers
//! like every other step, and the window depends only on the row's position), and the window
//! does what it says.

use std::sync::Arc;

use qgraph::exec::Session;
use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::GgufFile;
use qgraph::kernels::{table, KernelLevel};
use qgraph::plan::{PassSelection, Plan, PlanOptions};
use qgraph::quant::GgmlType;

const LLAMA: &str = include_str!("../graphs/llama.toml");

/// llama.toml with Gemma's ops; `window` is the window expression of the attention.
fn graph(window: &str) -> String {
    let edits = [
        (
            r#"in = ["inp_embd"], block = "layer""#,
            r#"in = ["inp_scaled"], block = "layer""#,
        ),
        (
            r#"{ name = "inp_embd", op = "embed",   in = ["tokens"],   weight = "token_embd" },"#,
            r#"{ name = "inp_embd", op = "embed",   in = ["tokens"],   weight = "token_embd" },
  { name = "inp_scaled", op = "scale", in = ["inp_embd"], factor = "sqrt(n_embd) / 4" },"#,
        ),
        (
            r#"{ name = "q_rope",      op = "rope",    in = ["attn_q", "pos"], heads = "n_head",    theta = "rope_theta","#,
            r#"{ name = "q_norm", op = "rmsnorm", in = ["attn_q"], weight = "attn_q_norm", eps = "rms_eps", heads = "n_head" },
  { name = "k_norm", op = "rmsnorm", in = ["attn_k"], weight = "attn_k_norm", eps = "rms_eps", heads = "n_kv_head" },
  { name = "q_rope",      op = "rope",    in = ["q_norm", "pos"], heads = "n_head",    theta = "if(layer == 1, rope_theta * 100, rope_theta)","#,
        ),
        (
            r#"in = ["attn_k", "pos"], heads = "n_kv_head", theta = "rope_theta""#,
            r#"in = ["k_norm", "pos"], heads = "n_kv_head", theta = "if(layer == 1, rope_theta * 100, rope_theta)""#,
        ),
        (
            r#"heads = "n_head", kv_heads = "n_kv_head" },"#,
            &format!(r#"heads = "n_head", kv_heads = "n_kv_head", window = "{window}" }},"#),
        ),
        (r#"op = "silu",    in = ["ffn_gate"]"#, r#"op = "gelu",    in = ["ffn_gate"]"#),
        (
            "[block.layer.weights]\n",
            "[block.layer.weights]\nattn_q_norm = \"blk.{layer}.attn_q_norm.weight\"\nattn_k_norm = \"blk.{layer}.attn_k_norm.weight\"\n",
        ),
    ];
    let mut src = LLAMA.to_string();
    for (from, to) in edits {
        assert!(src.contains(from), "test edit: `{from}` not in llama.toml");
        src = src.replacen(from, to, 1);
    }
    src
}

/// A tiny llama (head size 16) with per-head norm weights added.
fn model() -> Arc<GgufFile> {
    let mut w = TinyLlama {
        dtype: GgmlType::Q8_0,
        ..TinyLlama::default()
    }
    .writer()
    .unwrap();
    for layer in 0..2 {
        for name in ["attn_q_norm", "attn_k_norm"] {
            let gamma: Vec<f32> = (0..16).map(|i| 0.5 + i as f32 / 16.0).collect();
            w.add_tensor(
                &format!("blk.{layer}.{name}.weight"),
                &[16],
                GgmlType::F32,
                &gamma,
            )
            .unwrap();
        }
    }
    Arc::new(GgufFile::from_bytes(&w.to_bytes()).unwrap())
}

fn session(
    src: &str,
    model: &Arc<GgufFile>,
    seq: usize,
    level: KernelLevel,
    threads: usize,
) -> Session {
    session_with(src, model, seq, level, threads, PassSelection::All)
}

fn session_with(
    src: &str,
    model: &Arc<GgufFile>,
    seq: usize,
    level: KernelLevel,
    threads: usize,
    passes: PassSelection,
) -> Session {
    let g = qgraph::graph::parse(src, "gemma_ops.toml")
        .unwrap()
        .bind(model)
        .unwrap();
    let opts = PlanOptions {
        seq,
        n_ctx: 96,
        level,
        threads,
        passes,
        ..PlanOptions::default()
    };
    Session::new(Arc::new(Plan::new(&g, model.clone(), &opts).unwrap())).unwrap()
}

const TOKENS: [u32; 70] = {
    let mut t = [0u32; 70];
    let mut i = 0;
    while i < 70 {
        t[i] = ((i * 37 + 11) % 96) as u32;
        i += 1;
    }
    t
};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every row of `TOKENS`, fed `seq` at a time.
fn rows(
    src: &str,
    model: &Arc<GgufFile>,
    seq: usize,
    level: KernelLevel,
    threads: usize,
) -> Vec<Vec<u32>> {
    let mut s = session(src, model, seq, level, threads);
    let mut out = Vec::new();
    for chunk in TOKENS.chunks(seq) {
        let logits = s.forward_all(chunk).unwrap().to_vec();
        out.extend(logits.chunks_exact(96).map(bits));
    }
    out
}

#[test]
fn a_batch_equals_token_by_token_at_every_thread_count() {
    let model = model();
    // Layer 0 attends its last 5 positions, layer 1 all of them: 70 positions cross a tile.
    let src = graph("if(layer == 0, 5, 0)");
    let mut levels = vec![KernelLevel::Scalar];
    if table::detect() != KernelLevel::Scalar {
        levels.push(table::detect());
    }
    for level in levels {
        let reference = rows(&src, &model, 1, level, 1);
        for (seq, threads) in [(16, 1), (16, 2), (7, 3), (70, 2)] {
            let got = rows(&src, &model, seq, level, threads);
            for (t, (a, b)) in got.iter().zip(&reference).enumerate() {
                assert_eq!(
                    a, b,
                    "{level:?}, {seq} per call, {threads} thread(s), token {t}"
                );
            }
        }
    }
}

#[test]
fn the_window_limits_what_a_row_attends() {
    let model = model();
    let level = table::detect();
    let all = rows(&graph("0"), &model, 16, level, 2);
    // A window wider than the context changes nothing, bit for bit.
    assert_eq!(rows(&graph("96"), &model, 16, level, 2), all);
    // A window of 5 leaves the first 5 rows as they are and changes the later ones.
    let five = rows(&graph("5"), &model, 16, level, 2);
    assert_eq!(five[..5], all[..5]);
    assert!(five[5..].iter().zip(&all[5..]).all(|(a, b)| a != b));
}

/// `fuse-mlp` folds the GELU-gated FFN into one `geglu` step, whose logits are bitwise the
/// unfused gate, up, gelu and mul steps', at every level.
#[test]
fn the_gelu_gated_ffn_fuses_into_one_step_with_the_same_bits() {
    let model = model();
    let src = graph("0");
    let mut levels = vec![KernelLevel::Scalar];
    if table::detect() != KernelLevel::Scalar {
        levels.push(table::detect());
    }
    let others: Vec<String> = qgraph::plan::passes::ALL
        .iter()
        .map(|p| p.name().to_string())
        .filter(|n| n != "fuse-mlp")
        .collect();
    for level in levels {
        for seq in [1, 16] {
            let mut fused = session(&src, &model, seq, level, 2);
            let text = qgraph::plan::dump::text::to_text(fused.plan());
            assert_eq!(text.matches(" geglu ").count(), 2, "{text}");
            assert!(!text.contains(" gelu "), "{text}");
            let mut unfused = session_with(
                &src,
                &model,
                seq,
                level,
                2,
                PassSelection::Only(others.clone()),
            );
            for chunk in TOKENS.chunks(seq) {
                let a = bits(fused.forward_all(chunk).unwrap());
                let b = bits(unfused.forward_all(chunk).unwrap());
                assert_eq!(a, b, "{level:?}, {seq} per call");
            }
        }
    }
}
