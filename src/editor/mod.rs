//! The editor: documents, the one apply path, commands, keymap, search,
//! clipboard and file IO. Rendering lives in `ui`, the event loop in `app`.

pub mod clipboard;
pub mod commands;
pub mod document;
pub mod editing;
pub mod fileio;
pub mod files;
pub mod ghost;
pub mod keys;
pub mod prompt;
pub mod search;
pub mod state;
pub mod suggestion;
pub mod swap;
pub mod view;

pub use commands::{COMMANDS, Command, Keymap};
pub use document::{Change, Document, LineEnding};
pub use ghost::Ghost;
pub use keys::Key;
pub use prompt::{Prompt, PromptKind};
pub use state::{Editor, EditorOptions};
pub use suggestion::PredictSignal;
