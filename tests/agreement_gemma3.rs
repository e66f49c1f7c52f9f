//! Gemma 3 270M Q4_K_M (`graphs/gemma3.toml`) against llama.cpp (tests/golden/gemma3, made by
//! `scripts/make-golden gemma3` with llama-cpp-python): teacher-forced logits of eight
//! prompts and their greedy continuations, and perplexity at a 1024-token context, where
//! five of every six layers attend only their last 512 positions. The criteria are
//! qgraph's (`common::golden`): mean KL ≤ 0.01, same argmax at ≥ 94% of positions and at
//! every position where llama.cpp's margin is above 0.5 (at the 8-bit level, a difference
//! there only where the exact arithmetic agrees with llama.cpp), perplexity within 1%.

mod common;

use common::golden::{check_logits, session};
use qgraph::exec::perplexity::perplexity;
use qgraph::gguf::GgufFile;
use qgraph::kernels::KernelLevel;
use qgraph::tokenizer::Tokenizer;

#[test]
fn logits_agree_with_llama_cpp() {
    let model = common::gemma3_model();
    check_logits(
        &model,
        include_str!("golden/gemma3/logits.json"),
        KernelLevel::Avx2,
    );
}

#[derive(serde::Deserialize)]
struct Ppl {
    n_ctx: usize,
    n_chunks: usize,
    n_tokens_scored: usize,
    ppl: f64,
}

#[test]
fn perplexity_past_the_sliding_window_agrees_with_llama_cpp() {
    let golden: Ppl = serde_json::from_str(include_str!("golden/gemma3/perplexity.json")).unwrap();
    let model = common::gemma3_model();
    let tok = Tokenizer::from_gguf(&GgufFile::open(&model).unwrap()).unwrap();
    let text = include_str!("golden/long/long.txt");
    let tokens = tok.encode(text, false, false).unwrap();
    let tokens = &tokens[..golden.n_ctx * golden.n_chunks];
    let mut s = session(&model, qgraph::kernels::table::detect(), 64, golden.n_ctx);
    let ours = perplexity(&mut s, tokens, golden.n_ctx, tok.bos).unwrap();
    let rel = (ours.ppl - golden.ppl).abs() / golden.ppl;
    eprintln!(
        "gemma3 perplexity at {}: ours {:.4}, llama.cpp {:.4} ({:+.3}%)",
        golden.n_ctx,
        ours.ppl,
        golden.ppl,
        100.0 * (ours.ppl / golden.ppl - 1.0)
    );
    assert_eq!(ours.n_scored, golden.n_tokens_scored);
    assert!(rel <= 0.01, "perplexity {} vs {}", ours.ppl, golden.ppl);
}
