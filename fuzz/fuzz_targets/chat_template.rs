//! Arbitrary text as a model's chat template: rendering must finish (bounded fuel and
//! recursion) with a prompt or an error, never panic or hang.
//!
//! Memory is bounded outside the renderer: `qgraph chat` runs it in a child process under
//! `setrlimit` (`cli/sandbox.rs`, tests/chat_sandbox.rs), because one instruction can build
//! gigabytes. Templates that reach the builtins able to do that (a namespace carried through
//! a loop, `indent`, `replace`, `center`, repetition) are skipped here: this target hunts
//! panics and hangs, not the allocations the sandbox stops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qgraph::tokenizer::chat::{render_with_fuel, Message};

/// Instructions per input: a tenth of `qgraph chat`'s budget, so fuel-bound inputs end
/// within the 5 s timeout under ASan.
const FUEL: u64 = 200_000;

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    if ["namespace", "indent", "replace", "center", "*"]
        .iter()
        .any(|w| template.contains(w))
    {
        return;
    }
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
    let _ = render_with_fuel(template, &messages, "<s>", "</s>", FUEL);
});
