//! The products of one unpacked block (`gemm::Packed`: eight rows' codes of 32 weights,
//! one row per 32-bit lane) with one activation block, shared by the decode gemv and the
//! prefill gemm so both compute a row bitwise alike. Each format names its product (`Dot`).

use std::arch::x86_64::*;

use super::gemm::{Packed, PanelFormat};
use crate::kernels::scalar::act::BlockQ8Act;

/// How a format's unpacked codes multiply an activation block.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Dot {
    /// Unsigned codes up to 15, `x = q·d + m` (`block_dot`).
    Affine4,
    /// Unsigned codes up to 31, `x = q·d + m` (`block_dot`, halves widened apart).
    Affine5,
    /// Signed 8-bit codes, one scale `d` per block (`signed_dot`).
    Signed,
    /// Signed codes up to 32 in magnitude, scale `d` for weights 0..16 and `m` for 16..32
    /// (`signed2_dot`).
    Signed2,
    /// Unsigned codes up to 3, `x = d·sc·q − dmin·mn` with an integer `sc` and `mn` per
    /// 16 weights (`affine2_dot`, Q2_K).
    Affine2,
    /// Unsigned codes up to 7, the code plus 4, with an integer scale `sc` per 16 weights and
    /// one float scale `d` (`scaled3_dot`, Q3_K).
    Scaled3,
}

/// Eight rows' sums over a tile (`sum`, a row per lane), and for the formats with one float
/// scale per tile (`Dot::tiled`: Q2_K, Q3_K) the tile's exact integer sums, which `close`
/// converts and scales once: the scaled codes' (and Q2_K's offsets'), whose activation
/// blocks share one scale per tile (`table::quantize_act_for`). The other formats leave
/// `int` at zero, and the compiler drops it.
#[derive(Clone, Copy)]
pub(super) struct Acc {
    pub(super) sum: __m256,
    int: [__m256i; 2],
}

impl Acc {
    /// A tile's sums, from the running sums `sum`: Q2_K's and Q3_K's blocks add to the
    /// integer sums only, which start at zero (`sum` joins at `close`); the other formats add
    /// to `sum`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn open<F: PanelFormat>(sum: __m256) -> Acc {
        let zero = _mm256_setzero_ps();
        Acc {
            sum: if F::DOT.tiled() { zero } else { sum },
            int: [_mm256_setzero_si256(); 2],
        }
    }

    /// The running sums after this tile of `F`, whose last block is `p` and its activation
    /// block `x`, given `sum` from before it: the integer sums, converted, times `d·d_x` (and
    /// Q2_K's offsets' times `dmin·d_x`: `p.d`, `p.m`, `d_x` the activation scale the tile's
    /// blocks share) join `sum`; the other formats' sums are already whole. Every product loop closes each tile so (`vnni::pair_products` in 512
    /// bits), and so gives a row the same bits.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn close<F: PanelFormat>(self, p: &Packed, x: &BlockQ8Act, sum: __m256) -> __m256 {
        match F::DOT {
            Dot::Affine2 => {
                let xd = _mm256_set1_ps(x.d);
                let sc = _mm256_mul_ps(p.d, xd);
                let mn = _mm256_mul_ps(p.m, xd);
                let sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(self.int[0]), sc, sum);
                _mm256_fnmadd_ps(_mm256_cvtepi32_ps(self.int[1]), mn, sum)
            }
            Dot::Scaled3 => {
                let sc = _mm256_mul_ps(p.d, _mm256_set1_ps(x.d));
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(self.int[0]), sc, sum)
            }
            _ => self.sum,
        }
    }

    /// These sums with `sum` in place of `self.sum`, the open ones kept.
    #[inline]
    pub(super) fn with_sum(self, sum: __m256) -> Acc {
        Acc { sum, ..self }
    }
}

impl Dot {
    /// Whether the format's blocks add to a tile's open sums (`Acc`): those with one float
    /// scale per tile, Q2_K and Q3_K.
    pub(super) const fn tiled(self) -> bool {
        matches!(self, Dot::Affine2 | Dot::Scaled3)
    }
}

/// `acc` plus the eight rows' products of an unpacked block of `F` with `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot<F: PanelFormat>(p: &Packed, x: &BlockQ8Act, acc: Acc) -> Acc {
    let sum = acc.sum;
    let sum = match F::DOT {
        Dot::Affine4 => block_dot::<false>(p, x, sum),
        Dot::Affine5 => block_dot::<true>(p, x, sum),
        Dot::Signed => signed_dot(p, x, sum),
        Dot::Signed2 => signed2_dot(p, x, sum),
        Dot::Affine2 => return affine2_dot(p, x, acc),
        Dot::Scaled3 => return scaled3_dot(p, x, acc),
    };
    acc.with_sum(sum)
}

/// `acc + d_w·d_x·Σ q_w·q_x + m_w·s_x` for one packed block and one activation block,
/// every lane a row. `WIDE` is for codes up to 31 (Q5): each half's eight-bit products are
/// widened to i32 before the halves are added, as their i16 sum could overflow.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_dot<const WIDE: bool>(p: &Packed, x: &BlockQ8Act, acc: __m256) -> __m256 {
    let qs = x.qs.as_ptr() as *const i32;
    // SAFETY: qs is 32 bytes: words 0..8 (read unaligned).
    let word = |j: usize| _mm256_set1_epi32(unsafe { qs.add(j).read_unaligned() });
    // Each i16 sums two products ≤ 15·127, so eight of them stay below 2^15 (four of
    // them for codes ≤ 31).
    let s = |j: usize| _mm256_maddubs_epi16(p.q[j], word(j));
    let lo = _mm256_add_epi16(_mm256_add_epi16(s(0), s(1)), _mm256_add_epi16(s(2), s(3)));
    let hi = _mm256_add_epi16(_mm256_add_epi16(s(4), s(5)), _mm256_add_epi16(s(6), s(7)));
    let ones = _mm256_set1_epi16(1);
    let dot = if WIDE {
        _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones))
    } else {
        _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones)
    };
    let scale = _mm256_mul_ps(p.d, _mm256_set1_ps(x.d));
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc);
    _mm256_fmadd_ps(p.m, _mm256_set1_ps(x.s), acc)
}

/// `acc + d_w·d_x·Σ q_w·q_x` for signed 8-bit codes and one scale per block (Q8_0, IQ4):
/// `maddubs` gets |q_w| and q_x·sign(q_w), whose products are the same, then one FMA. The
/// codes' side carries the sign: |q_w| is the same for every token, so the batched loops
/// (`gemm::add_products`, `few.rs`) take it once per block for all their tokens, and a code
/// of −128 is read as 128 unsigned (the sign trick on the codes, `sign(q_w, q_x)`, would
/// wrap it back to −128; activations are within ±127).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_dot(p: &Packed, x: &BlockQ8Act, acc: __m256) -> __m256 {
    let qs = x.qs.as_ptr() as *const i32;
    let ones = _mm256_set1_epi16(1);
    // Each maddubs is widened at once: two of its pair sums could overflow an i16.
    let s: [__m256i; 8] = std::array::from_fn(|j| {
        // SAFETY: qs is 32 bytes: words 0..8 (read unaligned).
        let xb = _mm256_set1_epi32(unsafe { qs.add(j).read_unaligned() });
        _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_abs_epi8(p.q[j]), _mm256_sign_epi8(xb, p.q[j])),
            ones,
        )
    });
    let dot = _mm256_add_epi32(
        _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), _mm256_add_epi32(s[2], s[3])),
        _mm256_add_epi32(_mm256_add_epi32(s[4], s[5]), _mm256_add_epi32(s[6], s[7])),
    );
    let scale = _mm256_mul_ps(p.d, _mm256_set1_ps(x.d));
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc)
}

/// `acc + d_lo·d_x·Σ_{e<16} q_e·x_e + d_hi·d_x·Σ_{e≥16} q_e·x_e` with signed codes: `maddubs`
/// gets |x| and q·sign(x), whose products are the same. Each i16 sums two products of at
/// most 32·127, so four of them (one half) stay below 2^15.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed2_dot(p: &Packed, x: &BlockQ8Act, acc: __m256) -> __m256 {
    let qs = x.qs.as_ptr() as *const i32;
    // SAFETY: qs is 32 bytes: words 0..8 (read unaligned).
    let word = |j: usize| _mm256_set1_epi32(unsafe { qs.add(j).read_unaligned() });
    let s = |j: usize| {
        let xb = word(j);
        _mm256_maddubs_epi16(_mm256_sign_epi8(xb, xb), _mm256_sign_epi8(p.q[j], xb))
    };
    let ones = _mm256_set1_epi16(1);
    let lo = _mm256_add_epi16(_mm256_add_epi16(s(0), s(1)), _mm256_add_epi16(s(2), s(3)));
    let hi = _mm256_add_epi16(_mm256_add_epi16(s(4), s(5)), _mm256_add_epi16(s(6), s(7)));
    let xd = _mm256_set1_ps(x.d);
    let lo = _mm256_cvtepi32_ps(_mm256_madd_epi16(lo, ones));
    let hi = _mm256_cvtepi32_ps(_mm256_madd_epi16(hi, ones));
    let acc = _mm256_fmadd_ps(lo, _mm256_mul_ps(p.d, xd), acc);
    _mm256_fmadd_ps(hi, _mm256_mul_ps(p.m, xd), acc)
}

/// `bias·Σ x` over weights 0..16 and 16..32 of each activation block, the term the biased
/// codes add to every row's integer sum.
pub(super) fn bias_sums(bias: i32, xq: &[BlockQ8Act], out: &mut [[i32; 2]]) {
    for (b, s) in xq.iter().zip(out.iter_mut()) {
        let half = |r: &[i8]| bias * r.iter().map(|&v| v as i32).sum::<i32>();
        *s = [half(&b.qs[..16]), half(&b.qs[16..])];
    }
}

/// `signed2_dot` for codes biased to unsigned bytes below 64 (`PanelFormat::unpack_biased`
/// with `BIAS` ≤ 32), whose activation bias sums are `bias`: `maddubs` takes the codes as
/// they are (no sign trick, no `− BIAS` per code), each i16 sums two products of at most
/// 63·128, two of them are added before widening, and `bias` is subtracted from the exact
/// i32 sums — `signed2_dot`'s integers, then its float multiplies and FMAs in its order, so
/// the result is bitwise the same.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn signed2_biased_dot(
    p: &Packed,
    x: &BlockQ8Act,
    bias: [i32; 2],
    acc: __m256,
) -> __m256 {
    let qs = x.qs.as_ptr() as *const i32;
    // SAFETY: qs is 32 bytes: words 0..8 (read unaligned).
    let word = |j: usize| _mm256_set1_epi32(unsafe { qs.add(j).read_unaligned() });
    let s = |j: usize| _mm256_maddubs_epi16(p.q[j], word(j));
    let ones = _mm256_set1_epi16(1);
    let pair = |j: usize| _mm256_madd_epi16(_mm256_add_epi16(s(j), s(j + 1)), ones);
    let lo = _mm256_sub_epi32(
        _mm256_add_epi32(pair(0), pair(2)),
        _mm256_set1_epi32(bias[0]),
    );
    let hi = _mm256_sub_epi32(
        _mm256_add_epi32(pair(4), pair(6)),
        _mm256_set1_epi32(bias[1]),
    );
    let xd = _mm256_set1_ps(x.d);
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(p.d, xd), acc);
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(p.m, xd), acc)
}

/// Q2_K's two-bit codes: a row's tile adds
/// `d·Σ_b d_x·(sc_lo·Σ_{e<16} q_e·x_e + sc_hi·Σ_{e≥16} q_e·x_e)
///  − dmin·Σ_b d_x·(mn_lo·Σ_{e<16} x_e + mn_hi·Σ_{e≥16} x_e)` over its blocks b, with
/// `d` and `dmin` the super-block's float scales (`p.d`, `p.m`) and the halves' four-bit
/// scales and offsets applied in integers (`p.sc`, `p.mn`, i16 pairs): a half's sum is at
/// most 16·3·127 in magnitude, so both halves pack into one i32 lane as i16 and one `madd`
/// scales and adds them; the offsets take one `madd` with the activation's half sums (`x.h`).
/// The activations' blocks share one scale `d_x` per tile (`table::quantize_act_for`, as
/// ggml's `block_q8_K`), so a block adds its two integer sums to the tile's (`Acc::int`: at
/// most 8·182880 and 8·60960, exact in f32 too), and `Acc::close` converts them and applies
/// `d·d_x` and `dmin·d_x` once per tile. Per block that leaves the products, two `madd` and
/// two adds: no conversions and no FMAs on the pipes the products use.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn affine2_dot(p: &Packed, x: &BlockQ8Act, acc: Acc) -> Acc {
    affine2_tail(p, x, unsigned_halves(p, x), acc)
}

/// `Σ q_e·x_e` over each 16-weight half of `p`'s unsigned codes (at most 7) as an i16 pair per
/// lane (`pair_halves`): each `maddubs` i16 sums two products of at most 7·127, so a half's
/// four chunks stay below 2^15, and a half's sum below 16·7·127.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unsigned_halves(p: &Packed, x: &BlockQ8Act) -> __m256i {
    let qs = x.qs.as_ptr() as *const i32;
    // SAFETY: qs is 32 bytes: words 0..8 (read unaligned).
    let word = |j: usize| _mm256_set1_epi32(unsafe { qs.add(j).read_unaligned() });
    let s = |j: usize| _mm256_maddubs_epi16(p.q[j], word(j));
    let ones = _mm256_set1_epi16(1);
    let lo = _mm256_add_epi16(_mm256_add_epi16(s(0), s(1)), _mm256_add_epi16(s(2), s(3)));
    let hi = _mm256_add_epi16(_mm256_add_epi16(s(4), s(5)), _mm256_add_epi16(s(6), s(7)));
    pair_halves(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones))
}

/// `affine2_dot` from the halves' sums (an i16 pair per lane): the scales and the offsets
/// into the tile's integer sums, shared with the VNNI products so they give the same bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn affine2_tail(p: &Packed, x: &BlockQ8Act, halves: __m256i, acc: Acc) -> Acc {
    let isc = _mm256_madd_epi16(halves, p.sc);
    let imn = _mm256_madd_epi16(p.mn, half_sums(x));
    Acc {
        int: [
            _mm256_add_epi32(acc.int[0], isc),
            _mm256_add_epi32(acc.int[1], imn),
        ],
        ..acc
    }
}

/// Two i32 lanes' values, each within i16, as the i16 pair `(lo, hi)` of one lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn pair_halves(lo: __m256i, hi: __m256i) -> __m256i {
    _mm256_blend_epi16::<0b1010_1010>(lo, _mm256_slli_epi32::<16>(hi))
}

/// The activation block's half sums `(Σ_{e<16} x_e, Σ_{e≥16} x_e)` as an i16 pair in every
/// lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn half_sums(x: &BlockQ8Act) -> __m256i {
    // SAFETY: h is two i16, 4 bytes (read unaligned; little-endian, lo first).
    _mm256_set1_epi32(unsafe { (x.h.as_ptr() as *const i32).read_unaligned() })
}

/// Q3_K's three-bit codes `c`: a row's tile adds
/// `d·Σ_b d_x·(sc_lo·Σ_{e<16} c_e·x_e + sc_hi·Σ_{e≥16} c_e·x_e)` over its blocks b, the codes
/// multiplied as stored (`c + 4`, 0..8) and corrected by `4·Σx` per half (`x.h`). A half's
/// biased sum is at most 16·7·127 in magnitude and the correction 4·16·127, so the corrected
/// halves pack into one i32 lane as i16 and one `madd` applies the six-bit scales: the exact
/// integer sum, then one conversion and one FMA per block into the tile's open sum, which
/// `Acc::close` multiplies by `d` (AVX2 gemm +2–5% cache-resident; the decode unchanged).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scaled3_dot(p: &Packed, x: &BlockQ8Act, acc: Acc) -> Acc {
    scaled3_tail(p, x, unsigned_halves(p, x), acc)
}

/// `scaled3_dot` from the biased halves' sums (an i16 pair per lane): the correction, the
/// scales and the float step, shared with the VNNI products so they give the same bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn scaled3_tail(p: &Packed, x: &BlockQ8Act, halves: __m256i, acc: Acc) -> Acc {
    let halves = _mm256_sub_epi16(halves, _mm256_slli_epi16::<2>(half_sums(x)));
    let isc = _mm256_madd_epi16(halves, p.sc);
    Acc {
        int: [_mm256_add_epi32(acc.int[0], isc), acc.int[1]],
        ..acc
    }
}
