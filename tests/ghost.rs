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
    let mut app = app_on("\nprint(total)\n", backend.spawn("stand-in"));
    let mut terminal = Terminal::new(TestBackend::new(50, 8)).unwrap();
    // Enter after a header is a syntactic trigger.
    run(
        &mut app,
        &mut terminal,
        "<wait-idle>def total(xs):<Enter><wait-idle>",
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
