//! Causal grouped-query attention of one query row over a KV cache.
//!
//! Query head `h` reads KV head `h / (heads / kv_heads)`. Scores are
//! `q_h · k_j / sqrt(head_dim)` for cache rows `j < n_past` (the rows at or before this
//! token's position: that is the causal mask), softmax-ed, then used to weight the V rows.

/// # Arguments
/// - `q`: one token's queries, `heads * head_dim`, head after head;
/// - `k`, `v`: the caches, rows of `kv_heads * head_dim`, at least `n_past` rows;
/// - `h0..h1`: the query heads to compute (the others' outputs are left alone);
/// - `scores`: scratch of at least `n_past`;
/// - `out`: `heads * head_dim`.
#[allow(clippy::too_many_arguments)]
pub fn attend_scalar(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_past: usize,
    heads: usize,
    kv_heads: usize,
    h0: usize,
    h1: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let head_dim = q.len() / heads;
    let kv_dim = kv_heads * head_dim;
    let group = heads / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..n_past];
    for h in h0..h1 {
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let kv_off = (h / group) * head_dim;
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            let kj = &k[j * kv_dim + kv_off..j * kv_dim + kv_off + head_dim];
            *s = qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
            max = max.max(*s);
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let oh = &mut out[(h - h0) * head_dim..(h - h0 + 1) * head_dim];
        oh.fill(0.0);
        for (j, s) in scores.iter().enumerate() {
            let w = s / sum;
            let vj = &v[j * kv_dim + kv_off..j * kv_dim + kv_off + head_dim];
            for (o, x) in oh.iter_mut().zip(vj) {
                *o += w * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_row_returns_its_value_and_equal_scores_average() {
        // One past row: softmax of one score is 1, so the output is that V row.
        let (q, k, v) = ([1.0, 2.0], [0.3, -0.1], [5.0, 7.0]);
        let mut out = [0f32; 2];
        attend_scalar(&q, &k, &v, 1, 1, 1, 0, 1, &mut [0.0; 4], &mut out);
        assert_eq!(out, [5.0, 7.0]);
        // Two rows with equal keys: the output is the mean of the V rows.
        let k2 = [1.0, 1.0, 1.0, 1.0];
        let v2 = [2.0, 4.0, 6.0, 8.0];
        attend_scalar(&q, &k2, &v2, 2, 1, 1, 0, 1, &mut [0.0; 4], &mut out);
        assert_eq!(out, [4.0, 6.0]);
    }

    #[test]
    fn grouped_heads_share_a_kv_head() {
        // Two query heads, one KV head of dim 1, two rows: scores q·k/1.
        let q = [0.0, 2f32.ln()]; // head 0: equal weights; head 1: weights 1:2
        let k = [0.0, 1.0];
        let v = [3.0, 6.0];
        let mut out = [0f32; 2];
        attend_scalar(&q, &k, &v, 2, 2, 1, 0, 2, &mut [0.0; 2], &mut out);
        assert!((out[0] - 4.5).abs() < 1e-6);
        assert!((out[1] - 5.0).abs() < 1e-6, "{out:?}"); // (3 + 2·6) / 3
    }
}
