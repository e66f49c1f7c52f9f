//! Perplexity computed the way llama.cpp's `llama-perplexity` does: the tokens are cut into
//! consecutive chunks of `n_ctx` (an incomplete tail is dropped), each chunk is evaluated
//! from an empty context, and only the second half of each chunk is scored — position `j`
//! for `j` in `[n_ctx/2, n_ctx - 1)` predicting token `j + 1` — so every scored token has at
//! least `n_ctx/2` tokens of context. For a model that starts its input with BOS, the first
//! token of each chunk is replaced by BOS, as llama-perplexity does.

use super::{ExecError, Session};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    pub nll_sum: f64,
    pub n_scored: usize,
    pub chunk_ppl: Vec<f64>,
    pub n_ctx: usize,
}

/// `-log softmax(logits)[target]`, in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln() - logits[target as usize] as f64
}

/// Scores `tokens` in chunks of `n_ctx` with `session` (whose plan must hold `n_ctx`
/// positions; it is fed `session.plan().seq` tokens per call); `bos`, if given, replaces
/// the first token of each chunk.
pub fn perplexity(
    session: &mut Session,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
) -> Result<Perplexity, ExecError> {
    perplexity_with(session, tokens, n_ctx, bos, &mut |_, _, _| {})
}

/// As `perplexity`, calling `progress(chunks done, chunks in all, ppl so far)` after each
/// chunk.
pub fn perplexity_with(
    session: &mut Session,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Perplexity, ExecError> {
    let chunks = tokens.len() / n_ctx.max(1);
    let n_vocab = session.n_vocab();
    let batch = session.plan().seq;
    let first = n_ctx / 2;
    let (mut nll_sum, mut n_scored, mut chunk_ppl) = (0f64, 0usize, Vec::new());
    for chunk in tokens.chunks_exact(n_ctx) {
        session.reset();
        let (mut chunk_nll, mut chunk_n) = (0f64, 0usize);
        for (b, part) in chunk.chunks(batch).enumerate() {
            let logits = match (b, bos, part.split_first()) {
                (0, Some(bos), Some((_, rest))) => {
                    let mut first = Vec::with_capacity(part.len());
                    first.push(bos);
                    first.extend_from_slice(rest);
                    session.forward_all(&first)?
                }
                _ => session.forward_all(part)?,
            };
            for (i, row) in logits.chunks_exact(n_vocab).enumerate() {
                let j = b * batch + i;
                if j >= first && j + 1 < n_ctx {
                    chunk_nll += nll(row, chunk[j + 1]);
                    chunk_n += 1;
                }
            }
        }
        chunk_ppl.push((chunk_nll / chunk_n.max(1) as f64).exp());
        nll_sum += chunk_nll;
        n_scored += chunk_n;
        progress(
            chunk_ppl.len(),
            chunks,
            (nll_sum / n_scored.max(1) as f64).exp(),
        );
    }
    Ok(Perplexity {
        ppl: (nll_sum / n_scored.max(1) as f64).exp(),
        nll_sum,
        n_scored,
        chunk_ppl,
        n_ctx,
    })
}
