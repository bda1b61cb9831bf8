//! Spec resolution: a `--model` spec to the files on disk, checked enough
//! that a bad spec fails here, with a message, rather than in the loader.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use super::ModelFiles;
use super::hub::resolve_hub;
use super::preset::{Preset, models_dir, preset, preset_names};

/// Resolve a model spec to files. Presets are not downloaded here (see
/// [`fetch_preset`](super::fetch_preset)); `hf:` specs are, since naming a
/// hub repo asks for it.
pub fn resolve(spec: &str) -> Result<ModelFiles> {
    let spec = spec.trim();
    if spec.is_empty() {
        bail!(
            "empty model spec; use a preset ({}), hf:ORG/REPO[:FILE] or a path",
            preset_names()
        );
    }
    if let Some(preset) = preset(spec) {
        return resolve_preset_in(preset, &models_dir()?);
    }
    if let Some(hub_spec) = spec.strip_prefix("hf:") {
        return resolve_hub(hub_spec);
    }
    let path = Path::new(spec);
    if path.exists() {
        return resolve_local(path);
    }
    let looks_like_path = spec.contains('/') || spec.contains('\\') || spec.ends_with(".gguf");
    if looks_like_path {
        bail!("model file {} does not exist", path.display());
    }
    bail!(
        "unknown model spec '{spec}': not a preset ({}), not hf:ORG/REPO[:FILE], and no such file",
        preset_names()
    )
}

/// A preset's files in `dir`, without downloading.
pub fn resolve_preset_in(preset: &Preset, dir: &Path) -> Result<ModelFiles> {
    let not_fetched = |lacks: &str, missing: &Path| {
        anyhow!(
            "model preset '{}' {lacks} ({} is missing); run `pie-edit model fetch {}`",
            preset.name,
            missing.display(),
            preset.name
        )
    };
    let weights = dir.join(preset.file_name());
    if !weights.is_file() {
        return Err(not_fetched("is not downloaded", &weights));
    }
    let tokenizer_json = match preset.tokenizer_repo {
        Some(_) => {
            let path = dir.join(preset.tokenizer_file_name());
            if !path.is_file() {
                return Err(not_fetched("lacks its tokenizer", &path));
            }
            Some(path)
        }
        None => None,
    };
    Ok(ModelFiles {
        name: preset.name.to_string(),
        weights,
        tokenizer_json,
    })
}

/// A `.gguf` file or a safetensors directory.
pub fn resolve_local(path: &Path) -> Result<ModelFiles> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if path.is_file() {
        if !path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
        {
            bail!(
                "model file {} is not a .gguf file; give a .gguf file or a directory with \
                 config.json and *.safetensors",
                path.display()
            );
        }
        return Ok(ModelFiles {
            name,
            weights: path.to_path_buf(),
            tokenizer_json: None,
        });
    }
    if path.is_dir() {
        let config = path.join("config.json");
        if !config.is_file() {
            bail!("model directory {} has no config.json", path.display());
        }
        let has_safetensors = std::fs::read_dir(path)
            .with_context(|| format!("cannot list model directory {}", path.display()))?
            .filter_map(|entry| entry.ok())
            .any(|entry| {
                entry
                    .path()
                    .extension()
                    .is_some_and(|ext| ext == "safetensors")
            });
        if !has_safetensors {
            bail!(
                "model directory {} has no *.safetensors file",
                path.display()
            );
        }
        let tokenizer = path.join("tokenizer.json");
        if !tokenizer.is_file() {
            bail!(
                "model directory {} has no tokenizer.json (safetensors models need one)",
                path.display()
            );
        }
        return Ok(ModelFiles {
            name,
            weights: path.to_path_buf(),
            tokenizer_json: Some(tokenizer),
        });
    }
    bail!("model path {} does not exist", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::source::{PRESETS, fetch_preset};

    #[test]
    fn unknown_spec_names_itself_and_the_presets() {
        let err = resolve("no-such-model").unwrap_err().to_string();
        assert!(
            err.contains("no-such-model") && err.contains("smollm2-135m"),
            "{err}"
        );
        let err = fetch_preset("no-such-model").unwrap_err().to_string();
        assert!(err.contains("no-such-model"), "{err}");
    }

    #[test]
    fn missing_local_file_is_named() {
        let err = resolve("/nonexistent/dir/model.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/dir/model.gguf"), "{err}");
    }

    #[test]
    fn malformed_hub_specs_are_rejected_before_any_network() {
        for spec in ["hf:", "hf:onlyorg", "hf:org/repo:", "hf:a/b/c"] {
            let err = resolve(spec).unwrap_err().to_string();
            assert!(err.contains("malformed"), "{spec}: {err}");
        }
    }

    #[test]
    fn local_safetensors_directory_needs_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("safetensors"), "{err}");
        std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
        let err = resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let files = resolve(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(files.weights, dir.path());
        assert_eq!(
            files.tokenizer_json,
            Some(dir.path().join("tokenizer.json"))
        );
        assert!(!files.is_gguf());
    }

    #[test]
    fn local_non_gguf_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, b"x").unwrap();
        let err = resolve(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("weights.bin") && err.contains(".gguf"),
            "{err}"
        );
    }

    #[test]
    fn missing_preset_says_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_preset_in(&PRESETS[0], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("pie-edit model fetch smollm2-135m"), "{err}");
    }
}
