//! `qgraph tokenize`, `qgraph logits` and `qgraph perplexity`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use qgraph::exec::perplexity::perplexity;

use super::engine::{Engine, EngineArgs};

#[derive(clap::Args)]
pub struct TokenizeArgs {
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The text to tokenize.
    text: String,
    /// Treat special-token text (`<|im_start|>`) as plain text.
    #[arg(long)]
    no_special: bool,
}

pub fn tokenize(args: TokenizeArgs) -> anyhow::Result<()> {
    let (_, model) = super::model::open_model(args.model)?;
    let tok = qgraph::tokenizer::Tokenizer::from_gguf(&model)?;
    let ids = tok.encode(&args.text, !args.no_special, true)?;
    super::out(&(serde_json::to_string(&ids)? + "\n"))
}

#[derive(clap::Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    threads: super::engine::ThreadArgs,
    /// The text to run (special tokens parsed).
    #[arg(short, long, conflicts_with = "tokens")]
    prompt: Option<String>,
    /// A JSON file holding an array of token ids.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Where to write the logits: a NumPy .npy file, float32, shape [n_tokens, n_vocab].
    #[arg(short, long)]
    output: PathBuf,
}

/// Writes a float32 C-order array as NumPy `.npy` (format version 1.0).
pub fn write_npy(path: &std::path::Path, shape: [usize; 2], data: &[f32]) -> anyhow::Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape[0], shape[1]
    );
    // magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for v in data {
        f.write_all(&v.to_le_bytes())?;
    }
    f.flush()?;
    Ok(())
}

pub fn logits(args: LogitsArgs) -> anyhow::Result<()> {
    let mut e = Engine::new(&args.engine, 1, args.threads.resolve()?)?;
    let tokens: Vec<u32> = match (&args.prompt, &args.tokens) {
        (Some(p), _) => e.tokenizer.encode(p, true, true)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!("{}: expected a JSON array of token ids", path.display())
            })?
        }
        (None, None) => bail!("give -p TEXT or --tokens IDS.json"),
    };
    if tokens.is_empty() {
        bail!("no tokens to run");
    }
    e.check_room(tokens.len(), "the input")?;
    let n_vocab = e.session.n_vocab();
    let mut all = Vec::with_capacity(tokens.len() * n_vocab);
    for &t in &tokens {
        all.extend_from_slice(e.session.forward(&[t])?);
    }
    write_npy(&args.output, [tokens.len(), n_vocab], &all)?;
    eprintln!(
        "wrote {} ({} × {} float32)",
        args.output.display(),
        tokens.len(),
        n_vocab
    );
    Ok(())
}

#[derive(clap::Args)]
#[command(
    long_about = "Perplexity of a text file, computed as llama.cpp's llama-perplexity does: \
the text is tokenized whole and cut into consecutive chunks of --ctx tokens (an incomplete \
tail is dropped); each chunk is evaluated from an empty context and only its second half is \
scored (position j in [ctx/2, ctx-1) predicting token j+1), so every scored token sees at least \
ctx/2 tokens of context."
)]
pub struct PerplexityArgs {
    #[command(flatten)]
    threads: super::engine::ThreadArgs,
    #[arg(short, long)]
    model: Option<PathBuf>,
    #[arg(short, long)]
    graph: Option<PathBuf>,
    /// The text file.
    #[arg(short, long)]
    file: PathBuf,
    /// Chunk length (the context of each evaluation).
    #[arg(long = "ctx", default_value_t = 512)]
    n_ctx: usize,
    #[arg(long, default_value = "all")]
    passes: String,
    /// Kernel level: auto, scalar, avx2.
    #[arg(long, default_value = "auto")]
    kernels: qgraph::kernels::KernelLevel,
    #[command(flatten)]
    repack: super::plan::RepackArgs,
    #[arg(long)]
    json: bool,
}

pub fn perplexity_cmd(args: PerplexityArgs) -> anyhow::Result<()> {
    let engine_args = EngineArgs {
        model: args.model,
        graph: args.graph,
        n_ctx: args.n_ctx,
        passes: args.passes,
        kernels: args.kernels,
        batch: 1,
        repack: args.repack,
    };
    let mut e = Engine::new(&engine_args, 64, args.threads.resolve()?)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let tokens = e.tokenizer.encode(&text, false, true)?;
    if tokens.len() < args.n_ctx {
        bail!(
            "{} holds {} tokens: fewer than one chunk of {}",
            args.file.display(),
            tokens.len(),
            args.n_ctx
        );
    }
    let started = std::time::Instant::now();
    let p = perplexity(&mut e.session, &tokens, args.n_ctx)?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        super::out(
            &(serde_json::to_string_pretty(&serde_json::json!({
                "file": args.file,
                "tokens": tokens.len(),
                "perplexity": p,
                "seconds": secs,
            }))? + "\n"),
        )
    } else {
        super::out(&format!(
            "{}: {} tokens, {} chunks of {}, {} scored\nchunk perplexities: {}\nperplexity: {:.4} ({:.1} s)\n",
            args.file.display(),
            tokens.len(),
            p.chunk_ppl.len(),
            p.n_ctx,
            p.n_scored,
            p.chunk_ppl.iter().map(|c| format!("{c:.3}")).collect::<Vec<_>>().join(", "),
            p.ppl,
            secs
        ))
    }
}
