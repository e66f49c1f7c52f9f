//! The decode product of Q3_K for CPUs with AVX-512 VNNI and GFNI: the two codes its
//! recoded planes (`recode::q3_recode`) split across planes are unpacked with
//! `vgf2p8affineqb`, whose 8×8 bit matrix moves any bits of a byte to any others and clears
//! the rest in one instruction, where shifts and masks took several; the other six take one
//! mask. The products are `vnni::panel_dot`'s, so a row is bitwise what the AVX2 gemv and
//! gemm compute. (Q2_K's codes need no GFNI: a mask leaves them times 4^j, `kbits::Q2KInPlace`.)

use std::arch::x86_64::*;

use super::dot::Dot;
use super::gemm::{Packed, PanelFormat};
use super::kbits::{q3_block, q3_head, q3_plane, Q3Head, Q3K};
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
        // Codes are left where the planes hold them (`recode::q3_recode`), times 2^s with s
        // = `code_shift(b)`: codes 0, 2, 4 (bits 0..3 of a plane) and 1, 3, 5 (bits 3..6,
        // times 8) take one mask; codes 6 and 7 one affine transform that moves their low
        // bits under their high bit in plane C (bits 6 and 7: times 16 and 32, at most 224,
        // still a byte) and one `vpternlog` (low | C & high bit). The product divides the
        // exact integer sums back.
        if b < 6 {
            let (k, mask) = (
                b / 2,
                _mm256_set1_epi8(if b.is_multiple_of(2) { 0x07 } else { 0x38 }),
            );
            // SAFETY: a whole tile at t (caller): chunks c < 8 of plane k < 3.
            let q = std::array::from_fn(|c| _mm256_and_si256(unsafe { q3_plane(t, k, c) }, mask));
            return q3_block(q, head, b);
        }
        // Plane A's or B's bits 6, 7 to bits 4, 5 (code 6, under C's bit 6) or 5, 6 (code 7).
        const LOW: [i64; 2] = [moves(&[(6, 4), (7, 5)]), moves(&[(6, 5), (7, 6)])];
        let (k, low, bit) = (
            b - 6,
            _mm256_set1_epi64x(LOW[b - 6]),
            _mm256_set1_epi8((1u8 << b) as i8),
        );
        let q = std::array::from_fn(|c| {
            // SAFETY: as above, planes k < 2 and 2.
            let (lo, hi) = unsafe { (q3_plane(t, k, c), q3_plane(t, 2, c)) };
            let lo = _mm256_gf2p8affine_epi64_epi8::<0>(lo, low);
            _mm256_ternarylogic_epi32::<0xf8>(lo, hi, bit)
        });
        q3_block(q, head, b)
    }
    #[inline]
    fn code_shift(b: usize) -> u32 {
        [0, 3, 0, 3, 0, 3, 4, 5][b]
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
    Q3KGfni: gemv_q3_kx8_gfni;
}
