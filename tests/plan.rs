//! The planner: snapshots of what each pass does to the real llama plan, a numeric check
//! per pass, a negative case per pass, and shape errors named by node and weight.

mod common;

use std::sync::Arc;

use qgraph::exec::Session;
use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::GgufFile;
use qgraph::graph::{self, Graph};
use qgraph::kernels::KernelLevel;
use qgraph::plan::dump;
use qgraph::plan::passes::ALL;
use qgraph::plan::{PassSelection, Plan, PlanError, PlanOptions};
use qgraph::quant::GgmlType;
use qgraph::vocab::{KvType, KvTypes};

const LLAMA: &str = include_str!("../graphs/llama.toml");
const FILE: &str = "graphs/llama.toml";

fn opts(passes: &str, seq: usize, n_ctx: usize) -> PlanOptions {
    PlanOptions {
        seq,
        n_ctx,
        passes: passes.parse().unwrap(),
        // Snapshots name kernels: pin the level so they do not depend on the CPU.
        level: KernelLevel::Scalar,
        ..PlanOptions::default()
    }
}

fn opts_at(passes: &str, level: KernelLevel) -> PlanOptions {
    PlanOptions {
        level,
        ..opts(passes, 1, 32)
    }
}

fn tiny_model(m: TinyLlama) -> Arc<GgufFile> {
    Arc::new(GgufFile::from_bytes(&m.writer().unwrap().to_bytes()).unwrap())
}

fn bind(src: &str, model: &GgufFile) -> Graph {
    graph::parse(src, FILE).unwrap().bind(model).unwrap()
}

fn edited(from: &str, to: &str) -> String {
    assert!(
        LLAMA.contains(from),
        "test edit: `{from}` not in llama.toml"
    );
    LLAMA.replacen(from, to, 1)
}

fn plan(src: &str, model: &Arc<GgufFile>, o: &PlanOptions) -> Plan {
    Plan::new(&bind(src, model), model.clone(), o).unwrap()
}

/// Runs `tokens` one per step and returns the logits after each.
fn decode(plan: Plan, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut s = Session::new(Arc::new(plan)).unwrap();
    tokens
        .iter()
        .map(|&t| s.forward(&[t]).unwrap().to_vec())
        .collect()
}

fn op_count(p: &Plan, op: &str) -> usize {
    p.steps.iter().filter(|s| s.op.name() == op).count()
}

// ---- snapshots of the real model's plans --------------------------------------------------

#[test]
fn real_model_plan_snapshots() {
    let model = Arc::new(GgufFile::open(common::real_model()).unwrap());
    let g = bind(LLAMA, &model);
    let mut selections = vec!["all".to_string(), "none".to_string()];
    selections.extend(ALL.iter().map(|p| p.name().to_string()));
    for sel in selections {
        let p = Plan::new(&g, model.clone(), &opts(&sel, 1, 2048)).unwrap();
        insta::assert_snapshot!(format!("llama_real_passes_{sel}"), dump::text::to_text(&p));
    }
    let all = Plan::new(&g, model.clone(), &opts("all", 1, 2048)).unwrap();
    let none = Plan::new(&g, model.clone(), &opts("none", 1, 2048)).unwrap();
    assert_eq!((all.steps.len(), none.steps.len()), (152, 513));
    insta::assert_snapshot!("llama_real_pass_diff", dump::text::pass_diff(&all));
    let arena: String = all
        .buffers
        .iter()
        .map(|b| {
            format!(
                "{:<40} {:?} {} B @{} {:?}\n",
                b.name,
                b.kind,
                b.bytes,
                b.offset,
                b.live.map(|l| (l.first, l.last))
            )
        })
        .collect();
    insta::assert_snapshot!("llama_real_arena", arena);
}

#[test]
fn tiny_model_plan_json_snapshot() {
    let model = tiny_model(TinyLlama::default());
    let p = plan(LLAMA, &model, &opts("all", 1, 32));
    let json = dump::json::to_json(&p);
    assert_eq!(json["steps"].as_array().unwrap().len(), p.steps.len());
    assert_eq!(json["arena"]["peak_bytes"], p.peak_bytes);
    assert_eq!(json["arena"]["naive_bytes"], p.naive_bytes);
    insta::assert_snapshot!(
        "llama_tiny_plan_json",
        serde_json::to_string_pretty(&json).unwrap()
    );
}

#[test]
fn arena_reuses_memory_and_seq_scales_it() {
    let model = Arc::new(GgufFile::open(common::real_model()).unwrap());
    let g = bind(LLAMA, &model);
    for seq in [1, 128] {
        let p = Plan::new(&g, model.clone(), &opts("all", seq, 2048)).unwrap();
        assert!(p.peak_bytes < p.naive_bytes, "seq {seq}: no reuse");
        // The logits of every token are live at the end, so they bound the arena below.
        assert!(p.peak_bytes >= seq * 49152 * 4);
        // f16 K and V by default: 2 bytes a value.
        assert_eq!(p.kv_bytes, 30 * 2 * 2048 * 192 * 2);
    }
    // Each type's size, K and V apart (q8_0: 34 bytes per 32 values).
    for (k, v, per_value_x32) in [
        (KvType::F32, KvType::F32, 2 * 128),
        (KvType::Q8_0, KvType::Q8_0, 2 * 34),
        (KvType::Q8_0, KvType::F16, 34 + 64),
    ] {
        let mut o = opts("all", 1, 2048);
        o.kv = KvTypes { k, v };
        let p = Plan::new(&g, model.clone(), &o).unwrap();
        assert_eq!(p.kv_bytes, 30 * 2048 * 192 / 32 * per_value_x32, "{k}/{v}");
    }
}

#[test]
fn contexts_past_the_trained_length_and_unfit_cache_types_are_errors() {
    let model = Arc::new(GgufFile::open(common::real_model()).unwrap());
    let g = bind(LLAMA, &model);
    let err = Plan::new(&g, model.clone(), &opts("all", 1, 8193))
        .err()
        .expect("8193 > 8192 is refused")
        .to_string();
    assert!(
        err.contains("8193") && err.contains("8192") && err.contains("llama.context_length"),
        "{err}"
    );
    assert!(Plan::new(&g, model.clone(), &opts("all", 1, 8192)).is_ok());
    // Heads of 16 values cannot be cut into q8_0's blocks of 32.
    let tiny = tiny_model(TinyLlama::default());
    let tg = bind(LLAMA, &tiny);
    let mut o = opts("all", 1, 64);
    o.kv = KvTypes {
        k: KvType::F16,
        v: KvType::Q8_0,
    };
    let err = Plan::new(&tg, tiny.clone(), &o)
        .err()
        .expect("q8_0 refused for heads of 16")
        .to_string();
    assert!(
        err.contains("V cache of type q8_0") && err.contains("multiple of 32"),
        "{err}"
    );
}

#[test]
fn dot_and_svg_dumps() {
    let model = tiny_model(TinyLlama::default());
    let p = plan(LLAMA, &model, &opts("all", 1, 32));
    let dot = dump::dot::to_dot(&p, Some("0..1".parse().unwrap()));
    assert!(
        dot.starts_with("digraph") && dot.contains("other layers") && dot.contains("blk.0.attn")
    );
    assert!(!dot.contains("#5 blk.1"), "layer 1 is folded");
    let svg = dump::svg::to_svg(&p);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<rect").count(),
        1 + p.buffers.iter().filter(|b| b.live.is_some()).count()
    );
}

// ---- each pass: numeric agreement with no passes ------------------------------------------

/// Each pass alone, and all of them, give the same logits as no passes for every weight
/// format. The fused steps run the same scalar kernels in the same order, so the values are
/// expected to be identical; the assertion allows 1e-5 relative so that fused SIMD kernels
/// with another summation order can share the test, which is still far below what a wrong
/// fusion produces (errors of the order of the logits themselves).
#[test]
fn every_pass_preserves_the_logits() {
    let tokens = [3u32, 17, 42, 5, 88, 1];
    let mut levels = vec![KernelLevel::Scalar];
    if cfg!(target_arch = "x86_64") {
        assert!(
            qgraph::kernels::table::supports(KernelLevel::Avx2),
            "this CPU lacks AVX2"
        );
        levels.push(KernelLevel::Avx2);
    }
    let dtypes = [
        GgmlType::Q4_1,
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::F32,
    ];
    for (dtype, &level) in dtypes
        .into_iter()
        .flat_map(|d| levels.iter().map(move |l| (d, l)))
    {
        let model = tiny_model(TinyLlama {
            dtype,
            ..TinyLlama::default()
        });
        let reference = decode(plan(LLAMA, &model, &opts_at("none", level)), &tokens);
        let mut selections: Vec<String> = ALL.iter().map(|p| p.name().to_string()).collect();
        selections.push("all".into());
        for sel in selections {
            let got = decode(plan(LLAMA, &model, &opts_at(&sel, level)), &tokens);
            for (t, (a, b)) in reference.iter().zip(&got).enumerate() {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                        "{dtype} {level:?} {sel} token {t}: {x} vs {y}"
                    );
                }
            }
        }
    }
}

// ---- each pass: no change when its precondition fails -------------------------------------

fn report(p: &Plan, name: &str) -> bool {
    p.passes.iter().find(|r| r.name == name).unwrap().changed
}

#[test]
fn fuse_rmsnorm_keeps_a_norm_with_another_reader() {
    // The normed row is also added to the residual: it must exist as a buffer.
    let src = edited(
        r#"in = ["x", "attn_output"]"#,
        r#"in = ["attn_norm", "attn_output"]"#,
    );
    let model = tiny_model(TinyLlama::default());
    let p = plan(&src, &model, &opts("fuse-rmsnorm", 1, 32));
    assert!(
        report(&p, "fuse-rmsnorm"),
        "ffn and output norms still fold"
    );
    assert_eq!(op_count(&p, "rmsnorm"), 2, "each layer's attn_norm stays");
    assert!(p.steps.iter().any(|s| s.name == "blk.1.attn_norm"));
}

#[test]
fn fuse_residual_leaves_an_add_whose_input_is_read_later() {
    // ffn_norm reads x after attn_output: x cannot be overwritten by the attention residual.
    let src = edited(
        r#"in = ["attn_res"],  weight = "ffn_norm""#,
        r#"in = ["x"],  weight = "ffn_norm""#,
    );
    let model = tiny_model(TinyLlama::default());
    let p = plan(&src, &model, &opts("fuse-residual", 1, 32));
    assert_eq!(
        op_count(&p, "add"),
        2,
        "attn_res stays an add in each layer"
    );
    assert_eq!(op_count(&p, "gemv_add"), 2, "ffn_out still fuses");
    // And the numbers still agree with no passes.
    let toks = [1u32, 2, 3];
    let a = decode(plan(&src, &model, &opts("none", 1, 32)), &toks);
    let b = decode(p, &toks);
    assert_eq!(a, b);
}

#[test]
fn fuse_mlp_needs_gate_and_up_on_one_input() {
    let src = edited(
        r#"in = ["ffn_norm"],  weight = "ffn_up""#,
        r#"in = ["attn_res"],  weight = "ffn_up""#,
    );
    let model = tiny_model(TinyLlama::default());
    let p = plan(&src, &model, &opts("fuse-mlp", 1, 32));
    assert!(!report(&p, "fuse-mlp"));
    assert_eq!(op_count(&p, "swiglu"), 0);
    assert_eq!(op_count(&p, "silu"), 2);
}

#[test]
fn fuse_qkv_leaves_a_projection_of_another_input() {
    // attn_q reads the un-normed x: only K and V share an input.
    let src = edited(
        r#"in = ["attn_norm"], weight = "attn_q""#,
        r#"in = ["x"], weight = "attn_q""#,
    );
    let model = tiny_model(TinyLlama::default());
    let p = plan(&src, &model, &opts("fuse-qkv", 1, 32));
    assert!(p
        .steps
        .iter()
        .any(|s| s.name == "blk.0.attn_q" && s.op.name() == "gemv"));
    assert!(p
        .steps
        .iter()
        .any(|s| s.name == "blk.0.attn_k+attn_v" && s.op.name() == "proj"));
    let untouched = plan(LLAMA, &model, &opts("fuse-qkv", 1, 1));
    assert!(untouched
        .steps
        .iter()
        .any(|s| s.name == "blk.0.attn_q+attn_k+attn_v"));
}

#[test]
fn fuse_rope_kv_needs_roped_keys() {
    // Attention over un-roped keys: the kv_write copy step must stay.
    let src = edited(
        r#"in = ["q_rope", "k_rope", "attn_v", "pos"]"#,
        r#"in = ["q_rope", "attn_k", "attn_v", "pos"]"#,
    );
    let model = tiny_model(TinyLlama::default());
    let p = plan(&src, &model, &opts("fuse-rope-kv", 1, 32));
    assert_eq!(op_count(&p, "kv_write"), 2);
    let fused = plan(LLAMA, &model, &opts("fuse-rope-kv", 1, 32));
    assert_eq!(op_count(&fused, "kv_write"), 0);
    assert_eq!(op_count(&fused, "rope"), 0);
}

#[test]
fn dead_code_removes_unread_nodes_only() {
    let src = edited(
        r#"  { name = "ffn_out","#,
        r#"  { name = "unused",      op = "silu",    in = ["attn_res"] },
  { name = "ffn_out","#,
    );
    let model = tiny_model(TinyLlama::default());
    assert_eq!(
        op_count(&plan(&src, &model, &opts("none", 1, 32)), "silu"),
        4
    );
    let p = plan(&src, &model, &opts("dead-code", 1, 32));
    assert!(report(&p, "dead-code"));
    assert_eq!(op_count(&p, "silu"), 2);
    let clean = plan(LLAMA, &model, &opts("dead-code", 1, 32));
    assert!(!report(&clean, "dead-code"));
}

// ---- shape errors -----------------------------------------------------------------------------

fn plan_err(src: &str, model: &Arc<GgufFile>) -> PlanError {
    match Plan::new(&bind(src, model), model.clone(), &opts("all", 1, 32)) {
        Ok(_) => panic!("planned"),
        Err(e) => e,
    }
}

#[test]
fn weight_of_the_wrong_shape() {
    let mut w = TinyLlama::default().writer().unwrap();
    let t = w
        .tensors
        .iter_mut()
        .find(|t| t.name == "blk.1.attn_output.weight")
        .unwrap();
    t.dims = vec![32, 128];
    let model = Arc::new(GgufFile::from_bytes(&w.to_bytes()).unwrap());
    let e = plan_err(LLAMA, &model);
    let msg = e.to_string();
    assert!(matches!(e, PlanError::WeightShape { .. }), "{msg}");
    for part in [
        "blk.1.attn_output",
        "(gemv)",
        "blk.1.attn_output.weight",
        "[32, 128]",
        "[64, n]",
        FILE,
    ] {
        assert!(msg.contains(part), "`{msg}` lacks `{part}`");
    }
}

#[test]
fn add_of_two_shapes() {
    let src = edited(r#"in = ["x", "attn_output"]"#, r#"in = ["x", "attn_k"]"#);
    let model = tiny_model(TinyLlama::default());
    let msg = plan_err(&src, &model).to_string();
    for part in [
        "blk.0.attn_res",
        "(add)",
        "input 1 is [1, 32] f32",
        "expected [1, 64] f32",
    ] {
        assert!(msg.contains(part), "`{msg}` lacks `{part}`");
    }
}

#[test]
fn heads_that_do_not_divide_the_row() {
    let src = edited(r#"heads = "n_head",    theta"#, r#"heads = "3",    theta"#);
    let model = tiny_model(TinyLlama::default());
    let msg = plan_err(&src, &model).to_string();
    for part in [
        "blk.0.q_rope",
        "(rope)",
        "3 heads do not divide the row width 64",
    ] {
        assert!(msg.contains(part), "`{msg}` lacks `{part}`");
    }
}

#[test]
fn unsupported_weight_format_is_named() {
    let mut w = TinyLlama::default().writer().unwrap();
    let t = w
        .tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.ffn_up.weight")
        .unwrap();
    t.dtype = GgmlType::Q8_1; // 36 bytes per 32: same element count, 128×64/32×36 bytes
    t.data = vec![0; 128 * 64 / 32 * 36];
    let model = Arc::new(GgufFile::from_bytes(&w.to_bytes()).unwrap());
    let msg = plan_err(LLAMA, &model).to_string();
    assert!(
        msg.contains("blk.0.ffn_up.weight") && msg.contains("Q8_1"),
        "{msg}"
    );
}

#[test]
fn bad_options_and_pass_names() {
    let model = tiny_model(TinyLlama::default());
    let g = bind(LLAMA, &model);
    for (seq, n_ctx) in [(0, 8), (4, 2), (1, 0)] {
        assert!(matches!(
            Plan::new(&g, model.clone(), &opts("all", seq, n_ctx)),
            Err(PlanError::Options(_))
        ));
    }
    assert!("fuse-qkv,nope".parse::<PassSelection>().is_err());
}

// ---- the repack: quantized matrices in row panels ------------------------------------------

/// A tiny model whose output head (tied to the embedding) has a ragged last panel.
fn ragged(dtype: GgmlType) -> Arc<GgufFile> {
    tiny_model(TinyLlama {
        dtype,
        embd_dtype: dtype,
        n_vocab: 101,
        ..TinyLlama::default()
    })
}

fn panel_count(p: &Plan) -> usize {
    p.panel_weights().0
}

#[test]
fn repack_snapshot_marks_panel_weights() {
    let model = ragged(GgmlType::Q4_0);
    let o = PlanOptions {
        threads: 2,
        ..opts_at("all", KernelLevel::Avx2)
    };
    let p = plan(LLAMA, &model, &o);
    // 2 layers × 7 matrices + the tied output head; the embedding lookup keeps its rows.
    assert_eq!(panel_count(&p), 15);
    insta::assert_snapshot!("llama_tiny_repacked", dump::text::to_text(&p));
}

#[test]
fn repack_leaves_rows_where_no_panel_kernel_reads_them() {
    // Off, at the scalar level, and for formats with no panel layout: the file's rows.
    let q4 = ragged(GgmlType::Q4_1);
    let off = PlanOptions {
        repack: false,
        ..opts_at("all", KernelLevel::Avx2)
    };
    assert_eq!(panel_count(&plan(LLAMA, &q4, &off)), 0);
    assert_eq!(
        panel_count(&plan(LLAMA, &q4, &opts_at("all", KernelLevel::Scalar))),
        0
    );
    // Float matrices keep their rows, copied as they are into huge pages (the tied
    // embedding reads the head's copy), and only when repacking is on.
    for dtype in [GgmlType::F16, GgmlType::F32] {
        let p = plan(LLAMA, &ragged(dtype), &opts_at("all", KernelLevel::Avx2));
        assert_eq!(panel_count(&p), 0, "{dtype}");
        assert_eq!((p.repack.made, p.repack.reused), (15, 1), "{dtype}");
        let p = plan(LLAMA, &ragged(dtype), &off);
        assert_eq!(p.repack.made + p.repack.reused, 0, "{dtype}");
    }
    // A second plan over the same file reuses the first one's panels (the tied embedding
    // and the output head share one copy: 15 matrices, 16 uses).
    let first = plan(LLAMA, &q4, &opts_at("all", KernelLevel::Avx2));
    let second = plan(LLAMA, &q4, &opts_at("all", KernelLevel::Avx2));
    assert_eq!((first.repack.made, first.repack.reused), (15, 1));
    assert_eq!((second.repack.made, second.repack.reused), (0, 16));
}

/// The repack changes where bytes sit, never a value: with it on and off, the logits of a
/// prompt (through a prefill plan) and of the tokens decoded after it are bitwise equal,
/// for every format with panels, with ragged panels, at 1 and 3 threads.
#[test]
fn repack_preserves_the_logits_bitwise() {
    assert!(
        qgraph::kernels::table::supports(KernelLevel::Avx2),
        "this CPU lacks AVX2"
    );
    let prompt = [3u32, 17, 42, 5, 88, 1, 100, 7, 9];
    let run = |model: &Arc<GgufFile>, repack: bool, threads: usize| -> Vec<Vec<u32>> {
        let o = PlanOptions {
            repack,
            threads,
            ..opts_at("all", KernelLevel::Avx2)
        };
        let decode = Arc::new(plan(LLAMA, model, &o));
        let prefill = PlanOptions {
            seq: 4,
            logits: qgraph::plan::Logits::Last,
            ..o
        };
        let prefill = Arc::new(plan(LLAMA, model, &prefill));
        let mut s = Session::with_prefill(decode, prefill).unwrap();
        let mut out = vec![s
            .forward(&prompt)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()];
        for t in [5u32, 60, 2] {
            out.push(
                s.forward(&[t])
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            );
        }
        out
    };
    for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        let model = ragged(dtype);
        let rows = run(&model, false, 1);
        for threads in [1, 3] {
            assert!(
                run(&model, true, threads) == rows,
                "{dtype}, {threads} threads"
            );
        }
    }
}

/// Unfused, K and V reach the caches through a `kv_write` step of their own: a batch must
/// store every one of its rows (it once stored only the first, so a prompt fed as a batch
/// with passes off, or through Gemma's graph, attended over empty cache rows).
#[test]
fn a_batch_with_passes_off_stores_every_row_in_the_cache() {
    let model = tiny_model(TinyLlama::default());
    let tokens = [3u32, 17, 42, 5, 88, 1];
    for threads in [1, 2] {
        let one = PlanOptions {
            threads,
            ..opts("none", 1, 32)
        };
        let by_token = decode(plan(LLAMA, &model, &one), &tokens);
        let batch = PlanOptions {
            threads,
            ..opts("none", tokens.len(), 32)
        };
        let mut s = qgraph::exec::Session::new(Arc::new(plan(LLAMA, &model, &batch))).unwrap();
        let all = s.forward_all(&tokens).unwrap().to_vec();
        let n_vocab = all.len() / tokens.len();
        for (t, row) in all.chunks_exact(n_vocab).enumerate() {
            assert_eq!(
                row.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                by_token[t].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{threads} thread(s), token {t}"
            );
        }
    }
}

/// A bias of the wrong length is a plan error naming the node, the tensor and both shapes.
#[test]
fn bias_of_the_wrong_shape_is_an_error_naming_the_node() {
    use qgraph::gguf::tiny::reference_model;
    // K's bias node reads Q's bias: 64 values for a row of 32.
    let src = include_str!("../graphs/qwen2.toml").replace(
        r#"in = ["attn_k"],    weight = "attn_k_bias""#,
        r#"in = ["attn_k"],    weight = "attn_q_bias""#,
    );
    let w = reference_model("qwen2", GgmlType::F32)
        .unwrap()
        .writer()
        .unwrap();
    let model = Arc::new(GgufFile::from_bytes(&w.to_bytes()).unwrap());
    let g = graph::parse(&src, "graphs/qwen2.toml")
        .unwrap()
        .bind(&model)
        .unwrap();
    let opts = PlanOptions {
        n_ctx: 512,
        ..PlanOptions::default()
    };
    let Err(e) = Plan::new(&g, model.clone(), &opts) else {
        panic!("a bias of 64 values planned for a row of 32");
    };
    let msg = e.to_string();
    assert!(matches!(e, PlanError::WeightShape { .. }), "{msg}");
    for part in [
        "blk.0.k_bias",
        "blk.0.attn_q.bias",
        "[64]",
        "[32]",
        "graphs/qwen2.toml:",
    ] {
        assert!(msg.contains(part), "`{msg}` does not mention {part}");
    }
}

/// Rope frequency factors of the wrong length are a plan error naming the rope node and the
/// tensor, before any pass moves them onto a projection.
#[test]
fn rope_factors_of_the_wrong_length_are_an_error_naming_the_node() {
    let mut w = TinyLlama::default().writer().unwrap();
    // Head size 16 wants 8 factors.
    w.add_tensor("rope_freqs.weight", &[4], GgmlType::F32, &[1.0; 4])
        .unwrap();
    let model = Arc::new(GgufFile::from_bytes(&w.to_bytes()).unwrap());
    let g = graph::parse(include_str!("../graphs/llama.toml"), "graphs/llama.toml")
        .unwrap()
        .bind(&model)
        .unwrap();
    let Err(e) = Plan::new(&g, model.clone(), &PlanOptions::default()) else {
        panic!("4 rope factors planned for heads of 16");
    };
    let msg = e.to_string();
    assert!(matches!(e, PlanError::WeightShape { .. }), "{msg}");
    for part in [
        "blk.0.q_rope",
        "rope_freqs.weight",
        "[4]",
        "[8]",
        "graphs/llama.toml:",
    ] {
        assert!(msg.contains(part), "`{msg}` does not mention {part}");
    }
}
