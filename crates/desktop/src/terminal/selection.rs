//! Copy and paste in the terminal desktop, as in xterm: dragging with the left button selects
//! text (shown inverted) and copies it when the button goes up; a double click selects a word
//! and a triple click a line (dragging on from either extends by words or lines); a middle click,
//! Shift+Insert or Ctrl+Shift+V pastes. While a program asks for mouse reports, Shift held makes
//! the mouse select instead.
//!
//! [`Selection`] sees only cells and times; which cells make a word or a line depends on the
//! screen, so it hands out an [`Extent`] and [`resolve`] turns that into a [`Span`] where the
//! screen is at hand.

use std::time::{Duration, Instant};

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

/// What a selection grows by: one click selects cells, two words, three lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Cell,
    Word,
    Line,
}

/// A selection before the screen is looked at: from the cell pressed to the cell the pointer
/// is at, widened to whole `unit`s by [`resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub anchor: Cell,
    pub head: Cell,
    pub unit: Unit,
}

/// What a mouse event does to the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionAction {
    None,
    /// Show this extent inverted (`None`: show nothing selected).
    Highlight(Option<Extent>),
    /// The button went up: copy this extent's text (it stays highlighted).
    Copy(Extent),
}

/// Presses on the same cell within this time count as one double or triple click. Windows'
/// default double-click time: most RDP clients run there, and the network adds jitter.
pub const MULTI_CLICK: Duration = Duration::from_millis(500);

/// A left-button drag in progress, and where it started.
#[derive(Debug)]
pub struct Selection {
    anchor: Option<Cell>,
    head: Cell,
    unit: Unit,
    /// The pointer left the anchor cell: a click without a drag selects nothing.
    dragged: bool,
    /// The last press: when, where, and how many presses in a row it made (1 to 3).
    last_press: Option<(Instant, Cell, u8)>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection { anchor: None, head: (0, 0), unit: Unit::Cell, dragged: false, last_press: None }
    }
}

impl Selection {
    /// The left button went down on `cell` at `now`.
    pub fn press(&mut self, cell: Cell, now: Instant) -> SelectionAction {
        let clicks = match self.last_press {
            Some((at, at_cell, n)) if at_cell == cell && now.saturating_duration_since(at) <= MULTI_CLICK => n % 3 + 1,
            _ => 1,
        };
        self.last_press = Some((now, cell, clicks));
        self.anchor = Some(cell);
        self.head = cell;
        self.unit = match clicks {
            1 => Unit::Cell,
            2 => Unit::Word,
            _ => Unit::Line,
        };
        // A word or a line is a selection already, without a drag.
        self.dragged = self.unit != Unit::Cell;
        match self.unit {
            Unit::Cell => SelectionAction::Highlight(None),
            _ => SelectionAction::Highlight(Some(self.extent(cell))),
        }
    }

    pub fn moved(&mut self, cell: Cell) -> SelectionAction {
        let Some(_) = self.anchor else { return SelectionAction::None };
        if cell == self.head {
            return SelectionAction::None;
        }
        self.head = cell;
        self.dragged = true;
        // A press after a drag starts counting anew.
        self.last_press = None;
        SelectionAction::Highlight(Some(self.extent(cell)))
    }

    pub fn release(&mut self, cell: Cell) -> SelectionAction {
        let Some(anchor) = self.anchor else { return SelectionAction::None };
        self.dragged |= cell != anchor;
        let extent = self.extent(cell);
        self.anchor = None;
        if !self.dragged {
            return SelectionAction::None;
        }
        SelectionAction::Copy(extent)
    }

    /// A button is held for a selection (the moves it gets are the drag).
    pub fn dragging(&self) -> bool {
        self.anchor.is_some()
    }

    fn extent(&self, head: Cell) -> Extent {
        Extent { anchor: self.anchor.unwrap_or(head), head, unit: self.unit }
    }
}

/// Characters that belong to words besides letters and digits: VTE's (gnome-terminal's)
/// default, so that a double click takes a path, a URL or an e-mail address whole.
const WORD_EXTRA: &str = "-#%&+,./:=?@_~";

/// What a double click groups: a run of word characters, of blanks, or of one other character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    Blank,
    Other(char),
}

fn class_of(screen: &vt100::Screen, (row, col): Cell) -> Class {
    let Some(cell) = screen.cell(row, col) else { return Class::Blank };
    if cell.is_wide_continuation() && col > 0 {
        // The right half of a wide character is that character.
        return class_of(screen, (row, col - 1));
    }
    match cell.contents().chars().next() {
        None => Class::Blank,
        Some(c) if c.is_whitespace() => Class::Blank,
        Some(c) if c.is_alphanumeric() || WORD_EXTRA.contains(c) => Class::Word,
        Some(c) => Class::Other(c),
    }
}

/// The cell before `cell` in reading order within one logical line (across a wrap the
/// program's output made, not across a line end), if any.
fn before(screen: &vt100::Screen, (row, col): Cell, cols: u16) -> Option<Cell> {
    if col > 0 {
        Some((row, col - 1))
    } else if row > 0 && screen.row_wrapped(row - 1) {
        Some((row - 1, cols - 1))
    } else {
        None
    }
}

/// The cell after `cell` within one logical line, if any.
fn after(screen: &vt100::Screen, (row, col): Cell, cols: u16, rows: u16) -> Option<Cell> {
    if col + 1 < cols {
        Some((row, col + 1))
    } else if row + 1 < rows && screen.row_wrapped(row) {
        Some((row + 1, 0))
    } else {
        None
    }
}

/// The cells `extent` covers on `screen`'s view: its two ends, each widened to the whole word
/// or logical line (rows the program's output wrapped belong to one line) they lie in.
pub fn resolve(screen: &vt100::Screen, extent: Extent) -> Span {
    let (rows, cols) = screen.size();
    let (rows, cols) = (rows.get(), cols.get());
    let clamp = |(row, col): Cell| (row.min(rows - 1), col.min(cols - 1));
    let span = Span::between(clamp(extent.anchor), clamp(extent.head));
    match extent.unit {
        Unit::Cell => span,
        Unit::Word => {
            let mut start = span.start;
            let class = class_of(screen, start);
            while let Some(prev) = before(screen, start, cols).filter(|&c| class_of(screen, c) == class) {
                start = prev;
            }
            let mut end = span.end;
            let class = class_of(screen, end);
            while let Some(next) = after(screen, end, cols, rows).filter(|&c| class_of(screen, c) == class) {
                end = next;
            }
            Span { start, end }
        }
        Unit::Line => {
            let mut first = span.start.0;
            while first > 0 && screen.row_wrapped(first - 1) {
                first -= 1;
            }
            let mut last = span.end.0;
            while last + 1 < rows && screen.row_wrapped(last) {
                last += 1;
            }
            Span { start: (first, 0), end: (last, cols - 1) }
        }
    }
}

/// The text `extent` selects on `screen`: a line selection ends with its line end, as in
/// xterm (pasted into a shell, it runs).
pub fn text_of_extent(screen: &vt100::Screen, extent: Extent) -> String {
    let mut text = text_of(screen, resolve(screen, extent));
    if extent.unit == Unit::Line {
        text.push('\n');
    }
    text
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

    fn cells(anchor: Cell, head: Cell) -> Extent {
        Extent { anchor, head, unit: Unit::Cell }
    }

    #[test]
    fn a_drag_selects_in_reading_order_and_copies_on_release() {
        let mut s = Selection::default();
        let t = Instant::now();
        assert_eq!(s.press((3, 10), t), SelectionAction::Highlight(None));
        assert!(s.dragging());
        assert_eq!(s.moved((3, 10)), SelectionAction::None, "same cell");
        assert_eq!(s.moved((1, 4)), SelectionAction::Highlight(Some(cells((3, 10), (1, 4)))));
        assert_eq!(s.release((1, 4)), SelectionAction::Copy(cells((3, 10), (1, 4))));
        assert!(!s.dragging());
        assert_eq!(s.moved((0, 0)), SelectionAction::None, "no button held");
        let backwards = Span::between((3, 10), (1, 4));
        assert_eq!(backwards, Span { start: (1, 4), end: (3, 10) });
        assert!(backwards.contains((2, 0)) && backwards.contains((3, 10)) && !backwards.contains((3, 11)));
    }

    #[test]
    fn a_click_without_a_drag_copies_nothing() {
        let mut s = Selection::default();
        let t = Instant::now();
        s.press((2, 2), t);
        assert_eq!(s.release((2, 2)), SelectionAction::None);
        // Leaving the cell and coming back is still a drag: one cell selected.
        s.press((2, 2), t + Duration::from_secs(1));
        s.moved((2, 3));
        s.moved((2, 2));
        assert_eq!(s.release((2, 2)), SelectionAction::Copy(cells((2, 2), (2, 2))));
    }

    #[test]
    fn double_and_triple_clicks_select_words_and_lines() {
        let mut s = Selection::default();
        let t = Instant::now();
        let ms = Duration::from_millis;
        s.press((1, 5), t);
        s.release((1, 5));
        let word = Extent { anchor: (1, 5), head: (1, 5), unit: Unit::Word };
        assert_eq!(s.press((1, 5), t + ms(200)), SelectionAction::Highlight(Some(word)), "shown at the press");
        assert_eq!(s.release((1, 5)), SelectionAction::Copy(word), "copied without a drag");
        let line = Extent { unit: Unit::Line, ..word };
        assert_eq!(s.press((1, 5), t + ms(400)), SelectionAction::Highlight(Some(line)));
        assert_eq!(s.release((1, 5)), SelectionAction::Copy(line));
        // A fourth click starts over; each counts from the press before it.
        assert_eq!(s.press((1, 5), t + ms(600)), SelectionAction::Highlight(None));
        assert_eq!(s.release((1, 5)), SelectionAction::None);

        // Too slow, or on another cell: a single click again.
        assert_eq!(s.press((1, 5), t + ms(600) + MULTI_CLICK + ms(1)), SelectionAction::Highlight(None));
        s.release((1, 5));
        assert_eq!(s.press((1, 6), t + ms(1200)), SelectionAction::Highlight(None));
        s.release((1, 6));

        // A double click then a drag extends by words; a press after a drag is a first click.
        s.press((2, 0), t + ms(3000));
        s.release((2, 0));
        s.press((2, 0), t + ms(3100));
        let dragged = Extent { anchor: (2, 0), head: (3, 7), unit: Unit::Word };
        assert_eq!(s.moved((3, 7)), SelectionAction::Highlight(Some(dragged)));
        assert_eq!(s.release((3, 7)), SelectionAction::Copy(dragged));
        assert_eq!(s.press((3, 7), t + ms(3200)), SelectionAction::Highlight(None));
    }

    fn screen(rows: u16, cols: u16, text: &[u8]) -> vt100::Parser {
        let size = |n| std::num::NonZeroU16::new(n).unwrap();
        let mut parser = vt100::Parser::new(size(rows), size(cols), 0);
        parser.process(text);
        parser
    }

    fn word(screen: &vt100::Screen, at: Cell) -> String {
        text_of_extent(screen, Extent { anchor: at, head: at, unit: Unit::Word })
    }

    #[test]
    fn words_are_runs_of_one_class() {
        let parser = screen(4, 60, "ls -l /usr/share/doc; echo über=1 ((x))  end\r\n".as_bytes());
        let s = parser.screen();
        assert_eq!(word(s, (0, 0)), "ls");
        assert_eq!(word(s, (0, 1)), "ls");
        assert_eq!(word(s, (0, 3)), "-l", "options are words");
        assert_eq!(word(s, (0, 10)), "/usr/share/doc", "paths are words");
        assert_eq!(word(s, (0, 20)), ";", "other characters group with their own kind only");
        assert_eq!(word(s, (0, 27)), "über=1", "letters beyond ASCII");
        assert_eq!(word(s, (0, 35)), "((", "a run of the same character");
        assert_eq!(word(s, (0, 36)), "x");
        assert_eq!(word(s, (1, 3)), "", "blanks copy nothing");
        // A word the terminal wrapped is one word; a line end ends it.
        let parser = screen(4, 10, b"say hello_wrapped_world\r\nnext");
        let s = parser.screen();
        assert_eq!(word(s, (0, 6)), "hello_wrapped_world");
        assert_eq!(word(s, (2, 1)), "hello_wrapped_world");
        assert_eq!(word(s, (3, 0)), "next");
        assert_eq!(resolve(s, Extent { anchor: (1, 2), head: (1, 2), unit: Unit::Word }), Span { start: (0, 4), end: (2, 2) });
        // A drag by words: from the start of the first to the end of the last.
        let extent = Extent { anchor: (3, 2), head: (0, 5), unit: Unit::Word };
        assert_eq!(text_of_extent(s, extent), "hello_wrapped_world\nnext");
    }

    #[test]
    fn wide_characters_are_whole() {
        let parser = screen(2, 20, "a 日本語 b\r\n".as_bytes());
        let s = parser.screen();
        assert_eq!(word(s, (0, 3)), "日本語", "the right half of a wide character");
        assert_eq!(word(s, (0, 2)), "日本語");
    }

    #[test]
    fn lines_are_logical_lines_with_their_line_end() {
        let parser = screen(5, 10, b"first\r\n0123456789abcdef\r\nlast line");
        let s = parser.screen();
        let line = |row| text_of_extent(s, Extent { anchor: (row, 3), head: (row, 3), unit: Unit::Line });
        assert_eq!(line(0), "first\n");
        assert_eq!(line(1), "0123456789abcdef\n", "a wrapped line is one line");
        assert_eq!(line(2), "0123456789abcdef\n");
        assert_eq!(resolve(s, Extent { anchor: (2, 0), head: (2, 0), unit: Unit::Line }), Span { start: (1, 0), end: (2, 9) });
        // Dragged over: every line touched.
        let both = Extent { anchor: (3, 0), head: (0, 4), unit: Unit::Line };
        assert_eq!(text_of_extent(s, both), "first\n0123456789abcdef\nlast line\n");
        // Out of the view (a resize under the pointer) is clamped, never a panic.
        let far = Extent { anchor: (99, 99), head: (99, 99), unit: Unit::Word };
        assert_eq!(resolve(s, far), Span { start: (4, 0), end: (4, 9) });
    }

    #[test]
    fn text_keeps_line_ends_and_drops_trailing_blanks() {
        let parser = screen(5, 20, b"first line   \r\nsecond\r\n0123456789012345678901234");
        let screen = parser.screen();
        assert_eq!(text_of(screen, Span { start: (0, 6), end: (1, 2) }), "line\nsec");
        assert_eq!(text_of(screen, Span { start: (0, 0), end: (0, 19) }), "first line");
        // A line the terminal wrapped comes back as one line.
        assert_eq!(text_of(screen, Span { start: (2, 15), end: (3, 2) }), "56789012");
    }
}
