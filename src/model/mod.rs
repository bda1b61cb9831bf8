//! Inference library: config, rope, KV cache with PIE, forward pass, weights, tokenizer, model sources, sampling. No editor types.
