//! A selection is an anchor and a head, both char offsets into the rope.
//! The head is where the cursor is drawn; an empty selection is a cursor.

use super::Edit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    pub anchor: usize,
    pub head: usize,
}

impl Selection {
    pub fn cursor(at: usize) -> Selection {
        Selection {
            anchor: at,
            head: at,
        }
    }

    pub fn new(anchor: usize, head: usize) -> Selection {
        Selection { anchor, head }
    }

    pub fn is_empty(&self) -> bool {
        self.anchor == self.head
    }

    pub fn start(&self) -> usize {
        self.anchor.min(self.head)
    }

    pub fn end(&self) -> usize {
        self.anchor.max(self.head)
    }

    /// Move the head; with `extend` the anchor stays (Shift+movement),
    /// without it the selection collapses to the new position.
    pub fn moved_to(&self, head: usize, extend: bool) -> Selection {
        if extend {
            Selection {
                anchor: self.anchor,
                head,
            }
        } else {
            Selection::cursor(head)
        }
    }

    /// Where this selection lands after `edit` is applied elsewhere in the
    /// text: positions after the edit shift, positions inside it move to its
    /// end, so a cursor never points into text that no longer exists.
    pub fn map_through(&self, edit: &Edit) -> Selection {
        Selection {
            anchor: map_pos(self.anchor, edit),
            head: map_pos(self.head, edit),
        }
    }

    pub fn clamp(&self, len_chars: usize) -> Selection {
        Selection {
            anchor: self.anchor.min(len_chars),
            head: self.head.min(len_chars),
        }
    }
}

fn map_pos(pos: usize, edit: &Edit) -> usize {
    if pos <= edit.start_char {
        pos
    } else if pos >= edit.old_end_char {
        pos - edit.old_end_char + edit.new_end_char()
    } else {
        edit.new_end_char()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropey::Rope;

    #[test]
    fn positions_after_an_edit_shift_by_its_length_change() {
        let rope = Rope::from_str("abcdef");
        let edit = Edit::replace(&rope, 1, 3, "XYZW");
        let sel = Selection::new(0, 5).map_through(&edit);
        assert_eq!(sel, Selection::new(0, 7));
        let inside = Selection::cursor(2).map_through(&edit);
        assert_eq!(inside, Selection::cursor(5));
        assert_eq!(Selection::new(5, 2).start(), 2);
        assert_eq!(Selection::new(5, 2).end(), 5);
    }
}
