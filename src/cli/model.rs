//! Where the CLI finds models and graphs when the user names none.

use std::path::PathBuf;

use anyhow::{bail, Context};

pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The model to use: the one given, else the fetched SmolLM2 (`$QGRAPH_MODELS` or
/// `models/` of this checkout), fetched with `scripts/fetch-model` when missing.
pub fn resolve_model(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let dir = std::env::var_os("QGRAPH_MODELS").map_or(repo_root().join("models"), PathBuf::from);
    let path = dir.join(DEFAULT_MODEL);
    if path.exists() {
        return Ok(path);
    }
    let script = repo_root().join("scripts/fetch-model");
    if !script.exists() {
        bail!(
            "no model given (-m MODEL) and {} is missing",
            path.display()
        );
    }
    eprintln!(
        "qgraph: {} is missing: running {}",
        path.display(),
        script.display()
    );
    let status = std::process::Command::new(&script)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() || !path.exists() {
        bail!("{} failed: give a model with -m MODEL", script.display());
    }
    Ok(path)
}

/// The graph to use: the one given, else `graphs/<general.architecture>.toml` (in the
/// working directory's `graphs/`, else this checkout's).
pub fn resolve_graph(
    given: Option<PathBuf>,
    model: &qgraph::gguf::GgufFile,
) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let arch = model
        .get_str("general.architecture")
        .context("the model has no general.architecture: give its graph with --graph")?;
    let file = format!("graphs/{arch}.toml");
    let local = PathBuf::from(&file);
    if local.exists() {
        return Ok(local);
    }
    let shipped = repo_root().join(&file);
    if shipped.exists() {
        return Ok(shipped);
    }
    bail!(
        "no graph for architecture `{arch}`: {file} does not exist (qgraph ships graphs/llama.toml); \
         give a graph written for this model with --graph"
    )
}

/// The model a command names (or the default one), opened.
pub fn open_model(
    given: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, std::sync::Arc<qgraph::gguf::GgufFile>)> {
    let path = resolve_model(given)?;
    let model = qgraph::gguf::GgufFile::open(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((path, std::sync::Arc::new(model)))
}

/// The graph a command names (or the default one), loaded and bound to `model`.
pub fn bind_graph(
    given: Option<PathBuf>,
    model: &qgraph::gguf::GgufFile,
    model_path: &std::path::Path,
    bound: Binding,
) -> anyhow::Result<(PathBuf, qgraph::graph::Graph)> {
    let path = resolve_graph(given, model)?;
    let graph = qgraph::graph::load(&path)?
        .bind(model)
        .with_context(|| format!("binding {} to {}", path.display(), model_path.display()))?;
    if bound == Binding::ToRun && !graph.unread.is_empty() {
        let shown: Vec<&str> = graph.unread.iter().take(4).map(String::as_str).collect();
        bail!(
            "graph `{}` ({}) does not read {} of {}'s tensors ({}{}): it is not the whole \
             forward pass of this model. `qgraph check` lists them; a graph marks tensors it \
             may leave unread in [graph] optional",
            graph.name,
            path.display(),
            graph.unread.len(),
            model_path.display(),
            shown.join(", "),
            if graph.unread.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    Ok((path, graph))
}

/// What a bound graph is for: running the model (every tensor must be read) or looking at
/// the graph (`check`, `graph`: unread tensors are listed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    ToRun,
    ToShow,
}
