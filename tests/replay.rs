//! Replay runner: every `tests/replay/NAME.keys` script drives the real app
//! loop (the same `App::run` the terminal uses) on a ratatui `TestBackend`.
//!
//! Next to a script: `NAME.before` (the file opened, copied into a temp dir;
//! absent: a new file or a scratch buffer), `NAME.after` (the expected final
//! buffer), `NAME.config.toml` (a config file for the run). Directives in
//! the script (`#: key = value`):
//! - `open = NAME.py`: the file name in the temp dir (default: scratch buffer)
//! - `size = 80x24`
//! - `cursor = LINE:COL`: expected cursor, 1-based, COL in chars
//! - `saved = after | before`: the file on disk must equal `.after` / `.before`
//! - `modified = true | false`, `quit = true | false`
//! - `status = TEXT`: the last two screen rows contain TEXT
//! - `screen = text | styles`: insta snapshot of the screen
//! - `readonly = file | dir`: make the file or its directory read-only first
//! - `clipboard = TEXT`: an OSC 52 sequence carrying TEXT was produced

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use pie_edit::app::{App, ReplayEvents};
use pie_edit::config;
use pie_edit::editor::{Document, Editor};
use pie_edit::replay::Script;
use pie_edit::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn replay_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay")
}

fn screen_text(buffer: &ratatui::buffer::Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        let mut x = 0;
        while x < area.width {
            let symbol = buffer[(x, y)].symbol();
            line.push_str(symbol);
            // A wide char covers the next cell, which holds a placeholder.
            x += unicode_width::UnicodeWidthStr::width(symbol).max(1) as u16;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn run_script(name: &str) {
    let dir = replay_dir();
    let script_text = fs::read_to_string(dir.join(format!("{name}.keys"))).unwrap();
    let script = Script::parse(&script_text).unwrap_or_else(|e| panic!("{name}.keys: {e}"));
    let d = |key: &str| script.directives.get(key).map(String::as_str);
    let before = fs::read(dir.join(format!("{name}.before"))).ok();
    let expected = fs::read_to_string(dir.join(format!("{name}.after"))).unwrap_or_else(|_| {
        panic!("{name}.after is missing: every script states its final buffer")
    });

    let work = tempfile::tempdir().unwrap();
    let file = d("open").map(|f| work.path().join(f));
    if let (Some(file), Some(bytes)) = (&file, &before) {
        fs::write(file, bytes).unwrap();
    }
    match d("readonly") {
        Some("file") => {
            fs::set_permissions(file.as_ref().unwrap(), fs::Permissions::from_mode(0o444)).unwrap()
        }
        Some("dir") => fs::set_permissions(work.path(), fs::Permissions::from_mode(0o555)).unwrap(),
        _ => {}
    }

    let config_path = dir.join(format!("{name}.config.toml"));
    let loaded = config::load(&config_path);
    assert!(
        loaded.warnings.is_empty(),
        "{name}: config warnings {:?}",
        loaded.warnings
    );
    let theme = Theme::load(&loaded.config.theme, None).unwrap();
    let doc = match &file {
        Some(path) => Document::open(path).unwrap(),
        None => Document::from_text("", None),
    };
    let editor = Editor::new(doc, loaded.config.editor_options(), loaded.keymap);
    let mut app = App::new(editor, theme);
    let (width, height) = d("size").map_or((80, 24), |s| {
        let (w, h) = s.split_once('x').unwrap();
        (w.parse().unwrap(), h.parse().unwrap())
    });
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    app.run(&mut terminal, ReplayEvents::new(&script)).unwrap();

    // Restore write permission so the temp dir can be cleaned up.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();

    assert_eq!(app.editor.doc.text(), expected, "{name}: final buffer");
    if let Some(cursor) = d("cursor") {
        let (line, col) = app.editor.cursor_line_col();
        assert_eq!(
            format!("{}:{}", line + 1, col + 1),
            cursor,
            "{name}: cursor"
        );
    }
    match d("saved") {
        Some("after") => assert_eq!(
            fs::read(file.as_ref().unwrap()).unwrap(),
            expected.as_bytes(),
            "{name}: saved"
        ),
        Some("before") => assert_eq!(
            fs::read(file.as_ref().unwrap()).ok(),
            before,
            "{name}: the file on disk must be untouched"
        ),
        Some(other) => panic!("{name}: bad saved directive {other}"),
        None => {}
    }
    if let Some(modified) = d("modified") {
        assert_eq!(
            app.editor.doc.is_modified().to_string(),
            modified,
            "{name}: modified flag"
        );
    }
    if let Some(quit) = d("quit") {
        assert_eq!(
            app.editor.quit_requested().to_string(),
            quit,
            "{name}: quit"
        );
    }
    let buffer = terminal.backend().buffer().clone();
    let screen = screen_text(&buffer);
    if let Some(status) = d("status") {
        let bottom: String = screen.lines().rev().take(2).collect::<Vec<_>>().join("\n");
        assert!(
            bottom.contains(status),
            "{name}: status lines\n{bottom}\nshould contain {status:?}"
        );
    }
    if let Some(text) = d("clipboard") {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text.replace("\\n", "\n"));
        let wanted = format!("\x1b]52;c;{encoded}\x07");
        let sent = app.editor.take_osc52();
        assert!(sent.contains(&wanted), "{name}: OSC 52 {sent:?}");
    }
    match d("screen") {
        Some("text") => insta::assert_snapshot!(name, screen),
        Some("styles") => insta::assert_debug_snapshot!(name, buffer),
        Some(other) => panic!("{name}: bad screen directive {other}"),
        None => {}
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run_script(stringify!($name)); })*
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

replay_tests!(
    type_scratch,
    python_autoindent_save,
    rust_brace_enter,
    undo_typed_run,
    undo_redo,
    backspace_indent,
    tab_indent_dedent_lines,
    select_cut_paste,
    copy_line_osc52,
    word_movement,
    home_end_smart,
    doc_start_end,
    page_down,
    search_incremental,
    search_next_prev,
    search_escape_restores,
    search_not_found,
    goto_line,
    crlf_preserved,
    no_final_newline_kept,
    save_readonly_file,
    save_readonly_dir,
    quit_confirm_cancel,
    quit_confirm_yes,
    quit_confirm_no,
    quit_unmodified,
    mouse_click,
    mouse_drag_select,
    mouse_wheel,
    wide_and_combining,
    tabs_display,
    horizontal_scroll,
    help_screen,
    rebind_from_config,
    python_highlight,
    light_theme,
    paste_is_one_undo_step,
    delete_forward_and_select_all,
    undo_to_saved_state_is_unmodified,
);

#[test]
fn every_script_is_listed() {
    let mut on_disk: Vec<String> = fs::read_dir(replay_dir())
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".keys")
                .map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}
