//! Unpacking the row panels (`kernels/panel.rs`) of Q5_0, Q5_1, Q2_K…Q6_K and IQ4 into the
//! `Packed` blocks the decode gemv (`panel.rs`) and prefill gemm (`gemm.rs`) multiply: eight
//! rows' codes of one 32-weight activation block, one row per 32-bit lane, four codes per
//! lane per register, with the rows' scales as f32 lanes.
//!
//! - Q5_0/Q5_1: the 4-bit codes as Q4's, each row's fifth bits (a u32 per lane, reordered
//!   by the repack: `recode.rs`) shifted to bit 4 of their bytes. `x = q·d + m` (Q5_0:
//!   m = −16·d).
//! - Q4_K/Q5_K: an activation block is one 32-weight sub-block; its scale and min are
//!   decoded from the six-bit packing for all eight rows at once (a scale-byte run holds byte
//!   k of every row), and `x = (d·sc)·q − (dmin·m)`, so the Q4 product applies unchanged.
//!   Q5_K's codes are recoded by the repack into five planes (`recode.rs`): five sub-blocks
//!   take one mask per register, three gather two or three pieces.
//! - Q6_K: six-bit codes (recoded into whole-code planes by the repack, `recode.rs`)
//!   minus 32 as signed bytes, two scales per block (one per 16 weights), multiplied by
//!   `dot::signed2_dot` with the sign trick of the Q8_0 kernel.
//! - Q2_K/Q3_K: in `kbits.rs`.
//!
//! `d·sc` and `dmin·m` are exact in f32 (an f16 times an integer below 64), so the products
//! use the file's values exactly; only the activations are rounded (to 8 bits, as for
//! every quantized kernel).

use std::arch::x86_64::*;

use super::dot::Dot;
use super::gemm::{Packed, PanelFormat};
use super::kbits::{Q2K, Q3K};
use crate::kernels::recode::{Q5K_CODES, Q5K_PLANE, Q6_CODES, Q6_PLANE};
use crate::kernels::scalar::act::BlockQ8Act;

/// Eight f16 at `p` as f32 lanes.
///
/// # Safety
/// `p` points to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16x8(p: *const u8) -> __m256 {
    // SAFETY: forwarded from the caller.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p as *const __m128i) })
}

/// Eight bytes at `p` as u32 lanes.
///
/// # Safety
/// `p` points to 8 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn u8x8(p: *const u8) -> __m256i {
    // SAFETY: forwarded from the caller.
    _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(p as *const __m128i) })
}

/// The 32-byte chunk `j` of the code array at `p`.
///
/// # Safety
/// `p + 32·j` points to 32 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn chunk(p: *const u8, j: usize) -> __m256i {
    // SAFETY: forwarded from the caller.
    unsafe { _mm256_loadu_si256(p.add(32 * j) as *const __m256i) }
}

/// Nibble `nib` (0 low, 1 high) of every byte.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibble(v: __m256i, nib: usize) -> __m256i {
    let v = if nib == 0 {
        v
    } else {
        _mm256_srli_epi16::<4>(v)
    };
    _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
}

/// Q5_0/Q5_1's codes: chunk j's low nibbles are elements 4j..4j+4 and its high nibbles
/// 16+4j..16+4j+4; `qh` (a u32 per lane, `recode::q5_spread`'s order) holds the fifth bit
/// of element 4j + k at bit j of byte k, and of 16 + 4j + k at bit 4 + j.
///
/// # Safety
/// `codes` points to 4 chunks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_codes(codes: *const u8, qh: __m256i) -> [__m256i; 8] {
    let five = _mm256_set1_epi8(0x10);
    // Shifts within a 32-bit lane keep a bit in its byte: left by ≤ 4, right by ≤ 3.
    let fifth = |v: __m256i| _mm256_and_si256(v, five);
    let mut q = [_mm256_setzero_si256(); 8];
    for j in 0..4 {
        // SAFETY: chunk j < 4 (caller).
        let raw = unsafe { chunk(codes, j) };
        let lo = fifth(_mm256_sll_epi32(qh, _mm_cvtsi32_si128(4 - j as i32)));
        let hi = fifth(_mm256_srl_epi32(qh, _mm_cvtsi32_si128(j as i32)));
        q[j] = _mm256_or_si256(nibble(raw, 0), lo);
        q[4 + j] = _mm256_or_si256(nibble(raw, 1), hi);
    }
    q
}

/// Q5_0 in panels: d[8], qh[8], 4 code chunks (176 bytes).
pub(super) struct Q5_0;
impl PanelFormat for Q5_0 {
    const BLOCKS: usize = 1;
    const TILE: usize = 176;
    const DOT: Dot = Dot::Affine5;
    type Head = ();
    unsafe fn head(_t: *const u8) {}
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, _head: &(), _sub: usize) -> Packed {
        // SAFETY: a whole tile at t (caller).
        unsafe {
            let d = f16x8(t);
            let qh = _mm256_loadu_si256(t.add(16) as *const __m256i);
            let q = q5_codes(t.add(48), qh);
            Packed {
                q,
                d,
                m: _mm256_mul_ps(d, _mm256_set1_ps(-16.0)),
                ..Packed::ZERO
            }
        }
    }
}

/// Q5_1 in panels: d[8], m[8], qh[8], 4 code chunks (192 bytes).
pub(super) struct Q5_1;
impl PanelFormat for Q5_1 {
    const BLOCKS: usize = 1;
    const TILE: usize = 192;
    const DOT: Dot = Dot::Affine5;
    type Head = ();
    unsafe fn head(_t: *const u8) {}
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, _head: &(), _sub: usize) -> Packed {
        // SAFETY: a whole tile at t (caller).
        unsafe {
            let qh = _mm256_loadu_si256(t.add(32) as *const __m256i);
            Packed {
                q: q5_codes(t.add(64), qh),
                d: f16x8(t),
                m: f16x8(t.add(16)),
                ..Packed::ZERO
            }
        }
    }
}

/// Q4_K/Q5_K's eight sub-block scales `d·sc` and offsets `−dmin·m` for the eight rows,
/// decoded once per tile from the six-bit packing (ggml `get_scale_min_k4`). The 12 scale
/// runs are three 256-bit vectors (run k holds byte k of every row), so all 64 scales and 64
/// mins unpack in a few byte operations: sub-blocks 0–3 are the low six bits of runs 0–3
/// (scales) and 4–7 (mins); sub-blocks 4–7 take their low four bits from runs 8–11 and their
/// top two from the top of runs 0–3 and 4–7.
#[derive(Clone, Copy)]
pub(super) struct K4Head {
    d: [__m256; 8],
    m: [__m256; 8],
}

/// # Safety
/// `t` points to a whole Q4_K or Q5_K tile.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_head(t: *const u8) -> K4Head {
    // SAFETY: d[8], dmin[8] and 96 bytes of scale runs start the tile (caller).
    let (d, dmin, r) = unsafe {
        let r: [__m256i; 3] = std::array::from_fn(|i| chunk(t.add(32), i));
        (f16x8(t), f16x8(t.add(16)), r)
    };
    let (six, four, top) = (
        _mm256_set1_epi8(63),
        _mm256_set1_epi8(0x0f),
        _mm256_set1_epi8(0x30),
    );
    let top_of = |v: __m256i| _mm256_and_si256(_mm256_srli_epi16::<2>(v), top);
    let parts = [
        _mm256_and_si256(r[0], six),
        _mm256_or_si256(_mm256_and_si256(r[2], four), top_of(r[0])),
        _mm256_and_si256(r[1], six),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(r[2]), four),
            top_of(r[1]),
        ),
    ];
    let mut bytes = [0u8; 128];
    for (i, v) in parts.iter().enumerate() {
        // SAFETY: 32 bytes at 32·i of a 128-byte array.
        unsafe { _mm256_storeu_si256(bytes.as_mut_ptr().add(32 * i) as *mut __m256i, *v) };
    }
    // SAFETY: 8 bytes at 8·k of the 128.
    let lanes = |k: usize| _mm256_cvtepi32_ps(unsafe { u8x8(bytes.as_ptr().add(8 * k)) });
    K4Head {
        d: std::array::from_fn(|k| _mm256_mul_ps(d, lanes(k))),
        m: std::array::from_fn(|k| {
            _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(dmin, lanes(8 + k)))
        }),
    }
}

/// Q4_K in panels: d[8], dmin[8], 12 scale runs, 32 code chunks (1152 bytes). Chunks
/// 8i..8i+8 hold sub-block 2i in their low nibbles and 2i+1 in their high ones.
pub(super) struct Q4K;
impl PanelFormat for Q4K {
    const BLOCKS: usize = 8;
    const TILE: usize = 1152;
    const DOT: Dot = Dot::Affine4;
    type Head = K4Head;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn head(t: *const u8) -> K4Head {
        // SAFETY: forwarded from the caller.
        unsafe { k4_head(t) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, head: &K4Head, sub: usize) -> Packed {
        let (d, m) = (head.d[sub], head.m[sub]);
        // SAFETY: a whole tile at t (caller); chunks 8·(sub / 2) + j < 32.
        unsafe {
            let codes = t.add(128 + 256 * (sub / 2));
            let q = std::array::from_fn(|j| nibble(chunk(codes, j), sub % 2));
            Packed {
                q,
                d,
                m,
                ..Packed::ZERO
            }
        }
    }
}

/// Q5_K in panels: Q4_K's head, then five code planes of 8 chunks (`recode::q5k_recode`;
/// 1408 bytes). Sub-blocks 0–4 take their codes whole from the low five bits of plane
/// `sub`'s chunk j; 5–7 gather theirs from the planes' top three bits.
pub(super) struct Q5K;
impl PanelFormat for Q5K {
    const BLOCKS: usize = 8;
    const TILE: usize = 1408;
    const DOT: Dot = Dot::Affine5;
    type Head = K4Head;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn head(t: *const u8) -> K4Head {
        // SAFETY: forwarded from the caller.
        unsafe { k4_head(t) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, head: &K4Head, sub: usize) -> Packed {
        // SAFETY (each arm): forwarded from the caller.
        let q = unsafe {
            match sub {
                0..=4 => q5k_whole(t, sub),
                5 => std::array::from_fn(|j| {
                    let p = |k| q5k_plane(t, k, j);
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<5>(p(0)), _mm256_set1_epi8(0x07)),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(p(1)), _mm256_set1_epi8(0x18)),
                    )
                }),
                6 => std::array::from_fn(|j| {
                    let p = |k| q5k_plane(t, k, j);
                    _mm256_or_si256(
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<7>(p(1)), _mm256_set1_epi8(0x01)),
                            _mm256_and_si256(_mm256_srli_epi16::<4>(p(2)), _mm256_set1_epi8(0x0e)),
                        ),
                        _mm256_and_si256(_mm256_srli_epi16::<1>(p(3)), _mm256_set1_epi8(0x10)),
                    )
                }),
                _ => std::array::from_fn(|j| {
                    let p = |k| q5k_plane(t, k, j);
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<6>(p(3)), _mm256_set1_epi8(0x03)),
                        _mm256_and_si256(_mm256_srli_epi16::<3>(p(4)), _mm256_set1_epi8(0x1c)),
                    )
                }),
            }
        };
        Packed {
            q,
            d: head.d[sub],
            m: head.m[sub],
            ..Packed::ZERO
        }
    }
}

/// Chunk `j` of code plane `k` of the Q5_K tile at `t` (`recode::q5k_recode`). Its pieces
/// of codes 5–7 are shifted right by 16-bit shifts: the bits a byte takes from its
/// neighbour fall outside the masks.
///
/// # Safety
/// `t` points to a whole Q5_K tile; `k < 5`, `j < 8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5k_plane(t: *const u8, k: usize, j: usize) -> __m256i {
    // SAFETY: plane k's chunk j is inside the tile (caller).
    unsafe { chunk(t.add(Q5K_CODES + Q5K_PLANE * k), j) }
}

/// The codes of Q5_K sub-block `sub` < 5: the low five bits of plane `sub`.
///
/// # Safety
/// As `q5k_plane`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5k_whole(t: *const u8, sub: usize) -> [__m256i; 8] {
    // SAFETY: forwarded from the caller.
    std::array::from_fn(|j| _mm256_and_si256(unsafe { q5k_plane(t, sub, j) }, _mm256_set1_epi8(31)))
}

/// Q6_K in panels: d[8], 16 scale runs (one per 16 weights), then per half tile three
/// code planes A, B, C of 8 chunks (`recode::q6_recode`; 1680 bytes). Activation block
/// b = 4·half + quarter takes quarters 0–2 whole from the low six bits of plane A, B or C's
/// chunk j, and quarter 3 from the three planes' top two bits. `Packed::q` holds the codes
/// minus 32 (signed), `d` the scale of weights 0..16 and `m` that of 16..32.
pub(super) struct Q6K;
impl PanelFormat for Q6K {
    const BLOCKS: usize = 8;
    const TILE: usize = 1680;
    const DOT: Dot = Dot::Signed2;
    type Head = ();
    unsafe fn head(_t: *const u8) {}
    const BIAS: i32 = 32;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_biased(t: *const u8, _head: &(), b: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        unsafe { Self::unpack_raw(t, b) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, _head: &(), b: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        let mut p = unsafe { Self::unpack_raw(t, b) };
        for q in &mut p.q {
            *q = _mm256_sub_epi8(*q, _mm256_set1_epi8(32));
        }
        p
    }
}

impl Q6K {
    /// `unpack` with the codes as stored, 0..64 (the code plus 32): the VNNI kernels
    /// multiply them unsigned and subtract `32·Σx` (`vnni.rs`).
    ///
    /// # Safety
    /// As `PanelFormat::unpack`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn unpack_raw(t: *const u8, b: usize) -> Packed {
        // SAFETY (each arm): forwarded from the caller.
        unsafe {
            match b {
                0 => Self::block::<0>(t),
                1 => Self::block::<1>(t),
                2 => Self::block::<2>(t),
                3 => Self::block::<3>(t),
                4 => Self::block::<4>(t),
                5 => Self::block::<5>(t),
                6 => Self::block::<6>(t),
                _ => Self::block::<7>(t),
            }
        }
    }

    /// `unpack_raw` of block `B`, its quarter known: quarters 0–2 are one mask per
    /// register; quarter 3 gathers its bits 0–1, 2–3 and 4–5 from the top of planes A, B
    /// and C (16-bit shifts: a byte's neighbour bits land outside the masks).
    ///
    /// # Safety
    /// As `PanelFormat::unpack`, and `B < 8`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block<const B: usize>(t: *const u8) -> Packed {
        let (half, quarter) = (B / 4, B % 4);
        let six = _mm256_set1_epi8(63);
        // SAFETY: a whole tile at t (caller): scale runs 2B, 2B + 1 < 16; plane chunks of
        // half < 2 inside the tile's 1536 code bytes.
        unsafe {
            let d = f16x8(t);
            let scale = |k: usize| {
                let s = _mm256_cvtepi8_epi32(_mm_loadl_epi64(t.add(16 + 8 * k) as *const __m128i));
                _mm256_mul_ps(d, _mm256_cvtepi32_ps(s))
            };
            let planes = t.add(Q6_CODES + 3 * Q6_PLANE * half);
            let plane = |k: usize, j: usize| chunk(planes.add(Q6_PLANE * k), j);
            let q = std::array::from_fn(|j| {
                if quarter < 3 {
                    _mm256_and_si256(plane(quarter, j), six)
                } else {
                    let part = |k: usize, v: __m256i| {
                        let v = match k {
                            0 => _mm256_srli_epi16::<6>(v),
                            1 => _mm256_srli_epi16::<4>(v),
                            _ => _mm256_srli_epi16::<2>(v),
                        };
                        _mm256_and_si256(v, _mm256_set1_epi8(3 << (2 * k)))
                    };
                    _mm256_or_si256(
                        _mm256_or_si256(part(0, plane(0, j)), part(1, plane(1, j))),
                        part(2, plane(2, j)),
                    )
                }
            });
            Packed {
                q,
                d: scale(2 * B),
                m: scale(2 * B + 1),
                ..Packed::ZERO
            }
        }
    }
}

/// Q8_0 in panels: d[8], 8 code chunks (272 bytes). Its product is bitwise
/// the row-layout kernel's (`gemv::gemv_q8_0_avx2`): the same integer sums, then one FMA.
pub(super) struct Q8_0;
impl PanelFormat for Q8_0 {
    const BLOCKS: usize = 1;
    const TILE: usize = 272;
    const DOT: Dot = Dot::Signed;
    type Head = ();
    unsafe fn head(_t: *const u8) {}
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, _head: &(), _sub: usize) -> Packed {
        // SAFETY: a whole tile at t (caller).
        unsafe {
            Packed {
                q: std::array::from_fn(|j| chunk(t.add(16), j)),
                d: f16x8(t),
                m: _mm256_setzero_ps(),
                ..Packed::ZERO
            }
        }
    }
}

/// The 16 IQ4 levels in both 128-bit halves, for a byte shuffle that maps codes to levels;
/// `BIASED`: each level plus 128 as an unsigned byte (`PanelFormat::unpack_biased`), so the
/// VNNI kernels' codes cost no flip.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_levels<const BIASED: bool>() -> __m256i {
    const fn biased(mut v: [i8; 16]) -> [i8; 16] {
        let mut i = 0;
        while i < 16 {
            v[i] ^= -128;
            i += 1;
        }
        v
    }
    const LEVELS: [i8; 16] = crate::quant::q5::IQ4_VALUES;
    const BIASED_LEVELS: [i8; 16] = biased(LEVELS);
    let v = if BIASED { &BIASED_LEVELS } else { &LEVELS };
    // SAFETY: v is 16 bytes.
    let half = unsafe { _mm_loadu_si128(v.as_ptr() as *const __m128i) };
    _mm256_set_m128i(half, half)
}

/// The IQ4 levels of 4 code chunks at `codes` (low nibbles: elements 4j.., high: 16+4j..),
/// plus 128 if `BIASED`.
///
/// # Safety
/// `codes` points to 4 chunks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_codes<const BIASED: bool>(codes: *const u8) -> [__m256i; 8] {
    let levels = iq4_levels::<BIASED>();
    // SAFETY: chunk j % 4 < 4 (caller).
    std::array::from_fn(|j| {
        _mm256_shuffle_epi8(levels, nibble(unsafe { chunk(codes, j % 4) }, j / 4))
    })
}

/// IQ4_NL in panels: d[8], 4 chunks of level indices (144 bytes); multiplied as Q8_0 (the
/// levels are signed bytes).
pub(super) struct Iq4Nl;
impl PanelFormat for Iq4Nl {
    const BLOCKS: usize = 1;
    const TILE: usize = 144;
    const DOT: Dot = Dot::Signed;
    type Head = ();
    unsafe fn head(_t: *const u8) {}
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, _head: &(), _sub: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        unsafe { Self::tile::<false>(t) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_biased(t: *const u8, _head: &(), _sub: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        unsafe { Self::tile::<true>(t) }
    }
}

impl Iq4Nl {
    /// # Safety
    /// As `PanelFormat::unpack`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const BIASED: bool>(t: *const u8) -> Packed {
        // SAFETY: a whole tile at t (caller).
        unsafe {
            Packed {
                q: iq4_codes::<BIASED>(t.add(16)),
                d: f16x8(t),
                m: _mm256_setzero_ps(),
                ..Packed::ZERO
            }
        }
    }
}

/// IQ4_XS in panels: d[8], scales_h[8] (u16), 4 runs of scales_l bytes, 32 code chunks
/// (1088 bytes). Sub-block `ib` uses chunks 4·ib..4·ib+4 and the six-bit scale
/// `(scales_l[ib/2] >> 4·(ib%2)) & 15 | ((scales_h >> 2·ib) & 3) << 4`, minus 32; the
/// eight sub-blocks' scales are decoded once per tile (`xs_head`).
pub(super) struct Iq4Xs;
impl PanelFormat for Iq4Xs {
    const BLOCKS: usize = 8;
    const TILE: usize = 1088;
    const DOT: Dot = Dot::Signed;
    type Head = [__m256; 8];
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn head(t: *const u8) -> [__m256; 8] {
        // SAFETY: forwarded from the caller.
        unsafe { xs_head(t) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, head: &[__m256; 8], ib: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        unsafe { Self::block::<false>(t, head, ib) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_biased(t: *const u8, head: &[__m256; 8], ib: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        unsafe { Self::block::<true>(t, head, ib) }
    }
}

impl Iq4Xs {
    /// # Safety
    /// As `PanelFormat::unpack`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block<const BIASED: bool>(t: *const u8, head: &[__m256; 8], ib: usize) -> Packed {
        // SAFETY: a whole tile at t (caller); chunks 4·ib + 3 < 32.
        Packed {
            q: unsafe { iq4_codes::<BIASED>(t.add(64 + 128 * ib)) },
            d: head[ib],
            m: _mm256_setzero_ps(),
            ..Packed::ZERO
        }
    }
}

/// The eight sub-blocks' scales `d·(ls − 32)` of an IQ4_XS tile, for its eight rows, from a
/// few byte operations on all of them at once: the 32 `scales_l` bytes (run k: byte k of
/// every row) give sub-blocks 2k and 2k + 1 their low four bits by nibble; each row's
/// `scales_h` byte k / 2, moved beside run k by a byte shuffle and shifted by 4·(k % 2),
/// gives their top two (bits 0–1 and 2–3).
///
/// # Safety
/// `t` points to a whole IQ4_XS tile.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn xs_head(t: *const u8) -> [__m256; 8] {
    // SAFETY: d (16 bytes), scales_h (16) and the 4 runs (32) start the tile (caller).
    let (d, sh, runs) = unsafe {
        (
            f16x8(t),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(t.add(16) as *const __m128i)),
            chunk(t.add(32), 0),
        )
    };
    // Byte 8k + r: row r's scales_h byte k / 2 (the shuffle works per 128-bit half: runs 0,
    // 1 below, 2, 3 above).
    let at = _mm256_setr_epi8(
        0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14, //
        1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15,
    );
    let e = _mm256_srlv_epi64(_mm256_shuffle_epi8(sh, at), _mm256_setr_epi64x(0, 4, 0, 4));
    // Six-bit scales minus 32, as signed bytes: sub-blocks 2k (even) and 2k + 1 (odd) at
    // byte 8k + r. 16-bit shifts: bits a byte takes from its neighbour fall outside 0x30.
    let (four, top) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    let k32 = _mm256_set1_epi8(32);
    let even = _mm256_or_si256(
        _mm256_and_si256(runs, four),
        _mm256_and_si256(_mm256_slli_epi16::<4>(e), top),
    );
    let odd = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(runs), four),
        _mm256_and_si256(_mm256_slli_epi16::<2>(e), top),
    );
    let mut bytes = [0u8; 64];
    // SAFETY: 32 bytes at 0 and at 32 of a 64-byte array.
    unsafe {
        _mm256_storeu_si256(
            bytes.as_mut_ptr() as *mut __m256i,
            _mm256_sub_epi8(even, k32),
        );
        _mm256_storeu_si256(
            bytes.as_mut_ptr().add(32) as *mut __m256i,
            _mm256_sub_epi8(odd, k32),
        );
    }
    std::array::from_fn(|ib| {
        // SAFETY: 8 bytes at 8·(ib / 2) of either half of the 64.
        let ls = unsafe {
            let p = bytes.as_ptr().add(32 * (ib % 2) + 8 * (ib / 2));
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))
        };
        _mm256_mul_ps(d, _mm256_cvtepi32_ps(ls))
    })
}

const _: () = assert!(Q5_0::TILE == 8 * 22 && Q5_1::TILE == 8 * 24);
const _: () = assert!(Q4K::TILE == 8 * 144 && Q5K::TILE == 8 * 176 && Q6K::TILE == 8 * 210);
const _: () = assert!(Iq4Nl::TILE == 8 * 18 && Iq4Xs::TILE == 8 * 136);

macro_rules! panel_kernels {
    ($($fmt:ident: $gemv:ident, $gemm:ident;)*) => {$(
        /// The decode product over row panels of this format (`panel::gemv_panels`).
        ///
        /// # Safety
        /// As `kernels::GemvFn`, with `w` the start of a panel of the format's layout; the
        /// CPU has AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $gemv(
            w: *const u8,
            row_bytes: usize,
            _x: &[f32],
            xq: &[BlockQ8Act],
            out: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { super::panel::gemv_panels::<$fmt>(w, row_bytes, xq, out) }
        }

        /// The batched product over row panels of this format (`gemm::gemm_tiles`).
        ///
        /// # Safety
        /// As `kernels::GemmFn`, with `w` the start of a panel of the format's layout; the
        /// CPU has AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $gemm(
            w: *const u8,
            row_bytes: usize,
            rows: usize,
            xq: &[BlockQ8Act],
            n_tok: usize,
            out: *mut f32,
            ldo: usize,
        ) {
            // SAFETY: forwarded from the caller (the row-layout type is unused for panels).
            unsafe {
                super::gemm::gemm_tiles::<$fmt, super::gemm::Q4_0, true>(
                    w, row_bytes, rows, xq, n_tok, out, ldo,
                )
            }
        }
    )*};
}

panel_kernels! {
    Q8_0: gemv_q8_0x8_avx2, gemm_q8_0x8_avx2;
    Q2K: gemv_q2_kx8_avx2, gemm_q2_kx8_avx2;
    Q5_0: gemv_q5_0x8_avx2, gemm_q5_0x8_avx2;
    Q5_1: gemv_q5_1x8_avx2, gemm_q5_1x8_avx2;
    Q4K: gemv_q4_kx8_avx2, gemm_q4_kx8_avx2;
    Q5K: gemv_q5_kx8_avx2, gemm_q5_kx8_avx2;
    Q6K: gemv_q6_kx8_avx2, gemm_q6_kx8_avx2;
    Q3K: gemv_q3_kx8_avx2, gemm_q3_kx8_avx2;
    Iq4Nl: gemv_iq4_nlx8_avx2, gemm_iq4_nlx8_avx2;
    Iq4Xs: gemv_iq4_xsx8_avx2, gemm_iq4_xsx8_avx2;
}
