//! A tiny model of every weight format qgraph runs, through the whole pipeline (written by
//! the project's own GGUF writer and quantizers, planned, executed): at every kernel level
//! it runs, its SIMD logits agree with the scalar reference's, a prompt fed as a batch gives
//! bitwise what it gives token by token, and a mixture of formats plans with each step's
//! kernel named per format.

use std::sync::Arc;

use qgraph::exec::Session;
use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::GgufFile;
use qgraph::kernels::KernelLevel;
use qgraph::plan::{Plan, PlanOptions};
use qgraph::quant::GgmlType;

const VOCAB: usize = 96;

fn model(dtype: GgmlType, embd: GgmlType) -> Arc<GgufFile> {
    let tiny = TinyLlama {
        n_embd: 256,
        n_head: 4,
        n_kv_head: 2,
        n_ff: 512,
        dtype,
        embd_dtype: embd,
        untied_output: true,
        ..TinyLlama::default()
    };
    Arc::new(GgufFile::from_bytes(&tiny.writer().unwrap().to_bytes()).unwrap())
}

fn session(model: &Arc<GgufFile>, seq: usize, level: KernelLevel) -> Session {
    let g = qgraph::graph::parse(include_str!("../graphs/llama.toml"), "llama.toml")
        .unwrap()
        .bind(model)
        .unwrap();
    let opts = PlanOptions {
        seq,
        n_ctx: 32,
        level,
        ..PlanOptions::default()
    };
    Session::new(Arc::new(Plan::new(&g, model.clone(), &opts).unwrap())).unwrap()
}

const TOKENS: [u32; 6] = [5, 9, 11, 2, 40, 77];

fn stepwise(model: &Arc<GgufFile>, level: KernelLevel) -> Vec<f32> {
    let mut s = session(model, 1, level);
    TOKENS
        .iter()
        .flat_map(|&t| s.forward(&[t]).unwrap().to_vec())
        .collect()
}

#[test]
fn every_format_runs_and_agrees_with_the_scalar_reference() {
    let simd = qgraph::kernels::table::detect();
    for dtype in GgmlType::COMPUTABLE {
        let m = model(dtype, dtype);
        let reference = stepwise(&m, KernelLevel::Scalar);
        assert!(reference.iter().all(|v| v.is_finite()), "{dtype}");
        let ours = stepwise(&m, simd);
        // Logits are O(1): the 8-bit activations of the SIMD kernels move them by ~1e-2.
        for (p, (a, b)) in ours.chunks(VOCAB).zip(reference.chunks(VOCAB)).enumerate() {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                diff <= 0.05 * scale.max(1.0),
                "{dtype} at {simd:?}, position {p}: max difference {diff} (logits up to {scale})"
            );
        }
        // The same prompt as one batch: bitwise the same rows.
        let mut batch = session(&m, TOKENS.len(), simd);
        let all = batch.forward_all(&TOKENS).unwrap().to_vec();
        assert!(
            all.iter()
                .zip(&ours)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{dtype}: a batch differs from token by token"
        );
    }
}

#[test]
fn a_mixture_plans_with_a_kernel_per_format() {
    // Projections in Q4_K, the embedding in Q6_K: as a K-quant file mixes them.
    let m = model(GgmlType::Q4K, GgmlType::Q6K);
    let g = qgraph::graph::parse(include_str!("../graphs/llama.toml"), "llama.toml")
        .unwrap()
        .bind(&m)
        .unwrap();
    let plan = Plan::new(&g, m.clone(), &PlanOptions::default()).unwrap();
    let text = qgraph::plan::dump::text::to_text(&plan);
    let level = qgraph::kernels::table::detect();
    if level.has_avx2() {
        // The VNNI twin where the CPU has it (`table::gemv_panels`), else the AVX2 kernel.
        let q4k = if level == qgraph::kernels::KernelLevel::Avx512 {
            "gemv_q4_kx8_vnni"
        } else {
            "gemv_q4_kx8_avx2"
        };
        assert!(text.contains(q4k), "{text}");
        assert!(text.contains("embed_q6_k_scalar"), "{text}");
    }
    let mut s = Session::new(Arc::new(plan)).unwrap();
    assert!(s.forward(&[3, 4]).unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn a_format_without_kernels_is_a_plan_error_naming_the_tensor() {
    // An IQ2_XXS projection (66-byte blocks of 256): inspect lists it, planning refuses it.
    let mut w = TinyLlama {
        n_embd: 256,
        n_ff: 512,
        ..TinyLlama::default()
    }
    .writer()
    .unwrap();
    let t = w
        .tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.attn_q.weight")
        .unwrap();
    t.dtype = GgmlType::Iq2Xxs;
    t.data = vec![0u8; 256 * 256 / 256 * 66]; // 256 rows of one 66-byte block
    let m = Arc::new(GgufFile::from_bytes(&w.to_bytes()).unwrap());
    let g = qgraph::graph::parse(include_str!("../graphs/llama.toml"), "llama.toml")
        .unwrap()
        .bind(&m);
    let err = match g {
        Err(e) => e.to_string(),
        Ok(g) => Plan::new(&g, m.clone(), &PlanOptions::default())
            .map(|_| ())
            .unwrap_err()
            .to_string(),
    };
    assert!(
        err.contains("blk.0.attn_q.weight") && err.contains("IQ2_XXS"),
        "{err}"
    );
}
