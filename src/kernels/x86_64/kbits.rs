//! Q2_K and Q3_K in row panels (`kernels/panel.rs`), unpacked into the `Packed` blocks of
//! the decode gemv and the prefill gemm: two- and three-bit codes as stored (unsigned),
//! their per-16-weight scales (and Q2_K's offsets) as small integers that the products
//! apply to the exact integer sums (`dot::affine2_dot`, `dot::scaled3_dot`), then one float
//! scale per super-block. The VNNI and GFNI decode twins (`Q2KInPlace` here, `gfni.rs`) share
//! the scales and unpack the codes their own way.

use std::arch::x86_64::*;

use super::dot::Dot;
use super::gemm::{Packed, PanelFormat};
use super::kpanel::{chunk, f16x8};
use crate::kernels::recode::{Q3_CODES, Q3_PLANE};

/// Q2_K in panels: d[8], dmin[8], 8 scale runs of 16 (run b: each row's scale bytes 2b and
/// 2b + 1, the halves of activation block b), 16 chunks of `qs` (672 bytes). Activation
/// block b = 4·n + j takes bits 2j of `qs` chunks 8n..8n+8. A scale byte holds the half's
/// scale in its low nibble and its offset in the high one: one zero-extension of run b gives
/// every row's pair of bytes as two i16, masked to `sc` and shifted to `mn`
/// (`dot::affine2_dot`).
pub(super) struct Q2K;
impl PanelFormat for Q2K {
    const BLOCKS: usize = 8;
    const TILE: usize = 672;
    const DOT: Dot = Dot::Affine2;
    /// The tile's `d` and `dmin`, as f32 lanes.
    type Head = [__m256; 2];
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn head(t: *const u8) -> [__m256; 2] {
        // SAFETY: d[8] and dmin[8] start the tile (caller).
        unsafe { [f16x8(t), f16x8(t.add(16))] }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, head: &[__m256; 2], b: usize) -> Packed {
        let (n, j) = (b / 4, b % 4);
        let [d, dmin] = *head;
        let shift = _mm_cvtsi32_si128(2 * j as i32);
        let three = _mm256_set1_epi8(3);
        // SAFETY: a whole tile at t (caller): scale run b < 8, qs chunks 8n + c < 16.
        unsafe {
            let (sc, mn) = q2_scales(t, b);
            let qs = t.add(Q2_QS + 256 * n);
            Packed {
                q: std::array::from_fn(|c| {
                    _mm256_and_si256(_mm256_srl_epi16(chunk(qs, c), shift), three)
                }),
                d,
                m: dmin,
                sc,
                mn,
            }
        }
    }
}

/// Q2_K as `Q2K`, its codes left where `qs` holds them, times 4^j for activation block
/// 4n + j (`code_shift`): one mask per register where `Q2K` shifts and masks. Only the VNNI
/// product (`vnni::panel_dot`), which divides its exact integer sums back, takes it. On the
/// Zen 4 VM it took Q2_K's decode from `vgf2p8affineqb` (which shares its two pipes with
/// `vpdpbusd`) to plain masks: cache-resident 21.9–23.7 → 23.8–25.2 GiB/s.
pub(super) struct Q2KInPlace;
impl PanelFormat for Q2KInPlace {
    const BLOCKS: usize = 8;
    const TILE: usize = Q2K::TILE;
    const DOT: Dot = Dot::Affine2;
    type Head = [__m256; 2];
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn head(t: *const u8) -> [__m256; 2] {
        // SAFETY: forwarded from the caller.
        unsafe { Q2K::head(t) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, head: &[__m256; 2], b: usize) -> Packed {
        let (n, j) = (b / 4, b % 4);
        let mask = _mm256_set1_epi8((3u8 << (2 * j)) as i8);
        // SAFETY: a whole tile at t (caller): scale run b < 8, qs chunks 8n + c < 16.
        unsafe {
            let (sc, mn) = q2_scales(t, b);
            let qs = t.add(Q2_QS + 256 * n);
            Packed {
                q: std::array::from_fn(|c| _mm256_and_si256(chunk(qs, c), mask)),
                d: head[0],
                m: head[1],
                sc,
                mn,
            }
        }
    }
    #[inline]
    fn code_shift(b: usize) -> u32 {
        2 * (b % 4) as u32
    }
}

/// Where a Q2_K tile's `qs` chunks start.
const Q2_QS: usize = 160;

/// Q3_K in panels: d[8], 12 scale runs, and its codes in three planes of 8 chunks
/// (`recode::q3_recode`: plane A holds codes 0, 1 and 6's low bits, B codes 2, 3 and 7's, C
/// codes 4, 5 and the high bits of 6 and 7; 880 bytes). Activation block b's codes come
/// from chunk c of its planes; the code `low + 4·high` is the file's code plus 4 (0..8),
/// multiplied as it is. Weights 0..16 and 16..32 have their own six-bit scales (16-weight
/// sub-blocks 2b and 2b + 1), applied in integers (`dot::scaled3_dot`).
pub(super) struct Q3K;
impl PanelFormat for Q3K {
    const BLOCKS: usize = 8;
    const TILE: usize = 880;
    const DOT: Dot = Dot::Scaled3;
    type Head = Q3Head;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn head(t: *const u8) -> Q3Head {
        // SAFETY: forwarded from the caller.
        unsafe { q3_head(t) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, head: &Q3Head, b: usize) -> Packed {
        let seven = _mm256_set1_epi8(7);
        // SAFETY: a whole tile at t (caller): plane chunks c < 8 of planes k < 3.
        let plane = |k: usize, c: usize| unsafe { q3_plane(t, k, c) };
        // 16-bit shifts: the bits a byte takes from its neighbour fall outside the masks.
        let q = std::array::from_fn(|c| match b {
            0 | 2 | 4 => _mm256_and_si256(plane(b / 2, c), seven),
            1 | 3 | 5 => _mm256_and_si256(_mm256_srli_epi16::<3>(plane(b / 2, c)), seven),
            _ => {
                let low = _mm256_srli_epi16::<6>(plane(b - 6, c));
                let high = if b == 6 {
                    _mm256_srli_epi16::<4>(plane(2, c))
                } else {
                    _mm256_srli_epi16::<5>(plane(2, c))
                };
                _mm256_or_si256(
                    _mm256_and_si256(low, _mm256_set1_epi8(3)),
                    _mm256_and_si256(high, _mm256_set1_epi8(4)),
                )
            }
        });
        q3_block(q, head, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_biased(t: *const u8, head: &Q3Head, b: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        unsafe { Self::unpack(t, head, b) }
    }
}

/// A Q3_K tile's `d` (f32 lanes) and its sixteen six-bit scales minus 32 (i8) of every row,
/// decoded once per tile: the 128-bit half h of `sc[k]` holds scales 4k + 2h and 4k + 2h + 1
/// of each row side by side (row 0's two, row 1's two, …), so activation block b = 2k + h
/// gets every row's pair as two i16 from one sign extension.
#[derive(Clone, Copy)]
pub(super) struct Q3Head {
    pub(super) d: __m256,
    pub(super) sc: [__m256i; 4],
}

/// # Safety
/// `t` points to a whole Q3_K tile.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q3_head(t: *const u8) -> Q3Head {
    // SAFETY: d[8] and the 12 scale runs (96 bytes) start the tile (caller).
    let (d, r) = unsafe {
        let r: [__m256i; 3] = std::array::from_fn(|i| chunk(t.add(16), i));
        (f16x8(t), r)
    };
    // Scale i's low four bits are run i (i < 8) or the high nibble of run i − 8; its top two
    // are bits 2·(i / 4) of run 8 + i % 4. Runs 0–3, 4–7 and 8–11 are r[0], r[1], r[2], so
    // scales 4k..4k+4 line up with r[2]'s four runs (16-bit shifts: bits a byte takes from
    // its neighbour fall outside the masks).
    let (four, top) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    let low = [
        _mm256_and_si256(r[0], four),
        _mm256_and_si256(r[1], four),
        _mm256_and_si256(_mm256_srli_epi16::<4>(r[0]), four),
        _mm256_and_si256(_mm256_srli_epi16::<4>(r[1]), four),
    ];
    let high = [
        _mm256_slli_epi16::<4>(r[2]),
        _mm256_slli_epi16::<2>(r[2]),
        r[2],
        _mm256_srli_epi16::<2>(r[2]),
    ];
    // Each 128-bit half: run a's eight rows, then run a + 1's, interleaved row by row.
    let rows = _mm256_setr_epi8(
        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5,
        13, 6, 14, 7, 15,
    );
    Q3Head {
        d,
        sc: std::array::from_fn(|k| {
            let v = _mm256_or_si256(low[k], _mm256_and_si256(high[k], top));
            _mm256_shuffle_epi8(_mm256_sub_epi8(v, _mm256_set1_epi8(32)), rows)
        }),
    }
}

/// Chunk `c` of code plane `k` of the Q3_K tile at `t` (`recode::q3_recode`).
///
/// # Safety
/// `t` points to a whole Q3_K tile; `k < 3`, `c < 8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q3_plane(t: *const u8, k: usize, c: usize) -> __m256i {
    // SAFETY: plane k's chunk c is inside the tile (caller).
    unsafe { chunk(t.add(Q3_CODES + Q3_PLANE * k), c) }
}

/// Activation block `b` of a Q3_K tile with codes `q`: the tile's `d` and the block's
/// scale pairs, every row's two as i16 from one sign extension.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q3_block(q: [__m256i; 8], head: &Q3Head, b: usize) -> Packed {
    let pairs = head.sc[b / 2];
    let pairs = if b.is_multiple_of(2) {
        _mm256_castsi256_si128(pairs)
    } else {
        _mm256_extracti128_si256::<1>(pairs)
    };
    Packed {
        q,
        d: head.d,
        sc: _mm256_cvtepi8_epi16(pairs),
        ..Packed::ZERO
    }
}

/// Every row's two scale bytes of Q2_K activation block `b` (run b), as an i16 pair per
/// lane: the scales (low nibbles) and the offsets (high nibbles).
///
/// # Safety
/// `t` points to a whole Q2_K tile; `b < 8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2_scales(t: *const u8, b: usize) -> (__m256i, __m256i) {
    // SAFETY: scale run b (16 bytes at 32 + 16b) is in the tile (caller).
    let pairs =
        _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(t.add(32 + 16 * b) as *const __m128i) });
    (
        _mm256_and_si256(pairs, _mm256_set1_epi16(15)),
        _mm256_srli_epi16::<4>(pairs),
    )
}
const _: () = assert!(Q2K::TILE == 8 * 84 && Q3K::TILE == 8 * 110);
