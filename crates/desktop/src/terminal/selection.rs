//! Copy and paste in the terminal desktop, as in xterm: dragging with the left button selects
//! text (shown inverted) and copies it when the button goes up; a middle click, Shift+Insert
//! or Ctrl+Shift+V pastes. While a program asks for mouse reports, Shift held makes the mouse
//! select instead.

/// A cell of the view: (row, column).
pub type Cell = (u16, u16);

/// The cells from `start` to `end`, both included, in reading order (a stream selection, as
/// xterm's: whole lines between the first and the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Cell,
    pub end: Cell,
}

impl Span {
    fn between(a: Cell, b: Cell) -> Span {
        if a <= b { Span { start: a, end: b } } else { Span { start: b, end: a } }
    }

    pub fn contains(&self, cell: Cell) -> bool {
        self.start <= cell && cell <= self.end
    }
}

/// What a mouse event does to the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionAction {
    None,
    /// Show this span inverted (`None`: show nothing selected).
    Highlight(Option<Span>),
    /// The button went up: copy this span's text (it stays highlighted).
    Copy(Span),
}

/// A left-button drag in progress, and where it started.
#[derive(Debug, Default)]
pub struct Selection {
    anchor: Option<Cell>,
    head: Cell,
    /// The pointer left the anchor cell: a click without a drag selects nothing.
    dragged: bool,
}

impl Selection {
    pub fn press(&mut self, cell: Cell) -> SelectionAction {
        self.anchor = Some(cell);
        self.head = cell;
        self.dragged = false;
        SelectionAction::Highlight(None)
    }

    pub fn moved(&mut self, cell: Cell) -> SelectionAction {
        let Some(anchor) = self.anchor else { return SelectionAction::None };
        if cell == self.head {
            return SelectionAction::None;
        }
        self.head = cell;
        self.dragged = true;
        SelectionAction::Highlight(Some(Span::between(anchor, cell)))
    }

    pub fn release(&mut self, cell: Cell) -> SelectionAction {
        let Some(anchor) = self.anchor.take() else { return SelectionAction::None };
        self.dragged |= cell != anchor;
        if !self.dragged {
            return SelectionAction::None;
        }
        SelectionAction::Copy(Span::between(anchor, cell))
    }

    /// A button is held for a selection (the moves it gets are the drag).
    pub fn dragging(&self) -> bool {
        self.anchor.is_some()
    }
}

/// The text of `span` on `screen`'s view: each line without its trailing blanks, lines the
/// program wrapped joined again.
pub fn text_of(screen: &vt100::Screen, span: Span) -> String {
    let (start, end) = (span.start, span.end);
    let raw = screen.contents_between(start.0, start.1, end.0, end.1.saturating_add(1));
    let mut out = String::with_capacity(raw.len());
    for (i, line) in raw.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line.trim_end_matches(' '));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drag_selects_in_reading_order_and_copies_on_release() {
        let mut s = Selection::default();
        assert_eq!(s.press((3, 10)), SelectionAction::Highlight(None));
        assert!(s.dragging());
        assert_eq!(s.moved((3, 10)), SelectionAction::None, "same cell");
        let backwards = Span { start: (1, 4), end: (3, 10) };
        assert_eq!(s.moved((1, 4)), SelectionAction::Highlight(Some(backwards)));
        assert_eq!(s.release((1, 4)), SelectionAction::Copy(backwards));
        assert!(!s.dragging());
        assert_eq!(s.moved((0, 0)), SelectionAction::None, "no button held");
        assert!(backwards.contains((2, 0)) && backwards.contains((3, 10)) && !backwards.contains((3, 11)));
    }

    #[test]
    fn a_click_without_a_drag_copies_nothing() {
        let mut s = Selection::default();
        s.press((2, 2));
        assert_eq!(s.release((2, 2)), SelectionAction::None);
        // Leaving the cell and coming back is still a drag: one cell selected.
        s.press((2, 2));
        s.moved((2, 3));
        s.moved((2, 2));
        assert_eq!(s.release((2, 2)), SelectionAction::Copy(Span { start: (2, 2), end: (2, 2) }));
    }

    #[test]
    fn text_keeps_line_ends_and_drops_trailing_blanks() {
        let size = |n| std::num::NonZeroU16::new(n).unwrap();
        let mut parser = vt100::Parser::new(size(5), size(20), 0);
        parser.process(b"first line   \r\nsecond\r\n0123456789012345678901234");
        let screen = parser.screen();
        assert_eq!(text_of(screen, Span { start: (0, 6), end: (1, 2) }), "line\nsec");
        assert_eq!(text_of(screen, Span { start: (0, 0), end: (0, 19) }), "first line");
        // A line the terminal wrapped comes back as one line.
        assert_eq!(text_of(screen, Span { start: (2, 15), end: (3, 2) }), "56789012");
    }
}
