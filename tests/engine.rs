//! The engine thread on a stand-in backend: edits are applied eagerly and
//! coalesced, predictions stream and are cancelled by newer requests, a
//! failing or panicking backend turns predictions off without taking the
//! editor down, idle time repairs stale entries and stops for any request.

#[path = "common/stand_in.rs"]
mod stand_in;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use pie_edit::predict::engine::{EngineHandle, EngineOptions, EngineState, Event, Request};
use pie_edit::text::Edit;
use ropey::Rope;
use stand_in::{Call, StandIn};

/// Field order matters: the gate drops first, which releases a backend
/// that is still waiting on it, so dropping the engine can join its
/// thread even after a failed assertion.
struct Harness {
    gate: Sender<()>,
    engine: EngineHandle,
    calls: Arc<Mutex<Vec<Call>>>,
}

fn start(hold_reset: bool, tokens: Vec<&'static str>, panic_on_predict: bool) -> Harness {
    start_with(
        EngineOptions::default(),
        hold_reset,
        tokens,
        panic_on_predict,
        false,
        false,
        false,
    )
}

fn start_with(
    options: EngineOptions,
    hold_reset: bool,
    tokens: Vec<&'static str>,
    panic_on_predict: bool,
    hold_repair: bool,
    stale_after_cursor: bool,
    spin_until_interrupted: bool,
) -> Harness {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded();
    let backend_calls = calls.clone();
    let engine = EngineHandle::spawn_with(options, move |_progress| {
        let (mut backend, _) = StandIn::new(tokens);
        backend.calls = backend_calls;
        backend.gate = gate_rx;
        backend.hold_reset = hold_reset;
        backend.panic_on_predict = panic_on_predict;
        backend.hold_repair = hold_repair;
        backend.stale_after_cursor = stale_after_cursor;
        backend.spin_until_interrupted = spin_until_interrupted;
        Ok((backend, "fake".to_string()))
    });
    Harness {
        gate: gate_tx,
        engine,
        calls,
    }
}

/// The next event that is not a state change or a cache report (an open
/// sends both).
fn next_non_state_event(h: &Harness) -> Event {
    loop {
        match next_event(h) {
            Event::State(_) | Event::Cache(_) => continue,
            event => return event,
        }
    }
}

fn next_event(h: &Harness) -> Event {
    h.engine
        .events
        .recv_timeout(Duration::from_secs(10))
        .expect("engine answered")
}

fn wait_idle(h: &Harness, version: u64) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(h);
        if event == (Event::Idle { version }) {
            return seen;
        }
        seen.push(event);
    }
}

/// Ask for prediction 1 of version 0 at `cursor_char` and wait for its
/// first chunk.
fn predict_until_its_first_chunk(h: &Harness, cursor_char: usize) {
    h.engine.send(Request::Predict {
        version: 0,
        id: 1,
        cursor_char,
        requested_at: Instant::now(),
    });
    assert!(matches!(
        next_non_state_event(h),
        Event::Chunk { id: 1, .. }
    ));
}

/// Prediction `id` ended first, cancelled, and sent no more text.
fn assert_cut_short(rest: &[Event], id: u64) {
    assert!(
        matches!(rest[0], Event::Finished { id: i, cancelled: true, .. } if i == id),
        "{rest:?}"
    );
    assert!(
        !rest.iter().any(|e| matches!(e, Event::Chunk { .. })),
        "{rest:?}"
    );
}

fn typed(rope: &mut Rope, at: usize, text: &str) -> Edit {
    let edit = Edit::insert(rope, at, text);
    edit.apply_to(rope);
    edit
}

#[test]
fn a_burst_of_edits_becomes_one_cache_update() {
    let h = start(true, vec![], false);
    let mut doc = open(&h, "x = 1\n", 0);
    // The backend is held inside `reset` while five keystrokes arrive.
    for (i, ch) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let edit = typed(&mut doc, 6 + i, ch);
        h.engine.send(Request::Edits {
            version: i as u64 + 1,
            edits: vec![edit],
            types_over: None,
        });
    }
    h.gate.send(()).unwrap();
    wait_idle(&h, 5);
    let calls = h.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            Call::Reset("x = 1\n".into()),
            Call::Apply {
                doc: "x = 1\nabcde".into(),
                edits: 5
            }
        ]
    );
}

#[test]
fn a_newer_edit_cancels_a_running_prediction_between_tokens() {
    let h = start(false, vec!["re", "turn", " x", " + 1"], false);
    let mut doc = open(&h, "def f(x):\n    ", 14);
    h.engine.send(Request::Predict {
        version: 0,
        id: 1,
        cursor_char: 14,
        requested_at: Instant::now(),
    });
    assert_eq!(
        next_non_state_event(&h),
        Event::Chunk {
            version: 0,
            id: 1,
            text: "re".into()
        }
    );
    // The user types while the prediction runs: the engine must stop at
    // the next token instead of finishing the suggestion.
    let edit = typed(&mut doc, 14, "y");
    h.engine.send(Request::Edits {
        version: 1,
        edits: vec![edit],
        types_over: None,
    });
    h.gate.send(()).unwrap();
    assert_cut_short(&wait_idle(&h, 1), 1);
    assert!(h.calls.lock().unwrap().contains(&Call::Apply {
        doc: "def f(x):\n    y".into(),
        edits: 1
    }));
}

/// Prediction 1 streams "re" of "return x"; then an `r` is typed at the
/// cursor, marked as typed over prediction `over`.
fn type_over_prediction_1(over: Option<u64>) -> Harness {
    let h = start(false, vec!["re", "turn", " x"], false);
    let mut doc = open(&h, "def f(x):\n    ", 14);
    predict_until_its_first_chunk(&h, 14);
    let edit = typed(&mut doc, 14, "r");
    h.engine.send(Request::Edits {
        version: 1,
        edits: vec![edit],
        types_over: over,
    });
    h
}

/// Edits that only type what the suggestion shows leave the prediction
/// running (its alternatives are still wanted); they are applied once it
/// ends, and then the engine is idle at their version.
#[test]
fn edits_typed_over_the_suggestion_let_the_prediction_finish() {
    let h = type_over_prediction_1(Some(1));
    for _ in 0..3 {
        h.gate.send(()).unwrap();
    }
    let rest = wait_idle(&h, 1);
    let texts: Vec<&str> = rest
        .iter()
        .filter_map(|e| match e {
            Event::Chunk { id: 1, text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["turn", " x"], "{rest:?}");
    assert!(
        rest.iter().any(|e| matches!(
            e,
            Event::Finished {
                id: 1,
                cancelled: false,
                ..
            }
        )),
        "{rest:?}"
    );
    let calls = h.calls.lock().unwrap().clone();
    let predicted = calls.iter().position(|c| *c == Call::Predict(14)).unwrap();
    let applied = calls
        .iter()
        .position(|c| {
            *c == Call::Apply {
                doc: "def f(x):\n    r".into(),
                edits: 1,
            }
        })
        .expect("the typed edit is applied");
    assert!(predicted < applied, "{calls:?}");
}

/// Typing over prediction 1 does not spare prediction 2.
#[test]
fn edits_typed_over_another_prediction_cancel_this_one() {
    let h = type_over_prediction_1(Some(7));
    h.gate.send(()).unwrap();
    assert_cut_short(&wait_idle(&h, 1), 1);
}

#[test]
fn a_stopped_prediction_ends_at_its_next_token() {
    let h = start(false, vec!["re", "turn", " x", " + 1"], false);
    let _doc = open(&h, "def f(x):\n    ", 14);
    predict_until_its_first_chunk(&h, 14);
    // The editor hid it: nothing more of it is wanted.
    h.engine.send(Request::Stop { id: 1 });
    h.gate.send(()).unwrap();
    assert_cut_short(&wait_idle(&h, 0), 1);
}

#[test]
fn a_newer_edit_interrupts_a_prediction_inside_a_token() {
    let options = EngineOptions::default();
    let h = start_with(options, false, vec!["re"], false, false, false, true);
    let mut doc = open(&h, "def f(x):\n    ", 14);
    predict_until_its_first_chunk(&h, 14);
    // The backend is now inside a token's computation and never reaches
    // the next token on its own: only the interrupt can end it.
    let edit = typed(&mut doc, 14, "y");
    h.engine.send(Request::Edits {
        version: 1,
        edits: vec![edit],
        types_over: None,
    });
    let rest = wait_idle(&h, 1);
    assert!(
        matches!(
            rest[0],
            Event::Finished {
                id: 1,
                cancelled: true,
                ..
            }
        ),
        "{rest:?}"
    );
    assert!(h.calls.lock().unwrap().contains(&Call::Apply {
        doc: "def f(x):\n    y".into(),
        edits: 1
    }));
}

#[test]
fn a_prediction_for_an_old_version_is_dropped_unrun() {
    let h = start(true, vec!["x"], false);
    let mut doc = open(&h, "a", 1);
    h.engine.send(Request::Predict {
        version: 0,
        id: 1,
        cursor_char: 1,
        requested_at: Instant::now(),
    });
    let edit = typed(&mut doc, 1, "b");
    h.engine.send(Request::Edits {
        version: 1,
        edits: vec![edit],
        types_over: None,
    });
    h.gate.send(()).unwrap();
    let events = wait_idle(&h, 1);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Finished {
            id: 1,
            cancelled: true,
            ..
        }
    )));
    assert!(
        !h.calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Call::Predict(_)))
    );
}

#[test]
fn a_panicking_backend_turns_predictions_off_and_keeps_answering() {
    let h = start(false, vec!["x"], true);
    h.engine.send(Request::Open {
        version: 0,
        text: "a".into(),
        cursor_char: 1,
        path: None,
    });
    h.engine.send(Request::Predict {
        version: 0,
        id: 1,
        cursor_char: 1,
        requested_at: Instant::now(),
    });
    let events = wait_idle(&h, 0);
    let failure = events.iter().find_map(|e| match e {
        Event::State(EngineState::Failed(msg)) => Some(msg.clone()),
        _ => None,
    });
    assert!(
        failure.is_some_and(|m| m.contains("stand-in backend exploded")),
        "{events:?}"
    );
    // Later requests are still answered, so nothing waiting hangs.
    h.engine.send(Request::Edits {
        version: 1,
        edits: vec![],
        types_over: None,
    });
    wait_idle(&h, 1);
}

#[test]
fn a_failed_load_is_reported() {
    let engine = EngineHandle::spawn(|_| -> anyhow::Result<(StandIn, String)> {
        anyhow::bail!("model file /nope.gguf not found")
    });
    let mut failed = None;
    while failed.is_none() {
        if let Event::State(EngineState::Failed(msg)) =
            engine.events.recv_timeout(Duration::from_secs(10)).unwrap()
        {
            failed = Some(msg);
        }
    }
    assert!(failed.unwrap().contains("/nope.gguf"));
}

fn wait_for_calls(h: &Harness, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = h.calls.lock().unwrap().clone();
        if done(&calls) {
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "engine never got there: {calls:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Open `text`, then type "a" at its start (version 1): the fake
/// backend counts eight stale entries.
/// Open `text` in the engine as version 0.
fn open(h: &Harness, text: &str, cursor_char: usize) -> Rope {
    h.engine.send(Request::Open {
        version: 0,
        text: text.to_string(),
        cursor_char,
        path: None,
    });
    Rope::from_str(text)
}

fn open_and_type_a(h: &Harness, text: &str) -> Rope {
    let mut doc = open(h, text, 0);
    let edit = typed(&mut doc, 0, "a");
    h.engine.send(Request::Edits {
        version: 1,
        edits: vec![edit],
        types_over: None,
    });
    doc
}

fn repairs(calls: &[Call]) -> usize {
    calls.iter().filter(|c| **c == Call::Repair).count()
}

#[test]
fn idle_time_repairs_stale_entries_and_yields_to_a_new_edit() {
    let options = EngineOptions {
        repair_after: Some(Duration::from_millis(5)),
        repair_rest_after: None,
        repair_chunk: 4,
        ..EngineOptions::default()
    };
    let h = start_with(options, false, vec![], false, true, false, false);
    let mut doc = open_and_type_a(&h, "x = 1\n");
    // Eight entries go stale; after the pause a repair step starts and
    // is held inside the backend.
    wait_for_calls(&h, |c| repairs(c) == 1);
    // A keystroke arrives during that step.
    let edit = typed(&mut doc, 1, "b");
    h.engine.send(Request::Edits {
        version: 2,
        edits: vec![edit],
        types_over: None,
    });
    h.gate.send(()).unwrap();
    // The edit goes next: the step in progress finished, no further step
    // ran before it.
    let calls = wait_for_calls(&h, |c| {
        c.iter()
            .any(|c| matches!(c, Call::Apply { edits: 1, doc } if doc == "abx = 1\n"))
    });
    let apply_at = calls.len() - 1;
    assert_eq!(repairs(&calls[..apply_at]), 1, "{calls:?}");
    // Repair resumes after the next pause and runs until nothing is
    // stale: 4 stale left + 8 new = 3 steps of 4.
    for _ in 0..3 {
        h.gate.send(()).unwrap();
    }
    let calls = wait_for_calls(&h, |c| repairs(c) == 4);
    let mut stale = None;
    while stale != Some(0) {
        if let Event::Cache(info) = next_event(&h) {
            stale = Some(info.stale);
        }
    }
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        repairs(&h.calls.lock().unwrap()),
        repairs(&calls),
        "no repair once nothing is stale"
    );
}

#[test]
fn repair_can_be_turned_off() {
    let options = EngineOptions {
        repair_after: None,
        repair_rest_after: Some(Duration::from_millis(5)),
        repair_chunk: 4,
        ..EngineOptions::default()
    };
    let h = start_with(options, false, vec![], false, false, false, false);
    open_and_type_a(&h, "x");
    wait_idle(&h, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(repairs(&h.calls.lock().unwrap()), 0);
}

#[test]
fn stale_entries_after_the_cursor_wait_for_their_own_pause() {
    let options = |rest| EngineOptions {
        repair_after: Some(Duration::from_millis(5)),
        repair_rest_after: rest,
        repair_chunk: 4,
        ..EngineOptions::default()
    };
    // Without a pause for them they stay: typing at the cursor would
    // make them stale again anyway.
    let h = start_with(options(None), false, vec![], false, false, true, false);
    open_and_type_a(&h, "x");
    wait_idle(&h, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(repairs(&h.calls.lock().unwrap()), 0);
    // With one, they are repaired after it.
    let options = options(Some(Duration::from_millis(5)));
    let h = start_with(options, false, vec![], false, false, true, false);
    open_and_type_a(&h, "x");
    wait_for_calls(&h, |c| repairs(c) == 2);
}

/// The engine takes requests off the channel while a prediction runs. When
/// the backend fails right after it took the editor's shutdown, the
/// shutdown must still be served: the editor's quit joins the thread.
#[test]
fn a_backend_that_fails_after_the_shutdown_was_taken_still_lets_the_editor_quit() {
    let (mut backend, _gate) = StandIn::new(vec!["re"]);
    backend.spin_until_interrupted = true;
    backend.fail_when_interrupted = true;
    let engine = EngineHandle::spawn_with(EngineOptions::default(), move |_| {
        Ok((backend, "fake".to_string()))
    });
    engine.send(Request::Open {
        version: 0,
        text: "def f(x):\n    ".into(),
        cursor_char: 14,
        path: None,
    });
    engine.send(Request::Predict {
        version: 0,
        id: 1,
        cursor_char: 14,
        requested_at: Instant::now(),
    });
    loop {
        let event = engine.events.recv_timeout(Duration::from_secs(10)).unwrap();
        if matches!(event, Event::Chunk { id: 1, .. }) {
            break;
        }
    }
    // Dropping the handle sends Shutdown and joins the engine thread.
    let (done, quit) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        drop(engine);
        let _ = done.send(());
    });
    assert!(
        quit.recv_timeout(Duration::from_secs(10)).is_ok(),
        "the engine thread never ended"
    );
}
