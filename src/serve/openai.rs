//! The generating endpoints: OpenAI's `/v1/chat/completions` and `/v1/completions`, and
//! llama-server's `/completion`, whole or streamed as server-sent events.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::api::{self, Body, Prompt};
use super::engine::{Command, Done, Event, Submit};
use super::error::ApiError;
use super::http::{read_body, Model, Shared};
use super::scheduler::{Finish, Reject};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Completions,
    /// llama-server's own `/completion`.
    Completion,
}

pub async fn chat(State(s): State<Shared>, b: HttpBody) -> Response {
    generate(s, b, Api::Chat)
        .await
        .unwrap_or_else(|e| e.into_response())
}

pub async fn completions(State(s): State<Shared>, b: HttpBody) -> Response {
    generate(s, b, Api::Completions)
        .await
        .unwrap_or_else(|e| e.into_response())
}

pub async fn completion(State(s): State<Shared>, b: HttpBody) -> Response {
    generate(s, b, Api::Completion)
        .await
        .unwrap_or_else(|e| e.into_response())
}

/// What every response of one request repeats.
#[derive(Clone)]
struct Meta {
    api: Api,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

async fn generate(s: Shared, b: HttpBody, api: Api) -> Result<Response, ApiError> {
    let m = s.model()?;
    let req = api::parse(&read_body(b, s.timeout).await?)?;
    let gen = req.generation(s.default_max_tokens, m.tokenizer.n_vocab())?;
    let prompt = match api {
        Api::Chat => chat_prompt(&s, m, &req).await?,
        Api::Completions | Api::Completion => text_prompt(m, &req)?,
    };
    if prompt.len() >= m.n_ctx {
        return Err(ApiError::bad_request(format!(
            "the prompt has {} tokens; the context holds {} (one position is needed to \
             generate)",
            prompt.len(),
            m.n_ctx
        )));
    }
    let (tx, mut rx) = unbounded_channel();
    s.send(Command::Submit(Submit {
        prompt,
        gen,
        events: tx,
    }))?;
    match rx.recv().await {
        Some(Event::Accepted) => {}
        Some(Event::Rejected(r)) => {
            return Err(match r {
                Reject::Busy(_) => ApiError::unavailable(format!("the server is busy: {r}")),
                _ => ApiError::bad_request(r.to_string()),
            })
        }
        Some(Event::Failed(why)) => return Err(ApiError::unavailable(why)),
        _ => return Err(ApiError::internal("the engine dropped the request")),
    }
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = match api {
        Api::Chat => "chatcmpl",
        _ => "cmpl",
    };
    let meta = Meta {
        api,
        id: format!(
            "{prefix}-{}-{}",
            s.started,
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
        created: unix_now(),
        model: m.id.clone(),
        include_usage: req.include_usage(),
    };
    if req.stream() {
        Ok(stream(rx, meta))
    } else {
        collect(rx, meta).await
    }
}

/// The template for a model whose file has none, as llama-server falls back to.
pub const CHATML: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

async fn chat_prompt(s: &Shared, m: &Model, req: &Body) -> Result<Vec<u32>, ApiError> {
    let conversation = req.conversation()?;
    let template = m.template.clone().unwrap_or_else(|| CHATML.to_string());
    let (render, bos, eos) = (s.render.clone(), m.bos.clone(), m.eos.clone());
    let text = tokio::task::spawn_blocking(move || render(&template, &conversation, &bos, &eos))
        .await
        .map_err(|e| ApiError::internal(format!("rendering the chat template: {e}")))?
        // A template refuses some conversations (`raise_exception`): the request's fault.
        .map_err(|e| ApiError::bad_request(format!("messages: {e}")))?;
    let mut ids = m
        .tokenizer
        .encode(&text, true, true)
        .map_err(|e| ApiError::bad_request(format!("messages: {e}")))?;
    // A template that writes the BOS itself, and a model that adds one: keep one.
    if let Some(bos) = m.tokenizer.bos {
        if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
            ids.remove(0);
        }
    }
    Ok(ids)
}

fn text_prompt(m: &Model, req: &Body) -> Result<Vec<u32>, ApiError> {
    let encode = |t: &str| {
        m.tokenizer
            .encode(t, true, true)
            .map_err(|e| ApiError::bad_request(format!("prompt: {e}")))
    };
    let ids = match &req.prompt {
        None => return Err(ApiError::bad_request("prompt: missing")),
        Some(Prompt::Text(t)) => encode(t)?,
        Some(Prompt::Texts(v)) if v.len() == 1 => encode(&v[0])?,
        Some(Prompt::Texts(v)) => {
            return Err(ApiError::bad_request(format!(
                "prompt: {} prompts given; this server takes one per request",
                v.len()
            )))
        }
        Some(Prompt::Tokens(ids)) => {
            let n = m.tokenizer.n_vocab();
            if let Some((i, t)) = ids.iter().enumerate().find(|(_, &t)| t as usize >= n) {
                return Err(ApiError::bad_request(format!(
                    "prompt[{i}]: token {t} is out of range: the vocabulary has {n} tokens"
                )));
            }
            ids.clone()
        }
    };
    if ids.is_empty() {
        return Err(ApiError::bad_request("prompt: empty"));
    }
    Ok(ids)
}

async fn collect(mut rx: UnboundedReceiver<Event>, meta: Meta) -> Result<Response, ApiError> {
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done(d)) => return Ok(Json(whole(&meta, &text, &d)).into_response()),
            Some(Event::Failed(why)) => return Err(ApiError::unavailable(why)),
            Some(Event::Accepted | Event::Rejected(_)) => {}
            None => return Err(ApiError::internal("the engine dropped the request")),
        }
    }
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

fn usage(d: &Done) -> Value {
    json!({
        "prompt_tokens": d.prompt_tokens,
        "completion_tokens": d.completion_tokens,
        "total_tokens": d.prompt_tokens + d.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": d.cached_tokens },
    })
}

/// llama-server's `timings`.
fn timings(d: &Done) -> Value {
    let prompt_n = d.prompt_tokens - d.cached_tokens;
    let per = |ms: f64, n: usize| if n == 0 { 0.0 } else { ms / n as f64 };
    let rate = |ms: f64, n: usize| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    json!({
        "cache_n": d.cached_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": d.prompt_ms,
        "prompt_per_token_ms": per(d.prompt_ms, prompt_n),
        "prompt_per_second": rate(d.prompt_ms, prompt_n),
        "predicted_n": d.completion_tokens,
        "predicted_ms": d.predicted_ms,
        "predicted_per_token_ms": per(d.predicted_ms, d.completion_tokens),
        "predicted_per_second": rate(d.predicted_ms, d.completion_tokens),
    })
}

/// The response of a request that did not stream.
fn whole(meta: &Meta, text: &str, d: &Done) -> Value {
    let reason = finish_reason(d.finish);
    match meta.api {
        Api::Chat => json!({
            "id": meta.id, "object": "chat.completion", "created": meta.created,
            "model": meta.model, "system_fingerprint": fingerprint(),
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": reason,
            }],
            "usage": usage(d), "timings": timings(d),
        }),
        Api::Completions => json!({
            "id": meta.id, "object": "text_completion", "created": meta.created,
            "model": meta.model, "system_fingerprint": fingerprint(),
            "choices": [{ "index": 0, "text": text, "logprobs": null, "finish_reason": reason }],
            "usage": usage(d), "timings": timings(d),
        }),
        Api::Completion => completion_end(meta, text, d),
    }
}

fn completion_end(meta: &Meta, text: &str, d: &Done) -> Value {
    json!({
        "index": 0, "content": text, "id_slot": -1, "stop": true, "model": meta.model,
        "tokens_predicted": d.completion_tokens, "tokens_evaluated": d.prompt_tokens,
        "tokens_cached": d.cached_tokens, "truncated": false,
        "stop_type": match d.finish { Finish::Stop => "eos", Finish::Length => "limit" },
        "timings": timings(d),
    })
}

fn fingerprint() -> &'static str {
    concat!("qgraph-", env!("CARGO_PKG_VERSION"))
}

/// One streamed piece: the chunk for some text, or for the end.
fn chunk(meta: &Meta, text: Option<&str>, done: Option<&Done>) -> Value {
    let reason = done.map(|d| finish_reason(d.finish));
    match meta.api {
        Api::Chat => {
            let delta = match text {
                Some(t) => json!({ "content": t }),
                None => json!({}),
            };
            let mut c = json!({
                "id": meta.id, "object": "chat.completion.chunk", "created": meta.created,
                "model": meta.model, "system_fingerprint": fingerprint(),
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": reason }],
            });
            if let Some(d) = done {
                c["timings"] = timings(d);
            }
            c
        }
        Api::Completions => {
            let mut c = json!({
                "id": meta.id, "object": "text_completion", "created": meta.created,
                "model": meta.model, "system_fingerprint": fingerprint(),
                "choices": [{ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": reason }],
            });
            if let Some(d) = done {
                c["timings"] = timings(d);
            }
            c
        }
        Api::Completion => match done {
            Some(d) => completion_end(meta, "", d),
            None => json!({ "index": 0, "content": text.unwrap_or(""), "stop": false }),
        },
    }
}

enum Phase {
    Start,
    Running,
    Usage(Done),
    Done,
    End,
}

/// Server-sent events: the role first (chat), a chunk per text piece, the end with its
/// finish reason, the usage when asked, then `[DONE]` (OpenAI's endpoints). The receiver
/// lives in the stream: a client that leaves drops it, and the engine cancels the request.
fn stream(rx: UnboundedReceiver<Event>, meta: Meta) -> Response {
    let data = |v: Value| Ok::<_, Infallible>(SseEvent::default().data(v.to_string()));
    let events = futures_util::stream::unfold(
        (rx, meta, Phase::Start),
        move |(mut rx, meta, phase)| async move {
            match phase {
                Phase::Start if meta.api == Api::Chat => {
                    let mut c = chunk(&meta, Some(""), None);
                    c["choices"][0]["delta"] = json!({ "role": "assistant", "content": "" });
                    Some((data(c), (rx, meta, Phase::Running)))
                }
                Phase::Start | Phase::Running => match rx.recv().await {
                    Some(Event::Text(t)) => Some((
                        data(chunk(&meta, Some(&t), None)),
                        (rx, meta, Phase::Running),
                    )),
                    Some(Event::Done(d)) => {
                        let next = match (meta.include_usage, meta.api) {
                            (_, Api::Completion) => Phase::End,
                            (true, _) => Phase::Usage(d),
                            (false, _) => Phase::Done,
                        };
                        Some((data(chunk(&meta, None, Some(&d))), (rx, meta, next)))
                    }
                    Some(Event::Failed(why)) => {
                        let e = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why);
                        Some((data(e.body()), (rx, meta, Phase::End)))
                    }
                    Some(Event::Accepted | Event::Rejected(_)) => Some((
                        Ok(SseEvent::default().comment("")),
                        (rx, meta, Phase::Running),
                    )),
                    None => None,
                },
                Phase::Usage(d) => {
                    let object = match meta.api {
                        Api::Chat => "chat.completion.chunk",
                        _ => "text_completion",
                    };
                    let c = json!({
                        "id": meta.id, "object": object, "created": meta.created,
                        "model": meta.model, "system_fingerprint": fingerprint(),
                        "choices": [], "usage": usage(&d),
                    });
                    Some((data(c), (rx, meta, Phase::Done)))
                }
                Phase::Done => Some((
                    Ok(SseEvent::default().data("[DONE]")),
                    (rx, meta, Phase::End),
                )),
                Phase::End => None,
            }
        },
    );
    Sse::new(events).into_response()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
