//! The editor state one window shows: a document, its selection, the view
//! position, the prompt line and the clipboard. Commands change it; the UI
//! only reads it.

use base64::Engine as _;
use ropey::Rope;

use super::commands::{self, Keymap};
use super::document::Saved;
use super::fileio::DiskChange;
use super::ghost::Ghost;
use super::keys::Key;
use super::search;
use super::suggestion::PredictSignal;
use super::swap::Leftover;
use super::{Document, LineEnding};
use crate::text::movement::{self, line_content_end, line_text};
use crate::text::width::{char_at_col, visual_col};
use crate::text::{Edit, EditKind, Selection};
use crossterm::event::KeyCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorOptions {
    pub tab_width: usize,
    /// Indent width for files with no known language.
    pub indent_width: usize,
}

impl Default for EditorOptions {
    fn default() -> Self {
        EditorOptions {
            tab_width: 4,
            indent_width: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Find,
    GotoLine,
    SaveAs {
        then_quit: bool,
    },
    ConfirmQuit,
    /// A save found the file changed by another program since it was read.
    ChangedOnDisk {
        then_quit: bool,
    },
    /// Opening found unsaved changes that a crashed or killed editor left.
    Recover,
}

#[derive(Debug, Clone)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: String,
    /// Where the cursor was when the prompt opened: Esc returns there.
    pub origin: Selection,
    /// The snapshot a `Recover` prompt asks about.
    pub leftover: Option<Leftover>,
}

fn age(time: std::time::SystemTime) -> String {
    let secs = time.elapsed().map_or(0, |d| d.as_secs());
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

impl Prompt {
    pub fn label(&self) -> String {
        match self.kind {
            PromptKind::Find => "Find (Enter: keep, Esc: back, C-n/C-p: next/prev): ".into(),
            PromptKind::GotoLine => "Go to line[:col]: ".into(),
            PromptKind::SaveAs { .. } => "Save as: ".into(),
            PromptKind::ConfirmQuit => {
                "Unsaved changes. Save before quitting? (y)es (n)o (Esc) cancel ".into()
            }
            PromptKind::ChangedOnDisk { .. } => {
                "The file changed on disk since it was read. (o)verwrite it (r)eload it (Esc) cancel "
                    .into()
            }
            PromptKind::Recover => {
                let when = self.leftover.as_ref().map_or_else(String::new, |l| {
                    format!(" (pid {}, {})", l.pid, age(l.written))
                });
                format!(
                    "Unsaved changes of a pie-edit that ended{when}. (r)ecover them (o)pen the file, keep them (d)elete them "
                )
            }
        }
    }
}

pub struct Editor {
    pub doc: Document,
    pub selection: Selection,
    /// The visual column that up/down moves try to keep.
    desired_col: Option<usize>,
    pub scroll_line: usize,
    pub scroll_col: usize,
    /// Size of the text area, set by the app's layout before each frame.
    pub view_width: usize,
    pub view_height: usize,
    /// Off after a wheel scroll, so the view may leave the cursor behind;
    /// any cursor move or edit turns it back on.
    pub follow_cursor: bool,
    pub prompt: Option<Prompt>,
    message: Option<String>,
    pub clipboard: String,
    /// OSC 52 sequences waiting to be written to the terminal.
    pub osc52_out: Vec<String>,
    /// Scroll offset of the key list while it is open.
    pub help_scroll: Option<usize>,
    pub quit: bool,
    pub last_search: String,
    pub options: EditorOptions,
    pub keymap: Keymap,
    /// The suggestion shown after the cursor; never part of the rope.
    pub(super) ghost: Option<Ghost>,
    /// A prediction command for the predictor to act on.
    pub(super) predict_signal: Option<PredictSignal>,
    /// The user was told that the file changed or vanished on disk.
    disk_warned: bool,
}

impl Editor {
    pub fn new(doc: Document, options: EditorOptions, keymap: Keymap) -> Editor {
        Editor {
            doc,
            selection: Selection::cursor(0),
            desired_col: None,
            scroll_line: 0,
            scroll_col: 0,
            view_width: 80,
            view_height: 22,
            follow_cursor: true,
            prompt: None,
            message: None,
            clipboard: String::new(),
            osc52_out: Vec::new(),
            help_scroll: None,
            quit: false,
            last_search: String::new(),
            options,
            keymap,
            ghost: None,
            predict_signal: None,
            disk_warned: false,
        }
    }

    pub fn rope(&self) -> &Rope {
        self.doc.rope()
    }

    /// The status message, until the next key.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    pub fn set_message(&mut self, message: impl Into<String>) {
        self.message = Some(message.into());
    }

    pub fn cursor(&self) -> usize {
        self.selection.head
    }

    /// Zero-based (line, char column) of the cursor.
    pub fn cursor_line_col(&self) -> (usize, usize) {
        let rope = self.rope();
        let line = rope.char_to_line(self.cursor());
        (line, self.cursor() - rope.line_to_char(line))
    }

    pub fn indent_width(&self) -> usize {
        self.doc
            .language()
            .map_or(self.options.indent_width, |l| l.indent_width())
    }

    pub fn gutter_width(&self) -> usize {
        let digits = self.rope().len_lines().to_string().len();
        digits.max(3) + 1
    }

    // ----- keys -----

    /// Handle one key: the help screen and prompts take keys first, then
    /// the keymap, then a printable char is typed.
    pub fn handle_key(&mut self, key: Key) {
        if self.help_scroll.is_some() {
            self.help_key(key);
            return;
        }
        if self.prompt.is_some() {
            self.prompt_key(key);
            return;
        }
        self.message = None;
        if let Some(command) = self.keymap.command_for(&key) {
            (command.run)(self);
        } else if let Some(c) = key.typed_char() {
            self.insert_char(c);
        }
    }

    fn help_key(&mut self, key: Key) {
        let scroll = self.help_scroll.unwrap_or(0);
        let max = commands::COMMANDS.len().saturating_sub(1);
        self.help_scroll = match key.code {
            KeyCode::Up => Some(scroll.saturating_sub(1)),
            KeyCode::Down => Some((scroll + 1).min(max)),
            KeyCode::PageUp => Some(scroll.saturating_sub(self.view_height)),
            KeyCode::PageDown => Some((scroll + self.view_height).min(max)),
            _ => None,
        };
    }

    fn prompt_key(&mut self, key: Key) {
        let Some(prompt) = self.prompt.as_mut() else {
            return;
        };
        let kind = prompt.kind;
        if matches!(
            kind,
            PromptKind::ConfirmQuit | PromptKind::ChangedOnDisk { .. } | PromptKind::Recover
        ) {
            self.choice_key(kind, key);
            return;
        }
        // Search's next/prev keys work while the prompt is open.
        if kind == PromptKind::Find
            && let Some(command) = self.keymap.command_for(&key)
            && matches!(command.name, "find-next" | "find-prev")
        {
            (command.run)(self);
            return;
        }
        match key.code {
            KeyCode::Esc => {
                let origin = prompt.origin;
                self.prompt = None;
                if kind == PromptKind::Find {
                    self.selection = origin;
                }
                self.follow_cursor = true;
            }
            KeyCode::Enter => {
                let input = prompt.input.clone();
                self.prompt = None;
                self.finish_prompt(kind, &input);
            }
            KeyCode::Backspace => {
                prompt.input.pop();
                self.prompt_changed();
            }
            _ => {
                if let Some(c) = key.typed_char() {
                    prompt.input.push(c);
                    self.prompt_changed();
                }
            }
        }
    }

    pub fn open_prompt(&mut self, kind: PromptKind) {
        self.prompt = Some(Prompt {
            kind,
            input: String::new(),
            origin: self.selection,
            leftover: None,
        });
    }

    /// Ask what to do with the unsaved changes a dead editor left for this file.
    pub fn offer_recovery(&mut self, leftover: Leftover) {
        self.open_prompt(PromptKind::Recover);
        if let Some(prompt) = self.prompt.as_mut() {
            prompt.leftover = Some(leftover);
        }
    }

    /// The single-key prompts: a choice, not typed input.
    fn choice_key(&mut self, kind: PromptKind, key: Key) {
        let choice = key.typed_char().map(|c| c.to_ascii_lowercase());
        let cancel = key.code == KeyCode::Esc || key == Key::ctrl('c');
        let leftover = self.prompt.as_mut().and_then(|p| p.leftover.take());
        match (kind, choice) {
            (PromptKind::ConfirmQuit, Some('y')) => {
                self.prompt = None;
                if self.doc.path().is_none() {
                    self.open_prompt(PromptKind::SaveAs { then_quit: true });
                } else if self.save_checked(true) {
                    self.quit = true;
                }
            }
            (PromptKind::ConfirmQuit, Some('n')) => {
                self.prompt = None;
                self.quit = true;
            }
            (PromptKind::ConfirmQuit, Some('c')) => self.cancel_prompt("Quit cancelled"),
            (PromptKind::ConfirmQuit, _) if cancel => self.cancel_prompt("Quit cancelled"),
            (PromptKind::ChangedOnDisk { then_quit }, Some('o')) => {
                self.prompt = None;
                if self.save_document() && then_quit {
                    self.quit = true;
                }
            }
            (PromptKind::ChangedOnDisk { .. }, Some('r')) => {
                self.prompt = None;
                self.reload();
            }
            (PromptKind::ChangedOnDisk { .. }, Some('c')) => self.cancel_prompt("Save cancelled"),
            (PromptKind::ChangedOnDisk { .. }, _) if cancel => self.cancel_prompt("Save cancelled"),
            (PromptKind::Recover, Some('r')) => {
                self.prompt = None;
                if let Some(leftover) = leftover {
                    self.message = Some(match self.doc.recover(&leftover) {
                        Ok(()) => "Recovered the unsaved changes (Ctrl-Z shows the file as on disk; Ctrl-S saves)".into(),
                        Err(err) => format!(
                            "Recovered the changes, but {} stays: {err}",
                            leftover.path.display()
                        ),
                    });
                }
            }
            (PromptKind::Recover, Some('d')) => {
                self.prompt = None;
                if let Some(leftover) = leftover {
                    self.message = Some(match std::fs::remove_file(&leftover.path) {
                        Ok(()) => "Deleted the unsaved changes".into(),
                        Err(err) => format!("Cannot delete {}: {err}", leftover.path.display()),
                    });
                }
            }
            (PromptKind::Recover, Some('o')) => self.keep_leftover(leftover),
            (PromptKind::Recover, _) if cancel => self.keep_leftover(leftover),
            _ => {
                // Not an answer: keep asking, with the snapshot still there.
                if let Some(prompt) = self.prompt.as_mut() {
                    prompt.leftover = leftover;
                }
            }
        }
    }

    fn cancel_prompt(&mut self, message: &str) {
        self.prompt = None;
        self.message = Some(message.into());
    }

    fn keep_leftover(&mut self, leftover: Option<Leftover>) {
        self.prompt = None;
        if let Some(leftover) = leftover {
            self.message = Some(format!(
                "Opened the file as on disk; the unsaved changes stay in {}",
                leftover.path.display()
            ));
        }
    }

    /// Incremental search: every change of the query searches again from
    /// where the prompt opened.
    fn prompt_changed(&mut self) {
        let Some(prompt) = &self.prompt else { return };
        if prompt.kind != PromptKind::Find {
            return;
        }
        let origin = prompt.origin;
        let query = prompt.input.clone();
        self.last_search = query.clone();
        if query.is_empty() {
            self.selection = origin;
            return;
        }
        match search::find_forward(self.rope(), &query, origin.start()) {
            Some((start, end)) => {
                self.selection = Selection::new(start, end);
                self.message = None;
            }
            None => {
                self.selection = origin;
                self.message = Some(format!("Not found: {query}"));
            }
        }
        self.follow_cursor = true;
    }

    fn finish_prompt(&mut self, kind: PromptKind, input: &str) {
        match kind {
            PromptKind::Find => {
                if !input.is_empty() {
                    self.last_search = input.to_string();
                }
            }
            PromptKind::GotoLine => self.goto_line_input(input),
            PromptKind::SaveAs { then_quit } => {
                let path = input.trim();
                if path.is_empty() {
                    self.message = Some("Save cancelled: no file name".into());
                    return;
                }
                self.doc.set_path(path.into());
                if self.save_checked(then_quit) && then_quit {
                    self.quit = true;
                }
            }
            PromptKind::ConfirmQuit | PromptKind::ChangedOnDisk { .. } | PromptKind::Recover => {}
        }
    }

    fn goto_line_input(&mut self, input: &str) {
        let mut parts = input.trim().splitn(2, ':');
        let line = parts.next().and_then(|s| s.trim().parse::<usize>().ok());
        let col = parts.next().map(|s| s.trim().parse::<usize>().ok());
        let (Some(line), Some(col)) = (line, col.unwrap_or(Some(1))) else {
            self.message = Some(format!(
                "Not a line number: {input:?} (expected N or N:COL)"
            ));
            return;
        };
        let rope = self.rope();
        let last = rope.len_lines().saturating_sub(1);
        let line = line.saturating_sub(1).min(last);
        let start = rope.line_to_char(line);
        let pos = (start + col.saturating_sub(1)).min(line_content_end(rope, line));
        self.move_to(pos, false);
    }

    // ----- movement -----

    pub fn move_to(&mut self, pos: usize, extend: bool) {
        let pos = pos.min(self.rope().len_chars());
        self.selection = self.selection.moved_to(pos, extend);
        self.desired_col = None;
        self.follow_cursor = true;
        self.doc.seal_history();
    }

    fn cursor_visual_col(&self) -> usize {
        let (line, col) = self.cursor_line_col();
        visual_col(&line_text(self.rope(), line), col, self.options.tab_width)
    }

    pub fn move_lines(&mut self, delta: isize, extend: bool) {
        if !extend && !self.selection.is_empty() && delta != 0 {
            let edge = if delta < 0 {
                self.selection.start()
            } else {
                self.selection.end()
            };
            self.selection = Selection::cursor(edge);
        }
        let want = self.desired_col.unwrap_or_else(|| self.cursor_visual_col());
        let rope = self.rope();
        let (line, _) = self.cursor_line_col();
        let last = rope.len_lines().saturating_sub(1);
        let target = if delta < 0 {
            if line == 0 {
                self.move_to(0, extend);
                return;
            }
            line.saturating_sub(delta.unsigned_abs())
        } else {
            if line == last {
                let end = rope.len_chars();
                self.move_to(end, extend);
                return;
            }
            (line + delta as usize).min(last)
        };
        let text = line_text(rope, target);
        let pos = rope.line_to_char(target) + char_at_col(&text, want, self.options.tab_width);
        self.move_to(pos, extend);
        self.desired_col = Some(want);
    }

    pub fn move_horizontal(&mut self, forward: bool, extend: bool) {
        if !extend && !self.selection.is_empty() {
            let edge = if forward {
                self.selection.end()
            } else {
                self.selection.start()
            };
            self.move_to(edge, false);
            return;
        }
        let rope = self.rope();
        let pos = if forward {
            movement::next_grapheme(rope, self.cursor())
        } else {
            movement::prev_grapheme(rope, self.cursor())
        };
        self.move_to(pos, extend);
    }

    pub fn move_word(&mut self, forward: bool, extend: bool) {
        let rope = self.rope();
        let pos = if forward {
            movement::next_word(rope, self.cursor())
        } else {
            movement::prev_word(rope, self.cursor())
        };
        self.move_to(pos, extend);
    }

    /// Home goes to the first non-blank char, or to column 0 when already there.
    pub fn move_home(&mut self, extend: bool) {
        let rope = self.rope();
        let (line, col) = self.cursor_line_col();
        let start = rope.line_to_char(line);
        let text = line_text(rope, line);
        let indent = text.chars().take_while(|c| *c == ' ' || *c == '\t').count();
        let pos = if col == indent { start } else { start + indent };
        self.move_to(pos, extend);
    }

    pub fn move_end(&mut self, extend: bool) {
        let (line, _) = self.cursor_line_col();
        let pos = line_content_end(self.rope(), line);
        self.move_to(pos, extend);
    }

    pub fn page(&mut self, down: bool, extend: bool) {
        let lines = self.view_height.saturating_sub(1).max(1) as isize;
        let last = self.rope().len_lines().saturating_sub(1);
        if down {
            self.scroll_line = (self.scroll_line + lines as usize).min(last);
        } else {
            self.scroll_line = self.scroll_line.saturating_sub(lines as usize);
        }
        self.move_lines(if down { lines } else { -lines }, extend);
    }

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
        self.follow_cursor = true;
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
    /// language's block opener (`:` in Python, `{` in Rust). Between `{`
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
        let end = self.selection.end();
        let next_char = (end < rope.len_chars()).then(|| rope.char(end));
        if opens_block && opener == Some('{') && next_char == Some('}') {
            let first = format!("{line_ending}{indent}{unit}");
            let text = format!("{first}{line_ending}{indent}");
            let cursor = start + first.chars().count();
            self.doc.begin_transaction(self.selection);
            self.replace_selection(&text, EditKind::Other);
            self.doc.commit();
            self.selection = Selection::cursor(cursor);
            return;
        }
        let text = if opens_block {
            format!("{line_ending}{indent}{unit}")
        } else {
            format!("{line_ending}{indent}")
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
        self.follow_cursor = true;
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
        self.clipboard = self.rope().slice(start..end).to_string();
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.clipboard.as_bytes());
        self.osc52_out.push(format!("\x1b]52;c;{encoded}\x07"));
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
            self.message = Some(format!("Cut {} chars", self.clipboard.chars().count()));
        }
    }

    pub fn paste(&mut self) {
        if self.clipboard.is_empty() {
            self.message = Some("Clipboard is empty".into());
            return;
        }
        let text = self.clipboard.clone();
        self.paste_text(&text);
    }

    pub fn undo(&mut self) {
        match self.doc.undo() {
            Some(sel) => {
                self.selection = sel;
                self.follow_cursor = true;
            }
            None => self.message = Some("Nothing to undo".into()),
        }
    }

    pub fn redo(&mut self) {
        match self.doc.redo() {
            Some(sel) => {
                self.selection = sel;
                self.follow_cursor = true;
            }
            None => self.message = Some("Nothing to redo".into()),
        }
    }

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
    fn save_checked(&mut self, then_quit: bool) -> bool {
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

    pub fn find_next(&mut self, forward: bool) {
        let query = self.last_search.clone();
        if query.is_empty() {
            self.message = Some("No search yet: Ctrl-F to search".into());
            return;
        }
        let found = if forward {
            search::find_forward(self.rope(), &query, self.selection.end())
        } else {
            search::find_backward(self.rope(), &query, self.selection.start())
        };
        match found {
            Some((start, end)) => {
                self.selection = Selection::new(start, end);
                self.follow_cursor = true;
                self.doc.seal_history();
            }
            None => self.message = Some(format!("Not found: {query}")),
        }
    }

    // ----- view -----

    /// Scroll so the cursor is on screen (after the app set the view size).
    pub fn scroll_to_cursor(&mut self) {
        if !self.follow_cursor {
            return;
        }
        let (line, _) = self.cursor_line_col();
        let height = self.view_height.max(1);
        if line < self.scroll_line {
            self.scroll_line = line;
        } else if line >= self.scroll_line + height {
            self.scroll_line = line + 1 - height;
        }
        let col = self.cursor_visual_col();
        let width = self.view_width.max(2);
        // A cursor that fits the first screen width needs no sideways
        // scroll (after a shrink to a sliver and back, the view returns).
        if col + 1 < width {
            self.scroll_col = 0;
        } else if col < self.scroll_col {
            self.scroll_col = col.saturating_sub(width / 4);
        } else if col >= self.scroll_col + width {
            self.scroll_col = col + 1 - width + width / 4;
        }
    }

    /// The char offset under a text-area cell (col, row), clamped to the text.
    pub fn position_at(&self, col: usize, row: usize) -> usize {
        let rope = self.rope();
        let line = (self.scroll_line + row).min(rope.len_lines().saturating_sub(1));
        let text = line_text(rope, line);
        rope.line_to_char(line) + char_at_col(&text, col + self.scroll_col, self.options.tab_width)
    }

    pub fn click(&mut self, col: usize, row: usize, extend: bool) {
        let pos = self.position_at(col, row);
        self.move_to(pos, extend);
    }

    /// Wheel: move the view, not the cursor.
    pub fn scroll_by(&mut self, lines: isize) {
        let last = self.rope().len_lines().saturating_sub(1);
        self.scroll_line = self.scroll_line.saturating_add_signed(lines).min(last);
        self.follow_cursor = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::Language;

    fn editor(text: &str, lang: Option<Language>) -> Editor {
        Editor::new(
            Document::from_text(text, lang),
            EditorOptions::default(),
            Keymap::default(),
        )
    }

    fn type_text(ed: &mut Editor, text: &str) {
        for c in text.chars() {
            if c == '\n' {
                ed.insert_newline();
            } else {
                ed.insert_char(c);
            }
        }
    }

    #[test]
    fn enter_indents_after_block_openers() {
        let mut ed = editor("", Some(Language::Python));
        type_text(&mut ed, "def f(x):\nif x:\nreturn 1");
        assert_eq!(ed.doc.text(), "def f(x):\n    if x:\n        return 1");
        let mut ed = editor("fn main() {}", Some(Language::Rust));
        ed.selection = Selection::cursor(11);
        ed.insert_newline();
        assert_eq!(ed.doc.text(), "fn main() {\n    \n}");
        assert_eq!(ed.cursor(), 16);
        ed.undo();
        assert_eq!(ed.doc.text(), "fn main() {}");
    }

    #[test]
    fn enter_on_a_line_of_only_indentation_leaves_it_empty() {
        let mut ed = editor("", Some(Language::Python));
        type_text(&mut ed, "def f(x):\nreturn x\n\ndef g():");
        assert_eq!(ed.doc.text(), "def f(x):\n    return x\n\n    def g():");
        // Only the indentation before the cursor counts: text after it
        // moves down with the indentation.
        let mut ed = editor("    x", Some(Language::Python));
        ed.selection = Selection::cursor(4);
        ed.insert_newline();
        assert_eq!(ed.doc.text(), "\n    x");
        assert_eq!(ed.cursor(), 5);
        ed.undo();
        assert_eq!(ed.doc.text(), "    x");
        assert_eq!(ed.cursor(), 4);
    }

    #[test]
    fn backspace_on_indent_removes_one_level() {
        let mut ed = editor("        x", Some(Language::Python));
        ed.selection = Selection::cursor(8);
        ed.delete_backward();
        assert_eq!(ed.doc.text(), "    x");
        ed.delete_backward();
        assert_eq!(ed.doc.text(), "x");
    }

    #[test]
    fn up_down_keep_the_visual_column_over_wide_chars() {
        let mut ed = editor("abcdef\n日本語\nabcdef", None);
        ed.selection = Selection::cursor(4);
        ed.move_lines(1, false);
        assert_eq!(ed.cursor_line_col(), (1, 2));
        ed.move_lines(1, false);
        assert_eq!(ed.cursor_line_col(), (2, 4));
    }

    #[test]
    fn crlf_documents_get_crlf_newlines_and_pastes() {
        let mut ed = editor("a\r\nb\r\n", None);
        ed.selection = Selection::cursor(1);
        ed.insert_newline();
        ed.paste_text("x\ny");
        assert_eq!(ed.doc.text(), "a\r\nx\r\ny\r\nb\r\n");
    }
}
