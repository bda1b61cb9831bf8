//! What makes a suggestion worth showing: its confidence, the shape of its
//! text (leading blank lines skipped), and the filters that hide a
//! suggestion the user would not want at an automatic trigger. The engine,
//! the editor and pie-eval share these, so the benchmark measures what the
//! user sees.

use serde::{Deserialize, Serialize};

use crate::model::TokenInfo;

/// What decoding knew about one suggestion's tokens, from the first one up
/// to the token that ended its last line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    /// Probability of the first token that brought code (not only
    /// whitespace).
    pub first: f32,
    /// Log-probability margin of that token over the runner-up.
    pub first_margin: f32,
    /// Smallest token probability.
    pub min: f32,
    /// Mean token log-probability.
    pub mean_logprob: f32,
    pub tokens: usize,
}

impl Default for Confidence {
    fn default() -> Self {
        Confidence {
            first: 1.0,
            first_margin: f32::INFINITY,
            min: 1.0,
            mean_logprob: 0.0,
            tokens: 0,
        }
    }
}

impl Confidence {
    /// The one number the threshold applies to, in 0..=1. The mean token
    /// probability (geometric) ranked suggestions best on the calibration
    /// split of pie-eval (see BENCHMARKS.md, issue 15).
    pub fn score(&self) -> f32 {
        if self.tokens == 0 {
            return 0.0;
        }
        self.mean_logprob.exp()
    }
}

/// Accumulates [`Confidence`] token by token.
#[derive(Debug, Clone, Default)]
pub struct ConfidenceMeter {
    sum_logprob: f64,
    min_logprob: f32,
    first: Option<(f32, f32)>,
    tokens: usize,
}

impl ConfidenceMeter {
    /// One more token; `brings_code` once the suggestion has code with it.
    pub fn push(&mut self, info: TokenInfo, brings_code: bool) {
        if self.tokens == 0 || info.logprob < self.min_logprob {
            self.min_logprob = info.logprob;
        }
        self.sum_logprob += info.logprob as f64;
        self.tokens += 1;
        if brings_code && self.first.is_none() {
            self.first = Some((info.logprob.exp(), info.margin));
        }
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn has_code(&self) -> bool {
        self.first.is_some()
    }

    pub fn confidence(&self) -> Confidence {
        if self.tokens == 0 {
            return Confidence {
                tokens: 0,
                ..Confidence::default()
            };
        }
        let (first, first_margin) = self.first.unwrap_or((0.0, 0.0));
        Confidence {
            first,
            first_margin,
            min: self.min_logprob.exp(),
            mean_logprob: (self.sum_logprob / self.tokens as f64) as f32,
            tokens: self.tokens,
        }
    }
}

/// The part of the generated text to show, and whether `max_lines` lines
/// of code are complete. `line_before` is the cursor's line up to the
/// cursor. Trailing whitespace is held back (so it never flickers in and
/// out), and blank lines before the first code are skipped: the model often
/// starts with them at the end of a file. At a blank cursor line the code
/// moves up onto it (its indentation, where it repeats the cursor's, is not
/// typed twice); after code, one line break is kept.
pub fn shape(visible: &str, line_before: &str, max_lines: usize) -> (String, bool) {
    let Some(code_at) = visible.find(|c: char| !c.is_whitespace()) else {
        return (String::new(), false);
    };
    let shaped: String = match visible[..code_at].rfind('\n') {
        None => visible.to_string(),
        Some(break_at) => {
            let code_line = &visible[break_at + 1..];
            let blank_cursor_line = line_before.chars().all(char::is_whitespace);
            match code_line.strip_prefix(line_before) {
                Some(rest) if blank_cursor_line => rest.to_string(),
                _ => format!("\n{code_line}"),
            }
        }
    };
    let mut lines_with_code = 0;
    let mut line_start = 0;
    for (i, ch) in shaped.char_indices() {
        if ch == '\n' {
            if !shaped[line_start..i].trim().is_empty() {
                lines_with_code += 1;
                if lines_with_code >= max_lines.max(1) {
                    return (shaped[..i].trim_end().to_string(), true);
                }
            }
            line_start = i + 1;
        }
    }
    (shaped.trim_end().to_string(), false)
}

/// Why a suggestion is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hidden {
    /// Nothing but whitespace.
    Blank,
    /// Nothing but closing brackets (and separators).
    OnlyClosing,
    /// It only repeats the line above or below the cursor.
    Repeats,
    /// Its confidence is under the threshold.
    Unsure,
}

/// Where a suggestion would be shown: the cursor's line up to and after
/// the cursor, and the lines around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surroundings {
    pub before: String,
    pub after: String,
    pub line_above: Option<String>,
    pub line_below: Option<String>,
}

/// The line the suggestion would leave at the cursor (or, when it starts
/// with a line break, the first line it adds).
fn first_line_result(text: &str, surroundings: &Surroundings) -> String {
    match text.strip_prefix('\n') {
        Some(rest) => rest.split('\n').next().unwrap_or("").to_string(),
        None => {
            let head = text.split('\n').next().unwrap_or("");
            if text.contains('\n') {
                format!("{}{head}", surroundings.before)
            } else {
                format!("{}{head}{}", surroundings.before, surroundings.after)
            }
        }
    }
}

/// How a suggestion is judged: its text so far (all of it once
/// `complete`), and the confidence to judge it by.
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    pub text: &'a str,
    pub confidence: f32,
    pub complete: bool,
}

impl<'a> Judged<'a> {
    pub fn whole(text: &'a str, confidence: f32) -> Judged<'a> {
        Judged {
            text,
            confidence,
            complete: true,
        }
    }
}

/// Whether `code` is nothing but closing brackets and separators: one key
/// to type, not worth a suggestion's place.
pub fn only_closing(code: &str) -> bool {
    code.chars()
        .all(|c| ")]},;".contains(c) || c.is_whitespace())
}

/// Whether a suggestion is worth showing at an automatic trigger: `None`
/// when it is, else why not. An explicit request (the user asked) is shown
/// whatever it holds, unless it is blank. A suggestion judged before it is
/// complete is hidden as a repeat when its line so far starts the line
/// above or below: it is on its way to repeating it.
pub fn hidden(
    judged: Judged<'_>,
    min_confidence: f32,
    surroundings: &Surroundings,
    automatic: bool,
) -> Option<Hidden> {
    let Judged {
        text,
        confidence,
        complete,
    } = judged;
    let code = text.trim();
    if code.is_empty() {
        return Some(Hidden::Blank);
    }
    if automatic && only_closing(code) {
        return Some(Hidden::OnlyClosing);
    }
    let line = first_line_result(text, surroundings);
    let repeats = |other: &Option<String>| {
        other.as_deref().is_some_and(|o| {
            let (o, line) = (o.trim(), line.trim());
            !o.is_empty()
                && if complete {
                    o == line
                } else {
                    o.starts_with(line)
                }
        })
    };
    // A one-line suggestion that rebuilds the line above or below.
    if automatic
        && !text.trim_start_matches('\n').contains('\n')
        && (repeats(&surroundings.line_above) || repeats(&surroundings.line_below))
    {
        return Some(Hidden::Repeats);
    }
    if automatic && confidence < min_confidence {
        return Some(Hidden::Unsure);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(before: &str, above: &str, below: &str) -> Surroundings {
        Surroundings {
            before: before.into(),
            after: String::new(),
            line_above: Some(above.into()),
            line_below: Some(below.into()),
        }
    }

    #[test]
    fn leading_blank_lines_are_skipped() {
        // At a blank line the code moves up onto it.
        assert_eq!(shape("\n\n    return x\n", "    ", 1).0, "return x");
        assert_eq!(shape("\n\ndef f():", "", 1), ("def f():".into(), false));
        // After code, one line break is kept.
        assert_eq!(shape("\n\n\n    y = 2\n", "    x = 1", 1).0, "\n    y = 2");
        // A dedent cannot be typed at a deeper blank line: kept below it.
        assert_eq!(shape("\n\nreturn", "    ", 1).0, "\nreturn");
        // Nothing to skip.
        assert_eq!(shape("x + 1)\nfoo", "y = (", 1), ("x + 1)".into(), true));
        assert_eq!(
            shape("\n    y = 2\n", "x = 1", 1),
            ("\n    y = 2".into(), true)
        );
        assert_eq!(shape("  \n ", "", 1), (String::new(), false));
    }

    #[test]
    fn shaping_counts_lines_of_code() {
        let (text, done) = shape("\n\na = 1\n\nb = 2\nc", "", 2);
        assert_eq!((text.as_str(), done), ("a = 1\n\nb = 2", true));
        assert_eq!(shape("a = 1\nb", "", 2), ("a = 1\nb".into(), false));
    }

    #[test]
    fn blank_and_closing_suggestions_are_hidden_only_when_automatic() {
        let s = at("    ", "x = 1", "y = 2");
        assert_eq!(
            hidden(Judged::whole("   ", 1.0), 0.0, &s, true),
            Some(Hidden::Blank)
        );
        assert_eq!(
            hidden(Judged::whole("})", 1.0), 0.0, &s, true),
            Some(Hidden::OnlyClosing)
        );
        assert_eq!(hidden(Judged::whole("])", 1.0), 0.0, &s, false), None);
        assert_eq!(hidden(Judged::whole("return x", 1.0), 0.0, &s, true), None);
    }

    #[test]
    fn repeating_the_line_above_or_below_is_hidden() {
        let s = at("    ", "    total = 0", "    return total");
        assert_eq!(
            hidden(Judged::whole("total = 0", 1.0), 0.0, &s, true),
            Some(Hidden::Repeats)
        );
        assert_eq!(
            hidden(Judged::whole("return total", 1.0), 0.0, &s, true),
            Some(Hidden::Repeats)
        );
        assert_eq!(
            hidden(Judged::whole("return total", 1.0), 0.0, &s, false),
            None
        );
        assert_eq!(
            hidden(
                Judged::whole("\n    total = 0", 1.0),
                0.0,
                &at("x", "    total = 0", ""),
                true
            ),
            Some(Hidden::Repeats)
        );
        assert_eq!(
            hidden(Judged::whole("total += 1", 1.0), 0.0, &s, true),
            None
        );
        // Blank neighbours repeat nothing.
        assert_eq!(
            hidden(Judged::whole("pass", 1.0), 0.0, &at("", "", ""), true),
            None
        );
    }

    #[test]
    fn the_threshold_gates_automatic_suggestions_only() {
        let s = at("", "a", "b");
        assert_eq!(
            hidden(Judged::whole("x = 1", 0.2), 0.5, &s, true),
            Some(Hidden::Unsure)
        );
        assert_eq!(hidden(Judged::whole("x = 1", 0.2), 0.5, &s, false), None);
        assert_eq!(hidden(Judged::whole("x = 1", 0.6), 0.5, &s, true), None);
    }

    #[test]
    fn a_suggestion_judged_before_it_is_complete_is_hidden_on_its_way_to_a_repeat() {
        let s = at("    ", "    total = 0", "    return total");
        let so_far = |text| Judged {
            text,
            confidence: 0.9,
            complete: false,
        };
        assert_eq!(hidden(so_far("for x in"), 0.5, &s, true), None);
        assert_eq!(
            hidden(so_far("return to"), 0.5, &s, true),
            Some(Hidden::Repeats)
        );
        assert_eq!(hidden(so_far("tot"), 0.5, &s, true), Some(Hidden::Repeats));
        assert_eq!(hidden(so_far("return totals"), 0.5, &s, true), None);
        // Complete, a line that only starts the one below is its own.
        assert_eq!(hidden(Judged::whole("return", 0.9), 0.5, &s, true), None);
    }

    #[test]
    fn the_meter_keeps_first_code_token_min_and_mean() {
        let mut m = ConfidenceMeter::default();
        let info = |p: f32, margin: f32| TokenInfo {
            logprob: p.ln(),
            margin,
        };
        m.push(info(0.9, 3.0), false);
        m.push(info(0.5, 0.2), true);
        m.push(info(0.8, 1.0), true);
        let c = m.confidence();
        assert!((c.first - 0.5).abs() < 1e-6 && (c.first_margin - 0.2).abs() < 1e-6);
        assert!((c.min - 0.5).abs() < 1e-6);
        let mean = (0.9f32.ln() + 0.5f32.ln() + 0.8f32.ln()) / 3.0;
        assert!((c.mean_logprob - mean).abs() < 1e-6);
        assert!((c.score() - mean.exp()).abs() < 1e-6);
        assert_eq!(ConfidenceMeter::default().confidence().score(), 0.0);
    }
}
