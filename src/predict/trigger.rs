//! When to predict: at syntactic boundaries found in the tree-sitter tree,
//! never inside strings or comments.
//!
//! The rules look at the syntax node at the cursor rather than at characters
//! alone, so a `:` inside a string or a `(` in a comment triggers nothing.

use tree_sitter::{Node, Tree};

use crate::syntax::in_string_or_comment;

/// Why a prediction was asked for; shown in logs and used by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The cursor is at the start of a line (after Enter and auto-indent).
    LineStart,
    /// Right after a token that opens a block, an argument list or a value.
    Opener,
    /// Right after the last token of a complete statement.
    StatementEnd,
    /// The user paused typing (the app's debounce).
    Pause,
    /// The user asked (Alt-\).
    Manual,
}

/// Tokens after which the next code is predictable and worth suggesting.
const OPENERS: &[&str] = &[
    ":", "{", "(", "[", "=", ",", "->", "=>", "+=", "-=", "|", "&&", "||",
];

/// The syntactic reason to predict at `cursor_byte`, if any.
/// `line_before_cursor` is the text of the cursor's line up to the cursor.
pub fn syntactic_trigger(
    tree: &Tree,
    cursor_byte: usize,
    line_before_cursor: &str,
) -> Option<Trigger> {
    if in_string_or_comment(tree, cursor_byte, line_before_cursor) {
        return None;
    }
    if line_before_cursor.chars().all(|c| c == ' ' || c == '\t') {
        return Some(Trigger::LineStart);
    }
    let leaf = leaf_ending_at(tree, cursor_byte)?;
    if OPENERS.contains(&leaf.kind()) {
        return Some(Trigger::Opener);
    }
    if ends_complete_statement(leaf, cursor_byte) {
        return Some(Trigger::StatementEnd);
    }
    None
}

/// The last leaf token that ends exactly at `byte` (none when whitespace
/// separates the cursor from the previous token).
fn leaf_ending_at(tree: &Tree, byte: usize) -> Option<Node<'_>> {
    if byte == 0 {
        return None;
    }
    let mut node = tree.root_node().descendant_for_byte_range(byte - 1, byte)?;
    while node.child_count() > 0 {
        node = node.child(node.child_count() - 1)?;
    }
    (node.end_byte() == byte).then_some(node)
}

fn ends_complete_statement(leaf: Node, byte: usize) -> bool {
    // After a name or keyword the user may still be typing it; the pause
    // trigger covers that case.
    if leaf.kind().chars().all(|c| c.is_alphanumeric() || c == '_') {
        return false;
    }
    let mut node = leaf;
    while let Some(parent) = node.parent() {
        if parent.end_byte() != byte {
            return false;
        }
        let kind = parent.kind();
        let is_statement = kind.ends_with("statement")
            || kind.ends_with("_declaration")
            || kind == "expression_statement"
            || kind == "decorator";
        if is_statement && !parent.has_error() {
            return true;
        }
        node = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lang: tree_sitter::Language, src: &str) -> Tree {
        let mut parser = tree_sitter::Parser::new();
        parser.set_language(&lang).unwrap();
        parser.parse(src, None).unwrap()
    }

    fn python(src: &str) -> Tree {
        parse(tree_sitter_python::LANGUAGE.into(), src)
    }

    fn rust(src: &str) -> Tree {
        parse(tree_sitter_rust::LANGUAGE.into(), src)
    }

    /// The trigger with the cursor at the end of `src`.
    fn at_end(tree: &Tree, src: &str) -> Option<Trigger> {
        let line = src.rsplit('\n').next().unwrap();
        syntactic_trigger(tree, src.len(), line)
    }

    #[test]
    fn python_boundaries() {
        for (src, want) in [
            ("def f(x):\n    ", Some(Trigger::LineStart)),
            ("def f(x):", Some(Trigger::Opener)),
            ("total = ", None), // whitespace after the `=`: no token ends here
            ("total =", Some(Trigger::Opener)),
            ("print(", Some(Trigger::Opener)),
            ("print(a,", Some(Trigger::Opener)),
            ("x = compute(a, b)", Some(Trigger::StatementEnd)),
            ("import os", None),
            ("xs = [1, 2]", Some(Trigger::StatementEnd)),
            ("x = compu", None),
        ] {
            assert_eq!(at_end(&python(src), src), want, "{src:?}");
        }
    }

    #[test]
    fn python_strings_and_comments_suppress() {
        for src in [
            "x = \"a: (",
            "# note: (",
            "x = 1  # done,",
            "s = '''doc\n    ",
            "s = \"abc",
        ] {
            let tree = python(src);
            let line = src.rsplit('\n').next().unwrap();
            assert!(in_string_or_comment(&tree, src.len(), line), "{src:?}");
            assert_eq!(at_end(&tree, src), None, "{src:?}");
        }
        let closed = "x = \"a\"";
        assert!(!in_string_or_comment(&python(closed), closed.len(), closed));
        let lifetime = "fn f<'a>(x: &'a str) ->";
        assert_eq!(at_end(&rust(lifetime), lifetime), Some(Trigger::Opener));
    }

    #[test]
    fn rust_boundaries() {
        for (src, want) in [
            ("fn main() {", Some(Trigger::Opener)),
            ("fn add(a: u32) ->", Some(Trigger::Opener)),
            ("fn main() {\n    let x = 1;", Some(Trigger::StatementEnd)),
            ("fn main() {\n    let s = \"a{", None),
            ("// a comment {", None),
        ] {
            assert_eq!(at_end(&rust(src), src), want, "{src:?}");
        }
    }
}
