//! The layering that docs/ARCHITECTURE.md describes, checked on the
//! sources: every `crate::X` path in a folder of src/ names a module the
//! folder may depend on, and the folders the page names exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module of the crate, and the ones below it that it may use. A
/// module not listed may not be used by any other.
const LAYERS: &[(&str, &[&str])] = &[
    ("text", &[]),
    ("syntax", &["text"]),
    ("model", &[]),
    ("event", &[]),
    ("editor", &["text", "syntax"]),
    ("ui", &["editor", "text"]),
    ("predict", &["editor", "model", "syntax", "text"]),
    ("eval", &["predict", "editor", "model", "syntax", "text"]),
    ("replay", &["event", "editor"]),
    ("config", &["editor", "predict"]),
    ("app", &["event", "replay", "editor", "predict", "ui"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a file's code names as `crate::name` (comments skipped).
fn crate_uses(text: &str) -> BTreeSet<String> {
    let mut uses = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // Lower case: a module, not an item at the root (`crate::Allocator`).
            if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                uses.insert(name);
            }
        }
    }
    uses
}

#[test]
fn no_module_uses_one_above_it() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut violations = Vec::new();
    for (module, may_use) in LAYERS {
        let dir = src().join(module);
        let mut files = Vec::new();
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src().join(format!("{module}.rs")));
        }
        assert!(
            files.iter().all(|f| f.exists()),
            "module {module} has no source"
        );
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in crate_uses(&text) {
                if used != *module && !may_use.contains(&used.as_str()) {
                    violations.push(format!(
                        "{} uses crate::{used} (a {module} file may use {may_use:?})",
                        file.strip_prefix(src()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
    // Every module of lib.rs has its place in the table.
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            assert!(allowed.contains_key(name), "{name} is not in LAYERS");
        }
    }
}

#[test]
fn the_layer_table_itself_has_no_cycles() {
    // Each module may only use modules listed before it.
    let mut seen = BTreeSet::new();
    for (module, may_use) in LAYERS {
        for used in *may_use {
            assert!(
                seen.contains(used),
                "{module} uses {used}, which comes later"
            );
        }
        seen.insert(*module);
    }
}

#[test]
fn the_architecture_page_names_folders_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    for word in page.split(|c: char| c.is_whitespace() || "`()[],;:".contains(c)) {
        let word = word.trim_end_matches('.');
        if (word.starts_with("src/") || word.starts_with("tests/") || word.starts_with("benches/"))
            && !word.contains('*')
        {
            assert!(
                root.join(word).exists(),
                "docs/ARCHITECTURE.md names {word}, which does not exist"
            );
            named += 1;
        }
    }
    assert!(named >= 10, "the page names only {named} paths");
}
