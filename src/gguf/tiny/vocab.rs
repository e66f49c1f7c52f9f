//! A small byte-level BPE vocabulary for tiny models, as llama.cpp's `gpt2` tokenizer wants
//! it: the 256 byte tokens in GPT-2's byte ↔ unicode spelling, a few dozen merges (common
//! English pairs, digit groups, an accented letter) and two control tokens. Small enough to
//! read, big enough that a pre-tokenizer's splits change the ids.

use crate::tokenizer::byte_char;

/// Merges in priority order, each of two tokens that exist by the time it applies.
const MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("i", "n"),
    ("e", "r"),
    ("a", "n"),
    ("o", "n"),
    ("r", "e"),
    ("Ġ", "a"),
    ("Ġt", "he"),
    ("e", "n"),
    ("a", "t"),
    ("o", "r"),
    ("Ġ", "s"),
    ("Ġ", "w"),
    ("Ġ", "o"),
    ("i", "s"),
    ("e", "s"),
    ("Ġ", "c"),
    ("Ġ", "b"),
    ("l", "l"),
    ("i", "t"),
    ("Ġ", "f"),
    ("Ġ", "p"),
    ("a", "r"),
    ("e", "d"),
    ("Ġ", "m"),
    ("in", "g"),
    ("Ġ", "d"),
    ("o", "u"),
    ("Ġ", "h"),
    ("Ġ", "i"),
    ("a", "l"),
    ("Ġ", "in"),
    ("Ġw", "or"),
    ("Ġwor", "l"),
    ("Ġworl", "d"),
    ("1", "2"),
    ("12", "3"),
    ("0", "0"),
    ("Ġ", "Ġ"),
    ("ĠĠ", "ĠĠ"),
    ("Ċ", "Ċ"),
    ("'", "s"),
    ("Ã", "©"),
];

/// The vocabulary: tokens (byte tokens first, id = byte), their llama.cpp token types (1
/// normal, 3 control), the merges as `"a b"`, and the ids of the two control tokens
/// `<|begin_of_text|>` and `<|end_of_text|>`.
pub struct BpeVocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    pub bos: u32,
    pub eos: u32,
}

pub fn bpe_vocab() -> BpeVocab {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut merges = Vec::with_capacity(MERGES.len());
    for (a, b) in MERGES {
        debug_assert!(tokens.iter().any(|t| t == a) && tokens.iter().any(|t| t == b));
        merges.push(format!("{a} {b}"));
        tokens.push(format!("{a}{b}"));
    }
    let mut types = vec![1; tokens.len()];
    let bos = tokens.len() as u32;
    tokens.push("<|begin_of_text|>".into());
    tokens.push("<|end_of_text|>".into());
    types.extend([3, 3]);
    BpeVocab {
        tokens,
        types,
        merges,
        bos,
        eos: bos + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens_spell_gpt2s_table() {
        let v = bpe_vocab();
        assert_eq!(v.tokens[b' ' as usize], "Ġ");
        assert_eq!(v.tokens[b'\n' as usize], "Ċ");
        assert_eq!(v.tokens[b'a' as usize], "a");
        for (b, t) in v.tokens.iter().take(256).enumerate() {
            assert_eq!(crate::tokenizer::token_bytes(t), vec![b as u8], "byte {b}");
        }
        let unique: std::collections::HashSet<_> = v.tokens.iter().collect();
        assert_eq!(unique.len(), v.tokens.len(), "every token is spelled once");
    }
}
