//! Editing commands: typing, Enter with indentation, indent and dedent,
//! deleting, the clipboard (internal and OSC 52), undo and redo. Each is
//! one history entry.

use super::LineEnding;
use super::state::Editor;
use crate::text::movement::{self, line_text};
use crate::text::width::visual_col;
use crate::text::{Edit, EditKind, Selection};

impl Editor {
    // ----- editing -----

    /// Replace the selection with `text` as one history entry of `kind`.
    pub fn replace_selection(&mut self, text: &str, kind: EditKind) {
        self.replace_range(self.selection.start(), self.selection.end(), text, kind);
    }

    /// Replace the chars `start..end` with `text` as one history entry of
    /// `kind`, leaving the cursor after it (undo restores the selection).
    fn replace_range(&mut self, start: usize, end: usize, text: &str, kind: EditKind) {
        let before = self.selection;
        let edit = Edit::replace(self.rope(), start, end, text);
        let after = Selection::cursor(edit.new_end_char());
        self.doc.edit(edit, kind, before, after);
        self.selection = after;
        self.desired_col = None;
        self.view.follow();
    }

    pub fn insert_char(&mut self, c: char) {
        let kind = if self.selection.is_empty() {
            EditKind::Typing
        } else {
            EditKind::Other
        };
        self.replace_selection(&c.to_string(), kind);
    }

    /// Enter: keep the line's indentation, one level more after the
    /// language's block opener (`:` in Python, `{` in Rust), one level
    /// less after a statement that ends its block (Python's `return`,
    /// see [`Language::ends_block`]). Between `{`
    /// and `}` the closing brace goes to its own line. A line that holds
    /// only indentation before the cursor is left empty, its indentation
    /// moving to the new line (as micro does unless `keepautoindent` is
    /// set), so that blank lines between blocks carry no trailing spaces.
    pub fn insert_newline(&mut self) {
        let rope = self.rope();
        let start = self.selection.start();
        let line = rope.char_to_line(start);
        let line_start = rope.line_to_char(line);
        let before: String = rope.slice(line_start..start).to_string();
        let indent: String = before
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        let line_ending = self.doc.line_ending().as_str();
        let unit = " ".repeat(self.indent_width());
        let opener = self.doc.language().map(|l| l.block_opener());
        let opens_block = opener.is_some_and(|o| before.trim_end().ends_with(o));
        let ends_block = self.doc.language().is_some_and(|l| l.ends_block(&before));
        // The new line's indentation.
        let carried = if ends_block && !opens_block {
            dedented(&indent, self.indent_width())
        } else {
            &indent
        };
        let end = self.selection.end();
        let next_char = (end < rope.len_chars()).then(|| rope.char(end));
        if opens_block && opener == Some('{') && next_char == Some('}') {
            let first = format!("{line_ending}{carried}{unit}");
            let text = format!("{first}{line_ending}{carried}");
            let cursor = start + first.chars().count();
            self.doc.begin_transaction(self.selection);
            self.replace_selection(&text, EditKind::Other);
            self.doc.commit();
            self.selection = Selection::cursor(cursor);
            return;
        }
        let text = if opens_block {
            format!("{line_ending}{carried}{unit}")
        } else {
            format!("{line_ending}{carried}")
        };
        let kind = if self.selection.is_empty() {
            EditKind::Typing
        } else {
            EditKind::Other
        };
        let only_indent = !before.is_empty() && indent.len() == before.len();
        let from = if only_indent { line_start } else { start };
        self.doc.seal_history();
        self.replace_range(from, end, &text, kind);
    }

    /// Tab: indent every line of a multi-line selection, otherwise insert
    /// spaces up to the next indent stop.
    pub fn indent(&mut self) {
        if self.selection_spans_lines() {
            self.shift_lines(true);
            return;
        }
        let width = self.indent_width();
        let (line, _) = self.cursor_line_col();
        let col = visual_col(
            &line_text(self.rope(), line),
            self.cursor_line_col().1,
            self.options.tab_width,
        );
        let spaces = width - col % width;
        self.replace_selection(&" ".repeat(spaces), EditKind::Other);
        self.doc.seal_history();
    }

    pub fn dedent(&mut self) {
        self.shift_lines(false);
    }

    fn selection_spans_lines(&self) -> bool {
        let rope = self.rope();
        rope.char_to_line(self.selection.start()) != rope.char_to_line(self.selection.end())
    }

    /// Add or remove one indent level on each selected line, as one undo step.
    fn shift_lines(&mut self, add: bool) {
        let rope = self.rope();
        let first = rope.char_to_line(self.selection.start());
        let mut last = rope.char_to_line(self.selection.end());
        if last > first && self.selection.end() == rope.line_to_char(last) {
            last -= 1;
        }
        let width = self.indent_width();
        let before = self.selection;
        let mut sel = self.selection;
        self.doc.begin_transaction(before);
        for line in first..=last {
            let rope = self.doc.rope();
            let start = rope.line_to_char(line);
            let text = line_text(rope, line);
            let edit = if add {
                if text.trim().is_empty() {
                    continue;
                }
                Edit::insert(rope, start, &" ".repeat(width))
            } else {
                let remove = if text.starts_with('\t') {
                    1
                } else {
                    text.chars().take(width).take_while(|c| *c == ' ').count()
                };
                if remove == 0 {
                    continue;
                }
                Edit::delete(rope, start, start + remove)
            };
            let next = sel.map_through(&edit);
            // A selection edge at the line start stays at the line start.
            sel = if add {
                Selection::new(
                    if sel.anchor == start && sel.anchor != sel.head {
                        sel.anchor
                    } else {
                        next.anchor
                    },
                    next.head,
                )
            } else {
                next
            };
            self.doc.edit(edit, EditKind::Other, before, sel);
        }
        self.doc.commit();
        self.selection = sel;
        self.view.follow();
    }

    /// Backspace: delete the selection; on a run of indentation delete back
    /// to the previous indent stop; otherwise one grapheme.
    pub fn delete_backward(&mut self) {
        if !self.selection.is_empty() {
            self.replace_selection("", EditKind::Other);
            return;
        }
        let cursor = self.cursor();
        if cursor == 0 {
            return;
        }
        let rope = self.rope();
        let line = rope.char_to_line(cursor);
        let line_start = rope.line_to_char(line);
        let before = rope.slice(line_start..cursor).to_string();
        let start = if !before.is_empty() && before.chars().all(|c| c == ' ') {
            let width = self.indent_width();
            let cols = before.len();
            let target = (cols - 1) / width * width;
            line_start + target
        } else {
            movement::prev_grapheme(rope, cursor)
        };
        self.selection = Selection::new(cursor, start);
        self.replace_selection("", EditKind::Deleting);
    }

    pub fn delete_forward(&mut self) {
        if !self.selection.is_empty() {
            self.replace_selection("", EditKind::Other);
            return;
        }
        let cursor = self.cursor();
        let end = movement::next_grapheme(self.rope(), cursor);
        if end == cursor {
            return;
        }
        self.selection = Selection::new(cursor, end);
        self.replace_selection("", EditKind::Deleting);
    }

    /// A paste or any other multi-char insertion: line breaks follow the
    /// document's style, and the whole insertion is one undo step.
    /// Terminals send a pasted newline as CR, so CR, LF and CRLF all count.
    pub fn paste_text(&mut self, text: &str) {
        let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
        let text = match self.doc.line_ending() {
            LineEnding::Lf => normalized,
            LineEnding::CrLf => normalized.replace('\n', "\r\n"),
        };
        self.doc.seal_history();
        self.replace_selection(&text, EditKind::Other);
        self.doc.seal_history();
    }

    fn whole_lines_range(&self) -> (usize, usize) {
        let rope = self.rope();
        let first = rope.char_to_line(self.selection.start());
        let last = rope.char_to_line(self.selection.end());
        let end = if last + 1 < rope.len_lines() {
            rope.line_to_char(last + 1)
        } else {
            rope.len_chars()
        };
        (rope.line_to_char(first), end)
    }

    /// Copy the selection (the current line when nothing is selected) to the
    /// internal clipboard and, by OSC 52, to the system clipboard.
    pub fn copy(&mut self) -> bool {
        let (start, end) = if self.selection.is_empty() {
            self.whole_lines_range()
        } else {
            (self.selection.start(), self.selection.end())
        };
        if start == end {
            return false;
        }
        let text = self.rope().slice(start..end).to_string();
        self.clipboard.copy(text);
        self.message = Some(format!("Copied {} chars", end - start));
        true
    }

    pub fn cut(&mut self) {
        if self.selection.is_empty() {
            let (start, end) = self.whole_lines_range();
            self.selection = Selection::new(start, end);
        }
        if self.copy() {
            self.doc.seal_history();
            self.replace_selection("", EditKind::Other);
            self.message = Some(format!(
                "Cut {} chars",
                self.clipboard.text().chars().count()
            ));
        }
    }

    pub fn paste(&mut self) {
        if self.clipboard.text().is_empty() {
            self.message = Some("Clipboard is empty".into());
            return;
        }
        let text = self.clipboard.text().to_string();
        self.paste_text(&text);
    }

    pub fn undo(&mut self) {
        match self.doc.undo() {
            Some(sel) => {
                self.selection = sel;
                self.view.follow();
            }
            None => self.message = Some("Nothing to undo".into()),
        }
    }

    pub fn redo(&mut self) {
        match self.doc.redo() {
            Some(sel) => {
                self.selection = sel;
                self.view.follow();
            }
            None => self.message = Some("Nothing to redo".into()),
        }
    }
}

/// `indent` one level out: a tab, or up to `width` spaces, off its end.
fn dedented(indent: &str, width: usize) -> &str {
    if let Some(rest) = indent.strip_suffix('\t') {
        return rest;
    }
    let spaces = indent.len() - indent.trim_end_matches(' ').len();
    &indent[..indent.len() - spaces.min(width)]
}
