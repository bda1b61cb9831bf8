//! The editor never waits on the engine: while a prediction is stuck inside
//! the backend, a burst of keystrokes is applied and drawn; while the model
//! is loading, a trigger is kept until it is ready. And a test's
//! `<wait-idle>` lasts until an asked verification is answered. The
//! backend here is a stand-in that blocks on a gate or sleeps (the real
//! model cannot be held still on purpose); the real model's path is covered
//! by `predict_live.rs`.

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

/// Streams one chunk, then holds the prediction until the gate opens (at
/// once when its sender is gone); a verification takes `verify_takes`.
struct StuckBackend {
    gate: Receiver<()>,
    predicting: Arc<AtomicBool>,
    verify_takes: Duration,
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
        std::thread::sleep(self.verify_takes);
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
                verify_takes: Duration::ZERO,
            },
            "stuck".into(),
        ))
    });
    let mut app = app_on(engine);
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

/// An app on `x = 1` whose engine finishes loading when the returned
/// sender is sent to.
fn app_with_gated_loading() -> (App, Sender<()>) {
    let (gate, gate_rx): (Sender<()>, Receiver<()>) = crossbeam_channel::unbounded();
    let engine = EngineHandle::spawn(move |_| {
        let _ = gate_rx.recv();
        // A prediction gate already closed: suggestions come at once.
        let (_, closed) = crossbeam_channel::unbounded::<()>();
        let backend = StuckBackend {
            gate: closed,
            predicting: Arc::new(AtomicBool::new(false)),
            verify_takes: Duration::ZERO,
        };
        Ok((backend, "gated".into()))
    });
    (app_on(engine), gate)
}

/// An app on `x = 1` driving `engine`, with no typing-pause trigger.
fn app_on(engine: EngineHandle) -> App {
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
    app
}

fn run(app: &mut App, script: &str) {
    let mut terminal = Terminal::new(TestBackend::new(80, 10)).unwrap();
    app.run(
        &mut terminal,
        ReplayEvents::new(&Script::parse(script).unwrap()),
    )
    .unwrap();
}

fn requests_sent(app: &App) -> u64 {
    app.predictor.as_ref().unwrap().requests_sent()
}

#[test]
fn a_trigger_while_the_model_loads_is_served_once_it_is_ready() {
    let (mut app, gate) = app_with_gated_loading();
    // The Enter after the header is a trigger, but there is no engine to
    // ask yet.
    run(&mut app, "<C-End>def f():<Enter>");
    assert_eq!(requests_sent(&app), 0);
    assert!(app.editor.ghost.is_none());

    gate.send(()).unwrap();
    run(&mut app, "<wait-idle>");
    assert_eq!(requests_sent(&app), 1, "asked again when ready");
    let ghost = app
        .editor
        .ghost
        .as_ref()
        .expect("a suggestion after loading");
    assert_eq!(ghost.text, "return");
}

#[test]
fn a_trigger_while_loading_is_dropped_once_the_cursor_moves() {
    let (mut app, gate) = app_with_gated_loading();
    run(&mut app, "<C-End>def f():<Enter><Up>");
    gate.send(()).unwrap();
    run(&mut app, "<wait-idle>");
    assert_eq!(requests_sent(&app), 0);
    assert!(app.editor.ghost.is_none());
}

#[test]
fn waiting_for_idle_waits_for_a_pending_verification() {
    let engine = EngineHandle::spawn(|_| {
        let (_, closed) = crossbeam_channel::unbounded::<()>();
        let backend = StuckBackend {
            gate: closed,
            predicting: Arc::new(AtomicBool::new(false)),
            verify_takes: Duration::from_millis(300),
        };
        Ok((backend, "slow verify".into()))
    });
    let mut app = app_on(engine);
    run(&mut app, "<wait-idle>");
    // An edit the engine takes at once: its `Idle` is in the channel, not
    // yet read, when the verification is asked for.
    run(&mut app, "a");
    std::thread::sleep(Duration::from_millis(100));
    let predictor = app.predictor.as_mut().unwrap();
    predictor.verify(&app.editor);
    run(&mut app, "<wait-idle>");
    assert_eq!(
        app.predictor.as_ref().unwrap().verification,
        Some(Ok(())),
        "the answer came before the wait ended"
    );
}
