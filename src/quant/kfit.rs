//! Quantizers for the K formats and the IQ4 formats, following ggml's reference algorithms
//! (`ggml-quants.c`, the no-importance-matrix path) step for step in f32 (no fused
//! multiply-adds), so a tensor quantized here gets the blocks llama-quantize would write:
//! each sub-block's scale (and min) is fitted by a small search that minimises a weighted
//! squared error, the sub-block scales are quantized against the super-block's, and the
//! codes are recomputed with the quantized scales.

// The loops index several arrays by one sub-block index, as ggml's do: kept so each step
// can be read against the reference.
#![allow(clippy::needless_range_loop)]

use half::f16;

use super::kquants::{
    scale_min_k4, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K,
};
use super::q5::{BlockIq4Nl, IQ4_VALUES};
use super::QK;

/// Below this magnitude a group is all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `rintf(f)` (ties to even) for |f| < 2^22, by ggml's float trick.
fn nearest_int(f: f32) -> i32 {
    let v = f + 12_582_912.0;
    (v.to_bits() & 0x7f_ffff) as i32 - 0x40_0000
}

/// The value of largest magnitude (the first of equals) and that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric fit with codes in `-nmax..nmax` (stored + nmax), weights x² (ggml
/// `make_qx_quants`, rmse_type 1): a first guess and 18 nearby scales, keeping the best.
fn make_qx_quants(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let assign = |iscale: f32, l: &mut [i8]| {
        for (o, &v) in l.iter_mut().zip(x) {
            *o = (nmax + nearest_int(iscale * v).clamp(-nmax, nmax - 1)) as i8;
        }
    };
    let iscale = -nmax as f32 / max;
    assign(iscale, l);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            assign(iscale, l);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's fit (ggml `make_q3_quants` with rmse): a first guess, then up to five passes that
/// move single codes while that lowers the weighted error. Codes are stored + nmax.
fn make_q3_quants(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -nmax as f32 / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (o, &v) in l.iter_mut().zip(x) {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *o = q as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (i, &v) in x.iter().enumerate() {
            let w = v * v;
            let li = l[i] as f32;
            let mut slx = sumlx - w * v * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new != l[i] as i32 {
                    slx += w * v * new as f32;
                    sl2 += w * new as f32 * new as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for o in l.iter_mut() {
        *o += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The search parameters of ggml `make_qkx2_quants` per format.
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
}

/// Affine fit `x ≈ scale·q − min` with q in 0..=nmax and min ≥ 0 (ggml `make_qkx2_quants`):
/// the min/max guess, then `nstep + 1` scales around it, each refitted by weighted least
/// squares. Returns (scale, min).
fn make_qkx2_quants(x: &[f32], w: &[f32], p: &Qkx2, l: &mut [u8]) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (w[0], w[0] * x[0]);
    for i in 1..x.len() {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if p.use_mad { d.abs() } else { d * d };
    let mut iscale = p.nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0f32;
    for i in 0..x.len() {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, p.nmax);
        l[i] = q as u8;
        best += w[i] * err(scale * q as f32 + min - x[i]);
    }
    let mut aux = [0u8; 32];
    for is in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * is as f32 + p.nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..x.len() {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, p.nmax);
            aux[i] = q as u8;
            let q = q as f32;
            sum_l += w[i] * q;
            sum_l2 += w[i] * q * q;
            sum_xl += w[i] * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur = 0f32;
            for i in 0..x.len() {
                cur += w[i] * err(this_scale * aux[i] as f32 + this_min - x[i]);
            }
            if cur < best {
                l.copy_from_slice(&aux[..x.len()]);
                best = cur;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs 256 two-bit codes as Q2_K/Q3_K store them: byte l of each 32-byte half holds
/// elements l, l+32, l+64, l+96 of the half in bit pairs 0, 2, 4, 6.
fn pack_2bit(l: &[u8; QK_K]) -> [u8; 64] {
    let mut qs = [0u8; 64];
    for half in 0..2 {
        for i in 0..32 {
            let at = 128 * half + i;
            qs[32 * half + i] = l[at] | (l[at + 32] << 2) | (l[at + 64] << 4) | (l[at + 96] << 6);
        }
    }
    qs
}

pub fn quantize_q2_k(x: &[f32]) -> BlockQ2K {
    let p = Qkx2 {
        nmax: 3,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        let w: Vec<f32> = xs.iter().map(|v| v.abs()).collect();
        (scales[j], mins[j]) = make_qkx2_quants(xs, &w, &p, &mut l[16 * j..16 * j + 16]);
        max_scale = if scales[j] > max_scale {
            scales[j]
        } else {
            max_scale
        };
        max_min = if mins[j] > max_min { mins[j] } else { max_min };
    }
    let mut sb = [0u8; 16];
    let mut d = f16::ZERO;
    if max_scale > 0.0 {
        let is = 15.0 / max_scale;
        for j in 0..16 {
            sb[j] = nearest_int(is * scales[j]) as u8;
        }
        d = f16::from_f32(max_scale / 15.0);
    }
    let mut dmin = f16::ZERO;
    if max_min > 0.0 {
        let im = 15.0 / max_min;
        for j in 0..16 {
            sb[j] |= (nearest_int(im * mins[j]) as u8) << 4;
        }
        dmin = f16::from_f32(max_min / 15.0);
    }
    for j in 0..16 {
        let dd = d.to_f32() * (sb[j] & 0x0f) as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * (sb[j] >> 4) as f32;
        for i in 16 * j..16 * j + 16 {
            l[i] = nearest_int((x[i] + dm) / dd).clamp(0, 3) as u8;
        }
    }
    BlockQ2K {
        scales: sb,
        qs: pack_2bit(&l),
        d,
        dmin,
    }
}

pub fn quantize_q3_k(x: &[f32]) -> BlockQ3K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut amax, mut max_scale) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(&x[16 * j..16 * j + 16], 4, &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    let mut sb = [0u8; 12];
    let mut d = f16::ZERO;
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            let q = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                sb[j] = q & 0x0f;
            } else {
                sb[j - 8] |= (q & 0x0f) << 4;
            }
            sb[8 + j % 4] |= (q >> 4) << (2 * (j / 4));
        }
        d = f16::from_f32(1.0 / iscale);
    }
    let sc = super::kquants::q3k_scales(&sb);
    for j in 0..16 {
        let dd = d.to_f32() * sc[j] as f32;
        if dd == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / dd).clamp(-4, 3) + 4) as i8;
        }
    }
    let mut hmask = [0u8; 32];
    let mut low = [0u8; QK_K];
    for (i, &q) in l.iter().enumerate() {
        let mut q = q as u8;
        if q > 3 {
            hmask[i % 32] |= 1 << (i / 32);
            q -= 4;
        }
        low[i] = q;
    }
    BlockQ3K {
        hmask,
        qs: pack_2bit(&low),
        scales: sb,
        d,
    }
}

/// Q4_K/Q5_K's shared part: per 32-weight sub-block an affine fit, the scales and mins
/// quantized to six bits against `d` and `dmin`, the codes (0..=nmax) recomputed.
fn k4_fit(x: &[f32], p: &Qkx2) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
        (scales[j], mins[j]) = make_qkx2_quants(xs, &w, p, &mut l[32 * j..32 * j + 32]);
        max_scale = if scales[j] > max_scale {
            scales[j]
        } else {
            max_scale
        };
        max_min = if mins[j] > max_min { mins[j] } else { max_min };
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sb = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sb[j] = ls;
            sb[j + 4] = lm;
        } else {
            sb[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            sb[j - 4] |= (ls >> 4) << 6;
            sb[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &sb);
        let dd = d.to_f32() * sc as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / dd).clamp(0, p.nmax) as u8;
        }
    }
    (d, dmin, sb, l)
}

pub fn quantize_q4_k(x: &[f32]) -> BlockQ4K {
    let p = Qkx2 {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let (d, dmin, scales, l) = k4_fit(x, &p);
    let mut qs = [0u8; 128];
    for j in 0..4 {
        for i in 0..32 {
            qs[32 * j + i] = l[64 * j + i] | (l[64 * j + 32 + i] << 4);
        }
    }
    BlockQ4K {
        d,
        dmin,
        scales,
        qs,
    }
}

pub fn quantize_q5_k(x: &[f32]) -> BlockQ5K {
    let p = Qkx2 {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let (d, dmin, scales, l) = k4_fit(x, &p);
    let (mut qs, mut qh) = ([0u8; 128], [0u8; 32]);
    for j in 0..4 {
        for i in 0..32 {
            let (a, b) = (l[64 * j + i], l[64 * j + 32 + i]);
            qh[i] |= ((a >> 4) << (2 * j)) | ((b >> 4) << (2 * j + 1));
            qs[32 * j + i] = (a & 0x0f) | ((b & 0x0f) << 4);
        }
    }
    BlockQ5K {
        d,
        dmin,
        scales,
        qh,
        qs,
    }
}

pub fn quantize_q6_k(x: &[f32]) -> BlockQ6K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_abs, mut max_scale) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_qx_quants(&x[16 * j..16 * j + 16], 32, &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > max_abs {
            max_abs = scales[j].abs();
            max_scale = scales[j];
        }
    }
    if max_abs < GROUP_MAX_EPS {
        return bytemuck::Zeroable::zeroed();
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    let sb: [i8; 16] = std::array::from_fn(|j| nearest_int(iscale * scales[j]).min(127) as i8);
    for j in 0..16 {
        let dd = d.to_f32() * sb[j] as f32;
        if dd == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / dd).clamp(-32, 31) + 32) as i8;
        }
    }
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for half in 0..2 {
        for i in 0..32 {
            let q = |k: usize| l[128 * half + 32 * k + i] as u8;
            ql[64 * half + i] = (q(0) & 0x0f) | ((q(2) & 0x0f) << 4);
            ql[64 * half + 32 + i] = (q(1) & 0x0f) | ((q(3) & 0x0f) << 4);
            qh[32 * half + i] =
                (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
    BlockQ6K {
        ql,
        qh,
        scales: sb,
        d,
    }
}

/// The IQ4 level nearest `x` (ggml `best_index_int8`: a tie goes up).
fn best_index(x: f32) -> u8 {
    let v = &IQ4_VALUES;
    if x <= v[0] as f32 {
        return 0;
    }
    if x >= v[15] as f32 {
        return 15;
    }
    let (mut lo, mut hi) = (0, 15);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < v[mid] as f32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - (v[hi - 1] as f32) < v[hi] as f32 - x {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// One 32-weight IQ4 sub-block's scale, weights x² (ggml `quantize_row_iq4_nl_impl` with
/// `ntry` = 7): the scale that puts the largest magnitude on −127, refitted, then 15
/// nearby scales. `None` for an all-zero block.
fn iq4_scale(x: &[f32]) -> Option<f32> {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        return None;
    }
    let sums = |id: f32| {
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for &v in x {
            let q = IQ4_VALUES[best_index(id * v) as usize] as f32;
            let w = v * v;
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let d = -max / IQ4_VALUES[0] as f32;
    let (sumqx, sumq2) = sums(1.0 / d);
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -7..=7 {
        let id = (itry as f32 + IQ4_VALUES[0] as f32) / max;
        let (sumqx, sumq2) = sums(id);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    Some(d)
}

pub fn quantize_iq4_nl(x: &[f32]) -> BlockIq4Nl {
    debug_assert_eq!(x.len(), QK);
    let d = iq4_scale(x).unwrap_or(0.0);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = best_index(id * x[j]) | (best_index(id * x[j + 16]) << 4);
    }
    BlockIq4Nl {
        d: f16::from_f32(d),
        qs,
    }
}

pub fn quantize_iq4_xs(x: &[f32]) -> BlockIq4Xs {
    let scales: [f32; 8] =
        std::array::from_fn(|ib| iq4_scale(&x[32 * ib..32 * ib + 32]).unwrap_or(0.0));
    let (max_scale, _) = signed_max(&scales);
    let d = -max_scale / 32.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = BlockIq4Xs {
        d: f16::from_f32(d),
        scales_h: 0,
        scales_l: [0; 4],
        qs: [0; 128],
    };
    for (ib, &s) in scales.iter().enumerate() {
        let l = nearest_int(id * s).clamp(-32, 31);
        let dl = d * l as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        let xb = &x[32 * ib..32 * ib + 32];
        for j in 0..16 {
            b.qs[16 * ib + j] = best_index(idl * xb[j]) | (best_index(idl * xb[j + 16]) << 4);
        }
        let l = (l + 32) as u8;
        b.scales_l[ib / 2] |= (l & 0x0f) << (4 * (ib % 2));
        b.scales_h |= ((l >> 4) as u16) << (2 * ib);
    }
    b
}
