//! Graph definitions: the llama graph on the real and a tiny model, and every kind of
//! mistake reported at its `file:line:col` with the name involved.

mod common;

use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::{GgufFile, GgufWriter};
use qgraph::graph::{self, GraphError};

const LLAMA: &str = include_str!("../graphs/llama.toml");
const FILE: &str = "graphs/llama.toml";

fn tiny(m: TinyLlama) -> GgufFile {
    GgufFile::from_bytes(&m.writer().unwrap().to_bytes()).unwrap()
}

/// The llama graph with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> String {
    assert!(
        LLAMA.contains(from),
        "test edit: `{from}` not in llama.toml"
    );
    LLAMA.replacen(from, to, 1)
}

/// `FILE:line:` of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> String {
    let line = src
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1;
    format!("{FILE}:{line}:")
}

fn parse_err(src: &str) -> GraphError {
    graph::parse(src, FILE).expect_err("the definition parsed")
}

fn bind_err(src: &str, model: &GgufFile) -> GraphError {
    graph::parse(src, FILE)
        .unwrap()
        .bind(model)
        .expect_err("the graph bound")
}

fn assert_msg(e: &GraphError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` does not mention `{p}`");
    }
}

#[test]
fn real_model_binds() {
    let model = GgufFile::open(common::real_model()).unwrap();
    let g = graph::parse(LLAMA, FILE).unwrap().bind(&model).unwrap();
    let dims: Vec<(&str, u64)> = g.dims.iter().map(|d| (d.name.as_str(), d.value)).collect();
    assert_eq!(
        dims,
        [
            ("n_embd", 576),
            ("n_layer", 30),
            ("n_head", 9),
            ("n_kv_head", 3),
            ("n_ff", 1536),
            ("n_vocab", 49152),
            ("head_dim", 64),
            ("kv_dim", 192)
        ]
    );
    assert_eq!(g.n_layer, 30);
    assert_eq!(
        g.tensor_totals().0,
        272,
        "every tensor bound, the tied output included"
    );
    assert_eq!(g.g.node_count(), 2 + 3 + 30 * 16);
    let logits = g.outputs[0].1;
    let w = &g.weights[g.node(logits).weights[0].0 as usize];
    assert_eq!((w.tensor.as_str(), w.fallback), ("token_embd.weight", true));
    insta::assert_snapshot!("llama_real_summary", graph::summary::summary(&g));
}

#[test]
fn tiny_model_binds_with_its_own_dimensions() {
    let model = tiny(TinyLlama::default());
    let g = graph::parse(LLAMA, FILE).unwrap().bind(&model).unwrap();
    let dim = |n| g.dim(n).unwrap();
    assert_eq!(
        (
            dim("n_layer"),
            dim("n_embd"),
            dim("n_head"),
            dim("n_kv_head"),
            dim("head_dim"),
            dim("n_ff"),
            dim("n_vocab")
        ),
        (2, 64, 4, 2, 16, 128, 96)
    );
    assert_eq!(g.g.node_count(), 2 + 3 + 2 * 16);
    // The tiny model has no llama.vocab_size: n_vocab came from the token list.
    assert_eq!(
        g.dims.iter().find(|d| d.name == "n_vocab").unwrap().source,
        "len(tokenizer.ggml.tokens)"
    );
    insta::assert_snapshot!("llama_tiny_summary", graph::summary::summary(&g));
}

#[test]
fn untied_output_binds_output_weight() {
    let model = tiny(TinyLlama {
        untied_output: true,
        ..TinyLlama::default()
    });
    let g = graph::parse(LLAMA, FILE).unwrap().bind(&model).unwrap();
    let logits = g.outputs[0].1;
    let w = &g.weights[g.node(logits).weights[0].0 as usize];
    assert_eq!((w.tensor.as_str(), w.fallback), ("output.weight", false));
}

#[test]
fn dot_folds_the_repeated_layers() {
    let model = GgufFile::open(common::real_model()).unwrap();
    let g = graph::parse(LLAMA, FILE).unwrap().bind(&model).unwrap();
    let dot = graph::dot::to_dot(&g);
    assert!(dot.starts_with("digraph \"llama\" {"));
    assert!(dot.contains("blk.1 … blk.29 (× 29)"));
    assert!(dot.contains("blk.0.attn_q\\ngemv"));
    assert!(!dot.contains("blk.5."), "layers past 0 are folded");
    assert_eq!(
        dot.matches(" -> ").count(),
        dot.lines().filter(|l| l.contains(" -> ")).count()
    );
}

// ---- mistakes in the definition -----------------------------------------------------------

#[test]
fn syntax_error() {
    let src = edited("n_ff      = { key", "n_ff      = { key = }\nx = { key");
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::Syntax { .. }), "{e}");
    assert_msg(&e, &[&line_of(&src, "n_ff      = { key = }")]);
}

#[test]
fn unknown_op() {
    let src = edited(r#"op = "silu""#, r#"op = "swish""#);
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::UnknownOp { .. }), "{e}");
    assert_msg(
        &e,
        &[
            &line_of(&src, "swish"),
            "`ffn_silu`",
            "`swish`",
            "known: embed",
        ],
    );
}

#[test]
fn wrong_number_of_inputs() {
    let src = edited(r#"in = ["x", "attn_output"]"#, r#"in = ["x"]"#);
    let e = parse_err(&src);
    assert!(
        matches!(
            e,
            GraphError::Arity {
                want: 2,
                got: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(
        &e,
        &[
            &line_of(&src, r#"name = "attn_res""#),
            "`attn_res` (add) takes 2 input(s), got 1",
        ],
    );
}

#[test]
fn wrong_number_of_weights() {
    let src = edited(
        r#"weight = "ffn_down" }"#,
        r#"weight = ["ffn_down", "ffn_up"] }"#,
    );
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::WeightArity { .. }), "{e}");
    assert_msg(&e, &["`ffn_down`", "takes 1 weight(s), got 2"]);
}

#[test]
fn input_that_names_no_node() {
    let src = edited(
        r#"in = ["ffn_silu", "ffn_up"]"#,
        r#"in = ["ffn_silu", "ffn_upp"]"#,
    );
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::UnknownInput { .. }), "{e}");
    assert_msg(&e, &[&line_of(&src, "ffn_upp"), "`ffn_act`", "`ffn_upp`"]);
    // A block node used from outside gets a hint.
    let src = edited(r#"in = ["layers"]"#, r#"in = ["ffn_out"]"#);
    assert_msg(&parse_err(&src), &["inside block `layer`"]);
}

#[test]
fn cycle() {
    let src = edited(
        r#"in = ["attn_res"],  weight = "ffn_norm""#,
        r#"in = ["ffn_out"],  weight = "ffn_norm""#,
    );
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::Cycle { .. }), "{e}");
    assert_msg(&e, &["cycle through node", "ffn_norm", "ffn_out", FILE]);
}

#[test]
fn dimension_never_bound() {
    let src = edited(r#"or = "n_embd / n_head""#, r#"or = "n_embd / n_heads""#);
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::Unbound { .. }), "{e}");
    assert_msg(&e, &[&line_of(&src, "n_heads"), "`n_heads` is never bound"]);
    let src = edited(
        r#"heads = "n_kv_head", theta"#,
        r#"heads = "n_kv_heads", theta"#,
    );
    assert_msg(
        &parse_err(&src),
        &[&line_of(&src, "n_kv_heads"), "`n_kv_heads`"],
    );
    let src = edited(
        r#"theta = "rope_theta", layout = "normal", weight = "rope_freqs" },
  { name = "k_rope""#,
        r#"theta = "rope_thet", layout = "normal", weight = "rope_freqs" },
  { name = "k_rope""#,
    );
    assert_msg(&parse_err(&src), &["`rope_thet` is never bound"]);
}

#[test]
fn expression_that_does_not_divide() {
    // 64 / 5 leaves a remainder: the model is rejected, not rounded.
    let model = tiny(TinyLlama {
        n_head: 5,
        n_kv_head: 5,
        ..TinyLlama::default()
    });
    let e = bind_err(LLAMA, &model);
    assert!(matches!(e, GraphError::Expr { .. }), "{e}");
    assert_msg(
        &e,
        &[
            &line_of(LLAMA, "head_dim  ="),
            "n_embd / n_head",
            "64 / 5 does not divide evenly",
        ],
    );
}

#[test]
fn expression_that_divides_by_zero() {
    let model = tiny(TinyLlama {
        n_head: 0,
        ..TinyLlama::default()
    });
    let e = bind_err(LLAMA, &model);
    assert_msg(&e, &[&line_of(LLAMA, "head_dim  ="), "division by zero"]);
}

#[test]
fn metadata_key_the_model_lacks() {
    let src = edited("{arch}.feed_forward_length", "{arch}.ffn_length");
    let e = bind_err(&src, &tiny(TinyLlama::default()));
    assert!(matches!(e, GraphError::MissingKey { .. }), "{e}");
    assert_msg(
        &e,
        &[
            &line_of(&src, "ffn_length"),
            "`n_ff`",
            "no metadata key `llama.ffn_length`",
        ],
    );
}

#[test]
fn weight_missing_for_one_layer() {
    let mut w: GgufWriter = TinyLlama::default().writer().unwrap();
    w.tensors.retain(|t| t.name != "blk.1.ffn_up.weight");
    let model = GgufFile::from_bytes(&w.to_bytes()).unwrap();
    let e = bind_err(LLAMA, &model);
    assert!(matches!(e, GraphError::MissingWeight { .. }), "{e}");
    assert_msg(
        &e,
        &[
            &line_of(LLAMA, "ffn_up      = \"blk"),
            "`ffn_up` for layer 1",
            "`blk.1.ffn_up.weight`",
        ],
    );
}

#[test]
fn duplicate_node_name() {
    let src = edited(r#"{ name = "ffn_act","#, r#"{ name = "ffn_silu","#);
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::Duplicate { .. }), "{e}");
    let first = line_of(&src, r#"name = "ffn_silu""#);
    assert_msg(
        &e,
        &["duplicate name `ffn_silu`", first.trim_end_matches(':')],
    );
}

#[test]
fn repeat_count_of_zero() {
    let model = tiny(TinyLlama {
        n_layer: 0,
        ..TinyLlama::default()
    });
    let e = bind_err(LLAMA, &model);
    assert!(matches!(e, GraphError::ZeroRepeat { .. }), "{e}");
    assert_msg(
        &e,
        &[
            &line_of(LLAMA, r#"op = "repeat""#),
            "`layers`",
            "`layer` zero times",
            "n_layer",
        ],
    );
}

#[test]
fn missing_and_unexpected_attributes() {
    let src = edited(
        r#", eps = "rms_eps" },
  # Project"#,
        r#" },
  # Project"#,
    );
    assert_msg(
        &parse_err(&src),
        &["`out_norm` (rmsnorm): missing attribute `eps`"],
    );
    let src = edited(
        r#"op = "silu",    in = ["ffn_gate"]"#,
        r#"op = "silu",    in = ["ffn_gate"], eps = 1.0"#,
    );
    assert_msg(
        &parse_err(&src),
        &["`ffn_silu` (silu) does not take attribute `eps`"],
    );
    let src = edited(
        r#"layout = "normal", weight = "rope_freqs" },
  { name = "k_rope""#,
        r#"layout = "sideways", weight = "rope_freqs" },
  { name = "k_rope""#,
    );
    assert_msg(&parse_err(&src), &["unknown rope layout `sideways`"]);
}

#[test]
fn unknown_fields_are_errors() {
    let src = edited(
        r#"op = "silu",    in"#,
        r#"op = "silu",    inputs = [], in"#,
    );
    let e = parse_err(&src);
    assert_msg(
        &e,
        &[&line_of(&src, "inputs = []"), "unknown field `inputs`"],
    );
}

#[test]
fn broken_files_never_panic() {
    // Every prefix of the real definition either parses or gives an error.
    for end in (0..LLAMA.len())
        .filter(|&i| LLAMA.is_char_boundary(i))
        .step_by(7)
    {
        let _ = graph::parse(&LLAMA[..end], FILE);
    }
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/graphs/llama.toml");
    assert_eq!(graph::load(path).unwrap().name, "llama");
    let e = graph::load("/no/such/graph.toml").err().unwrap();
    assert_msg(&e, &["/no/such/graph.toml"]);
}

#[test]
fn a_model_of_an_architecture_the_graph_does_not_list() {
    let src = edited(
        r#"architectures = ["llama"]"#,
        r#"architectures = ["mistral", "qwen2"]"#,
    );
    let e = bind_err(&src, &tiny(TinyLlama::default()));
    assert!(matches!(e, GraphError::Architecture { .. }), "{e}");
    assert_msg(
        &e,
        &[
            &line_of(&src, "architectures ="),
            "graph `llama`",
            "`mistral`, `qwen2`",
            "the model is `llama`",
            "graphs/llama.toml",
        ],
    );
    // An empty list is a mistake in the file, caught before any model is seen.
    let src = edited(r#"architectures = ["llama"]"#, "architectures = []");
    assert_msg(
        &parse_err(&src),
        &[&line_of(&src, "architectures ="), "lists no architecture"],
    );
}

#[test]
fn tensors_the_graph_never_reads_are_listed_unless_optional() {
    let mut w: GgufWriter = TinyLlama::default().writer().unwrap();
    for layer in 0..2 {
        w.add_tensor(
            &format!("blk.{layer}.attn_q_norm.weight"),
            &[16],
            qgraph::quant::GgmlType::F32,
            &[1.0; 16],
        )
        .unwrap();
    }
    w.add_tensor(
        "rope_factors_long.weight",
        &[8],
        qgraph::quant::GgmlType::F32,
        &[1.0; 8],
    )
    .unwrap();
    let model = GgufFile::from_bytes(&w.to_bytes()).unwrap();
    let g = graph::parse(LLAMA, FILE).unwrap().bind(&model).unwrap();
    assert_eq!(
        g.unread,
        [
            "blk.0.attn_q_norm.weight",
            "blk.1.attn_q_norm.weight",
            "rope_factors_long.weight"
        ]
    );
    assert!(graph::summary::summary(&g).contains("never reads: 3"));
    // Marked optional (a layer template and a plain name), they are not.
    let src = edited(
        r#"architectures = ["llama"]"#,
        r#"architectures = ["llama"]
optional = ["blk.{layer}.attn_q_norm.weight", "rope_factors_long.weight"]"#,
    );
    let g = graph::parse(&src, FILE).unwrap().bind(&model).unwrap();
    assert!(g.unread.is_empty(), "{:?}", g.unread);
    // The real model and the tiny one leave nothing unread.
    assert!(graph::parse(LLAMA, FILE)
        .unwrap()
        .bind(&tiny(TinyLlama::default()))
        .unwrap()
        .unread
        .is_empty());
}

#[test]
fn attributes_can_vary_by_layer() {
    use qgraph::graph::Op;
    // Layer 1's query rope gets twice the base; layer 0 keeps it.
    let src = edited(
        r#"heads = "n_head",    theta = "rope_theta""#,
        r#"heads = "n_head",    theta = "if(layer == 1, rope_theta * 2, rope_theta)""#,
    );
    let g = graph::parse(&src, FILE)
        .unwrap()
        .bind(&tiny(TinyLlama::default()))
        .unwrap();
    let theta_of = |name: &str| {
        g.g.node_weights()
            .find(|n| n.name == name)
            .map(|n| match n.op {
                Op::Rope { theta, .. } => theta,
                _ => panic!("{name} is not a rope"),
            })
            .unwrap()
    };
    assert_eq!(theta_of("blk.0.q_rope"), 10000.0);
    assert_eq!(theta_of("blk.1.q_rope"), 20000.0);
    assert_eq!(theta_of("blk.1.k_rope"), 10000.0);
}

#[test]
fn per_layer_expressions_are_checked() {
    // `layer` means nothing outside a block.
    let src = edited(r#"eps = "rms_eps" }"#, r#"eps = "rms_eps * layer" }"#);
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::Unbound { .. }), "{e}");
    assert_msg(&e, &[&line_of(&src, "rms_eps * layer"), "`layer`"]);
    // Dividing by zero at one layer names the node's line, the expression and the layer.
    let src = edited(
        r#"heads = "n_kv_head", theta = "rope_theta""#,
        r#"heads = "n_kv_head", theta = "rope_theta / (1 - layer)""#,
    );
    let e = bind_err(&src, &tiny(TinyLlama::default()));
    assert_msg(
        &e,
        &[
            &line_of(&src, "(1 - layer)"),
            "division by zero",
            "at layer 1",
        ],
    );
    // A malformed one is a syntax error at its line, before any model.
    let src = edited(
        r#"theta = "rope_theta""#,
        r#"theta = "if(layer, rope_theta)""#,
    );
    assert_msg(
        &parse_err(&src),
        &[
            &line_of(&src, "if(layer, rope_theta)"),
            "after the first branch",
        ],
    );
}

#[test]
fn a_dimension_falls_back_to_an_expression() {
    // SmolLM2 states no key_length: head_dim comes from `or`; a file that states it wins.
    let g = graph::parse(LLAMA, FILE)
        .unwrap()
        .bind(&tiny(TinyLlama::default()))
        .unwrap();
    assert_eq!(g.dim("head_dim"), Some(16));
    let mut w: GgufWriter = TinyLlama::default().writer().unwrap();
    w.set_u32("llama.attention.key_length", 32);
    let g = graph::parse(LLAMA, FILE)
        .unwrap()
        .bind(&GgufFile::from_bytes(&w.to_bytes()).unwrap())
        .unwrap();
    assert_eq!(g.dim("head_dim"), Some(32));
    assert_eq!(g.dim("kv_dim"), Some(64));
}

#[test]
fn optional_weight_read_by_an_op_that_needs_it() {
    let src = edited(r#"weight = "ffn_down" }"#, r#"weight = "rope_freqs" }"#);
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::OptionalWeight { .. }), "{e}");
    assert_msg(
        &e,
        &[
            &line_of(&src, r#"name = "ffn_down""#),
            "`ffn_down`",
            "`rope_freqs`",
            "optional",
        ],
    );
}

#[test]
fn rope_takes_at_most_one_weight() {
    let src = edited(
        r#"layout = "normal", weight = "rope_freqs" }"#,
        r#"layout = "normal", weight = ["rope_freqs", "attn_q"] }"#,
    );
    let e = parse_err(&src);
    assert!(matches!(e, GraphError::WeightArity { .. }), "{e}");
    assert_msg(&e, &["`q_rope`", "takes 1 weight(s), got 2"]);
}

#[test]
fn optional_weight_binds_when_present_and_is_skipped_when_absent() {
    let with =
        tiny(qgraph::gguf::tiny::reference_model("llama3", qgraph::quant::GgmlType::F32).unwrap());
    let g = graph::parse(LLAMA, FILE).unwrap().bind(&with).unwrap();
    let rope =
        g.g.node_weights()
            .find(|n| n.name == "blk.0.q_rope")
            .unwrap();
    assert_eq!(
        g.weights[rope.weights[0].0 as usize].tensor,
        "rope_freqs.weight"
    );
    assert!(g.unread.is_empty(), "{:?}", g.unread);
    let without = tiny(TinyLlama::default());
    let g = graph::parse(LLAMA, FILE).unwrap().bind(&without).unwrap();
    let rope =
        g.g.node_weights()
            .find(|n| n.name == "blk.0.q_rope")
            .unwrap();
    assert!(rope.weights.is_empty());
}

#[test]
fn optional_weight_table_rejects_unknown_fields() {
    let src = edited(
        r#"rope_freqs  = { tensor = "rope_freqs.weight", optional = true }"#,
        r#"rope_freqs  = { tensor = "rope_freqs.weight", optinal = true }"#,
    );
    let e = parse_err(&src);
    assert_msg(&e, &[&line_of(&src, "optinal")]);
}
