//! Drawing samples: a target line, the context before it, and edits that
//! happened earlier in that context (the paper's three kinds).

use std::path::PathBuf;

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ropey::Rope;
use serde::{Deserialize, Serialize};

use super::corpus::{Corpus, Language};
use crate::text::Edit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EditKind {
    /// 1-5 lines copied from elsewhere in the file, inserted earlier.
    Insertion,
    /// 1-5 earlier lines removed.
    Deletion,
    /// 2-4 insertions or deletions at once.
    MultiPlace,
}

impl EditKind {
    pub const ALL: [EditKind; 3] = [
        EditKind::Insertion,
        EditKind::Deletion,
        EditKind::MultiPlace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EditKind::Insertion => "insertion",
            EditKind::Deletion => "deletion",
            EditKind::MultiPlace => "multi-place",
        }
    }
}

/// One edit in line coordinates of the text it applies to: lines
/// `at..at + removed` are replaced by `inserted` (whole lines, each ending
/// in a line break).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineEdit {
    pub at: usize,
    pub removed: usize,
    pub inserted: Vec<String>,
}

impl LineEdit {
    /// The same edit as a text [`Edit`] on `rope`.
    pub fn to_edit(&self, rope: &Rope) -> Edit {
        let start = rope.line_to_char(self.at);
        let end = rope.line_to_char(self.at + self.removed);
        Edit::replace(rope, start, end, &self.inserted.concat())
    }
}

/// A target line and the context before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub language: Language,
    /// Relative to the corpus root.
    pub file: PathBuf,
    /// 1-based line number in the file.
    pub line: usize,
    /// The line to predict, without its line break.
    pub text: String,
    /// The lines before it (up to the token budget), pre-edit.
    #[serde(skip)]
    pub context: String,
}

/// Lines ahead of the target that a context must have at least.
const MIN_CONTEXT_LINES: usize = 12;
/// Bytes per token, generously, for a first cut of the context before it is
/// tokenized.
const MAX_BYTES_PER_TOKEN: usize = 8;

/// A line worth predicting: it has code, and more than closing brackets.
pub fn is_nontrivial(line: &str) -> bool {
    let code = line.trim();
    !code.is_empty() && !code.chars().all(|c| ")]},;:".contains(c))
}

/// A random generator for sample `index` of `setting`, independent of every
/// other sample, so a run can be split and resumed.
pub fn sample_rng(seed: u64, setting: &str, index: usize) -> StdRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in setting
        .bytes()
        .chain(index.to_le_bytes())
        .chain(seed.to_le_bytes())
    {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    StdRng::seed_from_u64(h)
}

/// Pick a file, a non-trivial target line and the context before it, at
/// most `context_tokens` long by `count_tokens`; also the file's text, where
/// inserted lines come from.
pub fn draw_target(
    corpus: &Corpus,
    rng: &mut StdRng,
    context_tokens: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<(Target, String)> {
    for _ in 0..200 {
        let index = rng.random_range(0..corpus.files.len());
        let Ok(text) = corpus.read(index) else {
            continue;
        };
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let candidates: Vec<usize> = (MIN_CONTEXT_LINES..lines.len())
            .filter(|&t| is_nontrivial(lines[t]))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let t = candidates[rng.random_range(0..candidates.len())];
        let mut start = t;
        let mut bytes = 0;
        while start > 0 && bytes + lines[start - 1].len() <= context_tokens * MAX_BYTES_PER_TOKEN {
            start -= 1;
            bytes += lines[start].len();
        }
        // Drop whole lines from the front until the context fits.
        let mut context: String = lines[start..t].concat();
        let mut tokens = count_tokens(&context);
        while tokens > context_tokens && t - start > MIN_CONTEXT_LINES {
            let over = tokens - context_tokens;
            // Drop about as many lines as the excess needs, at least one.
            let per_line = tokens.div_ceil(t - start).max(1);
            start = (start + over.div_ceil(per_line).max(1)).min(t - MIN_CONTEXT_LINES);
            context = lines[start..t].concat();
            tokens = count_tokens(&context);
        }
        if tokens > context_tokens || t - start < MIN_CONTEXT_LINES {
            continue;
        }
        let target = Target {
            language: corpus.language,
            file: corpus.files[index].clone(),
            line: t + 1,
            text: lines[t].trim_end_matches(['\n', '\r']).to_string(),
            context,
        };
        return Ok((target, text));
    }
    bail!(
        "no usable target line found in {} after 200 tries",
        corpus.root.display()
    )
}

/// 1-5 lines of `file_lines`, avoiding the target (index `target`) when
/// the file allows, each ending in a line break.
fn copied_lines(rng: &mut StdRng, file_lines: &[&str], target: usize) -> Vec<String> {
    let len = rng.random_range(1..=5usize).min(file_lines.len());
    let mut tries = 0;
    loop {
        let from = rng.random_range(0..=file_lines.len() - len);
        tries += 1;
        if (from..from + len).contains(&target) && tries < 100 {
            continue;
        }
        return file_lines[from..from + len]
            .iter()
            .map(|l| {
                let l = l.trim_end_matches(['\n', '\r']);
                format!("{l}\n")
            })
            .collect();
    }
}

/// Draw edits of `kind` on a context of `n_lines` lines (`file_lines` is
/// the whole file, `target_line` the target's index in it). Edits are sorted,
/// at least one untouched line apart, and never touch the last line, so
/// every edit has a suffix for the cache to carry.
pub fn draw_edits(
    rng: &mut StdRng,
    kind: EditKind,
    n_lines: usize,
    file_lines: &[&str],
    target_line: usize,
) -> Vec<LineEdit> {
    let count = match kind {
        EditKind::Insertion | EditKind::Deletion => 1,
        EditKind::MultiPlace => rng.random_range(2..=4),
    };
    let mut edits: Vec<LineEdit> = Vec::new();
    let mut tries = 0;
    while edits.len() < count && tries < 1000 {
        tries += 1;
        let insertion = match kind {
            EditKind::Insertion => true,
            EditKind::Deletion => false,
            EditKind::MultiPlace => rng.random_bool(0.5),
        };
        let edit = if insertion {
            LineEdit {
                at: rng.random_range(0..n_lines - 1),
                removed: 0,
                inserted: copied_lines(rng, file_lines, target_line),
            }
        } else {
            let removed = rng.random_range(1..=5usize).min(n_lines - 1);
            LineEdit {
                at: rng.random_range(0..n_lines - removed),
                removed,
                inserted: Vec::new(),
            }
        };
        let apart = |a: &LineEdit, b: &LineEdit| {
            let (first, second) = if a.at <= b.at { (a, b) } else { (b, a) };
            first.at + first.removed < second.at
        };
        if edits.iter().all(|e| apart(e, &edit)) {
            edits.push(edit);
        }
    }
    edits.sort_by_key(|e| e.at);
    edits
}

/// The text edits that take `context` through `edits` (line coordinates of
/// `context`), in the order to apply them: last first, so each one's
/// offsets are still those of the original text.
pub fn text_edits(context: &str, edits: &[LineEdit]) -> Vec<Edit> {
    let mut rope = Rope::from_str(context);
    let mut out = Vec::with_capacity(edits.len());
    for edit in edits.iter().rev() {
        let text_edit = edit.to_edit(&rope);
        text_edit.apply_to(&mut rope);
        out.push(text_edit);
    }
    out
}

/// `context` after `edits`.
pub fn apply_line_edits(context: &str, edits: &[LineEdit]) -> String {
    let mut rope = Rope::from_str(context);
    for edit in edits.iter().rev() {
        edit.to_edit(&rope).apply_to(&mut rope);
    }
    rope.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, prop_assert_ne, proptest};
    use rand::Rng;

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("line {i}\n")).collect()
    }

    proptest! {
        /// The edited context is the original with exactly the drawn spans
        /// changed: every other line survives, in order.
        #[test]
        fn edits_change_exactly_their_spans(seed in 0u64..5000, n in 14usize..80, kind in 0usize..3) {
            let kind = EditKind::ALL[kind];
            let file = lines(n + 10);
            let file_refs: Vec<&str> = file.iter().map(String::as_str).collect();
            let context = file[..n].concat();
            let mut rng = StdRng::seed_from_u64(seed);
            let edits = draw_edits(&mut rng, kind, n, &file_refs, n);
            match kind {
                EditKind::MultiPlace => prop_assert!((2..=4).contains(&edits.len())),
                _ => prop_assert_eq!(edits.len(), 1),
            }
            for e in &edits {
                match kind {
                    EditKind::Insertion => prop_assert!(e.removed == 0 && (1..=5).contains(&e.inserted.len())),
                    EditKind::Deletion => prop_assert!(e.inserted.is_empty() && (1..=5).contains(&e.removed)),
                    EditKind::MultiPlace => prop_assert!(
                        (e.removed == 0 && (1..=5).contains(&e.inserted.len()))
                            || (e.inserted.is_empty() && (1..=5).contains(&e.removed))
                    ),
                }
                prop_assert!(e.at + e.removed < n, "the last line stays: {e:?}");
                for l in &e.inserted {
                    prop_assert!(file.contains(l), "inserted lines come from the file");
                    prop_assert_ne!(l, &file[n], "the target is not copied");
                }
            }
            for w in edits.windows(2) {
                prop_assert!(w[0].at + w[0].removed < w[1].at, "edits overlap: {edits:?}");
            }
            // Rebuild the expected text line by line.
            let mut expected = String::new();
            let mut line = 0;
            for e in &edits {
                expected.push_str(&file[line..e.at].concat());
                expected.push_str(&e.inserted.concat());
                line = e.at + e.removed;
            }
            expected.push_str(&file[line..n].concat());
            prop_assert_eq!(apply_line_edits(&context, &edits), expected.clone());
            // The text edits, applied in order, give the same text.
            let mut rope = Rope::from_str(&context);
            for edit in text_edits(&context, &edits) {
                edit.apply_to(&mut rope);
            }
            prop_assert_eq!(rope.to_string(), expected);
        }
    }

    #[test]
    fn trivial_lines_are_not_targets() {
        for line in ["", "   \n", "    )\n", "}\n", "  ]),\n", "};"] {
            assert!(!is_nontrivial(line), "{line:?}");
        }
        for line in ["    return x\n", "fn main() {\n", "x = (1,\n"] {
            assert!(is_nontrivial(line), "{line:?}");
        }
    }

    #[test]
    fn a_sample_depends_only_on_seed_setting_and_index() {
        let draw = |seed, setting, index| sample_rng(seed, setting, index).random::<u64>();
        assert_eq!(draw(1, "insertion", 3), draw(1, "insertion", 3));
        assert_ne!(draw(1, "insertion", 3), draw(1, "insertion", 4));
        assert_ne!(draw(1, "insertion", 3), draw(2, "insertion", 3));
        assert_ne!(draw(1, "insertion", 3), draw(1, "deletion", 3));
    }
}
