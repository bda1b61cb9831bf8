//! Token healing at the prediction point.
//!
//! The prompt's last token is chosen by the tokenizer as if the text ended
//! there. At a cursor that is rarely true: after `def f(x):\n    ` the prompt
//! ends in the single token `\n    `, which in training is almost never
//! followed by code (the code's own tokenization is `\n   ` + ` return`).
//! Measured with llama.cpp on SmolLM2, such prompts gave an empty or broken
//! line 60% of the time. Healing removes that last token (or the token the
//! cursor splits) from the prompt and makes the generation reproduce its
//! bytes first, letting the model pick the natural token boundary.
//!
//! Use: [`plan`] gives the number of prompt tokens to keep and the bytes the
//! generation must start with; [`HealingFilter::apply`] masks the logits at
//! each step until those bytes are produced; [`visible_text`] turns the
//! generated tokens into the ghost text after the cursor.

use crate::model::Tokenizer;
use crate::predict::align::{AlignedText, is_pretoken_boundary};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cursor byte {cursor} is outside the mirrored text of {len} bytes or inside a character")]
pub struct CursorOutOfRange {
    pub cursor: usize,
    pub len: usize,
}

/// How to start a prediction at a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealPlan {
    /// The prompt is tokens `[0, keep_tokens)` of the aligned text. Zero only
    /// when the cursor lies inside the first token.
    pub keep_tokens: usize,
    /// The text between the end of the kept tokens and the cursor, which the
    /// generation must reproduce before anything else.
    pub required: Vec<u8>,
}

/// Plan healing for a prediction at byte `cursor` of `aligned`'s text.
///
/// A token that the cursor splits is always backed off. A token that ends
/// exactly at the cursor is backed off when some other token extends its
/// bytes, i.e. when the tokenizer could have merged it with what follows
/// (`\n` + indentation is the case that matters most). At least one token is
/// kept whenever the cursor is past the first token, so the engine always has
/// a token whose next-token logits start the prediction.
/// How many more tokens healing may give back to reach a pre-token boundary.
/// Measured on textwrap.py (every cursor in 1.5 kB): the healed prompt was a
/// prefix of the completed text's own tokenization at 90.5% of cursors with
/// 0 extra tokens, 93.2% with 1, 94.1% with 2, 95.3% with 3; each extra token
/// is one more constrained decode step before the ghost text shows.
const MAX_EXTRA_BACKOFF: usize = 2;

pub fn plan(
    aligned: &AlignedText,
    tokenizer: &Tokenizer,
    cursor: usize,
) -> Result<HealPlan, CursorOutOfRange> {
    let text = aligned.text();
    if cursor > text.len() || !text.is_char_boundary(cursor) {
        return Err(CursorOutOfRange {
            cursor,
            len: text.len(),
        });
    }
    let starts = aligned.token_starts();
    // Tokens that start before the cursor.
    let before = starts.partition_point(|&start| start < cursor);
    if before == 0 {
        return Ok(HealPlan {
            keep_tokens: 0,
            required: Vec::new(),
        });
    }
    let last = before - 1;
    let split_by_cursor = aligned.token_end(last) > cursor;
    let back_off =
        split_by_cursor || (last > 0 && can_be_extended(tokenizer, aligned.tokens()[last]));
    let mut keep_tokens = if back_off { last } else { before };
    if back_off && tokenizer.has_regex_boundaries() {
        keep_tokens = back_to_pretoken_boundary(text, starts, keep_tokens);
    }
    let kept_end = starts
        .get(keep_tokens)
        .copied()
        .unwrap_or(text.len())
        .min(cursor);
    Ok(HealPlan {
        keep_tokens,
        required: text.as_bytes()[kept_end..cursor].to_vec(),
    })
}

/// When the prompt would end inside a pre-token (e.g. in a run of spaces that
/// BPE cut into pieces), the completed text may tokenize that run
/// differently, and the prompt would no longer be a prefix of any natural
/// tokenization. Move the cut back to a pre-token boundary if one is near.
fn back_to_pretoken_boundary(text: &str, starts: &[usize], keep_tokens: usize) -> usize {
    (keep_tokens.saturating_sub(MAX_EXTRA_BACKOFF).max(1)..=keep_tokens)
        .rev()
        .find(|&candidate| {
            candidate < starts.len() && is_pretoken_boundary(text, starts[candidate])
        })
        .unwrap_or(keep_tokens)
}

/// Whether a longer token starts with this token's bytes.
fn can_be_extended(tokenizer: &Tokenizer, id: u32) -> bool {
    let bytes = tokenizer.token_bytes(id);
    tokenizer
        .tokens_starting_with(bytes)
        .iter()
        .any(|&other| tokenizer.token_bytes(other).len() > bytes.len())
}

/// The bytes of `required` that `generated` has not produced yet: `Some(&[])`
/// once all are produced, `None` if the generation left the required path.
pub fn remaining_required<'r>(
    tokenizer: &Tokenizer,
    required: &'r [u8],
    generated: &[u32],
) -> Option<&'r [u8]> {
    let mut produced = 0;
    for &id in generated {
        if produced >= required.len() {
            break;
        }
        let bytes = tokenizer.token_bytes(id);
        let overlap = bytes.len().min(required.len() - produced);
        if bytes[..overlap] != required[produced..produced + overlap] {
            return None;
        }
        produced += bytes.len();
    }
    Some(&required[produced.min(required.len())..])
}

/// Masks the logits of tokens inconsistent with the bytes still required.
#[derive(Debug, Clone)]
pub struct HealingFilter<'t> {
    tokenizer: &'t Tokenizer,
    required: Vec<u8>,
}

impl<'t> HealingFilter<'t> {
    pub fn new(tokenizer: &'t Tokenizer, plan: &HealPlan) -> HealingFilter<'t> {
        HealingFilter {
            tokenizer,
            required: plan.required.clone(),
        }
    }

    /// Whether `generated` has produced all required bytes (or left them, in
    /// which case there is nothing left to enforce).
    pub fn is_satisfied(&self, generated: &[u32]) -> bool {
        remaining_required(self.tokenizer, &self.required, generated).is_none_or(<[u8]>::is_empty)
    }

    /// Allow only tokens that start with the remaining required bytes or are
    /// a non-empty prefix of them; every other logit becomes -inf. Does
    /// nothing once the requirement is met.
    pub fn apply(&self, generated_so_far: &[u32], logits: &mut [f32]) {
        let Some(remaining) = remaining_required(self.tokenizer, &self.required, generated_so_far)
        else {
            return;
        };
        if remaining.is_empty() {
            return;
        }
        let mut allowed: Vec<u32> = self.tokenizer.tokens_starting_with(remaining).to_vec();
        for len in 1..remaining.len() {
            if let Some(id) = self.tokenizer.token_with_bytes(&remaining[..len]) {
                allowed.push(id);
            }
        }
        let kept: Vec<(usize, f32)> = allowed
            .iter()
            .map(|&id| id as usize)
            .filter(|&index| index < logits.len())
            .map(|index| (index, logits[index]))
            .collect();
        if kept.is_empty() {
            // No token can continue the required bytes (impossible for a
            // byte-level vocabulary); an unconstrained step beats a dead end.
            return;
        }
        logits.fill(f32::NEG_INFINITY);
        for (index, value) in kept {
            logits[index] = value;
        }
    }
}

/// The text the generation adds after the cursor: the generated bytes minus
/// the healed prefix, cut before an incomplete UTF-8 character at the end so
/// streamed ghost text never shows a broken character. Empty while the
/// required bytes are not yet all produced, or if the generation left them.
pub fn visible_text(tokenizer: &Tokenizer, required: &[u8], generated: &[u32]) -> String {
    let bytes = tokenizer.decode_bytes(generated);
    if bytes.len() < required.len() || !bytes.starts_with(required) {
        return String::new();
    }
    let after = &bytes[required.len()..];
    match std::str::from_utf8(after) {
        Ok(text) => text.to_string(),
        Err(error) if error.error_len().is_none() => {
            String::from_utf8_lossy(&after[..error.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(after).into_owned(),
    }
}
