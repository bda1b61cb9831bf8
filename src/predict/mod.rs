//! The editor's side of prediction: the engine thread, token alignment
//! (text edit -> token edit), the prompt window, healing, triggers and ghost
//! text.

pub mod align;
pub mod config;
pub mod engine;
pub mod healing;
pub mod kv_disk;
pub mod live;
pub mod mirror;
pub mod suggest;
pub mod trigger;
