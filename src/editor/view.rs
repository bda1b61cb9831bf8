//! What part of the document the window shows: the first line and column
//! on screen, the size of the text area (set by the app's layout before
//! each frame), and whether the view follows the cursor (a wheel scroll
//! leaves it behind until the next move or edit).

#[derive(Debug, Clone)]
pub struct View {
    scroll_line: usize,
    scroll_col: usize,
    width: usize,
    height: usize,
    follow_cursor: bool,
}

impl Default for View {
    fn default() -> Self {
        View {
            scroll_line: 0,
            scroll_col: 0,
            width: 80,
            height: 22,
            follow_cursor: true,
        }
    }
}

impl View {
    /// The first document line on screen.
    pub fn scroll_line(&self) -> usize {
        self.scroll_line
    }

    /// The first visual column on screen.
    pub fn scroll_col(&self) -> usize {
        self.scroll_col
    }

    /// Rows of the text area.
    pub fn height(&self) -> usize {
        self.height
    }

    pub fn set_size(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
    }

    /// Follow the cursor again (any move or edit).
    pub fn follow(&mut self) {
        self.follow_cursor = true;
    }

    /// Scroll so that the cursor at (`line`, visual `col`) is on screen,
    /// unless a wheel scroll let go of it.
    pub fn scroll_to(&mut self, line: usize, col: usize) {
        if !self.follow_cursor {
            return;
        }
        let height = self.height.max(1);
        if line < self.scroll_line {
            self.scroll_line = line;
        } else if line >= self.scroll_line + height {
            self.scroll_line = line + 1 - height;
        }
        let width = self.width.max(2);
        // A cursor that fits the first screen width needs no sideways
        // scroll (after a shrink to a sliver and back, the view returns).
        if col + 1 < width {
            self.scroll_col = 0;
        } else if col < self.scroll_col {
            self.scroll_col = col.saturating_sub(width / 4);
        } else if col >= self.scroll_col + width {
            self.scroll_col = col + 1 - width + width / 4;
        }
    }

    /// Move the view by `lines` (the wheel), not the cursor; `last` is the
    /// last line of the document.
    pub fn scroll_by(&mut self, lines: isize, last: usize) {
        self.scroll_line = self.scroll_line.saturating_add_signed(lines).min(last);
        self.follow_cursor = false;
    }

    /// Page the view by one screen, less a line of context; returns how many
    /// lines it moved by.
    pub fn page(&mut self, down: bool, last: usize) -> usize {
        let lines = self.height.saturating_sub(1).max(1);
        self.scroll_line = if down {
            (self.scroll_line + lines).min(last)
        } else {
            self.scroll_line.saturating_sub(lines)
        };
        lines
    }
}
