//! `qgraph bench`: llama-bench's pp/tg figures for qgraph, with the machine's read bandwidth
//! and decode's fraction of the roofline it sets.

use std::time::Instant;

use anyhow::bail;
use qgraph::kernels::{read_all, ReadWay};

use super::engine::{Engine, EngineArgs};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Thread counts, comma-separated (default: this machine's physical cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Prompt tokens for the pp test (0 skips it).
    #[arg(short = 'p', long, default_value_t = 128)]
    n_prompt: usize,
    /// Generated tokens for the tg test (0 skips it).
    #[arg(short = 'n', long, default_value_t = 128)]
    n_gen: usize,
    /// Tokens already in the context before each test (llama-bench's n_depth): filled once
    /// per thread count, then every repetition rewinds to it.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    n_depth: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    reps: usize,
    /// An array of JSON objects with llama-bench's field names.
    #[arg(long)]
    json: bool,
}

struct Sample {
    test: String,
    n_depth: usize,
    n_prompt: usize,
    n_gen: usize,
    threads: usize,
    ns: Vec<u64>,
    tokens: usize,
}

impl Sample {
    fn ts(&self) -> Vec<f64> {
        self.ns
            .iter()
            .map(|&ns| self.tokens as f64 * 1e9 / ns as f64)
            .collect()
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `len` bytes of ones in an anonymous map advised as huge pages, as the repacked weights
/// are (`gguf/derived.rs`): the roofline is measured on the footing the kernels stream from.
fn hugepage_buffer(len: usize) -> memmap2::MmapMut {
    let mut map = memmap2::MmapMut::map_anon(len.max(1)).unwrap_or_else(|e| {
        eprintln!("bench: cannot map {len} bytes to measure bandwidth: {e}");
        std::process::exit(1)
    });
    let _ = map.advise(memmap2::Advice::HugePage);
    map.fill(1);
    map
}

/// Streaming read bandwidth of `streams` threads reading at once, each its own share of
/// `bytes` (as the workers of a decode step each stream their rows), in bytes per second
/// from the first stream's start to the last one's finish: each `ReadWay` in turn, 5 passes
/// each, the faster way's median. Each thread reads its own clock: a coordinating thread
/// would be a third on two cores, and its late wake-ups would shorten the measured time.
pub fn read_bandwidth(bytes: usize, streams: usize) -> f64 {
    const PASSES: usize = 5;
    let ways = ReadWay::BOTH;
    let streams = streams.max(1);
    let bufs: Vec<memmap2::MmapMut> = (0..streams)
        .map(|_| hugepage_buffer(bytes / streams))
        .collect();
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let start = std::sync::Barrier::new(streams);
    // Pass i reads the way `ways[i % 2]`.
    let spans: Vec<Vec<(Instant, Instant)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bufs
            .iter()
            .map(|buf| {
                let start = &start;
                scope.spawn(move || {
                    std::hint::black_box(read_all(buf, ReadWay::Plain)); // first touch
                    (0..PASSES * ways.len())
                        .map(|i| {
                            start.wait();
                            let t = Instant::now();
                            let buf = std::hint::black_box(&buf[..]);
                            std::hint::black_box(read_all(buf, ways[i % ways.len()]));
                            (t, Instant::now())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let runs: Vec<(usize, f64)> = (0..PASSES * ways.len())
        .filter_map(|i| {
            let first = spans.iter().map(|s| s[i].0).min()?;
            let last = spans.iter().map(|s| s[i].1).max()?;
            Some((i % ways.len(), total as f64 / (last - first).as_secs_f64()))
        })
        .collect();
    (0..ways.len())
        .map(|w| {
            runs.iter()
                .filter(|r| r.0 == w)
                .map(|r| r.1)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .map(median)
        .fold(f64::NAN, f64::max)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.reps == 0 {
        bail!("-r must be at least 1");
    }
    let thread_counts = if args.threads.is_empty() {
        vec![qgraph::plan::physical_cores()]
    } else {
        args.threads.clone()
    };
    for &t in &thread_counts {
        super::engine::check_threads(t)?;
    }
    let mut engine_args = args.engine.clone();
    engine_args.n_ctx = engine_args
        .n_ctx
        .max(args.n_depth + args.n_prompt.max(args.n_gen) + 1);
    let mut e = Engine::new(&engine_args, 1, thread_counts[0])?;
    let n_vocab = e.session.n_vocab() as u32;
    let prompt: Vec<u32> = (0..args.n_prompt as u32)
        .map(|i| (i * 7919) % n_vocab)
        .collect();
    let depth: Vec<u32> = (0..args.n_depth as u32)
        .map(|i| (i * 104_729 + 17) % n_vocab)
        .collect();
    let at_depth = |t: String| {
        if args.n_depth > 0 {
            format!("{t} @ d{}", args.n_depth)
        } else {
            t
        }
    };
    let weight_bytes = e.session.plan().weight_bytes();
    // Warm: first touches of the weights and the arena.
    e.session.reset();
    e.session.forward(&[1])?;

    let mut samples = Vec::new();
    // Each thread count's roofline: as many streams as workers, measured in this run.
    let mut bandwidth = std::collections::BTreeMap::new();
    for &threads in &thread_counts {
        if threads != e.session.threads() {
            e = Engine::new(&engine_args, 1, threads)?;
            e.session.forward(&[1])?;
        }
        bandwidth.insert(threads, read_bandwidth(weight_bytes as usize, threads));
        // The depth's K and V stay valid below the position a rewind goes back to.
        e.session.reset();
        if !depth.is_empty() {
            e.session.forward(&depth)?;
        }
        if args.n_prompt > 0 {
            let mut ns = Vec::new();
            for _ in 0..args.reps {
                e.session.truncate(args.n_depth);
                let t = Instant::now();
                // The whole prompt in one call: prefill chunks of --batch tokens.
                e.session.forward(&prompt)?;
                ns.push(t.elapsed().as_nanos() as u64);
            }
            samples.push(Sample {
                test: at_depth(format!("pp{}", args.n_prompt)),
                n_depth: args.n_depth,
                n_prompt: args.n_prompt,
                n_gen: 0,
                threads,
                ns,
                tokens: args.n_prompt,
            });
        }
        if args.n_gen > 0 {
            let mut ns = Vec::new();
            for _ in 0..args.reps {
                e.session.truncate(args.n_depth);
                let t = Instant::now();
                let mut tok = 1u32;
                for i in 0..args.n_gen {
                    let logits = e.session.forward(&[tok])?;
                    tok = (logits[i % logits.len()].to_bits() % n_vocab).max(1);
                }
                ns.push(t.elapsed().as_nanos() as u64);
            }
            samples.push(Sample {
                test: at_depth(format!("tg{}", args.n_gen)),
                n_depth: args.n_depth,
                n_prompt: 0,
                n_gen: args.n_gen,
                threads,
                ns,
                tokens: args.n_gen,
            });
        }
    }

    // Bytes a decode step reads: every weight once, plus the K and V values of the positions
    // before it (averaged over the tg run, from the depth on).
    let plan = e.session.plan();
    let kv_row_bytes = plan.kv_bytes_per_position() as u64;
    let avg_past = (args.n_depth + args.n_gen.div_ceil(2)) as u64;
    let bytes_per_token = weight_bytes + kv_row_bytes * avg_past;
    let model_path = super::model::resolve_model(args.engine.model.clone())?;
    let model_name = model_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model_size = std::fs::metadata(&model_path).map(|m| m.len()).unwrap_or(0);
    let n_params: u64 = e.model.tensors().iter().map(|t| t.n_elements).sum();
    let backend = format!("CPU {}", plan.level.name());

    if args.json {
        let rows: Vec<serde_json::Value> = samples
            .iter()
            .map(|s| {
                let ts = s.ts();
                let (avg_ts, stddev_ts) = mean_sd(&ts);
                let ns: Vec<f64> = s.ns.iter().map(|&n| n as f64).collect();
                let (avg_ns, stddev_ns) = mean_sd(&ns);
                let bw = bandwidth[&s.threads];
                let roofline = (s.n_gen > 0).then(|| avg_ts * bytes_per_token as f64 / bw);
                serde_json::json!({
                    "model_filename": model_name,
                    "model_type": format!("{} {}", e.model.get_str("general.architecture").unwrap_or("?"), "Q4_1"),
                    "model_size": model_size,
                    "model_n_params": n_params,
                    "n_threads": s.threads,
                    "n_prompt": s.n_prompt,
                    "n_gen": s.n_gen,
                    "n_depth": s.n_depth,
                    "type_k": plan.kv_types.k.name(),
                    "type_v": plan.kv_types.v.name(),
                    "test": s.test,
                    "avg_ns": avg_ns as u64,
                    "stddev_ns": stddev_ns as u64,
                    "avg_ts": avg_ts,
                    "stddev_ts": stddev_ts,
                    "samples_ns": s.ns,
                    "samples_ts": ts,
                    "backends": "CPU",
                    "qgraph_kernels": plan.level.name(),
                    "qgraph_passes": args.engine.passes,
                    "read_bandwidth_gbs": bw / 1e9,
                    "read_streams": s.threads,
                    "repack": args.engine.repack.on(),
                    "bytes_per_token": bytes_per_token,
                    "roofline_fraction": roofline,
                })
            })
            .collect();
        return super::out(&(serde_json::to_string_pretty(&rows)? + "\n"));
    }
    let mut s = String::new();
    s.push_str("| model | size | params | backend | threads | test | t/s |\n");
    s.push_str("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    for sample in &samples {
        let (m, sd) = mean_sd(&sample.ts());
        s.push_str(&format!(
            "| {} | {:.2} MiB | {:.2} M | {} | {} | {} | {:.2} ± {:.2} |\n",
            model_name,
            model_size as f64 / (1 << 20) as f64,
            n_params as f64 / 1e6,
            backend,
            sample.threads,
            sample.test,
            m,
            sd
        ));
    }
    s.push_str("\nread bandwidth, one stream per thread, all at once (median of 5 passes each way, plain loads and prefetched, the faster):");
    for (threads, bw) in &bandwidth {
        s.push_str(&format!(" {threads}: {:.1} GB/s;", bw / 1e9));
    }
    s.push_str(&format!(
        " over {:.1} MB\nbytes per decoded token: {:.1} MB ({:.1} MB weights + {:.1} MB of K/V rows on average)\n",
        weight_bytes as f64 / 1e6,
        bytes_per_token as f64 / 1e6,
        weight_bytes as f64 / 1e6,
        (bytes_per_token - weight_bytes) as f64 / 1e6
    ));
    for sample in samples.iter().filter(|s| s.n_gen > 0) {
        let (m, _) = mean_sd(&sample.ts());
        let bw = bandwidth[&sample.threads];
        let roofline_ts = bw / bytes_per_token as f64;
        s.push_str(&format!(
            "{} at {} thread(s): {:.1}% of its roofline ({:.0} t/s at {:.1} GB/s)\n",
            sample.test,
            sample.threads,
            100.0 * m / roofline_ts,
            roofline_ts,
            bw / 1e9
        ));
    }
    let r = &e.session.plan().repack;
    if r.made + r.reused > 0 {
        s.push_str(&format!(
            "repack: {} matrices, {:.1} MB in {:.0} ms at load (last session; --repack off reads the file's rows)\n",
            r.made + r.reused,
            r.bytes as f64 / 1e6,
            r.ms
        ));
    }
    super::out(&s)
}
