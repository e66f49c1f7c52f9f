//! What every command that runs the model shares: loading, planning, and a session.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use qgraph::exec::Session;
use qgraph::gguf::GgufFile;
use qgraph::plan::{Logits, PassSelection, Plan, PlanOptions};
use qgraph::tokenizer::Tokenizer;

use super::model::{bind_graph, open_model, Binding};

#[derive(clap::Args, Clone)]
pub struct EngineArgs {
    /// The model (default: the fetched SmolLM2, fetched if missing).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// The graph definition (default: graphs/<the model's general.architecture>.toml).
    #[arg(short, long)]
    pub graph: Option<PathBuf>,
    /// Context length in tokens.
    #[arg(long = "ctx", default_value_t = 2048)]
    pub n_ctx: usize,
    /// Planner passes: all, none, or a comma-separated list.
    #[arg(long, default_value = "all")]
    pub passes: String,
    /// Kernel level: auto (the best this CPU runs), scalar (the reference), avx2, avx512 (avx2 with AVX-512 VNNI twins).
    #[arg(long, default_value = "auto")]
    pub kernels: qgraph::kernels::KernelLevel,
    /// Prompt tokens per prefill step (batched kernels); 1 feeds prompts token by token.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub repack: super::plan::RepackArgs,
    #[command(flatten)]
    pub cache: super::plan::CacheArgs,
}

/// `-t`: how many threads run the forward pass.
#[derive(clap::Args, Clone, Default)]
pub struct ThreadArgs {
    /// Threads that run each forward step (default: this machine's physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

impl ThreadArgs {
    pub fn resolve(&self) -> anyhow::Result<usize> {
        match self.threads {
            Some(t) => check_threads(t),
            None => Ok(qgraph::plan::physical_cores()),
        }
    }
}

/// A `-t` value: at least 1, at most 256 (the planner's limit); above this machine's
/// hardware threads it runs, with a warning (once per process): workers then share cores
/// and every barrier waits for a descheduled one.
pub fn check_threads(t: usize) -> anyhow::Result<usize> {
    if t == 0 || t > 256 {
        bail!("-t {t}: the thread count must be between 1 and 256");
    }
    let hw = std::thread::available_parallelism().map_or(1, |n| n.get());
    if t > hw {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!(
                "warning: -t {t} is more than this machine's {hw} hardware threads: workers will \
                 share cores and wait for each other at every step (expect it to be slow)"
            )
        });
    }
    Ok(t)
}

pub struct Engine {
    pub model: Arc<GgufFile>,
    pub tokenizer: Tokenizer,
    pub session: Session,
    pub load_ms: f64,
    pub plan_ms: f64,
}

impl Engine {
    /// Loads the model and tokenizer and plans for `seq` tokens per step (every token's
    /// logits) on `threads` workers; with `seq == 1`, also a prefill plan for prompts of
    /// `--batch` tokens per step (the last token's logits).
    pub fn new(args: &EngineArgs, seq: usize, threads: usize) -> anyhow::Result<Engine> {
        Engine::with_sequences(args, seq, threads, 1)
    }

    /// As `new`, with a KV memory of `sequences` regions (`qgraph serve`'s slots): the main
    /// plan then takes `seq` rows of any sequences, and prompts go through the prefill plan.
    pub fn with_sequences(
        args: &EngineArgs,
        seq: usize,
        threads: usize,
        sequences: usize,
    ) -> anyhow::Result<Engine> {
        let t0 = Instant::now();
        let (model_path, model) = open_model(args.model.clone())?;
        let tokenizer = Tokenizer::from_gguf(&model)
            .with_context(|| format!("tokenizer of {}", model_path.display()))?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let (graph_path, graph) =
            bind_graph(args.graph.clone(), &model, &model_path, Binding::ToRun)?;
        if args.n_ctx == 0 {
            bail!("--ctx must be at least 1");
        }

        if args.batch == 0 {
            bail!("--batch must be at least 1");
        }
        let opts = PlanOptions {
            seq: seq.min(args.n_ctx),
            n_ctx: args.n_ctx,
            passes: args.passes.parse::<PassSelection>()?,
            level: args.kernels,
            threads,
            logits: Logits::All,
            repack: args.repack.on(),
            kv: args.cache.types(),
            sequences,
        };
        let plan = Arc::new(
            Plan::new(&graph, model.clone(), &opts)
                .with_context(|| format!("planning {}", graph_path.display()))?,
        );
        let batch = args.batch.min(args.n_ctx);
        let session = if (seq == 1 || sequences > 1) && batch > 1 {
            let prefill = PlanOptions {
                seq: batch,
                logits: Logits::Last,
                ..opts
            };
            let prefill = Plan::new(&graph, model.clone(), &prefill)
                .with_context(|| format!("planning {} for prefill", graph_path.display()))?;
            Session::with_prefill(plan, Arc::new(prefill))?
        } else {
            Session::new(plan)?
        };
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
