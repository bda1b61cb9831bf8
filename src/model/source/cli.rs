//! The text of `pie-edit model fetch`.

use anyhow::{Result, anyhow};

use super::fetch::{FetchSources, fetch_preset_into};
use super::preset::{DEFAULT_PRESET, PRESETS, models_dir, preset};
use super::resolve;
use crate::model::{KERNEL_ENV, Kernel};

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

/// `pie-edit model info`: the default model's place and the kernel that
/// will multiply it on this CPU.
pub fn run_info_command() -> Result<()> {
    match resolve(DEFAULT_PRESET) {
        Ok(files) => println!("model {} at {}", files.name, files.weights.display()),
        Err(_) => println!("model {DEFAULT_PRESET}: not installed (pie-edit model fetch)"),
    }
    let runs: Vec<&str> = Kernel::ALL
        .iter()
        .filter(|k| k.supported())
        .map(|k| k.name())
        .collect();
    println!("kernels this CPU runs: {}", runs.join(", "));
    match Kernel::resolve(None) {
        Ok(kernel) => println!("kernel in use: {kernel} (force another with {KERNEL_ENV}=NAME)"),
        Err(err) => println!("kernel: {err:#}"),
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
