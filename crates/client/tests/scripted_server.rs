//! The client against a scripted in-process server built on IronRDP's acceptor: the cases a
//! stock server will not produce on demand (refusing credentials with an error info, ending a
//! session with ERRINFO_LOGOFF_BY_USER, an error code IronRDP does not know, Logon Info with a
//! session id), plus exactly which input events went over the wire.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ironrdp_acceptor::{Acceptor, ConnectionSetupHandler, ReceivedCredentials};
use ironrdp_connector::{ConnectorResult, DesktopSize, custom_err};
use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::Action;
use ironrdp_pdu::fast_path::{
    EncryptionFlags, FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use ironrdp_pdu::geometry::ExclusiveRectangle;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::mcs::{
    DisconnectProviderUltimatum, DisconnectReason, McsMessage, SendDataIndication,
};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::capability_sets::InputFlags;
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ServerDeactivateAll, ShareControlHeader, ShareControlPdu, ShareDataHeader,
    ShareDataPdu, StreamPriority,
};
use ironrdp_pdu::rdp::session_info::{
    InfoData, InfoType, LogonInfo, LogonInfoVersion2, SaveSessionInfoPdu,
};
use ironrdp_pdu::surface_commands::{ExtendedBitmapDataPdu, SurfaceBitsPdu, SurfaceCommand};
use ironrdp_pdu::x224::X224;
use ironrdp_tokio::FramedWrite as _;
use rdhost_client::{Client, ClientConfig, Codec, ConnectError, Security, SessionError};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

mod common;

const PASSWORD: &str = "right";
const WIDTH: u16 = 640;
const HEIGHT: u16 = 480;
/// The colour the server paints on connect.
const TEAL: [u8; 3] = [0x00, 0x80, 0x80];

enum Command {
    /// End the session with this error info code.
    End(u32),
    /// Resize the desktop (Deactivation-Reactivation) and paint it in `colour`.
    Resize {
        width: u16,
        height: u16,
        colour: [u8; 3],
    },
}

/// What the server saw, reported to the test.
#[derive(Debug)]
enum Seen {
    PreconnectionId(Option<u32>),
    Input(Vec<FastPathInputEvent>),
    ShutdownRequest,
    RefreshRect,
    ClientUltimatum,
}

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    command: mpsc::UnboundedSender<Command>,
}

/// Accepts the right password only, the way a host's credential check would.
struct CheckPassword;

#[async_trait::async_trait(?Send)]
impl ConnectionSetupHandler for CheckPassword {
    async fn handle_credentials(
        &mut self,
        credentials: Option<ReceivedCredentials>,
    ) -> ConnectorResult<()> {
        match credentials {
            Some(c) if c.credentials.password == PASSWORD => Ok(()),
            _ => Err(custom_err!(
                "credentials",
                std::io::Error::other("wrong password")
            )),
        }
    }
}

/// A Share Data PDU from the server on the I/O channel.
fn share_data(user_channel: u16, io_channel: u16, pdu: ShareDataPdu) -> Vec<u8> {
    let header = ShareControlHeader {
        share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
            share_data_pdu: pdu,
            stream_priority: StreamPriority::Undefined,
            compression_flags: CompressionFlags::empty(),
            compression_type: CompressionType::K8,
        }),
        pdu_source: user_channel,
        share_id: 0,
    };
    send_data_indication(user_channel, io_channel, encode_vec(&header).unwrap())
}

fn send_data_indication(user_channel: u16, channel: u16, user_data: Vec<u8>) -> Vec<u8> {
    let pdu = SendDataIndication {
        initiator_id: user_channel,
        channel_id: channel,
        user_data: Cow::Owned(user_data),
    };
    encode_vec(&X224(pdu)).unwrap()
}

/// Set Error Info built by hand, so that codes IronRDP's enum lacks can be sent too.
fn set_error_info(user_channel: u16, io_channel: u16, code: u32) -> Vec<u8> {
    let mut pdu = Vec::new();
    pdu.extend_from_slice(&22u16.to_le_bytes()); // totalLength
    pdu.extend_from_slice(&0x17u16.to_le_bytes()); // PDUTYPE_DATAPDU, version 1
    pdu.extend_from_slice(&user_channel.to_le_bytes());
    pdu.extend_from_slice(&0u32.to_le_bytes()); // shareId
    pdu.extend_from_slice(&[0, 1]); // pad, streamId
    pdu.extend_from_slice(&8u16.to_le_bytes()); // uncompressedLength
    pdu.extend_from_slice(&[0x2F, 0]); // PDUTYPE2_SET_ERROR_INFO_PDU, no compression
    pdu.extend_from_slice(&0u16.to_le_bytes());
    pdu.extend_from_slice(&code.to_le_bytes());
    send_data_indication(user_channel, io_channel, pdu)
}

/// A full-screen uncompressed surface-bits update in one colour.
fn paint(rgb: [u8; 3], width: u16, height: u16) -> Vec<u8> {
    let pixels: Vec<u8> = std::iter::repeat_n(
        [rgb[2], rgb[1], rgb[0], 0xFF],
        usize::from(width) * usize::from(height),
    )
    .flatten()
    .collect();
    let mut out = Vec::new();
    // One surface command per band of rows keeps each fast-path PDU under its 32 KiB limit.
    let rows = 8u16;
    for top in (0..height).step_by(usize::from(rows)) {
        let band = &pixels[usize::from(top) * usize::from(width) * 4..]
            [..usize::from(rows) * usize::from(width) * 4];
        let cmd = SurfaceCommand::SetSurfaceBits(SurfaceBitsPdu {
            destination: ExclusiveRectangle {
                left: 0,
                top,
                right: width,
                bottom: top + rows,
            },
            extended_bitmap_data: ExtendedBitmapDataPdu {
                bpp: 32,
                codec_id: 0,
                width,
                height: rows,
                header: None,
                data: band,
            },
        });
        let data = encode_vec(&cmd).unwrap();
        let update = FastPathUpdatePdu {
            fragmentation: Fragmentation::Single,
            update_code: UpdateCode::SurfaceCommands,
            compression_flags: None,
            compression_type: None,
            data: &data,
        };
        let update = encode_vec(&update).unwrap();
        let mut pdu =
            encode_vec(&FastPathHeader::new(EncryptionFlags::empty(), update.len())).unwrap();
        pdu.extend_from_slice(&update);
        out.extend_from_slice(&pdu);
    }
    out
}

async fn read_preconnection_pdu(stream: &mut TcpStream) -> Option<u32> {
    let mut first = [0u8; 1];
    stream.peek(&mut first).await.unwrap();
    if first[0] == 0x03 {
        return None;
    }
    let mut pcb = [0u8; 16];
    stream.read_exact(&mut pcb).await.unwrap();
    let pcb: ironrdp_pdu::pcb::PreconnectionBlob = decode(&pcb).unwrap();
    Some(pcb.id)
}

impl Server {
    /// Serves one connection: refuse a wrong password; otherwise paint the screen, send Logon
    /// Info for `session_id`, report input, and end the session when told.
    async fn start(session_id: u32) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (command, mut commands) = mpsc::unbounded_channel();
        tokio::task::spawn_local(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = seen_tx.send(Seen::PreconnectionId(
                read_preconnection_pdu(&mut tcp).await,
            ));
            let mut acceptor = Acceptor::new(
                SecurityProtocol::SSL,
                DesktopSize {
                    width: WIDTH,
                    height: HEIGHT,
                },
                common::server_capabilities(
                    WIDTH,
                    HEIGHT,
                    InputFlags::SCANCODES
                        | InputFlags::MOUSEX
                        | InputFlags::FASTPATH_INPUT
                        | InputFlags::UNICODE
                        | InputFlags::FASTPATH_INPUT_2,
                ),
                None,
            );
            let tls = common::accept_tls(tcp, &mut acceptor).await;
            // A refused client ends here: the acceptor has sent access denied (error info 0x9).
            let Ok((mut framed, mut result)) = ironrdp_acceptor::accept_finalize_with(
                tls,
                &mut acceptor,
                &mut CheckPassword,
            )
            .await
            else {
                return;
            };
            let (user, io) = (result.user_channel_id, result.io_channel_id);
            framed.write_all(&paint(TEAL, WIDTH, HEIGHT)).await.unwrap();
            let logon = SaveSessionInfoPdu {
                info_type: InfoType::LogonLong,
                info_data: InfoData::LogonInfoV2(LogonInfoVersion2 {
                    logon_info: LogonInfo {
                        session_id,
                        user_name: "tester".into(),
                        domain_name: String::new(),
                    },
                }),
            };
            framed
                .write_all(&share_data(user, io, ShareDataPdu::SaveSessionInfo(logon)))
                .await
                .unwrap();
            loop {
                tokio::select! {
                    command = commands.recv() => match command {
                        None => return,
                        Some(Command::End(code)) => {
                            framed.write_all(&set_error_info(user, io, code)).await.unwrap();
                            let bye = McsMessage::DisconnectProviderUltimatum(DisconnectProviderUltimatum::from_reason(
                                DisconnectReason::ProviderInitiated,
                            ));
                            framed.write_all(&encode_vec(&X224(bye)).unwrap()).await.unwrap();
                            return;
                        }
                        Some(Command::Resize { width, height, colour }) => {
                            // Deactivate All, then the capability exchange again at the new size.
                            let deactivate = ShareControlHeader {
                                share_control_pdu: ShareControlPdu::ServerDeactivateAll(ServerDeactivateAll),
                                pdu_source: user,
                                share_id: 0,
                            };
                            framed.write_all(&send_data_indication(user, io, encode_vec(&deactivate).unwrap())).await.unwrap();
                            acceptor = Acceptor::new_deactivation_reactivation(
                                acceptor,
                                std::mem::take(&mut result.static_channels),
                                DesktopSize { width, height },
                            )
                            .unwrap();
                            let (again, reactivated) = ironrdp_acceptor::accept_finalize(framed, &mut acceptor).await.unwrap();
                            framed = again;
                            result = reactivated;
                            framed.write_all(&paint(colour, width, height)).await.unwrap();
                        }
                    },
                    pdu = framed.read_pdu() => {
                        let Ok((action, frame)) = pdu else { return };
                        match action {
                            Action::FastPath => {
                                let input: FastPathInput = decode(&frame).unwrap();
                                let _ = seen_tx.send(Seen::Input(input.input_events().to_vec()));
                            }
                            Action::X224 => {
                                if let Ok(X224(McsMessage::DisconnectProviderUltimatum(_))) = decode::<X224<McsMessage<'_>>>(&frame) {
                                    let _ = seen_tx.send(Seen::ClientUltimatum);
                                    return;
                                }
                                let Ok(X224(McsMessage::SendDataRequest(req))) = decode::<X224<McsMessage<'_>>>(&frame) else { continue };
                                let Ok(ctx) = ironrdp_pdu::rdp::headers::decode_share_data(ironrdp_pdu::mcs::SendDataIndicationCtx {
                                    initiator_id: req.initiator_id,
                                    channel_id: req.channel_id,
                                    user_data: &req.user_data,
                                }) else { continue };
                                if let ShareDataPdu::RefreshRectangle(_) = ctx.pdu {
                                    let _ = seen_tx.send(Seen::RefreshRect);
                                }
                                if let ShareDataPdu::ShutdownRequest = ctx.pdu {
                                    let _ = seen_tx.send(Seen::ShutdownRequest);
                                    framed.write_all(&share_data(user, io, ShareDataPdu::ShutdownDenied)).await.unwrap();
                                }
                            }
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
            .unwrap()
    }

    /// Collects input events until `n` have arrived.
    async fn input(&mut self, n: usize) -> Vec<FastPathInputEvent> {
        let mut events = Vec::new();
        while events.len() < n {
            match self.next().await {
                Seen::Input(more) => events.extend(more),
                other => panic!("expected input, server saw {other:?}"),
            }
        }
        events
    }
}

fn config(addr: SocketAddr, password: &str) -> ClientConfig {
    ClientConfig {
        security: Security::Tls,
        connect_timeout: Duration::from_secs(10),
        ..ClientConfig::new(addr, "tester", password)
    }
}

async fn connected(server: &mut Server, session_id: Option<u32>) -> Client {
    let mut client = rdhost_client::connect(ClientConfig {
        session_id,
        ..config(server.addr, PASSWORD)
    })
    .await
    .expect("connect");
    assert!(matches!(server.next().await, Seen::PreconnectionId(id) if id == session_id));
    let painted = client
        .pump_until(Duration::from_secs(10), |c| {
            c.pixel(0, 0) == Some(TEAL)
                && c.pixel(WIDTH - 1, HEIGHT - 1) == Some(TEAL)
                && c.server_session_id().is_some()
        })
        .await
        .unwrap();
    assert!(
        painted,
        "never got the painted screen and Logon Info; corner is {:?}",
        client.pixel(0, 0)
    );
    client
}

fn local() -> tokio::task::LocalSet {
    tokio::task::LocalSet::new()
}

#[tokio::test]
async fn wrong_password_is_an_authentication_failure() {
    local()
        .run_until(async {
            let server = Server::start(1).await;
            let err = rdhost_client::connect(config(server.addr, "wrong"))
                .await
                .err()
                .expect("must be refused");
            match err {
                ConnectError::AuthenticationFailed { detail } => {
                    assert!(
                        detail.unwrap_or_default().contains("0x9"),
                        "the access-denied error info is reported"
                    )
                }
                other => panic!("expected AuthenticationFailed, got {other:?}"),
            }
        })
        .await;
}

#[tokio::test]
async fn decodes_updates_reports_session_id_and_the_logoff_code() {
    local()
        .run_until(async {
            let mut server = Server::start(77).await;
            let mut client = connected(&mut server, Some(77)).await;
            assert_eq!(client.server_session_id(), Some(77));
            assert_eq!((client.width(), client.height()), (WIDTH, HEIGHT));
            assert_eq!(
                client.codecs_seen(),
                vec![(Codec::SurfaceUncompressed, u64::from(HEIGHT / 8))]
            );
            assert!(client.frames_received() >= 1);
            assert!(!client.closed());

            server
                .command
                .send(Command::End(rdhost_client::errinfo::LOGOFF_BY_USER))
                .unwrap();
            let err = client
                .pump_for(Duration::from_secs(10))
                .await
                .expect_err("the server ended the session");
            assert!(err.is_closed(), "{err:?}");
            assert_eq!(err.closed_with(), Some(0xC));
            assert!(client.closed());
            assert_eq!(client.error_info(), Some(0xC));
            // Every later call says the same thing instead of touching the dead socket.
            assert!(matches!(
                client.key(0x1E, false, true).await,
                Err(SessionError::Closed {
                    error_info: Some(0xC)
                })
            ));
            // Disconnecting a closed client is not an error.
            client.disconnect().await.unwrap();
        })
        .await;
}

#[tokio::test]
async fn codes_ironrdp_does_not_know_are_still_reported() {
    local()
        .run_until(async {
            let mut server = Server::start(3).await;
            let mut client = connected(&mut server, None).await;
            server.command.send(Command::End(0x0000_BEEF)).unwrap();
            let err = client
                .pump_until(Duration::from_secs(10), |_| false)
                .await
                .expect_err("closed");
            assert_eq!(err.closed_with(), Some(0xBEEF));
        })
        .await;
}

#[tokio::test]
async fn input_goes_over_the_wire_as_scancodes_unicode_and_pointer_events() {
    use rdhost_client::Button;
    local()
        .run_until(async {
            let mut server = Server::start(5).await;
            let mut client = connected(&mut server, None).await;

            client.type_text("aB\n").await.unwrap();
            let keys: Vec<(u8, bool)> = server
                .input(8)
                .await
                .into_iter()
                .map(|e| match e {
                    FastPathInputEvent::KeyboardEvent(flags, code) => {
                        (code, !flags.contains(KeyboardFlags::RELEASE))
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                keys,
                [
                    (0x1E, true),
                    (0x1E, false),
                    (0x2A, true),
                    (0x30, true),
                    (0x30, false),
                    (0x2A, false),
                    (0x1C, true),
                    (0x1C, false)
                ]
            );

            client.key(0x4B, true, true).await.unwrap();
            match server.input(1).await[..] {
                [FastPathInputEvent::KeyboardEvent(flags, 0x4B)] => {
                    assert_eq!(flags, KeyboardFlags::EXTENDED)
                }
                ref other => panic!("{other:?}"),
            }

            client.unicode('é').await.unwrap();
            match server.input(2).await[..] {
                [
                    FastPathInputEvent::UnicodeKeyboardEvent(down, 0xE9),
                    FastPathInputEvent::UnicodeKeyboardEvent(up, 0xE9),
                ] => {
                    assert!(down.is_empty());
                    assert_eq!(up, KeyboardFlags::RELEASE);
                }
                ref other => panic!("{other:?}"),
            }

            client.mouse_move(100, 200).await.unwrap();
            client.button(Button::Right, true).await.unwrap();
            client.button(Button::X1, false).await.unwrap();
            client.wheel(-120, false).await.unwrap();
            let pointer = server.input(4).await;
            use ironrdp_pdu::input::mouse::PointerFlags;
            use ironrdp_pdu::input::mouse_x::PointerXFlags;
            match &pointer[..] {
                [
                    FastPathInputEvent::MouseEvent(mv),
                    FastPathInputEvent::MouseEvent(right),
                    FastPathInputEvent::MouseEventEx(x1),
                    FastPathInputEvent::MouseEvent(wheel),
                ] => {
                    assert_eq!(
                        (mv.flags, mv.x_position, mv.y_position),
                        (PointerFlags::MOVE, 100, 200)
                    );
                    assert_eq!(right.flags, PointerFlags::RIGHT_BUTTON | PointerFlags::DOWN);
                    assert_eq!((right.x_position, right.y_position), (100, 200));
                    assert_eq!(x1.flags, PointerXFlags::BUTTON1);
                    assert!(
                        wheel
                            .flags
                            .contains(PointerFlags::VERTICAL_WHEEL | PointerFlags::WHEEL_NEGATIVE)
                    );
                    assert_eq!(wheel.number_of_wheel_rotation_units, -120);
                }
                other => panic!("{other:?}"),
            }

            client.request_refresh().await.unwrap();
            assert!(matches!(server.next().await, Seen::RefreshRect));

            // This server never opens the display control channel.
            assert!(matches!(
                client.request_resize(800, 600).await,
                Err(SessionError::Unavailable(_))
            ));
            assert!(matches!(
                client.request_resize(801, 600).await,
                Err(SessionError::InvalidArgument(_))
            ));

            client.disconnect().await.unwrap();
            assert!(matches!(server.next().await, Seen::ShutdownRequest));
            assert!(matches!(server.next().await, Seen::ClientUltimatum));
        })
        .await;
}

#[tokio::test]
async fn rdhost_shot_reads_the_password_from_stdin_and_reports_refusal_by_exit_status() {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt as _;
    local()
        .run_until(async {
            let dir =
                std::env::temp_dir().join(format!("rdhost-client-scripted-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let out = dir.join("teal.png");

            let server = Server::start(9).await;
            let mut shot = tokio::process::Command::new(env!("CARGO_BIN_EXE_rdhost-shot"))
                .args([
                    &server.addr.to_string(),
                    "tester",
                    out.to_str().unwrap(),
                    "--sec",
                    "tls",
                    "--quiet-ms",
                    "200",
                ])
                .env_remove("RDHOST_PASSWORD")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            shot.stdin
                .take()
                .unwrap()
                .write_all(format!("{PASSWORD}\n").as_bytes())
                .await
                .unwrap();
            let done = shot.wait_with_output().await.unwrap();
            let stdout = String::from_utf8_lossy(&done.stdout);
            assert!(done.status.success(), "{stdout}");
            assert!(stdout.contains("session 9"), "{stdout}");
            assert!(stdout.contains("SurfaceUncompressed"), "{stdout}");
            let decoder =
                png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            reader.next_frame(&mut buf).unwrap();
            assert_eq!(buf[..3], TEAL);

            let server = Server::start(9).await;
            let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_rdhost-shot"))
                .args([
                    &server.addr.to_string(),
                    "tester",
                    dir.join("no.png").to_str().unwrap(),
                    "--sec",
                    "tls",
                ])
                .env("RDHOST_PASSWORD", "wrong")
                .output()
                .await
                .unwrap();
            assert_eq!(
                refused.status.code(),
                Some(4),
                "{}",
                String::from_utf8_lossy(&refused.stderr)
            );
            assert!(!dir.join("no.png").exists());
            std::fs::remove_dir_all(dir).unwrap();
        })
        .await;
}

#[tokio::test]
async fn a_deactivation_reactivation_resizes_the_framebuffer() {
    const ORANGE: [u8; 3] = [0xFF, 0x80, 0x00];
    local()
        .run_until(async {
            let mut server = Server::start(4).await;
            let mut client = connected(&mut server, None).await;
            let frames = client.frames_received();
            server
                .command
                .send(Command::Resize {
                    width: 800,
                    height: 600,
                    colour: ORANGE,
                })
                .unwrap();
            let resized = client
                .pump_until(Duration::from_secs(10), |c| {
                    c.width() == 800
                        && c.pixel(799, 599) == Some(ORANGE)
                        && c.pixel(0, 0) == Some(ORANGE)
                })
                .await
                .unwrap();
            assert!(
                resized,
                "now {}x{}, corner {:?}",
                client.width(),
                client.height(),
                client.pixel(0, 0)
            );
            assert_eq!(client.height(), 600);
            assert_eq!(client.rgba().len(), 800 * 600 * 4);
            assert!(client.frames_received() > frames);
            // Input still flows after the reactivation.
            client.key(0x1E, false, true).await.unwrap();
            assert!(matches!(
                &server.input(1).await[..],
                [FastPathInputEvent::KeyboardEvent(_, 0x1E)]
            ));
            client.disconnect().await.unwrap();
        })
        .await;
}
