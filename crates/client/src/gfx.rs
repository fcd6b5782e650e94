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
    DecodedFrame, DecoderResult, H264Decoder, OpenH264Decoder, Yuv420Frame,
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
/// [`Gfx::Avc420`] offers every version from 10.7 down to 10 (AVC allowed), then 8.1 with
/// AVC420 and 8. [`Gfx::NoAvc`] offers the same versions with AVC disabled (10.1 has no flags,
/// so it is left out: it always means AVC) and 8.1 without AVC420: a server must then use
/// planar, RemoteFX, ClearCodec or uncompressed on the pipeline, or not use it at all.
/// A small bitmap cache (16 MiB) everywhere: many of our clients run side by side in benchmarks.
pub(crate) fn capabilities(mode: Gfx) -> Option<Vec<CapabilitySet>> {
    let sets = match mode {
        Gfx::Off => return None,
        Gfx::Avc420 => vec![
            CapabilitySet::V10_7 {
                flags: CapabilitiesV107Flags::SMALL_CACHE,
            },
            CapabilitySet::V10_6 {
                flags: CapabilitiesV104Flags::SMALL_CACHE,
            },
            CapabilitySet::V10_5 {
                flags: CapabilitiesV104Flags::SMALL_CACHE,
            },
            CapabilitySet::V10_4 {
                flags: CapabilitiesV104Flags::SMALL_CACHE,
            },
            CapabilitySet::V10_3 {
                flags: CapabilitiesV103Flags::empty(),
            },
            CapabilitySet::V10_2 {
                flags: CapabilitiesV10Flags::SMALL_CACHE,
            },
            CapabilitySet::V10_1,
            CapabilitySet::V10 {
                flags: CapabilitiesV10Flags::SMALL_CACHE,
            },
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

/// OpenH264, counted. It returns YUV planes, so ironrdp-egfx converts with the colour transform
/// MS-RDPEGFX specifies and can combine AVC444 views too.
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
    fn decode(&mut self, data: &[u8]) -> DecoderResult<DecodedFrame> {
        self.counted(|d| d.decode(data))
    }

    fn decode_yuv420(&mut self, data: &[u8]) -> DecoderResult<Yuv420Frame> {
        self.counted(|d| d.decode_yuv420(data))
    }

    fn supports_yuv420(&self) -> bool {
        self.inner.supports_yuv420()
    }

    fn wait_until_ready(&mut self) -> bool {
        self.inner.wait_until_ready()
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
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
    fn avc420_mode_allows_avc_in_every_version_but_8() {
        let caps = capabilities(Gfx::Avc420).unwrap();
        assert_eq!(
            caps[0].version().0,
            0xA_0701,
            "10.7 first: the server takes the first it knows"
        );
        assert!(
            versions(Gfx::Avc420).contains(&0x8_0105),
            "8.1 for older servers"
        );
        for cap in &caps {
            let (avc420, _) = avc_allowed(cap);
            assert_eq!(avc420, !matches!(cap, CapabilitySet::V8 { .. }), "{cap:?}");
        }
    }

    #[test]
    fn no_avc_mode_offers_the_same_versions_with_avc_disabled() {
        let caps = capabilities(Gfx::NoAvc).unwrap();
        assert!(
            caps.iter().all(|c| avc_allowed(c) == (false, false)),
            "{caps:?}"
        );
        let mut with = versions(Gfx::Avc420);
        with.retain(|&v| v != 0xA_0100);
        assert_eq!(
            versions(Gfx::NoAvc),
            with,
            "only 10.1 (which has no AVC flag) is left out"
        );
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
        assert!(decoder.supports_yuv420(), "AVC444 needs the planes");
    }
}
