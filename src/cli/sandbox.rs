//! Rendering a model's chat template in a child process under resource limits.
//!
//! The template is untrusted text from a downloaded file. In-process rendering
//! (`tokenizer::chat::render`) bounds its instructions (fuel) and recursion, but some single
//! instructions cost without bound: a string doubled through a `namespace` in a loop reaches
//! gigabytes in 34 steps, and `indent(4000000000)` allocates 4 GB. Allocation failure
//! aborts a Rust process, so no in-process check can turn that into an error. `qgraph chat`
//! therefore renders each turn in a child (`qgraph __render-template`) whose address space
//! and CPU time are capped by `setrlimit`; the child prints the prompt, or the template's
//! error, and a child killed by its limits becomes a clear error here.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use qgraph::tokenizer::chat::{render, Message};

/// Address space the child may map (the binary, its libraries and the render).
const MEMORY_LIMIT: u64 = 1 << 30;
/// CPU seconds the child may use, and the wall-clock time the parent waits.
const CPU_SECONDS: u64 = 4;
const WALL_LIMIT: Duration = Duration::from_secs(10);

/// What the parent sends the child on stdin.
#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    template: String,
    messages: Vec<Message>,
    bos: String,
    eos: String,
}

/// Renders `template` for `messages` in a child process of this binary under the limits.
pub fn render_sandboxed(
    template: &str,
    messages: &[Message],
    bos: &str,
    eos: &str,
) -> anyhow::Result<String> {
    let request = serde_json::to_vec(&Request {
        template: template.to_string(),
        messages: messages.to_vec(),
        bos: bos.to_string(),
        eos: eos.to_string(),
    })?;
    let exe = std::env::current_exe().context("finding this program to render the template")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__render-template")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limits = || {
        let limit = |what, n: u64| {
            let l = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: `l` is a valid rlimit for the duration of the call.
            if unsafe { libc::setrlimit(what, &l) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        limit(libc::RLIMIT_AS, MEMORY_LIMIT)?;
        limit(libc::RLIMIT_CPU, CPU_SECONDS)
    };
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, limits) };
    let mut child = cmd.spawn().context("starting the template renderer")?;
    let mut stdin = child.stdin.take().context("the renderer's stdin")?;
    let mut stdout = child.stdout.take().context("the renderer's stdout")?;
    let mut stderr = child.stderr.take().context("the renderer's stderr")?;
    // The pipes are drained on their own threads so a large prompt cannot block the child.
    let writer = std::thread::spawn(move || stdin.write_all(&request));
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).map(|_| v)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > WALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the chat template ran longer than {WALL_LIMIT:?} and was stopped");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = writer.join();
    let joined = |h: std::thread::JoinHandle<std::io::Result<Vec<u8>>>| {
        h.join().ok().and_then(|r| r.ok()).unwrap_or_default()
    };
    let (out, err) = (joined(out), joined(err));
    match status.code() {
        Some(0) => String::from_utf8(out).context("the rendered template is not UTF-8"),
        Some(2) => bail!("{}", String::from_utf8_lossy(&err).trim()),
        _ => bail!(
            "the chat template exceeded its budget ({} MiB of memory, {CPU_SECONDS} s of CPU) \
             and was stopped ({status})",
            MEMORY_LIMIT >> 20
        ),
    }
}

/// The child's side (`qgraph __render-template`): a `Request` on stdin, the prompt on
/// stdout (exit 0) or the template's error on stderr (exit 2).
pub fn child_main() -> std::process::ExitCode {
    let mut input = Vec::new();
    let request: Result<Request, String> = std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()));
    let result = request
        .and_then(|r| render(&r.template, &r.messages, &r.bos, &r.eos).map_err(|e| e.to_string()));
    match result {
        Ok(prompt) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(prompt.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return std::process::ExitCode::from(3);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
    }
}
