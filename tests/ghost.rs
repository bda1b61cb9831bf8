//! Ghost text: sent over the app's channel, drawn at the cursor in the
//! theme's ghost style (first line inline, the rest as virtual lines that
//! push the real lines down), never put in the buffer, and dropped when it
//! was made for an older version of the document.

use pie_edit::app::{App, AppMessage, ReplayEvents};
use pie_edit::editor::{Document, Editor, EditorOptions, Keymap};
use pie_edit::replay::Script;
use pie_edit::syntax::Language;
use pie_edit::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn row(terminal: &Terminal<TestBackend>, y: u16) -> String {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.width)
        .map(|x| buffer[(x, y)].symbol())
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[test]
fn ghost_text_is_drawn_inline_and_below_but_not_inserted() {
    let doc = Document::from_text("\nprint(total)\n", Some(Language::Python));
    let mut app = App::new(
        Editor::new(doc, EditorOptions::default(), Keymap::default()),
        Theme::default_dark(),
    );
    let mut terminal = Terminal::new(TestBackend::new(50, 8)).unwrap();
    app.run(
        &mut terminal,
        ReplayEvents::new(&Script::parse("def total(xs):<Enter>").unwrap()),
    )
    .unwrap();
    let text_before = app.editor.doc.text();
    let version = app.editor.doc.version();

    let sender = app.sender();
    sender
        .send(AppMessage::Ghost {
            version,
            text: Some("return sum(xs)\n# done".into()),
        })
        .unwrap();
    sender
        .send(AppMessage::PredictionStatus("SmolLM2 ready 42ms".into()))
        .unwrap();
    app.run(&mut terminal, ReplayEvents::new(&Script::default()))
        .unwrap();

    assert_eq!(row(&terminal, 0), "  1 def total(xs):");
    assert_eq!(row(&terminal, 1), "  2     return sum(xs)");
    assert_eq!(row(&terminal, 2), "    # done");
    assert_eq!(row(&terminal, 3), "  3 print(total)");
    assert!(
        row(&terminal, 6).contains("SmolLM2 ready 42ms"),
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

    // A suggestion made for an older version is dropped.
    app.run(
        &mut terminal,
        ReplayEvents::new(&Script::parse("r").unwrap()),
    )
    .unwrap();
    sender
        .send(AppMessage::Ghost {
            version,
            text: Some("stale".into()),
        })
        .unwrap();
    app.run(&mut terminal, ReplayEvents::new(&Script::default()))
        .unwrap();
    assert_eq!(row(&terminal, 1), "  2     r");
    assert_eq!(row(&terminal, 2), "  3 print(total)");
}

#[test]
fn change_listeners_see_every_edit_including_undo() {
    use std::sync::{Arc, Mutex};
    let doc = Document::from_text("", None);
    let mut app = App::new(
        Editor::new(doc, EditorOptions::default(), Keymap::default()),
        Theme::default_dark(),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    app.change_listeners.push(Box::new(move |editor, changes| {
        let mut seen = sink.lock().unwrap();
        for (version, edit) in changes {
            seen.push((*version, edit.clone()));
        }
        assert_eq!(editor.doc.version(), changes.last().unwrap().0);
    }));
    let mut terminal = Terminal::new(TestBackend::new(40, 6)).unwrap();
    app.run(
        &mut terminal,
        ReplayEvents::new(&Script::parse("ab<C-z><C-y>").unwrap()),
    )
    .unwrap();
    let seen = seen.lock().unwrap();
    let versions: Vec<u64> = seen.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    // Replaying the edit values on an empty rope rebuilds the buffer.
    let mut rope = ropey::Rope::new();
    for (_, edit) in seen.iter() {
        edit.apply_to(&mut rope);
    }
    assert_eq!(rope.to_string(), "ab");
    assert_eq!(seen[2].1.removed, "b", "undo arrives as the inverse edit");
}
