//! `qgraph quantize` as a user runs it: the mixture it writes, and every way it refuses
//! before writing anything.

use std::path::Path;
use std::process::Command;

use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::GgufFile;
use qgraph::quant::GgmlType;

fn qgraph(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qgraph"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

/// A tiny model with 256-wide rows (so K-quants fit) in `dtype`, written to `path`.
fn tiny(path: &Path, dtype: GgmlType) {
    TinyLlama {
        n_layer: 8,
        n_embd: 256,
        n_ff: 512,
        dtype,
        embd_dtype: dtype,
        ..TinyLlama::default()
    }
    .writer()
    .unwrap()
    .write(path)
    .unwrap();
}

fn types(path: &Path) -> Vec<(String, GgmlType)> {
    let f = GgufFile::open(path).unwrap();
    f.tensors()
        .iter()
        .map(|t| (t.name.clone(), t.dtype))
        .collect()
}

#[test]
fn q4_k_m_mixture_from_an_f16_model() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("f16.gguf"), dir.path().join("q4km.gguf"));
    tiny(&src, GgmlType::F16);
    let (ok, err) = qgraph(&[
        "quantize",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "q4_k_m",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("MiB ->"), "{err}");
    let t = types(&out);
    let of = |name: &str| t.iter().find(|(n, _)| n == name).unwrap().1;
    // The tied embedding takes the output rule; attn_v and ffn_down get Q6_K in the first
    // eighth of layers (use_more_bits), Q4_K elsewhere; norms stay F32.
    assert_eq!(of("token_embd.weight"), GgmlType::Q6K);
    assert_eq!(of("blk.0.attn_v.weight"), GgmlType::Q6K);
    assert_eq!(of("blk.1.attn_v.weight"), GgmlType::Q4K);
    assert_eq!(of("blk.0.ffn_down.weight"), GgmlType::Q6K);
    assert_eq!(of("blk.1.ffn_down.weight"), GgmlType::Q4K);
    assert_eq!(of("blk.3.attn_q.weight"), GgmlType::Q4K);
    assert_eq!(of("blk.3.attn_norm.weight"), GgmlType::F32);
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.get_u32("general.file_type").unwrap(), 15);
    // It plans and runs.
    let model = std::sync::Arc::new(f);
    let g = qgraph::graph::parse(include_str!("../graphs/llama.toml"), "llama.toml")
        .unwrap()
        .bind(&model)
        .unwrap();
    let plan = qgraph::plan::Plan::new(&g, model, &qgraph::plan::PlanOptions::default()).unwrap();
    let mut s = qgraph::exec::Session::new(std::sync::Arc::new(plan)).unwrap();
    assert!(s.forward(&[1, 2, 3]).unwrap().iter().all(|v| v.is_finite()));
    // --pure: every matrix in the base format.
    let pure = dir.path().join("pure.gguf");
    let (ok, err) = qgraph(&[
        "quantize",
        "--pure",
        src.to_str().unwrap(),
        pure.to_str().unwrap(),
        "Q4_K_M",
    ]);
    assert!(ok, "{err}");
    assert!(types(&pure)
        .iter()
        .all(|(n, t)| n.contains("norm") || *t == GgmlType::Q4K));
}

#[test]
fn refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("q4_1.gguf");
    tiny(&src, GgmlType::Q4_1);
    let out = dir.path().join("out.gguf");
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    let cases: [(&[&str], &str); 5] = [
        (&["quantize", s, o, "Q4_K_M"], "--allow-requantize"),
        (
            &["quantize", s, o, "Q9_K"],
            "unknown file type `Q9_K` (types: Q4_0",
        ),
        (&["quantize", s, o, "IQ2_XXS"], "importance matrix"),
        (
            &["quantize", "--allow-requantize", s, s, "Q8_0"],
            "is the input file",
        ),
        (
            &["quantize", "--allow-requantize", "-t", "0", s, o, "Q8_0"],
            "--threads 0",
        ),
    ];
    for (args, want) in cases {
        let (ok, err) = qgraph(args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
        assert!(!dir.path().join("out.gguf.partial").exists());
    }
    // With the flag, the requantized file is complete and in place.
    let (ok, err) = qgraph(&["quantize", "--allow-requantize", s, o, "Q8_0"]);
    assert!(ok, "{err}");
    assert!(types(&out).iter().any(|(_, t)| *t == GgmlType::Q8_0));
}

#[test]
fn rows_that_fit_no_block_and_no_fallback_are_refused() {
    // 40-wide rows fit neither Q4_0's 32-blocks nor anything Q4_0 could fall back to.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("odd.gguf");
    let mut w = qgraph::gguf::GgufWriter::new();
    w.set_str("general.architecture", "llama");
    w.add_tensor("blk.0.attn_q.weight", &[40, 2], GgmlType::F32, &[0.5; 80])
        .unwrap();
    w.write(&src).unwrap();
    let out = dir.path().join("out.gguf");
    let (ok, err) = qgraph(&[
        "quantize",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "Q4_0",
    ]);
    assert!(
        !ok && err.contains("blk.0.attn_q.weight") && err.contains("40"),
        "{err}"
    );
    assert!(!out.exists());
}
