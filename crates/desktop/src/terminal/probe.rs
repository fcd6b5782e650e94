//! Finding text on a screen image, for tests that look at what a client shows.
//!
//! The terminal desktop draws text cell-aligned from the top-left corner with the embedded font,
//! so a client's image of it can be searched cell by cell: render the expected glyphs with the
//! same font and size, and at each cell position compare their shapes with the image. Each cell
//! is read against its own colours (any foreground on any background) as a coverage map, so
//! the small value shifts of lossy codecs do not matter. A cell matches when its shape is close
//! to the expected glyph *and* no other glyph of the font (ASCII and Latin-1) is closer: "O" is
//! not read as "0", nor "e" as "c", even where they differ in a handful of pixels.

use super::font::Face;

/// Glyph coverage at or above this is ink the image must show; at or below it, background.
/// In between (anti-aliased edges) is not counted by the coarse shape check.
const INK: u8 = 200;
const PAPER: u8 = 30;
/// Foreground and background must differ by at least this much (RGB distance) to read a glyph.
const MIN_CONTRAST: f32 = 48.0;
/// Cells of one match must agree on their background colour within this distance.
const SAME_COLOUR: f32 = 56.0;

/// Where `text` appears in an RGBA image (`width * height * 4` bytes, rows top to bottom) of a
/// terminal desktop drawn at `font_px`: the (column, row) of its first character, searching rows
/// top to bottom, then columns left to right. Regular and bold text are found. Text without any
/// visible glyph (only spaces) is never found. Every character counts as one cell.
pub fn find_text(rgba: &[u8], width: u32, height: u32, font_px: f32, text: &str) -> Option<(u32, u32)> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() || rgba.len() < width as usize * height as usize * 4 {
        return None;
    }
    let face = Face::get(font_px);
    let m = face.metrics;
    let (cw, ch) = (u32::from(m.width), u32::from(m.height));
    let cols = width / cw;
    let rows = height / ch;
    let n = chars.len() as u32;
    if n > cols {
        return None;
    }
    let image = Image { rgba, width: width as usize };
    for bold in [false, true] {
        let masks: Vec<Vec<u8>> = chars.iter().map(|&c| face.cell_mask(c, bold, 1)).collect();
        if masks.iter().all(|mask| mask.iter().all(|&a| a < INK)) {
            return None;
        }
        // Every glyph a cell could be confused with, made on first use: most searches never get
        // past the coarse check.
        let mut rivals: Option<Vec<Vec<u8>>> = None;
        for row in 0..rows {
            for col in 0..=cols - n {
                let origin = ((col * cw) as usize, (row * ch) as usize);
                let Some(cells) = read_cells(&image, origin, cw as usize, ch as usize, &masks) else {
                    continue;
                };
                let all = rivals.get_or_insert_with(|| {
                    ('!'..='~').chain('\u{a1}'..='\u{ff}').map(|c| face.cell_mask(c, bold, 1)).collect()
                });
                let unrivalled = cells.iter().zip(&masks).all(|(seen, mask)| {
                    seen.as_ref().is_none_or(|seen| {
                        let own = difference(seen, mask);
                        all.iter().filter(|rival| *rival != mask).all(|rival| difference(seen, rival) >= own)
                    })
                });
                if unrivalled {
                    return Some((col, row));
                }
            }
        }
    }
    None
}

struct Image<'a> {
    rgba: &'a [u8],
    width: usize,
}

impl Image<'_> {
    fn pixel(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width + x) * 4;
        [f32::from(self.rgba[i]), f32::from(self.rgba[i + 1]), f32::from(self.rgba[i + 2])]
    }
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// How far a seen coverage map (0..=1 per pixel) is from a glyph mask.
fn difference(seen: &[f32], mask: &[u8]) -> f32 {
    seen.iter().zip(mask).map(|(&t, &a)| (t - f32::from(a) / 255.0).abs()).sum()
}

/// The coarse check of the span of cells starting at `origin` (pixels) against `masks`: each
/// glyph's solid pixels agree with the image but for a few, and the colours are consistent.
/// Returns each cell's coverage as seen in the image (`None` for blank cells).
fn read_cells(image: &Image, origin: (usize, usize), cw: usize, ch: usize, masks: &[Vec<u8>]) -> Option<Vec<Option<Vec<f32>>>> {
    let mut span: Option<([f32; 3], [f32; 3])> = None;
    let mut cells = Vec::with_capacity(masks.len());
    let mut blanks = Vec::new();
    for (i, mask) in masks.iter().enumerate() {
        let x0 = origin.0 + i * cw;
        let (mut ink, mut paper) = (([0f32; 3], 0usize), ([0f32; 3], 0usize));
        for y in 0..ch {
            for x in 0..cw {
                let a = mask[y * cw + x];
                let target = if a >= INK {
                    &mut ink
                } else if a <= PAPER {
                    &mut paper
                } else {
                    continue;
                };
                let p = image.pixel(x0 + x, origin.1 + y);
                for (sum, v) in target.0.iter_mut().zip(p) {
                    *sum += v;
                }
                target.1 += 1;
            }
        }
        if ink.1 == 0 {
            blanks.push(x0);
            cells.push(None);
            continue;
        }
        let mean = |(sum, count): ([f32; 3], usize)| sum.map(|s| s / count.max(1) as f32);
        let (fg, bg) = (mean(ink), mean(paper));
        let contrast = distance(fg, bg);
        if contrast < MIN_CONTRAST {
            return None;
        }
        if let Some((span_fg, span_bg)) = span {
            // Thin glyphs lose more of their ink to a soft codec than thick ones: the
            // foreground only has to be roughly the same, the background closely.
            if distance(fg, span_fg) > contrast.max(distance(span_fg, span_bg)) / 2.0 || distance(bg, span_bg) > SAME_COLOUR {
                return None;
            }
        } else {
            span = Some((fg, bg));
        }
        // Each pixel's place between background (0) and foreground (1).
        let axis = [fg[0] - bg[0], fg[1] - bg[1], fg[2] - bg[2]];
        let norm = contrast * contrast;
        let mut seen = Vec::with_capacity(cw * ch);
        let mut wrong = 0;
        let allowed = 2 + (ink.1 + paper.1) / 16;
        for y in 0..ch {
            for x in 0..cw {
                let p = image.pixel(x0 + x, origin.1 + y);
                let t = ((p[0] - bg[0]) * axis[0] + (p[1] - bg[1]) * axis[1] + (p[2] - bg[2]) * axis[2]) / norm;
                let a = mask[y * cw + x];
                if (a >= INK && t < 0.5) || (a <= PAPER && t > 0.5) {
                    wrong += 1;
                    if wrong > allowed {
                        return None;
                    }
                }
                seen.push(t.clamp(0.0, 1.0));
            }
        }
        cells.push(Some(seen));
    }
    let (fg, bg) = span?;
    // Spaces inside the text: the whole cell is background (nothing drawn there).
    let limit = distance(fg, bg) / 2.0;
    let blank = |x0: usize| (0..ch).all(|y| (0..cw).all(|x| distance(image.pixel(x0 + x, origin.1 + y), bg) < limit));
    blanks.into_iter().all(blank).then_some(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terminal::render::Renderer;
    use crate::{Canvas, Size};
    use std::num::NonZeroU16;

    /// Render terminal output into an RGBA image the way a client would receive it.
    fn screen(output: &str, cols: u16, rows: u16, extra: (u16, u16)) -> (Vec<u8>, u32, u32) {
        let face = Face::get(16.0);
        let m = face.metrics;
        let size = Size::new(cols * m.width + extra.0, rows * m.height + extra.1);
        let canvas = Canvas::new(size);
        let mut parser = vt100::Parser::new(NonZeroU16::new(rows).unwrap(), NonZeroU16::new(cols).unwrap(), 0);
        parser.process(output.as_bytes());
        Renderer::new(face, cols, rows).render(parser.screen(), &canvas);
        let bgrx = canvas.read(size.rect());
        let rgba = bgrx.chunks(4).flat_map(|p| [p[2], p[1], p[0], 255]).collect();
        (rgba, u32::from(size.width), u32::from(size.height))
    }

    /// Deterministic noise of up to ±`amplitude` per channel (a lossy codec's error).
    fn noise(rgba: &mut [u8], amplitude: i32) {
        let mut state: u32 = 0x1234_5678;
        for (i, v) in rgba.iter_mut().enumerate() {
            if i % 4 == 3 {
                continue;
            }
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let delta = (state % (2 * amplitude as u32 + 1)) as i32 - amplitude;
            *v = (i32::from(*v) + delta).clamp(0, 255) as u8;
        }
    }

    #[test]
    fn finds_text_where_it_is() {
        let (img, w, h) = screen("$ echo hi-3f9a\r\nhi-3f9a\r\n$ ", 30, 5, (3, 7));
        assert_eq!(find_text(&img, w, h, 16.0, "hi-3f9a"), Some((7, 0)));
        assert_eq!(find_text(&img, w, h, 16.0, "echo hi"), Some((2, 0)));
        assert_eq!(find_text(&img, w, h, 16.0, "$"), Some((0, 0)));
    }

    #[test]
    fn does_not_find_text_that_is_not_there() {
        let (img, w, h) = screen("$ echo hi-3f9a\r\nhi-3f9a\r\n$ ", 30, 5, (0, 0));
        for absent in ["hi-3f9b", "hi-3f9e", "hl-3f9a", "hi-3f8a", "Hi-3f9a", "hi_3f9a", "hi-3f9a$", "  ", "", "x"] {
            assert_eq!(find_text(&img, w, h, 16.0, absent), None, "{absent:?}");
        }
        // Wrong font size: no match either.
        assert_eq!(find_text(&img, w, h, 20.0, "hi-3f9a"), None);
    }

    #[test]
    fn confusable_characters_are_told_apart() {
        let pairs = ["0O", "O0", "1l", "l1", "Il", "lI", "5S", "8B", "B8", "oc", "ce", "rn", "il", "ij", ".,", ":;", "-_", "ao", "e6"];
        for pair in pairs {
            let mut chars = pair.chars();
            let (shown, wanted) = (chars.next().unwrap(), chars.next().unwrap());
            let (img, w, h) = screen(&format!("{shown}{shown}{shown}"), 4, 1, (0, 0));
            assert_eq!(find_text(&img, w, h, 16.0, &format!("{wanted}{wanted}{wanted}")), None, "{shown} read as {wanted}");
            assert!(find_text(&img, w, h, 16.0, &format!("{shown}{shown}{shown}")).is_some());
        }
    }

    #[test]
    fn finds_coloured_bold_and_noisy_text() {
        let (mut img, w, h) = screen("\x1b[1;33;44mtoken-42\x1b[0m \x1b[38;2;20;20;20;48;2;230;230;200mdark-on-light\x1b[0m", 40, 3, (0, 0));
        noise(&mut img, 24);
        assert_eq!(find_text(&img, w, h, 16.0, "token-42"), Some((0, 0)));
        assert_eq!(find_text(&img, w, h, 16.0, "dark-on-light"), Some((9, 0)));
        assert_eq!(find_text(&img, w, h, 16.0, "token-43"), None);
        assert_eq!(find_text(&img, w, h, 16.0, "dark-on-lighT"), None);
    }

    #[test]
    fn survives_a_slight_blur() {
        let (img, w, h) = screen("\r\n   blur-test-7", 20, 3, (0, 0));
        // A horizontal 1-2-1 blur, like a codec's softening of sharp edges.
        let mut blurred = img.clone();
        let row = w as usize * 4;
        for y in 0..h as usize {
            for x in 1..w as usize - 1 {
                for c in 0..3 {
                    let at = |dx: usize| u16::from(img[y * row + (x + dx - 1) * 4 + c]);
                    blurred[y * row + x * 4 + c] = ((at(0) + 2 * at(1) + at(2)) / 4) as u8;
                }
            }
        }
        assert_eq!(find_text(&blurred, w, h, 16.0, "blur-test-7"), Some((3, 1)));
        assert_eq!(find_text(&blurred, w, h, 16.0, "blur-test-1"), None);
    }
}
