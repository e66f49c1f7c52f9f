//! qgraph: a dataflow-graph compiler and executor for LLM inference on the CPU.
//!
//! Data flows one way: `gguf` (weights, metadata) and `graph` (the model as an op graph)
//! feed `plan`, which checks everything once and lowers to a static schedule that `exec`
//! runs with `kernels`. See ARCHITECTURE.md.

pub mod exec;
pub mod gguf;
pub mod graph;
pub mod kernels;
pub mod plan;
pub mod quant;
pub mod sample;
pub mod tokenizer;
