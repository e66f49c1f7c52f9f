//! Activations quantized to 8-bit blocks, so quantized weights can be multiplied with integer
//! dot products (as ggml's `block_q8_1`): per 32 values a scale `d = max|x| / 127`, codes
//! `q = round(x / d)` in -127..=127, `s = d · Σq` (which the Q4_0 and Q4_1 products need
//! for their offsets), and `h`, the exact `Σq` of each 16-code half (which the K formats
//! with a scale or an offset per 16 weights need: Q2_K's offsets, Q3_K's code bias). A step
//! quantizes its input row once and every product reuses it. Codes round to nearest, ties
//! to even. Steps with Q2_K or Q3_K products quantize with one scale per 256 values instead
//! (`quantize_act_tiled_scalar`, as ggml's `block_q8_K`), so those products can sum a
//! 256-weight tile in integers.

use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QK};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8Act {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
    /// `Σ qs[0..16]` and `Σ qs[16..32]` (each within ±2032).
    pub h: [i16; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ8Act>() == 44);

pub fn quantize_act_scalar(x: &[f32], out: &mut [BlockQ8Act]) {
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        quantize_block(xs, amax(xs) / 127.0, b);
    }
}

/// Activations whose eight blocks in each run of 256 share one scale, `max|x| / 127` over
/// the run (as ggml's `block_q8_K` for its K-quant products): the blocks are
/// `quantize_act_scalar`'s with that `d`. A product whose weights have one float scale per
/// 256 (Q2_K, Q3_K) then sums a tile's blocks in integers and converts once per tile. Rows of a
/// length that is not a multiple of 256 end with blocks of their own scale.
pub fn quantize_act_tiled_scalar(x: &[f32], out: &mut [BlockQ8Act]) {
    for (xs, bs) in x.chunks(TILED).zip(out.chunks_mut(TILED / QK)) {
        let d = amax(xs) / 127.0;
        for (xb, b) in xs.chunks_exact(QK).zip(bs.iter_mut()) {
            quantize_block(
                xb,
                if xs.len() == TILED {
                    d
                } else {
                    amax(xb) / 127.0
                },
                b,
            );
        }
    }
}

/// Values per shared scale in `quantize_act_tiled_scalar`.
pub const TILED: usize = 256;

fn amax(xs: &[f32]) -> f32 {
    xs.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// One block of 32 values with the scale `d` (at least their `max|x| / 127`).
fn quantize_block(xs: &[f32], d: f32, b: &mut BlockQ8Act) {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in b.qs.iter_mut().zip(xs) {
        // Ties to even, as the SIMD quantizer's round instruction does.
        *q = (v * id).round_ties_even() as i8;
    }
    b.h = half_sums(&b.qs);
    b.d = d;
    b.s = d * (b.h[0] as i32 + b.h[1] as i32) as f32;
}

/// `Σ qs` over each 16-code half (`BlockQ8Act::h`).
pub fn half_sums(qs: &[i8; QK]) -> [i16; 2] {
    let half = |r: &[i8]| r.iter().map(|&v| v as i16).sum::<i16>();
    [half(&qs[..QK / 2]), half(&qs[QK / 2..])]
}

/// # Safety
/// `w` points to `n` blocks of `T`, aligned.
unsafe fn blocks_at<'a, T>(w: *const u8, n: usize) -> &'a [T] {
    // SAFETY: forwarded from the caller.
    unsafe { std::slice::from_raw_parts(w as *const T, n) }
}

/// `Σ q_w · q_x` over one block pair, exact in i32.
fn idot(w: &[i32; QK], x: &[i8; QK]) -> i32 {
    w.iter().zip(x).map(|(&a, &b)| a * b as i32).sum()
}

fn nibbles(qs: &[u8; QK / 2]) -> [i32; QK] {
    let mut q = [0i32; QK];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = (b & 0x0f) as i32;
        q[j + QK / 2] = (b >> 4) as i32;
    }
    q
}

/// The scalar twins of the 8-bit-activation products: the same arithmetic as the SIMD
/// kernels (exact integer block dots, then one f32 multiply-add per block), in plain Rust.
///
/// # Safety
/// As `kernels::GemvFn`, with `xq` holding `x.len() / 32` blocks.
pub unsafe fn gemv_q4_1_q8_scalar(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r of the matrix the caller vouched for.
        let row: &[BlockQ4_1] = unsafe { blocks_at(w.add(r * row_bytes), xq.len()) };
        *o = row
            .iter()
            .zip(xq)
            .map(|(b, x)| {
                b.d.to_f32() * x.d * idot(&nibbles(&b.qs), &x.qs) as f32 + b.m.to_f32() * x.s
            })
            .sum();
    }
}

/// # Safety
/// As `gemv_q4_1_q8_scalar`.
pub unsafe fn gemv_q4_0_q8_scalar(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r of the matrix the caller vouched for.
        let row: &[BlockQ4_0] = unsafe { blocks_at(w.add(r * row_bytes), xq.len()) };
        // (q - 8)·d_w · q_x·d_x summed = d_w·(d_x·Σ q q_x − 8·s_x)
        *o = row
            .iter()
            .zip(xq)
            .map(|(b, x)| b.d.to_f32() * (x.d * idot(&nibbles(&b.qs), &x.qs) as f32 - 8.0 * x.s))
            .sum();
    }
}

/// # Safety
/// As `gemv_q4_1_q8_scalar`.
pub unsafe fn gemv_q8_0_q8_scalar(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r of the matrix the caller vouched for.
        let row: &[BlockQ8_0] = unsafe { blocks_at(w.add(r * row_bytes), xq.len()) };
        *o = row
            .iter()
            .zip(xq)
            .map(|(b, x)| {
                let q: [i32; QK] = std::array::from_fn(|i| b.qs[i] as i32);
                b.d.to_f32() * x.d * idot(&q, &x.qs) as f32
            })
            .sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_activations_reconstruct_within_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 29 % 61) as f32 - 30.0) / 7.0)
            .collect();
        let mut q = vec![BlockQ8Act::default(); 2];
        quantize_act_scalar(&x, &mut q);
        for (b, xs) in q.iter().zip(x.chunks(32)) {
            let sum: i32 = b.qs.iter().map(|&v| v as i32).sum();
            assert!((b.s - b.d * sum as f32).abs() < 1e-6);
            let lo: i32 = b.qs[..16].iter().map(|&v| v as i32).sum();
            assert_eq!(b.h, [lo as i16, (sum - lo) as i16]);
            for (&c, &v) in b.qs.iter().zip(xs) {
                assert!((c as f32 * b.d - v).abs() <= b.d / 2.0 + 1e-6);
            }
        }
    }
}
