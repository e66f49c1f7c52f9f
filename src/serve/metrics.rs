//! Counters for `GET /metrics`, in Prometheus' text format under llama-server's names, so
//! dashboards made for it read qgraph too.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub prompt_tokens: AtomicU64,
    pub prompt_us: AtomicU64,
    pub predicted_tokens: AtomicU64,
    pub predicted_us: AtomicU64,
    /// Forward steps, and the rows they carried (busy slots per decode = rows / steps).
    pub decode_steps: AtomicU64,
    pub decode_rows: AtomicU64,
    pub processing: AtomicU64,
    pub deferred: AtomicU64,
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub cancelled: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn set(gauge: &AtomicU64, n: u64) {
        gauge.store(n, Relaxed);
    }

    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let (steps, rows) = (get(&self.decode_steps), get(&self.decode_rows));
        let per_step = if steps == 0 {
            0.0
        } else {
            rows as f64 / steps as f64
        };
        let prompt_s = get(&self.prompt_us) as f64 / 1e6;
        let predicted_s = get(&self.predicted_us) as f64 / 1e6;
        let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP llamacpp:{name} {help}");
            let _ = writeln!(out, "# TYPE llamacpp:{name} {kind}");
            let _ = writeln!(out, "llamacpp:{name} {value}");
        };
        let pt = get(&self.prompt_tokens);
        let gt = get(&self.predicted_tokens);
        metric(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens processed.",
            pt as f64,
        );
        metric(
            "prompt_seconds_total",
            "counter",
            "Prompt process time.",
            prompt_s,
        );
        metric(
            "tokens_predicted_total",
            "counter",
            "Generation tokens processed.",
            gt as f64,
        );
        metric(
            "tokens_predicted_seconds_total",
            "counter",
            "Predict process time.",
            predicted_s,
        );
        metric(
            "n_decode_total",
            "counter",
            "Forward steps run.",
            steps as f64,
        );
        metric(
            "n_busy_slots_per_decode",
            "counter",
            "Average rows per decode step.",
            per_step,
        );
        metric(
            "prompt_tokens_seconds",
            "gauge",
            "Average prompt throughput in tokens/s.",
            rate(pt, prompt_s),
        );
        metric(
            "predicted_tokens_seconds",
            "gauge",
            "Average generation throughput in tokens/s.",
            rate(gt, predicted_s),
        );
        metric(
            "requests_processing",
            "gauge",
            "Requests in a slot.",
            get(&self.processing) as f64,
        );
        metric(
            "requests_deferred",
            "gauge",
            "Requests waiting for a slot.",
            get(&self.deferred) as f64,
        );
        metric(
            "requests_total",
            "counter",
            "Requests taken.",
            get(&self.requests) as f64,
        );
        metric(
            "requests_rejected_total",
            "counter",
            "Requests refused (busy, invalid).",
            get(&self.rejected) as f64,
        );
        metric(
            "requests_cancelled_total",
            "counter",
            "Requests whose client left.",
            get(&self.cancelled) as f64,
        );
        out
    }
}
