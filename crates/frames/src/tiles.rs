//! Tile differencing: damage says where the desktop drew, not whether the pixels changed. An
//! application that repaints a window with what it already showed, a panel redrawn every
//! second, a terminal rewriting a line with the same text: X reports all of it. A group keeps
//! a 128-bit hash of every 64x64 cell of its view as last encoded, and a shared encode sends
//! only the cells whose pixels differ from that. Memory is 18 bytes a cell (5 KiB at 1280x800),
//! not a copy of the screen.
//!
//! A cell the damage covers only in part is always sent (its hash would need the rest of the
//! cell) and its hash is forgotten. So is a cell that keeps changing: after it differed in
//! consecutive comparisons it is sent unhashed for a few damages more (up to [`MAX_SKIP`]),
//! then hashed twice running to see whether it still moves. A full-screen animation then costs
//! a quarter of the hashing (it was 6 % of a core at 1280x800 and 60 frames a second).
//!
//! What a group did not send stays correct for every feed: a feed that missed an encode is owed
//! that encode's rectangles (the stage's history), whatever later encodes skipped.

use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{CanvasUpdate, Rect, Size};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

/// The cell edge: RemoteFX's tile, and a multiple of every encoder's x alignment.
pub(crate) const CELL: u16 = 64;

/// What a cell looked like when last encoded; `UNKNOWN` until then (a hash of 0 is taken as
/// unknown too: such a cell is simply sent).
const UNKNOWN: u128 = 0;

/// The most damages in a row a moving cell is sent without being hashed.
const MAX_SKIP: u8 = 6;

#[derive(Debug)]
pub(crate) struct TileHashes {
    size: Size,
    columns: usize,
    hashes: Vec<u128>,
    /// Per cell: how its last comparisons went (see [`Motion`]).
    motion: Vec<Motion>,
}

/// A cell's recent history: how many comparisons in a row found it changed, and how many more
/// damages it is sent without hashing.
#[derive(Debug, Clone, Copy, Default)]
struct Motion {
    streak: u8,
    skip: u8,
}

impl Default for TileHashes {
    fn default() -> Self {
        Self { size: Size::new(0, 0), columns: 0, hashes: Vec::new(), motion: Vec::new() }
    }
}

impl TileHashes {
    /// Forget every cell: the view is now `size` (a new view, a resize).
    pub(crate) fn reset(&mut self, size: Size) {
        self.size = size;
        self.columns = usize::from(size.width.div_ceil(CELL));
        self.hashes = vec![UNKNOWN; self.columns * usize::from(size.height.div_ceil(CELL))];
        self.motion = vec![Motion::default(); self.hashes.len()];
    }

    /// The parts of `rects` (view coordinates, inside `view`: the whole view's pixels) that
    /// differ from what was last encoded, cut along cell edges; every cell's hash is brought up
    /// to date. `all`: send everything anyway (a whole repaint), only recording the hashes.
    pub(crate) fn changed(&mut self, view: PixelsRef<'_>, rects: Vec<Rect>, all: bool) -> Vec<Rect> {
        let mut out = Vec::with_capacity(rects.len());
        for r in rects {
            if r.is_empty() || r.right() > u32::from(self.size.width) || r.bottom() > u32::from(self.size.height) {
                // Not of this view (it cannot happen): sent as it is, nothing recorded.
                out.push(r);
                continue;
            }
            out.extend(cell_runs(r, |part| {
                let index = usize::from(part.y / CELL) * self.columns + usize::from(part.x / CELL);
                if part != self.cell(part.x / CELL, part.y / CELL) {
                    self.hashes[index] = UNKNOWN;
                    self.motion[index] = Motion::default();
                    return false;
                }
                let motion = &mut self.motion[index];
                if motion.skip > 0 {
                    // Still moving, most likely: sent, and what it was is forgotten (a hash
                    // kept from before would match a picture that came back).
                    motion.skip -= 1;
                    self.hashes[index] = UNKNOWN;
                    return false;
                }
                let hash = hash_cell(view, part);
                let known = self.hashes[index] != UNKNOWN;
                let same = known && self.hashes[index] == hash;
                self.hashes[index] = hash;
                if same {
                    *motion = Motion::default();
                } else if known {
                    motion.streak = motion.streak.saturating_add(1);
                    motion.skip = (motion.streak - 1).min(MAX_SKIP);
                }
                same && !all
            }));
        }
        out
    }

    /// Cell (`cx`, `cy`) as far as it lies inside the view.
    fn cell(&self, cx: u16, cy: u16) -> Rect {
        let (x, y) = (cx * CELL, cy * CELL);
        Rect::new(x, y, CELL.min(self.size.width - x), CELL.min(self.size.height - y))
    }
}

/// Cut `r` along the 64x64 cell grid (view coordinates) and keep what `leave_out` keeps: it
/// sees each cell's part inside `r` (whole cells and the rectangle's ragged edges) and says
/// whether to leave it out. What is left goes as one rectangle per run of neighbouring cells in
/// a band of cell rows; when nothing was left out, `r` as it is.
pub(crate) fn cell_runs(r: Rect, mut leave_out: impl FnMut(Rect) -> bool) -> Vec<Rect> {
    let mut runs = Vec::new();
    let mut left_out = 0usize;
    let mut y = r.y;
    while u32::from(y) < r.bottom() {
        let band_end = ((y / CELL + 1) * CELL).min(r.y + r.height);
        let band = runs.len();
        let mut x = r.x;
        while u32::from(x) < r.right() {
            let cell_end = ((x / CELL + 1) * CELL).min(r.x + r.width);
            if leave_out(Rect::new(x, y, cell_end - x, band_end - y)) {
                left_out += 1;
            } else if let Some(last) = runs[band..].last_mut().filter(|run: &&mut Rect| run.right() == u32::from(x)) {
                last.width += cell_end - x;
            } else {
                runs.push(Rect::new(x, y, cell_end - x, band_end - y));
            }
            x = cell_end;
        }
        y = band_end;
    }
    if left_out == 0 {
        return vec![r];
    }
    runs
}

/// Pixels of `rect` read where they lie: BGRX rows `stride` bytes apart, the first at `data[0]`
/// (an update's own pixels, or a canvas seen in place).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PixelsRef<'a> {
    pub rect: Rect,
    pub data: &'a [u8],
    pub stride: usize,
}

impl<'a> From<&'a CanvasUpdate> for PixelsRef<'a> {
    fn from(update: &'a CanvasUpdate) -> Self {
        PixelsRef { rect: update.rect, data: &update.pixels, stride: usize::from(update.rect.width) * BYTES_PER_PIXEL }
    }
}

impl<'a> PixelsRef<'a> {
    /// The rows of `part` (inside `rect`), top to bottom.
    pub(crate) fn rows(self, part: Rect) -> impl DoubleEndedIterator<Item = &'a [u8]> + Clone {
        let row = usize::from(part.width) * BYTES_PER_PIXEL;
        let dx = usize::from(part.x - self.rect.x) * BYTES_PER_PIXEL;
        let dy = usize::from(part.y - self.rect.y);
        (dy..dy + usize::from(part.height)).map(move |y| &self.data[y * self.stride + dx..][..row])
    }

    /// `part` (inside `rect`) read in the same place: no pixel is copied.
    pub(crate) fn part(self, part: Rect) -> PixelsRef<'a> {
        let at = usize::from(part.y - self.rect.y) * self.stride + usize::from(part.x - self.rect.x) * BYTES_PER_PIXEL;
        PixelsRef { rect: part, data: self.data.get(at..).unwrap_or_default(), stride: self.stride }
    }

    /// Whether every pixel of `rect` is there.
    pub(crate) fn is_whole(self) -> bool {
        let (w, h) = (usize::from(self.rect.width), usize::from(self.rect.height));
        w > 0 && h > 0 && self.stride >= w * BYTES_PER_PIXEL && self.data.len() >= (h - 1) * self.stride + w * BYTES_PER_PIXEL
    }
}

/// The one colour of `part` of `region` (BGRX with the X byte cleared), if all its pixels have it.
pub(crate) fn solid_colour(region: PixelsRef<'_>, part: Rect) -> Option<[u8; 4]> {
    let first = region.rows(part).next()?;
    let colour = [first[0], first[1], first[2], 0];
    let same = region.rows(part).all(|row| row.chunks_exact(BYTES_PER_PIXEL).all(|px| px[..3] == colour[..3]));
    same.then_some(colour)
}

/// The hash of `cell` (inside `region`) from the region's pixels. The unshown X byte counts
/// too: if a capture changes only that, the cell goes again, which costs bytes, never pixels.
///
/// Each row is hashed where it lies and the cell's hash is that of the row hashes: a streaming
/// hasher would copy every row into its buffer first (a whole screen's copy a frame).
fn hash_cell(region: PixelsRef<'_>, cell: Rect) -> u128 {
    let mut row_hashes = [0u8; CELL as usize * 8];
    for (row, out) in region.rows(cell).zip(row_hashes.chunks_exact_mut(8)) {
        out.copy_from_slice(&xxh3_64(row).to_le_bytes());
    }
    xxh3_128(&row_hashes[..usize::from(cell.height) * 8])
}

/// The pixels of `rect` out of `region`, which contains it and has all its pixels.
pub(crate) fn crop(region: PixelsRef<'_>, rect: Rect) -> Vec<u8> {
    let mut out = Vec::with_capacity(rect.area() as usize * BYTES_PER_PIXEL);
    for row in region.rows(rect) {
        out.extend_from_slice(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: Size = Size::new(200, 150);

    /// A picture of `SIZE` where pixel (x, y) has a colour from `f`.
    fn screen(f: impl Fn(u16, u16) -> u8) -> Vec<u8> {
        let mut pixels = Vec::new();
        for y in 0..SIZE.height {
            for x in 0..SIZE.width {
                let v = f(x, y);
                pixels.extend([v, v.wrapping_mul(3), v.wrapping_add(7), 0xff]);
            }
        }
        pixels
    }

    /// The whole screen seen in place.
    fn view(pixels: &[u8]) -> PixelsRef<'_> {
        PixelsRef { rect: SIZE.rect(), data: pixels, stride: usize::from(SIZE.width) * BYTES_PER_PIXEL }
    }

    fn pattern(x: u16, y: u16) -> u8 {
        (x / 3 + y * 5) as u8
    }

    #[test]
    fn the_same_pixels_again_are_not_sent() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        let pixels = screen(pattern);
        let first = tiles.changed(view(&pixels), vec![SIZE.rect()], false);
        assert_eq!(first, [SIZE.rect()], "nothing known yet: all of it, as it came");
        assert!(tiles.changed(view(&pixels), vec![SIZE.rect()], false).is_empty());
        assert_eq!(tiles.changed(view(&pixels), vec![SIZE.rect()], true), [SIZE.rect()], "a whole repaint");
    }

    #[test]
    fn only_the_cells_that_changed_are_sent() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        tiles.changed(view(&screen(pattern)), vec![SIZE.rect()], false);
        // One pixel in cell (1, 0), two in the short bottom-right cell (3, 2).
        let changed = screen(|x, y| if (x, y) == (100, 10) || (x, y) == (199, 149) || (x, y) == (195, 130) { 9 } else { pattern(x, y) });
        let sent = tiles.changed(view(&changed), vec![SIZE.rect()], false);
        assert_eq!(sent, [Rect::new(64, 0, 64, 64), Rect::new(192, 128, 8, 22)]);
        // Neighbouring changed cells make one rectangle per band; the two cells changed before
        // are back to the pattern, which is a change too.
        let wide = screen(|x, y| if y == 70 && (10..140).contains(&x) { 1 } else { pattern(x, y) });
        let sent = tiles.changed(view(&wide), vec![SIZE.rect()], false);
        assert_eq!(sent, [Rect::new(64, 0, 64, 64), Rect::new(0, 64, 192, 64), Rect::new(192, 128, 8, 22)]);
    }

    #[test]
    fn cells_covered_in_part_are_always_sent_and_forgotten() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        let pixels = screen(pattern);
        tiles.changed(view(&pixels), vec![SIZE.rect()], false);
        let part = Rect::new(10, 10, 20, 20);
        assert_eq!(tiles.changed(view(&pixels), vec![part], false), [part]);
        // Cell (0, 0) is unknown now: sent even though it is as before, and only it.
        assert_eq!(tiles.changed(view(&pixels), vec![SIZE.rect()], false), [Rect::new(0, 0, 64, 64)]);
        assert!(tiles.changed(view(&pixels), vec![SIZE.rect()], false).is_empty());
        // A region across cell edges keeps its own edges: only the unchanged whole cells go.
        let across = Rect::new(60, 60, 80, 70);
        assert_eq!(tiles.changed(view(&pixels), vec![across], false), [Rect::new(60, 60, 80, 4), Rect::new(60, 64, 4, 64), Rect::new(128, 64, 12, 64), Rect::new(60, 128, 80, 2)]);
    }

    #[test]
    fn a_moving_cell_goes_unhashed_for_a_while_and_is_never_missed() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        let pictures: Vec<Vec<u8>> = (0..2u8).map(|n| screen(|x, y| pattern(x, y).wrapping_add(n))).collect();
        // Two pictures in turn: each damage differs from the one before, so each is sent (a
        // forgotten hash matching the picture that came back would leave the other shown).
        for i in 0..40 {
            assert_eq!(tiles.changed(view(&pictures[i % 2]), vec![SIZE.rect()], false), [SIZE.rect()], "damage {i}");
        }
        assert!(tiles.motion.iter().all(|m| m.streak >= 3), "every cell is known to move: {:?}", tiles.motion);
        // It stops moving: within a few damages nothing goes any more.
        let still = &pictures[0];
        let sent: Vec<usize> = (0..usize::from(MAX_SKIP) + 4).map(|_| tiles.changed(view(still), vec![SIZE.rect()], false).len()).collect();
        assert_eq!(sent.last(), Some(&0), "{sent:?}");
        assert!(sent[usize::from(MAX_SKIP) + 2..].iter().all(|&n| n == 0), "{sent:?}");
    }

    #[test]
    fn a_reset_forgets() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        let pixels = screen(pattern);
        tiles.changed(view(&pixels), vec![SIZE.rect()], false);
        tiles.reset(SIZE);
        assert_eq!(tiles.changed(view(&pixels), vec![SIZE.rect()], false), [SIZE.rect()]);
    }
}
