//! The client's graphics pipeline (MS-RDPEGFX) against ironrdp-egfx's own server side, in an
//! in-process RDP server built on IronRDP's acceptor: capability negotiation for each
//! `Gfx` mode, AVC420 frames encoded by OpenH264 and planar frames decoded into the client's
//! framebuffer, frame acknowledgements reaching the server, and ResetGraphics at a new size
//! after a Deactivation-Reactivation. Independent of rdhost's own host.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ironrdp_acceptor::Acceptor;
use ironrdp_connector::DesktopSize;
use ironrdp_core::{decode, encode_vec};
use ironrdp_dvc::{DrdynvcServer, encode_dvc_messages};
use ironrdp_egfx::pdu::{Avc420Region, CapabilitiesAdvertisePdu, CapabilitySet};
use ironrdp_egfx::server::{GraphicsPipelineHandler, GraphicsPipelineServer};
use ironrdp_graphics::rdp6::{BitmapStreamEncoder, RgbAChannels};
use ironrdp_pdu::Action;
use ironrdp_pdu::mcs::{McsMessage, SendDataIndication};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::capability_sets::InputFlags;
use ironrdp_pdu::rdp::headers::{ServerDeactivateAll, ShareControlHeader, ShareControlPdu};
use ironrdp_pdu::x224::X224;
use ironrdp_svc::{ChannelFlags, StaticChannelSet, server_encode_svc_messages};
use ironrdp_tokio::FramedWrite as _;
use openh264::OpenH264API;
use openh264::encoder::{BitRate, Encoder, EncoderConfig};
use openh264::formats::YUVSlices;
use rdhost_client::{Client, ClientConfig, Codec, Gfx, Security};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

mod common;

/// An RGBA picture.
#[derive(Clone)]
struct Picture {
    width: u16,
    height: u16,
    rgba: Vec<u8>,
}

impl Picture {
    /// Four flat quadrants and a diagonal gradient stripe: colours to check, and detail for
    /// the H.264 encoder to work on. `shift` moves the stripe, so two pictures differ.
    fn quadrants(width: u16, height: u16, colours: [[u8; 3]; 4], shift: u16) -> Picture {
        let mut rgba = Vec::with_capacity(usize::from(width) * usize::from(height) * 4);
        for y in 0..height {
            for x in 0..width {
                let stripe = (x + y + shift) % 97 < 6 && y > height / 8 && y < height / 8 * 7;
                let quadrant = usize::from(x >= width / 2) + 2 * usize::from(y >= height / 2);
                let [r, g, b] = if stripe {
                    let v = (u32::from(x) * 255 / u32::from(width)) as u8;
                    [v, 255 - v, 128]
                } else {
                    colours[quadrant]
                };
                rgba.extend_from_slice(&[r, g, b, 0xFF]);
            }
        }
        Picture {
            width,
            height,
            rgba,
        }
    }

    fn pixel(&self, x: u16, y: u16) -> [u8; 3] {
        let i = (usize::from(y) * usize::from(self.width) + usize::from(x)) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }
}

const COLOURS_A: [[u8; 3]; 4] = [[200, 40, 40], [40, 180, 60], [40, 60, 200], [230, 230, 230]];
const COLOURS_B: [[u8; 3]; 4] = [[20, 20, 20], [250, 200, 0], [0, 160, 160], [120, 0, 140]];

/// Largest per-channel difference between the client's framebuffer and `picture`, and the
/// mean absolute difference over every channel of every pixel.
fn difference(client: &Client, picture: &Picture) -> (u8, f64) {
    assert_eq!(
        (client.width(), client.height()),
        (picture.width, picture.height)
    );
    let (mut max, mut sum) = (0u8, 0u64);
    for (got, want) in client
        .rgba()
        .chunks_exact(4)
        .zip(picture.rgba.chunks_exact(4))
    {
        for c in 0..3 {
            let d = got[c].abs_diff(want[c]);
            max = max.max(d);
            sum += u64::from(d);
        }
    }
    (max, sum as f64 / (picture.rgba.len() / 4 * 3) as f64)
}

/// The picture came through an H.264 round trip: flat areas (away from the stripe's edges,
/// where ringing and chroma subsampling cost most) within a few levels almost everywhere, and
/// the whole within a small mean error.
fn looks_like(client: &Client, picture: &Picture) -> bool {
    if (client.width(), client.height()) != (picture.width, picture.height) {
        return false;
    }
    let (w, h) = (picture.width, picture.height);
    let (mut flat, mut off) = (0u32, 0u32);
    for y in (4..h - 4).step_by(3) {
        for x in (4..w - 4).step_by(3) {
            let want = picture.pixel(x, y);
            let around = [
                (x - 4, y),
                (x + 4, y),
                (x, y - 4),
                (x, y + 4),
                (x - 4, y - 4),
                (x + 4, y + 4),
                (x - 4, y + 4),
                (x + 4, y - 4),
            ];
            if around.iter().any(|&(ax, ay)| picture.pixel(ax, ay) != want) {
                continue;
            }
            flat += 1;
            let got = client.pixel(x, y).unwrap();
            off += u32::from((0..3).any(|c| got[c].abs_diff(want[c]) > 10));
        }
    }
    f64::from(off) < f64::from(flat) * 0.005 && difference(client, picture).1 < 4.0
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

enum Command {
    Avc420(Picture),
    Planar(Picture),
    /// Deactivation-Reactivation at the new size, then ResetGraphics and a new surface.
    Resize {
        width: u16,
        height: u16,
    },
}

#[derive(Debug)]
enum Seen {
    /// The server confirmed this capability set; whether it may send AVC420.
    Ready { caps: CapabilitySet, avc420: bool },
    /// A Frame Acknowledge from the client.
    Ack { frame_id: u32, total_decoded: u32 },
    /// The surface for the current size exists and is mapped.
    Surface { width: u16, height: u16 },
    /// Bytes of H.264 (Annex B) sent in one frame.
    H264Bytes(usize),
}

struct Observer(mpsc::UnboundedSender<Seen>);

impl GraphicsPipelineHandler for Observer {
    fn capabilities_advertise(&mut self, _pdu: &CapabilitiesAdvertisePdu) {}

    // Reported by the server loop, which can also ask the pipeline whether AVC420 is allowed.
    fn on_ready(&mut self, _negotiated: &CapabilitySet) {}

    fn on_frame_ack(&mut self, frame_id: u32, _queue_depth: u32, total_decoded: u32) {
        let _ = self.0.send(Seen::Ack {
            frame_id,
            total_decoded,
        });
    }
}

/// The forward colour transform of MS-RDPEGFX 3.3.8.3.1, with 2x2 chroma averaging: what a
/// server must feed the encoder for the client's inverse transform to give the colours back.
fn yuv420(picture: &Picture) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (w, h) = (usize::from(picture.width), usize::from(picture.height));
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    let mut y = vec![0u8; w * h];
    let (mut u, mut v) = (vec![0u8; w * h / 4], vec![0u8; w * h / 4]);
    for row in 0..h {
        for col in 0..w {
            let p = &picture.rgba[(row * w + col) * 4..];
            let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            y[row * w + col] = clamp((54 * r + 183 * g + 18 * b) >> 8);
        }
    }
    for row in 0..h / 2 {
        for col in 0..w / 2 {
            let (mut su, mut sv) = (0i32, 0i32);
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let p = &picture.rgba[((row * 2 + dy) * w + col * 2 + dx) * 4..];
                let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
                su += ((-29 * r - 99 * g + 128 * b) >> 8) + 128;
                sv += ((128 * r - 116 * g - 12 * b) >> 8) + 128;
            }
            u[row * (w / 2) + col] = clamp(su / 4);
            v[row * (w / 2) + col] = clamp(sv / 4);
        }
    }
    (y, u, v)
}

fn h264_encoder() -> Encoder {
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(20_000_000))
        .skip_frames(false);
    Encoder::with_api_config(OpenH264API::from_source(), config).unwrap()
}

fn planar(picture: &Picture) -> Vec<u8> {
    let mut out = vec![0u8; picture.rgba.len() * 2 + 1024];
    let n = BitmapStreamEncoder::new(picture.width.into(), picture.height.into())
        .encode_bitmap::<RgbAChannels>(&picture.rgba, &mut out, true)
        .unwrap();
    out.truncate(n);
    out
}

/// Runs `f` on the graphics pipeline inside the static channels, if the client opened it.
fn with_pipeline<R>(
    channels: &mut StaticChannelSet,
    f: impl FnOnce(&mut GraphicsPipelineServer) -> R,
) -> Option<R> {
    let drdynvc = channels
        .get_by_type_mut::<DrdynvcServer>()?
        .channel_processor_downcast_mut::<DrdynvcServer>()?;
    let id = drdynvc.get_channel_id_by_type::<GraphicsPipelineServer>()?;
    let mut gfx = drdynvc.dvc_by_id_mut::<GraphicsPipelineServer>(id)?;
    Some(f(gfx.processor_mut()))
}

/// What the pipeline queued, as bytes on the wire.
fn pipeline_output(channels: &mut StaticChannelSet, user: u16) -> Vec<u8> {
    let Some(mcs) = channels.get_channel_id_by_type::<DrdynvcServer>() else {
        return Vec::new();
    };
    let Some((id, messages)) =
        with_pipeline(channels, |gfx| (gfx.channel_id(), gfx.drain_output()))
    else {
        return Vec::new();
    };
    let id = id.expect("an open pipeline has a channel id");
    let svc = encode_dvc_messages(id, messages, ChannelFlags::SHOW_PROTOCOL).unwrap();
    server_encode_svc_messages(svc, mcs, user).unwrap()
}

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    command: mpsc::UnboundedSender<Command>,
}

impl Server {
    async fn start(width: u16, height: u16) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (command, mut commands) = mpsc::unbounded_channel();
        tokio::task::spawn_local(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut size = (width, height);
            let mut acceptor = Acceptor::new(
                SecurityProtocol::SSL,
                DesktopSize { width, height },
                common::server_capabilities(
                    width,
                    height,
                    InputFlags::SCANCODES | InputFlags::FASTPATH_INPUT | InputFlags::UNICODE,
                ),
                None,
            );
            acceptor.attach_static_channel(DrdynvcServer::new().with_dynamic_channel(
                GraphicsPipelineServer::new(Box::new(Observer(seen_tx.clone()))),
            ));
            let tls = common::accept_tls(tcp, &mut acceptor).await;
            let (mut framed, mut result) =
                ironrdp_acceptor::accept_finalize(tls, &mut acceptor)
                    .await
                    .unwrap();
            let (user, io) = (result.user_channel_id, result.io_channel_id);
            // The dynamic channel server offers its capabilities, then opens the pipeline.
            for (_, channel, id) in result.static_channels.iter_mut() {
                let Some(id) = id else { continue };
                let messages = channel.start().unwrap();
                framed
                    .write_all(&server_encode_svc_messages(messages, id, user).unwrap())
                    .await
                    .unwrap();
            }
            let mut encoder = h264_encoder();
            let mut surface: Option<u16> = None;
            let mut timestamp = 0u32;
            loop {
                tokio::select! {
                    command = commands.recv() => {
                        let Some(command) = command else { return };
                        let surface_id = surface.expect("a command before the surface exists");
                        timestamp += 16;
                        match command {
                            Command::Avc420(picture) => {
                                let (y, u, v) = yuv420(&picture);
                                let (w, h) = (usize::from(picture.width), usize::from(picture.height));
                                let source = YUVSlices::new((&y, &u, &v), (w, h), (w, w / 2, w / 2));
                                let annex_b = encoder.encode(&source).unwrap().to_vec();
                                let _ = seen_tx.send(Seen::H264Bytes(annex_b.len()));
                                let region = Avc420Region::full_frame(picture.width, picture.height, 22);
                                with_pipeline(&mut result.static_channels, |gfx| {
                                    gfx.try_send_avc420_frame(surface_id, &annex_b, &[region], timestamp).unwrap()
                                })
                                .expect("pipeline open");
                            }
                            Command::Planar(picture) => {
                                let data = planar(&picture);
                                with_pipeline(&mut result.static_channels, |gfx| {
                                    gfx.send_planar_frame(surface_id, &data, picture.width, picture.height, timestamp)
                                        .expect("planar frame queued")
                                })
                                .expect("pipeline open");
                            }
                            Command::Resize { width, height } => {
                                let deactivate = ShareControlHeader {
                                    share_control_pdu: ShareControlPdu::ServerDeactivateAll(ServerDeactivateAll),
                                    pdu_source: user,
                                    share_id: 0,
                                };
                                let pdu = SendDataIndication {
                                    initiator_id: user,
                                    channel_id: io,
                                    user_data: std::borrow::Cow::Owned(encode_vec(&deactivate).unwrap()),
                                };
                                framed.write_all(&encode_vec(&X224(pdu)).unwrap()).await.unwrap();
                                acceptor = Acceptor::new_deactivation_reactivation(
                                    acceptor,
                                    std::mem::take(&mut result.static_channels),
                                    DesktopSize { width, height },
                                )
                                .unwrap();
                                let (again, reactivated) = ironrdp_acceptor::accept_finalize(framed, &mut acceptor).await.unwrap();
                                framed = again;
                                result = reactivated;
                                size = (width, height);
                                encoder = h264_encoder();
                                // The pipeline survives the reactivation (it is a dynamic channel):
                                // a ResetGraphics at the new size, and a new surface.
                                let id = with_pipeline(&mut result.static_channels, |gfx| {
                                    gfx.resize(width, height);
                                    let id = gfx.create_surface(width, height).expect("surface after resize");
                                    assert!(gfx.map_surface_to_output(id, 0, 0));
                                    id
                                })
                                .expect("pipeline kept");
                                surface = Some(id);
                                let _ = seen_tx.send(Seen::Surface { width, height });
                            }
                        }
                        let bytes = pipeline_output(&mut result.static_channels, user);
                        framed.write_all(&bytes).await.unwrap();
                    }
                    pdu = framed.read_pdu() => {
                        let Ok((Action::X224, frame)) = pdu else {
                            if pdu.is_err() { return } else { continue }
                        };
                        let Ok(X224(McsMessage::SendDataRequest(request))) = decode::<X224<McsMessage<'_>>>(&frame) else { continue };
                        let Some(channel) = result.static_channels.get_by_channel_id_mut(request.channel_id) else { continue };
                        let responses = channel.process(&request.user_data).unwrap();
                        let mut out = server_encode_svc_messages(responses, request.channel_id, user).unwrap();
                        if surface.is_none()
                            && let Some(Some((caps, avc420, id))) = with_pipeline(&mut result.static_channels, |gfx| {
                                gfx.is_ready().then(|| {
                                    let caps = gfx.negotiated_capabilities().cloned().unwrap();
                                    let id = gfx.create_surface(size.0, size.1).unwrap();
                                    assert!(gfx.map_surface_to_output(id, 0, 0));
                                    (caps, gfx.supports_avc420(), id)
                                })
                            })
                        {
                            let _ = seen_tx.send(Seen::Ready { caps, avc420 });
                            surface = Some(id);
                            let _ = seen_tx.send(Seen::Surface { width: size.0, height: size.1 });
                        }
                        out.extend(pipeline_output(&mut result.static_channels, user));
                        if !out.is_empty() {
                            framed.write_all(&out).await.unwrap();
                        }
                    }
                }
            }
        });
        Server {
            addr,
            seen,
            command,
        }
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("server saw nothing")
            .expect("server ended")
    }

    /// Skips to the next event `pick` accepts.
    async fn wait<T>(&mut self, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        loop {
            if let Some(found) = pick(self.next().await) {
                return found;
            }
        }
    }
}

async fn connect(server: &Server, gfx: Gfx) -> Client {
    rdhost_client::connect(ClientConfig {
        security: Security::Tls,
        connect_timeout: Duration::from_secs(10),
        gfx,
        width: 640,
        height: 480,
        ..ClientConfig::new(server.addr, "tester", "pw")
    })
    .await
    .expect("connect")
}

/// Pumps the client until the server reports `event` (the client answers what the server
/// sends only while pumped).
async fn pump_until_seen<T>(
    client: &mut Client,
    server: &mut Server,
    mut pick: impl FnMut(Seen) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        while let Ok(seen) = server.seen.try_recv() {
            if let Some(found) = pick(seen) {
                return found;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never saw it"
        );
        client.pump_for(Duration::from_millis(20)).await.unwrap();
    }
}

fn local() -> tokio::task::LocalSet {
    tokio::task::LocalSet::new()
}

#[tokio::test]
async fn avc420_and_planar_frames_are_decoded_into_the_framebuffer_and_acknowledged() {
    local()
        .run_until(async {
            let mut server = Server::start(640, 480).await;
            let mut client = connect(&server, Gfx::Avc420).await;
            let (caps, avc420) = pump_until_seen(&mut client, &mut server, |s| match s {
                Seen::Ready { caps, avc420 } => Some((caps, avc420)),
                _ => None,
            })
            .await;
            assert!(avc420, "the server may send AVC420: {caps:?}");
            assert!(
                matches!(caps, CapabilitySet::V8_1 { .. }),
                "the newest version an AVC420-only client offers: {caps:?}"
            );
            pump_until_seen(&mut client, &mut server, |s| {
                matches!(s, Seen::Surface { .. }).then_some(())
            })
            .await;
            let confirmed = client
                .gfx_counters()
                .confirmed
                .expect("the client saw the confirm");
            assert_eq!(confirmed.version, 0x8_0105);
            assert!(confirmed.avc420);

            // An IDR frame, then a P frame of a different picture.
            let first = Picture::quadrants(640, 480, COLOURS_A, 0);
            let second = Picture::quadrants(640, 480, COLOURS_B, 30);
            let mut h264_bytes = 0;
            for (n, picture) in [&first, &second].into_iter().enumerate() {
                server
                    .command
                    .send(Command::Avc420(picture.clone()))
                    .unwrap();
                h264_bytes += server
                    .wait(|s| match s {
                        Seen::H264Bytes(n) => Some(n),
                        _ => None,
                    })
                    .await;
                let shown = client
                    .pump_until(Duration::from_secs(10), |c| looks_like(c, picture))
                    .await
                    .unwrap();
                let (max, mean) = difference(&client, picture);
                assert!(
                    shown,
                    "picture {n} never came through: max difference {max}, mean {mean:.2}"
                );
                let (frame_id, total) = pump_until_seen(&mut client, &mut server, |s| match s {
                    Seen::Ack {
                        frame_id,
                        total_decoded,
                    } => Some((frame_id, total_decoded)),
                    _ => None,
                })
                .await;
                assert_eq!(
                    total,
                    n as u32 + 1,
                    "frame {frame_id} acknowledged with the running count"
                );
            }
            let counters = client.gfx_counters();
            assert_eq!(counters.frames, 2);
            assert_eq!(counters.h264_pictures, 2);
            assert_eq!((counters.h264_errors, counters.dropped_updates), (0, 0));
            assert!(counters.h264_decode_time > Duration::ZERO);
            // The channel carried the H.264 plus small headers and the setup PDUs.
            assert!(
                counters.bytes as usize > h264_bytes
                    && (counters.bytes as usize) < h264_bytes + 2048,
                "{} channel bytes for {h264_bytes} bytes of H.264",
                counters.bytes
            );
            assert_eq!(
                (
                    counters.resets,
                    counters.output_size,
                    counters.surfaces_created
                ),
                (1, Some((640, 480)), 1)
            );

            // Planar is lossless: exactly the picture.
            let third = Picture::quadrants(640, 480, COLOURS_A, 60);
            server.command.send(Command::Planar(third.clone())).unwrap();
            let exact = client
                .pump_until(Duration::from_secs(10), |c| {
                    c.rgba()
                        .chunks_exact(4)
                        .zip(third.rgba.chunks_exact(4))
                        .all(|(a, b)| a[..3] == b[..3])
                })
                .await
                .unwrap();
            assert!(
                exact,
                "planar picture differs: {:?}",
                difference(&client, &third)
            );
            pump_until_seen(&mut client, &mut server, |s| {
                matches!(
                    s,
                    Seen::Ack {
                        total_decoded: 3,
                        ..
                    }
                )
                .then_some(())
            })
            .await;
            let codecs = client.codecs_seen();
            assert!(codecs.contains(&(Codec::GfxAvc420, 2)), "{codecs:?}");
            assert!(codecs.contains(&(Codec::GfxPlanar, 1)), "{codecs:?}");
            assert!(
                codecs
                    .iter()
                    .all(|(c, _)| format!("{c:?}").starts_with("Gfx")),
                "nothing came by fast-path: {codecs:?}"
            );
            assert_eq!(client.gfx_counters().frames, 3);
        })
        .await;
}

#[tokio::test]
async fn without_avc_the_server_may_not_send_h264_and_planar_still_decodes() {
    local()
        .run_until(async {
            let mut server = Server::start(640, 480).await;
            let mut client = connect(&server, Gfx::NoAvc).await;
            let (caps, avc420) = pump_until_seen(&mut client, &mut server, |s| match s {
                Seen::Ready { caps, avc420 } => Some((caps, avc420)),
                _ => None,
            })
            .await;
            assert!(!avc420, "AVC was disabled: {caps:?}");
            assert!(matches!(caps, CapabilitySet::V10_7 { .. }), "{caps:?}");
            pump_until_seen(&mut client, &mut server, |s| {
                matches!(s, Seen::Surface { .. }).then_some(())
            })
            .await;
            let picture = Picture::quadrants(640, 480, COLOURS_B, 5);
            server
                .command
                .send(Command::Planar(picture.clone()))
                .unwrap();
            let exact = client
                .pump_until(Duration::from_secs(10), |c| {
                    c.rgba()
                        .chunks_exact(4)
                        .zip(picture.rgba.chunks_exact(4))
                        .all(|(a, b)| a[..3] == b[..3])
                })
                .await
                .unwrap();
            assert!(exact, "{:?}", difference(&client, &picture));
            let counters = client.gfx_counters();
            let confirmed = counters.confirmed.unwrap();
            assert!(!confirmed.avc420 && !confirmed.avc444, "{confirmed:?}");
            assert_eq!((counters.frames, counters.h264_pictures), (1, 0));
        })
        .await;
}

#[tokio::test]
async fn reset_graphics_after_a_reactivation_resizes_the_framebuffer() {
    local()
        .run_until(async {
            let mut server = Server::start(640, 480).await;
            let mut client = connect(&server, Gfx::Avc420).await;
            pump_until_seen(&mut client, &mut server, |s| {
                matches!(s, Seen::Surface { .. }).then_some(())
            })
            .await;
            let small = Picture::quadrants(640, 480, COLOURS_A, 0);
            server.command.send(Command::Avc420(small.clone())).unwrap();
            assert!(
                client
                    .pump_until(Duration::from_secs(10), |c| looks_like(c, &small))
                    .await
                    .unwrap()
            );
            pump_until_seen(&mut client, &mut server, |s| {
                matches!(s, Seen::Ack { .. }).then_some(())
            })
            .await;

            server
                .command
                .send(Command::Resize {
                    width: 800,
                    height: 608,
                })
                .unwrap();
            // The client reactivates inside its pump; the server then resets the pipeline.
            pump_until_seen(&mut client, &mut server, |s| {
                matches!(
                    s,
                    Seen::Surface {
                        width: 800,
                        height: 608
                    }
                )
                .then_some(())
            })
            .await;
            let big = Picture::quadrants(800, 608, COLOURS_B, 11);
            server.command.send(Command::Avc420(big.clone())).unwrap();
            let shown = client
                .pump_until(Duration::from_secs(10), |c| looks_like(c, &big))
                .await
                .unwrap();
            assert!(
                shown,
                "{}x{}, {:?}",
                client.width(),
                client.height(),
                (client.width() == 800).then(|| difference(&client, &big))
            );
            let counters = client.gfx_counters();
            assert_eq!(
                (counters.resets, counters.output_size),
                (2, Some((800, 608)))
            );
            assert_eq!(counters.surfaces_created, 2);
            assert_eq!(counters.h264_pictures, 2);
        })
        .await;
}
