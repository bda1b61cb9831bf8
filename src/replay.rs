//! Keystroke scripts: the `.keys` format that replay tests, `--replay` and
//! `--record` share.
//!
//! Text is typed as written, except that line breaks in the file are
//! ignored (use `<Enter>`). Keys go in angle brackets in the keymap's
//! notation (`<C-s>`, `<S-Right>`, `<Tab>`, `<lt>` for `<`). Steps:
//! `<wait:200ms>` lets time pass (background messages are handled
//! meanwhile), `<wait-idle>` waits until background work is done,
//! `<click:COL,ROW>`, `<drag:COL,ROW>`, `<release:COL,ROW>`,
//! `<wheel-up:COL,ROW>`, `<wheel-down:COL,ROW>` are mouse events at screen
//! cells, `<paste:BASE64>` is a bracketed paste. A line starting with `#:` is
//! a directive (`#: key = value`, read by the test runner), a line starting
//! with `#` is a comment: to type `#` first on a line, write `<#>`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use crate::editor::Key;
use crate::event::AppEvent;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(Key),
    Mouse(MouseEvent),
    Paste(String),
    Wait(Duration),
    WaitIdle,
}

#[derive(Debug, Clone, Default)]
pub struct Script {
    pub steps: Vec<Step>,
    pub directives: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

fn mouse(kind: MouseEventKind, args: &str) -> Result<MouseEvent, String> {
    let (col, row) = args.split_once(',').ok_or("expected COL,ROW")?;
    let column = col
        .trim()
        .parse()
        .map_err(|_| format!("bad column {col:?}"))?;
    let row = row.trim().parse().map_err(|_| format!("bad row {row:?}"))?;
    Ok(MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?} (expected e.g. 200ms or 2s)");
    if let Some(ms) = text.strip_suffix("ms") {
        ms.trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| bad())
    } else if let Some(s) = text.strip_suffix('s') {
        s.trim()
            .parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|_| bad())
    } else {
        Err(bad())
    }
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if let Some((name, args)) = inner.split_once(':')
        && !args.is_empty()
    {
        let left = MouseButton::Left;
        return match name {
            "wait" => parse_duration(args).map(Step::Wait),
            "click" => mouse(MouseEventKind::Down(left), args).map(Step::Mouse),
            "drag" => mouse(MouseEventKind::Drag(left), args).map(Step::Mouse),
            "release" => mouse(MouseEventKind::Up(left), args).map(Step::Mouse),
            "wheel-up" => mouse(MouseEventKind::ScrollUp, args).map(Step::Mouse),
            "wheel-down" => mouse(MouseEventKind::ScrollDown, args).map(Step::Mouse),
            "paste" => base64::engine::general_purpose::STANDARD
                .decode(args)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(Step::Paste)
                .ok_or_else(|| "paste needs base64 of UTF-8 text".to_string()),
            _ => Key::parse(inner).map(Step::Key).map_err(|e| e.to_string()),
        };
    }
    if inner == "wait-idle" {
        return Ok(Step::WaitIdle);
    }
    Key::parse(inner).map(Step::Key).map_err(|e| e.to_string())
}

impl Script {
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut script = Script::default();
        for (index, line) in text.lines().enumerate() {
            let err = |message: String| ScriptError {
                line: index + 1,
                message,
            };
            if let Some(directive) = line.strip_prefix("#:") {
                let (key, value) = directive.split_once('=').unwrap_or((directive, ""));
                script
                    .directives
                    .insert(key.trim().to_string(), value.trim().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let mut rest = line;
            while let Some(c) = rest.chars().next() {
                if c == '<' {
                    let close = rest
                        .find('>')
                        .ok_or_else(|| err("unclosed '<' (write <lt> to type '<')".into()))?;
                    // `<>>` types '>': an empty bracket is not a key.
                    let (inner, consumed) = if close == 1 && rest[2..].starts_with('>') {
                        (">", 3)
                    } else {
                        (&rest[1..close], close + 1)
                    };
                    script.steps.push(parse_bracket(inner).map_err(err)?);
                    rest = &rest[consumed..];
                } else {
                    script
                        .steps
                        .push(Step::Key(Key::plain(crossterm::event::KeyCode::Char(c))));
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        Ok(script)
    }

    pub fn events(&self) -> impl Iterator<Item = AppEvent> + '_ {
        self.steps.iter().map(|step| match step {
            Step::Key(key) => AppEvent::Key(key.to_event()),
            Step::Mouse(m) => AppEvent::Mouse(*m),
            Step::Paste(text) => AppEvent::Paste(text.clone()),
            Step::Wait(d) => AppEvent::Wait(*d),
            Step::WaitIdle => AppEvent::WaitIdle,
        })
    }
}

/// Write one event in script notation (what `--record` writes).
pub fn format_event(event: &AppEvent) -> Option<String> {
    let at = |m: &MouseEvent| format!("{},{}", m.column, m.row);
    match event {
        AppEvent::Key(k) => {
            let key = Key::from_event(k)?;
            let mut text = key.to_script();
            // A typed '#' at the start of a script line would read as a comment.
            if text == "#" {
                text = "<#>".into();
            }
            if key.code == crossterm::event::KeyCode::Enter && key.mods.is_empty() {
                text.push('\n');
            }
            Some(text)
        }
        AppEvent::Mouse(m) => match m.kind {
            MouseEventKind::Down(MouseButton::Left) => Some(format!("<click:{}>", at(m))),
            MouseEventKind::Drag(MouseButton::Left) => Some(format!("<drag:{}>", at(m))),
            MouseEventKind::Up(MouseButton::Left) => Some(format!("<release:{}>", at(m))),
            MouseEventKind::ScrollUp => Some(format!("<wheel-up:{}>", at(m))),
            MouseEventKind::ScrollDown => Some(format!("<wheel-down:{}>", at(m))),
            _ => None,
        },
        AppEvent::Paste(text) => Some(format!(
            "<paste:{}>",
            base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
        )),
        AppEvent::Wait(d) => Some(format!("<wait:{}ms>", d.as_millis())),
        AppEvent::WaitIdle => Some("<wait-idle>".into()),
        AppEvent::Resize(..) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyCode;

    #[test]
    fn parses_text_keys_waits_and_directives() {
        let text = "#: open = a.py\n# comment\ndef f():<Enter>\n<#> x<lt><>><wait:200ms><C-s><S-Right><wait-idle>\n<click:3,4><paste:YQpi>";
        let script = Script::parse(text).unwrap();
        assert_eq!(script.directives["open"], "a.py");
        let keys: String = script
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Key(k) => k.typed_char(),
                _ => None,
            })
            .collect();
        assert_eq!(keys, "def f():# x<>");
        assert!(
            script
                .steps
                .contains(&Step::Wait(Duration::from_millis(200)))
        );
        assert!(script.steps.contains(&Step::Key(Key::ctrl('s'))));
        assert!(
            script
                .steps
                .contains(&Step::Key(Key::new(KeyCode::Right, KeyModifiers::SHIFT)))
        );
        assert!(script.steps.contains(&Step::WaitIdle));
        assert!(script.steps.contains(&Step::Paste("a\nb".into())));
        assert!(matches!(script.steps.last(), Some(Step::Paste(_))));
        assert!(Script::parse("<C-nope>").is_err());
        assert_eq!(Script::parse("ok\n<unclosed").unwrap_err().line, 2);
    }

    #[test]
    fn formatted_events_parse_back() {
        let events: Vec<AppEvent> =
            Script::parse("ab<lt><C-s><Enter><#>x<wait:15ms><click:1,2><paste:eHk=>")
                .unwrap()
                .events()
                .collect();
        let written: String = events.iter().filter_map(format_event).collect();
        let again: Vec<AppEvent> = Script::parse(&written).unwrap().events().collect();
        assert_eq!(format!("{events:?}"), format!("{again:?}"));
    }
}
