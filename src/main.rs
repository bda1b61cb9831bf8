//! pie-edit command line: open a file in the terminal editor, replay or
//! record keystroke scripts, manage models.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use pie_edit::app::{App, Recorder, ReplayEvents, TerminalEvents};
use pie_edit::config;
use pie_edit::editor::{Document, Editor, swap};
use pie_edit::predict::live::Predictor;
use pie_edit::replay::Script;
use pie_edit::ui::Theme;

#[global_allocator]
static ALLOCATOR: pie_edit::Allocator = pie_edit::Allocator;

#[derive(Parser)]
#[command(
    name = "pie-edit",
    version,
    about = "A terminal code editor with live next-line prediction"
)]
struct Cli {
    /// File to edit; a path that does not exist yet is created on first save.
    file: Option<PathBuf>,
    /// Theme name (dark, light, or a file in the config dir's themes/) or a theme file path.
    #[arg(long)]
    theme: Option<String>,
    /// Config file to use instead of the default location.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Record this session's keys, with timings, to a replayable .keys script.
    #[arg(long, value_name = "FILE.keys", conflicts_with = "replay")]
    record: Option<PathBuf>,
    /// Replay a .keys script headless and print the final buffer.
    #[arg(long, value_name = "FILE.keys")]
    replay: Option<PathBuf>,
    /// Screen size for --replay, as COLSxROWS.
    #[arg(
        long,
        value_name = "COLSxROWS",
        default_value = "80x24",
        requires = "replay"
    )]
    size: String,
    /// Model for predictions: a preset (smollm2-135m, qwen2.5-coder-0.5b,
    /// deepseek-coder-1.3b), hf:ORG/REPO[:FILE], or a .gguf / safetensors path.
    #[arg(long, value_name = "SPEC")]
    model: Option<String>,
    /// Run without predictions (no model is loaded).
    #[arg(long)]
    no_predict: bool,
    /// With --replay: load the model and predict as in a live session.
    #[arg(long, requires = "replay")]
    predict: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Language models for predictions.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// The KV caches kept on disk between runs (one per file).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Remove every kept KV cache.
    Clear,
    /// List the kept KV caches: file, tokens, size, last use.
    Info,
}

/// The cache directory the config names (also when `kv_cache = false`, so
/// that a cache kept earlier can still be listed and cleared).
fn kv_cache_dir(cli: &Cli) -> PathBuf {
    let config_path = cli.config.clone().or_else(config::default_config_path);
    let predict = config_path
        .as_deref()
        .map(|path| config::load(path).config.predict)
        .unwrap_or_default();
    predict
        .kv_cache_dir
        .unwrap_or_else(pie_edit::predict::kv_disk::default_dir)
}

fn cache_command(cli: &Cli, action: &CacheAction) -> anyhow::Result<()> {
    use pie_edit::predict::kv_disk;
    let dir = kv_cache_dir(cli);
    match action {
        CacheAction::Clear => {
            let removed =
                kv_disk::clear(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
            println!("removed {removed} cache entries from {}", dir.display());
        }
        CacheAction::Info => {
            let entries = kv_disk::entries(&dir);
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            println!(
                "{}: {} entries, {:.1} MiB",
                dir.display(),
                entries.len(),
                total as f64 / (1 << 20) as f64
            );
            for entry in entries {
                let age = entry.used.elapsed().map_or(0, |d| d.as_secs());
                let size = entry.bytes as f64 / (1 << 20) as f64;
                match kv_disk::describe(&entry.path) {
                    Ok((header, window)) => println!(
                        "  {}  {} tokens  {size:.1} MiB  {}  used {age}s ago",
                        window.map_or_else(|| "?".into(), |w| w.file.display().to_string()),
                        header.tokens,
                        match header.storage {
                            pie_edit::model::kv_store::Storage::F32 => "f32",
                            pie_edit::model::kv_store::Storage::F16 => "f16",
                        },
                    ),
                    Err(err) => println!(
                        "  {}  {size:.1} MiB  unreadable: {err}",
                        entry.path.display()
                    ),
                }
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum ModelAction {
    /// Download a model preset into the data directory.
    Fetch {
        /// Which preset (default: the built-in default model).
        preset: Option<String>,
    },
    /// Where the default model is, and which CPU kernel multiplies it.
    Info,
}

fn model_fetch(preset: Option<&str>) -> anyhow::Result<()> {
    pie_edit::model::source::run_fetch_command(preset)
}

fn init_logging() -> Option<PathBuf> {
    let dir = config::data_dir();
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("pie-edit.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIE_EDIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs never go to the terminal: it belongs to the editor.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Some(path)
}

fn parse_size(text: &str) -> anyhow::Result<(u16, u16)> {
    let (w, h) = text
        .split_once('x')
        .context("--size must look like 80x24")?;
    Ok((
        w.parse().context("bad --size width")?,
        h.parse().context("bad --size height")?,
    ))
}

/// Print to stderr, ignoring failure: after a hangup the terminal is gone,
/// and `eprintln!` would panic before the unsaved text is kept.
macro_rules! report {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Keep the unsaved text after a crash, a signal or a failed loop: in the
/// swap file, where the next open of the file offers it, or for a scratch
/// buffer in the recovery directory. Both are private (0700 dir, 0600 file).
/// Returns what to tell the user.
fn keep_unsaved(app: &mut App) -> Vec<String> {
    let doc = &mut app.editor.doc;
    if !doc.is_modified() {
        return vec![];
    }
    if doc.has_swap() {
        match doc.write_swap_now() {
            Ok(Some(path)) => {
                return vec![format!(
                    "unsaved changes were written to {}; open {} again to recover them",
                    path.display(),
                    doc.path()
                        .map_or_else(String::new, |p| p.display().to_string())
                )];
            }
            Ok(None) => return vec![],
            // The recovery directory is the second chance.
            Err(err) => report!("pie-edit: could not write the swap file: {err}"),
        }
    }
    let dir = config::data_dir().join("recovery");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = doc
        .path()
        .and_then(Path::file_name)
        .map_or_else(|| "scratch".into(), |n| n.to_string_lossy().into_owned());
    let path = dir.join(format!("{name}.{stamp}.{}.recovered", std::process::id()));
    let written = swap::private_dir(&dir).and_then(|()| {
        swap::write_private(&path, 0o600, &mut doc.rope().chunks().map(str::as_bytes))
    });
    match written {
        Ok(()) => vec![format!(
            "unsaved changes were written to {}",
            path.display()
        )],
        Err(err) => {
            report!(
                "pie-edit: could not write recovery file {}: {err}",
                path.display()
            );
            vec![]
        }
    }
}

/// Raw mode, the alternate screen, mouse capture and bracketed paste, with
/// a panic hook that undoes them first. Unlike `ratatui::init`, nothing
/// here panics when the terminal is gone (a closed window): the unsaved
/// text must still be kept after that.
fn init_terminal() -> std::io::Result<ratatui::DefaultTerminal> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        hook(info);
    }));
    let set_up = (|| {
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::event::EnableMouseCapture,
            crossterm::event::EnableBracketedPaste
        )?;
        Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))
    })();
    // Half a set-up is undone: a raw terminal left behind is unusable.
    if set_up.is_err() {
        restore_terminal();
    }
    set_up
}

fn restore_terminal() {
    let _ = crossterm::execute!(
        std::io::stdout(),
        crossterm::event::DisableMouseCapture,
        crossterm::event::DisableBracketedPaste,
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = crossterm::terminal::disable_raw_mode();
}

/// Open the document's swap: say when another editor has the file open,
/// and offer what a dead one left.
fn start_swap(editor: &mut Editor, settings: swap::SwapSettings) {
    let found = match editor.doc.start_swap(settings.clone()) {
        Ok(found) => found,
        Err(err) => {
            editor.set_message(format!(
                "No swap file (cannot use {}: {err}); unsaved work is not protected against a crash",
                settings.dir.display()
            ));
            return;
        }
    };
    if let Some(pid) = found.open_elsewhere.first() {
        editor.set_message(format!(
            "{} is already open in another pie-edit (pid {pid}); saving here overwrites what it saves",
            editor.doc.display_name()
        ));
    }
    let more = found.leftovers.len().saturating_sub(1);
    if let Some(leftover) = found.leftovers.into_iter().next() {
        if more > 0 {
            editor.set_message(format!(
                "{more} older swap file(s) of this file are in {}",
                settings.dir.display()
            ));
        }
        editor.offer_recovery(leftover);
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Model { action }) = &cli.command {
        match action {
            ModelAction::Fetch { preset } => model_fetch(preset.as_deref())?,
            ModelAction::Info => pie_edit::model::source::run_info_command()?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(Command::Cache { action }) = &cli.command {
        cache_command(&cli, action)?;
        return Ok(ExitCode::SUCCESS);
    }
    let log_path = init_logging();
    tracing::info!(log = ?log_path, "pie-edit starting");

    // Refuse bad files before touching the terminal, so the message stays visible.
    let doc = match &cli.file {
        Some(path) => match Document::open(path) {
            Ok(doc) => doc,
            Err(err) => {
                report!("pie-edit: {err}");
                return Ok(ExitCode::from(2));
            }
        },
        None => Document::from_text("", None),
    };
    let script = match &cli.replay {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(Script::parse(&text).with_context(|| format!("in {}", path.display()))?)
        }
        None => None,
    };

    if let Some(path) = &cli.config
        && !path.exists()
    {
        report!("pie-edit: config file {} does not exist", path.display());
        return Ok(ExitCode::from(2));
    }
    let interactive = script.is_none();
    if interactive && !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        report!(
            "pie-edit: needs a terminal (standard input and output); to run keys from a file, use --replay FILE.keys"
        );
        return Ok(ExitCode::from(2));
    }
    let config_path = cli.config.clone().or_else(config::default_config_path);
    let loaded = config_path.as_deref().map(config::load);
    let (cfg, keymap, mut warnings) = match loaded {
        Some(l) => (l.config, l.keymap, l.warnings),
        None => (config::Config::default(), Default::default(), vec![]),
    };
    let theme_spec = cli.theme.clone().unwrap_or_else(|| cfg.theme.clone());
    let user_themes = config::project_dirs().map(|d| d.config_dir().join("themes"));
    let theme = Theme::load(&theme_spec, user_themes.as_deref()).unwrap_or_else(|err| {
        warnings.push(format!("{err}; using the dark theme"));
        Theme::default_dark()
    });
    let mut predict_config = cfg.predict.clone();
    if let Some(model) = &cli.model {
        predict_config.model = model.clone();
    }

    for warning in &warnings {
        tracing::warn!("{warning}");
        report!("pie-edit: {warning}");
    }

    let mut editor = Editor::new(doc, cfg.editor_options(), keymap);
    if let Some(warning) = warnings.first() {
        editor.set_message(warning.clone());
    }
    if let Some(settings) = cfg.swap_settings() {
        start_swap(&mut editor, settings);
    }
    let mut app = App::new(editor, theme);
    app.catch_signals = interactive;
    // A replay is about editing unless it asks for predictions: timing-driven
    // suggestions would make it depend on the machine's speed.
    let predict = !cli.no_predict && (script.is_none() || cli.predict);
    if predict {
        app.attach_predictor(Predictor::spawn(predict_config));
    }

    let outcome = if let Some(script) = &script {
        let (width, height) = parse_size(&cli.size)?;
        let mut terminal = Terminal::new(TestBackend::new(width, height))?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            app.run(&mut terminal, ReplayEvents::new(script))
        }))
    } else {
        let mut terminal = init_terminal().context("cannot set up the terminal")?;
        app.osc52_sink = Some(Box::new(|sequence: &str| {
            let mut out = std::io::stdout();
            let _ = out.write_all(sequence.as_bytes());
            let _ = out.flush();
        }));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &cli.record {
            Some(path) => Recorder::new(TerminalEvents::new(), path)
                .and_then(|source| app.run(&mut terminal, source)),
            None => app.run(&mut terminal, TerminalEvents::new()),
        }));
        restore_terminal();
        result
    };
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some((format!("pie-edit: {err:#}"), 1)),
        // The panic hook has restored the terminal and printed the panic.
        Err(_) => Some((
            format!(
                "pie-edit crashed (log: {})",
                log_path.map_or_else(|| "none".into(), |p| p.display().to_string())
            ),
            101,
        )),
    };
    if let Some((message, code)) = failure {
        tracing::error!("{message}");
        let kept = keep_unsaved(&mut app);
        report!("{message}");
        for line in kept {
            report!("pie-edit: {line}");
        }
        return Ok(ExitCode::from(code));
    }
    if let Some(signal) = app.stopped_by() {
        tracing::info!(signal, "stopped by a signal");
        for line in keep_unsaved(&mut app) {
            report!("pie-edit: {line}");
        }
        // The shell's convention for a death by signal.
        return Ok(ExitCode::from(128 + signal.clamp(0, 127) as u8));
    }
    app.editor.doc.close_swap();
    if script.is_some() {
        print!("{}", app.editor.doc.text());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            report!("pie-edit: {err:#}");
            ExitCode::FAILURE
        }
    }
}
