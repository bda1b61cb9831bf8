//! The real binary in a real terminal: tmux runs `pie-edit --record`, keys
//! are sent as a user types them, the screen is captured, the file checked;
//! then the recording replays headless to the same file.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn session_alive(name: &str) -> bool {
    Command::new("tmux")
        .args(["has-session", "-t", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_for_screen(name: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", name]);
        if screen.contains(needle) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "screen never showed {needle:?}:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send(name: &str, keys: &[&str]) {
    for key in keys {
        tmux(&["send-keys", "-t", name, key]);
        std::thread::sleep(Duration::from_millis(60));
    }
}

fn type_text(name: &str, text: &str) {
    tmux(&["send-keys", "-t", name, "-l", text]);
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn type_undo_search_save_quit_in_a_real_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is required for this test (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.py");
    let original = "def add(a, b):\n    return a + b\n";
    fs::write(&file, original).unwrap();
    let recording = dir.path().join("session.keys");
    let name = format!("pie-edit-test-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_pie-edit");
    let command = format!(
        "env XDG_DATA_HOME={d}/data XDG_CONFIG_HOME={d}/config {bin} --no-predict --record {rec} {file}",
        d = dir.path().display(),
        rec = recording.display(),
        file = file.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    let screen = wait_for_screen(&name, "demo.py");
    assert!(screen.contains("def add(a, b):"), "{screen}");

    send(&name, &["C-End"]);
    type_text(&name, "def mul(a, b):");
    send(&name, &["Enter"]);
    type_text(&name, "return a * b");
    wait_for_screen(&name, "    return a * b");
    send(&name, &["Enter"]);
    type_text(&name, "oops");
    send(&name, &["C-z"]);
    send(&name, &["C-f"]);
    type_text(&name, "add");
    send(&name, &["Enter"]);
    type_text(&name, "plus");
    let screen = wait_for_screen(&name, "def plus(a, b):");
    assert!(
        !screen.contains("oops"),
        "undo removed the typed run:\n{screen}"
    );
    assert!(screen.contains("demo.py [+]"), "{screen}");
    send(&name, &["C-s"]);
    wait_for_screen(&name, "Saved demo.py");
    send(&name, &["C-q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while session_alive(&name) {
        assert!(Instant::now() < deadline, "pie-edit did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
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
