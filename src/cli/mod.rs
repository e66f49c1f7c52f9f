//! The `qgraph` command line. The only module that uses `clap` and `anyhow`: library errors
//! get their file/command context here.

mod check;
mod inspect;
mod model;
mod plan;

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
