//! Key notation shared by the keymap, the config file and replay scripts:
//! `C-s`, `S-Right`, `A-\`, `C-S-Left`, `F1`, `Tab`, `Esc`, `Enter`, `BS`.

use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

const NAMED: &[(&str, KeyCode)] = &[
    ("Tab", KeyCode::Tab),
    ("Esc", KeyCode::Esc),
    ("Enter", KeyCode::Enter),
    ("BS", KeyCode::Backspace),
    ("Del", KeyCode::Delete),
    ("Ins", KeyCode::Insert),
    ("Home", KeyCode::Home),
    ("End", KeyCode::End),
    ("PgUp", KeyCode::PageUp),
    ("PgDn", KeyCode::PageDown),
    ("Up", KeyCode::Up),
    ("Down", KeyCode::Down),
    ("Left", KeyCode::Left),
    ("Right", KeyCode::Right),
    ("Space", KeyCode::Char(' ')),
    ("lt", KeyCode::Char('<')),
    // Aliases accepted when reading, never written.
    ("CR", KeyCode::Enter),
    ("Backspace", KeyCode::Backspace),
    ("Delete", KeyCode::Delete),
    ("PageUp", KeyCode::PageUp),
    ("PageDown", KeyCode::PageDown),
    ("Escape", KeyCode::Esc),
    ("Return", KeyCode::Enter),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown key {0:?} (expected e.g. C-s, S-Right, A-x, F1, Tab, Enter, Esc, BS, Del, PgUp)")]
pub struct KeyParseError(pub String);

impl Key {
    pub fn new(code: KeyCode, mods: KeyModifiers) -> Key {
        Key { code, mods }.normalized()
    }

    pub fn plain(code: KeyCode) -> Key {
        Key::new(code, KeyModifiers::NONE)
    }

    pub fn ctrl(c: char) -> Key {
        Key::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    /// Terminals disagree on how they report some keys; fold them into one
    /// form so bindings match: Shift is implied by an uppercase char, and
    /// BackTab is Shift-Tab.
    fn normalized(self) -> Key {
        let mods = self.mods & (KeyModifiers::CONTROL | KeyModifiers::SHIFT | KeyModifiers::ALT);
        match self.code {
            KeyCode::BackTab => Key {
                code: KeyCode::Tab,
                mods: mods | KeyModifiers::SHIFT,
            },
            KeyCode::Char(c) if !mods.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                Key {
                    code: KeyCode::Char(c),
                    mods: KeyModifiers::NONE,
                }
            }
            KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) && c.is_ascii_uppercase() => {
                Key {
                    code: KeyCode::Char(c.to_ascii_lowercase()),
                    mods: mods | KeyModifiers::SHIFT,
                }
            }
            code => Key { code, mods },
        }
    }

    /// `None` for key releases and repeats' release halves, which the
    /// editor ignores.
    pub fn from_event(event: &KeyEvent) -> Option<Key> {
        if event.kind == KeyEventKind::Release {
            return None;
        }
        Some(Key::new(event.code, event.modifiers))
    }

    pub fn to_event(self) -> KeyEvent {
        KeyEvent::new(self.code, self.mods)
    }

    /// The char this key types, when it types one.
    pub fn typed_char(&self) -> Option<char> {
        match self.code {
            KeyCode::Char(c) if self.mods.is_empty() => Some(c),
            _ => None,
        }
    }

    /// Parse the text between `<` and `>` (or a config key name).
    pub fn parse(text: &str) -> Result<Key, KeyParseError> {
        let err = || KeyParseError(text.to_string());
        let mut mods = KeyModifiers::NONE;
        let mut rest = text;
        loop {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(m @ ('C' | 'S' | 'A' | 'M')), Some('-')) if rest.len() > 2 => {
                    mods |= match m {
                        'C' => KeyModifiers::CONTROL,
                        'S' => KeyModifiers::SHIFT,
                        _ => KeyModifiers::ALT,
                    };
                    rest = &rest[2..];
                }
                _ => break,
            }
        }
        let code = if let Some((_, code)) = NAMED
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(rest))
        {
            *code
        } else if let Some(n) = rest.strip_prefix('F').and_then(|n| n.parse::<u8>().ok()) {
            if !(1..=12).contains(&n) {
                return Err(err());
            }
            KeyCode::F(n)
        } else {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => KeyCode::Char(c),
                _ => return Err(err()),
            }
        };
        Ok(Key::new(code, mods))
    }

    /// How a script or recording writes this key: a plain char as itself,
    /// anything else in angle brackets.
    pub fn to_script(&self) -> String {
        match self.typed_char() {
            Some('<') => "<lt>".to_string(),
            Some(c) if !c.is_control() => c.to_string(),
            _ => format!("<{self}>"),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("C-")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("A-")?;
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            f.write_str("S-")?;
        }
        match self.code {
            KeyCode::F(n) => write!(f, "F{n}"),
            code => match NAMED.iter().find(|(_, c)| *c == code) {
                Some((name, _)) => f.write_str(name),
                None => match code {
                    KeyCode::Char(c) => write!(f, "{c}"),
                    other => write!(f, "{other:?}"),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for text in [
            "C-s", "S-Right", "C-S-Left", "F1", "S-F3", "Tab", "S-Tab", "Esc", "A-\\", "BS", "lt",
            "PgDn",
        ] {
            let key = Key::parse(text).unwrap();
            assert_eq!(key.to_string(), text, "{text}");
        }
        assert_eq!(Key::parse("C-s").unwrap(), Key::ctrl('s'));
        assert_eq!(Key::parse("escape").unwrap(), Key::plain(KeyCode::Esc));
        assert!(Key::parse("C-").is_err());
        assert!(Key::parse("Hyper-x").is_err());
        assert!(Key::parse("F13").is_err());
    }

    #[test]
    fn terminal_variants_normalize() {
        let back_tab =
            Key::from_event(&KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)).unwrap();
        assert_eq!(back_tab, Key::parse("S-Tab").unwrap());
        let upper =
            Key::from_event(&KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT)).unwrap();
        assert_eq!(upper.typed_char(), Some('A'));
        assert_eq!(Key::plain(KeyCode::Char('<')).to_script(), "<lt>");
    }
}
