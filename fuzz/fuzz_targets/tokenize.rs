//! Arbitrary text as a prompt, with and without special-token parsing: encoding must return
//! ids in the vocabulary (or an error), and decoding them must give back the text's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qgraph_fuzz::tiny_tokenizer;

fuzz_target!(|data: &[u8]| {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let tok = tiny_tokenizer();
    let special = flag & 1 == 1;
    if let Ok(ids) = tok.encode(text, special, false) {
        assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()));
        if !special {
            let back = tok.decode(&ids, true);
            assert_eq!(
                back.as_bytes(),
                text.as_bytes(),
                "byte-level BPE round-trips"
            );
        }
    }
});
