//! RMS normalization: `out = x / sqrt(mean(x²) + eps) * gamma`.

/// The factor `1 / sqrt(mean(x²) + eps)`.
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}

pub fn rmsnorm_scalar(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    let s = rms_scale(x, eps);
    for ((o, v), g) in out.iter_mut().zip(x).zip(gamma) {
        *o = v * s * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // mean(x²) = (9 + 16) / 2 = 12.5; 1/sqrt(12.5) = 0.28284271
        let mut out = [0f32; 2];
        rmsnorm_scalar(&[3.0, -4.0], &[1.0, 2.0], 0.0, &mut out);
        assert!((out[0] - 0.848_528_1).abs() < 1e-6, "{out:?}");
        assert!((out[1] + 2.262_741_7).abs() < 1e-6, "{out:?}");
    }
}
