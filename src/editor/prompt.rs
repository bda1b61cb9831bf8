//! The prompt line: find, go to line, save as, and the single-key
//! questions (quit with unsaved changes, a file changed on disk, unsaved
//! changes left by an editor that ended). Key handling while a prompt or the
//! help screen is open.

use crossterm::event::KeyCode;

use super::commands;
use super::keys::Key;
use super::search;
use super::state::Editor;
use super::swap::Leftover;
use crate::text::Selection;
use crate::text::movement::line_content_end;

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

impl Editor {
    pub(super) fn help_key(&mut self, key: Key) {
        let scroll = self.help_scroll.unwrap_or(0);
        let max = commands::COMMANDS.len().saturating_sub(1);
        self.help_scroll = match key.code {
            KeyCode::Up => Some(scroll.saturating_sub(1)),
            KeyCode::Down => Some((scroll + 1).min(max)),
            KeyCode::PageUp => Some(scroll.saturating_sub(self.view.height())),
            KeyCode::PageDown => Some((scroll + self.view.height()).min(max)),
            _ => None,
        };
    }

    pub(super) fn prompt_key(&mut self, key: Key) {
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
                self.view.follow();
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
        self.view.follow();
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
}
