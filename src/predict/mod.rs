//! predict: see shared DESIGN.md for what lives here.
pub mod align;
pub mod healing;
