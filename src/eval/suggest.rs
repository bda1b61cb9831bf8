//! What the user sees (issue 15): at an automatic trigger at the start of a
//! line, the suggestions the editor gets (the first one and its
//! alternatives, each with its confidence), and which of them the editor
//! would show. From the records: coverage (triggers that show something),
//! EM and ES among the shown, EM@k over the alternatives, and the characters
//! a user who presses Tab only on a correct prefix would accept.
//!
//! Corpora are split in two halves by a hash of each file's path: the
//! threshold is chosen on one (`calibrate`) and reported on the other.

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ropey::Rope;
use serde::{Deserialize, Serialize};

use super::corpus::{Corpus, Language};
use super::metrics::{edit_similarity, exact_match};
use super::simulate::{self, Target};
use crate::editor::{Document, Editor, EditorOptions, Keymap};
use crate::predict::mirror::{Choice, Mirror};
use crate::predict::suggest::{self, Confidence, Judged, Surroundings};

/// Which files of a corpus a run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Half {
    /// Files whose path hashes even: where defaults are chosen.
    Calibrate,
    /// The other files: where results are reported.
    Report,
}

impl Half {
    pub fn name(self) -> &'static str {
        match self {
            Half::Calibrate => "calibrate",
            Half::Report => "report",
        }
    }

    /// The half a file (its path relative to the corpus root) belongs to.
    pub fn of(path: &std::path::Path) -> Half {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.to_string_lossy().bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        if h.is_multiple_of(2) {
            Half::Calibrate
        } else {
            Half::Report
        }
    }

    /// Keep only this half's files.
    pub fn restrict(self, corpus: &mut Corpus) {
        corpus.files.retain(|f| Half::of(f) == self);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub text: String,
    pub confidence: Confidence,
}

/// A line found for the alternatives, before ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub text: String,
    pub confidence: Confidence,
    /// Records from before the beam search (7b4a2e1) held only branches.
    #[serde(default = "fork")]
    pub source: Source,
}

/// Where a candidate alternative came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A branch off the first suggestion: records made before the beam
    /// search found the alternatives alone (a8aca2a and earlier). They also
    /// carry each branch's `deficit` and `at_first_code`, which
    /// benches/calibrate_suggestions.py reads.
    Fork,
    /// The beam search.
    Beam,
    /// The beam search restricted to the lines above the trigger: records
    /// of 3af5cd0 (see BENCHMARKS.md).
    Copies,
}

fn fork() -> Source {
    Source::Fork
}

/// The verdict on the first suggestion (see `Choice::Verdict`): what it
/// judged and when it came.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub confidence: Confidence,
    /// Chars of the first suggestion it judged.
    pub chars: usize,
    pub complete: bool,
    #[serde(deserialize_with = "nan_from_null")]
    pub ms: f64,
}

/// JSON has no NaN: serde_json writes it as null, which reads back as NaN
/// (a trigger with no suggestion has no time to its first one).
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestRecord {
    pub id: String,
    pub half: Half,
    pub target: Target,
    /// The last line of the context and the line after the target in the
    /// file: what the repeat filter compares with.
    pub line_above: Option<String>,
    pub line_below: Option<String>,
    /// What the editor's Enter put on the target's line before the trigger
    /// (its indentation); records from before 2026-12-02 triggered at
    /// column 0, with nothing typed.
    #[serde(default)]
    pub typed: String,
    /// The first suggestion, then its alternatives.
    pub choices: Vec<Suggestion>,
    /// Every branch decoded for the alternatives.
    #[serde(default)]
    pub candidates: Vec<CandidateRecord>,
    /// Absent in records from before verdicts: the whole was judged.
    #[serde(default)]
    pub verdict: Option<VerdictRecord>,
    /// The model's confidence in the target line itself, read whole: is a
    /// miss the search's fault (the model finds the target more likely than
    /// what it offered) or the model's?
    #[serde(default)]
    pub target_read: Option<Confidence>,
    /// From the prediction request to the first suggestion complete, and
    /// to the last alternative (the context encoding not included).
    #[serde(deserialize_with = "nan_from_null")]
    pub first_ms: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub total_ms: f64,
}

impl SuggestRecord {
    /// What the editor judges the first suggestion by.
    pub fn judged(&self) -> Option<(Judged<'_>, Confidence)> {
        let first = self.choices.first()?;
        Some(match self.verdict {
            Some(v) => {
                let end = first
                    .text
                    .char_indices()
                    .nth(v.chars)
                    .map_or(first.text.len(), |(i, _)| i);
                let judged = Judged {
                    text: &first.text[..end],
                    confidence: v.confidence.score(),
                    complete: v.complete,
                };
                (judged, v.confidence)
            }
            None => (
                Judged::whole(&first.text, first.confidence.score()),
                first.confidence,
            ),
        })
    }

    pub fn surroundings(&self) -> Surroundings {
        Surroundings {
            before: self.typed.clone(),
            after: String::new(),
            line_above: self.line_above.clone(),
            line_below: self.line_below.clone(),
        }
    }
}

pub fn sample_id(corpus: &Corpus, half: Half, index: usize) -> String {
    format!(
        "{}/suggest-{}/{index}",
        corpus.language.name().to_lowercase(),
        half.name()
    )
}

/// Where a trigger happens on the target's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Cursor {
    /// Where the editor puts it when Enter is pressed at the end of the line
    /// above: after the indentation it types (what the user sees).
    #[default]
    Enter,
    /// At column 0, nothing typed (the runs before 2026-12-02).
    Column0,
}

/// What the editor's own Enter types on the new line when pressed at the
/// end of the context's last line: the indentation it carries, one level
/// more after a block opener, one less after a Python `return` (see
/// `Editor::insert_newline`).
fn typed_by_enter(context: &str, language: Language) -> String {
    let Some(before) = context.strip_suffix('\n') else {
        return String::new();
    };
    let language = match language {
        Language::Python => crate::syntax::Language::Python,
        Language::Rust => crate::syntax::Language::Rust,
    };
    let mut editor = Editor::new(
        Document::from_text(before, Some(language)),
        EditorOptions::default(),
        Keymap::default(),
    );
    editor.move_to(editor.rope().len_chars(), false);
    editor.insert_newline();
    let text = editor.doc.text();
    text.rsplit('\n').next().unwrap_or("").to_string()
}

/// How a run draws its triggers and what it asks at each.
#[derive(Debug, Clone, Copy)]
pub struct Trigger {
    pub half: Half,
    pub seed: u64,
    /// Tokens of context before the target line, at most.
    pub context_tokens: usize,
    /// Suggestions asked for, the first one included.
    pub choices: usize,
    pub cursor: Cursor,
}

/// Draw sample `index` (from `corpus`, already restricted to the
/// trigger's half) and predict at the start of its target line.
pub fn run_sample(
    mirror: &mut Mirror,
    corpus: &Corpus,
    index: usize,
    trigger: Trigger,
) -> Result<SuggestRecord> {
    let Trigger {
        half,
        seed,
        context_tokens,
        choices,
        cursor,
    } = trigger;
    let mut rng = simulate::sample_rng(
        seed,
        &format!("{}/suggest-{}", corpus.language.name(), half.name()),
        index,
    );
    let tokenizer = mirror.tokenizer().clone();
    let (target, file_text) = simulate::draw_target(corpus, &mut rng, context_tokens, &|t| {
        tokenizer.encode(t).len()
    })?;
    let lines: Vec<&str> = file_text.split_inclusive('\n').collect();
    let strip = |l: &str| l.trim_end_matches(['\n', '\r']).to_string();
    let line_above = target.context.split_inclusive('\n').next_back().map(strip);
    let line_below = lines.get(target.line).map(|l| strip(l));
    let typed = match cursor {
        Cursor::Enter => typed_by_enter(&target.context, target.language),
        Cursor::Column0 => String::new(),
    };
    let doc = Rope::from_str(&format!("{}{typed}", target.context));
    crate::predict::engine::Backend::reset(mirror, &doc, doc.len_chars())?;
    let started = Instant::now();
    let mut first_ms = f64::NAN;
    let mut out = Vec::new();
    let mut candidates = Vec::new();
    let mut verdict = None;
    let mut streamed = 0;
    mirror.generate_choices(
        doc.len_chars(),
        choices,
        &mut |choice| {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            match choice {
                Choice::Text(text) => streamed += text.chars().count(),
                Choice::Verdict {
                    confidence,
                    complete,
                } => {
                    verdict = Some(VerdictRecord {
                        confidence,
                        chars: streamed,
                        complete,
                        ms,
                    })
                }
                Choice::Done {
                    index,
                    text,
                    confidence,
                } => {
                    if index == 0 {
                        first_ms = ms;
                    }
                    out.push(Suggestion {
                        text: text.to_string(),
                        confidence,
                    });
                }
                Choice::Candidate { text, confidence } => candidates.push(CandidateRecord {
                    text: text.to_string(),
                    confidence,
                    source: Source::Beam,
                }),
            }
            ControlFlow::Continue(())
        },
        &|| false,
    )?;
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let target_read = match target.text.strip_prefix(typed.as_str()) {
        Some(rest) => mirror.read_line(doc.len_chars(), rest)?,
        // Enter indented deeper than the target: the model cannot reach it.
        None => None,
    };
    Ok(SuggestRecord {
        id: sample_id(corpus, half, index),
        half,
        target,
        line_above,
        line_below,
        typed,
        choices: out,
        candidates,
        verdict,
        target_read,
        first_ms,
        total_ms,
    })
}

/// The confidence numbers a threshold can apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Measure {
    /// The geometric mean token probability (what the editor uses).
    Mean,
    Min,
    First,
    FirstMargin,
}

impl Measure {
    pub const ALL: [Measure; 4] = [
        Measure::Mean,
        Measure::Min,
        Measure::First,
        Measure::FirstMargin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Measure::Mean => "mean token probability",
            Measure::Min => "min token probability",
            Measure::First => "first code token probability",
            Measure::FirstMargin => "first code token top-2 log-prob gap",
        }
    }

    pub fn of(self, c: &Confidence) -> f64 {
        match self {
            Measure::Mean => c.score() as f64,
            Measure::Min => c.min as f64,
            Measure::First => c.first as f64,
            Measure::FirstMargin => c.first_margin.min(1e6) as f64,
        }
    }
}

/// One sample as the scoring sees it.
struct Scored {
    /// The first suggestion passes the filters (all but the threshold).
    passes_filters: bool,
    confidence: Confidence,
    exact: bool,
    similarity: f64,
    /// Exact within the first k choices, k = 1..=3.
    exact_at: [bool; 3],
    /// Characters a Tab-on-correct-prefix user accepts, and the target's.
    accepted: usize,
    target_chars: usize,
    /// From the request to the verdict (in view, if shown), and to the
    /// first suggestion complete.
    view_ms: f64,
    complete_ms: f64,
}

fn score(record: &SuggestRecord) -> Scored {
    let first = record.choices.first();
    let text = first.map_or("", |c| c.text.as_str());
    let line = text.split('\n').next().unwrap_or("");
    let target = &record.target.text;
    let judged = record.judged();
    let passes_filters = judged.is_some_and(|(j, _)| {
        let unsure_aside = Judged {
            confidence: 1.0,
            ..j
        };
        suggest::hidden(unsure_aside, 0.0, &record.surroundings(), true).is_none()
    });
    let mut exact_at = [false; 3];
    let mut hit = false;
    for (k, slot) in exact_at.iter_mut().enumerate() {
        if let Some(c) = record.choices.get(k) {
            hit |= exact_match(c.text.split('\n').next().unwrap_or(""), target);
        }
        *slot = hit;
    }
    // Tab only when the suggestion is a prefix of the truth (indentation
    // included); the indentation itself the editor types anyway.
    let shown = format!("{}{}", record.typed, line.trim_end());
    let accepted = if !shown.trim().is_empty() && target.starts_with(&shown) {
        shown.trim_start().chars().count()
    } else {
        0
    };
    Scored {
        passes_filters,
        confidence: judged.map(|(_, c)| c).unwrap_or_default(),
        view_ms: record.verdict.map_or(record.first_ms, |v| v.ms),
        complete_ms: record.first_ms,
        exact: exact_match(line, target),
        similarity: edit_similarity(line, target),
        exact_at,
        accepted,
        target_chars: target.trim().chars().count(),
    }
}

/// What a threshold on a measure gives over a set of samples.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub threshold: f64,
    pub coverage: f64,
    pub em_shown: f64,
    pub es_shown: f64,
    pub em3_shown: f64,
    /// Accepted characters per target character, over all triggers.
    pub accepted_per_char: f64,
}

fn gate(samples: &[&Scored], measure: Measure, threshold: f64, filters: bool) -> Gate {
    let shown: Vec<&&Scored> = samples
        .iter()
        .filter(|s| (!filters || s.passes_filters) && measure.of(&s.confidence) >= threshold)
        .collect();
    let n = shown.len().max(1) as f64;
    let target_chars: usize = samples.iter().map(|s| s.target_chars).sum();
    Gate {
        threshold,
        coverage: 100.0 * shown.len() as f64 / samples.len().max(1) as f64,
        em_shown: 100.0 * shown.iter().filter(|s| s.exact).count() as f64 / n,
        es_shown: shown.iter().map(|s| s.similarity).sum::<f64>() / n,
        em3_shown: 100.0 * shown.iter().filter(|s| s.exact_at[2]).count() as f64 / n,
        accepted_per_char: shown.iter().map(|s| s.accepted).sum::<usize>() as f64
            / target_chars.max(1) as f64,
    }
}

/// 95% percentile-bootstrap interval of `stat` over resampled samples.
fn bootstrap(n: usize, seed: u64, stat: &dyn Fn(&[usize]) -> f64) -> (f64, f64) {
    const RESAMPLES: usize = 1000;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            stat(&idx)
        })
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[(q * (values.len() - 1) as f64).round() as usize];
    (at(0.025), at(0.975))
}

/// The threshold of `measure` that shows about `coverage` percent of
/// `samples` (filters applied first).
fn threshold_for_coverage(samples: &[&Scored], measure: Measure, coverage: f64) -> f64 {
    let mut values: Vec<f64> = samples
        .iter()
        .filter(|s| s.passes_filters)
        .map(|s| measure.of(&s.confidence))
        .collect();
    values.sort_by(|a, b| b.total_cmp(a));
    let keep = ((coverage / 100.0) * samples.len() as f64).round() as usize;
    if keep == 0 || values.is_empty() {
        return f64::INFINITY;
    }
    values[(keep - 1).min(values.len() - 1)]
}

fn pct_ci((lo, hi): (f64, f64)) -> String {
    format!("[{lo:.1}, {hi:.1}]")
}

/// The report: per language and half, the headline at `min_confidence`,
/// the coverage-vs-EM table, and (on the calibration half) how the
/// measures compare at equal coverage.
pub fn markdown(records: &[SuggestRecord], min_confidence_in: &dyn Fn(&str) -> f64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut keys: Vec<(String, Half)> = records
        .iter()
        .map(|r| (r.target.language.name().to_string(), r.half))
        .collect();
    keys.sort_by_key(|(l, h)| (l.clone(), h.name()));
    keys.dedup();
    for (language, half) in keys {
        let group: Vec<&SuggestRecord> = records
            .iter()
            .filter(|r| r.target.language.name() == language && r.half == half)
            .collect();
        let min_confidence = min_confidence_in(&language.to_lowercase());
        let scored: Vec<Scored> = group.iter().map(|r| score(r)).collect();
        let all: Vec<&Scored> = scored.iter().collect();
        let n = all.len();
        let _ = writeln!(out, "### {language}, {} half: {n} triggers\n", half.name());
        let em_all = |idx: &[usize]| {
            100.0 * idx.iter().filter(|&&i| all[i].exact).count() as f64 / idx.len() as f64
        };
        let all = &all;
        let em_at = |k: usize, idx: &[usize]| {
            100.0 * idx.iter().filter(|&&i| all[i].exact_at[k - 1]).count() as f64
                / idx.len() as f64
        };
        let every: Vec<usize> = (0..n).collect();
        let shown_stat = |idx: &[usize], f: &dyn Fn(&Scored) -> f64| {
            let shown: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| {
                    all[i].passes_filters && Measure::Mean.of(&all[i].confidence) >= min_confidence
                })
                .collect();
            if shown.is_empty() {
                return f64::NAN;
            }
            shown.iter().map(|&i| f(all[i])).sum::<f64>() / shown.len() as f64
        };
        let everything = gate(all, Measure::Mean, f64::NEG_INFINITY, false);
        let filtered = gate(all, Measure::Mean, f64::NEG_INFINITY, true);
        let chosen = gate(all, Measure::Mean, min_confidence, true);
        let coverage_ci = bootstrap(n, 11, &|idx| {
            100.0
                * idx
                    .iter()
                    .filter(|&&i| {
                        all[i].passes_filters
                            && Measure::Mean.of(&all[i].confidence) >= min_confidence
                    })
                    .count() as f64
                / idx.len() as f64
        });
        let em_shown_ci = bootstrap(n, 12, &|idx| {
            shown_stat(idx, &|s| 100.0 * s.exact as u8 as f64)
        });
        let ratio_ci = bootstrap(n, 13, &|idx| {
            shown_stat(idx, &|s| 100.0 * s.exact as u8 as f64) / em_all(idx)
        });
        let em1_ci = bootstrap(n, 14, &|idx| em_at(1, idx));
        let em3_ci = bootstrap(n, 15, &|idx| em_at(3, idx));
        let em_ratio_ci = bootstrap(n, 16, &|idx| em_at(3, idx) / em_at(1, idx));
        let _ = writeln!(
            out,
            "| shown | coverage % (95% CI) | EM among shown % (95% CI) | ES among shown | EM shown / EM all (95% CI) | accepted chars per target char |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| every suggestion | {:.1} | {:.1} {} | {:.1} | 1.00 | {:.3} |",
            everything.coverage,
            everything.em_shown,
            pct_ci(bootstrap(n, 17, &em_all)),
            everything.es_shown,
            everything.accepted_per_char
        );
        let _ = writeln!(
            out,
            "| filters only | {:.1} | {:.1} | {:.1} | {:.2} | {:.3} |",
            filtered.coverage,
            filtered.em_shown,
            filtered.es_shown,
            filtered.em_shown / everything.em_shown,
            filtered.accepted_per_char
        );
        let _ = writeln!(
            out,
            "| filters + min_confidence {min_confidence:.2} | {:.1} {} | {:.1} {} | {:.1} | {:.2} [{:.2}, {:.2}] | {:.3} |\n",
            chosen.coverage,
            pct_ci(coverage_ci),
            chosen.em_shown,
            pct_ci(em_shown_ci),
            chosen.es_shown,
            chosen.em_shown / everything.em_shown,
            ratio_ci.0,
            ratio_ci.1,
            chosen.accepted_per_char
        );
        let _ = writeln!(
            out,
            "Alternatives over all triggers: EM@1 {:.1} {}, EM@2 {:.1}, EM@3 {:.1} {}; EM@3 / EM@1 = {:.2} [{:.2}, {:.2}]. Choices per trigger: {:.2} on average. Among the shown: EM@3 {:.1}.\n",
            em_at(1, &every),
            pct_ci(em1_ci),
            em_at(2, &every),
            em_at(3, &every),
            pct_ci(em3_ci),
            em_at(3, &every) / em_at(1, &every),
            em_ratio_ci.0,
            em_ratio_ci.1,
            group.iter().map(|r| r.choices.len()).sum::<usize>() as f64 / n.max(1) as f64,
            chosen.em3_shown,
        );
        let shown: Vec<&&Scored> = all
            .iter()
            .filter(|s| s.passes_filters && Measure::Mean.of(&s.confidence) >= min_confidence)
            .collect();
        let mut view: Vec<f64> = shown.iter().map(|s| s.view_ms).collect();
        let mut complete: Vec<f64> = shown.iter().map(|s| s.complete_ms).collect();
        let _ = writeln!(
            out,
            "Request to view, for the shown (decoding only, median / p95): {:.0} / {:.0} ms; to the first suggestion complete: {:.0} / {:.0} ms.\n",
            super::metrics::median(&mut view),
            super::metrics::percentile(&mut view, 95.0),
            super::metrics::median(&mut complete),
            super::metrics::percentile(&mut complete, 95.0),
        );
        let mut first: Vec<f64> = group.iter().map(|r| r.first_ms).collect();
        let mut total: Vec<f64> = group.iter().map(|r| r.total_ms).collect();
        let _ = writeln!(
            out,
            "Decode time after the context is encoded (median): first suggestion {:.0} ms, all choices {:.0} ms.\n",
            super::metrics::median(&mut first),
            super::metrics::median(&mut total)
        );
        let _ = writeln!(
            out,
            "| min_confidence | coverage % | EM among shown % | ES among shown | EM@3 among shown % | accepted chars per target char |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
        for step in 0..=9 {
            let t = step as f64 / 10.0;
            let g = gate(all, Measure::Mean, t, true);
            let _ = writeln!(
                out,
                "| {t:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} |",
                g.coverage, g.em_shown, g.es_shown, g.em3_shown, g.accepted_per_char
            );
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "Measures compared at equal coverage (filters first; EM among shown %):\n"
        );
        let _ = writeln!(out, "| measure | 30% shown | 40% | 50% | 60% | 70% |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for measure in Measure::ALL {
            let cells: Vec<String> = [30.0, 40.0, 50.0, 60.0, 70.0]
                .iter()
                .map(|&c| {
                    let t = threshold_for_coverage(all, measure, c);
                    let g = gate(all, measure, t, true);
                    format!("{:.1} (t={t:.3})", g.em_shown)
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", measure.name(), cells.join(" | "));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::corpus::Language;

    fn record(target: &str, choices: &[(&str, f32)], below: &str) -> SuggestRecord {
        SuggestRecord {
            id: "x".into(),
            half: Half::Report,
            target: Target {
                language: Language::Python,
                file: "f.py".into(),
                line: 20,
                text: target.into(),
                context: String::new(),
            },
            line_above: Some("    x = 1".into()),
            line_below: Some(below.into()),
            typed: String::new(),
            choices: choices
                .iter()
                .map(|&(text, p)| Suggestion {
                    text: text.into(),
                    confidence: Confidence {
                        mean_logprob: p.ln(),
                        tokens: 3,
                        ..Confidence::default()
                    },
                })
                .collect(),
            candidates: Vec::new(),
            verdict: None,
            target_read: None,
            first_ms: 1.0,
            total_ms: 2.0,
        }
    }

    #[test]
    fn a_trigger_without_a_suggestion_reads_back_and_shows_nothing() {
        let mut r = record("    return x", &[], "");
        (r.first_ms, r.total_ms) = (f64::NAN, 3.0);
        let json = serde_json::to_string(&r).unwrap();
        let back: SuggestRecord = serde_json::from_str(&json).unwrap();
        assert!(back.first_ms.is_nan() && back.choices.is_empty());
        assert!(!score(&back).passes_filters);
    }

    #[test]
    fn scoring_counts_em_at_k_prefix_acceptance_and_filters() {
        let r = record(
            "    return x + 1",
            &[
                ("    return x", 0.9),
                ("    pass", 0.5),
                ("    return x + 1", 0.4),
            ],
            "",
        );
        let s = score(&r);
        assert!(!s.exact && s.exact_at == [false, false, true]);
        assert_eq!(s.accepted, "return x".len());
        assert_eq!(s.target_chars, "return x + 1".len());
        assert!(s.passes_filters);
        // Not a prefix: nothing accepted.
        let s = score(&record("    return y", &[("    return x", 0.9)], ""));
        assert_eq!(s.accepted, 0);
        // Repeating the line below is filtered.
        let s = score(&record("    y = 2", &[("    y = 3", 0.9)], "    y = 3"));
        assert!(!s.passes_filters);
        // After Enter typed the indentation, the suggestion comes after it.
        let mut r = record("    return x + 1", &[("return x", 0.9)], "    return x");
        r.typed = "    ".into();
        let s = score(&r);
        assert_eq!(s.accepted, "return x".len());
        assert!(
            !s.passes_filters,
            "it is on its way to repeat the line below"
        );
    }

    #[test]
    fn enter_types_the_indentation_the_editor_would() {
        let python = "def f(x):\n    if x:\n        y = 1\n";
        assert_eq!(typed_by_enter(python, Language::Python), "        ");
        let python = "def f(x):\n    if x:\n        return 1\n";
        assert_eq!(
            typed_by_enter(python, Language::Python),
            "    ",
            "out after return"
        );
        assert_eq!(typed_by_enter("def f(x):\n", Language::Python), "    ");
        let rust = "impl A {\n    fn f() {\n";
        assert_eq!(typed_by_enter(rust, Language::Rust), "        ");
        assert_eq!(typed_by_enter("    x();\n\n", Language::Rust), "");
        assert_eq!(typed_by_enter("no line break", Language::Rust), "");
    }

    #[test]
    fn the_gate_counts_coverage_and_em_among_shown() {
        let records = [
            record("a", &[("a", 0.9)], ""),
            record("b", &[("c", 0.8)], ""),
            record("d", &[("d", 0.2)], ""),
            record("e", &[("f", 0.1)], ""),
        ];
        let scored: Vec<Scored> = records.iter().map(score).collect();
        let all_refs: Vec<&Scored> = scored.iter().collect();
        let all = &all_refs;
        let g = gate(all, Measure::Mean, 0.5, true);
        assert_eq!((g.coverage, g.em_shown), (50.0, 50.0));
        let g = gate(all, Measure::Mean, 0.0, true);
        assert_eq!((g.coverage, g.em_shown), (100.0, 50.0));
        assert!((threshold_for_coverage(all, Measure::Mean, 50.0) - 0.8).abs() < 1e-6);
    }

    #[test]
    fn halves_split_files_and_are_stable() {
        let paths: Vec<std::path::PathBuf> =
            (0..200).map(|i| format!("pkg/m{i}.py").into()).collect();
        let calibrate = paths
            .iter()
            .filter(|p| Half::of(p) == Half::Calibrate)
            .count();
        assert!((60..140).contains(&calibrate), "{calibrate} of 200");
        assert_eq!(Half::of("a/b.py".as_ref()), Half::of("a/b.py".as_ref()));
    }
}
