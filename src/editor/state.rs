//! The editor state one window shows: a document, its selection, the view
//! position, the prompt line and the clipboard. Commands change it; the UI
//! only reads it.

use ropey::Rope;

use super::Document;
use super::clipboard::Clipboard;
use super::commands::Keymap;
use super::ghost::Ghost;
use super::keys::Key;
use super::prompt::Prompt;
use super::search;
use super::suggestion::PredictSignal;
use super::view::View;
use crate::text::Selection;
use crate::text::movement::{self, line_content_end, line_text};
use crate::text::width::{char_at_col, visual_col};

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

pub struct Editor {
    pub doc: Document,
    pub(super) selection: Selection,
    /// The visual column that up/down moves try to keep.
    pub(super) desired_col: Option<usize>,
    pub(super) view: View,
    pub(super) prompt: Option<Prompt>,
    pub(super) message: Option<String>,
    pub(super) clipboard: Clipboard,
    /// Scroll offset of the key list while it is open.
    pub(super) help_scroll: Option<usize>,
    pub(super) quit: bool,
    pub(super) last_search: String,
    pub(super) options: EditorOptions,
    pub(super) keymap: Keymap,
    /// The suggestion shown after the cursor; never part of the rope.
    pub(super) ghost: Option<Ghost>,
    /// A prediction command for the predictor to act on.
    pub(super) predict_signal: Option<PredictSignal>,
    /// The user was told that the file changed or vanished on disk.
    pub(super) disk_warned: bool,
}

impl Editor {
    pub fn new(doc: Document, options: EditorOptions, keymap: Keymap) -> Editor {
        Editor {
            doc,
            selection: Selection::cursor(0),
            desired_col: None,
            view: View::default(),
            prompt: None,
            message: None,
            clipboard: Clipboard::default(),
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

    /// OSC 52 sequences for the terminal, queued by copies since the last call.
    pub fn take_osc52(&mut self) -> Vec<String> {
        self.clipboard.take_osc52()
    }

    pub fn selection(&self) -> Selection {
        self.selection
    }

    /// Place the cursor or selection (benchmarks and tests set up a position).
    pub fn set_selection(&mut self, selection: Selection) {
        self.selection = selection.clamp(self.rope().len_chars());
    }

    /// The open prompt, if any.
    pub fn prompt(&self) -> Option<&Prompt> {
        self.prompt.as_ref()
    }

    /// Paste into the open prompt (its first line only).
    pub fn paste_into_prompt(&mut self, text: &str) -> bool {
        let Some(prompt) = self.prompt.as_mut() else {
            return false;
        };
        // Terminals send pasted line breaks as CR.
        prompt
            .input
            .push_str(text.split(['\r', '\n']).next().unwrap_or(""));
        true
    }

    /// The scroll offset of the key list, while it is open.
    pub fn help_scroll(&self) -> Option<usize> {
        self.help_scroll
    }

    pub fn options(&self) -> &EditorOptions {
        &self.options
    }

    pub fn keymap(&self) -> &Keymap {
        &self.keymap
    }

    /// The user asked to quit (and answered any question about it).
    pub fn quit_requested(&self) -> bool {
        self.quit
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

    // ----- movement -----

    pub fn move_to(&mut self, pos: usize, extend: bool) {
        let pos = pos.min(self.rope().len_chars());
        self.selection = self.selection.moved_to(pos, extend);
        self.desired_col = None;
        self.view.follow();
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
        let last = self.rope().len_lines().saturating_sub(1);
        let lines = self.view.page(down, last) as isize;
        self.move_lines(if down { lines } else { -lines }, extend);
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
                self.view.follow();
                self.doc.seal_history();
            }
            None => self.message = Some(format!("Not found: {query}")),
        }
    }

    // ----- view -----

    /// What part of the document the window shows.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Size the text area (the app's layout, before each frame) and scroll
    /// so the cursor is on screen.
    pub fn fit_view(&mut self, width: usize, height: usize) {
        self.view.set_size(width, height);
        let (line, _) = self.cursor_line_col();
        let col = self.cursor_visual_col();
        self.view.scroll_to(line, col);
    }

    /// The char offset under a text-area cell (col, row), clamped to the text.
    pub fn position_at(&self, col: usize, row: usize) -> usize {
        let rope = self.rope();
        let line = (self.view.scroll_line() + row).min(rope.len_lines().saturating_sub(1));
        let text = line_text(rope, line);
        rope.line_to_char(line)
            + char_at_col(&text, col + self.view.scroll_col(), self.options.tab_width)
    }

    pub fn click(&mut self, col: usize, row: usize, extend: bool) {
        let pos = self.position_at(col, row);
        self.move_to(pos, extend);
    }

    /// Wheel: move the view, not the cursor.
    pub fn scroll_by(&mut self, lines: isize) {
        let last = self.rope().len_lines().saturating_sub(1);
        self.view.scroll_by(lines, last);
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
    fn enter_dedents_after_a_statement_that_ends_its_block() {
        let mut ed = editor("", Some(Language::Python));
        type_text(
            &mut ed,
            "def f(x):\nif x:\nreturn 1\nraise ValueError(x)\nz",
        );
        assert_eq!(
            ed.doc.text(),
            "def f(x):\n    if x:\n        return 1\n    raise ValueError(x)\nz"
        );
        let mut ed = editor("", Some(Language::Python));
        type_text(&mut ed, "for a in b:\nif a:\ncontinue\npass\nbreak\nz");
        assert_eq!(
            ed.doc.text(),
            "for a in b:\n    if a:\n        continue\n    pass\nbreak\nz"
        );
        // A statement carried on by a bracket, or a name that only starts
        // like one, keeps the indentation; so does Rust.
        let mut ed = editor("", Some(Language::Python));
        type_text(&mut ed, "def f():\nreturn (\n1)\npassed = 1\nz");
        assert_eq!(
            ed.doc.text(),
            "def f():\n    return (\n    1)\n    passed = 1\n    z"
        );
        let mut ed = editor("", Some(Language::Rust));
        type_text(&mut ed, "fn f() {\nreturn;\nz");
        assert_eq!(ed.doc.text(), "fn f() {\n    return;\n    z");
        // At the top level there is nothing to dedent.
        let mut ed = editor("", Some(Language::Python));
        type_text(&mut ed, "return\nz");
        assert_eq!(ed.doc.text(), "return\nz");
    }

    #[test]
    fn enter_on_a_line_of_only_indentation_leaves_it_empty() {
        let mut ed = editor("", Some(Language::Python));
        type_text(&mut ed, "def f(x):\ny = x\n\nz = y");
        assert_eq!(ed.doc.text(), "def f(x):\n    y = x\n\n    z = y");
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
