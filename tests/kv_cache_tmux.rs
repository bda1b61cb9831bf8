//! The real binary in tmux reopens a file from the KV cache it kept on
//! quitting: "ready" without "reading the buffer" in between.

#[path = "common/tmux.rs"]
mod tmux;

use std::path::Path;
use std::time::{Duration, Instant};

use tmux::Term;

/// Watch the status line until `done(screen, read so far)`; whether it
/// showed the buffer being read on the way ("reading the buffer", or the
/// background encoding's "reading N%").
fn watch(term: &Term, done: impl Fn(&str, bool) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut read = false;
    loop {
        let screen = term.screen();
        read |= screen.contains("reading");
        if done(&screen, read) {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "the buffer was never mirrored:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn entries(home: &Path) -> usize {
    pie_edit::predict::kv_disk::entries(&home.join("cache/pie-edit/kv")).len()
}

#[test]
fn a_reopened_file_is_ready_without_reading_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.py");
    // Enough of demo.py to take a visible while to encode in a debug build.
    let demo = std::fs::read_to_string("assets/demo.py").unwrap();
    let part: String = demo.split_inclusive('\n').take(80).collect();
    std::fs::write(&file, part).unwrap();
    let args = format!(
        "--model {} {}",
        tmux::default_model().display(),
        file.display()
    );

    let term = Term::start_sized(dir.path(), "kv-cold", "", &args, (120, 24));
    // The model's own "ready" comes before the buffer is read: wait for
    // the reading, then for it to end.
    watch(&term, |screen, read| {
        read && screen.contains(" ready") && !screen.contains("reading")
    });
    assert_eq!(entries(dir.path()), 0, "nothing is written before a save");
    // The first save after a cold open keeps the encoding (it all changed
    // since the last write), while the editor runs on.
    term.send(&["C-End"]);
    term.type_text("z = 1");
    term.send(&["C-s"]);
    term.wait_for("Saved");
    let deadline = Instant::now() + Duration::from_secs(30);
    while entries(dir.path()) == 0 {
        assert!(Instant::now() < deadline, "the save wrote no cache entry");
        std::thread::sleep(Duration::from_millis(20));
    }
    term.send(&["C-q"]);
    assert_eq!(term.wait_exit(), 0);
    drop(term);
    assert_eq!(entries(dir.path()), 1, "one entry for the file");

    let term = Term::start_sized(dir.path(), "kv-warm", "", &args, (120, 24));
    // A warm open reports the cache it restored (its token count) at once;
    // a cold one says "reading the buffer", then "reading N%" while it
    // encodes the rest in the background.
    assert!(
        !watch(&term, |screen, _| screen.contains(" ready")
            && screen.contains("tok PIE")),
        "the reopen read the buffer again:\n{}",
        term.screen()
    );
    term.send(&["C-q"]);
    assert_eq!(term.wait_exit(), 0);
}
