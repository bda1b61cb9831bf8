//! An edit is a value: the one currency of change in pie-edit.
//!
//! Every change to a document (typing, paste, undo, an accepted suggestion)
//! is an [`Edit`]. Listeners (syntax tree, prediction engine, ghost text) are
//! handed the same value, so each can update incrementally instead of
//! rediscovering what changed.

use ropey::Rope;

/// Replace the text in `[start, old_end)` of a document with `inserted`.
///
/// Offsets are kept in both chars (ropey's unit) and bytes (tree-sitter's
/// and the tokenizer's unit) so that no listener has to convert. The removed
/// text is kept too, which makes [`Edit::inverse`] exact without access to the
/// document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub start_char: usize,
    pub old_end_char: usize,
    pub start_byte: usize,
    pub old_end_byte: usize,
    /// The text that was in `[start, old_end)` before the edit.
    pub removed: String,
    /// The text that replaces it.
    pub inserted: String,
}

impl Edit {
    /// Build the edit that replaces chars `[start_char, end_char)` of `rope`
    /// with `inserted`, filling in the byte offsets and the removed text.
    pub fn replace(rope: &Rope, start_char: usize, end_char: usize, inserted: &str) -> Edit {
        debug_assert!(start_char <= end_char && end_char <= rope.len_chars());
        Edit {
            start_char,
            old_end_char: end_char,
            start_byte: rope.char_to_byte(start_char),
            old_end_byte: rope.char_to_byte(end_char),
            removed: rope.slice(start_char..end_char).to_string(),
            inserted: inserted.to_string(),
        }
    }

    pub fn insert(rope: &Rope, at_char: usize, text: &str) -> Edit {
        Edit::replace(rope, at_char, at_char, text)
    }

    pub fn delete(rope: &Rope, start_char: usize, end_char: usize) -> Edit {
        Edit::replace(rope, start_char, end_char, "")
    }

    pub fn new_end_char(&self) -> usize {
        self.start_char + self.inserted.chars().count()
    }

    pub fn new_end_byte(&self) -> usize {
        self.start_byte + self.inserted.len()
    }

    /// The edit that undoes this one when applied right after it.
    pub fn inverse(&self) -> Edit {
        Edit {
            start_char: self.start_char,
            old_end_char: self.new_end_char(),
            start_byte: self.start_byte,
            old_end_byte: self.new_end_byte(),
            removed: self.inserted.clone(),
            inserted: self.removed.clone(),
        }
    }

    /// Apply to a rope. `Document::apply` is the only caller in the editor;
    /// tests and the engine's mirror use it directly.
    pub fn apply_to(&self, rope: &mut Rope) {
        if self.old_end_char > self.start_char {
            rope.remove(self.start_char..self.old_end_char);
        }
        if !self.inserted.is_empty() {
            rope.insert(self.start_char, &self.inserted);
        }
    }

    pub fn is_noop(&self) -> bool {
        self.removed == self.inserted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_restores_text_with_multibyte_chars() {
        let mut rope = Rope::from_str("héllo wörld\n");
        let original = rope.to_string();
        let edit = Edit::replace(&rope, 1, 7, "ÉÉ\n");
        assert_eq!(edit.removed, "éllo w");
        assert_eq!(edit.start_byte, 1);
        assert_eq!(edit.old_end_byte, 8);
        edit.apply_to(&mut rope);
        assert_eq!(rope.to_string(), "hÉÉ\nörld\n");
        assert_eq!(edit.new_end_byte(), 1 + "ÉÉ\n".len());
        edit.inverse().apply_to(&mut rope);
        assert_eq!(rope.to_string(), original);
    }
}
