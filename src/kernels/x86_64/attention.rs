//! AVX2 twin of `scalar::attention::attend_scalar`, for every pair of K and V cache types.
//!
//! Scores: one vector holds eight positions of a K tile (`kernels::kv`: a tile is stored
//! transposed), so `q[d]` broadcast times row `d` of the tile, summed over `d` in order,
//! gives eight scores with no horizontal sum; every query head of the group multiplies the
//! same converted K row, and two tiles run side by side for independent FMA chains. Values:
//! the tile's probabilities broadcast times V rows, sixteen output values of up to four
//! heads in registers, positions in order. A lane's arithmetic never depends on its
//! neighbours, so each row's result depends only on its position (prefill = decode).

use std::arch::x86_64::*;

use super::math::{exp, hmax, hsum};
use crate::kernels::kv::{k_q8_run, KV_TILE};
use crate::kernels::scalar::attention::{AttnParams, ATTN_TILE};
use crate::kernels::AttendFn;
use crate::quant::QK;
use crate::vocab::KvType;

/// How a K tile's values become f32 scores.
trait KTile {
    /// Scores of the eight positions of tiles `t0` and `t1` for `NQ` query heads: lane `l`
    /// of `out[i]` is `Σ_d q_i[d]·k_l[d]` of tile 0, of `out[NQ + i]` of tile 1. Meanwhile
    /// it prefetches the `pf_bytes` at `pf`, spread over its iterations.
    ///
    /// # Safety
    /// AVX2/FMA/F16C; both tiles and the queries hold `hd` dims.
    unsafe fn scores<const NQ: usize>(
        t0: *const u8,
        t1: *const u8,
        q: [*const f32; NQ],
        hd: usize,
        out: &mut [[__m256; NQ]; 2],
        pf: Spread,
    );
}

/// How eight values of a V row become f32.
trait VRow {
    /// Values `c..c + 8` of the row at `row`.
    ///
    /// # Safety
    /// AVX2/FMA/F16C; `c + 8 ≤ head_dim`, `c` a multiple of 8.
    unsafe fn load8(row: *const u8, c: usize) -> __m256;
}

struct F32;
struct F16;
struct Q8;

/// Bytes to prefetch a line at a time over a loop's iterations: the next softmax tile's K
/// and V while this one's are computed. With the hardware prefetcher alone this kernel read
/// a cache that is not in L3 at ~8–9 GB/s on one core of the Zen 4 VM, a third of what the
/// core streams; with the spread prefetch 13–14 GB/s (`cargo bench --bench kernels --
/// attend`), and decode at depth 4096 went from 65 to 93 t/s at one thread.
#[derive(Clone, Copy)]
struct Spread {
    at: *const u8,
    /// Bytes per iteration, in 1/65536ths.
    step: usize,
}

impl Spread {
    /// `bytes` from `at` over `n` iterations.
    fn new(at: *const u8, bytes: usize, n: usize) -> Spread {
        Spread {
            at,
            step: (bytes << 16) / n.max(1),
        }
    }

    /// Prefetches the line of iteration `i` (hints only: never faults, whatever the
    /// address).
    #[inline(always)]
    fn at(self, i: usize) {
        let off = (i * self.step) >> 16;
        // SAFETY: a prefetch is a hint and never faults; SSE is part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(self.at.wrapping_add(off) as *const i8) };
    }
}

/// The plain formats: one vector per dim of the tile, `$load` converting it.
macro_rules! plain_ktile {
    ($t:ty, $bytes:expr, $load:expr) => {
        impl KTile for $t {
            #[inline(always)]
            unsafe fn scores<const NQ: usize>(
                t0: *const u8,
                t1: *const u8,
                q: [*const f32; NQ],
                hd: usize,
                out: &mut [[__m256; NQ]; 2],
                pf: Spread,
            ) {
                let mut a = [[_mm256_setzero_ps(); NQ]; 2];
                for d in 0..hd {
                    pf.at(d);
                    // SAFETY: dim d < hd of both tiles and of every query (the contract).
                    unsafe {
                        let k0 = $load(t0.add(d * $bytes));
                        let k1 = $load(t1.add(d * $bytes));
                        for i in 0..NQ {
                            let qd = _mm256_broadcast_ss(&*q[i].add(d));
                            a[0][i] = _mm256_fmadd_ps(qd, k0, a[0][i]);
                            a[1][i] = _mm256_fmadd_ps(qd, k1, a[1][i]);
                        }
                    }
                }
                *out = a;
            }
        }
    };
}

#[inline(always)]
unsafe fn load_f32x8(p: *const u8) -> __m256 {
    // SAFETY: the caller's: 32 bytes at p.
    unsafe { _mm256_loadu_ps(p as *const f32) }
}

#[inline(always)]
unsafe fn load_f16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller's: 16 bytes at p.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

#[inline(always)]
unsafe fn load_i8x8(p: *const u8) -> __m256 {
    // SAFETY: the caller's: 8 bytes at p.
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
}

plain_ktile!(F32, 4 * KV_TILE, load_f32x8);
plain_ktile!(F16, 2 * KV_TILE, load_f16x8);

impl KTile for Q8 {
    /// Per 32-dim run: the codes' dot in f32, then times the eight positions' scales.
    #[inline(always)]
    unsafe fn scores<const NQ: usize>(
        t0: *const u8,
        t1: *const u8,
        q: [*const f32; NQ],
        hd: usize,
        out: &mut [[__m256; NQ]; 2],
        pf: Spread,
    ) {
        let mut a = [[_mm256_setzero_ps(); NQ]; 2];
        for c in 0..hd / QK {
            let (r0, r1) = (t0.wrapping_add(k_q8_run(c)), t1.wrapping_add(k_q8_run(c)));
            let mut run = [[_mm256_setzero_ps(); NQ]; 2];
            for d in 0..QK {
                pf.at(c * QK + d);
                // SAFETY: run c of both tiles (scales, then 32 × 8 codes) and dim
                // 32c + d < hd of every query.
                unsafe {
                    let k0 = load_i8x8(r0.add(2 * KV_TILE + d * KV_TILE));
                    let k1 = load_i8x8(r1.add(2 * KV_TILE + d * KV_TILE));
                    for i in 0..NQ {
                        let qd = _mm256_broadcast_ss(&*q[i].add(c * QK + d));
                        run[0][i] = _mm256_fmadd_ps(qd, k0, run[0][i]);
                        run[1][i] = _mm256_fmadd_ps(qd, k1, run[1][i]);
                    }
                }
            }
            // SAFETY: the run's eight f16 scales lead it.
            let (s0, s1) = unsafe { (load_f16x8(r0), load_f16x8(r1)) };
            for i in 0..NQ {
                a[0][i] = _mm256_fmadd_ps(run[0][i], s0, a[0][i]);
                a[1][i] = _mm256_fmadd_ps(run[1][i], s1, a[1][i]);
            }
        }
        *out = a;
    }
}

impl VRow for F32 {
    #[inline(always)]
    unsafe fn load8(row: *const u8, c: usize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { load_f32x8(row.add(4 * c)) }
    }
}

impl VRow for F16 {
    #[inline(always)]
    unsafe fn load8(row: *const u8, c: usize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { load_f16x8(row.add(2 * c)) }
    }
}

impl VRow for Q8 {
    #[inline(always)]
    unsafe fn load8(row: *const u8, c: usize) -> __m256 {
        // SAFETY: the caller's contract: block c / 32 of the row (f16 d, 32 codes).
        unsafe {
            let block = row.add(34 * (c / QK));
            let d = _mm256_cvtph_ps(_mm_set1_epi16((block as *const i16).read_unaligned()));
            _mm256_mul_ps(load_i8x8(block.add(2 + c % QK)), d)
        }
    }
}

/// The scores of one tile's `len` positions for `NQ` heads from `h0`, scaled, with the
/// positions past `len` set to -∞, into rows `h0..h0 + NQ` of `s` (`ATTN_TILE` each).
///
/// # Safety
/// AVX2/FMA/F16C; `kh` is head g's K region; tiles `first..` of it hold the positions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_scores<K: KTile, const NQ: usize>(
    p: &AttnParams,
    kh: *const u8,
    first: usize,
    len: usize,
    from: usize,
    q: &[f32],
    h0: usize,
    s: &mut [f32],
) {
    let hd = p.geom.head_dim;
    let tile_bytes = p.geom.k_tile_bytes();
    let qs: [*const f32; NQ] = std::array::from_fn(|i| q[(h0 + i) * hd..].as_ptr());
    let scale = _mm256_set1_ps(p.scale);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let blocks = len.div_ceil(KV_TILE);
    let mut out = [[_mm256_setzero_ps(); NQ]; 2];
    for b in (0..blocks).step_by(2) {
        // A last odd tile runs beside itself; its twin's scores are not stored.
        let b1 = if b + 1 < blocks { b + 1 } else { b };
        // The same two tiles of the next softmax tile (the first head batch only).
        let pf = Spread::new(
            kh.wrapping_add((first + b + ATTN_TILE / KV_TILE) * tile_bytes),
            if h0 == 0 { 2 * tile_bytes } else { 0 },
            hd,
        );
        // SAFETY: tiles first + b and first + b1 hold positions < n_past (the caller's).
        unsafe {
            K::scores::<NQ>(
                kh.add((first + b) * tile_bytes),
                kh.add((first + b1) * tile_bytes),
                qs,
                hd,
                &mut out,
                pf,
            )
        };
        for (half, bb) in [b, b1].into_iter().enumerate().take(1 + (b1 != b) as usize) {
            // Lanes at or past `len` are another row's future (or a stale cache), lanes
            // before `from` are outside a sliding window: -∞.
            let valid = (len - bb * KV_TILE).min(KV_TILE) as i32;
            let skip = from.saturating_sub(bb * KV_TILE).min(KV_TILE) as i32;
            let dead = _mm256_castsi256_ps(_mm256_or_si256(
                _mm256_cmpgt_epi32(lanes, _mm256_set1_epi32(valid - 1)),
                _mm256_cmpgt_epi32(_mm256_set1_epi32(skip), lanes),
            ));
            for (i, &o) in out[half].iter().enumerate() {
                let v = _mm256_blendv_ps(_mm256_mul_ps(o, scale), ninf, dead);
                // SAFETY: row h0 + i of s has ATTN_TILE ≥ 8·(bb + 1) values.
                unsafe {
                    _mm256_storeu_ps(s.as_mut_ptr().add((h0 + i) * ATTN_TILE + bb * KV_TILE), v)
                };
            }
        }
    }
}

/// Adds the tile's weighted V rows to `NQ` heads' outputs from `h0`, 16 values at a time,
/// after rescaling them by `alpha`.
///
/// # Safety
/// AVX2/FMA/F16C; `vh` is head g's V region, holding positions `t0..t0 + len`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_values<V: VRow, const NQ: usize>(
    p: &AttnParams,
    vh: *const u8,
    t0: usize,
    len: usize,
    s: &[f32],
    h0: usize,
    alpha: &[f32],
    out: &mut [f32],
) {
    let hd = p.geom.head_dim;
    let row_bytes = p.geom.v_row_bytes();
    // The next softmax tile's V rows, spread over every (c, j) of the first head batch.
    let next = Spread::new(
        vh.wrapping_add((t0 + ATTN_TILE) * row_bytes),
        if h0 == 0 { ATTN_TILE * row_bytes } else { 0 },
        hd / 16 * ATTN_TILE,
    );
    for c in (0..hd).step_by(16) {
        let mut acc = [[_mm256_setzero_ps(); 2]; NQ];
        for (i, a) in acc.iter_mut().enumerate() {
            let al = _mm256_set1_ps(alpha[h0 + i]);
            // SAFETY: head h0 + i's outputs c..c + 16 (hd is a multiple of 16).
            unsafe {
                let o = out.as_ptr().add((h0 + i) * hd + c);
                a[0] = _mm256_mul_ps(_mm256_loadu_ps(o), al);
                a[1] = _mm256_mul_ps(_mm256_loadu_ps(o.add(8)), al);
            }
        }
        for j in 0..len {
            next.at(c / 16 * ATTN_TILE + j);
            // SAFETY: position t0 + j's row; values c..c + 16 of it.
            let (v0, v1) = unsafe {
                let row = vh.add((t0 + j) * row_bytes);
                (V::load8(row, c), V::load8(row, c + 8))
            };
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: row h0 + i of s, position j < len ≤ ATTN_TILE.
                let w = unsafe { _mm256_broadcast_ss(&*s.as_ptr().add((h0 + i) * ATTN_TILE + j)) };
                a[0] = _mm256_fmadd_ps(w, v0, a[0]);
                a[1] = _mm256_fmadd_ps(w, v1, a[1]);
            }
        }
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe {
                let o = out.as_mut_ptr().add((h0 + i) * hd + c);
                _mm256_storeu_ps(o, a[0]);
                _mm256_storeu_ps(o.add(8), a[1]);
            }
        }
    }
}

/// Runs `$f::<K, V, NQ>` for heads `0..group` in runs of up to four.
macro_rules! by_heads {
    ($group:expr, |$h0:ident, $nq:ident| $body:expr) => {{
        let mut $h0 = 0;
        while $h0 < $group {
            let n = ($group - $h0).min(4);
            match n {
                1 => {
                    const $nq: usize = 1;
                    $body
                }
                2 => {
                    const $nq: usize = 2;
                    $body
                }
                3 => {
                    const $nq: usize = 3;
                    $body
                }
                _ => {
                    const $nq: usize = 4;
                    $body
                }
            }
            $h0 += n;
        }
    }};
}

/// # Safety
/// As `attend_scalar`; the CPU has AVX2, FMA and F16C; `head_dim` is a multiple of 16
/// (the table picks this kernel only then).
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2<K: KTile, V: VRow>(
    p: &AttnParams,
    q: &[f32],
    kc: *const u8,
    vc: *const u8,
    g: usize,
    n_past: usize,
    work: &mut [f32],
    out: &mut [f32],
) {
    let (hd, gq) = (p.geom.head_dim, p.group);
    let (s, rest) = work.split_at_mut(gq * ATTN_TILE);
    let (m, rest) = rest.split_at_mut(gq);
    let (alpha, rest) = rest.split_at_mut(gq);
    let l = &mut rest[..gq];
    m.fill(f32::NEG_INFINITY);
    l.fill(0.0);
    out[..gq * hd].fill(0.0);
    let kh = kc.wrapping_add(g * p.geom.k_head_bytes());
    let vh = vc.wrapping_add(g * p.geom.v_head_bytes());
    let first = crate::kernels::scalar::attention::window_start(p, n_past);
    for t0 in (first / ATTN_TILE * ATTN_TILE..n_past).step_by(ATTN_TILE) {
        let len = ATTN_TILE.min(n_past - t0);
        let from = first.saturating_sub(t0);
        // SAFETY: tiles t0 / 8.. of head g hold positions t0..t0 + len < n_past.
        by_heads!(gq, |h0, NQ| unsafe {
            tile_scores::<K, NQ>(p, kh, t0 / KV_TILE, len, from, q, h0, s)
        });
        for i in 0..gq {
            let si = &mut s[i * ATTN_TILE..(i + 1) * ATTN_TILE];
            let blocks = len.div_ceil(KV_TILE);
            let mut mx = _mm256_set1_ps(f32::NEG_INFINITY);
            for b in 0..blocks {
                // SAFETY: 8·(b + 1) ≤ ATTN_TILE values of the row.
                mx = _mm256_max_ps(mx, unsafe { _mm256_loadu_ps(si.as_ptr().add(b * KV_TILE)) });
            }
            let new_max = m[i].max(hmax(mx));
            alpha[i] = (m[i] - new_max).exp();
            let nm = _mm256_set1_ps(new_max);
            let mut sum = _mm256_setzero_ps();
            for b in 0..blocks {
                // SAFETY: as above. Dead lanes hold -∞: their weight is exactly 0 (a NaN stays).
                unsafe {
                    let x = _mm256_loadu_ps(si.as_ptr().add(b * KV_TILE));
                    let live = _mm256_cmp_ps::<_CMP_NEQ_UQ>(x, _mm256_set1_ps(f32::NEG_INFINITY));
                    let e = _mm256_and_ps(exp(_mm256_sub_ps(x, nm)), live);
                    _mm256_storeu_ps(si.as_mut_ptr().add(b * KV_TILE), e);
                    sum = _mm256_add_ps(sum, e);
                }
            }
            l[i] = l[i] * alpha[i] + hsum(sum);
            m[i] = new_max;
        }
        // SAFETY: positions t0..t0 + len of head g's V region.
        by_heads!(gq, |h0, NQ| unsafe {
            tile_values::<V, NQ>(p, vh, t0, len, s, h0, alpha, out)
        });
    }
    for (i, &li) in l.iter().enumerate() {
        let inv = _mm256_set1_ps(1.0 / li);
        for c in (0..hd).step_by(8) {
            // SAFETY: head i's outputs c..c + 8.
            unsafe {
                let o = out.as_mut_ptr().add(i * hd + c);
                _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_loadu_ps(o), inv));
            }
        }
    }
}

/// The AVX2 attention for a K and a V cache type, and its name.
pub fn attend_for(k: KvType, v: KvType) -> (AttendFn, &'static str) {
    use KvType::*;
    match (k, v) {
        (F32, F32) => (attend_avx2::<self::F32, self::F32>, "attend_f32_f32_avx2"),
        (F32, F16) => (attend_avx2::<self::F32, self::F16>, "attend_f32_f16_avx2"),
        (F32, Q8_0) => (attend_avx2::<self::F32, Q8>, "attend_f32_q8_0_avx2"),
        (F16, F32) => (attend_avx2::<self::F16, self::F32>, "attend_f16_f32_avx2"),
        (F16, F16) => (attend_avx2::<self::F16, self::F16>, "attend_f16_f16_avx2"),
        (F16, Q8_0) => (attend_avx2::<self::F16, Q8>, "attend_f16_q8_0_avx2"),
        (Q8_0, F32) => (attend_avx2::<Q8, self::F32>, "attend_q8_0_f32_avx2"),
        (Q8_0, F16) => (attend_avx2::<Q8, self::F16>, "attend_q8_0_f16_avx2"),
        (Q8_0, Q8_0) => (attend_avx2::<Q8, Q8>, "attend_q8_0_q8_0_avx2"),
    }
}
