//! Syntax: tree-sitter trees for Python and Rust, kept current by feeding
//! every edit's `InputEdit` and reparsing incrementally, highlight captures
//! for a visible byte range, and the node queries that prediction triggers
//! need (node kind at an offset, inside a string or comment).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ropey::Rope;
use tree_sitter::{
    InputEdit, Node, ParseOptions, ParseState, Parser, Point, Query, QueryCursor,
    StreamingIterator, Tree,
};

use crate::text::Edit;

mod scope;

pub use scope::in_string_or_comment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    Rust,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Python, Language::Rust];

    pub fn from_path(path: &Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "py" | "pyi" => Some(Language::Python),
            "rs" => Some(Language::Rust),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::Rust => "Rust",
        }
    }

    /// Columns per indent level (PEP 8 and rustfmt both use 4).
    pub fn indent_width(self) -> usize {
        4
    }

    /// The char that, ending a line, opens a block: Enter indents one more
    /// level after it.
    pub fn block_opener(self) -> char {
        match self {
            Language::Python => ':',
            Language::Rust => '{',
        }
    }

    /// Whether a line (its code, trimmed) ends the block it is in, so that
    /// Enter after it goes one level out: Python's `return`, `raise`,
    /// `pass`, `break` and `continue` (the statements VS Code and Vim's
    /// Python indent dedent after). Not when a bracket or a backslash
    /// carries the statement on to the next line. Rust closes blocks with
    /// `}`, which Enter does not need to guess.
    pub fn ends_block(self, code: &str) -> bool {
        let code = code.trim();
        match self {
            Language::Python => {
                let keyword = code
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or("");
                let simple = matches!(keyword, "pass" | "break" | "continue") && keyword == code;
                let exits = matches!(keyword, "return" | "raise");
                let open = code.ends_with(['(', '[', '{', ',', '\\'])
                    || code.chars().filter(|&c| "([{".contains(c)).count()
                        > code.chars().filter(|&c| ")]}".contains(c)).count();
                (simple || exits) && !open
            }
            Language::Rust => false,
        }
    }

    fn ts_language(self) -> tree_sitter::Language {
        match self {
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::Rust => tree_sitter_rust::LANGUAGE.into(),
        }
    }

    /// The grammar crate's own highlight query, compiled once per process
    /// (the Rust one takes milliseconds to compile).
    fn highlight_query(self) -> &'static Query {
        static PYTHON: OnceLock<Query> = OnceLock::new();
        static RUST: OnceLock<Query> = OnceLock::new();
        let (cell, source) = match self {
            Language::Python => (&PYTHON, tree_sitter_python::HIGHLIGHTS_QUERY),
            Language::Rust => (&RUST, tree_sitter_rust::HIGHLIGHTS_QUERY),
        };
        cell.get_or_init(|| {
            Query::new(&self.ts_language(), source).expect("grammar crate ships a valid query")
        })
    }
}

/// One highlighted byte range and its capture name (`keyword`,
/// `function.method`, ...), which themes map to styles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HighlightSpan {
    pub bytes: Range<usize>,
    pub scope: &'static str,
}

/// Files larger than this open without a syntax tree: tree-sitter's memory
/// for a 100 MB file and its first parse would cost more than highlighting
/// is worth there.
pub const MAX_SYNTAX_BYTES: usize = 32 << 20;

/// How long one keystroke's reparse may run before it is paused and the
/// frame is drawn with the previous (position-adjusted) tree. An unclosed
/// bracket can make tree-sitter's error recovery re-read the whole rest of
/// the file; the remainder then runs in idle time.
pub const EDIT_PARSE_BUDGET: Duration = Duration::from_millis(1);

pub struct Syntax {
    language: Language,
    parser: Parser,
    /// The latest complete tree, edited to match the text even while a
    /// reparse is pending. `None` only until the first parse completes.
    tree: Option<Tree>,
    /// A parse was paused by its time budget and must be resumed.
    pending: bool,
    /// Bumped each time a parse completes: highlight caches keyed on it
    /// know when to query again.
    generation: u64,
}

impl std::fmt::Debug for Syntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syntax")
            .field("language", &self.language)
            .field("pending", &self.pending)
            .finish()
    }
}

fn read_rope(rope: &Rope, byte: usize) -> &[u8] {
    if byte >= rope.len_bytes() {
        return &[];
    }
    let (chunk, chunk_start, _, _) = rope.chunk_at_byte(byte);
    &chunk.as_bytes()[byte - chunk_start..]
}

fn point_at(rope: &Rope, byte: usize) -> Point {
    let row = rope.byte_to_line(byte);
    Point {
        row,
        column: byte - rope.line_to_byte(row),
    }
}

/// The tree-sitter form of `edit`, computed from the rope as it was
/// *before* the edit was applied.
pub fn input_edit(old_rope: &Rope, edit: &Edit) -> InputEdit {
    let start_position = point_at(old_rope, edit.start_byte);
    let old_end_position = point_at(old_rope, edit.old_end_byte);
    let new_end_position = match edit.inserted.rfind('\n') {
        Some(last_nl) => Point {
            row: start_position.row + edit.inserted.matches('\n').count(),
            column: edit.inserted.len() - last_nl - 1,
        },
        None => Point {
            row: start_position.row,
            column: start_position.column + edit.inserted.len(),
        },
    };
    InputEdit {
        start_byte: edit.start_byte,
        old_end_byte: edit.old_end_byte,
        new_end_byte: edit.new_end_byte(),
        start_position,
        old_end_position,
        new_end_position,
    }
}

impl Syntax {
    /// Parse `rope` completely.
    pub fn new(language: Language, rope: &Rope) -> anyhow::Result<Syntax> {
        let mut syntax = Syntax::new_budgeted(language, rope, None)?;
        if !syntax.continue_parse(rope, None) {
            anyhow::bail!("tree-sitter could not parse the buffer");
        }
        Ok(syntax)
    }

    /// Start parsing `rope`, stopping after `budget`; [`Syntax::continue_parse`]
    /// finishes the job later.
    pub fn new_budgeted(
        language: Language,
        rope: &Rope,
        budget: Option<Duration>,
    ) -> anyhow::Result<Syntax> {
        let mut parser = Parser::new();
        parser.set_language(&language.ts_language())?;
        let mut syntax = Syntax {
            language,
            parser,
            tree: None,
            pending: true,
            generation: 0,
        };
        syntax.continue_parse(rope, budget);
        Ok(syntax)
    }

    pub fn language(&self) -> Language {
        self.language
    }

    /// The latest tree. While [`Syntax::is_pending`], it is the previous
    /// tree with the edits' positions applied, not yet reparsed.
    pub fn tree(&self) -> Option<&Tree> {
        self.tree.as_ref()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Tell the tree what changed, then reparse incrementally (reusing
    /// every unchanged subtree) within [`EDIT_PARSE_BUDGET`].
    pub fn edit(&mut self, input: &InputEdit, new_rope: &Rope) {
        if let Some(tree) = self.tree.as_mut() {
            tree.edit(input);
        }
        // A paused parse was for the old text: start over from the edited tree.
        self.parser.reset();
        self.pending = true;
        self.continue_parse(new_rope, Some(EDIT_PARSE_BUDGET));
    }

    /// Resume a pending parse for up to `budget` (`None`: until done).
    /// Returns whether the tree is now current.
    pub fn continue_parse(&mut self, rope: &Rope, budget: Option<Duration>) -> bool {
        if !self.pending {
            return true;
        }
        let deadline = budget.and_then(|b| Instant::now().checked_add(b));
        let mut over_budget = |_: &ParseState| deadline.is_some_and(|d| Instant::now() >= d);
        let options = ParseOptions::new().progress_callback(&mut over_budget);
        let parsed = self.parser.parse_with_options(
            &mut |byte, _| read_rope(rope, byte),
            self.tree.as_ref(),
            Some(options),
        );
        if let Some(tree) = parsed {
            self.tree = Some(tree);
            self.pending = false;
            self.generation += 1;
        }
        !self.pending
    }

    /// Highlight captures overlapping `bytes`, in document order. When
    /// several patterns capture the same node the last one wins: the grammar
    /// crates' queries list generic patterns (`(identifier) @variable`) before
    /// specific ones (`function_definition name: ... @function`).
    pub fn highlights(&self, rope: &Rope, bytes: Range<usize>) -> Vec<HighlightSpan> {
        let query = self.language.highlight_query();
        let names = query.capture_names();
        let mut cursor = QueryCursor::new();
        cursor.set_byte_range(bytes.clone());
        let text = |node: Node| {
            rope.byte_slice(node.byte_range())
                .chunks()
                .map(str::as_bytes)
        };
        let Some(tree) = &self.tree else {
            return Vec::new();
        };
        // Query each top-level node that meets the range rather than the
        // root: a query cursor started at the root of a 100k-line file spends
        // milliseconds walking to the range, the tree cursor finds it in
        // O(log n) through tree-sitter's balanced repetition nodes.
        let root = tree.root_node();
        let mut walker = root.walk();
        let mut starts = Vec::new();
        if walker.goto_first_child_for_byte(bytes.start).is_some() {
            loop {
                let node = walker.node();
                if node.start_byte() >= bytes.end {
                    break;
                }
                starts.push(node);
                if !walker.goto_next_sibling() {
                    break;
                }
            }
        }
        if starts.is_empty() {
            starts.push(root);
        }
        let mut spans: Vec<HighlightSpan> = Vec::new();
        let mut index_of: HashMap<(usize, usize), usize> = HashMap::new();
        for node in starts {
            let mut captures = cursor.captures(query, node, text);
            while let Some((matched, index)) = captures.next() {
                let capture = matched.captures[*index];
                let range = capture.node.byte_range();
                let scope = names[capture.index as usize];
                match index_of.get(&(range.start, range.end)) {
                    Some(&i) => spans[i].scope = scope,
                    None => {
                        index_of.insert((range.start, range.end), spans.len());
                        spans.push(HighlightSpan {
                            bytes: range,
                            scope,
                        });
                    }
                }
            }
        }
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(rope: &mut Rope, syntax: &mut Syntax, edit: Edit) {
        let input = input_edit(rope, &edit);
        edit.apply_to(rope);
        syntax.edit(&input, rope);
    }

    #[test]
    fn incremental_reparse_equals_a_fresh_parse() {
        let mut rope = Rope::from_str("def f(x):\n    return x\n\nprint(f(1))\n");
        let mut syntax = Syntax::new(Language::Python, &rope).unwrap();
        let edits = [
            (10, 10, "    y = 'é'\n"),
            (0, 3, "async def"),
            (4, 4, "\n\n"),
        ];
        for (start, end, text) in edits {
            let edit = Edit::replace(&rope, start, end, text);
            apply(&mut rope, &mut syntax, edit);
            let fresh = Syntax::new(Language::Python, &rope).unwrap();
            let tree = syntax.tree().unwrap();
            assert_eq!(
                tree.root_node().to_sexp(),
                fresh.tree().unwrap().root_node().to_sexp()
            );
        }
    }

    #[test]
    fn an_unclosed_bracket_in_a_large_file_pauses_the_parse_within_budget() {
        let text = "def f(x):\n    return [x, {'k': (1, 2)}]\n\n".repeat(20_000);
        let mut rope = Rope::from_str(&text);
        let mut syntax = Syntax::new(Language::Python, &rope).unwrap();
        let edit = Edit::insert(&rope, 10, "(");
        let input = input_edit(&rope, &edit);
        edit.apply_to(&mut rope);
        let start = Instant::now();
        syntax.edit(&input, &rope);
        let took = start.elapsed();
        // Generous bound: the budget is 3 ms, checks come every few hundred ops.
        assert!(took < Duration::from_millis(100), "edit took {took:?}");
        while !syntax.continue_parse(&rope, Some(Duration::from_millis(5))) {}
        let fresh = Syntax::new(Language::Python, &rope).unwrap();
        assert_eq!(
            syntax.tree().unwrap().root_node().to_sexp(),
            fresh.tree().unwrap().root_node().to_sexp()
        );
    }

    #[test]
    fn highlights_keywords_and_strings_in_range() {
        let rope = Rope::from_str("fn main() {\n    let s = \"hi\"; // note\n}\n");
        let syntax = Syntax::new(Language::Rust, &rope).unwrap();
        let spans = syntax.highlights(&rope, 0..rope.len_bytes());
        let scope_of = |text: &str| {
            let start = rope.to_string().find(text).unwrap();
            spans
                .iter()
                .find(|s| s.bytes.start == start)
                .map(|s| s.scope)
        };
        assert_eq!(scope_of("fn"), Some("keyword"));
        assert_eq!(scope_of("let"), Some("keyword"));
        assert_eq!(scope_of("\"hi\""), Some("string"));
        assert_eq!(scope_of("// note"), Some("comment"));
        assert_eq!(scope_of("main"), Some("function"));
        let py = Rope::from_str("def greet(x):\n    return len(x)\n");
        let py_syntax = Syntax::new(Language::Python, &py).unwrap();
        let py_spans = py_syntax.highlights(&py, 0..py.len_bytes());
        let py_scope = |text: &str| {
            let start = py.to_string().find(text).unwrap();
            py_spans
                .iter()
                .find(|s| s.bytes.start == start)
                .map(|s| s.scope)
        };
        assert_eq!(py_scope("greet"), Some("function"));
        assert_eq!(py_scope("len"), Some("function.builtin"));
        let second_line = syntax.highlights(&rope, 12..40);
        assert!(second_line.iter().all(|s| s.bytes.end > 12));
        assert!(!second_line.iter().any(|s| s.bytes.start == 0));
    }
}
