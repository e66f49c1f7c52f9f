//! The official `openai` Python client against `qgraph serve` (scripts/test-serve-openai:
//! a venv with the pinned client, the server on a free loopback port, the real model).
//! A failure to install the client fails the test: a skipped check would hide it.

#[test]
fn the_openai_python_client_works_against_qgraph_serve() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/scripts/test-serve-openai"))
        .arg(env!("CARGO_BIN_EXE_qgraph"))
        .output()
        .expect("running scripts/test-serve-openai");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
}
