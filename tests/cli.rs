//! `qgraph inspect` as a user runs it.

mod common;

use std::process::Command;

fn qgraph(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qgraph"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn inspect_real_model_text() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&["inspect", model.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("GGUF v3:"), "{out}");
    assert!(out.contains("272 tensors"));
    assert!(out.contains("llama.block_count (u32) = 30"));
    // Long arrays are summarised: length and first items.
    assert!(out
        .contains("tokenizer.ggml.tokens (array of string) = [string; 49152] [\"<|endoftext|>\""));
    assert!(out.contains("  Q4_1    210 tensors"));
    assert!(out.contains("  F32      61 tensors"));
    assert!(out.contains("  Q8_0      1 tensors"));
    assert!(out.contains("token_embd.weight          Q8_0   [576, 49152]"));
}

#[test]
fn inspect_real_model_json() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&["inspect", "--json", model.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 272);
    let q41 = tensors.iter().filter(|t| t["dtype"] == "Q4_1").count();
    assert_eq!(q41, 210);
    assert_eq!(v["metadata"]["llama.block_count"], 30);
    assert_eq!(v["metadata"]["tokenizer.ggml.tokens"]["len"], 49152);
    assert_eq!(v["totals"]["Q8_0"]["bytes"], 30081024);
}

#[test]
fn inspect_reports_bad_files_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00\x01").unwrap();
    let (ok, _, err) = qgraph(&["inspect", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.gguf") && err.contains("byte 8") && err.contains("tensor count"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let (ok, _, err) = qgraph(&["inspect", "/no/such/model.gguf"]);
    assert!(!ok);
    assert!(err.contains("/no/such/model.gguf"), "{err}");
}

#[test]
fn check_real_model() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&[
        "check",
        "graphs/llama.toml",
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for want in [
        "n_layer    = 30",
        "n_embd     = 576",
        "n_head     = 9",
        "n_kv_head  = 3",
        "head_dim   = 64",
        "n_ff       = 1536",
        "n_vocab    = 49152",
        "weights: 272 tensors bound",
    ] {
        assert!(out.contains(want), "missing `{want}` in\n{out}");
    }
}

#[test]
fn check_reports_graph_errors_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    let src = include_str!("../graphs/llama.toml").replace(r#"op = "silu""#, r#"op = "swish""#);
    std::fs::write(&path, &src).unwrap();
    let line = src.lines().position(|l| l.contains("swish")).unwrap() + 1;
    let model = common::real_model();
    let (ok, _, err) = qgraph(&[
        "check",
        path.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains(&format!("broken.toml:{line}:")) && err.contains("unknown op `swish`"),
        "{err}"
    );
}

#[test]
fn graph_dot() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&[
        "graph",
        "graphs/llama.toml",
        "-m",
        model.to_str().unwrap(),
        "--format",
        "dot",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("digraph") && out.contains("(× 29)"));
}

const CHAT_PROMPT: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn run_generates_greedily_and_reports_timings() {
    let model = common::real_model();
    let m = model.to_str().unwrap();
    let (ok, out, err) = qgraph(&[
        "run",
        "-m",
        m,
        "-p",
        CHAT_PROMPT,
        "-n",
        "12",
        "--temp",
        "0",
        "--ctx",
        "128",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Paris"), "{out}");
    for field in [
        "load",
        "plan",
        "prompt",
        "generation",
        "t/s",
        "arena",
        "kv cache",
    ] {
        assert!(err.contains(field), "stderr lacks `{field}`: {err}");
    }
    // The same seed gives the same text when sampling.
    let args = [
        "run",
        "-m",
        m,
        "-p",
        "Once upon a time",
        "-n",
        "8",
        "--seed",
        "42",
        "--ctx",
        "64",
    ];
    assert_eq!(qgraph(&args).1, qgraph(&args).1);
}

#[test]
fn run_json_lines() {
    let model = common::real_model();
    let (ok, out, err) = qgraph(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "1, 2, 3,",
        "-n",
        "4",
        "--temp",
        "0",
        "--json",
        "--ctx",
        "64",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2);
    assert!(lines[0]["token"].is_u64() && lines[0]["text"].is_string());
    // "1", ",", " ", "2", ",", " ", "3", ",": smollm splits digits and the spaces before them.
    assert_eq!(lines.last().unwrap()["stats"]["prompt_tokens"], 8);
}

#[test]
fn run_stops_at_a_full_context_and_rejects_a_long_prompt() {
    let model = common::real_model();
    let m = model.to_str().unwrap();
    let (ok, out, err) = qgraph(&[
        "run",
        "-m",
        m,
        "-p",
        "Once upon a time",
        "-n",
        "50",
        "--temp",
        "0",
        "--ctx",
        "8",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("context is full (8 tokens)") && err.contains("stopped: context full"),
        "{err}"
    );
    assert!(!out.trim().is_empty(), "what was generated is kept");
    let (ok, _, err) = qgraph(&[
        "run",
        "-m",
        m,
        "-p",
        "one two three four five six",
        "--ctx",
        "4",
    ]);
    assert!(!ok);
    assert!(
        err.contains("the prompt is 6 tokens but the context holds 4"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn missing_model_and_mismatched_graph() {
    let (ok, _, err) = qgraph(&["run", "-m", "/no/such/model.gguf", "-p", "hi"]);
    assert!(
        !ok && err.contains("/no/such/model.gguf") && !err.contains("panicked"),
        "{err}"
    );
    // Each cause once: the path and the OS error are not repeated along the chain.
    assert_eq!(err.matches("/no/such/model.gguf").count(), 1, "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    // A graph whose dimensions the model does not have.
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("g.toml");
    std::fs::write(
        &graph,
        include_str!("../graphs/llama.toml")
            .replace("{arch}.feed_forward_length", "{arch}.ffn_size"),
    )
    .unwrap();
    let model = common::real_model();
    let (ok, _, err) = qgraph(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "-g",
        graph.to_str().unwrap(),
        "-p",
        "hi",
    ]);
    assert!(
        !ok && err.contains("g.toml") && err.contains("llama.ffn_size"),
        "{err}"
    );
}

#[test]
fn tokenize_parses_special_tokens_unless_told() {
    let model = common::real_model();
    let m = model.to_str().unwrap();
    let (ok, out, _) = qgraph(&["tokenize", "-m", m, "Hello <|im_end|> world"]);
    assert!(ok);
    assert_eq!(out.trim(), "[19556,216,2,905]");
    let (_, plain, _) = qgraph(&["tokenize", "-m", m, "--no-special", "<|im_end|>"]);
    assert!(!plain.contains("[2]") && plain.trim().starts_with('['));
}

#[test]
fn logits_npy_has_the_right_header_and_size() {
    let model = common::real_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.npy");
    let (ok, _, err) = qgraph(&[
        "logits",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "The sky is",
        "-o",
        path.to_str().unwrap(),
        "--ctx",
        "32",
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'shape': (3, 49152)"),
        "{header}"
    );
    assert_eq!((10 + hlen) % 64, 0);
    assert_eq!(bytes.len(), 10 + hlen + 3 * 49152 * 4);
}

/// Chat keeps the KV cache across turns and feeds only the new tokens: its second answer
/// must equal a fresh `run` over the whole rendered conversation.
#[test]
fn chat_reuses_the_cache_exactly() {
    use std::io::Write;
    let model = common::real_model();
    let m = model.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qgraph"))
        .args(["chat", "-m", m, "--temp", "0", "-n", "8", "--ctx", "512"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Name a color.\nName an animal.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<&str> = text.lines().collect();
    assert_eq!(answers.len(), 2, "two one-line answers: {text:?}");
    let system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
    let conversation = format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n\
         <|im_start|>assistant\n{}<|im_end|>\n<|im_start|>user\nName an animal.<|im_end|>\n\
         <|im_start|>assistant\n",
        answers[0]
    );
    let (ok, fresh, err) = qgraph(&[
        "run",
        "-m",
        m,
        "-p",
        &conversation,
        "--temp",
        "0",
        "-n",
        "8",
        "--ctx",
        "512",
    ]);
    assert!(ok, "{err}");
    assert_eq!(fresh.trim_end(), answers[1]);
}

#[test]
fn sampling_options_out_of_range_are_errors_and_negative_temperature_is_greedy() {
    let model = common::real_model();
    let m = model.to_str().unwrap();
    for (flag, value, name) in [
        ("--top-p", "2", "top-p"),
        ("--top-p", "0", "top-p"),
        ("--min-p", "-0.5", "min-p"),
        ("--repeat-penalty", "0", "repeat-penalty"),
        ("--temp", "nan", "temperature"),
    ] {
        let (ok, _, err) = qgraph(&["run", "-m", m, "-p", "hi", "-n", "1", flag, value]);
        assert!(
            !ok && err.contains(name) && err.contains("must be"),
            "{flag} {value}: {err}"
        );
    }
    // llama.cpp reads a temperature at or below 0 as greedy.
    let run = |temp: &str| {
        let args = [
            "run",
            "-m",
            m,
            "-p",
            "The sky is",
            "-n",
            "6",
            "--temp",
            temp,
        ];
        let (ok, out, err) = qgraph(&args);
        assert!(ok, "--temp {temp}: {err}");
        out
    };
    assert_eq!(run("-1"), run("0"));
}

#[test]
fn text_from_a_file_and_thread_counts_checked() {
    let model = common::real_model();
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "Rivers shape the cities").unwrap();
    let f = file.to_str().unwrap();
    let (ok, from_file, err) = qgraph(&["tokenize", "-m", m, "-f", f]);
    assert!(ok, "{err}");
    let (_, inline, _) = qgraph(&["tokenize", "-m", m, "Rivers shape the cities"]);
    assert_eq!(from_file, inline);
    let run = |text: &[&str]| {
        let mut args = vec!["run", "-m", m, "-n", "4", "--temp", "0"];
        args.extend_from_slice(text);
        let (ok, out, err) = qgraph(&args);
        assert!(ok, "{err}");
        out
    };
    assert_eq!(run(&["-f", f]), run(&["-p", "Rivers shape the cities"]));
    let (ok, _, err) = qgraph(&["run", "-m", m, "-n", "1", "-p", "x", "-f", f]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    let (ok, _, err) = qgraph(&["run", "-m", m, "-n", "1", "-f", "/no/such/prompt.txt"]);
    assert!(!ok && err.contains("/no/such/prompt.txt"), "{err}");
    let npy = dir.path().join("l.npy");
    let (ok, _, err) = qgraph(&["logits", "-m", m, "-f", f, "-o", npy.to_str().unwrap()]);
    assert!(ok && npy.exists(), "{err}");
    // More threads than the machine has: a warning, and it still runs; absurd counts: errors.
    let hw = std::thread::available_parallelism().unwrap().get();
    let t = (hw + 1).to_string();
    let (ok, _, err) = qgraph(&["run", "-m", m, "-n", "1", "-p", "x", "-t", &t]);
    assert!(
        ok && err.contains("warning") && err.contains("hardware threads"),
        "{err}"
    );
    for t in ["0", "1000"] {
        let (ok, _, err) = qgraph(&["run", "-m", m, "-n", "1", "-p", "x", "-t", t]);
        assert!(!ok && err.contains("between 1 and 256"), "-t {t}: {err}");
    }
}

#[test]
fn plan_dot_folds_layers_unless_asked() {
    let model = common::real_model();
    let m = model.to_str().unwrap();
    let (ok, folded, err) = qgraph(&["plan", "-m", m, "--format", "dot"]);
    assert!(ok, "{err}");
    assert!(
        folded.contains("other layers") && !folded.contains("blk.5."),
        "folded by default"
    );
    let (ok, all, _) = qgraph(&["plan", "-m", m, "--format", "dot", "--layers", "all"]);
    assert!(ok && all.contains("blk.29.") && !all.contains("other layers"));
}

#[test]
fn long_context_options_are_checked_and_cache_types_run() {
    let model = common::real_model();
    let m = model.to_str().unwrap();
    // Past the trained length (llama.context_length = 8192): refused before any work.
    let (ok, _, err) = qgraph(&["run", "-m", m, "-p", "hi", "-n", "1", "--ctx", "9000"]);
    assert!(!ok);
    assert!(
        err.contains("9000") && err.contains("8192") && err.contains("llama.context_length"),
        "{err}"
    );
    // A cache type the kernels do not have.
    let (ok, _, err) = qgraph(&[
        "run",
        "-m",
        m,
        "-p",
        "hi",
        "-n",
        "1",
        "--cache-type",
        "q4_0",
    ]);
    assert!(!ok);
    assert!(
        err.contains("q4_0") && err.contains("f32, f16 or q8_0"),
        "{err}"
    );
    // Every cache type runs, and the plan says which it holds and how many bytes.
    for (ty, bytes) in [
        ("f32", 30 * 2 * 64 * 192 * 4),
        ("q8_0", 30 * 2 * 64 * 192 / 32 * 34),
    ] {
        let (ok, out, err) = qgraph(&[
            "run",
            "-m",
            m,
            "-p",
            "Rivers",
            "-n",
            "4",
            "--ctx",
            "64",
            "--cache-type",
            ty,
        ]);
        assert!(ok, "{ty}: {err}");
        assert!(!out.is_empty(), "{ty}: no text");
        assert!(
            err.contains(&format!("kv cache    {bytes:>9} bytes")),
            "{ty}: {err}"
        );
        let (ok, out, err) = qgraph(&["plan", "-m", m, "--ctx", "64", "--cache-type-v", ty]);
        assert!(ok, "{err}");
        assert!(
            out.contains(&format!("(K f16, V {ty}, 64 positions)")),
            "{out}"
        );
    }
    // bench -d: the depth is llama-bench's n_depth, in the test's name and the JSON.
    let (ok, out, err) = qgraph(&[
        "bench", "-m", m, "-p", "8", "-n", "4", "-d", "40", "-r", "1", "-t", "1", "--json",
    ]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["test"], "pp8 @ d40");
    assert_eq!(rows[1]["test"], "tg4 @ d40");
    assert_eq!(rows[1]["n_depth"], 40);
    assert_eq!(rows[1]["type_k"], "f16");
}

#[test]
fn the_graph_follows_the_architecture_and_a_wrong_one_is_refused() {
    let gemma = common::gemma3_model();
    let gemma = gemma.to_str().unwrap();
    // The default graph is looked up by architecture: graphs/gemma3.toml for Gemma, and a
    // clear error for an architecture qgraph has no graph for.
    let (ok, out, err) = qgraph(&["check", "-m", gemma]);
    assert!(
        ok && out.contains("graph `gemma3` (") && !out.contains("never reads"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut w = qgraph::gguf::tiny::TinyLlama::default().writer().unwrap();
    for (k, v) in &mut w.metadata {
        if k == "general.architecture" {
            *v = qgraph::gguf::Value::Str("falcon".into());
        }
    }
    let falcon = dir.path().join("falcon.gguf");
    std::fs::write(&falcon, w.to_bytes()).unwrap();
    let (ok, _, err) = qgraph(&["check", "-m", falcon.to_str().unwrap()]);
    assert!(
        !ok && err.contains("no graph for architecture `falcon`")
            && err.contains("graphs/falcon.toml"),
        "{err}"
    );
    // The llama graph, forced onto it, is refused at its `architectures` line.
    let (ok, _, err) = qgraph(&["run", "-m", gemma, "-g", "graphs/llama.toml", "-p", "hi"]);
    assert!(
        !ok && err.contains("graphs/llama.toml:") && err.contains("the model is `gemma3`"),
        "{err}"
    );
    // A copy that accepts gemma3 binds, but leaves Gemma's norms unread: `check` lists them
    // and `run` refuses to run a forward pass that skips them.
    let graph = dir.path().join("g.toml");
    std::fs::write(
        &graph,
        include_str!("../graphs/llama.toml")
            .replace(
                r#"architectures = ["llama"]"#,
                r#"architectures = ["llama", "gemma3"]"#,
            )
            .replace(r#"key = "{arch}.vocab_size", "#, ""),
    )
    .unwrap();
    let g = graph.to_str().unwrap();
    let (ok, out, err) = qgraph(&["check", g, "-m", gemma]);
    assert!(ok, "{err}");
    assert!(
        out.contains("never reads: 72") && out.contains("blk.17.post_ffw_norm.weight"),
        "{out}"
    );
    let (ok, _, err) = qgraph(&["run", "-m", gemma, "-g", g, "-p", "hi", "-n", "1"]);
    assert!(
        !ok && err.contains("does not read 72") && err.contains("attn_k_norm"),
        "{err}"
    );
    // SmolLM2 picks graphs/llama.toml by itself.
    let (ok, out, err) = qgraph(&["check"]);
    assert!(ok && out.contains("graph `llama`"), "{err}");
}
