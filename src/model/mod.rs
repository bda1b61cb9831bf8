//! Inference library: config, rope, KV cache with PIE, forward pass, weights,
//! tokenizer, model sources, sampling. It knows nothing of the editor.

pub mod token_edit;

pub use token_edit::TokenEdit;
pub mod source;
pub mod tokenizer;

pub use tokenizer::Tokenizer;
