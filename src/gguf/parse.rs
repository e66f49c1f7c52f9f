//! The GGUF parser: bytes → `Layout` (metadata and tensor infos), with every length, count
//! and offset checked against the bytes that are really there before it is used.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md> (little-endian):
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64 | kv pairs | tensor infos |
//! padding to `general.alignment` (default 32) | tensor data.

use std::collections::HashSet;

use super::error::GgufError;
use super::value::{Value, ValueType};
use crate::quant::GgmlType;

/// GGUF's default alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most this many dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays are allowed by the spec; deeper nesting than this is rejected so a
/// hostile file cannot exhaust the stack.
pub const MAX_ARRAY_NESTING: usize = 4;

/// One metadata key-value pair and where it starts in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataEntry {
    pub key: String,
    pub value: Value,
    /// Byte offset of the key-value pair.
    pub offset: u64,
}

/// One tensor's description. `dims[0]` is the row length (ggml's `ne[0]`, contiguous).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset of the data, relative to the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
    /// Byte offset of this tensor's info record in the file (for error messages).
    pub info_offset: u64,
}

/// Everything in a GGUF file except the tensor bytes themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub version: u32,
    pub metadata: Vec<MetadataEntry>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute byte offset where the tensor data section starts.
    pub data_start: u64,
    pub file_len: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.offset(),
                what: what(),
                needed: n,
                available: self.remaining(),
            });
        }
        let start = self.pos;
        self.pos += n as usize; // n <= remaining, so this fits in usize
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(|| format!("the length of {}", what()))?;
        if len > self.remaining() {
            return Err(GgufError::LengthPastEnd {
                offset: self.offset() - 8,
                what: what(),
                len,
                available: self.remaining(),
            });
        }
        let start = self.offset();
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            offset: start,
            what: what(),
        })
    }

    /// Checks that `count` items of at least `min_bytes` each can fit in what is left.
    fn check_count(
        &self,
        what: impl FnOnce() -> String,
        count: u64,
        min_bytes: u64,
    ) -> Result<(), GgufError> {
        let max = self.remaining() / min_bytes.max(1);
        if count > max {
            return Err(GgufError::CountTooLarge {
                offset: self.offset(),
                what: what(),
                count,
                available: self.remaining(),
                max,
            });
        }
        Ok(())
    }
}

/// Parses the header, metadata and tensor infos of a GGUF file held in `buf`, and checks
/// that every tensor's data lies inside `buf`, aligned, as a whole number of blocks.
pub fn parse(buf: &[u8]) -> Result<Layout, GgufError> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array(|| "the magic".into())?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32(|| "the version".into())?;
    if version != 2 && version != 3 {
        let hint = if version == 1 {
            ": version 1 used 32-bit lengths and is obsolete"
        } else if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            ": this looks like a big-endian file"
        } else {
            ""
        };
        return Err(GgufError::UnsupportedVersion { version, hint });
    }
    let tensor_count = c.u64(|| "the tensor count".into())?;
    let kv_count = c.u64(|| "the metadata count".into())?;
    // A kv pair is at least a key length (8), a type (4) and a 1-byte value.
    c.check_count(|| "metadata".into(), kv_count, 13)?;

    let mut metadata: Vec<MetadataEntry> = Vec::with_capacity(kv_count as usize);
    let mut keys = HashSet::new();
    for i in 0..kv_count {
        let offset = c.offset();
        let key = c.string(&|| format!("the key of metadata entry {i}"))?;
        if !keys.insert(key.clone()) {
            return Err(GgufError::DuplicateKey { offset, key });
        }
        let type_offset = c.offset();
        let type_id = c.u32(|| format!("the value type of `{key}`"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            offset: type_offset,
            key: key.clone(),
            type_id,
        })?;
        let value = read_value(&mut c, ty, &key, 0)?;
        metadata.push(MetadataEntry { key, value, offset });
    }

    let alignment = match metadata.iter().find(|e| e.key == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(e) => {
            let v = e.value.as_i128().ok_or_else(|| GgufError::WrongType {
                offset: e.offset,
                key: e.key.clone(),
                expected: "an unsigned integer",
                found: e.value.type_description(),
            })?;
            if v <= 0 || v > u32::MAX as i128 || (v & (v - 1)) != 0 {
                return Err(GgufError::BadAlignment {
                    offset: e.offset,
                    value: v.clamp(0, u64::MAX as i128) as u64,
                });
            }
            v as u64
        }
    };

    // A tensor info is at least a name length (8), n_dims (4), one dim (8), dtype (4)
    // and an offset (8).
    c.check_count(|| "tensor".into(), tensor_count, 32)?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
    let mut names = HashSet::new();
    for i in 0..tensor_count {
        let info_offset = c.offset();
        let name = c.string(&|| format!("the name of tensor {i}"))?;
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor {
                offset: info_offset,
                tensor: name,
            });
        }
        let n_dims = c.u32(|| format!("the dimension count of `{name}`"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                offset: info_offset,
                tensor: name,
                n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(|| format!("dimension {d} of `{name}`"))?);
        }
        if let Some(index) = dims.iter().position(|&d| d == 0) {
            return Err(GgufError::ZeroDim {
                offset: info_offset,
                tensor: name,
                index,
            });
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| GgufError::DimOverflow {
                offset: info_offset,
                tensor: name.clone(),
                dims: dims.clone(),
            })?;
        let type_offset = c.offset();
        let type_id = c.u32(|| format!("the dtype of `{name}`"))?;
        let dtype = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownDtype {
            offset: type_offset,
            tensor: name.clone(),
            type_id,
        })?;
        if dims[0] % dtype.block_len() != 0 {
            return Err(GgufError::PartialBlock {
                offset: info_offset,
                tensor: name,
                dtype,
                ne0: dims[0],
                block_len: dtype.block_len(),
            });
        }
        let n_bytes = dtype
            .bytes_for(n_elements)
            .ok_or_else(|| GgufError::DimOverflow {
                offset: info_offset,
                tensor: name.clone(),
                dims: dims.clone(),
            })?;
        let offset = c.u64(|| format!("the data offset of `{name}`"))?;
        tensors.push(TensorInfo {
            name,
            dims,
            dtype,
            offset,
            n_elements,
            n_bytes,
            info_offset,
        });
    }

    let file_len = buf.len() as u64;
    // c.offset() <= file_len and alignment <= u32::MAX, so this cannot overflow u64.
    let data_start = c.offset().div_ceil(alignment) * alignment;
    for t in &tensors {
        if t.offset % alignment != 0 || (data_start + t.offset) % t.dtype.align() != 0 {
            return Err(GgufError::Misaligned {
                offset: t.info_offset,
                tensor: t.name.clone(),
                data_offset: t.offset,
                alignment: alignment.max(t.dtype.align()),
            });
        }
        let end = data_start
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(GgufError::DataPastEnd {
                    offset: t.info_offset,
                    tensor: t.name.clone(),
                    start: data_start.saturating_add(t.offset),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }

    Ok(Layout {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
        file_len,
    })
}

fn read_value(c: &mut Cursor, ty: ValueType, key: &str, depth: usize) -> Result<Value, GgufError> {
    let what = || format!("the value of `{key}`");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.array::<1>(what)?[0]),
        ValueType::I8 => Value::I8(c.array::<1>(what)?[0] as i8),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(what)?)),
        ValueType::Bool => {
            let offset = c.offset();
            match c.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufError::WrongType {
                        offset,
                        key: key.to_string(),
                        expected: "a bool (byte 0 or 1)",
                        found: format!("byte {b}"),
                    })
                }
            }
        }
        ValueType::Str => Value::Str(c.string(&what)?),
        ValueType::Array => {
            if depth >= MAX_ARRAY_NESTING {
                return Err(GgufError::NestingTooDeep {
                    offset: c.offset(),
                    key: key.to_string(),
                    max: MAX_ARRAY_NESTING,
                });
            }
            let type_offset = c.offset();
            let type_id = c.u32(|| format!("the element type of `{key}`"))?;
            let elem = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                offset: type_offset,
                key: key.to_string(),
                type_id,
            })?;
            let len = c.u64(|| format!("the length of `{key}`"))?;
            c.check_count(|| format!("`{key}` array element"), len, elem.min_bytes())?;
            let mut items = Vec::with_capacity(len as usize);
            for _ in 0..len {
                items.push(read_value(c, elem, key, depth + 1)?);
            }
            Value::Array(elem, items)
        }
    })
}
