//! The KV cache kept on disk, one entry per file (issue 14): where entries
//! live, how they are written (a writer thread, temp file + rename), and the
//! size cap that evicts the least recently used.
//!
//! An entry is named by a hash of the file's canonical path, so a file
//! reached through a link or a relative path finds the same entry, and the
//! directory listing reveals no file names. The directory is 0700 and the
//! entries 0600: they hold the text of the files (and K/V computed from it).
//!
//! Writes are not fsynced. A crash can leave a cut or empty entry behind
//! the rename; every block carries a checksum, so such an entry is found
//! bad at the next open and dropped, and losing a cache costs one prefill.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use sha2::{Digest, Sha256};

use crate::model::kv_store::{self, Header};

/// Entries end in this; anything else in the directory is left alone.
pub const ENTRY_EXT: &str = "pkv";
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The platform cache directory's `kv` folder (`~/.cache/pie-edit/kv` on
/// Linux, honouring `XDG_CACHE_HOME`).
pub fn default_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "pie-edit")
        .map(|d| d.cache_dir().join("kv"))
        .unwrap_or_else(|| std::env::temp_dir().join("pie-edit-kv"))
}

/// The entry file for `file` in `dir`; `None` when `file` cannot be
/// canonicalized (it does not exist yet: nothing to reopen).
pub fn entry_path(dir: &Path, file: &Path) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(file).ok()?;
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    Some(dir.join(format!("{}.{ENTRY_EXT}", kv_store::hex(&digest[..16]))))
}

enum Job {
    Write {
        entry: PathBuf,
        bytes: Vec<u8>,
    },
    /// Answered once every job before it is done.
    Flush(Sender<()>),
}

/// The cache directory and its writer thread.
pub struct KvDisk {
    dir: PathBuf,
    max_bytes: u64,
    jobs: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl KvDisk {
    pub fn new(dir: PathBuf, max_bytes: u64) -> KvDisk {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (thread_dir, cap) = (dir.clone(), max_bytes);
        let writer = std::thread::Builder::new()
            .name("pie-kv-writer".into())
            .spawn(move || run_writer(&thread_dir, cap, rx))
            .ok();
        KvDisk {
            dir,
            max_bytes,
            jobs: writer.is_some().then_some(tx),
            writer,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn entry_for(&self, file: &Path) -> Option<PathBuf> {
        entry_path(&self.dir, file)
    }

    /// The entry's bytes, marking it recently used. `None` when there is
    /// none; Err when it exists but cannot be read.
    pub fn read(&self, entry: &Path) -> Option<std::io::Result<Vec<u8>>> {
        let bytes = match std::fs::read(entry) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            other => other,
        };
        if bytes.is_ok() {
            // Recency for the size cap is the mtime: a read entry is young.
            if let Ok(file) = std::fs::File::options().append(true).open(entry) {
                let _ = file.set_modified(SystemTime::now());
            }
        }
        Some(bytes)
    }

    /// Drop a bad entry.
    pub fn remove(&self, entry: &Path) {
        match std::fs::remove_file(entry) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove KV cache entry {}: {e}", entry.display()),
        }
    }

    /// Write an entry on the writer thread (or here, when it could not be
    /// started).
    pub fn write(&self, entry: PathBuf, bytes: Vec<u8>) {
        let job = Job::Write { entry, bytes };
        match &self.jobs {
            Some(jobs) => {
                if let Err(crossbeam_channel::SendError(job)) = jobs.send(job) {
                    run_job(&self.dir, self.max_bytes, job);
                }
            }
            None => run_job(&self.dir, self.max_bytes, job),
        }
    }

    /// Wait until every write asked for so far is on disk (renamed into
    /// place).
    pub fn flush(&self) {
        if let Some(jobs) = &self.jobs {
            let (tx, rx) = crossbeam_channel::bounded(1);
            if jobs.send(Job::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }
}

impl Drop for KvDisk {
    fn drop(&mut self) {
        // Dropping the sender ends the writer after the jobs it has.
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn run_writer(dir: &Path, max_bytes: u64, jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        run_job(dir, max_bytes, job);
    }
}

fn run_job(dir: &Path, max_bytes: u64, job: Job) {
    match job {
        Job::Write { entry, bytes } => {
            let started = std::time::Instant::now();
            match write_entry(dir, &entry, &bytes) {
                Ok(()) => {
                    tracing::debug!(
                        entry = %entry.display(),
                        bytes = bytes.len(),
                        ms = started.elapsed().as_millis(),
                        "KV cache entry written"
                    );
                    evict(dir, max_bytes, Some(&entry));
                }
                Err(e) => tracing::warn!("cannot write KV cache entry {}: {e}", entry.display()),
            }
        }
        Job::Flush(done) => {
            let _ = done.send(());
        }
    }
}

/// Create the directory 0700 (and tighten it if it exists).
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_entry(dir: &Path, entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    ensure_dir(dir)?;
    let name = entry.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        drop(file);
        std::fs::rename(&temp, entry)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// One entry, as listed.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub used: SystemTime,
}

/// The entries in `dir`, most recently used first.
pub fn entries(dir: &Path) -> Vec<EntryInfo> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut list: Vec<EntryInfo> = read
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == ENTRY_EXT))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| EntryInfo {
                path: e.path(),
                bytes: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect();
    list.sort_by_key(|e| std::cmp::Reverse(e.used));
    list
}

/// Remove the least recently used entries until the rest fit `max_bytes`;
/// `keep` (the entry just written) goes last, only if it alone is too big.
pub fn evict(dir: &Path, max_bytes: u64, keep: Option<&Path>) {
    let mut list = entries(dir);
    if let Some(keep) = keep
        && let Some(i) = list.iter().position(|e| e.path == keep)
    {
        let kept = list.remove(i);
        list.insert(0, kept);
    }
    let mut total = 0u64;
    for entry in list {
        total += entry.bytes;
        if total > max_bytes {
            tracing::debug!(entry = %entry.path.display(), "KV cache entry evicted");
            let _ = std::fs::remove_file(&entry.path);
            total -= entry.bytes;
        }
    }
}

/// Remove every entry (and leftover temp file) in `dir`; the count removed.
pub fn clear(dir: &Path) -> std::io::Result<usize> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in read.filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = path.extension().is_some_and(|x| x == ENTRY_EXT)
            || (name.starts_with('.') && name.ends_with(".tmp"));
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// What `pie-edit cache info` shows of an entry: its header and the file it
/// was kept for, or why it is unreadable.
pub fn describe(entry: &Path) -> Result<(Header, Option<super::mirror::SavedWindow>), String> {
    let file = std::fs::File::open(entry).map_err(|e| e.to_string())?;
    let (header, extras) =
        kv_store::peek(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let window = super::mirror::SavedWindow::from_extras(&extras).ok();
    Ok((header, window))
}
