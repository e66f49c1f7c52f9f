//! `qgraph check GRAPH --model MODEL` and `qgraph graph GRAPH --model MODEL --format dot`.

use std::path::PathBuf;

use qgraph::graph::Graph;

use super::model::{bind_graph, open_model, Binding};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The graph definition (default: graphs/<the model's general.architecture>.toml).
    pub graph: Option<PathBuf>,
    /// The model to bind it to (default: the fetched SmolLM2).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT, layer 0 expanded and the other layers folded.
    Dot,
    /// The same summary `qgraph check` prints.
    Text,
}

#[derive(clap::Args)]
pub struct GraphArgs {
    #[command(flatten)]
    check: CheckArgs,
    #[arg(long, value_enum, default_value = "dot")]
    format: GraphFormat,
}

pub fn bind(args: CheckArgs) -> anyhow::Result<Graph> {
    let (model_path, model) = open_model(args.model)?;
    Ok(bind_graph(args.graph, &model, &model_path, Binding::ToShow)?.1)
}

pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let graph = bind(args)?;
    super::out(&qgraph::graph::summary::summary(&graph))?;
    Ok(())
}

pub fn graph(args: GraphArgs) -> anyhow::Result<()> {
    let graph = bind(args.check)?;
    match args.format {
        GraphFormat::Dot => super::out(&qgraph::graph::dot::to_dot(&graph))?,
        GraphFormat::Text => super::out(&qgraph::graph::summary::summary(&graph))?,
    }
    Ok(())
}
