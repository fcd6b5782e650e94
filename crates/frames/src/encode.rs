//! Encoders: a frame's changed rectangles into fast-path update bytes for one codec profile.

use ironrdp_core::encode_vec;
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression, CompressedDataHeader};
use ironrdp_pdu::fast_path::UpdateCode;
use ironrdp_pdu::geometry::{ExclusiveRectangle, InclusiveRectangle};
use ironrdp_pdu::surface_commands::{ExtendedBitmapDataPdu, SurfaceBitsPdu, SurfaceCommand};
use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{Frame, Rect, Size};

use crate::fastpath::fastpath_updates;
use crate::planar::{PlanarCompression, PlanarEncoder, PlanarSource};
use crate::rfx::encode_rfx;
use crate::tiles::PixelsRef;

/// How a terminal wants its pixels. Terminals with equal profiles can share encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecProfile {
    /// RemoteFX (MS-RDPRFX) image mode in Surface Bits commands: lossy, compact for photos and
    /// gradients. `codec_id` is the id the client assigned in its Bitmap Codecs capability.
    RemoteFx { codec_id: u8, rlgr3: bool },
    /// RDP 6.0 planar bitmap compression in legacy Bitmap Updates: lossless, what every client
    /// of a 32-bpp session decodes; compresses text and flat areas well.
    Planar,
    /// Planar with an (opaque) alpha plane: the only form rdesktop and the decoders derived from
    /// it take. It costs ~2% more bytes and ~12% more encoding time than [`CodecProfile::Planar`]
    /// (1920x1080 of text), so it goes only to clients that need it.
    PlanarWithAlpha,
    /// Raw 32-bit pixels in Surface Bits commands: lossless and cheap to make, large on the wire.
    Uncompressed,
    /// 16-bpp (RGB565) pixels with interleaved RLE compression in legacy Bitmap Updates: for
    /// clients whose session is 16 bpp (`xfreerdp /bpp:16`, `rdesktop -a 16`), which draw every
    /// bitmap at the session's depth. Lossy in colour (5-6-5 bits), compact for flat areas.
    Interleaved16,
    /// 24-bpp pixels with interleaved RLE compression in legacy Bitmap Updates: for clients
    /// whose session is 24 bpp and that cannot take 32 (`xfreerdp /bpp:24`). Lossless.
    Interleaved24,
    /// H.264 (AVC420) over the graphics pipeline (MS-RDPEGFX), with lossless planar commands for
    /// small changes and refinement: updates carry [`GfxCommand`](crate::GfxCommand)s, not
    /// fast-path bytes (see the stage's module docs).
    Avc420,
}

impl CodecProfile {
    pub fn name(self) -> &'static str {
        match self {
            CodecProfile::RemoteFx { .. } => "remotefx",
            CodecProfile::Planar => "planar",
            CodecProfile::PlanarWithAlpha => "planar+alpha",
            CodecProfile::Uncompressed => "uncompressed",
            CodecProfile::Interleaved16 => "interleaved16",
            CodecProfile::Interleaved24 => "interleaved24",
            CodecProfile::Avc420 => "avc420",
        }
    }

    /// The session colour depth this profile's bitmaps have: what the Demand Active must
    /// announce (a client draws every bitmap at the depth it was told).
    pub fn bits_per_pixel(self) -> u16 {
        match self {
            CodecProfile::Interleaved16 => 16,
            CodecProfile::Interleaved24 => 24,
            _ => 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding {what} failed: {detail}")]
    Codec { what: &'static str, detail: String },
}

/// Fast-path update PDUs ready to write to any terminal with the encoder's profile.
pub type EncodedFrame = Vec<u8>;

pub struct Encoder {
    profile: CodecProfile,
    /// The client's MultifragmentUpdate limit: one logical update must reassemble within it.
    max_update: usize,
    frame_index: u32,
}

impl Encoder {
    pub fn new(profile: CodecProfile, max_request_size: u32) -> Self {
        // Below 64 KiB some clients do not even reassemble our smallest strips; and past 8 MiB
        // there is no gain, only latency.
        let max_update = (max_request_size as usize).clamp(64 * 1024, 8 * 1024 * 1024);
        Self { profile, max_update, frame_index: 0 }
    }

    pub fn profile(&self) -> CodecProfile {
        self.profile
    }

    /// The horizontal alignment this profile wants for a rectangle's x and width: planar
    /// bitmaps must be a multiple of 4 pixels wide. Widen rectangles with real pixels where the
    /// screen has them; a rectangle that cannot be (at a screen's unaligned right edge) is still
    /// encoded, in a bitmap padded past it of which clients draw only the rectangle.
    pub fn x_alignment(&self) -> u16 {
        match self.profile {
            CodecProfile::Planar | CodecProfile::PlanarWithAlpha | CodecProfile::Interleaved16 | CodecProfile::Interleaved24 => 4,
            _ => 1,
        }
    }

    /// Encode every changed rectangle of `frame`.
    pub fn encode(&mut self, frame: &Frame) -> Result<EncodedFrame, EncodeError> {
        let regions: Vec<PixelsRef<'_>> = frame.regions.iter().map(PixelsRef::from).collect();
        self.encode_pixels(frame.size, &regions)
    }

    /// Encode every rectangle of `regions` on a screen of `size`, reading the pixels where they
    /// lie (an update's own, or the canvas in place).
    pub(crate) fn encode_pixels(&mut self, size: Size, regions: &[PixelsRef<'_>]) -> Result<EncodedFrame, EncodeError> {
        let mut out = Vec::new();
        for &region in regions.iter().filter(|r| !r.rect.is_empty()) {
            for band in self.bands(region) {
                match self.profile {
                    CodecProfile::RemoteFx { codec_id, rlgr3 } => {
                        self.frame_index = self.frame_index.wrapping_add(1);
                        let data = encode_rfx(band, size, rlgr3, self.frame_index)?;
                        surface_bits(band.rect, codec_id, &data, &mut out)?;
                    }
                    CodecProfile::Planar => planar_bitmap(band, false, &mut out)?,
                    CodecProfile::PlanarWithAlpha => planar_bitmap(band, true, &mut out)?,
                    CodecProfile::Interleaved16 => interleaved_bitmap(band, Depth::Rgb565, &mut out)?,
                    CodecProfile::Interleaved24 => interleaved_bitmap(band, Depth::Bgr24, &mut out)?,
                    // Its updates are EGFX commands, made by the stage (crate::gfx), not fast-path bytes.
                    CodecProfile::Avc420 => {
                        return Err(EncodeError::Codec { what: "avc420", detail: "a GFX profile has no fast-path encoding".into() });
                    }
                    CodecProfile::Uncompressed => {
                        let data = bottom_up(band)?;
                        surface_bits(band.rect, 0, &data, &mut out)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Split a rectangle into horizontal strips whose raw pixels fit one logical update, each
    /// read where the rectangle's pixels lie.
    fn bands<'a>(&self, region: PixelsRef<'a>) -> Vec<PixelsRef<'a>> {
        let r = region.rect;
        let row_bytes = usize::from(r.width) * BYTES_PER_PIXEL;
        if row_bytes == 0 {
            return Vec::new();
        }
        // Compressed data is smaller than raw in practice, but leave room for the worst case
        // and the headers.
        let budget = self.max_update / 2;
        let mut rows = (budget / row_bytes).max(1);
        if let CodecProfile::RemoteFx { .. } = self.profile
            && rows >= 64
        {
            rows -= rows % 64; // keep strips on the 64-pixel tile grid
        }
        if let CodecProfile::Planar | CodecProfile::PlanarWithAlpha | CodecProfile::Interleaved16 | CodecProfile::Interleaved24 =
            self.profile
        {
            // A compressed BitmapData carries its uncompressed size (of the padded bitmap) in 16 bits.
            let bytes_per_pixel = usize::from(self.profile.bits_per_pixel() / 8);
            let padded_row_bytes = usize::from(planar_width(r.width)) * bytes_per_pixel;
            rows = rows.min(usize::from(u16::MAX) / padded_row_bytes).max(1);
        }
        let height = usize::from(r.height);
        (0..height)
            .step_by(rows)
            .map(|top| region.part(Rect::new(r.x, r.y + top as u16, r.width, rows.min(height - top) as u16)))
            .collect()
    }
}

/// The default arrow pointer (used by desktops without a cursor shape of their own).
pub fn default_pointer() -> EncodedFrame {
    let mut out = Vec::new();
    fastpath_updates(UpdateCode::DefaultPointer, &[], &mut out);
    out
}

fn codec_err(what: &'static str) -> impl Fn(ironrdp_core::EncodeError) -> EncodeError {
    move |e| EncodeError::Codec { what, detail: e.to_string() }
}

/// Rows in the bottom-up order that bitmap and surface-bits payloads use.
fn bottom_up(region: PixelsRef<'_>) -> Result<Vec<u8>, EncodeError> {
    if !region.is_whole() {
        let r = region.rect;
        return Err(EncodeError::Codec { what: "uncompressed bitmap", detail: format!("a {}x{} rectangle has not all its pixels", r.width, r.height) });
    }
    Ok(region.rows(region.rect).rev().flatten().copied().collect())
}

fn surface_bits(r: Rect, codec_id: u8, data: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let cmd = SurfaceCommand::SetSurfaceBits(SurfaceBitsPdu {
        destination: ExclusiveRectangle { left: r.x, top: r.y, right: r.x + r.width, bottom: r.y + r.height },
        extended_bitmap_data: ExtendedBitmapDataPdu {
            bpp: 32,
            codec_id,
            width: r.width,
            height: r.height,
            header: None,
            data,
        },
    });
    let bytes = encode_vec(&cmd).map_err(codec_err("surface bits"))?;
    fastpath_updates(UpdateCode::SurfaceCommands, &bytes, out);
    Ok(())
}

/// A planar bitmap's width for a rectangle `width` pixels wide: the next multiple of 4 (the
/// bitmap's scan width must be one).
fn planar_width(width: u16) -> u16 {
    width.div_ceil(4).saturating_mul(4)
}

/// A rectangle's pixels as a bitmap `bitmap_width` wide (at least the rectangle's width), rows
/// bottom-up as bitmaps have them. Rows are padded by repeating their last pixel (cheap to
/// compress); the destination rectangle stays the real one, so clients draw none of the padding
/// (MS-RDPBCGR 2.2.9.1.1.3.1.2.2: the bitmap is `width` wide, drawn at destLeft..=destRight).
fn padded_rows_bottom_up<'a>(region: PixelsRef<'a>, bitmap_width: u16) -> impl Iterator<Item = &'a [u8]> + Clone {
    let pad = usize::from(bitmap_width.saturating_sub(region.rect.width));
    region.rows(region.rect).rev().flat_map(move |row| {
        let last = &row[row.len() - BYTES_PER_PIXEL..];
        row.chunks(BYTES_PER_PIXEL).chain(std::iter::repeat_n(last, pad))
    })
}

/// The size of the padded bitmap for `region` at `bytes_per_pixel`, which a compressed BitmapData
/// carries in 16 bits; an error when it does not fit or the rectangle has not all its pixels.
fn bitmap_size(region: PixelsRef<'_>, bitmap_width: u16, bytes_per_pixel: u32, what: &'static str) -> Result<u16, EncodeError> {
    let r = region.rect;
    let whole = region.is_whole();
    u16::try_from(u32::from(bitmap_width) * bytes_per_pixel * u32::from(r.height))
        .ok()
        .filter(|_| whole)
        .ok_or_else(|| EncodeError::Codec { what, detail: format!("a {}x{} rectangle does not fit one bitmap", r.width, r.height) })
}

/// One Bitmap Update (fast-path) with one rectangle.
fn bitmap_update(data: BitmapData<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let update = BitmapUpdateData { rectangles: vec![data] };
    let bytes = encode_vec(&update).map_err(codec_err("bitmap update"))?;
    fastpath_updates(UpdateCode::Bitmap, &bytes, out);
    Ok(())
}

fn destination(r: Rect) -> InclusiveRectangle {
    InclusiveRectangle { left: r.x, top: r.y, right: r.x + r.width - 1, bottom: r.y + r.height - 1 }
}

/// An RDP 6.0 planar bitmap, RLE-compressed; `alpha`: with an opaque alpha plane (see
/// [`CodecProfile::PlanarWithAlpha`]).
fn planar_bitmap(region: PixelsRef<'_>, alpha: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let r = region.rect;
    let bitmap_width = planar_width(r.width);
    let uncompressed_size = bitmap_size(region, bitmap_width, 4, "planar bitmap")?;
    let width = usize::from(r.width);
    // Rows bottom-up and padded by repeating their last pixel, as `padded_rows_bottom_up` has them.
    let src = PlanarSource {
        pixels: region.data,
        width,
        height: usize::from(r.height),
        stride: region.stride,
        bottom_up: true,
        padded_width: usize::from(bitmap_width),
    };
    // Always RLE: rdesktop takes no other planar bitmap. With `alpha` the NA header bit is clear.
    let mut buf = Vec::new();
    let len = PlanarEncoder::new()
        .encode(&src, alpha, PlanarCompression::Rle, &mut buf)
        .map_err(|e| EncodeError::Codec { what: "planar bitmap", detail: e.to_string() })?;
    let main_body_size = u16::try_from(len)
        .map_err(|_| EncodeError::Codec { what: "planar bitmap", detail: format!("{len} compressed bytes do not fit one bitmap") })?;
    bitmap_update(
        BitmapData {
            rectangle: destination(r),
            width: bitmap_width,
            height: r.height,
            bits_per_pixel: 32,
            compression_flags: Compression::BITMAP_COMPRESSION,
            compressed_data_header: Some(CompressedDataHeader { main_body_size, scan_width: bitmap_width, uncompressed_size }),
            bitmap_data: &buf[..len],
        },
        out,
    )
}

/// The pixel formats of interleaved bitmaps we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// 16 bits, little-endian RGB565.
    Rgb565,
    /// 24 bits: blue, green, red.
    Bgr24,
}

impl Depth {
    fn bytes(self) -> usize {
        match self {
            Depth::Rgb565 => 2,
            Depth::Bgr24 => 3,
        }
    }

    /// A 32-bit BGRX pixel in this format, as the little-endian value of its bytes.
    fn pixel(self, p: &[u8]) -> u32 {
        match self {
            Depth::Rgb565 => (u32::from(p[2] >> 3) << 11) | (u32::from(p[1] >> 2) << 5) | u32::from(p[0] >> 3),
            Depth::Bgr24 => u32::from(p[0]) | (u32::from(p[1]) << 8) | (u32::from(p[2]) << 16),
        }
    }

    fn write(self, pixel: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&pixel.to_le_bytes()[..self.bytes()]);
    }
}

/// A bitmap of `depth` with interleaved RLE compression, or uncompressed where compression does
/// not pay (noise).
fn interleaved_bitmap(region: PixelsRef<'_>, depth: Depth, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let r = region.rect;
    let bitmap_width = planar_width(r.width);
    let uncompressed_size = bitmap_size(region, bitmap_width, depth.bytes() as u32, "interleaved bitmap")?;
    let pixels: Vec<u32> = padded_rows_bottom_up(region, bitmap_width).map(|p| depth.pixel(p)).collect();
    let mut compressed = Vec::with_capacity(pixels.len());
    interleaved_rle(&pixels, usize::from(bitmap_width), depth, &mut compressed);
    let raw: Vec<u8>;
    let (compression_flags, compressed_data_header, bitmap_data) = if compressed.len() < usize::from(uncompressed_size) {
        let header = CompressedDataHeader {
            main_body_size: compressed.len() as u16,
            // The scan line in bytes (a multiple of 4: the bitmap is a multiple of 4 pixels wide).
            scan_width: bitmap_width * depth.bytes() as u16,
            uncompressed_size,
        };
        (Compression::BITMAP_COMPRESSION, Some(header), &compressed[..])
    } else {
        raw = pixels.iter().fold(Vec::with_capacity(usize::from(uncompressed_size)), |mut raw, &p| {
            depth.write(p, &mut raw);
            raw
        });
        (Compression::empty(), None, &raw[..])
    };
    bitmap_update(
        BitmapData {
            rectangle: destination(r),
            width: bitmap_width,
            height: r.height,
            bits_per_pixel: depth.bytes() as u16 * 8,
            compression_flags,
            compressed_data_header,
            bitmap_data,
        },
        out,
    )
}

/// Interleaved RLE order codes (MS-RDPBCGR 2.2.9.1.1.3.1.2.4) this encoder uses: runs of the
/// pixel above (background run), runs of one colour, and literal pixels.
const BG_RUN: u8 = 0x0;
const COLOR_RUN: u8 = 0x3;
const COLOR_IMAGE: u8 = 0x4;
/// The prefix of the MEGA_MEGA form of an order, whose length follows in 16 bits.
const MEGA_MEGA: u8 = 0xF0;

/// An order's header for a run of `len` (1..=65535) pixels: the length in the header's low five
/// bits, in the byte after it (32..=287), or in the 16 bits after a MEGA_MEGA header.
fn rle_order(code: u8, len: usize, out: &mut Vec<u8>) {
    debug_assert!((1..=usize::from(u16::MAX)).contains(&len));
    if len < 32 {
        out.push((code << 5) | len as u8);
    } else if len < 32 + 256 {
        out.extend([code << 5, (len - 32) as u8]);
    } else {
        out.push(MEGA_MEGA | code);
        out.extend((len as u16).to_le_bytes());
    }
}

/// Compress pixels (rows bottom-up, `width` per row, at most 65535 pixels) with interleaved RLE
/// at `depth`. Decoders differ on background runs in the first row (FreeRDP paints the whole run
/// black, rdesktop only up to the row's end) and XOR a foreground pixel into a background run
/// that directly follows another: so background runs start past the first row only, and are
/// always as long as they go, so that the next order is never another one.
fn interleaved_rle(pixels: &[u32], width: usize, depth: Depth, out: &mut Vec<u8>) {
    let literal = |pixels: &[u32], out: &mut Vec<u8>| {
        if !pixels.is_empty() {
            rle_order(COLOR_IMAGE, pixels.len(), out);
            for &p in pixels {
                depth.write(p, out);
            }
        }
    };
    let mut pending = 0; // literal pixels start here
    let mut i = 0;
    while i < pixels.len() {
        let background =
            if i >= width { pixels[i..].iter().zip(&pixels[i - width..]).take_while(|(p, above)| p == above).count() } else { 0 };
        let run = pixels[i..].iter().take_while(|&&p| p == pixels[i]).count();
        // A background run costs one byte; a colour run one byte and a pixel; a literal pixel
        // its bytes.
        if background >= 2 && background >= run {
            literal(&pixels[pending..i], out);
            rle_order(BG_RUN, background, out);
            i += background;
            pending = i;
        } else if run >= 3 {
            literal(&pixels[pending..i], out);
            rle_order(COLOR_RUN, run, out);
            depth.write(pixels[i], out);
            i += run;
            pending = i;
        } else {
            i += 1;
        }
    }
    literal(&pixels[pending..], out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdhost_desktop::{CanvasUpdate, Size};
    use ironrdp_core::decode;
    use ironrdp_graphics::rdp6::BitmapStreamDecoder;
    use ironrdp_graphics::rle::{decompress_16_bpp, decompress_24_bpp};
    use ironrdp_pdu::fast_path::FastPathHeader;

    /// A `w`x`h` rectangle at (x, y) whose BGRX pixels `colour(x, y)` gives (as RGB).
    fn region(x: u16, y: u16, w: u16, h: u16, colour: impl Fn(u16, u16) -> [u8; 3]) -> CanvasUpdate {
        let mut pixels = Vec::new();
        for row in 0..h {
            for col in 0..w {
                let [r, g, b] = colour(col, row);
                pixels.extend([b, g, r, 0xFF]);
            }
        }
        CanvasUpdate { rect: Rect::new(x, y, w, h), pixels }
    }

    /// A terminal-like picture: a flat background with "glyphs" (blocks and strokes) on it.
    fn text_like(col: u16, row: u16) -> [u8; 3] {
        let in_glyph = (col / 9) % 3 != 2 && (row / 16).is_multiple_of(2) && ((col * 7 + row * 3) % 11 < 4);
        if in_glyph { [0xE0, 0xE0, 0xD0] } else { [0x20, 0x24, 0x30] }
    }

    /// Deterministic noise.
    fn noise(col: u16, row: u16) -> [u8; 3] {
        let mut v = u32::from(col).wrapping_mul(2_654_435_761) ^ u32::from(row).wrapping_mul(40_503).rotate_left(13);
        v ^= v >> 15;
        v = v.wrapping_mul(2_246_822_519);
        v ^= v >> 13;
        [v as u8, (v >> 8) as u8, (v >> 16) as u8]
    }

    /// The bitmap updates in fast-path bytes, fragments joined.
    fn bitmaps(mut bytes: &[u8]) -> Vec<(BitmapDataOwned, Vec<u8>)> {
        use ironrdp_pdu::fast_path::{FastPathUpdatePdu, Fragmentation};
        let mut found = Vec::new();
        let mut joined = Vec::new();
        while !bytes.is_empty() {
            let mut cursor = ironrdp_core::ReadCursor::new(bytes);
            let _: FastPathHeader = ironrdp_core::decode_cursor(&mut cursor).unwrap();
            let pdu: FastPathUpdatePdu<'_> = ironrdp_core::decode_cursor(&mut cursor).unwrap();
            assert_eq!(pdu.update_code, UpdateCode::Bitmap);
            joined.extend_from_slice(pdu.data);
            bytes = &bytes[cursor.pos()..];
            if !matches!(pdu.fragmentation, Fragmentation::Single | Fragmentation::Last) {
                continue;
            }
            let update: BitmapUpdateData<'_> = decode(&joined).unwrap();
            for data in update.rectangles {
                found.push((
                    BitmapDataOwned {
                        rect: data.rectangle.clone(),
                        width: data.width,
                        height: data.height,
                        bpp: data.bits_per_pixel,
                        compressed: data.compression_flags.contains(Compression::BITMAP_COMPRESSION),
                        header: data.compressed_data_header.clone(),
                    },
                    data.bitmap_data.to_vec(),
                ));
            }
            joined.clear();
        }
        found
    }

    #[derive(Debug)]
    struct BitmapDataOwned {
        rect: InclusiveRectangle,
        width: u16,
        height: u16,
        bpp: u16,
        compressed: bool,
        header: Option<CompressedDataHeader>,
    }

    /// `region`'s pixels as the padded bitmap a client decodes (rows bottom-up, `width` wide), RGB.
    fn expected_rgb(region: &CanvasUpdate, width: u16) -> Vec<u8> {
        padded_rows_bottom_up(region.into(), width).flat_map(|p| [p[2], p[1], p[0]]).collect()
    }

    #[test]
    fn planar_bitmaps_with_an_alpha_plane_say_so() {
        // 30 wide: padded to 32, as planar bitmaps must be.
        for (colour, alpha) in [(text_like as fn(u16, u16) -> [u8; 3], true), (noise, true), (text_like, false), (noise, false)] {
            let update = region(5, 7, 30, 20, colour);
            let mut out = Vec::new();
            planar_bitmap((&update).into(), alpha, &mut out).unwrap();
            let found = bitmaps(&out);
            assert_eq!(found.len(), 1);
            let (data, stream) = &found[0];
            assert_eq!((data.width, data.height, data.bpp), (32, 20, 32));
            assert_eq!((data.rect.left, data.rect.top, data.rect.right, data.rect.bottom), (5, 7, 34, 26), "only the real pixels are drawn");
            // What rdesktop checks: RLE, and no NA flag (the alpha plane is there).
            assert_eq!(stream[0], if alpha { 0x10 } else { 0x30 }, "format header");
            let mut decoded = Vec::new();
            BitmapStreamDecoder::default().decode_bitmap_stream_to_rgb24(stream, &mut decoded, 32, 20).unwrap();
            assert_eq!(decoded, expected_rgb(&update, 32), "lossless through a decoder that reads the header");
        }
    }

    #[test]
    fn the_alpha_plane_costs_little() {
        let update = region(0, 0, 1024, 15, text_like);
        let (mut with_alpha, mut without) = (Vec::new(), Vec::new());
        planar_bitmap((&update).into(), true, &mut with_alpha).unwrap();
        planar_bitmap((&update).into(), false, &mut without).unwrap();
        let without = bitmaps(&without)[0].1.len();
        let extra = bitmaps(&with_alpha)[0].1.len() - without;
        // One zero-delta row is ~1024/47 bytes of runs.
        assert!(extra <= 15 * 24 + 64, "the alpha plane added {extra} bytes to {without}");
    }

    /// Decode an interleaved stream with IronRDP's decoder; the pixels, rows as sent.
    fn decode_interleaved(stream: &[u8], width: u16, height: u16, depth: Depth) -> Vec<u32> {
        let mut out = Vec::new();
        let (w, h) = (usize::from(width), usize::from(height));
        match depth {
            Depth::Rgb565 => decompress_16_bpp(stream, &mut out, w, h).unwrap(),
            Depth::Bgr24 => decompress_24_bpp(stream, &mut out, w, h).unwrap(),
        };
        out.chunks_exact(depth.bytes()).map(|p| p.iter().rev().fold(0, |v, &b| (v << 8) | u32::from(b))).collect()
    }

    #[test]
    fn interleaved_rle_round_trips() {
        let cases: Vec<(usize, Vec<u32>)> = vec![
            (4, vec![7; 4]),                                     // one row: a colour run, no background
            (4, vec![1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]),      // rows equal to the one above
            (8, (0..64).map(|i| (i % 3) as u32).collect()),     // short patterns
            (300, vec![0xFFFF; 300 * 100]),                     // long runs: two-byte and 16-bit lengths
            (40, (0..40 * 30).map(|i| if i % 40 == 39 { 5 } else { 9 }).collect()),
            (3, vec![1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1]),      // a background run interrupted once
        ];
        for depth in [Depth::Rgb565, Depth::Bgr24] {
            for (width, pixels) in &cases {
                // 24-bit pixels use all three bytes.
                let pixels: Vec<u32> = pixels.iter().map(|p| if depth == Depth::Bgr24 { (p * 0x0101) & 0xFF_FFFF } else { *p }).collect();
                let mut stream = Vec::new();
                interleaved_rle(&pixels, *width, depth, &mut stream);
                let height = (pixels.len() / width) as u16;
                let decoded = decode_interleaved(&stream, *width as u16, height, depth);
                let first_wrong = decoded.iter().zip(&pixels).position(|(d, p)| d != p);
                assert!(decoded.len() == pixels.len() && first_wrong.is_none(), "{depth:?} width {width}: pixel {first_wrong:?} differs");
            }
        }
    }

    #[test]
    fn interleaved_rle_never_starts_a_background_run_in_the_first_row_or_after_another() {
        // Decoders differ there; the encoder must not depend on it. Walk the orders.
        let pixels: Vec<u32> = (0..16 * 12).map(|i| if (i / 16) % 4 == 3 { (i % 5) as u32 } else { 3 }).collect();
        let mut stream = Vec::new();
        interleaved_rle(&pixels, 16, Depth::Rgb565, &mut stream);
        let (mut at, mut pos, mut last_bg) = (0usize, 0usize, false);
        while pos < stream.len() {
            let head = stream[pos];
            let (code, len, size) = if head >= MEGA_MEGA {
                (head & 0x0F, usize::from(u16::from_le_bytes([stream[pos + 1], stream[pos + 2]])), 3)
            } else if head & 0x1F == 0 {
                (head >> 5, usize::from(stream[pos + 1]) + 32, 2)
            } else {
                (head >> 5, usize::from(head & 0x1F), 1)
            };
            pos += size;
            match code {
                BG_RUN => {
                    assert!(at >= 16, "background run in the first row at pixel {at}");
                    assert!(!last_bg, "two background runs in a row at pixel {at}");
                }
                COLOR_RUN => pos += 2,
                COLOR_IMAGE => pos += 2 * len,
                other => panic!("unexpected order {other:#x}"),
            }
            last_bg = code == BG_RUN;
            at += len;
        }
        assert_eq!(at, pixels.len());
    }

    #[test]
    fn interleaved_bitmaps_have_the_session_depth_and_are_compressed_when_it_pays() {
        for (profile, depth) in [(CodecProfile::Interleaved16, Depth::Rgb565), (CodecProfile::Interleaved24, Depth::Bgr24)] {
            let mut encoder = Encoder::new(profile, 8 * 1024 * 1024);
            assert_eq!(encoder.x_alignment(), 4);
            assert_eq!(profile.bits_per_pixel(), depth.bytes() as u16 * 8);
            let text = region(10, 20, 102, 40, text_like);
            let frame = Frame { size: Size::new(800, 600), resized: false, regions: vec![text.clone()] };
            let found = bitmaps(&encoder.encode(&frame).unwrap());
            assert_eq!(found.len(), 1);
            let (data, stream) = &found[0];
            assert_eq!((data.bpp, data.width, data.height, data.compressed), (profile.bits_per_pixel(), 104, 40, true));
            let raw_size = 104 * depth.bytes() * 40;
            let header = data.header.clone().unwrap();
            assert_eq!((usize::from(header.uncompressed_size), usize::from(header.main_body_size)), (raw_size, stream.len()));
            assert!(stream.len() * 2 < raw_size, "text compresses: {} bytes", stream.len());
            let expected: Vec<u32> = padded_rows_bottom_up((&text).into(), 104).map(|p| depth.pixel(p)).collect();
            assert_eq!(decode_interleaved(stream, 104, 40, depth), expected);

            // Noise does not compress: it goes raw.
            let noisy = region(0, 0, 64, 64, noise);
            let frame = Frame { size: Size::new(800, 600), resized: false, regions: vec![noisy.clone()] };
            let found = bitmaps(&encoder.encode(&frame).unwrap());
            let (data, stream) = &found[0];
            assert!(!data.compressed && data.header.is_none());
            let mut raw = Vec::new();
            for p in padded_rows_bottom_up((&noisy).into(), 64) {
                depth.write(depth.pixel(p), &mut raw);
            }
            assert_eq!(stream, &raw);
        }
        // Pure colours survive the 5-6-5 bits exactly; 24 bits are the pixel as it is.
        assert_eq!(Depth::Rgb565.pixel(&[0xFF, 0x00, 0x00, 0xFF]), 0x001F);
        assert_eq!(Depth::Rgb565.pixel(&[0x00, 0xFF, 0x00, 0xFF]), 0x07E0);
        assert_eq!(Depth::Rgb565.pixel(&[0x00, 0x00, 0xFF, 0xFF]), 0xF800);
        assert_eq!(Depth::Bgr24.pixel(&[0x01, 0x02, 0x03, 0xFF]), 0x030201);
    }

    #[test]
    fn interleaved_strips_fit_the_sixteen_bit_size_field() {
        for profile in [CodecProfile::Interleaved16, CodecProfile::Interleaved24] {
            let mut encoder = Encoder::new(profile, 8 * 1024 * 1024);
            let big = region(0, 0, 1920, 200, text_like);
            let frame = Frame { size: Size::new(1920, 1080), resized: false, regions: vec![big] };
            let found = bitmaps(&encoder.encode(&frame).unwrap());
            assert!(found.len() > 1, "split into strips");
            let mut rows = 0;
            for (data, _) in &found {
                assert!(u32::from(data.width) * u32::from(data.bpp / 8) * u32::from(data.height) <= u32::from(u16::MAX));
                rows += data.height;
            }
            assert_eq!(rows, 200);
        }
    }
}
