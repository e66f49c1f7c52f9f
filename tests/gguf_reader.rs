//! The GGUF reader against valid files, malformed files and random corruption.

mod common;

use half::f16;
use proptest::prelude::*;
use qgraph::gguf::{GgufError, GgufFile, GgufWriter, Value, ValueType, WriteTensor};
use qgraph::quant::{BlockQ4_1, BlockQ8_0, GgmlType};

/// A small but varied valid file: every scalar metadata type, arrays of numbers and of
/// strings, and tensors in three formats.
fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", "llama")
        .set("u8", Value::U8(7))
        .set("i8", Value::I8(-7))
        .set("u16", Value::U16(700))
        .set("i16", Value::I16(-700))
        .set_u32("llama.block_count", 2)
        .set("i32", Value::I32(-70000))
        .set_f32("llama.rope.freq_base", 10000.0)
        .set("bool", Value::Bool(true))
        .set("u64", Value::U64(1 << 40))
        .set("i64", Value::I64(-(1 << 40)))
        .set("f64", Value::F64(0.125))
        .set(
            "ints",
            Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]),
        )
        .set_str_array("tokenizer.ggml.tokens", &["a", "b", "ü", "🙂"]);
    let xs: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    w.add_tensor("f32", &[4, 2], GgmlType::F32, &xs[..8])
        .unwrap();
    w.add_tensor("q8", &[32, 2], GgmlType::Q8_0, &xs).unwrap();
    w.add_tensor("q41", &[64], GgmlType::Q4_1, &xs).unwrap();
    w
}

fn parse_err(bytes: &[u8]) -> GgufError {
    match qgraph::gguf::parse(bytes) {
        Ok(_) => panic!("a malformed file parsed"),
        Err(e) => e,
    }
}

fn assert_msg(e: &GgufError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` does not mention `{p}`");
    }
}

#[test]
fn small_file_reads_back() {
    let w = small_writer();
    let f = GgufFile::from_bytes(&w.to_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 2);
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap(),
        ["a", "b", "ü", "🙂"]
    );
    assert_eq!(f.get_i32_array("ints").unwrap(), [1, -2]);
    assert!(f.get_bool("bool").unwrap());
    assert_eq!(f.entry("i64").unwrap().value, Value::I64(-(1 << 40)));
    assert_eq!(f.entry("f64").unwrap().value, Value::F64(0.125));
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["f32", "q8", "q41"]);
    let q8 = f.tensor("q8").unwrap();
    assert_eq!(
        (q8.dims.clone(), q8.n_elements, q8.n_bytes),
        (vec![32, 2], 64, 68)
    );
    // Borrowed, not copied: the slice points into the file's storage.
    let blocks: &[BlockQ8_0] = f.tensor_data(q8, GgmlType::Q8_0).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        blocks.as_ptr() as *const u8,
        f.tensor_bytes(q8).as_ptr(),
        "tensor data must be borrowed from the file"
    );
    assert!(matches!(
        f.tensor_data::<BlockQ4_1>(q8, GgmlType::Q4_1),
        Err(GgufError::WrongDtype { .. })
    ));
}

#[test]
fn typed_getters_name_the_key() {
    let f = GgufFile::from_bytes(&small_writer().to_bytes()).unwrap();
    let e = f.get_u32("llama.missing").unwrap_err();
    assert!(matches!(e, GgufError::MissingKey { .. }));
    assert_msg(&e, &["llama.missing"]);
    let e = f.get_str("llama.block_count").unwrap_err();
    assert_msg(&e, &["llama.block_count", "u32", "string", "byte "]);
    let e = f.get_u32("i32").unwrap_err();
    assert_msg(&e, &["`i32`", "i32"]);
    let e = f.get_str_array("ints").unwrap_err();
    assert_msg(&e, &["ints", "array of i32"]);
    assert_msg(&f.tensor("nope").unwrap_err(), &["nope"]);
}

#[test]
fn real_model_is_smollm2() {
    let f = GgufFile::open(common::real_model()).unwrap();
    assert_eq!(f.tensors().len(), 272);
    let count = |d| f.tensors().iter().filter(|t| t.dtype == d).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::F32),
            count(GgmlType::Q8_0)
        ),
        (210, 61, 1)
    );
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims, [576, 49152]);
    let blocks: &[BlockQ8_0] = f.tensor_data(emb, GgmlType::Q8_0).unwrap();
    assert_eq!(blocks.len(), 576 * 49152 / 32);
}

#[test]
fn error_for_missing_file_names_the_path() {
    let e = GgufFile::open("/nonexistent/model.gguf").err().unwrap();
    assert_msg(&e, &["/nonexistent/model.gguf"]);
}

// ---- malformed files -------------------------------------------------------------------

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_writer().to_bytes();
    for len in 0..bytes.len() {
        assert!(
            qgraph::gguf::parse(&bytes[..len]).is_err(),
            "prefix of {len} of {} bytes parsed",
            bytes.len()
        );
    }
    assert!(qgraph::gguf::parse(&bytes).is_ok());
    // The first truncation error names its offset and what was being read.
    assert_msg(&parse_err(&bytes[..10]), &["byte 8", "tensor count"]);
}

#[test]
fn bad_magic() {
    let mut bytes = small_writer().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let e = parse_err(&bytes);
    assert!(matches!(e, GgufError::BadMagic { .. }));
    assert_msg(&e, &["byte 0", "magic"]);
}

#[test]
fn unsupported_versions() {
    for (version, hint) in [
        (1u32, "obsolete"),
        (4, "2 and 3"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let mut bytes = small_writer().to_bytes();
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        let e = parse_err(&bytes);
        assert!(matches!(e, GgufError::UnsupportedVersion { .. }));
        assert_msg(&e, &["byte 4", &version.to_string(), hint]);
    }
}

#[test]
fn version_2_is_read() {
    let mut w = small_writer();
    w.version = 2;
    assert_eq!(GgufFile::from_bytes(&w.to_bytes()).unwrap().version(), 2);
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    let mut bytes = small_writer().to_bytes();
    bytes[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = parse_err(&bytes);
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    assert_msg(&e, &["tensor count 1152921504606846976"]);

    let mut bytes = small_writer().to_bytes();
    bytes[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = parse_err(&bytes);
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    assert_msg(&e, &["byte 24", "metadata count 1152921504606846976"]);
}

/// A file with one metadata entry written by hand: key, type id, then `value` bytes.
fn one_kv(key: &str, type_id: u32, value: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // kv pairs
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key.as_bytes());
    b.extend(type_id.to_le_bytes());
    b.extend(value);
    b
}

#[test]
fn string_length_past_the_end() {
    let mut value = 1000u64.to_le_bytes().to_vec();
    value.extend(b"short");
    let e = parse_err(&one_kv("general.name", 8, &value));
    assert!(matches!(e, GgufError::LengthPastEnd { .. }), "{e}");
    assert_msg(
        &e,
        &["byte 48", "general.name", "length 1000", "5 bytes left"],
    );
}

#[test]
fn array_of_2_pow_40_elements() {
    let mut value = (ValueType::U8 as u32).to_le_bytes().to_vec();
    value.extend((1u64 << 40).to_le_bytes());
    value.extend([0u8; 64]);
    let e = parse_err(&one_kv("tokenizer.ggml.scores", 9, &value));
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    assert_msg(&e, &["tokenizer.ggml.scores", "1099511627776"]);
}

#[test]
fn unknown_metadata_type() {
    let e = parse_err(&one_kv("general.weird", 13, &[0u8; 8]));
    assert!(
        matches!(e, GgufError::UnknownValueType { type_id: 13, .. }),
        "{e}"
    );
    assert_msg(&e, &["byte 45", "general.weird", "13"]);
    let mut nested = 99u32.to_le_bytes().to_vec();
    nested.extend(1u64.to_le_bytes());
    let e = parse_err(&one_kv("arr", 9, &nested));
    assert_msg(&e, &["arr", "unknown value type 99"]);
}

#[test]
fn deeply_nested_arrays_are_rejected() {
    let mut value = Vec::new();
    for _ in 0..100 {
        value.extend((ValueType::Array as u32).to_le_bytes());
        value.extend(1u64.to_le_bytes());
    }
    let e = parse_err(&one_kv("deep", 9, &value));
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
}

#[test]
fn duplicate_metadata_key() {
    let mut w = small_writer();
    w.set_u32("llama.block_count", 3);
    let e = parse_err(&w.to_bytes());
    assert!(matches!(e, GgufError::DuplicateKey { .. }));
    assert_msg(&e, &["llama.block_count", "twice"]);
}

fn with_tensor(t: WriteTensor) -> Vec<u8> {
    let mut w = small_writer();
    w.tensors.push(t);
    w.to_bytes()
}

fn tensor(name: &str, dims: &[u64], dtype: GgmlType, data_len: usize) -> WriteTensor {
    WriteTensor {
        name: name.into(),
        dims: dims.to_vec(),
        dtype,
        data: vec![0; data_len],
        offset: None,
    }
}

/// Overwrites the dtype id of the last tensor info (it sits just before its u64 offset,
/// and the tensor infos end where the alignment padding starts).
#[test]
fn unknown_tensor_dtype() {
    let w = small_writer();
    let good = w.to_bytes();
    let layout = qgraph::gguf::parse(&good).unwrap();
    let last = layout.tensors.last().unwrap();
    // info: name len (8) + name + n_dims (4) + dims (8 each) + dtype (4) + offset (8)
    let dtype_at = last.info_offset as usize + 8 + last.name.len() + 4 + 8 * last.dims.len();
    let mut bytes = good.clone();
    bytes[dtype_at..dtype_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = parse_err(&bytes);
    assert!(
        matches!(e, GgufError::UnknownDtype { type_id: 99, .. }),
        "{e}"
    );
    assert_msg(&e, &[&format!("byte {dtype_at}"), "`q41`", "99"]);
}

#[test]
fn tensor_data_past_the_end() {
    let mut w = small_writer();
    w.tensors.push(tensor("late", &[8], GgmlType::F32, 32));
    let mut bytes = w.to_bytes();
    bytes.truncate(bytes.len() - 1); // the last tensor's final byte is missing
    let e = parse_err(&bytes);
    assert!(matches!(e, GgufError::DataPastEnd { .. }), "{e}");
    assert_msg(&e, &["`late`", "past the end"]);
}

#[test]
fn misaligned_data_offset() {
    let mut t = tensor("odd", &[8], GgmlType::F32, 32);
    t.offset = Some(1000 + 4); // a multiple of 4 but not of the file's alignment, 32
    let e = parse_err(&with_tensor(t));
    assert!(matches!(e, GgufError::Misaligned { .. }), "{e}");
    assert_msg(&e, &["`odd`", "1004", "alignment 32"]);
}

#[test]
fn zero_dimension() {
    let e = parse_err(&with_tensor(tensor("empty", &[32, 0], GgmlType::F32, 0)));
    assert!(matches!(e, GgufError::ZeroDim { index: 1, .. }), "{e}");
    assert_msg(&e, &["`empty`", "dimension 1 is zero", "byte "]);
}

#[test]
fn dimension_product_overflows() {
    let e = parse_err(&with_tensor(tensor(
        "big",
        &[1 << 32, 1 << 32, 16],
        GgmlType::F32,
        0,
    )));
    assert!(matches!(e, GgufError::DimOverflow { .. }), "{e}");
    assert_msg(&e, &["`big`", "overflows"]);
}

#[test]
fn too_many_dimensions() {
    let e = parse_err(&with_tensor(tensor(
        "5d",
        &[1, 1, 1, 1, 1],
        GgmlType::F32,
        4,
    )));
    assert!(matches!(e, GgufError::BadDimCount { n_dims: 5, .. }), "{e}");
}

#[test]
fn duplicate_tensor_name() {
    let e = parse_err(&with_tensor(tensor("q8", &[32], GgmlType::Q8_0, 34)));
    assert!(matches!(e, GgufError::DuplicateTensor { .. }), "{e}");
    assert_msg(&e, &["`q8`", "twice"]);
}

#[test]
fn partial_block() {
    let e = parse_err(&with_tensor(tensor("ragged", &[48, 2], GgmlType::Q4_1, 60)));
    assert!(matches!(e, GgufError::PartialBlock { .. }), "{e}");
    assert_msg(&e, &["`ragged`", "48", "Q4_1", "32"]);
}

#[test]
fn bad_alignment_value() {
    let mut w = small_writer();
    w.set_u32("general.alignment", 24);
    let e = parse_err(&w.to_bytes());
    assert!(
        matches!(e, GgufError::BadAlignment { value: 24, .. }),
        "{e}"
    );
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = small_writer();
    w.alignment = 64;
    let f = GgufFile::from_bytes(&w.to_bytes()).unwrap();
    assert_eq!(f.layout().alignment, 64);
    assert_eq!(f.layout().data_start % 64, 0);
    assert!(f.tensors().iter().all(|t| t.offset % 64 == 0));
}

// ---- round trips against independent decoding ---------------------------------------------

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Decodes a tensor's raw bytes with the formulas of the GGUF spec, written out here
/// independently of `qgraph::quant`.
fn decode_by_spec(dtype: GgmlType, b: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    match dtype {
        GgmlType::F32 => out.extend(
            b.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
        ),
        GgmlType::F16 => out.extend((0..n).map(|i| f16_at(b, 2 * i))),
        GgmlType::Q8_0 => {
            for blk in b.chunks(34) {
                let d = f16_at(blk, 0);
                out.extend(blk[2..].iter().map(|&q| (q as i8) as f32 * d));
            }
        }
        GgmlType::Q4_0 => {
            for blk in b.chunks(18) {
                let d = f16_at(blk, 0);
                let q = &blk[2..];
                out.extend(q.iter().map(|&v| ((v & 15) as f32 - 8.0) * d));
                out.extend(q.iter().map(|&v| ((v >> 4) as f32 - 8.0) * d));
            }
        }
        GgmlType::Q4_1 => {
            for blk in b.chunks(20) {
                let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
                let q = &blk[4..];
                out.extend(q.iter().map(|&v| (v & 15) as f32 * d + m));
                out.extend(q.iter().map(|&v| (v >> 4) as f32 * d + m));
            }
        }
        _ => unreachable!(),
    }
    out
}

/// The largest error the format may make on a block of values: half a quantization step
/// (a full step for Q4_0, whose codes are asymmetric), plus the rounding of the f16 scale
/// (and minimum). An f16 rounds to within 2^-11 of its value, or, for subnormals (below
/// 2^-14), to within half their fixed spacing 2^-24: the absolute floor `F16_FLOOR`, which
/// the largest code multiplies.
fn step_tolerance(dtype: GgmlType, block: &[f32]) -> f32 {
    const F16_FLOOR: f32 = 1.0 / (1u32 << 25) as f32;
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (lo, hi) = block
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let f16_rel = 1.0 / 1024.0;
    match dtype {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => amax * f16_rel / 2.0 + F16_FLOOR,
        GgmlType::Q8_0 => amax / 127.0 / 2.0 + amax * f16_rel + 127.0 * F16_FLOOR,
        GgmlType::Q4_0 => amax / 8.0 + amax * f16_rel + 8.0 * F16_FLOOR,
        GgmlType::Q4_1 => {
            (hi - lo) / 15.0 / 2.0 + (lo.abs() + hi.abs()) * f16_rel + 16.0 * F16_FLOOR
        }
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn formats_round_trip(
        values in prop::collection::vec(-8.0f32..8.0, 1..6usize).prop_flat_map(|scales| {
            let n = scales.len() * 32;
            (Just(scales), prop::collection::vec(-1.0f32..1.0, n))
        }),
    ) {
        let (scales, unit) = values;
        let xs: Vec<f32> = unit.iter().enumerate().map(|(i, v)| v * scales[i / 32]).collect();
        let n = xs.len() as u64;
        let dtypes = [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1];
        let mut w = GgufWriter::new();
        for d in dtypes {
            w.add_tensor(d.name(), &[32, n / 32], d, &xs).unwrap();
        }
        let f = GgufFile::from_bytes(&w.to_bytes()).unwrap();
        for d in dtypes {
            let t = f.tensor(d.name()).unwrap();
            prop_assert_eq!(t.dtype, d);
            let ours = f.dequantize(t).unwrap();
            let spec = decode_by_spec(d, f.tensor_bytes(t), xs.len());
            prop_assert_eq!(&ours, &spec, "{} dequantize disagrees with the spec's formula", d);
            for (b, (got, want)) in ours.chunks(32).zip(xs.chunks(32)).enumerate() {
                let tol = step_tolerance(d, want);
                for (g, x) in got.iter().zip(want) {
                    prop_assert!((g - x).abs() <= tol, "{} block {}: {} vs {} (tol {})", d, b, g, x, tol);
                }
            }
        }
    }

    /// Random corruption gives `Ok` or `Err`, never a panic; whatever parses can be read.
    #[test]
    fn corruption_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = small_writer().to_bytes();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(f) = GgufFile::from_bytes(&bytes) {
            for t in f.tensors() {
                let _ = f.tensor_bytes(t);
                if t.dtype.is_computable() && t.n_elements < 1 << 20 {
                    let _ = f.dequantize(t);
                }
            }
        }
    }
}
