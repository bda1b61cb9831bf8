//! Keystroke latency: key event -> edit applied -> syntax tree updated ->
//! frame rendered, on a generated 100k-line Python file, typing in the
//! middle. Prints p50/p99 over a typing session, then runs criterion on the
//! same step. Also times opening a 100 MB file (set PIE_EDIT_BENCH_BIG=0 to
//! skip it).
//!
//! Run: cargo bench --bench editor_latency

use std::time::{Duration, Instant};

use criterion::Criterion;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pie_edit::app::{App, AppEvent};
use pie_edit::editor::{Document, Editor, EditorOptions, Keymap};
use pie_edit::syntax::Language;
use pie_edit::text::Selection;
use pie_edit::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;

/// Realistic Python: classes, methods, strings, comments, in a loop.
fn generate_python(lines: usize) -> String {
    let block = [
        "class Account{n}:",
        "    \"\"\"A bank account with a running balance.\"\"\"",
        "",
        "    def __init__(self, owner: str, balance: float = 0.0):",
        "        self.owner = owner  # who holds it",
        "        self.balance = balance",
        "        self.history: list[tuple[str, float]] = []",
        "",
        "    def deposit(self, amount: float) -> None:",
        "        if amount <= 0:",
        "            raise ValueError(f\"bad amount {amount!r}\")",
        "        self.balance += amount",
        "        self.history.append((\"deposit\", amount))",
        "",
        "    def report(self) -> str:",
        "        return \", \".join(f\"{kind}={value:.2f}\" for kind, value in self.history)",
        "",
    ];
    let mut out = String::new();
    let mut n = 0;
    let mut count = 0;
    while count < lines {
        for line in block {
            out.push_str(&line.replace("{n}", &n.to_string()));
            out.push('\n');
        }
        count += block.len();
        n += 1;
    }
    out
}

struct Session {
    app: App,
    terminal: Terminal<TestBackend>,
    area: Rect,
    step: usize,
}

/// Typed after a statement inside a method, so Enter auto-indents it into
/// the method body as a person typing there would.
const TYPED: &str = "\ntotal = sum(x * 2 for x in values)  # running";

/// The end of the first `self.balance = balance` line after the middle.
fn typing_position(rope: &ropey::Rope) -> usize {
    let mut line = rope.len_lines() / 2;
    while !rope
        .line(line)
        .to_string()
        .contains("self.balance = balance")
    {
        line += 1;
    }
    pie_edit::text::movement::line_content_end(rope, line)
}

impl Session {
    fn new(text: &str) -> Session {
        let doc = Document::from_text(text, Some(Language::Python));
        let mut editor = Editor::new(doc, EditorOptions::default(), Keymap::default());
        let at = typing_position(editor.rope());
        editor.set_selection(Selection::cursor(at));
        let app = App::new(editor, Theme::default_dark());
        let terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        Session {
            app,
            terminal,
            area: Rect::new(0, 0, 120, 40),
            step: 0,
        }
    }

    /// One keystroke, all the way to a drawn frame.
    fn keystroke(&mut self) {
        let c = TYPED
            .chars()
            .nth(self.step % TYPED.chars().count())
            .unwrap();
        self.step += 1;
        let code = if c == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(c)
        };
        self.app.handle_event(
            AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)),
            self.area,
        );
        self.app.dispatch_changes();
        self.app.draw(&mut self.terminal).unwrap();
    }

    /// What the loop does between keystrokes when the user pauses: finish a
    /// reparse that its keystroke budget paused. Returns whether one was pending.
    fn idle(&mut self) -> bool {
        let pending = self.app.editor.doc.syntax_pending();
        self.app.editor.doc.refresh_syntax(None);
        // The idle frame after the reparse queries highlights on the new tree.
        self.app.keystroke_frame = false;
        self.app.draw(&mut self.terminal).unwrap();
        pending
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let lines = std::env::var("PIE_EDIT_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let text = generate_python(lines);
    let start = Instant::now();
    let mut session = Session::new(&text);
    eprintln!("opened {lines} lines in {:?}", start.elapsed());
    for _ in 0..50 {
        session.keystroke();
    }
    let mut paused = 0;
    let mut samples: Vec<Duration> = (0..500)
        .map(|_| {
            paused += usize::from(session.idle());
            let start = Instant::now();
            session.keystroke();
            start.elapsed()
        })
        .collect();
    samples.sort();
    println!(
        "keystroke->frame, {} lines, {} keystrokes ({paused} reparses paused at the budget): \
         p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        session.app.editor.rope().len_lines(),
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );

    if std::env::var("PIE_EDIT_BENCH_BIG").as_deref() != Ok("0") {
        let dir = std::env::temp_dir().join(format!("pie-edit-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.py");
        let mut big = String::with_capacity(101 << 20);
        while big.len() < 100 << 20 {
            big.push_str(&text);
        }
        big.truncate(big[..100 << 20].rfind('\n').unwrap() + 1);
        std::fs::write(&path, &big).unwrap();
        drop(big);
        let start = Instant::now();
        let doc = Document::open(&path).unwrap();
        let opened = start.elapsed();
        let mut big_session = Session {
            app: App::new(
                Editor::new(doc, EditorOptions::default(), Keymap::default()),
                Theme::default_dark(),
            ),
            terminal: Terminal::new(TestBackend::new(120, 40)).unwrap(),
            area: Rect::new(0, 0, 120, 40),
            step: 0,
        };
        let at = typing_position(big_session.app.editor.rope());
        big_session.app.editor.set_selection(Selection::cursor(at));
        let start = Instant::now();
        big_session.app.draw(&mut big_session.terminal).unwrap();
        let first_frame = start.elapsed();
        let mut big_samples: Vec<Duration> = (0..200)
            .map(|_| {
                let start = Instant::now();
                big_session.keystroke();
                start.elapsed()
            })
            .collect();
        big_samples.sort();
        println!(
            "100 MB file ({} lines): open {:.2} s, first frame {:.1} ms, keystroke p50 {:.3} ms, p99 {:.3} ms",
            big_session.app.editor.rope().len_lines(),
            opened.as_secs_f64(),
            first_frame.as_secs_f64() * 1e3,
            percentile(&big_samples, 0.5).as_secs_f64() * 1e3,
            percentile(&big_samples, 0.99).as_secs_f64() * 1e3,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    criterion.bench_function("keystroke_to_frame_100k_lines", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                session.idle();
                let start = Instant::now();
                session.keystroke();
                total += start.elapsed();
            }
            total
        })
    });
    criterion.final_summary();
}
