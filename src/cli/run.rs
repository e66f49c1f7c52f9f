//! `qgraph run`: generate text from a prompt, streaming it to stdout.

use std::io::Write;
use std::time::Instant;

use anyhow::bail;
use qgraph::sample::{Sampler, SamplerConfig};
use qgraph::tokenizer::StreamDecoder;

use super::engine::{Engine, EngineArgs};

#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 or less picks the most likely token (greedy).
    #[arg(long = "temp", default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p, in (0, 1] (1: all).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p times the most likely one, in [0, 1] (0: off).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n tokens, > 0 (1: off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed: the same seed, model and prompt give the same text.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The sampler's options, checked: an option out of range is an error naming the flag.
    pub fn config(&self) -> anyhow::Result<SamplerConfig> {
        let cfg = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
            ..SamplerConfig::default()
        };
        cfg.check().map_err(|e| anyhow::anyhow!("--{e}"))?;
        Ok(cfg)
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    threads: super::engine::ThreadArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt (-p TEXT or -f FILE). Special tokens written in it (`<|im_start|>`) are
    /// parsed as llama.cpp's tools do, unless --no-special.
    #[command(flatten)]
    text: super::tools::TextArgs,
    /// Tokens to generate at most (generation also stops at an end-of-generation token or
    /// a full context).
    #[arg(short = 'n', long, default_value_t = 128)]
    n_predict: usize,
    /// Treat special-token text in the prompt as plain text.
    #[arg(long)]
    no_special: bool,
    /// One JSON object per line ({"token", "text"}) and a final {"stats"} object.
    #[arg(long)]
    json: bool,
}

/// Timings and sizes of one generation.
#[derive(serde::Serialize)]
pub struct Stats {
    pub load_ms: f64,
    pub plan_ms: f64,
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    pub prompt_tps: f64,
    pub generated_tokens: usize,
    pub generate_ms: f64,
    pub generate_tps: f64,
    pub arena_bytes: usize,
    pub kv_cache_bytes: usize,
    pub stop: &'static str,
}

impl Stats {
    pub fn print(&self) {
        eprintln!();
        eprintln!("load        {:>9.1} ms", self.load_ms);
        eprintln!("plan        {:>9.1} ms", self.plan_ms);
        eprintln!(
            "prompt      {:>9.1} ms  {:>5} tokens  {:>8.1} t/s",
            self.prompt_ms, self.prompt_tokens, self.prompt_tps
        );
        eprintln!(
            "generation  {:>9.1} ms  {:>5} tokens  {:>8.1} t/s  (stopped: {})",
            self.generate_ms, self.generated_tokens, self.generate_tps, self.stop
        );
        eprintln!("arena       {:>9} bytes", self.arena_bytes);
        eprintln!("kv cache    {:>9} bytes", self.kv_cache_bytes);
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1e3 / ms
    } else {
        0.0
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let sampling = args.sampling.config()?;
    let text = args.text.read()?;
    let mut e = Engine::new(&args.engine, 1, args.threads.resolve()?)?;
    let prompt = e.tokenizer.encode(&text, !args.no_special, true)?;
    if prompt.is_empty() {
        bail!("the prompt is empty (and the model adds no BOS token)");
    }
    if prompt.len() > e.n_ctx() {
        bail!(
            "the prompt is {} tokens but the context holds {} (raise --ctx)",
            prompt.len(),
            e.n_ctx()
        );
    }
    let mut sampler = Sampler::new(sampling, e.session.n_vocab());
    let t0 = Instant::now();
    let mut logits = Vec::new();
    for &t in &prompt {
        sampler.accept(t);
    }
    // The whole prompt in one call: batched prefill, in chunks of --batch tokens. A long one
    // takes seconds: on a terminal, say how far it got.
    let tty = prompt.len() >= 512 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let total = prompt.len();
    logits.extend_from_slice(e.session.forward_with(&prompt, &mut |done| {
        if tty {
            let secs = t0.elapsed().as_secs_f64();
            eprint!(
                "\rprompt {done}/{total} tokens ({:.0} t/s)   ",
                done as f64 / secs.max(1e-9)
            );
            if done == total {
                eprint!("\r{:60}\r", "");
            }
        }
    })?);
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut out = std::io::stdout().lock();
    let mut decoder = StreamDecoder::new();
    let t1 = Instant::now();
    let mut generated = 0;
    let mut stop = "length";
    while generated < args.n_predict {
        let token = sampler.sample(&logits);
        sampler.accept(token);
        generated += 1;
        if e.tokenizer.is_end_of_generation(token) {
            stop = "end of generation";
            break;
        }
        let piece = decoder.push(e.tokenizer.token_bytes(token, false));
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"token": token, "text": piece})
            )?;
        } else {
            out.write_all(piece.as_bytes())?;
            out.flush()?;
        }
        if e.session.position() >= e.n_ctx() {
            stop = "context full";
            eprintln!(
                "\nqgraph: the context is full ({} tokens): stopping after {generated} generated tokens",
                e.n_ctx()
            );
            break;
        }
        logits.clear();
        logits.extend_from_slice(e.session.forward(&[token])?);
    }
    let rest = decoder.finish();
    if !args.json {
        write!(out, "{rest}")?;
        writeln!(out)?;
    }
    let generate_ms = t1.elapsed().as_secs_f64() * 1e3;
    let plan = e.session.plan();
    let stats = Stats {
        load_ms: e.load_ms,
        plan_ms: e.plan_ms,
        prompt_tokens: prompt.len(),
        prompt_ms,
        prompt_tps: rate(prompt.len(), prompt_ms),
        generated_tokens: generated,
        generate_ms,
        generate_tps: rate(generated, generate_ms),
        arena_bytes: plan.peak_bytes,
        kv_cache_bytes: plan.kv_bytes,
        stop,
    };
    if args.json {
        writeln!(out, "{}", serde_json::json!({ "stats": stats }))?;
    } else {
        stats.print();
    }
    Ok(())
}
