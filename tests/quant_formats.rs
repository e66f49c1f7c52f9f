//! Every block format qgraph reads, against reference data from an independent
//! implementation (the `gguf` package's numpy dequantizers, `scripts/make-quant-ref`), bit
//! for bit; and every quantizer, by the error of its round trip.

use proptest::prelude::*;
use qgraph::quant::{dequantize, quantize, GgmlType};

const REF_TYPES: [GgmlType; 13] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Iq4Nl,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Xs,
    GgmlType::BF16,
];

fn golden(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/golden/quant/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn dequantization_is_bitwise_the_reference() {
    for t in REF_TYPES {
        let blocks = golden(&format!("{}.blocks", t.name()));
        let want: Vec<u32> = golden(&format!("{}.f32", t.name()))
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut got = vec![0f32; want.len()];
        dequantize(t, &blocks, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                *w,
                "{t} element {i} (block {}): {g} vs {}",
                i as u64 / t.block_len(),
                f32::from_bits(*w)
            );
        }
    }
}

/// Every quantizer writes the blocks ggml's writes (`ggml_quantize_chunk`, no importance
/// matrix) for the same input, byte for byte: files from `qgraph quantize` are llama-quantize's.
#[test]
fn quantizers_write_ggml_blocks_byte_for_byte() {
    let x: Vec<f32> = golden("quantize-input.f32")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut bad = Vec::new();
    for t in GgmlType::COMPUTABLE {
        if t == GgmlType::F32 {
            continue;
        }
        let want = golden(&format!("{}.ggml", t.name()));
        let got = quantize(t, &x).unwrap();
        assert_eq!(got.len(), want.len(), "{t}");
        let size = t.block_bytes() as usize;
        let differ: Vec<usize> = (0..want.len() / size)
            .filter(|&b| got[b * size..(b + 1) * size] != want[b * size..(b + 1) * size])
            .collect();
        if !differ.is_empty() {
            bad.push(format!("{t}: blocks {differ:?} of {}", want.len() / size));
        }
    }
    assert!(bad.is_empty(), "differ from ggml: {bad:#?}");
}

#[test]
fn every_computable_type_has_reference_data_or_is_plain() {
    for t in GgmlType::COMPUTABLE {
        assert!(
            REF_TYPES.contains(&t) || matches!(t, GgmlType::F32 | GgmlType::F16),
            "{t} has no reference data"
        );
    }
}

/// The worst error a format's round trip may have, as a fraction of the largest magnitude
/// in a block: about one step of its grid (generous for the simple K-quant fits).
fn tolerance(t: GgmlType) -> f32 {
    match t {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => 1e-3,
        GgmlType::BF16 => 8e-3,
        GgmlType::Q8_0 => 1.0 / 127.0,
        GgmlType::Q6K => 2.0 / 32.0,
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5K => 2.0 / 16.0,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K => 2.0 / 8.0,
        GgmlType::Iq4Nl | GgmlType::Iq4Xs => 0.25,
        GgmlType::Q3K => 0.35,
        GgmlType::Q2K => 0.6,
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn quantizers_round_trip_within_a_step(
        scale in prop::sample::select(vec![1e-6f32, 1e-2, 1.0, 300.0]),
        v in prop::collection::vec(-1.0f32..1.0, 512),
        zero_block in any::<bool>(),
    ) {
        let mut x: Vec<f32> = v.iter().map(|a| a * scale).collect();
        if zero_block {
            x[256..].iter_mut().for_each(|a| *a = 0.0);
        }
        for t in GgmlType::COMPUTABLE {
            let bytes = quantize(t, &x).unwrap();
            prop_assert_eq!(bytes.len() as u64, t.bytes_for(512).unwrap());
            let mut y = vec![0f32; 512];
            dequantize(t, &bytes, &mut y).unwrap();
            let n = t.block_len().max(32) as usize;
            for (c, (xs, ys)) in x.chunks(n).zip(y.chunks(n)).enumerate() {
                let amax = xs.iter().fold(0f32, |m, a| m.max(a.abs()));
                for (a, b) in xs.iter().zip(ys) {
                    prop_assert!(
                        // plus f16's subnormal floor: a scale below 2^-24 · 32 reads as 0
                        (a - b).abs() <= tolerance(t) * amax + 2e-6,
                        "{} block {}: {} vs {} (amax {})", t, c, a, b, amax
                    );
                }
            }
        }
    }
}

#[test]
fn non_finite_scales_are_read_as_the_format_says() {
    // A Q4_K block whose d is +inf and dmin NaN: values are inf/NaN, and nothing panics.
    let mut b = vec![0u8; 144];
    b[0..2].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
    b[2..4].copy_from_slice(&half::f16::NAN.to_le_bytes());
    b[4] = 1; // sub-block 0 scale 1
    b[16] = 0x11;
    let mut y = vec![0f32; 256];
    dequantize(GgmlType::Q4K, &b, &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_nan() || v.is_infinite()));
}
