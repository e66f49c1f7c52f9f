//! `qgraph chat`: an interactive conversation that renders the model's own chat template
//! (`tokenizer.chat_template`, a Jinja template) and keeps the KV cache across turns: each
//! turn feeds only the tokens the context does not hold yet.

use std::io::{BufRead, Write};

use anyhow::{bail, Context};
use qgraph::sample::Sampler;
use qgraph::tokenizer::chat::Message;
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
        let prompt = super::sandbox::render_sandboxed(&template, &messages, &bos, &eos)
            .context("the model's chat template (tokenizer.chat_template)")?;
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
