//! The executor: walks a finished `Plan`. No map look-ups, no `Result`, no allocation and no
//! shape checks inside the step loop: all of that happened in `plan`.

mod memory;
pub mod perplexity;
mod session;
mod step;
pub mod threads;

pub use session::{ExecError, Row, Session, StepTimes};
