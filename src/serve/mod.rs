//! `qgraph serve`: an OpenAI-compatible HTTP server over one model, batching every active
//! request's next token into one forward step.

pub mod scheduler;
pub mod text;
pub mod api;
pub mod error;
