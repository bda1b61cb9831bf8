//! Undo history: groups of edits, each undone and redone as one step.
//!
//! A group is either a run of typed characters (merged while the typing is
//! contiguous) or one explicit transaction (a paste, an accepted suggestion,
//! an indent of several lines). Undo hands back the inverse edits for the
//! caller to apply through the one apply path, so listeners see them too.

use super::{Edit, Selection};

/// How an edit entered the history; decides whether it may merge with the
/// group before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    /// A typed character: merges with the previous typed run when it
    /// continues exactly where that run ended.
    Typing,
    /// A backspace/delete of single characters: merges with a previous
    /// deletion run that is adjacent.
    Deleting,
    /// Always a group of its own (or of the open transaction).
    Other,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub edits: Vec<Edit>,
    pub selection_before: Selection,
    pub selection_after: Selection,
    kind: EditKind,
    /// Unique per group: tells a saved state from every other state.
    id: u64,
}

#[derive(Debug, Default)]
pub struct History {
    undo: Vec<Group>,
    redo: Vec<Group>,
    /// An explicit transaction in progress: edits go into one group.
    open: Option<Group>,
    /// Set when something other than an edit happened (a cursor move), so the
    /// next typed char starts a new group.
    sealed: bool,
    next_id: u64,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Start a transaction: every edit recorded until [`History::commit`]
    /// becomes one undo step.
    pub fn begin(&mut self, selection_before: Selection) {
        if self.open.is_none() {
            self.open = Some(Group {
                edits: Vec::new(),
                selection_before,
                selection_after: selection_before,
                kind: EditKind::Other,
                id: 0,
            });
        }
    }

    pub fn commit(&mut self) {
        if let Some(mut group) = self.open.take()
            && !group.edits.is_empty()
        {
            self.next_id += 1;
            group.id = self.next_id;
            self.undo.push(group);
            self.sealed = true;
        }
    }

    /// Stop merging: the next edit starts a new group.
    pub fn seal(&mut self) {
        self.sealed = true;
    }

    pub fn record(&mut self, edit: Edit, kind: EditKind, before: Selection, after: Selection) {
        self.redo.clear();
        if let Some(open) = self.open.as_mut() {
            open.edits.push(edit);
            open.selection_after = after;
            return;
        }
        if !self.sealed
            && kind != EditKind::Other
            && let Some(last) = self.undo.last_mut()
            && last.kind == kind
            && let Some(prev) = last.edits.last()
            && continues(prev, &edit, kind)
        {
            last.edits.push(edit);
            last.selection_after = after;
            return;
        }
        self.sealed = false;
        self.next_id += 1;
        self.undo.push(Group {
            id: self.next_id,
            edits: vec![edit],
            selection_before: before,
            selection_after: after,
            kind,
        });
    }

    /// The group to undo: its edits' inverses, in the order to apply them,
    /// and the selection to restore. The group moves to the redo stack.
    pub fn undo(&mut self) -> Option<(Vec<Edit>, Selection)> {
        self.commit();
        let group = self.undo.pop()?;
        let inverses = group.edits.iter().rev().map(Edit::inverse).collect();
        let selection = group.selection_before;
        self.redo.push(group);
        self.sealed = true;
        Some((inverses, selection))
    }

    pub fn redo(&mut self) -> Option<(Vec<Edit>, Selection)> {
        self.commit();
        let group = self.redo.pop()?;
        let edits = group.edits.clone();
        let selection = group.selection_after;
        self.undo.push(group);
        self.sealed = true;
        Some((edits, selection))
    }

    /// Identifies the current text state among all undo/redo positions
    /// (0: the state history started from). Equal ids mean equal text.
    pub fn state_id(&self) -> u64 {
        self.undo.last().map_or(0, |g| g.id)
    }

    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }
}

fn continues(prev: &Edit, next: &Edit, kind: EditKind) -> bool {
    match kind {
        // A newline starts a new run that the line typed after it joins:
        // undo then removes one typed line, with its Enter, at a time.
        EditKind::Typing => {
            next.start_char == prev.new_end_char()
                && next.removed.is_empty()
                && !next.inserted.contains('\n')
        }
        // Backspace walks left, Delete stays in place.
        EditKind::Deleting => {
            next.inserted.is_empty()
                && (next.old_end_char == prev.start_char || next.start_char == prev.start_char)
        }
        EditKind::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropey::Rope;

    fn type_str(rope: &mut Rope, history: &mut History, at: &mut usize, text: &str) {
        for ch in text.chars() {
            let edit = Edit::insert(rope, *at, &ch.to_string());
            edit.apply_to(rope);
            let before = Selection::cursor(*at);
            *at += 1;
            history.record(edit, EditKind::Typing, before, Selection::cursor(*at));
        }
    }

    #[test]
    fn a_typed_run_is_one_undo_step_and_a_move_breaks_it() {
        let mut rope = Rope::from_str("x\n");
        let mut history = History::new();
        let mut at = 0;
        type_str(&mut rope, &mut history, &mut at, "abc");
        history.seal();
        type_str(&mut rope, &mut history, &mut at, "de");
        assert_eq!(rope.to_string(), "abcdex\n");
        assert_eq!(history.undo_len(), 2);
        let (edits, sel) = history.undo().unwrap();
        edits.iter().for_each(|e| e.apply_to(&mut rope));
        assert_eq!(rope.to_string(), "abcx\n");
        assert_eq!(sel, Selection::cursor(3));
        let (edits, _) = history.undo().unwrap();
        edits.iter().for_each(|e| e.apply_to(&mut rope));
        assert_eq!(rope.to_string(), "x\n");
        let (edits, sel) = history.redo().unwrap();
        edits.iter().for_each(|e| e.apply_to(&mut rope));
        assert_eq!(rope.to_string(), "abcx\n");
        assert_eq!(sel, Selection::cursor(3));
    }

    #[test]
    fn a_transaction_is_one_step() {
        let mut rope = Rope::from_str("");
        let mut history = History::new();
        history.begin(Selection::cursor(0));
        for (i, piece) in ["a\n", "b\n"].iter().enumerate() {
            let edit = Edit::insert(&rope, i * 2, piece);
            edit.apply_to(&mut rope);
            history.record(
                edit,
                EditKind::Other,
                Selection::cursor(0),
                Selection::cursor(4),
            );
        }
        history.commit();
        assert_eq!(history.undo_len(), 1);
        let (edits, _) = history.undo().unwrap();
        edits.iter().for_each(|e| e.apply_to(&mut rope));
        assert_eq!(rope.to_string(), "");
    }
}
