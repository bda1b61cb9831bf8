//! The edit benchmark (`pie-eval`) on the real default model: the same seed
//! gives the same samples and predictions, drawn edits are valid on real
//! files, and with f32 weights (where Full is stable to float rounding)
//! Pie followed by idle repair predicts exactly what Full predicts.

use std::path::Path;

use pie_edit::eval::corpus::{Corpus, Language};
use pie_edit::eval::run::{EvalOptions, Evaluator, Mode, SampleRecord, Setting};
use pie_edit::eval::simulate::{self, EditKind};
use pie_edit::model::source::DEFAULT_PRESET;
use pie_edit::model::{LoadOptions, Sampling, SlowQuant, UpdateMode};
use pie_edit::predict::mirror::{self, MirrorConfig};
use ropey::Rope;

const CONTEXT: usize = 256;

fn corpus() -> (tempfile::TempDir, Corpus) {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("assets/demo.py"), dir.path().join("demo.py")).unwrap();
    let corpus = Corpus::scan(dir.path(), Language::Python).unwrap();
    (dir, corpus)
}

fn evaluator(slow_quant: SlowQuant, seed: u64) -> Evaluator {
    let config = MirrorConfig {
        max_context: CONTEXT * 2,
        mode: UpdateMode::Pie,
        max_lines: 1,
        max_tokens: 32,
        sampling: Sampling::Greedy,
        ..MirrorConfig::default()
    };
    let load = LoadOptions {
        slow_quant,
        ..LoadOptions::default()
    };
    let (mirror, _) = mirror::load_with(DEFAULT_PRESET, config, &load, &|_| {}).unwrap();
    Evaluator::new(
        mirror,
        EvalOptions {
            seed,
            context_tokens: CONTEXT,
            repair_budget: None,
        },
    )
}

/// A record without its timings, which vary from run to run.
fn untimed(mut r: SampleRecord) -> SampleRecord {
    for o in &mut r.outcomes {
        o.update_ms = None;
        o.repair_ms = 0.0;
    }
    r
}

const SETTINGS: [Setting; 3] = [
    Setting::Single {
        kind: EditKind::Insertion,
    },
    Setting::Single {
        kind: EditKind::MultiPlace,
    },
    Setting::Sequential { steps: 3 },
];

#[test]
fn the_same_seed_gives_the_same_samples_and_predictions() {
    let (_dir, corpus) = corpus();
    let mut first = evaluator(SlowQuant::ToQ8_0, 5);
    let mut second = evaluator(SlowQuant::ToQ8_0, 5);
    for setting in SETTINGS {
        let a = untimed(first.run(&corpus, setting, 0).unwrap());
        // The same evaluator again (no state carried between samples), and
        // a fresh one.
        let b = untimed(first.run(&corpus, setting, 0).unwrap());
        let c = untimed(second.run(&corpus, setting, 0).unwrap());
        assert_eq!(a, b, "{setting:?}: rerun on the same evaluator differs");
        assert_eq!(a, c, "{setting:?}: rerun on a fresh evaluator differs");
        for o in &a.outcomes {
            println!(
                "{} {:?}: {:?} (target {:?})",
                a.id, o.mode, o.prediction, a.target.text
            );
        }
    }
    // Another seed or index draws another sample.
    let other = evaluator(SlowQuant::ToQ8_0, 6);
    let setting = SETTINGS[0];
    let drawn = |ev: &Evaluator, i| ev.draw(&corpus, setting, i).unwrap();
    assert_ne!(drawn(&first, 0), drawn(&other, 0));
    assert_ne!(drawn(&first, 0), drawn(&first, 1));
}

#[test]
fn drawn_targets_and_edits_are_valid_on_a_real_file() {
    let (dir, corpus) = corpus();
    let ev = evaluator(SlowQuant::ToQ8_0, 9);
    let file = std::fs::read_to_string(dir.path().join("demo.py")).unwrap();
    let lines: Vec<&str> = file.split_inclusive('\n').collect();
    for kind in EditKind::ALL {
        for i in 0..8 {
            let (target, steps) = ev.draw(&corpus, Setting::Single { kind }, i).unwrap();
            // The target is the file's line, the context what precedes it.
            assert_eq!(lines[target.line - 1].trim_end(), target.text);
            assert!(simulate::is_nontrivial(&target.text));
            assert!(lines[..target.line - 1].concat().ends_with(&target.context));
            assert!(ev.count_tokens(&target.context) <= CONTEXT);
            assert_eq!(steps.len(), 1);
            // The text edits the engine receives produce the edited context.
            let mut rope = Rope::from_str(&target.context);
            for edit in simulate::text_edits(&target.context, &steps[0]) {
                edit.apply_to(&mut rope);
            }
            let edited = simulate::apply_line_edits(&target.context, &steps[0]);
            assert_eq!(rope.to_string(), edited);
            assert_ne!(
                edited, target.context,
                "{kind:?} {i}: the edit changes the context"
            );
        }
    }
}

#[test]
fn with_f32_weights_pie_plus_repair_predicts_what_full_predicts() {
    let (_dir, corpus) = corpus();
    let mut ev = evaluator(SlowQuant::ToF32, 3);
    let mut pie_same = 0;
    let mut total = 0;
    for setting in SETTINGS {
        for i in 0..2 {
            let r = ev.run(&corpus, setting, i).unwrap();
            let full = r.outcome(Mode::Full).unwrap();
            let repaired = r.outcome(Mode::PieRepair).unwrap();
            let pie = r.outcome(Mode::Pie).unwrap();
            assert!(repaired.repaired > 0, "{}: nothing was repaired", r.id);
            assert_eq!(
                repaired.prediction, full.prediction,
                "{}: Pie+repair should predict exactly what Full does",
                r.id
            );
            pie_same += (pie.prediction == full.prediction) as usize;
            total += 1;
        }
    }
    println!("Pie without repair gave Full's suggestion in {pie_same}/{total} samples");
}

/// Issue 15's benchmark: a sample depends on the seed only, and its
/// alternatives are distinct from the first suggestion.
#[test]
fn suggestion_samples_repeat_and_carry_distinct_alternatives() {
    use pie_edit::eval::suggest::{Cursor, Half, Trigger, run_sample};
    let (_dir, corpus) = corpus();
    let config = MirrorConfig {
        max_context: CONTEXT * 2,
        ..MirrorConfig::default()
    };
    let (mut mirror, _) =
        mirror::load_with(DEFAULT_PRESET, config, &LoadOptions::default(), &|_| {}).unwrap();
    let trigger = Trigger {
        half: Half::of(&corpus.files[0]),
        seed: 3,
        context_tokens: CONTEXT,
        choices: 3,
        cursor: Cursor::Enter,
    };
    let run = |mirror: &mut _, index| {
        let mut r = run_sample(mirror, &corpus, index, trigger).unwrap();
        (r.first_ms, r.total_ms) = (0.0, 0.0);
        if let Some(verdict) = r.verdict.as_mut() {
            verdict.ms = 0.0;
        }
        r
    };
    let a = run(&mut mirror, 0);
    assert_eq!(run(&mut mirror, 0), a, "same seed, same sample");
    assert!(!a.choices.is_empty() && a.choices.len() <= 3, "{a:?}");
    let firsts: std::collections::HashSet<&str> = a
        .choices
        .iter()
        .map(|c| c.text.trim().lines().next().unwrap_or(""))
        .collect();
    assert_eq!(firsts.len(), a.choices.len());
    // The verdict judged the first suggestion's first 8 tokens, or all of
    // it when it is shorter.
    let verdict = a.verdict.expect("a verdict");
    let first = &a.choices[0];
    assert!(verdict.chars <= first.text.chars().count(), "{a:?}");
    if verdict.complete {
        assert_eq!(verdict.confidence, first.confidence);
    } else {
        assert_eq!(
            verdict.confidence.tokens,
            MirrorConfig::default().verdict_tokens
        );
        assert!(first.confidence.tokens > verdict.confidence.tokens, "{a:?}");
    }
    let lines: Vec<&str> = std::fs::read_to_string(corpus.root.join(&a.target.file))
        .unwrap()
        .leak()
        .lines()
        .collect();
    assert_eq!(lines[a.target.line - 1], a.target.text);
    assert!(a.typed.chars().all(|c| c == ' ' || c == '\t'), "{a:?}");
    assert_eq!(a.line_below.as_deref(), lines.get(a.target.line).copied());
}
