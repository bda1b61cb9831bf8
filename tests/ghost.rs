//! Ghost text through the real route: the engine thread streams chunks (a
//! stand-in backend, for determinism) to the `Predictor`, which shows them
//! at the cursor in the theme's ghost style (first line inline, the rest as
//! virtual lines that push the real lines down), never in the buffer, and
//! drops a suggestion made for an older version of the document.

#[path = "common/stand_in.rs"]
mod stand_in;

use pie_edit::app::{App, ReplayEvents};
use pie_edit::predict::config::PredictConfig;
use pie_edit::replay::Script;
use pie_edit::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use stand_in::{StandIn, app_on, app_with};

fn row(terminal: &Terminal<TestBackend>, y: u16) -> String {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.width)
        .map(|x| buffer[(x, y)].symbol())
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn run(app: &mut App, terminal: &mut Terminal<TestBackend>, script: &str) {
    app.run(terminal, ReplayEvents::new(&Script::parse(script).unwrap()))
        .unwrap();
}

#[test]
fn ghost_text_is_drawn_inline_and_below_but_not_inserted() {
    let (backend, gate) = StandIn::new(vec!["return sum(xs)", "\n# done"]);
    // Both tokens stream without holding.
    for _ in 0..2 {
        gate.send(()).unwrap();
    }
    // The header is there already: a prediction asked for while typing it
    // would take the gate's two openings.
    let mut app = app_on("def total(xs):\nprint(total)\n", backend.spawn("stand-in"));
    let mut terminal = Terminal::new(TestBackend::new(50, 8)).unwrap();
    // Enter after a header is a syntactic trigger.
    run(
        &mut app,
        &mut terminal,
        "<wait-idle><End><Enter><wait-idle>",
    );
    let text_before = app.editor.doc.text();

    assert_eq!(row(&terminal, 0), "  1 def total(xs):");
    assert_eq!(row(&terminal, 1), "  2     return sum(xs)");
    assert_eq!(row(&terminal, 2), "    # done");
    assert_eq!(row(&terminal, 3), "  3 print(total)");
    assert!(
        row(&terminal, 6).contains("stand-in ready"),
        "{}",
        row(&terminal, 6)
    );
    let theme = Theme::default_dark();
    let buffer = terminal.backend().buffer();
    assert_eq!(
        buffer[(8, 1)].fg,
        theme.ghost.fg.unwrap(),
        "ghost style inline"
    );
    assert_eq!(
        buffer[(4, 2)].fg,
        theme.ghost.fg.unwrap(),
        "ghost style below"
    );
    assert_ne!(
        buffer[(4, 3)].fg,
        theme.ghost.fg.unwrap(),
        "real text is not ghost"
    );
    assert_eq!(
        app.editor.doc.text(),
        text_before,
        "ghost text never enters the rope"
    );
    let cursor = terminal.get_cursor_position().unwrap();
    assert_eq!(
        (cursor.x, cursor.y),
        (8, 1),
        "the cursor stays before the ghost text"
    );
}

#[test]
fn a_suggestion_made_for_an_older_version_is_dropped() {
    let (mut backend, gate) = StandIn::new(vec!["stale"]);
    // The prediction waits before its first chunk until the test lets it go.
    backend.hold_first = true;
    // Only Alt-\ asks, so that one prediction is in flight.
    let config = PredictConfig {
        debounce_ms: 0,
        trigger_languages: vec![],
        ..PredictConfig::default()
    };
    let mut app = app_with("\nprint(total)\n", backend.spawn("stand-in"), config);
    let mut terminal = Terminal::new(TestBackend::new(50, 8)).unwrap();
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def total(xs):<Enter><A-\\>",
    );
    assert_eq!(app.predictor.as_ref().unwrap().requests_sent(), 1);
    // A key while the suggestion is being made: the document moves on.
    run(&mut app, &mut terminal, "r");
    gate.send(()).unwrap();
    run(&mut app, &mut terminal, "<wait-idle>");
    assert_eq!(app.predictor.as_ref().unwrap().requests_sent(), 1);
    assert_eq!(row(&terminal, 1), "  2     r");
    assert_eq!(row(&terminal, 2), "  3 print(total)");
    assert!(app.editor.ghost().is_none_or(|g| !g.text.contains("stale")));
    // Any later prediction must not wait for the gate.
    drop(gate);
}

#[test]
fn the_engine_sees_every_edit_including_undo() {
    let (backend, _) = StandIn::new(vec![]);
    let edits = backend.edits.clone();
    let mut app = app_on("", backend.spawn("stand-in"));
    let mut terminal = Terminal::new(TestBackend::new(40, 6)).unwrap();
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>ab<C-z><C-y><wait-idle>",
    );
    assert_eq!(
        app.editor.doc.version(),
        6,
        "six edits: a, b, undo x2, redo x2"
    );
    let seen = edits.lock().unwrap();
    assert_eq!(seen.len(), 6, "{seen:?}");
    // Replaying the edit values on an empty rope rebuilds the buffer.
    let mut rope = ropey::Rope::new();
    for edit in seen.iter() {
        edit.apply_to(&mut rope);
    }
    assert_eq!(rope.to_string(), "ab");
    assert_eq!(seen[2].removed, "b", "undo arrives as the inverse edit");
}

// Issue 15: which suggestions are shown, and the alternatives.

/// The first suggestion and its alternatives, streamed without holding,
/// with `confidence`, on `text`, with `min_confidence`.
fn suggesting(
    text: &str,
    tokens: Vec<&'static str>,
    alternatives: Vec<&'static str>,
    confidence: f32,
    min_confidence: f32,
) -> (App, Terminal<TestBackend>) {
    let (mut backend, gate) = StandIn::new(tokens);
    backend.alternatives = alternatives;
    backend.confidence = confidence;
    // Open gate: every prediction streams to its end.
    std::mem::forget(gate.clone());
    for _ in 0..64 {
        gate.send(()).unwrap();
    }
    let config = PredictConfig {
        debounce_ms: 0,
        min_confidence: Some(min_confidence),
        ..PredictConfig::default()
    };
    let app = app_with(text, backend.spawn("stand-in"), config);
    (app, Terminal::new(TestBackend::new(50, 8)).unwrap())
}

fn shown(app: &App) -> Option<String> {
    app.editor.visible_ghost().map(|g| g.text.clone())
}

fn hidden_because(app: &App) -> Option<pie_edit::predict::suggest::Hidden> {
    app.predictor.as_ref().unwrap().last_hidden
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
    (0..terminal.backend().buffer().area.height)
        .map(|y| row(terminal, y))
        .collect::<Vec<_>>()
        .join("\n")
}

fn requests(app: &App) -> u64 {
    app.predictor.as_ref().unwrap().requests_sent()
}

#[test]
fn a_low_confidence_suggestion_is_hidden_and_alt_backslash_shows_it() {
    use pie_edit::predict::suggest::Hidden;
    let (mut app, mut terminal) = suggesting("\n", vec!["return sum(xs)"], vec![], 0.2, 0.5);
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def total(xs):<Enter><wait-idle>",
    );
    assert_eq!(
        app.predictor.as_ref().unwrap().last_trigger,
        Some(pie_edit::predict::trigger::Trigger::LineStart),
        "Enter asked"
    );
    assert_eq!(shown(&app), None, "0.2 is under the 0.5 threshold");
    assert_eq!(hidden_because(&app), Some(Hidden::Unsure));
    assert!(
        !screen(&terminal).contains("return"),
        "{}",
        screen(&terminal)
    );
    run(&mut app, &mut terminal, "<A-\\><wait-idle>");
    assert_eq!(shown(&app).as_deref(), Some("return sum(xs)"));
    assert_eq!(row(&terminal, 1), "  2     return sum(xs)");
}

/// A suggestion on `text` judged after its first token with `confidence`
/// (threshold 0.5); each token waits for the test's gate after it. The
/// scripts only press Enter (at the end of the header in `text`): a
/// prediction asked for while typing it would hold the gate.
fn judged_early(
    text: &str,
    tokens: Vec<&'static str>,
    confidence: f32,
) -> (App, Terminal<TestBackend>, crossbeam_channel::Sender<()>) {
    let (mut backend, gate) = StandIn::new(tokens);
    backend.confidence = confidence;
    backend.verdict_after = Some(1);
    let config = PredictConfig {
        debounce_ms: 0,
        min_confidence: Some(0.5),
        ..PredictConfig::default()
    };
    let app = app_with(text, backend.spawn("stand-in"), config);
    (app, Terminal::new(TestBackend::new(50, 8)).unwrap(), gate)
}

#[test]
fn a_confident_verdict_brings_the_suggestion_into_view_and_it_streams_on() {
    let (mut app, mut terminal, gate) =
        judged_early("def total(xs):\n", vec!["return", " sum", "(xs)"], 0.9);
    run(
        &mut app,
        &mut terminal,
        "<wait-idle><End><Enter><wait:300ms>",
    );
    // Judged after its first token: in view before the rest has come.
    assert_eq!(shown(&app).as_deref(), Some("return"));
    assert_eq!(row(&terminal, 1), "  2     return");
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    run(&mut app, &mut terminal, "<wait-idle>");
    assert_eq!(shown(&app).as_deref(), Some("return sum(xs)"));
    assert_eq!(row(&terminal, 1), "  2     return sum(xs)");
}

/// Enter at the end of the header in `text`; the verdict (`confidence`)
/// comes after the first of two tokens. Returns why it was hidden then,
/// and the app once both tokens have come.
fn hidden_at_the_verdict(
    text: &str,
    confidence: f32,
) -> (
    Option<pie_edit::predict::suggest::Hidden>,
    App,
    Terminal<TestBackend>,
) {
    let (mut app, mut terminal, gate) = judged_early(text, vec!["return", " sum(xs)"], confidence);
    run(
        &mut app,
        &mut terminal,
        "<wait-idle><End><Enter><wait:300ms>",
    );
    let why = hidden_because(&app);
    for _ in 0..2 {
        gate.send(()).unwrap();
    }
    run(&mut app, &mut terminal, "<wait-idle>");
    (why, app, terminal)
}

#[test]
fn an_unsure_verdict_hides_the_suggestion_before_it_is_complete() {
    use pie_edit::predict::suggest::Hidden;
    let (why, app, terminal) = hidden_at_the_verdict("def total(xs):\n", 0.3);
    assert_eq!(why, Some(Hidden::Unsure));
    assert_eq!(shown(&app), None);
    assert!(
        !screen(&terminal).contains("return"),
        "{}",
        screen(&terminal)
    );
}

#[test]
fn a_suggestion_judged_on_its_way_to_repeating_the_line_below_is_hidden() {
    use pie_edit::predict::suggest::Hidden;
    let (why, app, _) = hidden_at_the_verdict("def total(xs):\n    return sum(xs)\n", 0.9);
    assert_eq!(why, Some(Hidden::Repeats));
    assert_eq!(shown(&app), None);
}

#[test]
fn a_confident_suggestion_is_shown_at_the_trigger() {
    let (mut app, mut terminal) = suggesting("\n", vec!["return sum(xs)"], vec![], 0.7, 0.5);
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def total(xs):<Enter><wait-idle>",
    );
    assert_eq!(shown(&app).as_deref(), Some("return sum(xs)"));
    assert_eq!(hidden_because(&app), None);
}

#[test]
fn a_suggestion_that_repeats_the_line_below_or_above_is_hidden() {
    use pie_edit::predict::suggest::Hidden;
    // The line below the new line is `return sum(xs)`.
    let (mut app, mut terminal) = suggesting(
        "\n    return sum(xs)\n",
        vec!["return sum(xs)"],
        vec![],
        1.0,
        0.0,
    );
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def total(xs):<Enter><wait-idle>",
    );
    assert_eq!(shown(&app), None);
    assert_eq!(hidden_because(&app), Some(Hidden::Repeats));
    // The line above: a fresh line after `x = compute(y)`.
    let (mut app, mut terminal) = suggesting("\n", vec!["x = compute(y)"], vec![], 1.0, 0.0);
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def f(y):<Enter>x = compute(y)<Enter><wait-idle>",
    );
    assert_eq!(shown(&app), None);
    assert_eq!(hidden_because(&app), Some(Hidden::Repeats));
    // Something else is shown there.
    let (mut app, mut terminal) = suggesting("\n", vec!["return x"], vec![], 1.0, 0.0);
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def f(y):<Enter>x = compute(y)<Enter><wait-idle>",
    );
    assert_eq!(shown(&app).as_deref(), Some("return x"));
}

#[test]
fn blank_and_closing_bracket_suggestions_are_hidden_at_automatic_triggers_only() {
    use pie_edit::predict::suggest::Hidden;
    for (token, why) in [("   ", Hidden::Blank), ("})", Hidden::OnlyClosing)] {
        let (mut app, mut terminal) = suggesting("\n", vec![token], vec![], 1.0, 0.0);
        run(
            &mut app,
            &mut terminal,
            "<wait-idle>def total(xs):<Enter><wait-idle>",
        );
        assert_eq!(shown(&app), None, "{token:?}");
        assert_eq!(hidden_because(&app), Some(why), "{token:?}");
    }
    // Asked for, a closing bracket is shown.
    let (mut app, mut terminal) = suggesting("\n", vec!["})"], vec![], 1.0, 0.0);
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def total(xs):<Enter><wait-idle><A-\\><wait-idle>",
    );
    assert_eq!(shown(&app).as_deref(), Some("})"));
}

/// A function header typed and Enter: three choices at the new line.
fn three_choices() -> (App, Terminal<TestBackend>) {
    let (mut app, mut terminal) = suggesting(
        "\n",
        vec!["return sum(xs)"],
        vec!["return 0", "pass"],
        1.0,
        0.0,
    );
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def total(xs):<Enter><wait-idle>",
    );
    (app, terminal)
}

#[test]
fn alt_brackets_cycle_the_alternatives_with_wrap_around_and_ask_nothing() {
    let (mut app, mut terminal) = three_choices();
    assert_eq!(shown(&app).as_deref(), Some("return sum(xs)"));
    assert!(screen(&terminal).contains("1/3"), "{}", screen(&terminal));
    let asked = requests(&app);
    let steps = [
        ("<A-]>", "return 0", "2/3"),
        ("<A-]>", "pass", "3/3"),
        ("<A-]>", "return sum(xs)", "1/3"),
        ("<A-[>", "pass", "3/3"),
        ("<A-[>", "return 0", "2/3"),
    ];
    for (key, text, position) in steps {
        run(&mut app, &mut terminal, &format!("{key}<wait-idle>"));
        assert_eq!(shown(&app).as_deref(), Some(text), "after {key}");
        assert_eq!(row(&terminal, 1), format!("  2     {text}"));
        assert!(
            screen(&terminal).contains(position),
            "{}",
            screen(&terminal)
        );
    }
    assert_eq!(
        requests(&app),
        asked,
        "moving through alternatives asks nothing"
    );
}

#[test]
fn tab_accepts_the_alternative_shown() {
    let (mut app, mut terminal) = three_choices();
    run(&mut app, &mut terminal, "<A-]><Tab><wait-idle>");
    assert_eq!(app.editor.doc.text(), "def total(xs):\n    return 0\n");
    assert_eq!(shown(&app), None);
}

#[test]
fn typing_over_alternatives_keeps_only_the_ones_that_still_match() {
    let (mut app, mut terminal) = three_choices();
    let asked = requests(&app);
    run(&mut app, &mut terminal, "<A-]><A-]>re<wait-idle>");
    // `pass` was shown and no longer fits: the next that does is shown.
    assert_eq!(shown(&app).as_deref(), Some("turn sum(xs)"));
    assert!(screen(&terminal).contains("1/2"), "{}", screen(&terminal));
    run(&mut app, &mut terminal, "<A-]><wait-idle>");
    assert_eq!(shown(&app).as_deref(), Some("turn 0"));
    run(&mut app, &mut terminal, "turn 0<wait-idle>");
    assert_eq!(app.editor.doc.text(), "def total(xs):\n    return 0\n");
    assert_eq!(
        requests(&app),
        asked,
        "typing over a suggestion asks nothing"
    );
}

/// The alternatives take a while after the first suggestion. Typing what
/// the suggestion shows in the meantime (Enter over its line break, its
/// first letters) must not end the search for them: they still come, and
/// the ones that fit what was typed can be cycled to. A key that does not
/// fit ends it as before.
#[test]
fn alternatives_still_come_after_typing_over_the_suggestion_while_they_are_searched() {
    for (typed, fits) in [("ret", true), ("x", false)] {
        let (mut backend, gate) = StandIn::new(vec!["return sum(xs)"]);
        backend.alternatives = vec!["return 0", "pass"];
        backend.hold_alternatives = true;
        // The one token streams; the alternatives wait for the test.
        gate.send(()).unwrap();
        let config = PredictConfig {
            debounce_ms: 0,
            min_confidence: Some(0.5),
            ..PredictConfig::default()
        };
        let mut app = app_with("def total(xs):\n", backend.spawn("stand-in"), config);
        let mut terminal = Terminal::new(TestBackend::new(50, 8)).unwrap();
        run(
            &mut app,
            &mut terminal,
            "<wait-idle><End><Enter><wait:300ms>",
        );
        assert_eq!(shown(&app).as_deref(), Some("return sum(xs)"));
        let asked = requests(&app);
        run(&mut app, &mut terminal, &format!("{typed}<wait:100ms>"));
        gate.send(()).unwrap();
        run(&mut app, &mut terminal, "<wait-idle><A-]><wait-idle>");
        if fits {
            // `pass` does not fit `ret`; `return 0` does.
            assert_eq!(shown(&app).as_deref(), Some("urn 0"));
            assert!(screen(&terminal).contains("2/2"), "{}", screen(&terminal));
            assert_eq!(requests(&app), asked, "typing over it asks nothing");
            run(&mut app, &mut terminal, "<Tab><wait-idle>");
            assert_eq!(app.editor.doc.text(), "def total(xs):\n    return 0\n");
        } else {
            assert_eq!(shown(&app), None);
            assert!(app.editor.doc.text().contains("    x"));
        }
    }
}
