//! Arbitrary small graph definitions bound to a tiny llama model and planned: every graph the
//! binder accepts must plan to Ok or an error (shapes, dtypes, options), never panic; a plan
//! that is made must run one decode step at the scalar level without panicking.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use qgraph::kernels::KernelLevel;
use qgraph::plan::{Plan, PlanOptions};
use qgraph_fuzz::tiny_model_arc;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let model = tiny_model_arc();
    let Ok(graph) = qgraph::graph::parse(src, "fuzz.toml").and_then(|d| d.bind(&model)) else {
        return;
    };
    let opts = PlanOptions {
        n_ctx: 8,
        level: KernelLevel::Scalar,
        ..PlanOptions::default()
    };
    if let Ok(plan) = Plan::new(&graph, model.clone(), &opts) {
        if let Ok(mut s) = qgraph::exec::Session::new(Arc::new(plan)) {
            let _ = s.forward(&[1]);
        }
    }
});
