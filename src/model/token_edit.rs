//! The token-level form of an edit: what the KV cache understands.

/// Replace the cached tokens `[start, start + old_len)` with `new_tokens`.
///
/// Several hunks of one update are given in ascending `start` order, with
/// `start` measured in the token list *before* the update, and must not
/// overlap. Each suffix segment then shifts by the sum of the length changes
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEdit {
    pub start: usize,
    pub old_len: usize,
    pub new_tokens: Vec<u32>,
}

impl TokenEdit {
    /// How far the tokens after this hunk move: `new_len - old_len`.
    pub fn delta(&self) -> isize {
        self.new_tokens.len() as isize - self.old_len as isize
    }

    pub fn old_end(&self) -> usize {
        self.start + self.old_len
    }

    /// Apply to a plain token list (the mirror the cache must equal).
    pub fn apply_all(tokens: &mut Vec<u32>, hunks: &[TokenEdit]) {
        // Back to front, so earlier `start`s stay valid.
        for hunk in hunks.iter().rev() {
            tokens.splice(hunk.start..hunk.old_end(), hunk.new_tokens.iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_use_pre_update_positions() {
        let mut tokens = vec![0, 1, 2, 3, 4, 5];
        let hunks = [
            TokenEdit {
                start: 1,
                old_len: 1,
                new_tokens: vec![10, 11],
            },
            TokenEdit {
                start: 4,
                old_len: 2,
                new_tokens: vec![],
            },
        ];
        TokenEdit::apply_all(&mut tokens, &hunks);
        assert_eq!(tokens, vec![0, 10, 11, 2, 3]);
        assert_eq!(hunks[0].delta(), 1);
        assert_eq!(hunks[1].delta(), -2);
    }
}
