//! Lines already in the file, as alternatives at a blank line.
//!
//! Code repeats itself: a match arm, a `.unwrap();`, an import, a test's
//! set-up line. On the Rust calibrate draws a fifth of the target lines are
//! one of the 60 lines above them, and a quarter of those the beam search
//! ranks below three other lines. The model reads each line above as the
//! continuation at the cursor (a beam search restricted to them, see
//! [`crate::model::Session::beam_search`]), so a copied line comes with the
//! model's own log-probability, and the ranking may favour it.

use std::collections::HashSet;

use super::suggest::only_closing;

/// At most this many distinct lines above the cursor are candidates (the
/// nearest ones): tokenizing them is the only cost that grows with them.
pub const MAX_LINES: usize = 256;

/// The lines above the cursor, as token sequences a copy may be.
pub struct LineSet {
    /// Each line's tokens, its line break not included.
    sequences: Vec<Vec<u32>>,
    /// The tokens a line may end with: any that starts a new line. The one
    /// the model likes best after a line is often not a bare line break but
    /// one with the next line's indentation.
    ends: Vec<u32>,
    /// Trimmed text of every line above the cursor: what marks any
    /// candidate, however found, as copied.
    trimmed: HashSet<String>,
}

impl LineSet {
    /// `text_above`: the text before the cursor's line; `line_before`: the
    /// cursor line before the cursor, which must be blank (else there is no
    /// line to copy onto it). `encode` turns a continuation into the tokens
    /// the model would generate for it (healing's required bytes first); at
    /// most `max` lines are, the nearest. `ends`: the tokens that begin
    /// with a line break.
    pub fn above(
        text_above: &str,
        line_before: &str,
        max: usize,
        encode: &dyn Fn(&str) -> Vec<u32>,
        ends: &[u32],
    ) -> LineSet {
        let continuations = continuations(text_above, line_before, max);
        LineSet {
            sequences: continuations.iter().map(|c| encode(c)).collect(),
            ends: ends.to_vec(),
            trimmed: text_above.lines().map(|l| l.trim().to_string()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// The tokens that go on from `prefix` towards some line, or end it.
    pub fn next_tokens(&self, prefix: &[u32]) -> Vec<u32> {
        let mut next = Vec::new();
        for s in self.sequences.iter().filter(|s| s.starts_with(prefix)) {
            match s.get(prefix.len()) {
                Some(&token) => next.push(token),
                None => next.extend_from_slice(&self.ends),
            }
        }
        next
    }

    /// Whether `tokens` are a whole line, ended.
    pub fn contains(&self, tokens: &[u32]) -> bool {
        tokens.split_last().is_some_and(|(end, line)| {
            self.ends.contains(end) && self.sequences.iter().any(|s| s == line)
        })
    }

    /// Whether a suggested line (trimmed) is a line above the cursor.
    pub fn has_line(&self, line: &str) -> bool {
        self.trimmed.contains(line.trim())
    }
}

/// What each line above would continue the cursor's blank line with: the
/// nearest `max` distinct lines of code, the line just
/// above left out (a suggestion that only repeats it is not shown either).
/// A line must start with the cursor line's indentation.
fn continuations(text_above: &str, line_before: &str, max: usize) -> Vec<String> {
    if !line_before.chars().all(char::is_whitespace) {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in text_above.lines().rev().skip(1) {
        if out.len() >= max {
            break;
        }
        let Some(rest) = line.strip_prefix(line_before) else {
            continue;
        };
        if !only_closing(line) && seen.insert(line.trim()) {
            out.push(rest.trim_end().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_are_the_nearest_distinct_code_lines_at_the_cursor_indent() {
        let above = "fn f() {\n    let a = 1;\n        let b = 2;\n}\n\n  odd();\n    let a = 1;\n    last();\n";
        assert_eq!(
            continuations(above, "    ", 10),
            vec!["let a = 1;", "    let b = 2;"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            "the line just above, closing braces, blank lines, repeats and shallower lines are left out"
        );
        assert_eq!(continuations(above, "    ", 1), vec!["let a = 1;"]);
        assert!(continuations(above, "    x", 10).is_empty());
    }

    #[test]
    fn a_line_set_walks_its_sequences_token_by_token() {
        let encode = |text: &str| text.bytes().map(u32::from).collect::<Vec<_>>();
        let [a, b, c] = [b'a', b'b', b'c'].map(u32::from);
        let ends = [100, 101];
        let set = LineSet::above("a\nab\nac\nzz\n", "", MAX_LINES, &encode, &ends);
        let mut first = set.next_tokens(&[]);
        first.sort();
        assert_eq!(first, vec![a, a, a]);
        let mut after_a = set.next_tokens(&[a]);
        after_a.sort();
        assert_eq!(after_a, vec![b, c, 100, 101], "`a` is a line too");
        assert_eq!(set.next_tokens(&[a, b]), ends);
        assert!(set.contains(&[a, b, 100]));
        assert!(set.contains(&[a, 101]));
        assert!(!set.contains(&[a, b]), "not ended");
        assert!(!set.contains(&[a, b, c]));
        assert!(
            !set.contains(&[u32::from(b'z'), u32::from(b'z'), 100]),
            "the line just above"
        );
        assert!(set.has_line("  zz "), "any line above marks a copy");
        assert!(!set.has_line("q"));
    }
}
