//! `qgraph tokenize`, `qgraph logits` and `qgraph perplexity`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use qgraph::exec::perplexity::perplexity_with;

use super::engine::{Engine, EngineArgs};

/// Text given on the command line (`-p TEXT`) or read from a file (`-f FILE`): one of them.
#[derive(clap::Args, Clone)]
#[group(required = true, multiple = false)]
pub struct TextArgs {
    /// The text itself.
    #[arg(short, long)]
    prompt: Option<String>,
    /// A file holding the text (UTF-8), for long prompts.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
}

impl TextArgs {
    pub fn read(&self) -> anyhow::Result<String> {
        match (&self.prompt, &self.file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(path)) => {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
            }
            (None, None) => bail!("give -p TEXT or -f FILE"),
        }
    }
}

#[derive(clap::Args)]
pub struct TokenizeArgs {
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The text to tokenize.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    text: Option<String>,
    /// A file holding the text to tokenize.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Treat special-token text (`<|im_start|>`) as plain text.
    #[arg(long)]
    no_special: bool,
}

pub fn tokenize(args: TokenizeArgs) -> anyhow::Result<()> {
    let text = TextArgs {
        prompt: args.text,
        file: args.file,
    }
    .read()?;
    let (_, model) = super::model::open_model(args.model)?;
    let tok = qgraph::tokenizer::Tokenizer::from_gguf(&model)?;
    let ids = tok.encode(&text, !args.no_special, true)?;
    super::out(&(serde_json::to_string(&ids)? + "\n"))
}

#[derive(clap::Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    threads: super::engine::ThreadArgs,
    /// The text to run (special tokens parsed).
    #[arg(short, long, conflicts_with_all = ["tokens", "file"])]
    prompt: Option<String>,
    /// A file holding the text to run.
    #[arg(short = 'f', long = "file", conflicts_with = "tokens")]
    file: Option<PathBuf>,
    /// A JSON file holding an array of token ids.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Where to write the logits: a NumPy .npy file, float32, shape [n_tokens, n_vocab].
    #[arg(short, long)]
    output: PathBuf,
}

/// Writes a float32 C-order array as NumPy `.npy` (format version 1.0), atomically: into a
/// temporary file beside `path`, renamed into place once complete, so an interrupted or
/// failed write never leaves a truncated `.npy` under the final name.
pub fn write_npy(path: &std::path::Path, shape: [usize; 2], data: &[f32]) -> anyhow::Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape[0], shape[1]
    );
    // magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let write = || -> anyhow::Result<()> {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        f.write_all(b"\x93NUMPY\x01\x00")?;
        f.write_all(&(header.len() as u16).to_le_bytes())?;
        f.write_all(header.as_bytes())?;
        for v in data {
            f.write_all(&v.to_le_bytes())?;
        }
        f.into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

pub fn logits(args: LogitsArgs) -> anyhow::Result<()> {
    let mut e = Engine::new(&args.engine, 1, args.threads.resolve()?)?;
    let text = match (&args.prompt, &args.file) {
        (None, None) => None,
        (p, f) => Some(
            TextArgs {
                prompt: p.clone(),
                file: f.clone(),
            }
            .read()?,
        ),
    };
    let tokens: Vec<u32> = match (&text, &args.tokens) {
        (Some(p), _) => e.tokenizer.encode(p, true, true)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!("{}: expected a JSON array of token ids", path.display())
            })?
        }
        (None, None) => bail!("give -p TEXT, -f FILE or --tokens IDS.json"),
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
    /// Kernel level: auto, scalar, avx2, avx512.
    #[arg(long, default_value = "auto")]
    kernels: qgraph::kernels::KernelLevel,
    #[command(flatten)]
    repack: super::plan::RepackArgs,
    #[command(flatten)]
    cache: super::plan::CacheArgs,
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
        cache: args.cache,
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
    // Progress on a terminal only: long contexts take minutes.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // As llama-perplexity: a model that starts its input with BOS gets it at every chunk.
    let bos = e.tokenizer.bos.filter(|_| e.tokenizer.add_bos);
    let p = perplexity_with(
        &mut e.session,
        &tokens,
        args.n_ctx,
        bos,
        &mut |done, all, ppl| {
            if tty {
                let secs = started.elapsed().as_secs_f64();
                eprint!("\rchunk {done}/{all}: perplexity so far {ppl:.4} ({secs:.0} s)   ");
                if done == all {
                    eprintln!();
                }
            }
        },
    )?;
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
