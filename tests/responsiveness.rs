//! The editor never waits on the engine: while a prediction is stuck inside
//! the backend, a burst of keystrokes is applied and drawn; while the model
//! is loading, a trigger is kept until it is ready. And a test's
//! `<wait-idle>` lasts until an asked verification is answered. The
//! backend here is a stand-in that blocks on a gate or sleeps (the real
//! model cannot be held still on purpose); the real model's path is covered
//! by `predict_live.rs`.

#[path = "common/stand_in.rs"]
mod stand_in;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pie_edit::app::{App, ReplayEvents};
use pie_edit::predict::engine::EngineHandle;
use pie_edit::replay::Script;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use stand_in::StandIn;

/// Streams one token, then holds the prediction until the gate opens.
fn stuck() -> (StandIn, crossbeam_channel::Sender<()>) {
    StandIn::new(vec!["return"])
}

#[test]
fn fifty_keys_are_applied_and_drawn_while_a_prediction_is_stuck() {
    let (backend, gate) = stuck();
    let predicting = backend.predicting.clone();
    let engine = backend.spawn("stuck");
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
fn app_with_gated_loading() -> (App, crossbeam_channel::Sender<()>) {
    let (gate, gate_rx) = crossbeam_channel::unbounded::<()>();
    let engine = EngineHandle::spawn(move |_| {
        let _ = gate_rx.recv();
        // Suggestions come at once.
        let (backend, _) = StandIn::new(vec!["return"]);
        Ok((backend, "gated".into()))
    });
    (app_on(engine), gate)
}

/// An app on `x = 1` driving `engine`.
fn app_on(engine: EngineHandle) -> App {
    stand_in::app_on("x = 1\n", engine)
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
    assert!(app.editor.ghost().is_none());

    gate.send(()).unwrap();
    run(&mut app, "<wait-idle>");
    assert_eq!(requests_sent(&app), 1, "asked again when ready");
    let ghost = app.editor.ghost().expect("a suggestion after loading");
    assert_eq!(ghost.text, "return");
}

#[test]
fn a_trigger_while_loading_is_dropped_once_the_cursor_moves() {
    let (mut app, gate) = app_with_gated_loading();
    run(&mut app, "<C-End>def f():<Enter><Up>");
    gate.send(()).unwrap();
    run(&mut app, "<wait-idle>");
    assert_eq!(requests_sent(&app), 0);
    assert!(app.editor.ghost().is_none());
}

#[test]
fn waiting_for_idle_waits_for_a_pending_verification() {
    let (mut backend, _) = StandIn::new(vec!["return"]);
    backend.verify_takes = Duration::from_millis(300);
    let engine = backend.spawn("slow verify");
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
