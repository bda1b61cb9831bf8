//! A stand-in for the model behind the real engine thread and `Predictor`:
//! it streams fixed tokens, can be held on a gate, and records what the
//! engine asked of it. The engine's own tests (`engine.rs`) and the
//! editor-side ones (`ghost.rs`, `responsiveness.rs`) share it. The real
//! model's path is covered by `predict_live.rs`; this one makes
//! timing-dependent behaviour deterministic.

#![allow(dead_code)] // each test binary uses its own part

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use pie_edit::app::App;
use pie_edit::editor::{Document, Editor, EditorOptions, Keymap};
use pie_edit::predict::config::PredictConfig;
use pie_edit::predict::engine::{Backend, CacheInfo, EngineHandle, Output};
use pie_edit::predict::live::Predictor;
use pie_edit::syntax::Language;
use pie_edit::text::Edit;
use pie_edit::ui::Theme;
use ropey::Rope;

/// A held backend gives up waiting after this long, so that a test that
/// fails with the gate closed cannot hang in the engine's join.
const GATE_LIMIT: Duration = Duration::from_secs(20);

/// What the stand-in was asked to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Reset(String),
    Apply { doc: String, edits: usize },
    Predict(usize),
    Repair,
}

/// A backend without a model. A prediction streams `tokens`, waiting for
/// one message on `gate` after each (or for the gate's sender to go, which
/// ends it); the options hold it elsewhere or make it misbehave.
pub struct StandIn {
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// Every edit the engine passed on, in order.
    pub edits: Arc<Mutex<Vec<Edit>>>,
    pub gate: Receiver<()>,
    pub tokens: Vec<&'static str>,
    /// Wait on the gate before the first token too.
    pub hold_first: bool,
    /// Wait on the gate inside `reset`.
    pub hold_reset: bool,
    /// Wait on the gate inside every repair step.
    pub hold_repair: bool,
    pub panic_on_predict: bool,
    /// Stale entries; each applied edit adds 8, as if PIE left them.
    pub stale: usize,
    /// All stale entries lie after the cursor.
    pub stale_after_cursor: bool,
    /// After the first token, compute (spin) until interrupted, like a
    /// forward pass that asks between layers.
    pub spin_until_interrupted: bool,
    /// Then fail, as a backend may at any step.
    pub fail_when_interrupted: bool,
    /// Whether a prediction is inside the backend now.
    pub predicting: Arc<AtomicBool>,
    /// How long a verification takes.
    pub verify_takes: Duration,
    /// The confidence reported for the streamed suggestion.
    pub confidence: f32,
    /// Tokens after which it is reported (None: once all have streamed,
    /// as complete).
    pub verdict_after: Option<usize>,
    /// Whole alternatives sent after it (without waiting on the gate).
    pub alternatives: Vec<&'static str>,
    /// Wait on the gate before the alternatives, as a search for them
    /// takes time after the first suggestion.
    pub hold_alternatives: bool,
}

impl StandIn {
    /// Streams `tokens`; the returned sender is the gate.
    pub fn new(tokens: Vec<&'static str>) -> (StandIn, Sender<()>) {
        let (open, gate) = crossbeam_channel::unbounded();
        let backend = StandIn {
            calls: Arc::default(),
            edits: Arc::default(),
            gate,
            tokens,
            hold_first: false,
            hold_reset: false,
            hold_repair: false,
            panic_on_predict: false,
            stale: 0,
            stale_after_cursor: false,
            spin_until_interrupted: false,
            fail_when_interrupted: false,
            predicting: Arc::new(AtomicBool::new(false)),
            verify_takes: Duration::ZERO,
            confidence: 1.0,
            verdict_after: None,
            alternatives: Vec::new(),
            hold_alternatives: false,
        };
        (backend, open)
    }

    /// Start an engine thread on this backend, named `name`.
    pub fn spawn(self, name: &'static str) -> EngineHandle {
        EngineHandle::spawn(move |_| Ok((self, name.to_string())))
    }

    fn wait_at_gate(&self) -> bool {
        self.gate.recv_timeout(GATE_LIMIT).is_ok()
    }

    fn stream(
        &mut self,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        if self.spin_until_interrupted {
            let _ = on_text(self.tokens[0]);
            let deadline = Instant::now() + GATE_LIMIT;
            while !interrupted() {
                anyhow::ensure!(Instant::now() < deadline, "never interrupted");
                std::thread::yield_now();
            }
            anyhow::ensure!(
                !self.fail_when_interrupted,
                "stand-in failed after the interrupt"
            );
            return Ok(());
        }
        if self.hold_first && !self.wait_at_gate() {
            return Ok(());
        }
        for token in &self.tokens {
            if on_text(token).is_break() {
                break;
            }
            // Between tokens the test may act (send a newer edit).
            if !self.wait_at_gate() {
                break;
            }
        }
        Ok(())
    }
}

impl Backend for StandIn {
    fn reset(&mut self, doc: &Rope, _: usize) -> Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Reset(doc.to_string()));
        if self.hold_reset {
            self.wait_at_gate();
        }
        Ok(())
    }
    fn apply_edits(&mut self, doc: &Rope, edits: &[Edit], _: usize) -> Result<()> {
        self.calls.lock().unwrap().push(Call::Apply {
            doc: doc.to_string(),
            edits: edits.len(),
        });
        self.edits.lock().unwrap().extend_from_slice(edits);
        self.stale += 8 * edits.len();
        Ok(())
    }
    fn predict(
        &mut self,
        _: &Rope,
        cursor: usize,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.calls.lock().unwrap().push(Call::Predict(cursor));
        assert!(!self.panic_on_predict, "stand-in backend exploded");
        self.predicting.store(true, Ordering::SeqCst);
        let result = self.stream(on_text, interrupted);
        self.predicting.store(false, Ordering::SeqCst);
        result
    }
    fn suggest(
        &mut self,
        doc: &Rope,
        cursor: usize,
        choices: usize,
        on_output: &mut dyn FnMut(Output<'_>) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let mut stopped = false;
        let (confidence, verdict_after) = (self.confidence, self.verdict_after);
        let mut streamed = 0;
        self.predict(
            doc,
            cursor,
            &mut |text| {
                let mut flow = on_output(Output::Text(text));
                streamed += 1;
                if Some(streamed) == verdict_after {
                    flow = on_output(Output::Scored {
                        confidence,
                        complete: false,
                    });
                }
                stopped |= flow.is_break();
                flow
            },
            interrupted,
        )?;
        let verdict = Output::Scored {
            confidence,
            complete: true,
        };
        if stopped || interrupted() || verdict_after.is_none() && on_output(verdict).is_break() {
            return Ok(());
        }
        if self.hold_alternatives && !self.wait_at_gate() {
            return Ok(());
        }
        for text in self.alternatives.iter().take(choices.saturating_sub(1)) {
            let alternative = Output::Alternative {
                text,
                confidence: self.confidence,
            };
            if on_output(alternative).is_break() {
                break;
            }
        }
        Ok(())
    }
    fn cache_info(&self) -> CacheInfo {
        CacheInfo {
            tokens: 0,
            mode: "PIE".into(),
            stale: self.stale,
            ..CacheInfo::default()
        }
    }
    fn verify(&self, _: &Rope) -> Result<(), String> {
        std::thread::sleep(self.verify_takes);
        Ok(())
    }
    fn stale_len(&self) -> usize {
        self.stale
    }
    fn stale_before(&self, _: usize) -> usize {
        if self.stale_after_cursor {
            0
        } else {
            self.stale
        }
    }
    fn repair(&mut self, max_tokens: usize) -> Result<()> {
        self.calls.lock().unwrap().push(Call::Repair);
        if self.hold_repair {
            self.wait_at_gate();
        }
        self.stale = self.stale.saturating_sub(max_tokens);
        Ok(())
    }
}

/// An app on `text` (Python) driving `engine`, with no typing-pause trigger.
pub fn app_on(text: &str, engine: EngineHandle) -> App {
    let config = PredictConfig {
        debounce_ms: 0,
        ..PredictConfig::default()
    };
    app_with(text, engine, config)
}

pub fn app_with(text: &str, engine: EngineHandle, config: PredictConfig) -> App {
    let doc = Document::from_text(text, Some(Language::Python));
    let mut app = App::new(
        Editor::new(doc, EditorOptions::default(), Keymap::default()),
        Theme::default_dark(),
    );
    app.attach_predictor(Predictor::with_engine(config, engine));
    app
}
