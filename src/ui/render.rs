//! Drawing. Rendering reads the editor state and changes nothing: scroll
//! positions are settled by the app before each frame.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use unicode_segmentation::UnicodeSegmentation;

use super::theme::Theme;
use crate::editor::Editor;
use crate::text::movement::line_text;
use crate::text::width::{grapheme_width, str_width};

/// Where things are on screen for a given terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenLayout {
    /// Line numbers.
    pub gutter: Rect,
    /// The text itself.
    pub text: Rect,
    pub status: Rect,
    /// Prompt or message line.
    pub prompt: Rect,
}

pub fn layout(area: Rect, editor: &Editor) -> ScreenLayout {
    let message_rows = message_lines(editor, area.width).len() as u16;
    // A long message takes up to a third of the screen; the text keeps the rest.
    let message_rows = message_rows.clamp(1, (area.height / 3).max(1));
    let text_height = area.height.saturating_sub(1 + message_rows);
    let gutter_width = (editor.gutter_width() as u16).min(area.width / 2);
    ScreenLayout {
        gutter: Rect::new(area.x, area.y, gutter_width, text_height),
        text: Rect::new(
            area.x + gutter_width,
            area.y,
            area.width - gutter_width,
            text_height,
        ),
        status: Rect::new(area.x, area.y + text_height, area.width, area.height.min(1)),
        prompt: Rect::new(
            area.x,
            area.y + text_height + 1,
            area.width,
            area.height.saturating_sub(1).min(message_rows),
        ),
    }
}

/// The message (or prompt) cut into rows of at most `width` columns, so
/// that a long one can be read in full.
fn message_lines(editor: &Editor, width: u16) -> Vec<String> {
    let text = match editor.prompt() {
        Some(prompt) => format!("{}{}", prompt.label(), prompt.input),
        None => editor.message().unwrap_or_default().to_string(),
    };
    wrap_columns(&text, width.max(1) as usize)
}

fn wrap_columns(text: &str, width: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut row = String::new();
        let mut used = 0;
        for grapheme in line.graphemes(true) {
            let w = grapheme_width(grapheme, used, 1);
            if used + w > width && !row.is_empty() {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            row.push_str(grapheme);
            used += w;
        }
        rows.push(row);
    }
    rows
}

/// What the app adds on top of the editor state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overlay<'a> {
    /// Ghost text at the cursor: its first line inline after the cursor,
    /// further lines as virtual lines below the cursor line.
    pub ghost: Option<&'a str>,
    /// The status line's prediction slot (model state, latency, ...).
    pub prediction_status: &'a str,
}

pub fn render(frame: &mut Frame, editor: &Editor, theme: &Theme, overlay: Overlay) {
    let area = frame.area();
    let screen = layout(area, editor);
    let cursor = draw_text(frame.buffer_mut(), &screen, editor, theme, overlay.ghost);
    draw_status(
        frame.buffer_mut(),
        screen.status,
        editor,
        theme,
        overlay.prediction_status,
    );
    let prompt_cursor = draw_prompt(frame.buffer_mut(), screen.prompt, editor, theme);
    if editor.help_scroll().is_some() {
        draw_help(frame, area, editor, theme);
    } else if let Some(pos) = prompt_cursor.or(cursor) {
        frame.set_cursor_position(pos);
    }
}

/// Paint one grapheme; returns the columns it took. Cells past `right` are
/// not touched, and a wide grapheme that would straddle the edge is blanked.
fn put(buf: &mut Buffer, x: u16, y: u16, right: u16, g: &str, width: usize, style: Style) {
    if x >= right {
        return;
    }
    let fits = x as usize + width <= right as usize;
    if g == "\t" || !fits {
        for dx in 0..width as u16 {
            if x + dx < right {
                buf[(x + dx, y)].set_symbol(" ").set_style(style);
            }
        }
    } else if g.chars().all(char::is_control) {
        buf[(x, y)].set_symbol("\u{fffd}").set_style(style);
    } else {
        // set_stringn knows that a wide grapheme covers the next cell too.
        buf.set_stringn(x, y, g, (right - x) as usize, style);
    }
}

/// Draw gutter and text; returns the cursor's screen position if visible.
fn draw_text(
    buf: &mut Buffer,
    screen: &ScreenLayout,
    editor: &Editor,
    theme: &Theme,
    ghost: Option<&str>,
) -> Option<Position> {
    let rope = editor.rope();
    let area = screen.text;
    buf.set_style(screen.gutter, theme.gutter);
    buf.set_style(area, theme.text);
    if area.height == 0 || area.width == 0 {
        return None;
    }
    let tab = editor.options().tab_width;
    let (cursor_line, _) = editor.cursor_line_col();
    let cursor_char = editor.cursor();
    let sel = editor.selection();
    let total_lines = rope.len_lines();
    let first = editor
        .view()
        .scroll_line()
        .min(total_lines.saturating_sub(1));
    // Prepared by the app before the frame (render changes nothing).
    let spans = editor.doc.syntax().map(|_| editor.doc.highlights());
    let ghost_lines: Vec<&str> = ghost.map(|g| g.split('\n').collect()).unwrap_or_default();
    let right = area.x + area.width;
    let mut cursor_pos = None;
    let mut row: u16 = 0;
    let mut line = first;
    while row < area.height && line < total_lines {
        let y = area.y + row;
        let is_cursor_line = line == cursor_line;
        let base = if is_cursor_line {
            theme.text.patch(theme.current_line)
        } else {
            theme.text
        };
        let number = format!(
            "{:>w$} ",
            line + 1,
            w = screen.gutter.width.saturating_sub(1) as usize
        );
        let gutter_style = if is_cursor_line {
            theme.gutter_current
        } else {
            theme.gutter
        };
        buf.set_stringn(
            screen.gutter.x,
            y,
            &number,
            screen.gutter.width as usize,
            gutter_style,
        );
        if is_cursor_line {
            buf.set_style(Rect::new(area.x, y, area.width, 1), base);
        }
        let text = line_text(rope, line);
        let line_start_byte = rope.line_to_byte(line);
        let line_start_char = rope.line_to_char(line);
        let mut byte_styles: Vec<Option<Style>> = vec![None; text.len()];
        if let Some(spans) = &spans {
            for span in spans.iter() {
                let s = span.bytes.start.max(line_start_byte);
                let e = span.bytes.end.min(line_start_byte + text.len());
                if s < e
                    && let Some(style) = theme.syntax_style(span.scope)
                {
                    byte_styles[s - line_start_byte..e - line_start_byte].fill(Some(style));
                }
            }
        }
        let mut col = 0usize;
        let mut char_idx = line_start_char;
        let mut byte_idx = 0usize;
        let scroll = editor.view().scroll_col();
        // Draws one grapheme at text column `col` of screen row `row_y`,
        // clipped by the horizontal scroll; ghost lines below use it too.
        let draw_at =
            |row_y: u16, col: usize, g: &str, w: usize, style: Style, buf: &mut Buffer| {
                if col + w > scroll && col < scroll + area.width as usize {
                    let x = area.x as usize + col.saturating_sub(scroll);
                    put(
                        buf,
                        x as u16,
                        row_y,
                        right,
                        g,
                        w - scroll.saturating_sub(col).min(w),
                        style,
                    );
                }
            };
        let graphemes: Vec<&str> = text.graphemes(true).collect();
        let mut ghost_drawn = false;
        for g in graphemes.iter().copied().chain(std::iter::once("")) {
            if is_cursor_line && char_idx == cursor_char {
                if col >= scroll && col <= scroll + area.width as usize {
                    cursor_pos = Some(Position::new(area.x + (col - scroll) as u16, y));
                }
                if let Some(first_ghost) = ghost_lines.first()
                    && !ghost_drawn
                {
                    ghost_drawn = true;
                    for gg in first_ghost.graphemes(true) {
                        let w = grapheme_width(gg, col, tab);
                        draw_at(y, col, gg, w, base.patch(theme.ghost), buf);
                        col += w;
                    }
                }
            }
            if g.is_empty() {
                break;
            }
            let w = grapheme_width(g, col, tab);
            let mut style = base;
            if let Some(Some(s)) = byte_styles.get(byte_idx) {
                style = style.patch(*s);
            }
            if char_idx >= sel.start() && char_idx < sel.end() {
                style = style.patch(theme.selection);
            }
            draw_at(y, col, g, w, style, buf);
            col += w;
            char_idx += g.chars().count();
            byte_idx += g.len();
        }
        // A selected line break shows as one highlighted cell.
        let break_char = line_start_char + text.chars().count();
        if break_char >= sel.start() && break_char < sel.end() && line + 1 < total_lines {
            draw_at(y, col, " ", 1, base.patch(theme.selection), buf);
        }
        row += 1;
        line += 1;
        if is_cursor_line {
            for extra in ghost_lines.iter().skip(1) {
                if row >= area.height {
                    break;
                }
                let y = area.y + row;
                let mut col = 0usize;
                for gg in extra.graphemes(true) {
                    let w = grapheme_width(gg, col, tab);
                    draw_at(y, col, gg, w, theme.text.patch(theme.ghost), buf);
                    col += w;
                }
                row += 1;
            }
        }
    }
    cursor_pos
}

fn draw_status(buf: &mut Buffer, area: Rect, editor: &Editor, theme: &Theme, prediction: &str) {
    if area.height == 0 {
        return;
    }
    buf.set_style(area, theme.status);
    let (line, col) = editor.cursor_line_col();
    let visual = crate::text::width::visual_col(
        &line_text(editor.rope(), line),
        col,
        editor.options().tab_width,
    );
    let name = editor.doc.display_name();
    let modified = if editor.doc.is_modified() { " [+]" } else { "" };
    let language = editor.doc.language().map_or("Plain", |l| l.name());
    let crlf = if editor.doc.line_ending() == crate::editor::LineEnding::CrLf {
        "  CRLF"
    } else {
        ""
    };
    let left = format!(" {name}{modified}");
    let style = if editor.doc.is_modified() {
        theme.status_modified
    } else {
        theme.status
    };
    buf.set_stringn(area.x, area.y, &left, area.width as usize, style);
    // Right-hand pieces in display order, each with a priority: on a narrow
    // terminal the least important are left out first.
    let position = format!("{}:{}", line + 1, visual + 1);
    // Which alternative is shown, before the model's state; it outranks the
    // state, which is long (model, kernel, cache) and goes first on a
    // narrow terminal.
    let alternative = editor
        .visible_ghost()
        .and_then(|g| g.position())
        .map(|(shown, of)| format!("{shown}/{of}"))
        .unwrap_or_default();
    let pieces: [(&str, u8); 6] = [
        (&alternative, 1),
        (prediction.trim_end(), 2),
        (&position, 0),
        (language, 3),
        (crlf.trim(), 4),
        ("F1 help", 5),
    ];
    let room = (area.width as usize).saturating_sub(str_width(&left, 1) + 2);
    let mut keep = [false; 6];
    let mut used = 0;
    for priority in 0..6u8 {
        for (i, (text, p)) in pieces.iter().enumerate() {
            let width = str_width(text, 1);
            if *p == priority && width > 0 && used + width + 2 <= room {
                keep[i] = true;
                used += width + 2;
            }
        }
    }
    let right: String = pieces
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|((text, _), _)| format!("{text}  "))
        .collect();
    let right_width = str_width(&right, 1) as u16;
    if right_width > 0 && right_width < area.width {
        buf.set_string(
            area.x + area.width - right_width,
            area.y,
            &right,
            theme.status,
        );
    }
}

/// Draw the prompt or the message, wrapped over the rows of `area`;
/// returns the prompt's cursor position.
fn draw_prompt(buf: &mut Buffer, area: Rect, editor: &Editor, theme: &Theme) -> Option<Position> {
    if area.height == 0 {
        return None;
    }
    buf.set_style(area, theme.prompt);
    let style = if editor.prompt().is_some() {
        theme.prompt
    } else {
        theme.message
    };
    let rows = message_lines(editor, area.width);
    // When a message is longer than the area, its end (the reason) shows.
    let skip = rows.len().saturating_sub(area.height as usize);
    for (y, row) in rows.iter().skip(skip).enumerate() {
        buf.set_stringn(area.x, area.y + y as u16, row, area.width as usize, style);
    }
    editor.prompt()?;
    let last = rows.last().map_or("", String::as_str);
    let y = area.y + (rows.len() - skip).saturating_sub(1) as u16;
    let x = (str_width(last, 1) as u16).min(area.width.saturating_sub(1));
    if let Some(message) = editor.message() {
        let w = str_width(message, 1) as u16 + 2;
        if x + w < area.width {
            buf.set_string(area.x + area.width - w, y, message, theme.message);
        }
    }
    Some(Position::new(area.x + x, y))
}

fn draw_help(frame: &mut Frame, area: Rect, editor: &Editor, theme: &Theme) {
    let margin_x = area.width / 10;
    let margin_y = area.height / 10;
    let rect = Rect::new(
        area.x + margin_x,
        area.y + margin_y,
        area.width.saturating_sub(2 * margin_x),
        area.height.saturating_sub(2 * margin_y),
    );
    let table = editor.keymap().key_table();
    let key_width = table
        .iter()
        .map(|(k, _, _)| k.len())
        .max()
        .unwrap_or(0)
        .min(24);
    let lines: Vec<Line> = table
        .iter()
        .skip(editor.help_scroll().unwrap_or(0))
        .map(|(keys, name, doc)| {
            Line::from(vec![
                Span::styled(format!("{keys:<key_width$}  "), theme.help_key),
                Span::styled(format!("{name:<20} "), theme.help_key),
                Span::styled(*doc, theme.help),
            ])
        })
        .collect();
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Keys (Up/Down scroll, any other key closes) ")
        .style(theme.help);
    frame.render_widget(Paragraph::new(lines).block(block).style(theme.help), rect);
}
