use crate::quant::GgmlType;

/// Everything that can be wrong with a GGUF file. Each variant names the byte offset where
/// the problem was found and, where there is one, the metadata key or tensor involved.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The cause is the I/O error (not repeated in the message: error chains print it).
    #[error("{path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "byte {offset}: file ends while reading {what}: needed {needed} bytes, {available} left"
    )]
    Truncated {
        offset: u64,
        what: String,
        needed: u64,
        available: u64,
    },
    #[error("byte 0: bad magic {found:?}: not a GGUF file (expected \"GGUF\")")]
    BadMagic { found: [u8; 4] },
    #[error("byte 4: unsupported GGUF version {version} (qgraph reads versions 2 and 3{hint})")]
    UnsupportedVersion { version: u32, hint: &'static str },
    #[error("byte {offset}: {what} count {count} cannot fit in the {available} bytes left (at most {max})")]
    CountTooLarge {
        offset: u64,
        what: String,
        count: u64,
        available: u64,
        max: u64,
    },
    #[error("byte {offset}: {what}: length {len} runs past the end of the file ({available} bytes left)")]
    LengthPastEnd {
        offset: u64,
        what: String,
        len: u64,
        available: u64,
    },
    #[error("byte {offset}: metadata key `{key}`: unknown value type {type_id}")]
    UnknownValueType {
        offset: u64,
        key: String,
        type_id: u32,
    },
    #[error("byte {offset}: metadata key `{key}`: arrays nested deeper than {max}")]
    NestingTooDeep {
        offset: u64,
        key: String,
        max: usize,
    },
    #[error("byte {offset}: {what} is not valid UTF-8")]
    InvalidUtf8 { offset: u64, what: String },
    #[error("byte {offset}: metadata key `{key}` appears twice")]
    DuplicateKey { offset: u64, key: String },
    #[error("byte {offset}: `general.alignment` is {value}: it must be a power of two")]
    BadAlignment { offset: u64, value: u64 },
    #[error("byte {offset}: tensor `{tensor}`: unknown dtype id {type_id}")]
    UnknownDtype {
        offset: u64,
        tensor: String,
        type_id: u32,
    },
    #[error("byte {offset}: tensor `{tensor}`: {n_dims} dimensions (ggml tensors have 1 to 4)")]
    BadDimCount {
        offset: u64,
        tensor: String,
        n_dims: u32,
    },
    #[error("byte {offset}: tensor `{tensor}`: dimension {index} is zero")]
    ZeroDim {
        offset: u64,
        tensor: String,
        index: usize,
    },
    #[error(
        "byte {offset}: tensor `{tensor}`: element count of dimensions {dims:?} overflows u64"
    )]
    DimOverflow {
        offset: u64,
        tensor: String,
        dims: Vec<u64>,
    },
    #[error("byte {offset}: tensor `{tensor}`: row length {ne0} is not a whole number of {dtype} blocks of {block_len}")]
    PartialBlock {
        offset: u64,
        tensor: String,
        dtype: GgmlType,
        ne0: u64,
        block_len: u64,
    },
    #[error("byte {offset}: tensor `{tensor}` appears twice")]
    DuplicateTensor { offset: u64, tensor: String },
    #[error("byte {offset}: tensor `{tensor}`: data offset {data_offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        offset: u64,
        tensor: String,
        data_offset: u64,
        alignment: u64,
    },
    #[error("byte {offset}: tensor `{tensor}`: data [{start}, {end}) runs past the end of the file ({file_len} bytes)")]
    DataPastEnd {
        offset: u64,
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("metadata key `{key}` is missing")]
    MissingKey { key: String },
    #[error("byte {offset}: metadata key `{key}` is {found}, expected {expected}")]
    WrongType {
        offset: u64,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("tensor `{tensor}` is not in the file")]
    MissingTensor { tensor: String },
    #[error("byte {offset}: tensor `{tensor}` is {dtype}, read as {expected}")]
    WrongDtype {
        offset: u64,
        tensor: String,
        dtype: GgmlType,
        expected: &'static str,
    },
}
