//! A corpus: the source files of one language under a directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Rust,
}

impl Language {
    pub fn extension(self) -> &'static str {
        match self {
            Language::Python => "py",
            Language::Rust => "rs",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::Rust => "Rust",
        }
    }
}

/// Files smaller than this rarely hold a context worth the name; larger
/// ones are mostly generated tables.
const MIN_FILE_BYTES: u64 = 2 * 1024;
const MAX_FILE_BYTES: u64 = 512 * 1024;

pub struct Corpus {
    pub language: Language,
    pub root: PathBuf,
    /// Paths relative to `root`, sorted, so a seed picks the same files on
    /// every machine with the same tree.
    pub files: Vec<PathBuf>,
}

impl Corpus {
    pub fn scan(root: &Path, language: Language) -> Result<Corpus> {
        if !root.is_dir() {
            bail!("corpus {} is not a directory", root.display());
        }
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if entry.file_type().is_file()
                && path.extension().is_some_and(|e| e == language.extension())
                && (MIN_FILE_BYTES..=MAX_FILE_BYTES).contains(&size)
            {
                files.push(path.strip_prefix(root).unwrap_or(path).to_path_buf());
            }
        }
        if files.is_empty() {
            bail!(
                "corpus {} has no .{} files between {} and {} KB",
                root.display(),
                language.extension(),
                MIN_FILE_BYTES / 1024,
                MAX_FILE_BYTES / 1024
            );
        }
        Ok(Corpus {
            language,
            root: root.to_path_buf(),
            files,
        })
    }

    /// The text of file `index`; an error for unreadable or non-UTF-8 files,
    /// which the sampler skips.
    pub fn read(&self, index: usize) -> Result<String> {
        let path = self.root.join(&self.files[index]);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
    }
}
