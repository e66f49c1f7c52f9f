//! qgraph: a dataflow-graph compiler and executor for LLM inference on the CPU.
//!
//! Data flows one way: `gguf` (weights, metadata) and `graph` (the model as an op graph)
//! feed `plan`, which checks everything once and lowers to a static schedule that `exec`
//! runs with `kernels`. `quant` (element formats), `vocab` (the op words every floor
//! shares) and `rng` (a seeded generator) sit at the bottom. See ARCHITECTURE.md.

pub mod exec;
pub mod gguf;
pub mod graph;
pub mod kernels;
pub mod plan;
pub mod quant;
pub mod rng;
pub mod sample;
pub mod serve;
pub mod tokenizer;
pub mod vocab;
