//! AVX-512 VNNI twins of the panel products for the formats whose codes multiply as signed
//! bytes (`Dot::Signed`: Q8_0, IQ4_NL, IQ4_XS; `Dot::Signed2`: Q6_K) or with integer scales
//! (`Dot::Scaled3`: Q3_K; `Dot::Affine2`: Q2_K, whose offsets add to a second integer sum
//! per tile), and of the unsigned formats' prefill: the batched prefill gemm,
//! and the decode gemv of those whose AVX2 gemv is compute-bound (Q3_K, IQ4_NL, IQ4_XS,
//! Q5_0, Q5_1, Q4_K, Q5_K, Q6_K). Chosen at the `avx512` level only, each where a benchmark
//! showed the win (`cargo bench --bench kernels -- gemm` and `-- gemv`; Zen 4 EPYC: Q8_0
//! gemm 73–89 → 246–275 GFLOP/s, Q6_K 88–98 → 144–243, IQ4_XS gemv 44 → 62; with the
//! weights in huge pages, as a model's are, Q5_0 and Q5_1 gemv 73–77 →
//! 83–91% of `read_all`, Q5_K 73–75 → 83–88%, Q4_K 82–87 → 89–91%, recoded Q6_K 79–86 →
//! 84–92%; Q2_K gemm 79 → 124 Gelem/s cache-resident, `examples/kernel_ceiling`).
//! Q2_K's decode takes its codes in place, times 4^j (`kbits::Q2KInPlace`). Where the CPU
//! also has GFNI, the Q3_K decode runs `gfni.rs` instead, with these products and this
//! decode loop (`vnni_gemv_loop!`).
//!
//! The AVX2 product of one chunk of four codes per row costs five instructions (broadcast,
//! `abs`, `sign`, `maddubs`, `madd`) plus a share of an add tree; here it is two: a
//! broadcast and one `vpdpbusd`, which multiplies unsigned by signed bytes and adds the four
//! products into an i32 lane. The codes are made unsigned once per unpacked block, by adding
//! 128 (`c ^ 0x80`), and the activations stay signed, so each lane sums
//! `Σ (c + 128)·x = Σ c·x + 128·Σ x`. The second term is subtracted from the exact integer
//! sum: `Σ x` over each 16-code half of every activation block is computed once per token
//! block, not per row. Q6_K's stored codes are already its codes plus 32, so it skips both
//! the `− 32` and the flip and subtracts `32·Σ x` instead (`PanelFormat::unpack_biased`). The result is the AVX2 kernel's integer sum exactly, followed by the
//! same float multiplies and FMAs in the same order, so a row is bitwise what the decode gemv
//! (`panel.rs`) and the AVX2 gemm (`gemm.rs`) compute: prefill stays bitwise equal to decode
//! at every level and thread count.
//!
//! A 512-bit register holds two panels (16 rows, one per 32-bit lane): panel A in the low
//! half, panel B in the high. An odd last panel is paired with zero codes whose lanes are
//! computed and never stored.

use std::arch::x86_64::*;

use super::dot::{bias_sums, Acc, Dot};
use super::gemm::{unpack_blocks, Packed, PanelFormat, Q4_0, Q4_1};
use super::kbits::{Q2KInPlace, Q2K, Q3K};
use super::kpanel::{Iq4Nl, Iq4Xs, Q4K, Q5K, Q5_0, Q5_1, Q6K, Q8_0};
use crate::kernels::panel::PANEL_ROWS;
use crate::kernels::scalar::act::BlockQ8Act;

/// Rows per register: two panels.
const PAIR: usize = 2 * PANEL_ROWS;
/// Blocks unpacked at once: 32 × 768 bytes = 24 KiB of pairs (plus 2 × 12 KiB of halves).
const KCHUNK: usize = 32;
/// Tokens whose accumulators one pass over a chunk keeps in registers.
const TOK_GROUP: usize = 4;
/// Tokens per pass over the matrix.
const TOK_BLOCK: usize = 128;
/// (token, block) activation sums held at once: 64 KiB on the stack. Rows of more than
/// `SUMS / TOK_BLOCK` blocks take fewer tokens per pass.
const SUMS: usize = 8192;

/// One block of sixteen rows (two panels), codes made unsigned: `q[j]` holds codes
/// 4j..4j+4 (j < 4) or 16+4(j−4).. (j ≥ 4) of every row plus 128; `d` and `m` the rows'
/// scales (`m` the second half's scale for `Dot::Signed2`, Q2_K's `dmin`), `sc` Q2_K's and
/// Q3_K's integer scales, `mn` Q2_K's integer offsets.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Pair {
    q: [__m512i; 8],
    d: __m512,
    m: __m512,
    sc: __m512i,
    mn: __m512i,
}

/// `lo` in the low 256 bits and `hi` in the high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn join_i(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn join_f(lo: __m256, hi: __m256) -> __m512 {
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(
        _mm512_castps_pd(_mm512_castps256_ps512(lo)),
        _mm256_castps_pd(hi),
    ))
}

/// `acc` plus the sixteen rows' products of block `p` with activation block `x`, whose
/// bias sums are `bias`: the integer sums of `dot::signed_dot` / `dot::signed2_dot`, then
/// their float steps. Q2_K's add their integer sums to `ints` instead (`dot::affine2_tail`)
/// and leave `acc` as it is; the other formats leave `ints` as it is.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_dot<F: PanelFormat>(
    p: &Pair,
    x: &BlockQ8Act,
    bias: [i32; 2],
    acc: __m512,
    ints: &mut [__m512i; 2],
) -> __m512 {
    let qs = x.qs.as_ptr() as *const i32;
    // SAFETY: qs is 32 bytes: words 0..8 (read unaligned).
    let word = |j: usize| _mm512_set1_epi32(unsafe { qs.add(j).read_unaligned() });
    let mut lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), p.q[0], word(0));
    let mut hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), p.q[4], word(4));
    for j in 1..4 {
        lo = _mm512_dpbusd_epi32(lo, p.q[j], word(j));
        hi = _mm512_dpbusd_epi32(hi, p.q[4 + j], word(4 + j));
    }
    let xd = _mm512_set1_ps(x.d);
    match F::DOT {
        // `dot::affine2_tail`: the halves' sums (codes 0..3, each half within i16) times
        // their integer scales, the offsets times the activation's half sums, into the tile's
        // integer sums (`pair_products` closes them).
        Dot::Affine2 => {
            let halves = _mm512_mask_blend_epi16(0xaaaa_aaaa, lo, _mm512_slli_epi32::<16>(hi));
            // SAFETY: h is two i16, 4 bytes (read unaligned; little-endian, lo first).
            let h = _mm512_set1_epi32(unsafe { (x.h.as_ptr() as *const i32).read_unaligned() });
            ints[0] = _mm512_add_epi32(ints[0], _mm512_madd_epi16(halves, p.sc));
            ints[1] = _mm512_add_epi32(ints[1], _mm512_madd_epi16(p.mn, h));
            acc
        }
        // `dot::scaled3_dot`'s integer steps and float step, 16 lanes at once.
        Dot::Scaled3 => {
            let halves = _mm512_mask_blend_epi16(0xaaaa_aaaa, lo, _mm512_slli_epi32::<16>(hi));
            // SAFETY: h is two i16, 4 bytes (read unaligned; little-endian, lo first).
            let h = _mm512_set1_epi32(unsafe { (x.h.as_ptr() as *const i32).read_unaligned() });
            let halves = _mm512_sub_epi16(halves, _mm512_slli_epi16::<2>(h));
            // Into the tile's integer sum (`pair_products`), as in `dot::scaled3_tail`.
            ints[0] = _mm512_add_epi32(ints[0], _mm512_madd_epi16(halves, p.sc));
            acc
        }
        Dot::Signed2 => {
            let lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, _mm512_set1_epi32(bias[0])));
            let hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, _mm512_set1_epi32(bias[1])));
            let acc = _mm512_fmadd_ps(lo, _mm512_mul_ps(p.d, xd), acc);
            _mm512_fmadd_ps(hi, _mm512_mul_ps(p.m, xd), acc)
        }
        Dot::Signed => {
            let dot = _mm512_sub_epi32(
                _mm512_add_epi32(lo, hi),
                _mm512_set1_epi32(bias[0] + bias[1]),
            );
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(p.d, xd), acc)
        }
        // Unsigned codes as stored: `dot::block_dot`'s integer sum and its two FMAs.
        _ => {
            let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi));
            let acc = _mm512_fmadd_ps(dot, _mm512_mul_ps(p.d, xd), acc);
            _mm512_fmadd_ps(p.m, _mm512_set1_ps(x.s), acc)
        }
    }
}

/// Joins the unpacked (biased) blocks of two panels into pairs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn join_pairs(a: &[Packed], b: &[Packed], out: &mut [Pair]) {
    for ((pa, pb), o) in a.iter().zip(b).zip(out.iter_mut()) {
        o.q = std::array::from_fn(|j| join_i(pa.q[j], pb.q[j]));
        o.d = join_f(pa.d, pb.d);
        o.m = join_f(pa.m, pb.m);
        o.sc = join_i(pa.sc, pb.sc);
        o.mn = join_i(pa.mn, pb.mn);
    }
}

/// The batched product for a signed-code format `F` over row panels (`kernels::GemmFn`).
///
/// # Safety
/// As `kernels::GemmFn`, with `w` the start of a panel of `F`'s layout and rows in panels
/// from there; the CPU has AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI (`table::supports`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_pairs<F: PanelFormat>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    if rows == 0 || n_tok == 0 {
        return;
    }
    let nb = xq.len() / n_tok;
    let zero = Packed {
        q: [_mm256_setzero_si256(); 8],
        d: _mm256_setzero_ps(),
        m: _mm256_setzero_ps(),
        ..Packed::ZERO
    };
    let mut half_a = [zero; KCHUNK];
    let mut half_b = [zero; KCHUNK];
    let mut pairs = [Pair {
        q: [_mm512_setzero_si512(); 8],
        d: _mm512_setzero_ps(),
        m: _mm512_setzero_ps(),
        sc: _mm512_setzero_si512(),
        mn: _mm512_setzero_si512(),
    }; KCHUNK];
    let mut sums = [[0i32; 2]; SUMS];
    let mut acc = [_mm512_setzero_ps(); TOK_BLOCK];
    let tok_block = (SUMS / nb.max(1)).clamp(1, TOK_BLOCK);
    for t0 in (0..n_tok).step_by(tok_block) {
        let nt = (n_tok - t0).min(tok_block);
        bias_sums(F::BIAS, &xq[t0 * nb..(t0 + nt) * nb], &mut sums[..nt * nb]);
        for r0 in (0..rows).step_by(PAIR) {
            let live = (rows - r0).min(PAIR);
            // Panel r0 / 8 starts at r0 · row_bytes; the second exists when live > 8.
            let panel_a = w.wrapping_add(r0 * row_bytes);
            let panel_b = w.wrapping_add((r0 + PANEL_ROWS) * row_bytes);
            super::gemv::prefetch(w.wrapping_add((r0 + PAIR) * row_bytes), PAIR * row_bytes);
            acc[..nt].fill(_mm512_setzero_ps());
            for b0 in (0..nb).step_by(KCHUNK) {
                let nk = (nb - b0).min(KCHUNK);
                // SAFETY: blocks b0..b0 + nk < nb of the panels at rows r0 (and r0 + 8 when
                // it holds rows), in bounds (caller).
                unsafe {
                    unpack_blocks::<F, true>(panel_a, b0, &mut half_a[..nk]);
                    if live > PANEL_ROWS {
                        unpack_blocks::<F, true>(panel_b, b0, &mut half_b[..nk]);
                    } else {
                        half_b[..nk].fill(zero);
                    }
                }
                join_pairs(&half_a[..nk], &half_b[..nk], &mut pairs[..nk]);
                let mut g = 0;
                while g < nt {
                    let group = (nt - g).min(TOK_GROUP);
                    if F::DOT.tiled() && group == TOK_GROUP {
                        // Q2_K and Q3_K: tile by tile (`pair_products`).
                        let x: [&[BlockQ8Act]; TOK_GROUP] =
                            std::array::from_fn(|i| &xq[(t0 + g + i) * nb + b0..][..nk]);
                        let s: [&[[i32; 2]]; TOK_GROUP] =
                            std::array::from_fn(|i| &sums[(g + i) * nb + b0..][..nk]);
                        let a = (&mut acc[g..g + TOK_GROUP])
                            .try_into()
                            .expect("TOK_GROUP sums");
                        pair_products::<F, TOK_GROUP>(&pairs[..nk], x, s, a);
                    } else if F::DOT.tiled() {
                        for t in g..g + group {
                            let x = &xq[(t0 + t) * nb + b0..][..nk];
                            let s = &sums[t * nb + b0..][..nk];
                            let a = (&mut acc[t..t + 1]).try_into().expect("one sum");
                            pair_products::<F, 1>(&pairs[..nk], [x], [s], a);
                        }
                    } else if group == TOK_GROUP {
                        let x: [&[BlockQ8Act]; TOK_GROUP] =
                            std::array::from_fn(|i| &xq[(t0 + g + i) * nb + b0..][..nk]);
                        let s: [&[[i32; 2]]; TOK_GROUP] =
                            std::array::from_fn(|i| &sums[(g + i) * nb + b0..][..nk]);
                        let mut a: [__m512; TOK_GROUP] = std::array::from_fn(|i| acc[g + i]);
                        for (b, p) in pairs[..nk].iter().enumerate() {
                            for i in 0..TOK_GROUP {
                                debug_assert_eq!(F::code_shift(b), 0, "pair_dot takes plain codes");
                                let mut none = [_mm512_setzero_si512(); 2];
                                a[i] = pair_dot::<F>(p, &x[i][b], s[i][b], a[i], &mut none);
                            }
                        }
                        acc[g..g + TOK_GROUP].copy_from_slice(&a);
                    } else {
                        for t in g..g + group {
                            let x = &xq[(t0 + t) * nb + b0..][..nk];
                            let s = &sums[t * nb + b0..][..nk];
                            let mut a = acc[t];
                            for ((p, xb), sb) in pairs[..nk].iter().zip(x).zip(s) {
                                let mut none = [_mm512_setzero_si512(); 2];
                                a = pair_dot::<F>(p, xb, *sb, a, &mut none);
                            }
                            acc[t] = a;
                        }
                    }
                    g += group;
                }
            }
            let mask: __mmask16 = if live == PAIR { !0 } else { (1 << live) - 1 };
            for (t, a) in acc[..nt].iter().enumerate() {
                // SAFETY: out holds rows r0..r0 + live of token t0 + t (caller: ldo ≥ rows);
                // the mask stores only those lanes.
                unsafe { _mm512_mask_storeu_ps(out.add((t0 + t) * ldo + r0), mask, *a) };
            }
        }
    }
}

/// `sums[i]` plus token i's products with the pairs of unpacked blocks `pairs` (whole tiles
/// of Q2_K or Q3_K, `Dot::tiled`), whose activations' bias sums are `s[i]`: each tile's blocks
/// add to exact integer sums per token that the tile's scales close once at its end, as
/// `dot::Acc::close` does for the AVX2 products, so the bits are theirs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_products<F: PanelFormat, const N: usize>(
    pairs: &[Pair],
    x: [&[BlockQ8Act]; N],
    s: [&[[i32; 2]]; N],
    sums: &mut [__m512; N],
) {
    debug_assert!(
        F::DOT.tiled(),
        "the untiled formats add to `sums` block by block"
    );
    // Each token's blocks as many as the pairs: the indexing below needs no checks.
    let (x, s) = (x.map(|x| &x[..pairs.len()]), s.map(|s| &s[..pairs.len()]));
    for (k, tile) in pairs.chunks(F::BLOCKS).enumerate() {
        let mut ints = [[_mm512_setzero_si512(); 2]; N];
        for (b, p) in tile.iter().enumerate() {
            let b = k * F::BLOCKS + b;
            for i in 0..N {
                // The tiled formats add to `ints` only.
                pair_dot::<F>(p, &x[i][b], s[i][b], _mm512_setzero_ps(), &mut ints[i]);
            }
        }
        let last = &tile[tile.len() - 1];
        let b_last = k * F::BLOCKS + tile.len() - 1;
        for i in 0..N {
            // `dot::Acc::close`: the tile's activation blocks share their scale.
            let xd = _mm512_set1_ps(x[i][b_last].d);
            let sc = _mm512_mul_ps(last.d, xd);
            sums[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ints[i][0]), sc, sums[i]);
            if F::DOT == Dot::Affine2 {
                let mn = _mm512_mul_ps(last.m, xd);
                sums[i] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ints[i][1]), mn, sums[i]);
            }
        }
    }
}

/// Activation blocks whose bias sums the decode product holds on the stack (8 KiB): rows
/// up to 32768 weights. Longer rows run the AVX2 gemv, which gives the same bits.
pub(super) const GEMV_SUMS: usize = 1024;

/// `acc` plus the eight rows' products of block `p` (codes biased to unsigned, and times
/// `2^shift`: `PanelFormat::code_shift`) with `x`: the 256-bit form of `pair_dot`, for one
/// panel.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn panel_dot<F: PanelFormat>(
    p: &Packed,
    x: &BlockQ8Act,
    bias: [i32; 2],
    shift: u32,
    acc: Acc,
) -> Acc {
    let qs = x.qs.as_ptr() as *const i32;
    // SAFETY: qs is 32 bytes: words 0..8 (read unaligned).
    let word = |j: usize| _mm256_set1_epi32(unsafe { qs.add(j).read_unaligned() });
    let q = |j: usize| p.q[j];
    let mut lo = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q(0), word(0));
    let mut hi = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q(4), word(4));
    for j in 1..4 {
        lo = _mm256_dpbusd_epi32(lo, q(j), word(j));
        hi = _mm256_dpbusd_epi32(hi, q(4 + j), word(4 + j));
    }
    match F::DOT {
        Dot::Scaled3 => {
            // Codes stored times 2^s give sums that are exact multiples of 2^s: an arithmetic
            // shift divides `lo` back exactly, and `hi` moves to the high i16 by 16 − s.
            let s = shift as i32;
            let lo = _mm256_sra_epi32(lo, _mm_cvtsi32_si128(s));
            let hi = _mm256_sll_epi32(hi, _mm_cvtsi32_si128(16 - s));
            let halves = _mm256_blend_epi16::<0b1010_1010>(lo, hi);
            return super::dot::scaled3_tail(p, x, halves, acc);
        }
        Dot::Affine2 => {
            // As Scaled3: sums of codes times 2^s are exact multiples of 2^s (Q2KInPlace).
            let s = shift as i32;
            let lo = _mm256_sra_epi32(lo, _mm_cvtsi32_si128(s));
            let hi = _mm256_sll_epi32(hi, _mm_cvtsi32_si128(16 - s));
            let halves = _mm256_blend_epi16::<0b1010_1010>(lo, hi);
            return super::dot::affine2_tail(p, x, halves, acc);
        }
        _ => {}
    }
    let (xd, sum) = (_mm256_set1_ps(x.d), acc.sum);
    let sum = if matches!(F::DOT, Dot::Affine4 | Dot::Affine5) {
        let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi));
        let sum = _mm256_fmadd_ps(dot, _mm256_mul_ps(p.d, xd), sum);
        _mm256_fmadd_ps(p.m, _mm256_set1_ps(x.s), sum)
    } else if F::DOT == Dot::Signed2 {
        let lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(lo, _mm256_set1_epi32(bias[0])));
        let hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(hi, _mm256_set1_epi32(bias[1])));
        let sum = _mm256_fmadd_ps(lo, _mm256_mul_ps(p.d, xd), sum);
        _mm256_fmadd_ps(hi, _mm256_mul_ps(p.m, xd), sum)
    } else {
        let dot = _mm256_sub_epi32(
            _mm256_add_epi32(lo, hi),
            _mm256_set1_epi32(bias[0] + bias[1]),
        );
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(p.d, xd), sum)
    };
    acc.with_sum(sum)
}

vnni_gemv_loop!(
    gemv_panels,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
);

macro_rules! vnni_gemv {
    ($($fmt:ident: $gemv:ident;)*) => {$(
        /// The decode product over row panels of this format with AVX-512 VNNI
        /// (`gemv_panels`): bitwise the AVX2 panel gemv.
        ///
        /// # Safety
        /// As `kernels::GemvFn`, with `w` the start of a panel of the format's layout; the
        /// CPU has AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
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

vnni_gemv! {
    Q2KInPlace: gemv_q2_kx8_vnni;
    Q3K: gemv_q3_kx8_vnni;
    Iq4Nl: gemv_iq4_nlx8_vnni;
    Iq4Xs: gemv_iq4_xsx8_vnni;
    Q6K: gemv_q6_kx8_vnni;
    Q5_0: gemv_q5_0x8_vnni;
    Q5_1: gemv_q5_1x8_vnni;
    Q5K: gemv_q5_kx8_vnni;
    Q4K: gemv_q4_kx8_vnni;
}

macro_rules! vnni_kernels {
    ($($fmt:ident: $gemm:ident;)*) => {$(
        /// The batched product over row panels of this format with AVX-512 VNNI
        /// (`gemm_pairs`): bitwise the AVX2 gemm and the decode gemv.
        ///
        /// # Safety
        /// As `kernels::GemmFn`, with `w` the start of a panel of the format's layout; the
        /// CPU has AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub unsafe fn $gemm(
            w: *const u8,
            row_bytes: usize,
            rows: usize,
            xq: &[BlockQ8Act],
            n_tok: usize,
            out: *mut f32,
            ldo: usize,
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { gemm_pairs::<$fmt>(w, row_bytes, rows, xq, n_tok, out, ldo) }
        }
    )*};
}

vnni_kernels! {
    Q2K: gemm_q2_kx8_vnni;
    Q4_0: gemm_q4_0x8_vnni;
    Q4_1: gemm_q4_1x8_vnni;
    Q5_0: gemm_q5_0x8_vnni;
    Q5_1: gemm_q5_1x8_vnni;
    Q4K: gemm_q4_kx8_vnni;
    Q5K: gemm_q5_kx8_vnni;
    Q8_0: gemm_q8_0x8_vnni;
    Q6K: gemm_q6_kx8_vnni;
    Q3K: gemm_q3_kx8_vnni;
    Iq4Nl: gemm_iq4_nlx8_vnni;
    Iq4Xs: gemm_iq4_xsx8_vnni;
}

const _: () = assert!(std::mem::size_of::<Pair>() == 768 && TOK_BLOCK * 64 <= SUMS);
