//! Installing a downloaded file: checked against its sha256 and renamed
//! into place only then, so that no reader ever sees a partial or corrupt
//! model under its real name.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Stream `source` to `dest` through a temporary file in the same folder,
/// check the sha256 when one is expected, then rename into place. `label`
/// names the source in errors.
pub fn install_verified(
    source: &mut dyn Read,
    label: &Path,
    dest: &Path,
    sha256: Option<&str>,
) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{file_name}.{}.{}.partial",
        std::process::id(),
        unique_suffix()
    ));
    let result = (|| -> Result<()> {
        let mut out = std::fs::File::create(&temp)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = source
                .read(&mut buffer)
                .with_context(|| format!("cannot read {}", label.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .with_context(|| format!("cannot write {}", temp.display()))?;
        }
        out.sync_all()
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let actual = hex(&hasher.finalize());
        if let Some(expected) = sha256
            && actual != expected
        {
            bail!(
                "checksum mismatch for {}: sha256 is {actual}, expected {expected} \
                 (corrupt or different file; nothing was installed at {})",
                label.display(),
                dest.display()
            );
        }
        std::fs::rename(&temp, dest)
            .with_context(|| format!("cannot move {} into place", dest.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_mismatch_installs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.gguf");
        let data = b"some model bytes".to_vec();
        let right = hex(&Sha256::digest(&data));
        let err = install_verified(
            &mut &data[..],
            Path::new("src.gguf"),
            &dest,
            Some(&"0".repeat(64)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("src.gguf"),
            "{err}"
        );
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file left behind"
        );
        install_verified(&mut &data[..], Path::new("src.gguf"), &dest, Some(&right)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }
}
