//! Row panels: the weight layout the quantized SIMD kernels read, made once per model by
//! the planner's repack (`plan/repack.rs`) and shared by the decode gemv and the prefill
//! gemm, so both compute a row with the same instructions in the same order.
//!
//! A matrix of `rows` rows of `nb` 32-weight blocks becomes `ceil(rows / 8)` panels of eight
//! rows; panel p is `nb` tiles in block order, and tile b holds block b of the panel's eight
//! rows (rows past the end are zero blocks: their lanes are computed and never stored):
//!
//! ```text
//! Q4_0 tile (144 B): d[8] f16 | codes: 4 chunks of 32 B
//! Q4_1 tile (160 B): d[8] f16 | m[8] f16 | codes: 4 chunks of 32 B
//! Q8_0 tile (272 B): d[8] f16 | codes: 8 chunks of 32 B
//! chunk j = [row 0: code bytes 4j..4j+4 | row 1: the same | … | row 7]
//! ```
//!
//! So one 256-bit load of a chunk gives every row four code bytes in its own 32-bit lane:
//! a broadcast of the activation's four matching bytes multiplies all eight rows at once,
//! with no horizontal sum, and the eight rows' scales convert in one instruction. (4-bit
//! code byte i holds element i in its low nibble and element i + 16 in its high nibble, as
//! in the file; the kernels split the nibbles.)
//!
//! A tile is exactly the bytes of the eight blocks it replaces, so a panel of 8 rows spans
//! `8 · row_bytes` and row r0 (a multiple of 8) starts at `r0 · row_bytes`, as in the file.
//! The layout is plain Rust and architecture-neutral; the kernels that read it are per ISA.

use crate::quant::GgmlType;

/// Rows per panel: one per 32-bit lane of a 256-bit register.
pub const PANEL_ROWS: usize = 8;

/// How a panel tile of `dtype` is laid out: bytes of its scale header (d, and m where the
/// format has one) and of its codes per row, or `None` for a format with no panel layout.
fn shape(dtype: GgmlType) -> Option<(usize, usize)> {
    match dtype {
        GgmlType::Q4_0 => Some((16, 16)),
        GgmlType::Q4_1 => Some((32, 16)),
        GgmlType::Q8_0 => Some((16, 32)),
        _ => None,
    }
}

/// Whether `dtype` has a panel layout.
pub fn has_layout(dtype: GgmlType) -> bool {
    shape(dtype).is_some()
}

/// Bytes of one tile (eight blocks) of `dtype`.
pub fn tile_bytes(dtype: GgmlType) -> Option<usize> {
    shape(dtype).map(|(head, codes)| head + PANEL_ROWS * codes)
}

/// Bytes of a matrix of `rows` rows of `nb` blocks in panels (the last panel padded).
pub fn panel_bytes(dtype: GgmlType, rows: usize, nb: usize) -> Option<usize> {
    rows.div_ceil(PANEL_ROWS)
        .checked_mul(nb)?
        .checked_mul(tile_bytes(dtype)?)
}

/// Rearranges `src` (`rows` rows of `nb` blocks of `dtype`, as in a GGUF file) into panels
/// in `out` (`panel_bytes` long). Returns `false`, writing nothing, when the format has no
/// panel layout or a length does not match.
pub fn repack(dtype: GgmlType, src: &[u8], rows: usize, nb: usize, out: &mut [u8]) -> bool {
    let (Some((head, codes)), Some(block), Some(total)) = (
        shape(dtype),
        dtype.bytes_for(crate::quant::QK as u64),
        panel_bytes(dtype, rows, nb),
    ) else {
        return false;
    };
    let block = block as usize;
    if src.len() != rows * nb * block || out.len() != total {
        return false;
    }
    let tile = head + PANEL_ROWS * codes;
    // Where a block's scales and codes start: Q4_1 is d, m, codes; the others d, codes.
    let scales = head / 16;
    let code_at = 2 * scales;
    for (p, panel) in out.chunks_exact_mut(nb * tile).enumerate() {
        for (b, t) in panel.chunks_exact_mut(tile).enumerate() {
            for i in 0..PANEL_ROWS {
                let r = p * PANEL_ROWS + i;
                if r >= rows {
                    // Zero scales and codes: the padded lanes compute 0 and are never stored.
                    for s in 0..scales {
                        t[16 * s + 2 * i..16 * s + 2 * i + 2].fill(0);
                    }
                    for j in 0..codes / 4 {
                        t[head + 32 * j + 4 * i..head + 32 * j + 4 * i + 4].fill(0);
                    }
                    continue;
                }
                let blk = &src[(r * nb + b) * block..][..block];
                for s in 0..scales {
                    t[16 * s + 2 * i..16 * s + 2 * i + 2].copy_from_slice(&blk[2 * s..2 * s + 2]);
                }
                for j in 0..codes / 4 {
                    t[head + 32 * j + 4 * i..head + 32 * j + 4 * i + 4]
                        .copy_from_slice(&blk[code_at + 4 * j..code_at + 4 * j + 4]);
                }
            }
        }
    }
    true
}

/// Block `b` of lane `lane`'s row, gathered from its tile back into the file's block bytes.
///
/// # Safety
/// `panel` points to a whole panel of `nb > b` tiles of `dtype`'s layout; `lane < 8`.
unsafe fn gather_block<const BLOCK: usize>(
    dtype: GgmlType,
    panel: *const u8,
    lane: usize,
    b: usize,
) -> [u8; BLOCK] {
    let (head, codes) = shape(dtype).unwrap_or((16, 16));
    let tile = head + PANEL_ROWS * codes;
    let scales = head / 16;
    let mut out = [0u8; BLOCK];
    // SAFETY: tile b of the panel is in bounds (caller); every offset below is inside it.
    unsafe {
        let t = panel.add(b * tile);
        for s in 0..scales {
            std::ptr::copy_nonoverlapping(t.add(16 * s + 2 * lane), out.as_mut_ptr().add(2 * s), 2);
        }
        for j in 0..codes / 4 {
            std::ptr::copy_nonoverlapping(
                t.add(head + 32 * j + 4 * lane),
                out.as_mut_ptr().add(2 * scales + 4 * j),
                4,
            );
        }
    }
    out
}

macro_rules! panel_row {
    ($name:ident, $dtype:expr, $block:ty, $dequantize:path) => {
        /// Converts row `lane` of a panel to f32 (an embedding lookup in a table that was
        /// repacked because it is also the output head), as the row-layout kernel would.
        ///
        /// # Safety
        /// `panel` points to a whole panel of `out.len() / 32` tiles of this format's panel
        /// layout; `lane < 8`.
        pub unsafe fn $name(panel: *const u8, lane: usize, out: &mut [f32]) {
            const BLOCK: usize = std::mem::size_of::<$block>();
            for (b, o) in out.chunks_exact_mut(crate::quant::QK).enumerate() {
                // SAFETY: forwarded from the caller.
                let bytes = unsafe { gather_block::<BLOCK>($dtype, panel, lane, b) };
                let block: $block = bytemuck::pod_read_unaligned(&bytes);
                let mut vals = [0f32; crate::quant::QK];
                $dequantize(&block, &mut vals);
                o.copy_from_slice(&vals);
            }
        }
    };
}

panel_row!(
    row_q4_0_panel,
    GgmlType::Q4_0,
    crate::quant::BlockQ4_0,
    crate::quant::blocks::dequantize_q4_0
);
panel_row!(
    row_q4_1_panel,
    GgmlType::Q4_1,
    crate::quant::BlockQ4_1,
    crate::quant::blocks::dequantize_q4_1
);
panel_row!(
    row_q8_0_panel,
    GgmlType::Q8_0,
    crate::quant::BlockQ8_0,
    crate::quant::blocks::dequantize_q8_0
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize, GgmlType};

    /// Reads block b of row r back out of a panel layout.
    fn block_of(dtype: GgmlType, packed: &[u8], nb: usize, r: usize, b: usize) -> Vec<u8> {
        let (head, codes) = shape(dtype).unwrap();
        let tile = tile_bytes(dtype).unwrap();
        let t = &packed[((r / 8) * nb + b) * tile..][..tile];
        let i = r % 8;
        let mut out = Vec::new();
        for s in 0..head / 16 {
            out.extend_from_slice(&t[16 * s + 2 * i..16 * s + 2 * i + 2]);
        }
        for j in 0..codes / 4 {
            out.extend_from_slice(&t[head + 32 * j + 4 * i..head + 32 * j + 4 * i + 4]);
        }
        out
    }

    #[test]
    fn every_block_lands_in_its_lane_and_padding_is_zero() {
        for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            for rows in [1, 7, 8, 9, 21] {
                let nb = 3;
                let w: Vec<f32> = (0..rows * nb * 32)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
                    .collect();
                let src = quantize(dtype, &w).unwrap();
                let block = src.len() / (rows * nb);
                let mut out = vec![0xAAu8; panel_bytes(dtype, rows, nb).unwrap()];
                assert!(repack(dtype, &src, rows, nb, &mut out));
                for r in 0..rows.div_ceil(8) * 8 {
                    for b in 0..nb {
                        let got = block_of(dtype, &out, nb, r, b);
                        let want = if r < rows {
                            src[(r * nb + b) * block..][..block].to_vec()
                        } else {
                            vec![0u8; block]
                        };
                        assert_eq!(got, want, "{dtype} row {r} block {b} of {rows}");
                    }
                }
            }
        }
    }

    #[test]
    fn rows_read_back_from_panels_exactly() {
        type RowFn = unsafe fn(*const u8, usize, &mut [f32]);
        let readers: [(GgmlType, RowFn); 3] = [
            (GgmlType::Q4_0, row_q4_0_panel),
            (GgmlType::Q4_1, row_q4_1_panel),
            (GgmlType::Q8_0, row_q8_0_panel),
        ];
        for (dtype, read) in readers {
            let (rows, nb) = (13, 4);
            let w: Vec<f32> = (0..rows * nb * 32)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 9.0)
                .collect();
            let src = quantize(dtype, &w).unwrap();
            let mut want = vec![0f32; w.len()];
            crate::quant::dequantize(dtype, &src, &mut want).unwrap();
            let mut packed = vec![0u8; panel_bytes(dtype, rows, nb).unwrap()];
            assert!(repack(dtype, &src, rows, nb, &mut packed));
            let panel = nb * tile_bytes(dtype).unwrap();
            for r in 0..rows {
                let mut got = vec![f32::NAN; nb * 32];
                // SAFETY: panel r / 8 is whole in `packed`; lane < 8.
                unsafe { read(packed[r / 8 * panel..].as_ptr(), r % 8, &mut got) };
                assert_eq!(got, want[r * nb * 32..(r + 1) * nb * 32], "{dtype} row {r}");
            }
        }
    }

    #[test]
    fn refuses_formats_without_a_layout_and_wrong_lengths() {
        let mut out = vec![0u8; 1024];
        assert!(!repack(GgmlType::F16, &[0u8; 64], 1, 1, &mut out));
        assert!(!repack(GgmlType::Q4_0, &[0u8; 17], 1, 1, &mut out));
        assert_eq!(panel_bytes(GgmlType::Q4_1, 9, 2), Some(2 * 2 * 160));
    }
}
