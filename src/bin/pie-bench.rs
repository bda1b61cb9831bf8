//! Engine benchmark: KV-cache update time for Pie, Conflict and Full after
//! insertions, deletions and multi-place edits in the middle of the context,
//! the idle repair that follows Pie, plus prefill and decode speed.
//!
//! `cargo run --release --bin pie-bench -- --threads 2`

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use pie_edit::model::{
    GenerateOptions, Kernel, LoadOptions, Model, Sampling, Session, SlowQuant, TokenEdit,
    UpdateMode,
};

#[global_allocator]
static ALLOCATOR: pie_edit::Allocator = pie_edit::Allocator;

#[derive(Parser, Debug)]
struct Args {
    /// GGUF file or safetensors directory (default: the SmolLM2 model in the data directory).
    #[arg(long)]
    model: Option<PathBuf>,
    /// CPU threads for candle's kernels.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Context sizes (tokens) for the cache-update table.
    #[arg(long, value_delimiter = ',', default_value = "512,1024,2048,4096")]
    contexts: Vec<usize>,
    /// Repetitions of the cheap (Pie, Conflict) updates; the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// What to do with Q4_0/Q4_1 matrices at load (default native; with
    /// --speed-only, every treatment in turn unless this is given).
    #[arg(long, value_enum)]
    weights: Option<SlowQuant>,
    /// Leave Q8_0 matrices unpadded (slower generic kernel; for comparison).
    #[arg(long)]
    no_pad: bool,
    /// Force a kernel (default: PIE_EDIT_KERNEL, else the fastest this CPU
    /// has; with --speed-only, every one this CPU has unless given).
    #[arg(long, value_enum)]
    kernel: Option<Kernel>,
    /// Tokens per idle-repair step (the editor's `repair_chunk`).
    #[arg(long, default_value_t = 8)]
    repair_chunk: usize,
    /// Only measure prefill/decode speed, for each weight treatment in turn.
    #[arg(long)]
    speed_only: bool,
    /// Only measure the window slide (PIE shift against re-encoding).
    #[arg(long, conflicts_with = "speed_only")]
    slide_only: bool,
    /// Tokens already in the cache when decoding starts. 1 is what
    /// llama-bench's tg64 measures; an editor decodes after a whole file.
    #[arg(long, default_value_t = 1)]
    decode_context: usize,
    /// Only measure opening FILE to "ready" through the engine: cold, warm
    /// from the KV cache kept on disk, and warm after about 10 lines of the
    /// file changed (a simulated `git pull`), in one run.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["speed_only", "slide_only"])]
    open: Option<PathBuf>,
    /// With --open: how the disk cache stores K/V (f32 or f16).
    #[arg(long, default_value = "f32", requires = "open")]
    open_storage: String,
    /// Write a GGUF of this model's shape with random weights to --out, and
    /// exit (qwen2.5-coder-0.5b, qwen2.5-coder-1.5b).
    #[arg(long, requires = "out")]
    write_random: Option<String>,
    /// Storage of the random model's matrices: q8_0 or q4_k_m.
    #[arg(long, default_value = "q8_0")]
    dtype: String,
    /// Where --write-random writes.
    #[arg(long)]
    out: Option<PathBuf>,
    /// GGUF whose tokenizer the random model copies (default: the SmolLM2
    /// model), or `bytes` for a byte-only vocabulary.
    #[arg(long)]
    vocab_from: Option<PathBuf>,
}

fn default_model() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/share/pie-edit/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// Token ids drawn from a fixed pseudo-random sequence: the update cost does
/// not depend on which tokens they are, only on how many.
fn synthetic_tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Stay within the common part of the vocabulary, away from special tokens.
            (100 + (state >> 33) as usize % (vocab.min(20_000) - 100)) as u32
        })
        .collect()
}

fn edits(n: usize, vocab: usize) -> Vec<(&'static str, Vec<TokenEdit>)> {
    let new = |k: usize, seed: u64| synthetic_tokens(k, vocab, seed);
    vec![
        (
            "insertion (+8)",
            vec![TokenEdit {
                start: n / 2,
                old_len: 0,
                new_tokens: new(8, 1),
            }],
        ),
        (
            "deletion (-8)",
            vec![TokenEdit {
                start: n / 2,
                old_len: 8,
                new_tokens: vec![],
            }],
        ),
        (
            "multi-place (3 hunks)",
            vec![
                TokenEdit {
                    start: n / 4,
                    old_len: 2,
                    new_tokens: new(4, 2),
                },
                TokenEdit {
                    start: n / 2,
                    old_len: 3,
                    new_tokens: vec![],
                },
                TokenEdit {
                    start: 3 * n / 4,
                    old_len: 0,
                    new_tokens: new(5, 3),
                },
            ],
        ),
    ]
}

/// This process's resident memory (Linux), in MB.
fn resident_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time_update(
    base: &Session,
    hunks: &[TokenEdit],
    mode: UpdateMode,
    reps: usize,
) -> Result<Duration> {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let mut s = base.fork()?;
        // A live session preallocates its window; growth is not part of an update.
        s.reserve(base.tokens().len() + 64)?;
        let started = Instant::now();
        s.apply(hunks, mode)?;
        times.push(started.elapsed());
    }
    Ok(median(times))
}

/// Idle repair after a Pie update, step by step as the engine runs it:
/// (median step, slowest step, all steps). The slowest step bounds how long
/// a keystroke can wait for repair.
fn time_repair(
    base: &Session,
    hunks: &[TokenEdit],
    chunk: usize,
) -> Result<(Duration, Duration, Duration)> {
    let mut s = base.fork()?;
    s.reserve(base.tokens().len() + 64)?;
    s.apply(hunks, UpdateMode::Pie)?;
    let mut steps = Vec::new();
    while s.staleness().is_some() {
        steps.push(s.repair(chunk)?.elapsed);
    }
    let total = steps.iter().sum();
    let slowest = steps.iter().copied().max().unwrap_or_default();
    Ok((median(steps), slowest, total))
}

/// Tokens per second over several runs, as llama-bench reports them.
struct Rate {
    mean: f64,
    sd: f64,
}

impl Rate {
    /// From the run times of `tokens` tokens each.
    fn of(tokens: usize, runs: &[Duration]) -> Self {
        let rates: Vec<f64> = runs
            .iter()
            .map(|d| tokens as f64 / d.as_secs_f64())
            .collect();
        let n = rates.len() as f64;
        let mean = rates.iter().sum::<f64>() / n;
        let var = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Self {
            mean,
            sd: var.sqrt(),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} ± {:.0}", self.mean, self.sd)
    }
}

/// Timed runs per figure, after one untimed warm-up run: llama-bench's
/// `-r 3` and its warm-up, so that the two tools' figures compare.
const SPEED_RUNS: usize = 3;

/// (prefill over 512 tokens, decode of 64 tokens after `decode_context`
/// (>= 1) cached ones)
fn speed(model: &Arc<Model>, decode_context: usize) -> Result<(Rate, Rate)> {
    let vocab = model.config().vocab_size;
    let prompt = synthetic_tokens(512.max(decode_context), vocab, 7);
    let mut s = Session::new(model.clone())?;
    let mut prefill = Vec::new();
    for _ in 0..=SPEED_RUNS {
        let started = Instant::now();
        s.reset(&prompt[..512])?;
        prefill.push(started.elapsed());
    }
    s.reset(&prompt[..decode_context])?;
    let opts = GenerateOptions {
        max_tokens: 64,
        sampling: Sampling::Greedy,
    };
    let mut decode = Vec::new();
    for _ in 0..=SPEED_RUNS {
        let started = Instant::now();
        let mut no_eos = |_: &[u32], logits: &mut [f32]| {
            if let Some(eos) = model.config().eos_id {
                logits[eos as usize] = f32::NEG_INFINITY;
            }
        };
        let out = s.generate(decode_context, &opts, &mut no_eos, &mut |_| {
            ControlFlow::Continue(())
        })?;
        anyhow::ensure!(out.len() == 64, "decode stopped after {} tokens", out.len());
        decode.push(started.elapsed());
    }
    Ok((Rate::of(512, &prefill[1..]), Rate::of(64, &decode[1..])))
}

fn main() -> Result<()> {
    let args = Args::parse();
    // SAFETY: nothing else runs yet; candle reads these when it builds its
    // thread pools on first use.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", args.threads.to_string());
    }
    if let (Some(shape), Some(out)) = (&args.write_random, &args.out) {
        return write_random(shape, &args.dtype, out, args.vocab_from.clone());
    }
    let path = match &args.model {
        Some(p) => p.clone(),
        None => default_model()?,
    };
    println!("model: {}", path.display());
    println!("threads: {}", args.threads);
    // Generation needs at least one token before the prediction point.
    let decode_context = args.decode_context.max(1);

    if let Some(file) = &args.open {
        return open_bench::run(&path, file, &args);
    }

    if args.speed_only {
        println!(
            "| weights (Q4_1 matrices) | kernel | load s | prefill pp512 tok/s | decode tg64 tok/s (after {} tokens) | RSS MB |",
            decode_context
        );
        println!("|---|---|---|---|---|---|");
        use Kernel::{Avx2, Avx512Vnni, Generic};
        let variants = [
            ("as stored (tiles)", SlowQuant::Native, true, Avx512Vnni),
            ("as stored (tiles)", SlowQuant::Native, true, Avx2),
            ("Q8_0, padded to 256", SlowQuant::ToQ8_0, true, Generic),
            ("Q8_0, unpadded", SlowQuant::ToQ8_0, false, Generic),
            ("F32", SlowQuant::ToF32, false, Generic),
            ("kept Q4_1", SlowQuant::Keep, false, Generic),
        ];
        let chosen = variants.into_iter().filter(|&(_, w, pad, kernel)| {
            let weights_match = args
                .weights
                .is_none_or(|only| only == w && (w != SlowQuant::ToQ8_0 || pad != args.no_pad));
            // The treatments other than native run on candle's kernels
            // whatever is forced.
            let kernel_match = args.kernel.is_none_or(|k| k == kernel || kernel == Generic);
            weights_match && kernel_match && kernel.supported()
        });
        for (label, w, pad, kernel) in chosen {
            let started = Instant::now();
            let options = LoadOptions {
                slow_quant: w,
                pad_for_fast_kernels: pad,
                kernel: Some(kernel),
            };
            let model = Arc::new(Model::load(&path, &options)?);
            let load = started.elapsed().as_secs_f64();
            let (pp, tg) = speed(&model, decode_context)?;
            // Exact for the treatment only when it is the one this process
            // ran (`--weights`, `--kernel`): freed memory is not always
            // given back before the next one loads.
            let rss = resident_mb().map_or("?".to_string(), |mb| format!("{mb:.0}"));
            println!("| {label} | {kernel} | {load:.1} | {pp} | {tg} | {rss} |");
        }
        return Ok(());
    }

    let model = Arc::new(Model::load(
        &path,
        &LoadOptions {
            slow_quant: args.weights.unwrap_or_default(),
            pad_for_fast_kernels: !args.no_pad,
            kernel: args.kernel,
        },
    )?);
    println!("kernel: {}", model.kernel());
    let c = model.config();
    if args.slide_only {
        return slide_table(&model, &args.contexts, args.reps);
    }
    println!(
        "config: {:?}, {} layers, {} heads / {} kv heads x {}, context length {}",
        c.arch, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.context_length
    );
    let (pp, tg) = speed(&model, decode_context)?;
    println!("prefill pp512: {pp} tok/s; decode tg64 after {decode_context} tokens: {tg} tok/s\n");

    println!(
        "| context | edit | Full ms | Pie ms | Conflict ms | Full/Pie | encoded Pie/Full | repair total ms | repair step ms (median / max, {} tokens) |",
        args.repair_chunk
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &args.contexts {
        let tokens = synthetic_tokens(n, c.vocab_size, n as u64);
        let mut base = Session::new(model.clone())?;
        base.reset(&tokens)?;
        for (name, hunks) in edits(n, c.vocab_size) {
            let pie = time_update(&base, &hunks, UpdateMode::Pie, args.reps)?;
            let conflict = time_update(&base, &hunks, UpdateMode::Conflict, args.reps)?;
            let full = time_update(&base, &hunks, UpdateMode::Full, 1)?;
            let (step, slowest, repair) = time_repair(&base, &hunks, args.repair_chunk)?;
            let encoded_pie: usize = hunks.iter().map(|h| h.new_tokens.len()).sum();
            let new_len = n as isize + hunks.iter().map(|h| h.delta()).sum::<isize>();
            let encoded_full = new_len as usize - hunks[0].start;
            println!(
                "| {n} | {name} | {:.1} | {:.2} | {:.2} | {:.0}x | {encoded_pie}/{encoded_full} | {:.0} | {:.1} / {:.1} |",
                ms(full),
                ms(pie),
                ms(conflict),
                full.as_secs_f64() / pie.as_secs_f64(),
                ms(repair),
                ms(step),
                ms(slowest),
            );
        }
    }

    slide_table(&model, &args.contexts, args.reps)
}

fn write_random(
    shape: &str,
    dtype: &str,
    out: &std::path::Path,
    vocab: Option<PathBuf>,
) -> Result<()> {
    use pie_edit::model::random_gguf::{self, Vocab};
    let shape = random_gguf::preset(shape)?;
    let vocab_path = match vocab {
        Some(p) => p,
        None => default_model()?,
    };
    let vocab = if vocab_path.as_os_str() == "bytes" {
        Vocab::Bytes
    } else {
        Vocab::FromGguf(&vocab_path)
    };
    let started = Instant::now();
    let written = random_gguf::write(out, &shape, dtype.parse()?, vocab)?;
    println!(
        "wrote {} ({} {dtype}, {} tensors, {} real tokens padded to {}): {:.0} MB in {:.0} s",
        out.display(),
        shape.name,
        written.tensors.len(),
        written.real_tokens,
        shape.vocab,
        written.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The editor's window slides by an eighth of its budget when the cursor
/// nears its end: a PIE shift of the rest, against re-encoding it.
fn slide_table(model: &Arc<Model>, contexts: &[usize], reps: usize) -> Result<()> {
    println!(
        "\n| context | window slide by n/8: shift ms | re-encode the rest ms | re-encode/shift |"
    );
    println!("|---|---|---|---|");
    for &n in contexts {
        let tokens = synthetic_tokens(n, model.config().vocab_size, n as u64);
        let mut base = Session::new(model.clone())?;
        base.reset(&tokens)?;
        let drop = n / 8;
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let mut s = base.fork()?;
            let started = Instant::now();
            s.slide(drop)?;
            times.push(started.elapsed());
        }
        let shift = median(times);
        let started = Instant::now();
        base.reset(&tokens[drop..])?;
        let reencode = started.elapsed();
        println!(
            "| {n} | {:.1} | {:.0} | {:.0}x |",
            ms(shift),
            ms(reencode),
            reencode.as_secs_f64() / shift.as_secs_f64()
        );
    }
    Ok(())
}

/// Open -> ready through the real engine (`EngineHandle` over `Mirror`,
/// the disk cache in a temporary directory), as the editor opens a file.
mod open_bench {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail};
    use pie_edit::model::kv_store::Storage;
    use pie_edit::model::{LoadOptions, SlowQuant};
    use pie_edit::predict::engine::{EngineHandle, EngineState, Event, Request};
    use pie_edit::predict::kv_disk;
    use pie_edit::predict::mirror::{self, MirrorConfig};

    use super::{Args, median, ms};

    /// About ten lines changed through the file, as a pull of someone
    /// else's commits would: lines inserted, edited and deleted in turn.
    pub fn pulled(text: &str) -> String {
        let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
        let n = lines.len();
        for i in (0..10).rev() {
            let at = ((2 * i + 1) * n / 20).min(n.saturating_sub(1));
            match i % 3 {
                0 => lines.insert(at, format!("# pulled change {i}\n")),
                1 => {
                    let line = lines[at].trim_end_matches('\n').to_string();
                    lines[at] = format!("{line}  # edited upstream\n");
                }
                _ => {
                    lines.remove(at);
                }
            }
        }
        lines.concat()
    }

    struct Engine {
        handle: EngineHandle,
    }

    impl Engine {
        fn start(
            model: &Path,
            cache: &Path,
            storage: Storage,
            slow_quant: SlowQuant,
        ) -> Result<Engine> {
            let (model, cache) = (model.to_path_buf(), cache.to_path_buf());
            let handle = EngineHandle::spawn(move |progress| {
                let options = LoadOptions {
                    slow_quant,
                    ..LoadOptions::default()
                };
                let spec = model.to_string_lossy().into_owned();
                let (mut m, name) =
                    mirror::load_with(&spec, MirrorConfig::default(), &options, progress)?;
                m.enable_disk_cache(cache, kv_disk::DEFAULT_MAX_BYTES, storage);
                Ok((m, name))
            });
            let engine = Engine { handle };
            engine.wait_ready()?;
            Ok(engine)
        }

        fn next(&self) -> Result<Event> {
            self.handle
                .events
                .recv_timeout(Duration::from_secs(600))
                .context("the engine went quiet")
        }

        /// Events until Ready; whether "reading the buffer" was among them.
        fn wait_ready(&self) -> Result<bool> {
            let mut read = false;
            loop {
                match self.next()? {
                    Event::State(EngineState::Ready(_)) => return Ok(read),
                    Event::State(EngineState::Failed(e)) => bail!("engine failed: {e}"),
                    Event::State(EngineState::Loading(what)) => {
                        read |= what == "reading the buffer"
                    }
                    _ => {}
                }
            }
        }

        /// Open `file` with `text`: the time to Ready (an open encodes
        /// only what precedes the cursor before it), the time until the whole
        /// window is encoded (the engine does the rest in the background),
        /// and whether it read the buffer.
        fn open(&self, file: &Path, text: &str) -> Result<(Duration, Duration, bool)> {
            let started = Instant::now();
            self.handle.send(Request::Open {
                version: 0,
                text: text.to_string(),
                cursor_char: 0,
                path: Some(file.to_path_buf()),
            });
            let read = self.wait_ready()?;
            let ready = started.elapsed();
            loop {
                if let Event::Cache(info) = self.next()?
                    && info.tokens > 0
                    && info.unencoded == 0
                {
                    return Ok((ready, started.elapsed(), read));
                }
            }
        }

        /// The suggestion at `cursor` and how long it took.
        fn predict(&self, cursor: usize) -> Result<(String, Duration)> {
            self.handle.send(Request::Predict {
                version: 0,
                id: 1,
                cursor_char: cursor,
                requested_at: Instant::now(),
            });
            let mut text = String::new();
            loop {
                match self.next()? {
                    Event::Chunk { text: t, .. } => text.push_str(&t),
                    Event::Finished { total, .. } => return Ok((text, total)),
                    _ => {}
                }
            }
        }

        /// Quit as the editor does (the entry is written); how long it took.
        fn close(self) -> Duration {
            let started = Instant::now();
            drop(self.handle);
            started.elapsed()
        }
    }

    /// A prediction point: the end of the first `def` line's body start.
    fn cursor_of(text: &str) -> usize {
        let at = text
            .find("\ndef ")
            .and_then(|d| text[d + 1..].find(":\n").map(|c| d + 1 + c + 2))
            .unwrap_or(text.len());
        // After the indentation of the body's first line.
        let indent = text[at..].len() - text[at..].trim_start_matches(' ').len();
        text[..at + indent].chars().count()
    }

    /// Prediction points spread through the file: the first line of each
    /// block (after a line ending in `:`), after its indentation, as after
    /// typing Enter there; at most `max`, evenly chosen.
    fn points_of(text: &str, max: usize) -> Vec<usize> {
        let mut points = Vec::new();
        let mut chars = 0;
        let mut previous_opens = false;
        for line in text.split_inclusive('\n') {
            if previous_opens {
                let indent = line.len() - line.trim_start_matches(' ').len();
                points.push(chars + line[..indent].chars().count());
            }
            previous_opens = line.trim_end().ends_with(':');
            chars += line.chars().count();
        }
        if points.len() > max {
            let step = points.len() as f64 / max as f64;
            points = (0..max)
                .map(|i| points[(i as f64 * step) as usize])
                .collect();
        }
        points
    }

    pub fn run(model: &Path, file: &Path, args: &Args) -> Result<()> {
        // What the engine did on each open, on stderr, with PIE_EDIT_LOG=debug.
        pie_edit::log_to_stderr();
        let storage = match args.open_storage.as_str() {
            "f32" => Storage::F32,
            "f16" => Storage::F16,
            other => bail!("--open-storage {other}: f32 or f16"),
        };
        let original = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let work = std::env::temp_dir().join(format!("pie-bench-open-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let result = measure(model, file, args, storage, &original, &work);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn measure(
        model: &Path,
        file: &Path,
        args: &Args,
        storage: Storage,
        original: &str,
        work: &Path,
    ) -> Result<()> {
        let slow_quant = args.weights.unwrap_or_default();
        let changed = pulled(original);
        let copy: PathBuf = work.join(file.file_name().unwrap_or("file".as_ref()));
        let cache = work.join("kv");
        let cursor = cursor_of(original);
        println!(
            "file: {} ({} bytes), storage {storage:?}",
            file.display(),
            original.len()
        );
        let (mut cold, mut warm, mut pulled_t, mut writes) = (vec![], vec![], vec![], vec![]);
        let (mut cold_ready, mut warm_ready, mut pulled_ready) = (vec![], vec![], vec![]);
        let mut entry_bytes = 0;
        let mut tokens = 0;
        let mut same_suggestion = true;
        let mut first = None;
        let points = points_of(original, 20);
        let mut agree = 0;
        for rep in 0..args.reps.max(1) {
            let _ = kv_disk::clear(&cache);
            std::fs::write(&copy, original)?;
            let e = Engine::start(model, &cache, storage, slow_quant)?;
            let (r, t, read) = e.open(&copy, original)?;
            anyhow::ensure!(read, "the cold open did not encode");
            cold_ready.push(r);
            cold.push(t);
            let (cold_text, _) = e.predict(cursor)?;
            let cold_lines: Vec<String> = if rep == 0 {
                points
                    .iter()
                    .map(|&p| e.predict(p).map(|r| r.0))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            writes.push(e.close());
            let entry = kv_disk::entry_path(&cache, &copy).context("entry path")?;
            entry_bytes = std::fs::metadata(&entry).context("no entry written")?.len();
            if let Ok((header, _)) = kv_disk::describe(&entry) {
                tokens = header.tokens;
            }

            let e = Engine::start(model, &cache, storage, slow_quant)?;
            let (r, t, read) = e.open(&copy, original)?;
            anyhow::ensure!(!read, "the warm open encoded the buffer");
            warm_ready.push(r);
            warm.push(t);
            let (warm_text, _) = e.predict(cursor)?;
            same_suggestion &= warm_text == cold_text;
            for (&p, cold_line) in points.iter().zip(&cold_lines) {
                agree += usize::from(&e.predict(p)?.0 == cold_line);
            }
            first.get_or_insert((cold_text, warm_text));
            e.close();

            std::fs::write(&copy, &changed)?;
            let e = Engine::start(model, &cache, storage, slow_quant)?;
            let (r, t, read) = e.open(&copy, &changed)?;
            anyhow::ensure!(!read, "the warm open after the change encoded the buffer");
            pulled_ready.push(r);
            pulled_t.push(t);
            e.close();
        }
        let (cold, warm, pulled_t, writes) =
            (median(cold), median(warm), median(pulled_t), median(writes));
        let (cold_ready, warm_ready, pulled_ready) =
            (median(cold_ready), median(warm_ready), median(pulled_ready));
        println!(
            "| open | -> ready ms | -> window encoded ms (median of {}) | vs cold |",
            args.reps.max(1)
        );
        println!("|---|---|---|---|");
        println!("| cold | {:.0} | {:.0} | 1x |", ms(cold_ready), ms(cold));
        println!(
            "| warm, unchanged | {:.0} | {:.0} | {:.0}x faster |",
            ms(warm_ready),
            ms(warm),
            cold.as_secs_f64() / warm.as_secs_f64()
        );
        println!(
            "| warm, ~10 lines changed | {:.0} | {:.0} | {:.0}x faster |",
            ms(pulled_ready),
            ms(pulled_t),
            cold.as_secs_f64() / pulled_t.as_secs_f64()
        );
        println!(
            "entry: {tokens} tokens, {:.1} MiB, {:.1} MiB per 1k tokens; quit with the write: {:.0} ms",
            entry_bytes as f64 / (1 << 20) as f64,
            entry_bytes as f64 / (1 << 20) as f64 * 1000.0 / tokens.max(1) as f64,
            ms(writes)
        );
        println!(
            "warm (unchanged file) suggestion = cold suggestion at {agree} of {} block starts",
            points.len()
        );
        if let Some((cold_text, warm_text)) = first {
            println!(
                "first suggestion at char {cursor}: cold {cold_text:?}, warm {warm_text:?}; same in every run: {same_suggestion}"
            );
        }
        Ok(())
    }
}
