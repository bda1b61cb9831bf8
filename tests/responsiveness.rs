//! The editor never waits on the engine: while a prediction is stuck inside
//! the backend, a burst of keystrokes is applied and drawn. The backend here
//! is a stand-in that blocks on a gate (the real model cannot be held still
//! on purpose); the real model's path is covered by `predict_live.rs`.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use pie_edit::app::{App, ReplayEvents};
use pie_edit::editor::{Document, Editor, EditorOptions, Keymap};
use pie_edit::predict::config::PredictConfig;
use pie_edit::predict::engine::{Backend, CacheInfo, EngineHandle};
use pie_edit::predict::live::Predictor;
use pie_edit::replay::Script;
use pie_edit::syntax::Language;
use pie_edit::text::Edit;
use pie_edit::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ropey::Rope;

/// Streams one chunk, then holds the prediction until the gate opens.
struct StuckBackend {
    gate: Receiver<()>,
    predicting: Arc<AtomicBool>,
}

impl Backend for StuckBackend {
    fn reset(&mut self, _: &Rope, _: usize) -> Result<()> {
        Ok(())
    }
    fn apply_edits(&mut self, _: &Rope, _: &[Edit], _: usize) -> Result<()> {
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
        let _ = on_text("return");
        let _ = self.gate.recv();
        self.predicting.store(false, Ordering::SeqCst);
        Ok(())
    }
    fn cache_info(&self) -> CacheInfo {
        CacheInfo::default()
    }
    fn verify(&self, _: &Rope) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn fifty_keys_are_applied_and_drawn_while_a_prediction_is_stuck() {
    let (gate, gate_rx): (Sender<()>, Receiver<()>) = crossbeam_channel::unbounded();
    let predicting = Arc::new(AtomicBool::new(false));
    let flag = predicting.clone();
    let engine = EngineHandle::spawn(move |_| {
        Ok((
            StuckBackend {
                gate: gate_rx,
                predicting: flag,
            },
            "stuck".into(),
        ))
    });
    let config = PredictConfig {
        debounce_ms: 0,
        ..PredictConfig::default()
    };

    let doc = Document::from_text("x = 1\n", Some(Language::Python));
    let mut app = App::new(
        Editor::new(doc, EditorOptions::default(), Keymap::default()),
        Theme::default_dark(),
    );
    app.attach_predictor(Predictor::with_engine(config, engine));
    let mut terminal = Terminal::new(TestBackend::new(80, 10)).unwrap();
    let mut run = |app: &mut App, script: &str| {
        app.run(
            &mut terminal,
            ReplayEvents::new(&Script::parse(script).unwrap()),
        )
        .unwrap();
    };
    run(&mut app, "<wait-idle><C-End><A-\\>");
    let started = Instant::now();
    while !predicting.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the prediction started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    let frames_before = app.frames;
    let burst: String = "abcdefghij".repeat(5);
    run(&mut app, &burst);
    // Every key is in the buffer and was drawn, and the prediction is still
    // stuck: nothing waited for it.
    assert!(
        predicting.load(Ordering::SeqCst),
        "the prediction is still running"
    );
    assert_eq!(app.editor.doc.text(), format!("x = 1\n{burst}"));
    assert!(
        app.frames - frames_before >= 50,
        "{} frames for 50 keys",
        app.frames - frames_before
    );

    gate.send(()).unwrap();
    run(&mut app, "<wait-idle>");
    assert!(!predicting.load(Ordering::SeqCst));
}
