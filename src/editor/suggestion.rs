//! Commands on the ghost-text suggestion. Each key falls back to its usual
//! command when no suggestion is shown, so Tab still indents and Ctrl-Right
//! still moves by word.

use super::ghost::Ghost;
use super::state::Editor;

/// What a prediction command (a key) asks of the predictor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictSignal {
    /// Suggest now, wherever the cursor is (Alt-\).
    Request,
    /// Turn predictions on or off.
    Toggle,
}

/// Which part of a suggestion a key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    All,
    Word,
    Line,
}

impl Editor {
    /// The suggestion, if one is shown at the cursor.
    pub fn visible_ghost(&self) -> Option<&Ghost> {
        self.ghost
            .as_ref()
            .filter(|g| g.anchor == self.cursor() && self.selection.is_empty() && !g.is_empty())
    }

    /// Insert (part of) the suggestion as one undo step. The predictor sees
    /// the insertion match the ghost text and trims it, as for typing.
    /// Returns false when no suggestion is shown.
    pub fn accept_suggestion(&mut self, part: Accept) -> bool {
        let Some(ghost) = self.visible_ghost() else {
            return false;
        };
        let text = match part {
            Accept::All => ghost.all(),
            Accept::Word => ghost.next_word(),
            Accept::Line => ghost.first_line(),
        }
        .to_string();
        self.paste_text(&text);
        true
    }

    /// Show the next (or previous) alternative of the shown suggestion,
    /// wrapping around; the engine is not asked again. False when there is
    /// no other to show.
    pub fn cycle_suggestion(&mut self, forward: bool) -> bool {
        if self.visible_ghost().is_none() {
            return false;
        }
        self.ghost.as_mut().is_some_and(|g| g.cycle(forward))
    }

    pub fn dismiss_suggestion(&mut self) -> bool {
        self.ghost.take().is_some()
    }

    pub fn signal_predictor(&mut self, signal: PredictSignal) {
        self.predict_signal = Some(signal);
    }

    // The predictor's side of the editor: what it may read and change.

    /// The suggestion, shown or not (it may be streaming at another place).
    pub fn ghost(&self) -> Option<&Ghost> {
        self.ghost.as_ref()
    }

    pub fn ghost_mut(&mut self) -> Option<&mut Ghost> {
        self.ghost.as_mut()
    }

    /// Show `ghost`, or (`None`) drop the suggestion.
    pub fn set_ghost(&mut self, ghost: Option<Ghost>) {
        self.ghost = ghost;
    }

    /// The prediction command a key gave since the last call.
    pub fn take_predict_signal(&mut self) -> Option<PredictSignal> {
        self.predict_signal.take()
    }

    /// Whether the user is answering a prompt (no suggestions then).
    pub fn prompt_open(&self) -> bool {
        self.prompt.is_some()
    }
}
