//! The disk-kept KV cache with the real SmolLM2 model on assets/demo.py: a
//! warm reopen gives the same first suggestion as a cold open, and a
//! reopen after the file changed is realigned to it.

mod common;

use common::predict;
use std::path::Path;

use pie_edit::model::kv_store::Storage;
use pie_edit::model::source;
use pie_edit::predict::engine::{Backend, Persist};
use pie_edit::predict::mirror::{self, Mirror, MirrorConfig};
use ropey::Rope;

fn load(cache: &Path) -> Mirror {
    source::ensure_default_model().expect("the default model is available (CI fetches it)");
    let (mut m, _) = mirror::load(source::DEFAULT_PRESET, MirrorConfig::default(), &|_| {})
        .expect("SmolLM2 loads");
    m.enable_disk_cache(cache.to_path_buf(), 1 << 30, Storage::F32);
    assert!(m.disk_cache().is_some(), "the disk cache is on");
    m
}

/// A prediction point: after the indentation of the first method body's
/// first line.
fn cursor_in(text: &str) -> usize {
    let def = text.find("\n    def ").expect("a method in demo.py") + 1;
    let body = def + text[def..].find(":\n").unwrap() + 2;
    let indent = text[body..].len() - text[body..].trim_start_matches(' ').len();
    text[..body + indent].chars().count()
}

#[test]
fn demo_py_reopens_warm_with_the_cold_suggestion() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("kv");
    let file = work.path().join("demo.py");
    let text = std::fs::read_to_string("assets/demo.py").unwrap();
    std::fs::write(&file, &text).unwrap();
    let doc = Rope::from_str(&text);
    let cursor = cursor_in(&text);

    let mut cold = load(&cache);
    cold.reset(&doc, 0).unwrap();
    // What the engine does in the background after an open: encode the rest.
    while cold.unencoded_len() > 0 {
        cold.repair(512).unwrap();
    }
    let cold_suggestion = predict(&mut cold, &doc, cursor);
    assert!(!cold_suggestion.trim().is_empty(), "the cold open suggests");
    cold.persist(&doc, &file, Persist::Close);
    cold.flush_persisted();
    drop(cold);

    let mut warm = load(&cache);
    assert!(warm.restore(&doc, 0, &file), "the kept entry is used");
    assert_eq!(warm.verify(&doc), Ok(()));
    assert_eq!(
        warm.stale_len(),
        0,
        "an unchanged file leaves nothing stale"
    );
    assert_eq!(predict(&mut warm, &doc, cursor), cold_suggestion);
    drop(warm);

    // The file changed meanwhile: a line added near the top moves every
    // entry after it; the reopened cache follows the file.
    let changed = text.replacen("import json\n", "import json\nimport os\n", 1);
    assert_ne!(changed, text);
    std::fs::write(&file, &changed).unwrap();
    let doc = Rope::from_str(&changed);
    let mut moved = load(&cache);
    assert!(moved.restore(&doc, 0, &file));
    assert_eq!(moved.verify(&doc), Ok(()));
    assert!(
        moved.stale_len() > 0,
        "the shifted entries are stale until repaired"
    );
    let suggestion = predict(&mut moved, &doc, cursor + "import os\n".len());
    assert!(!suggestion.trim().is_empty());
}
