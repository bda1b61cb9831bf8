//! Suggestions in a real terminal, with the real model: the keys tmux sends
//! for asking, cycling and accepting reach the editor as those keys.

#[path = "common/tmux.rs"]
mod tmux;

use tmux::Term;

/// The status line's `shown/of`, when it shows which alternative is shown.
fn alternative(screen: &str) -> Option<(usize, usize)> {
    let status = screen.lines().rev().find(|l| !l.trim().is_empty())?;
    status.split_whitespace().find_map(|word| {
        let (shown, of) = word.split_once('/')?;
        Some((shown.parse().ok()?, of.parse().ok()?))
    })
}

/// The text on screen row `row` after the line-number gutter.
fn row_text(screen: &str, row: usize) -> String {
    let line = screen.lines().nth(row).unwrap_or("");
    line.trim_start()
        .split_once(' ')
        .map_or("", |(_, text)| text)
        .trim_end()
        .to_string()
}

/// Alt-n and Alt-p cycle the alternatives in tmux, which sends Alt-[ as the
/// start of an escape sequence (so Alt-[ never arrives, and takes the next
/// key with it); the key after them arrives, and Tab takes the one shown.
#[test]
fn alternatives_cycle_with_alt_n_and_alt_p_in_a_real_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.py");
    let code = "def mean(xs):\n    return sum(xs) / len(xs)\n\n\ndef median(xs):\n    xs = sorted(xs)\n    return xs[len(xs) // 2]\n\n\n";
    std::fs::write(&file, code).unwrap();
    let args = format!(
        "--model {} {}",
        tmux::default_model().display(),
        file.display()
    );
    let term = Term::start_sized(dir.path(), "alternatives", "", &args, (120, 24));
    term.wait_within(180, "ready", |s| {
        s.contains(" ready") && !s.contains("reading")
    });
    term.send(&["C-End"]);
    term.type_text("def total(xs):");
    term.send(&["Enter", "M-\\"]);
    let screen = term.wait_within(120, "alternatives in the status line", |s| {
        alternative(s).is_some()
    });
    let (shown, of) = alternative(&screen).unwrap();
    assert_eq!(shown, 1, "{screen}");
    assert!(of >= 2, "{screen}");
    // Row 0 is line 1: the suggestion is on line 11, after the new def.
    let first = row_text(&screen, 10);
    assert!(!first.trim().is_empty(), "{screen}");

    term.send(&["M-n"]);
    let screen = term.wait_within(10, "2/N", |s| alternative(s) == Some((2, of)));
    assert_ne!(row_text(&screen, 10), first, "{screen}");
    term.send(&["M-p"]);
    term.wait_within(10, "back at 1/N", |s| alternative(s) == Some((1, of)));
    term.send(&["M-p"]);
    let screen = term.wait_within(10, "N/N (wrapped)", |s| alternative(s) == Some((of, of)));
    let last = row_text(&screen, 10);
    term.send(&["Tab", "C-s"]);
    term.wait_within(10, "saved", |s| s.contains("Saved"));
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.ends_with(&format!("def total(xs):\n    {}", last.trim())),
        "Tab took the alternative shown ({last:?}):\n{saved}"
    );
    term.send(&["C-q"]);
    assert_eq!(term.wait_exit(), 0);
}
