//! Rotary position embedding. Pair `i` of a head (of `head_dim / 2` pairs) turns by the
//! angle `pos · theta^(-2i / head_dim)`. Normal layout pairs `(x[2i], x[2i+1])` (llama.cpp's
//! default rope, right for llama GGUFs); NeoX pairs `(x[i], x[i + head_dim/2])`.

use crate::vocab::RopeLayout;

/// Pair i's angle per position, `theta^(-2i / head_dim)`, for `i < head_dim / 2`: computed
/// once per plan.
pub fn rope_freqs(head_dim: usize, theta: f32) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| theta.powf(-2.0 * i as f32 / head_dim as f32))
        .collect()
}

/// Rotates each of `heads` heads of `x` (laid out head after head) in place; `freqs` is
/// `rope_freqs(head_dim, theta)`. Each pair's angle is computed once and used for every head.
pub fn rope_scalar(x: &mut [f32], heads: usize, pos: i32, freqs: &[f32], layout: RopeLayout) {
    let head_dim = x.len() / heads;
    let half = head_dim / 2;
    for (i, &freq) in freqs.iter().enumerate().take(half) {
        let (sin, cos) = (pos as f32 * freq).sin_cos();
        for h in x.chunks_exact_mut(head_dim) {
            let (a, b) = match layout {
                RopeLayout::Normal => (2 * i, 2 * i + 1),
                RopeLayout::Neox => (i, i + half),
            };
            let (x0, x1) = (h[a], h[b]);
            h[a] = x0 * cos - x1 * sin;
            h[b] = x0 * sin + x1 * cos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_rotation_preserves_norm() {
        let x0: Vec<f32> = (0..16).map(|i| i as f32 - 7.5).collect();
        let mut x = x0.clone();
        rope_scalar(&mut x, 2, 0, &rope_freqs(8, 10000.0), RopeLayout::Normal);
        assert_eq!(x, x0);
        rope_scalar(&mut x, 2, 17, &rope_freqs(8, 10000.0), RopeLayout::Neox);
        let n0: f32 = x0.iter().map(|v| v * v).sum();
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-3);
    }

    #[test]
    fn first_pair_turns_by_pos_radians() {
        // Pair 0 has frequency theta^0 = 1: (1, 0) at pos 1 becomes (cos 1, sin 1).
        let mut x = [1.0, 0.0, 0.0, 0.0];
        rope_scalar(&mut x, 1, 1, &rope_freqs(4, 10000.0), RopeLayout::Normal);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        let mut y = [1.0, 0.0, 0.0, 0.0];
        rope_scalar(&mut y, 1, 1, &rope_freqs(4, 10000.0), RopeLayout::Neox);
        assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[2] - 1f32.sin()).abs() < 1e-6);
    }
}
