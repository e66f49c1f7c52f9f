//! What the fuzz targets share: a tiny llama model (written by qgraph's own GGUF writer) and
//! its tokenizer, made once per process.

use std::sync::{Arc, OnceLock};

use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::{GgufFile, Value, ValueType};
use qgraph::tokenizer::Tokenizer;

pub fn tiny_model_arc() -> Arc<GgufFile> {
    static MODEL: OnceLock<Arc<GgufFile>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let bytes = TinyLlama::default()
                .writer()
                .expect("the tiny model writes")
                .to_bytes();
            Arc::new(GgufFile::from_bytes(&bytes).expect("the tiny model parses"))
        })
        .clone()
}

pub fn tiny_model() -> &'static GgufFile {
    static MODEL: OnceLock<Arc<GgufFile>> = OnceLock::new();
    MODEL.get_or_init(tiny_model_arc)
}

/// GPT-2's byte → printable character map (every byte gets a visible code point).
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    if printable(b) {
        return b as char;
    }
    let shifted = (0..b).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + shifted).unwrap_or('?')
}

/// A small GPT-2 byte-level vocabulary (SmolLM's pre-tokenizer): three special tokens, all
/// 256 bytes, and merges for a few common pairs, so BPE merges, byte fallback for any UTF-8
/// and special-token splitting are all exercised.
pub fn tiny_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .map(String::from)
            .to_vec();
        let mut types = vec![3i32; 3];
        tokens.extend((0..=255u8).map(|b| byte_char(b).to_string()));
        types.extend(std::iter::repeat_n(1, 256));
        let space = byte_char(b' ');
        let merges: Vec<String> = [("h", "e"), ("t", "he"), ("i", "n"), ("e", "r")]
            .iter()
            .map(|(a, b)| format!("{a} {b}"))
            .chain([format!("{space} t"), format!("{space}t he")])
            .collect();
        for m in &merges {
            tokens.push(m.replace(' ', ""));
            types.push(1);
        }
        let mut w = qgraph::gguf::GgufWriter::new();
        w.set_str("tokenizer.ggml.model", "gpt2");
        w.set_str("tokenizer.ggml.pre", "smollm");
        w.set_str_array("tokenizer.ggml.tokens", &tokens);
        w.set_str_array("tokenizer.ggml.merges", &merges);
        w.set_u32("tokenizer.ggml.eos_token_id", 2);
        let types = types.into_iter().map(Value::I32).collect();
        w.set(
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types),
        );
        let file = GgufFile::from_bytes(&w.to_bytes()).expect("the vocabulary parses");
        Tokenizer::from_gguf(&file).expect("the vocabulary builds")
    })
}
