//! A document: the rope and everything that must follow it through edits.
//!
//! [`Document::apply`] is the one apply path. It updates the rope, bumps the
//! version, feeds tree-sitter the edit, and queues `(version, edit)` for
//! listeners (the prediction engine drains it with [`Document::take_changes`]),
//! so every change, undo and redo included, reaches them as a value.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ropey::Rope;

use super::fileio::{self, DiskChange, DiskStamp, OpenError, SaveError};
use super::swap::{Found, Leftover, Swap, SwapSettings};
use crate::syntax::{self, HighlightSpan, Language, Syntax};
use crate::text::{Edit, EditKind, History, Selection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    Lf,
    CrLf,
}

impl LineEnding {
    /// The file's first line break decides: new lines typed into a CRLF file
    /// get CRLF, so a save never mixes styles.
    pub fn detect(rope: &Rope) -> LineEnding {
        for line in rope.lines().take(1) {
            let len = line.len_chars();
            if len >= 2 && line.char(len - 1) == '\n' && line.char(len - 2) == '\r' {
                return LineEnding::CrLf;
            }
        }
        LineEnding::Lf
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
        }
    }
}

/// The first parse of a file may take this long before the editor shows
/// it; a bigger file gets its highlighting when the parse finishes in idle time.
const INITIAL_PARSE_BUDGET: Duration = Duration::from_millis(100);

/// One change as listeners see it: the document version right after `edit`.
pub type Change = (u64, Edit);

/// Highlight spans for the visible bytes, kept until the syntax tree
/// changes. Edits made while a reparse is pending shift the spans instead
/// of querying the stale tree again: on a 100k-line file a highlight query
/// costs milliseconds, shifting a screenful of spans microseconds.
#[derive(Debug, Default)]
struct HighlightCache {
    generation: Option<u64>,
    bytes: std::ops::Range<usize>,
    spans: Vec<HighlightSpan>,
}

impl HighlightCache {
    fn map_through(&mut self, edit: &Edit) {
        let map = |pos: usize, is_end: bool| {
            if pos < edit.start_byte || (pos == edit.start_byte && !is_end) {
                pos
            } else if pos >= edit.old_end_byte {
                pos - edit.old_end_byte + edit.new_end_byte()
            } else {
                edit.new_end_byte()
            }
        };
        for span in &mut self.spans {
            span.bytes = map(span.bytes.start, false)..map(span.bytes.end, true);
        }
        self.spans.retain(|s| s.bytes.start < s.bytes.end);
        self.bytes = map(self.bytes.start, false)..map(self.bytes.end, true);
    }
}

#[derive(Debug)]
pub struct Document {
    rope: Rope,
    path: Option<PathBuf>,
    history: History,
    syntax: Option<Syntax>,
    line_ending: LineEnding,
    version: u64,
    /// History state at the last save (or open).
    saved_state: u64,
    changes: Vec<Change>,
    highlights: HighlightCache,
    /// The file as last read or written; `None` for a file not on disk yet.
    disk: Option<DiskStamp>,
    /// The file was deleted on disk: the buffer is the only copy left.
    deleted_on_disk: bool,
    swap: Option<Swap>,
    /// When the last edit was applied (the swap waits for a pause after it).
    last_change: Option<Instant>,
}

/// What a save did beyond writing the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// The file had been deleted on disk and was created anew.
    Recreated,
}

impl Document {
    /// An unnamed scratch buffer (or the text of a file, for tests).
    pub fn from_text(text: &str, language: Option<Language>) -> Document {
        let rope = Rope::from_str(text);
        let syntax = language
            .filter(|_| rope.len_bytes() <= syntax::MAX_SYNTAX_BYTES)
            .and_then(|lang| Syntax::new_budgeted(lang, &rope, Some(INITIAL_PARSE_BUDGET)).ok());
        Document {
            line_ending: LineEnding::detect(&rope),
            rope,
            path: None,
            history: History::new(),
            syntax,
            version: 0,
            saved_state: 0,
            changes: Vec::new(),
            highlights: HighlightCache::default(),
            disk: None,
            deleted_on_disk: false,
            swap: None,
            last_change: None,
        }
    }

    /// Open `path`; a path that does not exist yet gives an empty buffer
    /// that the first save creates.
    pub fn open(path: &Path) -> Result<Document, OpenError> {
        let read = fileio::read_text(path)?;
        let text = read.as_ref().map_or("", |r| r.text.as_str());
        let mut doc = Document::from_text(text, Language::from_path(path));
        doc.path = Some(path.to_path_buf());
        doc.disk = read.map(|r| r.stamp);
        Ok(doc)
    }

    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    pub fn text(&self) -> String {
        self.rope.to_string()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn set_path(&mut self, path: PathBuf) {
        if self.syntax.is_none()
            && let Some(lang) = Language::from_path(&path)
        {
            self.syntax = Syntax::new_budgeted(lang, &self.rope, Some(INITIAL_PARSE_BUDGET)).ok();
        }
        self.path = Some(path);
    }

    pub fn syntax(&self) -> Option<&Syntax> {
        self.syntax.as_ref()
    }

    pub fn language(&self) -> Option<Language> {
        self.syntax.as_ref().map(Syntax::language)
    }

    /// Whether a reparse was paused by its time budget.
    pub fn syntax_pending(&self) -> bool {
        self.syntax.as_ref().is_some_and(Syntax::is_pending)
    }

    /// Resume a paused reparse for up to `budget` (`None`: to the end).
    /// Returns whether the tree is current.
    pub fn refresh_syntax(&mut self, budget: Option<Duration>) -> bool {
        match self.syntax.as_mut() {
            Some(syntax) => syntax.continue_parse(&self.rope, budget),
            None => true,
        }
    }

    /// Make the highlight spans for `bytes` ready for the next frame: query
    /// only when the tree changed or the range is not covered yet.
    ///
    /// With `shifted_ok` (a frame right after a keystroke), spans shifted
    /// through the edits are used even when a newer tree exists; the query
    /// then waits for idle time ([`Document::highlights_outdated`]).
    pub fn prepare_highlights(&mut self, bytes: std::ops::Range<usize>, shifted_ok: bool) {
        let Some(syntax) = &self.syntax else { return };
        let cache = &mut self.highlights;
        let fresh = cache.generation == Some(syntax.generation());
        let covered = cache.bytes.start <= bytes.start && bytes.end <= cache.bytes.end;
        // While a reparse is pending the shifted spans are as good as a
        // query of the position-adjusted tree, and much cheaper.
        if (fresh || shifted_ok || syntax.is_pending()) && covered && cache.generation.is_some() {
            return;
        }
        cache.spans = syntax.highlights(&self.rope, bytes.clone());
        cache.bytes = bytes;
        cache.generation = Some(syntax.generation());
    }

    /// A newer complete tree exists than the one the spans came from.
    pub fn highlights_outdated(&self) -> bool {
        self.syntax
            .as_ref()
            .is_some_and(|s| !s.is_pending() && self.highlights.generation != Some(s.generation()))
    }

    /// Highlight spans prepared by [`Document::prepare_highlights`].
    pub fn highlights(&self) -> &[HighlightSpan] {
        &self.highlights.spans
    }

    pub fn line_ending(&self) -> LineEnding {
        self.line_ending
    }

    /// Bumped by every applied edit; the prediction engine tags its work
    /// with it so stale results can be dropped.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Differs from the saved file: undoing back to the saved state counts
    /// as unmodified.
    pub fn is_modified(&self) -> bool {
        self.history.state_id() != self.saved_state || self.deleted_on_disk
    }

    /// The one apply path. Every change to the text comes through here:
    /// edits ([`Document::edit`]), undo and redo.
    ///
    /// # Panics
    /// If the edit's range is outside the rope: edits are built from this
    /// document's rope, so that is a bug, not bad input.
    fn apply(&mut self, edit: Edit) -> u64 {
        assert!(
            edit.start_char <= edit.old_end_char && edit.old_end_char <= self.rope.len_chars(),
            "edit {}..{} outside a document of {} chars",
            edit.start_char,
            edit.old_end_char,
            self.rope.len_chars()
        );
        let input = self
            .syntax
            .as_ref()
            .map(|_| syntax::input_edit(&self.rope, &edit));
        edit.apply_to(&mut self.rope);
        if let (Some(syntax), Some(input)) = (self.syntax.as_mut(), input) {
            syntax.edit(&input, &self.rope);
        }
        self.highlights.map_through(&edit);
        self.version += 1;
        self.changes.push((self.version, edit));
        self.last_change = Some(Instant::now());
        self.version
    }

    /// Apply and record in the undo history.
    pub fn edit(&mut self, edit: Edit, kind: EditKind, before: Selection, after: Selection) -> u64 {
        if edit.is_noop() {
            return self.version;
        }
        self.history.record(edit.clone(), kind, before, after);
        self.apply(edit)
    }

    /// Group every edit until [`Document::commit`] into one undo step (a
    /// paste, an accepted suggestion, an indent of many lines).
    pub fn begin_transaction(&mut self, before: Selection) {
        self.history.begin(before);
    }

    pub fn commit(&mut self) {
        self.history.commit();
    }

    /// End the current typed run (the cursor moved, a command ran).
    pub fn seal_history(&mut self) {
        self.history.seal();
    }

    /// Undo one step through [`Document::apply`]; returns the selection to restore.
    pub fn undo(&mut self) -> Option<Selection> {
        let (edits, selection) = self.history.undo()?;
        for edit in edits {
            self.apply(edit);
        }
        Some(selection.clamp(self.rope.len_chars()))
    }

    pub fn redo(&mut self) -> Option<Selection> {
        let (edits, selection) = self.history.redo()?;
        for edit in edits {
            self.apply(edit);
        }
        Some(selection.clamp(self.rope.len_chars()))
    }

    /// Every `(version, edit)` since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Save to the document's path (through its links). On failure nothing
    /// changes: the buffer stays modified and the file on disk is untouched.
    /// Whether the file changed on disk meanwhile is the caller's question
    /// to ask first ([`Document::disk_change`]).
    pub fn save(&mut self) -> Result<Saved, SaveError> {
        let path = self.path.clone().ok_or_else(|| {
            SaveError::Io(
                PathBuf::from("(scratch)"),
                std::io::Error::other("the buffer has no file name"),
            )
        })?;
        let saved = if self.disk.is_some() && self.disk_change() == DiskChange::Deleted {
            Saved::Recreated
        } else {
            Saved::Written
        };
        self.disk = Some(fileio::save(&path, &self.rope)?);
        self.deleted_on_disk = false;
        // Typing after a save must start a new undo group, so that the saved
        // state keeps its own history id.
        self.mark_saved();
        if let Some(swap) = self.swap.as_mut() {
            swap.remove(self.version);
        }
        Ok(saved)
    }

    fn mark_saved(&mut self) {
        self.history.commit();
        self.history.seal();
        self.saved_state = self.history.state_id();
    }

    /// How the file on disk compares with what was last read or written.
    /// A file that did not exist when opened and exists now counts as
    /// modified: another program created it.
    pub fn disk_change(&mut self) -> DiskChange {
        let Some(path) = &self.path else {
            return DiskChange::Unchanged;
        };
        match &mut self.disk {
            Some(stamp) => fileio::disk_change(path, stamp),
            None if path.exists() => DiskChange::Modified,
            None => DiskChange::Unchanged,
        }
    }

    /// The file was found deleted on disk: keep the buffer as modified, so
    /// that quitting asks and the swap keeps a copy.
    pub fn mark_deleted_on_disk(&mut self) {
        self.deleted_on_disk = true;
    }

    /// Take the file's bytes on disk into the buffer, as one undoable step
    /// (undo brings the buffer's text back). The buffer is unmodified after.
    pub fn reload(&mut self) -> Result<(), OpenError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let Some(read) = fileio::read_text(&path)? else {
            return Err(OpenError::Unreadable(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        };
        self.replace_all(&read.text);
        self.disk = Some(read.stamp);
        self.deleted_on_disk = false;
        self.mark_saved();
        if let Some(swap) = self.swap.as_mut() {
            swap.remove(self.version);
        }
        Ok(())
    }

    /// Replace the whole text with `text` as one undo step, as the smallest
    /// edit (the common prefix and suffix stay), so listeners such as the
    /// prediction engine re-read only what differs.
    fn replace_all(&mut self, text: &str) {
        let old = self.rope.to_string();
        let prefix = old
            .chars()
            .zip(text.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let old_rest = old.chars().count() - prefix;
        let new_rest = text.chars().count() - prefix;
        let suffix = old
            .chars()
            .rev()
            .zip(text.chars().rev())
            .take(old_rest.min(new_rest))
            .take_while(|(a, b)| a == b)
            .count();
        let inserted: String = text.chars().skip(prefix).take(new_rest - suffix).collect();
        let edit = Edit::replace(&self.rope, prefix, prefix + old_rest - suffix, &inserted);
        let at = Selection::cursor(prefix);
        self.history.seal();
        self.edit(edit, EditKind::Other, at, at);
        self.history.seal();
        self.line_ending = LineEnding::detect(&self.rope);
    }

    /// Keep swap files for this document (it needs a path). Returns what
    /// other processes left or hold for the same file.
    pub fn start_swap(&mut self, settings: SwapSettings) -> std::io::Result<Found> {
        let Some(path) = &self.path else {
            return Ok(Found::default());
        };
        let (swap, mut found) = Swap::start(settings, path)?;
        self.swap = Some(swap);
        // A leftover that holds what the file holds has nothing to recover.
        let text = self.text();
        found.leftovers.retain(|leftover| {
            let same = leftover.text == text;
            if same {
                let _ = std::fs::remove_file(&leftover.path);
            }
            !same
        });
        Ok(found)
    }

    /// When the next swap snapshot is due, if one is.
    pub fn swap_deadline(&self) -> Option<Instant> {
        let swap = self.swap.as_ref()?;
        if swap.is_current(self.version) {
            return None;
        }
        Some(self.last_change? + swap.after())
    }

    /// Bring the swap up to date: a snapshot while modified (queued for
    /// the writer thread), none when the buffer matches the file. Returns
    /// the snapshot's path when one is written.
    pub fn write_swap(&mut self) -> std::io::Result<Option<PathBuf>> {
        self.update_swap(false)
    }

    /// [`Document::write_swap`], written before this returns (a crash, a
    /// signal).
    pub fn write_swap_now(&mut self) -> std::io::Result<Option<PathBuf>> {
        self.update_swap(true)
    }

    fn update_swap(&mut self, now: bool) -> std::io::Result<Option<PathBuf>> {
        let modified = self.is_modified();
        let version = self.version;
        let Some(swap) = self.swap.as_mut() else {
            return Ok(None);
        };
        if !modified {
            swap.remove(version);
            return Ok(None);
        }
        let written = if now {
            swap.write_now(&self.rope, version)
        } else {
            swap.write(&self.rope, version)
        };
        written.map(Some)
    }

    /// The last failure of a swap write that ran in the background, once.
    pub fn swap_failure(&self) -> Option<String> {
        self.swap.as_ref().and_then(Swap::take_failure)
    }

    /// Whether this document keeps swap files.
    pub fn has_swap(&self) -> bool {
        self.swap.is_some()
    }

    /// Replace the buffer with a leftover snapshot, as one undoable step
    /// (undo shows the file as on disk). The leftover file is removed once
    /// this process's own snapshot holds the same text.
    pub fn recover(&mut self, leftover: &Leftover) -> std::io::Result<()> {
        self.replace_all(&leftover.text);
        if self.write_swap_now()?.is_some() {
            std::fs::remove_file(&leftover.path)?;
        }
        Ok(())
    }

    /// A clean quit: this process's swap and open marker go away.
    pub fn close_swap(&mut self) {
        if let Some(swap) = self.swap.as_mut() {
            swap.close();
        }
    }

    /// The file name without its directory, for the status line and messages.
    pub fn display_name(&self) -> String {
        self.path.as_ref().and_then(|p| p.file_name()).map_or_else(
            || "[scratch]".to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edit_undo_and_redo_reaches_listeners_and_syntax() {
        let mut doc = Document::from_text("def f():\n    pass\n", Some(Language::Python));
        let sel = Selection::cursor(0);
        let edit = Edit::insert(doc.rope(), 0, "x = 1\n");
        doc.edit(edit.clone(), EditKind::Other, sel, sel);
        doc.undo().unwrap();
        doc.redo().unwrap();
        let changes = doc.take_changes();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0], (1, edit.clone()));
        assert_eq!(changes[1], (2, edit.inverse()));
        assert_eq!(changes[2], (3, edit));
        assert!(doc.take_changes().is_empty());
        assert!(doc.refresh_syntax(None));
        let fresh = Syntax::new(Language::Python, doc.rope()).unwrap();
        let tree = doc.syntax().unwrap().tree().unwrap();
        assert_eq!(
            tree.root_node().to_sexp(),
            fresh.tree().unwrap().root_node().to_sexp()
        );
        assert_eq!(doc.version(), 3);
        assert!(doc.is_modified());
        doc.undo();
        assert!(
            !doc.is_modified(),
            "undo back to the opened state is unmodified"
        );
    }

    #[test]
    fn shifted_highlights_match_a_fresh_query_after_the_reparse() {
        let text = "def f(x):\n    return 'a'  # c\n".repeat(50);
        let mut doc = Document::from_text(&text, Some(Language::Python));
        doc.refresh_syntax(None);
        doc.prepare_highlights(0..200, false);
        let before: Vec<_> = doc.highlights().to_vec();
        let sel = Selection::cursor(0);
        doc.edit(
            Edit::insert(doc.rope(), 0, "# new\n"),
            EditKind::Other,
            sel,
            sel,
        );
        // Whether or not the reparse finished within its budget, the
        // prepared spans must now describe the new text.
        doc.prepare_highlights(6..206, false);
        doc.refresh_syntax(None);
        let shifted: Vec<_> = before
            .iter()
            .map(|s| (s.bytes.start + 6, s.scope))
            .collect();
        let fresh = doc.syntax().unwrap().highlights(doc.rope(), 6..206);
        for (start, scope) in shifted.iter().take(10) {
            assert!(
                fresh
                    .iter()
                    .any(|s| s.bytes.start == *start && s.scope == *scope),
                "{start} {scope}"
            );
        }
        doc.prepare_highlights(0..206, false);
        assert_eq!(doc.highlights(), &fresh_from_zero(&doc)[..]);
    }

    fn fresh_from_zero(doc: &Document) -> Vec<HighlightSpan> {
        doc.syntax().unwrap().highlights(doc.rope(), 0..206)
    }

    #[test]
    fn open_and_save_unchanged_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crlf.py");
        let bytes = b"a = 1\r\nb = 2\r\nno_newline";
        std::fs::write(&path, bytes).unwrap();
        let mut doc = Document::open(&path).unwrap();
        assert_eq!(doc.line_ending(), LineEnding::CrLf);
        assert!(!doc.is_modified());
        doc.save().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
