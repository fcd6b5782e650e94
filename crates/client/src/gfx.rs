//! The graphics pipeline (MS-RDPEGFX) on our side: which capability sets we offer, the H.264
//! decoder, and the counters tests and benchmarks read.
//!
//! Decoding and compositing are ironrdp-egfx's `GraphicsPipelineClient` (registered on the
//! dynamic-channel client): it answers every EndFrame with a Frame Acknowledge, and the session
//! (`ActiveStage::process`) drains its compositor into our framebuffer after every slow-path PDU,
//! following ResetGraphics to a new size. What it does not hand back is what we count here,
//! through a handler and a decoder wrapper that share [`GfxState`] with the [`Client`].
//!
//! [`Client`]: crate::Client

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ironrdp_egfx::client::{
    BitmapUpdate, GraphicsPipelineClient, GraphicsPipelineHandler, Surface,
};
use ironrdp_egfx::decode::{
    DecodedFrame, DecoderError, DecoderResult, H264Decoder, OpenH264Decoder, Yuv420Frame,
};
use ironrdp_egfx::pdu::{
    CacheToSurfacePdu, CapabilitiesV8Flags, CapabilitiesV10Flags, CapabilitiesV81Flags,
    CapabilitiesV103Flags, CapabilitiesV104Flags, CapabilitiesV107Flags, CapabilitySet, Codec1Type,
    SolidFillPdu, SurfaceToSurfacePdu, WireToSurface2Pdu,
};
use tracing::debug;

use crate::ConnectError;
use crate::config::Gfx;
use crate::wire::Codec;

/// What the graphics pipeline brought so far. All zero (and `confirmed` `None`) when the client
/// did not offer it ([`Gfx::Off`]) or the server did not open the channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GfxCounters {
    /// The capability set the server confirmed: its version (`0xA0701` is 10.7, `0x80105` 8.1,
    /// MS-RDPEGFX 2.2.3) and whether it allows AVC420 and AVC444.
    pub confirmed: Option<GfxConfirmed>,
    /// EGFX frames completed (EndFrame). ironrdp-egfx answers each with a Frame Acknowledge,
    /// which the client sends before it reads the next PDU.
    pub frames: u64,
    /// Pictures the H.264 decoder returned: one per AVC420 command, one per view of an AVC444
    /// command.
    pub h264_pictures: u64,
    /// H.264 pictures the decoder failed on (the update is dropped, the session goes on).
    pub h264_errors: u64,
    /// Time spent in the H.264 decoder, colour conversion excluded.
    pub h264_decode_time: Duration,
    /// Time spent converting decoded pictures to RGBA in our decoder's `decode` (SIMD). Zero
    /// while ironrdp-egfx asks for the planes instead and converts them itself (see
    /// [`CountingDecoder`]).
    pub colour_time: Duration,
    /// Surface commands that painted nothing because they could not be decoded, any codec
    /// (ironrdp-egfx's count; H.264 failures are among them).
    pub dropped_updates: u64,
    /// Bytes of EGFX channel data received: the dynamic-channel payload (ZGFX segments), without
    /// the MCS, static channel and dynamic channel headers.
    pub bytes: u64,
    /// ResetGraphics PDUs, and the output size the last one set.
    pub resets: u64,
    pub output_size: Option<(u32, u32)>,
    pub surfaces_created: u64,
}

/// A confirmed capability set, as [`GfxCounters::confirmed`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GfxConfirmed {
    pub version: u32,
    pub avc420: bool,
    pub avc444: bool,
}

/// State shared by the handler, the decoder wrapper and the client: one connection's, used on
/// one thread at a time (the mutex is never contended; it makes the boxes `Send`).
#[derive(Debug, Default)]
pub(crate) struct GfxState {
    pub counters: GfxCounters,
    /// Per codec (and solid fill / surface-to-surface / cache-to-surface): rectangles painted.
    pub codecs: std::collections::BTreeMap<Codec, u64>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct SharedGfx(Arc<Mutex<GfxState>>);

impl SharedGfx {
    pub fn lock(&self) -> MutexGuard<'_, GfxState> {
        // A panic while holding it leaves counters, never broken invariants: keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The capability sets we advertise for `mode` (`None` for [`Gfx::Off`]), most capable first:
/// the server confirms the first one it supports.
///
/// [`Gfx::Avc420`] offers 8.1 with AVC420, then 8: AVC420 and no AVC444 (a 10.x set would
/// allow both). [`Gfx::NoAvc`] offers every version from 10.7 down to 10 with AVC disabled
/// (10.1 has no flags, so it is left out: it always means AVC) and 8.1 without AVC420, as
/// xfreerdp's `/gfx` does: a server must then use
/// planar, RemoteFX, ClearCodec or uncompressed on the pipeline, or not use it at all.
/// A small bitmap cache (16 MiB) everywhere: many of our clients run side by side in benchmarks.
pub(crate) fn capabilities(mode: Gfx) -> Option<Vec<CapabilitySet>> {
    let sets = match mode {
        Gfx::Off => return None,
        // AVC420 only: every 10.x set implies AVC444 too, which this client does not take
        // (its decoder hands ironrdp-egfx RGBA, converted with SIMD; see `CountingDecoder`).
        Gfx::Avc420 => vec![
            CapabilitySet::V8_1 {
                flags: CapabilitiesV81Flags::AVC420_ENABLED | CapabilitiesV81Flags::SMALL_CACHE,
            },
            CapabilitySet::V8 {
                flags: CapabilitiesV8Flags::SMALL_CACHE,
            },
        ],
        Gfx::NoAvc => vec![
            CapabilitySet::V10_7 {
                flags: CapabilitiesV107Flags::SMALL_CACHE | CapabilitiesV107Flags::AVC_DISABLED,
            },
            CapabilitySet::V10_6 {
                flags: CapabilitiesV104Flags::SMALL_CACHE | CapabilitiesV104Flags::AVC_DISABLED,
            },
            CapabilitySet::V10_5 {
                flags: CapabilitiesV104Flags::SMALL_CACHE | CapabilitiesV104Flags::AVC_DISABLED,
            },
            CapabilitySet::V10_4 {
                flags: CapabilitiesV104Flags::SMALL_CACHE | CapabilitiesV104Flags::AVC_DISABLED,
            },
            CapabilitySet::V10_3 {
                flags: CapabilitiesV103Flags::AVC_DISABLED,
            },
            CapabilitySet::V10_2 {
                flags: CapabilitiesV10Flags::SMALL_CACHE | CapabilitiesV10Flags::AVC_DISABLED,
            },
            CapabilitySet::V10 {
                flags: CapabilitiesV10Flags::SMALL_CACHE | CapabilitiesV10Flags::AVC_DISABLED,
            },
            CapabilitySet::V8_1 {
                flags: CapabilitiesV81Flags::SMALL_CACHE,
            },
            CapabilitySet::V8 {
                flags: CapabilitiesV8Flags::SMALL_CACHE,
            },
        ],
    };
    Some(sets)
}

/// The pipeline's client for `mode`, with its counters in `shared`; `Ok(None)` for
/// [`Gfx::Off`]. Fails only when AVC420 is asked for and OpenH264 cannot start.
pub(crate) fn pipeline_client(
    mode: Gfx,
    shared: &SharedGfx,
) -> Result<Option<GraphicsPipelineClient>, ConnectError> {
    let Some(caps) = capabilities(mode) else {
        return Ok(None);
    };
    let decoder: Option<Box<dyn H264Decoder>> = match mode {
        Gfx::Avc420 => {
            let inner = OpenH264Decoder::new().map_err(|e| {
                ConnectError::Protocol(format!("cannot offer AVC420: the H.264 decoder: {e}"))
            })?;
            Some(Box::new(CountingDecoder {
                inner,
                shared: shared.clone(),
            }))
        }
        Gfx::NoAvc | Gfx::Off => None,
    };
    let handler = Handler {
        caps,
        shared: shared.clone(),
    };
    Ok(Some(GraphicsPipelineClient::new(
        Box::new(handler),
        decoder,
    )))
}

struct Handler {
    caps: Vec<CapabilitySet>,
    shared: SharedGfx,
}

fn gfx_codec(codec: Codec1Type) -> Codec {
    match codec {
        Codec1Type::Avc420 => Codec::GfxAvc420,
        Codec1Type::Avc444 | Codec1Type::Avc444v2 => Codec::GfxAvc444,
        Codec1Type::Planar => Codec::GfxPlanar,
        Codec1Type::RemoteFx => Codec::GfxRemoteFx,
        Codec1Type::ClearCodec => Codec::GfxClearCodec,
        Codec1Type::Alpha => Codec::GfxAlpha,
        // Progressive tiles arrive as uncompressed after decoding; they are counted in
        // `on_wire_to_surface2` instead.
        Codec1Type::Uncompressed => Codec::GfxUncompressed,
    }
}

impl Handler {
    fn count(&self, codec: Codec, n: u64) {
        *self.shared.lock().codecs.entry(codec).or_default() += n;
    }
}

impl GraphicsPipelineHandler for Handler {
    fn capabilities(&self) -> Vec<CapabilitySet> {
        self.caps.clone()
    }

    fn on_capabilities_confirmed(&mut self, caps: &CapabilitySet) {
        let offered = self.caps.iter().find(|c| c.version() == caps.version());
        // AVC is allowed only if we offered it in that version and the server kept it.
        let (avc420, avc444) = avc_allowed(caps);
        let confirmed = GfxConfirmed {
            version: caps.version().0,
            avc420: avc420 && offered.is_some_and(|c| avc_allowed(c).0),
            avc444: avc444 && offered.is_some_and(|c| avc_allowed(c).1),
        };
        debug!(?confirmed, "graphics pipeline confirmed");
        self.shared.lock().counters.confirmed = Some(confirmed);
    }

    fn on_reset_graphics(&mut self, width: u32, height: u32) {
        let mut state = self.shared.lock();
        state.counters.resets += 1;
        state.counters.output_size = Some((width, height));
    }

    fn on_surface_created(&mut self, _surface: &Surface) {
        self.shared.lock().counters.surfaces_created += 1;
    }

    fn on_bitmap_updated(&mut self, update: &BitmapUpdate) {
        self.count(gfx_codec(update.codec_id), 1);
    }

    fn on_wire_to_surface2(&mut self, _pdu: &WireToSurface2Pdu) {
        self.count(Codec::GfxProgressive, 1);
    }

    fn on_frame_complete(&mut self, _frame_id: u32) {
        self.shared.lock().counters.frames += 1;
    }

    fn on_solid_fill(&mut self, pdu: &SolidFillPdu) {
        self.count(Codec::GfxSolidFill, pdu.rectangles.len() as u64);
    }

    fn on_surface_to_surface(&mut self, pdu: &SurfaceToSurfacePdu) {
        self.count(
            Codec::GfxSurfaceToSurface,
            pdu.destination_points.len() as u64,
        );
    }

    fn on_cache_to_surface(&mut self, pdu: &CacheToSurfacePdu) {
        self.count(
            Codec::GfxCacheToSurface,
            pdu.destination_points.len() as u64,
        );
    }
}

/// Whether a capability set lets the server send AVC420 and AVC444 (MS-RDPEGFX 2.2.3).
fn avc_allowed(caps: &CapabilitySet) -> (bool, bool) {
    match caps {
        CapabilitySet::V8 { .. } => (false, false),
        CapabilitySet::V8_1 { flags } => {
            (flags.contains(CapabilitiesV81Flags::AVC420_ENABLED), false)
        }
        CapabilitySet::V10 { flags } | CapabilitySet::V10_2 { flags } => {
            let on = !flags.contains(CapabilitiesV10Flags::AVC_DISABLED);
            (on, on)
        }
        CapabilitySet::V10_1 => (true, true),
        CapabilitySet::V10_3 { flags } => {
            let on = !flags.contains(CapabilitiesV103Flags::AVC_DISABLED);
            (on, on)
        }
        CapabilitySet::V10_4 { flags }
        | CapabilitySet::V10_5 { flags }
        | CapabilitySet::V10_6 { flags }
        | CapabilitySet::V10_6Err { flags } => {
            let on = !flags.contains(CapabilitiesV104Flags::AVC_DISABLED);
            (on, on)
        }
        CapabilitySet::V10_7 { flags } => {
            let on = !flags.contains(CapabilitiesV107Flags::AVC_DISABLED);
            (on, on)
        }
    }
}

/// OpenH264, counted.
///
/// It says it returns no YUV planes (`supports_yuv420`), so ironrdp-egfx 0.5 asks `decode` for
/// RGBA, converted here with SIMD, instead of converting the planes with its per-pixel loop.
struct CountingDecoder {
    inner: OpenH264Decoder,
    shared: SharedGfx,
}

impl CountingDecoder {
    fn counted<T>(
        &mut self,
        decode: impl FnOnce(&mut OpenH264Decoder) -> DecoderResult<T>,
    ) -> DecoderResult<T> {
        let started = Instant::now();
        let result = decode(&mut self.inner);
        let spent = started.elapsed();
        let mut state = self.shared.lock();
        state.counters.h264_decode_time += spent;
        match &result {
            Ok(_) => state.counters.h264_pictures += 1,
            Err(e) => {
                state.counters.h264_errors += 1;
                debug!(error = %e, "H.264 picture not decoded");
            }
        }
        result
    }
}

impl H264Decoder for CountingDecoder {
    /// The planes, converted by [`yuv420_to_rgba`] rather than by the inner decoder, so the
    /// conversion is timed apart from the decoder.
    fn decode(&mut self, data: &[u8]) -> DecoderResult<DecodedFrame> {
        let picture = self.counted(|d| d.decode_yuv420(data))?;
        let started = Instant::now();
        let frame = yuv420_to_rgba(&picture);
        self.shared.lock().counters.colour_time += started.elapsed();
        frame
    }

    fn decode_yuv420(&mut self, data: &[u8]) -> DecoderResult<Yuv420Frame> {
        self.counted(|d| d.decode_yuv420(data))
    }

    /// No: ironrdp-egfx would convert the planes itself with a per-pixel loop (4.3 ms a
    /// 1280x800 picture, against 0.4 ms here), and it takes this as "no AVC444" too, which is
    /// what the capabilities say.
    fn supports_yuv420(&self) -> bool {
        false
    }

    fn wait_until_ready(&mut self) -> bool {
        self.inner.wait_until_ready()
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// `picture` as RGBA8888 (`width * height * 4` bytes, the whole picture: ironrdp-egfx crops
/// to the destination rectangle; alpha 255), converted with the yuv crate's SIMD rows.
///
/// Full-range BT.709, the MS-RDPEGFX 3.3.8.3.1 matrix, as both ironrdp-egfx 0.5 conversions
/// use it: `OpenH264Decoder::decode` calls this same yuv function with the same range and
/// matrix, and `Yuv420Frame::to_rgba` (what the pipeline uses) applies the specification's
/// 8-bit fixed-point form of it, which truncates, so it comes out up to 1 lower per channel.
/// Chroma is taken from the sample covering each 2x2 block, with no interpolation, as in both.
fn yuv420_to_rgba(picture: &Yuv420Frame) -> DecoderResult<DecodedFrame> {
    let (width, height) = (picture.width(), picture.height());
    let row_bytes = usize::from(width) * 4;
    let mut rgba = vec![0u8; row_bytes * usize::from(height)];
    if row_bytes == 0 {
        return Ok(DecodedFrame::new(rgba, width.into(), height.into()));
    }
    // `Yuv420Frame` shows its planes only a row at a time, so each luma row is converted as a
    // one-row 4:2:0 picture with its chroma row (the yuv crate vectorises along the row).
    for (row, out) in rgba.chunks_exact_mut(row_bytes).enumerate() {
        let (Some(y), Some(u), Some(v)) = (
            picture.luma_row(row),
            picture.u_row(row / 2),
            picture.v_row(row / 2),
        ) else {
            return Err(DecoderError::msg("YUV 4:2:0 picture shorter than its height"));
        };
        let chroma_width = u32::from(width.div_ceil(2));
        let planar = yuv::YuvPlanarImage {
            y_plane: y,
            y_stride: width.into(),
            u_plane: u,
            u_stride: chroma_width,
            v_plane: v,
            v_stride: chroma_width,
            width: width.into(),
            height: 1,
        };
        yuv::yuv420_to_rgba(
            &planar,
            out,
            u32::from(width) * 4,
            yuv::YuvRange::Full,
            yuv::YuvStandardMatrix::Bt709,
        )
        .map_err(|e| DecoderError::new("YUV 4:2:0 to RGBA", e))?;
    }
    Ok(DecodedFrame::new(rgba, width.into(), height.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(mode: Gfx) -> Vec<u32> {
        capabilities(mode)
            .unwrap()
            .iter()
            .map(|c| c.version().0)
            .collect()
    }

    #[test]
    fn off_offers_nothing() {
        assert!(capabilities(Gfx::Off).is_none());
        assert!(
            pipeline_client(Gfx::Off, &SharedGfx::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn avc420_mode_offers_avc420_and_never_avc444() {
        let caps = capabilities(Gfx::Avc420).unwrap();
        assert_eq!(versions(Gfx::Avc420), [0x8_0105, 0x8_0004], "8.1 first: the server takes the first it knows");
        let allowed: Vec<_> = caps.iter().map(avc_allowed).collect();
        assert_eq!(allowed, [(true, false), (false, false)]);
    }

    #[test]
    fn no_avc_mode_disables_avc_in_every_version() {
        let caps = capabilities(Gfx::NoAvc).unwrap();
        assert!(
            caps.iter().all(|c| avc_allowed(c) == (false, false)),
            "{caps:?}"
        );
        assert_eq!(caps[0].version().0, 0xA_0701, "10.7 first, as xfreerdp's /gfx");
        assert!(!versions(Gfx::NoAvc).contains(&0xA_0100), "10.1 (which has no AVC flag) is left out");
    }

    #[test]
    fn decoder_counts_pictures_and_failures() {
        let shared = SharedGfx::default();
        let mut decoder = CountingDecoder {
            inner: OpenH264Decoder::new().unwrap(),
            shared: shared.clone(),
        };
        assert!(
            decoder
                .decode_yuv420(&[0, 0, 0, 1, 0x65, 0xFF, 0x00])
                .is_err(),
            "not a picture"
        );
        let counters = shared.lock().counters.clone();
        assert_eq!((counters.h264_pictures, counters.h264_errors), (0, 1));
        assert!(!decoder.supports_yuv420(), "RGBA from our conversion, not ironrdp-egfx's");
    }

    /// Deterministic noise, with the extremes over-represented so that clamping is exercised.
    fn sample(i: usize) -> u8 {
        let mut v = (i as u32).wrapping_mul(2_654_435_761);
        v ^= v >> 15;
        v = v.wrapping_mul(2_246_822_519);
        v ^= v >> 13;
        match v % 8 {
            0 => 0,
            1 => 255,
            _ => (v >> 8) as u8,
        }
    }

    /// A picture of noise, with 0xAB in the stride padding: a stride mix-up shows.
    fn synthetic(width: u16, height: u16, luma_stride: usize, chroma_stride: usize) -> Yuv420Frame {
        let (w, h) = (usize::from(width), usize::from(height));
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let plane = |stride: usize, pw: usize, ph: usize, seed: usize| {
            let mut p = vec![0xABu8; stride * ph];
            for row in 0..ph {
                for col in 0..pw {
                    p[row * stride + col] = sample(seed + row * pw + col);
                }
            }
            p
        };
        Yuv420Frame::new(
            width,
            height,
            plane(luma_stride, w, h, 0),
            luma_stride,
            plane(chroma_stride, cw, ch, 1 << 20),
            plane(chroma_stride, cw, ch, 2 << 20),
            chroma_stride,
        )
        .unwrap()
    }

    /// ironrdp-egfx 0.5's conversion written out: MS-RDPEGFX 3.3.8.3.1's fixed-point inverse
    /// transform, chroma from the sample covering each 2x2 block, opaque.
    fn reference_rgba(picture: &Yuv420Frame) -> Vec<u8> {
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        let mut rgba = Vec::new();
        for row in 0..usize::from(picture.height()) {
            let (y, u, v) = (
                picture.luma_row(row).unwrap(),
                picture.u_row(row / 2).unwrap(),
                picture.v_row(row / 2).unwrap(),
            );
            for col in 0..usize::from(picture.width()) {
                let luma = 256 * i32::from(y[col]);
                let (u, v) = (i32::from(u[col / 2]) - 128, i32::from(v[col / 2]) - 128);
                rgba.extend_from_slice(&[
                    clamp((luma + 403 * v) >> 8),
                    clamp((luma - 48 * u - 120 * v) >> 8),
                    clamp((luma + 475 * u) >> 8),
                    0xFF,
                ]);
            }
        }
        rgba
    }

    fn max_difference(a: &[u8], b: &[u8]) -> u8 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0)
    }

    #[test]
    fn simd_conversion_matches_ironrdps_transform() {
        // (width, height, luma stride, chroma stride): odd sizes, padded and tight strides.
        for (w, h, ys, cs) in [
            (33, 17, 40, 24),
            (33, 17, 33, 17),
            (64, 32, 64, 32),
            (2, 3, 5, 3),
            (1, 1, 1, 1),
        ] {
            let picture = synthetic(w, h, ys, cs);
            let ours = yuv420_to_rgba(&picture).unwrap();
            assert_eq!(
                (ours.width(), ours.height(), ours.data().len()),
                (u32::from(w), u32::from(h), usize::from(w) * usize::from(h) * 4),
                "{w}x{h}"
            );
            assert!(ours.data().chunks_exact(4).all(|p| p[3] == 0xFF), "{w}x{h}: opaque");
            let reference = reference_rgba(&picture);
            let d = max_difference(ours.data(), &reference);
            assert!(d <= 2, "{w}x{h}: max difference {d} from the reference");
            let theirs = picture.to_rgba();
            let d = max_difference(ours.data(), theirs.data());
            assert!(d <= 2, "{w}x{h}: max difference {d} from Yuv420Frame::to_rgba");
        }
    }

    #[test]
    fn decode_gives_what_ironrdps_decoder_gives_and_times_conversion_apart() {
        use openh264::OpenH264API;
        use openh264::encoder::{Encoder, EncoderConfig};
        use openh264::formats::YUVSlices;

        let (w, h) = (64usize, 48usize);
        let y: Vec<u8> = (0..w * h).map(|i| (i % w * 4 + i / w) as u8).collect();
        let u: Vec<u8> = (0..w * h / 4).map(|i| (i * 7) as u8).collect();
        let v: Vec<u8> = (0..w * h / 4).map(|i| 255 - (i * 5) as u8).collect();
        let mut encoder =
            Encoder::with_api_config(OpenH264API::from_source(), EncoderConfig::new()).unwrap();
        let stream = encoder
            .encode(&YUVSlices::new((&y, &u, &v), (w, h), (w, w / 2, w / 2)))
            .unwrap()
            .to_vec();

        let shared = SharedGfx::default();
        let mut ours = CountingDecoder {
            inner: OpenH264Decoder::new().unwrap(),
            shared: shared.clone(),
        };
        let got = ours.decode(&stream).unwrap();
        let want = OpenH264Decoder::new().unwrap().decode(&stream).unwrap();
        assert_eq!((got.width(), got.height()), (want.width(), want.height()));
        assert_eq!(max_difference(got.data(), want.data()), 0, "the same yuv conversion");
        let counters = shared.lock().counters.clone();
        assert_eq!((counters.h264_pictures, counters.h264_errors), (1, 0));
        assert!(counters.h264_decode_time > Duration::ZERO);
        assert!(counters.colour_time > Duration::ZERO);
    }
}
