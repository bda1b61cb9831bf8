//! pie-edit: a terminal code editor with live next-line prediction.
//!
//! The model runs in-process on a background thread, and its KV cache
//! follows every edit of the buffer by Positional Integrity Encoding (PIE).

pub mod app;
pub mod config;
pub mod editor;
pub mod eval;
pub mod event;
pub mod model;
pub mod predict;
pub mod replay;
pub mod syntax;
pub mod text;
pub mod ui;

/// The memory allocator of the binaries (each declares it with
/// `#[global_allocator]`). A decoding step allocates every activation and
/// the logits anew; with mimalloc instead of glibc's malloc it ran 17-45%
/// faster on one thread and 23-67% on two (BENCHMARKS.md).
pub use mimalloc::MiMalloc as Allocator;

/// Logging for the benchmark binaries: what the engine does, on stderr
/// beside their tables, at the level `PIE_EDIT_LOG` names (default warn).
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIE_EDIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}
