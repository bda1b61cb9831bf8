//! The inference thread: owns the model, the token list and the KV cache.
//!
//! The editor never waits on it. It sends every edit value (tagged with the
//! document version it produces), prediction requests and settings over a
//! channel; the thread applies cache updates eagerly, coalescing bursts, and
//! streams suggestion chunks back tagged with the version they were made for.
//! A newer message cancels a running prediction between two tokens, except
//! edits that only type what its suggestion shows: its alternatives are
//! still wanted.

use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{Receiver, SendError, Sender, TryRecvError};
use ropey::Rope;
use tokio::sync::Notify;

use crate::text::Edit;

/// What the cache-keeping and predicting side must do; the real one is
/// [`super::mirror::Mirror`]. The trait exists so the threading, coalescing
/// and cancellation logic can be unit-tested without a model.
pub trait Backend {
    /// Start mirroring `doc` from scratch.
    fn reset(&mut self, doc: &Rope, cursor_char: usize) -> Result<()>;
    /// `doc` already has `edits` applied; bring the cache along.
    fn apply_edits(&mut self, doc: &Rope, edits: &[Edit], cursor_char: usize) -> Result<()>;
    /// Predict at `cursor_char`, streaming text; `on_text` returning Break
    /// stops generation, and so does `interrupted` returning true, which the
    /// backend should ask often, also inside a token's computation.
    fn predict(
        &mut self,
        doc: &Rope,
        cursor_char: usize,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()>;
    /// [`Backend::predict`] with confidence and alternatives: the first
    /// suggestion streams as `Output::Text`, and `Output::Scored`, among or
    /// after its text, gives the confidence to judge it by; then up to
    /// `choices - 1` other suggestions follow whole.
    /// The default has no alternatives and full confidence.
    fn suggest(
        &mut self,
        doc: &Rope,
        cursor_char: usize,
        choices: usize,
        on_output: &mut dyn FnMut(Output<'_>) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let _ = choices;
        self.predict(
            doc,
            cursor_char,
            &mut |text| on_output(Output::Text(text)),
            interrupted,
        )?;
        let _ = on_output(Output::Scored {
            confidence: 1.0,
            complete: true,
        });
        Ok(())
    }
    /// What the status line shows about the cache.
    fn cache_info(&self) -> CacheInfo;
    /// Check the cache against `doc` from scratch (re-tokenizing): the
    /// invariant that PIE updates must keep. Slow; for tests and debugging.
    fn verify(&self, doc: &Rope) -> Result<(), String>;
    /// Cache entries that PIE left stale (see `model::Staleness`).
    fn stale_len(&self) -> usize {
        0
    }
    /// Stale entries before `cursor_char`: the ones a prediction there
    /// reads.
    fn stale_before(&self, _cursor_char: usize) -> usize {
        self.stale_len()
    }
    /// Re-encode up to `max_tokens` stale entries, the first ones first.
    fn repair(&mut self, _max_tokens: usize) -> Result<()> {
        Ok(())
    }
    /// Entries not encoded yet: an open encodes only what precedes the
    /// cursor, and repair encodes the rest at once, in the background.
    fn unencoded_len(&self) -> usize {
        0
    }
    /// Start mirroring `doc` (the file at `path`) from the state an earlier
    /// run kept for it, brought up to date with the text as it is now;
    /// false when there is none that can be used (a bad one is dropped),
    /// and then the engine resets from scratch.
    fn restore(&mut self, _doc: &Rope, _cursor_char: usize, _path: &Path) -> bool {
        false
    }
    /// Keep the state of `doc` (the file at `path`) for a later run, if
    /// worth it for `why`. It may be written later, on another thread.
    fn persist(&mut self, _doc: &Rope, _path: &Path, _why: Persist) {}
    /// Wait until what `persist` handed off is written.
    fn flush_persisted(&mut self) {}
}

/// Why the engine keeps its state on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// The buffer is closed or the editor quits: written unless the entry
    /// already holds this state.
    Close,
    /// The buffer was saved: written when the cache changed a lot since.
    Save,
}

/// What [`Backend::suggest`] streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output<'a> {
    /// More text of the first suggestion.
    Text(&'a str),
    /// The confidence (0..=1) to judge the first suggestion by: once enough
    /// of it came to tell, or once it is `complete`. Its later text streams
    /// on.
    Scored { confidence: f32, complete: bool },
    /// Another suggestion, whole, with its confidence.
    Alternative { text: &'a str, confidence: f32 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheInfo {
    pub tokens: usize,
    pub mode: String,
    /// Entries waiting for idle-time repair.
    pub stale: usize,
    /// Entries of those not encoded yet since the window was placed.
    pub unencoded: usize,
}

/// How the engine uses the time when no request arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Start repairing the stale cache entries before the cursor (what a
    /// prediction there reads) after this long without a request; `None`
    /// never repairs.
    pub repair_after: Option<Duration>,
    /// Repair the stale entries after the cursor too, after this long
    /// without a request. Typing at the cursor makes them stale again at
    /// every key, so repairing them at every short pause would be work
    /// thrown away; `None` leaves them until the cursor moves past them.
    pub repair_rest_after: Option<Duration>,
    /// Entries re-encoded per repair step. A request that arrives during a
    /// step waits for that step only, so this bounds the delay repair can
    /// add to a keystroke.
    pub repair_chunk: usize,
    /// Run the model on the engine thread alone while other processes keep
    /// every core busy (see `model::set_serial`), looked at before each
    /// piece of work.
    pub serial_when_busy: bool,
    /// Suggestions per prediction, the first one included: the others are
    /// computed after the first one is complete.
    pub choices: usize,
}

/// Entries encoded per step after an open: larger than a repair step,
/// since prefill is faster per token in larger passes, but a key still
/// waits for at most one (tens of ms).
const OPEN_CHUNK: usize = 32;

/// How often the engine looks at how busy the machine is (a few /proc
/// reads, tens of microseconds).
const LOAD_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// How often a running repair reports its progress.
const REPAIR_REPORT_INTERVAL: Duration = Duration::from_millis(250);

impl Default for EngineOptions {
    /// Also the `[predict]` table's defaults, which are read from here.
    fn default() -> Self {
        EngineOptions {
            repair_after: Some(Duration::from_millis(400)),
            repair_rest_after: Some(Duration::from_millis(3000)),
            repair_chunk: 8,
            serial_when_busy: true,
            choices: 3,
        }
    }
}

/// Which stale entries a repair run takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepairScope {
    /// Those an open left unencoded (and any stale ones before them).
    Unencoded,
    BeforeCursor,
    All,
}

/// Messages from the editor to the engine.
#[derive(Debug)]
pub enum Request {
    /// A document was opened (or replaced): mirror it from scratch, or from
    /// the state kept on disk for `path`.
    Open {
        version: u64,
        text: String,
        cursor_char: usize,
        path: Option<PathBuf>,
    },
    /// The document was saved to its file.
    Saved,
    /// Edits, in order, that took the document to `version`. `types_over`
    /// names the prediction whose suggestion they only typed out (the
    /// editor's ghost consumed them): they do not end it, so the
    /// alternatives still come, and they are applied once it ends.
    Edits {
        version: u64,
        edits: Vec<Edit>,
        types_over: Option<u64>,
    },
    /// Predict at `cursor_char` of document `version`.
    Predict {
        version: u64,
        id: u64,
        cursor_char: usize,
        requested_at: Instant,
    },
    /// Nothing will show prediction `id` any more (hidden or dismissed):
    /// like any request waiting, it ends the running prediction at its
    /// next token, and then does nothing.
    Stop {
        id: u64,
    },
    /// Compare the engine's copy of the document with `text`, and its cache
    /// with a fresh tokenization; answered by [`Event::Verified`].
    Verify {
        text: String,
    },
    Shutdown,
}

/// Messages from the engine to the editor.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    State(EngineState),
    /// A piece of suggestion text for prediction `id` on `version`.
    Chunk {
        version: u64,
        id: u64,
        text: String,
    },
    /// The confidence to judge the first suggestion of prediction `id` by
    /// (see [`Output::Scored`]); the text it judges came before it.
    Scored {
        version: u64,
        id: u64,
        confidence: f32,
        complete: bool,
    },
    /// Another suggestion for prediction `id`, whole.
    Alternative {
        version: u64,
        id: u64,
        text: String,
        confidence: f32,
    },
    /// Prediction `id` ended (completed, stopped or cancelled).
    Finished {
        version: u64,
        id: u64,
        first_token: Option<Duration>,
        total: Duration,
        cancelled: bool,
    },
    Cache(CacheInfo),
    /// Every request sent so far has been handled: tests wait for this.
    Idle {
        version: u64,
    },
    /// The answer to [`Request::Verify`]: Err says what differs.
    Verified(Result<(), String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    Loading(String),
    Ready(String),
    /// The model failed to load or the thread crashed: predictions are off,
    /// editing goes on.
    Failed(String),
}

/// The editor's end of the engine.
pub struct EngineHandle {
    pub requests: Sender<Request>,
    pub events: Receiver<Event>,
    /// Notified after every event, so the editor's loop can await events
    /// instead of polling for them.
    pub wakeup: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// The engine's end of the event channel: every event also wakes the
/// editor's loop.
#[derive(Clone)]
struct EventSender {
    events: Sender<Event>,
    wakeup: Arc<Notify>,
}

impl EventSender {
    fn send(&self, event: Event) -> Result<(), SendError<Event>> {
        let sent = self.events.send(event);
        self.wakeup.notify_one();
        sent
    }
}

impl EngineHandle {
    /// Start the thread with default options. `load` runs on it (model
    /// loading never blocks the editor) and returns the backend and a
    /// display name for the model.
    pub fn spawn<B, L>(load: L) -> EngineHandle
    where
        B: Backend + 'static,
        L: FnOnce(&dyn Fn(String)) -> Result<(B, String)> + Send + 'static,
    {
        Self::spawn_with(EngineOptions::default(), load)
    }

    pub fn spawn_with<B, L>(options: EngineOptions, load: L) -> EngineHandle
    where
        B: Backend + 'static,
        L: FnOnce(&dyn Fn(String)) -> Result<(B, String)> + Send + 'static,
    {
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let wakeup = Arc::new(Notify::new());
        let sender = EventSender {
            events: ev_tx,
            wakeup: wakeup.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("pie-engine".into())
            .spawn(move || run_thread(options, load, req_rx, sender))
            .expect("spawning a thread only fails when the OS is out of resources");
        EngineHandle {
            requests: req_tx,
            events: ev_rx,
            wakeup,
            thread: Some(thread),
        }
    }

    /// Send, ignoring a dead engine: the editor works on without it.
    pub fn send(&self, request: Request) {
        let _ = self.requests.send(request);
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Shutdown);
        // A prediction stops at its next token once it sees the message; the
        // join is short. A wedged thread is left to die with the process.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_thread<B, L>(
    options: EngineOptions,
    load: L,
    requests: Receiver<Request>,
    events: EventSender,
) where
    B: Backend,
    L: FnOnce(&dyn Fn(String)) -> Result<(B, String)>,
{
    let progress = |msg: String| {
        let _ = events.send(Event::State(EngineState::Loading(msg)));
    };
    progress("loading model".into());
    let loaded = catch_unwind(AssertUnwindSafe(|| load(&progress)));
    let mut worker = match loaded {
        Ok(Ok((backend, name))) => {
            let _ = events.send(Event::State(EngineState::Ready(name.clone())));
            Worker::new(backend, name, options, events.clone())
        }
        Ok(Err(err)) => return fail_and_drain(Vec::new(), &requests, &events, format!("{err:#}")),
        Err(panic) => return fail_and_drain(Vec::new(), &requests, &events, panic_message(&panic)),
    };
    if let Err(message) = worker.serve(&requests) {
        let carried = std::mem::take(&mut worker.carried).into();
        fail_and_drain(carried, &requests, &events, message);
    }
}

/// An error's words for the status line. candle's errors carry a backtrace
/// in their text when `RUST_BACKTRACE` is set; it stays in the log. Lines
/// of causes become one line.
fn without_backtrace(message: &str) -> String {
    let is_frame = |line: &str| {
        let line = line.trim_start();
        line.starts_with("stack backtrace")
            || line.starts_with("at ")
            || line
                .split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    message
        .lines()
        .take_while(|line| !is_frame(line))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Report the failure, then keep answering `Idle` so that nothing waiting on
/// the engine hangs, until the editor shuts down. `carried`: requests taken
/// from the channel before the failure, served first.
fn fail_and_drain(
    carried: Vec<Request>,
    requests: &Receiver<Request>,
    events: &EventSender,
    message: String,
) {
    tracing::error!(%message, "prediction engine stopped");
    let message = without_backtrace(&message);
    let _ = events.send(Event::State(EngineState::Failed(message)));
    let mut version = 0;
    let mut carried = carried.into_iter();
    if carried.len() == 0 && requests.is_empty() {
        let _ = events.send(Event::Idle { version });
    }
    while let Some(request) = carried.next().or_else(|| requests.recv().ok()) {
        match request {
            Request::Shutdown => return,
            Request::Open { version: v, .. } | Request::Edits { version: v, .. } => version = v,
            Request::Predict { .. } | Request::Saved | Request::Stop { .. } => {}
            Request::Verify { .. } => {
                let _ = events.send(Event::Verified(Err("the engine is not running".into())));
            }
        }
        if carried.len() == 0 && requests.is_empty() {
            let _ = events.send(Event::Idle { version });
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    format!("engine crashed: {text}")
}

struct Worker<B> {
    backend: B,
    /// The model's display name, for the Ready state.
    name: String,
    options: EngineOptions,
    events: EventSender,
    doc: Rope,
    version: u64,
    /// Edits applied to `doc` but not yet to the cache (a burst coalesces).
    pending: Vec<Edit>,
    cursor_char: usize,
    /// Set once the backend has mirrored a document.
    opened: bool,
    /// The document's file, for keeping the cache on disk.
    path: Option<PathBuf>,
    /// When [`Worker::adapt_to_load`] last looked.
    load_checked: Option<Instant>,
    /// Requests a prediction took from the channel while it ran (edits
    /// typed over it), oldest first: they come before anything newer, also
    /// when the backend failed meanwhile (a shutdown among them).
    carried: std::collections::VecDeque<Request>,
}

impl<B: Backend> Worker<B> {
    fn new(backend: B, name: String, options: EngineOptions, events: EventSender) -> Self {
        Worker {
            backend,
            name,
            options,
            events,
            doc: Rope::new(),
            version: 0,
            pending: Vec::new(),
            cursor_char: 0,
            opened: false,
            path: None,
            load_checked: None,
            carried: Default::default(),
        }
    }

    /// Go serial while other processes keep every core busy, parallel
    /// again when they stop (see `EngineOptions::serial_when_busy`).
    fn adapt_to_load(&mut self) {
        if !self.options.serial_when_busy
            || self
                .load_checked
                .is_some_and(|at| at.elapsed() < LOAD_CHECK_INTERVAL)
        {
            return;
        }
        self.load_checked = Some(Instant::now());
        let busy = crate::model::others_keep_every_core_busy().unwrap_or(false);
        if busy != crate::model::kernels_serial() {
            tracing::debug!(busy, "the machine's load changed: serial kernels {busy}");
        }
        crate::model::set_serial(busy);
    }

    /// Handle requests until shutdown. Returns Err with a message when the
    /// backend fails or panics: predictions then stop for this session.
    fn serve(&mut self, requests: &Receiver<Request>) -> Result<(), String> {
        loop {
            if self.carried.is_empty() {
                match self.wait_for_request(requests)? {
                    Some(r) => self.carried.push_back(r),
                    None => return Ok(()),
                }
            }
            self.adapt_to_load();
            // Drain what is already waiting, so a burst of keystrokes becomes
            // one cache update and only the newest prediction request runs.
            let mut queue = std::mem::take(&mut self.carried);
            loop {
                match requests.try_recv() {
                    Ok(r) => queue.push_back(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            let newest_predict = queue
                .iter()
                .rposition(|r| matches!(r, Request::Predict { .. }));
            // A prediction asked for a version that queued edits already
            // replace would be stale before its first token.
            let newest_version = queue
                .iter()
                .filter_map(|r| match r {
                    Request::Open { version, .. } | Request::Edits { version, .. } => {
                        Some(*version)
                    }
                    _ => None,
                })
                .max()
                .unwrap_or(self.version);
            let mut index = 0;
            while let Some(request) = queue.pop_front() {
                let superseded =
                    matches!(request, Request::Predict { .. }) && Some(index) != newest_predict;
                index += 1;
                match request {
                    Request::Shutdown => {
                        self.persist(Persist::Close)?;
                        self.guard(|w| {
                            w.backend.flush_persisted();
                            Ok(())
                        })?;
                        return Ok(());
                    }
                    Request::Open {
                        version,
                        text,
                        cursor_char,
                        path,
                    } => {
                        self.persist(Persist::Close)?;
                        self.doc = Rope::from_str(&text);
                        self.version = version;
                        self.cursor_char = cursor_char;
                        self.pending.clear();
                        self.path = path;
                        let mut warm = false;
                        if let Some(path) = self.path.clone() {
                            self.guard(|w| {
                                warm = w.backend.restore(&w.doc, w.cursor_char, &path);
                                Ok(())
                            })?;
                        }
                        if !warm {
                            // Encoding a whole window takes seconds on a CPU: say so.
                            self.send(Event::State(EngineState::Loading(
                                "reading the buffer".into(),
                            )));
                            self.guard(|w| w.backend.reset(&w.doc, w.cursor_char))?;
                        }
                        self.send(Event::State(EngineState::Ready(self.name.clone())));
                        self.send(Event::Cache(self.backend.cache_info()));
                        self.opened = true;
                    }
                    Request::Saved => self.persist(Persist::Save)?,
                    Request::Stop { .. } => {}
                    Request::Edits { version, edits, .. } => {
                        for edit in &edits {
                            edit.apply_to(&mut self.doc);
                            self.cursor_char = edit.new_end_char();
                        }
                        self.version = version;
                        self.pending.extend(edits);
                    }
                    Request::Predict {
                        version,
                        id,
                        cursor_char,
                        requested_at,
                    } => {
                        if superseded || version != newest_version {
                            self.send(Event::Finished {
                                version,
                                id,
                                first_token: None,
                                total: requested_at.elapsed(),
                                cancelled: true,
                            });
                            continue;
                        }
                        self.cursor_char = cursor_char;
                        self.flush_edits()?;
                        self.predict(version, id, cursor_char, requested_at, requests)?;
                    }
                    Request::Verify { text } => {
                        self.flush_edits()?;
                        let result = if self.doc != text.as_str() {
                            Err(
                                "the engine's copy of the document differs from the editor's"
                                    .into(),
                            )
                        } else {
                            self.backend.verify(&self.doc)
                        };
                        self.send(Event::Verified(result));
                    }
                }
            }
            self.flush_edits()?;
            if self.carried.is_empty() && requests.is_empty() {
                self.send(Event::Idle {
                    version: self.version,
                });
            }
        }
    }

    /// Block until the next request, repairing stale cache entries while
    /// none comes. `None` when the editor has hung up.
    fn wait_for_request(
        &mut self,
        requests: &Receiver<Request>,
    ) -> Result<Option<Request>, String> {
        loop {
            let (idle, what) = match self.repair_plan() {
                Some(plan) => plan,
                None => return Ok(requests.recv().ok()),
            };
            match requests.recv_timeout(idle) {
                Ok(request) => return Ok(Some(request)),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(None),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => self.repair(requests, what)?,
            }
        }
    }

    /// What to repair next and after how long a pause: what an open left
    /// unencoded at once, then the stale entries before the cursor, then
    /// (after a longer pause) the rest.
    fn repair_plan(&self) -> Option<(Duration, RepairScope)> {
        if !self.opened {
            return None;
        }
        let options = &self.options;
        if self.backend.unencoded_len() > 0 {
            return Some((Duration::ZERO, RepairScope::Unencoded));
        }
        if self.backend.stale_before(self.cursor_char) > 0 {
            return options
                .repair_after
                .map(|idle| (idle, RepairScope::BeforeCursor));
        }
        if self.backend.stale_len() > 0 {
            return options
                .repair_after
                .and(options.repair_rest_after)
                .map(|idle| (idle, RepairScope::All));
        }
        None
    }

    /// Repair chunk by chunk until nothing in `scope` is left or a request
    /// arrives: a request waits for at most the chunk in progress.
    fn repair(&mut self, requests: &Receiver<Request>, scope: RepairScope) -> Result<(), String> {
        let chunk = match scope {
            RepairScope::Unencoded => OPEN_CHUNK,
            _ => self.options.repair_chunk.max(1),
        };
        let mut reported = Instant::now();
        let stale = |w: &Self| match scope {
            RepairScope::Unencoded => w.backend.unencoded_len(),
            RepairScope::BeforeCursor => w.backend.stale_before(w.cursor_char),
            RepairScope::All => w.backend.stale_len(),
        };
        while stale(self) > 0 && requests.is_empty() {
            self.adapt_to_load();
            self.guard(|w| w.backend.repair(chunk))?;
            // Let the status line count down, a few times a second.
            if reported.elapsed() >= REPAIR_REPORT_INTERVAL {
                self.send(Event::Cache(self.backend.cache_info()));
                reported = Instant::now();
            }
        }
        self.send(Event::Cache(self.backend.cache_info()));
        Ok(())
    }

    /// Hand the backend's state to the disk cache (see [`Persist`]).
    fn persist(&mut self, why: Persist) -> Result<(), String> {
        if !self.opened {
            return Ok(());
        }
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        self.flush_edits()?;
        self.guard(|w| {
            w.backend.persist(&w.doc, &path, why);
            Ok(())
        })
    }

    fn flush_edits(&mut self) -> Result<(), String> {
        if self.pending.is_empty() || !self.opened {
            return Ok(());
        }
        let edits = std::mem::take(&mut self.pending);
        self.guard(|w| w.backend.apply_edits(&w.doc, &edits, w.cursor_char))?;
        self.send(Event::Cache(self.backend.cache_info()));
        Ok(())
    }

    /// Run prediction `id`. The requests it takes from the channel while it
    /// runs are [`Worker::carried`] to be served next.
    fn predict(
        &mut self,
        version: u64,
        id: u64,
        cursor_char: usize,
        requested_at: Instant,
        requests: &Receiver<Request>,
    ) -> Result<(), String> {
        if !self.opened {
            return Ok(());
        }
        let mut first_token = None;
        let cancelled = std::cell::Cell::new(false);
        let taken = std::cell::RefCell::new(Vec::new());
        let events = self.events.clone();
        // Any request waiting (a keystroke's edit, a newer prediction) makes
        // the rest of this prediction useless, unless it only types what the
        // suggestion shows: then the alternatives still matter. Requests are
        // taken from the channel to be looked at.
        let newer_request = || {
            let mut taken = taken.borrow_mut();
            let mut hung_up = false;
            loop {
                match requests.try_recv() {
                    Ok(request) => taken.push(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        hung_up = true;
                        break;
                    }
                }
            }
            let newer = hung_up
                || taken.iter().any(|request| {
                    !matches!(request, Request::Edits { types_over: Some(over), .. } if *over == id)
                });
            cancelled.set(cancelled.get() || newer);
            newer
        };
        let choices = self.options.choices.max(1);
        let outcome = self.guard(|w| {
            w.backend.suggest(
                &w.doc,
                cursor_char,
                choices,
                &mut |output| {
                    if newer_request() {
                        return ControlFlow::Break(());
                    }
                    let event = match output {
                        Output::Text("") => return ControlFlow::Continue(()),
                        Output::Text(text) => {
                            first_token.get_or_insert_with(|| requested_at.elapsed());
                            Event::Chunk {
                                version,
                                id,
                                text: text.to_string(),
                            }
                        }
                        Output::Scored {
                            confidence,
                            complete,
                        } => Event::Scored {
                            version,
                            id,
                            confidence,
                            complete,
                        },
                        Output::Alternative { text, confidence } => Event::Alternative {
                            version,
                            id,
                            text: text.to_string(),
                            confidence,
                        },
                    };
                    let _ = events.send(event);
                    ControlFlow::Continue(())
                },
                &newer_request,
            )
        });
        self.carried.extend(taken.into_inner());
        outcome?;
        self.send(Event::Finished {
            version,
            id,
            first_token,
            total: requested_at.elapsed(),
            cancelled: cancelled.get(),
        });
        Ok(())
    }

    /// Run a backend call; an error or a panic ends predictions (the message
    /// goes to the status line), never the editor.
    fn guard(&mut self, call: impl FnOnce(&mut Self) -> Result<()>) -> Result<(), String> {
        match catch_unwind(AssertUnwindSafe(|| call(self))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("{err:#}")),
            Err(panic) => Err(panic_message(&panic)),
        }
    }

    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lose_their_backtrace_on_the_way_to_the_status_line() {
        let message = "cannot load model from m.gguf: bad magic\n\nstack backtrace:\n   0: candle_core::error::Error::bt\n             at ./src/error.rs:1\n   1: main";
        assert_eq!(
            without_backtrace(message),
            "cannot load model from m.gguf: bad magic"
        );
        assert_eq!(without_backtrace("a\ncaused by: b"), "a; caused by: b");
    }
}
