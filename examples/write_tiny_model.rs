//! Writes a tiny llama-architecture GGUF with seeded random weights.
//!
//! ```sh
//! cargo run --example write_tiny_model -- /tmp/tiny.gguf [Q4_0|Q4_1|Q8_0|F16|F32]
//! cargo run --release -- inspect /tmp/tiny.gguf
//! ```

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
    let model = TinyLlama {
        dtype,
        ..TinyLlama::default()
    };
    model.writer()?.write(&path)?;
    println!("wrote {path}: {model:?}");
    Ok(())
}
