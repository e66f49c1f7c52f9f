//! Tensor element formats: the ggml type table and the block layouts qgraph computes with.
//!
//! `GgmlType` knows every type id a GGUF file may carry (so `inspect` can describe any
//! model and sizes can be checked). qgraph converts and computes with F32, F16, BF16 and
//! the block formats defined here: `blocks` (Q4_0, Q4_1, Q8_0), `q5` (Q5_0, Q5_1, IQ4_NL)
//! and `kquants` (Q2_K … Q6_K, IQ4_XS).

pub mod blocks;
pub mod kfit;
pub mod kquants;
pub mod mixture;
pub mod q5;

pub use blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QK};
pub use kquants::{BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
pub use q5::{BlockIq4Nl, BlockQ5_0, BlockQ5_1};

use serde::Serialize;

/// A block format: a `#[repr(C)]` block of `LEN` elements and its scalar dequantizer, for
/// code generic over formats (the scalar kernels, tests).
pub trait BlockFormat: bytemuck::Pod {
    const LEN: usize;
    const TYPE: GgmlType;
    /// Converts the block to `out[..LEN]` (`out` holds at least `LEN` values).
    fn dequantize_into(&self, out: &mut [f32]);
}

macro_rules! block_format {
    ($($block:ty: $len:expr, $dtype:expr, $f:path;)*) => {$(
        impl BlockFormat for $block {
            const LEN: usize = $len;
            const TYPE: GgmlType = $dtype;
            fn dequantize_into(&self, out: &mut [f32]) {
                let out: &mut [f32; $len] = (&mut out[..$len])
                    .try_into()
                    // infallible: the slice was just cut to $len
                    .expect("block-sized slice");
                $f(self, out)
            }
        }
    )*};
}

block_format! {
    BlockQ4_0: QK, GgmlType::Q4_0, blocks::dequantize_q4_0;
    BlockQ4_1: QK, GgmlType::Q4_1, blocks::dequantize_q4_1;
    BlockQ8_0: QK, GgmlType::Q8_0, blocks::dequantize_q8_0;
    BlockQ5_0: QK, GgmlType::Q5_0, q5::dequantize_q5_0;
    BlockQ5_1: QK, GgmlType::Q5_1, q5::dequantize_q5_1;
    BlockIq4Nl: QK, GgmlType::Iq4Nl, q5::dequantize_iq4_nl;
    BlockQ2K: QK_K, GgmlType::Q2K, kquants::dequantize_q2_k;
    BlockQ3K: QK_K, GgmlType::Q3K, kquants::dequantize_q3_k;
    BlockQ4K: QK_K, GgmlType::Q4K, kquants::dequantize_q4_k;
    BlockQ5K: QK_K, GgmlType::Q5K, kquants::dequantize_q5_k;
    BlockQ6K: QK_K, GgmlType::Q6K, kquants::dequantize_q6_k;
    BlockIq4Xs: QK_K, GgmlType::Iq4Xs, kquants::dequantize_iq4_xs;
}

/// A ggml tensor type, as stored in a GGUF tensor info (`ggml_type` in ggml.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Iq2Xxs,
    Iq2Xs,
    Iq3Xxs,
    Iq1S,
    Iq4Nl,
    Iq3S,
    Iq2S,
    Iq4Xs,
    I8,
    I16,
    I32,
    I64,
    F64,
    Iq1M,
    BF16,
    Tq1_0,
    Tq2_0,
}

impl GgmlType {
    /// Every type this table describes, for iteration in tests and docs.
    pub const ALL: [GgmlType; 31] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
        GgmlType::Iq2Xxs,
        GgmlType::Iq2Xs,
        GgmlType::Iq3Xxs,
        GgmlType::Iq1S,
        GgmlType::Iq4Nl,
        GgmlType::Iq3S,
        GgmlType::Iq2S,
        GgmlType::Iq4Xs,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::Iq1M,
        GgmlType::BF16,
        GgmlType::Tq1_0,
        GgmlType::Tq2_0,
    ];

    /// The type for a ggml type id, or `None` for an id this table does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The numeric id in ggml's `enum ggml_type`.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::Iq2Xxs => 16,
            GgmlType::Iq2Xs => 17,
            GgmlType::Iq3Xxs => 18,
            GgmlType::Iq1S => 19,
            GgmlType::Iq4Nl => 20,
            GgmlType::Iq3S => 21,
            GgmlType::Iq2S => 22,
            GgmlType::Iq4Xs => 23,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::Iq1M => 29,
            GgmlType::BF16 => 30,
            GgmlType::Tq1_0 => 34,
            GgmlType::Tq2_0 => 35,
        }
    }

    /// The name ggml and llama.cpp print for this type.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Q8K => "Q8_K",
            GgmlType::Iq2Xxs => "IQ2_XXS",
            GgmlType::Iq2Xs => "IQ2_XS",
            GgmlType::Iq3Xxs => "IQ3_XXS",
            GgmlType::Iq1S => "IQ1_S",
            GgmlType::Iq4Nl => "IQ4_NL",
            GgmlType::Iq3S => "IQ3_S",
            GgmlType::Iq2S => "IQ2_S",
            GgmlType::Iq4Xs => "IQ4_XS",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
            GgmlType::Iq1M => "IQ1_M",
            GgmlType::BF16 => "BF16",
            GgmlType::Tq1_0 => "TQ1_0",
            GgmlType::Tq2_0 => "TQ2_0",
        }
    }

    /// Elements per block (1 for plain element types).
    pub fn block_len(self) -> u64 {
        match self {
            GgmlType::F32
            | GgmlType::F16
            | GgmlType::I8
            | GgmlType::I16
            | GgmlType::I32
            | GgmlType::I64
            | GgmlType::F64
            | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 => 32,
            GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Iq4Nl => 32,
            // every other block format: 256-element super-blocks
            _ => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q8_1 => 36,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
            GgmlType::Q8K => 292,
            GgmlType::Iq2Xxs => 66,
            GgmlType::Iq2Xs => 74,
            GgmlType::Iq3Xxs => 98,
            GgmlType::Iq1S => 50,
            GgmlType::Iq4Nl => 18,
            GgmlType::Iq3S => 110,
            GgmlType::Iq2S => 82,
            GgmlType::Iq4Xs => 136,
            GgmlType::Iq1M => 56,
            GgmlType::Tq1_0 => 54,
            GgmlType::Tq2_0 => 66,
            GgmlType::I8 => 1,
            GgmlType::I16 => 2,
            GgmlType::I32 => 4,
            GgmlType::I64 => 8,
            GgmlType::F64 => 8,
            GgmlType::BF16 => 2,
        }
    }

    /// Alignment in bytes that a borrowed slice of this type's blocks needs.
    pub fn align(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::I32 => 4,
            GgmlType::I64 | GgmlType::F64 => 8,
            GgmlType::I8 | GgmlType::Iq1M => 1,
            // every other block holds f16/u16 fields at even offsets
            _ => 2,
        }
    }

    /// Whether this is a plain float type (F32, F16, BF16) rather than a block format.
    pub fn is_float(self) -> bool {
        matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }

    /// Whether qgraph converts this type and has kernels for it.
    pub fn is_computable(self) -> bool {
        Self::COMPUTABLE.contains(&self)
    }

    /// The types qgraph converts and computes with, in the order messages list them.
    pub const COMPUTABLE: [GgmlType; 15] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Iq4Nl,
        GgmlType::Iq4Xs,
    ];

    /// "F32, F16, …": the computable types, for error messages.
    pub fn computable_list() -> String {
        let names: Vec<&str> = Self::COMPUTABLE.iter().map(|t| t.name()).collect();
        names.join(", ")
    }

    /// Bytes taken by `n_elements` elements, or `None` if they are not a whole number
    /// of blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        if !n_elements.is_multiple_of(self.block_len()) {
            return None;
        }
        (n_elements / self.block_len()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a row could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error(
        "{dtype} has no scalar conversion in qgraph (supported: {})",
        GgmlType::computable_list()
    )]
    Unsupported { dtype: GgmlType },
    #[error("{dtype}: {n_elements} elements are not a whole number of {block_len}-element blocks")]
    PartialBlock {
        dtype: GgmlType,
        n_elements: usize,
        block_len: u64,
    },
    #[error("{dtype}: {got} bytes given for {n_elements} elements, expected {want}")]
    ByteLength {
        dtype: GgmlType,
        n_elements: usize,
        got: usize,
        want: u64,
    },
}

fn check_len(dtype: GgmlType, bytes: usize, n_elements: usize) -> Result<(), QuantError> {
    if !dtype.is_computable() {
        return Err(QuantError::Unsupported { dtype });
    }
    let want = dtype
        .bytes_for(n_elements as u64)
        .ok_or(QuantError::PartialBlock {
            dtype,
            n_elements,
            block_len: dtype.block_len(),
        })?;
    if bytes as u64 != want {
        return Err(QuantError::ByteLength {
            dtype,
            n_elements,
            got: bytes,
            want,
        });
    }
    Ok(())
}

/// Dequantizes `out.len()` elements of `dtype` stored in `data` (unaligned bytes are fine:
/// this copies each block out, so it serves readers and tests, not hot loops).
pub fn dequantize(dtype: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_len(dtype, data.len(), out.len())?;
    match dtype {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Q4_0 => each_block(data, out, blocks::dequantize_q4_0),
        GgmlType::Q4_1 => each_block(data, out, blocks::dequantize_q4_1),
        GgmlType::Q8_0 => each_block(data, out, blocks::dequantize_q8_0),
        GgmlType::Q5_0 => each_block(data, out, q5::dequantize_q5_0),
        GgmlType::Q5_1 => each_block(data, out, q5::dequantize_q5_1),
        GgmlType::Iq4Nl => each_block(data, out, q5::dequantize_iq4_nl),
        GgmlType::Q2K => each_block(data, out, kquants::dequantize_q2_k),
        GgmlType::Q3K => each_block(data, out, kquants::dequantize_q3_k),
        GgmlType::Q4K => each_block(data, out, kquants::dequantize_q4_k),
        GgmlType::Q5K => each_block(data, out, kquants::dequantize_q5_k),
        GgmlType::Q6K => each_block(data, out, kquants::dequantize_q6_k),
        GgmlType::Iq4Xs => each_block(data, out, kquants::dequantize_iq4_xs),
        _ => return Err(QuantError::Unsupported { dtype }),
    }
    Ok(())
}

/// Quantizes `x` into `dtype`, returning the little-endian bytes a GGUF file stores.
pub fn quantize(dtype: GgmlType, x: &[f32]) -> Result<Vec<u8>, QuantError> {
    let want = dtype
        .bytes_for(x.len() as u64)
        .ok_or(QuantError::PartialBlock {
            dtype,
            n_elements: x.len(),
            block_len: dtype.block_len(),
        })?;
    let mut out = Vec::with_capacity(want as usize);
    let n = dtype.block_len() as usize;
    match dtype {
        GgmlType::F32 => x.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => x
            .iter()
            .for_each(|v| out.extend(half::f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => x
            .iter()
            .for_each(|v| out.extend(f32_to_bf16(*v).to_le_bytes())),
        GgmlType::Q4_0 => each_chunk(x, n, &mut out, blocks::quantize_q4_0),
        GgmlType::Q4_1 => each_chunk(x, n, &mut out, blocks::quantize_q4_1),
        GgmlType::Q8_0 => each_chunk(x, n, &mut out, blocks::quantize_q8_0),
        GgmlType::Q5_0 => each_chunk(x, n, &mut out, q5::quantize_q5_0),
        GgmlType::Q5_1 => each_chunk(x, n, &mut out, q5::quantize_q5_1),
        GgmlType::Iq4Nl => each_chunk(x, n, &mut out, kfit::quantize_iq4_nl),
        GgmlType::Q2K => each_chunk(x, n, &mut out, kfit::quantize_q2_k),
        GgmlType::Q3K => each_chunk(x, n, &mut out, kfit::quantize_q3_k),
        GgmlType::Q4K => each_chunk(x, n, &mut out, kfit::quantize_q4_k),
        GgmlType::Q5K => each_chunk(x, n, &mut out, kfit::quantize_q5_k),
        GgmlType::Q6K => each_chunk(x, n, &mut out, kfit::quantize_q6_k),
        GgmlType::Iq4Xs => each_chunk(x, n, &mut out, kfit::quantize_iq4_xs),
        _ => return Err(QuantError::Unsupported { dtype }),
    }
    Ok(out)
}

/// Dequantizes every block of `data` (unaligned) into `N`-element chunks of `out`.
fn each_block<B: bytemuck::AnyBitPattern, const N: usize>(
    data: &[u8],
    out: &mut [f32],
    f: impl Fn(&B, &mut [f32; N]),
) {
    let size = std::mem::size_of::<B>();
    for (bytes, o) in data.chunks_exact(size).zip(out.chunks_exact_mut(N)) {
        let block: B = bytemuck::pod_read_unaligned(bytes);
        // infallible: chunks_exact_mut(N) yields slices of exactly N elements
        let o: &mut [f32; N] = o.try_into().expect("chunk of N");
        f(&block, o);
    }
}

/// Quantizes each block-sized chunk of `x` with `f`, appending the blocks' bytes.
fn each_chunk<B: bytemuck::NoUninit>(
    x: &[f32],
    n: usize,
    out: &mut Vec<u8>,
    f: impl Fn(&[f32]) -> B,
) {
    x.chunks_exact(n)
        .for_each(|c| out.extend_from_slice(bytemuck::bytes_of(&f(c))));
}

/// BF16 to f32: the 16 bits are the f32's high half.
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 to BF16 as ggml rounds it (`ggml_compute_fp32_to_bf16`): to nearest even, NaN kept a
/// quiet NaN.
pub fn f32_to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}
