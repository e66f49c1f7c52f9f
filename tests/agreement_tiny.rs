//! Architectures without small downloadable weights, checked against llama.cpp on tiny
//! random-weight models that qgraph's own GGUF writer makes (`gguf::tiny::reference_model`)
//! and llama.cpp loads (tests/golden/tiny, made by `scripts/make-golden tiny`):
//! - Llama 3 (`graphs/llama.toml`): `rope_freqs.weight` divides the rope frequencies; the
//!   `llama-bpe` pre-tokenizer;
//! - Qwen2 (`graphs/qwen2.toml`): Q/K/V biases, NeoX rope; the `qwen2` pre-tokenizer;
//! - OLMo 2 (`graphs/olmo2.toml`): post-norms, whole-row Q/K norms and an 8-position window
//!   on three of every four layers (OLMo 3) or on every layer (Mistral-style).
//!
//! Each model is rewritten here and must hash to the sha256 the golden data was made from.
//! Criteria, as for real models: tokenization exact; teacher-forced logits with mean KL ≤
//! 0.01, the same argmax at ≥ 94% of positions and at every position where llama.cpp's
//! margin is above 0.5, by decode (a token per step) and by prefill (16-token steps). And
//! each check can fail: the same graph with the feature taken out (factors, biases,
//! window) misses the criteria.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::golden::{argmax, kl_divergence, Sequence};
use qgraph::exec::Session;
use qgraph::gguf::tiny::reference_model;
use qgraph::gguf::GgufFile;
use qgraph::kernels::KernelLevel;
use qgraph::plan::{Plan, PlanOptions};
use qgraph::quant::GgmlType;
use qgraph::tokenizer::Tokenizer;

#[derive(serde::Deserialize)]
struct Reference {
    model_sha256: String,
    add_bos: bool,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    special: bool,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Golden {
    reference: Reference,
    tokenize: Vec<Case>,
    sequences: Vec<Sequence>,
}

fn golden(name: &str) -> Golden {
    let path = format!(
        "{}/tests/golden/tiny/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes the reference model `name` to a temporary file and checks its hash.
fn model(name: &str, want_sha256: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("tiny-{name}.gguf"));
    let bytes = reference_model(name, GgmlType::F32)
        .unwrap()
        .writer()
        .unwrap()
        .to_bytes();
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(
        common::sha256_file(&path),
        want_sha256,
        "the tiny {name} model is not the one tests/golden/tiny/{name}.json was made from: \
         the writer changed, so run `scripts/make-golden tiny` and review the diff"
    );
    (dir, path)
}

/// The graph file of the model's architecture, its text edited by `edit`.
fn session(
    model: &Path,
    edit: &dyn Fn(String) -> String,
    seq: usize,
    level: KernelLevel,
) -> Session {
    let file = Arc::new(GgufFile::open(model).unwrap());
    let arch = file.get_str("general.architecture").unwrap();
    let path = format!("{}/graphs/{arch}.toml", env!("CARGO_MANIFEST_DIR"));
    let src = edit(std::fs::read_to_string(&path).unwrap());
    let g = qgraph::graph::parse(&src, &path)
        .unwrap()
        .bind(&file)
        .unwrap();
    let opts = PlanOptions {
        seq,
        n_ctx: 512,
        level,
        logits: qgraph::plan::Logits::All,
        ..PlanOptions::default()
    };
    Session::new(Arc::new(Plan::new(&g, file, &opts).unwrap())).unwrap()
}

struct Agreement {
    n: usize,
    mean_kl: f64,
    same: usize,
    confident: usize,
    confident_same: usize,
}

impl Agreement {
    fn meets_criteria(&self) -> bool {
        self.mean_kl <= 0.01
            && self.same as f64 >= 0.94 * self.n as f64
            && self.confident_same == self.confident
    }
}

/// Teacher-forced logits of every golden sequence, `seq` tokens per step.
fn agreement(g: &Golden, s: &mut Session, seq: usize) -> Agreement {
    let mut a = Agreement {
        n: 0,
        mean_kl: 0.0,
        same: 0,
        confident: 0,
        confident_same: 0,
    };
    let n_vocab = s.n_vocab();
    for sq in &g.sequences {
        s.reset();
        for (c, chunk) in sq.tokens.chunks(seq).enumerate() {
            let logits = s.forward_all(chunk).unwrap().to_vec();
            for (r, ours) in logits.chunks_exact(n_vocab).enumerate() {
                let p = &sq.positions[c * seq + r];
                a.mean_kl += kl_divergence(p, ours);
                a.n += 1;
                let agree = argmax(ours) == p.argmax;
                a.same += agree as usize;
                if p.margin > 0.5 {
                    a.confident += 1;
                    a.confident_same += agree as usize;
                }
            }
        }
    }
    a.mean_kl /= a.n as f64;
    a
}

/// Checks `name` against its golden data; `remove` takes the feature under test out of the
/// graph text, and the result must then miss the criteria.
fn check(name: &str, remove: &dyn Fn(String) -> String) {
    let g = golden(name);
    let (_dir, path) = model(name, &g.reference.model_sha256);
    for level in [KernelLevel::Scalar, qgraph::kernels::table::detect()] {
        for seq in [1, 16] {
            let mut s = session(&path, &|s| s, seq, level);
            let a = agreement(&g, &mut s, seq);
            eprintln!(
                "{name} {level:?} seq {seq}: {} positions, mean KL {:.2e}, argmax {}/{}, above margin 0.5 {}/{}",
                a.n, a.mean_kl, a.same, a.n, a.confident_same, a.confident
            );
            assert!(a.n >= 150);
            assert!(
                a.meets_criteria(),
                "{name} {level:?} seq {seq} misses the criteria"
            );
        }
    }
    let mut s = session(&path, remove, 16, KernelLevel::Scalar);
    let a = agreement(&g, &mut s, 16);
    eprintln!(
        "{name} without the feature: mean KL {:.2e}, argmax {}/{}, above margin 0.5 {}/{}",
        a.mean_kl, a.same, a.n, a.confident_same, a.confident
    );
    assert!(
        !a.meets_criteria(),
        "{name}: the check cannot tell the feature is missing"
    );
}

fn check_tokenizer(name: &str) {
    let g = golden(name);
    let (_dir, path) = model(name, &g.reference.model_sha256);
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    for c in &g.tokenize {
        let ids = tok.encode(&c.text, c.special, g.reference.add_bos).unwrap();
        assert_eq!(ids, c.ids, "{name}: {:?} (special {})", c.text, c.special);
    }
    assert!(g.tokenize.len() >= 70);
}

#[test]
fn llama3_rope_factors_agree_with_llama_cpp() {
    check("llama3", &|s| s.replace(r#", weight = "rope_freqs""#, ""));
}

#[test]
fn qwen2_biases_agree_with_llama_cpp() {
    check("qwen2", &|s| {
        s.replace(
            r#"weight = "attn_q_bias""#,
            r#"weight = "attn_q_bias", heads = "0""#,
        )
        .replace(r#"in = ["q_bias", "pos"]"#, r#"in = ["attn_q", "pos"]"#)
        .replace(r#"in = ["k_bias", "pos"]"#, r#"in = ["attn_k", "pos"]"#)
        .replace(
            r#""k_rope", "v_bias", "pos""#,
            r#""k_rope", "attn_v", "pos""#,
        )
        .replace(r#"heads = "0""#, "")
    });
}

#[test]
fn olmo2_windows_on_three_of_four_layers_agree_with_llama_cpp() {
    check("olmo2", &|s| {
        s.replace(r#"window = "if("#, r#"window = "0 * if("#)
    });
}

#[test]
fn olmo2_window_on_every_layer_agrees_with_llama_cpp() {
    check("olmo2-swa", &|s| {
        s.replace(r#"window = "if("#, r#"window = "0 * if("#)
    });
}

#[test]
fn llama_bpe_and_qwen2_pre_tokenizers_agree_with_llama_cpp() {
    check_tokenizer("llama3");
    check_tokenizer("qwen2");
}
