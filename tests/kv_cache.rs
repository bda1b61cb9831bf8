//! The KV cache kept on disk (issue 14), on tiny random models with a small
//! byte-level BPE tokenizer: a stored session loads back bit for bit, a
//! stored mirror brought to a changed file equals the same edits applied
//! live, every kind of bad entry is dropped and the file encoded cold, and
//! the engine writes on close and reads on open without "reading the
//! buffer".

#[path = "common/tiny.rs"]
mod tiny;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use pie_edit::model::kv_store::{self, BadEntry, ModelIdentity, Storage};
use pie_edit::model::{LoadOptions, Model, Session, TokenEdit, Tokenizer, UpdateMode};
use pie_edit::predict::engine::{Backend, EngineHandle, EngineState, Event, Persist, Request};
use pie_edit::predict::kv_disk::{self, KvDisk};
use pie_edit::predict::mirror::{self, DiskCache, Mirror, MirrorConfig};
use pie_edit::text::Edit;
use ropey::Rope;
use tiny::{Shape, TINY, random, tiny_weights, write_gguf};

const SHAPE: Shape = Shape { vocab: 300, ..TINY };

/// GPT-2's byte-to-character table, which byte-level BPE vocabularies use.
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in printable.iter().zip(chars) {
        table[*b as usize] = char::from_u32(c).unwrap();
    }
    table
}

/// A GPT-2-shaped tokenizer: 256 byte tokens and a few merges (runs of
/// spaces, a line break before indentation, common letter pairs), so that
/// tokens merge across edit boundaries as real ones do.
fn write_tokenizer(dir: &Path) -> Arc<Tokenizer> {
    let table = byte_chars();
    let mut vocab = serde_json::Map::new();
    for (id, c) in table.iter().enumerate() {
        vocab.insert(c.to_string(), id.into());
    }
    let (sp, nl) = (table[b' ' as usize], table[b'\n' as usize]);
    let merges: Vec<(String, String)> = vec![
        (sp.to_string(), sp.to_string()),
        (format!("{sp}{sp}"), format!("{sp}{sp}")),
        (nl.to_string(), sp.to_string()),
        ("d".into(), "e".into()),
        ("de".into(), "f".into()),
        ("r".into(), "e".into()),
        ("i".into(), "n".into()),
        (sp.to_string(), "x".into()),
        ("t".into(), "u".into()),
    ];
    let mut merge_list = Vec::new();
    for (a, b) in &merges {
        let id = vocab.len();
        vocab.insert(format!("{a}{b}"), id.into());
        merge_list.push(serde_json::Value::String(format!("{a} {b}")));
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merge_list
        }
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let tokenizer = Tokenizer::from_json_file(&path).unwrap();
    assert!(tokenizer.vocab_size() <= SHAPE.vocab);
    Arc::new(tokenizer)
}

struct Tiny {
    dir: tempfile::TempDir,
    model: Arc<Model>,
    identity: ModelIdentity,
    tokenizer: Arc<Tokenizer>,
}

/// A tiny llama; `other` draws its embedding anew (another model, same shape).
fn tiny(other: bool) -> Tiny {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let mut weights = tiny_weights(SHAPE, false);
    if other {
        weights.tensors[0].1 = random(&[SHAPE.vocab, SHAPE.hidden], 1.0, 0.0, 999);
    }
    write_gguf(&path, "llama", &weights, GgmlDType::F32);
    let model = Arc::new(Model::load(&path, &LoadOptions::default()).unwrap());
    let identity = ModelIdentity::of_path(&path).unwrap();
    let tokenizer = write_tokenizer(dir.path());
    Tiny {
        dir,
        model,
        identity,
        tokenizer,
    }
}

fn mirror(t: &Tiny, max_context: usize) -> Mirror {
    let config = MirrorConfig {
        max_context,
        max_tokens: 6,
        ..MirrorConfig::default()
    };
    Mirror::new(
        t.tokenizer.clone(),
        Session::new(t.model.clone()).unwrap(),
        config,
    )
}

/// Every value of the cache (keys, values, kept hidden states), as bits.
fn cache_bits(s: &Session) -> Vec<Vec<u32>> {
    let n = s.tokens().len();
    let bits = |t: candle_core::Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    let layers = s.model().config().n_layers;
    let mut out = Vec::new();
    for l in 0..layers {
        let (k, v) = s.cache().view(l, n).unwrap();
        out.push(bits(k));
        out.push(bits(v));
    }
    out.push(bits(s.cache().hidden_view(n).unwrap()));
    out
}

fn greedy(s: &mut Session, prefix: usize) -> Vec<u32> {
    let options = pie_edit::model::GenerateOptions {
        max_tokens: 8,
        sampling: pie_edit::model::Sampling::Greedy,
    };
    s.generate(prefix, &options, &mut |_, _| {}, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap()
}

#[test]
fn a_stored_session_loads_back_bit_for_bit_with_its_staleness() {
    let t = tiny(false);
    let mut s = Session::new(t.model.clone()).unwrap();
    let tokens: Vec<u32> = (0..90).map(|i| (i * 37 + 11) % 250).collect();
    s.reset(&tokens).unwrap();
    // A PIE edit leaves a stale suffix that the stored state must keep.
    let edit = TokenEdit {
        start: 20,
        old_len: 3,
        new_tokens: vec![5, 6, 7, 8, 9],
    };
    s.apply(&[edit], UpdateMode::Pie).unwrap();
    assert!(s.staleness().is_some());
    let bytes = kv_store::encode(&s, &t.identity, Storage::F32, &[(*b"NOTE", b"hi")]).unwrap();
    let mut loaded = kv_store::decode(&bytes, &t.model, &t.identity).unwrap();
    assert_eq!(loaded.extras, vec![(*b"NOTE", b"hi".to_vec())]);
    assert_eq!(loaded.session.tokens(), s.tokens());
    assert_eq!(
        loaded.session.staleness().map(|x| x.from),
        s.staleness().map(|x| x.from)
    );
    assert_eq!(cache_bits(&loaded.session), cache_bits(&s));
    // And it predicts as the original does, also from inside the stale part.
    for prefix in [10, 60, s.tokens().len()] {
        assert_eq!(greedy(&mut loaded.session, prefix), greedy(&mut s, prefix));
    }
    // Repairing the loaded copy gives what repairing the original does.
    loaded.session.repair(1000).unwrap();
    s.repair(1000).unwrap();
    assert_eq!(cache_bits(&loaded.session), cache_bits(&s));

    // The header states what a token costs on disk.
    let header = &loaded.header;
    let per_token = header.bytes_per_token();
    assert!(bytes.len() >= per_token * s.tokens().len());
    assert!(bytes.len() < per_token * s.tokens().len() + 4096);
}

#[test]
fn f16_storage_is_half_the_size_and_close() {
    let t = tiny(false);
    let mut s = Session::new(t.model.clone()).unwrap();
    let tokens: Vec<u32> = (0..200).map(|i| (i * 13 + 5) % 250).collect();
    s.reset(&tokens).unwrap();
    let full = kv_store::encode(&s, &t.identity, Storage::F32, &[]).unwrap();
    let half = kv_store::encode(&s, &t.identity, Storage::F16, &[]).unwrap();
    let ratio = half.len() as f64 / full.len() as f64;
    assert!((0.49..0.52).contains(&ratio), "f16/f32 size {ratio}");
    let loaded = kv_store::decode(&half, &t.model, &t.identity).unwrap();
    assert_eq!(loaded.header.storage, Storage::F16);
    let n = s.tokens().len();
    let (k0, _) = s.cache().view(2, n).unwrap();
    let (k1, _) = loaded.session.cache().view(2, n).unwrap();
    let diff: f32 = (k0 - k1)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(
        diff > 0.0,
        "f16 is lossy: identical values mean it was not used"
    );
    assert!(diff < 1e-2, "f16 keys off by {diff}");
}

const CODE: &str = "import os\n\n\ndef read(path):\n    with open(path) as f:\n        return f.read()\n\n\ndef count(lines):\n    total = 0\n    for line in lines:\n        total += len(line)\n    return total\n\n\nclass Box:\n    def __init__(self, x):\n        self.x = x\n\n    def get(self):\n        return self.x\n";

/// `CODE` as a `git pull` might leave it: lines changed, added and removed
/// in several places.
fn pulled(code: &str) -> String {
    code.replace("import os\n", "import os\nimport sys\n")
        .replace(
            "        total += len(line)\n",
            "        total += len(line.split())\n",
        )
        .replace("    def get(self):\n        return self.x\n", "")
        .replace("class Box:", "class Crate:")
        + "\n\ndef main():\n    print(count(sys.argv))\n"
}

/// The live mirror brought through `edits`, and a warm one brought from a
/// stored copy of the same start to the same text, hold the same state.
fn assert_same(live: &Mirror, warm: &Mirror) {
    assert_eq!(warm.window_range(), live.window_range());
    assert_eq!(warm.aligned().text(), live.aligned().text());
    assert_eq!(warm.tokens(), live.tokens());
    assert_eq!(
        warm.session().staleness().map(|s| s.from),
        live.session().staleness().map(|s| s.from)
    );
    assert_eq!(cache_bits(warm.session()), cache_bits(live.session()));
}

#[test]
fn loading_and_applying_the_changed_text_equals_the_same_edits_live() {
    let t = tiny(false);
    for (max_context, cursor_at) in [(2048, 0.0), (64, 0.6)] {
        let old = Rope::from_str(CODE);
        let new = Rope::from_str(&pulled(CODE));
        let cursor_old = (old.len_chars() as f64 * cursor_at) as usize;
        let cursor_new = (new.len_chars() as f64 * cursor_at) as usize;
        let mut live = mirror(&t, max_context);
        live.reset(&old, cursor_old).unwrap();
        if max_context < 2048 {
            assert!(
                live.window_range() != (0..old.len_chars()),
                "the small budget must cut a window out of the file"
            );
        }
        let file = t.dir.path().join("code.py");
        let bytes = live
            .encode_state(&old, &file, &t.identity, Storage::F32)
            .unwrap();

        let edits = mirror::diff_edits(&old, &new);
        assert!(
            edits.len() >= 4,
            "the pull touches several places: {edits:?}"
        );
        let mut replayed = old.clone();
        for e in &edits {
            e.apply_to(&mut replayed);
        }
        assert_eq!(replayed, new, "the diff's edits make the new text");
        live.apply_edits(&new, &edits, cursor_new).unwrap();

        let mut warm = mirror(&t, max_context);
        let stats = warm
            .restore_state(&bytes, &new, cursor_new, &t.identity)
            .unwrap();
        assert_eq!(stats.edits, edits.len());
        assert!(stats.update.encoded > 0 && stats.update.encoded < warm.tokens().len());
        assert_same(&live, &warm);
        assert_eq!(warm.verify(&new), Ok(()));
        // The shifted entries are stale, as after typing: idle repair's work.
        assert!(warm.stale_len() > 0, "max_context {max_context}");
        warm.repair(10_000).unwrap();
        live.repair(10_000).unwrap();
        assert_same(&live, &warm);
    }
}

#[test]
fn an_unchanged_file_reopens_with_the_stored_cache_as_it_was() {
    let t = tiny(false);
    let doc = Rope::from_str(CODE);
    let mut cold = mirror(&t, 2048);
    cold.reset(&doc, 40).unwrap();
    let bytes = cold
        .encode_state(&doc, Path::new("/x.py"), &t.identity, Storage::F32)
        .unwrap();
    let mut warm = mirror(&t, 2048);
    let stats = warm.restore_state(&bytes, &doc, 40, &t.identity).unwrap();
    assert_eq!((stats.edits, stats.update.encoded), (0, 0));
    assert_same(&cold, &warm);
    // An open encodes lazily (what precedes the cursor first): a cache kept
    // before the rest was encoded says so, and the rest is encoded after a
    // reopen as after the open.
    assert!(cold.unencoded_len() > 0, "the open left the rest for later");
    assert_eq!(warm.unencoded_len(), cold.unencoded_len());
    cold.repair(10_000).unwrap();
    warm.repair(10_000).unwrap();
    assert_eq!(warm.unencoded_len(), 0);
    assert_same(&cold, &warm);
    // A cache kept after all of it was encoded reopens with nothing to do.
    let bytes = cold
        .encode_state(&doc, Path::new("/x.py"), &t.identity, Storage::F32)
        .unwrap();
    let mut warm = mirror(&t, 2048);
    warm.restore_state(&bytes, &doc, 40, &t.identity).unwrap();
    assert_eq!(warm.stale_len(), 0);
    assert_same(&cold, &warm);
    let predict = |m: &mut Mirror| {
        let mut out = String::new();
        m.predict(
            &doc,
            40,
            &mut |s| {
                out.push_str(s);
                std::ops::ControlFlow::Continue(())
            },
            &|| false,
        )
        .unwrap();
        out
    };
    assert_eq!(predict(&mut warm), predict(&mut cold));
}

/// A mirror with a disk cache in `dir`.
fn disk_mirror(t: &Tiny, dir: &Path) -> Mirror {
    let mut m = mirror(t, 2048);
    m.set_disk_cache(Some(DiskCache {
        disk: KvDisk::new(dir.to_path_buf(), 64 << 20),
        identity: t.identity.clone(),
        storage: Storage::F32,
    }));
    m
}

/// Write `CODE` to a file and keep a good entry for it in `cache`.
fn stored_entry(t: &Tiny, cache: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let file = t.dir.path().join("code.py");
    std::fs::write(&file, CODE).unwrap();
    let doc = Rope::from_str(CODE);
    let mut m = disk_mirror(t, cache);
    m.reset(&doc, 0).unwrap();
    m.persist(&doc, &file, Persist::Close);
    m.flush_persisted();
    let entry = kv_disk::entry_path(cache, &file).unwrap();
    let bytes = std::fs::read(&entry).expect("the entry was written");
    (file, entry, bytes)
}

#[cfg(unix)]
#[test]
fn entries_are_private_and_written_whole() {
    use std::os::unix::fs::PermissionsExt;
    let t = tiny(false);
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("kv");
    let (_, entry, bytes) = stored_entry(&t, &dir);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&entry), 0o600);
    // Nothing else is left in the directory (no temp file).
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1);
    assert!(kv_store::decode(&bytes, &t.model, &t.identity).is_ok());
}

#[test]
fn the_size_cap_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let disk = KvDisk::new(dir.path().to_path_buf(), 2500);
    let now = std::time::SystemTime::now();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let entry = dir.path().join(format!("{name}.{}", kv_disk::ENTRY_EXT));
        disk.write(entry.clone(), vec![0u8; 1000]);
        disk.flush();
        // Older mtimes for earlier entries, whatever the clock's resolution.
        let file = std::fs::File::options().append(true).open(&entry).unwrap();
        file.set_modified(now - std::time::Duration::from_secs(100 - i as u64 * 10))
            .unwrap();
    }
    // Writing c went over the cap with c the newest entry: a, the oldest,
    // was evicted.
    let names = |d: &Path| {
        let mut n: Vec<String> = kv_disk::entries(d)
            .iter()
            .map(|e| e.path.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(dir.path()), vec!["b", "c"]);
    // Reading b makes it the most recent: the next write evicts c.
    let b = dir.path().join(format!("b.{}", kv_disk::ENTRY_EXT));
    assert!(disk.read(&b).unwrap().is_ok());
    disk.write(
        dir.path().join(format!("d.{}", kv_disk::ENTRY_EXT)),
        vec![0u8; 1000],
    );
    disk.flush();
    assert_eq!(names(dir.path()), vec!["b", "d"]);
    assert_eq!(kv_disk::clear(dir.path()).unwrap(), 2);
    assert!(kv_disk::entries(dir.path()).is_empty());
}

/// A bad entry is dropped: the mirror says so (false), the entry is gone,
/// and the mirror is untouched, so encoding cold gives the cold state.
fn assert_falls_back(t: &Tiny, cache: &Path, file: &Path, entry: &Path, what: &str) {
    let doc = Rope::from_str(CODE);
    let mut m = disk_mirror(t, cache);
    assert!(!m.restore(&doc, 0, file), "{what}: a bad entry was used");
    assert!(m.tokens().is_empty(), "{what}: half-loaded");
    assert!(!entry.is_file(), "{what}: the bad entry was not removed");
    m.reset(&doc, 0).unwrap();
    let mut cold = mirror(t, 2048);
    cold.reset(&doc, 0).unwrap();
    assert_same(&cold, &m);
}

#[test]
fn bad_entries_are_dropped_and_the_file_encoded_cold() {
    let t = tiny(false);
    let cache = tempfile::tempdir().unwrap();
    let (file, entry, good) = stored_entry(&t, cache.path());
    // The good one is used (so the cases below fail for their damage).
    let doc = Rope::from_str(CODE);
    assert!(disk_mirror(&t, cache.path()).restore(&doc, 0, &file));

    let n = good.len();
    let cuts = [0, 5, 12, 40, n / 3, n / 2, n - 33, n - 1];
    for cut in cuts {
        std::fs::write(&entry, &good[..cut]).unwrap();
        let err = kv_store::decode(&good[..cut], &t.model, &t.identity).unwrap_err();
        assert!(matches!(err, BadEntry::Truncated(_)), "cut at {cut}: {err}");
        assert_falls_back(&t, cache.path(), &file, &entry, &format!("cut at {cut}"));
    }
    for at in [3, 9, 20, 100, n / 4, n / 2, n - 40, n - 1] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x10;
        let err = kv_store::decode(&flipped, &t.model, &t.identity).unwrap_err();
        assert!(
            matches!(
                err,
                BadEntry::Checksum(_)
                    | BadEntry::Magic
                    | BadEntry::Version(_)
                    | BadEntry::Truncated(_)
            ),
            "bit flipped at {at}: {err}"
        );
        std::fs::write(&entry, &flipped).unwrap();
        assert_falls_back(&t, cache.path(), &file, &entry, &format!("flip at {at}"));
    }
    std::fs::write(&entry, b"").unwrap();
    assert_falls_back(&t, cache.path(), &file, &entry, "zero-length");

    let mut other_version = good.clone();
    other_version[8..12].copy_from_slice(&(kv_store::FORMAT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        kv_store::decode(&other_version, &t.model, &t.identity),
        Err(BadEntry::Version(_))
    ));
    std::fs::write(&entry, &other_version).unwrap();
    assert_falls_back(&t, cache.path(), &file, &entry, "another format version");

    // An entry written with another model of the same shape.
    let other = tiny(true);
    assert_ne!(other.identity, t.identity);
    let other_cache = tempfile::tempdir().unwrap();
    let (_, other_entry, other_bytes) = stored_entry(&other, other_cache.path());
    assert!(other_entry.is_file());
    assert!(matches!(
        kv_store::decode(&other_bytes, &t.model, &t.identity),
        Err(BadEntry::OtherModel(_))
    ));
    std::fs::write(&entry, &other_bytes).unwrap();
    assert_falls_back(&t, cache.path(), &file, &entry, "another model");

    // Unreadable: a directory where the entry should be.
    std::fs::create_dir(&entry).unwrap();
    let mut m = disk_mirror(&t, cache.path());
    assert!(!m.restore(&doc, 0, &file), "an unreadable entry was used");
    assert!(m.tokens().is_empty());
    std::fs::remove_dir(&entry).unwrap();

    // The good one still loads after all that.
    std::fs::write(&entry, &good).unwrap();
    assert!(disk_mirror(&t, cache.path()).restore(&doc, 0, &file));
}

#[test]
fn a_stored_window_for_another_max_context_is_not_used() {
    let t = tiny(false);
    let cache = tempfile::tempdir().unwrap();
    let (file, entry, _) = stored_entry(&t, cache.path());
    let doc = Rope::from_str(CODE);
    let mut m = mirror(&t, 1024);
    m.set_disk_cache(Some(DiskCache {
        disk: KvDisk::new(cache.path().to_path_buf(), 64 << 20),
        identity: t.identity.clone(),
        storage: Storage::F32,
    }));
    assert!(!m.restore(&doc, 0, &file));
    assert!(!entry.is_file());
}

fn spawn_engine(t: &Tiny, cache: &Path) -> EngineHandle {
    let (tokenizer, model, identity) = (t.tokenizer.clone(), t.model.clone(), t.identity.clone());
    let dir = cache.to_path_buf();
    EngineHandle::spawn(move |_| {
        let mut m = Mirror::new(tokenizer, Session::new(model)?, MirrorConfig::default());
        m.set_disk_cache(Some(DiskCache {
            disk: KvDisk::new(dir, 64 << 20),
            identity,
            storage: Storage::F32,
        }));
        Ok((m, "tiny".to_string()))
    })
}

/// Engine events until it is idle after a request made at version `version`.
fn events_until_idle(engine: &EngineHandle, version: u64) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = engine
            .events
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the engine answers");
        let done = matches!(event, Event::Idle { version: v } if v == version);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn open_request(file: &Path, text: &str, version: u64) -> Request {
    Request::Open {
        version,
        text: text.to_string(),
        cursor_char: 0,
        path: Some(file.to_path_buf()),
    }
}

fn read_the_buffer(events: &[Event]) -> bool {
    events.iter().any(
        |e| matches!(e, Event::State(EngineState::Loading(what)) if what == "reading the buffer"),
    )
}

#[test]
fn the_engine_keeps_the_cache_on_quit_and_reopens_without_reading_the_buffer() {
    let t = tiny(false);
    let cache = tempfile::tempdir().unwrap();
    let file = t.dir.path().join("code.py");
    std::fs::write(&file, CODE).unwrap();

    let engine = spawn_engine(&t, cache.path());
    engine.send(open_request(&file, CODE, 0));
    let first = events_until_idle(&engine, 0);
    assert!(read_the_buffer(&first), "a first open encodes: {first:?}");
    // A typed line, then a clean quit: the entry holds the edited buffer.
    let doc = Rope::from_str(CODE);
    let typed = Edit::insert(&doc, doc.len_chars(), "x = 1\n");
    engine.send(Request::Edits {
        version: 1,
        edits: vec![typed],
        types_over: None,
    });
    events_until_idle(&engine, 1);
    drop(engine);
    let entry = kv_disk::entry_path(cache.path(), &file).unwrap();
    assert!(entry.is_file(), "quitting wrote the entry");

    // The file on disk never got the typed line (it was not saved): the
    // reopen realigns the stored cache to it.
    let engine = spawn_engine(&t, cache.path());
    engine.send(open_request(&file, CODE, 0));
    let events = events_until_idle(&engine, 0);
    assert!(!read_the_buffer(&events), "a warm open: {events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::State(EngineState::Ready(_))))
    );
    engine.send(Request::Verify { text: CODE.into() });
    let events = events_until_idle(&engine, 0);
    assert!(
        events.contains(&Event::Verified(Ok(()))),
        "the warm cache is the file's: {events:?}"
    );
    drop(engine);

    // A damaged entry: the open falls back to encoding, and works.
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&entry, &bytes).unwrap();
    let engine = spawn_engine(&t, cache.path());
    engine.send(open_request(&file, CODE, 0));
    let events = events_until_idle(&engine, 0);
    assert!(read_the_buffer(&events), "a bad entry means a cold open");
    engine.send(Request::Verify { text: CODE.into() });
    assert!(events_until_idle(&engine, 0).contains(&Event::Verified(Ok(()))));
}

fn cli(args: &[&str], home: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pie-edit"))
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cache_info_lists_entries_and_cache_clear_removes_them() {
    let t = tiny(false);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("cache/pie-edit/kv");
    let (file, entry, _) = stored_entry(&t, &dir);
    // Something else in the directory is not ours to remove.
    std::fs::write(dir.join("README"), "mine").unwrap();
    let info = cli(&["cache", "info"], home.path());
    let canonical = std::fs::canonicalize(&file).unwrap();
    assert!(info.contains("1 entries"), "{info}");
    assert!(info.contains(&canonical.display().to_string()), "{info}");
    assert!(
        info.contains(&format!("{} tokens", {
            let (header, _) = kv_disk::describe(&entry).unwrap();
            header.tokens
        })),
        "{info}"
    );
    let cleared = cli(&["cache", "clear"], home.path());
    assert!(cleared.contains("removed 1"), "{cleared}");
    assert!(!entry.exists());
    assert!(dir.join("README").exists());
    assert!(cli(&["cache", "info"], home.path()).contains("0 entries"));

    // A configured directory is the one listed and cleared.
    let other = home.path().join("elsewhere");
    let (_, other_entry, _) = stored_entry(&t, &other);
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[predict]\nkv_cache_dir = {:?}\n",
            other.display().to_string()
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "cache", "clear"];
    assert!(cli(&args, home.path()).contains("removed 1"));
    assert!(!other_entry.exists());
}

#[test]
fn the_predict_table_configures_the_disk_cache() {
    use pie_edit::predict::config::PredictConfig;
    let parse = |text: &str| -> PredictConfig { toml::from_str(text).unwrap() };
    let default = parse("");
    assert!(default.kv_cache);
    assert_eq!(default.kv_cache_dir(), Some(kv_disk::default_dir()));
    assert_eq!(default.kv_cache_max_bytes(), 1 << 30);
    assert_eq!(default.kv_cache_storage, Storage::F32);
    assert_eq!(parse("kv_cache = false").kv_cache_dir(), None);
    let set = parse("kv_cache_dir = \"/tmp/kv\"\nkv_cache_max_mb = 10\nkv_cache_storage = \"f16\"");
    assert_eq!(set.kv_cache_dir(), Some(PathBuf::from("/tmp/kv")));
    assert_eq!(set.kv_cache_max_bytes(), 10 << 20);
    assert_eq!(set.kv_cache_storage, Storage::F16);
    assert!(toml::from_str::<PredictConfig>("kv_cache_storage = \"f8\"").is_err());
}

#[test]
fn a_save_writes_the_entry_only_after_much_changed() {
    let t = tiny(false);
    let cache = tempfile::tempdir().unwrap();
    let file = t.dir.path().join("code.py");
    std::fs::write(&file, CODE).unwrap();
    let entry = kv_disk::entry_path(cache.path(), &file).unwrap();
    let engine = spawn_engine(&t, cache.path());
    engine.send(open_request(&file, CODE, 0));
    // The open encodes the window in the background: wait for all of it.
    loop {
        match engine
            .events
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the engine answers")
        {
            Event::Cache(info) if info.tokens > 0 && info.unencoded == 0 => break,
            _ => {}
        }
    }
    // The first encoding is a big change: a save keeps it.
    engine.send(Request::Saved);
    engine.send(Request::Verify { text: CODE.into() });
    events_until_idle(&engine, 0);
    let wait_for_entry = |present: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while entry.is_file() != present && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        entry.is_file()
    };
    assert!(
        wait_for_entry(true),
        "a save after the first encoding writes"
    );
    std::fs::remove_file(&entry).unwrap();

    // One typed line is not much: the next save leaves the disk alone.
    let mut doc = Rope::from_str(CODE);
    let small = Edit::insert(&doc, doc.len_chars(), "y = 2\n");
    small.apply_to(&mut doc);
    engine.send(Request::Edits {
        version: 1,
        edits: vec![small],
        types_over: None,
    });
    engine.send(Request::Saved);
    events_until_idle(&engine, 1);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!entry.is_file(), "a small change was written on save");

    // A pasted block of 600 tokens is.
    let block: String = (0..60).map(|i| format!("v{i:03} = {i}\n")).collect();
    let big = Edit::insert(&doc, doc.len_chars(), &block);
    engine.send(Request::Edits {
        version: 2,
        edits: vec![big],
        types_over: None,
    });
    engine.send(Request::Saved);
    events_until_idle(&engine, 2);
    assert!(wait_for_entry(true), "a big change is written on save");
}

/// A multi-place edit encodes its new runs in one forward pass (a reopened
/// file's scattered changes are one): the same cache as one pass per run,
/// left to right, which is what PIE defines.
#[test]
fn runs_encoded_in_one_pass_equal_run_by_run() {
    use pie_edit::model::{Attend, Logits, Segment};
    let t = tiny(false);
    let tokens: Vec<u32> = (0..120).map(|i| (i * 29 + 3) % 250).collect();
    let mut s = Session::new(t.model.clone()).unwrap();
    s.reset(&tokens).unwrap();
    let hunks = vec![
        TokenEdit {
            start: 10,
            old_len: 2,
            new_tokens: vec![1, 2, 3],
        },
        TokenEdit {
            start: 50,
            old_len: 0,
            new_tokens: vec![4, 5],
        },
        TokenEdit {
            start: 70,
            old_len: 4,
            new_tokens: vec![],
        },
        TokenEdit {
            start: 90,
            old_len: 5,
            new_tokens: vec![6],
        },
        TokenEdit {
            start: 120,
            old_len: 0,
            new_tokens: vec![7, 8, 9, 10],
        },
    ];
    // Run by run, through the public pieces.
    let mut cache = s.cache().deep_copy().unwrap();
    let mut segments = Vec::new();
    let mut shift = 0isize;
    for (i, h) in hunks.iter().enumerate() {
        shift += h.delta();
        let from = h.old_end();
        let until = hunks.get(i + 1).map_or(tokens.len(), |n| n.start);
        if until > from {
            segments.push(Segment {
                from,
                len: until - from,
                to: (from as isize + shift) as usize,
            });
        }
    }
    let new_len = (tokens.len() as isize + shift) as usize;
    cache
        .move_segments(&segments, new_len, Some(t.model.rope()))
        .unwrap();
    let mut shift = 0isize;
    for h in &hunks {
        let at = (h.start as isize + shift) as usize;
        if !h.new_tokens.is_empty() {
            t.model
                .forward(
                    &h.new_tokens,
                    Attend::Cache {
                        cache: &mut cache,
                        at,
                    },
                    Logits::None,
                )
                .unwrap();
        }
        shift += h.delta();
    }
    s.apply(&hunks, UpdateMode::Pie).unwrap();
    assert_eq!(s.tokens().len(), new_len);
    let n = new_len;
    let mut worst = 0f32;
    for l in 0..t.model.config().n_layers {
        let (a, b) = (s.cache().view(l, n).unwrap(), cache.view(l, n).unwrap());
        for (x, y) in [(a.0, b.0), (a.1, b.1)] {
            let d: f32 = (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            worst = worst.max(d);
        }
    }
    let (ha, hb) = (
        s.cache().hidden_view(n).unwrap(),
        cache.hidden_view(n).unwrap(),
    );
    let dh: f32 = (ha - hb)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    println!("one pass vs run by run: max |K/V diff| {worst:e}, hidden {dh:e}");
    assert!(worst < 1e-4 && dh < 1e-4, "K/V {worst}, hidden {dh}");
}

#[test]
fn opening_another_file_keeps_the_first_ones_cache() {
    let t = tiny(false);
    let cache = tempfile::tempdir().unwrap();
    let first = t.dir.path().join("first.py");
    let second = t.dir.path().join("second.py");
    std::fs::write(&first, CODE).unwrap();
    std::fs::write(&second, "print(1)\n").unwrap();
    let engine = spawn_engine(&t, cache.path());
    engine.send(open_request(&first, CODE, 0));
    events_until_idle(&engine, 0);
    let entry = kv_disk::entry_path(cache.path(), &first).unwrap();
    assert!(!entry.exists());
    engine.send(open_request(&second, "print(1)\n", 1));
    events_until_idle(&engine, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !entry.is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first file's cache was not kept when the second was opened"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let other = kv_disk::entry_path(cache.path(), &second).unwrap();
    assert!(!other.exists(), "the second file is still open");
}

/// Whatever byte of an entry is damaged, decoding refuses it (SHA-256 per
/// block) and never panics.
#[test]
fn a_flipped_bit_anywhere_is_refused() {
    let t = tiny(false);
    let cache = tempfile::tempdir().unwrap();
    let (_, _, good) = stored_entry(&t, cache.path());
    let step = (good.len() / 400).max(1);
    let mut tried = 0;
    for at in (0..good.len()).step_by(step) {
        for bit in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[at] ^= bit;
            assert!(
                kv_store::decode(&bad, &t.model, &t.identity).is_err(),
                "byte {at} bit {bit:#x} flipped was accepted"
            );
            tried += 1;
        }
    }
    assert!(tried >= 800);
}
