//! `qgraph serve`: the OpenAI-compatible server (`qgraph::serve`) over one model, with
//! `--parallel` slots decoded together in one batched step.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use qgraph::serve::http::Model;
use qgraph::serve::scheduler::Limits;
use qgraph::serve::{Config, Ready};

use super::engine::{Engine, EngineArgs, ThreadArgs};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Model, graph, context per slot (--ctx), prompt chunk (--batch), kernels, KV types.
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    threads: ThreadArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests decoded together, each in its own slot of --ctx positions.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Requests that may wait for a slot; past them the server answers 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long)]
    api_key: Option<String>,
    /// Tokens a request generates when it names no max_tokens (-1: until its context is full).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    n_predict: i64,
    /// Seconds running requests may take to finish after SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// Seconds a client may take to send a request's headers, and then its body.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.parallel == 0 || args.parallel > 256 {
        bail!("--parallel {}: between 1 and 256 slots", args.parallel);
    }
    if args.queue > 1 << 16 {
        bail!("--queue {}: at most 65536", args.queue);
    }
    let default_max_tokens = match args.n_predict {
        -1 => 1 << 20,
        n if n >= 1 => n as usize,
        n => bail!("-n {n}: -1 (until the context is full) or at least 1"),
    };
    if args.engine.n_ctx < 2 {
        bail!(
            "--ctx {}: a slot needs at least 2 positions",
            args.engine.n_ctx
        );
    }
    let threads = args.threads.resolve()?;
    let config = Config {
        host: args.host.clone(),
        port: args.port,
        api_key: args.api_key.clone(),
        default_max_tokens,
        render: Arc::new(|template, messages, bos, eos| {
            super::sandbox::render_sandboxed(template, messages, bos, eos)
                .map_err(|e| super::chain_message(&e).into())
        }),
        grace: Duration::from_secs(args.grace),
        timeout: Duration::from_secs(args.timeout),
    };
    let (engine_args, parallel, queue) = (args.engine.clone(), args.parallel, args.queue);
    let served = qgraph::serve::run(config, move || {
        let mut engine_args = engine_args;
        let path = super::model::resolve_model(engine_args.model.clone())
            .map_err(|e| super::chain_message(&e))?;
        engine_args.model = Some(path.clone());
        let e = Engine::with_sequences(&engine_args, parallel, threads, parallel)
            .map_err(|e| super::chain_message(&e))?;
        let name = |id: Option<u32>| {
            id.map(|i| e.tokenizer.decode(&[i], true))
                .unwrap_or_default()
        };
        let n_ctx = e.n_ctx();
        let chunk = e
            .session
            .prefill_plan()
            .map_or(e.session.plan().seq, |p| p.seq);
        if e.model.get_str("tokenizer.chat_template").is_err() {
            eprintln!(
                "qgraph serve: the model has no tokenizer.chat_template; chat requests use ChatML"
            );
        }
        let model = Model {
            id: path
                .file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned()),
            path: path.display().to_string(),
            template: e
                .model
                .get_str("tokenizer.chat_template")
                .ok()
                .map(str::to_string),
            bos: name(e.tokenizer.bos),
            eos: name(e.tokenizer.eos),
            n_ctx,
            n_ctx_train: qgraph::plan::trained_context(&e.model).map(|t| t.1),
            slots: parallel,
            tokenizer: Arc::new(e.tokenizer),
        };
        Ok(Ready {
            loaded: qgraph::serve::engine::Loaded {
                session: e.session,
                tokenizer: model.tokenizer.clone(),
                limits: Limits {
                    slots: parallel,
                    n_ctx,
                    chunk,
                    queue,
                },
            },
            model,
        })
    });
    served.map_err(|e| anyhow::anyhow!("{e}"))
}
