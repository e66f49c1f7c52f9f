//! Streaming read bandwidth: the roofline decode is measured against.

use std::arch::x86_64::*;

/// Reads every byte of `buf` (a multiple of 128 bytes is read; the tail is ignored) with four
/// independent 256-bit accumulators, and returns a value that depends on all of it so the
/// loads cannot be optimised away. The stream is prefetched as the decode kernels prefetch
/// theirs (`gemv::prefetch_once`), so the roofline is what a kernel that only reads could
/// reach the same way.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn read_all_avx2(buf: &[u8]) -> u64 {
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
        super::gemv::prefetch_once(p.wrapping_add(i + super::gemv::PREFETCH_BYTES), 128);
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
