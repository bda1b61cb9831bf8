//! Token alignment cost per edit on a ~2k-token real Python window, against
//! re-tokenizing the whole window; and the token-healing logit filter.
//!
//! `cargo bench --bench align` (add `--profile dev` to reuse the dev build:
//! dependencies at opt-level 3, this crate at 1).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use pie_edit::model::Tokenizer;
use pie_edit::model::source::ensure_default_model;
use pie_edit::predict::align::AlignedText;
use pie_edit::predict::healing::{self, HealingFilter};
use pie_edit::text::Edit;
use ropey::Rope;

fn python_window(tokenizer: &Tokenizer) -> String {
    let stdlib = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .expect("python3 (a CI prerequisite) names its standard library");
    let path =
        std::path::PathBuf::from(String::from_utf8_lossy(&stdlib.stdout).trim()).join("difflib.py");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    // Grow by lines to about 2048 tokens.
    let mut end = 0;
    for line in source.split_inclusive('\n') {
        end += line.len();
        if tokenizer.encode(&source[..end]).len() >= 2048 {
            break;
        }
    }
    source[..end].to_string()
}

fn bench_align(c: &mut Criterion) {
    let files = ensure_default_model().expect("default model");
    let tokenizer = Tokenizer::from_gguf(&files.weights).expect("tokenizer");
    let text = python_window(&tokenizer);
    let rope = Rope::from_str(&text);
    let aligned = AlignedText::new(&tokenizer, text.clone());
    eprintln!(
        "window: {} bytes, {} tokens",
        text.len(),
        aligned.tokens().len()
    );

    let middle = rope.len_chars() / 2;
    let blank_line = text[text.len() / 2..]
        .find("\n\n")
        .map(|i| text.len() / 2 + i)
        .unwrap();
    let cases: Vec<(&str, Vec<Edit>)> = vec![
        ("insert char mid", vec![Edit::insert(&rope, middle, "x")]),
        (
            "delete blank line mid",
            vec![Edit::delete(
                &rope,
                rope.byte_to_char(blank_line),
                rope.byte_to_char(blank_line) + 1,
            )],
        ),
        (
            "insert line mid",
            vec![Edit::insert(
                &rope,
                rope.line_to_char(rope.len_lines() / 2),
                "    total = 0\n",
            )],
        ),
        ("multi-place (3 edits)", {
            let mut r = rope.clone();
            let mut edits = Vec::new();
            for (at, ins) in [(0.2, "a"), (0.5, "\n"), (0.8, "  ")] {
                let e = Edit::insert(&r, (r.len_chars() as f64 * at) as usize, ins);
                e.apply_to(&mut r);
                edits.push(e);
            }
            edits
        }),
    ];

    c.bench_function("full re-tokenize (2k tokens)", |b| {
        b.iter(|| tokenizer.encode(&text))
    });
    for (name, edits) in &cases {
        c.bench_function(&format!("align: {name}"), |b| {
            b.iter_batched(
                || aligned.clone(),
                |mut a| a.apply(&tokenizer, edits).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }

    let prefix = "def f(x):\n    ";
    let healed = AlignedText::new(&tokenizer, prefix);
    let plan = healing::plan(&healed, &tokenizer, prefix.len()).unwrap();
    let filter = HealingFilter::new(&tokenizer, &plan);
    let mut logits = vec![0.0f32; tokenizer.vocab_size()];
    c.bench_function("healing filter, first step after `\\n    `", |b| {
        b.iter(|| filter.apply(&[], &mut logits))
    });
}

criterion_group!(benches, bench_align);
criterion_main!(benches);
