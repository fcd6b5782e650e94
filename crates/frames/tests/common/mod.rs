//! What the stage's tests share: a client's screen that decodes what a feed sends, and ways to
//! paint the canvas and wait for updates.

#![allow(dead_code, reason = "each test file uses its own part")]

use std::time::Duration;

use ironrdp_core::{Encode as _, ReadCursor, decode, decode_cursor};
use ironrdp_graphics::rdp6::BitmapStreamDecoder;
use ironrdp_pdu::bitmap::{BitmapUpdateData, Compression};
use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode};
use ironrdp_pdu::surface_commands::SurfaceCommand;
use rdhost_desktop::{Canvas, Rect, Size};
use rdhost_frames::{Feed, Update};

/// What a client showing one feed would have on its screen: it decodes raw Surface Bits and
/// planar bitmaps, and insists that nothing is painted past its screen's edges.
pub struct Shadow {
    pub size: Size,
    pub pixels: Vec<u8>,
    /// The widths of the planar bitmaps decoded, in order.
    pub widths: Vec<u16>,
}

impl Shadow {
    pub fn new() -> Self {
        Self { size: Size::new(0, 0), pixels: Vec::new(), widths: Vec::new() }
    }

    /// Apply an update; returns the rectangles it painted, in order.
    pub fn apply(&mut self, update: &Update) -> Vec<Rect> {
        if update.size != self.size {
            // A terminal reactivates at the new size: the client's screen starts black.
            self.size = update.size;
            self.pixels = vec![0; update.size.area() * 4];
        }
        assert!(!update.parts.is_empty(), "an update has something to send");
        let mut painted = Vec::new();
        for part in &update.parts {
            assert!(!part.is_empty(), "no empty parts");
            for (code, data) in reassemble(part) {
                match code {
                    UpdateCode::SurfaceCommands => self.surface_commands(&data, &mut painted),
                    UpdateCode::Bitmap => self.bitmaps(&data, &mut painted),
                    other => panic!("unexpected update {other:?}"),
                }
            }
        }
        painted
    }

    fn surface_commands(&mut self, data: &[u8], painted: &mut Vec<Rect>) {
        let mut cursor = ReadCursor::new(data);
        while !cursor.is_empty() {
            let SurfaceCommand::SetSurfaceBits(bits) = decode_cursor(&mut cursor).expect("a surface command") else {
                panic!("only Surface Bits are expected");
            };
            let d = bits.destination;
            let rect = Rect::new(d.left, d.top, d.right - d.left, d.bottom - d.top);
            let ext = bits.extended_bitmap_data;
            assert_eq!((ext.bpp, ext.codec_id, ext.width, ext.height), (32, 0, rect.width, rect.height));
            let row = usize::from(rect.width) * 4;
            assert_eq!(ext.data.len(), row * usize::from(rect.height));
            // Raw surface bits are bottom-up.
            let rows: Vec<Vec<u8>> = ext.data.chunks(row).rev().map(<[u8]>::to_vec).collect();
            self.put(rect, &rows);
            painted.push(rect);
        }
    }

    fn bitmaps(&mut self, data: &[u8], painted: &mut Vec<Rect>) {
        let update: BitmapUpdateData<'_> = decode(data).expect("a bitmap update");
        for bitmap in update.rectangles {
            let r = bitmap.rectangle;
            let rect = Rect::new(r.left, r.top, r.right - r.left + 1, r.bottom - r.top + 1);
            // The bitmap may be wider than the rectangle it is drawn at (a scan width is a
            // multiple of 4); clients draw only the rectangle.
            assert_eq!((bitmap.height, bitmap.bits_per_pixel), (rect.height, 32));
            assert!(bitmap.width % 4 == 0 && bitmap.width >= rect.width && bitmap.width < rect.width + 4, "{} for {rect:?}", bitmap.width);
            assert!(bitmap.compression_flags.contains(Compression::BITMAP_COMPRESSION));
            let (width, height) = (usize::from(bitmap.width), usize::from(rect.height));
            let mut rgb = Vec::new();
            BitmapStreamDecoder::default()
                .decode_bitmap_stream_to_rgb24(bitmap.bitmap_data, &mut rgb, width, height)
                .expect("a planar bitmap");
            assert_eq!(rgb.len(), width * height * 3);
            // Planar rows are bottom-up too; back to BGRX.
            let rows: Vec<Vec<u8>> = rgb
                .chunks(width * 3)
                .rev()
                .map(|row| row.chunks(3).take(usize::from(rect.width)).flat_map(|p| [p[2], p[1], p[0], 0]).collect())
                .collect();
            self.widths.push(bitmap.width);
            self.put(rect, &rows);
            painted.push(rect);
        }
    }

    fn put(&mut self, rect: Rect, rows: &[Vec<u8>]) {
        assert!(
            rect.right() <= u32::from(self.size.width) && rect.bottom() <= u32::from(self.size.height),
            "{rect:?} reaches past the client's {:?} screen",
            self.size
        );
        let stride = usize::from(self.size.width) * 4;
        for (i, row) in rows.iter().enumerate() {
            let start = (usize::from(rect.y) + i) * stride + usize::from(rect.x) * 4;
            self.pixels[start..start + row.len()].copy_from_slice(row);
        }
    }

    /// The screen shows the whole canvas as it is.
    pub fn matches(&self, canvas: &Canvas) -> bool {
        self.size == canvas.size() && self.pixels == canvas.read(canvas.size().rect())
    }

    /// The screen shows `region` of the canvas as it is, and is its size.
    pub fn shows(&self, canvas: &Canvas, region: Rect) -> bool {
        self.size == Size::new(region.width, region.height) && self.pixels == canvas.read(region)
    }

    /// One pixel of the screen (BGRX).
    pub fn pixel(&self, x: u16, y: u16) -> [u8; 4] {
        let i = (usize::from(y) * usize::from(self.size.width) + usize::from(x)) * 4;
        self.pixels[i..i + 4].try_into().expect("four bytes")
    }
}

/// Fast-path update PDUs into their logical updates' codes and data.
pub fn reassemble(mut bytes: &[u8]) -> Vec<(UpdateCode, Vec<u8>)> {
    let mut updates = Vec::new();
    let mut partial = Vec::new();
    while !bytes.is_empty() {
        let header: FastPathHeader = decode(bytes).expect("a fast-path header");
        let total = header.size() + header.data_length;
        let pdu: FastPathUpdatePdu<'_> = decode(&bytes[header.size()..total]).expect("a fast-path update");
        partial.extend_from_slice(pdu.data);
        if matches!(pdu.fragmentation, Fragmentation::Single | Fragmentation::Last) {
            updates.push((pdu.update_code, std::mem::take(&mut partial)));
        }
        bytes = &bytes[total..];
    }
    assert!(partial.is_empty(), "a fragmented update was cut off");
    updates
}

/// The colour [`paint`] gives the pixel at (x, y).
pub fn colour(x: u16, y: u16, seed: u8) -> [u8; 4] {
    [(x as u8).wrapping_mul(7) ^ seed, (y as u8).wrapping_mul(13) ^ seed, seed, 0]
}

/// Paint `rect` with a pattern that depends on the position and on `seed`.
pub fn paint(canvas: &Canvas, rect: Rect, seed: u8) {
    canvas.draw(|pixels, size| {
        let rect = rect.intersect(size.rect());
        for y in rect.y..rect.y + rect.height {
            for x in rect.x..rect.x + rect.width {
                let i = (usize::from(y) * usize::from(size.width) + usize::from(x)) * 4;
                pixels[i..i + 4].copy_from_slice(&colour(x, y, seed));
            }
        }
        vec![rect]
    });
}

pub async fn next(feed: &mut Feed) -> Update {
    tokio::time::timeout(Duration::from_secs(20), feed.next()).await.expect("an update within 20 s").expect("encoding works")
}

/// True when `next()` has nothing to give for a while (it is cancel-safe, so giving up loses nothing).
pub async fn idle(feed: &mut Feed) -> bool {
    tokio::time::timeout(Duration::from_millis(150), feed.next()).await.is_err()
}
