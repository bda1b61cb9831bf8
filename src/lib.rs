//! pie-edit: a terminal code editor with live next-line prediction.
//!
//! The model runs in-process on a background thread, and its KV cache
//! follows every edit of the buffer by Positional Integrity Encoding (PIE).

pub mod app;
pub mod config;
pub mod editor;
pub mod eval;
pub mod model;
pub mod predict;
pub mod replay;
pub mod syntax;
pub mod text;
pub mod ui;

/// The memory allocator of the binaries (each declares it with
/// `#[global_allocator]`). With glibc's, a decoding step spent much of its
/// time allocating and freeing its activations and logits: mimalloc made
/// decoding 25% faster on one thread and about 50% on two (BENCHMARKS.md).
pub use mimalloc::MiMalloc as Allocator;
