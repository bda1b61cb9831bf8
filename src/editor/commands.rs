//! The commands table: every action a key can trigger, by name, with the
//! documentation that F1 and the README show, and the default keymap.

use std::collections::HashMap;

use super::keys::{Key, KeyParseError};
use super::prompt::PromptKind;
use super::state::Editor;
use super::suggestion::Accept;
use super::suggestion::PredictSignal;

pub struct Command {
    pub name: &'static str,
    pub doc: &'static str,
    pub run: fn(&mut Editor),
}

macro_rules! commands {
    ($($name:literal => $doc:literal, $run:expr;)*) => {
        /// Every command, in the order the key list shows them.
        pub static COMMANDS: &[Command] = &[$(Command { name: $name, doc: $doc, run: $run },)*];
    };
}

commands! {
    "move-left" => "Cursor one character (grapheme) left", |e| e.move_horizontal(false, false);
    "move-right" => "Cursor one character (grapheme) right", |e| e.move_horizontal(true, false);
    "move-up" => "Cursor one line up", |e| e.move_lines(-1, false);
    "move-down" => "Cursor one line down", |e| e.move_lines(1, false);
    "move-word-left" => "Cursor to the previous word start", |e| e.move_word(false, false);
    "move-word-right" => "Cursor to the next word end", |e| e.move_word(true, false);
    "move-line-start" => "Cursor to the first non-blank, then to column 1", |e| e.move_home(false);
    "move-line-end" => "Cursor to the end of the line", |e| e.move_end(false);
    "page-up" => "One screen up", |e| e.page(false, false);
    "page-down" => "One screen down", |e| e.page(true, false);
    "move-doc-start" => "Cursor to the start of the file", |e| e.move_to(0, false);
    "move-doc-end" => "Cursor to the end of the file", |e| { let end = e.rope().len_chars(); e.move_to(end, false) };
    "select-left" => "Extend the selection one character left", |e| e.move_horizontal(false, true);
    "select-right" => "Extend the selection one character right", |e| e.move_horizontal(true, true);
    "select-up" => "Extend the selection one line up", |e| e.move_lines(-1, true);
    "select-down" => "Extend the selection one line down", |e| e.move_lines(1, true);
    "select-word-left" => "Extend the selection to the previous word start", |e| e.move_word(false, true);
    "select-word-right" => "Extend the selection to the next word end", |e| e.move_word(true, true);
    "select-line-start" => "Extend the selection to the line start", |e| e.move_home(true);
    "select-line-end" => "Extend the selection to the line end", |e| e.move_end(true);
    "select-page-up" => "Extend the selection one screen up", |e| e.page(false, true);
    "select-page-down" => "Extend the selection one screen down", |e| e.page(true, true);
    "select-doc-start" => "Extend the selection to the start of the file", |e| e.move_to(0, true);
    "select-doc-end" => "Extend the selection to the end of the file", |e| { let end = e.rope().len_chars(); e.move_to(end, true) };
    "select-all" => "Select the whole file", |e| { let end = e.rope().len_chars(); e.move_to(0, false); e.move_to(end, true) };
    "insert-newline" => "New line, keeping the indentation (one level more after : in Python, { in Rust; one less after return, raise, pass, break, continue in Python)", |e| e.insert_newline();
    "indent" => "Insert indentation up to the next stop; indent all lines of a multi-line selection", |e| e.indent();
    "dedent" => "Remove one indentation level from the current or selected lines", |e| e.dedent();
    "delete-backward" => "Delete the character before the cursor, or one indent level", |e| e.delete_backward();
    "delete-forward" => "Delete the character under the cursor", |e| e.delete_forward();
    "copy" => "Copy the selection (or the line) to the clipboard, also by OSC 52", |e| { e.copy(); };
    "cut" => "Cut the selection (or the line)", |e| e.cut();
    "paste" => "Paste the clipboard", |e| e.paste();
    "undo" => "Undo the last change (a typed run is one step)", |e| e.undo();
    "redo" => "Redo the last undone change", |e| e.redo();
    "save" => "Save the file (asks for a name for a new buffer)", |e| e.save();
    "quit" => "Quit (asks first when there are unsaved changes)", |e| e.request_quit();
    "find" => "Incremental search", |e| e.open_prompt(PromptKind::Find);
    "find-next" => "Next match of the last search", |e| e.find_next(true);
    "find-prev" => "Previous match of the last search", |e| e.find_next(false);
    "goto-line" => "Go to a line (N or N:COL)", |e| e.open_prompt(PromptKind::GotoLine);
    "help" => "Show this key list", |e| e.help_scroll = Some(0);
    "accept-or-indent" => "Accept the whole suggestion (one undo step); without one, indent", |e| { if !e.accept_suggestion(Accept::All) { e.indent() } };
    "accept-word-or-move" => "Accept the suggestion's next word; without one, move to the next word end", |e| { if !e.accept_suggestion(Accept::Word) { e.move_word(true, false) } };
    "accept-line-or-dedent" => "Accept the suggestion's first line; without one, dedent", |e| { if !e.accept_suggestion(Accept::Line) { e.dedent() } };
    "dismiss-suggestion" => "Hide the suggestion", |e| { e.dismiss_suggestion(); };
    "next-suggestion" => "Show the suggestion's next alternative (wraps around; the status line shows which)", |e| { e.cycle_suggestion(true); };
    "prev-suggestion" => "Show the suggestion's previous alternative (wraps around)", |e| { e.cycle_suggestion(false); };
    "suggest" => "Ask for a suggestion at the cursor now", |e| e.signal_predictor(PredictSignal::Request);
    "toggle-predictions" => "Turn predictions on or off", |e| e.signal_predictor(PredictSignal::Toggle);
    "debug-panic" => "Crash on purpose (tests the recovery file); unbound by default", |_| panic!("debug-panic command");
}

/// Default bindings: micro-style, modeless.
pub const DEFAULT_KEYS: &[(&str, &str)] = &[
    ("Left", "move-left"),
    ("Right", "move-right"),
    ("Up", "move-up"),
    ("Down", "move-down"),
    ("C-Left", "move-word-left"),
    ("C-Right", "accept-word-or-move"),
    ("Home", "move-line-start"),
    ("End", "move-line-end"),
    ("PgUp", "page-up"),
    ("PgDn", "page-down"),
    ("C-Home", "move-doc-start"),
    ("C-End", "move-doc-end"),
    ("S-Left", "select-left"),
    ("S-Right", "select-right"),
    ("S-Up", "select-up"),
    ("S-Down", "select-down"),
    ("C-S-Left", "select-word-left"),
    ("C-S-Right", "select-word-right"),
    ("S-Home", "select-line-start"),
    ("S-End", "select-line-end"),
    ("S-PgUp", "select-page-up"),
    ("S-PgDn", "select-page-down"),
    ("C-S-Home", "select-doc-start"),
    ("C-S-End", "select-doc-end"),
    ("C-a", "select-all"),
    ("Enter", "insert-newline"),
    ("Tab", "accept-or-indent"),
    ("S-Tab", "accept-line-or-dedent"),
    ("Esc", "dismiss-suggestion"),
    ("A-\\", "suggest"),
    ("A-]", "next-suggestion"),
    ("A-[", "prev-suggestion"),
    // Most terminals (tmux, xterm, GNOME Terminal: all without the kitty
    // keyboard protocol) send Alt-[ as ESC [, the start of an escape
    // sequence: it never arrives as a key, and the key after it is lost
    // with it. Alt-n / Alt-p (Emacs's next / previous candidate) work in
    // every terminal.
    ("A-n", "next-suggestion"),
    ("A-p", "prev-suggestion"),
    ("F2", "toggle-predictions"),
    ("BS", "delete-backward"),
    ("Del", "delete-forward"),
    ("C-c", "copy"),
    ("C-x", "cut"),
    ("C-k", "cut"),
    ("C-v", "paste"),
    ("C-z", "undo"),
    ("C-y", "redo"),
    ("C-s", "save"),
    ("C-q", "quit"),
    ("C-f", "find"),
    ("C-n", "find-next"),
    ("F3", "find-next"),
    ("C-p", "find-prev"),
    ("S-F3", "find-prev"),
    ("C-g", "goto-line"),
    ("F1", "help"),
];

pub fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Key(#[from] KeyParseError),
    #[error("unknown command {0:?} (F1 lists the commands)")]
    UnknownCommand(String),
}

#[derive(Clone)]
pub struct Keymap {
    bindings: HashMap<Key, &'static Command>,
}

impl Default for Keymap {
    fn default() -> Self {
        let mut keymap = Keymap {
            bindings: HashMap::new(),
        };
        for (key, name) in DEFAULT_KEYS {
            keymap.bind(key, name).expect("default keymap is valid");
        }
        keymap
    }
}

impl Keymap {
    /// Bind `key` (notation as in `C-s`) to a command; the command name
    /// `none` unbinds the key.
    pub fn bind(&mut self, key: &str, name: &str) -> Result<(), BindError> {
        let key = Key::parse(key)?;
        if name == "none" {
            self.bindings.remove(&key);
            return Ok(());
        }
        let command = command(name).ok_or_else(|| BindError::UnknownCommand(name.to_string()))?;
        self.bindings.insert(key, command);
        Ok(())
    }

    pub fn command_for(&self, key: &Key) -> Option<&'static Command> {
        self.bindings.get(key).copied()
    }

    /// The keys bound to `name`, in notation, sorted.
    pub fn keys_for(&self, name: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, c)| c.name == name)
            .map(|(k, _)| k.to_string())
            .collect();
        keys.sort();
        keys
    }

    /// One row per command: (keys, name, doc). F1 and the README's key
    /// table are both generated from this.
    pub fn key_table(&self) -> Vec<(String, &'static str, &'static str)> {
        COMMANDS
            .iter()
            .map(|c| (self.keys_for(c.name).join(" "), c.name, c.doc))
            .collect()
    }
}

/// The key table as a Markdown table (the README's, checked by a test).
pub fn markdown_key_table(keymap: &Keymap) -> String {
    let mut out = String::from("| Keys | Command | What it does |\n|---|---|---|\n");
    for (keys, name, doc) in keymap.key_table() {
        let keys = if keys.is_empty() {
            "(unbound)".to_string()
        } else {
            keys.split(' ')
                .map(|k| format!("`{}`", k.replace('|', "\\|")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push_str(&format!("| {keys} | `{name}` | {doc} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_known_commands_and_rebinding_works() {
        let mut keymap = Keymap::default();
        assert_eq!(keymap.command_for(&Key::ctrl('s')).unwrap().name, "save");
        keymap.bind("C-s", "quit").unwrap();
        assert_eq!(keymap.command_for(&Key::ctrl('s')).unwrap().name, "quit");
        keymap.bind("C-s", "none").unwrap();
        assert!(keymap.command_for(&Key::ctrl('s')).is_none());
        assert!(matches!(
            keymap.bind("C-s", "frobnicate"),
            Err(BindError::UnknownCommand(_))
        ));
        assert!(matches!(
            keymap.bind("Hyper-s", "save"),
            Err(BindError::Key(_))
        ));
        let names: Vec<_> = COMMANDS.iter().map(|c| c.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "command names are unique");
    }
}
