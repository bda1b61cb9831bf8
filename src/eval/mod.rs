//! The edit benchmark behind `pie-eval`: next-line prediction after a
//! simulated edit earlier in the context, with the cache brought along by
//! each update mode (Full, Pie, Conflict, Pie with idle repair).
//!
//! Any directory of `.py` or `.rs` files is a corpus. Samples are drawn
//! deterministically from a seed (each from its own seed, so a run can be
//! chunked and resumed), predictions go through the editor's own mirror
//! (alignment, token healing, generation), and every sample is written out
//! so runs can be compared.

pub mod corpus;
pub mod metrics;
pub mod report;
pub mod run;
pub mod simulate;
pub mod suggest;
