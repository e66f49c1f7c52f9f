//! Row panels: the weight layout the quantized SIMD kernels read, made once per model by
//! the planner's repack (`plan/repack.rs`) and shared by the decode gemv and the prefill
//! gemm, so both compute a row with the same instructions in the same order.
//!
//! A matrix of `rows` rows of `nb` blocks (32 weights, or 256 for the K formats) becomes
//! `ceil(rows / 8)` panels of eight rows; panel p is `nb` tiles in block order, and tile b
//! holds block b of the panel's eight rows (rows past the end are zero blocks: their lanes
//! are computed and never stored). A tile is a list of *runs*: a run takes `width` bytes at
//! one offset of each of the eight rows' blocks and puts them side by side, row 0 first:
//!
//! ```text
//! Q4_0 tile (144 B): d[8] | 4 code chunks           Q4_1 (160 B): d[8] | m[8] | 4 chunks
//! Q5_0 tile (176 B): d[8] | qh[8] (u32) | 4 chunks  Q5_1 (192 B): d[8] | m[8] | qh[8] | 4
//! Q8_0 tile (272 B): d[8] | 8 code chunks
//! Q4_K tile (1152 B): d[8] | dmin[8] | 12 scale-byte runs of 8 | 32 code chunks
//! Q5_K tile (1408 B): as Q4_K's head, then 5 code planes of 8 chunks
//! Q6_K tile (1680 B): d[8] | 16 scale runs of 8 | 2 halves of 3 code planes of 8 chunks
//! Q3_K tile (880 B): d[8] | 12 scale runs of 8 | 3 code planes of 8 chunks (`recode.rs`)
//! Q2_K tile (672 B): d[8] | dmin[8] | 8 scale runs of 16 | 16 chunks of qs
//! IQ4_NL tile (144 B): as Q4_0        IQ4_XS (1088 B): d[8] | scales_h[8] | 4 runs | 32 chunks
//! chunk j of a code array = [row 0: its bytes 4j..4j+4 | row 1: the same | … | row 7]
//! ```
//!
//! So one 256-bit load of a chunk gives every row four code bytes in its own 32-bit lane:
//! a broadcast of the activation's four matching bytes multiplies all eight rows at once,
//! with no horizontal sum, and the eight rows' scales convert in one instruction. Every
//! byte keeps its value (bit-level unpacking is the kernels' job) but Q3_K's, Q5_K's and
//! Q6_K's codes and Q5_0/Q5_1's fifth bits, which are recoded within their bytes (`recode.rs`),
//! so a tile is exactly as long as the
//! eight blocks it replaces: a panel spans `8 · row_bytes` and row r0 (a multiple of 8)
//! starts at `r0 · row_bytes`, as in the file. The layout is plain Rust and
//! architecture-neutral; the kernels that read it are per ISA.

use super::recode;
use crate::quant::GgmlType;

/// Rows per panel: one per 32-bit lane of a 256-bit register.
pub const PANEL_ROWS: usize = 8;

/// `count` runs at block offsets `at`, `at + width`, …: each puts `width` bytes of every
/// row side by side.
#[derive(Clone, Copy)]
struct Run {
    at: usize,
    width: usize,
    count: usize,
}

/// `run!(at, width, count)`: a `Run` literal (a constant, so tables of them are `'static`).
macro_rules! run {
    ($at:expr, $width:expr, $count:expr) => {
        Run {
            at: $at,
            width: $width,
            count: $count,
        }
    };
}

/// The runs of a tile of `dtype`, in tile order, or `None` for a format with no panels.
fn runs(dtype: GgmlType) -> Option<&'static [Run]> {
    Some(match dtype {
        GgmlType::Q4_0 => &[run!(0, 2, 1), run!(2, 4, 4)],
        GgmlType::Q4_1 => &[run!(0, 2, 2), run!(4, 4, 4)],
        GgmlType::Q5_0 => &[run!(0, 2, 1), run!(2, 4, 1), run!(6, 4, 4)],
        GgmlType::Q5_1 => &[run!(0, 2, 2), run!(4, 4, 1), run!(8, 4, 4)],
        GgmlType::Q8_0 => &[run!(0, 2, 1), run!(2, 4, 8)],
        GgmlType::Q2K => &[run!(80, 2, 2), run!(0, 2, 8), run!(16, 4, 16)],
        GgmlType::Q3K => &[
            run!(108, 2, 1),
            run!(96, 1, 12),
            run!(32, 4, 16),
            run!(0, 4, 8),
        ],
        GgmlType::Iq4Nl => &[run!(0, 2, 1), run!(2, 4, 4)],
        GgmlType::Iq4Xs => &[run!(0, 2, 1), run!(2, 2, 1), run!(4, 1, 4), run!(8, 4, 32)],
        GgmlType::Q4K => &[run!(0, 2, 2), run!(4, 1, 12), run!(16, 4, 32)],
        GgmlType::Q5K => &[
            run!(0, 2, 2),
            run!(4, 1, 12),
            run!(16, 4, 8),
            run!(48, 4, 32),
        ],
        GgmlType::Q6K => &[
            run!(208, 2, 1),
            run!(192, 1, 16),
            run!(0, 4, 32),
            run!(128, 4, 16),
        ],
        _ => return None,
    })
}

/// Whether `dtype` has a panel layout.
pub fn has_layout(dtype: GgmlType) -> bool {
    runs(dtype).is_some()
}

/// Bytes of one tile (eight blocks) of `dtype`.
pub fn tile_bytes(dtype: GgmlType) -> Option<usize> {
    runs(dtype)?;
    Some(PANEL_ROWS * dtype.block_bytes() as usize)
}

/// Bytes of a matrix of `rows` rows of `nb` blocks in panels (the last panel padded).
pub fn panel_bytes(dtype: GgmlType, rows: usize, nb: usize) -> Option<usize> {
    rows.div_ceil(PANEL_ROWS)
        .checked_mul(nb)?
        .checked_mul(tile_bytes(dtype)?)
}

/// Calls `f(tile_offset, row, block_offset, width)` for every run piece of a tile.
fn each_piece(runs: &[Run], mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut t = 0;
    for r in runs {
        for c in 0..r.count {
            for row in 0..PANEL_ROWS {
                f(t, row, r.at + c * r.width, r.width);
                t += r.width;
            }
        }
    }
}

/// Rearranges `src` (`rows` rows of `nb` blocks of `dtype`, as in a GGUF file) into panels
/// in `out` (`panel_bytes` long). Returns `false`, writing nothing, when the format has no
/// panel layout or a length does not match.
pub fn repack(dtype: GgmlType, src: &[u8], rows: usize, nb: usize, out: &mut [u8]) -> bool {
    let (Some(runs), Some(total)) = (runs(dtype), panel_bytes(dtype, rows, nb)) else {
        return false;
    };
    let block = dtype.block_bytes() as usize;
    if src.len() != rows * nb * block || out.len() != total {
        return false;
    }
    let tile = PANEL_ROWS * block;
    for (p, panel) in out.chunks_exact_mut(nb * tile).enumerate() {
        for (b, t) in panel.chunks_exact_mut(tile).enumerate() {
            each_piece(runs, |at, i, from, width| {
                let r = p * PANEL_ROWS + i;
                let dst = &mut t[at..at + width];
                if r < rows {
                    dst.copy_from_slice(&src[(r * nb + b) * block + from..][..width]);
                } else {
                    // Zero scales and codes: the padded lanes compute 0 and are never stored.
                    dst.fill(0);
                }
            });
            recode::recode(dtype, t);
        }
    }
    true
}

/// Block `b` of lane `lane`'s row, gathered from its tile back into the file's block bytes
/// (the first `block_bytes` bytes of the result).
///
/// # Safety
/// `panel` points to a whole panel of `nb > b` tiles of `dtype`'s layout; `lane < 8`.
unsafe fn gather_block(dtype: GgmlType, panel: *const u8, lane: usize, b: usize) -> [u8; 256] {
    let mut out = [0u8; 256];
    let Some(runs) = runs(dtype) else {
        return out;
    };
    let tile = PANEL_ROWS * dtype.block_bytes() as usize;
    let mut bytes = [0u8; PANEL_ROWS * 210];
    // SAFETY: tile b of the panel is in bounds (caller); a tile is at most 8 · 210 bytes.
    unsafe { std::ptr::copy_nonoverlapping(panel.add(b * tile), bytes.as_mut_ptr(), tile) };
    recode::decode(dtype, &mut bytes[..tile]);
    each_piece(runs, |at, row, from, width| {
        if row == lane {
            out[from..from + width].copy_from_slice(&bytes[at..at + width]);
        }
    });
    out
}

/// Converts row `lane` of a panel of `dtype` to f32, as the file's row would convert.
///
/// # Safety
/// `panel` points to a whole panel of `out.len() / block_len` tiles of `dtype`'s panel
/// layout; `lane < 8`.
unsafe fn panel_row(dtype: GgmlType, panel: *const u8, lane: usize, out: &mut [f32]) {
    let (n, size) = (dtype.block_len() as usize, dtype.block_bytes() as usize);
    for (b, o) in out.chunks_exact_mut(n).enumerate() {
        // SAFETY: forwarded from the caller.
        let bytes = unsafe { gather_block(dtype, panel, lane, b) };
        // infallible: the block holds exactly `n` elements of `dtype`
        crate::quant::dequantize(dtype, &bytes[..size], o).expect("one whole block");
    }
}

macro_rules! panel_row {
    ($name:ident, $dtype:expr) => {
        /// Converts row `lane` of a panel to f32 (an embedding lookup in a table that was
        /// repacked because it is also the output head), as the row-layout kernel would.
        ///
        /// # Safety
        /// `panel` points to a whole panel of this format's panel layout holding
        /// `out.len()` elements per row; `lane < 8`.
        pub unsafe fn $name(panel: *const u8, lane: usize, out: &mut [f32]) {
            // SAFETY: forwarded from the caller.
            unsafe { panel_row($dtype, panel, lane, out) }
        }
    };
}

panel_row!(row_q4_0_panel, GgmlType::Q4_0);
panel_row!(row_q4_1_panel, GgmlType::Q4_1);
panel_row!(row_q5_0_panel, GgmlType::Q5_0);
panel_row!(row_q5_1_panel, GgmlType::Q5_1);
panel_row!(row_q8_0_panel, GgmlType::Q8_0);
panel_row!(row_q4_k_panel, GgmlType::Q4K);
panel_row!(row_q5_k_panel, GgmlType::Q5K);
panel_row!(row_q6_k_panel, GgmlType::Q6K);
panel_row!(row_q3_k_panel, GgmlType::Q3K);
panel_row!(row_q2_k_panel, GgmlType::Q2K);
panel_row!(row_iq4_nl_panel, GgmlType::Iq4Nl);
panel_row!(row_iq4_xs_panel, GgmlType::Iq4Xs);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize, GgmlType};

    const PANEL_TYPES: [GgmlType; 12] = [
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Iq4Nl,
        GgmlType::Iq4Xs,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    #[test]
    fn every_block_lands_in_its_lane_and_padding_is_zero() {
        for dtype in PANEL_TYPES {
            // Under Miri (which runs the K-quant quantizers ~1000× slower) one ragged shape.
            let shapes: &[usize] = if cfg!(miri) { &[9] } else { &[1, 7, 8, 9, 21] };
            for &rows in shapes {
                let nb = if cfg!(miri) { 1 } else { 3 };
                let n = dtype.block_len() as usize;
                let w: Vec<f32> = (0..rows * nb * n)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
                    .collect();
                let src = quantize(dtype, &w).unwrap();
                let block = src.len() / (rows * nb);
                let mut out = vec![0xAAu8; panel_bytes(dtype, rows, nb).unwrap()];
                assert!(repack(dtype, &src, rows, nb, &mut out));
                let panel = nb * tile_bytes(dtype).unwrap();
                for r in 0..rows.div_ceil(8) * 8 {
                    for b in 0..nb {
                        // SAFETY: panel r / 8 is whole in `out`; lane < 8.
                        let got =
                            unsafe { gather_block(dtype, out[r / 8 * panel..].as_ptr(), r % 8, b) };
                        let want = if r < rows {
                            src[(r * nb + b) * block..][..block].to_vec()
                        } else {
                            vec![0u8; block]
                        };
                        assert_eq!(got[..block], want, "{dtype} row {r} block {b} of {rows}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_tile_byte_is_written_once() {
        for dtype in PANEL_TYPES {
            let mut seen = vec![0u8; tile_bytes(dtype).unwrap()];
            let mut per_row = vec![vec![0u8; dtype.block_bytes() as usize]; PANEL_ROWS];
            each_piece(runs(dtype).unwrap(), |at, row, from, width| {
                seen[at..at + width].iter_mut().for_each(|c| *c += 1);
                per_row[row][from..from + width]
                    .iter_mut()
                    .for_each(|c| *c += 1);
            });
            assert!(seen.iter().all(|&c| c == 1), "{dtype} tile");
            assert!(
                per_row.iter().flatten().all(|&c| c == 1),
                "{dtype} block bytes"
            );
        }
    }

    #[test]
    fn rows_read_back_from_panels_exactly() {
        type RowFn = unsafe fn(*const u8, usize, &mut [f32]);
        let readers: [(GgmlType, RowFn); 12] = [
            (GgmlType::Q2K, row_q2_k_panel),
            (GgmlType::Q3K, row_q3_k_panel),
            (GgmlType::Iq4Nl, row_iq4_nl_panel),
            (GgmlType::Iq4Xs, row_iq4_xs_panel),
            (GgmlType::Q4_0, row_q4_0_panel),
            (GgmlType::Q4_1, row_q4_1_panel),
            (GgmlType::Q5_0, row_q5_0_panel),
            (GgmlType::Q5_1, row_q5_1_panel),
            (GgmlType::Q8_0, row_q8_0_panel),
            (GgmlType::Q4K, row_q4_k_panel),
            (GgmlType::Q5K, row_q5_k_panel),
            (GgmlType::Q6K, row_q6_k_panel),
        ];
        for (dtype, read) in readers {
            let (rows, nb) = if cfg!(miri) { (9, 1) } else { (13, 4) };
            let n = dtype.block_len() as usize;
            let w: Vec<f32> = (0..rows * nb * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 9.0)
                .collect();
            let src = quantize(dtype, &w).unwrap();
            let mut want = vec![0f32; w.len()];
            crate::quant::dequantize(dtype, &src, &mut want).unwrap();
            let mut packed = vec![0u8; panel_bytes(dtype, rows, nb).unwrap()];
            assert!(repack(dtype, &src, rows, nb, &mut packed));
            let panel = nb * tile_bytes(dtype).unwrap();
            for r in 0..rows {
                let mut got = vec![f32::NAN; nb * n];
                // SAFETY: panel r / 8 is whole in `packed`; lane < 8.
                unsafe { read(packed[r / 8 * panel..].as_ptr(), r % 8, &mut got) };
                assert_eq!(got, want[r * nb * n..(r + 1) * nb * n], "{dtype} row {r}");
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
