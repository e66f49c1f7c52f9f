//! SentencePiece vocabularies as GGUF stores them (`tokenizer.ggml.model = llama`: pieces
//! with scores, `<0xXX>` byte pieces), tokenized as llama.cpp does it (`llm_tokenizer_spm`):
//! spaces become `▁`, the text starts as one symbol per UTF-8 character, and the adjacent
//! pair whose concatenation is the highest-scoring piece (ties: leftmost) is merged until no
//! pair is a piece; a symbol that is no piece falls back to its bytes' `<0xXX>` pieces.
//!
//! Written here rather than taken from a crate: the `tokenizers` crate's SentencePiece
//! models (Unigram's Viterbi search, BPE's merge ranks) choose differently from this greedy
//! score order on some strings, and qgraph must tokenize exactly as llama.cpp.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The whitespace marker of SentencePiece pieces (U+2581).
pub const SPACE: &str = "\u{2581}";

pub struct Spm {
    /// Piece text → id (a text that appears twice maps to its last id, as in llama.cpp).
    id_of: HashMap<String, u32>,
    scores: Vec<f32>,
    /// `<0xXX>` piece of each byte, where the vocabulary has it.
    byte_piece: [Option<u32>; 256],
}

/// One symbol of the text being merged: a byte range and its neighbours in the chain.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbols `left` and `right` (adjacent when queued) into a piece.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The heap's top is the highest score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl Spm {
    pub fn new(tokens: &[&str], scores: Vec<f32>) -> Spm {
        let mut id_of = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            id_of.insert(t.to_string(), i as u32);
        }
        let byte_piece = std::array::from_fn(|b| id_of.get(&format!("<0x{b:02X}>")).copied());
        Spm {
            id_of,
            scores,
            byte_piece,
        }
    }

    pub fn id(&self, piece: &str) -> Option<u32> {
        self.id_of.get(piece).copied()
    }

    /// Appends the ids of `text` (spaces already escaped to `▁`) to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        let mut queue = BinaryHeap::new();
        let try_pair = |symbols: &[Symbol],
                        queue: &mut BinaryHeap<Bigram>,
                        left: Option<usize>,
                        right: Option<usize>| {
            let (Some(l), Some(r)) = (left, right) else {
                return;
            };
            let len = symbols[l].len + symbols[r].len;
            if let Some(&id) = self
                .id_of
                .get(&text[symbols[l].start..symbols[l].start + len])
            {
                queue.push(Bigram {
                    score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                    left: l,
                    right: r,
                    len,
                });
            }
        };
        for i in 1..symbols.len() {
            try_pair(&symbols, &mut queue, Some(i - 1), Some(i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Stale: one side was merged away or grew since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(b.left);
            }
            let left = symbols[b.left];
            try_pair(&symbols, &mut queue, left.prev, Some(b.left));
            try_pair(&symbols, &mut queue, Some(b.left), left.next);
        }
        // Every merge made a piece, so a final symbol is a piece or a single character
        // without one (llama.cpp's `resegment` then falls back to bytes; its look-up of
        // the pair a symbol was merged from can only succeed for pieces).
        let mut at = (!symbols.is_empty()).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.id_of.get(piece) {
                Some(&id) => out.push(id),
                // One `<0xXX>` piece per byte (a byte without one is dropped, as llama.cpp
                // cannot map it either).
                None => out.extend(piece.bytes().filter_map(|b| self.byte_piece[b as usize])),
            }
            at = s.next;
        }
    }
}

/// `text` with every space replaced by `▁`.
pub fn escape_spaces(text: &str) -> String {
    text.replace(' ', SPACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Spm {
        let tokens = [
            "<unk>", "<0x41>", "<0xE2>", "<0x96>", "<0x81>", "a", "b", "ab", "▁", "▁a", "c", "bc",
        ];
        let scores = vec![
            0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -2.0, -1.0, -3.0, -1.0, -1.5,
        ];
        Spm::new(&tokens, scores)
    }

    fn ids(text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        vocab().encode(&escape_spaces(text), &mut out);
        out
    }

    #[test]
    fn the_highest_scoring_pair_merges_first() {
        // "abc": bc (−1.5) beats ab (−2.0), so a + bc, not ab + c.
        assert_eq!(ids("abc"), vec![5, 11]);
        assert_eq!(ids("ab"), vec![7]);
        assert_eq!(ids(" a"), vec![9]);
    }

    #[test]
    fn characters_without_a_piece_fall_back_to_bytes() {
        // 'A' has only its byte piece; 'Z' has none and is dropped.
        assert_eq!(ids("A"), vec![1]);
        assert_eq!(ids("Z"), Vec::<u32>::new());
        assert_eq!(ids(""), Vec::<u32>::new());
    }
}
