//! Running one sample: encode the pre-edit context once, bring a copy of
//! the cache through the edits in each mode, predict the target line.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;
use ropey::Rope;
use serde::{Deserialize, Serialize};

use super::corpus::Corpus;
use super::metrics::{edit_similarity, exact_match};
use super::simulate::{self, EditKind, LineEdit, Target};
use crate::model::UpdateMode;
use crate::predict::engine::Backend;
use crate::predict::mirror::Mirror;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "full")]
    Full,
    #[serde(rename = "pie")]
    Pie,
    #[serde(rename = "conflict")]
    Conflict,
    /// Pie, then idle-time repair after each edit.
    #[serde(rename = "pie+repair")]
    PieRepair,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Full, Mode::Pie, Mode::Conflict, Mode::PieRepair];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "Full",
            Mode::Pie => "Pie",
            Mode::Conflict => "Conflict",
            Mode::PieRepair => "Pie+repair",
        }
    }

    fn update_mode(self) -> UpdateMode {
        match self {
            Mode::Full => UpdateMode::Full,
            Mode::Pie | Mode::PieRepair => UpdateMode::Pie,
            Mode::Conflict => UpdateMode::Conflict,
        }
    }
}

/// What a sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "setting")]
pub enum Setting {
    /// One edit of this kind (several places for multi-place), all received
    /// together, as in the paper.
    Single { kind: EditKind },
    /// `steps` successive single insertions or deletions, each applied on
    /// its own, before the prediction.
    Sequential { steps: usize },
}

impl Setting {
    pub fn label(self) -> String {
        match self {
            Setting::Single { kind } => kind.name().to_string(),
            Setting::Sequential { steps } => format!("sequential-{steps}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub mode: Mode,
    /// The whole suggestion; EM and ES score its first line.
    pub prediction: String,
    pub exact: bool,
    pub similarity: f64,
    /// Wall time of the cache updates (alignment included), summed over
    /// the edits; none when the mode's state was computed another way.
    pub update_ms: Option<f64>,
    /// Tokens run through the model by those updates.
    pub encoded: usize,
    /// Idle-time repair: its wall time and tokens (Pie+repair only).
    pub repair_ms: f64,
    pub repaired: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub id: String,
    pub setting: Setting,
    pub target: Target,
    /// Tokens of the pre-edit context.
    pub context_tokens: usize,
    /// The edits, one group per step, each in line coordinates of the text
    /// before that step.
    pub steps: Vec<Vec<LineEdit>>,
    pub outcomes: Vec<Outcome>,
}

impl SampleRecord {
    pub fn outcome(&self, mode: Mode) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.mode == mode)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub seed: u64,
    pub context_tokens: usize,
    /// Tokens repaired in each idle gap (after each edit); `None`: until
    /// nothing is stale, as the editor does when the pause is long enough.
    pub repair_budget: Option<usize>,
}

pub struct Evaluator {
    /// Encodes each sample's pre-edit context; forked for every mode.
    mirror: Mirror,
    options: EvalOptions,
}

/// Tokens re-encoded per repair call in the benchmark: no keystroke waits
/// here, so big chunks only save overhead.
const REPAIR_CHUNK: usize = 256;

impl Evaluator {
    /// `mirror` must hold at least twice `context_tokens` (edits may make
    /// the context longer; the window must not slide).
    pub fn new(mirror: Mirror, options: EvalOptions) -> Evaluator {
        Evaluator { mirror, options }
    }

    pub fn count_tokens(&self, text: &str) -> usize {
        self.mirror.tokenizer().encode(text).len()
    }

    /// The target and edits of sample `index` of `setting`: a function of
    /// the seed, the corpus and the tokenizer only.
    pub fn draw(
        &self,
        corpus: &Corpus,
        setting: Setting,
        index: usize,
    ) -> Result<(Target, Vec<Vec<LineEdit>>)> {
        let mut rng = simulate::sample_rng(
            self.options.seed,
            &format!("{}/{}", corpus.language.name(), setting.label()),
            index,
        );
        let (target, file_text) =
            simulate::draw_target(corpus, &mut rng, self.options.context_tokens, &|t| {
                self.count_tokens(t)
            })?;
        let file_lines: Vec<&str> = file_text.split_inclusive('\n').collect();
        let target_index = target.line - 1;
        let steps = match setting {
            Setting::Single { kind } => {
                let n = target.context.split_inclusive('\n').count();
                vec![simulate::draw_edits(
                    &mut rng,
                    kind,
                    n,
                    &file_lines,
                    target_index,
                )]
            }
            Setting::Sequential { steps } => {
                let mut text = target.context.clone();
                let mut all = Vec::with_capacity(steps);
                for _ in 0..steps {
                    let n = text.split_inclusive('\n').count();
                    // Keep the context from shrinking away under deletions.
                    let kind = if n < 24 || rng.random_bool(0.5) {
                        EditKind::Insertion
                    } else {
                        EditKind::Deletion
                    };
                    let edits = simulate::draw_edits(&mut rng, kind, n, &file_lines, target_index);
                    text = simulate::apply_line_edits(&text, &edits);
                    all.push(edits);
                }
                all
            }
        };
        Ok((target, steps))
    }

    pub fn run(&mut self, corpus: &Corpus, setting: Setting, index: usize) -> Result<SampleRecord> {
        let (target, steps) = self.draw(corpus, setting, index)?;
        let context_tokens = self.count_tokens(&target.context);
        // Each step's document and the text edits that lead to it.
        let mut docs = Vec::with_capacity(steps.len());
        let mut text = target.context.clone();
        for edits in &steps {
            let text_edits = simulate::text_edits(&text, edits);
            text = simulate::apply_line_edits(&text, edits);
            docs.push((Rope::from_str(&text), text_edits));
        }
        let pre = Rope::from_str(&target.context);
        self.mirror.reset(&pre, pre.len_chars())?;
        let mut outcomes = Vec::with_capacity(Mode::ALL.len());
        for mode in Mode::ALL {
            let mut mirror = self.mirror.fork()?;
            mirror.set_mode(mode.update_mode());
            let mut update = Duration::ZERO;
            let mut encoded = 0;
            let mut repair = Duration::ZERO;
            let mut repaired = 0;
            let sequential_full = mode == Mode::Full && steps.len() > 1;
            if sequential_full {
                // Full is exact after every edit, so after K of them it is a
                // fresh encoding of the final text: one prefill instead of K
                // long re-encodes. Its update time is not reported here.
                let (doc, _) = docs.last().expect("at least one step");
                mirror.reset(doc, doc.len_chars())?;
            } else {
                for (doc, text_edits) in &docs {
                    let started = Instant::now();
                    mirror.apply_edits(doc, text_edits, doc.len_chars())?;
                    update += started.elapsed();
                    encoded += mirror.last_update().encoded;
                    if mode == Mode::PieRepair {
                        let started = Instant::now();
                        repaired += repair_idle(&mut mirror, self.options.repair_budget)?;
                        repair += started.elapsed();
                    }
                }
            }
            let (doc, _) = docs.last().expect("at least one step");
            let prediction = predict(&mut mirror, doc)?;
            let line = predicted_line(&prediction);
            outcomes.push(Outcome {
                mode,
                exact: exact_match(line, &target.text),
                similarity: edit_similarity(line, &target.text),
                prediction,
                update_ms: (!sequential_full).then_some(update.as_secs_f64() * 1e3),
                encoded,
                repair_ms: repair.as_secs_f64() * 1e3,
                repaired,
            });
        }
        Ok(SampleRecord {
            id: sample_id(corpus, setting, index),
            setting,
            target,
            context_tokens,
            steps,
            outcomes,
        })
    }
}

pub fn sample_id(corpus: &Corpus, setting: Setting, index: usize) -> String {
    format!(
        "{}/{}/{index}",
        corpus.language.name().to_lowercase(),
        setting.label()
    )
}

/// Repair stale entries as an idle editor would, up to `budget` tokens.
fn repair_idle(mirror: &mut Mirror, budget: Option<usize>) -> Result<usize> {
    let mut done = 0;
    while mirror.stale_len() > 0 {
        let chunk = match budget {
            Some(b) if done >= b => break,
            Some(b) => REPAIR_CHUNK.min(b - done),
            None => REPAIR_CHUNK,
        };
        let before = mirror.stale_len();
        mirror.repair(chunk)?;
        done += before - mirror.stale_len();
    }
    Ok(done)
}

/// The line a suggestion predicts for the target: its first line. A
/// suggestion that starts with a blank line predicts an empty line, which
/// never matches (targets have code).
pub fn predicted_line(suggestion: &str) -> &str {
    suggestion.split('\n').next().unwrap_or("")
}

/// The suggestion the editor would show at the end of `doc`.
fn predict(mirror: &mut Mirror, doc: &Rope) -> Result<String> {
    let mut text = String::new();
    mirror.predict(
        doc,
        doc.len_chars(),
        &mut |chunk| {
            text.push_str(chunk);
            ControlFlow::Continue(())
        },
        &|| false,
    )?;
    Ok(text)
}
