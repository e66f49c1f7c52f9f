//! The 32-element formats with a fifth code bit (Q5_0, Q5_1) and the non-linear 4-bit
//! format IQ4_NL, as ggml `ggml-common.h` lays them out. Dequantizers do ggml's arithmetic in
//! ggml's order (checked bit for bit against the `gguf` package's numpy dequantizers,
//! `tests/golden/quant/`); the Q5 quantizers follow ggml's `quantize_row_q5_*_ref`, IQ4_NL's
//! is in `kfit`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::QK;

/// Q5_0, 22 bytes per 32 weights: `d`, then `qh` (bit j is element j's fifth bit, a
/// little-endian u32), then 16 bytes of low nibbles laid out as Q4_0's.
/// Element value: `x = (q - 16) * d`, with `q` in 0..=31.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// Q5_1, 24 bytes per 32 weights: `d`, `m`, then `qh` and `qs` as Q5_0.
/// Element value: `x = q * d + m`, with `q` in 0..=31.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// IQ4_NL, 18 bytes per 32 weights: `d`, then 16 bytes of 4-bit indices laid out as Q4_0's
/// codes. Element value: `x = d * IQ4_VALUES[q]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockIq4Nl {
    pub d: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == 18);

/// The sixteen levels of IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`): denser near zero,
/// where most weights are.
pub const IQ4_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The 32 five-bit codes of a Q5 block, in element order.
pub fn q5_codes(qh: [u8; 4], qs: &[u8; QK / 2]) -> [u8; QK] {
    let h = u32::from_le_bytes(qh);
    let mut q = [0u8; QK];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = (b & 0x0f) | ((((h >> j) & 1) as u8) << 4);
        q[j + QK / 2] = (b >> 4) | ((((h >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

pub fn dequantize_q5_0(b: &BlockQ5_0, out: &mut [f32; QK]) {
    let d = b.d.to_f32();
    for (o, q) in out.iter_mut().zip(q5_codes(b.qh, &b.qs)) {
        *o = d * (q as i32 - 16) as f32;
    }
}

pub fn dequantize_q5_1(b: &BlockQ5_1, out: &mut [f32; QK]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for (o, q) in out.iter_mut().zip(q5_codes(b.qh, &b.qs)) {
        *o = d * q as f32 + m;
    }
}

pub fn dequantize_iq4_nl(b: &BlockIq4Nl, out: &mut [f32; QK]) {
    let d = b.d.to_f32();
    for (j, &byte) in b.qs.iter().enumerate() {
        out[j] = d * IQ4_VALUES[(byte & 0x0f) as usize] as f32;
        out[j + QK / 2] = d * IQ4_VALUES[(byte >> 4) as usize] as f32;
    }
}

/// Packs 32 five-bit codes into `qh` and `qs`.
fn pack_q5(q: &[u8; QK]) -> ([u8; 4], [u8; QK / 2]) {
    let mut qh = 0u32;
    let mut qs = [0u8; QK / 2];
    for j in 0..QK / 2 {
        qs[j] = (q[j] & 0x0f) | ((q[j + QK / 2] & 0x0f) << 4);
        qh |= (((q[j] >> 4) & 1) as u32) << j;
        qh |= (((q[j + QK / 2] >> 4) & 1) as u32) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

/// Q5_0 quantizer: the value of largest magnitude maps to code 0 (`d = max / -16`).
pub fn quantize_q5_0(x: &[f32]) -> BlockQ5_0 {
    debug_assert_eq!(x.len(), QK);
    let max = x
        .iter()
        .copied()
        .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 16.5) as i8).clamp(0, 31) as u8);
    let (qh, qs) = pack_q5(&q);
    BlockQ5_0 {
        d: f16::from_f32(d),
        qh,
        qs,
    }
}

/// Q5_1 quantizer: `m` is the block minimum and `d = (max - min) / 31`.
pub fn quantize_q5_1(x: &[f32]) -> BlockQ5_1 {
    debug_assert_eq!(x.len(), QK);
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q: [u8; QK] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as u8).min(31));
    let (qh, qs) = pack_q5(&q);
    BlockQ5_1 {
        d: f16::from_f32(d),
        m: f16::from_f32(min),
        qh,
        qs,
    }
}
