//! The config file: TOML at the platform config path
//! (`~/.config/pie-edit/config.toml` on Linux). A missing file means
//! defaults; a bad one gives a message naming the file and line, and the
//! editor starts with defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::editor::{EditorOptions, Keymap};
use crate::predict::config::PredictConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A theme name (`dark`, `light`, or a file in the config dir's
    /// `themes/`) or a path to a theme file.
    pub theme: String,
    /// Columns a tab character takes on screen.
    pub tab_width: usize,
    /// Indent width for files with no known language.
    pub indent_width: usize,
    /// Key rebindings: `"C-k" = "cut"`; the command `none` unbinds.
    pub keys: BTreeMap<String, String>,
    /// Keep a swap file of unsaved changes (vim's swap file).
    pub swap: bool,
    /// The pause in typing, in milliseconds, after which the swap file is written.
    pub swap_after_ms: u64,
    /// Prediction settings, read by the prediction engine. Typed here, so
    /// that a bad value is reported with its line like any other.
    pub predict: PredictConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            theme: "dark".into(),
            tab_width: 4,
            indent_width: 4,
            keys: BTreeMap::new(),
            swap: true,
            swap_after_ms: 1500,
            predict: PredictConfig::default(),
        }
    }
}

pub fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "pie-edit")
}

pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

/// Where logs and recovery files go.
pub fn data_dir() -> PathBuf {
    project_dirs().map_or_else(std::env::temp_dir, |d| d.data_dir().to_path_buf())
}

/// Where swap files go (0700: they hold unsaved text, maybe secrets).
pub fn swap_dir() -> PathBuf {
    data_dir().join("swap")
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// A loaded config and what the user should be told about it.
pub struct Loaded {
    pub config: Config,
    pub keymap: Keymap,
    pub warnings: Vec<String>,
}

impl Config {
    pub fn swap_settings(&self) -> Option<crate::editor::swap::SwapSettings> {
        self.swap.then(|| crate::editor::swap::SwapSettings {
            dir: swap_dir(),
            after: std::time::Duration::from_millis(self.swap_after_ms.clamp(100, 600_000)),
        })
    }

    pub fn editor_options(&self) -> EditorOptions {
        EditorOptions {
            tab_width: self.tab_width.clamp(1, 16),
            indent_width: self.indent_width.clamp(1, 16),
        }
    }
}

/// Load `path` (missing: defaults, no warning) and build the keymap.
pub fn load(path: &Path) -> Loaded {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Loaded {
                config: Config::default(),
                keymap: Keymap::default(),
                warnings: vec![],
            };
        }
        Err(err) => {
            return Loaded {
                config: Config::default(),
                keymap: Keymap::default(),
                warnings: vec![format!(
                    "config {}: cannot read: {err}; using defaults",
                    path.display()
                )],
            };
        }
    };
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Loaded {
    let config: Config = match toml::from_str(text) {
        Ok(config) => config,
        Err(err) => {
            let line = err.span().map_or(1, |s| line_of(text, s.start));
            let message = format!(
                "config error in {} line {line}: {}; using defaults",
                path.display(),
                err.message()
            );
            return Loaded {
                config: Config::default(),
                keymap: Keymap::default(),
                warnings: vec![message],
            };
        }
    };
    let mut keymap = Keymap::default();
    let mut warnings = Vec::new();
    let mut config = config;
    if let Err(err) = config.predict.validate() {
        let line = text.find("max_context").map_or(1, |b| line_of(text, b));
        warnings.push(format!(
            "config error in {} line {line}: {err}; using the default prediction settings",
            path.display()
        ));
        config.predict = PredictConfig::default();
    }
    for (key, command) in &config.keys {
        if let Err(err) = keymap.bind(key, command) {
            let line = text
                .find(&format!("\"{key}\""))
                .or_else(|| text.find(key.as_str()))
                .map_or(1, |b| line_of(text, b));
            warnings.push(format!(
                "config error in {} line {line}: key {key:?}: {err}",
                path.display()
            ));
        }
    }
    Loaded {
        config,
        keymap,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::editor::Key;

    #[test]
    fn bad_syntax_names_file_and_line_and_falls_back() {
        let loaded = parse(
            "theme = \"light\"\ntab_width = \"wide\"\n",
            Path::new("/c/config.toml"),
        );
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded.warnings[0].contains("/c/config.toml line 2"),
            "{}",
            loaded.warnings[0]
        );
        assert_eq!(loaded.config.theme, "dark");
    }

    #[test]
    fn a_bad_prediction_setting_names_its_line() {
        let text = "theme = \"light\"\n\n[predict]\nlines = 2\nmax_context = \"big\"\n";
        let loaded = parse(text, Path::new("c.toml"));
        assert!(
            loaded.warnings[0].contains("c.toml line 5"),
            "{}",
            loaded.warnings[0]
        );
        let loaded = parse("[predict]\n\nmax_context = 8\n", Path::new("c.toml"));
        assert!(
            loaded.warnings[0].contains("c.toml line 3") && loaded.warnings[0].contains("64"),
            "{}",
            loaded.warnings[0]
        );
        assert_eq!(loaded.config.predict, PredictConfig::default());
    }

    #[test]
    fn rebinding_and_bad_bindings() {
        let text = "theme = \"light\"\n[keys]\n\"C-k\" = \"save\"\n\"C-j\" = \"nope\"\n";
        let loaded = parse(text, Path::new("c.toml"));
        assert_eq!(loaded.config.theme, "light");
        assert_eq!(
            loaded.keymap.command_for(&Key::ctrl('k')).unwrap().name,
            "save"
        );
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded.warnings[0].contains("line 4"),
            "{}",
            loaded.warnings[0]
        );
        let unknown = parse("colour = 1\n", Path::new("c.toml"));
        assert!(
            unknown.warnings[0].contains("line 1"),
            "{}",
            unknown.warnings[0]
        );
    }
}
