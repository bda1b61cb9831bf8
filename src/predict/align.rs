//! Text edits -> token edits: keeping a token list equal to
//! `tokenizer.encode(text)` while the text changes, without re-tokenizing all
//! of it.
//!
//! [`AlignedText`] mirrors a window of the document: its text, its tokens and
//! each token's byte start. **The byte offsets of the [`Edit`]s given to
//! [`AlignedText::apply`] are relative to this mirrored window text**, not to
//! the document; the caller maps document offsets into the window.
//!
//! # Why the window boundaries are safe
//!
//! BPE merges never cross a pre-token boundary, and the byte-level
//! pre-tokenizer regex (GPT-2's, and Qwen2's) is a left-to-right scan in which
//! the match at a position depends only on the text from there on, plus one
//! character of lookahead. No alternative of either regex matches
//! - a non-whitespace character followed by a space or tab, nor
//! - a newline followed by a non-whitespace character,
//!
//! so such positions are pre-token boundaries wherever they occur. The
//! window is grown outward from the changed bytes to the nearest old token
//! starts that are such boundaries in both the old and the new text: the
//! tokens outside are then provably the same, and only the window is
//! re-tokenized. At the right edge the window is tokenized as a string of
//! its own, so a newline boundary is only used there when the newline stands
//! alone (a longer whitespace run would tokenize differently at the end of a
//! string, where the regex lookahead sees no following character).
//! The re-tokenized window is then trimmed against the cached tokens (common
//! prefix and suffix), which widens or narrows the hunk over BPE merges at
//! the edges: `\n\n    ` becoming `\n    ` is one replaced token, never a lost
//! cache.
//!
//! Tokenizers for which this reasoning was not made (a `tokenizer.json` with
//! another pre-tokenizer) re-tokenize the whole text instead; the diff is the
//! same.

use crate::model::{TokenEdit, Tokenizer};
use crate::text::Edit;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlignError {
    #[error(
        "edit {index} covers bytes {start}..{end}, outside the mirrored text of {len} bytes or not on character boundaries"
    )]
    OutOfRange {
        index: usize,
        start: usize,
        end: usize,
        len: usize,
    },
    #[error(
        "edit {index} expects {expected:?} at bytes {start}..{end}, but the mirrored text holds {found:?}"
    )]
    RemovedTextMismatch {
        index: usize,
        start: usize,
        end: usize,
        expected: String,
        found: String,
    },
}

/// A text, its tokens, and each token's byte start in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlignedText {
    text: String,
    tokens: Vec<u32>,
    starts: Vec<usize>,
}

/// One coalesced change: old bytes `[old_start, old_end)` became new bytes
/// `[new_start, new_end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChangedRegion {
    old_start: usize,
    old_end: usize,
    new_start: usize,
    new_end: usize,
}

impl ChangedRegion {
    fn delta(&self) -> isize {
        (self.new_end - self.new_start) as isize - (self.old_end - self.old_start) as isize
    }
}

impl AlignedText {
    pub fn new(tokenizer: &Tokenizer, text: impl Into<String>) -> AlignedText {
        let text = text.into();
        let tokens = tokenizer.encode(&text);
        let starts = token_starts(tokenizer, &tokens);
        AlignedText {
            text,
            tokens,
            starts,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Byte start of each token in [`AlignedText::text`].
    pub fn token_starts(&self) -> &[usize] {
        &self.starts
    }

    /// Byte end of token `index`.
    pub fn token_end(&self, index: usize) -> usize {
        self.starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.text.len())
    }

    /// Index of the token that contains byte `pos` (the last token for
    /// `pos == text.len()`); `None` for an empty text.
    pub fn token_at_byte(&self, pos: usize) -> Option<usize> {
        if self.tokens.is_empty() {
            return None;
        }
        Some(
            self.starts
                .partition_point(|&start| start <= pos)
                .saturating_sub(1),
        )
    }

    /// Drop at least `min_tokens` tokens (and their text) from the head, for
    /// sliding the mirrored window forward without re-tokenizing: the cut is
    /// moved right to the first pre-token boundary, where the remaining tokens
    /// are exactly the tokenization of the remaining text. Returns the number
    /// of tokens and bytes dropped; the cache drops the same tokens and
    /// shifts the rest by minus that many positions. `None`, changing
    /// nothing, for a tokenizer whose boundaries are not known (see
    /// [`Tokenizer::has_regex_boundaries`]): delete the head with
    /// [`AlignedText::apply`] instead.
    pub fn drop_head(
        &mut self,
        tokenizer: &Tokenizer,
        min_tokens: usize,
    ) -> Option<(usize, usize)> {
        if !tokenizer.has_regex_boundaries() {
            return None;
        }
        let mut cut = min_tokens.min(self.tokens.len());
        while cut < self.tokens.len() && !is_boundary(&self.text, self.starts[cut], false) {
            cut += 1;
        }
        let bytes = self.starts.get(cut).copied().unwrap_or(self.text.len());
        self.text.drain(..bytes);
        self.tokens.drain(..cut);
        self.starts.drain(..cut);
        for start in &mut self.starts {
            *start -= bytes;
        }
        Some((cut, bytes))
    }

    /// Apply text edits received together (each relative to the text after
    /// the previous one) and return the token hunks, in ascending order and in
    /// pre-update token positions, that turn the old token list into
    /// `tokenizer.encode(new_text)`. On error nothing changes.
    pub fn apply(
        &mut self,
        tokenizer: &Tokenizer,
        edits: &[Edit],
    ) -> Result<Vec<TokenEdit>, AlignError> {
        let mut new_text = self.text.clone();
        let mut regions: Vec<ChangedRegion> = Vec::new();
        for (index, edit) in edits.iter().enumerate() {
            let (start, end) = (edit.start_byte, edit.old_end_byte);
            if start > end
                || end > new_text.len()
                || !new_text.is_char_boundary(start)
                || !new_text.is_char_boundary(end)
            {
                return Err(AlignError::OutOfRange {
                    index,
                    start,
                    end,
                    len: new_text.len(),
                });
            }
            if new_text[start..end] != edit.removed {
                return Err(AlignError::RemovedTextMismatch {
                    index,
                    start,
                    end,
                    expected: edit.removed.clone(),
                    found: new_text[start..end].to_string(),
                });
            }
            if edit.is_noop() {
                continue;
            }
            new_text.replace_range(start..end, &edit.inserted);
            record_change(&mut regions, start, end, edit.inserted.len());
        }
        if regions.is_empty() {
            return Ok(Vec::new());
        }

        let hunks = if tokenizer.has_regex_boundaries() {
            self.windowed_hunks(tokenizer, &new_text, &regions)
        } else {
            let new_tokens = tokenizer.encode(&new_text);
            diff_hunk(&self.tokens, 0, self.tokens.len(), &new_tokens)
                .into_iter()
                .collect()
        };
        TokenEdit::apply_all(&mut self.tokens, &hunks);
        self.text = new_text;
        self.starts = token_starts(tokenizer, &self.tokens);
        Ok(hunks)
    }

    fn windowed_hunks(
        &self,
        tokenizer: &Tokenizer,
        new_text: &str,
        regions: &[ChangedRegion],
    ) -> Vec<TokenEdit> {
        // Windows in old token indices [first, end) with their old byte range;
        // neighbours that touch are merged so that every window edge sits in
        // text that no region changed.
        struct Window {
            first_token: usize,
            end_token: usize,
            old_start: usize,
            old_end: usize,
            /// Sum of the deltas of the regions before this window.
            shift_before: isize,
            delta: isize,
        }
        let mut windows: Vec<Window> = Vec::new();
        let mut shift = 0isize;
        for region in regions {
            let first_token = self.left_anchor(region.old_start);
            let end_token = self.right_anchor(new_text, regions, region.old_end);
            let old_start = self
                .starts
                .get(first_token)
                .copied()
                .unwrap_or(self.text.len());
            let old_end = self
                .starts
                .get(end_token)
                .copied()
                .unwrap_or(self.text.len());
            match windows.last_mut() {
                Some(last) if old_start <= last.old_end => {
                    last.end_token = last.end_token.max(end_token);
                    last.old_end = last.old_end.max(old_end);
                    last.delta += region.delta();
                }
                _ => windows.push(Window {
                    first_token,
                    end_token,
                    old_start,
                    old_end,
                    shift_before: shift,
                    delta: region.delta(),
                }),
            }
            shift += region.delta();
        }
        windows
            .iter()
            .filter_map(|window| {
                let new_start = offset(window.old_start, window.shift_before);
                let new_end = offset(window.old_end, window.shift_before + window.delta);
                let new_tokens = tokenizer.encode(&new_text[new_start..new_end]);
                diff_hunk(
                    &self.tokens,
                    window.first_token,
                    window.end_token,
                    &new_tokens,
                )
            })
            .collect()
    }

    /// The last old token start at or before `change_start` that is a
    /// pre-token boundary and whose following character the change leaves
    /// alone.
    fn left_anchor(&self, change_start: usize) -> usize {
        let Some(mut index) = self.token_at_byte(change_start) else {
            return 0;
        };
        loop {
            let start = self.starts[index];
            if index == 0 {
                return 0;
            }
            // Tokens may start inside a multi-byte character; those are never
            // boundaries.
            if self.text.is_char_boundary(start) {
                let next_char_end = self.text[start..]
                    .chars()
                    .next()
                    .map_or(start, |c| start + c.len_utf8());
                if next_char_end <= change_start && is_boundary(&self.text, start, false) {
                    return index;
                }
            }
            index -= 1;
        }
    }

    /// The first old token index at or after `change_end` whose start is a
    /// boundary in the old text, lies in no changed region, and maps to a safe
    /// right edge in the new text. `tokens.len()` stands for the text's end.
    fn right_anchor(&self, new_text: &str, regions: &[ChangedRegion], change_end: usize) -> usize {
        let mut index = self.starts.partition_point(|&start| start < change_end);
        while index < self.tokens.len() {
            let old_pos = self.starts[index];
            if is_boundary(&self.text, old_pos, false)
                && let Some(new_pos) = old_to_new(regions, old_pos)
                && is_boundary(new_text, new_pos, true)
            {
                return index;
            }
            index += 1;
        }
        self.tokens.len()
    }
}

/// Whether `pos` is a pre-token boundary (see the module docs); with
/// `right_edge`, also safe as the end of a separately tokenized window.
/// Whether byte `pos` of `text` is certainly a pre-token boundary for the
/// byte-level regex tokenizers (see the module docs), whatever text follows
/// the character at `pos`.
pub fn is_pretoken_boundary(text: &str, pos: usize) -> bool {
    is_boundary(text, pos, false)
}

fn is_boundary(text: &str, pos: usize, right_edge: bool) -> bool {
    if pos == 0 || pos >= text.len() {
        return pos == 0 || pos == text.len();
    }
    if !text.is_char_boundary(pos) {
        return false;
    }
    let mut before = text[..pos].chars().rev();
    let (Some(prev), Some(next)) = (before.next(), text[pos..].chars().next()) else {
        return false;
    };
    if !prev.is_whitespace() && (next == ' ' || next == '\t') {
        return true;
    }
    if prev == '\n' && !next.is_whitespace() {
        return !right_edge || before.next().is_none_or(|c| !c.is_whitespace());
    }
    false
}

/// Where old byte `pos` (an unchanged byte, or the text's end) is in the new
/// text; `None` for a byte that a region replaced.
fn old_to_new(regions: &[ChangedRegion], pos: usize) -> Option<usize> {
    let mut shift = 0isize;
    for region in regions {
        if pos < region.old_start {
            break;
        }
        if pos == region.old_start && region.old_start == region.old_end {
            // An insertion point: text at `pos` follows the inserted bytes.
            return Some(region.new_end);
        }
        if pos < region.old_end {
            return None;
        }
        shift += region.delta();
    }
    Some(offset(pos, shift))
}

fn offset(pos: usize, shift: isize) -> usize {
    (pos as isize + shift) as usize
}

/// Fold an edit of the current text (bytes `[start, end)` replaced by
/// `inserted_len` bytes) into the sorted, disjoint change list.
fn record_change(regions: &mut Vec<ChangedRegion>, start: usize, end: usize, inserted_len: usize) {
    let delta = inserted_len as isize - (end - start) as isize;
    // Regions touching [start, end] in current coordinates merge with it.
    let first = regions.partition_point(|r| r.new_end < start);
    let last = regions.partition_point(|r| r.new_start <= end);
    let shift_before: isize = regions[..first].iter().map(ChangedRegion::delta).sum();
    let overlapping = &regions[first..last];
    let shift_through: isize =
        shift_before + overlapping.iter().map(ChangedRegion::delta).sum::<isize>();
    let merged = match (overlapping.first(), overlapping.last()) {
        (Some(head), Some(tail)) => {
            let new_start = head.new_start.min(start);
            let old_start = if head.new_start <= start {
                head.old_start
            } else {
                offset(start, -shift_before)
            };
            let new_end_before = tail.new_end.max(end);
            let old_end = if tail.new_end >= end {
                tail.old_end
            } else {
                offset(end, -shift_through)
            };
            ChangedRegion {
                old_start,
                old_end,
                new_start,
                new_end: offset(new_end_before, delta),
            }
        }
        _ => ChangedRegion {
            old_start: offset(start, -shift_before),
            old_end: offset(end, -shift_before),
            new_start: start,
            new_end: start + inserted_len,
        },
    };
    for region in &mut regions[last..] {
        region.new_start = offset(region.new_start, delta);
        region.new_end = offset(region.new_end, delta);
    }
    regions.splice(first..last, [merged]);
}

/// The hunk replacing old tokens `[first, end)` by `new_tokens`, trimmed of
/// their common prefix and suffix; `None` when they are equal.
fn diff_hunk(old: &[u32], first: usize, end: usize, new_tokens: &[u32]) -> Option<TokenEdit> {
    let old_span = &old[first..end];
    let prefix = old_span
        .iter()
        .zip(new_tokens)
        .take_while(|(a, b)| a == b)
        .count();
    let max_suffix = old_span.len().min(new_tokens.len()) - prefix;
    let suffix = old_span
        .iter()
        .rev()
        .zip(new_tokens.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let old_len = old_span.len() - prefix - suffix;
    let replacement = &new_tokens[prefix..new_tokens.len() - suffix];
    if old_len == 0 && replacement.is_empty() {
        return None;
    }
    Some(TokenEdit {
        start: first + prefix,
        old_len,
        new_tokens: replacement.to_vec(),
    })
}

fn token_starts(tokenizer: &Tokenizer, tokens: &[u32]) -> Vec<usize> {
    let mut pos = 0;
    tokens
        .iter()
        .map(|&id| {
            let start = pos;
            pos += tokenizer.token_bytes(id).len();
            start
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(
        regions: &mut Vec<ChangedRegion>,
        text: &mut String,
        start: usize,
        end: usize,
        ins: &str,
    ) {
        text.replace_range(start..end, ins);
        record_change(regions, start, end, ins.len());
    }

    #[test]
    fn sequential_edits_coalesce_into_disjoint_regions() {
        let old = "0123456789abcdefghij".to_string();
        let mut text = old.clone();
        let mut regions = Vec::new();
        change(&mut regions, &mut text, 15, 17, "XYZW"); // far right
        change(&mut regions, &mut text, 2, 3, ""); // left, shifts the first
        change(&mut regions, &mut text, 5, 5, "++"); // separate middle
        change(&mut regions, &mut text, 16, 17, "Q"); // inside the right region
        assert_eq!(regions.len(), 3, "{regions:?}");
        // Reassemble the new text from the old one and the regions.
        let mut rebuilt = String::new();
        let mut old_pos = 0;
        for region in &regions {
            rebuilt.push_str(&old[old_pos..region.old_start]);
            rebuilt.push_str(&text[region.new_start..region.new_end]);
            old_pos = region.old_end;
        }
        rebuilt.push_str(&old[old_pos..]);
        assert_eq!(rebuilt, text);
    }

    #[test]
    fn overlapping_edits_merge() {
        let old = "abcdefghij".to_string();
        let mut text = old.clone();
        let mut regions = Vec::new();
        change(&mut regions, &mut text, 2, 4, "XX");
        change(&mut regions, &mut text, 6, 8, "YY");
        change(&mut regions, &mut text, 3, 7, "");
        assert_eq!(regions.len(), 1, "{regions:?}");
        let r = regions[0];
        assert_eq!(
            format!(
                "{}{}{}",
                &old[..r.old_start],
                &text[r.new_start..r.new_end],
                &old[r.old_end..]
            ),
            text
        );
    }

    #[test]
    fn boundaries_follow_the_regex_rules() {
        let text = "def f(x):\n    return x\nclass A:\n\n\tpass";
        assert!(is_boundary(text, 3, false)); // before " f"
        assert!(!is_boundary(text, 4, false)); // inside " f"
        let class_at = text.find("class").unwrap();
        assert!(is_boundary(text, class_at, false));
        assert!(is_boundary(text, class_at, true)); // the newline stands alone
        let pass_at = text.find("pass").unwrap();
        assert!(!is_boundary(text, pass_at, false)); // after a tab
        let double = "a\n\nb";
        assert!(is_boundary(double, 3, false));
        assert!(!is_boundary(double, 3, true));
    }

    #[test]
    fn diff_trims_common_ends() {
        let old = [1, 2, 3, 4, 5];
        assert_eq!(
            diff_hunk(&old, 0, 5, &[1, 2, 9, 4, 5]),
            Some(TokenEdit {
                start: 2,
                old_len: 1,
                new_tokens: vec![9]
            })
        );
        assert_eq!(diff_hunk(&old, 1, 4, &[2, 3, 4]), None);
        assert_eq!(
            diff_hunk(&old, 0, 5, &[1, 5]),
            Some(TokenEdit {
                start: 1,
                old_len: 3,
                new_tokens: vec![]
            })
        );
        // Repeated tokens: the prefix wins, the suffix never overlaps it.
        assert_eq!(
            diff_hunk(&[7, 7], 0, 2, &[7, 7, 7]),
            Some(TokenEdit {
                start: 2,
                old_len: 0,
                new_tokens: vec![7]
            })
        );
    }
}
