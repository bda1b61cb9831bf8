//! Keystroke-to-ghost-text latency: a typing session replayed through the
//! real app loop (headless), with the real model on its background thread.
//!
//! `cargo run --release --bin pie-latency -- [--mode pie|full] [--file F]`
//!
//! The session types new code into a ~2k-token Python file, key by key with
//! a pause between keys, and waits for the suggestion after each line. It
//! reports, over every prediction that showed text, the time from the
//! keystroke that triggered it to the first ghost text and to the complete
//! suggestion (p50/p95), and how many predictions a newer key cancelled
//! before their first token. Before typing it reports how long the opened
//! file took to be encoded ("ready"). `--busy-threads N` runs the session
//! beside a second process that keeps N threads busy, as a compile does.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pie_edit::app::{App, ReplayEvents};
use pie_edit::editor::{Document, Editor, EditorOptions, Keymap};
use pie_edit::predict::config::{ModeName, PredictConfig};
use pie_edit::predict::live::Predictor;
use pie_edit::replay::Script;
use pie_edit::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

#[global_allocator]
static ALLOCATOR: pie_edit::Allocator = pie_edit::Allocator;

#[derive(Parser)]
struct Args {
    /// Cache update mode: pie or full.
    #[arg(long, default_value = "pie")]
    mode: String,
    /// The file typed into (default: assets/demo.py).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Pause between keys, in ms.
    #[arg(long, default_value_t = 120)]
    key_ms: u64,
    /// Tokens the cache mirrors (the editor's `max_context`).
    #[arg(long, default_value_t = PredictConfig::default().max_context)]
    max_context: usize,
    /// Pause before idle repair, in ms (0: no repair).
    #[arg(long, default_value_t = PredictConfig::default().repair_after_ms)]
    repair_after_ms: u64,
    /// Keep this many threads busy in a second process for the whole run.
    #[arg(long, default_value_t = 0)]
    busy_threads: usize,
    /// Go serial while other processes keep every core busy (the
    /// `[predict] serial_when_busy` setting).
    #[arg(long, default_value_t = PredictConfig::default().serial_when_busy, action = clap::ArgAction::Set)]
    serial_when_busy: bool,
    /// Be that busy process (started by --busy-threads).
    #[arg(long, hide = true)]
    spin: Option<usize>,
    /// The confidence threshold of automatic suggestions (0: show all;
    /// default: the language's own).
    #[arg(long)]
    min_confidence: Option<f32>,
    /// Suggestions per prediction (1: no alternatives).
    #[arg(long, default_value_t = PredictConfig::default().alternatives)]
    alternatives: usize,
    /// The model: a preset, `hf:ORG/REPO[:FILE]`, or a .gguf path (default:
    /// the editor's default model). A GGUF brings its own tokenizer.
    #[arg(long)]
    model: Option<String>,
    /// CPU threads for the model (default: candle's, one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// The competing process; killed when dropped, however the run ends.
struct BusyLoad(std::process::Child);

impl BusyLoad {
    fn start(threads: usize) -> anyhow::Result<Self> {
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["--spin", &threads.to_string()])
            .spawn()
            .context("starting the busy process")?;
        Ok(Self(child))
    }
}

impl Drop for BusyLoad {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Burn `threads` cores until killed.
fn spin(threads: usize) -> ! {
    for _ in 0..threads {
        std::thread::spawn(|| {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
    }
    loop {
        std::thread::park();
    }
}

/// What gets typed, line by line: the start of a new function at the end of
/// the file, and an edit in the middle of it.
const SESSION: &[&str] = &[
    "<C-End><Enter><Enter>",
    "def summarize(tasks):<Enter>",
    "counts = {}<Enter>",
    "for task in tasks:<Enter>",
    "key = task.priority.name<Enter>",
    "counts[key] = counts.get(key, 0) + 1<Enter>",
    "<BS>return counts<Enter>",
    "<C-g>11<Enter><End><Enter>",
    "import os<Enter>",
    "<C-End><Enter><Enter>",
    "def export(tasks, path):<Enter>",
    "with open(path, \"w\") as f:<Enter>",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(threads) = args.spin {
        spin(threads);
    }
    let _busy = match args.busy_threads {
        0 => None,
        n => Some(BusyLoad::start(n)?),
    };
    if let Some(threads) = args.threads {
        // SAFETY: nothing else runs yet; candle reads these when it builds
        // its thread pools on first use.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        }
    }
    // Engine events (window moves, slides) on stderr with PIE_EDIT_LOG=debug.
    pie_edit::log_to_stderr();
    let mode = match args.mode.as_str() {
        "pie" => ModeName::Pie,
        "full" => ModeName::Full,
        other => anyhow::bail!("--mode must be pie or full, not {other}"),
    };
    let path = args.file.unwrap_or_else(|| PathBuf::from("assets/demo.py"));
    let doc = Document::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let editor = Editor::new(doc, EditorOptions::default(), Keymap::default());
    let mut app = App::new(editor, Theme::default_dark());
    app.idle_timeout = Duration::from_secs(600);
    let config = PredictConfig {
        update_mode: mode,
        max_context: args.max_context,
        repair_after_ms: args.repair_after_ms,
        // Every run starts cold and leaves nothing behind: a kept cache
        // would make the next run's numbers depend on this one.
        kv_cache: false,
        serial_when_busy: args.serial_when_busy,
        min_confidence: args.min_confidence,
        alternatives: args.alternatives,
        model: args.model.clone().unwrap_or(PredictConfig::default().model),
        ..PredictConfig::default()
    };
    app.attach_predictor(Predictor::spawn(config));
    let mut terminal = Terminal::new(TestBackend::new(100, 30))?;
    let opened = std::time::Instant::now();
    app.run(
        &mut terminal,
        ReplayEvents::new(&Script::parse("<wait-idle>")?),
    )?;
    let cache_tokens = app
        .predictor
        .as_ref()
        .map(Predictor::status)
        .unwrap_or_default();
    let ready = opened.elapsed();
    // The typing starts once the whole file is read, so that the
    // latencies below are those of a file that was open a while.
    let wait = Script::parse("<wait:50ms>")?;
    while app
        .predictor
        .as_ref()
        .is_some_and(|p| p.cache_info().unencoded > 0)
    {
        app.run(&mut terminal, ReplayEvents::new(&wait))?;
    }
    eprintln!(
        "file encoded: {cache_tokens}; open -> ready {:.2} s, -> read {:.2} s (model load included)",
        ready.as_secs_f64(),
        opened.elapsed().as_secs_f64()
    );

    let wait = format!("<wait:{}ms>", args.key_ms);
    let mut seen = 0;
    for line in SESSION {
        let script = Script::parse(line)?;
        // Re-emit each key with the typing pause after it, then wait for the
        // suggestion as a reader would.
        let keys: Vec<String> = script
            .events()
            .filter_map(|e| pie_edit::replay::format_event(&e))
            .collect();
        let typed = format!(
            "{}<wait-idle>",
            keys.iter()
                .map(|k| format!("{k}{wait}"))
                .collect::<String>()
        );
        app.run(&mut terminal, ReplayEvents::new(&Script::parse(&typed)?))?;
        // Which lines the slow predictions come from (stderr, beside the table).
        let latencies = &app
            .predictor
            .as_ref()
            .context("predictor attached")?
            .latencies;
        let ms: Vec<String> = latencies[seen..]
            .iter()
            .map(|(first, full)| format!("{}/{}", first.as_millis(), full.as_millis()))
            .collect();
        eprintln!("{line:<40} first/complete ms: {}", ms.join(" "));
        seen = latencies.len();
    }

    let predictor = app.predictor.as_ref().context("predictor attached")?;
    let mut first: Vec<Duration> = predictor.latencies.iter().map(|l| l.0).collect();
    let mut full: Vec<Duration> = predictor.latencies.iter().map(|l| l.1).collect();
    anyhow::ensure!(!first.is_empty(), "no prediction showed text");
    first.sort();
    full.sort();
    let mut shown = predictor.shown.clone();
    shown.sort();
    let ms = |sorted: &[Duration], p: f64| {
        if sorted.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", percentile(sorted, p).as_secs_f64() * 1e3)
        }
    };
    // Columns: mode, predictions with text, engine's first token p50/p95,
    // all choices complete p50/p95, cancelled before a token; then the
    // suggestions that came into view: count, keystroke to view p50/p95.
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
        args.mode,
        first.len(),
        percentile(&first, 0.5).as_secs_f64() * 1e3,
        percentile(&first, 0.95).as_secs_f64() * 1e3,
        percentile(&full, 0.5).as_secs_f64() * 1e3,
        percentile(&full, 0.95).as_secs_f64() * 1e3,
        predictor.cancelled_before_first_token,
        shown.len(),
        ms(&shown, 0.5),
        ms(&shown, 0.95),
    );
    Ok(())
}
