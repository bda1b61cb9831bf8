//! A stand-in for the model behind the real engine thread and `Predictor`:
//! it streams fixed chunks, can be held on a gate, and records the edits
//! the engine passes on. The real model's path is covered by
//! `predict_live.rs`; this one makes timing-dependent behaviour
//! deterministic.

#![allow(dead_code)] // each test binary uses its own part

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use pie_edit::app::App;
use pie_edit::editor::{Document, Editor, EditorOptions, Keymap};
use pie_edit::predict::config::PredictConfig;
use pie_edit::predict::engine::{Backend, CacheInfo, EngineHandle};
use pie_edit::predict::live::Predictor;
use pie_edit::syntax::Language;
use pie_edit::text::Edit;
use pie_edit::ui::Theme;
use ropey::Rope;

const GATE_LIMIT: Duration = Duration::from_secs(20);

pub struct StandIn {
    /// Streamed by every prediction, in order.
    pub chunks: Vec<&'static str>,
    /// Before chunk `n` (and, with `n` = chunks.len(), before returning) a
    /// prediction waits for one message on `gate`, or for its sender to go,
    /// or at most `GATE_LIMIT` (a test that fails while the gate is closed
    /// must not hang in the engine's join).
    pub hold_at: Option<usize>,
    pub gate: Receiver<()>,
    /// Whether a prediction is inside the backend now.
    pub predicting: Arc<AtomicBool>,
    /// How long a verification takes.
    pub verify_takes: Duration,
    /// Every edit the engine passed on, in order.
    pub edits: Arc<Mutex<Vec<Edit>>>,
}

impl StandIn {
    /// Streams `chunks` at once; the returned sender opens the gate.
    pub fn new(chunks: Vec<&'static str>) -> (StandIn, Sender<()>) {
        let (open, gate) = crossbeam_channel::unbounded();
        let backend = StandIn {
            chunks,
            hold_at: None,
            gate,
            predicting: Arc::new(AtomicBool::new(false)),
            verify_takes: Duration::ZERO,
            edits: Arc::default(),
        };
        (backend, open)
    }

    /// Start an engine thread on this backend, named `name`.
    pub fn spawn(self, name: &'static str) -> EngineHandle {
        EngineHandle::spawn(move |_| Ok((self, name.to_string())))
    }
}

impl Backend for StandIn {
    fn reset(&mut self, _: &Rope, _: usize) -> Result<()> {
        Ok(())
    }
    fn apply_edits(&mut self, _: &Rope, edits: &[Edit], _: usize) -> Result<()> {
        self.edits.lock().unwrap().extend_from_slice(edits);
        Ok(())
    }
    fn predict(
        &mut self,
        _: &Rope,
        _: usize,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
        _: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.predicting.store(true, Ordering::SeqCst);
        for n in 0..=self.chunks.len() {
            if self.hold_at == Some(n) {
                let _ = self.gate.recv_timeout(GATE_LIMIT);
            }
            if let Some(chunk) = self.chunks.get(n)
                && on_text(chunk).is_break()
            {
                break;
            }
        }
        self.predicting.store(false, Ordering::SeqCst);
        Ok(())
    }
    fn cache_info(&self) -> CacheInfo {
        CacheInfo::default()
    }
    fn verify(&self, _: &Rope) -> Result<(), String> {
        std::thread::sleep(self.verify_takes);
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
