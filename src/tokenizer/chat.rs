//! Chat templates: a model file's `tokenizer.chat_template` (Jinja) rendered with the
//! conversation so far. The template is untrusted text from a downloaded file, so it runs
//! with bounded fuel and recursion and no filesystem (minijinja reaches none unless given a
//! loader), and any failure is an error, never a hang or a panic. Memory is not bounded
//! here: one instruction can build a string of gigabytes, and allocation failure aborts.
//! `qgraph chat` therefore calls this in a child process under `setrlimit`
//! (`cli/sandbox.rs`); call it in-process only on templates you trust.

/// One message of a conversation.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Instructions a chat template may run per rendering: real templates take a few thousand
/// for a long conversation; a hostile one (a loop over `range(10**9)`) stops here, in well
/// under a second, with an error instead of running forever.
const TEMPLATE_FUEL: u64 = 2_000_000;
/// Nesting depth of macro calls and includes a template may reach.
const TEMPLATE_RECURSION: usize = 64;

/// A template that could not be parsed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("parsing the chat template: {0}")]
    Parse(minijinja::Error),
    #[error("rendering the chat template: {0}")]
    Render(minijinja::Error),
}

/// Renders `template` for `messages`, ending with the assistant's turn opened
/// (`add_generation_prompt`), as llama.cpp's and Hugging Face's chat tools do.
pub fn render(
    template: &str,
    messages: &[Message],
    bos: &str,
    eos: &str,
) -> Result<String, ChatTemplateError> {
    render_with_fuel(template, messages, bos, eos, TEMPLATE_FUEL)
}

/// `render` with another instruction budget (the fuzz target runs on a smaller one, so an
/// input that only burns fuel ends fast under the sanitizers).
pub fn render_with_fuel(
    template: &str,
    messages: &[Message],
    bos: &str,
    eos: &str,
    fuel: u64,
) -> Result<String, ChatTemplateError> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(fuel));
    env.set_recursion_limit(TEMPLATE_RECURSION);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(ChatTemplateError::Parse)?;
    let tmpl = env.get_template("chat").map_err(ChatTemplateError::Parse)?;
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    })
    .map_err(ChatTemplateError::Render)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<Message> {
        vec![Message {
            role: "user".into(),
            content: "hi".into(),
        }]
    }

    #[test]
    fn a_real_template_renders() {
        let t = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
                 {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let out = render(t, &msgs(), "", "").unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn hostile_templates_stop_with_an_error() {
        let start = std::time::Instant::now();
        let endless =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let e = render(endless, &msgs(), "", "").unwrap_err();
        assert!(format!("{e} {:?}", e).contains("fuel"), "{e}");
        let deep = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(render(deep, &msgs(), "", "").is_err());
        let broken = "{% for m in messages %}";
        let e = render(broken, &msgs(), "", "").unwrap_err();
        assert!(e.to_string().contains("chat template"), "{e}");
        assert!(
            start.elapsed().as_secs() < 5,
            "rejected in {:?}",
            start.elapsed()
        );
    }

    /// Found by fuzzing (`fuzz/regressions/chat_template/`): a macro that calls itself
    /// five times per level, eight levels deep. Fuel stops it (293 ms in a release build on
    /// the AVX2-only EPYC VM; seconds under the fuzzer's sanitizers).
    #[test]
    fn branching_recursion_runs_out_of_fuel() {
        let t = include_bytes!(
            "../../fuzz/regressions/chat_template/timeout-2af5634e98ffcb0af6bc83543725da6a1ad3ad05"
        );
        let e = render(&String::from_utf8_lossy(t), &msgs(), "", "").unwrap_err();
        assert!(format!("{e:?}").contains("OutOfFuel"), "{e:?}");
        let t = include_bytes!(
            "../../fuzz/regressions/chat_template/slow-unit-0d8cf07fd6e4a6bc22635dff99ae1c0981acde0e"
        );
        // Ends (with a 7 MB prompt): bounded work, if more than a real template needs.
        assert!(render(&String::from_utf8_lossy(t), &msgs(), "", "").is_ok());
    }
}
