#![allow(dead_code)]
//! Helpers shared by the integration tests.

pub mod golden;
pub mod server;

use std::path::PathBuf;
use std::sync::OnceLock;

/// The real model. When it is not cached yet, `scripts/fetch-model` fetches it (once per
/// test binary), so `cargo test` works from a clean clone; a fetch that fails fails the
/// test loudly, because a skipped test would hide a broken setup.
pub fn real_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| fetched("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
        .clone()
}

/// Gemma 3 270M Q4_K_M (a SentencePiece vocabulary), fetched like `real_model`.
pub fn gemma3_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| fetched("gemma3-270m", "gemma-3-270m-q4_k_m.gguf"))
        .clone()
}

/// The cached `file`, fetched with `scripts/fetch-model which` when missing.
fn fetched(which: &str, file: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("QGRAPH_MODELS").map_or(root.join("models"), PathBuf::from);
    let path = dir.join(file);
    if !path.exists() {
        let status = std::process::Command::new(root.join("scripts/fetch-model"))
            .arg(which)
            .status()
            .expect("scripts/fetch-model could not be started");
        assert!(
            status.success(),
            "scripts/fetch-model {which} failed: the model is needed"
        );
    }
    assert!(
        path.exists(),
        "{} is missing after scripts/fetch-model {which}",
        path.display()
    );
    path
}

/// The real model requantized to `ftype` by `qgraph quantize` (made once, beside the real
/// model, and reused), after checking its sha256 against `want_sha256`: the file the golden
/// data of tests/golden/FTYPE was made from with llama.cpp.
pub fn requantized(ftype: &str, want_sha256: &str) -> PathBuf {
    // Tests of one binary run in parallel and several want the same file: one makes it
    // while the others wait, and it is written under a name of this process's own, then
    // renamed, so no test (and no other test binary) ever sees it half made.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let src = real_model();
    let path = src.with_file_name(format!("SmolLM2-135M-Instruct.qgraph-{ftype}.gguf"));
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let tmp = path.with_extension(format!("{}.gguf", std::process::id()));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_qgraph"))
            .args(["quantize", "--allow-requantize"])
            .arg(&src)
            .arg(&tmp)
            .arg(ftype)
            .output()
            .expect("qgraph could not be started");
        assert!(
            out.status.success(),
            "qgraph quantize {ftype} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &path).expect("renaming the requantized file into place");
    }
    assert_eq!(
        sha256_file(&path),
        want_sha256.trim(),
        "{} is not the file the golden data was made from",
        path.display()
    );
    path
}

/// A file's sha256, hex. python3 is what CI already needs (scripts/fetch-model checks its
/// sha256 the same way).
pub fn sha256_file(path: &std::path::Path) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())",
        ])
        .arg(path)
        .output()
        .expect("python3 could not be started");
    let got = String::from_utf8_lossy(&out.stdout);
    got.split_whitespace().next().unwrap_or("").to_string()
}
