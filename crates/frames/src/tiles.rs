//! Tile differencing: damage says where the desktop drew, not whether the pixels changed. An
//! application that repaints a window with what it already showed, a panel redrawn every
//! second, a terminal rewriting a line with the same text: X reports all of it. A group keeps
//! a 128-bit hash of every 64x64 cell of its view as last encoded, and a shared encode sends
//! only the cells whose pixels differ from that. Memory is 16 bytes a cell (4 KiB at 1280x800),
//! not a copy of the screen.
//!
//! A cell the damage covers only in part is always sent (its hash would need the rest of the
//! cell) and its hash is forgotten. What a group did not send stays correct for every feed: a
//! feed that missed an encode is owed that encode's rectangles (the stage's history), whatever
//! later encodes skipped.

use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{CanvasUpdate, Rect, Size};
use xxhash_rust::xxh3::Xxh3;

/// The cell edge: RemoteFX's tile, and a multiple of every encoder's x alignment.
pub(crate) const CELL: u16 = 64;

/// What a cell looked like when last encoded; `UNKNOWN` until then (a hash of 0 is taken as
/// unknown too: such a cell is simply sent).
const UNKNOWN: u128 = 0;

#[derive(Debug)]
pub(crate) struct TileHashes {
    size: Size,
    columns: usize,
    hashes: Vec<u128>,
}

impl Default for TileHashes {
    fn default() -> Self {
        Self { size: Size::new(0, 0), columns: 0, hashes: Vec::new() }
    }
}

impl TileHashes {
    /// Forget every cell: the view is now `size` (a new view, a resize).
    pub(crate) fn reset(&mut self, size: Size) {
        self.size = size;
        self.columns = usize::from(size.width.div_ceil(CELL));
        self.hashes = vec![UNKNOWN; self.columns * usize::from(size.height.div_ceil(CELL))];
    }

    /// The parts of `regions` (view coordinates, every pixel present) that differ from what was
    /// last encoded, cut along cell edges; every cell's hash is brought up to date. `all`: send
    /// everything anyway (a whole repaint), only recording the hashes.
    pub(crate) fn changed(&mut self, regions: Vec<CanvasUpdate>, all: bool) -> Vec<CanvasUpdate> {
        let mut out = Vec::with_capacity(regions.len());
        for region in regions {
            let r = region.rect;
            if r.is_empty() || r.right() > u32::from(self.size.width) || r.bottom() > u32::from(self.size.height) {
                // Not of this view (it cannot happen): sent as it is, nothing recorded.
                out.push(region);
                continue;
            }
            cut_cells(region, &mut out, |part, region| {
                let index = usize::from(part.y / CELL) * self.columns + usize::from(part.x / CELL);
                if part != self.cell(part.x / CELL, part.y / CELL) {
                    self.hashes[index] = UNKNOWN;
                    return false;
                }
                let hash = hash_cell(region.into(), part);
                let same = hash != UNKNOWN && self.hashes[index] == hash;
                self.hashes[index] = hash;
                same && !all
            });
        }
        out
    }

    /// Cell (`cx`, `cy`) as far as it lies inside the view.
    fn cell(&self, cx: u16, cy: u16) -> Rect {
        let (x, y) = (cx * CELL, cy * CELL);
        Rect::new(x, y, CELL.min(self.size.width - x), CELL.min(self.size.height - y))
    }
}

/// Cut `region` along the 64x64 cell grid (view coordinates) and push to `out` what `leave_out`
/// keeps: it sees each cell's part inside the region (whole cells and the region's ragged
/// edges) and says whether to leave it out. What is left goes as one rectangle per run of
/// neighbouring cells in a band of cell rows; a region nothing is left out of goes as it is.
pub(crate) fn cut_cells(region: CanvasUpdate, out: &mut Vec<CanvasUpdate>, mut leave_out: impl FnMut(Rect, &CanvasUpdate) -> bool) {
    match cell_runs(region.rect, |part| leave_out(part, &region)) {
        None => out.push(region),
        Some(runs) => out.extend(runs.into_iter().map(|rect| CanvasUpdate { rect, pixels: crop((&region).into(), rect) })),
    }
}

/// [`cut_cells`] on a rectangle alone: the runs of cells left, or `None` when nothing was left
/// out (the rectangle stays as it is).
pub(crate) fn cell_runs(r: Rect, mut leave_out: impl FnMut(Rect) -> bool) -> Option<Vec<Rect>> {
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
    (left_out > 0).then_some(runs)
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
    fn rows(self, part: Rect) -> impl Iterator<Item = &'a [u8]> {
        let row = usize::from(part.width) * BYTES_PER_PIXEL;
        let dx = usize::from(part.x - self.rect.x) * BYTES_PER_PIXEL;
        let dy = usize::from(part.y - self.rect.y);
        (dy..dy + usize::from(part.height)).map(move |y| &self.data[y * self.stride + dx..][..row])
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
fn hash_cell(region: PixelsRef<'_>, cell: Rect) -> u128 {
    let mut hasher = Xxh3::new();
    for row in region.rows(cell) {
        hasher.update(row);
    }
    hasher.digest128()
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

    fn region(pixels: &[u8], rect: Rect) -> CanvasUpdate {
        let whole = CanvasUpdate { rect: SIZE.rect(), pixels: pixels.to_vec() };
        CanvasUpdate { rect, pixels: crop((&whole).into(), rect) }
    }

    fn rects(updates: &[CanvasUpdate]) -> Vec<Rect> {
        updates.iter().map(|u| u.rect).collect()
    }

    fn pattern(x: u16, y: u16) -> u8 {
        (x / 3 + y * 5) as u8
    }

    #[test]
    fn the_same_pixels_again_are_not_sent() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        let pixels = screen(pattern);
        let first = tiles.changed(vec![region(&pixels, SIZE.rect())], false);
        assert_eq!(rects(&first), [SIZE.rect()], "nothing known yet: all of it, as it came");
        assert!(tiles.changed(vec![region(&pixels, SIZE.rect())], false).is_empty());
        assert_eq!(rects(&tiles.changed(vec![region(&pixels, SIZE.rect())], true)), [SIZE.rect()], "a whole repaint");
    }

    #[test]
    fn only_the_cells_that_changed_are_sent_with_their_pixels() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        tiles.changed(vec![region(&screen(pattern), SIZE.rect())], false);
        // One pixel in cell (1, 0), two in the short bottom-right cell (3, 2).
        let changed = screen(|x, y| if (x, y) == (100, 10) || (x, y) == (199, 149) || (x, y) == (195, 130) { 9 } else { pattern(x, y) });
        let sent = tiles.changed(vec![region(&changed, SIZE.rect())], false);
        assert_eq!(rects(&sent), [Rect::new(64, 0, 64, 64), Rect::new(192, 128, 8, 22)]);
        for update in &sent {
            assert_eq!(update.pixels, region(&changed, update.rect).pixels);
        }
        // Neighbouring changed cells make one rectangle per band; the two cells changed before
        // are back to the pattern, which is a change too.
        let wide = screen(|x, y| if y == 70 && (10..140).contains(&x) { 1 } else { pattern(x, y) });
        let sent = tiles.changed(vec![region(&wide, SIZE.rect())], false);
        assert_eq!(rects(&sent), [Rect::new(64, 0, 64, 64), Rect::new(0, 64, 192, 64), Rect::new(192, 128, 8, 22)]);
    }

    #[test]
    fn cells_covered_in_part_are_always_sent_and_forgotten() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        let pixels = screen(pattern);
        tiles.changed(vec![region(&pixels, SIZE.rect())], false);
        let part = Rect::new(10, 10, 20, 20);
        assert_eq!(rects(&tiles.changed(vec![region(&pixels, part)], false)), [part]);
        // Cell (0, 0) is unknown now: sent even though it is as before, and only it.
        assert_eq!(rects(&tiles.changed(vec![region(&pixels, SIZE.rect())], false)), [Rect::new(0, 0, 64, 64)]);
        assert!(tiles.changed(vec![region(&pixels, SIZE.rect())], false).is_empty());
        // A region across cell edges keeps its own edges: only the unchanged whole cells go.
        let across = Rect::new(60, 60, 80, 70);
        assert_eq!(rects(&tiles.changed(vec![region(&pixels, across)], false)), [Rect::new(60, 60, 80, 4), Rect::new(60, 64, 4, 64), Rect::new(128, 64, 12, 64), Rect::new(60, 128, 80, 2)]);
    }

    #[test]
    fn a_reset_forgets() {
        let mut tiles = TileHashes::default();
        tiles.reset(SIZE);
        let pixels = screen(pattern);
        tiles.changed(vec![region(&pixels, SIZE.rect())], false);
        tiles.reset(SIZE);
        assert_eq!(rects(&tiles.changed(vec![region(&pixels, SIZE.rect())], false)), [SIZE.rect()]);
    }
}
