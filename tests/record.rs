//! A recorded session replays to the same result: the recorder wraps an
//! event source exactly as `--record` wraps the terminal.

use std::fs;

use pie_edit::app::{App, Recorder, ReplayEvents};
use pie_edit::editor::{Document, Editor, EditorOptions, Keymap};
use pie_edit::replay::Script;
use pie_edit::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn run(path: &std::path::Path, script: &Script, record_to: Option<&std::path::Path>) -> String {
    let doc = Document::open(path).unwrap();
    let mut app = App::new(
        Editor::new(doc, EditorOptions::default(), Keymap::default()),
        Theme::default_dark(),
    );
    let mut terminal = Terminal::new(TestBackend::new(60, 12)).unwrap();
    match record_to {
        Some(out) => app
            .run(
                &mut terminal,
                Recorder::new(ReplayEvents::new(script), out).unwrap(),
            )
            .unwrap(),
        None => app.run(&mut terminal, ReplayEvents::new(script)).unwrap(),
    }
    app.editor.doc.text()
}

#[test]
fn a_recorded_session_replays_to_the_same_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let original = "def f(x):\n    return x\n";
    let first = dir.path().join("first.py");
    let second = dir.path().join("second.py");
    fs::write(&first, original).unwrap();
    fs::write(&second, original).unwrap();
    let session = Script::parse(
        "<C-End>def g(y):<Enter>return<wait:30ms> y<lt>2 # <Enter><BS>\
         <C-f>return<Enter><S-End><C-c><C-End><C-v><C-z><C-y><click:8,1>#<paste:eAp5><#>",
    )
    .unwrap();
    let recording = dir.path().join("session.keys");
    let live = run(&first, &session, Some(&recording));
    let recorded = fs::read_to_string(&recording).unwrap();
    assert!(
        recorded.contains("<wait:"),
        "pauses are recorded: {recorded}"
    );
    let replayed = run(&second, &Script::parse(&recorded).unwrap(), None);
    assert_eq!(replayed, live);
    assert_ne!(live, original);
}
