//! The `qgraph` command line. The only module that uses `clap` and `anyhow`: library errors
//! get their file/command context here.

mod bench;
mod chat;
mod check;
mod engine;
mod inspect;
mod model;
mod plan;
mod profile;
mod quantize;
mod run;
mod sandbox;
mod serve;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "qgraph",
    version,
    about = "Compile LLM forward passes into static plans and run them on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a GGUF file's header, metadata and tensor table.
    Inspect(inspect::Args),
    /// Load a graph definition, bind it to a model, and print a summary or the errors.
    Check(check::CheckArgs),
    /// Draw the unplanned graph (Graphviz DOT; layer 0 expanded, the rest folded).
    Graph(check::GraphArgs),
    /// Plan a graph for a model and dump the plan (text, JSON, DOT or an SVG of the arena).
    Plan(plan::PlanArgs),
    /// Generate text from a prompt, streamed to stdout; timings to stderr.
    Run(run::RunArgs),
    /// Talk to the model: renders its chat template, keeps the KV cache across turns.
    Chat(chat::ChatArgs),
    /// Print the token ids of a text as a JSON array.
    Tokenize(tools::TokenizeArgs),
    /// Write the logits of every position as a NumPy .npy file.
    Logits(tools::LogitsArgs),
    /// Perplexity of a text file, computed as llama-perplexity does.
    Perplexity(tools::PerplexityArgs),
    /// Prompt (pp) and generation (tg) speed like llama-bench, with the read-bandwidth roofline.
    Bench(bench::BenchArgs),
    /// Time per step of the forward pass, by op and by kernel.
    Profile(profile::ProfileArgs),
    /// Serve the model over HTTP: OpenAI's chat and completion endpoints and llama-server's,
    /// with --parallel requests decoded together.
    Serve(serve::ServeArgs),
    /// Rewrite a model in another file type (llama-quantize's names and mixture rules).
    Quantize(quantize::QuantizeArgs),
    /// (Internal) render a chat template from a JSON request on stdin, under the limits
    /// `qgraph chat` sets on this child process.
    #[command(name = "__render-template", hide = true)]
    RenderTemplate,
}

/// Writes to stdout; a closed pipe (`qgraph plan | head`) ends the output quietly.
pub fn out(s: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Check(args) => check::check(args),
        Command::Graph(args) => check::graph(args),
        Command::Plan(args) => plan::run(args),
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Tokenize(args) => tools::tokenize(args),
        Command::Logits(args) => tools::logits(args),
        Command::Perplexity(args) => tools::perplexity_cmd(args),
        Command::Bench(args) => bench::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Serve(args) => serve::run(args),
        Command::RenderTemplate => return sandbox::child_main(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, outermost first, joined by `: `, each said once: a cause whose
/// text the message before it already contains (a context naming the same path, an error
/// that prints its source) is skipped.
pub fn chain_message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
