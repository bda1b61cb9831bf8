//! The text of `pie-edit model fetch`.

use anyhow::{Result, anyhow};

use super::fetch::{FetchSources, fetch_preset_into};
use super::preset::{DEFAULT_PRESET, PRESETS, models_dir, preset};

/// `pie-edit model fetch [PRESET]`: download and say where it went.
pub fn run_fetch_command(preset_name: Option<&str>) -> Result<()> {
    let name = preset_name.unwrap_or(DEFAULT_PRESET);
    let preset = preset(name).ok_or_else(|| {
        anyhow!(
            "unknown model preset '{name}'; presets are:\n{}",
            preset_list()
        )
    })?;
    let files = fetch_preset_into(preset, &models_dir()?, &FetchSources::all())?;
    let verified = if preset.sha256.is_some() {
        " (sha256 verified)"
    } else {
        ""
    };
    println!(
        "model {} is at {}{verified}",
        preset.name,
        files.weights.display()
    );
    if let Some(tokenizer) = &files.tokenizer_json {
        println!("tokenizer at {}", tokenizer.display());
    }
    Ok(())
}

/// One line per preset, for help and error texts.
pub fn preset_list() -> String {
    PRESETS
        .iter()
        .map(|p| format!("  {:<22} {}", p.name, p.about))
        .collect::<Vec<_>>()
        .join("\n")
}
