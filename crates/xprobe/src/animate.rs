//! The frames `rdhost-xanimate` draws: a diagonal colour gradient that scrolls by a few palette
//! steps every frame, with a vertical bar in contrasting colours that moves across. Every pixel
//! differs from the frame before (tested below), so a capture path sees the whole window damaged
//! and has to move all of it, except the frame code: the frame number drawn at the top-left as
//! [`CODE_BITS`] black (0) or white (1) cells of [`CODE_CELL`]x[`CODE_CELL`] pixels, lowest bit
//! first, so that a viewer can count the frames it really shows (it survives lossy codecs).

/// Gradient colours before the pattern repeats.
const PERIOD: usize = 1024;
/// Palette steps the gradient scrolls per frame (the red channel then always changes).
const STEP: usize = 5;
const BAR_WIDTH: usize = 16;
/// Pixels the bar moves per frame: more than its width, so it never covers a pixel twice running.
const BAR_SPEED: usize = 24;
/// Bits of the frame number drawn at the top-left, and the side of each cell.
pub const CODE_BITS: usize = 16;
pub const CODE_CELL: usize = 8;

/// The frame number as drawn, from a pixel reader (`x, y → 0x00RRGGBB`); `None` when a cell is
/// neither clearly black nor clearly white (a frame half drawn, or a lossy codec's noise).
pub fn read_frame_code(pixel: impl Fn(usize, usize) -> Option<u32>) -> Option<u16> {
    let mut n = 0u16;
    for bit in 0..CODE_BITS {
        let p = pixel(bit * CODE_CELL + CODE_CELL / 2, CODE_CELL / 2)?;
        let lum = (p >> 16 & 0xff) + (p >> 8 & 0xff) + (p & 0xff);
        match lum {
            l if l > 3 * 200 => n |= 1 << bit,
            l if l < 3 * 55 => {}
            _ => return None,
        }
    }
    Some(n)
}

pub struct Pattern {
    width: usize,
    height: usize,
    /// The palette, repeated so that any `width` entries from an offset below `PERIOD` are one slice.
    palette: Vec<u32>,
}

impl Pattern {
    pub fn new(width: u16, height: u16) -> Pattern {
        let width = usize::from(width);
        let colour = |i: usize| {
            let i = i % PERIOD;
            let (r, g, b) = (i & 0xff, (i >> 2) & 0xff, 0xff - (i & 0xff));
            (r << 16 | g << 8 | b) as u32
        };
        Pattern {
            width,
            height: usize::from(height),
            palette: (0..PERIOD + width).map(colour).collect(),
        }
    }

    /// Pixels in a frame.
    pub fn len(&self) -> usize {
        self.width * self.height
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Draw frame number `frame` as 0x00RRGGBB pixels, rows top to bottom.
    pub fn draw(&self, frame: u64, out: &mut [u32]) {
        let shift = (frame % PERIOD as u64) as usize * STEP;
        let bar = if self.width == 0 {
            0
        } else {
            (frame as usize).wrapping_mul(BAR_SPEED) % self.width
        };
        for (y, row) in out.chunks_exact_mut(self.width).take(self.height).enumerate() {
            let offset = (3 * y + shift) % PERIOD;
            row.copy_from_slice(&self.palette[offset..offset + self.width]);
            let end = (bar + BAR_WIDTH).min(self.width);
            // Flipping the top bit of each channel: red then differs from its neighbour frames'
            // red (they are 5 steps away, never 128), bar or not.
            for p in &mut row[bar..end] {
                *p ^= 0x0080_8080;
            }
            if y < CODE_CELL {
                for (i, p) in row.iter_mut().take(CODE_BITS * CODE_CELL).enumerate() {
                    *p = if frame >> (i / CODE_CELL) & 1 == 1 { 0x00ff_ffff } else { 0 };
                }
            }
        }
    }
}

/// Pixels as the bytes an X server with `lsb_first` image byte order reads for 32-bit pixels.
pub fn to_bytes(pixels: &[u32], lsb_first: bool, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(pixels.len() * 4);
    for &p in pixels {
        out.extend_from_slice(&if lsb_first { p.to_le_bytes() } else { p.to_be_bytes() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pixel_changes_every_frame() {
        for (w, h) in [(100u16, 40u16), (1030, 3), (7, 300)] {
            let pattern = Pattern::new(w, h);
            let mut a = vec![0; pattern.len()];
            let mut b = vec![0; pattern.len()];
            pattern.draw(0, &mut a);
            for frame in 1..(PERIOD as u64 + 40) {
                pattern.draw(frame, &mut b);
                let code_area = |i: usize| i % usize::from(w) < CODE_BITS * CODE_CELL && i / usize::from(w) < CODE_CELL;
                let same = a.iter().zip(&b).enumerate().filter(|(i, (x, y))| x == y && !code_area(*i)).count();
                assert_eq!(same, 0, "{w}x{h}: frame {frame} left {same} pixels as they were");
                if w >= 128 && h >= 8 {
                    let code = read_frame_code(|x, y| b.get(y * usize::from(w) + x).copied());
                    assert_eq!(code, Some(frame as u16), "{w}x{h}: frame code");
                }
                std::mem::swap(&mut a, &mut b);
            }
        }
    }
}
