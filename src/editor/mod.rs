//! The editor: documents, the one apply path, commands, keymap, search,
//! clipboard and file IO. Rendering lives in `ui`, the event loop in `app`.

pub mod document;
pub mod fileio;

pub use document::{Change, Document, LineEnding};
