//! Ghost text: a suggestion drawn after the cursor, never part of the rope
//! until accepted.
//!
//! The suggestion survives typing: a typed character that matches the head of
//! the ghost text is consumed from it instead of asking the model again (the
//! way zed's edit prediction trims the typed prefix).

use unicode_segmentation::UnicodeSegmentation;

/// A suggestion anchored at a char offset of the document, with the
/// alternatives the engine offered for the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ghost {
    /// Char offset where the ghost text starts; it follows the cursor as
    /// matching characters are typed.
    pub anchor: usize,
    /// The text still to be shown (and inserted on accept): the shown
    /// choice.
    pub text: String,
    /// Whether the engine has finished streaming this suggestion.
    pub complete: bool,
    /// Every choice still to be shown, in the engine's order, once there is
    /// more than one; `choices[shown]` is `text`.
    choices: Vec<String>,
    shown: usize,
    /// What was typed over the suggestion since it was asked for: an
    /// alternative that arrives later must start with it.
    typed: String,
}

impl Ghost {
    pub fn new(anchor: usize) -> Ghost {
        Ghost {
            anchor,
            text: String::new(),
            complete: false,
            choices: Vec::new(),
            shown: 0,
            typed: String::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// An alternative (its whole text from the original anchor) to cycle to.
    /// One that no longer fits what was typed, or repeats a choice, is left
    /// out; returns whether it was added.
    pub fn add_choice(&mut self, whole: &str) -> bool {
        let Some(rest) = whole.strip_prefix(self.typed.as_str()) else {
            return false;
        };
        if rest.is_empty() {
            return false;
        }
        if self.choices.is_empty() {
            self.choices.push(self.text.clone());
            self.shown = 0;
        }
        if self.choices.iter().any(|c| c == rest) {
            return false;
        }
        self.choices.push(rest.to_string());
        true
    }

    /// Show the next (or previous) choice, wrapping around. False when there
    /// is nothing else to show.
    pub fn cycle(&mut self, forward: bool) -> bool {
        let n = self.choices.len();
        if n < 2 {
            return false;
        }
        self.shown = if forward {
            (self.shown + 1) % n
        } else {
            (self.shown + n - 1) % n
        };
        self.text = self.choices[self.shown].clone();
        true
    }

    /// Which choice is shown, 1-based, and how many there are; None with
    /// only one.
    pub fn position(&self) -> Option<(usize, usize)> {
        (self.choices.len() > 1).then(|| (self.shown + 1, self.choices.len()))
    }

    /// The user typed `typed` at char offset `at`. Returns true when it matched
    /// the head of the suggestion (or of an alternative, which is then
    /// shown), trimmed by it; false means nothing fits any more and the
    /// suggestion must be dropped.
    pub fn consume_typed(&mut self, at: usize, typed: &str) -> bool {
        if at != self.anchor || typed.is_empty() {
            return false;
        }
        if !self.choices.is_empty() {
            let current = self.shown;
            let mut kept = Vec::new();
            let mut shown = None;
            for (i, choice) in self.choices.iter().enumerate() {
                if let Some(rest) = choice.strip_prefix(typed) {
                    if i == current || shown.is_none() && i > current {
                        shown = Some(kept.len());
                    }
                    kept.push(rest.to_string());
                }
            }
            if kept.is_empty() {
                return false;
            }
            self.shown = shown.unwrap_or(0);
            self.text = kept[self.shown].clone();
            self.choices = kept;
            if self.choices.len() == 1 {
                self.choices.clear();
                self.shown = 0;
            }
        } else if let Some(rest) = self.text.strip_prefix(typed) {
            self.text = rest.to_string();
        } else {
            return false;
        }
        self.typed.push_str(typed);
        self.anchor += typed.chars().count();
        // A fully typed-out suggestion that is still streaming stays alive, so
        // the chunks that follow keep appending at the right place.
        !self.text.is_empty() || !self.complete
    }

    /// The whole suggestion.
    pub fn all(&self) -> &str {
        &self.text
    }

    /// The next word of the suggestion, with the whitespace before it (what
    /// Ctrl-Right accepts).
    pub fn next_word(&self) -> &str {
        // Leading whitespace (a line break and indentation included) goes with
        // the first word after it: accepting bare whitespace helps nobody.
        for (idx, word) in self.text.split_word_bound_indices() {
            if !word.chars().all(char::is_whitespace) {
                return &self.text[..idx + word.len()];
            }
        }
        &self.text
    }

    /// The suggestion up to the end of its first line (what Shift-Tab accepts).
    /// A suggestion that starts with a line break takes the whole next line.
    pub fn first_line(&self) -> &str {
        let skip = usize::from(self.text.starts_with('\n'));
        match self.text[skip..].find('\n') {
            Some(pos) => &self.text[..skip + pos],
            None => &self.text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ghost(anchor: usize, text: &str, complete: bool) -> Ghost {
        Ghost {
            text: text.to_string(),
            complete,
            ..Ghost::new(anchor)
        }
    }

    #[test]
    fn alternatives_cycle_with_wrap_around() {
        let mut g = ghost(0, "return x", true);
        assert_eq!(g.position(), None);
        assert!(!g.cycle(true), "nothing to cycle to");
        assert!(g.add_choice("return y"));
        assert!(g.add_choice("pass"));
        assert!(!g.add_choice("pass"), "a repeat is left out");
        assert_eq!(g.position(), Some((1, 3)));
        assert!(g.cycle(true));
        assert_eq!((g.text.as_str(), g.position()), ("return y", Some((2, 3))));
        g.cycle(true);
        g.cycle(true);
        assert_eq!((g.text.as_str(), g.position()), ("return x", Some((1, 3))));
        g.cycle(false);
        assert_eq!((g.text.as_str(), g.position()), ("pass", Some((3, 3))));
    }

    #[test]
    fn typing_over_alternatives_keeps_the_ones_that_match() {
        let mut g = ghost(5, "return x", true);
        g.add_choice("return y");
        g.add_choice("pass");
        g.cycle(false); // "pass" shown
        assert!(g.consume_typed(5, "re"));
        // "pass" no longer fits: the next one that does is shown.
        assert_eq!((g.text.as_str(), g.position()), ("turn x", Some((1, 2))));
        g.cycle(true);
        assert!(g.consume_typed(7, "turn "));
        assert_eq!((g.text.as_str(), g.position()), ("y", Some((2, 2))));
        // Typing one out to its end ends the suggestion.
        assert!(!g.consume_typed(12, "x"));
        // A later alternative must start with what was typed.
        let mut g = ghost(0, "abc", true);
        assert!(g.consume_typed(0, "a"));
        assert!(!g.add_choice("xbc"));
        assert!(g.add_choice("abd"));
        assert_eq!(g.position(), Some((1, 2)));
        g.cycle(true);
        assert_eq!(g.text, "bd");
        assert!(!g.consume_typed(1, "q"), "nothing fits: dropped");
    }

    #[test]
    fn matching_typing_trims_and_moves_anchor() {
        let mut g = ghost(10, "return x", true);
        assert!(g.consume_typed(10, "re"));
        assert_eq!((g.anchor, g.text.as_str()), (12, "turn x"));
        assert!(!g.consume_typed(12, "x"), "mismatch drops the suggestion");
        assert!(!g.consume_typed(5, "t"), "typing elsewhere drops it");
    }

    #[test]
    fn typing_out_a_complete_suggestion_ends_it() {
        let mut g = ghost(0, "ab", true);
        assert!(g.consume_typed(0, "a"));
        assert!(!g.consume_typed(1, "b"));
        let mut streaming = ghost(0, "ab", false);
        assert!(streaming.consume_typed(0, "ab"));
    }

    #[test]
    fn multibyte_typing_moves_anchor_by_chars() {
        let mut g = ghost(3, "éa", true);
        assert!(g.consume_typed(3, "é"));
        assert_eq!(g.anchor, 4);
        assert_eq!(g.text, "a");
    }

    #[test]
    fn next_word_includes_leading_space_and_stops_at_punctuation() {
        assert_eq!(ghost(0, " total += x", true).next_word(), " total");
        assert_eq!(ghost(0, "(a, b)", true).next_word(), "(");
        assert_eq!(ghost(0, "\n    return x", true).next_word(), "\n    return");
        assert_eq!(ghost(0, "x\ny", true).next_word(), "x");
        assert_eq!(ghost(0, "   ", true).next_word(), "   ");
    }

    #[test]
    fn first_line_of_a_suggestion() {
        assert_eq!(ghost(0, "a = 1\nb = 2", true).first_line(), "a = 1");
        assert_eq!(ghost(0, "\n    b = 2\nc", true).first_line(), "\n    b = 2");
        assert_eq!(ghost(0, "tail", true).first_line(), "tail");
    }
}
