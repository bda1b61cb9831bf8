//! The event loop, on tokio: one `select!` waits on every source at once —
//! input events, the prediction engine's events, stop signals, changes to
//! the file on disk, and the next deadline (the suggestion debounce, the swap
//! snapshot, a slice of paused reparsing). With nothing pending it sleeps:
//! no timer ticks. The engine itself stays on its own OS thread (inference is
//! blocking, CPU-bound work) and wakes the loop through a `Notify` after each
//! event it sends.
//!
//! The loop is generic over where events come from (the terminal, or a
//! replay script in tests) and over the ratatui backend (a real terminal, or
//! a `TestBackend`), so tests drive the same code path a user does. A
//! script's events are always ready and come first, so a replay runs
//! deterministically; background work runs at its `<wait:…>` and
//! `<wait-idle>` steps, as between a user's keys.

mod disk_watch;
mod sources;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::layout::Rect;
use tokio::sync::Notify;

use crate::editor::{Editor, Key};
pub use crate::event::AppEvent;
use crate::predict::live::Predictor;
use crate::ui::{self, Overlay, Theme};
use disk_watch::DiskWatch;
pub use sources::{EventSource, Recorder, ReplayEvents, TerminalEvents};

/// A slice of idle-time reparsing: short enough that a key pressed meanwhile
/// is handled without a visible delay.
const IDLE_PARSE_SLICE: Duration = Duration::from_millis(2);
/// Where the platform cannot watch the file, it is looked at this often.
const DISK_POLL_FALLBACK: Duration = Duration::from_secs(2);

/// Writes escape sequences (OSC 52) to the terminal.
pub type TerminalSink = Box<dyn FnMut(&str)>;

pub struct App {
    pub editor: Editor,
    pub theme: Theme,
    /// The prediction engine's editor side; `None` runs without predictions.
    pub predictor: Option<Predictor>,
    /// The status line's prediction slot when no predictor runs.
    pub prediction_status: String,
    /// Where OSC 52 clipboard sequences go (the terminal); when unset they
    /// stay queued in the editor (`Editor::take_osc52`).
    pub osc52_sink: Option<TerminalSink>,
    /// Frames drawn so far.
    pub frames: u64,
    /// Gives up a `<wait-idle>` after this long.
    pub idle_timeout: Duration,
    /// The next frame answers a key: a highlight query on a newer tree can
    /// wait for the idle frame after it.
    pub keystroke_frame: bool,
    /// Whether SIGTERM, SIGHUP and SIGINT end the loop (the real binary);
    /// the signal's number is then in [`App::stopped_by`].
    pub catch_signals: bool,
    stop_signal: Arc<AtomicUsize>,
    /// Whether the loop compares the file on disk with the buffer.
    pub watch_disk: bool,
    /// When to look at the file on disk, where it cannot be watched.
    next_disk_poll: Option<Instant>,
}

/// The three stop signals as one stream.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The number of the next stop signal.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.int.recv() => libc::SIGINT,
        }
    }
}

/// Resolves when `source` is notified; never, without one.
async fn notified(source: Option<&Arc<Notify>>) {
    match source {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline`; never, without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves with the next stop signal; never, without signal handling.
async fn stop_signal(signals: Option<&mut StopSignals>) -> i32 {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the watched file may have changed; never, unwatched.
async fn disk_changed(watch: Option<&DiskWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

impl App {
    pub fn new(editor: Editor, theme: Theme) -> App {
        App {
            editor,
            theme,
            predictor: None,
            prediction_status: String::new(),
            osc52_sink: None,
            frames: 0,
            idle_timeout: Duration::from_secs(60),
            keystroke_frame: false,
            catch_signals: false,
            stop_signal: Arc::new(AtomicUsize::new(0)),
            watch_disk: true,
            next_disk_poll: None,
        }
    }

    /// The signal that ended the loop, if one did.
    pub fn stopped_by(&self) -> Option<i32> {
        match self.stop_signal.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }

    /// Attach a predictor and let it mirror the current document.
    pub fn attach_predictor(&mut self, mut predictor: Predictor) {
        predictor.open(&self.editor);
        self.predictor = Some(predictor);
    }

    /// The ghost text to draw: only while it sits at the cursor.
    pub fn visible_ghost(&self) -> Option<&str> {
        self.editor.visible_ghost().map(|g| g.text.as_str())
    }

    /// Everything that follows from what happened since the last call: the
    /// edits go to the predictor, its events and timers are handled, the
    /// swap is written when due. True when a redraw is due.
    fn settle(&mut self) -> bool {
        self.dispatch_changes();
        let mut dirty = match self.predictor.as_mut() {
            Some(predictor) => predictor.poll(&mut self.editor),
            None => false,
        };
        let now = Instant::now();
        let swap_due = self
            .editor
            .doc
            .swap_deadline()
            .is_some_and(|due| due <= now);
        let failure = match swap_due.then(|| self.editor.doc.write_swap()) {
            Some(Err(err)) => Some(err.to_string()),
            _ => self.editor.doc.swap_failure(),
        };
        if let Some(err) = failure {
            tracing::warn!("cannot write the swap file: {err}");
            self.editor
                .set_message(format!("Cannot write the swap file: {err}"));
            dirty = true;
        }
        if self.next_disk_poll.is_some_and(|at| at <= now) {
            self.next_disk_poll = Some(now + DISK_POLL_FALLBACK);
            dirty |= self.check_disk();
        }
        dirty
    }

    /// Look at the file on disk, unless a prompt is open (its answer may be
    /// about the disk already).
    fn check_disk(&mut self) -> bool {
        self.editor.prompt().is_none() && self.editor.check_disk()
    }

    /// The next moment the loop must wake without an event.
    fn next_deadline(&self) -> Option<Instant> {
        earliest([
            self.predictor.as_ref().and_then(Predictor::next_deadline),
            self.editor.doc.swap_deadline(),
            self.next_disk_poll,
        ])
    }

    /// Run the loop until the user quits, the events end, or a stop signal
    /// comes (see [`App::stopped_by`]).
    pub fn run<B: Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
        events: impl EventSource,
    ) -> anyhow::Result<()>
    where
        B::Error: Send + Sync + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.run_async(terminal, events))
    }

    async fn run_async<B: Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
        mut events: impl EventSource,
    ) -> anyhow::Result<()>
    where
        B::Error: Send + Sync + 'static,
    {
        let mut signals = if self.catch_signals {
            Some(StopSignals::new()?)
        } else {
            None
        };
        let watch = self
            .watch_disk
            .then(|| self.editor.doc.path().and_then(DiskWatch::new))
            .flatten();
        if self.watch_disk && watch.is_none() && self.editor.doc.path().is_some() {
            self.next_disk_poll = Some(Instant::now() + DISK_POLL_FALLBACK);
        }
        let mut dirty = true;
        loop {
            dirty |= self.settle();
            if dirty {
                self.draw(terminal)?;
                dirty = false;
            }
            if self.editor.quit_requested() {
                return Ok(());
            }
            // A paused reparse resumes whenever nothing else is waiting.
            let deadline = if self.editor.doc.syntax_pending() {
                Some(Instant::now())
            } else {
                self.next_deadline()
            };
            let wakeup = self.predictor.as_ref().map(Predictor::wakeup);
            tokio::select! {
                biased;
                event = events.next_event() => {
                    let Some(event) = event? else {
                        self.finish(terminal)?;
                        return Ok(());
                    };
                    self.handle_event_async(event, terminal.size()?.into()).await;
                    self.keystroke_frame = true;
                    dirty = true;
                }
                signal = stop_signal(signals.as_mut()) => {
                    self.stop_signal.store(signal as usize, Ordering::SeqCst);
                    return Ok(());
                }
                // The engine sent something: `settle` takes it.
                () = notified(wakeup.as_ref()) => {}
                () = disk_changed(watch.as_ref()) => dirty |= self.check_disk(),
                () = sleep_until(deadline) => {
                    self.keystroke_frame = false;
                    if self.editor.doc.syntax_pending() {
                        dirty |= self.editor.doc.refresh_syntax(Some(IDLE_PARSE_SLICE));
                    }
                    dirty |= self.editor.doc.highlights_outdated();
                }
            }
        }
    }

    /// The end of a script: finish the parse and the edits, draw once more.
    fn finish<B: Backend>(&mut self, terminal: &mut Terminal<B>) -> anyhow::Result<()>
    where
        B::Error: Send + Sync + 'static,
    {
        self.keystroke_frame = false;
        self.editor.doc.refresh_syntax(None);
        self.settle();
        self.draw(terminal)
    }

    /// Settle the view for the terminal size, then draw.
    pub fn draw<B: Backend>(&mut self, terminal: &mut Terminal<B>) -> anyhow::Result<()>
    where
        B::Error: Send + Sync + 'static,
    {
        let size = terminal.size()?;
        self.layout(Rect::new(0, 0, size.width, size.height));
        let status = self.predictor.as_ref().map(Predictor::status);
        let overlay = Overlay {
            ghost: self.visible_ghost(),
            prediction_status: status.as_deref().unwrap_or(&self.prediction_status),
        };
        let (editor, theme) = (&self.editor, &self.theme);
        terminal.draw(|frame| ui::render(frame, editor, theme, overlay))?;
        self.frames += 1;
        if let Some(sink) = self.osc52_sink.as_mut() {
            for sequence in self.editor.take_osc52() {
                sink(&sequence);
            }
        }
        Ok(())
    }

    fn layout(&mut self, area: Rect) {
        let screen = ui::layout(area, &self.editor);
        // Ghost lines below the cursor take rows too.
        let ghost_rows = self.visible_ghost().map_or(0, |g| g.matches('\n').count());
        let height = (screen.text.height as usize)
            .saturating_sub(ghost_rows)
            .max(1);
        self.editor.fit_view(screen.text.width as usize, height);
        let rope = self.editor.rope();
        let first = self
            .editor
            .view()
            .scroll_line()
            .min(rope.len_lines().saturating_sub(1));
        let last = first + screen.text.height as usize;
        let start = rope.line_to_byte(first);
        let end = if last < rope.len_lines() {
            rope.line_to_byte(last)
        } else {
            rope.len_bytes()
        };
        self.editor
            .doc
            .prepare_highlights(start..end, self.keystroke_frame);
    }

    /// Handle one input event (a key, a click, a paste, a resize).
    /// The script steps that let time pass need the loop: see
    /// [`App::run`].
    pub fn handle_event(&mut self, event: AppEvent, area: Rect) {
        match event {
            AppEvent::Key(key) => {
                if let Some(key) = Key::from_event(&key) {
                    self.editor.handle_key(key);
                }
            }
            AppEvent::Mouse(mouse) => self.handle_mouse(mouse, area),
            AppEvent::Paste(text) => {
                if !self.editor.paste_into_prompt(&text) {
                    self.editor.paste_text(&text);
                }
            }
            AppEvent::Resize(..) | AppEvent::Wait(_) | AppEvent::WaitIdle => {}
        }
    }

    async fn handle_event_async(&mut self, event: AppEvent, area: Rect) {
        match event {
            AppEvent::Wait(d) => self.wait(d).await,
            AppEvent::WaitIdle => self.wait_idle().await,
            event => self.handle_event(event, area),
        }
    }

    fn handle_mouse(&mut self, mouse: MouseEvent, area: Rect) {
        self.layout(area);
        let screen = ui::layout(area, &self.editor);
        let text = screen.text;
        let in_rows = mouse.row >= text.y && mouse.row < text.y + text.height;
        let col = mouse.column.saturating_sub(text.x) as usize;
        let row = mouse.row.saturating_sub(text.y) as usize;
        match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) if in_rows => {
                self.editor.click(col, row, false)
            }
            MouseEventKind::Drag(MouseButton::Left) => {
                let row = if in_rows {
                    row
                } else if mouse.row < text.y {
                    0
                } else {
                    text.height as usize
                };
                self.editor.click(col, row, true);
            }
            MouseEventKind::ScrollUp => self.editor.scroll_by(-3),
            MouseEventKind::ScrollDown => self.editor.scroll_by(3),
            _ => {}
        }
    }

    /// Hand every edit since the last call to the predictor.
    pub fn dispatch_changes(&mut self) {
        let changes = self.editor.doc.take_changes();
        if changes.is_empty() {
            return;
        }
        if let Some(predictor) = self.predictor.as_mut() {
            predictor.on_changes(&mut self.editor, &changes);
        }
    }

    /// Let `duration` pass, handling background work as between keys.
    async fn wait(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        let wakeup = self.predictor.as_ref().map(Predictor::wakeup);
        loop {
            self.settle();
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.editor.doc.syntax_pending() {
                self.editor
                    .doc
                    .refresh_syntax(Some(IDLE_PARSE_SLICE.min(deadline - now)));
                continue;
            }
            let next = earliest([Some(deadline), self.next_deadline()]);
            tokio::select! {
                () = notified(wakeup.as_ref()) => {}
                () = sleep_until(next) => {}
            }
        }
    }

    /// Handle background work until the predictor is idle (or
    /// `idle_timeout` passes).
    async fn wait_idle(&mut self) {
        let deadline = Instant::now() + self.idle_timeout;
        self.editor.doc.refresh_syntax(None);
        let wakeup = self.predictor.as_ref().map(Predictor::wakeup);
        while Instant::now() < deadline {
            self.settle();
            if self.predictor.as_ref().is_none_or(Predictor::is_idle) {
                return;
            }
            let next = earliest([Some(deadline), self.next_deadline()]);
            tokio::select! {
                () = notified(wakeup.as_ref()) => {}
                () = sleep_until(next) => {}
            }
        }
        tracing::warn!("wait-idle gave up after {:?}", self.idle_timeout);
    }
}
