//! The edit benchmark: next-line exact match and edit similarity after
//! insertions, deletions and multi-place edits earlier in the context, with
//! the KV cache brought along by Full, Pie, Conflict and Pie with idle-time
//! repair; plus K edits in a row.
//!
//! ```text
//! cargo run --release --bin pie-eval -- \
//!     --python /usr/lib/python3.11 --rust ~/.cargo/registry/src \
//!     --samples 200 --sequential 1,5,20 --out eval-out
//! ```
//!
//! Every finished sample is appended to `OUT/samples.jsonl`; running the
//! same command again resumes where it stopped. `OUT/report.md` and
//! `OUT/summary.json` are rewritten at the end (`--report-only` rewrites
//! them from the samples alone).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use pie_edit::eval::corpus::{Corpus, Language};
use pie_edit::eval::report;
use pie_edit::eval::run::{EvalOptions, Evaluator, Mode, SampleRecord, Setting, sample_id};
use pie_edit::eval::simulate::EditKind;
use pie_edit::eval::suggest::{self, Cursor, Half, SuggestRecord};
use pie_edit::model::{LoadOptions, Sampling, SlowQuant, UpdateMode};
use pie_edit::predict::config::PredictConfig;
use pie_edit::predict::mirror::{self, Mirror, MirrorConfig, Rank};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOCATOR: pie_edit::Allocator = pie_edit::Allocator;

#[derive(Parser, Debug)]
#[command(
    about = "Edit benchmark: EM/ES of next-line prediction after edits, per cache update mode"
)]
struct Args {
    /// A directory of Python files to draw samples from.
    #[arg(long)]
    python: Option<PathBuf>,
    /// A directory of Rust files to draw samples from.
    #[arg(long)]
    rust: Option<PathBuf>,
    /// Samples per edit kind and language.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tokens of context before the target line (before the edit).
    #[arg(long, default_value_t = 2048)]
    context: usize,
    /// Model: a preset, hf:ORG/REPO[:FILE], or a path.
    #[arg(long, default_value = "smollm2-135m")]
    model: String,
    /// CPU threads for the model.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Edit kinds of the single-edit table.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "insertion,deletion,multi-place"
    )]
    kinds: Vec<String>,
    /// Edits in a row for the sequential table (empty: skip it).
    #[arg(long, default_value = "1,5,20", value_parser = parse_counts)]
    sequential: Counts,
    /// Samples per sequential length and language (default: --samples).
    #[arg(long)]
    sequential_samples: Option<usize>,
    /// Tokens repaired in each pause after an edit (default: all stale ones).
    #[arg(long)]
    repair_budget: Option<usize>,
    /// Weights: `native` is what the editor runs (Q4_1 as stored on our
    /// AVX512-VNNI kernel, else Q8_0); `q8` re-quantizes Q4 to Q8_0; `f32`
    /// dequantizes them. The native and f32 kernels give each token the same
    /// numbers however a pass is chunked (candle's Q8_0 kernels do not), so
    /// with them the Pie/Full gap measures PIE alone.
    #[arg(long, value_enum, default_value_t = SlowQuant::Native)]
    weights: SlowQuant,
    /// Output directory.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
    /// Rewrite report.md and summary.json from OUT/samples.jsonl, run nothing.
    #[arg(long)]
    report_only: bool,
    /// Measure what the user sees instead (issue 15): suggestions at the
    /// start of a line, no edit, with their confidence and alternatives;
    /// `--samples` per language, into OUT/suggest.jsonl and OUT/suggest.md.
    #[arg(long)]
    suggest: bool,
    /// With --suggest: the half of each corpus's files to draw from.
    #[arg(long, value_enum, default_value_t = Half::Report)]
    half: Half,
    /// With --suggest: suggestions per trigger, the first one included.
    #[arg(long, default_value_t = 3)]
    choices: usize,
    /// With --suggest: the order alternatives are offered in.
    #[arg(long, value_enum, default_value_t = Rank::default())]
    rank: Rank,
    /// With --suggest: width of the beam search that finds the
    /// alternatives (0: none).
    #[arg(long, default_value_t = MirrorConfig::default().beam)]
    beam: usize,
    /// With --suggest: where on the target's line the trigger happens.
    #[arg(long, value_enum, default_value_t = Cursor::default())]
    cursor: Cursor,
    /// With --suggest: the threshold the headline table applies (default:
    /// the editor's for each language).
    #[arg(long)]
    min_confidence: Option<f64>,
}

/// What decides the samples and their results; a resumed run must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunKey {
    seed: u64,
    context: usize,
    model: String,
    weights: SlowQuant,
    repair_budget: Option<usize>,
}

/// A comma-separated list of counts; an empty one is allowed (and empty).
#[derive(Debug, Clone, PartialEq)]
struct Counts(Vec<usize>);

fn parse_counts(text: &str) -> Result<Counts, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().map_err(|_| format!("not a count: {part:?}")))
        .collect::<Result<_, _>>()
        .map(Counts)
}

fn main() {
    if let Err(err) = run(Args::parse()) {
        eprintln!("pie-eval: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    if args.suggest {
        return run_suggest(&args);
    }
    let samples_path = args.out.join("samples.jsonl");
    if args.report_only {
        return write_report(&args.out, &read_jsonl::<SampleRecord>(&samples_path)?);
    }
    let corpora = threads_and_corpora(&args)?;
    let kinds = args
        .kinds
        .iter()
        .map(|k| {
            EditKind::ALL
                .into_iter()
                .find(|kind| kind.name() == k)
                .with_context(|| {
                    format!("unknown edit kind {k:?} (insertion, deletion, multi-place)")
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut plan: Vec<(usize, Setting, usize)> = Vec::new();
    for (c, _) in corpora.iter().enumerate() {
        for &kind in &kinds {
            plan.extend((0..args.samples).map(|i| (c, Setting::Single { kind }, i)));
        }
        for &steps in &args.sequential.0 {
            let n = args.sequential_samples.unwrap_or(args.samples);
            plan.extend((0..n).map(|i| (c, Setting::Sequential { steps }, i)));
        }
    }

    start_run(&args, args.repair_budget)?;
    let mut records = read_jsonl::<SampleRecord>(&samples_path)?;
    let done: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
    let todo: Vec<_> = plan
        .into_iter()
        .filter(|&(c, setting, i)| !done.contains(&sample_id(&corpora[c], setting, i)))
        .collect();

    let bar = progress_bar(todo.len(), " {msg}");
    bar.println(format!(
        "{} samples to run ({} already in {})",
        todo.len(),
        done.len(),
        samples_path.display()
    ));
    if !todo.is_empty() {
        let (mirror, name) = load_mirror(&args, MirrorConfig::default(), &bar)?;
        bar.println(format!(
            "model: {name} ({:?} weights), {} threads",
            args.weights, args.threads
        ));
        let mut evaluator = Evaluator::new(
            mirror,
            EvalOptions {
                seed: args.seed,
                context_tokens: args.context,
                repair_budget: args.repair_budget,
            },
        );
        let mut out = append_to(&samples_path)?;
        for (c, setting, i) in todo {
            let record = evaluator
                .run(&corpora[c], setting, i)
                .with_context(|| format!("sample {}", sample_id(&corpora[c], setting, i)))?;
            writeln!(out, "{}", serde_json::to_string(&record)?)?;
            out.flush()?;
            records.push(record);
            bar.set_message(running_em(&records));
            bar.inc(1);
        }
        bar.finish();
    }
    write_report(&args.out, &records)
}

fn run_suggest(args: &Args) -> Result<()> {
    let path = args.out.join("suggest.jsonl");
    let mut records: Vec<SuggestRecord> = read_jsonl(&path)?;
    if !args.report_only {
        let mut corpora = threads_and_corpora(args)?;
        for corpus in &mut corpora {
            args.half.restrict(corpus);
        }
        start_run(args, None)?;
        let done: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        let todo: Vec<(usize, usize)> = (0..corpora.len())
            .flat_map(|c| (0..args.samples).map(move |i| (c, i)))
            .filter(|&(c, i)| !done.contains(&suggest::sample_id(&corpora[c], args.half, i)))
            .collect();
        let bar = progress_bar(todo.len(), "");
        if !todo.is_empty() {
            let alternatives = MirrorConfig {
                rank: args.rank,
                beam: args.beam,
                ..MirrorConfig::default()
            };
            let (mut mirror, name) = load_mirror(args, alternatives, &bar)?;
            let trigger = suggest::Trigger {
                half: args.half,
                seed: args.seed,
                context_tokens: args.context,
                choices: args.choices,
                cursor: args.cursor,
            };
            bar.println(format!("model: {name}, {} threads", args.threads));
            let mut out = append_to(&path)?;
            for (c, i) in todo {
                let record = suggest::run_sample(&mut mirror, &corpora[c], i, trigger)
                    .with_context(|| {
                        format!("sample {}", suggest::sample_id(&corpora[c], args.half, i))
                    })?;
                writeln!(out, "{}", serde_json::to_string(&record)?)?;
                out.flush()?;
                records.push(record);
                bar.inc(1);
            }
            bar.finish();
        }
    }
    let defaults = PredictConfig::default();
    let table = suggest::markdown(&records, &|language| {
        args.min_confidence
            .unwrap_or(defaults.min_confidence_in(Some(language)) as f64)
    });
    std::fs::write(args.out.join("suggest.md"), &table)?;
    println!("{table}");
    Ok(())
}

/// Create the output folder; a run resumed there must have been made with
/// the same settings.
fn start_run(args: &Args, repair_budget: Option<usize>) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let key = RunKey {
        seed: args.seed,
        context: args.context,
        model: args.model.clone(),
        weights: args.weights,
        repair_budget,
    };
    check_run_key(&args.out.join("run.json"), &key)
}

fn progress_bar(len: usize, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} samples, {{elapsed}} elapsed, ETA {{eta}}{message}"
        ))
        .expect("valid template"),
    );
    bar
}

/// The model as both evaluations run it, with `settings`' alternatives:
/// greedy, one line, and room for the edits (the window must never slide
/// here).
fn load_mirror(args: &Args, settings: MirrorConfig, bar: &ProgressBar) -> Result<(Mirror, String)> {
    let config = MirrorConfig {
        max_context: args.context * 2,
        mode: UpdateMode::Pie,
        max_lines: 1,
        max_tokens: 48,
        sampling: Sampling::Greedy,
        ..settings
    };
    let load = LoadOptions {
        slow_quant: args.weights,
        ..LoadOptions::default()
    };
    mirror::load_with(&args.model, config, &load, &|msg| bar.println(msg))
}

/// Records are appended as they come, so a stopped run resumes.
fn append_to(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Size candle's thread pool (it does so on first use) and scan the
/// corpora asked for.
fn threads_and_corpora(args: &Args) -> Result<Vec<Corpus>> {
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", args.threads.to_string());
    }
    let mut corpora = Vec::new();
    if let Some(dir) = &args.python {
        corpora.push(Corpus::scan(dir, Language::Python)?);
    }
    if let Some(dir) = &args.rust {
        corpora.push(Corpus::scan(dir, Language::Rust)?);
    }
    if corpora.is_empty() {
        bail!("give at least one corpus: --python DIR and/or --rust DIR");
    }
    Ok(corpora)
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(record) => records.push(record),
            // A run killed mid-write leaves a torn last line: redo that sample.
            Err(err) => eprintln!("{}:{}: skipped ({err})", path.display(), n + 1),
        }
    }
    Ok(records)
}

/// EM so far per mode, for the progress bar.
fn running_em(records: &[SampleRecord]) -> String {
    Mode::ALL
        .iter()
        .map(|&m| {
            let hits = records
                .iter()
                .filter(|r| r.outcome(m).is_some_and(|o| o.exact))
                .count();
            format!(
                "{} {:.0}%",
                m.name(),
                100.0 * hits as f64 / records.len().max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_run_key(path: &Path, key: &RunKey) -> Result<()> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let old: RunKey =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        if &old != key {
            bail!(
                "{} holds a run with other settings ({old:?}); use another --out",
                path.display()
            );
        }
        return Ok(());
    }
    std::fs::write(path, serde_json::to_string_pretty(key)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn write_report(out: &Path, records: &[SampleRecord]) -> Result<()> {
    let groups = report::summarize(records);
    let table = report::markdown(&groups);
    std::fs::write(out.join("report.md"), &table)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&groups)?,
    )?;
    println!("{table}");
    println!(
        "{} samples; report in {}",
        records.len(),
        out.join("report.md").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_sequential_list_skips_the_table() {
        let args = Args::try_parse_from(["pie-eval", "--sequential", ""]).unwrap();
        assert_eq!(args.sequential, Counts(vec![]));
        let args = Args::try_parse_from(["pie-eval"]).unwrap();
        assert_eq!(args.sequential, Counts(vec![1, 5, 20]));
        assert!(Args::try_parse_from(["pie-eval", "--sequential", "1,x"]).is_err());
    }
}
