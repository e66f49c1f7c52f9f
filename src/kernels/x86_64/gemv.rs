//! Matrix–vector products. Quantized weights (Q4_1, Q4_0, Q8_0) multiply the step's
//! activations quantized to 8-bit blocks with integer dot products (`maddubs` then `madd`,
//! exact in i32 per block), then one f32 multiply-add per block; F16 and F32 weights use f32
//! FMAs. Row r's blocks are read once, in order: the loop is a stream over the matrix.

use std::arch::x86_64::*;

use crate::kernels::scalar::act::BlockQ8Act;
use crate::quant::{BlockQ8_0, QK};

/// The 32 4-bit codes of a block as bytes 0..=15, in element order (low nibbles are
/// elements 0..16, high nibbles 16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_nibbles(qs: &[u8; QK / 2]) -> __m256i {
    // SAFETY: qs is 16 bytes.
    let v = unsafe { _mm_loadu_si128(qs.as_ptr() as *const __m128i) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(v), v);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// `Σ u8 · i8` over 32 byte pairs, as 8 i32 partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8_i8(u: __m256i, i: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, i), _mm256_set1_epi16(1))
}

/// How far ahead of the row being multiplied the weight stream is prefetched. Measured on
/// the Zen 5 VM this was written on: without it the loop waits on every line it loads
/// (about 4 GB/s of the 20 GB/s the machine streams).
pub const PREFETCH_BYTES: usize = 4096;

/// Prefetches the cache lines of `len` bytes at `p` with hint `HINT` (never faults).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_lines<const HINT: i32>(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        // A hint: it never faults, whatever the address.
        _mm_prefetch::<HINT>(p.wrapping_add(off) as *const i8);
        off += 64;
    }
}

/// Prefetches the cache lines of `len` bytes at `p` into L1 (hints only: never faults).
///
/// # Safety
/// Callers outside an AVX2 + FMA + F16C function must have checked the CPU has them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn prefetch(p: *const u8, len: usize) {
    prefetch_lines::<_MM_HINT_T0>(p, len)
}

/// Prefetches the cache lines of `len` bytes at `p` for a single use (`prefetchnta`): the
/// panel kernels read each weight once per token, so the lines need not displace the
/// activations and caches from L2. Measured on the AVX2-only EPYC VM (qgraph bench -n 64
/// -r 5, alternating): tg64 90–94 t/s with T0 hints, 98–99 with NTA at 1 thread; 144–148 vs
/// 160–170 at 2.
///
/// # Safety
/// Callers outside an AVX2 + FMA + F16C function must have checked the CPU has them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn prefetch_once(p: *const u8, len: usize) {
    prefetch_lines::<_MM_HINT_NTA>(p, len)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_q8(x: &BlockQ8Act) -> __m256i {
    // SAFETY: qs is 32 bytes.
    unsafe { _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i) }
}

/// The eight vectors' lane sums, vector i's in lane i (exact in i32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn row_sums(v: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(h0123, h4567),
        _mm256_permute2x128_si256::<0x31>(h0123, h4567),
    )
}

/// The row-layout kernels' loop: eight rows at a time, one row per lane, the stream kept
/// `PREFETCH_BYTES` ahead of the eight rows (they are contiguous). `block(ptrs, b, x, acc)`
/// accumulates block `b` of the eight rows at `ptrs`; lanes past the last row repeat it,
/// computed and never stored.
///
/// # Safety
/// As `kernels::GemvFn`; `block` reads only block `b` of each row at `ptrs`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn eight_rows(
    w: *const u8,
    row_bytes: usize,
    xq: &[BlockQ8Act],
    out: &mut [f32],
    block: impl Fn(&[*const u8; 8], usize, &BlockQ8Act, __m256) -> __m256,
) {
    let rows = out.len();
    for r0 in (0..rows).step_by(8) {
        let live = (rows - r0).min(8);
        let ptrs: [*const u8; 8] =
            std::array::from_fn(|i| w.wrapping_add((r0 + i.min(live - 1)) * row_bytes));
        prefetch(
            w.wrapping_add((r0 + 8) * row_bytes + PREFETCH_BYTES),
            8 * row_bytes,
        );
        let mut acc = _mm256_setzero_ps();
        for (b, x) in xq.iter().enumerate() {
            acc = block(&ptrs, b, x, acc);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: lanes is 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        out[r0..r0 + live].copy_from_slice(&lanes[..live]);
    }
}

/// Eight rows at a time, one row per lane of the result: each row's block product is
/// reduced to its exact integer sum (`hadd`), then scaled and accumulated with the same
/// instructions in the same order as the batched kernel (`gemm.rs`), so a token gives
/// bitwise the same values through either: a prompt fed in a batch and fed token by token
/// agree exactly. `m` is the rows' offsets (Q4_0: `-8·d`).
///
/// # Safety
/// As `kernels::GemvFn`, for a matrix of `B` blocks; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_q4_rows<B: super::gemm::Q4Block>(
    w: *const u8,
    row_bytes: usize,
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    let block = |ptrs: &[*const u8; 8], b: usize, x: &BlockQ8Act, acc: __m256| {
        let at = b * B::BYTES;
        let xv = load_q8(x);
        let dot = |i: usize| {
            // SAFETY: block b of row i is in bounds (caller): 16 code bytes at QS.
            let qs = unsafe { &*(ptrs[i].add(at + B::QS) as *const [u8; QK / 2]) };
            dot_u8_i8(unpack_nibbles(qs), xv)
        };
        let sums = row_sums(std::array::from_fn(dot));
        // SAFETY: each pointer is at a whole block (caller).
        let (d, m) = unsafe { super::gemm::scales8::<B>(ptrs, at) };
        let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.d));
        let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc);
        _mm256_fmadd_ps(m, _mm256_set1_ps(x.s), acc)
    };
    // SAFETY: forwarded from the caller; `block` reads block b of each row.
    unsafe { eight_rows(w, row_bytes, xq, out, block) }
}

/// Twin of `scalar::act::gemv_q4_1_q8_scalar` (see `gemv_q4_rows`).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; otherwise as `kernels::GemvFn`, with `xq` holding
/// `x.len() / 32` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_1_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_q4_rows::<super::gemm::Q4_1>(w, row_bytes, xq, out) }
}

/// Twin of `scalar::act::gemv_q4_0_q8_scalar` (see `gemv_q4_rows`).
///
/// # Safety
/// As `gemv_q4_1_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q4_0_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemv_q4_rows::<super::gemm::Q4_0>(w, row_bytes, xq, out) }
}

/// Twin of `scalar::act::gemv_q8_0_q8_scalar`, eight rows at a time as `gemv_q4_rows`:
/// each row's exact integer block sum in its lane, then one FMA per block, as the panel
/// kernel (`panel.rs`) computes it. `maddubs` needs an unsigned operand: it gets |w| and
/// x·sign(w), whose products are the same, so a code of −128 reads as the format says (as
/// `dot::signed_dot`).
///
/// # Safety
/// As `gemv_q4_1_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemv_q8_0_avx2(
    w: *const u8,
    row_bytes: usize,
    _x: &[f32],
    xq: &[BlockQ8Act],
    out: &mut [f32],
) {
    const BYTES: usize = std::mem::size_of::<BlockQ8_0>();
    let block = |ptrs: &[*const u8; 8], b: usize, x: &BlockQ8Act, acc: __m256| {
        let at = b * BYTES;
        let xv = load_q8(x);
        let dot = |i: usize| {
            // SAFETY: block b of row i is in bounds (caller): 32 codes after its d.
            let wv = unsafe { _mm256_loadu_si256(ptrs[i].add(at + 2) as *const __m256i) };
            dot_u8_i8(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv))
        };
        let sums = row_sums(std::array::from_fn(dot));
        // SAFETY: each block starts with its f16 d (read unaligned).
        let d16 = |i: usize| unsafe { (ptrs[i].add(at) as *const i16).read_unaligned() };
        let d = _mm256_cvtph_ps(_mm_setr_epi16(
            d16(0),
            d16(1),
            d16(2),
            d16(3),
            d16(4),
            d16(5),
            d16(6),
            d16(7),
        ));
        let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.d));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc)
    };
    // SAFETY: forwarded from the caller; `block` reads block b of each row.
    unsafe { eight_rows(w, row_bytes, xq, out, block) }
}
