//! Vector helpers and the non-product kernels: activation quantization, RMS norm, exp,
//! silu·mul (attention has its own file).

use std::arch::x86_64::*;

use crate::kernels::scalar::act::BlockQ8Act;
use crate::quant::QK;

/// Sum of the 8 lanes.
///
/// # Safety
/// Callers outside an AVX2 + FMA + F16C function must have checked the CPU has them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Largest of the 8 lanes.
///
/// # Safety
/// Callers outside an AVX2 + FMA + F16C function must have checked the CPU has them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

/// One f16 (as bits) to f32.
///
/// # Safety
/// Callers outside an AVX2 + FMA + F16C function must have checked the CPU has them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// `e^x` for 8 lanes: Cephes' `expf` (range reduction by ln 2 split in two parts, a degree-5
/// polynomial, the exponent set directly); relative error about 2e-7 over [-87, 88], inputs
/// clamped there.
///
/// # Safety
/// Callers outside an AVX2 + FMA + F16C function must have checked the CPU has them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn exp(x: __m256) -> __m256 {
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
        _mm256_set1_ps(88.3),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_2e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
    let y = _mm256_add_ps(
        _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
        _mm256_set1_ps(1.0),
    );
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_mul_ps(y, pow2n)
}

/// Twin of `scalar::act::quantize_act_scalar`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x.len()` is `32 * out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_act_avx2(x: &[f32], out: &mut [BlockQ8Act]) {
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let v = load_block(xs);
        quantize_block(&v, block_amax(&v) / 127.0, b);
    }
}

/// Twin of `scalar::act::quantize_act_tiled_scalar`: one scale per 256 values.
///
/// # Safety
/// As `quantize_act_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_act_tiled_avx2(x: &[f32], out: &mut [BlockQ8Act]) {
    use crate::kernels::scalar::act::TILED;
    for (xs, bs) in x.chunks(TILED).zip(out.chunks_mut(TILED / QK)) {
        let whole = xs.len() == TILED;
        let d = xs
            .chunks_exact(QK)
            .map(|xb| block_amax(&load_block(xb)))
            .fold(0f32, f32::max)
            / 127.0;
        for (xb, b) in xs.chunks_exact(QK).zip(bs.iter_mut()) {
            let v = load_block(xb);
            quantize_block(&v, if whole { d } else { block_amax(&v) / 127.0 }, b);
        }
    }
}

/// One block's 32 values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_block(xs: &[f32]) -> [__m256; 4] {
    let xs = &xs[..QK];
    let p = xs.as_ptr();
    // SAFETY: xs holds 32 f32.
    unsafe {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
}

/// `max |x|` over one block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_amax(v: &[__m256; 4]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    hmax(_mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
        _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
    ))
}

/// One block with the scale `d` (`scalar::act::quantize_block`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_block(v: &[__m256; 4], d: f32, b: &mut BlockQ8Act) {
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let q = v.map(|vi| {
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(_mm256_mul_ps(vi, id)))
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let sum = hsum(_mm256_cvtepi32_ps(sum));
    // i32 → i16 → i8 packs interleave 128-bit lanes; the permute restores element order.
    let q16a = _mm256_packs_epi32(q[0], q[1]);
    let q16b = _mm256_packs_epi32(q[2], q[3]);
    let q8 = _mm256_packs_epi16(q16a, q16b);
    let q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: b.qs holds 32 bytes.
    unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, q8) };
    b.h = crate::kernels::scalar::act::half_sums(&b.qs);
    b.d = d;
    b.s = d * sum;
}

/// Twin of `scalar::norm::rmsnorm_scalar`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x`, `gamma` and `out` have the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rmsnorm_avx2(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    let body = n - n % 8;
    let mut acc = _mm256_setzero_ps();
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= n.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    let ss = hsum(acc) + x[body..].iter().map(|v| v * v).sum::<f32>();
    let scale = 1.0 / (ss / n as f32 + eps).sqrt();
    let s = _mm256_set1_ps(scale);
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= n for all three slices.
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), s);
            _mm256_storeu_ps(
                out.as_mut_ptr().add(i),
                _mm256_mul_ps(v, _mm256_loadu_ps(gamma.as_ptr().add(i))),
            );
        }
    }
    for i in body..n {
        out[i] = x[i] * scale * gamma[i];
    }
}

/// `g = silu(g) · u`, the SwiGLU activation. Twin of `scalar::elementwise::silu_mul_scalar`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `g` and `u` have the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn silu_mul_avx2(g: &mut [f32], u: &[f32]) {
    let n = g.len();
    let body = n - n % 8;
    let one = _mm256_set1_ps(1.0);
    let neg = _mm256_set1_ps(-0.0);
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let x = _mm256_loadu_ps(g.as_ptr().add(i));
            let e = exp(_mm256_xor_ps(x, neg));
            let silu = _mm256_div_ps(x, _mm256_add_ps(one, e));
            _mm256_storeu_ps(
                g.as_mut_ptr().add(i),
                _mm256_mul_ps(silu, _mm256_loadu_ps(u.as_ptr().add(i))),
            );
        }
    }
    for i in body..n {
        g[i] = crate::kernels::scalar::elementwise::silu(g[i]) * u[i];
    }
}

/// GELU (tanh approximation) of a row. Twin of `scalar::elementwise::gelu_scalar`:
/// `0.5·x·(1 + tanh(u)) = x / (1 + e^(−2u))` with `u = √(2/π)·x·(1 + 0.044715·x²)`, through
/// the same `exp` as softmax and SiLU (libm's `tanhf` cost Gemma's prefill 16%).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x` and `out` have the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gelu_avx2(x: &[f32], out: &mut [f32]) {
    let n = x.len();
    let body = n - n % 8;
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), gelu8(v));
        }
    }
    crate::kernels::scalar::elementwise::gelu_scalar(&x[body..], &mut out[body..]);
}

/// GELU of eight lanes, as `gelu_avx2` computes them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn gelu8(v: __m256) -> __m256 {
    let (one, c, k) = (
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(-2.0 * 0.797_884_6),
        _mm256_set1_ps(0.044715),
    );
    let inner = _mm256_fmadd_ps(_mm256_mul_ps(k, v), v, one);
    let e = exp(_mm256_mul_ps(_mm256_mul_ps(c, v), inner));
    _mm256_div_ps(v, _mm256_add_ps(one, e))
}

/// `g = gelu(g) · u`, the GeGLU activation of a fused gated FFN (`Op::SwiGlu` with GELU):
/// bitwise `gelu_avx2` then a multiply, as the unfused graph computes it.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `g` and `u` have the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gelu_mul_avx2(g: &mut [f32], u: &[f32]) {
    let n = g.len();
    let body = n - n % 8;
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let v = gelu8(_mm256_loadu_ps(g.as_ptr().add(i)));
            let w = _mm256_mul_ps(v, _mm256_loadu_ps(u.as_ptr().add(i)));
            _mm256_storeu_ps(g.as_mut_ptr().add(i), w);
        }
    }
    crate::kernels::scalar::elementwise::gelu_mul_scalar(&mut g[body..], &u[body..]);
}

/// Largest head size the AVX2 rope handles (its angle tables live on the stack).
pub const ROPE_MAX_HEAD_DIM: usize = 512;

/// Twin of `scalar::rope::rope_scalar`: the same angles (computed once per pair, shared by
/// every head), the rotation 4 pairs (normal layout) or 8 pairs (NeoX) per vector. The
/// planner picks it only when `head_dim` is a multiple of 16 and at most
/// `ROPE_MAX_HEAD_DIM`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x.len() == heads * head_dim` with `head_dim` as above;
/// `freqs.len() == head_dim / 2`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rope_avx2(
    x: &mut [f32],
    heads: usize,
    pos: i32,
    freqs: &[f32],
    layout: crate::vocab::RopeLayout,
) {
    let head_dim = x.len() / heads;
    let half = head_dim / 2;
    let (mut cos, mut sin) = ([0f32; ROPE_MAX_HEAD_DIM], [0f32; ROPE_MAX_HEAD_DIM]);
    match layout {
        crate::vocab::RopeLayout::Normal => {
            // Pair i sits at (2i, 2i+1): lane 2i gets (cos, -sin), lane 2i+1 (cos, +sin), so
            // out = x·cos + swap(x)·sin'.
            for (i, &f) in freqs.iter().enumerate().take(half) {
                let (s, c) = (pos as f32 * f).sin_cos();
                cos[2 * i] = c;
                cos[2 * i + 1] = c;
                sin[2 * i] = -s;
                sin[2 * i + 1] = s;
            }
            for h in x.chunks_exact_mut(head_dim) {
                for i in (0..head_dim).step_by(8) {
                    // SAFETY: i + 8 <= head_dim for h, cos and sin.
                    unsafe {
                        let v = _mm256_loadu_ps(h.as_ptr().add(i));
                        let swapped = _mm256_permute_ps::<0b10_11_00_01>(v);
                        let r = _mm256_fmadd_ps(
                            v,
                            _mm256_loadu_ps(cos.as_ptr().add(i)),
                            _mm256_mul_ps(swapped, _mm256_loadu_ps(sin.as_ptr().add(i))),
                        );
                        _mm256_storeu_ps(h.as_mut_ptr().add(i), r);
                    }
                }
            }
        }
        crate::vocab::RopeLayout::Neox => {
            for (i, &f) in freqs.iter().enumerate().take(half) {
                let (s, c) = (pos as f32 * f).sin_cos();
                cos[i] = c;
                sin[i] = s;
            }
            for h in x.chunks_exact_mut(head_dim) {
                for i in (0..half).step_by(8) {
                    // SAFETY: i + 8 <= half, so both halves and the tables are in range.
                    unsafe {
                        let a = _mm256_loadu_ps(h.as_ptr().add(i));
                        let b = _mm256_loadu_ps(h.as_ptr().add(i + half));
                        let c = _mm256_loadu_ps(cos.as_ptr().add(i));
                        let s = _mm256_loadu_ps(sin.as_ptr().add(i));
                        _mm256_storeu_ps(
                            h.as_mut_ptr().add(i),
                            _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)),
                        );
                        _mm256_storeu_ps(
                            h.as_mut_ptr().add(i + half),
                            _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)),
                        );
                    }
                }
            }
        }
    }
}

/// Twin of `scalar::elementwise::accumulate_scalar`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; equal lengths.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn accumulate_avx2(acc: &mut [f32], x: &[f32]) {
    let n = acc.len();
    let body = n - n % 8;
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let s = _mm256_add_ps(
                _mm256_loadu_ps(acc.as_ptr().add(i)),
                _mm256_loadu_ps(x.as_ptr().add(i)),
            );
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), s);
        }
    }
    for i in body..n {
        acc[i] += x[i];
    }
}

/// Twin of `scalar::gemv::row_blocks_scalar::<BlockQ8_0>`: one embedding row, 32 codes per block widened
/// to f32 eight at a time and scaled.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds `out.len() / 32` Q8_0 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn row_q8_0_avx2(w: *const u8, out: &mut [f32]) {
    // SAFETY: the caller vouches for out.len() / 32 blocks at w (2-aligned, read unaligned).
    let blocks =
        unsafe { std::slice::from_raw_parts(w as *const crate::quant::BlockQ8_0, out.len() / QK) };
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_to_f32(b.d.to_bits()));
        for j in (0..QK).step_by(8) {
            // SAFETY: j + 8 <= 32 for b.qs (read as 8 bytes) and o.
            unsafe {
                let q = _mm_loadl_epi64(b.qs.as_ptr().add(j) as *const __m128i);
                let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                _mm256_storeu_ps(o.as_mut_ptr().add(j), _mm256_mul_ps(f, d));
            }
        }
    }
}

/// Twin of `scalar::gemv::row_half_scalar::<false>`; `out.len()` must be a multiple of 8.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds `out.len()` f16 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn row_f16_avx2(w: *const u8, out: &mut [f32]) {
    for i in (0..out.len()).step_by(8) {
        // SAFETY: i + 8 <= out.len(), and w holds that many f16.
        unsafe {
            let h = _mm_loadu_si128(w.add(2 * i) as *const __m128i);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
    }
}
