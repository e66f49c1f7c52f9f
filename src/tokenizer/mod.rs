//! The tokenizer a GGUF's `tokenizer.ggml.*` metadata describes: GPT-2 byte-level BPE
//! (`tokenizer.ggml.model = gpt2`), built in memory with the `tokenizers` crate, or a
//! SentencePiece vocabulary (`llama`, `spm.rs`); plus a streaming decoder that holds bytes
//! until a UTF-8 character is complete. Special tokens are split out of the text first, as
//! llama.cpp does: user-defined ones always, control ones when asked.
//!
//! The pre-tokenizer is the one `tokenizer.ggml.pre` names, as llama.cpp defines it
//! (`llama-vocab.cpp`): `smollm` (also `starcoder`, `refact`) splits every digit on its own,
//! then applies the GPT-2 regex; `gpt-2`/`default` apply the GPT-2 regex alone; `llama-bpe`
//! (`llama3`, `llama-v3`: Llama 3) and `qwen2` (`deepseek-r1-qwen`) split with their own
//! regexes (case-insensitive contractions, letters with one leading non-letter, digits in
//! runs of up to three or one by one, newline runs kept apart), then map bytes as GPT-2.

mod bytes;
pub mod chat;
pub mod spm;

pub use bytes::{byte_char, token_bytes, StreamDecoder};

use std::collections::HashMap;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::PreTokenizerWrapper;

use crate::gguf::{GgufError, GgufFile};

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model `{0}` is not supported (qgraph reads GPT-2 byte-level BPE, `gpt2`, and SentencePiece, `llama`)")]
    UnsupportedModel(String),
    #[error(
        "pre-tokenizer `{0}` is not supported (known: smollm, starcoder, refact, gpt-2, default, llama-bpe, llama3, qwen2)"
    )]
    UnsupportedPre(String),
    #[error(
        "tokenizer.ggml.merges entry {index} `{merge}` is not two tokens separated by a space"
    )]
    BadMerge { index: usize, merge: String },
    #[error("tokenizer.ggml.token_type has {types} entries for {tokens} tokens")]
    TypeCount { types: usize, tokens: usize },
    #[error("tokenizer.ggml.scores has {scores} entries for {tokens} tokens")]
    ScoreCount { scores: usize, tokens: usize },
    #[error("building the BPE model: {0}")]
    Build(String),
    #[error("encoding: {0}")]
    Encode(String),
}

/// How plain text (between special tokens) becomes ids.
enum Model {
    /// GPT-2 byte-level BPE.
    Bpe(Box<tokenizers::Tokenizer>),
    /// SentencePiece: `add_space_prefix` puts a space before text that starts the input or
    /// follows a special token (`tokenizer.ggml.add_space_prefix`, default true).
    Spm {
        spm: Box<spm::Spm>,
        add_space_prefix: bool,
    },
}

pub struct Tokenizer {
    model: Model,
    /// Control, user-defined and unknown tokens (`<|im_start|>`), longest text first, with
    /// their type: the text is split at them (user-defined ones always, the others when
    /// asked) and each piece between is encoded by the model (one BPE instance, not a
    /// second one with added tokens: that cost ~17 MiB).
    specials: Vec<(String, u32, i32)>,
    /// Each token's bytes (control tokens: their text), for decoding.
    pieces: Vec<Vec<u8>>,
    types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    /// Tokens that end a generation: EOS, plus `<|im_end|>`/`<|endoftext|>`/`<|eot_id|>`
    /// where the vocabulary has them.
    pub end_of_generation: Vec<u32>,
}

impl Tokenizer {
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let kind = f.get_str("tokenizer.ggml.model")?;
        if kind != "gpt2" && kind != "llama" {
            return Err(TokenizerError::UnsupportedModel(kind.to_string()));
        }
        let tokens = f.get_str_array("tokenizer.ggml.tokens")?;
        let types = match f.get_i32_array("tokenizer.ggml.token_type") {
            Ok(t) => t,
            Err(GgufError::MissingKey { .. }) => vec![token_type::NORMAL; tokens.len()],
            Err(e) => return Err(e.into()),
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::TypeCount {
                types: types.len(),
                tokens: tokens.len(),
            });
        }
        let model = if kind == "llama" {
            let scores = match f.get_f32_array("tokenizer.ggml.scores") {
                Ok(s) if s.len() == tokens.len() => s,
                Ok(s) => {
                    return Err(TokenizerError::ScoreCount {
                        scores: s.len(),
                        tokens: tokens.len(),
                    })
                }
                Err(GgufError::MissingKey { .. }) => vec![0.0; tokens.len()],
                Err(e) => return Err(e.into()),
            };
            Model::Spm {
                spm: Box::new(spm::Spm::new(&tokens, scores)),
                add_space_prefix: f
                    .get_bool("tokenizer.ggml.add_space_prefix")
                    .unwrap_or(true),
            }
        } else {
            Model::Bpe(Box::new(Self::bpe(f, &tokens)?))
        };
        Self::with_model(f, model, &tokens, &types)
    }

    /// The GPT-2 BPE of a `gpt2` vocabulary, with the pre-tokenizer `tokenizer.ggml.pre`
    /// names.
    fn bpe(f: &GgufFile, tokens: &[&str]) -> Result<tokenizers::Tokenizer, TokenizerError> {
        let pre = f.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" | "starcoder" | "refact" => Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, false, true).into(),
            ])
            .into(),
            "gpt-2" | "gpt2" | "default" => ByteLevel::new(false, false, true).into(),
            "llama-bpe" | "llama3" | "llama-v3" => split_then_bytes(LLAMA3_SPLIT)?,
            "qwen2" | "deepseek-r1-qwen" => split_then_bytes(QWEN2_SPLIT)?,
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        };
        let merges: Vec<(String, String)> = f
            .get_str_array("tokenizer.ggml.merges")?
            .iter()
            .enumerate()
            .map(|(index, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TokenizerError::BadMerge {
                        index,
                        merge: m.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let mut bpe = tokenizers::Tokenizer::new(model);
        bpe.with_pre_tokenizer(Some(pre_tokenizer));
        Ok(bpe)
    }

    fn with_model(
        f: &GgufFile,
        model: Model,
        tokens: &[&str],
        types: &[i32],
    ) -> Result<Tokenizer, TokenizerError> {
        let mut specials: Vec<(String, u32, i32)> = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (t, &ty))| {
                matches!(
                    ty,
                    token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN
                ) && !t.is_empty()
            })
            .map(|(i, (t, &ty))| (t.to_string(), i as u32, ty))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let spm = matches!(model, Model::Spm { .. });
        let pieces = tokens
            .iter()
            .zip(types)
            .map(|(t, &ty)| match ty {
                token_type::NORMAL if spm => t.replace(spm::SPACE, " ").into_bytes(),
                token_type::BYTE if spm => spm_byte(t).map_or_else(Vec::new, |b| vec![b]),
                token_type::UNKNOWN if spm => "\u{2585}".as_bytes().to_vec(),
                token_type::NORMAL | token_type::BYTE | token_type::UNKNOWN => {
                    bytes::token_bytes(t)
                }
                _ => t.as_bytes().to_vec(),
            })
            .collect();
        let id_of: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u32))
            .collect();
        let bos = f.get_u32("tokenizer.ggml.bos_token_id").ok();
        let eos = f.get_u32("tokenizer.ggml.eos_token_id").ok();
        let mut end_of_generation: Vec<u32> = eos.into_iter().collect();
        for t in [
            "<|im_end|>",
            "<|endoftext|>",
            "<|eot_id|>",
            "<|end_of_text|>",
        ] {
            if let Some(&id) = id_of.get(t) {
                if !end_of_generation.contains(&id) {
                    end_of_generation.push(id);
                }
            }
        }
        Ok(Tokenizer {
            model,
            specials,
            pieces,
            types: types.to_vec(),
            bos,
            eos,
            add_bos: f.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(false),
            end_of_generation,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.pieces.len()
    }

    /// Token ids for `text`; with `special`, special tokens written in the text (e.g.
    /// `<|im_start|>`) become their ids, as in llama.cpp's tools. Adds BOS only when the
    /// model's `tokenizer.ggml.add_bos_token` says so and `add_bos` asks for it.
    pub fn encode(
        &self,
        text: &str,
        special: bool,
        add_bos: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos && self.add_bos {
            ids.extend(self.bos);
        }
        let has_user_defined = self
            .specials
            .iter()
            .any(|s| s.2 == token_type::USER_DEFINED);
        let mut plain_from = 0;
        let mut at = 0;
        while (special || has_user_defined) && at < text.len() {
            match self.specials.iter().find(|(s, _, ty)| {
                (special || *ty == token_type::USER_DEFINED) && text[at..].starts_with(s.as_str())
            }) {
                Some((s, id, _)) => {
                    self.encode_plain(&text[plain_from..at], &mut ids)?;
                    ids.push(*id);
                    at += s.len();
                    plain_from = at;
                }
                // `at` is a char boundary below text.len(), so there is a next char.
                None => at += text[at..].chars().next().map_or(1, char::len_utf8),
            }
        }
        self.encode_plain(&text[plain_from..], &mut ids)?;
        Ok(ids)
    }

    /// Encodes text without special tokens. Such a piece always starts the input or follows
    /// a special token, so SentencePiece's `add_space_prefix` applies to each (llama.cpp).
    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        match &self.model {
            Model::Bpe(bpe) => {
                let enc = bpe
                    .encode_fast(text, false)
                    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                ids.extend_from_slice(enc.get_ids());
            }
            Model::Spm {
                spm,
                add_space_prefix,
            } => {
                let prefix = if *add_space_prefix { " " } else { "" };
                spm.encode(&spm::escape_spaces(&format!("{prefix}{text}")), ids);
            }
        }
        Ok(())
    }

    /// The bytes a token stands for. Control tokens give their text when `special`, else
    /// nothing (they are not text).
    pub fn token_bytes(&self, id: u32, special: bool) -> &[u8] {
        let Some(p) = self.pieces.get(id as usize) else {
            return &[];
        };
        let control = matches!(
            self.types[id as usize],
            token_type::CONTROL | token_type::UNUSED
        );
        if control && !special {
            &[]
        } else {
            p
        }
    }

    /// The text of a sequence of tokens (invalid UTF-8, which a cut sequence may hold, is
    /// replaced by U+FFFD).
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id, special).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }
}

/// The byte a SentencePiece byte piece (`<0x0A>`) stands for.
fn spm_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// Llama 3's pre-tokenizer split (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's (`LLAMA_VOCAB_PRE_TYPE_QWEN2`): Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Splits on `pattern` (each match its own piece), then maps bytes as GPT-2 does.
fn split_then_bytes(pattern: &str) -> Result<PreTokenizerWrapper, TokenizerError> {
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::SplitDelimiterBehavior;
    let split = Split::new(
        SplitPattern::Regex(pattern.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| TokenizerError::Build(e.to_string()))?;
    Ok(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, false, false).into(),
    ])
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::PreTokenizer;

    fn pieces(pattern: &str, text: &str) -> Vec<String> {
        let mut s = tokenizers::PreTokenizedString::from(text);
        split_then_bytes(pattern)
            .unwrap()
            .pre_tokenize(&mut s)
            .unwrap();
        s.get_splits(
            tokenizers::OffsetReferential::Original,
            tokenizers::OffsetType::Char,
        )
        .into_iter()
        .map(|(p, _, _)| p.to_string())
        .collect()
    }

    /// What SmolLM2's merges cannot show (it has no multi-digit tokens): Llama 3 groups
    /// digits by three, Qwen2 splits every one; both keep contractions case-insensitively.
    #[test]
    fn llama3_groups_digits_by_three_and_qwen2_splits_them() {
        assert_eq!(pieces(LLAMA3_SPLIT, "12345"), ["123", "45"]);
        assert_eq!(pieces(QWEN2_SPLIT, "12345"), ["1", "2", "3", "4", "5"]);
        assert_eq!(pieces(LLAMA3_SPLIT, "I'M"), ["I", "'M"]);
    }
}
