//! ui: see shared DESIGN.md for what lives here.
