//! GPT-2's byte ↔ unicode table (`bytes_to_unicode` in openai/gpt-2 `encoder.py`): printable
//! bytes map to themselves, the other 68 to U+0100 onwards, so every byte sequence becomes a
//! printable string. Decoding a token maps its characters back to bytes.

/// Whether byte `b` stands for itself in the table (the printable ones).
fn printable(b: u32) -> bool {
    (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
}

/// The character byte `b` is spelled with in a byte-level token (inverse of `char_to_byte`).
pub fn byte_char(b: u8) -> char {
    if printable(b as u32) {
        return b as char;
    }
    let n = (0u32..b as u32).filter(|&x| !printable(x)).count() as u32;
    // n < 68: U+0100..U+0143 are all characters.
    char::from_u32(0x100 + n).unwrap_or('?')
}

/// The byte a token character stands for.
fn char_to_byte(c: char) -> Option<u8> {
    let c = c as u32;
    if c < 0x100 && printable(c) {
        return Some(c as u8);
    }
    // The non-printable bytes, in order, were given U+0100, U+0101, …
    let n = c.checked_sub(0x100)?;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(n as usize)
        .map(|b| b as u8)
}

/// A byte-level token's bytes (characters outside the table are kept as UTF-8).
pub fn token_bytes(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// Turns a stream of token bytes into text, holding bytes that end in the middle of a UTF-8
/// character until the character is complete. Reuses its buffer: no allocation once warm.
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    out: String,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> &str {
        self.pending.extend_from_slice(bytes);
        self.out.clear();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.out.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // infallible: from_utf8 vouched for the first `good` bytes
                    self.out
                        .push_str(std::str::from_utf8(&self.pending[..good]).unwrap_or(""));
                    match e.error_len() {
                        // An incomplete character at the end: hold it.
                        None => {
                            self.pending.drain(..good);
                            break;
                        }
                        // Invalid bytes: replace them and go on.
                        Some(bad) => {
                            self.out.push('\u{fffd}');
                            self.pending.drain(..good + bad);
                        }
                    }
                }
            }
        }
        &self.out
    }

    /// Whatever is still held (an incomplete character) as replacement text.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_every_byte() {
        // Ġ (U+0120) is the space, Ċ (U+010A) the newline.
        assert_eq!(token_bytes("Ġhello"), b" hello");
        assert_eq!(token_bytes("Ċ"), b"\n");
        let printable = |b: u32| {
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
        };
        let mut next = 0x100u32;
        for b in 0u32..256 {
            let c = if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            };
            assert_eq!(char_to_byte(c), Some(b as u8), "byte {b}");
        }
    }

    #[test]
    fn stream_holds_partial_characters() {
        let mut d = StreamDecoder::new();
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(d.push(&euro[..1]), "");
        assert_eq!(d.push(&euro[1..2]), "");
        assert_eq!(d.push(&[euro[2], b'!']), "€!");
        assert_eq!(d.push(&[0xff, b'a']), "\u{fffd}a");
        d.push(&euro[..2]);
        assert_eq!(d.finish(), "\u{fffd}");
    }
}
