//! `qgraph profile`: where a decode step's time goes, per op and per kernel, each with its
//! streaming rate next to the machine's read bandwidth measured in the same run (as many
//! streams as threads), and the time workers wait at barriers apart from the work.

use std::collections::BTreeMap;
use std::time::Instant;

use super::engine::{Engine, EngineArgs};

#[derive(clap::Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    threads: super::engine::ThreadArgs,
    /// Decode steps to time.
    #[arg(short = 'n', long, default_value_t = 128)]
    n: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Default, serde::Serialize)]
struct Row {
    steps: usize,
    /// Wall time: the slowest worker's time in the steps' kernels.
    ns: u64,
    bytes_read: u64,
    flops: u64,
}

pub fn run(args: ProfileArgs) -> anyhow::Result<()> {
    let mut engine_args = args.engine.clone();
    engine_args.n_ctx = engine_args.n_ctx.max(args.n + 2);
    let mut e = Engine::new(&engine_args, 1, args.threads.resolve()?)?;
    let threads = e.session.threads();
    let mut times = qgraph::exec::StepTimes::new(&e.session);
    let tokens: Vec<u32> = (0..args.n as u32).map(|i| 1 + i * 131 % 40000).collect();
    e.session.forward(&[1])?;

    // The same decode run without and with timers, to state the profiler's overhead.
    e.session.reset();
    let t = Instant::now();
    for &tok in &tokens {
        e.session.forward(&[tok])?;
    }
    let plain = t.elapsed().as_secs_f64();
    e.session.reset();
    let t = Instant::now();
    for &tok in &tokens {
        e.session.forward_timed(&[tok], &mut times)?;
    }
    let timed = t.elapsed().as_secs_f64();
    let plan = e.session.plan();
    let bandwidth = super::bench::read_bandwidth(plan.weight_bytes() as usize, threads);

    let n_steps = plan.steps.len();
    let worker = |table: &[u64], w: usize| -> u64 { table[w * n_steps..][..n_steps].iter().sum() };
    // A step's wall time is its slowest worker's work; the others wait at the next barrier.
    let step_ns: Vec<u64> = (0..n_steps)
        .map(|i| {
            (0..threads)
                .map(|w| times.work[w * n_steps + i])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let total_ns: u64 = step_ns.iter().sum();
    let work_ms: Vec<f64> = (0..threads)
        .map(|w| worker(&times.work, w) as f64 / 1e6)
        .collect();
    let wait_ms: Vec<f64> = (0..threads)
        .map(|w| worker(&times.wait, w) as f64 / 1e6)
        .collect();
    let mut by_op: BTreeMap<&str, Row> = BTreeMap::new();
    let mut by_kernel: BTreeMap<String, Row> = BTreeMap::new();
    for (step, &ns) in plan.steps.iter().zip(&step_ns) {
        // Attention's plan cost is counted at a full context; this run's mean position is n/2.
        let scale = |b: u64| -> u64 {
            if step.op.name() == "attend" {
                b * (args.n as u64 / 2).max(1) / plan.n_ctx as u64
            } else {
                b
            }
        };
        for row in [
            by_op.entry(step.op.name()).or_default(),
            by_kernel.entry(step.kernels.join("+")).or_default(),
        ] {
            row.steps += 1;
            row.ns += ns;
            row.bytes_read += scale(step.bytes_read) * args.n as u64;
            row.flops += scale(step.flops) * args.n as u64;
        }
    }
    let overhead = 100.0 * (timed - plain) / plain;
    if args.json {
        return super::out(
            &(serde_json::to_string_pretty(&serde_json::json!({
                "tokens": args.n,
                "kernels": plan.level.name(),
                "threads": threads,
                "total_ms": total_ns as f64 / 1e6,
                "ms_per_token": total_ns as f64 / 1e6 / args.n as f64,
                "overhead_percent": overhead,
                "read_bandwidth_gbs": bandwidth / 1e9,
                "worker_work_ms": work_ms,
                "worker_barrier_wait_ms": wait_ms,
                "by_op": by_op,
                "by_kernel": by_kernel,
            }))? + "\n"),
        );
    }
    let mut s = format!(
        "{} decode steps, kernels {}, {} thread(s): {:.3} ms per token in kernels ({:.1} t/s); timers add {:.1}% ({:.1} s → {:.1} s untimed → timed)\n\
         read bandwidth, {} stream(s) at once: {:.1} GB/s (each row's GB/s is bytes read over the slowest worker's time)\n",
        args.n,
        plan.level.name(),
        threads,
        total_ns as f64 / 1e6 / args.n as f64,
        args.n as f64 * 1e9 / total_ns as f64,
        overhead,
        plain,
        timed,
        threads,
        bandwidth / 1e9
    );
    for w in 0..threads {
        s.push_str(&format!(
            "worker {w}: {:.1} ms in kernels, {:.1} ms waiting at barriers ({:.1}%)\n",
            work_ms[w],
            wait_ms[w],
            100.0 * wait_ms[w] / (work_ms[w] + wait_ms[w]).max(1e-9)
        ));
    }
    let table = |title: &str, rows: Vec<(String, &Row)>| {
        let mut t = format!(
            "\n{:<58} {:>6} {:>10} {:>7} {:>10} {:>8} {:>6} {:>9}\n",
            title, "steps", "ms", "%", "MB read", "GB/s", "% bw", "GFLOP/s"
        );
        let mut rows = rows;
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.ns));
        for (name, r) in rows {
            let secs = r.ns as f64 / 1e9;
            let rate = r.bytes_read as f64 / secs;
            t.push_str(&format!(
                "{:<58} {:>6} {:>10.2} {:>6.1}% {:>10.1} {:>8.2} {:>5.0}% {:>9.2}\n",
                name,
                r.steps,
                r.ns as f64 / 1e6,
                100.0 * r.ns as f64 / total_ns as f64,
                r.bytes_read as f64 / 1e6,
                rate / 1e9,
                100.0 * rate / bandwidth,
                r.flops as f64 / secs / 1e9
            ));
        }
        t
    };
    s.push_str(&table(
        "op",
        by_op.iter().map(|(k, v)| (k.to_string(), v)).collect(),
    ));
    s.push_str(&table(
        "kernel",
        by_kernel.iter().map(|(k, v)| (k.clone(), v)).collect(),
    ));
    super::out(&s)
}
