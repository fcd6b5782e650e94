//! Drawing the emulator's screen into the canvas, one changed cell at a time.
//!
//! The renderer keeps what it last drew in every cell (content, attributes, cursor). A render
//! compares the screen with that, redraws only the cells that differ, and reports one damage
//! rectangle per run of changed cells in a row (runs with the same span on adjacent rows are
//! merged), so typing a character damages two cells (the character and the cursor), not the
//! screen.

use std::sync::Arc;

use crate::canvas::BYTES_PER_PIXEL;
use crate::{Canvas, Rect, Size};

use super::font::{CellMetrics, Face};
use super::selection::Span;

/// Grid limits: a client asking for more gets this many cells (and background beyond them).
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

pub const DEFAULT_FG: Rgb = Rgb(229, 229, 229);
pub const DEFAULT_BG: Rgb = Rgb(0, 0, 0);

/// xterm's 16 ANSI colours.
const ANSI: [Rgb; 16] = [
    Rgb(0, 0, 0),
    Rgb(205, 0, 0),
    Rgb(0, 205, 0),
    Rgb(205, 205, 0),
    Rgb(0, 0, 238),
    Rgb(205, 0, 205),
    Rgb(0, 205, 205),
    Rgb(229, 229, 229),
    Rgb(127, 127, 127),
    Rgb(255, 0, 0),
    Rgb(0, 255, 0),
    Rgb(255, 255, 0),
    Rgb(92, 92, 255),
    Rgb(255, 0, 255),
    Rgb(0, 255, 255),
    Rgb(255, 255, 255),
];

/// The xterm 256-colour palette: 16 ANSI, a 6x6x6 cube, 24 greys.
pub fn palette(index: u8) -> Rgb {
    match index {
        0..=15 => ANSI[usize::from(index)],
        16..=231 => {
            let i = index - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            Rgb(level(i / 36), level(i / 6 % 6), level(i % 6))
        }
        232..=255 => {
            let v = 8 + 10 * (index - 232);
            Rgb(v, v, v)
        }
    }
}

fn resolve(color: vt100::Color, default: Rgb, bright: bool) -> Rgb {
    match color {
        vt100::Color::Default => default,
        // Bold text in one of the 8 base colours is shown bright, as xterm does.
        vt100::Color::Idx(i) if bright && i < 8 => palette(i + 8),
        vt100::Color::Idx(i) => palette(i),
        vt100::Color::Rgb(r, g, b) => Rgb(r, g, b),
    }
}

/// The columns and rows that fit in `size` pixels, within the grid limits.
pub fn grid_for(size: Size, metrics: CellMetrics) -> (u16, u16) {
    let cols = (size.width / metrics.width).clamp(1, MAX_COLS);
    let rows = (size.height / metrics.height).clamp(1, MAX_ROWS);
    (cols, rows)
}

/// What a cell showed when last drawn.
#[derive(Clone, PartialEq, Eq)]
struct Drawn {
    /// `None` only while the screen and the grid disagree on size (drawn as a blank cell).
    cell: Option<vt100::Cell>,
    cursor: bool,
    /// Part of the mouse selection: shown inverted.
    selected: bool,
}

pub struct Renderer {
    face: Arc<Face>,
    cols: u16,
    rows: u16,
    /// `None`: not drawn since the last full redraw (or never).
    prev: Vec<Option<Drawn>>,
    /// The canvas size the previous cells were drawn into; a different size forces a full redraw.
    drawn_size: Option<Size>,
    /// The mouse selection, in view cells.
    highlight: Option<Span>,
}

impl Renderer {
    pub fn new(face: Arc<Face>, cols: u16, rows: u16) -> Renderer {
        Renderer {
            face,
            cols,
            rows,
            prev: vec![None; usize::from(cols) * usize::from(rows)],
            drawn_size: None,
            highlight: None,
        }
    }

    #[cfg(test)]
    pub fn metrics(&self) -> CellMetrics {
        self.face.metrics
    }

    /// Change the grid; the next render redraws everything.
    pub fn set_grid(&mut self, cols: u16, rows: u16) {
        self.cols = cols;
        self.rows = rows;
        self.invalidate();
    }

    /// Show `span` inverted from the next render on (`None`: nothing selected).
    pub fn set_highlight(&mut self, span: Option<Span>) {
        self.highlight = span;
    }

    pub fn highlight(&self) -> Option<Span> {
        self.highlight
    }

    /// Forget what was drawn: the next render redraws everything.
    pub fn invalidate(&mut self) {
        self.prev = vec![None; usize::from(self.cols) * usize::from(self.rows)];
        self.drawn_size = None;
    }

    /// Draw what changed on `screen` since the last render. The screen must have this
    /// renderer's grid size.
    pub fn render(&mut self, screen: &vt100::Screen, canvas: &Canvas) {
        canvas.draw(|pixels, size| self.draw(screen, pixels, size));
    }

    fn draw(&mut self, screen: &vt100::Screen, pixels: &mut [u8], size: Size) -> Vec<Rect> {
        let full = self.drawn_size != Some(size);
        if full {
            clear(pixels, size, DEFAULT_BG);
            self.prev.iter_mut().for_each(|p| *p = None);
            self.drawn_size = Some(size);
        }
        let (cols, rows) = (self.cols, self.rows);
        let cursor = cursor_in_view(screen, cols, rows);
        let highlight = self.highlight;
        let m = self.face.metrics;
        let mut damage: Vec<Rect> = Vec::new();
        let mut dirty = vec![false; usize::from(cols)];
        for row in 0..rows {
            let base = usize::from(row) * usize::from(cols);
            let mut any = false;
            for col in 0..cols {
                let now = drawn_at(screen, row, col, cursor, highlight);
                dirty[usize::from(col)] = self.prev[base + usize::from(col)].as_ref() != Some(&now);
                any |= dirty[usize::from(col)];
            }
            if !any {
                continue;
            }
            // A wide character spans its cell and the continuation cell: redraw both together.
            for col in 0..cols {
                let c = usize::from(col);
                if !dirty[c] {
                    continue;
                }
                if let Some(cell) = screen.cell(row, col) {
                    if cell.is_wide_continuation() && c > 0 {
                        dirty[c - 1] = true;
                    }
                    if cell.is_wide() && c + 1 < usize::from(cols) {
                        dirty[c + 1] = true;
                    }
                }
            }
            for col in (0..cols).rev() {
                let c = usize::from(col);
                if dirty[c] && c > 0 && screen.cell(row, col).is_some_and(|cell| cell.is_wide_continuation()) {
                    dirty[c - 1] = true;
                }
            }
            let mut col = 0;
            while col < cols {
                if !dirty[usize::from(col)] {
                    col += 1;
                    continue;
                }
                let start = col;
                // Runs separated by a single clean cell become one rectangle: one rectangle is
                // cheaper to send than two with a one-cell gap.
                while col < cols && (dirty[usize::from(col)] || (col + 1 < cols && dirty[usize::from(col) + 1])) {
                    let now = drawn_at(screen, row, col, cursor, highlight);
                    // After a full clear, blank default cells are already right.
                    if dirty[usize::from(col)] && !(full && is_plain_blank(&now)) {
                        self.draw_cell(pixels, size, screen, row, col, &now);
                        self.prev[base + usize::from(col)] = Some(now);
                    } else if dirty[usize::from(col)] {
                        self.prev[base + usize::from(col)] = Some(now);
                    }
                    col += 1;
                }
                let rect = Rect::new(start * m.width, row * m.height, (col - start) * m.width, m.height);
                push_merged(&mut damage, rect);
            }
        }
        if full {
            return vec![size.rect()];
        }
        damage
    }

    fn draw_cell(&self, pixels: &mut [u8], size: Size, screen: &vt100::Screen, row: u16, col: u16, drawn: &Drawn) {
        let m = self.face.metrics;
        let x0 = col * m.width;
        let y0 = row * m.height;
        let (mut fg, mut bg, inverse) = match &drawn.cell {
            Some(cell) => {
                if cell.is_wide_continuation() && col > 0 && screen.cell(row, col - 1).is_some_and(|c| c.is_wide()) {
                    // Drawn by the wide character to its left.
                    return;
                }
                let bg = resolve(cell.bgcolor(), DEFAULT_BG, false);
                let fg = resolve(cell.fgcolor(), DEFAULT_FG, cell.bold());
                (if cell.dim() { mix(bg, fg, 128) } else { fg }, bg, cell.inverse())
            }
            None => (DEFAULT_FG, DEFAULT_BG, false),
        };
        let span = if drawn.cell.as_ref().is_some_and(|c| c.is_wide()) && col + 1 < self.cols { 2 } else { 1 };
        // A block cursor shows the cell inverted, and so does the selection.
        if inverse ^ drawn.cursor ^ drawn.selected {
            std::mem::swap(&mut fg, &mut bg);
        }
        let cell_rect = Rect::new(x0, y0, m.width * span, m.height).intersect(size.rect());
        if cell_rect.is_empty() {
            return;
        }
        fill(pixels, size, cell_rect, bg);
        let Some(cell) = &drawn.cell else { return };
        let stride = usize::from(size.width) * BYTES_PER_PIXEL;
        for c in cell.contents().chars() {
            let glyph = self.face.glyph(c, cell.bold());
            for gy in 0..glyph.height {
                let y = i32::from(y0) + glyph.top + gy as i32;
                if y < i32::from(cell_rect.y) || y >= cell_rect.bottom() as i32 {
                    continue;
                }
                for gx in 0..glyph.width {
                    let a = glyph.coverage[gy * glyph.width + gx];
                    if a == 0 {
                        continue;
                    }
                    let x = i32::from(x0) + glyph.left + gx as i32;
                    if x < i32::from(cell_rect.x) || x >= cell_rect.right() as i32 {
                        continue;
                    }
                    let i = y as usize * stride + x as usize * BYTES_PER_PIXEL;
                    let under = Rgb(pixels[i + 2], pixels[i + 1], pixels[i]);
                    put(&mut pixels[i..i + 4], mix(under, fg, a));
                }
            }
        }
        if cell.underline() {
            let line = Rect::new(x0, y0 + m.underline_y, m.width * span, m.underline_thickness);
            fill(pixels, size, line.intersect(cell_rect), fg);
        }
    }
}

/// The cursor's cell in the visible part of the screen (the view may be scrolled back).
fn cursor_in_view(screen: &vt100::Screen, cols: u16, rows: u16) -> Option<(u16, u16)> {
    if screen.hide_cursor() {
        return None;
    }
    let (row, col) = screen.cursor_position();
    let row = usize::from(row) + screen.scrollback();
    if row >= usize::from(rows) {
        return None;
    }
    Some((row as u16, col.min(cols.saturating_sub(1))))
}

fn drawn_at(screen: &vt100::Screen, row: u16, col: u16, cursor: Option<(u16, u16)>, highlight: Option<Span>) -> Drawn {
    Drawn {
        cell: screen.cell(row, col).cloned(),
        cursor: cursor == Some((row, col)),
        selected: highlight.is_some_and(|span| span.contains((row, col))),
    }
}

fn is_plain_blank(drawn: &Drawn) -> bool {
    !drawn.cursor
        && !drawn.selected
        && drawn.cell.as_ref().is_some_and(|c| {
            !c.has_contents()
                && c.bgcolor() == vt100::Color::Default
                && !c.inverse()
                && !c.underline()
                && !c.is_wide_continuation()
        })
}

/// Add a row-run rectangle, merging it into the previous row's run when they share a span.
fn push_merged(damage: &mut Vec<Rect>, rect: Rect) {
    if let Some(prev) = damage.iter_mut().rev().find(|r| r.x == rect.x && r.width == rect.width && r.bottom() == u32::from(rect.y)) {
        prev.height += rect.height;
        return;
    }
    damage.push(rect);
}

fn mix(from: Rgb, to: Rgb, a: u8) -> Rgb {
    let f = |x: u8, y: u8| ((u16::from(x) * u16::from(255 - a) + u16::from(y) * u16::from(a) + 127) / 255) as u8;
    Rgb(f(from.0, to.0), f(from.1, to.1), f(from.2, to.2))
}

fn put(px: &mut [u8], c: Rgb) {
    px[0] = c.2;
    px[1] = c.1;
    px[2] = c.0;
    px[3] = 0;
}

/// Paint the whole canvas, writing only rows that are not that colour yet: a new canvas is
/// zero-filled memory that the kernel has not backed with pages, and it stays that way where
/// the screen is empty (black), so an idle session costs memory only for the rows it shows.
fn clear(pixels: &mut [u8], size: Size, c: Rgb) {
    let bgrx = [c.2, c.1, c.0, 0];
    let stride = usize::from(size.width) * BYTES_PER_PIXEL;
    for row in pixels.chunks_exact_mut(stride.max(1)) {
        if row.chunks_exact(BYTES_PER_PIXEL).any(|px| px != bgrx) {
            for px in row.chunks_exact_mut(BYTES_PER_PIXEL) {
                px.copy_from_slice(&bgrx);
            }
        }
    }
}

fn fill(pixels: &mut [u8], size: Size, rect: Rect, c: Rgb) {
    let rect = rect.intersect(size.rect());
    if rect.is_empty() {
        return;
    }
    let stride = usize::from(size.width) * BYTES_PER_PIXEL;
    let bgrx = [c.2, c.1, c.0, 0];
    let row_bytes = usize::from(rect.width) * BYTES_PER_PIXEL;
    let first = usize::from(rect.y) * stride + usize::from(rect.x) * BYTES_PER_PIXEL;
    for px in pixels[first..first + row_bytes].chunks_exact_mut(BYTES_PER_PIXEL) {
        px.copy_from_slice(&bgrx);
    }
    // Every other row is a copy of the first.
    for y in 1..usize::from(rect.height) {
        pixels.copy_within(first..first + row_bytes, first + y * stride);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU16;

    fn parser(cols: u16, rows: u16) -> vt100::Parser {
        vt100::Parser::new(NonZeroU16::new(rows).unwrap(), NonZeroU16::new(cols).unwrap(), 100)
    }

    fn setup(cols: u16, rows: u16, extra: Size) -> (vt100::Parser, Renderer, Arc<Canvas>) {
        let face = Face::get(16.0);
        let m = face.metrics;
        let size = Size::new(cols * m.width + extra.width, rows * m.height + extra.height);
        let canvas = Canvas::new(size);
        (parser(cols, rows), Renderer::new(face, cols, rows), canvas)
    }

    fn pixel(canvas: &Canvas, x: u16, y: u16) -> Rgb {
        let p = canvas.read(Rect::new(x, y, 1, 1));
        Rgb(p[2], p[1], p[0])
    }

    #[test]
    fn palette_matches_xterm() {
        assert_eq!(palette(1), Rgb(205, 0, 0));
        assert_eq!(palette(16), Rgb(0, 0, 0));
        assert_eq!(palette(21), Rgb(0, 0, 255));
        assert_eq!(palette(196), Rgb(255, 0, 0));
        assert_eq!(palette(232), Rgb(8, 8, 8));
        assert_eq!(palette(255), Rgb(238, 238, 238));
    }

    #[test]
    fn first_render_is_full_then_one_cell_change_is_small() {
        let (mut p, mut r, canvas) = setup(20, 5, Size::new(7, 3));
        let mut sub = canvas.subscribe();
        sub.take();
        p.process(b"hello");
        r.render(p.screen(), &canvas);
        let frame = sub.take().unwrap();
        assert_eq!(frame.regions.len(), 1);
        assert_eq!(frame.regions[0].rect, canvas.size().rect());

        // Typing one character changes that cell and moves the cursor to the next one.
        p.process(b"!");
        r.render(p.screen(), &canvas);
        let frame = sub.take().unwrap();
        let m = r.metrics();
        let area: u64 = frame.regions.iter().map(|u| u.rect.area()).sum();
        assert!(area <= 2 * u64::from(m.width) * u64::from(m.height), "{:?}", frame.regions);
        let bounds = frame.regions.iter().fold(Rect::new(0, 0, 0, 0), |a, u| a.union(u.rect));
        assert_eq!(bounds, Rect::new(5 * m.width, 0, 2 * m.width, m.height));

        // Nothing changed: no damage at all.
        r.render(p.screen(), &canvas);
        assert!(sub.take().is_none());
    }

    #[test]
    fn draws_colours_cursor_and_background_outside_grid() {
        let (mut p, mut r, canvas) = setup(10, 3, Size::new(5, 4));
        // A red-background space at (0,0), a truecolor one at (1,0); cursor ends at (0,1).
        p.process(b"\x1b[41m \x1b[48;2;10;20;30m \x1b[0m\r\n");
        r.render(p.screen(), &canvas);
        let m = r.metrics();
        assert_eq!(pixel(&canvas, 1, 1), Rgb(205, 0, 0));
        assert_eq!(pixel(&canvas, m.width + 1, 1), Rgb(10, 20, 30));
        assert_eq!(pixel(&canvas, 2 * m.width + 1, 1), DEFAULT_BG);
        // The block cursor is an inverted blank: default foreground.
        assert_eq!(pixel(&canvas, 1, m.height + 1), DEFAULT_FG);
        // Right of and below the grid: background.
        let size = canvas.size();
        assert_eq!(pixel(&canvas, size.width - 1, size.height - 1), DEFAULT_BG);
        // Hidden cursor: the cell goes back to background, and only it is damaged.
        let mut sub = canvas.subscribe();
        sub.take();
        p.process(b"\x1b[?25l");
        r.render(p.screen(), &canvas);
        assert_eq!(pixel(&canvas, 1, m.height + 1), DEFAULT_BG);
        let frame = sub.take().unwrap();
        assert_eq!(frame.regions.len(), 1);
        assert_eq!(frame.regions[0].rect, Rect::new(0, m.height, m.width, m.height));
    }

    #[test]
    fn glyph_ink_uses_the_cell_colours() {
        let (mut p, mut r, canvas) = setup(4, 1, Size::new(0, 0));
        p.process(b"\x1b[?25l\x1b[1;32;44m#\x1b[0m \x1b[7mX\x1b[27;4m_");
        r.render(p.screen(), &canvas);
        let m = r.metrics();
        let cell = canvas.read(Rect::new(0, 0, m.width, m.height));
        let colours: std::collections::HashSet<(u8, u8, u8)> = cell.chunks(4).map(|p| (p[2], p[1], p[0])).collect();
        // Bold green on blue: bright green ink, blue background, and blends between them.
        assert!(colours.contains(&(0, 255, 0)), "{colours:?}");
        assert!(colours.contains(&(0, 0, 238)), "{colours:?}");
        // Inverse: the background of the third cell is the default foreground.
        assert_eq!(pixel(&canvas, 2 * m.width, 0), DEFAULT_FG);
        // Underline: a foreground row at the underline position of the fourth cell.
        assert_eq!(pixel(&canvas, 3 * m.width + 1, m.underline_y), DEFAULT_FG);
    }

    #[test]
    fn the_selection_is_drawn_inverted_and_damages_only_its_cells() {
        let (mut p, mut r, canvas) = setup(10, 3, Size::new(0, 0));
        p.process(b"\x1b[?25labc");
        r.render(p.screen(), &canvas);
        let m = r.metrics();
        let mut sub = canvas.subscribe();
        sub.take();
        r.set_highlight(Some(Span { start: (0, 1), end: (1, 0) }));
        r.render(p.screen(), &canvas);
        // Selected blanks show the default foreground; the cell before stays background.
        assert_eq!(pixel(&canvas, 1, 1), DEFAULT_BG);
        assert_eq!(pixel(&canvas, 9 * m.width + 1, 1), DEFAULT_FG, "the rest of the first row");
        assert_eq!(pixel(&canvas, 1, m.height + 1), DEFAULT_FG, "the first cell of the second row");
        assert_eq!(pixel(&canvas, m.width + 1, m.height + 1), DEFAULT_BG);
        // Only the two rows the selection touches are damaged.
        let frame = sub.take().unwrap();
        let bounds = frame.regions.iter().fold(Rect::new(0, 0, 0, 0), |a, u| a.union(u.rect));
        assert_eq!((bounds.y, bounds.height), (0, 2 * m.height), "{:?}", frame.regions.iter().map(|u| u.rect).collect::<Vec<_>>());
        r.set_highlight(None);
        r.render(p.screen(), &canvas);
        assert_eq!(pixel(&canvas, 9 * m.width + 1, 1), DEFAULT_BG);
    }

    #[test]
    fn scrolling_damages_the_rows_that_moved_as_few_rectangles() {
        let (mut p, mut r, canvas) = setup(10, 4, Size::new(0, 0));
        p.process(b"a\r\nb\r\nc\r\nd");
        r.render(p.screen(), &canvas);
        let mut sub = canvas.subscribe();
        sub.take();
        p.process(b"\r\ne");
        r.render(p.screen(), &canvas);
        let frame = sub.take().unwrap();
        assert!(frame.regions.len() <= 2, "{:?}", frame.regions.iter().map(|u| u.rect).collect::<Vec<_>>());
    }

    #[test]
    fn wide_characters_redraw_both_cells() {
        let (mut p, mut r, canvas) = setup(6, 1, Size::new(0, 0));
        p.process("a\u{4e2d}b".as_bytes());
        r.render(p.screen(), &canvas);
        let mut sub = canvas.subscribe();
        sub.take();
        p.process(b"\r\x1b[1Cx");
        r.render(p.screen(), &canvas);
        let m = r.metrics();
        let frame = sub.take().unwrap();
        let bounds = frame.regions.iter().fold(Rect::new(0, 0, 0, 0), |a, u| a.union(u.rect));
        assert_eq!(bounds.x, m.width);
        assert!(bounds.width >= 2 * m.width);
    }
}
