//! GGUF files: a bounds-checked parser, a zero-copy reader over a memory map, and a writer
//! for the small models tests and examples build.

mod derived;
mod error;
mod parse;
pub mod tiny;
mod value;
mod write;

pub use derived::DerivedBytes;
pub use error::GgufError;
pub use parse::{parse, Layout, MetadataEntry, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use value::{Value, ValueType};
pub use write::{GgufWriter, WriteTensor};

use std::path::Path;

use crate::quant::GgmlType;

/// The bytes behind a `GgufFile`: a read-only memory map of the file, or an owned buffer
/// kept 8-byte aligned so tensor data can be borrowed as f32/f16/block slices.
enum Storage {
    Mmap(memmap2::Mmap),
    Owned { words: Vec<u64>, len: usize },
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
        }
    }
}

/// An opened GGUF file. Tensor data is borrowed from the map, never copied; copies in other
/// layouts that plans ask for are made once and kept here (`derived`).
pub struct GgufFile {
    storage: Storage,
    layout: Layout,
    derived: derived::DerivedCache,
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        // SAFETY: the map is read-only and lives as long as `GgufFile`. Like every engine that
        // maps weights (llama.cpp included), qgraph assumes the model file is not truncated or
        // rewritten by another process while it is open; the parser below checks every range
        // against the mapped length once, at open.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        let layout = parse(&mmap)?;
        // The header (metadata, the vocabulary among it) now lives in `layout`: its pages
        // need not stay resident.
        let header = (layout.data_start as usize).min(mmap.len()) / 4096 * 4096;
        if header > 0 {
            // SAFETY: a read-only private map: MADV_DONTNEED only drops pages that a later
            // read faults back in from the file, unchanged. 0..header lies inside the map.
            let _ = unsafe {
                mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, header)
            };
        }
        Ok(GgufFile {
            storage: Storage::Mmap(mmap),
            layout,
            derived: Default::default(),
        })
    }

    /// Parses a GGUF file held in memory (the bytes are copied once into an aligned buffer).
    pub fn from_bytes(bytes: &[u8]) -> Result<GgufFile, GgufError> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        let storage = Storage::Owned {
            words,
            len: bytes.len(),
        };
        let layout = parse(storage.bytes())?;
        Ok(GgufFile {
            storage,
            layout,
            derived: Default::default(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn version(&self) -> u32 {
        self.layout.version
    }

    pub fn metadata(&self) -> &[MetadataEntry] {
        &self.layout.metadata
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.layout.tensors
    }

    /// The metadata entry for `key`, if present.
    pub fn entry(&self, key: &str) -> Option<&MetadataEntry> {
        self.layout.metadata.iter().find(|e| e.key == key)
    }

    fn require(&self, key: &str) -> Result<&MetadataEntry, GgufError> {
        self.entry(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong_type(e: &MetadataEntry, expected: &'static str) -> GgufError {
        GgufError::WrongType {
            offset: e.offset,
            key: e.key.clone(),
            expected,
            found: e.value.type_description(),
        }
    }

    /// An integer metadata value of any integer type that fits in u32 (files disagree on
    /// u32 vs i32 vs u64 for the same key).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let e = self.require(key)?;
        e.value
            .as_i128()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| Self::wrong_type(e, "an integer in 0..=u32::MAX"))
    }

    /// An integer metadata value of any integer type that fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let e = self.require(key)?;
        e.value
            .as_i128()
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| Self::wrong_type(e, "an integer in 0..=u64::MAX"))
    }

    /// A float metadata value (f32 or f64).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let e = self.require(key)?;
        match e.value {
            Value::F32(v) => Ok(v),
            Value::F64(v) => Ok(v as f32),
            _ => Err(Self::wrong_type(e, "a float")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let e = self.require(key)?;
        match e.value {
            Value::Bool(v) => Ok(v),
            _ => Err(Self::wrong_type(e, "a bool")),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let e = self.require(key)?;
        match &e.value {
            Value::Str(s) => Ok(s),
            _ => Err(Self::wrong_type(e, "a string")),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        let e = self.require(key)?;
        match &e.value {
            Value::Array(_, items) => Ok(items),
            _ => Err(Self::wrong_type(e, "an array")),
        }
    }

    /// An array of strings, borrowed.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let e = self.require(key)?;
        match &e.value {
            Value::Array(ValueType::Str, items) => Ok(items
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect()),
            _ => Err(Self::wrong_type(e, "an array of string")),
        }
    }

    /// An array of integers that each fit in i32 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let e = self.require(key)?;
        match &e.value {
            Value::Array(_, items) => items
                .iter()
                .map(|v| v.as_i128().and_then(|i| i32::try_from(i).ok()))
                .collect::<Option<Vec<i32>>>()
                .ok_or_else(|| Self::wrong_type(e, "an array of i32")),
            _ => Err(Self::wrong_type(e, "an array of i32")),
        }
    }

    /// An array of f32 (SentencePiece scores); integers and f64 that are exact in f32 are
    /// not accepted: the key must hold f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let e = self.require(key)?;
        match &e.value {
            Value::Array(_, items) => items
                .iter()
                .map(|v| match v {
                    Value::F32(x) => Some(*x),
                    _ => None,
                })
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| Self::wrong_type(e, "an array of f32")),
            _ => Err(Self::wrong_type(e, "an array of f32")),
        }
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.layout
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::MissingTensor {
                tensor: name.to_string(),
            })
    }

    /// The raw bytes of a tensor, borrowed from the file.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.layout.data_start + t.offset) as usize;
        // The parser checked data_start + offset + n_bytes <= file length for every tensor.
        &self.storage.bytes()[start..start + t.n_bytes as usize]
    }

    /// A tensor's data as a slice of `T` (f32, `half::f16` or a block struct), borrowed
    /// from the file. `T` must be the tensor's element or block type.
    pub fn tensor_data<T: bytemuck::AnyBitPattern>(
        &self,
        t: &TensorInfo,
        expected: GgmlType,
    ) -> Result<&[T], GgufError> {
        if t.dtype != expected || std::mem::size_of::<T>() as u64 != expected.block_bytes() {
            return Err(GgufError::WrongDtype {
                offset: t.info_offset,
                tensor: t.name.clone(),
                dtype: t.dtype,
                expected: expected.name(),
            });
        }
        // The parser checked the offset against the dtype's alignment, and both storages
        // start at an address aligned to at least 8 bytes.
        bytemuck::try_cast_slice(self.tensor_bytes(t)).map_err(|_| GgufError::Misaligned {
            offset: t.info_offset,
            tensor: t.name.clone(),
            data_offset: t.offset,
            alignment: expected.align(),
        })
    }

    /// Dequantizes a whole tensor to f32 (for tests and tools; the executor never does this).
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, crate::quant::QuantError> {
        let mut out = vec![0f32; t.n_elements as usize];
        crate::quant::dequantize(t.dtype, self.tensor_bytes(t), &mut out)?;
        Ok(out)
    }
}
