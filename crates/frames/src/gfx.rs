//! Commands of the graphics pipeline (MS-RDPEGFX) for GFX profiles, made once per profile by
//! the stage and shared by every terminal of it, like fast-path bytes are for the others.

use ironrdp_graphics::rdp6::{BgrAChannels, BitmapStreamEncoder};
use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{CanvasUpdate, Rect};

use crate::encode::EncodeError;

/// One command of an EGFX frame, in surface coordinates (the surface is the feed's whole screen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GfxCommand {
    /// One H.264 access unit (Annex B) of the whole surface; `rects` are what it changed (the
    /// AVC420 metablock's regions: the client copies only these from the decoded picture); `qp`
    /// the quantisation parameter for the metablock's quant/quality values; `key` an IDR.
    Avc420 { annexb: Vec<u8>, rects: Vec<Rect>, qp: u8, key: bool },
    /// Lossless pixels of `rect`: an RDP 6.0 planar bitmap as EGFX WireToSurface1 bitmap data
    /// (codec id PLANAR, pixel format XRGB). Stateless: for small changes, for refinement after
    /// motion, and for any feed that cannot take the shared H.264 stream right now.
    Planar { rect: Rect, data: Vec<u8> },
}

/// `update` (BGRX pixels) as a [`GfxCommand::Planar`]: an RDP 6.0 bitmap stream (MS-RDPEGDI
/// 2.2.2.5.1) exactly `rect` in size, rows top-down. Unlike a planar Bitmap Update (bottom-up,
/// width a multiple of 4) the graphics pipeline takes the destination rectangle as the bitmap's
/// size and surfaces are top-down (MS-RDPEGFX 2.2.2.1; FreeRDP decodes GFX planar unflipped).
/// No alpha plane: the surface is XRGB.
pub fn planar_command(update: &CanvasUpdate) -> Result<GfxCommand, EncodeError> {
    let r = update.rect;
    let (w, h) = (usize::from(r.width), usize::from(r.height));
    if w == 0 || h == 0 || update.pixels.len() != w * h * BYTES_PER_PIXEL {
        return Err(EncodeError::Codec { what: "gfx planar", detail: format!("{} bytes are not a {w}x{h} rectangle", update.pixels.len()) });
    }
    let raw = w * h * 3 + 1; // header, three planes, the pad byte of an uncompressed stream
    // RLE of incompressible planes takes up to 16 bytes for 15 pixels.
    let mut buf = vec![0u8; raw + raw / 8 + 64];
    let mut encoder = BitmapStreamEncoder::new(w, h);
    let len = match encoder.encode_bitmap::<BgrAChannels>(&update.pixels, &mut buf, true) {
        Ok(len) if len <= raw => len,
        // Noise: raw planes are smaller than their runs, and decoders take both.
        _ => encoder
            .encode_bitmap::<BgrAChannels>(&update.pixels, &mut buf, false)
            .map_err(|e| EncodeError::Codec { what: "gfx planar", detail: format!("{e:?}") })?,
    };
    buf.truncate(len);
    Ok(GfxCommand::Planar { rect: r, data: buf })
}
