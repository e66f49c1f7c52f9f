//! What every command that runs the model shares: loading, planning, and a session.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use qgraph::exec::Session;
use qgraph::gguf::GgufFile;
use qgraph::plan::{PassSelection, Plan, PlanOptions};
use qgraph::tokenizer::Tokenizer;

use super::model::{bind_graph, open_model};

#[derive(clap::Args, Clone)]
pub struct EngineArgs {
    /// The model (default: the fetched SmolLM2, fetched if missing).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// The graph definition (default: graphs/llama.toml).
    #[arg(short, long)]
    pub graph: Option<PathBuf>,
    /// Context length in tokens.
    #[arg(long = "ctx", default_value_t = 2048)]
    pub n_ctx: usize,
    /// Planner passes: all, none, or a comma-separated list.
    #[arg(long, default_value = "all")]
    pub passes: String,
    /// Kernel level: auto (the best this CPU runs), scalar (the reference), avx2.
    #[arg(long, default_value = "auto")]
    pub kernels: qgraph::kernels::KernelLevel,
}

/// `-t`: how many threads run the forward pass.
#[derive(clap::Args, Clone)]
pub struct ThreadArgs {
    /// Threads. qgraph runs one thread for now: other counts are refused, not ignored.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
}

impl ThreadArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.threads != 1 {
            bail!(
                "-t {}: qgraph runs one thread for now (the thread pool is not built yet)",
                self.threads
            );
        }
        Ok(())
    }
}

pub struct Engine {
    pub model: Arc<GgufFile>,
    pub tokenizer: Tokenizer,
    pub session: Session,
    pub load_ms: f64,
    pub plan_ms: f64,
}

impl Engine {
    /// Loads the model and tokenizer and plans for `seq` tokens per step.
    pub fn new(args: &EngineArgs, seq: usize) -> anyhow::Result<Engine> {
        let t0 = Instant::now();
        let (model_path, model) = open_model(args.model.clone())?;
        let tokenizer = Tokenizer::from_gguf(&model)
            .with_context(|| format!("tokenizer of {}", model_path.display()))?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let (graph_path, graph) = bind_graph(args.graph.clone(), &model, &model_path)?;
        if args.n_ctx == 0 {
            bail!("--ctx must be at least 1");
        }

        let opts = PlanOptions {
            seq: seq.min(args.n_ctx),
            n_ctx: args.n_ctx,
            passes: args.passes.parse::<PassSelection>()?,
            level: args.kernels,
        };
        let plan = Plan::new(&graph, model.clone(), &opts)
            .with_context(|| format!("planning {}", graph_path.display()))?;
        let session = Session::new(Arc::new(plan))?;
        Ok(Engine {
            model,
            tokenizer,
            session,
            load_ms,
            plan_ms: t1.elapsed().as_secs_f64() * 1e3,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.session.plan().n_ctx
    }

    /// Fails with a clear message when `n` more tokens do not fit in the context.
    pub fn check_room(&self, n: usize, what: &str) -> anyhow::Result<()> {
        let needed = self.session.position() + n;
        if needed > self.n_ctx() {
            bail!(
                "{what} needs {needed} positions but the context holds {} (raise --ctx)",
                self.n_ctx()
            );
        }
        Ok(())
    }
}
