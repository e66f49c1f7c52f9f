//! A model whose chat template is hostile: `qgraph chat` stops it with a clear error (the
//! template renders in a child process under memory and CPU limits), never an abort.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use qgraph::gguf::{GgufFile, GgufWriter, Value};

/// The real model with `template` as its `tokenizer.chat_template`, written to `path`.
fn with_template(path: &std::path::Path, template: &str) {
    let src = GgufFile::open(common::real_model()).unwrap();
    let mut w = GgufWriter::new();
    for e in src.metadata() {
        let v = if e.key == "tokenizer.chat_template" {
            Value::Str(template.to_string())
        } else {
            e.value.clone()
        };
        if e.key != "general.alignment" {
            w.set(&e.key, v);
        }
    }
    let infos: Vec<_> = src
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.dims.clone(), t.dtype, t.n_bytes))
        .collect();
    w.write_streamed::<std::io::Error>(path, &infos, |i| {
        Ok(src.tensor_bytes(&src.tensors()[i]).to_vec())
    })
    .unwrap();
}

fn chat(model: &std::path::Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qgraph"))
        .args([
            "chat",
            "-m",
            model.to_str().unwrap(),
            "-n",
            "4",
            "--temp",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hostile_templates_are_stopped_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("hostile.gguf");
    let cases = [
        // A string doubled 34 times: 16 GiB from a few hundred instructions.
        (
            "{% set ns = namespace(s='x') %}{% for i in range(34) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            "exceeded its budget",
        ),
        ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "fuel"),
        ("{% for m in messages %}", "chat template"),
    ];
    for (template, want) in cases {
        with_template(&model, template);
        let (ok, err) = chat(&model);
        assert!(!ok && err.contains(want), "{template}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("memory allocation"),
            "{err}"
        );
    }
    // A sound template still chats.
    with_template(
        &model,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n",
    );
    let (ok, err) = chat(&model);
    assert!(ok, "{err}");
}
