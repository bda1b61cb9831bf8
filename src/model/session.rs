//! A session: a token list and the KV cache that mirrors it, kept in step
//! through edits (PIE), window slides, and generation at any point.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::kv_cache::{KvCache, Segment};
use super::token_edit::TokenEdit;
use super::transformer::{Attend, Interrupted, Logits, Model};

/// How a cache follows an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Keep the prefix, drop the old spans, encode the new spans at their
    /// positions, re-rotate each suffix segment by the sum of the length
    /// changes before it.
    Pie,
    /// Re-encode from the first changed token to the end: the exact baseline.
    Full,
    /// Like `Pie` but without the re-rotation: the paper's broken baseline.
    Conflict,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateStats {
    /// Tokens run through the model.
    pub encoded: usize,
    /// Cached entries moved (and, for `Pie`, re-rotated).
    pub moved: usize,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    TopP { temperature: f32, p: f32, seed: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: Sampling,
}

/// Which cache entries PIE left semantically stale: from layer 1 upward they
/// were computed while attending to text that has changed since. Layer 0 is
/// always exact. Because attention is causal, staleness spreads to everything
/// after the first stale entry, so it is one suffix of the window. It is
/// judged against the document: entries that attended to text now before
/// the window (after a slide) saw real, unchanged text and are not stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// First stale slot; slots `from..` are stale.
    pub from: usize,
    /// The update (counted by [`Session::updates`]) that first made this
    /// suffix stale; repair progress does not change it.
    pub since_update: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepairStats {
    /// Entries re-encoded by this call.
    pub encoded: usize,
    /// Stale entries left after it.
    pub remaining: usize,
    pub elapsed: Duration,
}

pub struct Session {
    model: Arc<Model>,
    cache: KvCache,
    /// Where generation puts its entries, so the mirror stays untouched.
    scratch: KvCache,
    tokens: Vec<u32>,
    stale: Option<Staleness>,
    /// Slots `from..` hold nothing yet, or were computed against such slots
    /// (see [`Session::reset_lazily`]); always inside the stale suffix.
    /// Unlike PIE's stale entries, which are close to a fresh encoding,
    /// these must be encoded before anything reads them.
    unencoded_from: Option<usize>,
    /// Cache updates (applies and slides) since the session was created.
    updates: u64,
}

impl Session {
    pub fn new(model: Arc<Model>) -> Result<Self> {
        let cache = model.new_cache(256)?;
        let scratch = model.new_cache(64)?;
        Ok(Self {
            model,
            cache,
            scratch,
            tokens: Vec::new(),
            stale: None,
            unencoded_from: None,
            updates: 0,
        })
    }

    /// An independent session with the same tokens and cache (a copy, no
    /// re-encoding): for comparing update modes, or repairing a copy while
    /// this one keeps serving.
    pub fn fork(&self) -> Result<Self> {
        Ok(Self {
            model: self.model.clone(),
            cache: self.cache.deep_copy()?,
            scratch: self.model.new_cache(64)?,
            tokens: self.tokens.clone(),
            stale: self.stale,
            unencoded_from: self.unencoded_from,
            updates: self.updates,
        })
    }

    /// A session over a cache that is already filled (one kept on disk and
    /// read back): `stale_from` is where [`Session::staleness`] stood, and
    /// `unencoded_from` where the entries not encoded yet began (see
    /// [`Session::reset_lazily`]; they lie inside the stale suffix).
    pub fn from_cache(
        model: Arc<Model>,
        cache: KvCache,
        tokens: Vec<u32>,
        stale_from: Option<usize>,
        unencoded_from: Option<usize>,
    ) -> Result<Self> {
        if cache.len() != tokens.len() {
            bail!(
                "a cache of {} entries cannot mirror {} tokens",
                cache.len(),
                tokens.len()
            );
        }
        let stale = stale_from
            .filter(|&from| from < tokens.len())
            .map(|from| Staleness {
                from,
                since_update: 0,
            });
        let unencoded_from = unencoded_from.filter(|&u| u < tokens.len());
        if let Some(u) = unencoded_from
            && stale.is_none_or(|s| s.from > u)
        {
            bail!("unencoded entries from {u} outside the stale suffix {stale:?}");
        }
        Ok(Self {
            scratch: model.new_cache(64)?,
            model,
            cache,
            tokens,
            stale,
            unencoded_from,
            updates: 0,
        })
    }

    /// Preallocate cache room for `slots` tokens, so that later edits do not
    /// pay for a growth step (the editor knows its window size up front).
    pub fn reserve(&mut self, slots: usize) -> Result<()> {
        self.cache.reserve(slots)
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// The stale suffix, if PIE or a slide left one (see [`Staleness`]).
    pub fn staleness(&self) -> Option<Staleness> {
        self.stale
    }

    /// Number of stale entries.
    pub fn stale_len(&self) -> usize {
        self.stale.map_or(0, |s| self.tokens.len() - s.from)
    }

    /// Entries not encoded yet (see [`Session::reset_lazily`]).
    pub fn unencoded_len(&self) -> usize {
        self.unencoded_from.map_or(0, |u| self.tokens.len() - u)
    }

    /// Cache updates (applies and slides) made so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Record an update that left slots `from..` stale, unless an earlier
    /// stale suffix already covers them.
    fn mark_stale(&mut self, from: usize) {
        if from >= self.tokens.len() {
            return;
        }
        match &mut self.stale {
            Some(s) if s.from <= from => {}
            Some(s) => s.from = from,
            None => {
                self.stale = Some(Staleness {
                    from,
                    since_update: self.updates,
                })
            }
        }
    }

    /// Re-encode up to `max_tokens` stale entries, the first stale ones
    /// first, each attending to the (exact) entries before it. Repair runs
    /// strictly left to right because an entry is exact only when everything
    /// before it is; the prediction point is never further left than needed,
    /// so the part before the cursor is repaired first in any case. When the
    /// stale suffix is used up, the cache equals a fresh encoding of the
    /// tokens, up to float rounding.
    pub fn repair(&mut self, max_tokens: usize) -> Result<RepairStats> {
        let started = Instant::now();
        let Some(stale) = self.stale else {
            return Ok(RepairStats::default());
        };
        let end = (stale.from + max_tokens).min(self.tokens.len());
        if end > stale.from {
            self.model.forward_chunked(
                &mut self.cache,
                stale.from,
                &self.tokens[stale.from..end],
                Logits::None,
            )?;
        }
        self.stale = (end < self.tokens.len()).then_some(Staleness { from: end, ..stale });
        if self.unencoded_from.is_some_and(|u| u < end) {
            self.unencoded_from = self.stale.map(|s| s.from);
        }
        Ok(RepairStats {
            encoded: end - stale.from,
            remaining: self.stale_len(),
            elapsed: started.elapsed(),
        })
    }

    /// Replace the mirrored tokens and encode them all.
    pub fn reset(&mut self, tokens: &[u32]) -> Result<UpdateStats> {
        self.reset_lazily(tokens, tokens.len())
    }

    /// Replace the mirrored tokens but encode only the first `now` of them:
    /// the rest count as stale and [`Session::repair`] encodes them, first
    /// ones first. Opening a file then costs what precedes the cursor, not
    /// the whole window (seconds on a CPU). Edits in the meantime keep
    /// their PIE semantics; generation first encodes whatever it would
    /// read that is not encoded yet.
    pub fn reset_lazily(&mut self, tokens: &[u32], now: usize) -> Result<UpdateStats> {
        let started = Instant::now();
        let now = now.min(tokens.len());
        self.stale = None;
        self.unencoded_from = None;
        self.cache.clear();
        self.tokens.clear();
        if now > 0 {
            self.model.prefill(&mut self.cache, &tokens[..now])?;
        }
        if now < tokens.len() {
            self.cache.reserve(tokens.len())?;
            self.cache.set_len(tokens.len())?;
            self.stale = Some(Staleness {
                from: now,
                since_update: self.updates,
            });
            self.unencoded_from = Some(now);
        }
        self.tokens = tokens.to_vec();
        Ok(UpdateStats {
            encoded: now,
            moved: 0,
            elapsed: started.elapsed(),
        })
    }

    fn check_hunks(&self, hunks: &[TokenEdit]) -> Result<()> {
        let mut prev_end = 0;
        for (i, h) in hunks.iter().enumerate() {
            if h.start < prev_end {
                bail!("token edit hunks overlap or are out of order at hunk {i} ({h:?})");
            }
            if h.old_end() > self.tokens.len() {
                bail!(
                    "token edit {h:?} reaches past the {} cached tokens",
                    self.tokens.len()
                );
            }
            prev_end = h.old_end();
        }
        Ok(())
    }

    /// Bring the cache in line with `hunks` (see [`TokenEdit`] for their
    /// coordinates) in the given mode.
    pub fn apply(&mut self, hunks: &[TokenEdit], mode: UpdateMode) -> Result<UpdateStats> {
        let started = Instant::now();
        self.check_hunks(hunks)?;
        let hunks: Vec<&TokenEdit> = hunks
            .iter()
            .filter(|h| h.old_len > 0 || !h.new_tokens.is_empty())
            .collect();
        if hunks.is_empty() {
            return Ok(UpdateStats {
                elapsed: started.elapsed(),
                ..Default::default()
            });
        }
        let owned: Vec<TokenEdit> = hunks.iter().map(|h| (*h).clone()).collect();
        let mut new_tokens = self.tokens.clone();
        TokenEdit::apply_all(&mut new_tokens, &owned);
        let mut stats = UpdateStats::default();
        // Where staleness stands after this update: an old stale suffix
        // that starts before the first hunk stays (what follows attended to
        // it); one that starts later was dropped or re-encoded over.
        let first = hunks[0].start;
        let kept_stale = self.stale.filter(|s| s.from < first);
        // Under Pie and Conflict, what follows the first new span was
        // computed against the old text.
        let first_moved = (hunks[0].old_end() < self.tokens.len())
            .then(|| hunks[0].start + hunks[0].new_tokens.len());
        match mode {
            UpdateMode::Full => {
                self.cache.truncate(first);
                let rest = &new_tokens[first..];
                if !rest.is_empty() {
                    self.model
                        .forward_chunked(&mut self.cache, first, rest, Logits::None)?;
                }
                stats.encoded = rest.len();
            }
            UpdateMode::Pie | UpdateMode::Conflict => {
                let mut segments = Vec::with_capacity(hunks.len());
                let mut shift = 0isize;
                for (i, h) in hunks.iter().enumerate() {
                    shift += h.delta();
                    let from = h.old_end();
                    let until = hunks
                        .get(i + 1)
                        .map_or(self.tokens.len(), |next| next.start);
                    let len = until - from;
                    if len > 0 {
                        segments.push(Segment {
                            from,
                            len,
                            to: (from as isize + shift) as usize,
                        });
                    }
                }
                stats.moved = segments
                    .iter()
                    .filter(|s| s.from != s.to)
                    .map(|s| s.len)
                    .sum();
                let rope = (mode == UpdateMode::Pie).then(|| self.model.rope());
                self.cache
                    .move_segments(&segments, new_tokens.len(), rope)?;
                let mut shift = 0isize;
                let mut spans = Vec::new();
                for h in &hunks {
                    let at = (h.start as isize + shift) as usize;
                    if !h.new_tokens.is_empty() {
                        spans.push((at, h.new_tokens.as_slice()));
                    }
                    shift += h.delta();
                }
                stats.encoded = spans.iter().map(|(_, t)| t.len()).sum();
                self.encode_spans(&spans)?;
            }
        }
        // Not-yet-encoded entries before the first hunk stay so, and so do
        // all that follow them (they attended to them). From the first hunk
        // on: Full re-encoded everything against exact entries; PIE encoded
        // the first new span so, but moved the old entries after it.
        self.unencoded_from = match self.unencoded_from {
            Some(u) if u < first => Some(u),
            Some(_) if mode != UpdateMode::Full => {
                Some(first + hunks[0].new_tokens.len()).filter(|&u| u < new_tokens.len())
            }
            _ => None,
        };
        self.tokens = new_tokens;
        debug_assert_eq!(self.cache.len(), self.tokens.len());
        self.updates += 1;
        self.stale = kept_stale;
        if mode != UpdateMode::Full
            && let Some(from) = first_moved
        {
            self.mark_stale(from);
        }
        stats.elapsed = started.elapsed();
        Ok(stats)
    }

    /// Encode new tokens at their (already made room for) slots. Several
    /// short runs (a multi-place edit, a reopened file's changes) go in one
    /// forward pass, so the weights are read once rather than once per run;
    /// long ones are encoded run by run, in chunks.
    fn encode_spans(&mut self, spans: &[(usize, &[u32])]) -> Result<()> {
        const ONE_PASS_MAX: usize = 512;
        let total: usize = spans.iter().map(|(_, t)| t.len()).sum();
        if spans.len() > 1 && total <= ONE_PASS_MAX {
            let tokens: Vec<u32> = spans.iter().flat_map(|(_, t)| t.iter().copied()).collect();
            let ranges: Vec<(usize, usize)> = spans.iter().map(|&(at, t)| (at, t.len())).collect();
            self.model.forward(
                &tokens,
                Attend::Spans {
                    cache: &mut self.cache,
                    spans: &ranges,
                },
                Logits::None,
            )?;
            return Ok(());
        }
        for &(at, tokens) in spans {
            self.model
                .forward_chunked(&mut self.cache, at, tokens, Logits::None)?;
        }
        Ok(())
    }

    /// Drop the first `drop_head` tokens and move the rest to the front,
    /// re-rotating their keys by `-drop_head` instead of re-encoding them.
    pub fn slide(&mut self, drop_head: usize) -> Result<UpdateStats> {
        let started = Instant::now();
        if drop_head > self.tokens.len() {
            bail!(
                "cannot slide by {drop_head}: only {} tokens cached",
                self.tokens.len()
            );
        }
        let rest = self.tokens.len() - drop_head;
        let seg = Segment {
            from: drop_head,
            len: rest,
            to: 0,
        };
        self.cache
            .move_segments(&[seg], rest, Some(self.model.rope()))?;
        self.tokens.drain(..drop_head);
        self.updates += 1;
        // The kept entries attended to the dropped head, text that is still
        // in the document just before the window: they are not stale with
        // respect to the document, so a slide alone leaves nothing to
        // repair. (Re-encoding the window would only take that context away.)
        if let Some(s) = &mut self.stale {
            s.from = s.from.saturating_sub(drop_head);
        }
        if let Some(u) = &mut self.unencoded_from {
            *u = u.saturating_sub(drop_head);
        }
        if self.tokens.is_empty() {
            self.stale = None;
            self.unencoded_from = None;
        }
        Ok(UpdateStats {
            encoded: 0,
            moved: rest,
            elapsed: started.elapsed(),
        })
    }

    /// Slots `0..exact_len()` hold exactly what a fresh encoding of the
    /// tokens would (up to float rounding): everything before PIE's stale
    /// suffix.
    pub fn exact_len(&self) -> usize {
        self.stale.map_or(self.tokens.len(), |s| s.from)
    }

    /// Encode the not-yet-encoded entries among the first `prefix_len`, in
    /// chunks, checking `interrupted` between them; false when it stopped.
    fn encode_before(&mut self, prefix_len: usize, interrupted: &dyn Fn() -> bool) -> Result<bool> {
        const CHUNK: usize = 64;
        while let (Some(_), Some(stale)) =
            (self.unencoded_from.filter(|&u| u < prefix_len), self.stale)
        {
            if interrupted() {
                return Ok(false);
            }
            self.repair(CHUNK.min(prefix_len - stale.from))?;
        }
        Ok(true)
    }

    /// Fresh next-token logits at `prefix_len`, as if token `prefix_len - 1`
    /// were re-run at its position attending only to `cache[0..prefix_len - 1)`.
    /// The mirrored cache is not changed.
    pub fn next_logits(&mut self, prefix_len: usize) -> Result<Vec<f32>> {
        self.encode_before(prefix_len, &|| false)?;
        Ok(self.first_logits(prefix_len, &|| false)?.0)
    }

    /// [`Session::next_logits`], stopping with [`Interrupted`] when asked;
    /// also returns how many cache slots generation attends to before its
    /// scratch entries. When slot `prefix_len - 1` is exact, its stored
    /// hidden state gives the logits (output layer only) and the scratch
    /// area stays empty; in a stale suffix the token is re-run into the
    /// scratch area, so its higher layers see the current text.
    fn first_logits(
        &mut self,
        prefix_len: usize,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(Vec<f32>, usize)> {
        if prefix_len == 0 || prefix_len > self.tokens.len() {
            bail!(
                "prediction point {prefix_len} outside 1..={} cached tokens",
                self.tokens.len()
            );
        }
        self.scratch.clear();
        if prefix_len <= self.exact_len() {
            return Ok((self.stored_logits(prefix_len - 1)?, prefix_len));
        }
        let logits = self.scratch_step(self.tokens[prefix_len - 1], prefix_len - 1, interrupted)?;
        Ok((logits, prefix_len - 1))
    }

    /// Next-token logits after cached slot `slot`, from its stored hidden state.
    fn stored_logits(&self, slot: usize) -> Result<Vec<f32>> {
        Ok(self
            .model
            .logits_after(&self.cache, slot)?
            .to_vec1::<f32>()?)
    }

    /// Run one token into the scratch area after `cache[0..base_len)` and
    /// the scratch entries so far; the next-token logits.
    fn scratch_step(
        &mut self,
        token: u32,
        base_len: usize,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Vec<f32>> {
        let logits = self.model.forward_interruptible(
            &[token],
            Attend::Scratch {
                base: &self.cache,
                base_len,
                scratch: &mut self.scratch,
            },
            Logits::Last,
            interrupted,
        )?;
        Ok(logits.expect("last logits requested").to_vec1::<f32>()?)
    }

    /// Generate after the first `prefix_len` tokens. Generated entries live
    /// in a scratch area at positions `prefix_len..`, so the mirrored cache is
    /// unchanged afterwards. `logit_filter` sees the tokens generated so far
    /// and may edit the logits (token healing); `on_token` returning `Break`
    /// stops generation (end of line, or a newer edit arrived). Generation
    /// also stops at the model's end-of-sequence token, which is not returned.
    pub fn generate(
        &mut self,
        prefix_len: usize,
        options: &GenerateOptions,
        logit_filter: &mut dyn FnMut(&[u32], &mut [f32]),
        on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
    ) -> Result<Vec<u32>> {
        self.generate_interruptible(prefix_len, options, logit_filter, on_token, &|| false)
    }

    /// [`Session::generate`] that also stops inside a forward pass, between
    /// two layers, once `interrupted` returns true; it then returns the
    /// tokens generated so far. For an editor, where a keystroke should not
    /// wait for a prediction step it is about to make useless.
    pub fn generate_interruptible(
        &mut self,
        prefix_len: usize,
        options: &GenerateOptions,
        logit_filter: &mut dyn FnMut(&[u32], &mut [f32]),
        on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Vec<u32>> {
        let mut generated = Vec::new();
        self.generate_with_infos(
            prefix_len,
            options,
            logit_filter,
            &mut |so_far, _| {
                let token = so_far[so_far.len() - 1];
                generated.push(token);
                on_token(token)
            },
            interrupted,
        )?;
        Ok(generated)
    }

    /// [`Session::generate_interruptible`] that shows `on_token` the whole
    /// generation so far (the token last) and what decoding knew about the
    /// token, the raw material of a suggestion's confidence.
    pub fn generate_with_infos(
        &mut self,
        prefix_len: usize,
        options: &GenerateOptions,
        logit_filter: &mut dyn FnMut(&[u32], &mut [f32]),
        on_token: &mut dyn FnMut(&[u32], TokenInfo) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        if options.max_tokens == 0 {
            return Ok(());
        }
        if !self.encode_before(prefix_len, interrupted)? {
            return Ok(());
        }
        let stopped = |e: &anyhow::Error| e.is::<Interrupted>();
        let (mut logits, mut base_len) = match self.first_logits(prefix_len, interrupted) {
            Err(e) if stopped(&e) => return Ok(()),
            other => other?,
        };
        let mut rng = match options.sampling {
            Sampling::TopP { seed, .. } => Some(StdRng::seed_from_u64(seed)),
            Sampling::Greedy => None,
        };
        let eos = self.model.config().eos_id;
        let mut generated = Vec::new();
        loop {
            logit_filter(&generated, &mut logits);
            let token = match (options.sampling, rng.as_mut()) {
                (Sampling::TopP { temperature, p, .. }, Some(rng)) if temperature > 0.0 => {
                    sample_top_p(&logits, temperature, p, rng)?
                }
                _ => argmax(&logits)?,
            };
            if Some(token) == eos {
                return Ok(());
            }
            generated.push(token);
            if on_token(&generated, token_info(&logits, token)).is_break()
                || generated.len() >= options.max_tokens
            {
                return Ok(());
            }
            // While the generation repeats the cached tokens that follow
            // (healing re-typing the token it backed off, or the text after
            // the cursor), their entries are the ones a scratch pass would
            // compute: take the next logits from the cache.
            if self.scratch.is_empty()
                && base_len < self.exact_len()
                && self.tokens[base_len] == token
            {
                logits = self.stored_logits(base_len)?;
                base_len += 1;
                continue;
            }
            logits = match self.scratch_step(token, base_len, interrupted) {
                Err(e) if stopped(&e) => return Ok(()),
                other => other?,
            };
        }
    }

    /// Beam search after the first `prefix_len` tokens, for the `width`
    /// most likely continuations by the sum of their tokens'
    /// log-probabilities. Greedy decoding takes the best token at each step
    /// and often misses a line the model finds more likely, whose first
    /// token was only second best. Each step extends every hypothesis by its
    /// `width` best tokens (under `logit_filter`) and keeps the `width` best
    /// of all; one that `finished` accepts leaves the beam and goes to
    /// `on_found` with its token infos, the most likely first within a step.
    /// `on_found` says whether it is a new result: one that only spells an
    /// earlier one differently (another end token, another tokenization)
    /// does not take a place among the `width`. The search stops once
    /// `width` are found and no hypothesis left can beat them
    /// (log-probabilities only fall), or at `options.max_tokens`. Each
    /// hypothesis has its own copy of the scratch area, and one forward pass
    /// ([`Attend::Rows`]) steps them all: the prompt is never re-encoded,
    /// the weights are read once per step, and the cache is not changed.
    #[allow(clippy::too_many_arguments)]
    pub fn beam_search(
        &mut self,
        prefix_len: usize,
        options: &GenerateOptions,
        width: usize,
        logit_filter: &mut dyn FnMut(&[u32], &mut [f32]),
        finished: &mut dyn FnMut(&[u32]) -> bool,
        on_found: &mut dyn FnMut(&[u32], &[TokenInfo]) -> bool,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        if width == 0 || options.max_tokens == 0 {
            return Ok(());
        }
        let stopped = |e: &anyhow::Error| e.is::<Interrupted>();
        if !self.encode_before(prefix_len, interrupted)? {
            return Ok(());
        }
        let (logits, base_len) = match self.first_logits(prefix_len, interrupted) {
            Err(e) if stopped(&e) => return Ok(()),
            other => other?,
        };
        let eos = self.model.config().eos_id;
        let mut beam = vec![Hypothesis {
            tokens: Vec::new(),
            infos: Vec::new(),
            score: 0.0,
            scratch: self.scratch.deep_copy()?,
            logits,
        }];
        // Scores of the results found so far, the best first.
        let mut found: Vec<f32> = Vec::new();
        while !beam.is_empty() {
            if interrupted() {
                return Ok(());
            }
            // Every hypothesis's `width` best next tokens.
            let mut extensions: Vec<(usize, u32, TokenInfo, f32)> = Vec::new();
            for (parent, hyp) in beam.iter_mut().enumerate() {
                logit_filter(&hyp.tokens, &mut hyp.logits);
                for token in top_tokens(&hyp.logits, width, eos) {
                    let info = token_info(&hyp.logits, token);
                    extensions.push((parent, token, info, hyp.score + info.logprob));
                }
            }
            extensions.sort_by(|a, b| b.3.total_cmp(&a.3));
            extensions.truncate(width);
            // The extensions that stay in the beam, by parent.
            let mut kept: Vec<(usize, Vec<u32>, Vec<TokenInfo>, f32)> = Vec::new();
            for (parent, token, info, score) in extensions {
                if found.len() >= width && score < found[width - 1] {
                    break;
                }
                let hyp = &beam[parent];
                let mut tokens = hyp.tokens.clone();
                tokens.push(token);
                let mut infos = hyp.infos.clone();
                infos.push(info);
                if finished(&tokens) {
                    if on_found(&tokens, &infos) {
                        let at = found.partition_point(|&f| f >= score);
                        found.insert(at, score);
                    }
                    continue;
                }
                if tokens.len() < options.max_tokens {
                    kept.push((parent, tokens, infos, score));
                }
            }
            if kept.is_empty() {
                break;
            }
            // A parent's last child takes its scratch area, the others a copy.
            let mut parents: Vec<Option<KvCache>> =
                beam.into_iter().map(|hyp| Some(hyp.scratch)).collect();
            let mut scratches = Vec::with_capacity(kept.len());
            for (i, (parent, ..)) in kept.iter().enumerate() {
                let shared = kept[i + 1..].iter().any(|later| later.0 == *parent);
                let scratch = parents[*parent]
                    .take()
                    .expect("a parent's scratch area goes to its last child");
                if shared {
                    scratches.push(scratch.deep_copy()?);
                    parents[*parent] = Some(scratch);
                    continue;
                }
                scratches.push(scratch);
            }
            let last_tokens: Vec<u32> = kept.iter().map(|k| k.1[k.1.len() - 1]).collect();
            let rows = match self.model.forward_interruptible(
                &last_tokens,
                Attend::Rows {
                    base: &self.cache,
                    base_len,
                    scratches: &mut scratches,
                },
                Logits::All,
                interrupted,
            ) {
                Err(e) if stopped(&e) => return Ok(()),
                other => other?.expect("all logits requested").to_vec2::<f32>()?,
            };
            beam = kept
                .into_iter()
                .zip(scratches)
                .zip(rows)
                .map(
                    |(((_, tokens, infos, score), scratch), logits)| Hypothesis {
                        tokens,
                        infos,
                        score,
                        scratch,
                        logits,
                    },
                )
                .collect();
        }
        Ok(())
    }

    /// What the model makes of `tokens` as the continuation of the first
    /// `prefix_len` tokens, read rather than generated (pie-eval reads the
    /// line that really follows): each token's [`TokenInfo`] under
    /// `logit_filter`, and last that of the most likely token in `ends`
    /// after them (how the continuation would end). One forward pass in the
    /// scratch area; the cache is not changed. `None` when interrupted.
    pub fn read_continuation(
        &mut self,
        prefix_len: usize,
        tokens: &[u32],
        ends: &[u32],
        logit_filter: &mut dyn FnMut(&[u32], &mut [f32]),
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Option<Vec<TokenInfo>>> {
        let Some(&first) = tokens.first() else {
            return Ok(Some(Vec::new()));
        };
        let stopped = |e: &anyhow::Error| e.is::<Interrupted>();
        if !self.encode_before(prefix_len, interrupted)? {
            return Ok(None);
        }
        let (mut start, base_len) = match self.first_logits(prefix_len, interrupted) {
            Err(e) if stopped(&e) => return Ok(None),
            other => other?,
        };
        logit_filter(&[], &mut start);
        let rows = match self.model.forward_interruptible(
            tokens,
            Attend::Scratch {
                base: &self.cache,
                base_len,
                scratch: &mut self.scratch,
            },
            Logits::All,
            interrupted,
        ) {
            Err(e) if stopped(&e) => return Ok(None),
            other => other?.expect("all logits requested").to_vec2::<f32>()?,
        };
        self.scratch.clear();
        let mut infos = vec![token_info(&start, first)];
        for (at, mut logits) in rows.into_iter().enumerate() {
            logit_filter(&tokens[..=at], &mut logits);
            let next = match tokens.get(at + 1) {
                Some(&next) => next,
                None => match ends
                    .iter()
                    .copied()
                    .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
                {
                    Some(end) => end,
                    None => break,
                },
            };
            infos.push(token_info(&logits, next));
        }
        Ok(Some(infos))
    }
}

/// What decoding knew about a token when it chose it: the raw material of
/// a suggestion's confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenInfo {
    /// Natural log of its probability under the (filtered) logits.
    pub logprob: f32,
    /// Log-probability of the most likely token minus that of the runner-up
    /// (infinite when only one token was allowed).
    pub margin: f32,
}

/// A partial continuation in [`Session::beam_search`].
struct Hypothesis {
    tokens: Vec<u32>,
    infos: Vec<TokenInfo>,
    /// Sum of its tokens' log-probabilities.
    score: f32,
    /// Its own generated entries, after those the prefix needs.
    scratch: KvCache,
    /// Next-token logits after it.
    logits: Vec<f32>,
}

/// The `n` tokens with the highest logits, best first, skipping filtered
/// ones and `skip`.
fn top_tokens(logits: &[f32], n: usize, skip: Option<u32>) -> Vec<u32> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        if !l.is_finite() || Some(i as u32) == skip {
            continue;
        }
        if top.len() < n || l > top[top.len() - 1].1 {
            let at = top.partition_point(|t| t.1 >= l);
            top.insert(at, (i as u32, l));
            top.truncate(n);
        }
    }
    top.into_iter().map(|(i, _)| i).collect()
}

fn token_info(logits: &[f32], token: u32) -> TokenInfo {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| ((l - max) as f64).exp())
        .sum();
    let log_z = max as f64 + sum.ln();
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &l in logits {
        if l > first {
            second = first;
            first = l;
        } else if l > second {
            second = l;
        }
    }
    TokenInfo {
        logprob: (logits[token as usize] as f64 - log_z) as f32,
        margin: first - second,
    }
}

fn argmax(logits: &[f32]) -> Result<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_finite() && best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    match best {
        Some((i, _)) => Ok(i as u32),
        None => bail!("every token was filtered out of the logits"),
    }
}

fn sample_top_p(logits: &[f32], temperature: f32, p: f32, rng: &mut StdRng) -> Result<u32> {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        bail!("every token was filtered out of the logits");
    }
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, ((l - max) / temperature).exp()))
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f32 = probs.iter().map(|x| x.1).sum();
    let mut kept = 0;
    let mut mass = 0.0;
    for (_, q) in &probs {
        kept += 1;
        mass += q / total;
        if mass >= p {
            break;
        }
    }
    probs.truncate(kept.max(1));
    let kept_total: f32 = probs.iter().map(|x| x.1).sum();
    let mut r = rng.random::<f32>() * kept_total;
    for (id, q) in &probs {
        if r < *q {
            return Ok(*id);
        }
        r -= q;
    }
    Ok(probs.last().map(|x| x.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_skips_filtered_tokens() {
        assert_eq!(argmax(&[1.0, f32::NEG_INFINITY, 3.0, 2.0]).unwrap(), 2);
        assert!(argmax(&[f32::NEG_INFINITY; 3]).is_err());
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let logits = [10.0, 9.0, -10.0, -10.0];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let t = sample_top_p(&logits, 1.0, 0.9, &mut rng).unwrap();
            assert!(t < 2, "sampled {t} outside the nucleus");
        }
    }
}
