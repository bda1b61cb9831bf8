//! File IO: refuse what cannot be edited safely, and save atomically.
//!
//! Text is kept byte-exact (CRLF and a missing final newline included), so
//! opening and saving an unchanged file writes the same bytes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ropey::Rope;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}: is a directory, not a file")]
    IsDirectory(PathBuf),
    #[error("{0}: cannot read: {1}")]
    Unreadable(PathBuf, io::Error),
    #[error("{0}: looks like a binary file (NUL byte at offset {1}); refusing to open it")]
    Binary(PathBuf, usize),
    #[error("{0}: is not valid UTF-8 (bad byte at offset {1}); refusing to open it")]
    InvalidUtf8(PathBuf, usize),
}

/// Read `path` as text. `Ok(None)` means it does not exist yet: a new buffer
/// that the first save creates.
pub fn read_text(path: &Path) -> Result<Option<String>, OpenError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(OpenError::IsDirectory(path.to_path_buf())),
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(OpenError::Unreadable(path.to_path_buf(), err)),
    }
    let bytes = fs::read(path).map_err(|err| OpenError::Unreadable(path.to_path_buf(), err))?;
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        return Err(OpenError::Binary(path.to_path_buf(), nul));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|err| OpenError::InvalidUtf8(path.to_path_buf(), err.utf8_error().valid_up_to()))
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0} is read-only")]
    ReadOnlyFile(PathBuf),
    #[error("directory {0} is read-only")]
    ReadOnlyDir(PathBuf),
    #[error("cannot save {0}: {1}")]
    Io(PathBuf, io::Error),
}

fn has_no_write_bits(meta: &fs::Metadata) -> bool {
    // Mode bits rather than access(2): a root user may write anyway, but a
    // file the user marked read-only should not be overwritten behind their back.
    meta.permissions().readonly()
}

/// Write `rope` to `path` through a temporary file in the same directory:
/// write, fsync, copy the original's permissions, rename over the original,
/// fsync the directory. On any failure the original is untouched.
pub fn save_atomic(path: &Path, rope: &Rope) -> Result<(), SaveError> {
    let io_err = |err| SaveError::Io(path.to_path_buf(), err);
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let original = fs::metadata(path).ok();
    if let Some(meta) = &original {
        if meta.is_dir() {
            return Err(io_err(io::Error::other("is a directory")));
        }
        if has_no_write_bits(meta) {
            return Err(SaveError::ReadOnlyFile(path.to_path_buf()));
        }
    }
    let dir_meta = fs::metadata(&dir).map_err(io_err)?;
    if has_no_write_bits(&dir_meta) {
        return Err(SaveError::ReadOnlyDir(dir));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_path = dir.join(format!(".{file_name}.pie-edit-{}.tmp", std::process::id()));
    let result = (|| -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)?;
        {
            let mut writer = io::BufWriter::new(&mut file);
            for chunk in rope.chunks() {
                writer.write_all(chunk.as_bytes())?;
            }
            writer.flush()?;
        }
        file.sync_all()?;
        if let Some(meta) = &original {
            fs::set_permissions(&tmp_path, meta.permissions())?;
        }
        fs::rename(&tmp_path, path)?;
        // The rename is durable only once the directory entry is synced.
        if let Ok(dir_handle) = fs::File::open(&dir) {
            let _ = dir_handle.sync_all();
        }
        Ok(())
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(io_err(err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn refuses_binary_invalid_utf8_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("a.bin");
        fs::write(&bin, b"ab\0cd").unwrap();
        assert!(matches!(read_text(&bin), Err(OpenError::Binary(_, 2))));
        let latin1 = dir.path().join("b.txt");
        fs::write(&latin1, b"caf\xe9\n").unwrap();
        assert!(matches!(
            read_text(&latin1),
            Err(OpenError::InvalidUtf8(_, 3))
        ));
        assert!(matches!(
            read_text(dir.path()),
            Err(OpenError::IsDirectory(_))
        ));
        assert!(read_text(&dir.path().join("new.py")).unwrap().is_none());
    }

    #[test]
    fn save_keeps_permissions_and_refuses_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sh");
        fs::write(&path, "old\r\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
        save_atomic(&path, &Rope::from_str("new\r\nno final newline")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\r\nno final newline");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o750
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        assert!(matches!(
            save_atomic(&path, &Rope::from_str("x")),
            Err(SaveError::ReadOnlyFile(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"new\r\nno final newline");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }
}
