//! The file behind the buffer: saving (asking first when another program
//! changed it), reloading, following changes on disk, and quitting.

use super::document::Saved;
use super::fileio::DiskChange;
use super::prompt::PromptKind;
use super::state::Editor;

impl Editor {
    /// Save without asking; on failure the status says why and the buffer
    /// stays modified.
    pub fn save_document(&mut self) -> bool {
        match self.doc.save() {
            Ok(saved) => {
                let lines = self.rope().len_lines();
                let name = self.doc.display_name();
                self.message = Some(match saved {
                    Saved::Written => format!("Saved {name} ({lines} lines)"),
                    Saved::Recreated => format!(
                        "Saved {name} ({lines} lines); it had been deleted on disk, so it was created anew"
                    ),
                });
                self.disk_warned = false;
                true
            }
            Err(err) => {
                tracing::warn!("save failed: {err}");
                self.message = Some(format!("Save failed: {err}"));
                false
            }
        }
    }

    /// Save, unless another program changed the file since it was read:
    /// then ask first. True when the file was written.
    pub(super) fn save_checked(&mut self, then_quit: bool) -> bool {
        if self.doc.disk_change() == DiskChange::Modified {
            self.open_prompt(PromptKind::ChangedOnDisk { then_quit });
            return false;
        }
        self.save_document()
    }

    pub fn save(&mut self) {
        if self.doc.path().is_none() {
            self.open_prompt(PromptKind::SaveAs { then_quit: false });
        } else {
            self.save_checked(false);
        }
    }

    /// Take the file as it is on disk (undo brings the buffer's text back).
    pub fn reload(&mut self) {
        let name = self.doc.display_name();
        self.message = Some(match self.doc.reload() {
            Ok(()) => {
                self.selection = self.selection.clamp(self.rope().len_chars());
                self.disk_warned = false;
                format!("Reloaded {name} from disk (Ctrl-Z brings your text back)")
            }
            Err(err) => format!("Reload failed: {err}"),
        });
    }

    /// Look at the file on disk: an unmodified buffer follows changes made
    /// by other programs; a modified one is told. Returns true when the
    /// screen changed.
    pub fn check_disk(&mut self) -> bool {
        match self.doc.disk_change() {
            DiskChange::Unchanged => false,
            DiskChange::Modified if !self.doc.is_modified() => {
                let name = self.doc.display_name();
                match self.doc.reload() {
                    Ok(()) => {
                        self.selection = self.selection.clamp(self.rope().len_chars());
                        self.message = Some(format!("{name} changed on disk: reloaded it"));
                    }
                    Err(err) => self.message = Some(format!("{name} changed on disk: {err}")),
                }
                true
            }
            DiskChange::Modified => {
                if self.disk_warned {
                    return false;
                }
                self.disk_warned = true;
                self.message = Some(format!(
                    "{} changed on disk; Ctrl-S will ask before overwriting it",
                    self.doc.display_name()
                ));
                true
            }
            DiskChange::Deleted => {
                if self.disk_warned {
                    return false;
                }
                self.disk_warned = true;
                self.doc.mark_deleted_on_disk();
                self.message = Some(format!(
                    "{} was deleted on disk; Ctrl-S creates it again",
                    self.doc.display_name()
                ));
                true
            }
        }
    }

    pub fn request_quit(&mut self) {
        if self.doc.is_modified() {
            self.open_prompt(PromptKind::ConfirmQuit);
        } else {
            self.quit = true;
        }
    }
}
