//! The engine's backend on the real SmolLM2 model and tokenizer: the cache
//! follows document edits (anywhere, and through window slides) and predicts
//! sensible next lines at the cursor.

mod common;

use common::predict;
use std::ops::ControlFlow;

use pie_edit::model::source;
use pie_edit::predict::engine::Backend;
use pie_edit::predict::mirror::{self, Mirror, MirrorConfig};
use pie_edit::text::Edit;
use ropey::Rope;

fn load(config: MirrorConfig) -> Mirror {
    source::ensure_default_model().expect("the default model is available (CI fetches it)");
    mirror::load(source::DEFAULT_PRESET, config, &|_| {})
        .expect("SmolLM2 loads")
        .0
}

/// Apply an edit to the document and to the mirror, then check the mirror's
/// invariants: its window text is the document's, and its tokens are exactly
/// the tokenization of that text.
fn edit(
    mirror: &mut Mirror,
    doc: &mut Rope,
    range: std::ops::Range<usize>,
    text: &str,
    cursor: usize,
) {
    let edit = Edit::replace(doc, range.start, range.end, text);
    edit.apply_to(doc);
    mirror.apply_edits(doc, &[edit], cursor).unwrap();
    check(mirror, doc);
}

fn check(mirror: &Mirror, doc: &Rope) {
    let window = mirror.window_range();
    let text = doc.slice(window.clone()).to_string();
    assert_eq!(mirror.aligned().text(), text, "window {window:?} text");
    assert_eq!(mirror.tokens(), mirror.aligned().tokens(), "cache tokens");
}

const CODE: &str = "import os\n\n\ndef read_lines(path):\n    with open(path) as f:\n        return f.read().splitlines()\n\n\ndef count_words(lines):\n    total = 0\n    for line in lines:\n        total += len(line.split())\n    return total\n\n\nclass Greeter:\n    def __init__(self, name):\n        self.name = name\n\n    def greet(self):\n        return f\"Hello, {self.name}!\"\n";

#[test]
fn cache_follows_edits_anywhere_and_predicts_at_the_cursor() {
    let mut mirror = load(MirrorConfig::default());
    let mut doc = Rope::from_str(CODE);
    let end = doc.len_chars();
    mirror.reset(&doc, end).unwrap();
    check(&mirror, &doc);

    // Typing a new function at the end, one key at a time.
    let typed = "\n\ndef add(a, b):\n    ";
    for ch in typed.chars() {
        let at = doc.len_chars();
        edit(&mut mirror, &mut doc, at..at, &ch.to_string(), at + 1);
    }
    let cursor = doc.len_chars();
    let suggestion = predict(&mut mirror, &doc, cursor);
    println!("after `def add(a, b):` + newline + indent: {suggestion:?}");
    assert!(
        suggestion.contains("return"),
        "a one-line body of add: {suggestion:?}"
    );
    assert!(
        !suggestion.starts_with(' '),
        "indentation is already typed: {suggestion:?}"
    );

    // An edit far above the cursor, a deletion, and a multi-line insertion.
    let line3 = doc.line_to_char(3);
    edit(&mut mirror, &mut doc, line3..line3, "# helpers\n", cursor);
    let import = doc.line_to_char(0);
    edit(&mut mirror, &mut doc, import..import + 10, "", cursor);
    let mid = doc.line_to_char(8);
    edit(
        &mut mirror,
        &mut doc,
        mid..mid,
        "    # count\n    seen = set()\n",
        cursor,
    );
    // The prediction still works and the cache still matches the text.
    let cursor = doc.len_chars();
    let again = predict(&mut mirror, &doc, cursor);
    println!("after edits above: {again:?}");
    assert!(!again.is_empty());
}

#[test]
fn a_small_window_slides_instead_of_growing() {
    let config = MirrorConfig {
        max_context: 96,
        ..MirrorConfig::default()
    };
    let mut mirror = load(config);
    let mut doc = Rope::from_str(CODE);
    let end = doc.len_chars();
    mirror.reset(&doc, end).unwrap();
    check(&mirror, &doc);
    assert!(mirror.tokens().len() <= 96);
    for i in 0..30 {
        let at = doc.len_chars();
        let line = format!("x{i} = {i}\n");
        edit(
            &mut mirror,
            &mut doc,
            at..at,
            &line,
            at + line.chars().count(),
        );
        assert!(
            mirror.tokens().len() <= 96,
            "window stays within max_context"
        );
        assert_eq!(
            mirror.window_range().end,
            doc.len_chars(),
            "the cursor stays inside"
        );
    }
    assert!(mirror.window_range().start > 0, "the head was dropped");
    let cursor = doc.len_chars();
    let suggestion = predict(&mut mirror, &doc, cursor);
    println!("after sliding: {suggestion:?}");
}

#[test]
fn typing_past_the_window_extends_and_slides_instead_of_re_encoding() {
    let config = MirrorConfig {
        max_context: 96,
        ..MirrorConfig::default()
    };
    let mut mirror = load(config);
    let mut doc = Rope::from_str(CODE);
    // Opened at the top: the window holds the head of the file only.
    mirror.reset(&doc, 0).unwrap();
    check(&mirror, &doc);
    assert!(mirror.window_range().end < doc.len_chars());
    let window_tokens = mirror.tokens().len();
    // The user goes to the end and types: the window follows by encoding
    // the text between its end and the cursor, not a whole new window.
    let at = doc.len_chars();
    edit(&mut mirror, &mut doc, at..at, "\n", at + 1);
    assert_eq!(mirror.window_range().end, doc.len_chars());
    assert!(mirror.tokens().len() <= 96);
    let encoded = mirror.last_update().encoded;
    println!("encoded {encoded} tokens to follow the cursor (window {window_tokens})");
    assert!(
        encoded < window_tokens,
        "followed by extension, not a re-encode"
    );
}

/// An open encodes only what precedes the cursor; a prediction further
/// down encodes what it reads first, and predicts what a mirror that
/// encoded the whole file at open does. Repair then encodes the rest.
#[test]
fn an_open_encodes_up_to_the_cursor_and_the_rest_on_demand() {
    let doc = Rope::from_str(&CODE.repeat(4));
    let end = doc.len_chars();
    let mut eager = load(MirrorConfig::default());
    eager.reset(&doc, end).unwrap();
    assert_eq!(
        eager.unencoded_len(),
        0,
        "a cursor at the end reads everything"
    );
    let mut lazy = load(MirrorConfig::default());
    lazy.reset(&doc, 0).unwrap();
    let tokens = lazy.tokens().len();
    assert!(tokens > 400, "{tokens} tokens");
    assert_eq!(
        lazy.unencoded_len(),
        tokens - 1,
        "only the cursor's token is encoded"
    );
    check(&lazy, &doc);
    // The start of the last class, three quarters down.
    let at = CODE.len() * 3 + CODE.find("class Greeter:\n").unwrap() + "class Greeter:\n".len();
    assert_eq!(predict(&mut lazy, &doc, at), predict(&mut eager, &doc, at));
    let left = lazy.unencoded_len();
    assert!(
        left > 0 && left < tokens / 4,
        "encoded up to the prediction point: {left} left"
    );
    while lazy.stale_len() > 0 {
        lazy.repair(64).unwrap();
    }
    assert_eq!(lazy.unencoded_len(), 0);
    assert_eq!(
        predict(&mut lazy, &doc, end),
        predict(&mut eager, &doc, end)
    );
}

/// Issue 15: the alternatives leave the first suggestion as it was, are
/// distinct, and each carries a confidence.
#[test]
fn alternatives_leave_the_first_suggestion_as_it_was_and_differ_from_it() {
    let mut doc = Rope::from_str(CODE);
    let at = doc.len_chars();
    let typed = "\n\ndef add(a, b):\n    ";
    doc.insert(at, typed);
    let cursor = doc.len_chars();
    let mut mirror = load(MirrorConfig::default());
    mirror.reset(&doc, cursor).unwrap();
    let alone = predict(&mut mirror, &doc, cursor);
    let choices = mirror.choices_at(&doc, cursor, 3).unwrap();
    assert_eq!(
        choices[0].0, alone,
        "alternatives change nothing before them"
    );
    assert!(choices.len() >= 2, "{choices:?}");
    let firsts: std::collections::HashSet<&str> = choices
        .iter()
        .map(|(text, _)| text.trim().lines().next().unwrap_or(""))
        .collect();
    assert_eq!(firsts.len(), choices.len(), "distinct: {choices:?}");
    for (text, confidence) in &choices {
        let score = confidence.score();
        assert!(score > 0.0 && score <= 1.0, "{text:?}: {confidence:?}");
        assert!(confidence.min <= score && confidence.tokens > 0);
    }
    // Offered by the log-probability of their whole line (Rank::Sum).
    let line_logprob =
        |c: &pie_edit::predict::suggest::Confidence| c.mean_logprob * c.tokens as f32;
    for pair in choices[1..].windows(2) {
        assert!(
            line_logprob(&pair[0].1) >= line_logprob(&pair[1].1),
            "{choices:?}"
        );
    }
    // The cache is the mirror's still: a second run gives the same.
    assert_eq!(mirror.choices_at(&doc, cursor, 3).unwrap(), choices);
}

/// What a beam `width` wide finds at the start of a
/// function body, as `generate_choices` reports it: the mirror, the
/// cursor, the first suggestion, and each line found with its line
/// log-probability.
type BeamRun = (Mirror, usize, String, Vec<(String, f32)>);

fn beam_lines(width: usize) -> BeamRun {
    use pie_edit::predict::mirror::Choice;
    let doc = Rope::from_str(&format!("{CODE}\n\ndef add(a, b):\n    "));
    let cursor = doc.len_chars();
    let mut mirror = load(MirrorConfig {
        beam: width,
        ..MirrorConfig::default()
    });
    mirror.reset(&doc, cursor).unwrap();
    let (mut first, mut found) = (String::new(), Vec::new());
    mirror
        .generate_choices(
            cursor,
            3,
            &mut |choice| {
                match choice {
                    Choice::Done { index: 0, text, .. } => first = text.to_string(),
                    Choice::Candidate { text, confidence } => found.push((
                        text.to_string(),
                        confidence.mean_logprob * confidence.tokens as f32,
                    )),
                    _ => {}
                }
                ControlFlow::Continue(())
            },
            &|| false,
        )
        .unwrap();
    (mirror, cursor, first, found)
}

/// A beam one wide is greedy decoding: it finds the first suggestion.
#[test]
fn a_beam_of_one_finds_the_first_suggestion() {
    let (_, _, first, found) = beam_lines(1);
    assert!(!first.is_empty());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, first);
}

/// A wider beam reports at least `width` distinct lines, the most likely first, and
/// each is as likely as the model finds it when it reads the line back:
/// the hypotheses' own scratch copies attend to what the cache holds. A
/// line can end in more than one way (one line break or two); the search
/// keeps the likelier, the one reading it back finds, and looks on for
/// another line instead of spending a place on it.
#[test]
fn beam_lines_are_distinct_and_as_likely_as_the_model_reads_them() {
    let (mut mirror, cursor, _, found) = beam_lines(4);
    let lines: std::collections::HashSet<&str> =
        found.iter().map(|(text, _)| text.trim()).collect();
    assert_eq!(lines.len(), found.len(), "{found:?}");
    assert!(found.len() >= 4, "{found:?}");
    for pair in found.windows(2) {
        assert!(pair[0].1 >= pair[1].1, "{found:?}");
    }
    for (text, logprob) in &found {
        let read = mirror
            .read_line(cursor, text)
            .unwrap()
            .expect("a short line");
        let read_logprob = read.mean_logprob * read.tokens as f32;
        assert!(
            (read_logprob - logprob).abs() < 0.05,
            "{text:?}: found at {logprob}, read at {read_logprob}"
        );
    }
}

/// Leading blank lines are skipped on the real model's output: at the end
/// of a file after a function, the model likes to start with blank lines.
#[test]
fn no_suggestion_starts_with_a_blank_line() {
    let mut mirror = load(MirrorConfig::default());
    let doc = Rope::from_str(CODE);
    let cursor = doc.len_chars();
    mirror.reset(&doc, cursor).unwrap();
    for (text, _) in mirror.choices_at(&doc, cursor, 3).unwrap() {
        // At a blank cursor line the code comes onto it.
        assert!(!text.starts_with('\n'), "{text:?}");
        assert!(!text.trim().is_empty());
    }
}
