//! Nothing the user typed is lost, tried with the real binary in tmux:
//! pasted line endings, signals, `kill -9` and the swap file, a second
//! editor on the same file, files changed or deleted on disk, and messages
//! that must be read in full. Each runs on LF, CRLF and no-final-newline
//! files where the bytes could differ.

#[path = "common/tmux.rs"]
mod tmux;

use std::fs;
use std::path::Path;
use std::time::Duration;

use tmux::{Term, swap_files, swap_text};

/// A config with a short swap pause, so the tests need not wait long.
fn quick_swap_config(home: &Path) -> String {
    let config = home.join("config.toml");
    fs::write(&config, "swap_after_ms = 300\n").unwrap();
    format!("--no-predict --config {}", config.display())
}

fn quit_saved(term: &Term) {
    term.send(&["C-q"]);
    assert_eq!(term.wait_exit(), 0);
}

#[test]
fn a_multi_line_paste_takes_the_buffer_line_ending_and_is_one_undo_step() {
    let cases = [
        ("lf", "x\n", "x\none\ntwo\nthree\n"),
        ("crlf", "x\r\n", "x\r\none\r\ntwo\r\nthree\r\n"),
        ("nonl", "x", "xone\ntwo\nthree\n"),
    ];
    for (tag, before, after) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pe.txt");
        fs::write(&file, before).unwrap();
        let term = Term::start(
            dir.path(),
            &format!("paste-{tag}"),
            &format!("--no-predict {}", file.display()),
        );
        term.wait_for("pe.txt");
        term.send(&["C-End"]);
        term.paste("one\ntwo\nthree\n");
        term.wait_for("three");
        term.send(&["C-z"]);
        term.wait_until("the paste undone", |s| !s.contains("three"));
        term.paste("one\ntwo\nthree\n");
        term.wait_for("three");
        term.send(&["C-s"]);
        term.wait_for("Saved pe.txt");
        quit_saved(&term);
        assert_eq!(
            String::from_utf8(fs::read(&file).unwrap()).unwrap(),
            after,
            "{tag}"
        );
    }
}

/// TERM, HUP and INT keep the unsaved text in the swap file, restore the
/// terminal and exit with 128 + the signal's number; reopening offers it.
#[test]
fn signals_keep_the_unsaved_text_and_restore_the_terminal() {
    let cases = [
        ("TERM", 143, "a\n", "typed a\n"),
        ("HUP", 129, "a\r\nb\r\n", "typed a\r\nb\r\n"),
        ("INT", 130, "no newline", "typed no newline"),
    ];
    for (signal, status, before, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        fs::write(&file, before).unwrap();
        let term = Term::start(
            dir.path(),
            &format!("sig-{signal}"),
            &format!("--no-predict {}", file.display()),
        );
        term.wait_for("notes.txt");
        term.type_text("typed ");
        term.wait_for("notes.txt [+]");
        term.kill(signal);
        assert_eq!(term.wait_exit(), status, "exit status after SIG{signal}");
        term.assert_terminal_restored();
        assert!(
            term.screen().contains("unsaved changes were written to"),
            "{}",
            term.screen()
        );
        assert_eq!(
            fs::read(&file).unwrap(),
            before.as_bytes(),
            "file untouched"
        );
        let swaps = swap_files(dir.path());
        assert_eq!(swaps.len(), 1, "{swaps:?}");
        assert_eq!(swap_text(&swaps[0]), expected, "SIG{signal}");

        // The next open offers the changes; `r` takes them, Ctrl-S saves.
        drop(term);
        let term = Term::start(
            dir.path(),
            &format!("sig-{signal}-reopen"),
            &format!("--no-predict {}", file.display()),
        );
        term.wait_for_wrapped("Unsaved changes of a pie-edit that ended");
        term.send(&["r"]);
        term.wait_for("typed");
        term.send(&["C-s"]);
        term.wait_for("Saved notes.txt");
        quit_saved(&term);
        assert_eq!(fs::read(&file).unwrap(), expected.as_bytes());
        assert!(swap_files(dir.path()).is_empty(), "no swap after a save");
    }
}

/// Closing the terminal window (here: killing its tmux session) hangs up
/// the terminal under the editor; the text typed is kept all the same.
#[test]
fn closing_the_terminal_keeps_the_unsaved_text() {
    for (tag, before) in [("lf", "a\n"), ("crlf", "a\r\n"), ("nonl", "a")] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("closed.txt");
        fs::write(&file, before).unwrap();
        let args = format!("--no-predict {}", file.display());
        let term = Term::start(dir.path(), &format!("close-{tag}"), &args);
        term.wait_for("closed.txt");
        term.type_text("typed ");
        term.wait_for("closed.txt [+]");
        let pid = term.editor_pid();
        drop(term);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}/status"))
            .exists()
            .then(|| fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default())
            .is_some_and(|status| !status.contains("zombie"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "pie-edit still runs after its terminal closed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let swaps = swap_files(dir.path());
        assert_eq!(swaps.len(), 1, "{tag}: {swaps:?}");
        assert_eq!(swap_text(&swaps[0]), format!("typed {before}"), "{tag}");
        assert_eq!(fs::read(&file).unwrap(), before.as_bytes());
    }
}

/// `kill -9` cannot be caught: the swap written after the last pause is
/// what survives.
#[test]
fn after_kill_9_reopening_recovers_all_but_the_last_pause() {
    for (tag, before) in [("lf", "def f():\n    pass\n"), ("crlf", "x = 1\r\n")] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("work.py");
        fs::write(&file, before).unwrap();
        let args = format!("{} {}", quick_swap_config(dir.path()), file.display());
        let term = Term::start(dir.path(), &format!("kill9-{tag}"), &args);
        term.wait_for("work.py");
        term.type_text("kept = 1 ");
        // A pause longer than swap_after_ms writes the snapshot...
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while swap_files(dir.path()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "no swap written");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            swap_text(&swap_files(dir.path())[0]),
            format!("kept = 1 {before}")
        );
        // ...and what is typed after it, without a pause, may be lost.
        term.type_text("lost");
        term.kill("KILL");
        term.wait_exit();
        drop(term);

        let term = Term::start(dir.path(), &format!("kill9-{tag}-reopen"), &args);
        term.wait_for_wrapped("(r)ecover them");
        term.send(&["r"]);
        term.wait_for("kept = 1");
        term.send(&["C-s"]);
        term.wait_for("Saved work.py");
        quit_saved(&term);
        let saved = fs::read_to_string(&file).unwrap();
        assert_eq!(saved, format!("kept = 1 {before}"), "{tag}");
        assert!(swap_files(dir.path()).is_empty());
    }
}

#[test]
fn a_leftover_swap_can_be_kept_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    fs::write(&file, "disk\n").unwrap();
    let args = format!("{} {}", quick_swap_config(dir.path()), file.display());
    let term = Term::start(dir.path(), "leftover", &args);
    term.wait_for("a.txt");
    term.type_text("unsaved ");
    term.wait_until("a swap", |_| !swap_files(dir.path()).is_empty());
    term.kill("KILL");
    term.wait_exit();
    drop(term);

    // (o)pen as on disk: the swap stays for later.
    let term = Term::start(dir.path(), "leftover-open", &args);
    term.wait_for_wrapped("(o)pen the file, keep them");
    term.send(&["o"]);
    term.wait_for_wrapped("the unsaved changes stay in");
    assert!(term.screen().contains("disk"));
    quit_saved(&term);
    assert_eq!(swap_files(dir.path()).len(), 1);
    drop(term);

    // (d)elete: gone, and the next open asks nothing.
    let term = Term::start(dir.path(), "leftover-delete", &args);
    term.wait_for_wrapped("(d)elete them");
    term.send(&["d"]);
    term.wait_for("Deleted the unsaved changes");
    quit_saved(&term);
    assert!(swap_files(dir.path()).is_empty());
    assert_eq!(fs::read_to_string(&file).unwrap(), "disk\n");
}

#[test]
fn a_second_editor_on_the_same_file_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.txt");
    fs::write(&file, "x\n").unwrap();
    let args = format!("--no-predict {}", file.display());
    let first = Term::start(dir.path(), "first", &args);
    first.wait_for("shared.txt");
    let second = Term::start(dir.path(), "second", &args);
    second.wait_for_wrapped("is already open in another pie-edit");
    quit_saved(&second);
    quit_saved(&first);
    let markers = fs::read_dir(dir.path().join("data/pie-edit/swap"))
        .unwrap()
        .count();
    assert_eq!(markers, 0, "a clean quit leaves nothing in the swap dir");
}

#[test]
fn saving_over_a_file_changed_on_disk_asks_first() {
    for (tag, before) in [("lf", "mine\n"), ("crlf", "mine\r\n"), ("nonl", "mine")] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ext.txt");
        fs::write(&file, before).unwrap();
        let term = Term::start(
            dir.path(),
            &format!("ext-{tag}"),
            &format!("--no-predict {}", file.display()),
        );
        term.wait_for("ext.txt");
        term.type_text("k");
        term.wait_for("ext.txt [+]");
        fs::write(&file, "EXTERNAL\n").unwrap();
        // The editor notices by itself, and says so.
        term.wait_for_wrapped("changed on disk; Ctrl-S will ask");
        term.send(&["C-s"]);
        term.wait_for_wrapped("changed on disk since it was read");
        term.send(&["Escape"]);
        term.wait_for("Save cancelled");
        assert_eq!(fs::read_to_string(&file).unwrap(), "EXTERNAL\n");
        // Reload: the disk's text, and undo brings the buffer's back.
        term.send(&["C-s"]);
        term.wait_for_wrapped("(o)verwrite it (r)eload it");
        term.send(&["r"]);
        term.wait_for("EXTERNAL");
        term.send(&["C-z"]);
        term.wait_for("kmine");
        // The reload read the disk: saving now overwrites what it read
        // without asking.
        term.send(&["C-s"]);
        term.wait_for("Saved ext.txt");
        assert_eq!(fs::read(&file).unwrap(), format!("k{before}").as_bytes());
        // Overwrite: the buffer wins, in its own line ending.
        term.type_text("j");
        fs::write(&file, "EXTERNAL AGAIN\n").unwrap();
        term.send(&["C-s"]);
        term.wait_for_wrapped("(o)verwrite it");
        term.send(&["o"]);
        term.wait_for("Saved ext.txt");
        quit_saved(&term);
        assert_eq!(
            fs::read(&file).unwrap(),
            format!("jk{before}").as_bytes(),
            "{tag}"
        );
    }
}

#[test]
fn an_unmodified_buffer_follows_the_file_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("follow.txt");
    fs::write(&file, "before\r\n").unwrap();
    let term = Term::start(
        dir.path(),
        "follow",
        &format!("--no-predict {}", file.display()),
    );
    term.wait_for("before");
    fs::write(&file, "after a formatter ran\r\nno newline").unwrap();
    term.wait_for("after a formatter ran");
    term.wait_for_wrapped("changed on disk: reloaded it");
    // Still unmodified: quitting asks nothing, and the file stays.
    quit_saved(&term);
    assert_eq!(
        fs::read(&file).unwrap(),
        b"after a formatter ran\r\nno newline"
    );
}

#[test]
fn a_file_deleted_while_open_is_kept_and_created_again_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gone.txt");
    fs::write(&file, "precious\r\nno newline").unwrap();
    let term = Term::start(
        dir.path(),
        "deleted",
        &format!("--no-predict {}", file.display()),
    );
    term.wait_for("precious");
    fs::remove_file(&file).unwrap();
    term.wait_for_wrapped("was deleted on disk");
    // The buffer is now the only copy: quitting must ask.
    term.send(&["C-q"]);
    term.wait_for("Save before quitting?");
    term.send(&["Escape"]);
    term.send(&["C-s"]);
    term.wait_for_wrapped("created anew");
    quit_saved(&term);
    assert_eq!(fs::read(&file).unwrap(), b"precious\r\nno newline");
}

#[test]
fn a_long_message_is_shown_in_full_without_backtraces() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.py");
    fs::write(&file, "x = 1\n").unwrap();
    let not_gguf = dir.path().join("notes-renamed-to-a-rather-long-name.gguf");
    fs::write(&not_gguf, "just some text, not a model\n").unwrap();
    let empty = dir.path().join("empty.gguf");
    fs::write(&empty, "").unwrap();
    for (model, says) in [
        (
            &not_gguf,
            "notes-renamed-to-a-rather-long-name.gguf is not a GGUF model file",
        ),
        (&empty, "empty.gguf is empty (0 bytes), not a GGUF model"),
    ] {
        let term = Term::start_sized(
            dir.path(),
            "message",
            "RUST_BACKTRACE=1",
            &format!("--model {} {}", model.display(), file.display()),
            (50, 20),
        );
        let screen = term.wait_for_wrapped(says);
        assert!(screen.contains("Predictions off"), "{screen}");
        for fragment in ["stack backtrace", "backtrace", "at ./", "rustc/"] {
            assert!(
                !screen.contains(fragment),
                "{fragment:?} on screen:\n{screen}"
            );
        }
        quit_saved(&term);
    }
}

#[test]
fn the_view_scrolls_back_after_a_resize_to_one_cell() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wide.py");
    fs::write(&file, "first_line = 1\nsecond_line = 2\n").unwrap();
    let term = Term::start(
        dir.path(),
        "resize",
        &format!("--no-predict {}", file.display()),
    );
    term.wait_for("first_line = 1");
    term.send(&["End"]);
    tmux::tmux(&["resize-window", "-t", &term.name, "-x", "1", "-y", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux::tmux(&["resize-window", "-t", &term.name, "-x", "80", "-y", "24"]);
    let screen = term.wait_for("first_line = 1");
    assert!(screen.contains("second_line = 2"), "{screen}");
    quit_saved(&term);
}
