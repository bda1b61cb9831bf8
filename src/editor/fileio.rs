//! File IO: refuse what cannot be edited safely, remember what was read,
//! and save without ever leaving a half-written file.
//!
//! Text is kept byte-exact (CRLF and a missing final newline included), so
//! opening and saving an unchanged file writes the same bytes.
//!
//! Saving follows symlinks (through chains) and writes the file they point
//! to, so every link stays a link. A file with one name is replaced by an
//! atomic rename; a file with several hard links is written in place after
//! a backup copy (vim's `backupcopy=auto`), so its inode and link count stay.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ropey::Rope;
use sha2::{Digest, Sha256};

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

/// What a file on disk was when the editor last read or wrote it: enough to
/// tell later whether another program changed it meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStamp {
    pub modified: Option<SystemTime>,
    pub len: u64,
    pub sha256: [u8; 32],
}

impl DiskStamp {
    fn new(meta: &fs::Metadata, bytes: &[u8]) -> DiskStamp {
        DiskStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            sha256: Sha256::digest(bytes).into(),
        }
    }

    fn of_rope(meta: &fs::Metadata, rope: &Rope) -> DiskStamp {
        let mut hasher = Sha256::new();
        for chunk in rope.chunks() {
            hasher.update(chunk.as_bytes());
        }
        DiskStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            sha256: hasher.finalize().into(),
        }
    }
}

/// A file as read: its text and its stamp.
#[derive(Debug)]
pub struct ReadFile {
    pub text: String,
    pub stamp: DiskStamp,
}

/// Read `path` as text. `Ok(None)` means it does not exist yet: a new buffer
/// that the first save creates.
pub fn read_text(path: &Path) -> Result<Option<ReadFile>, OpenError> {
    let meta = match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(OpenError::IsDirectory(path.to_path_buf())),
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(OpenError::Unreadable(path.to_path_buf(), err)),
    };
    let bytes = fs::read(path).map_err(|err| OpenError::Unreadable(path.to_path_buf(), err))?;
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        return Err(OpenError::Binary(path.to_path_buf(), nul));
    }
    let stamp = DiskStamp::new(&meta, &bytes);
    String::from_utf8(bytes)
        .map(|text| Some(ReadFile { text, stamp }))
        .map_err(|err| OpenError::InvalidUtf8(path.to_path_buf(), err.utf8_error().valid_up_to()))
}

/// How the file on disk compares with a stamp taken earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskChange {
    Unchanged,
    /// Another program wrote different bytes.
    Modified,
    /// The file is gone (deleted or moved away).
    Deleted,
}

/// Compare the file with `stamp`. Same mtime and size count as unchanged
/// without reading; otherwise the content hash decides, so a `touch` or a
/// formatter that rewrote identical bytes is no change. Then the stamp takes
/// the new mtime, so the file is not read and hashed again at every look.
pub fn disk_change(path: &Path, stamp: &mut DiskStamp) -> DiskChange {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return DiskChange::Deleted,
        // Unreadable right now (permissions changed, NFS hiccup): not a
        // reason to bother the user.
        Err(_) => return DiskChange::Unchanged,
    };
    if meta.modified().ok() == stamp.modified && meta.len() == stamp.len {
        return DiskChange::Unchanged;
    }
    match fs::read(path) {
        Ok(bytes) if Sha256::digest(&bytes).as_slice() == stamp.sha256 => {
            stamp.modified = meta.modified().ok();
            DiskChange::Unchanged
        }
        Ok(_) => DiskChange::Modified,
        Err(_) => DiskChange::Unchanged,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0} is read-only")]
    ReadOnlyFile(PathBuf),
    #[error("directory {0} is read-only")]
    ReadOnlyDir(PathBuf),
    #[error("cannot save {0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("cannot save {0}: {1}; the original is kept in {2}")]
    InPlaceFailed(PathBuf, io::Error, PathBuf),
}

fn has_no_write_bits(meta: &fs::Metadata) -> bool {
    // Mode bits rather than access(2): a root user may write anyway, but a
    // file the user marked read-only should not be overwritten behind their back.
    meta.permissions().readonly()
}

/// Links followed before giving up (the kernel's own limit is 40).
const MAX_LINK_DEPTH: usize = 40;

/// The file a path finally names, following symlinks through chains. A
/// dangling link resolves to the missing target, which the save creates.
pub fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINK_DEPTH {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_LINK_DEPTH} levels of symbolic links"
    )))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn write_rope(file: &mut fs::File, rope: &Rope) -> io::Result<()> {
    let mut writer = io::BufWriter::new(&mut *file);
    for chunk in rope.chunks() {
        writer.write_all(chunk.as_bytes())?;
    }
    writer.flush()?;
    drop(writer);
    file.sync_all()
}

/// A temporary name beside `path`, in the same directory (so a rename is atomic).
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(
        ".{file_name}.pie-edit-{}.{tag}",
        std::process::id()
    ))
}

/// Save `rope` to `path` (through its links) and return the new stamp.
/// On any failure the original is untouched, or for a hard-linked file
/// restored from its backup.
pub fn save(path: &Path, rope: &Rope) -> Result<DiskStamp, SaveError> {
    let io_err = |err| SaveError::Io(path.to_path_buf(), err);
    let target = resolve_links(path).map_err(io_err)?;
    let original = fs::metadata(&target).ok();
    if let Some(meta) = &original {
        if meta.is_dir() {
            return Err(io_err(io::Error::other("is a directory")));
        }
        if has_no_write_bits(meta) {
            return Err(SaveError::ReadOnlyFile(path.to_path_buf()));
        }
    }
    match &original {
        Some(meta) if meta.nlink() > 1 => save_in_place(path, &target, rope)?,
        _ => save_by_rename(path, &target, original.as_ref(), rope)?,
    }
    let meta = fs::metadata(&target).map_err(io_err)?;
    Ok(DiskStamp::of_rope(&meta, rope))
}

/// Write a temporary file, fsync it, give it the original's permissions,
/// rename it over the original, fsync the directory.
fn save_by_rename(
    path: &Path,
    target: &Path,
    original: Option<&fs::Metadata>,
    rope: &Rope,
) -> Result<(), SaveError> {
    let io_err = |err| SaveError::Io(path.to_path_buf(), err);
    let dir = parent_dir(target);
    let dir_meta = fs::metadata(&dir).map_err(io_err)?;
    if has_no_write_bits(&dir_meta) {
        return Err(SaveError::ReadOnlyDir(dir));
    }
    let tmp_path = sibling(target, "tmp");
    let result = (|| -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)?;
        write_rope(&mut file, rope)?;
        if let Some(meta) = original {
            fs::set_permissions(&tmp_path, meta.permissions())?;
        }
        fs::rename(&tmp_path, target)?;
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

/// A file with several hard links keeps its inode: copy it aside, write it
/// in place, drop the copy. A failed write puts the copy's bytes back.
fn save_in_place(path: &Path, target: &Path, rope: &Rope) -> Result<(), SaveError> {
    let io_err = |err| SaveError::Io(path.to_path_buf(), err);
    let backup = sibling(target, "bak");
    fs::copy(target, &backup).map_err(io_err)?;
    let written = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(target)
        .and_then(|mut file| write_rope(&mut file, rope));
    match written {
        Ok(()) => {
            let _ = fs::remove_file(&backup);
            Ok(())
        }
        Err(err) => {
            let restored = fs::read(&backup).and_then(|bytes| {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(target)?;
                file.write_all(&bytes)?;
                file.sync_all()
            });
            match restored {
                Ok(()) => {
                    let _ = fs::remove_file(&backup);
                    Err(io_err(err))
                }
                Err(_) => Err(SaveError::InPlaceFailed(path.to_path_buf(), err, backup)),
            }
        }
    }
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
        save(&path, &Rope::from_str("new\r\nno final newline")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\r\nno final newline");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o750
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        assert!(matches!(
            save(&path, &Rope::from_str("x")),
            Err(SaveError::ReadOnlyFile(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"new\r\nno final newline");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn saving_through_a_chain_of_symlinks_keeps_the_links() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        fs::write(&real, "old\n").unwrap();
        std::os::unix::fs::symlink("real.txt", dir.path().join("hop")).unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(dir.path().join("hop"), &link).unwrap();
        save(&link, &Rope::from_str("new\n")).unwrap();
        assert_eq!(fs::read_to_string(&real).unwrap(), "new\n");
        for name in ["hop", "link.txt"] {
            let meta = fs::symlink_metadata(dir.path().join(name)).unwrap();
            assert!(meta.file_type().is_symlink(), "{name} is still a link");
        }
    }

    #[test]
    fn saving_a_hard_linked_file_keeps_its_inode_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        fs::write(&a, "old\n").unwrap();
        let b = dir.path().join("b.txt");
        fs::hard_link(&a, &b).unwrap();
        let inode = fs::metadata(&a).unwrap().ino();
        save(&a, &Rope::from_str("new\r\nno newline")).unwrap();
        let meta = fs::metadata(&a).unwrap();
        assert_eq!((meta.ino(), meta.nlink()), (inode, 2));
        assert_eq!(fs::read(&b).unwrap(), b"new\r\nno newline");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no backup left"
        );
    }

    #[test]
    fn a_stamp_tells_changed_deleted_and_touched_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        fs::write(&path, "one\n").unwrap();
        let mut stamp = read_text(&path).unwrap().unwrap().stamp;
        assert_eq!(disk_change(&path, &mut stamp), DiskChange::Unchanged);
        // Same bytes, new mtime: no change.
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(disk_change(&path, &mut stamp), DiskChange::Unchanged);
        assert_eq!(stamp.modified, Some(later), "the stamp follows a touch");
        // Same size, and (mtimes are kernel ticks) possibly the same mtime
        // as a write a moment ago: give it one that differs, as a real
        // edit seconds later would have.
        fs::write(&path, "two\n").unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + std::time::Duration::from_secs(5))
            .unwrap();
        assert_eq!(disk_change(&path, &mut stamp), DiskChange::Modified);
        fs::remove_file(&path).unwrap();
        assert_eq!(disk_change(&path, &mut stamp), DiskChange::Deleted);
    }
}
