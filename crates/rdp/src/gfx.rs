//! The graphics pipeline (MS-RDPEGFX), server side: the dynamic channel
//! "Microsoft::Windows::RDS::Graphics" and the frames a terminal sends on it.
//!
//! ironrdp-egfx's `GraphicsPipelineServer` negotiates (CapabilitiesAdvertise → Confirm, the
//! client's AVC420 support) and manages the surface (ResetGraphics, CreateSurface,
//! MapSurfaceToOutput). Frames are built here: one feed update is one EGFX frame whose commands
//! (H.264 and planar, in the stage's order) the server has no sender for — its senders place a
//! planar bitmap only at the surface's origin and put one codec per frame. So the frame ids, and
//! the acknowledgements that pace the terminal ([`InFlight`]), are kept here too; the server
//! never sees a frame and its own tracker stays empty.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironrdp_core::{Encode, EncodeResult, WriteCursor, decode, encode_vec, impl_as_any};
use ironrdp_dvc::{DvcEncode, DvcMessage, DvcProcessor, DvcServerProcessor};
use ironrdp_egfx::CHANNEL_NAME;
use ironrdp_egfx::pdu::{
    Avc420Region, CapabilitiesAdvertisePdu, CapabilitySet, Codec1Type, Color, EndFramePdu, FrameAcknowledgePdu, GfxPdu, PixelFormat,
    QueueDepth, SolidFillPdu, StartFramePdu, Timestamp, WireToSurface1Pdu, encode_avc420_bitmap_stream,
};
use ironrdp_egfx::server::{GraphicsPipelineHandler, GraphicsPipelineServer};
use ironrdp_graphics::zgfx::wrap_uncompressed;
use ironrdp_pdu::PduResult;
use ironrdp_pdu::gcc::{Monitor, MonitorFlags};
use ironrdp_pdu::geometry::ExclusiveRectangle;
use rdhost_desktop::{Rect, Size};
use rdhost_frames::GfxCommand;
use tracing::{debug, info, warn};

/// Frames a terminal may have sent and not had acknowledged before it asks its feed for the
/// next one: enough to keep the link busy while the client decodes, few enough that what it
/// shows is never more than a few frames old (the stage coalesces meanwhile).
pub(crate) const MAX_FRAMES_IN_FLIGHT: usize = 3;

/// The highest quantisation parameter of an AVC420 region (MS-RDPEGFX 2.2.4.4.2, 8-bit video).
const MAX_QP: u8 = 51;

/// Frames sent and not yet acknowledged (MS-RDPEGFX 3.2.1.2, "Unacknowledged Frames"), and how
/// long acknowledgements take.
#[derive(Debug)]
pub(crate) struct InFlight {
    next_id: u32,
    /// Ids and send times, oldest first.
    unacked: VecDeque<(u32, Instant)>,
    max: usize,
    /// The client said it will not acknowledge frames (queue depth SUSPEND_FRAME_ACKNOWLEDGEMENT,
    /// 0xFFFFFFFF, MS-RDPEGFX 2.2.2.13): nothing paces but the socket, until it acknowledges again.
    suspended: bool,
    /// Smoothed time from sending a frame to its acknowledgement.
    round_trip: Option<Duration>,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self { next_id: 0, unacked: VecDeque::new(), max: max.max(1), suspended: false, round_trip: None }
    }

    /// Whether another frame may go out now.
    pub fn can_send(&self) -> bool {
        self.suspended || self.unacked.len() < self.max
    }

    pub fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    #[cfg(test)]
    pub fn suspended(&self) -> bool {
        self.suspended
    }

    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip
    }

    /// A new frame goes out: its id.
    pub fn begin(&mut self, now: Instant) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if !self.suspended {
            self.unacked.push_back((id, now));
        }
        id
    }

    /// The client acknowledged `frame_id` with `queue_depth`. Unknown ids (a frame from before a
    /// graphics reset, a duplicate) change nothing but the suspension state. Returns the frame's
    /// round trip when it was one in flight.
    pub fn acknowledge(&mut self, frame_id: u32, queue_depth: QueueDepth, now: Instant) -> Option<Duration> {
        let acked = self.unacked.iter().position(|&(id, _)| id == frame_id).map(|at| {
            // Acknowledgements come in order: an earlier frame without one was dropped by the
            // client (or its acknowledgement was), and waiting for it would stall forever.
            let (_, sent) = self.unacked[at];
            self.unacked.drain(..=at);
            now.saturating_duration_since(sent)
        });
        match queue_depth {
            QueueDepth::Suspend => {
                if !self.suspended {
                    debug!(frame_id, "client suspended frame acknowledgements");
                }
                self.suspended = true;
                self.unacked.clear();
            }
            QueueDepth::Unavailable | QueueDepth::AvailableBytes(_) => {
                if self.suspended {
                    debug!(frame_id, "client acknowledges frames again");
                }
                self.suspended = false;
            }
        }
        if let Some(rtt) = acked {
            // An exponential average over ~8 frames: one slow frame does not swing it.
            self.round_trip = Some(match self.round_trip {
                Some(avg) => (avg * 7 + rtt) / 8,
                None => rtt,
            });
        }
        acked
    }

    /// The client started its graphics state over: nothing sent before will be acknowledged.
    pub fn reset(&mut self) {
        self.unacked.clear();
        self.suspended = false;
    }
}

/// The bit rate a terminal asks of its H.264 encoder, from how long its frames take to be
/// acknowledged: a client (or a link) that cannot keep up acknowledges late, and fewer bits a
/// frame lets it catch up before the window of frames in flight stalls the picture.
#[derive(Debug, Default)]
pub(crate) struct RateControl {
    /// What was asked for; `None`: the encoder's own rate for the screen's size.
    asked: Option<u32>,
    last_change: Option<Instant>,
}

impl RateControl {
    /// Round trips above this lower the rate, below [`RateControl::FAST`] raise it back.
    pub const SLOW: Duration = Duration::from_millis(150);
    pub const FAST: Duration = Duration::from_millis(50);
    /// The lowest rate asked for.
    pub const FLOOR: u32 = 1_000_000;
    /// Changes are at least this far apart: the round trip needs a few frames to show one.
    pub const SETTLE: Duration = Duration::from_secs(1);

    /// The rate to ask for now, when it differs from the last asked: `Some(None)` is back to
    /// the encoder's own rate (`full`, the default for the screen's size).
    pub fn adapt(&mut self, round_trip: Duration, full: u32, now: Instant) -> Option<Option<u32>> {
        if self.last_change.is_some_and(|at| now.saturating_duration_since(at) < Self::SETTLE) {
            return None;
        }
        let current = self.asked.unwrap_or(full);
        let next = if round_trip > Self::SLOW {
            let lower = (current / 2).max(Self::FLOOR.min(full));
            (lower < current).then_some(Some(lower))
        } else if round_trip < Self::FAST {
            self.asked.map(|asked| {
                let higher = asked.saturating_add(asked / 2);
                (higher < full).then_some(higher)
            })
        } else {
            None
        }?;
        self.asked = next;
        self.last_change = Some(now);
        Some(next)
    }
}

/// What the graphics pipeline can do for a terminal now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GfxStatus {
    /// Open; the client has not advertised its capabilities yet.
    Negotiating,
    /// Capabilities confirmed. `avc420`: the negotiated set lets us send H.264 (not
    /// AVC_DISABLED in v10+, AVC420_ENABLED in v8.1). `generation` counts advertisements: a
    /// client advertises again after dropping its whole graphics state (surfaces, decoders).
    Ready { avc420: bool, generation: u32 },
}

/// Why a frame could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GfxError {
    #[error("the graphics pipeline is not ready")]
    NotReady,
    #[error("no surface to draw on")]
    NoSurface,
    #[error("EGFX PDU: {0}")]
    Encode(String),
}

/// The EGFX dynamic channel of one connection.
pub(crate) struct GfxChannel {
    server: GraphicsPipelineServer,
    frames: InFlight,
    generation: u32,
    /// The surface frames go to, and its size (also the graphics output's).
    surface: Option<(u16, Size)>,
    /// Frame timestamps count from here.
    epoch: Instant,
}

impl_as_any!(GfxChannel);

impl GfxChannel {
    pub fn new() -> Self {
        Self {
            server: GraphicsPipelineServer::new(Box::new(Negotiation)),
            frames: InFlight::new(MAX_FRAMES_IN_FLIGHT),
            generation: 0,
            surface: None,
            epoch: Instant::now(),
        }
    }

    pub fn status(&self) -> GfxStatus {
        if self.server.is_ready() {
            GfxStatus::Ready { avc420: self.server.supports_avc420(), generation: self.generation }
        } else {
            GfxStatus::Negotiating
        }
    }

    pub fn frames(&self) -> &InFlight {
        &self.frames
    }

    pub fn surface_size(&self) -> Option<Size> {
        self.surface.map(|(_, size)| size)
    }

    /// Make the client's graphics output `size` and draw on one surface of that size from now
    /// on: ResetGraphics (with one monitor), CreateSurface, MapSurfaceToOutput. The client
    /// resizes its desktop to it (FreeRDP, mstsc) and starts a new decoder for the surface, so
    /// the next H.264 frame must be a key frame or the next commands must paint everything.
    pub fn reset_surface(&mut self, size: Size) -> Result<Vec<DvcMessage>, GfxError> {
        if !self.server.is_ready() {
            return Err(GfxError::NotReady);
        }
        let monitor = Monitor {
            left: 0,
            top: 0,
            right: i32::from(size.width) - 1,
            bottom: i32::from(size.height) - 1,
            flags: MonitorFlags::PRIMARY,
        };
        // Deletes the old surface (if any) before the reset, as the spec's sequence has it.
        self.server.resize_with_monitors(size.width, size.height, vec![monitor]);
        let id = self.server.create_surface(size.width, size.height).ok_or(GfxError::NotReady)?;
        self.server.map_surface_to_output(id, 0, 0);
        self.surface = Some((id, size));
        Ok(self.server.drain_output())
    }

    /// One EGFX frame: StartFrame, a WireToSurface1 or SolidFill per command in order, EndFrame. Commands
    /// are clipped to the surface (a client rejects a rectangle past its edge); an H.264 access
    /// unit goes out even when none of its regions is left, so the client's decoder stays in
    /// step with the stream.
    pub fn frame(&mut self, commands: &[Arc<GfxCommand>], now: Instant) -> Result<Vec<DvcMessage>, GfxError> {
        if !self.server.is_ready() {
            return Err(GfxError::NotReady);
        }
        let (surface_id, size) = self.surface.ok_or(GfxError::NoSurface)?;
        let bounds = size.rect();
        let mut wire = Vec::with_capacity(commands.len());
        for command in commands {
            match &**command {
                GfxCommand::Avc420 { annexb, rects, qp, .. } => {
                    let regions: Vec<Avc420Region> = rects
                        .iter()
                        .map(|r| r.intersect(bounds))
                        .filter(|r| !r.is_empty())
                        .map(|r| Avc420Region::new(r.x, r.y, r.x + r.width, r.y + r.height, (*qp).min(MAX_QP), 100))
                        .collect();
                    let destination = bounding(&regions).unwrap_or(exclusive(bounds));
                    wire.push(GfxPdu::WireToSurface1(WireToSurface1Pdu {
                        surface_id,
                        codec_id: Codec1Type::Avc420,
                        pixel_format: PixelFormat::XRgb,
                        destination_rectangle: destination,
                        bitmap_data: encode_avc420_bitmap_stream(&regions, annexb),
                    }));
                }
                GfxCommand::Planar { rect, data } => {
                    // A planar bitmap is exactly its rectangle: one that does not fit cannot be cut.
                    if rect.is_empty() || rect.intersect(bounds) != *rect {
                        warn!(?rect, ?size, "planar command outside the surface; dropped");
                        continue;
                    }
                    wire.push(GfxPdu::WireToSurface1(WireToSurface1Pdu {
                        surface_id,
                        codec_id: Codec1Type::Planar,
                        pixel_format: PixelFormat::XRgb,
                        destination_rectangle: exclusive(*rect),
                        bitmap_data: data.clone(),
                    }));
                }
                GfxCommand::SolidFill { bgr, rects } => {
                    let rectangles: Vec<ExclusiveRectangle> = rects.iter().map(|r| r.intersect(bounds)).filter(|r| !r.is_empty()).map(exclusive).collect();
                    // A PDU says how many rectangles it has in 16 bits.
                    for rectangles in rectangles.chunks(usize::from(u16::MAX)) {
                        let fill_pixel = Color { b: bgr[0], g: bgr[1], r: bgr[2], xa: 0 };
                        wire.push(GfxPdu::SolidFill(SolidFillPdu { surface_id, fill_pixel, rectangles: rectangles.to_vec() }));
                    }
                }
            }
        }
        let frame_id = self.frames.begin(now);
        let timestamp = timestamp(now.saturating_duration_since(self.epoch));
        let mut out = Vec::with_capacity(wire.len() + 2);
        out.push(wrapped(&GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id }))?);
        for pdu in wire {
            out.push(wrapped(&pdu)?);
        }
        out.push(wrapped(&GfxPdu::EndFrame(EndFramePdu { frame_id }))?);
        Ok(out)
    }

    fn acknowledged(&mut self, ack: &FrameAcknowledgePdu) {
        let rtt = self.frames.acknowledge(ack.frame_id, ack.queue_depth, Instant::now());
        debug!(frame_id = ack.frame_id, ?rtt, in_flight = self.frames.in_flight(), "EGFX frame acknowledged");
    }
}

impl DvcProcessor for GfxChannel {
    fn channel_name(&self) -> &str {
        CHANNEL_NAME
    }

    fn start(&mut self, channel_id: u32) -> PduResult<Vec<DvcMessage>> {
        debug!(channel_id, "graphics pipeline channel open");
        self.server.start(channel_id)
    }

    fn process(&mut self, channel_id: u32, payload: &[u8]) -> PduResult<Vec<DvcMessage>> {
        // Client-to-server PDUs carry no ZGFX wrapping (MS-RDPEGFX 2.2.5).
        let pdu: GfxPdu = decode(payload).map_err(|e| ironrdp_pdu::decode_err!(e))?;
        match pdu {
            GfxPdu::FrameAcknowledge(ack) => {
                self.acknowledged(&ack);
                Ok(Vec::new())
            }
            GfxPdu::QoeFrameAcknowledge(_) => Ok(Vec::new()),
            GfxPdu::CapabilitiesAdvertise(_) => {
                // The first, or a client starting over: it holds no surface and acknowledges
                // nothing sent before.
                self.generation = self.generation.wrapping_add(1);
                self.surface = None;
                self.frames.reset();
                self.server.process(channel_id, payload)
            }
            _ => self.server.process(channel_id, payload),
        }
    }

    fn close(&mut self, channel_id: u32) {
        self.server.close(channel_id);
        self.surface = None;
        self.frames.reset();
    }
}

impl DvcServerProcessor for GfxChannel {}

/// Logs what the client offers and what was settled; ironrdp-egfx negotiates by itself.
struct Negotiation;

impl GraphicsPipelineHandler for Negotiation {
    fn capabilities_advertise(&mut self, pdu: &CapabilitiesAdvertisePdu) {
        let offered: Vec<String> = pdu.0.iter().map(|raw| format!("{:?}", raw.parsed())).collect();
        debug!(?offered, "client's graphics pipeline capabilities");
    }

    fn on_ready(&mut self, negotiated: &CapabilitySet) {
        info!(?negotiated, "graphics pipeline capabilities confirmed");
    }

    fn max_frames_in_flight(&self) -> u32 {
        MAX_FRAMES_IN_FLIGHT as u32
    }
}

/// A GFX PDU as the client reads it from the channel: ZGFX-wrapped, uncompressed (H.264 gains
/// nothing from ZGFX, planar little; the CPU goes to the encoder instead).
fn wrapped(pdu: &GfxPdu) -> Result<DvcMessage, GfxError> {
    let bytes = encode_vec(pdu).map_err(|e| GfxError::Encode(e.to_string()))?;
    Ok(Box::new(Wrapped(wrap_uncompressed(&bytes))))
}

/// Bytes ready for the channel.
struct Wrapped(Vec<u8>);

impl Encode for Wrapped {
    fn encode(&self, dst: &mut WriteCursor<'_>) -> EncodeResult<()> {
        ironrdp_core::ensure_size!(in: dst, size: self.0.len());
        dst.write_slice(&self.0);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "RDPGFX (ZGFX-wrapped)"
    }

    fn size(&self) -> usize {
        self.0.len()
    }
}

impl DvcEncode for Wrapped {}

fn exclusive(rect: Rect) -> ExclusiveRectangle {
    ExclusiveRectangle { left: rect.x, top: rect.y, right: rect.x + rect.width, bottom: rect.y + rect.height }
}

fn bounding(regions: &[Avc420Region]) -> Option<ExclusiveRectangle> {
    let first = regions.first()?;
    Some(regions.iter().fold(first.to_rectangle(), |acc, r| ExclusiveRectangle {
        left: acc.left.min(r.left),
        top: acc.top.min(r.top),
        right: acc.right.max(r.right),
        bottom: acc.bottom.max(r.bottom),
    }))
}

/// RDPGFX_TIMESTAMP: the time of day is the spec's, any steady clock does for FreeRDP and mstsc.
fn timestamp(since: Duration) -> Timestamp {
    let ms = since.as_millis();
    Timestamp {
        milliseconds: (ms % 1000) as u16,
        seconds: ((ms / 1000) % 60) as u8,
        minutes: ((ms / 60_000) % 60) as u8,
        hours: ((ms / 3_600_000) % 24) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_egfx::pdu::{
        Avc420BitmapStream, CapabilitiesV10Flags, CapabilitiesV81Flags, CapabilitiesV104Flags, CapabilitiesV107Flags,
        CapabilitiesV8Flags,
    };
    use ironrdp_graphics::zgfx::Decompressor;

    fn advertise(caps: &[CapabilitySet]) -> Vec<u8> {
        encode_vec(&GfxPdu::CapabilitiesAdvertise(CapabilitiesAdvertisePdu::from_typed(caps))).unwrap()
    }

    fn ack(frame_id: u32, depth: u32) -> Vec<u8> {
        encode_vec(&GfxPdu::FrameAcknowledge(FrameAcknowledgePdu {
            queue_depth: QueueDepth::from_u32(depth),
            frame_id,
            total_frames_decoded: frame_id + 1,
        }))
        .unwrap()
    }

    /// What the client reads from `messages`: each unwrapped and decoded.
    fn read(messages: Vec<DvcMessage>) -> Vec<GfxPdu> {
        messages
            .into_iter()
            .map(|m| {
                let bytes = encode_vec(m.as_ref()).unwrap();
                let mut plain = Vec::new();
                Decompressor::new().decompress(&bytes, &mut plain).unwrap();
                decode::<GfxPdu>(&plain).unwrap()
            })
            .collect()
    }

    /// A channel that negotiated `caps`, and what it answered.
    fn negotiated(caps: &[CapabilitySet]) -> (GfxChannel, Vec<GfxPdu>) {
        let mut channel = GfxChannel::new();
        assert!(channel.start(7).unwrap().is_empty());
        assert_eq!(channel.status(), GfxStatus::Negotiating);
        let answer = channel.process(7, &advertise(caps)).unwrap();
        (channel, read(answer))
    }

    #[test]
    fn avc420_is_used_only_when_the_negotiated_set_allows_it() {
        // xfreerdp /gfx:avc420 (v10.x without AVC_DISABLED), /gfx:rfx (AVC_DISABLED), an old client.
        let cases = [
            (vec![CapabilitySet::V10_7 { flags: CapabilitiesV107Flags::empty() }], true),
            (vec![CapabilitySet::V10_7 { flags: CapabilitiesV107Flags::AVC_DISABLED }], false),
            (
                vec![
                    CapabilitySet::V8 { flags: CapabilitiesV8Flags::empty() },
                    CapabilitySet::V10_4 { flags: CapabilitiesV104Flags::AVC_DISABLED },
                ],
                false,
            ),
            (vec![CapabilitySet::V10 { flags: CapabilitiesV10Flags::SMALL_CACHE }], true),
            (vec![CapabilitySet::V8_1 { flags: CapabilitiesV81Flags::AVC420_ENABLED }], true),
            (vec![CapabilitySet::V8_1 { flags: CapabilitiesV81Flags::empty() }], false),
            (vec![CapabilitySet::V8 { flags: CapabilitiesV8Flags::empty() }], false),
        ];
        for (caps, avc420) in cases {
            let (channel, answer) = negotiated(&caps);
            assert_eq!(channel.status(), GfxStatus::Ready { avc420, generation: 1 }, "{caps:?}");
            assert!(matches!(answer[..], [GfxPdu::CapabilitiesConfirm(_)]), "{caps:?}: {answer:?}");
        }
    }

    #[test]
    fn a_surface_is_reset_then_created_and_mapped() {
        let (mut channel, _) = negotiated(&[CapabilitySet::V10_7 { flags: CapabilitiesV107Flags::empty() }]);
        assert_eq!(channel.frame(&[] as &[Arc<GfxCommand>], Instant::now()).err(), Some(GfxError::NoSurface));
        let pdus = read(channel.reset_surface(Size::new(1000, 700)).unwrap());
        let [GfxPdu::ResetGraphics(reset), GfxPdu::CreateSurface(create), GfxPdu::MapSurfaceToOutput(map)] = &pdus[..] else {
            panic!("{pdus:?}")
        };
        assert_eq!((reset.width, reset.height, reset.monitors.len()), (1000, 700, 1));
        assert_eq!((create.width, create.height, create.pixel_format), (1000, 700, PixelFormat::XRgb));
        assert_eq!((map.surface_id, map.output_origin_x, map.output_origin_y), (create.surface_id, 0, 0));
        assert_eq!(channel.surface_size(), Some(Size::new(1000, 700)));

        // At another size: the old surface goes first.
        let pdus = read(channel.reset_surface(Size::new(800, 600)).unwrap());
        assert!(matches!(&pdus[..], [GfxPdu::DeleteSurface(d), GfxPdu::ResetGraphics(_), GfxPdu::CreateSurface(c), GfxPdu::MapSurfaceToOutput(_)]
            if d.surface_id == create.surface_id && c.surface_id != create.surface_id), "{pdus:?}");
    }

    #[test]
    fn a_frame_carries_the_commands_in_order_clipped_to_the_surface() {
        let (mut channel, _) = negotiated(&[CapabilitySet::V10_7 { flags: CapabilitiesV107Flags::empty() }]);
        let _ = channel.reset_surface(Size::new(1000, 700)).unwrap();
        let annexb = vec![0, 0, 0, 1, 0x67, 0x42];
        let commands = vec![
            Arc::new(GfxCommand::Avc420 {
                annexb: annexb.clone(),
                // The second region reaches into the 16-pixel padding of the coded picture.
                rects: vec![Rect::new(0, 0, 64, 32), Rect::new(960, 688, 48, 16)],
                qp: 60,
                key: true,
            }),
            Arc::new(GfxCommand::Planar { rect: Rect::new(8, 16, 4, 2), data: vec![0xAB; 10] }),
            Arc::new(GfxCommand::Planar { rect: Rect::new(998, 0, 4, 2), data: vec![1] }),
            // Fills are clipped: one past the edge loses its outside part, one wholly outside goes.
            Arc::new(GfxCommand::SolidFill { bgr: [1, 2, 3], rects: vec![Rect::new(100, 100, 64, 64), Rect::new(990, 0, 64, 8), Rect::new(0, 800, 4, 4)] }),
        ];
        let pdus = read(channel.frame(&commands, Instant::now()).unwrap());
        assert_eq!(pdus.len(), 5, "the planar command past the edge is dropped: {pdus:?}");
        let GfxPdu::StartFrame(start) = &pdus[0] else { panic!("{pdus:?}") };
        let GfxPdu::EndFrame(end) = &pdus[4] else { panic!("{pdus:?}") };
        let GfxPdu::SolidFill(fill) = &pdus[3] else { panic!("{pdus:?}") };
        assert_eq!((fill.surface_id, fill.fill_pixel.b, fill.fill_pixel.g, fill.fill_pixel.r), (channel.surface.unwrap().0, 1, 2, 3));
        assert_eq!(
            fill.rectangles,
            vec![
                ExclusiveRectangle { left: 100, top: 100, right: 164, bottom: 164 },
                ExclusiveRectangle { left: 990, top: 0, right: 1000, bottom: 8 },
            ]
        );
        assert_eq!(start.frame_id, end.frame_id);

        let GfxPdu::WireToSurface1(avc) = &pdus[1] else { panic!("{pdus:?}") };
        assert_eq!(avc.codec_id, Codec1Type::Avc420);
        assert_eq!(avc.destination_rectangle, ExclusiveRectangle { left: 0, top: 0, right: 1000, bottom: 700 });
        let stream: Avc420BitmapStream<'_> = decode(&avc.bitmap_data).unwrap();
        assert_eq!(
            stream.rectangles,
            vec![
                ExclusiveRectangle { left: 0, top: 0, right: 64, bottom: 32 },
                ExclusiveRectangle { left: 960, top: 688, right: 1000, bottom: 700 },
            ]
        );
        assert!(stream.quant_qual_vals.iter().all(|q| q.quantization_parameter == MAX_QP && q.quality == 100));
        assert_eq!(stream.data, &annexb[..]);

        let GfxPdu::WireToSurface1(planar) = &pdus[2] else { panic!("{pdus:?}") };
        assert_eq!(planar.codec_id, Codec1Type::Planar);
        assert_eq!(planar.destination_rectangle, ExclusiveRectangle { left: 8, top: 16, right: 12, bottom: 18 });
        assert_eq!(planar.bitmap_data, vec![0xAB; 10]);
    }

    #[test]
    fn acknowledgements_pace_the_frames() {
        let (mut channel, _) = negotiated(&[CapabilitySet::V10_7 { flags: CapabilitiesV107Flags::empty() }]);
        let _ = channel.reset_surface(Size::new(64, 64)).unwrap();
        let none: &[Arc<GfxCommand>] = &[];
        let mut ids = Vec::new();
        for _ in 0..MAX_FRAMES_IN_FLIGHT {
            assert!(channel.frames().can_send());
            let GfxPdu::StartFrame(start) = &read(channel.frame(none, Instant::now()).unwrap())[0] else { panic!() };
            ids.push(start.frame_id);
        }
        assert!(!channel.frames().can_send(), "window full");
        assert!(channel.process(7, &ack(ids[0], 1)).unwrap().is_empty());
        assert!(channel.frames().can_send());
        assert_eq!(channel.frames().in_flight(), MAX_FRAMES_IN_FLIGHT - 1);
        assert!(channel.frames().round_trip().is_some());
        // A stale or unknown id changes nothing.
        channel.process(7, &ack(ids[0], 1)).unwrap();
        channel.process(7, &ack(9999, 1)).unwrap();
        assert_eq!(channel.frames().in_flight(), MAX_FRAMES_IN_FLIGHT - 1);
        // The last acknowledged takes the ones before it along.
        channel.process(7, &ack(ids[2], 1)).unwrap();
        assert_eq!(channel.frames().in_flight(), 0);
    }

    #[test]
    fn a_client_that_suspends_acknowledgements_is_not_waited_for() {
        let now = Instant::now();
        let mut frames = InFlight::new(3);
        let first = frames.begin(now);
        frames.begin(now);
        frames.begin(now);
        assert!(!frames.can_send());
        frames.acknowledge(first, QueueDepth::Suspend, now);
        assert!(frames.suspended());
        for _ in 0..10 {
            assert!(frames.can_send());
            frames.begin(now);
        }
        assert_eq!(frames.in_flight(), 0, "nothing is tracked while suspended");
        // It opts back in by acknowledging with a real queue depth.
        frames.acknowledge(5, QueueDepth::AvailableBytes(2), now);
        assert!(!frames.suspended());
        let ids: Vec<u32> = (0..3).map(|_| frames.begin(now)).collect();
        assert!(!frames.can_send());
        assert_eq!(frames.acknowledge(ids[1], QueueDepth::Unavailable, now + Duration::from_millis(40)), Some(Duration::from_millis(40)));
        assert_eq!(frames.in_flight(), 1);
    }

    #[test]
    fn a_second_advertisement_starts_a_new_generation_without_a_surface() {
        let caps = [CapabilitySet::V10_7 { flags: CapabilitiesV107Flags::empty() }];
        let (mut channel, _) = negotiated(&caps);
        let _ = channel.reset_surface(Size::new(64, 64)).unwrap();
        channel.frame(&[] as &[Arc<GfxCommand>], Instant::now()).unwrap();
        assert_eq!(channel.frames().in_flight(), 1);
        channel.process(7, &advertise(&caps)).unwrap();
        assert_eq!(channel.status(), GfxStatus::Ready { avc420: true, generation: 2 });
        assert_eq!(channel.surface_size(), None);
        assert_eq!(channel.frames().in_flight(), 0);
        // The new surface starts again with ResetGraphics.
        let pdus = read(channel.reset_surface(Size::new(64, 64)).unwrap());
        assert!(matches!(pdus[0], GfxPdu::ResetGraphics(_)), "{pdus:?}");
    }

    #[test]
    fn the_bit_rate_follows_the_round_trip() {
        let full = 10_000_000;
        let start = Instant::now();
        let mut rate = RateControl::default();
        assert_eq!(rate.adapt(Duration::from_millis(10), full, start), None, "fast from the start: nothing to change");
        assert_eq!(rate.adapt(Duration::from_millis(300), full, start), Some(Some(5_000_000)));
        assert_eq!(rate.adapt(Duration::from_millis(300), full, start + Duration::from_millis(500)), None, "settling");
        let mut at = start + RateControl::SETTLE;
        assert_eq!(rate.adapt(Duration::from_millis(300), full, at), Some(Some(2_500_000)));
        for _ in 0..5 {
            at += RateControl::SETTLE;
            rate.adapt(Duration::from_millis(300), full, at);
        }
        assert_eq!(rate.asked, Some(RateControl::FLOOR), "never below the floor");
        at += RateControl::SETTLE;
        assert_eq!(rate.adapt(Duration::from_millis(100), full, at), None, "in between: kept");
        let mut raised = Vec::new();
        while let Some(next) = rate.adapt(Duration::from_millis(5), full, at) {
            raised.push(next);
            at += RateControl::SETTLE;
        }
        assert_eq!(raised.last(), Some(&None), "back to the encoder's own rate: {raised:?}");
        assert!(raised.windows(2).all(|w| w[0].unwrap_or(full) < w[1].unwrap_or(full)), "{raised:?}");
    }

    #[test]
    fn garbage_on_the_channel_is_an_error() {
        let mut channel = GfxChannel::new();
        channel.start(7).unwrap();
        assert!(channel.process(7, &[0x13, 0x00, 0x00]).is_err());
        assert!(channel.process(7, &[]).is_err());
    }
}
