//! The seeded generator sampling draws from (it lives at the bottom of the house, `crate::rng`,
//! since the test-model writer in `gguf::tiny` uses it too).

pub use crate::rng::SplitMix64;
