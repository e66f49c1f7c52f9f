//! Causal grouped-query attention of one query row over a layer's KV cache, one KV head's
//! group of query heads at a time.
//!
//! Query heads `g·G..(g+1)·G` (`G = heads / kv_heads`) read KV head `g`: each K value is
//! read once for the whole group. Scores are `q_h · k_j · scale` for the cache positions
//! `j < n_past` (those at or before the token's own: the causal mask). The softmax runs
//! online over tiles of `ATTN_TILE` positions: per tile, the running maximum `m` moves to
//! the tile's, the running sum `l` and the output `o` are rescaled by `e^(m_old - m_new)`,
//! then the tile's `e^(s - m)` are added to `l` and its weighted V rows to `o`; at the end
//! `o / l`. Tiles start at multiples of `ATTN_TILE`, so a row's arithmetic depends only on
//! its position, never on the call it came in: prefill = decode, bitwise, at every level.
//! With a sliding window W, a row attends positions `n_past − W..n_past` only: tiles before
//! the one holding the first are skipped, and that tile's earlier positions score −∞.

/// The first position a row that attends `n_past` positions reads (sliding window).
pub fn window_start(p: &AttnParams, n_past: usize) -> usize {
    match p.window {
        0 => 0,
        w => n_past.saturating_sub(w),
    }
}

use crate::kernels::kv::{load_k, load_v, KvGeom};

/// Positions per softmax tile.
pub const ATTN_TILE: usize = 64;

/// What the planner fixes for one layer's attention.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AttnParams {
    pub geom: KvGeom,
    /// Query heads per KV head.
    pub group: usize,
    /// Score scale, `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Positions a row attends, its own included (sliding-window attention); 0: all.
    pub window: usize,
}

impl AttnParams {
    /// f32 scratch one call needs: the group's tile of scores, one K or V row, and three
    /// numbers per head (running maximum, sum, rescale).
    pub fn work_len(&self) -> usize {
        self.group * ATTN_TILE + self.geom.head_dim + 3 * self.group
    }
}

/// # Arguments
/// - `q`: the group's queries, `G · head_dim` (query heads `g·G..(g+1)·G` of a row);
/// - `kc`, `vc`: the layer's K and V caches, laid out as `p.geom` says;
/// - `n_past`: positions to attend (the row's position + 1);
/// - `work`: scratch of `p.work_len()`;
/// - `out`: the group's outputs, `G · head_dim`.
///
/// # Safety
/// The caches hold positions `0..n_past ≤ geom.rows` of KV head `g < kv_heads`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn attend_scalar(
    p: &AttnParams,
    q: &[f32],
    kc: *const u8,
    vc: *const u8,
    g: usize,
    n_past: usize,
    work: &mut [f32],
    out: &mut [f32],
) {
    let (hd, gq) = (p.geom.head_dim, p.group);
    let (s, rest) = work.split_at_mut(gq * ATTN_TILE);
    let (row, rest) = rest.split_at_mut(hd);
    let (m, rest) = rest.split_at_mut(gq);
    let l = &mut rest[..gq];
    m.fill(f32::NEG_INFINITY);
    l.fill(0.0);
    out.fill(0.0);
    let first = window_start(p, n_past);
    for t0 in (first / ATTN_TILE * ATTN_TILE..n_past).step_by(ATTN_TILE) {
        let len = ATTN_TILE.min(n_past - t0);
        for j in 0..len {
            // SAFETY: position t0 + j < n_past of head g (the caller's contract).
            unsafe { load_k(kc, &p.geom, g, t0 + j, row) };
            for i in 0..gq {
                let qi = &q[i * hd..(i + 1) * hd];
                let dot = qi.iter().zip(row.iter()).fold(0f32, |a, (x, y)| a + x * y);
                // Outside the window: weight exactly 0.
                s[i * ATTN_TILE + j] = if t0 + j < first {
                    f32::NEG_INFINITY
                } else {
                    dot * p.scale
                };
            }
        }
        for i in 0..gq {
            let si = &mut s[i * ATTN_TILE..i * ATTN_TILE + len];
            let tile_max = si.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let new_max = m[i].max(tile_max);
            let alpha = (m[i] - new_max).exp();
            let mut sum = 0f32;
            for x in si.iter_mut() {
                *x = (*x - new_max).exp();
                sum += *x;
            }
            l[i] = l[i] * alpha + sum;
            m[i] = new_max;
            for o in &mut out[i * hd..(i + 1) * hd] {
                *o *= alpha;
            }
        }
        for j in 0..len {
            // SAFETY: as above, for V.
            unsafe { load_v(vc, &p.geom, g, t0 + j, row) };
            for i in 0..gq {
                let w = s[i * ATTN_TILE + j];
                for (o, x) in out[i * hd..(i + 1) * hd].iter_mut().zip(row.iter()) {
                    *o += w * x;
                }
            }
        }
    }
    for i in 0..gq {
        let inv = 1.0 / l[i];
        for o in &mut out[i * hd..(i + 1) * hd] {
            *o *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::kv::{store_k, store_v};
    use crate::vocab::{KvType, KvTypes};

    /// One KV head's caches holding the rows `k` and `v`, written by the stores.
    fn caches(geom: &KvGeom, k: &[Vec<f32>], v: &[Vec<f32>]) -> (Vec<u8>, Vec<u8>) {
        let mut kc = vec![0u8; geom.k_bytes()];
        let mut vc = vec![0u8; geom.v_bytes()];
        for (p, (kr, vr)) in k.iter().zip(v).enumerate() {
            // SAFETY: head 0, p < rows, whole rows; the buffers are the geometry's sizes.
            unsafe {
                store_k(geom.k).0(kr, kc.as_mut_ptr(), geom, 0, p);
                store_v(geom.v).0(vr, vc.as_mut_ptr(), geom, 0, p);
            }
        }
        (kc, vc)
    }

    fn params(hd: usize, group: usize, rows: usize) -> AttnParams {
        let t = KvTypes {
            k: KvType::F32,
            v: KvType::F32,
        };
        AttnParams {
            geom: KvGeom::new(t, 1, hd, rows),
            group,
            scale: 1.0,
            window: 0,
        }
    }

    fn run(p: &AttnParams, q: &[f32], kc: &[u8], vc: &[u8], n_past: usize) -> Vec<f32> {
        let mut out = vec![0f32; q.len()];
        let mut work = vec![0f32; p.work_len()];
        // SAFETY: the caches hold n_past positions of head 0.
        unsafe {
            attend_scalar(
                p,
                q,
                kc.as_ptr(),
                vc.as_ptr(),
                0,
                n_past,
                &mut work,
                &mut out,
            )
        };
        out
    }

    #[test]
    fn single_row_returns_its_value_and_equal_scores_average() {
        let p = params(2, 1, 8);
        let (kc, vc) = caches(&p.geom, &[vec![0.3, -0.1]], &[vec![5.0, 7.0]]);
        // One past row: softmax of one score is 1, so the output is that V row.
        assert_eq!(run(&p, &[1.0, 2.0], &kc, &vc, 1), [5.0, 7.0]);
        // Two rows with equal keys: the output is the mean of the V rows.
        let (kc, vc) = caches(
            &p.geom,
            &[vec![1.0, 1.0], vec![1.0, 1.0]],
            &[vec![2.0, 4.0], vec![6.0, 8.0]],
        );
        assert_eq!(run(&p, &[1.0, 2.0], &kc, &vc, 2), [4.0, 6.0]);
    }

    #[test]
    fn grouped_heads_share_a_kv_head() {
        // Two query heads, one KV head of dim 1, two rows: scores q·k.
        let p = params(1, 2, 8);
        let (kc, vc) = caches(&p.geom, &[vec![0.0], vec![1.0]], &[vec![3.0], vec![6.0]]);
        let out = run(&p, &[0.0, 2f32.ln()], &kc, &vc, 2);
        assert!((out[0] - 4.5).abs() < 1e-6);
        assert!((out[1] - 5.0).abs() < 1e-6, "{out:?}"); // (3 + 2·6) / 3
    }

    #[test]
    fn tiles_give_the_one_pass_softmax() {
        // 150 positions cross two tile boundaries; compare with a plain f64 softmax, over
        // every position, then over sliding windows that start inside a tile, on a tile
        // boundary, and skip a whole tile.
        for window in [0, 70, 86, 20, 150, 400] {
            softmax_over_window(window);
        }
    }

    fn softmax_over_window(window: usize) {
        let (hd, n) = (4, 150);
        let mut p = params(hd, 1, n);
        p.window = window;
        let first = window_start(&p, n);
        let k: Vec<Vec<f32>> = (0..n)
            .map(|j| {
                (0..hd)
                    .map(|d| ((j * 5 + d) as f32 * 0.7).sin() * 3.0)
                    .collect()
            })
            .collect();
        let v: Vec<Vec<f32>> = (0..n)
            .map(|j| (0..hd).map(|d| ((j + 3 * d) as f32 * 0.3).cos()).collect())
            .collect();
        let (kc, vc) = caches(&p.geom, &k, &v);
        let q = [0.5f32, -1.0, 2.0, 0.25];
        let out = run(&p, &q, &kc, &vc, n);
        let s: Vec<f64> = k
            .iter()
            .enumerate()
            .map(|(j, kr)| {
                if j < first {
                    f64::NEG_INFINITY
                } else {
                    kr.iter().zip(&q).map(|(a, b)| (a * b) as f64).sum()
                }
            })
            .collect();
        let max = s.iter().cloned().fold(f64::MIN, f64::max);
        let w: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
        let total: f64 = w.iter().sum();
        for d in 0..hd {
            let want: f64 = w
                .iter()
                .zip(&v)
                .map(|(wj, vj)| wj * vj[d] as f64)
                .sum::<f64>()
                / total;
            assert!(
                (out[d] as f64 - want).abs() < 1e-5,
                "window {window}, dim {d}: {} vs {want}",
                out[d]
            );
        }
    }
}
