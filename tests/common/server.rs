//! A `qgraph serve` child on a free loopback port, and a tiny HTTP/1.1 client (one request
//! per connection) for the tests that talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    /// Starts the server on the real model with `args`, and waits until `/health` is ok.
    pub fn start(args: &[&str]) -> Server {
        let model = super::real_model();
        let mut child = Command::new(env!("CARGO_BIN_EXE_qgraph"))
            .args(["serve", "--port", "0", "-m"])
            .arg(&model)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting qgraph serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("qgraph serve ended before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("qgraph serve: listening on http://") {
                break addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let s = Server { child, port };
        let start = Instant::now();
        while s.get("/health").0 != 200 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// A handle on a server another handle started (it does not own the child).
    pub fn at(port: u16) -> ServerRef {
        ServerRef { port }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.request("POST", path, &[], body.as_bytes())
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (status, text) = self.post(path, &body.to_string());
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text:?}"));
        (status, v)
    }

    /// One request; returns the status and the (de-chunked) body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut c = self.connect();
        send(&mut c, method, path, headers, body);
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        parse_response(&raw)
    }

    pub fn connect(&self) -> TcpStream {
        let c = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        c
    }

    /// Polls `/metrics` until every `llamacpp:` line in `want` shows (30 s at most, else
    /// fails with `why` and the metrics).
    pub fn wait_for_metrics(&self, want: &[&str], why: &str) {
        let start = Instant::now();
        loop {
            let (_, m) = self.get("/metrics");
            if want.iter().all(|w| m.contains(&format!("llamacpp:{w}"))) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{why}:\n{m}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn send(c: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes()).unwrap();
    // A body over the limit may be refused before it is all read.
    let _ = c.write_all(body);
}

/// Status and body of a whole HTTP/1.1 response (chunked or not).
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    let mut body = &raw[split + 4..];
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, String::from_utf8_lossy(body).into_owned());
    }
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// The `data:` payloads of a server-sent event stream.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The text of a streamed chat completion, and its finish reason.
pub fn streamed_chat_text(body: &str) -> (String, String) {
    let mut text = String::new();
    let mut reason = String::new();
    for d in sse_data(body) {
        if d == "[DONE]" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
        }
        if let Some(r) = v["choices"][0]["finish_reason"].as_str() {
            reason = r.to_string();
        }
    }
    (text, reason)
}

/// Another thread's way to reach a running server.
pub struct ServerRef {
    pub port: u16,
}

impl ServerRef {
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        send(&mut c, "POST", path, &[], body.as_bytes());
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        parse_response(&raw)
    }
}
