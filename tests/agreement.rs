//! The real model against llama.cpp (tests/golden, made by scripts/make-golden with
//! llama-cpp-python). llama.cpp quantizes activations to 8-bit blocks and keeps its KV cache
//! in f16, so even an exact engine differs from it: the comparisons are statistical (see
//! ../shared/TARGETS.md): mean KL divergence, argmax agreement, greedy prefixes up to the
//! first low-margin step, and perplexity.

mod common;

use std::sync::Arc;

use qgraph::exec::perplexity::perplexity;
use qgraph::exec::Session;
use qgraph::gguf::GgufFile;
use qgraph::kernels::KernelLevel;
use qgraph::plan::{Plan, PlanOptions};
use qgraph::tokenizer::Tokenizer;

#[derive(serde::Deserialize)]
struct Position {
    ids: Vec<u32>,
    logits: Vec<f64>,
    lse: f64,
    argmax: u32,
    margin: f64,
}

#[derive(serde::Deserialize)]
struct Sequence {
    name: String,
    tokens: Vec<u32>,
    positions: Vec<Position>,
}

#[derive(serde::Deserialize)]
struct LogitsGolden {
    sequences: Vec<Sequence>,
}

#[derive(serde::Deserialize)]
struct Greedy {
    name: String,
    prompt_tokens: Vec<u32>,
    continuation: Vec<u32>,
    margins: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct GreedyGolden {
    prompts: Vec<Greedy>,
}

#[derive(serde::Deserialize)]
struct PplGolden {
    ppl: f64,
    n_ctx: usize,
    n_tokens_scored: usize,
}

fn session(level: KernelLevel, seq: usize, n_ctx: usize) -> Session {
    let model = Arc::new(GgufFile::open(common::real_model()).unwrap());
    let g = qgraph::graph::load(concat!(env!("CARGO_MANIFEST_DIR"), "/graphs/llama.toml"))
        .unwrap()
        .bind(&model)
        .unwrap();
    let opts = PlanOptions {
        seq,
        n_ctx,
        level,
        ..PlanOptions::default()
    };
    Session::new(Arc::new(Plan::new(&g, model, &opts).unwrap())).unwrap()
}

/// KL(reference ‖ ours) from the reference's top-k logits and log-sum-exp: the top-k terms
/// exactly, the rest of the vocabulary as one bucket (its mass on each side).
fn kl_divergence(p: &Position, ours: &[f32]) -> f64 {
    let max = ours.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse_q = max
        + ours
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let (mut kl, mut p_top, mut q_top) = (0.0, 0.0, 0.0);
    for (&id, &l) in p.ids.iter().zip(&p.logits) {
        let lp = l - p.lse;
        let lq = ours[id as usize] as f64 - lse_q;
        kl += lp.exp() * (lp - lq);
        p_top += lp.exp();
        q_top += lq.exp();
    }
    let (p_rest, q_rest) = ((1.0 - p_top).max(1e-12), (1.0 - q_top).max(1e-12));
    kl + p_rest * (p_rest / q_rest).ln()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0 as u32
}

fn check_logits(level: KernelLevel) {
    let golden: LogitsGolden = serde_json::from_str(include_str!("golden/logits.json")).unwrap();
    let mut s = session(level, 1, 512);
    let (mut n, mut kl_sum, mut kl_max, mut same, mut confident, mut confident_same) =
        (0, 0.0, 0f64, 0, 0, 0);
    for seq in &golden.sequences {
        s.reset();
        for (i, p) in seq.positions.iter().enumerate() {
            let ours = s.forward(&[seq.tokens[i]]).unwrap();
            let kl = kl_divergence(p, ours);
            kl_sum += kl;
            kl_max = kl_max.max(kl);
            n += 1;
            let agree = argmax(ours) == p.argmax;
            same += agree as usize;
            if p.margin > 0.5 {
                confident += 1;
                confident_same += agree as usize;
                assert!(
                    agree,
                    "{} position {i}: argmax {} vs llama.cpp {} (margin {:.2})",
                    seq.name,
                    argmax(ours),
                    p.argmax,
                    p.margin
                );
            }
        }
    }
    let mean_kl = kl_sum / n as f64;
    let rate = same as f64 / n as f64;
    eprintln!(
        "{level:?}: {n} positions, mean KL {mean_kl:.5}, max KL {kl_max:.4}, argmax {same}/{n} ({:.1}%), above margin 0.5 {confident_same}/{confident}",
        100.0 * rate
    );
    assert!(n >= 300);
    assert!(mean_kl <= 0.01, "mean KL divergence {mean_kl}");
    assert!(rate >= 0.94, "argmax agreement {rate}");
}

#[test]
fn logits_agree_with_llama_cpp_scalar() {
    check_logits(KernelLevel::Scalar);
}

/// The SIMD path quantizes activations to 8-bit blocks (as llama.cpp does): it must meet the
/// same bar. Fails loudly on a CPU without AVX2 rather than skipping.
#[cfg(target_arch = "x86_64")]
#[test]
fn logits_agree_with_llama_cpp_avx2() {
    assert!(
        qgraph::kernels::table::supports(KernelLevel::Avx2),
        "this CPU lacks AVX2"
    );
    check_logits(KernelLevel::Avx2);
}

#[test]
fn greedy_continuations_agree_until_a_low_margin_step() {
    let golden: GreedyGolden = serde_json::from_str(include_str!("golden/greedy.json")).unwrap();
    assert!(golden.prompts.len() >= 10);
    let mut s = session(qgraph::kernels::table::detect(), 1, 256);
    for g in &golden.prompts {
        s.reset();
        let mut logits: Vec<f32> = Vec::new();
        for &t in &g.prompt_tokens {
            logits = s.forward(&[t]).unwrap().to_vec();
        }
        // Identical up to (and including) the first step where llama.cpp itself was unsure.
        let mut matched = 0;
        for (step, (&want, &margin)) in g.continuation.iter().zip(&g.margins).enumerate() {
            let got = argmax(&logits);
            if margin < 0.5 {
                break;
            }
            assert_eq!(
                got, want,
                "{}: step {step} differs (llama.cpp margin {margin:.2})",
                g.name
            );
            matched += 1;
            logits = s.forward(&[got]).unwrap().to_vec();
        }
        // Teacher-forced: at every confident step, the same next token.
        s.reset();
        let mut logits: Vec<f32> = Vec::new();
        for &t in &g.prompt_tokens {
            logits = s.forward(&[t]).unwrap().to_vec();
        }
        let mut confident = 0;
        for (step, (&want, &margin)) in g.continuation.iter().zip(&g.margins).enumerate() {
            if margin >= 0.5 {
                assert_eq!(
                    argmax(&logits),
                    want,
                    "{}: teacher-forced step {step} (margin {margin:.2})",
                    g.name
                );
                confident += 1;
            }
            logits = s.forward(&[want]).unwrap().to_vec();
        }
        eprintln!("{}: identical for {matched} free-running steps; {confident} confident teacher-forced steps agree", g.name);
    }
}

#[test]
fn perplexity_within_one_percent_of_llama_cpp() {
    let golden: PplGolden = serde_json::from_str(include_str!("golden/perplexity.json")).unwrap();
    let text = include_str!("golden/perplexity.txt");
    let model = GgufFile::open(common::real_model()).unwrap();
    let tokens = Tokenizer::from_gguf(&model)
        .unwrap()
        .encode(text, false, true)
        .unwrap();
    let mut s = session(qgraph::kernels::table::detect(), 64, golden.n_ctx);
    let ours = perplexity(&mut s, &tokens, golden.n_ctx).unwrap();
    let rel = (ours.ppl - golden.ppl).abs() / golden.ppl;
    eprintln!(
        "perplexity: ours {:.4}, llama.cpp {:.4} ({:+.3}%)",
        ours.ppl,
        golden.ppl,
        100.0 * (ours.ppl / golden.ppl - 1.0)
    );
    assert_eq!(ours.n_scored, golden.n_tokens_scored);
    assert!(rel <= 0.01, "perplexity {} vs {}", ours.ppl, golden.ppl);
}
