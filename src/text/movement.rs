//! Cursor movement by grapheme, word and line, in char offsets.
//!
//! Graphemes are found within one line at a time (a line break is its own
//! step, and CRLF is one grapheme), which keeps every call proportional to a
//! line's length rather than the buffer's.

use ropey::Rope;
use unicode_segmentation::UnicodeSegmentation;

/// Char offset of the end of `line`'s content, before its line break.
pub fn line_content_end(rope: &Rope, line: usize) -> usize {
    let start = rope.line_to_char(line);
    let slice = rope.line(line);
    let mut len = slice.len_chars();
    if len > 0 && slice.char(len - 1) == '\n' {
        len -= 1;
        if len > 0 && slice.char(len - 1) == '\r' {
            len -= 1;
        }
    } else if len > 0 && slice.char(len - 1) == '\r' {
        len -= 1;
    }
    start + len
}

/// The content of `line` without its line break.
pub fn line_text(rope: &Rope, line: usize) -> String {
    let start = rope.line_to_char(line);
    rope.slice(start..line_content_end(rope, line)).to_string()
}

/// Char offsets (relative to the line start) where graphemes of `text` start,
/// plus the text's end.
fn grapheme_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut chars = 0;
    for g in text.graphemes(true) {
        starts.push(chars);
        chars += g.chars().count();
    }
    starts.push(chars);
    starts
}

pub fn next_grapheme(rope: &Rope, pos: usize) -> usize {
    if pos >= rope.len_chars() {
        return rope.len_chars();
    }
    let line = rope.char_to_line(pos);
    let start = rope.line_to_char(line);
    let end = line_content_end(rope, line);
    if pos >= end {
        // On the line break: step over it (CRLF as one).
        return rope
            .line_to_char((line + 1).min(rope.len_lines()))
            .max(pos + 1)
            .min(rope.len_chars());
    }
    let text = rope.slice(start..end).to_string();
    let rel = pos - start;
    grapheme_starts(&text)
        .into_iter()
        .find(|&s| s > rel)
        .map_or(end, |s| start + s)
}

pub fn prev_grapheme(rope: &Rope, pos: usize) -> usize {
    if pos == 0 {
        return 0;
    }
    let line = rope.char_to_line(pos);
    let start = rope.line_to_char(line);
    if pos == start {
        return line_content_end(rope, line - 1);
    }
    let end = line_content_end(rope, line);
    let text = rope.slice(start..end).to_string();
    let rel = pos.min(end) - start;
    let before = grapheme_starts(&text)
        .into_iter()
        .rev()
        .find(|&s| s < rel)
        .unwrap_or(0);
    start + before
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum CharClass {
    Space,
    Newline,
    Word,
    Punct,
}

fn class(c: char) -> CharClass {
    if c == '\n' || c == '\r' {
        CharClass::Newline
    } else if c.is_whitespace() {
        CharClass::Space
    } else if c.is_alphanumeric() || c == '_' {
        CharClass::Word
    } else {
        CharClass::Punct
    }
}

/// Ctrl-Right: to the end of the next word (skipping spaces first), or over
/// one line break.
pub fn next_word(rope: &Rope, pos: usize) -> usize {
    let len = rope.len_chars();
    let mut pos = pos;
    while pos < len && class(rope.char(pos)) == CharClass::Space {
        pos += 1;
    }
    if pos >= len {
        return len;
    }
    let first = class(rope.char(pos));
    if first == CharClass::Newline {
        return next_grapheme(rope, pos);
    }
    while pos < len && class(rope.char(pos)) == first {
        pos += 1;
    }
    pos
}

/// Ctrl-Left: to the start of the previous word, or over one line break.
pub fn prev_word(rope: &Rope, pos: usize) -> usize {
    let mut pos = pos;
    while pos > 0 && class(rope.char(pos - 1)) == CharClass::Space {
        pos -= 1;
    }
    if pos == 0 {
        return 0;
    }
    let first = class(rope.char(pos - 1));
    if first == CharClass::Newline {
        return prev_grapheme(rope, pos);
    }
    while pos > 0 && class(rope.char(pos - 1)) == first {
        pos -= 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphemes_step_over_combining_marks_and_crlf() {
        // "e" + combining acute is one grapheme of two chars.
        let rope = Rope::from_str("ae\u{301}b\r\nx");
        assert_eq!(next_grapheme(&rope, 1), 3);
        assert_eq!(prev_grapheme(&rope, 3), 1);
        assert_eq!(line_content_end(&rope, 0), 4);
        assert_eq!(next_grapheme(&rope, 4), 6);
        assert_eq!(prev_grapheme(&rope, 6), 4);
        assert_eq!(next_grapheme(&rope, 7), 7);
    }

    #[test]
    fn words_skip_spaces_and_stop_at_class_changes() {
        let rope = Rope::from_str("foo_bar(x, y)\n  baz");
        assert_eq!(next_word(&rope, 0), 7);
        assert_eq!(next_word(&rope, 7), 8);
        assert_eq!(next_word(&rope, 13), 14);
        assert_eq!(next_word(&rope, 14), 19);
        assert_eq!(prev_word(&rope, 19), 16);
        assert_eq!(prev_word(&rope, 16), 13);
        assert_eq!(prev_word(&rope, 7), 0);
    }
}
