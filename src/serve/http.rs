//! The HTTP side: routes, the API key, body limits, and the endpoints that do not
//! generate (`/health`, `/v1/models`, `/props`, `/metrics`, `/tokenize`, `/detokenize`).
//! Generation endpoints are in `openai.rs`.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::engine::Command;
use super::error::ApiError;
use super::metrics::Metrics;
use super::openai;
use crate::tokenizer::chat::Message;
use crate::tokenizer::Tokenizer;

/// Request bodies larger than this get a 413.
pub const BODY_LIMIT: usize = 2 << 20;

/// Renders a chat template for a conversation: `(template, messages, bos, eos)`. The CLI
/// gives one that runs it in a sandboxed child (`cli/sandbox.rs`).
pub type Renderer =
    Arc<dyn Fn(&str, &[Message], &str, &str) -> Result<String, super::BoxError> + Send + Sync>;

/// What the endpoints know once the model is loaded.
pub struct Model {
    pub id: String,
    pub path: String,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<String>,
    pub bos: String,
    pub eos: String,
    pub n_ctx: usize,
    pub n_ctx_train: Option<usize>,
    pub slots: usize,
}

pub struct AppState {
    pub engine: Mutex<Sender<Command>>,
    pub model: OnceLock<Model>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    pub render: Renderer,
    /// Unix time the server started (`created` of the model list).
    pub started: u64,
    /// Tokens a request gets when it names no limit.
    pub default_max_tokens: usize,
    /// How long a client may take to send a request's headers, and its body.
    pub timeout: std::time::Duration,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// The loaded model, or 503 while it loads.
    pub fn model(&self) -> Result<&Model, ApiError> {
        self.model
            .get()
            .ok_or_else(|| ApiError::unavailable("Loading model"))
    }

    pub fn send(&self, c: Command) -> Result<(), ApiError> {
        self.engine
            .lock()
            .map_err(|_| ApiError::internal("the engine channel is poisoned"))?
            .send(c)
            .map_err(|_| ApiError::unavailable("the engine has stopped"))
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/props", get(props))
        .route("/metrics", get(metrics))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/completions", post(openai::completions))
        .route("/completion", post(openai::completion))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// With `--api-key`, every endpoint but `/health` wants `Authorization: Bearer KEY`.
async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let Some(key) = &s.api_key else {
        return next.run(req).await;
    };
    if matches!(req.uri().path(), "/health" | "/v1/health") {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()));
    // Compared in constant time: the key's length is all a timing could tell.
    let ok = given.is_some_and(|g| {
        g.len() == key.len()
            && g.bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "Invalid API Key").into_response()
    }
}

/// Reads a request body: 413 past `BODY_LIMIT`, 408 when it takes longer than `timeout`
/// (a client that stalls holds no slot, and not the connection either).
pub async fn read_body(body: Body, timeout: std::time::Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body took longer than {:?}", timeout),
        )),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            Err(if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {BODY_LIMIT} bytes"),
                )
            } else {
                ApiError::bad_request(format!("reading the body: {e}"))
            })
        }
    }
}

async fn health(State(s): State<Shared>) -> Response {
    match s.model() {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn models(State(s): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    let m = s.model()?;
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": m.id,
            "object": "model",
            "created": s.started,
            "owned_by": "qgraph",
            "meta": {
                "n_vocab": m.tokenizer.n_vocab(),
                "n_ctx": m.n_ctx,
                "n_ctx_train": m.n_ctx_train,
            },
        }],
    })))
}

async fn props(State(s): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    let m = s.model()?;
    Ok(Json(json!({
        "default_generation_settings": {
            "n_ctx": m.n_ctx,
            "params": { "n_predict": s.default_max_tokens },
        },
        "total_slots": m.slots,
        "model_path": m.path,
        "model_alias": m.id,
        "chat_template": m.template.as_deref().unwrap_or(super::openai::CHATML),
        "chat_template_builtin": m.template.is_none(),
        "bos_token": m.bos,
        "eos_token": m.eos,
        "build_info": concat!("qgraph ", env!("CARGO_PKG_VERSION")),
        "modalities": { "vision": false, "audio": false },
    })))
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TokenizeBody {
    content: String,
    #[serde(default)]
    add_special: bool,
    #[serde(default)]
    with_pieces: bool,
}

async fn tokenize(State(s): State<Shared>, b: Body) -> Result<Json<serde_json::Value>, ApiError> {
    let m = s.model()?;
    let t: TokenizeBody = strict(&read_body(b, s.timeout).await?)?;
    let ids = m
        .tokenizer
        .encode(&t.content, true, t.add_special)
        .map_err(|e| ApiError::bad_request(format!("content: {e}")))?;
    if t.with_pieces {
        let pieces: Vec<_> = ids
            .iter()
            .map(|&id| {
                let bytes = m.tokenizer.token_bytes(id, true);
                match std::str::from_utf8(bytes) {
                    Ok(p) => json!({"id": id, "piece": p}),
                    Err(_) => json!({"id": id, "piece": bytes}),
                }
            })
            .collect();
        return Ok(Json(json!({ "tokens": pieces })));
    }
    Ok(Json(json!({ "tokens": ids })))
}

#[derive(serde::Deserialize)]
struct DetokenizeBody {
    tokens: Vec<u32>,
}

async fn detokenize(State(s): State<Shared>, b: Body) -> Result<Json<serde_json::Value>, ApiError> {
    let m = s.model()?;
    let d: DetokenizeBody = strict(&read_body(b, s.timeout).await?)?;
    let n = m.tokenizer.n_vocab();
    if let Some((i, t)) = d.tokens.iter().enumerate().find(|(_, &t)| t as usize >= n) {
        return Err(ApiError::bad_request(format!(
            "tokens[{i}]: {t} is out of range: the vocabulary has {n} tokens"
        )));
    }
    Ok(Json(
        json!({ "content": m.tokenizer.decode(&d.tokens, false) }),
    ))
}

/// A small body parsed with the field named in errors.
fn strict<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}
