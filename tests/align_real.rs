//! Alignment with the real SmolLM2 tokenizer: after any sequence of edits the
//! returned token hunks turn the old tokens into exactly `encode(new_text)`.

mod common;

use std::sync::OnceLock;

use pie_edit::model::source::ensure_default_model;
use pie_edit::model::tokenizer::QWEN2_SPLIT;
use pie_edit::model::{TokenEdit, Tokenizer};
use pie_edit::predict::align::AlignedText;
use pie_edit::text::Edit;
use proptest::prelude::*;
use ropey::Rope;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let files = ensure_default_model().expect("default model");
        Tokenizer::from_gguf(&files.weights).expect("tokenizer")
    })
}

/// Real code to edit: slices of CPython's stdlib plus a hand-made sample with
/// CRLF, tabs and non-ASCII text.
fn corpus() -> &'static Vec<String> {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut texts = Vec::new();
        for name in ["textwrap.py", "difflib.py", "json/encoder.py"] {
            let text = common::stdlib_source(name);
            let mut cut = 3000.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut start = (text.len() / 3).min(text.len() - cut);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            texts.push(text[start..start + cut].to_string());
        }
        texts.push(
            "class Größe:\r\n\tdef f(self, x):\r\n\t\treturn x  # 日本 🦀\r\n\n\n    y = 12345\n"
                .to_string(),
        );
        assert!(texts.len() >= 2, "no real Python files found");
        texts
    })
}

const INSERTS: &[&str] = &[
    "",
    " ",
    "  ",
    "    ",
    "\n",
    "\n\n",
    "\n    ",
    "\n\n    ",
    "\t",
    "\r\n",
    "x",
    "def ",
    "(",
    "):",
    "123",
    "é",
    "🦀",
    "return self",
    "'s",
    " = ",
    "#",
    "\u{00a0}",
];

#[derive(Debug, Clone)]
struct RawEdit {
    at: f64,
    delete: usize,
    insert: String,
}

fn raw_edit() -> impl Strategy<Value = RawEdit> {
    let insert = prop_oneof![
        4 => proptest::sample::select(INSERTS).prop_map(str::to_string),
        1 => proptest::collection::vec(proptest::sample::select(INSERTS), 1..4).prop_map(|p| p.concat()),
    ];
    (
        0.0..=1.0f64,
        prop_oneof![3 => Just(0usize), 2 => 1..4usize, 1 => 4..40usize],
        insert,
    )
        .prop_map(|(at, delete, insert)| RawEdit { at, delete, insert })
}

/// Turn a position fraction and lengths into a valid `Edit` on `rope`.
fn make_edit(rope: &Rope, raw: &RawEdit) -> Edit {
    let len = rope.len_chars();
    let start = ((len as f64) * raw.at) as usize;
    let start = start.min(len);
    let end = (start + raw.delete).min(len);
    Edit::replace(rope, start, end, &raw.insert)
}

fn check_batch(
    tokenizer: &Tokenizer,
    aligned: &mut AlignedText,
    rope: &mut Rope,
    batch: &[RawEdit],
) -> Vec<TokenEdit> {
    let old_tokens = aligned.tokens().to_vec();
    let mut edits = Vec::new();
    for raw in batch {
        let edit = make_edit(rope, raw);
        edit.apply_to(rope);
        edits.push(edit);
    }
    let hunks = aligned.apply(tokenizer, &edits).expect("valid edits");
    let new_text = rope.to_string();
    assert_eq!(aligned.text(), new_text);
    let expected = tokenizer.encode(&new_text);
    let mut patched = old_tokens.clone();
    TokenEdit::apply_all(&mut patched, &hunks);
    assert_eq!(patched, expected, "hunks {hunks:?} for edits {edits:?}");
    assert_eq!(aligned.tokens(), expected.as_slice());
    for pair in hunks.windows(2) {
        assert!(
            pair[0].old_end() <= pair[1].start,
            "hunks overlap or are unordered: {hunks:?}"
        );
    }
    for hunk in &hunks {
        assert!(hunk.old_end() <= old_tokens.len());
    }
    let starts = aligned.token_starts();
    for (index, &id) in aligned.tokens().iter().enumerate() {
        let bytes = tokenizer.token_bytes(id);
        assert_eq!(
            &new_text.as_bytes()[starts[index]..starts[index] + bytes.len()],
            bytes
        );
    }
    hunks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn hunks_always_reproduce_the_full_tokenization(
        file in 0usize..16,
        batches in proptest::collection::vec(proptest::collection::vec(raw_edit(), 1..4), 1..6),
    ) {
        let texts = corpus();
        let text = &texts[file % texts.len()];
        let mut rope = Rope::from_str(text);
        let mut aligned = AlignedText::new(tokenizer(), text.clone());
        for batch in &batches {
            check_batch(tokenizer(), &mut aligned, &mut rope, batch);
        }
    }

    /// The Qwen2 boundary rules, checked with Qwen2's pre-tokenizer over the
    /// SmolLM2 vocabulary (no Qwen2 tokenizer is available offline).
    #[test]
    fn qwen2_pre_tokenizer_windows_are_exact_too(
        file in 0usize..16,
        batches in proptest::collection::vec(proptest::collection::vec(raw_edit(), 1..4), 1..6),
    ) {
        let qwen_style = qwen_style_tokenizer();
        let texts = corpus();
        let text = &texts[file % texts.len()];
        let mut rope = Rope::from_str(text);
        let mut aligned = AlignedText::new(qwen_style, text.clone());
        for batch in &batches {
            check_batch(qwen_style, &mut aligned, &mut rope, batch);
        }
    }
}

fn qwen_style_tokenizer() -> &'static Tokenizer {
    static QWEN_STYLE: OnceLock<Tokenizer> = OnceLock::new();
    QWEN_STYLE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let json_path = dir.path().join("tokenizer.json");
        tokenizer().save_json(&json_path).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        json["pre_tokenizer"] = serde_json::json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
            ]
        });
        std::fs::write(&json_path, json.to_string()).unwrap();
        let qwen_style = Tokenizer::from_json_file(&json_path).unwrap();
        assert!(qwen_style.has_regex_boundaries(), "the Qwen2 shape must be recognised");
        qwen_style
    })
}

fn edit_once(
    text: &str,
    start: usize,
    end: usize,
    inserted: &str,
) -> (AlignedText, Vec<TokenEdit>, Vec<u32>) {
    let tokenizer = tokenizer();
    let mut aligned = AlignedText::new(tokenizer, text);
    let old = aligned.tokens().to_vec();
    let rope = Rope::from_str(text);
    let edit = Edit::replace(
        &rope,
        rope.byte_to_char(start),
        rope.byte_to_char(end),
        inserted,
    );
    let hunks = aligned.apply(tokenizer, &[edit]).unwrap();
    let mut patched = old.clone();
    TokenEdit::apply_all(&mut patched, &hunks);
    assert_eq!(patched, tokenizer.encode(aligned.text()));
    (aligned, hunks, old)
}

#[test]
fn deleting_a_blank_line_before_indentation_keeps_the_cache() {
    // `\n\n    ` and `\n    ` are different single tokens: the hunk must
    // replace exactly that merged whitespace token, nothing around it.
    let text = "import os\n\ndef main():\n    x = 1\n\n    return x\n";
    let at = text.find("\n\n    return").unwrap();
    let (aligned, hunks, old) = edit_once(text, at, at + 1, "");
    assert_eq!(
        aligned.text(),
        "import os\n\ndef main():\n    x = 1\n    return x\n"
    );
    assert_eq!(hunks.len(), 1, "{hunks:?}");
    let hunk = &hunks[0];
    assert_eq!(hunk.old_len, 1, "{hunk:?}");
    assert_eq!(hunk.new_tokens.len(), 1, "{hunk:?}");
    assert_eq!(tokenizer().token_bytes(old[hunk.start]), b"\n\n   ");
    assert!(hunk.start > 5, "the prefix must be kept: {hunk:?}");
}

#[test]
fn inserting_a_blank_line_into_indentation_replaces_one_token() {
    let text = "def f(x):\n    a = x\n    return a\n";
    let at = text.find("\n    return").unwrap();
    let (_, hunks, _) = edit_once(text, at, at, "\n");
    assert_eq!(hunks.len(), 1, "{hunks:?}");
    assert!(
        hunks[0].old_len <= 1 && hunks[0].new_tokens.len() <= 2,
        "{hunks:?}"
    );
}

#[test]
fn typing_inside_a_word_touches_only_nearby_tokens() {
    let text = "def compute_total(items):\n    return sum(item.price for item in items)\n";
    let at = text.find("price").unwrap() + 2;
    let (_, hunks, old) = edit_once(text, at, at, "x");
    assert_eq!(hunks.len(), 1);
    assert!(hunks[0].old_len <= 2, "{hunks:?}");
    assert!(
        hunks[0].start > 5 && hunks[0].old_end() < old.len() - 3,
        "{hunks:?}"
    );
}

#[test]
fn multi_place_edits_give_one_hunk_each() {
    let tokenizer = tokenizer();
    let text = corpus()[0].clone();
    let mut rope = Rope::from_str(&text);
    let mut aligned = AlignedText::new(tokenizer, text.clone());
    let first = make_edit(
        &rope,
        &RawEdit {
            at: 0.1,
            delete: 0,
            insert: "foo ".into(),
        },
    );
    first.apply_to(&mut rope);
    let second = make_edit(
        &rope,
        &RawEdit {
            at: 0.5,
            delete: 3,
            insert: "".into(),
        },
    );
    second.apply_to(&mut rope);
    let third = make_edit(
        &rope,
        &RawEdit {
            at: 0.9,
            delete: 1,
            insert: "\n\n".into(),
        },
    );
    third.apply_to(&mut rope);
    let hunks = aligned.apply(tokenizer, &[first, second, third]).unwrap();
    assert_eq!(hunks.len(), 3, "{hunks:?}");
    assert_eq!(
        aligned.tokens(),
        tokenizer.encode(&rope.to_string()).as_slice()
    );
}

#[test]
fn bad_edits_are_errors_and_change_nothing() {
    let tokenizer = tokenizer();
    let mut aligned = AlignedText::new(tokenizer, "abc");
    let before = aligned.clone();
    let rope = Rope::from_str("abcdef");
    let beyond = Edit::replace(&rope, 4, 6, "");
    assert!(aligned.apply(tokenizer, &[beyond]).is_err());
    let mismatch = Edit::replace(&Rope::from_str("xyz"), 0, 1, "q");
    assert!(aligned.apply(tokenizer, &[mismatch]).is_err());
    assert_eq!(aligned, before);
}

/// A tokenizer.json whose pre-tokenizer alignment does not reason about
/// (a custom split) is aligned by re-tokenizing the whole text: the same
/// invariant must hold.
#[test]
fn unknown_pre_tokenizers_fall_back_to_whole_text_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    tokenizer().save_json(&json_path).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    json["pre_tokenizer"] = serde_json::json!({
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+|\\w+|[^\\s\\w]+"}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]
    });
    std::fs::write(&json_path, json.to_string()).unwrap();
    let custom = Tokenizer::from_json_file(&json_path).unwrap();
    assert!(!custom.has_regex_boundaries());

    let text = corpus()[0].clone();
    let mut rope = Rope::from_str(&text);
    let mut aligned = AlignedText::new(&custom, text);
    for (at, delete, insert) in [(0.2, 0, "\n\n    "), (0.5, 7, ""), (0.7, 1, "x = 1")] {
        let edit = make_edit(
            &rope,
            &RawEdit {
                at,
                delete,
                insert: insert.to_string(),
            },
        );
        edit.apply_to(&mut rope);
        let old = aligned.tokens().to_vec();
        let hunks = aligned.apply(&custom, &[edit]).unwrap();
        let mut patched = old;
        TokenEdit::apply_all(&mut patched, &hunks);
        assert_eq!(patched, custom.encode(&rope.to_string()));
        assert_eq!(hunks.len(), 1);
    }
}

#[test]
fn dropping_the_head_keeps_the_rest_exact() {
    let tokenizer = tokenizer();
    for text in corpus() {
        for min_tokens in [1, 7, 50, 200] {
            let mut aligned = AlignedText::new(tokenizer, text.clone());
            let before = aligned.tokens().to_vec();
            let (tokens, bytes) = aligned.drop_head(tokenizer, min_tokens).unwrap();
            assert!(tokens >= min_tokens.min(before.len()));
            assert_eq!(aligned.text(), &text[bytes..]);
            assert_eq!(aligned.tokens(), &before[tokens..]);
            assert_eq!(
                aligned.tokens(),
                tokenizer.encode(aligned.text()).as_slice()
            );
            assert_eq!(aligned.token_starts().first().copied().unwrap_or(0), 0);
        }
    }
}

/// How minimal the hunks are: every single-character insertion and deletion
/// at many points of real code, hunk sizes summed. The bound is loose on
/// purpose (whitespace runs can re-split), the mean is reported.
#[test]
fn single_character_edits_give_small_hunks() {
    let tokenizer = tokenizer();
    let text = &corpus()[0];
    let base = AlignedText::new(tokenizer, text.clone());
    let rope = Rope::from_str(text);
    let (mut edits, mut touched, mut worst) = (0usize, 0usize, 0usize);
    for at in (0..rope.len_chars()).step_by(7) {
        for edit in [
            Edit::insert(&rope, at, "x"),
            Edit::insert(&rope, at, " "),
            Edit::delete(&rope, at, at + 1),
        ] {
            let mut aligned = base.clone();
            let hunks = aligned.apply(tokenizer, &[edit]).unwrap();
            let size: usize = hunks
                .iter()
                .map(|h| h.old_len.max(h.new_tokens.len()))
                .sum();
            edits += 1;
            touched += size;
            worst = worst.max(size);
        }
    }
    eprintln!(
        "{edits} single-char edits: mean hunk {:.2} tokens, worst {worst}",
        touched as f64 / edits as f64
    );
    assert!(worst <= 8, "a one-character edit replaced {worst} tokens");
}
