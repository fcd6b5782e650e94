//! The connection sequence: TCP (dialled by us, or by the sharer in reverse connect), optional
//! pre-connection PDU, X.224 negotiation, TLS, optional CredSSP, then the rest of the sequence
//! up to the first activation.
//!
//! We drive IronRDP's sans-I/O `ClientConnector` ourselves instead of calling
//! `ironrdp_async::connect_begin/connect_finalize` because we must see every PDU: the numeric
//! Set Error Info code (the connector only keeps a description), the CredSSP `errorCode`
//! (ignored by the connector), and whether a failure was the socket, TLS, or the credentials.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ironrdp_connector::credssp::CredsspSequence;
use ironrdp_connector::sspi::generator::GeneratorState;
use ironrdp_connector::{
    BitmapConfig, ClientConnector, ClientConnectorState, ConnectionOutcome, ConnectionResult,
    ConnectorError, ConnectorErrorKind, Credentials, DesktopSize, Sequence, ServerName,
};
use ironrdp_core::WriteBuf;
use ironrdp_displaycontrol::client::DisplayControlClient;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_pdu::gcc;
use ironrdp_pdu::rdp::capability_sets::{
    BitmapCodecs, CaptureFlags, Codec, CodecProperty, EntropyBits, MajorPlatformType,
    RailSupportLevel, RemoteFxContainer, RfxCaps, RfxCapset, RfxClientCapsContainer, RfxICap,
    RfxICapFlags,
};
use ironrdp_pdu::rdp::client_info::PerformanceFlags;
use ironrdp_tokio::{FramedRead, FramedWrite, TokioFramed};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::config::Gfx;
use crate::encomsp::EncomspClient;
use crate::error::error_info_detail;
use crate::gfx::SharedGfx;
use crate::wire::{self, Counted};
use crate::{ClientConfig, ConnectError, Security, errinfo, tls};

pub(crate) type Transport = tokio_rustls::client::TlsStream<Counted<TcpStream>>;

/// The codec id we give RemoteFX in our Bitmap Codecs capability. The session's decoder only
/// recognises RemoteFX under this id (IronRDP's `CODEC_ID_REMOTEFX`).
pub(crate) const REMOTEFX_CODEC_ID: u8 = 3;

/// The codecs we advertise: RemoteFX only. Lossless output needs no entry here: uncompressed
/// surface bits (codec id 0) come with the Surface Commands capability, and planar and
/// interleaved RLE bitmap updates with the Bitmap capability (32 bpp). NSCodec is left out
/// because the session cannot decode it, and IronRDP's private QOI/QOIZ codecs because stock
/// clients do not have them: a host must not be tested against a codec real clients never get.
pub(crate) fn advertised_codecs() -> BitmapCodecs {
    BitmapCodecs(vec![Codec {
        id: REMOTEFX_CODEC_ID,
        property: CodecProperty::RemoteFx(RemoteFxContainer::ClientContainer(
            RfxClientCapsContainer {
                capture_flags: CaptureFlags::empty(),
                caps_data: RfxCaps(RfxCapset(vec![RfxICap {
                    flags: RfxICapFlags::empty(),
                    entropy_bits: EntropyBits::Rlgr3,
                }])),
            },
        )),
    }])
}

fn connector_config(cfg: &ClientConfig) -> ironrdp_connector::Config {
    let (enable_tls, enable_credssp) = match cfg.security {
        // An attendee has no account to prove: FreeRDP turns NLA off in assistance mode too.
        _ if cfg.assistance.is_some() => (true, false),
        Security::Tls => (true, false),
        Security::Nla => (false, true),
        Security::Negotiate => (true, true),
    };
    // Assistance mode, as FreeRDP sends it: Password "*", the invitation's password as the
    // AlternateShell, its ticket as the WorkingDir; autologon when a name is given.
    let (password, alternate_shell, work_dir, autologon) = match &cfg.assistance {
        Some(a) => (
            "*".to_owned(),
            a.password.clone(),
            a.ticket.clone(),
            !cfg.username.is_empty(),
        ),
        // Like xfreerdp with /p: the credentials we send are meant to log us straight in.
        None => (
            cfg.password.clone(),
            String::new(),
            String::new(),
            !cfg.password.is_empty(),
        ),
    };
    ironrdp_connector::Config {
        desktop_size: DesktopSize {
            width: cfg.width,
            height: cfg.height,
        },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls,
        enable_credssp,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: cfg.username.clone(),
            password,
        },
        domain: cfg.domain.clone(),
        client_build: 0,
        client_name: cfg.client_name.clone(),
        keyboard_type: gcc::KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        keyboard_layout: cfg.keyboard_layout,
        connection_type: gcc::ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: Some(BitmapConfig {
            lossy_compression: false,
            color_depth: 32,
            codecs: if cfg.remotefx { advertised_codecs() } else { BitmapCodecs(Vec::new()) },
        }),
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell,
        work_dir,
        remote_application_mode: false,
        rail_support_level: RailSupportLevel::empty(),
        platform: MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        autologon,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: PerformanceFlags::default(),
        license_cache: None,
        timezone_info: Default::default(),
        compression_type: None,
        // Server pointer shapes are decoded but not drawn ("accelerated" mode hands them to us
        // instead): the framebuffer stays the desktop's, so pixel checks see only the desktop.
        enable_server_pointer: true,
        pointer_software_rendering: false,
        multitransport_flags: None,
        // The early capability flag that tells the server we can take the graphics pipeline;
        // the channel itself is joined in `run_over`.
        support_dyn_vc_gfx_protocol: cfg.gfx != Gfx::Off,
    }
}

pub(crate) struct Connected {
    pub framed: TokioFramed<Transport>,
    pub result: ConnectionResult,
    pub bytes_read: Arc<AtomicU64>,
    /// A Set Error Info code seen during the sequence (ERRINFO_NONE is not recorded).
    pub error_info: Option<u32>,
    /// The graphics pipeline's counters (all zero when it was not offered).
    pub gfx: SharedGfx,
}

/// Dial `cfg.addr` and run the sequence.
pub(crate) async fn run(cfg: &ClientConfig) -> Result<Connected, ConnectError> {
    let tcp = TcpStream::connect(cfg.addr)
        .await
        .map_err(ConnectError::Io)?;
    run_over(tcp, cfg).await
}

/// Run the sequence over a connected socket, whoever dialled it: the other end is the server
/// (in reverse connect the sharer dialled us, and is still the RDP server). `cfg.addr` is not
/// used.
pub(crate) async fn run_over(
    tcp: TcpStream,
    cfg: &ClientConfig,
) -> Result<Connected, ConnectError> {
    let bytes_read = Arc::new(AtomicU64::new(0));
    // Input events are tiny and latency-sensitive; do not let Nagle hold them back.
    tcp.set_nodelay(true).map_err(ConnectError::Io)?;
    let local_addr = tcp.local_addr().map_err(ConnectError::Io)?;
    let server_addr = tcp.peer_addr().map_err(ConnectError::Io)?;
    let mut stream = Counted::new(tcp, Arc::clone(&bytes_read));

    if let Some(id) = cfg.session_id {
        stream
            .write_all(&wire::preconnection_pdu(id))
            .await
            .map_err(ConnectError::Io)?;
    }

    let gfx = SharedGfx::default();
    let mut drdynvc = DrdynvcClient::new()
        .with_dynamic_channel(DisplayControlClient::new(|_caps| Ok(Vec::new())));
    if let Some(pipeline) = crate::gfx::pipeline_client(cfg.gfx, &gfx)? {
        drdynvc = drdynvc.with_dynamic_channel(pipeline);
    }
    let mut connector =
        ClientConnector::new(connector_config(cfg), local_addr).with_static_channel(drdynvc);
    if cfg.assistance.is_some() {
        connector.attach_static_channel(EncomspClient::default());
    }
    if cfg.clipboard {
        connector.attach_static_channel(ironrdp_cliprdr::CliprdrClient::new(Box::new(
            crate::clipboard::ClipboardBackend::default(),
        )));
    }
    let mut error_info = None;

    // X.224 negotiation, in the clear.
    let mut framed = TokioFramed::new(stream);
    let mut buf = WriteBuf::new();
    while !connector.should_perform_security_upgrade() {
        step(&mut framed, &mut connector, &mut buf, &mut error_info)
            .await
            .map_err(|e| e.before_tls())?;
    }
    let (stream, leftover) = framed.into_inner();
    if !leftover.is_empty() {
        return Err(ConnectError::Protocol(format!(
            "{} unexpected bytes before the TLS handshake",
            leftover.len()
        )));
    }

    let tls = tls::connector()
        .connect(
            rustls::pki_types::ServerName::IpAddress(server_addr.ip().into()),
            stream,
        )
        .await
        .map_err(ConnectError::Tls)?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .cloned()
        .ok_or_else(|| {
            ConnectError::Tls(io::Error::new(
                io::ErrorKind::InvalidData,
                "server sent no certificate",
            ))
        })?;
    let server_public_key = tls::server_public_key(&cert).map_err(ConnectError::Tls)?;
    connector.mark_security_upgrade_as_done();
    let mut framed = TokioFramed::new(tls);

    if connector.should_perform_credssp() {
        credssp(
            &mut framed,
            &mut connector,
            server_name(server_addr),
            server_public_key,
        )
        .await?;
    }

    let outcome = loop {
        if connector.should_perform_multitransport() {
            // No UDP transport here: decline, the server carries on over TCP.
            buf.clear();
            let written = connector.skip_multitransport(&mut buf).map_err(protocol)?;
            if written.size().is_some() {
                framed
                    .write_all(buf.filled())
                    .await
                    .map_err(|e| StepError::Io(e).after_tls(error_info))?;
            }
            continue;
        }
        step(&mut framed, &mut connector, &mut buf, &mut error_info)
            .await
            .map_err(|e| e.after_tls(error_info))?;
        if let Some(outcome) = connector.state.take_outcome() {
            break outcome;
        }
    };
    match outcome {
        ConnectionOutcome::Connected(result) => {
            info!(
                width = result.desktop_size.width,
                height = result.desktop_size.height,
                "connected"
            );
            Ok(Connected {
                framed,
                result,
                bytes_read,
                error_info,
                gfx,
            })
        }
        ConnectionOutcome::Redirected(redirection) => Err(ConnectError::Protocol(format!(
            "server redirected us to session {}; this client does not follow redirections",
            redirection.session_id
        ))),
    }
}

fn server_name(addr: SocketAddr) -> ServerName {
    ServerName::new(addr.ip().to_string())
}

fn protocol(e: ConnectorError) -> ConnectError {
    ConnectError::Protocol(e.report().to_string())
}

pub(crate) enum StepError {
    Io(io::Error),
    Connector(ConnectorError),
}

impl StepError {
    fn before_tls(self) -> ConnectError {
        match self {
            StepError::Io(e) => ConnectError::Io(e),
            StepError::Connector(e) => match e.kind() {
                ConnectorErrorKind::Negotiation(failure) => {
                    ConnectError::SecurityNegotiation(failure.to_string())
                }
                _ => protocol(e),
            },
        }
    }

    /// After the TLS handshake, a server that hangs up or sends an error has refused us; which
    /// error it gave (if any) decides between "bad credentials" and "refused".
    fn after_tls(self, error_info: Option<u32>) -> ConnectError {
        if let Some(code) = error_info {
            if errinfo::is_access_denied(code) {
                return ConnectError::AuthenticationFailed {
                    detail: Some(error_info_detail(code)),
                };
            }
            return ConnectError::Refused {
                error_info: Some(code),
            };
        }
        match self {
            StepError::Io(e) if is_hangup(&e) => ConnectError::Refused { error_info: None },
            StepError::Io(e) => ConnectError::Io(e),
            StepError::Connector(e) => match e.kind() {
                ConnectorErrorKind::AccessDenied => ConnectError::AuthenticationFailed {
                    detail: Some(e.to_string()),
                },
                _ => protocol(e),
            },
        }
    }
}

pub(crate) fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// One step of a connector sequence: read the PDU it waits for (if any), feed it, send the
/// reply. Set Error Info codes are noted on the way past.
pub(crate) async fn step<S>(
    framed: &mut ironrdp_async::Framed<S>,
    sequence: &mut dyn Sequence,
    buf: &mut WriteBuf,
    error_info: &mut Option<u32>,
) -> Result<(), StepError>
where
    S: FramedRead + FramedWrite,
{
    buf.clear();
    let written = match sequence.next_pdu_hint() {
        Some(hint) => {
            let pdu = framed.read_by_hint(hint).await.map_err(StepError::Io)?;
            if let Some(code) = wire::set_error_info(&pdu, None).filter(|&c| c != 0) {
                debug!(code, "Set Error Info during the connection sequence");
                *error_info = Some(code);
            }
            sequence.step(&pdu, framed.last_read_at(), buf)
        }
        None => sequence.step_no_input(buf),
    }
    .map_err(StepError::Connector)?;
    if written.size().is_some() {
        framed
            .write_all(buf.filled())
            .await
            .map_err(StepError::Io)?;
    }
    Ok(())
}

/// NLA. Mirrors `ironrdp_async::perform_credssp`, plus: a TsRequest carrying an `errorCode`
/// (the server's NTSTATUS for a failed logon) and a server hanging up mid-exchange are both
/// reported as authentication failures, which is what they are.
async fn credssp(
    framed: &mut TokioFramed<Transport>,
    connector: &mut ClientConnector,
    server_name: ServerName,
    server_public_key: Vec<u8>,
) -> Result<(), ConnectError> {
    let ClientConnectorState::Credssp { selected_protocol } = connector.state else {
        return Err(ConnectError::Protocol(
            "connector is not in the CredSSP state".into(),
        ));
    };
    let (mut sequence, mut ts_request) = CredsspSequence::init(
        connector.config.credentials.clone(),
        connector.config.domain.as_deref(),
        selected_protocol,
        server_name,
        server_public_key,
        None,
    )
    .map_err(protocol)?;
    let auth_failed = |detail: String| ConnectError::AuthenticationFailed {
        detail: Some(detail),
    };
    let mut buf = WriteBuf::new();
    loop {
        let client_state = {
            let mut generator = sequence.process_ts_request(ts_request);
            match generator.start() {
                GeneratorState::Completed(result) => result.map_err(|e| {
                    use ironrdp_connector::sspi::ErrorKind;
                    match e.error_type {
                        ErrorKind::LogonDenied
                        | ErrorKind::UnknownCredentials
                        | ErrorKind::NoCredentials => auth_failed(format!("CredSSP: {e}")),
                        _ => ConnectError::Protocol(format!("CredSSP: {e}")),
                    }
                })?,
                GeneratorState::Suspended(_) => {
                    return Err(ConnectError::Protocol(
                        "CredSSP wants to reach a KDC (Kerberos); this client only does NTLM"
                            .into(),
                    ));
                }
            }
        };
        buf.clear();
        let written = sequence
            .handle_process_result(client_state, &mut buf)
            .map_err(protocol)?;
        if written.size().is_some() {
            framed
                .write_all(buf.filled())
                .await
                .map_err(ConnectError::Io)?;
        }
        let Some(hint) = sequence.next_pdu_hint() else {
            break;
        };
        let pdu = framed.read_by_hint(hint).await.map_err(|e| {
            if is_hangup(&e) {
                auth_failed("server closed the connection during NLA".into())
            } else {
                ConnectError::Io(e)
            }
        })?;
        match sequence.decode_server_message(&pdu) {
            Ok(Some(request)) => {
                if let Some(status) = request.error_code {
                    return Err(auth_failed(format!(
                        "NLA: server returned NTSTATUS 0x{:08X}",
                        status.0
                    )));
                }
                ts_request = request;
            }
            Ok(None) => break,
            Err(e) if matches!(e.kind(), ConnectorErrorKind::AccessDenied) => {
                return Err(auth_failed(
                    "NLA: early user authorization result: access denied".into(),
                ));
            }
            Err(e) => return Err(protocol(e)),
        }
    }
    connector.mark_credssp_as_done();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_pdu::rdp::capability_sets::{CODEC_ID_QOI, CODEC_ID_QOIZ, CodecId};

    #[test]
    fn only_remotefx_is_advertised_never_ironrdps_private_codecs() {
        // Built by hand rather than with `client_codecs_capabilities`, whose output depends on
        // which IronRDP features some other crate in the build switched on.
        let codecs = advertised_codecs().0;
        assert_eq!(codecs.len(), 1);
        assert_eq!(codecs[0].id, REMOTEFX_CODEC_ID);
        assert!(matches!(codecs[0].property, CodecProperty::RemoteFx(_)));
        assert!(
            CodecId::from_u8(REMOTEFX_CODEC_ID).is_some(),
            "the session decodes this id"
        );
        for private in [CODEC_ID_QOI, CODEC_ID_QOIZ] {
            assert!(
                codecs
                    .iter()
                    .all(|c| CodecId::from_u8(c.id) != Some(private))
            );
        }
    }

    #[test]
    fn assistance_mode_sends_ticket_and_password_like_freerdp() {
        let mut cfg = ClientConfig::attendee(
            "127.0.0.1:3389".parse().unwrap(),
            "Expert",
            "ticket-123",
            "inv-pw",
        );
        cfg.security = Security::Nla;
        cfg.password = "ignored".into();
        let c = connector_config(&cfg);
        assert_eq!(
            (c.work_dir.as_str(), c.alternate_shell.as_str()),
            ("ticket-123", "inv-pw")
        );
        match &c.credentials {
            Credentials::UsernamePassword { username, password } => {
                assert_eq!((username.as_str(), password.as_str()), ("Expert", "*"))
            }
            other => panic!("{other:?}"),
        }
        assert!(c.autologon, "a name and the \"*\" password");
        assert_eq!(
            (c.enable_tls, c.enable_credssp),
            (true, false),
            "no NLA for attendees"
        );

        cfg.username.clear();
        let c = connector_config(&cfg);
        assert!(!c.autologon, "no name, no autologon");

        let plain = connector_config(&ClientConfig::new(cfg.addr, "u", "p"));
        assert!(plain.work_dir.is_empty() && plain.alternate_shell.is_empty());
    }

    #[test]
    fn security_choice_maps_to_the_offered_protocols() {
        let offered = |security| {
            let c = connector_config(&ClientConfig {
                security,
                ..ClientConfig::default()
            });
            (c.enable_tls, c.enable_credssp)
        };
        assert_eq!(offered(Security::Tls), (true, false));
        assert_eq!(offered(Security::Nla), (false, true));
        assert_eq!(offered(Security::Negotiate), (true, true));
        let c = connector_config(&ClientConfig::default());
        assert_eq!(c.keyboard_layout, 0x409);
        assert!(
            !c.support_dyn_vc_gfx_protocol,
            "GFX is off unless asked for: the fast-path codecs stay testable"
        );
        for gfx in [Gfx::Avc420, Gfx::NoAvc] {
            let c = connector_config(&ClientConfig {
                gfx,
                ..ClientConfig::default()
            });
            assert!(c.support_dyn_vc_gfx_protocol, "{gfx:?}");
        }
        assert_eq!(c.bitmap.expect("bitmap config").color_depth, 32);
    }
}
