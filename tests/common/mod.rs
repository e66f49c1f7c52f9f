#![allow(dead_code)]
//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The real model. When it is not cached yet, `scripts/fetch-model` fetches it (once per
/// test binary), so `cargo test` works from a clean clone; a fetch that fails fails the
/// test loudly, because a skipped test would hide a broken setup.
pub fn real_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::var_os("QGRAPH_MODELS").map_or(root.join("models"), PathBuf::from);
        let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.exists() {
            let status = std::process::Command::new(root.join("scripts/fetch-model"))
                .status()
                .expect("scripts/fetch-model could not be started");
            assert!(
                status.success(),
                "scripts/fetch-model failed: the real model is needed"
            );
        }
        assert!(
            path.exists(),
            "{} is missing after scripts/fetch-model",
            path.display()
        );
        path
    })
    .clone()
}
