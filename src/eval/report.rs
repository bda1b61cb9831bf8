//! Tables from sample records: per language and setting, EM/ES per mode,
//! the Pie-minus-Full gap with a bootstrap interval, and update costs.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::corpus::Language;
use super::metrics::{bootstrap_mean, median};
use super::run::{Mode, SampleRecord, Setting, predicted_line};

const RESAMPLES: usize = 2000;

#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub mode: Mode,
    /// Exact match, percent.
    pub em: f64,
    /// Mean edit similarity, 0..=100.
    pub es: f64,
    pub update_ms_median: f64,
    pub encoded_median: f64,
    pub repair_ms_median: f64,
    /// EM minus Full's EM in points, with a 95% bootstrap interval over
    /// samples (paired).
    pub em_gap: (f64, f64, f64),
    /// Share of samples whose predicted line is the same text as Full's.
    pub same_as_full: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub language: Language,
    pub setting: Setting,
    pub samples: usize,
    pub modes: Vec<ModeSummary>,
}

pub fn summarize(records: &[SampleRecord]) -> Vec<GroupSummary> {
    let mut groups: BTreeMap<(Language, Setting), Vec<&SampleRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.target.language, r.setting))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((language, setting), records)| GroupSummary {
            language,
            setting,
            samples: records.len(),
            modes: Mode::ALL
                .iter()
                .map(|&mode| summarize_mode(&records, mode))
                .collect(),
        })
        .collect()
}

fn summarize_mode(records: &[&SampleRecord], mode: Mode) -> ModeSummary {
    let pairs: Vec<_> = records
        .iter()
        .filter_map(|r| Some((r.outcome(mode)?, r.outcome(Mode::Full)?)))
        .collect();
    let n = pairs.len().max(1) as f64;
    let em = 100.0 * pairs.iter().filter(|(o, _)| o.exact).count() as f64 / n;
    let es = pairs.iter().map(|(o, _)| o.similarity).sum::<f64>() / n;
    let gaps: Vec<f64> = pairs
        .iter()
        .map(|(o, f)| 100.0 * (o.exact as i32 - f.exact as i32) as f64)
        .collect();
    let mut update: Vec<f64> = pairs.iter().filter_map(|(o, _)| o.update_ms).collect();
    let mut encoded: Vec<f64> = pairs.iter().map(|(o, _)| o.encoded as f64).collect();
    let mut repair: Vec<f64> = pairs.iter().map(|(o, _)| o.repair_ms).collect();
    ModeSummary {
        mode,
        em,
        es,
        update_ms_median: median(&mut update),
        encoded_median: median(&mut encoded),
        repair_ms_median: median(&mut repair),
        em_gap: bootstrap_mean(&gaps, RESAMPLES, 7),
        same_as_full: 100.0
            * pairs
                .iter()
                .filter(|(o, f)| {
                    predicted_line(&o.prediction).trim() == predicted_line(&f.prediction).trim()
                })
                .count() as f64
            / n,
    }
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn gap(g: (f64, f64, f64)) -> String {
    format!("{:+.1} [{:+.1}, {:+.1}]", g.0, g.1, g.2)
}

/// Markdown tables: one for single edits, one for sequential edits.
pub fn markdown(groups: &[GroupSummary]) -> String {
    let mut out = String::new();
    for sequential in [false, true] {
        let rows: Vec<_> = groups
            .iter()
            .filter(|g| matches!(g.setting, Setting::Sequential { .. }) == sequential)
            .collect();
        if rows.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        let (edit_column, cost_columns) = if sequential {
            ("edits in a row | n", "")
        } else {
            (
                "edit | n",
                " update ms (median) | tokens encoded (median) |",
            )
        };
        let _ = writeln!(
            out,
            "| language | {edit_column} | mode | EM % | ES | EM - Full (95% CI) | same text as Full % |{cost_columns} repair ms (median) |"
        );
        let numbers = 5 + if sequential { 0 } else { 2 };
        let _ = writeln!(out, "|---|---|---:|---|{}", "---:|".repeat(numbers));
        for g in rows {
            for m in &g.modes {
                let edit = match g.setting {
                    Setting::Single { kind } => kind.name().to_string(),
                    Setting::Sequential { steps } => steps.to_string(),
                };
                let mut cells = vec![
                    g.language.name().to_string(),
                    edit,
                    g.samples.to_string(),
                    m.mode.name().to_string(),
                    format!("{:.1}", m.em),
                    format!("{:.1}", m.es),
                    if m.mode == Mode::Full {
                        "-".into()
                    } else {
                        gap(m.em_gap)
                    },
                    format!("{:.0}", m.same_as_full),
                ];
                if !sequential {
                    cells.push(ms(m.update_ms_median));
                    cells.push(format!("{:.0}", m.encoded_median));
                }
                cells.push(if m.mode == Mode::PieRepair {
                    ms(m.repair_ms_median)
                } else {
                    "-".into()
                });
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
        }
    }
    out
}
