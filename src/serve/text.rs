//! A request's generated text as it streams: bytes become text once they form whole
//! characters, and text that may be the start of a stop string is held back until it
//! either completes one (generation stops there, the stop string is not sent) or cannot.

use crate::tokenizer::StreamDecoder;

pub struct TextStream {
    decoder: StreamDecoder,
    stops: Vec<String>,
    /// Decoded text not sent yet: a suffix that some stop string starts with.
    held: String,
}

/// What one token's bytes gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text that can be sent (maybe empty).
    Text(String),
    /// A stop string completed: send this text, then stop.
    Stop(String),
}

impl TextStream {
    /// `stops`: strings that end generation (empty ones are ignored).
    pub fn new(stops: Vec<String>) -> TextStream {
        TextStream {
            decoder: StreamDecoder::new(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds a token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Piece {
        let new = self.decoder.push(bytes);
        self.held.push_str(new);
        if self.stops.is_empty() {
            return Piece::Text(std::mem::take(&mut self.held));
        }
        // The earliest stop string that now appears whole.
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            return Piece::Stop(out);
        }
        // Hold the longest suffix some stop string starts with; send the rest.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Piece::Text(out)
    }

    /// The text still held when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.held);
        rest.push_str(&self.decoder.finish());
        rest
    }
}

/// Bytes of the longest suffix of `text` (on a char boundary) that `stop` starts with,
/// shorter than `stop` itself.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let at = text.len() - n;
            text.is_char_boundary(at) && stop.as_bytes().starts_with(&text.as_bytes()[at..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut t = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            match t.push(p.as_bytes()) {
                Piece::Text(s) => out.push_str(&s),
                Piece::Stop(s) => {
                    out.push_str(&s);
                    return (out, true);
                }
            }
        }
        out.push_str(&t.finish());
        (out, false)
    }

    #[test]
    fn a_stop_string_across_tokens_ends_the_text_before_it() {
        assert_eq!(
            run(&["\nUser:"], &["Hi", " there", "\n", "Us", "er:", " more"]),
            ("Hi there".into(), true)
        );
        assert_eq!(
            run(&["END", "xy"], &["a", "bxy", "END"]),
            ("ab".into(), true)
        );
    }

    #[test]
    fn a_false_start_is_released() {
        // "\nU" is held until "n" shows it is not "\nUser:".
        let mut t = TextStream::new(vec!["\nUser:".into()]);
        assert_eq!(t.push(b"ok\nU"), Piece::Text("ok".into()));
        assert_eq!(t.push(b"nder"), Piece::Text("\nUnder".into()));
        assert_eq!(run(&["\nUser:"], &["a\nUs"]), ("a\nUs".into(), false));
    }

    #[test]
    fn multibyte_characters_and_no_stops() {
        let euro = "€".as_bytes();
        let mut t = TextStream::new(vec!["€!".into()]);
        assert_eq!(t.push(&euro[..2]), Piece::Text("".into()));
        assert_eq!(
            t.push(&euro[2..]),
            Piece::Text("".into()),
            "held: starts '€!'"
        );
        assert_eq!(t.push(b"!"), Piece::Stop("".into()));
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), false));
    }
}
