//! What surrounds a position: is it inside a string or a comment? The
//! prediction engine stays quiet there.

use tree_sitter::{Node, Tree};

/// Node kinds that are strings or comments in the Python and Rust grammars.
fn is_comment(kind: &str) -> bool {
    kind.contains("comment")
}

fn is_string(kind: &str) -> bool {
    matches!(
        kind,
        "string"
            | "string_literal"
            | "raw_string_literal"
            | "char_literal"
            | "string_content"
            | "concatenated_string"
    )
}

/// Whether `byte` lies inside a string or a comment. A line comment still
/// holds the cursor at its end (typing continues the comment); a closed
/// string does not. `line_before_cursor` is the cursor's line up to `byte`.
pub fn in_string_or_comment(tree: &Tree, byte: usize, line_before_cursor: &str) -> bool {
    inside_string_or_comment_node(tree, byte)
        || after_dangling_string_start(tree, byte)
        || open_quote_on_line(line_before_cursor, tree.root_node().kind() == "module")
}

fn inside_string_or_comment_node(tree: &Tree, byte: usize) -> bool {
    let Some(mut node) = tree
        .root_node()
        .descendant_for_byte_range(byte.saturating_sub(1), byte)
    else {
        return false;
    };
    loop {
        let (start, end) = (node.start_byte(), node.end_byte());
        let kind = node.kind();
        if is_comment(kind) && start < byte && byte <= end {
            return true;
        }
        if is_string(kind) && start < byte && (byte < end || unterminated(node)) {
            return true;
        }
        match node.parent() {
            Some(parent) => node = parent,
            None => return false,
        }
    }
}

/// An unterminated string does not parse as a string: tree-sitter's
/// recovery leaves its opening quote (`string_start`) inside an ERROR node.
/// Only subtrees that contain an error are walked, so this stays cheap.
fn after_dangling_string_start(tree: &Tree, byte: usize) -> bool {
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.start_byte() >= byte {
            continue;
        }
        if node.kind() == "string_start" && node.parent().is_some_and(|p| p.is_error()) {
            return true;
        }
        if !node.has_error() {
            continue;
        }
        stack.extend((0..node.child_count()).filter_map(|i| node.child(i)));
    }
    false
}

/// A quote opened earlier on the line and not closed: error recovery gives
/// no reliable node for it in either grammar. Rust's `'` also starts
/// lifetimes, so only Python counts single quotes.
fn open_quote_on_line(line: &str, single_quotes_are_strings: bool) -> bool {
    let mut open: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (open, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => open = None,
            (None, '"') => open = Some('"'),
            (None, '\'') if single_quotes_are_strings => open = Some('\''),
            (None, '#') if single_quotes_are_strings => return false,
            (None, '/') if !single_quotes_are_strings && chars.as_str().starts_with('/') => {
                return false;
            }
            _ => {}
        }
    }
    open.is_some()
}

/// A string whose closing quote is missing (still being typed).
fn unterminated(node: Node) -> bool {
    node.has_error()
        || node
            .child(node.child_count().saturating_sub(1))
            .is_some_and(|c| c.is_missing())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{Language, Syntax};
    use ropey::Rope;

    /// `in_string_or_comment` at `byte` of a Python text.
    fn inside(text: &str, byte: usize) -> bool {
        let syntax = Syntax::new(Language::Python, &Rope::from_str(text)).unwrap();
        let line_start = text[..byte].rfind('\n').map_or(0, |i| i + 1);
        in_string_or_comment(syntax.tree().unwrap(), byte, &text[line_start..byte])
    }

    #[test]
    fn strings_and_comments_are_detected() {
        let text = "x = 'abc'  # note\ny = f(x)\n";
        assert!(inside(text, text.find('b').unwrap()));
        assert!(!inside(text, text.find("'abc'").unwrap()));
        assert!(!inside(text, text.find("'abc'").unwrap() + 5));
        assert!(inside(text, text.find('\n').unwrap()));
        assert!(!inside(text, text.find("f(x)").unwrap() + 2));
    }
}
