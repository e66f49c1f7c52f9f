//! `qgraph serve` end to end on the real model, over loopback: the endpoints and their
//! shapes, streamed = whole, batch invariance across concurrent clients, the documented
//! errors, a full queue, a client that leaves mid-stream, and SIGTERM.

mod common;

use common::server::{parse_response, send, sse_data, streamed_chat_text, Server};
use serde_json::json;
use std::io::Read;

fn chat(content: &str, max: u32, stream: bool) -> serde_json::Value {
    json!({
        "model": "any",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max, "temperature": 0, "stream": stream,
    })
}

#[test]
fn endpoints_streaming_batch_invariance_and_errors() {
    let s = Server::start(&[
        "--parallel",
        "4",
        "--ctx",
        "512",
        "-t",
        "2",
        "--batch",
        "32",
    ]);
    assert_eq!(s.get("/health"), (200, r#"{"status":"ok"}"#.into()));
    let (status, models) = s.get("/v1/models");
    assert_eq!(status, 200);
    let models: serde_json::Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1.gguf");

    // Whole and streamed greedy answers agree, and have every field clients read.
    let q = "Name three colours of the rainbow.";
    let (status, whole) = s.post_json("/v1/chat/completions", &chat(q, 24, false));
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let text = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let reason = whole["choices"][0]["finish_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!text.is_empty());
    assert!(reason == "stop" || reason == "length");
    let u = &whole["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert!(whole["timings"]["predicted_n"].as_u64().unwrap() > 0);
    let mut body = chat(q, 24, true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, streamed) = s.post("/v1/chat/completions", &body.to_string());
    assert_eq!(status, 200);
    assert_eq!(
        streamed_chat_text(&streamed),
        (text.clone(), reason.clone())
    );
    let data = sse_data(&streamed);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let first: serde_json::Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let usage: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][k], whole["usage"][k]);
    }
    // The second asking found the first's prompt in its slot.
    assert!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Eight concurrent streams of one greedy prompt: every one gets the lone answer.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let port = s.port;
            let body = chat(q, 24, true).to_string();
            std::thread::spawn(move || Server::at(port).post("/v1/chat/completions", &body))
        })
        .collect();
    for c in clients {
        let (status, body) = c.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(streamed_chat_text(&body), (text.clone(), reason.clone()));
    }

    // Completions: a string prompt, token ids, llama-server's /completion.
    let (status, c) = s.post_json(
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["object"], "text_completion");
    let (_, ids) = s.post_json("/tokenize", &json!({"content": "The capital of France is"}));
    let ids = ids["tokens"].clone();
    let (_, again) = s.post_json(
        "/v1/completions",
        &json!({"prompt": ids, "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(again["choices"][0]["text"], c["choices"][0]["text"]);
    let (_, text) = s.post_json("/detokenize", &json!({"tokens": ids}));
    assert_eq!(text["content"], "The capital of France is");
    let (status, lc) = s.post_json(
        "/completion",
        &json!({"prompt": "The capital of France is", "n_predict": 4, "temperature": 0}),
    );
    assert_eq!(status, 200);
    assert_eq!(lc["content"], c["choices"][0]["text"]);
    assert_eq!(lc["stop"], true);
    // A stop string ends the text before it.
    let (_, stopped) = s.post_json(
        "/v1/completions",
        &json!({"prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0, "stop": [" 7"]}),
    );
    let t = stopped["choices"][0]["text"].as_str().unwrap();
    assert!(!t.contains(" 7"), "{t:?}");
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");

    // Bad requests: a JSON error with the documented status, never a hang or a crash.
    let bad = |path: &str, body: &[u8], want: u16, says: &str| {
        let (status, text) = s.request("POST", path, &[], body);
        assert_eq!(
            status,
            want,
            "{path} {:?}: {text}",
            String::from_utf8_lossy(body)
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{msg:?} should say {says:?}");
        assert_eq!(v["error"]["code"], want);
    };
    let chat_path = "/v1/chat/completions";
    bad(chat_path, b"{\"messages\": [", 400, "not valid JSON");
    bad(chat_path, br#"{"messages": "hi"}"#, 400, "messages");
    bad(
        chat_path,
        br#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}"#,
        400,
        "max_tokens",
    );
    bad(
        chat_path,
        br#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e12}"#,
        400,
        "max_tokens",
    );
    bad(
        chat_path,
        br#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
        400,
        "unknown role",
    );
    bad(
        chat_path,
        br#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#,
        400,
        "temperature",
    );
    bad(
        chat_path,
        b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}",
        400,
        "JSON",
    );
    let long = "word ".repeat(600);
    bad(
        "/v1/completions",
        json!({"prompt": long}).to_string().as_bytes(),
        400,
        "context holds 512",
    );
    bad(
        "/v1/completions",
        br#"{"prompt": [1, 99999999]}"#,
        400,
        "out of range",
    );
    bad(
        "/v1/completions",
        br#"{"max_tokens": 3}"#,
        400,
        "prompt: missing",
    );
    let huge = format!("{{\"prompt\": \"{}\"}}", "a".repeat(3 << 20));
    bad("/v1/completions", huge.as_bytes(), 413, "larger than");
    let (status, nf) = s.get("/v1/nothing");
    assert_eq!(status, 404, "{nf}");

    // A client that leaves mid-stream: its slot frees, the server goes on.
    let mut c = s.connect();
    let body = chat("Tell me a long story about a dragon.", 400, true).to_string();
    send(&mut c, "POST", chat_path, &[], body.as_bytes());
    let mut first = [0u8; 512];
    let n = c.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(c);
    s.wait_for_metrics(
        &["requests_cancelled_total 1", "requests_processing 0"],
        "the slot was not freed",
    );
    assert_eq!(s.get("/health").0, 200);
    let (status, _) = s.post_json(chat_path, &chat(q, 4, false));
    assert_eq!(status, 200);
    let status = s.terminate();
    assert!(status.success(), "SIGTERM should exit 0: {status}");
}

#[test]
fn api_key_full_queue_and_shutdown_with_a_request_running() {
    let s = Server::start(&[
        "--parallel",
        "1",
        "--queue",
        "0",
        "--ctx",
        "256",
        "-t",
        "1",
        "--api-key",
        "sesame",
    ]);
    assert_eq!(s.get("/health").0, 200, "/health needs no key");
    let (status, body) = s.get("/v1/models");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("authentication_error"));
    let key = [("Authorization", "Bearer sesame")];
    let (status, _) = s.request("GET", "/v1/models", &key, b"");
    assert_eq!(status, 200);
    let (status, _) = s.request(
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sesamf")],
        b"",
    );
    assert_eq!(status, 401);

    // One slot, no queue: while a long request runs, the next gets 503.
    let mut c = s.connect();
    let body = json!({"prompt": "Once upon a time", "max_tokens": 200, "stream": true,
                      "temperature": 0, "ignore_eos": true})
    .to_string();
    send(
        &mut c,
        "POST",
        "/v1/completions",
        &[key[0]],
        body.as_bytes(),
    );
    let mut first = [0u8; 256];
    let n = c.read(&mut first).unwrap();
    let head = String::from_utf8_lossy(&first[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (status, busy) = s.request(
        "POST",
        "/v1/completions",
        &key,
        br#"{"prompt": "Hello", "max_tokens": 2}"#,
    );
    assert_eq!(status, 503, "{busy}");
    assert!(busy.contains("unavailable_error"));

    // SIGTERM while it streams: the running request finishes whole, then exit 0.
    let pid = s.child.id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let mut raw = first[..n].to_vec();
    raw.extend_from_slice(&rest);
    let (_, body) = parse_response(&raw);
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn slow_clients_are_timed_out_and_hold_nothing() {
    use std::io::Write;
    let s = Server::start(&[
        "--parallel",
        "1",
        "--ctx",
        "128",
        "-t",
        "1",
        "--timeout",
        "1",
    ]);
    // Headers never finished: the connection is closed.
    let mut idle = s.connect();
    idle.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    assert!(
        start.elapsed().as_secs() < 10,
        "the stalled connection was kept"
    );
    // A body that stops halfway: 408, as JSON.
    let mut slow = s.connect();
    slow.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
    )
    .unwrap();
    let mut raw = Vec::new();
    slow.read_to_end(&mut raw).unwrap();
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("\"code\":408"), "{body}");
    // A whole (not streamed) request whose client leaves is cancelled too.
    let mut gone = s.connect();
    let body = json!({"prompt": "Once", "max_tokens": 120, "ignore_eos": true}).to_string();
    send(&mut gone, "POST", "/v1/completions", &[], body.as_bytes());
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(gone);
    s.wait_for_metrics(
        &["requests_cancelled_total 1", "requests_processing 0"],
        "the whole request was not cancelled",
    );
    // The one slot is free: a normal request runs.
    let (status, _) = s.post_json(
        "/v1/completions",
        &json!({"prompt": "Hello", "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(status, 200);
}
