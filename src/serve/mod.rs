//! `qgraph serve`: an OpenAI-compatible HTTP server over one model, batching every active
//! request's next token into one forward step.
//!
//! - `scheduler`: slots, the queue, chunked prefill between batched decode steps, the
//!   prompt cache (hand-written, tested alone);
//! - `engine`: the thread that owns the session, runs the steps, samples and streams;
//! - `http`, `openai`: routes and bodies (axum), OpenAI's and llama-server's shapes;
//! - `api`: request parsing with the field named in every error; `text`: stop strings;
//!   `metrics`: Prometheus counters.
//!
//! The server binds first and loads after, so `/health` answers 503 while the model loads.

pub mod api;
pub mod engine;
pub mod error;
pub mod http;
mod listen;
pub mod metrics;
pub mod openai;
pub mod scheduler;
pub mod text;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use engine::{Command, Engine, Loaded};
use http::{AppState, Model, Renderer};

/// Errors of the server's setup and of the caller's loader and renderer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A setup step that failed, named.
fn step<T, E: Into<BoxError>>(r: Result<T, E>, what: &str) -> Result<T, BoxError> {
    r.map_err(|e| format!("{what}: {}", e.into()).into())
}

pub struct Config {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// Tokens a request gets when it names no limit.
    pub default_max_tokens: usize,
    pub render: Renderer,
    /// After SIGTERM, how long running requests may take to finish before they are cancelled.
    pub grace: Duration,
    /// How long a client may take to send a request's headers, and its body.
    pub timeout: Duration,
}

/// What the loader gives: the engine's session and the endpoints' view of the model.
pub struct Ready {
    pub loaded: Loaded,
    pub model: Model,
}

/// Binds, loads the model with `load` (on the engine thread, while `/health` says 503), and
/// serves until SIGTERM or Ctrl-C; then stops taking requests, lets running ones finish for
/// `grace`, cancels the rest and returns.
pub fn run(
    config: Config,
    load: impl FnOnce() -> Result<Ready, BoxError> + Send + 'static,
) -> Result<(), BoxError> {
    let rt = step(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build(),
        "starting the HTTP runtime",
    )?;
    rt.block_on(serve(config, load))
}

async fn serve(
    config: Config,
    load: impl FnOnce() -> Result<Ready, BoxError> + Send + 'static,
) -> Result<(), BoxError> {
    let addr = format!("{}:{}", config.host, config.port);
    let listener = step(
        tokio::net::TcpListener::bind(&addr).await,
        &format!("binding {addr}"),
    )?;
    let local: SocketAddr = listener.local_addr()?;
    eprintln!("qgraph serve: listening on http://{local}");

    let (tx, rx) = std::sync::mpsc::channel::<Command>();
    let state = Arc::new(AppState {
        engine: Mutex::new(tx.clone()),
        model: OnceLock::new(),
        metrics: Default::default(),
        api_key: config.api_key.clone(),
        render: config.render.clone(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        default_max_tokens: config.default_max_tokens,
        timeout: config.timeout,
    });

    // The engine thread sends a load error on it, or drops it when it ends for any other
    // reason: before a shutdown was asked, that is a panic (its message is on stderr).
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<BoxError>();
    let engine_state = state.clone();
    let engine = std::thread::Builder::new()
        .name("qgraph-engine".into())
        .spawn(move || match load() {
            Ok(ready) => {
                let engine = Engine::new(ready.loaded, engine_state.metrics.clone());
                eprintln!(
                    "qgraph serve: {} loaded, {} slots of {} positions",
                    ready.model.id, ready.model.slots, ready.model.n_ctx
                );
                let _ = engine_state.model.set(ready.model);
                engine.run(rx);
                drop(failed_tx);
            }
            Err(e) => {
                let _ = failed_tx.send(e);
            }
        });
    let engine = step(engine, "starting the engine thread")?;

    let stop = Arc::new(tokio::sync::Notify::new());
    let stop_wait = stop.clone();
    let app = http::router(state.clone());
    let server = tokio::spawn(listen::serve(listener, app, stop_wait, config.timeout));

    let ended: Option<BoxError> = tokio::select! {
        _ = signal() => None,
        e = failed_rx => Some(match e {
            Ok(e) => format!("loading the model: {e}").into(),
            Err(_) => "the engine thread stopped unexpectedly (its message is above)".into(),
        }),
    };
    // Stop accepting; the running requests finish (for `grace` at most).
    let _ = tx.send(Command::Shutdown { cancel: false });
    stop.notify_one();
    let mut server = server;
    if tokio::time::timeout(config.grace, &mut server)
        .await
        .is_err()
    {
        eprintln!("qgraph serve: cancelling the requests still running");
        let _ = tx.send(Command::Shutdown { cancel: true });
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
    drop(tx);
    drop(state);
    let _ = tokio::task::spawn_blocking(move || engine.join()).await;
    match ended {
        Some(e) => Err(e),
        None => {
            eprintln!("qgraph serve: stopped");
            Ok(())
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
