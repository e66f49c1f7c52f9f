//! `qgraph quantize IN.gguf OUT.gguf TYPE`: a model rewritten in another file type, with
//! llama-quantize's names and per-tensor mixture rules (`quant::mixture`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use qgraph::gguf::{GgufFile, GgufWriter, Value};
use qgraph::quant::mixture::{self, FileType};
use qgraph::quant::GgmlType;

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// The model to read.
    input: PathBuf,
    /// The file to write (written whole or not at all: through OUT.partial, renamed).
    output: PathBuf,
    /// The file type, as llama-quantize names it: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
    /// Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, F16, BF16.
    #[arg(value_name = "TYPE")]
    ftype: String,
    /// Allow a source whose weights are already quantized (quality is lost twice).
    #[arg(long)]
    allow_requantize: bool,
    /// Every quantized tensor in the type's base format: no mixture rules (fallbacks for
    /// rows that do not fit the format's blocks still apply).
    #[arg(long)]
    pure: bool,
    /// Threads that quantize (default: this machine's hardware threads).
    #[arg(short, long)]
    threads: Option<usize>,
}

pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let ftype = FileType::from_name(&args.ftype).map_err(anyhow::Error::msg)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=256).contains(&threads) {
        bail!("--threads {threads} is out of range (1 to 256)");
    }
    let model =
        GgufFile::open(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    if same_file(&args.input, &args.output) {
        bail!(
            "{} is the input file: write the output elsewhere",
            args.output.display()
        );
    }
    let tensors: Vec<mixture::Tensor> = model
        .tensors()
        .iter()
        .map(|t| mixture::Tensor {
            name: &t.name,
            dims: &t.dims,
            dtype: t.dtype,
        })
        .collect();
    let plan = mixture::plan(&tensors, ftype, args.pure)
        .with_context(|| format!("{}", args.input.display()))?;
    if !args.allow_requantize {
        if let Some(t) = plan.iter().find(|c| c.changes() && !c.from.is_float()) {
            bail!(
                "{}: {} is already {} (a quantized type): requantizing loses quality twice; \
                 pass --allow-requantize to do it anyway",
                args.input.display(),
                t.name,
                t.from
            );
        }
    }
    let mut writer = GgufWriter::new();
    writer.alignment = model.layout().alignment;
    for e in model.metadata() {
        if !matches!(
            e.key.as_str(),
            "general.file_type" | "general.quantization_version" | "general.alignment"
        ) {
            writer.set(&e.key, e.value.clone());
        }
    }
    writer.set("general.quantization_version", Value::U32(2));
    writer.set("general.file_type", Value::U32(ftype.llama_id()));
    let infos: Vec<(String, Vec<u64>, GgmlType, u64)> = plan
        .iter()
        .map(|c| (c.name.clone(), c.dims.clone(), c.to, c.bytes_out))
        .collect();
    let start = Instant::now();
    let progress = Progress::new(plan.len());
    writer
        .write_streamed::<anyhow::Error>(&args.output, &infos, |i| {
            let c = &plan[i];
            progress.show(i, c);
            let t = model.tensor(&c.name)?;
            let src = model.tensor_bytes(t);
            if !c.changes() {
                return Ok(src.to_vec());
            }
            Ok(mixture::convert(c, src, threads)?)
        })
        .with_context(|| format!("writing {}", args.output.display()))?;
    progress.done();
    let (before, after): (u64, u64) = plan
        .iter()
        .fold((0, 0), |(b, a), c| (b + c.bytes_in, a + c.bytes_out));
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "quantize: {}, {} tensors, {:.2} MiB -> {:.2} MiB ({:.2} bits per weight) in {:.1} s: {}",
        ftype.name(),
        plan.len(),
        mib(before),
        mib(after),
        8.0 * after as f64 / plan.iter().map(|c| c.n_elements).sum::<u64>().max(1) as f64,
        start.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}

/// Whether two paths name one file (the output would overwrite the memory-mapped input).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// One line per tensor on stderr; rewritten in place when stderr is a terminal.
struct Progress {
    n: usize,
    tty: bool,
}

impl Progress {
    fn new(n: usize) -> Self {
        Progress {
            n,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, i: usize, c: &mixture::Choice) {
        let width = 30;
        let filled = (i + 1) * width / self.n.max(1);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let line = format!(
            "[{bar}] {:>4}/{} {:<32} {:>7} -> {:<7}{}",
            i + 1,
            self.n,
            c.name,
            c.from.name(),
            c.to.name(),
            c.note.map(|n| format!(" ({n})")).unwrap_or_default()
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
