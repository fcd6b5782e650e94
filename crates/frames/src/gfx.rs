//! Commands of the graphics pipeline (MS-RDPEGFX) for GFX profiles, made once per profile by
//! the stage and shared by every terminal of it, like fast-path bytes are for the others.

use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{CanvasUpdate, Rect};

use crate::encode::EncodeError;
use crate::planar::{PlanarCompression, PlanarEncoder, PlanarSource};

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
    /// `rects`, each filled with one colour (`bgr`: blue, green, red): flat areas (a cleared
    /// window, a background) cost a few bytes and no decoding, and are exact.
    SolidFill { bgr: [u8; 3], rects: Vec<Rect> },
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
    let src = PlanarSource { pixels: &update.pixels, width: w, height: h, stride: w * BYTES_PER_PIXEL, bottom_up: false, padded_width: w };
    // Noise: raw planes are smaller than their runs, and decoders take both.
    let mut buf = Vec::new();
    PlanarEncoder::new()
        .encode(&src, false, PlanarCompression::Smallest, &mut buf)
        .map_err(|e| EncodeError::Codec { what: "gfx planar", detail: e.to_string() })?;
    // The encoder reserved for the worst case; the command may be held a while.
    buf.shrink_to_fit();
    Ok(GfxCommand::Planar { rect: r, data: buf })
}
