//! Notice when another program changes the open file, without polling: an
//! inotify (or the platform's) watch on its folder, since editors and `git`
//! replace files by renaming a new one over them, which a watch on the file
//! itself would not follow.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;

pub struct DiskWatch {
    /// Kept alive for its watch; dropped, it stops.
    _watcher: notify::RecommendedWatcher,
    changed: Arc<Notify>,
}

impl DiskWatch {
    /// Watch `file`'s folder for changes to `file`. `None` when the
    /// platform refuses (e.g. out of inotify watches): the file is then
    /// still checked before every save.
    pub fn new(file: &Path) -> Option<DiskWatch> {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file.parent()?.to_path_buf();
        let name: PathBuf = file.file_name()?.into();
        let changed = Arc::new(Notify::new());
        let notify = changed.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str()))
                {
                    notify.notify_one();
                }
            })
            .map_err(|err| tracing::warn!("cannot watch {}: {err}", dir.display()))
            .ok()?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|err| tracing::warn!("cannot watch {}: {err}", dir.display()))
            .ok()?;
        Some(DiskWatch {
            _watcher: watcher,
            changed,
        })
    }

    /// Resolves when the file may have changed (look to be sure: our own
    /// saves count too).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
