//! SentencePiece tokenization (Gemma 3 270M's vocabulary: 262144 pieces with scores, byte
//! fallback, no space prefix, BOS added) against llama.cpp's, from
//! tests/golden/gemma3/tokenize.json (scripts/make-golden gemma3-tokenize).

mod common;

use qgraph::gguf::GgufFile;
use qgraph::tokenizer::Tokenizer;

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    special: bool,
    add_bos: bool,
    ids: Vec<u32>,
    detokenized: String,
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

fn golden() -> Golden {
    serde_json::from_str(include_str!("golden/gemma3/tokenize.json")).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&GgufFile::open(common::gemma3_model()).unwrap()).unwrap()
}

#[test]
fn encodes_every_golden_string_as_llama_cpp() {
    let golden = golden();
    assert!(golden.cases.len() >= 300);
    let tok = tokenizer();
    let mut failures = Vec::new();
    for c in &golden.cases {
        let ids = tok.encode(&c.text, c.special, c.add_bos).unwrap();
        if ids != c.ids {
            failures.push(format!(
                "{:?} (special {}, bos {}): ours {:?}, llama.cpp {:?}",
                c.text, c.special, c.add_bos, ids, c.ids
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
fn decodes_llama_cpp_ids_as_llama_cpp() {
    let tok = tokenizer();
    for c in &golden().cases {
        assert_eq!(tok.decode(&c.ids, true), c.detokenized, "{:?}", c.text);
    }
}

#[test]
fn bos_and_end_of_generation_come_from_the_file() {
    let tok = tokenizer();
    assert_eq!(tok.bos, Some(2));
    assert_eq!(tok.eos, Some(1));
    assert!(tok.add_bos);
    assert!(tok.is_end_of_generation(1));
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn shared() -> &'static Tokenizer {
        static TOK: OnceLock<Tokenizer> = OnceLock::new();
        TOK.get_or_init(tokenizer)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any text, special tokens left as text: encoding never fails and decoding gives the
        /// text back byte for byte (pieces or byte fallback cover every character; Gemma adds
        /// no space prefix). Except U+2581 itself: SentencePiece's space marker decodes to a
        /// space, in llama.cpp too (the golden `"\u{2581}"` case).
        #[test]
        fn decode_inverts_encode_on_any_text(text in "\\PC{0,40}|[ \\n\\ta-z<>]{0,40}") {
            prop_assume!(!text.contains('\u{2581}'));
            let tok = shared();
            let ids = tok.encode(&text, false, false).unwrap();
            prop_assert_eq!(tok.decode(&ids, false), text);
        }
    }
}
