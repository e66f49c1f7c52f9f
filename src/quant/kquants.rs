//! ggml's 256-element "K" formats (Q2_K … Q6_K) and IQ4_XS: a super-block with f16 scales
//! and small per-sub-block scales packed in 4 or 6 bits. Layouts follow ggml
//! `ggml-common.h`; each dequantizer does ggml's arithmetic in ggml's order, so it agrees
//! bit for bit with the `gguf` package's numpy dequantizers (`tests/golden/quant/`).
//! Their quantizers are in `kfit`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::q5::IQ4_VALUES;

/// Elements in one super-block of the K formats and IQ4_XS.
pub const QK_K: usize = 256;

/// Q2_K, 84 bytes: 16 bytes of scales (sub-block i of 16: low nibble scale, high nibble
/// min), 64 bytes of 2-bit codes, `d`, `dmin`. `x = d·sc·q − dmin·m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ2K {
    pub scales: [u8; 16],
    pub qs: [u8; 64],
    pub d: f16,
    pub dmin: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// Q3_K, 110 bytes: the codes' high bits (`hmask`), their low 2 bits (`qs`), 16 six-bit
/// signed scales packed in 12 bytes, `d`. `x = d·(sc − 32)·(q − 4)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ3K {
    pub hmask: [u8; 32],
    pub qs: [u8; 64],
    pub scales: [u8; 12],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// Q4_K, 144 bytes: `d`, `dmin`, 8 six-bit scales and 8 six-bit mins in 12 bytes, 128
/// bytes of nibbles (each 32 bytes hold sub-blocks 2i in low and 2i+1 in high nibbles).
/// `x = d·sc·q − dmin·m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// Q5_K, 176 bytes: Q4_K's fields plus `qh`, the fifth bit of each code (bit i of byte l is
/// element l of sub-block i).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// Q6_K, 210 bytes: low nibbles (`ql`), high 2 bits (`qh`), 16 signed 8-bit scales (one per
/// 16 elements), `d`. `x = d·sc·(q − 32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// IQ4_XS, 136 bytes: `d`, 8 six-bit signed scales (low 4 bits in `scales_l`, high 2 in
/// `scales_h`), 128 bytes of IQ4 indices laid out per 32 as IQ4_NL's. `x = d·(ls − 32)·v[q]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockIq4Xs {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; 4],
    pub qs: [u8; 128],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == 136);

/// Sub-block `j`'s (scale, min) of Q4_K/Q5_K's 12 packed bytes (ggml `get_scale_min_k4`).
pub fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The 16 six-bit scales of Q3_K, each minus 32.
pub fn q3k_scales(s: &[u8; 12]) -> [i8; 16] {
    std::array::from_fn(|i| {
        let low = (s[i % 8] >> (4 * (i / 8))) & 0x0f;
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        ((low | (high << 4)) as i8) - 32
    })
}

/// IQ4_XS sub-block `ib`'s scale, minus 32.
pub fn iq4xs_scale(b: &BlockIq4Xs, ib: usize) -> i32 {
    let low = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
    let high = ((b.scales_h >> (2 * ib)) & 3) as u8;
    (low | (high << 4)) as i32 - 32
}

pub fn dequantize_q2_k(b: &BlockQ2K, out: &mut [f32; QK_K]) {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    for (i, o) in out.chunks_exact_mut(16).enumerate() {
        let (half, shift, part) = (i / 8, 2 * ((i % 8) / 2), i % 2);
        let sc = b.scales[i];
        let dl = d * (sc & 0x0f) as f32;
        let ml = dmin * (sc >> 4) as f32;
        for (l, v) in o.iter_mut().enumerate() {
            let q = (b.qs[32 * half + 16 * part + l] >> shift) & 3;
            *v = dl * q as f32 - ml;
        }
    }
}

pub fn dequantize_q3_k(b: &BlockQ3K, out: &mut [f32; QK_K]) {
    let d = b.d.to_f32();
    let scales = q3k_scales(&b.scales);
    for (i, o) in out.chunks_exact_mut(16).enumerate() {
        let (half, j, part) = (i / 8, (i % 8) / 2, i % 2);
        let dl = d * scales[i] as f32;
        let bit = 4 * half + j;
        for (l, v) in o.iter_mut().enumerate() {
            let at = 16 * part + l;
            let low = ((b.qs[32 * half + at] >> (2 * j)) & 3) as i32;
            let high = if b.hmask[at] & (1 << bit) != 0 { 0 } else { 4 };
            *v = dl * (low - high) as f32;
        }
    }
}

pub fn dequantize_q4_k(b: &BlockQ4K, out: &mut [f32; QK_K]) {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    for (i, o) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(i, &b.scales);
        let (dl, ml) = (d * sc as f32, dmin * m as f32);
        let (qs, shift) = (&b.qs[32 * (i / 2)..32 * (i / 2) + 32], 4 * (i % 2));
        for (v, &q) in o.iter_mut().zip(qs) {
            *v = dl * ((q >> shift) & 0x0f) as f32 - ml;
        }
    }
}

pub fn dequantize_q5_k(b: &BlockQ5K, out: &mut [f32; QK_K]) {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    for (i, o) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(i, &b.scales);
        let (dl, ml) = (d * sc as f32, dmin * m as f32);
        let (qs, shift) = (&b.qs[32 * (i / 2)..32 * (i / 2) + 32], 4 * (i % 2));
        for (l, (v, &q)) in o.iter_mut().zip(qs).enumerate() {
            let q = ((q >> shift) & 0x0f) | (((b.qh[l] >> i) & 1) << 4);
            *v = dl * q as f32 - ml;
        }
    }
}

/// Element `e`'s 6-bit code of a Q6_K block, minus 32.
pub fn q6k_code(b: &BlockQ6K, e: usize) -> i32 {
    let (half, r) = (e / 128, e % 128);
    let (quarter, l) = (r / 32, r % 32);
    let low = b.ql[64 * half + 32 * (quarter % 2) + l] >> (4 * (quarter / 2));
    let high = (b.qh[32 * half + l] >> (2 * quarter)) & 3;
    ((low & 0x0f) | (high << 4)) as i32 - 32
}

pub fn dequantize_q6_k(b: &BlockQ6K, out: &mut [f32; QK_K]) {
    let d = b.d.to_f32();
    for (e, v) in out.iter_mut().enumerate() {
        *v = d * b.scales[e / 16] as f32 * q6k_code(b, e) as f32;
    }
}

pub fn dequantize_iq4_xs(b: &BlockIq4Xs, out: &mut [f32; QK_K]) {
    let d = b.d.to_f32();
    for (ib, o) in out.chunks_exact_mut(32).enumerate() {
        let dl = d * iq4xs_scale(b, ib) as f32;
        let qs = &b.qs[16 * ib..16 * ib + 16];
        for (j, &byte) in qs.iter().enumerate() {
            o[j] = dl * IQ4_VALUES[(byte & 0x0f) as usize] as f32;
            o[j + 16] = dl * IQ4_VALUES[(byte >> 4) as usize] as f32;
        }
    }
}
