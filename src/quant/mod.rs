//! Tensor element formats: the ggml type table and the block layouts qgraph computes with.
//!
//! `GgmlType` knows every type id a GGUF file may carry (so `inspect` can describe any
//! model and sizes can be checked), while `blocks` defines the five formats qgraph
//! computes with: F32, F16, Q8_0, Q4_0 and Q4_1.

pub mod blocks;

pub use blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QK};

use serde::Serialize;

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
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    /// Every type this table describes, for iteration in tests and docs.
    pub const ALL: [GgmlType; 20] = [
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
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::BF16,
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
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::BF16 => 30,
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
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
            GgmlType::BF16 => "BF16",
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
            GgmlType::Q8_0 | GgmlType::Q8_1 => 32,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K => 256,
            GgmlType::Q5K | GgmlType::Q6K | GgmlType::Q8K => 256,
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
            GgmlType::I8 => 1,
            // every other block starts with (or is) an f16/u16 field
            _ => 2,
        }
    }

    /// Whether qgraph has kernels for this type (the five formats of `blocks`).
    pub fn is_computable(self) -> bool {
        matches!(
            self,
            GgmlType::F32 | GgmlType::F16 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0
        )
    }

    /// Bytes taken by `n_elements` elements, or `None` if they are not a whole number
    /// of blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        if n_elements % self.block_len() != 0 {
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
    #[error("{dtype} has no scalar conversion in qgraph (supported: F32, F16, Q4_0, Q4_1, Q8_0)")]
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
        GgmlType::Q4_0 => each_block::<BlockQ4_0>(data, out, blocks::dequantize_q4_0),
        GgmlType::Q4_1 => each_block::<BlockQ4_1>(data, out, blocks::dequantize_q4_1),
        GgmlType::Q8_0 => each_block::<BlockQ8_0>(data, out, blocks::dequantize_q8_0),
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
    match dtype {
        GgmlType::F32 => x.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => x
            .iter()
            .for_each(|v| out.extend(half::f16::from_f32(*v).to_le_bytes())),
        GgmlType::Q4_0 => x
            .chunks_exact(QK)
            .for_each(|c| out.extend_from_slice(bytemuck::bytes_of(&blocks::quantize_q4_0(c)))),
        GgmlType::Q4_1 => x
            .chunks_exact(QK)
            .for_each(|c| out.extend_from_slice(bytemuck::bytes_of(&blocks::quantize_q4_1(c)))),
        GgmlType::Q8_0 => x
            .chunks_exact(QK)
            .for_each(|c| out.extend_from_slice(bytemuck::bytes_of(&blocks::quantize_q8_0(c)))),
        _ => return Err(QuantError::Unsupported { dtype }),
    }
    Ok(out)
}

fn each_block<B: bytemuck::AnyBitPattern>(
    data: &[u8],
    out: &mut [f32],
    f: impl Fn(&B, &mut [f32; QK]),
) {
    let size = std::mem::size_of::<B>();
    for (bytes, o) in data.chunks_exact(size).zip(out.chunks_exact_mut(QK)) {
        let block: B = bytemuck::pod_read_unaligned(bytes);
        // infallible: chunks_exact_mut(QK) yields slices of exactly QK elements
        let o: &mut [f32; QK] = o.try_into().expect("chunk of QK");
        f(&block, o);
    }
}
