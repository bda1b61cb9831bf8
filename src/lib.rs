//! pie-edit: a terminal code editor with live next-line prediction.
//!
//! The model runs in-process on a background thread, and its KV cache
//! follows every edit of the buffer by Positional Integrity Encoding (PIE).

pub mod app;
pub mod config;
pub mod editor;
pub mod eval;
pub mod model;
pub mod predict;
pub mod replay;
pub mod syntax;
pub mod text;
pub mod ui;
