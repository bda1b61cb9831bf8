//! Where the loop's input events come from: the real terminal (crossterm's
//! event stream), a replay script, or either of them recorded to a script.

use std::future::Future;
use std::io::Write;
use std::time::Instant;

use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;

use crate::event::AppEvent;
use crate::replay;

pub trait EventSource {
    /// The next event; `None` when the source is exhausted (the end of a
    /// script), which ends the loop. Must be cancel-safe: the loop drops
    /// it when something else (an engine event, a timer) comes first.
    fn next_event(&mut self) -> impl Future<Output = anyhow::Result<Option<AppEvent>>>;
}

/// Events from the real terminal.
pub struct TerminalEvents {
    stream: EventStream,
}

impl TerminalEvents {
    pub fn new() -> TerminalEvents {
        TerminalEvents {
            stream: EventStream::new(),
        }
    }
}

impl Default for TerminalEvents {
    fn default() -> Self {
        TerminalEvents::new()
    }
}

impl EventSource for TerminalEvents {
    async fn next_event(&mut self) -> anyhow::Result<Option<AppEvent>> {
        loop {
            let event = match self.stream.next().await {
                Some(event) => event?,
                // The terminal is gone.
                None => anyhow::bail!("the terminal closed"),
            };
            let event = match event {
                Event::Key(key) => AppEvent::Key(key),
                Event::Mouse(mouse) => AppEvent::Mouse(mouse),
                Event::Paste(text) => AppEvent::Paste(text),
                Event::Resize(w, h) => AppEvent::Resize(w, h),
                _ => continue,
            };
            return Ok(Some(event));
        }
    }
}

/// Events from a parsed script, in order; then `None`.
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
    async fn next_event(&mut self) -> anyhow::Result<Option<AppEvent>> {
        Ok(self.events.next())
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
const RECORD_MIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl<S: EventSource> EventSource for Recorder<S> {
    async fn next_event(&mut self) -> anyhow::Result<Option<AppEvent>> {
        let next = self.inner.next_event().await?;
        if let Some(event) = &next
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
