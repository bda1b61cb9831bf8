//! Plain-text search over the rope, line by line so a search in a 100 MB
//! buffer never copies the whole text. Smart case: a query with no
//! uppercase letter matches case-insensitively (ASCII folding, which keeps
//! byte offsets). Queries do not span lines.

use std::borrow::Cow;

use ropey::Rope;

fn fold(text: &str, insensitive: bool) -> Cow<'_, str> {
    if insensitive {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

fn line_str(rope: &Rope, line: usize) -> Cow<'_, str> {
    rope.line(line).into()
}

/// The first match at or after char `from`, wrapping around the end.
/// Returns the match's char range.
pub fn find_forward(rope: &Rope, query: &str, from: usize) -> Option<(usize, usize)> {
    if query.is_empty() || query.contains('\n') {
        return None;
    }
    let insensitive = !query.chars().any(char::is_uppercase);
    let needle = fold(query, insensitive);
    let lines = rope.len_lines();
    let from = from.min(rope.len_chars());
    let first_line = rope.char_to_line(from);
    for step in 0..=lines {
        let line = (first_line + step) % lines;
        let text = line_str(rope, line);
        let hay = fold(&text, insensitive);
        let line_start_char = rope.line_to_char(line);
        let min_byte = if step == 0 {
            let rel_char = from - line_start_char;
            text.char_indices()
                .nth(rel_char)
                .map_or(text.len(), |(b, _)| b)
        } else {
            0
        };
        let found = hay[min_byte..].find(needle.as_ref()).map(|b| b + min_byte);
        // On the wrapped-around first line, only matches before `from` are new.
        if let Some(byte) = found {
            let start = line_start_char + text[..byte].chars().count();
            if step == lines && start >= from {
                return None;
            }
            return Some((start, start + query.chars().count()));
        }
        if step == lines - 1 && lines > 0 {
            // Next iteration rescans the first line from its start.
            let text = line_str(rope, first_line);
            let hay = fold(&text, insensitive);
            if let Some(byte) = hay.find(needle.as_ref()) {
                let start = rope.line_to_char(first_line) + text[..byte].chars().count();
                if start < from {
                    return Some((start, start + query.chars().count()));
                }
            }
            return None;
        }
    }
    None
}

/// The last match that starts before char `before`, wrapping around the start.
pub fn find_backward(rope: &Rope, query: &str, before: usize) -> Option<(usize, usize)> {
    if query.is_empty() || query.contains('\n') {
        return None;
    }
    let insensitive = !query.chars().any(char::is_uppercase);
    let needle = fold(query, insensitive);
    let lines = rope.len_lines();
    let before = before.min(rope.len_chars());
    let first_line = rope.char_to_line(before);
    for step in 0..=lines {
        let line = (first_line + lines - step % lines) % lines;
        let text = line_str(rope, line);
        let hay = fold(&text, insensitive);
        let line_start_char = rope.line_to_char(line);
        let max_byte = if step == 0 {
            let rel_char = before - line_start_char;
            text.char_indices()
                .nth(rel_char)
                .map_or(text.len(), |(b, _)| b)
        } else {
            text.len()
        };
        // A match may start before `max_byte` and end after it.
        let limit = (max_byte + needle.len()).min(hay.len());
        let mut best = None;
        let mut search_from = 0;
        while let Some(rel) = hay[search_from..limit].find(needle.as_ref()) {
            let byte = search_from + rel;
            if byte >= max_byte {
                break;
            }
            best = Some(byte);
            search_from = byte + needle.len().max(1);
            if search_from >= limit {
                break;
            }
        }
        if let Some(byte) = best {
            let start = line_start_char + text[..byte].chars().count();
            return Some((start, start + query.chars().count()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_wrap_and_smart_case() {
        let rope = Rope::from_str("foo bar\nbaz Foo\nfoo\n");
        assert_eq!(find_forward(&rope, "foo", 0), Some((0, 3)));
        assert_eq!(find_forward(&rope, "foo", 1), Some((12, 15)));
        assert_eq!(find_forward(&rope, "Foo", 1), Some((12, 15)));
        assert_eq!(find_forward(&rope, "Foo", 13), Some((12, 15)));
        assert_eq!(find_forward(&rope, "foo", 17), Some((0, 3)));
        assert_eq!(find_forward(&rope, "nope", 0), None);
        assert_eq!(find_backward(&rope, "foo", 16), Some((12, 15)));
        assert_eq!(find_backward(&rope, "foo", 12), Some((0, 3)));
        assert_eq!(find_backward(&rope, "foo", 0), Some((16, 19)));
        assert_eq!(find_backward(&rope, "bar", 100), Some((4, 7)));
    }
}
