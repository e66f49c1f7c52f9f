//! Streaming read bandwidth: the roofline decode is measured against.

use std::arch::x86_64::*;

/// Reads every byte of `buf` (a multiple of 128 bytes is read; the tail is ignored) with four
/// independent 256-bit accumulators, and returns a value that depends on all of it so the
/// loads cannot be optimised away. With `PREFETCH` the stream is also prefetched as the
/// decode kernels prefetch theirs (`gemv::prefetch_once`); without, the hardware prefetchers
/// alone run ahead, which on the Zen 4 VM reads 13% faster (medians of 15 alternating 128 MB
/// sweeps: 17.6 vs 15.3 GB/s and 23.6 vs 20.9 in a faster minute), though the decode kernels,
/// which compute between loads, stream faster with the hints (Q6_K: 17–22 vs 10–11 GiB/s).
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn read_all_avx2<const PREFETCH: bool>(buf: &[u8]) -> u64 {
    let p = buf.as_ptr();
    let n = buf.len() / 128 * 128;
    let (mut a, mut b, mut c, mut d) = (
        _mm256_setzero_si256(),
        _mm256_setzero_si256(),
        _mm256_setzero_si256(),
        _mm256_setzero_si256(),
    );
    let mut i = 0;
    while i < n {
        if PREFETCH {
            super::gemv::prefetch_once(p.wrapping_add(i + super::gemv::PREFETCH_BYTES), 128);
        }
        // SAFETY: i + 128 <= n <= buf.len().
        unsafe {
            a = _mm256_add_epi64(a, _mm256_loadu_si256(p.add(i) as *const __m256i));
            b = _mm256_add_epi64(b, _mm256_loadu_si256(p.add(i + 32) as *const __m256i));
            c = _mm256_add_epi64(c, _mm256_loadu_si256(p.add(i + 64) as *const __m256i));
            d = _mm256_add_epi64(d, _mm256_loadu_si256(p.add(i + 96) as *const __m256i));
        }
        i += 128;
    }
    let s = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    let mut out = [0u64; 4];
    // SAFETY: out is 32 bytes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, s) };
    out.iter().fold(0u64, |x, y| x.wrapping_add(*y))
}
