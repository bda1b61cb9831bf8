//! Inference library: config, rope, KV cache with PIE, forward pass, weights,
//! sampling. It knows nothing of the editor.
//!
//! # Engine API (for the editor's background inference thread)
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use std::sync::Arc;
//! use pie_edit::model::{GenerateOptions, LoadOptions, Model, Sampling, Session, TokenEdit, UpdateMode};
//! # fn main() -> anyhow::Result<()> {
//! let model = Arc::new(Model::load("model.gguf".as_ref(), &LoadOptions::default())?);
//! let mut session = Session::new(model.clone())?;
//! session.reset(&[1, 2, 3, 4, 5])?;                 // encode the window's tokens
//! // The buffer changed: token 2 became two tokens. Hunks use pre-edit positions.
//! let edit = TokenEdit { start: 2, old_len: 1, new_tokens: vec![7, 8] };
//! session.apply(&[edit], UpdateMode::Pie)?;          // the cache now mirrors the new list
//! let opts = GenerateOptions { max_tokens: 32, sampling: Sampling::Greedy };
//! let line = session.generate(4, &opts, &mut |_so_far, _logits| {}, &mut |_token| ControlFlow::Continue(()))?;
//! # Ok(()) }
//! ```
//!
//! - [`Model`] is immutable and `Send + Sync`: load it once, share it in an `Arc`.
//! - [`Session`] owns a token list and its [`KvCache`]; slot `t` holds the token
//!   at position `t`. Keep one per buffer on the inference thread.
//!   - `reset(&tokens)`: encode a fresh window.
//!   - `apply(&[TokenEdit], UpdateMode)`: follow an edit. Several edits received
//!     together go in one call as several hunks (ascending, pre-edit positions).
//!     `UpdateMode::Pie` is the one to use; `Full` and `Conflict` are baselines.
//!   - `slide(drop_head)`: drop tokens at the head of the window (the rest is
//!     re-rotated, not re-encoded). Append at the tail with an `apply` hunk at
//!     `start = tokens().len()`.
//!   - `generate(prefix_len, ..)`: predict after the first `prefix_len` tokens
//!     (the prediction point may be anywhere in the window; later tokens stay
//!     cached but are not attended to, and the cache is unchanged afterwards).
//!     Cancel between tokens by returning `ControlFlow::Break` from `on_token`;
//!     the logit filter is where token healing constrains the first tokens.
//!   - `generate_interruptible(.., interrupted)`: the same, but it also
//!     stops inside a token's forward pass (between layers) once
//!     `interrupted()` is true, returning the tokens so far. The editor's
//!     engine passes "a newer request is waiting".
//!   - `next_logits(prefix_len)`: the next-token logits alone.
//!   - Each cache slot keeps its token's last hidden state, so the logits at a
//!     prediction point in the exact part of the cache cost only the output
//!     layer, and so does each generated token that repeats the cached text
//!     after it (token healing re-typing the token it backed off). Only a
//!     point in PIE's stale suffix re-runs its token through every layer.
//!   - `staleness()` / `repair(max_tokens)`: PIE leaves the entries after an
//!     edit exact at layer 0 but stale above it (they attended to the old
//!     text). The session tracks that stale suffix; `repair` re-encodes it in
//!     chunks, left to right, and once it is used up the cache equals a fresh
//!     encoding. The editor's engine calls it when the user pauses.
//!   - `fork()`: an independent copy (cache copied, not re-encoded), e.g. to
//!     repair a copy in idle time while the original keeps serving.
//! - Loading: [`Model::load`] takes a `.gguf` file or a safetensors directory.
//!   [`LoadOptions::default`] keeps Q4_1 and Q8_0 matrices as stored,
//!   multiplied by our tile kernel (`kernels/quant_tiles/`) on AVX512-VNNI
//!   or on AVX2, whichever is the best this CPU has ([`Kernel`], forced by
//!   `PIE_EDIT_KERNEL`); otherwise (the generic kernel, ARM, and Q4_0/Q5)
//!   it re-quantizes them to Q8_0 and pads Q8_0 rows to a multiple of 256 so
//!   that candle's fast repacked kernel applies. Each layer's q/k/v and gate/up matrices are stacked
//!   into one at load, so that decoding makes one kernel call for each.
//! - Threads: candle sizes its pools from `RAYON_NUM_THREADS` /
//!   `CANDLE_NUM_THREADS` on first use; set them at startup, before any
//!   thread is spawned.
//! - Allocator: a decoding step allocates every activation anew; binaries
//!   should declare [`crate::Allocator`] (mimalloc) as their
//!   `#[global_allocator]`, as ours do (decoding measured 17-67% faster than
//!   with glibc's malloc, BENCHMARKS.md).
//! - Every error (bad file, bad edit, bad token id) is an `anyhow::Error` whose
//!   message names the cause; nothing here panics on bad input.

pub mod config;
pub mod gguf;
mod kernels;
pub mod kv_cache;
pub mod kv_store;
pub mod random_gguf;
pub mod rope;
pub mod session;
pub mod source;
#[cfg(test)]
mod test_util;
pub mod token_edit;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

pub use config::{Arch, ModelConfig, RopeLayout};
pub use kernels::{
    KERNEL_ENV, Kernel, others_keep_every_core_busy, serial as kernels_serial, set_serial,
};
pub use kv_cache::{KvCache, Segment};
pub use rope::Rope;
pub use session::{
    GenerateOptions, RepairStats, Sampling, Session, Staleness, TokenInfo, UpdateMode, UpdateStats,
};
pub use token_edit::TokenEdit;
pub use tokenizer::Tokenizer;
pub use transformer::{Attend, Interrupted, Logits, Model};
pub use weights::{LoadOptions, SlowQuant};
