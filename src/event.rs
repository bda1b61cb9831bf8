//! What the event loop reacts to, from the terminal or from a replay
//! script. Plain data, so that both `app` (the loop) and `replay` (the
//! scripts) can use it without depending on each other.

use std::time::Duration;

use crossterm::event::{KeyEvent, MouseEvent};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// Let this much time pass while handling background work (replay).
    Wait(Duration),
    /// Handle background work until the app reports idle (replay).
    WaitIdle,
}
