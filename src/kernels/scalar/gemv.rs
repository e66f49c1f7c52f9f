//! Matrix–vector products and row conversion for each weight format.

use half::f16;

use super::act::BlockQ8Act;
use crate::quant::{bf16_to_f32, BlockFormat, QK_K};

/// # Safety
/// `w` points to `n` values of `T`, aligned (see `GemvFn`).
unsafe fn row<'a, T>(w: *const u8, n: usize) -> &'a [T] {
    // SAFETY: the caller guarantees `n` aligned values of T at `w`, valid for the call.
    unsafe { std::slice::from_raw_parts(w as *const T, n) }
}

/// Sum of `x[i] * y[i]` over one dequantized block.
fn dot_block(block: &[f32], x: &[f32]) -> f32 {
    block.iter().zip(x).map(|(a, b)| a * b).sum()
}

/// The reference product for a block format: each block dequantized to f32, then an f32
/// dot product with `x`.
///
/// # Safety
/// See `kernels::GemvFn`.
pub unsafe fn gemv_blocks_scalar<B: BlockFormat>(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    let n_blocks = x.len() / B::LEN;
    let mut tmp = [0f32; QK_K];
    let tmp = &mut tmp[..B::LEN];
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r lies within the matrix the caller vouched for.
        let blocks: &[B] = unsafe { row(w.add(r * row_bytes), n_blocks) };
        let mut acc = 0f32;
        for (b, xs) in blocks.iter().zip(x.chunks_exact(B::LEN)) {
            b.dequantize_into(tmp);
            acc += dot_block(tmp, xs);
        }
        *o = acc;
    }
}

/// Converts one row of a block format to f32.
///
/// # Safety
/// See `kernels::RowFn`.
pub unsafe fn row_blocks_scalar<B: BlockFormat>(w: *const u8, out: &mut [f32]) {
    // SAFETY: the caller vouches for one row of out.len() elements at w.
    let blocks: &[B] = unsafe { row(w, out.len() / B::LEN) };
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(B::LEN)) {
        b.dequantize_into(o);
    }
}

/// The gemv of a 16-bit float format (F16, or BF16), each weight widened by `widen`.
///
/// # Safety
/// See `kernels::GemvFn`.
unsafe fn gemv_half<const BF16: bool>(w: *const u8, row_bytes: usize, x: &[f32], out: &mut [f32]) {
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r lies within the matrix the caller vouched for.
        let wr: &[u16] = unsafe { row(w.add(r * row_bytes), x.len()) };
        *o = wr.iter().zip(x).map(|(&a, b)| widen::<BF16>(a) * b).sum();
    }
}

/// An F16 (or, with `BF16`, a BF16) as f32.
fn widen<const BF16: bool>(v: u16) -> f32 {
    if BF16 {
        bf16_to_f32(v)
    } else {
        f16::from_bits(v).to_f32()
    }
}

/// # Safety
/// See `kernels::GemvFn`.
pub unsafe fn gemv_f16_scalar(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_half::<false>(w, row_bytes, x, out) }
}

/// # Safety
/// See `kernels::GemvFn`.
pub unsafe fn gemv_bf16_scalar(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_half::<true>(w, row_bytes, x, out) }
}

/// Converts one row of a 16-bit float format.
///
/// # Safety
/// See `kernels::RowFn`.
pub unsafe fn row_half_scalar<const BF16: bool>(w: *const u8, out: &mut [f32]) {
    // SAFETY: the caller vouches for one row of out.len() 16-bit values at w.
    let src: &[u16] = unsafe { row(w, out.len()) };
    for (o, &v) in out.iter_mut().zip(src) {
        *o = widen::<BF16>(v);
    }
}

/// # Safety
/// See `kernels::GemvFn`.
pub unsafe fn gemv_f32_scalar(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r lies within the matrix the caller vouched for.
        let wr: &[f32] = unsafe { row(w.add(r * row_bytes), x.len()) };
        *o = wr.iter().zip(x).map(|(a, b)| a * b).sum();
    }
}

/// # Safety
/// See `kernels::RowFn`.
pub unsafe fn row_f32_scalar(w: *const u8, out: &mut [f32]) {
    // SAFETY: the caller vouches for one row of out.len() f32 at w.
    out.copy_from_slice(unsafe { row::<f32>(w, out.len()) });
}

#[cfg(test)]
mod tests {
    use crate::quant::{quantize, GgmlType};

    /// Each format's gemv against a dot product over `quant::dequantize`, an independent path.
    #[test]
    fn gemv_matches_dequantized_dot() {
        let (rows, cols) = (5, 512);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0)
            .collect();
        for dtype in GgmlType::COMPUTABLE {
            let level = crate::kernels::KernelLevel::Scalar;
            let layout = crate::kernels::WeightLayout::Rows;
            let f = crate::kernels::table::gemv(dtype, level, cols, layout)
                .unwrap_or_else(|| panic!("{dtype} has no scalar gemv"))
                .f;
            let bytes = quantize(dtype, &w).unwrap();
            // Keep the bytes 4-aligned for the f32 rows.
            let mut aligned = vec![0u32; bytes.len().div_ceil(4)];
            bytemuck::cast_slice_mut::<u32, u8>(&mut aligned)[..bytes.len()]
                .copy_from_slice(&bytes);
            let mut deq = vec![0f32; w.len()];
            crate::quant::dequantize(dtype, &bytes, &mut deq).unwrap();
            let mut out = vec![0f32; rows];
            let row_bytes = bytes.len() / rows;
            // SAFETY: `aligned` holds rows * row_bytes bytes, 4-aligned.
            unsafe { f(aligned.as_ptr() as *const u8, row_bytes, &x, &[], &mut out) };
            for r in 0..rows {
                let want: f32 = deq[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| a * b)
                    .sum();
                let mag: f32 = deq[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (a * b).abs())
                    .sum();
                assert!(
                    (out[r] - want).abs() <= 1e-5 * mag.max(1.0),
                    "{dtype} row {r}: {} vs {want}",
                    out[r]
                );
            }
        }
    }
}
