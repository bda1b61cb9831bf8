//! Ghost text: a suggestion drawn after the cursor, never part of the rope
//! until accepted.
//!
//! The suggestion survives typing: a typed character that matches the head of
//! the ghost text is consumed from it instead of asking the model again (the
//! way zed's edit prediction trims the typed prefix).

use unicode_segmentation::UnicodeSegmentation;

/// A suggestion anchored at a char offset of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ghost {
    /// Char offset where the ghost text starts; it follows the cursor as
    /// matching characters are typed.
    pub anchor: usize,
    /// The text still to be shown (and inserted on accept).
    pub text: String,
    /// Whether the engine has finished streaming this suggestion.
    pub complete: bool,
}

impl Ghost {
    pub fn new(anchor: usize) -> Ghost {
        Ghost {
            anchor,
            text: String::new(),
            complete: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The user typed `typed` at char offset `at`. Returns true when it matched
    /// the head of the suggestion, which is then trimmed; false means the
    /// suggestion no longer fits and must be dropped.
    pub fn consume_typed(&mut self, at: usize, typed: &str) -> bool {
        if at != self.anchor || typed.is_empty() || !self.text.starts_with(typed) {
            return false;
        }
        self.text.drain(..typed.len());
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
            anchor,
            text: text.to_string(),
            complete,
        }
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
