//! Matrix–vector products and row conversion for each weight format.

use half::f16;

use super::act::BlockQ8Act;
use crate::quant::{blocks, BlockQ4_0, BlockQ4_1, BlockQ8_0, QK};

/// # Safety
/// `w` points to `n` values of `T`, aligned (see `GemvFn`).
unsafe fn row<'a, T>(w: *const u8, n: usize) -> &'a [T] {
    // SAFETY: the caller guarantees `n` aligned values of T at `w`, valid for the call.
    unsafe { std::slice::from_raw_parts(w as *const T, n) }
}

/// Sum of `x[i] * y[i]` over one dequantized block.
fn dot_block(block: &[f32; QK], x: &[f32]) -> f32 {
    block.iter().zip(x).map(|(a, b)| a * b).sum()
}

macro_rules! block_gemv {
    ($gemv:ident, $dequant_row:ident, $block:ty, $dequant:path) => {
        /// # Safety
        /// See `kernels::GemvFn`.
        pub unsafe fn $gemv(
            w: *const u8,
            row_bytes: usize,
            x: &[f32],
            _xq: &[BlockQ8Act],
            out: &mut [f32],
        ) {
            let n_blocks = x.len() / QK;
            let mut tmp = [0f32; QK];
            for (r, o) in out.iter_mut().enumerate() {
                // SAFETY: row r lies within the matrix the caller vouched for.
                let blocks: &[$block] = unsafe { row(w.add(r * row_bytes), n_blocks) };
                let mut acc = 0f32;
                for (b, xs) in blocks.iter().zip(x.chunks_exact(QK)) {
                    $dequant(b, &mut tmp);
                    acc += dot_block(&tmp, xs);
                }
                *o = acc;
            }
        }

        /// # Safety
        /// See `kernels::RowFn`.
        pub unsafe fn $dequant_row(w: *const u8, out: &mut [f32]) {
            // SAFETY: the caller vouches for one row of out.len() elements at w.
            let blocks: &[$block] = unsafe { row(w, out.len() / QK) };
            for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
                // infallible: chunks_exact_mut(QK) yields QK-element chunks
                let o: &mut [f32; QK] = o.try_into().expect("QK chunk");
                $dequant(b, o);
            }
        }
    };
}

block_gemv!(
    gemv_q4_0_scalar,
    row_q4_0_scalar,
    BlockQ4_0,
    blocks::dequantize_q4_0
);
block_gemv!(
    gemv_q4_1_scalar,
    row_q4_1_scalar,
    BlockQ4_1,
    blocks::dequantize_q4_1
);
block_gemv!(
    gemv_q8_0_scalar,
    row_q8_0_scalar,
    BlockQ8_0,
    blocks::dequantize_q8_0
);

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
/// See `kernels::GemvFn`.
pub unsafe fn gemv_f16_scalar(
    w: *const u8,
    row_bytes: usize,
    x: &[f32],
    _xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: row r lies within the matrix the caller vouched for.
        let wr: &[f16] = unsafe { row(w.add(r * row_bytes), x.len()) };
        *o = wr.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum();
    }
}

/// # Safety
/// See `kernels::RowFn`.
pub unsafe fn row_f32_scalar(w: *const u8, out: &mut [f32]) {
    // SAFETY: the caller vouches for one row of out.len() f32 at w.
    out.copy_from_slice(unsafe { row::<f32>(w, out.len()) });
}

/// # Safety
/// See `kernels::RowFn`.
pub unsafe fn row_f16_scalar(w: *const u8, out: &mut [f32]) {
    // SAFETY: the caller vouches for one row of out.len() f16 at w.
    let src: &[f16] = unsafe { row(w, out.len()) };
    for (o, v) in out.iter_mut().zip(src) {
        *o = v.to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize, GgmlType};

    /// Each gemv against a dot product over `quant::dequantize`, an independent path.
    #[test]
    fn gemv_matches_dequantized_dot() {
        let (rows, cols) = (5, 96);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0)
            .collect();
        let cases: [(GgmlType, crate::kernels::GemvFn); 5] = [
            (GgmlType::F32, gemv_f32_scalar),
            (GgmlType::F16, gemv_f16_scalar),
            (GgmlType::Q8_0, gemv_q8_0_scalar),
            (GgmlType::Q4_0, gemv_q4_0_scalar),
            (GgmlType::Q4_1, gemv_q4_1_scalar),
        ];
        for (dtype, f) in cases {
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
