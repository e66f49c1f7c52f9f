//! Elementwise ops and row softmax.

pub fn add_scalar(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

pub fn accumulate_scalar(acc: &mut [f32], x: &[f32]) {
    for (a, v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

pub fn mul_scalar(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x * y;
    }
}

pub fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

/// `g = silu(g) · u`, the SwiGLU activation.
pub fn silu_mul_scalar(g: &mut [f32], u: &[f32]) {
    for (a, b) in g.iter_mut().zip(u) {
        *a = silu(*a) * b;
    }
}

pub fn silu_scalar(x: &[f32], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = silu(*v);
    }
}

/// GELU with the tanh approximation (Gemma's FFN activation, ggml's `gelu`).
pub fn gelu_scalar(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu(v);
    }
}

/// GELU, tanh approximation.
pub fn gelu(v: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * v * (1.0 + (SQRT_2_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh())
}

/// `g = gelu(g) · u`, the GeGLU activation: bitwise `gelu_scalar` then `mul_scalar`.
pub fn gelu_mul_scalar(g: &mut [f32], u: &[f32]) {
    for (a, b) in g.iter_mut().zip(u) {
        *a = gelu(*a) * b;
    }
}

/// `out = x · factor`.
pub fn scale_scalar(x: &[f32], factor: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * factor;
    }
}

/// Softmax of a row, shifted by its maximum so `exp` cannot overflow.
pub fn softmax_scalar(x: &[f32], out: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let mut out = [0f32; 3];
        add_scalar(&[1.0, 2.0, 3.0], &[0.5, -2.0, 1.0], &mut out);
        assert_eq!(out, [1.5, 0.0, 4.0]);
        accumulate_scalar(&mut out, &[1.0, 1.0, -4.0]);
        assert_eq!(out, [2.5, 1.0, 0.0]);
        mul_scalar(&[1.0, 2.0, 3.0], &[0.5, -2.0, 1.0], &mut out);
        assert_eq!(out, [0.5, -4.0, 3.0]);
        // silu(0) = 0; silu(2) = 2 / (1 + e^-2) = 1.7615942
        silu_scalar(&[0.0, 2.0, -1.0], &mut out);
        assert!((out[1] - 1.761_594_2).abs() < 1e-6 && out[0] == 0.0);
        // softmax([0, ln 3]) = [0.25, 0.75]
        let mut p = [0f32; 2];
        softmax_scalar(&[0.0, 3f32.ln()], &mut p);
        assert!((p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6);
        softmax_scalar(&[1000.0, 1000.0], &mut p);
        assert_eq!(p, [0.5, 0.5]);
    }
}
