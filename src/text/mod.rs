//! Pure text: rope buffer, edit values, selections, history, grapheme and
//! word movement. No IO, no threads, no model.

pub mod edit;

pub use edit::Edit;
