//! The tokenizer against llama.cpp's tokenization of the real model (tests/golden/tokenize.json,
//! made by scripts/make-golden from llama-cpp-python).

mod common;

use qgraph::gguf::GgufFile;
use qgraph::tokenizer::{StreamDecoder, Tokenizer};

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    special: bool,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&GgufFile::open(common::real_model()).unwrap()).unwrap()
}

#[test]
fn matches_llama_cpp_on_every_golden_string() {
    let golden: Golden = serde_json::from_str(include_str!("golden/tokenize.json")).unwrap();
    assert!(golden.cases.len() >= 40);
    let tok = tokenizer();
    let mut failures = Vec::new();
    for c in &golden.cases {
        let ids = tok.encode(&c.text, c.special, false).unwrap();
        if ids != c.ids {
            failures.push(format!(
                "{:?} (special {}): ours {:?}, llama.cpp {:?}",
                c.text, c.special, ids, c.ids
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        golden.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn decode_inverts_encode() {
    let golden: Golden = serde_json::from_str(include_str!("golden/tokenize.json")).unwrap();
    let tok = tokenizer();
    for c in &golden.cases {
        let ids = tok.encode(&c.text, c.special, false).unwrap();
        assert_eq!(tok.decode(&ids, true), c.text, "{:?}", c.text);
    }
}

#[test]
fn streaming_decode_equals_whole_decode() {
    let tok = tokenizer();
    let text = "Emoji 👨‍👩‍👧 and 日本語, naïve café — done.";
    let ids = tok.encode(text, false, false).unwrap();
    let mut d = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &ids {
        let piece = d.push(tok.token_bytes(id, false)).to_string();
        // Never a replacement character: partial characters are held back.
        assert!(!piece.contains('\u{fffd}'), "{piece:?}");
        streamed.push_str(&piece);
    }
    streamed.push_str(&d.finish());
    assert_eq!(streamed, text);
}

#[test]
fn special_tokens_and_bos() {
    let tok = tokenizer();
    assert_eq!(
        tok.encode("<|im_start|>", true, true).unwrap(),
        [1],
        "no BOS: add_bos_token is false"
    );
    assert!(tok.encode("<|im_start|>", false, false).unwrap().len() > 1);
    assert!(tok.is_end_of_generation(2), "<|im_end|>");
    assert!(tok.is_end_of_generation(0), "<|endoftext|>");
    assert_eq!(tok.token_bytes(2, false), b"");
    assert_eq!(tok.token_bytes(2, true), b"<|im_end|>");
}

#[derive(serde::Deserialize)]
struct PreGolden {
    pre: std::collections::BTreeMap<String, Vec<Case>>,
}

/// The BPE pre-tokenizers of Llama 3 (`llama-bpe`) and Qwen2 against llama.cpp's, on
/// SmolLM2's vocabulary and merges with `tokenizer.ggml.pre` replaced (tests/golden/pretok.json,
/// `scripts/make-golden pretok`): the same file rewritten by qgraph's GGUF writer.
#[test]
fn llama3_and_qwen2_pre_tokenizers_match_llama_cpp() {
    let golden: PreGolden = serde_json::from_str(include_str!("golden/pretok.json")).unwrap();
    let real = GgufFile::open(common::real_model()).unwrap();
    for (pre, cases) in &golden.pre {
        let mut w = qgraph::gguf::GgufWriter::new();
        for e in real.metadata() {
            let v = match e.key.as_str() {
                "tokenizer.ggml.pre" => qgraph::gguf::Value::Str(pre.clone()),
                _ => e.value.clone(),
            };
            w.set(&e.key, v);
        }
        let tok = Tokenizer::from_gguf(&GgufFile::from_bytes(&w.to_bytes()).unwrap()).unwrap();
        let mut failures = Vec::new();
        for c in cases {
            let ids = tok.encode(&c.text, c.special, false).unwrap();
            if ids != c.ids {
                failures.push(format!(
                    "{:?}: ours {:?}, llama.cpp {:?}",
                    c.text, ids, c.ids
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{pre}: {} of {} differ:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}
