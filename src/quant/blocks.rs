//! The block layouts of ggml's 32-element quantized formats, with scalar reference
//! conversions. Layouts follow ggml `ggml-common.h`; the quantizers follow the rounding of
//! ggml's `quantize_row_*_ref` so files written here read the same in llama.cpp.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements in one block of Q4_0, Q4_1 and Q8_0.
pub const QK: usize = 32;

/// Q4_0, 18 bytes per 32 weights: `d` (f16 scale), then 16 bytes of 4-bit codes.
/// Byte `j` holds element `j` in its low nibble and element `j + 16` in its high nibble.
/// Element value: `x = (q - 8) * d`, with `q` in 0..=15.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1, 20 bytes per 32 weights: `d` (f16 scale), `m` (f16 minimum), then 16 bytes of
/// 4-bit codes laid out as in Q4_0. Element value: `x = q * d + m`, with `q` in 0..=15.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Q8_0, 34 bytes per 32 weights: `d` (f16 scale), then 32 signed 8-bit codes.
/// Element value: `x = q * d`, with `q` in -127..=127.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

pub fn dequantize_q4_0(b: &BlockQ4_0, out: &mut [f32; QK]) {
    let d = b.d.to_f32();
    for (j, &byte) in b.qs.iter().enumerate() {
        out[j] = ((byte & 0x0f) as i32 - 8) as f32 * d;
        out[j + QK / 2] = ((byte >> 4) as i32 - 8) as f32 * d;
    }
}

pub fn dequantize_q4_1(b: &BlockQ4_1, out: &mut [f32; QK]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for (j, &byte) in b.qs.iter().enumerate() {
        out[j] = (byte & 0x0f) as f32 * d + m;
        out[j + QK / 2] = (byte >> 4) as f32 * d + m;
    }
}

pub fn dequantize_q8_0(b: &BlockQ8_0, out: &mut [f32; QK]) {
    let d = b.d.to_f32();
    for (o, &q) in out.iter_mut().zip(b.qs.iter()) {
        *o = q as f32 * d;
    }
}

/// Q4_0 quantizer: the value of largest magnitude maps to code 0 (`d = max / -8`), so the
/// codes span it exactly and the other sign gets 7 steps.
pub fn quantize_q4_0(x: &[f32]) -> BlockQ4_0 {
    debug_assert_eq!(x.len(), QK);
    let max = x
        .iter()
        .copied()
        .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let code = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = code(x[j]) | (code(x[j + QK / 2]) << 4);
    }
    BlockQ4_0 {
        d: f16::from_f32(d),
        qs,
    }
}

/// Q4_1 quantizer: `m` is the block minimum and `d = (max - min) / 15`.
pub fn quantize_q4_1(x: &[f32]) -> BlockQ4_1 {
    debug_assert_eq!(x.len(), QK);
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let code = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = code(x[j]) | (code(x[j + QK / 2]) << 4);
    }
    BlockQ4_1 {
        d: f16::from_f32(d),
        m: f16::from_f32(min),
        qs,
    }
}

/// Q8_0 quantizer: `d = max|x| / 127`, codes rounded to nearest.
pub fn quantize_q8_0(x: &[f32]) -> BlockQ8_0 {
    debug_assert_eq!(x.len(), QK);
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round().clamp(-127.0, 127.0) as i8;
    }
    BlockQ8_0 {
        d: f16::from_f32(d),
        qs,
    }
}
