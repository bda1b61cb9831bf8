//! Themes: TOML files in `themes/` (built in: dark, light), or any file the
//! user names. Syntax styles are looked up by capture name with fallback to
//! the parent scope (`function.method` -> `function`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleDef {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    dim: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    #[serde(default)]
    ui: HashMap<String, StyleDef>,
    #[serde(default)]
    syntax: HashMap<String, StyleDef>,
}

#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub text: Style,
    pub gutter: Style,
    pub gutter_current: Style,
    pub current_line: Style,
    pub selection: Style,
    pub status: Style,
    pub status_modified: Style,
    pub prompt: Style,
    pub message: Style,
    pub help: Style,
    pub help_key: Style,
    /// Ghost text: a suggestion drawn at the cursor, not yet in the buffer.
    pub ghost: Style,
    syntax: HashMap<String, Style>,
}

fn parse_color(text: &str) -> Result<Color, String> {
    Color::from_str(text).map_err(|_| format!("bad color {text:?} (use #rrggbb or a color name)"))
}

fn to_style(def: &StyleDef) -> Result<Style, String> {
    let mut style = Style::default();
    if let Some(fg) = &def.fg {
        style = style.fg(parse_color(fg)?);
    }
    if let Some(bg) = &def.bg {
        style = style.bg(parse_color(bg)?);
    }
    for (on, modifier) in [
        (def.bold, Modifier::BOLD),
        (def.italic, Modifier::ITALIC),
        (def.dim, Modifier::DIM),
        (def.underline, Modifier::UNDERLINED),
        (def.reversed, Modifier::REVERSED),
    ] {
        if on {
            style = style.add_modifier(modifier);
        }
    }
    Ok(style)
}

impl Theme {
    /// Parse theme TOML; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Theme, String> {
        let file: ThemeFile = toml::from_str(text).map_err(|err| {
            let line = err
                .span()
                .map_or(1, |s| text[..s.start].matches('\n').count() + 1);
            format!("theme {origin} line {line}: {}", err.message())
        })?;
        let ui = |key: &str| -> Result<Style, String> {
            file.ui
                .get(key)
                .map_or(Ok(Style::default()), to_style)
                .map_err(|e| format!("theme {origin}: ui.{key}: {e}"))
        };
        let mut syntax = HashMap::new();
        for (scope, def) in &file.syntax {
            syntax.insert(
                scope.clone(),
                to_style(def).map_err(|e| format!("theme {origin}: syntax.{scope}: {e}"))?,
            );
        }
        Ok(Theme {
            name: file.name.unwrap_or_else(|| origin.to_string()),
            text: ui("text")?,
            gutter: ui("gutter")?,
            gutter_current: ui("gutter_current")?,
            current_line: ui("current_line")?,
            selection: ui("selection")?,
            status: ui("status")?,
            status_modified: ui("status_modified")?,
            prompt: ui("prompt")?,
            message: ui("message")?,
            help: ui("help")?,
            help_key: ui("help_key")?,
            ghost: ui("ghost")?,
            syntax,
        })
    }

    pub fn builtin(name: &str) -> Option<Theme> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Theme::parse(text, n).expect("built-in theme is valid"))
    }

    pub fn default_dark() -> Theme {
        Theme::builtin("dark").expect("dark theme is built in")
    }

    /// Resolve a theme by path (contains `/` or ends in `.toml`), by name in
    /// `user_dir` (the config dir's `themes/`), or by built-in name.
    pub fn load(spec: &str, user_dir: Option<&Path>) -> Result<Theme, String> {
        let as_path = PathBuf::from(spec);
        let file = if spec.contains('/') || spec.ends_with(".toml") {
            Some(as_path)
        } else {
            user_dir
                .map(|d| d.join(format!("{spec}.toml")))
                .filter(|p| p.exists())
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("theme {}: {e}", path.display()))?;
            return Theme::parse(&text, &path.display().to_string());
        }
        Theme::builtin(spec).ok_or_else(|| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            format!("unknown theme {spec:?} (built in: {})", names.join(", "))
        })
    }

    /// Style for a capture name, falling back through its parent scopes.
    pub fn syntax_style(&self, scope: &str) -> Option<Style> {
        let mut scope = scope;
        loop {
            if let Some(style) = self.syntax.get(scope) {
                return Some(*style);
            }
            scope = &scope[..scope.rfind('.')?];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_scopes_fall_back() {
        let dark = Theme::load("dark", None).unwrap();
        let light = Theme::load("light", None).unwrap();
        assert_ne!(dark.text.bg, light.text.bg);
        assert_eq!(
            dark.syntax_style("function.method"),
            dark.syntax_style("function")
        );
        assert!(dark.syntax_style("punctuation.bracket").is_some());
        assert!(dark.syntax_style("nonexistent").is_none());
        assert!(dark.ghost.fg.is_some());
        assert!(
            Theme::load("nope", None)
                .unwrap_err()
                .contains("unknown theme")
        );
        let err = Theme::parse("[ui]\ntext = { fg = \"#zz\" }\n", "t.toml").unwrap_err();
        assert!(err.contains("ui.text"), "{err}");
    }
}
