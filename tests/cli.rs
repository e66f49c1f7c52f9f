//! `qgraph inspect` as a user runs it.

mod common;

use std::process::Command;

fn qgraph(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qgraph"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn inspect_real_model_text() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&["inspect", model.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("GGUF v3:"), "{out}");
    assert!(out.contains("272 tensors"));
    assert!(out.contains("llama.block_count (u32) = 30"));
    // Long arrays are summarised: length and first items.
    assert!(out
        .contains("tokenizer.ggml.tokens (array of string) = [string; 49152] [\"<|endoftext|>\""));
    assert!(out.contains("  Q4_1    210 tensors"));
    assert!(out.contains("  F32      61 tensors"));
    assert!(out.contains("  Q8_0      1 tensors"));
    assert!(out.contains("token_embd.weight          Q8_0   [576, 49152]"));
}

#[test]
fn inspect_real_model_json() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&["inspect", "--json", model.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 272);
    let q41 = tensors.iter().filter(|t| t["dtype"] == "Q4_1").count();
    assert_eq!(q41, 210);
    assert_eq!(v["metadata"]["llama.block_count"], 30);
    assert_eq!(v["metadata"]["tokenizer.ggml.tokens"]["len"], 49152);
    assert_eq!(v["totals"]["Q8_0"]["bytes"], 30081024);
}

#[test]
fn inspect_reports_bad_files_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00\x01").unwrap();
    let (ok, _, err) = qgraph(&["inspect", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.gguf") && err.contains("byte 8") && err.contains("tensor count"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let (ok, _, err) = qgraph(&["inspect", "/no/such/model.gguf"]);
    assert!(!ok);
    assert!(err.contains("/no/such/model.gguf"), "{err}");
}

#[test]
fn check_real_model() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&[
        "check",
        "graphs/llama.toml",
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for want in [
        "n_layer    = 30",
        "n_embd     = 576",
        "n_head     = 9",
        "n_kv_head  = 3",
        "head_dim   = 64",
        "n_ff       = 1536",
        "n_vocab    = 49152",
        "weights: 272 tensors bound",
    ] {
        assert!(out.contains(want), "missing `{want}` in\n{out}");
    }
}

#[test]
fn check_reports_graph_errors_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    let src = include_str!("../graphs/llama.toml").replace(r#"op = "silu""#, r#"op = "swish""#);
    std::fs::write(&path, &src).unwrap();
    let line = src.lines().position(|l| l.contains("swish")).unwrap() + 1;
    let model = common::real_model();
    let (ok, _, err) = qgraph(&[
        "check",
        path.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains(&format!("broken.toml:{line}:")) && err.contains("unknown op `swish`"),
        "{err}"
    );
}

#[test]
fn graph_dot() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&[
        "graph",
        "graphs/llama.toml",
        "-m",
        model.to_str().unwrap(),
        "--format",
        "dot",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("digraph") && out.contains("(× 29)"));
}
