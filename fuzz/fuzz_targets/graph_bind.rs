//! Arbitrary text as a graph definition: parsing and binding it to a tiny llama model must
//! return Ok or an error at a location, never panic, and never loop without end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qgraph_fuzz::tiny_model;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(def) = qgraph::graph::parse(src, "fuzz.toml") {
        let _ = def.bind(tiny_model());
    }
});
