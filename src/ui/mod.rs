//! ratatui views: the editor pane with ghost text, the status line, the
//! prompt line, the key list; and themes loaded from `themes/*.toml`.

pub mod render;
pub mod theme;

pub use render::{Overlay, ScreenLayout, layout, render};
pub use theme::Theme;
