//! A GGUF v3 writer for the small models that tests, examples and benchmarks build.
//!
//! It writes what it is given without judging it, so tests can also write files that are
//! deliberately wrong (zero dimensions, duplicate names, bad offsets) and check that the
//! reader rejects them.

use std::io::Write;
use std::path::Path;

use super::parse::DEFAULT_ALIGNMENT;
use super::value::{Value, ValueType};
use crate::quant::{GgmlType, QuantError};

/// One tensor to write: its bytes are already in the file's format.
#[derive(Debug, Clone)]
pub struct WriteTensor {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    pub data: Vec<u8>,
    /// Offset in the data section; `None` places it after the previous tensor, aligned.
    pub offset: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct GgufWriter {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<WriteTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn set_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.set(key, Value::U32(v))
    }

    pub fn set_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.set(key, Value::F32(v))
    }

    pub fn set_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.set(key, Value::Str(v.to_string()))
    }

    pub fn set_str_array<S: AsRef<str>>(&mut self, key: &str, items: &[S]) -> &mut Self {
        let items = items
            .iter()
            .map(|s| Value::Str(s.as_ref().to_string()))
            .collect();
        self.set(key, Value::Array(ValueType::Str, items))
    }

    /// Adds a tensor whose bytes are already encoded as `dtype`.
    pub fn add_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(WriteTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            data,
            offset: None,
        });
        self
    }

    /// Adds a tensor given as f32 values, encoded (quantized) as `dtype`.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: GgmlType,
        values: &[f32],
    ) -> Result<&mut Self, QuantError> {
        let data = crate::quant::quantize(dtype, values)?;
        Ok(self.add_raw(name, dims, dtype, data))
    }

    /// The header (magic to tensor table, padded to the data section) for tensors of the
    /// given (name, dims, dtype, byte length, offset), and each tensor's data offset.
    fn header<'a>(
        &self,
        tensors: impl Iterator<Item = (&'a str, &'a [u64], GgmlType, u64, Option<u64>)>,
        n_tensors: usize,
    ) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend(self.version.to_le_bytes());
        out.extend((n_tensors as u64).to_le_bytes());
        let add_alignment = self.alignment != DEFAULT_ALIGNMENT
            && !self.metadata.iter().any(|(k, _)| k == "general.alignment");
        let n_kv = self.metadata.len() + add_alignment as usize;
        out.extend((n_kv as u64).to_le_bytes());
        if add_alignment {
            write_string(&mut out, "general.alignment");
            out.extend((ValueType::U32 as u32).to_le_bytes());
            out.extend((self.alignment as u32).to_le_bytes());
        }
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend((value.value_type() as u32).to_le_bytes());
            write_value(&mut out, value);
        }
        let align = self.alignment.max(1);
        let mut next = 0u64;
        let mut offsets = Vec::with_capacity(n_tensors);
        for (name, dims, dtype, len, offset) in tensors {
            let offset = offset.unwrap_or(next.div_ceil(align) * align);
            offsets.push(offset);
            next = offset + len;
            write_string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(dtype.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        let data_start = (out.len() as u64).div_ceil(align) * align;
        out.resize(data_start as usize, 0);
        (out, offsets)
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let infos = self.tensors.iter().map(|t| {
            let len = t.data.len() as u64;
            (t.name.as_str(), t.dims.as_slice(), t.dtype, len, t.offset)
        });
        let (mut out, offsets) = self.header(infos, self.tensors.len());
        let data_start = out.len();
        for (t, offset) in self.tensors.iter().zip(offsets) {
            let start = data_start + offset as usize;
            if out.len() < start + t.data.len() {
                out.resize(start + t.data.len(), 0);
            }
            out[start..start + t.data.len()].copy_from_slice(&t.data);
        }
        out
    }

    /// Writes the file to `path` (through a temporary file renamed into place).
    pub fn write(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let bytes = self.to_bytes();
        write_atomically(path.as_ref(), |f| f.write_all(&bytes))
    }

    /// Writes this writer's metadata and the tensors `infos` (name, dims, type, byte length)
    /// to `path`, asking `produce(i)` for tensor i's bytes only when it is written, so a
    /// model is never held in memory whole. The file appears at `path` complete or not at
    /// all: it is written to `path.partial` and renamed; on any error the partial file is
    /// removed. (Tensors already in `self.tensors` are ignored.)
    pub fn write_streamed<E: From<std::io::Error>>(
        &self,
        path: impl AsRef<Path>,
        infos: &[(String, Vec<u64>, GgmlType, u64)],
        mut produce: impl FnMut(usize) -> Result<Vec<u8>, E>,
    ) -> Result<(), E> {
        let (header, offsets) = self.header(
            infos
                .iter()
                .map(|(n, d, t, len)| (n.as_str(), d.as_slice(), *t, *len, None)),
            infos.len(),
        );
        let mut result = Ok(());
        write_atomically(path.as_ref(), |f| {
            let mut f = std::io::BufWriter::with_capacity(1 << 20, f);
            f.write_all(&header)?;
            let mut at = 0u64;
            for (i, ((name, _, _, len), offset)) in infos.iter().zip(&offsets).enumerate() {
                f.write_all(&vec![0u8; (offset - at) as usize])?;
                let data = match produce(i) {
                    Ok(d) => d,
                    Err(e) => {
                        result = Err(e);
                        return Err(std::io::Error::other("stopped"));
                    }
                };
                if data.len() as u64 != *len {
                    return Err(std::io::Error::other(format!(
                        "tensor {name}: {} bytes produced, {len} declared",
                        data.len()
                    )));
                }
                f.write_all(&data)?;
                at = offset + len;
            }
            f.flush()
        })
        .or_else(|e| result.and(Err(E::from(e))))
    }
}

/// Writes a file through `PATH.partial`, synced and renamed into place; removes the partial
/// file if `fill` or anything after it fails.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let done = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => write_string(out, s),
        Value::Array(elem, items) => {
            out.extend((*elem as u32).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item);
            }
        }
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
    }
}
