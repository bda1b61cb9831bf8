//! The real binary in a real terminal: tmux runs `pie-edit --record`, keys
//! are sent as a user types them, the screen is captured, the file checked;
//! then the recording replays headless to the same file.

#[path = "common/tmux.rs"]
mod tmux;

use std::fs;
use std::process::Command;

use tmux::Term;

#[test]
fn type_undo_search_save_quit_in_a_real_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.py");
    let original = "def add(a, b):\n    return a + b\n";
    fs::write(&file, original).unwrap();
    let recording = dir.path().join("session.keys");
    let bin = env!("CARGO_BIN_EXE_pie-edit");
    let term = Term::start(
        dir.path(),
        "record",
        &format!(
            "--no-predict --record {} {}",
            recording.display(),
            file.display()
        ),
    );
    let screen = term.wait_for("demo.py");
    assert!(screen.contains("def add(a, b):"), "{screen}");

    term.send(&["C-End"]);
    term.type_text("def mul(a, b):");
    term.send(&["Enter"]);
    term.type_text("return a * b");
    term.wait_for("    return a * b");
    term.send(&["Enter"]);
    term.type_text("oops");
    term.send(&["C-z"]);
    term.send(&["C-f"]);
    term.type_text("add");
    term.send(&["Enter"]);
    term.type_text("plus");
    let screen = term.wait_for("def plus(a, b):");
    assert!(
        !screen.contains("oops"),
        "undo removed the typed run:\n{screen}"
    );
    assert!(screen.contains("demo.py [+]"), "{screen}");
    term.send(&["C-s"]);
    term.wait_for("Saved demo.py");
    term.send(&["C-q"]);
    assert_eq!(term.wait_exit(), 0, "pie-edit quit");
    // Undo removed the last typed line together with the Enter that opened it.
    let expected = "def plus(a, b):\n    return a + b\ndef mul(a, b):\n    return a * b";
    assert_eq!(fs::read_to_string(&file).unwrap(), expected);

    // The recording replays headless to the same file.
    let copy = dir.path().join("copy").join("demo.py");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    fs::write(&copy, original).unwrap();
    let out = Command::new(bin)
        .args([
            "--replay",
            recording.to_str().unwrap(),
            copy.to_str().unwrap(),
        ])
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(fs::read_to_string(&copy).unwrap(), expected);
}
