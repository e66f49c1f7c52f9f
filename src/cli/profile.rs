//! `qgraph profile`: where a decode step's time goes, per op and per kernel.

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
    ns: u64,
    bytes_read: u64,
    flops: u64,
}

pub fn run(args: ProfileArgs) -> anyhow::Result<()> {
    let mut engine_args = args.engine.clone();
    engine_args.n_ctx = engine_args.n_ctx.max(args.n + 2);
    let mut e = Engine::new(&engine_args, 1, args.threads.resolve()?)?;
    let n_steps = e.session.plan().steps.len();
    let mut step_ns = vec![0u64; n_steps];
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
        e.session.forward_timed(&[tok], &mut step_ns)?;
    }
    let timed = t.elapsed().as_secs_f64();

    let plan = e.session.plan();
    let total_ns: u64 = step_ns.iter().sum();
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
                "total_ms": total_ns as f64 / 1e6,
                "ms_per_token": total_ns as f64 / 1e6 / args.n as f64,
                "overhead_percent": overhead,
                "by_op": by_op,
                "by_kernel": by_kernel,
            }))? + "\n"),
        );
    }
    let mut s = format!(
        "{} decode steps, kernels {}: {:.3} ms per token ({:.1} t/s); timers add {:.1}% ({:.1} s → {:.1} s untimed → timed)\n",
        args.n,
        plan.level.name(),
        total_ns as f64 / 1e6 / args.n as f64,
        args.n as f64 * 1e9 / total_ns as f64,
        overhead,
        plain,
        timed
    );
    let table = |title: &str, rows: Vec<(String, &Row)>| {
        let mut t = format!(
            "\n{:<58} {:>6} {:>10} {:>7} {:>10} {:>8} {:>9}\n",
            title, "steps", "ms", "%", "MB read", "GB/s", "GFLOP/s"
        );
        let mut rows = rows;
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.ns));
        for (name, r) in rows {
            let secs = r.ns as f64 / 1e9;
            t.push_str(&format!(
                "{:<58} {:>6} {:>10.2} {:>6.1}% {:>10.1} {:>8.2} {:>9.2}\n",
                name,
                r.steps,
                r.ns as f64 / 1e6,
                100.0 * r.ns as f64 / total_ns as f64,
                r.bytes_read as f64 / 1e6,
                r.bytes_read as f64 / secs / 1e9,
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
