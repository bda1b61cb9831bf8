//! Display width: how many terminal columns text takes, with tabs expanded
//! to the next tab stop and wide/combining characters measured per grapheme.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Columns taken by grapheme `g` drawn at column `col`.
pub fn grapheme_width(g: &str, col: usize, tab_width: usize) -> usize {
    if g == "\t" {
        let tab = tab_width.max(1);
        tab - col % tab
    } else if g.chars().all(char::is_control) {
        // Stray control chars are drawn as one replacement cell, so the
        // cursor never sits on a zero-width cell.
        1
    } else {
        UnicodeWidthStr::width(g).max(1)
    }
}

/// Column at which the char offset `char_in_line` of `line` starts.
pub fn visual_col(line: &str, char_in_line: usize, tab_width: usize) -> usize {
    let mut col = 0;
    let mut chars = 0;
    for g in line.graphemes(true) {
        if chars >= char_in_line {
            break;
        }
        col += grapheme_width(g, col, tab_width);
        chars += g.chars().count();
    }
    col
}

/// The char offset in `line` whose grapheme covers column `target` (or the
/// line's end when it is shorter): where a click or an up/down move lands.
pub fn char_at_col(line: &str, target: usize, tab_width: usize) -> usize {
    let mut col = 0;
    let mut chars = 0;
    for g in line.graphemes(true) {
        let w = grapheme_width(g, col, tab_width);
        if col + w > target {
            // Land on the nearer edge of a wide grapheme or tab.
            return if target - col > w / 2 && w > 1 {
                chars + g.chars().count()
            } else {
                chars
            };
        }
        col += w;
        chars += g.chars().count();
    }
    chars
}

pub fn str_width(line: &str, tab_width: usize) -> usize {
    visual_col(line, usize::MAX, tab_width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_wide_and_combining_chars() {
        assert_eq!(visual_col("\tx", 1, 4), 4);
        assert_eq!(visual_col("ab\tx", 3, 4), 4);
        assert_eq!(visual_col("日本x", 2, 4), 4);
        assert_eq!(visual_col("e\u{301}x", 2, 4), 1);
        assert_eq!(char_at_col("日本x", 2, 4), 1);
        assert_eq!(char_at_col("日本x", 4, 4), 2);
        assert_eq!(char_at_col("ab", 10, 4), 2);
        assert_eq!(str_width("a\tb", 8), 9);
    }
}
