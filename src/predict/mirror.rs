//! The engine's real backend: a window of the document mirrored as text,
//! tokens and KV cache, kept in step with every edit by PIE.
//!
//! The window is a char range `[start, end)` of the document holding at most
//! `max_context` tokens around the cursor. Document edits are mapped into
//! window-relative edits; the aligner turns them into token hunks and the
//! session moves the cache (re-rotating, not re-encoding, what follows).
//! When typing pushes the window past `max_context`, its head is dropped and
//! the rest shifted back: a slide, not a re-encode.

use std::ops::ControlFlow;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::align::AlignedText;
use super::engine::{Backend, CacheInfo, Output, Persist};
use super::healing::{self, HealingFilter};
use super::kv_disk::KvDisk;
use super::suggest::{self, Confidence, ConfidenceMeter};
use crate::model::kv_store::{self, ModelIdentity, Storage, Tag};
use crate::model::{
    GenerateOptions, Sampling, Session, TokenInfo, Tokenizer, UpdateMode, UpdateStats,
};
use crate::text::Edit;

/// How the mirror predicts and keeps its window.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub max_context: usize,
    pub mode: UpdateMode,
    /// Lines of code per suggestion (a leading line break does not count).
    pub max_lines: usize,
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// The order the alternatives are offered in.
    pub rank: Rank,
    /// How many tokens of the first suggestion its verdict waits for (see
    /// [`Choice::Verdict`]).
    pub verdict_tokens: usize,
    /// Width of the beam search that finds the alternatives (0: none).
    pub beam: usize,
}

/// The order alternatives are offered in.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Rank {
    /// By mean token log-probability, the highest first.
    Mean,
    /// By the log-probability of the whole line, the highest first.
    #[default]
    Sum,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            max_context: 2048,
            mode: UpdateMode::Pie,
            max_lines: 1,
            max_tokens: 48,
            sampling: Sampling::Greedy,
            rank: Rank::default(),
            verdict_tokens: 8,
            beam: 4,
        }
    }
}

/// Bytes of code per token, roughly, for sizing a window before it is
/// tokenized; the exact count is enforced after tokenizing.
const BYTES_PER_TOKEN_ESTIMATE: usize = 4;

pub struct Mirror {
    tokenizer: Arc<Tokenizer>,
    session: Session,
    config: MirrorConfig,
    aligned: AlignedText,
    /// The window's text as a rope, for char <-> byte mapping of edits.
    window: ropey::Rope,
    /// Document char offset of the window's first char.
    start: usize,
    last_update: UpdateStats,
    /// The weights file, when loaded from one: what a disk cache entry is
    /// checked against.
    model_path: Option<std::path::PathBuf>,
    /// Where the cache is kept between runs (`None`: it is not).
    disk: Option<DiskCache>,
    /// Tokens encoded since the cache was last written to (or read from)
    /// disk: decides whether a save rewrites the entry.
    encoded_since_persist: usize,
    /// The disk entry holds this window's cache as of the last write or read.
    entry_current: bool,
}

/// A cache directory and what its entries must match.
pub struct DiskCache {
    pub disk: KvDisk,
    pub identity: ModelIdentity,
    pub storage: Storage,
}

impl Mirror {
    pub fn new(tokenizer: Arc<Tokenizer>, session: Session, config: MirrorConfig) -> Mirror {
        let aligned = AlignedText::new(&tokenizer, "");
        Mirror {
            tokenizer,
            session,
            config,
            aligned,
            window: ropey::Rope::new(),
            start: 0,
            last_update: UpdateStats::default(),
            model_path: None,
            disk: None,
            encoded_since_persist: 0,
            entry_current: false,
        }
    }

    pub fn tokens(&self) -> &[u32] {
        self.session.tokens()
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// An independent copy (the cache is copied, not re-encoded): the edit
    /// benchmark brings one encoded context through an edit in every mode.
    pub fn fork(&self) -> Result<Mirror> {
        Ok(Mirror {
            tokenizer: self.tokenizer.clone(),
            session: self.session.fork()?,
            config: self.config.clone(),
            aligned: self.aligned.clone(),
            window: self.window.clone(),
            start: self.start,
            last_update: self.last_update.clone(),
            model_path: self.model_path.clone(),
            // Two mirrors writing one entry would race; a fork is a scratch copy.
            disk: None,
            encoded_since_persist: self.encoded_since_persist,
            entry_current: false,
        })
    }

    pub fn aligned(&self) -> &AlignedText {
        &self.aligned
    }

    /// Document char range the cache mirrors.
    pub fn window_range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.window.len_chars()
    }

    pub fn last_update(&self) -> &UpdateStats {
        &self.last_update
    }

    pub fn set_mode(&mut self, mode: UpdateMode) {
        self.config.mode = mode;
    }

    /// Choose a window and encode it: the whole document when it fits the
    /// token budget (then no cursor jump ever re-encodes), otherwise lines
    /// around `cursor` with three quarters of the budget before it, since
    /// prediction reads what precedes the cursor.
    fn place_window(&mut self, doc: &ropey::Rope, cursor: usize) -> Result<()> {
        let budget = self.config.max_context * BYTES_PER_TOKEN_ESTIMATE;
        let (from, to) = if doc.len_bytes() <= budget {
            (0, doc.len_chars())
        } else {
            let cursor_byte = doc.char_to_byte(cursor);
            let from =
                doc.line_to_char(doc.byte_to_line(cursor_byte.saturating_sub(budget * 3 / 4)));
            let to_line = doc.byte_to_line((cursor_byte + budget / 4).min(doc.len_bytes()));
            let to = if to_line + 1 >= doc.len_lines() {
                doc.len_chars()
            } else {
                doc.line_to_char(to_line + 1)
            };
            (from, to)
        };
        self.start = from;
        self.window = doc.slice(from..to).into();
        self.aligned = AlignedText::new(&self.tokenizer, self.window.to_string());
        // Only what a prediction at the cursor reads is encoded now; the
        // engine encodes the rest in the background (a whole window takes
        // seconds on a CPU, and the user should not wait for it).
        let cursor_byte = self.window.char_to_byte(cursor.clamp(from, to) - from);
        let now = self
            .aligned
            .token_at_byte(cursor_byte)
            .map_or(self.aligned.tokens().len(), |t| t + 1);
        self.last_update = self.session.reset_lazily(self.aligned.tokens(), now)?;
        self.encoded_since_persist += self.last_update.encoded;
        self.entry_current = false;
        tracing::debug!(
            tokens = self.aligned.tokens().len(),
            ms = self.last_update.elapsed.as_millis(),
            "window placed and encoded"
        );
        self.fit_budget(cursor)
    }

    /// Keep the cursor inside the window. A cursor just past either end
    /// extends the window by the text in between (an insertion at the
    /// window's edge: only that text is encoded, the rest is shifted), then
    /// the budget is enforced by sliding. Only a jump further than the
    /// budget re-encodes a new window.
    fn follow_cursor(&mut self, doc: &ropey::Rope, cursor: usize) -> Result<()> {
        let window = self.window_range();
        if window.contains(&cursor) || cursor == window.end {
            return self.fit_budget(cursor);
        }
        let budget = self.config.max_context * BYTES_PER_TOKEN_ESTIMATE;
        let edit = if cursor > window.end {
            let line = doc.char_to_line(cursor);
            let end = if line + 1 >= doc.len_lines() {
                doc.len_chars()
            } else {
                doc.line_to_char(line + 1)
            };
            let added = doc.slice(window.end..end);
            (added.len_bytes() <= budget)
                .then(|| Edit::insert(&self.window, self.window.len_chars(), &added.to_string()))
        } else {
            let start = doc.line_to_char(doc.char_to_line(cursor));
            let added = doc.slice(start..window.start);
            (added.len_bytes() <= budget).then(|| {
                self.start = start;
                Edit::insert(&self.window, 0, &added.to_string())
            })
        };
        match edit {
            Some(edit) => {
                edit.apply_to(&mut self.window);
                let started = std::time::Instant::now();
                let before = self.aligned.tokens().len();
                self.sync_tokens(&[edit])?;
                tracing::debug!(
                    added = self.aligned.tokens().len() - before,
                    ms = started.elapsed().as_millis(),
                    "window extended to the cursor"
                );
                self.fit_budget(cursor)
            }
            None => self.place_window(doc, cursor),
        }
    }

    /// Enforce `max_context` by dropping the head (a PIE slide) while the
    /// cursor stays inside, then by cutting the tail.
    fn fit_budget(&mut self, cursor: usize) -> Result<()> {
        let excess = self
            .aligned
            .tokens()
            .len()
            .saturating_sub(self.config.max_context);
        if excess == 0 {
            return Ok(());
        }
        let cursor_byte = self.window.char_to_byte(
            cursor
                .saturating_sub(self.start)
                .min(self.window.len_chars()),
        );
        let cursor_token = self.aligned.token_at_byte(cursor_byte).unwrap_or(0);
        // Keep some context before the cursor when sliding.
        let can_drop = cursor_token.saturating_sub(self.config.max_context / 2);
        // Slide by an eighth of the budget at least: each slide moves the
        // whole cache (one rope call per layer), so typing at the end of a
        // full window should pay for it rarely, not on every other key.
        let drop = excess.max(self.config.max_context / 8).min(can_drop);
        if drop > 0
            && let Some((tokens, bytes)) = self.aligned.drop_head(&self.tokenizer, drop)
        {
            let chars = self.window.byte_to_char(bytes);
            self.window.remove(..chars);
            self.start += chars;
            let stats = self.session.slide(tokens)?;
            tracing::debug!(
                dropped = tokens,
                ms = stats.elapsed.as_millis(),
                "window slid"
            );
            self.accumulate(stats);
        }
        let excess = self
            .aligned
            .tokens()
            .len()
            .saturating_sub(self.config.max_context);
        if excess > 0 {
            // Cut the tail at a line start so the cut never splits a token.
            let keep_tokens = self.aligned.tokens().len() - excess;
            let keep_byte = self.aligned.token_starts()[keep_tokens];
            let line = self.window.byte_to_line(keep_byte);
            // The cursor's place after the slide above, which moved the
            // window's start (its byte offset from before would point
            // past the shortened window).
            let cursor_char = cursor
                .saturating_sub(self.start)
                .min(self.window.len_chars());
            let cut = self.window.line_to_char(line).max(cursor_char);
            let edit = Edit::delete(&self.window, cut, self.window.len_chars());
            edit.apply_to(&mut self.window);
            self.sync_tokens(&[edit])?;
            tracing::debug!(tokens = excess, "window tail cut");
        }
        Ok(())
    }

    fn accumulate(&mut self, stats: UpdateStats) {
        self.encoded_since_persist += stats.encoded;
        self.entry_current = false;
        self.last_update.encoded += stats.encoded;
        self.last_update.moved += stats.moved;
        self.last_update.elapsed += stats.elapsed;
    }

    /// Bring tokens and cache along with window edits that were just
    /// applied to `self.window` (each relative to the window after the
    /// previous one): token hunks, then one cache update.
    fn sync_tokens(&mut self, edits: &[Edit]) -> Result<()> {
        let hunks = self
            .aligned
            .apply(&self.tokenizer, edits)
            .context("aligning tokens with an edit")?;
        if !hunks.is_empty() {
            let stats = self.session.apply(&hunks, self.config.mode)?;
            tracing::trace!(
                encoded = stats.encoded,
                moved = stats.moved,
                ms = stats.elapsed.as_millis(),
                "cache updated"
            );
            self.accumulate(stats);
        }
        debug_assert_eq!(self.aligned.tokens(), self.session.tokens());
        Ok(())
    }

    /// Map one document edit onto the window and apply it to the window
    /// text. Edits before the window only move it; one that straddles its
    /// start loses the part before it (the window then begins after the
    /// inserted text); edits after it are ignored.
    fn window_edit(&mut self, edit: &Edit) -> Option<Edit> {
        let (ws, we) = (self.start, self.start + self.window.len_chars());
        let (s, e) = (edit.start_char, edit.old_end_char);
        let inserted_chars = edit.inserted.chars().count();
        let window_edit = if s < ws && e <= ws {
            self.start = ws + inserted_chars - (e - s);
            return None;
        } else if s < ws {
            self.start = s + inserted_chars;
            Edit::delete(&self.window, 0, e.min(we) - ws)
        } else if s <= we {
            Edit::replace(&self.window, s - ws, e.min(we) - ws, &edit.inserted)
        } else {
            return None;
        };
        window_edit.apply_to(&mut self.window);
        Some(window_edit)
    }

    /// Predict at document char `cursor`: the first suggestion streams as
    /// `Choice::Text` (trailing whitespace held back, so it never flickers
    /// in and out) with its confidence so far, then comes whole with its
    /// confidence as `Choice::Done`. Then up to `choices - 1` alternatives,
    /// distinct by their first line, come as `Choice::Done` too, the most
    /// likely first. A beam search ([`MirrorConfig::beam`],
    /// [`Session::beam_search`]) finds them once the first is complete, from
    /// the same cache. Every line it finds is reported as
    /// `Choice::Candidate` before they are ranked.
    pub fn generate_choices(
        &mut self,
        cursor: usize,
        choices: usize,
        on_choice: &mut dyn FnMut(Choice<'_>) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let window = self.window_range();
        if !window.contains(&cursor) && cursor != window.end {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let cursor_byte = self.window.char_to_byte(cursor - self.start);
        let plan = healing::plan(&self.aligned, &self.tokenizer, cursor_byte)?;
        if plan.keep_tokens == 0 {
            return Ok(());
        }
        let line_start = self
            .window
            .line_to_char(self.window.char_to_line(cursor - self.start));
        let line_before = self
            .window
            .slice(line_start..cursor - self.start)
            .to_string();
        let filter = HealingFilter::new(&self.tokenizer, &plan);
        let options = GenerateOptions {
            max_tokens: self.config.max_tokens,
            sampling: self.config.sampling,
        };
        let tokenizer = self.tokenizer.clone();
        let max_lines = self.config.max_lines;
        let wanted = choices.max(1);
        let has_code = |generated: &[u32]| brings_code(&tokenizer, &plan.required, generated);
        let verdict_tokens = self.config.verdict_tokens.max(1);
        let mut meter = ConfidenceMeter::default();
        // What is shown of the first suggestion, and how many of its bytes
        // have been streamed.
        let mut shown = String::new();
        let mut sent = 0;
        let mut judged = false;
        // Whether generation should stop for good.
        let mut enough = false;
        self.session.generate_with_infos(
            plan.keep_tokens,
            &options,
            &mut |so_far, logits| filter.apply(so_far, logits),
            &mut |generated, info| {
                meter.push(info, has_code(generated));
                let visible = healing::visible_text(&tokenizer, &plan.required, generated);
                let (now, done) = suggest::shape(&visible, &line_before, max_lines);
                if now.len() > sent && now.is_char_boundary(sent) {
                    if on_choice(Choice::Text(&now[sent..])).is_break() {
                        enough = true;
                        return ControlFlow::Break(());
                    }
                    sent = now.len();
                }
                shown = now;
                if !judged && !done && meter.tokens() >= verdict_tokens {
                    judged = true;
                    let verdict = Choice::Verdict {
                        confidence: meter.confidence(),
                        complete: false,
                    };
                    if on_choice(verdict).is_break() {
                        enough = true;
                        return ControlFlow::Break(());
                    }
                }
                if done {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
            interrupted,
        )?;
        // Without a first suggestion there is nothing to offer others of.
        let first_line_shown = first_line(&shown).to_string();
        if enough || interrupted() || first_line_shown.is_empty() {
            return Ok(());
        }
        let confidence = meter.confidence();
        if !judged
            && on_choice(Choice::Verdict {
                confidence,
                complete: true,
            })
            .is_break()
        {
            return Ok(());
        }
        let first = Choice::Done {
            index: 0,
            text: &shown,
            confidence,
        };
        if on_choice(first).is_break() || wanted == 1 {
            return Ok(());
        }
        let first_done = started.elapsed();
        let shaped = |generated: &[u32]| {
            let visible = healing::visible_text(&tokenizer, &plan.required, generated);
            suggest::shape(&visible, &line_before, max_lines)
        };
        let line_logprob = |c: &Confidence| c.mean_logprob as f64 * c.tokens as f64;
        let mut found: Vec<(String, Confidence)> = Vec::new();
        if self.config.beam > 0 {
            self.session.beam_search(
                plan.keep_tokens,
                &options,
                self.config.beam,
                &mut |so_far, logits| filter.apply(so_far, logits),
                &mut |generated| shaped(generated).1,
                &mut |generated, infos| {
                    let confidence = confidence_of(&tokenizer, &plan.required, generated, infos);
                    let text = shaped(generated).0;
                    // Another spelling of a line found already (ended by
                    // two line breaks, or tokenized otherwise): keep the
                    // likelier, and let the search look for another line.
                    let line = first_line(&text);
                    match found.iter_mut().find(|(t, _)| first_line(t) == line) {
                        Some(same) => {
                            if line_logprob(&confidence) > line_logprob(&same.1) {
                                *same = (text, confidence);
                            }
                            false
                        }
                        None => {
                            found.push((text, confidence));
                            true
                        }
                    }
                },
                interrupted,
            )?;
        }
        // The most likely first (the search finds them in the order they
        // end).
        found.sort_by(|a, b| line_logprob(&b.1).total_cmp(&line_logprob(&a.1)));
        let mut candidates = Vec::with_capacity(found.len());
        for (text, confidence) in found {
            let choice = Choice::Candidate {
                text: &text,
                confidence,
            };
            if interrupted() || on_choice(choice).is_break() {
                return Ok(());
            }
            candidates.push(Candidate {
                line: first_line(&text).to_string(),
                text,
                confidence,
            });
        }
        let alternatives =
            alternatives(candidates, &first_line_shown, wanted - 1, self.config.rank);
        let mut offered = 0;
        for candidate in alternatives {
            if interrupted() {
                break;
            }
            offered += 1;
            let choice = Choice::Done {
                index: offered,
                text: &candidate.text,
                confidence: candidate.confidence,
            };
            if on_choice(choice).is_break() {
                break;
            }
        }
        tracing::debug!(
            // Counts only, never text: the log must not hold what the
            // buffer holds (people edit `.env` files).
            alternatives = offered,
            ms = started.elapsed().as_millis(),
            beam_ms = (started.elapsed() - first_done).as_millis(),
            "prediction finished"
        );
        Ok(())
    }

    /// The model's confidence in `text` as what follows document char
    /// `cursor`, read rather than generated ([`Session::read_continuation`]):
    /// pie-eval reads the line that really follows. `None` for text longer
    /// than a suggestion may be.
    pub fn read_line(&mut self, cursor: usize, text: &str) -> Result<Option<Confidence>> {
        let cursor_byte = self.window.char_to_byte(cursor - self.start);
        let plan = healing::plan(&self.aligned, &self.tokenizer, cursor_byte)?;
        if plan.keep_tokens == 0 {
            return Ok(None);
        }
        let filter = HealingFilter::new(&self.tokenizer, &plan);
        let required = String::from_utf8_lossy(&plan.required);
        let tokens = self.tokenizer.encode(&format!("{required}{text}"));
        if tokens.len() > self.config.max_tokens {
            return Ok(None);
        }
        let Some(infos) = self.session.read_continuation(
            plan.keep_tokens,
            &tokens,
            self.tokenizer.tokens_starting_with(b"\n"),
            &mut |so_far, logits| filter.apply(so_far, logits),
            &|| false,
        )?
        else {
            return Ok(None);
        };
        Ok(Some(confidence_of(
            &self.tokenizer,
            &plan.required,
            &tokens,
            &infos,
        )))
    }

    /// [`Mirror::generate_choices`] from the outside: the suggestions at
    /// `cursor` of `doc`, each with its confidence (pie-eval).
    pub fn choices_at(
        &mut self,
        doc: &ropey::Rope,
        cursor: usize,
        choices: usize,
    ) -> Result<Vec<(String, Confidence)>> {
        self.follow_cursor(doc, cursor)?;
        let mut out = Vec::new();
        self.generate_choices(
            cursor,
            choices,
            &mut |choice| {
                if let Choice::Done {
                    text, confidence, ..
                } = choice
                {
                    out.push((text.to_string(), confidence));
                }
                ControlFlow::Continue(())
            },
            &|| false,
        )?;
        Ok(out)
    }
}

/// The `n` alternatives to offer after the first suggestion's line, in
/// order: ranked, each line once, and none that is only closing brackets
/// (one key to type, not worth a place; at an automatic trigger the first
/// suggestion is not shown either).
fn alternatives(
    mut candidates: Vec<Candidate>,
    first: &str,
    n: usize,
    rank: Rank,
) -> Vec<Candidate> {
    let key = |c: &Candidate| match rank {
        Rank::Mean => -c.confidence.mean_logprob as f64,
        Rank::Sum => -(c.confidence.mean_logprob as f64) * c.confidence.tokens as f64,
    };
    // Stable: ties keep the order of decoding.
    candidates.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mut lines = vec![first.to_string()];
    candidates.retain(|c| {
        let keep = !suggest::only_closing(&c.line) && !lines.contains(&c.line);
        if keep {
            lines.push(c.line.clone());
        }
        keep
    });
    candidates.truncate(n);
    candidates
}

/// A suggestion's first line of code, trimmed: what tells alternatives
/// apart.
fn first_line(text: &str) -> &str {
    text.trim().split('\n').next().unwrap_or("").trim()
}

/// Whether the generated tokens show code after the cursor yet.
fn brings_code(tokenizer: &Tokenizer, required: &[u8], generated: &[u32]) -> bool {
    !healing::visible_text(tokenizer, required, generated)
        .trim()
        .is_empty()
}

/// The confidence of a line from its tokens' infos. `infos` may hold one
/// more than `tokens`: how the line ends, read after its last token.
fn confidence_of(
    tokenizer: &Tokenizer,
    required: &[u8],
    tokens: &[u32],
    infos: &[TokenInfo],
) -> Confidence {
    let mut meter = ConfidenceMeter::default();
    for (at, &info) in infos.iter().enumerate() {
        let so_far = &tokens[..(at + 1).min(tokens.len())];
        meter.push(info, brings_code(tokenizer, required, so_far));
    }
    meter.confidence()
}

/// What [`Mirror::generate_choices`] reports.
#[derive(Debug)]
pub enum Choice<'a> {
    /// More text of the first suggestion, as it is generated.
    Text(&'a str),
    /// The first suggestion's confidence, to judge it by: that of its first
    /// [`MirrorConfig::verdict_tokens`] tokens, or of all of it when it is
    /// `complete` before. It comes right after the text it judges.
    Verdict {
        confidence: Confidence,
        complete: bool,
    },
    /// Suggestion `index` (0: the first), complete.
    Done {
        index: usize,
        text: &'a str,
        confidence: Confidence,
    },
    /// A line the beam search found for the alternatives, before they are
    /// ranked and de-duplicated (pie-eval).
    Candidate {
        text: &'a str,
        confidence: Confidence,
    },
}

/// A line found for the alternatives, waiting to be ranked.
struct Candidate {
    line: String,
    text: String,
    confidence: Confidence,
}

impl Backend for Mirror {
    fn reset(&mut self, doc: &ropey::Rope, cursor_char: usize) -> Result<()> {
        self.place_window(doc, cursor_char)
    }

    fn apply_edits(&mut self, doc: &ropey::Rope, edits: &[Edit], cursor_char: usize) -> Result<()> {
        self.last_update = UpdateStats::default();
        let window_edits: Vec<Edit> = edits
            .iter()
            .filter_map(|edit| self.window_edit(edit))
            .collect();
        if !window_edits.is_empty() {
            self.sync_tokens(&window_edits)?;
        }
        self.follow_cursor(doc, cursor_char)
    }

    fn predict(
        &mut self,
        doc: &ropey::Rope,
        cursor_char: usize,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.follow_cursor(doc, cursor_char)?;
        self.generate_choices(
            cursor_char,
            1,
            &mut |choice| match choice {
                Choice::Text(text) => on_text(text),
                _ => ControlFlow::Continue(()),
            },
            interrupted,
        )
    }

    fn suggest(
        &mut self,
        doc: &ropey::Rope,
        cursor_char: usize,
        choices: usize,
        on_output: &mut dyn FnMut(Output<'_>) -> ControlFlow<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.follow_cursor(doc, cursor_char)?;
        self.generate_choices(
            cursor_char,
            choices,
            &mut |choice| match choice {
                Choice::Text(text) => on_output(Output::Text(text)),
                Choice::Verdict {
                    confidence,
                    complete,
                } => on_output(Output::Scored {
                    confidence: confidence.score(),
                    complete,
                }),
                Choice::Candidate { .. } | Choice::Done { index: 0, .. } => {
                    ControlFlow::Continue(())
                }
                Choice::Done {
                    text, confidence, ..
                } => on_output(Output::Alternative {
                    text,
                    confidence: confidence.score(),
                }),
            },
            interrupted,
        )
    }

    fn cache_info(&self) -> CacheInfo {
        let mode = match self.config.mode {
            UpdateMode::Pie => "PIE",
            UpdateMode::Full => "Full",
            UpdateMode::Conflict => "Conflict",
        };
        CacheInfo {
            tokens: self.session.tokens().len(),
            mode: mode.to_string(),
            stale: self.session.stale_len(),
            unencoded: self.session.unencoded_len(),
        }
    }

    fn stale_len(&self) -> usize {
        self.session.stale_len()
    }

    fn unencoded_len(&self) -> usize {
        self.session.unencoded_len()
    }

    fn stale_before(&self, cursor_char: usize) -> usize {
        let Some(stale) = self.session.staleness() else {
            return 0;
        };
        let window = self.window_range();
        let cursor_token = if cursor_char < window.start {
            0
        } else if cursor_char >= window.end {
            self.session.tokens().len()
        } else {
            let byte = self.window.char_to_byte(cursor_char - window.start);
            self.aligned.token_at_byte(byte).unwrap_or(0)
        };
        cursor_token.saturating_sub(stale.from)
    }

    fn repair(&mut self, max_tokens: usize) -> Result<()> {
        let stats = self.session.repair(max_tokens)?;
        self.encoded_since_persist += stats.encoded;
        self.entry_current &= stats.encoded == 0;
        tracing::trace!(
            repaired = stats.encoded,
            ms = stats.elapsed.as_millis(),
            "cache repaired"
        );
        Ok(())
    }

    fn restore(&mut self, doc: &ropey::Rope, cursor_char: usize, path: &std::path::Path) -> bool {
        self.restore_from_disk(doc, cursor_char, path)
    }

    fn persist(&mut self, doc: &ropey::Rope, path: &std::path::Path, why: Persist) {
        self.persist_to_disk(doc, path, why)
    }

    fn flush_persisted(&mut self) {
        if let Some(disk) = &self.disk {
            disk.disk.flush();
        }
    }

    fn verify(&self, doc: &ropey::Rope) -> Result<(), String> {
        let window = self.window_range();
        if window.end > doc.len_chars() {
            return Err(format!(
                "window {window:?} is past the document's {} chars",
                doc.len_chars()
            ));
        }
        let text = doc.slice(window.clone()).to_string();
        if self.aligned.text() != text {
            return Err(format!("window {window:?} text differs from the document"));
        }
        let fresh = self.tokenizer.encode(&text);
        if self.session.tokens() != fresh.as_slice() {
            let first = fresh
                .iter()
                .zip(self.session.tokens())
                .position(|(a, b)| a != b);
            return Err(format!(
                "cached tokens ({}) differ from a fresh tokenization ({}) first at {first:?}",
                self.session.tokens().len(),
                fresh.len()
            ));
        }
        Ok(())
    }
}

/// Load the model named by `spec` for the engine thread: resolve (fetching
/// the default preset when it is missing, so a fresh clone predicts), load
/// tokenizer and weights, check they belong together.
pub fn load(
    spec: &str,
    config: MirrorConfig,
    progress: &dyn Fn(String),
) -> Result<(Mirror, String)> {
    load_with(
        spec,
        config,
        &crate::model::LoadOptions::default(),
        progress,
    )
}

/// [`load`] with a choice of weight treatment (the benchmarks compare them).
pub fn load_with(
    spec: &str,
    config: MirrorConfig,
    options: &crate::model::LoadOptions,
    progress: &dyn Fn(String),
) -> Result<(Mirror, String)> {
    use crate::model::{Model, source};
    let files = match source::resolve(spec) {
        Ok(files) => files,
        Err(_) if spec == source::DEFAULT_PRESET => {
            progress(format!("fetching {spec}"));
            source::ensure_default_model()?
        }
        Err(err) => return Err(err),
    };
    progress(format!("loading {}", files.name));
    let tokenizer = Arc::new(Tokenizer::for_model(&files)?);
    let model = Arc::new(Model::load(&files.weights, options)?);
    tokenizer.check_model_vocab(model.config().vocab_size, &files.weights)?;
    // The status line names the kernel, so that a slow machine shows why.
    let name = format!("{}[{}]", files.name, model.kernel());
    let session = Session::new(model)?;
    let mut mirror = Mirror::new(tokenizer, session, config);
    mirror.model_path = Some(files.weights.clone());
    Ok((mirror, name))
}

/// Larger documents are not kept: the entry stores the whole text, and a
/// reopen diffs all of it, for a window of at most `max_context` tokens.
const MAX_PERSISTED_DOC_BYTES: usize = 16 << 20;

/// The caller blocks a mirror adds to a stored session (`kv_store`).
const WINDOW_TAG: Tag = *b"WIND";
const TEXT_TAG: Tag = *b"TEXT";

/// Where the mirrored window sat in the document when it was stored; the
/// document itself is stored beside it, so that the difference from the
/// file as it is now can be applied as edits.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedWindow {
    /// The file the entry was written for (its canonical path).
    pub file: std::path::PathBuf,
    pub max_context: usize,
    /// Document char offset of the window's start, and its length in chars.
    pub start: usize,
    pub chars: usize,
    /// Seconds since the Unix epoch.
    pub saved_at: u64,
}

impl SavedWindow {
    pub fn from_extras(extras: &[(Tag, Vec<u8>)]) -> Result<SavedWindow> {
        let (_, bytes) = extras
            .iter()
            .find(|(tag, _)| *tag == WINDOW_TAG)
            .context("no window block")?;
        serde_json::from_slice(bytes).context("window block")
    }
}

/// What a warm open did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreStats {
    /// Tokens the stored cache held.
    pub loaded: usize,
    /// Document edits between the stored text and the text now.
    pub edits: usize,
    /// Tokens encoded and moved to bring the cache to the text now.
    pub update: UpdateStats,
}

/// Edits that take `old` to `new`, found line by line. They come last
/// first, each relative to the text after the previous one (as the engine
/// hands edits to a backend), so each is made in `old`'s coordinates.
pub fn diff_edits(old: &ropey::Rope, new: &ropey::Rope) -> Vec<Edit> {
    let (old_text, new_text) = (old.to_string(), new.to_string());
    let diff = similar::TextDiff::configure()
        // A pathological diff gets coarser, never slow: any diff is correct.
        .timeout(std::time::Duration::from_millis(300))
        .diff_lines(&old_text, &new_text);
    let char_starts = |lines: &[&str]| {
        let mut starts = Vec::with_capacity(lines.len() + 1);
        let mut at = 0;
        starts.push(0);
        for line in lines {
            at += line.chars().count();
            starts.push(at);
        }
        starts
    };
    let (old_lines, new_lines) = (diff.old_slices(), diff.new_slices());
    let old_starts = char_starts(old_lines);
    let mut changes: Vec<(usize, usize, String)> = Vec::new();
    for op in diff.ops() {
        if matches!(op, similar::DiffOp::Equal { .. }) {
            continue;
        }
        let (old_range, new_range) = (op.old_range(), op.new_range());
        let inserted: String = new_lines[new_range].concat();
        let (from, to) = (old_starts[old_range.start], old_starts[old_range.end]);
        match changes.last_mut() {
            // Ops that touch (a delete next to an insert) become one edit.
            Some(last) if last.1 == from => {
                last.1 = to;
                last.2.push_str(&inserted);
            }
            _ => changes.push((from, to, inserted)),
        }
    }
    let mut rope = old.clone();
    let mut edits = Vec::with_capacity(changes.len());
    for (from, to, inserted) in changes.into_iter().rev() {
        let edit = Edit::replace(&rope, from, to, &inserted);
        edit.apply_to(&mut rope);
        edits.push(edit);
    }
    edits
}

impl Mirror {
    /// Keep the cache between runs in `disk` (`None`: do not).
    pub fn set_disk_cache(&mut self, disk: Option<DiskCache>) {
        self.disk = disk;
    }

    /// [`Mirror::set_disk_cache`] for the weights this mirror was loaded
    /// from; without a weights file (or when it cannot be read) the cache
    /// stays in memory only.
    pub fn enable_disk_cache(&mut self, dir: std::path::PathBuf, max_bytes: u64, storage: Storage) {
        let Some(path) = &self.model_path else {
            return;
        };
        match ModelIdentity::of_path(path) {
            Ok(identity) => {
                self.disk = Some(DiskCache {
                    disk: KvDisk::new(dir, max_bytes),
                    identity,
                    storage,
                })
            }
            Err(e) => tracing::warn!(
                "KV cache stays in memory: cannot identify {}: {e}",
                path.display()
            ),
        }
    }

    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.disk.as_ref()
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The window's cache and the document it was made for, as bytes (see
    /// `model::kv_store`), for `file`.
    pub fn encode_state(
        &self,
        doc: &ropey::Rope,
        file: &std::path::Path,
        identity: &ModelIdentity,
        storage: Storage,
    ) -> Result<Vec<u8>> {
        let window = SavedWindow {
            file: file.to_path_buf(),
            max_context: self.config.max_context,
            start: self.start,
            chars: self.window.len_chars(),
            saved_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let window_json = serde_json::to_vec(&window)?;
        let text = doc.to_string();
        kv_store::encode(
            &self.session,
            identity,
            storage,
            &[(WINDOW_TAG, &window_json), (TEXT_TAG, text.as_bytes())],
        )
    }

    /// Take the state `encode_state` wrote, then bring it to `doc` through
    /// the same path as typing: the stored document's difference from `doc`
    /// becomes edits, aligned to token hunks, and PIE moves the cache. On
    /// error the mirror is left as it was, or (when the edits failed) holds
    /// nothing valid: the caller then encodes `doc` from scratch.
    pub fn restore_state(
        &mut self,
        bytes: &[u8],
        doc: &ropey::Rope,
        cursor_char: usize,
        identity: &ModelIdentity,
    ) -> Result<RestoreStats> {
        let decoded = kv_store::decode(bytes, self.session.model(), identity)?;
        let saved = SavedWindow::from_extras(&decoded.extras)?;
        if saved.max_context != self.config.max_context {
            anyhow::bail!(
                "stored for max_context {}, not {}",
                saved.max_context,
                self.config.max_context
            );
        }
        let (_, text) = decoded
            .extras
            .iter()
            .find(|(tag, _)| *tag == TEXT_TAG)
            .context("no text block")?;
        let old_doc = ropey::Rope::from_str(std::str::from_utf8(text).context("stored text")?);
        let end = saved.start + saved.chars;
        if end > old_doc.len_chars() {
            anyhow::bail!(
                "stored window {}..{end} is past the stored text's {} chars",
                saved.start,
                old_doc.len_chars()
            );
        }
        let window: ropey::Rope = old_doc.slice(saved.start..end).into();
        let aligned = AlignedText::new(&self.tokenizer, window.to_string());
        // Also catches a tokenizer that changed while the weights did not.
        if aligned.tokens() != decoded.session.tokens() {
            anyhow::bail!("stored tokens are not the tokenization of the stored text");
        }
        let loaded = aligned.tokens().len();
        self.session = decoded.session;
        self.aligned = aligned;
        self.window = window;
        self.start = saved.start;
        let edits = diff_edits(&old_doc, doc);
        self.apply_edits(doc, &edits, cursor_char)?;
        let range = self.window_range();
        if range.end > doc.len_chars() || self.aligned.text() != doc.slice(range.clone()) {
            anyhow::bail!("restored window {range:?} does not match the document");
        }
        self.encoded_since_persist = 0;
        self.entry_current = edits.is_empty();
        Ok(RestoreStats {
            loaded,
            edits: edits.len(),
            update: self.last_update.clone(),
        })
    }

    fn restore_from_disk(
        &mut self,
        doc: &ropey::Rope,
        cursor_char: usize,
        path: &std::path::Path,
    ) -> bool {
        let Some(disk) = &self.disk else {
            return false;
        };
        let Some(entry) = disk.disk.entry_for(path) else {
            return false;
        };
        let started = std::time::Instant::now();
        let bytes = match disk.disk.read(&entry) {
            None => return false,
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                tracing::warn!(
                    "KV cache entry {} unreadable ({e}); removed, encoding cold",
                    entry.display()
                );
                disk.disk.remove(&entry);
                return false;
            }
        };
        let identity = disk.identity.clone();
        // A bug met by a strange entry must cost the cache, not predictions:
        // a panic is a bad entry too (the engine then encodes from scratch,
        // which replaces whatever was half taken over).
        let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.restore_state(&bytes, doc, cursor_char, &identity)
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("restoring it panicked")));
        match restored {
            Ok(stats) => {
                tracing::info!(
                    loaded = stats.loaded,
                    edits = stats.edits,
                    encoded = stats.update.encoded,
                    moved = stats.update.moved,
                    ms = started.elapsed().as_millis(),
                    "KV cache restored from disk"
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "KV cache entry {} not used ({e:#}); removed, encoding cold",
                    entry.display()
                );
                if let Some(disk) = &self.disk {
                    disk.disk.remove(&entry);
                }
                false
            }
        }
    }

    /// Whether a save should rewrite the entry: a quarter of the window
    /// (64 tokens at least) encoded since the last write. A first encoding
    /// counts in full, so the first save after a cold open keeps it.
    fn changed_a_lot(&self) -> bool {
        self.encoded_since_persist >= (self.session.tokens().len() / 4).max(64)
    }

    fn persist_to_disk(&mut self, doc: &ropey::Rope, path: &std::path::Path, why: Persist) {
        let Some(disk) = &self.disk else {
            return;
        };
        let wanted = match why {
            Persist::Close => !self.entry_current,
            Persist::Save => !self.entry_current && self.changed_a_lot(),
        };
        if !wanted || self.session.tokens().is_empty() {
            return;
        }
        if doc.len_bytes() > MAX_PERSISTED_DOC_BYTES {
            tracing::debug!(
                bytes = doc.len_bytes(),
                "document too large to keep its KV cache on disk"
            );
            return;
        }
        let Some(entry) = disk.disk.entry_for(path) else {
            return;
        };
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let started = std::time::Instant::now();
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.encode_state(doc, &canonical, &disk.identity, disk.storage)
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("encoding it panicked")));
        match encoded {
            Ok(bytes) => {
                tracing::debug!(
                    bytes = bytes.len(),
                    ms = started.elapsed().as_millis(),
                    ?why,
                    "KV cache encoded for disk"
                );
                disk.disk.write(entry, bytes);
                self.encoded_since_persist = 0;
                self.entry_current = true;
            }
            Err(e) => tracing::warn!("cannot encode the KV cache for disk: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(line: &str, line_logprob: f32, tokens: usize) -> Candidate {
        Candidate {
            line: line.to_string(),
            text: format!("    {line}"),
            confidence: Confidence {
                mean_logprob: line_logprob / tokens as f32,
                tokens,
                ..Confidence::default()
            },
        }
    }

    fn lines(offered: &[Candidate]) -> Vec<&str> {
        offered.iter().map(|c| c.line.as_str()).collect()
    }

    #[test]
    fn alternatives_are_ranked_distinct_and_never_only_closing_brackets() {
        let found = || {
            vec![
                candidate("x = 1", -1.0, 4),
                candidate("}", -0.5, 1),
                candidate("return x", -2.0, 3),
                candidate("y = 2", -3.0, 4),
                candidate("return x", -2.5, 3),
                candidate("z = 3", -4.0, 40),
            ]
        };
        let offered = alternatives(found(), "x = 1", 2, Rank::Sum);
        assert_eq!(lines(&offered), ["return x", "y = 2"]);
        let offered = alternatives(found(), "x = 1", 9, Rank::Sum);
        assert_eq!(lines(&offered), ["return x", "y = 2", "z = 3"]);
        // By mean log-probability the long z = 3 (-0.1 a token) comes first.
        let offered = alternatives(found(), "x = 1", 9, Rank::Mean);
        assert_eq!(lines(&offered), ["z = 3", "return x", "y = 2"]);
    }
}
