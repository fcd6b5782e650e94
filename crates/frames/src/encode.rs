//! Encoders: a frame's changed rectangles into fast-path update bytes for one codec profile.

use ironrdp_core::{Encode as _, WriteCursor, encode_vec};
use ironrdp_graphics::color_conversion::to_64x64_ycbcr_tile;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_graphics::rdp6::BitmapStreamEncoder;
use ironrdp_graphics::rfx_encode_component;
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression, CompressedDataHeader};
use ironrdp_pdu::codecs::rfx::{
    self, Block, ChannelsPdu, CodecChannel, CodecVersionsPdu, ContextPdu, EntropyAlgorithm, FrameBeginPdu,
    FrameEndPdu, OperatingMode, Quant, RegionPdu, RfxChannel, RfxRectangle, SyncPdu, TileSetPdu,
};
use ironrdp_pdu::fast_path::UpdateCode;
use ironrdp_pdu::geometry::{ExclusiveRectangle, InclusiveRectangle};
use ironrdp_pdu::surface_commands::{ExtendedBitmapDataPdu, SurfaceBitsPdu, SurfaceCommand};
use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{CanvasUpdate, Frame, Rect, Size};

use crate::fastpath::fastpath_updates;

/// How a terminal wants its pixels. Terminals with equal profiles can share encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecProfile {
    /// RemoteFX (MS-RDPRFX) image mode in Surface Bits commands: lossy, compact for photos and
    /// gradients. `codec_id` is the id the client assigned in its Bitmap Codecs capability.
    RemoteFx { codec_id: u8, rlgr3: bool },
    /// RDP 6.0 planar bitmap compression in legacy Bitmap Updates: lossless, what every client
    /// decodes; compresses text and flat areas well.
    Planar,
    /// Raw 32-bit pixels in Surface Bits commands: lossless and cheap to make, large on the wire.
    Uncompressed,
}

impl CodecProfile {
    pub fn name(self) -> &'static str {
        match self {
            CodecProfile::RemoteFx { .. } => "remotefx",
            CodecProfile::Planar => "planar",
            CodecProfile::Uncompressed => "uncompressed",
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
            CodecProfile::Planar => 4,
            _ => 1,
        }
    }

    /// Encode every changed rectangle of `frame`.
    pub fn encode(&mut self, frame: &Frame) -> Result<EncodedFrame, EncodeError> {
        let mut out = Vec::new();
        for region in &frame.regions {
            for band in self.bands(region) {
                match self.profile {
                    CodecProfile::RemoteFx { codec_id, rlgr3 } => {
                        self.frame_index = self.frame_index.wrapping_add(1);
                        let data = encode_rfx(&band, frame.size, rlgr3, self.frame_index)?;
                        surface_bits(&band, codec_id, &data, &mut out)?;
                    }
                    CodecProfile::Planar => planar_bitmap(&band, &mut out)?,
                    CodecProfile::Uncompressed => {
                        let data = bottom_up(&band);
                        surface_bits(&band, 0, &data, &mut out)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Split a rectangle into horizontal strips whose raw pixels fit one logical update.
    fn bands(&self, region: &CanvasUpdate) -> Vec<CanvasUpdate> {
        let row_bytes = usize::from(region.rect.width) * BYTES_PER_PIXEL;
        if row_bytes == 0 {
            return Vec::new();
        }
        // Compressed data is smaller than raw in practice, but leave room for the worst case
        // and the headers.
        let budget = self.max_update / 2;
        let mut rows = (budget / row_bytes).max(1);
        if let CodecProfile::RemoteFx { .. } = self.profile {
            if rows >= 64 {
                rows -= rows % 64; // keep strips on the 64-pixel tile grid
            }
        }
        if let CodecProfile::Planar = self.profile {
            // A planar BitmapData carries its uncompressed size (of the padded bitmap) in 16 bits.
            let padded_row_bytes = usize::from(planar_width(region.rect.width)) * BYTES_PER_PIXEL;
            rows = rows.min(usize::from(u16::MAX) / padded_row_bytes).max(1);
        }
        let height = usize::from(region.rect.height);
        if rows >= height {
            return vec![region.clone()];
        }
        (0..height)
            .step_by(rows)
            .map(|top| {
                let h = rows.min(height - top);
                CanvasUpdate {
                    rect: Rect::new(region.rect.x, region.rect.y + top as u16, region.rect.width, h as u16),
                    pixels: region.pixels[top * row_bytes..(top + h) * row_bytes].to_vec(),
                }
            })
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
fn bottom_up(region: &CanvasUpdate) -> Vec<u8> {
    let row_bytes = usize::from(region.rect.width) * BYTES_PER_PIXEL;
    region.pixels.chunks(row_bytes).rev().flatten().copied().collect()
}

fn surface_bits(region: &CanvasUpdate, codec_id: u8, data: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let r = region.rect;
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

fn planar_bitmap(region: &CanvasUpdate, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let r = region.rect;
    let bitmap_width = planar_width(r.width);
    let row_bytes = usize::from(r.width) * BYTES_PER_PIXEL;
    let whole = r.width > 0 && r.height > 0 && region.pixels.len() == row_bytes * usize::from(r.height);
    // The padded bitmap's size must fit the 16-bit field that carries it.
    let uncompressed_size = u16::try_from(u32::from(bitmap_width) * 4 * u32::from(r.height)).ok().filter(|_| whole).ok_or_else(|| {
        EncodeError::Codec { what: "planar bitmap", detail: format!("a {}x{} rectangle does not fit one bitmap", r.width, r.height) }
    })?;
    let (width, height) = (usize::from(bitmap_width), usize::from(r.height));
    let pad = usize::from(bitmap_width - r.width);
    // Rows are padded by repeating their last pixel (cheap to compress); the destination
    // rectangle below stays the real one, so clients draw none of the padding (MS-RDPBCGR
    // 2.2.9.1.1.3.1.2.2: the bitmap is `width` wide, drawn at destLeft..=destRight).
    let rows_bottom_up = || {
        region.pixels.chunks(row_bytes).rev().flat_map(move |row| {
            let last = &row[row.len() - BYTES_PER_PIXEL..];
            row.chunks(BYTES_PER_PIXEL).chain(std::iter::repeat_n(last, pad))
        })
    };
    let mut encoder = BitmapStreamEncoder::new(width, height);
    // RLE can expand incompressible planes slightly beyond raw size.
    let mut buf = vec![0u8; width * height * 3 + 1024];
    let len = encoder
        .encode_channels_stream(
            (rows_bottom_up().map(|p| p[2]), rows_bottom_up().map(|p| p[1]), rows_bottom_up().map(|p| p[0])),
            &mut buf,
            true,
        )
        .map_err(|e| EncodeError::Codec { what: "planar bitmap", detail: format!("{e:?}") })?;
    let data = BitmapData {
        rectangle: InclusiveRectangle { left: r.x, top: r.y, right: r.x + r.width - 1, bottom: r.y + r.height - 1 },
        width: bitmap_width,
        height: r.height,
        bits_per_pixel: 32,
        compression_flags: Compression::BITMAP_COMPRESSION,
        compressed_data_header: Some(CompressedDataHeader {
            main_body_size: len as u16,
            scan_width: bitmap_width,
            uncompressed_size,
        }),
        bitmap_data: &buf[..len],
    };
    let update = BitmapUpdateData { rectangles: vec![data] };
    let bytes = encode_vec(&update).map_err(codec_err("bitmap update"))?;
    fastpath_updates(UpdateCode::Bitmap, &bytes, out);
    Ok(())
}

/// Room for one tile's three encoded components (each at most its 4096 raw coefficients).
const TILE_STORE: usize = 3 * 4096;
/// Updates with fewer tiles per core than this are encoded on the calling thread.
const PARALLEL_MIN_TILES: usize = 16;

/// One RemoteFX image-mode message for the rectangle (tiles relative to its top-left corner).
fn encode_rfx(region: &CanvasUpdate, desktop: Size, rlgr3: bool, frame_index: u32) -> Result<Vec<u8>, EncodeError> {
    let entropy_algorithm = if rlgr3 { EntropyAlgorithm::Rlgr3 } else { EntropyAlgorithm::Rlgr1 };
    let (width, height) = (usize::from(region.rect.width), usize::from(region.rect.height));
    let stride = width * BYTES_PER_PIXEL;
    let quant = Quant::default();
    let tiles_x = width.div_ceil(64);
    let tiles_y = height.div_ceil(64);

    // Encoded components live here; tiles borrow from it.
    let tile_count = tiles_x * tiles_y;
    let mut store = vec![0u8; tile_count * TILE_STORE];
    let mut spans = vec![(0u16, 0u16, 0usize, 0usize, 0usize); tile_count];
    let encode_range = |first: usize, store: &mut [u8], spans: &mut [(u16, u16, usize, usize, usize)]| -> Result<(), EncodeError> {
        for (i, (chunk, span)) in store.chunks_mut(TILE_STORE).zip(spans.iter_mut()).enumerate() {
            let index = first + i;
            let (tx, ty) = (index % tiles_x, index / tiles_x);
            let (x, y) = (tx * 64, ty * 64);
            let tw = (width - x).min(64) as u32;
            let th = (height - y).min(64) as u32;
            let input = &region.pixels[y * stride + x * BYTES_PER_PIXEL..];
            let (mut yp, mut cb, mut cr) = ([0i16; 4096], [0i16; 4096], [0i16; 4096]);
            to_64x64_ycbcr_tile(input, tw, th, stride as u32, PixelFormat::BgrX32, &mut yp, &mut cb, &mut cr)
                .map_err(|e| EncodeError::Codec { what: "remotefx colour conversion", detail: format!("{e:?}") })?;
            let (y_out, rest) = chunk.split_at_mut(4096);
            let (cb_out, cr_out) = rest.split_at_mut(4096);
            let rlgr = |e| EncodeError::Codec { what: "remotefx entropy coding", detail: format!("{e:?}") };
            let ly = rfx_encode_component(&mut yp, y_out, &quant, entropy_algorithm).map_err(rlgr)?;
            let lcb = rfx_encode_component(&mut cb, cb_out, &quant, entropy_algorithm).map_err(rlgr)?;
            let lcr = rfx_encode_component(&mut cr, cr_out, &quant, entropy_algorithm).map_err(rlgr)?;
            *span = (tx as u16, ty as u16, ly, lcb, lcr);
        }
        Ok(())
    };
    // Tiles are independent: a large update is split across the cores (a full 1920x1080 frame
    // is 510 tiles); small ones (a typed character) are not worth a thread.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(tile_count / PARALLEL_MIN_TILES).max(1);
    if threads == 1 {
        encode_range(0, &mut store, &mut spans)?;
    } else {
        let per = tile_count.div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = store
                .chunks_mut(per * TILE_STORE)
                .zip(spans.chunks_mut(per))
                .enumerate()
                .map(|(n, (store, spans))| scope.spawn(move || encode_range(n * per, store, spans)))
                .collect();
            workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|_| Err(EncodeError::Codec { what: "remotefx", detail: "an encoding thread panicked".into() })))
        })?;
    }
    let tiles: Vec<rfx::Tile<'_>> = store
        .chunks(TILE_STORE)
        .zip(&spans)
        .map(|(chunk, &(x, y, ly, lcb, lcr))| rfx::Tile {
            y_quant_index: 0,
            cb_quant_index: 0,
            cr_quant_index: 0,
            x,
            y,
            y_data: &chunk[..ly],
            cb_data: &chunk[4096..4096 + lcb],
            cr_data: &chunk[8192..8192 + lcr],
        })
        .collect();

    let blocks = [
        Block::Sync(SyncPdu),
        Block::CodecChannel(CodecChannel::Context(ContextPdu { flags: OperatingMode::IMAGE_MODE, entropy_algorithm })),
        Block::Channels(ChannelsPdu(vec![RfxChannel { width: desktop.width as i16, height: desktop.height as i16 }])),
        Block::CodecVersions(CodecVersionsPdu),
        Block::CodecChannel(CodecChannel::FrameBegin(FrameBeginPdu { index: frame_index, number_of_regions: 1 })),
        Block::CodecChannel(CodecChannel::Region(RegionPdu {
            rectangles: vec![RfxRectangle { x: 0, y: 0, width: region.rect.width, height: region.rect.height }],
        })),
        Block::CodecChannel(CodecChannel::TileSet(TileSetPdu { entropy_algorithm, quants: vec![quant], tiles })),
        Block::CodecChannel(CodecChannel::FrameEnd(FrameEndPdu)),
    ];
    let size: usize = blocks.iter().map(|b| b.size()).sum();
    let mut out = vec![0u8; size];
    let mut cursor = WriteCursor::new(&mut out);
    for block in &blocks {
        block.encode(&mut cursor).map_err(codec_err("remotefx message"))?;
    }
    Ok(out)
}
