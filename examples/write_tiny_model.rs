//! Writes a tiny GGUF with seeded random weights.
//!
//! ```sh
//! cargo run --example write_tiny_model -- /tmp/tiny.gguf [Q4_0|Q4_1|Q8_0|F16|F32] [ARCH]
//! cargo run --release -- inspect /tmp/tiny.gguf
//! ```
//!
//! ARCH: `llama` (the default), `llama3`, `qwen2`, `olmo2` (window 8 on 3 of every 4
//! layers) or `olmo2-swa` (window 8 on every layer, Mistral-style). The architectures but
//! `llama` are the ones `tests/agreement_tiny.rs` checks against llama.cpp.

use qgraph::gguf::tiny::TinyLlama;
use qgraph::quant::GgmlType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "tiny.gguf".into());
    let dtype = match args.next().as_deref() {
        None | Some("Q4_1") => GgmlType::Q4_1,
        Some("Q4_0") => GgmlType::Q4_0,
        Some("Q8_0") => GgmlType::Q8_0,
        Some("F16") => GgmlType::F16,
        Some("F32") => GgmlType::F32,
        Some(other) => {
            return Err(format!("unknown format {other}: use Q4_0, Q4_1, Q8_0, F16 or F32").into())
        }
    };
    let model = match args.next().as_deref() {
        None | Some("llama") => TinyLlama {
            dtype,
            ..TinyLlama::default()
        },
        Some(arch) => qgraph::gguf::tiny::reference_model(arch, dtype).ok_or_else(|| {
            format!("unknown architecture {arch}: use llama, llama3, qwen2, olmo2 or olmo2-swa")
        })?,
    };
    model.writer()?.write(&path)?;
    println!("wrote {path}: {model:?}");
    Ok(())
}
