//! Decode products of Q2_K and Q3_K for CPUs with AVX-512 VNNI and GFNI: the codes are
//! unpacked with `vgf2p8affineqb`, whose 8×8 bit matrix moves any bits of a byte to any
//! others and clears the rest in one instruction, where a shift and a mask took two (and
//! Q3_K's high bit another two). The products are `vnni::panel_dot`'s, so a row is bitwise
//! what the AVX2 gemv and gemm compute.

use std::arch::x86_64::*;

use super::dot::Dot;
use super::gemm::{Packed, PanelFormat};
use super::kbits::{
    q2_scales, q3_block, q3_head, q3_high, Q3Head, Q2K, Q2_QS, Q3K, Q3_HMASK, Q3_QS,
};
use super::kpanel::chunk;
use crate::kernels::scalar::act::BlockQ8Act;

/// The bit matrix that moves bit `from` of each byte to bit `to` (row `to` of the matrix is
/// byte `7 − to` of the qword; `vgf2p8affineqb` sets output bit i to the parity of the input
/// byte and row i).
const fn moves(pairs: &[(u32, u32)]) -> i64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < pairs.len() {
        let (from, to) = pairs[i];
        m |= (1u64 << from) << (8 * (7 - to));
        i += 1;
    }
    m as i64
}

/// Bits `2j` and `2j + 1` of every byte of `v` as its bits 0 and 1 (a two-bit code).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
fn two_bits(v: __m256i, j: usize) -> __m256i {
    let m = moves(&[(0, 0), (1, 1)]) << (2 * j as u32);
    _mm256_gf2p8affine_epi64_epi8::<0>(v, _mm256_set1_epi64x(m))
}

/// Q2_K in panels (`kbits::Q2K`'s layout and scales), its codes unpacked by GFNI.
pub(super) struct Q2KGfni;
impl PanelFormat for Q2KGfni {
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
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
    unsafe fn unpack(t: *const u8, head: &[__m256; 2], b: usize) -> Packed {
        let (n, j) = (b / 4, b % 4);
        // SAFETY: a whole tile at t (caller): scale run b < 8, qs chunks 8n + c < 16.
        unsafe {
            let (sc, mn) = q2_scales(t, b);
            let qs = t.add(Q2_QS + 256 * n);
            Packed {
                q: std::array::from_fn(|c| two_bits(chunk(qs, c), j)),
                d: head[0],
                m: head[1],
                sc,
                mn,
            }
        }
    }
}

/// Q3_K in panels (`kbits::Q3K`'s layout and scales), its codes unpacked by GFNI.
pub(super) struct Q3KGfni;
impl PanelFormat for Q3KGfni {
    const BLOCKS: usize = 8;
    const TILE: usize = Q3K::TILE;
    const DOT: Dot = Dot::Scaled3;
    type Head = Q3Head;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn head(t: *const u8) -> Q3Head {
        // SAFETY: forwarded from the caller.
        unsafe { q3_head(t) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
    unsafe fn unpack(t: *const u8, head: &Q3Head, b: usize) -> Packed {
        let (half, j) = (b / 4, b % 4);
        // SAFETY: a whole tile at t (caller): qs chunks 8·half + c < 16, hmask chunks c < 8.
        unsafe {
            let (qs, hmask) = (t.add(Q3_QS + 32 * 8 * half), t.add(Q3_HMASK));
            if b < 2 {
                // The high bit (hmask bit b) moved up to bit 2 by a shift.
                let q = std::array::from_fn(|c| {
                    _mm256_or_si256(two_bits(chunk(qs, c), j), q3_high(chunk(hmask, c), b))
                });
                return q3_block(q, head, b);
            }
            // Blocks 2..8 leave the high bit where it is (bit b) and move the two low bits
            // under it (bits b − 2, b − 1): the code times 2^(b − 2), at most 7·32 = 224, still
            // a byte. One affine transform and one `vpternlog` (low bits | hmask & bit b) per
            // chunk, where a shift of hmask took a third; the product divides the sums back.
            let s = Self::code_shift(b);
            let low = _mm256_set1_epi64x(moves(&[(2 * j as u32, s), (2 * j as u32 + 1, s + 1)]));
            let bit = _mm256_set1_epi8((1u8 << b) as i8);
            let q = std::array::from_fn(|c| {
                let codes = _mm256_gf2p8affine_epi64_epi8::<0>(chunk(qs, c), low);
                _mm256_ternarylogic_epi32::<0xf8>(codes, chunk(hmask, c), bit)
            });
            q3_block(q, head, b)
        }
    }
    #[inline]
    fn code_shift(b: usize) -> u32 {
        b.saturating_sub(2) as u32
    }
}

vnni_gemv_loop!(
    gemv_panels,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni"
);

macro_rules! gfni_gemv {
    ($($fmt:ident: $gemv:ident;)*) => {$(
        /// The decode product over row panels of this format with AVX-512 VNNI and GFNI
        /// (`gemv_panels`): bitwise the AVX2 panel gemv.
        ///
        /// # Safety
        /// As `kernels::GemvFn`, with `w` the start of a panel of the format's layout; the
        /// CPU has AVX2, FMA, F16C, AVX-512 F/BW/VL/VNNI and GFNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
        pub unsafe fn $gemv(
            w: *const u8,
            row_bytes: usize,
            _x: &[f32],
            xq: &[BlockQ8Act],
            out: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { gemv_panels::<$fmt>(w, row_bytes, xq, out) }
        }
    )*};
}

gfni_gemv! {
    Q2KGfni: gemv_q2_kx8_gfni;
    Q3KGfni: gemv_q3_kx8_gfni;
}
