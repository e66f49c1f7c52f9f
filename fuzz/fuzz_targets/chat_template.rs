//! Arbitrary text as a model's chat template: rendering must finish (bounded fuel and
//! recursion) with a prompt or an error, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qgraph::tokenizer::chat::{render, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    let messages = [
        Message {
            role: "system".into(),
            content: "Be brief.".into(),
        },
        Message {
            role: "user".into(),
            content: "Hi <|im_end|> {{ x }}".into(),
        },
    ];
    let _ = render(template, &messages, "<s>", "</s>");
});
