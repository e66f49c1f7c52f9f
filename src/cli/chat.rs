//! `qgraph chat`: an interactive conversation that renders the model's own chat template
//! (`tokenizer.chat_template`, a Jinja template) and keeps the KV cache across turns: each
//! turn feeds only the tokens the context does not hold yet.

use std::io::{BufRead, Write};

use anyhow::{bail, Context};
use qgraph::sample::Sampler;
use qgraph::tokenizer::StreamDecoder;

use super::engine::{Engine, EngineArgs};
use super::run::SamplingArgs;

#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    threads: super::engine::ThreadArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message to start the conversation with.
    #[arg(long)]
    system: Option<String>,
    /// Tokens to generate at most per answer.
    #[arg(short = 'n', long, default_value_t = 512)]
    n_predict: usize,
}

#[derive(serde::Serialize, Clone)]
struct Message {
    role: String,
    content: String,
}

/// Instructions a chat template may run per rendering: real templates take a few thousand
/// for a long conversation; a hostile one (a loop over `range(10**9)`) stops here, in well
/// under a second, with an error instead of running forever.
const TEMPLATE_FUEL: u64 = 2_000_000;
/// Nesting depth of macro calls and includes a template may reach.
const TEMPLATE_RECURSION: usize = 64;

/// Renders a chat template from a model file: sandboxed (bounded fuel and recursion, no
/// filesystem access: minijinja has none unless given a loader).
fn render(template: &str, messages: &[Message], bos: &str, eos: &str) -> anyhow::Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
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
        .context("parsing the model's chat template")?;
    let tmpl = env.get_template("chat")?;
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    })
    .context("rendering the model's chat template")
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let mut e = Engine::new(&args.engine, 1, args.threads.resolve()?)?;
    let template = e
        .model
        .get_str("tokenizer.chat_template")
        .context("this model has no tokenizer.chat_template: use `qgraph run`")?
        .to_string();
    let name = |id: Option<u32>| {
        id.map(|i| e.tokenizer.decode(&[i], true))
            .unwrap_or_default()
    };
    let (bos, eos) = (name(e.tokenizer.bos), name(e.tokenizer.eos));
    let mut sampler = Sampler::new(args.sampling.config()?, e.session.n_vocab());
    let mut messages: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message {
            role: "system".into(),
            content: s.clone(),
        })
        .collect();
    // The tokens the KV cache holds, in order.
    let mut context: Vec<u32> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    let mut line = String::new();
    loop {
        if interactive {
            write!(out, "\n> ")?;
            out.flush()?;
        }
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let user = line.trim_end_matches(['\n', '\r']).to_string();
        if user.is_empty() {
            continue;
        }
        messages.push(Message {
            role: "user".into(),
            content: user,
        });
        let prompt = render(&template, &messages, &bos, &eos)?;
        let tokens = e.tokenizer.encode(&prompt, true, true)?;
        // Reuse the cached prefix; recompute from the first token that differs.
        let common = context
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            // At least the last token is run again: its logits pick the first reply token.
            .min(tokens.len().saturating_sub(1));
        e.session.truncate(common);
        context.truncate(common);
        if tokens.len() >= e.n_ctx() {
            bail!(
                "the conversation is {} tokens and the context holds {} (raise --ctx)",
                tokens.len(),
                e.n_ctx()
            );
        }
        let mut logits = Vec::new();
        let new = &tokens[common..];
        for &t in new {
            sampler.accept(t);
            context.push(t);
        }
        // The new turn in one call: batched prefill.
        logits.extend_from_slice(e.session.forward(new)?);
        let mut decoder = StreamDecoder::new();
        let mut answer = Vec::new();
        for _ in 0..args.n_predict {
            let token = sampler.sample(&logits);
            sampler.accept(token);
            if e.tokenizer.is_end_of_generation(token) {
                break;
            }
            answer.push(token);
            out.write_all(
                decoder
                    .push(e.tokenizer.token_bytes(token, false))
                    .as_bytes(),
            )?;
            out.flush()?;
            if e.session.position() >= e.n_ctx() {
                eprintln!("\nqgraph: the context is full ({} tokens)", e.n_ctx());
                return Ok(());
            }
            logits.clear();
            logits.extend_from_slice(e.session.forward(&[token])?);
            context.push(token);
        }
        writeln!(out, "{}", decoder.finish())?;
        messages.push(Message {
            role: "assistant".into(),
            content: e.tokenizer.decode(&answer, false),
        });
    }
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
        assert!(format!("{e:#}").contains("fuel"), "{e:#}");
        let deep = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(render(deep, &msgs(), "", "").is_err());
        let broken = "{% for m in messages %}";
        let e = render(broken, &msgs(), "", "").unwrap_err();
        assert!(format!("{e:#}").contains("chat template"), "{e:#}");
        assert!(
            start.elapsed().as_secs() < 5,
            "rejected in {:?}",
            start.elapsed()
        );
    }
}
