//! Pure text: rope buffer, edit values, selections, history, grapheme and
//! word movement, display width. No IO, no threads, no model.

pub mod edit;
pub mod history;
pub mod movement;
pub mod selection;
pub mod width;

pub use edit::Edit;
pub use history::{EditKind, History};
pub use selection::Selection;
