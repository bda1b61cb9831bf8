//! The event loop. It is generic over where events come from (the terminal,
//! or a replay script in tests) and over the ratatui backend (a real
//! terminal, or a `TestBackend`), so tests drive the same code path a user
//! does. Each iteration it also drains a channel of background messages
//! (the prediction engine's suggestion chunks), so it never blocks on them.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossterm::event::{Event, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::layout::Rect;

use crate::editor::{Change, Editor, Key};
use crate::predict::ghost::Ghost;
use crate::predict::live::Predictor;
use crate::replay;
use crate::ui::{self, Overlay, Theme};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// Nothing happened for a while (lets timers such as a debounce fire).
    Tick,
    /// Let this much time pass while handling background messages (replay).
    Wait(Duration),
    /// Handle background messages until the app reports idle (replay).
    WaitIdle,
}

/// What an event source returns when asked for the next event.
pub enum Next {
    Event(AppEvent),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The source is exhausted (end of a script): the loop ends.
    End,
}

pub trait EventSource {
    fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Next>;
}

/// Events from the real terminal, through crossterm.
pub struct TerminalEvents;

/// Wait up to `timeout` for input on the terminal (standard input). A
/// terminal that hung up (its window closed, the ssh link dropped) is an
/// error: crossterm would spin forever reading its end of file. A signal
/// ends the wait early, as no input.
fn wait_for_terminal(timeout: Duration) -> std::io::Result<bool> {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    let rc = unsafe { libc::poll(&mut fd, 1, ms) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        return match err.kind() {
            std::io::ErrorKind::Interrupted => Ok(false),
            _ => Err(err),
        };
    }
    if fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(std::io::Error::other("the terminal closed"));
    }
    Ok(rc > 0)
}

impl EventSource for TerminalEvents {
    fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Next> {
        // crossterm may hold events it has read already; it reads the
        // terminal only once poll(2) said that is safe.
        wait_for_terminal(Duration::ZERO)?;
        let ready = crossterm::event::poll(Duration::ZERO)?
            || (wait_for_terminal(timeout)? && crossterm::event::poll(Duration::ZERO)?);
        if !ready {
            return Ok(Next::Timeout);
        }
        Ok(match crossterm::event::read()? {
            Event::Key(key) => Next::Event(AppEvent::Key(key)),
            Event::Mouse(mouse) => Next::Event(AppEvent::Mouse(mouse)),
            Event::Paste(text) => Next::Event(AppEvent::Paste(text)),
            Event::Resize(w, h) => Next::Event(AppEvent::Resize(w, h)),
            _ => Next::Timeout,
        })
    }
}

/// Events from a parsed script, in order; then `End`.
pub struct ReplayEvents {
    events: std::vec::IntoIter<AppEvent>,
}

impl ReplayEvents {
    pub fn new(script: &replay::Script) -> ReplayEvents {
        ReplayEvents {
            events: script.events().collect::<Vec<_>>().into_iter(),
        }
    }
}

impl EventSource for ReplayEvents {
    fn next_event(&mut self, _timeout: Duration) -> anyhow::Result<Next> {
        Ok(self.events.next().map_or(Next::End, Next::Event))
    }
}

/// Wraps a source and writes every event it yields to a `.keys` file, with
/// the pauses between them as `<wait:…>` steps, so the session can be replayed.
pub struct Recorder<S> {
    inner: S,
    out: std::io::BufWriter<std::fs::File>,
    last: Instant,
}

impl<S: EventSource> Recorder<S> {
    pub fn new(inner: S, path: &std::path::Path) -> anyhow::Result<Recorder<S>> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "# recorded by pie-edit --record")?;
        Ok(Recorder {
            inner,
            out,
            last: Instant::now(),
        })
    }
}

/// Pauses shorter than this are not written: they are keyboard jitter.
const RECORD_MIN_PAUSE: Duration = Duration::from_millis(20);

impl<S: EventSource> EventSource for Recorder<S> {
    fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Next> {
        let next = self.inner.next_event(timeout)?;
        if let Next::Event(event) = &next
            && let Some(text) = replay::format_event(event)
        {
            let pause = self.last.elapsed();
            self.last = Instant::now();
            if pause >= RECORD_MIN_PAUSE {
                write!(self.out, "<wait:{}ms>", pause.as_millis())?;
            }
            self.out.write_all(text.as_bytes())?;
            // Flushed per event, so a crash keeps the recording.
            self.out.flush()?;
        }
        Ok(next)
    }
}

/// Messages from background threads to the loop.
pub enum AppMessage {
    /// A suggestion for document `version` (dropped if the buffer moved on).
    Ghost { version: u64, text: Option<String> },
    /// The status line's prediction slot.
    PredictionStatus(String),
    /// Anything else: run on the loop's thread with full access.
    Run(Box<dyn FnOnce(&mut App) + Send>),
}

/// How long the loop waits for an event before a `Tick`.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A slice of idle-time reparsing: short enough that a key pressed meanwhile
/// is handled without a visible delay.
const IDLE_PARSE_SLICE: Duration = Duration::from_millis(2);
/// How often the file on disk is compared with what was read (a stat; the
/// content is read only when mtime or size moved).
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub type ChangeListener = Box<dyn FnMut(&Editor, &[Change])>;
/// Writes escape sequences (OSC 52) to the terminal.
pub type TerminalSink = Box<dyn FnMut(&str)>;

pub struct App {
    pub editor: Editor,
    pub theme: Theme,
    /// The prediction engine's editor side; `None` runs without predictions.
    pub predictor: Option<Predictor>,
    /// The status line's prediction slot when no predictor runs.
    pub prediction_status: String,
    sender: Sender<AppMessage>,
    receiver: Receiver<AppMessage>,
    /// Called with every batch of `(version, edit)` changes, in order.
    pub change_listeners: Vec<ChangeListener>,
    /// Reports whether background work is done (for `<wait-idle>`).
    pub idle_probe: Option<Box<dyn Fn() -> bool>>,
    /// Where OSC 52 clipboard sequences go (the terminal); when unset they
    /// stay in `editor.osc52_out`.
    pub osc52_sink: Option<TerminalSink>,
    /// Frames drawn so far.
    pub frames: u64,
    /// Gives up a `<wait-idle>` after this long.
    pub idle_timeout: Duration,
    /// The next frame answers a key: a highlight query on a newer tree can
    /// wait for the idle frame after it.
    pub keystroke_frame: bool,
    /// Set (to the signal's number) by a SIGTERM, SIGHUP or SIGINT handler:
    /// the loop ends at once so that the caller can keep the unsaved text.
    pub stop_signal: Arc<AtomicUsize>,
    /// Whether the loop compares the file on disk with the buffer.
    pub watch_disk: bool,
    next_disk_check: Instant,
}

impl App {
    pub fn new(editor: Editor, theme: Theme) -> App {
        let (sender, receiver) = crossbeam_channel::unbounded();
        App {
            editor,
            theme,
            predictor: None,
            prediction_status: String::new(),
            sender,
            receiver,
            change_listeners: Vec::new(),
            idle_probe: None,
            osc52_sink: None,
            frames: 0,
            idle_timeout: Duration::from_secs(60),
            keystroke_frame: false,
            stop_signal: Arc::new(AtomicUsize::new(0)),
            watch_disk: true,
            next_disk_check: Instant::now() + DISK_CHECK_INTERVAL,
        }
    }

    /// The signal that ended the loop, if one did.
    pub fn stopped_by(&self) -> Option<i32> {
        match self.stop_signal.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }

    /// Timers that keep the user's text safe: the swap snapshot after a
    /// pause, and the look at the file on disk. True when a redraw is due.
    fn housekeeping(&mut self) -> bool {
        let now = Instant::now();
        let mut dirty = false;
        if self
            .editor
            .doc
            .swap_deadline()
            .is_some_and(|due| due <= now)
            && let Err(err) = self.editor.doc.write_swap()
        {
            tracing::warn!("cannot write the swap file: {err}");
            self.editor.message = Some(format!("Cannot write the swap file: {err}"));
            dirty = true;
        }
        if self.watch_disk && now >= self.next_disk_check {
            self.next_disk_check = now + DISK_CHECK_INTERVAL;
            // A prompt is open: the answer may be about the disk already.
            if self.editor.prompt.is_none() {
                dirty |= self.editor.check_disk();
            }
        }
        dirty
    }

    /// The earliest of the housekeeping timers.
    fn housekeeping_deadline(&self) -> Option<Instant> {
        let disk = self.watch_disk.then_some(self.next_disk_check);
        match (self.editor.doc.swap_deadline(), disk) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A handle for background threads to send messages to the loop.
    pub fn sender(&self) -> Sender<AppMessage> {
        self.sender.clone()
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

    /// Engine events, prediction keys, timers: true when a redraw is due.
    fn poll_predictor(&mut self) -> bool {
        match self.predictor.as_mut() {
            Some(predictor) => predictor.poll(&mut self.editor),
            None => false,
        }
    }

    /// How long the loop may wait for input before the predictor needs a
    /// look (streamed chunks should show without waiting for a key).
    fn input_timeout(&self) -> Duration {
        let housekeeping = self
            .housekeeping_deadline()
            .map(|due| due.saturating_duration_since(Instant::now()));
        self.predictor
            .as_ref()
            .and_then(Predictor::next_deadline)
            .into_iter()
            .chain(housekeeping)
            .fold(POLL_INTERVAL, Duration::min)
    }

    pub fn run<B: Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
        mut events: impl EventSource,
    ) -> anyhow::Result<()>
    where
        B::Error: Send + Sync + 'static,
    {
        let mut dirty = true;
        loop {
            if self.stopped_by().is_some() {
                return Ok(());
            }
            dirty |= self.drain_messages();
            self.dispatch_changes();
            dirty |= self.poll_predictor();
            dirty |= self.housekeeping();
            if dirty {
                self.draw(terminal)?;
                dirty = false;
            }
            if self.editor.quit {
                return Ok(());
            }
            // A paused reparse resumes whenever no key is waiting.
            let timeout = if self.editor.doc.syntax_pending() {
                Duration::ZERO
            } else {
                self.input_timeout()
            };
            match events.next_event(timeout)? {
                Next::Event(event) => {
                    self.handle_event(event, terminal.size()?.into());
                    self.keystroke_frame = true;
                    dirty = true;
                }
                Next::Timeout => {
                    self.keystroke_frame = false;
                    if self.editor.doc.syntax_pending() {
                        dirty |= self.editor.doc.refresh_syntax(Some(IDLE_PARSE_SLICE));
                    }
                    dirty |= self.editor.doc.highlights_outdated();
                    self.handle_event(AppEvent::Tick, terminal.size()?.into());
                }
                Next::End => {
                    self.keystroke_frame = false;
                    self.editor.doc.refresh_syntax(None);
                    self.drain_messages();
                    self.dispatch_changes();
                    self.draw(terminal)?;
                    return Ok(());
                }
            }
        }
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
            for sequence in self.editor.osc52_out.drain(..) {
                sink(&sequence);
            }
        }
        Ok(())
    }

    fn layout(&mut self, area: Rect) {
        let screen = ui::layout(area, &self.editor);
        self.editor.view_width = screen.text.width as usize;
        // Ghost lines below the cursor take rows too.
        let ghost_rows = self.visible_ghost().map_or(0, |g| g.matches('\n').count());
        self.editor.view_height = (screen.text.height as usize)
            .saturating_sub(ghost_rows)
            .max(1);
        self.editor.scroll_to_cursor();
        let rope = self.editor.rope();
        let first = self
            .editor
            .scroll_line
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

    pub fn handle_event(&mut self, event: AppEvent, area: Rect) {
        match event {
            AppEvent::Key(key) => {
                if let Some(key) = Key::from_event(&key) {
                    self.editor.handle_key(key);
                }
            }
            AppEvent::Mouse(mouse) => self.handle_mouse(mouse, area),
            AppEvent::Paste(text) => {
                if let Some(prompt) = self.editor.prompt.as_mut() {
                    // Terminals send pasted line breaks as CR.
                    let first_line = text.split(['\r', '\n']).next().unwrap_or("");
                    prompt.input.push_str(first_line);
                } else {
                    self.editor.paste_text(&text);
                }
            }
            AppEvent::Resize(..) | AppEvent::Tick => {}
            AppEvent::Wait(d) => self.wait(d),
            AppEvent::WaitIdle => self.wait_idle(),
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

    /// Handle every queued background message; true if any arrived.
    pub fn drain_messages(&mut self) -> bool {
        let mut any = false;
        while let Ok(message) = self.receiver.try_recv() {
            self.handle_message(message);
            any = true;
        }
        any
    }

    fn handle_message(&mut self, message: AppMessage) {
        match message {
            AppMessage::Ghost { version, text } => {
                if version == self.editor.doc.version() {
                    let anchor = self.editor.cursor();
                    self.editor.ghost = text.map(|text| Ghost {
                        anchor,
                        text,
                        complete: true,
                    });
                }
            }
            AppMessage::PredictionStatus(status) => self.prediction_status = status,
            AppMessage::Run(f) => f(self),
        }
    }

    /// Hand every edit since the last call to the listeners.
    pub fn dispatch_changes(&mut self) {
        let changes = self.editor.doc.take_changes();
        if changes.is_empty() {
            return;
        }
        if let Some(predictor) = self.predictor.as_mut() {
            predictor.on_changes(&mut self.editor, &changes);
        }
        let mut listeners = std::mem::take(&mut self.change_listeners);
        for listener in &mut listeners {
            listener(&self.editor, &changes);
        }
        self.change_listeners = listeners;
    }

    fn wait(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Short slices, so the predictor's streamed chunks and timers are
            // handled during the wait as they would be between keys.
            if self.editor.doc.syntax_pending() {
                self.editor
                    .doc
                    .refresh_syntax(Some(IDLE_PARSE_SLICE.min(left)));
                self.drain_messages();
            } else if let Ok(message) = self
                .receiver
                .recv_timeout(left.min(Duration::from_millis(5)))
            {
                self.handle_message(message);
            }
            self.dispatch_changes();
            self.poll_predictor();
            self.housekeeping();
        }
    }

    fn wait_idle(&mut self) {
        let deadline = Instant::now() + self.idle_timeout;
        self.editor.doc.refresh_syntax(None);
        self.dispatch_changes();
        while Instant::now() < deadline {
            self.drain_messages();
            self.dispatch_changes();
            self.poll_predictor();
            let predictor_idle = self.predictor.as_ref().is_none_or(Predictor::is_idle);
            if predictor_idle && self.idle_probe.as_ref().is_none_or(|idle| idle()) {
                // One more drain: work may have finished with a last message.
                self.drain_messages();
                return;
            }
            if let Ok(message) = self.receiver.recv_timeout(Duration::from_millis(5)) {
                self.handle_message(message);
            }
        }
        tracing::warn!("wait-idle gave up after {:?}", self.idle_timeout);
    }
}
