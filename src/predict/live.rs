//! Live prediction in the editor: the editor's end of the engine thread.
//!
//! Each loop iteration the app hands the predictor the edits made since the
//! last one and lets it poll the engine. The predictor forwards every edit
//! (the engine keeps its cache aligned eagerly), keeps or drops the ghost
//! text, decides when to ask for a suggestion (syntactic triggers right
//! away, otherwise after a pause in typing), and appends streamed chunks to
//! the ghost. It never waits on the engine.

use std::time::{Duration, Instant};

use super::config::PredictConfig;
use super::engine::{CacheInfo, EngineHandle, EngineState, Event, Request};
use super::mirror::{self, MirrorConfig};
use super::suggest::{self, Hidden, Judged, Surroundings};
use super::trigger::{self, Trigger};
use crate::editor::{Change, Editor, Ghost, PredictSignal};
use crate::model::Sampling;
use crate::syntax::in_string_or_comment;

/// What the filters compare a suggestion at `at` with.
fn surroundings(editor: &Editor, at: usize) -> Surroundings {
    let rope = editor.rope();
    let line = rope.char_to_line(at);
    let text = |l: usize| {
        rope.line(l)
            .to_string()
            .trim_end_matches(['\n', '\r'])
            .to_string()
    };
    let start = rope.line_to_char(line);
    let end = start + text(line).chars().count();
    Surroundings {
        before: rope.slice(start..at).to_string(),
        after: rope.slice(at..end.max(at)).to_string(),
        line_above: line.checked_sub(1).map(text),
        line_below: (line + 1 < rope.len_lines()).then(|| text(line + 1)),
    }
}

/// The text of the cursor's line up to the cursor.
fn line_before_cursor(editor: &Editor) -> String {
    let rope = editor.rope();
    let cursor = editor.cursor();
    let line_start = rope.line_to_char(rope.char_to_line(cursor));
    rope.slice(line_start..cursor).to_string()
}

pub struct Predictor {
    config: PredictConfig,
    engine: EngineHandle,
    enabled: bool,
    state: EngineState,
    next_id: u64,
    /// The prediction whose chunks feed the ghost text.
    streaming: Option<u64>,
    /// An automatic suggestion while it streams, until the engine's
    /// verdict on it (its confidence once enough of it came to tell) and
    /// the filters let it into view; it streams on from there.
    held: Option<Ghost>,
    /// Whether the streaming prediction was asked for explicitly (Alt-\\).
    explicit: bool,
    /// When the streaming prediction's latency counts from.
    requested_at: Instant,
    /// Why the last automatic suggestion was not shown (tests and logs).
    pub last_hidden: Option<Hidden>,
    /// When typing paused, for the debounce trigger.
    pause_since: Option<Instant>,
    /// When the last edit happened: latencies count from the keystroke.
    last_edit_at: Instant,
    /// Keystroke to first ghost text, and to the complete suggestion, for
    /// every prediction that showed text (benchmarks read the history).
    pub latencies: Vec<(Duration, Duration)>,
    /// Predictions that ended before their first token (a newer key came).
    pub cancelled_before_first_token: usize,
    /// Keystroke (or Alt-\\) to the suggestion in view, for every one that
    /// was shown: what the user waits for. An automatic suggestion comes
    /// into view whole, once judged; an explicit one as it streams.
    pub shown: Vec<Duration>,
    cache: CacheInfo,
    /// The newest document version sent to the engine, and the newest it
    /// reported idle at.
    sent_version: u64,
    idle_version: Option<u64>,
    /// A [`Predictor::verify`] was sent and not yet answered: an `Idle`
    /// the engine sent before it took the request must not end a wait.
    verification_pending: bool,
    /// Why the last prediction was asked for (tests and logs).
    pub last_trigger: Option<Trigger>,
    /// A prediction asked for while the model was loading, with the cursor
    /// and document version it was for: asked again once the engine is
    /// ready if neither has changed, instead of waiting for the next key.
    deferred: Option<(Trigger, usize, u64)>,
    /// The engine's answer to the last [`Predictor::verify`].
    pub verification: Option<Result<(), String>>,
    /// Whether the buffer had unsaved changes at the last poll: a save is
    /// seen as that turning false.
    was_modified: bool,
}

impl Predictor {
    /// Start the engine thread; the model loads there in the background.
    pub fn spawn(config: PredictConfig) -> Predictor {
        let mirror_config = MirrorConfig {
            max_context: config.max_context,
            mode: config.update_mode.mode(),
            max_lines: config.lines,
            max_tokens: config.max_tokens,
            sampling: Sampling::Greedy,
            ..MirrorConfig::default()
        };
        let spec = config.model.clone();
        let disk = config
            .kv_cache_dir()
            .map(|dir| (dir, config.kv_cache_max_bytes(), config.kv_cache_storage));
        let engine = EngineHandle::spawn_with(config.engine_options(), move |progress| {
            let (mut mirror, name) = mirror::load(&spec, mirror_config, progress)?;
            if let Some((dir, max_bytes, storage)) = disk {
                mirror.enable_disk_cache(dir, max_bytes, storage);
            }
            Ok((mirror, name))
        });
        Predictor::with_engine(config, engine)
    }

    /// Drive an already started engine (tests use a model-free backend).
    pub fn with_engine(config: PredictConfig, engine: EngineHandle) -> Predictor {
        Predictor {
            enabled: config.enabled,
            config,
            engine,
            state: EngineState::Loading("starting".into()),
            next_id: 0,
            streaming: None,
            held: None,
            explicit: false,
            requested_at: Instant::now(),
            last_hidden: None,
            pause_since: None,
            last_edit_at: Instant::now(),
            latencies: Vec::new(),
            cancelled_before_first_token: 0,
            shown: Vec::new(),
            cache: CacheInfo::default(),
            sent_version: 0,
            idle_version: None,
            verification_pending: false,
            last_trigger: None,
            deferred: None,
            verification: None,
            was_modified: false,
        }
    }

    /// Mirror the editor's document from scratch.
    pub fn open(&mut self, editor: &Editor) {
        self.sent_version = editor.doc.version();
        self.engine.send(Request::Open {
            version: self.sent_version,
            text: editor.doc.text(),
            cursor_char: editor.cursor(),
            path: editor.doc.path().map(std::path::Path::to_path_buf),
        });
    }

    /// Ask the engine to check its cache against the editor's text from
    /// scratch; the answer lands in `verification`.
    pub fn verify(&mut self, editor: &Editor) {
        self.verification = None;
        self.verification_pending = true;
        self.engine.send(Request::Verify {
            text: editor.doc.text(),
        });
    }

    /// Predictions asked of the engine so far.
    /// What the engine last said about its cache.
    pub fn cache_info(&self) -> &CacheInfo {
        &self.cache
    }

    pub fn requests_sent(&self) -> u64 {
        self.next_id
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Edits made since the last call, oldest first.
    pub fn on_changes(&mut self, editor: &mut Editor, changes: &[Change]) {
        let Some(&(version, _)) = changes.last() else {
            return;
        };
        self.last_edit_at = Instant::now();
        self.sent_version = version;
        // Typing (or accepting) text that the suggestion shows consumes it.
        let consumed = match (editor.ghost_mut(), changes) {
            (Some(ghost), [(_, edit)]) if edit.removed.is_empty() => {
                ghost.consume_typed(edit.start_char, &edit.inserted)
            }
            _ => false,
        };
        // The prediction streaming into that ghost goes on, for its
        // alternatives.
        self.engine.send(Request::Edits {
            version,
            edits: changes.iter().map(|(_, e)| e.clone()).collect(),
            types_over: if consumed { self.streaming } else { None },
        });
        if consumed {
            return;
        }
        editor.set_ghost(None);
        self.held = None;
        self.streaming = None;
        if !self.enabled {
            return;
        }
        let [.., (_, last)] = changes else { return };
        let typed_at_cursor = last.removed.is_empty() && last.new_end_char() == editor.cursor();
        if typed_at_cursor && let Some(reason) = self.syntactic_trigger(editor) {
            self.request(editor, reason);
        } else if !self.config.debounce().is_zero() {
            self.pause_since = Some(Instant::now());
        }
    }

    /// The confidence an automatic suggestion needs in this buffer.
    fn min_confidence(&self, editor: &Editor) -> f32 {
        self.config
            .min_confidence_in(editor.doc.language().map(|l| l.name()))
    }

    fn syntactic_trigger(&self, editor: &Editor) -> Option<Trigger> {
        let language = editor.doc.language()?;
        if !self.config.triggers_for(language.name()) {
            return None;
        }
        let tree = editor.doc.syntax()?.tree()?;
        let cursor_byte = editor.rope().char_to_byte(editor.cursor());
        trigger::syntactic_trigger(tree, cursor_byte, &line_before_cursor(editor))
    }

    /// Whether a suggestion may be shown at the cursor now.
    fn may_predict(&self, editor: &Editor) -> bool {
        matches!(self.state, EngineState::Ready(_)) && self.may_predict_when_ready(editor)
    }

    /// Whether a suggestion may be shown at the cursor once the engine is
    /// ready.
    fn may_predict_when_ready(&self, editor: &Editor) -> bool {
        if !self.enabled || !editor.selection().is_empty() || editor.prompt_open() {
            return false;
        }
        match (
            editor.doc.language(),
            editor.doc.syntax().and_then(|s| s.tree()),
        ) {
            (Some(language), Some(tree)) => {
                let cursor_byte = editor.rope().char_to_byte(editor.cursor());
                !(self.config.suppresses_in(language.name())
                    && in_string_or_comment(tree, cursor_byte, &line_before_cursor(editor)))
            }
            (Some(_), None) => false,
            (None, _) => self.config.plain_text,
        }
    }

    fn request(&mut self, editor: &mut Editor, reason: Trigger) {
        self.pause_since = None;
        self.deferred = None;
        if !self.may_predict(editor) {
            if matches!(self.state, EngineState::Loading(_)) && self.may_predict_when_ready(editor)
            {
                self.deferred = Some((reason, editor.cursor(), editor.doc.version()));
            }
            return;
        }
        self.next_id += 1;
        self.streaming = Some(self.next_id);
        self.last_trigger = Some(reason);
        self.explicit = reason == Trigger::Manual;
        self.requested_at = if self.explicit {
            Instant::now()
        } else {
            self.last_edit_at
        };
        // An explicit request streams into view; an automatic one is held
        // until it is complete and judged worth showing.
        if self.explicit {
            editor.set_ghost(Some(Ghost::new(editor.cursor())));
            self.held = None;
        } else {
            editor.set_ghost(None);
            self.held = Some(Ghost::new(editor.cursor()));
        }
        self.engine.send(Request::Predict {
            version: editor.doc.version(),
            id: self.next_id,
            cursor_char: editor.cursor(),
            requested_at: self.requested_at,
        });
        tracing::debug!(?reason, id = self.next_id, "prediction requested");
    }

    /// Handle engine events, prediction commands, cursor moves and the
    /// typing-pause timer. Returns true when the screen needs redrawing.
    pub fn poll(&mut self, editor: &mut Editor) -> bool {
        let mut dirty = false;
        match editor.take_predict_signal() {
            Some(PredictSignal::Request) => {
                editor.set_ghost(None);
                self.request(editor, Trigger::Manual);
                dirty = true;
            }
            Some(PredictSignal::Toggle) => {
                self.enabled = !self.enabled;
                editor.set_ghost(None);
                self.held = None;
                self.stop_streaming();
                self.pause_since = None;
                editor.set_message(format!(
                    "Predictions {}",
                    if self.enabled { "on" } else { "off" }
                ));
                dirty = true;
            }
            None => {}
        }
        // Moving the cursor away (or selecting) discards the suggestion.
        if let Some(ghost) = editor.ghost()
            && (ghost.anchor != editor.cursor() || !editor.selection().is_empty())
        {
            editor.set_ghost(None);
            self.stop_streaming();
            dirty = true;
        }
        if let Some(held) = &self.held
            && (held.anchor != editor.cursor() || !editor.selection().is_empty())
        {
            self.held = None;
            self.stop_streaming();
        }
        // Esc dismissed the suggestion while it was still coming.
        if self.streaming.is_some() && self.held.is_none() && editor.ghost().is_none() {
            self.stop_streaming();
        }
        let modified = editor.doc.is_modified();
        if self.was_modified && !modified && editor.doc.path().is_some() {
            self.engine.send(Request::Saved);
        }
        self.was_modified = modified;
        while let Ok(event) = self.engine.events.try_recv() {
            dirty |= self.handle_event(editor, event);
        }
        if let Some(since) = self.pause_since
            && since.elapsed() >= self.config.debounce()
        {
            if editor.ghost().is_none() {
                self.request(editor, Trigger::Pause);
            }
            self.pause_since = None;
        }
        dirty
    }

    fn handle_event(&mut self, editor: &mut Editor, event: Event) -> bool {
        match event {
            Event::State(state) => {
                if let EngineState::Failed(message) = &state {
                    editor.set_message(format!("Predictions off: {message}"));
                    editor.set_ghost(None);
                    self.streaming = None;
                }
                self.state = state;
                if matches!(self.state, EngineState::Ready(_))
                    && let Some((reason, cursor, version)) = self.deferred.take()
                    && (cursor, version) == (editor.cursor(), editor.doc.version())
                    && editor.ghost().is_none()
                {
                    self.request(editor, reason);
                }
                true
            }
            Event::Chunk { id, text, .. } => {
                if self.streaming != Some(id) {
                    return false;
                }
                if let Some(held) = self.held.as_mut() {
                    held.text.push_str(&text);
                    return false;
                }
                match editor.ghost_mut() {
                    Some(ghost) => {
                        let first = ghost.text.is_empty();
                        ghost.text.push_str(&text);
                        if first {
                            self.shown.push(self.requested_at.elapsed());
                        }
                    }
                    None => return false,
                }
                true
            }
            Event::Scored {
                id,
                confidence,
                complete,
                ..
            } => {
                if self.streaming != Some(id) {
                    return false;
                }
                let Some(held) = self.held.take() else {
                    return false;
                };
                let judged = Judged {
                    text: &held.text,
                    confidence,
                    complete,
                };
                let verdict = suggest::hidden(
                    judged,
                    self.min_confidence(editor),
                    &surroundings(editor, held.anchor),
                    true,
                );
                self.last_hidden = verdict;
                if verdict.is_some() || held.anchor != editor.cursor() {
                    tracing::debug!(?verdict, confidence, "suggestion not shown");
                    // Its alternatives are not shown either.
                    self.stop_streaming();
                    return false;
                }
                self.shown.push(self.requested_at.elapsed());
                editor.set_ghost(Some(held));
                true
            }
            Event::Alternative { id, text, .. } => {
                if self.streaming != Some(id) {
                    return false;
                }
                match editor.ghost_mut() {
                    Some(ghost) => ghost.add_choice(&text),
                    None => false,
                }
            }
            Event::Finished {
                id,
                first_token,
                total,
                ..
            } => {
                // Every prediction counts for latency, also one whose ghost
                // was dropped meanwhile.
                match first_token {
                    Some(first) => self.latencies.push((first, total)),
                    None => self.cancelled_before_first_token += 1,
                }
                if self.streaming != Some(id) {
                    return false;
                }
                self.streaming = None;
                self.held = None;
                if let Some(ghost) = editor.ghost_mut() {
                    ghost.complete = true;
                    if ghost.is_empty() {
                        editor.set_ghost(None);
                    }
                }
                true
            }
            Event::Cache(info) => {
                self.cache = info;
                true
            }
            Event::Idle { version } => {
                self.idle_version = Some(version);
                false
            }
            Event::Verified(result) => {
                self.verification = Some(result);
                self.verification_pending = false;
                false
            }
        }
    }

    /// Nothing will show the streaming prediction's output any more: the
    /// engine stops it (and its alternatives) instead of decoding on.
    fn stop_streaming(&mut self) {
        if let Some(id) = self.streaming.take() {
            self.engine.send(Request::Stop { id });
        }
    }

    /// No work in flight: the engine has caught up with every edit, no
    /// prediction is streaming and no typing-pause trigger is pending.
    pub fn is_idle(&self) -> bool {
        let engine_settled = match self.state {
            EngineState::Loading(_) => false,
            EngineState::Failed(_) => true,
            EngineState::Ready(_) => {
                self.idle_version == Some(self.sent_version) && !self.verification_pending
            }
        };
        engine_settled && self.streaming.is_none() && self.pause_since.is_none()
    }

    /// When the next poll is due without an engine event: the end of the
    /// typing pause that triggers a suggestion.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pause_since.map(|since| since + self.config.debounce())
    }

    /// Notified whenever the engine sent an event: the loop awaits it
    /// instead of polling.
    pub fn wakeup(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.engine.wakeup.clone()
    }

    /// The status line's prediction slot.
    pub fn status(&self) -> String {
        let model = match &self.state {
            EngineState::Loading(what) => return format!("{what}…"),
            EngineState::Failed(_) => return "predictions: error".into(),
            EngineState::Ready(name) => name,
        };
        if !self.enabled {
            return format!("{model} off");
        }
        let activity = if self.streaming.is_some() {
            "predicting"
        } else {
            "ready"
        };
        let mut status = format!("{model} {activity}");
        if let Some((first, total)) = self.latencies.last() {
            status.push_str(&format!(" {}/{}ms", first.as_millis(), total.as_millis()));
        }
        if self.cache.tokens > 0 {
            status.push_str(&format!(" {}tok {}", self.cache.tokens, self.cache.mode));
            if self.cache.unencoded > 0 {
                let read = 100 * (self.cache.tokens - self.cache.unencoded) / self.cache.tokens;
                status.push_str(&format!(" reading {read}%"));
            } else if self.cache.stale > 0 {
                status.push_str(&format!(" ({} stale)", self.cache.stale));
            }
        }
        status
    }
}
