//! Long contexts against llama.cpp (tests/golden/long, made by `scripts/make-golden long`):
//! teacher-forced logits at every 8th position from 2048 to 4095 of a 4096-token text, and
//! perplexity at a 4096-token context over two chunks, for the f16 and the q8_0 KV cache
//! (each compared with llama.cpp running the same cache type). The criteria are the short
//! ones (`common::golden`): mean KL ≤ 0.01, same argmax at ≥ 94% of positions and at every
//! position where llama.cpp's margin is above 0.5 (at the 8-bit level, a difference there only
//! where the exact arithmetic agrees with llama.cpp), perplexity within 1%.

mod common;

use common::golden::{argmax, exact_agrees, kl_divergence, session_with, Position};
use qgraph::exec::perplexity::perplexity;
use qgraph::gguf::GgufFile;
use qgraph::kernels::KernelLevel;
use qgraph::tokenizer::Tokenizer;
use qgraph::vocab::{KvType, KvTypes};

#[derive(serde::Deserialize)]
struct At {
    at: usize,
    #[serde(flatten)]
    p: Position,
}

#[derive(serde::Deserialize)]
struct Ppl {
    n_ctx: usize,
    n_tokens_scored: usize,
    ppl: f64,
}

#[derive(serde::Deserialize)]
struct LongGolden {
    cache_type: String,
    tokens: Vec<u32>,
    positions: Vec<At>,
    perplexity: Ppl,
}

fn agrees(ty: KvType, json: &str) {
    let golden: LongGolden = serde_json::from_str(json).unwrap();
    assert_eq!(golden.cache_type, ty.name());
    let model = common::real_model();
    let level = qgraph::kernels::table::detect();
    let kv = KvTypes { k: ty, v: ty };
    let n_ctx = golden.perplexity.n_ctx;

    // Teacher-forced logits, 64 tokens per call, every row's logits.
    let mut s = session_with(&model, level, 64, n_ctx, kv);
    let n_vocab = s.n_vocab();
    let mut rows = std::collections::BTreeMap::new();
    let wanted: std::collections::BTreeSet<usize> = golden.positions.iter().map(|p| p.at).collect();
    for (c, chunk) in golden.tokens.chunks(64).enumerate() {
        let logits = s.forward_all(chunk).unwrap();
        for (i, row) in logits.chunks_exact(n_vocab).enumerate() {
            if wanted.contains(&(c * 64 + i)) {
                rows.insert(c * 64 + i, row.to_vec());
            }
        }
    }
    let (mut kl_sum, mut same, mut confident, mut rounding) = (0.0, 0, 0, 0);
    for At { at, p } in &golden.positions {
        let ours = &rows[at];
        kl_sum += kl_divergence(p, ours);
        let agree = argmax(ours) == p.argmax;
        same += agree as usize;
        if p.margin > 0.5 {
            confident += 1;
            if !agree {
                let what = format!(
                    "{ty} cache, position {at}: argmax {} vs llama.cpp {} (margin {:.2})",
                    argmax(ours),
                    p.argmax,
                    p.margin
                );
                assert!(level != KernelLevel::Scalar, "{what}");
                assert!(
                    exact_agrees(&model, &golden.tokens[..=*at], p.argmax),
                    "{what}, and the exact path disagrees too"
                );
                eprintln!("{what}: 8-bit rounding (the scalar path agrees with llama.cpp)");
                rounding += 1;
            }
        }
    }
    let n = golden.positions.len();
    let (mean_kl, rate) = (kl_sum / n as f64, same as f64 / n as f64);
    eprintln!(
        "{ty} cache: {n} positions after 2048-4095 tokens, mean KL {mean_kl:.5}, argmax {:.1}%, {} of {confident} confident positions differ",
        100.0 * rate,
        rounding
    );
    assert!(n >= 200);
    assert!(mean_kl <= 0.01, "mean KL divergence {mean_kl}");
    assert!(rate >= 0.94, "argmax agreement {rate}");
    assert!(
        rounding * 100 <= confident,
        "{rounding} of {confident} confident positions differ"
    );

    // Perplexity at the long context, the whole text.
    let text = include_str!("golden/long/long.txt");
    let file = GgufFile::open(&model).unwrap();
    let tokens = Tokenizer::from_gguf(&file)
        .unwrap()
        .encode(text, false, true)
        .unwrap();
    assert_eq!(
        &tokens[..golden.tokens.len()],
        &golden.tokens[..],
        "tokenization of long.txt"
    );
    let ours = perplexity(&mut s, &tokens, n_ctx, None).unwrap();
    let rel = (ours.ppl - golden.perplexity.ppl).abs() / golden.perplexity.ppl;
    eprintln!(
        "{ty} cache: perplexity at {n_ctx}: ours {:.4}, llama.cpp {:.4} ({:+.3}%)",
        ours.ppl,
        golden.perplexity.ppl,
        100.0 * (ours.ppl / golden.perplexity.ppl - 1.0)
    );
    assert_eq!(ours.n_scored, golden.perplexity.n_tokens_scored);
    assert!(
        rel <= 0.01,
        "perplexity {} vs {}",
        ours.ppl,
        golden.perplexity.ppl
    );
}

#[test]
fn f16_cache_agrees_with_llama_cpp_at_4k() {
    agrees(KvType::F16, include_str!("golden/long/f16.json"));
}

#[test]
fn q8_0_cache_agrees_with_llama_cpp_at_4k() {
    agrees(KvType::Q8_0, include_str!("golden/long/q8_0.json"));
}
