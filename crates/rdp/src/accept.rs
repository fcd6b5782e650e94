//! The connection sequence, from the first byte to an active [`Terminal`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ironrdp_acceptor::{
    Acceptor, BeginResult, ConnectionSetupHandler, DesktopSize, ReceivedCredentials, accept_begin, accept_finalize_with,
};
use ironrdp_connector::{ConnectorError, ConnectorErrorExt as _, ConnectorResult};
use ironrdp_core::decode;
use ironrdp_displaycontrol::pdu::DisplayControlMonitorLayout;
use ironrdp_displaycontrol::server::{DisplayControlHandler, DisplayControlServer};
use ironrdp_dvc::DrdynvcServer;
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::pcb::PreconnectionBlob;
use ironrdp_pdu::rdp::capability_sets::{
    self, BitmapCodecs, CapabilitySet, CmdFlags, CodecProperty, EntropyBits, GeneralExtraFlags, RemoteFxContainer,
};
use ironrdp_tokio::TokioFramed;
use rdhost_desktop::{KeyboardLayout, Size};
use rdhost_frames::{CodecProfile, PointerLimits};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::active::{Negotiated, Terminal};

/// Which RDP security protocol the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS; the client sends its credentials inside TLS in the Client Info PDU.
    Tls,
    /// NLA (CredSSP with NTLM) when the client asks for it, TLS otherwise.
    Negotiate,
    /// NLA only: the client must prove its password before anything else happens.
    Nla,
}

/// Which codec the host prefers when the client offers several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodecPreference {
    /// RemoteFX when the client decodes it, else lossless planar, else raw.
    #[default]
    Auto,
    /// Lossless planar even when RemoteFX is offered (sharpest text).
    Lossless,
}

#[derive(Clone)]
pub struct AcceptConfig {
    pub tls: tokio_rustls::TlsAcceptor,
    pub security: Security,
    /// The whole handshake must finish within this, or the connection is dropped.
    pub handshake_timeout: Duration,
    /// The size used when the client asks for none it may have.
    pub default_size: Size,
    pub codec: CodecPreference,
    /// Our certificate's subject public key: CredSSP binds to it.
    pub public_key: Vec<u8>,
}

/// Why credentials were refused. The text is for the log, never for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AuthFailure(pub String);

/// The caller's credential check. It may take its time (PAM, throttling delays).
pub trait Authenticate: Sync {
    type Identity: 'static;
    fn authenticate(
        &self,
        user: &str,
        domain: Option<&str>,
        password: &str,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Identity, AuthFailure>>;
    /// The NT hash NLA needs to check `user`, if the host keeps one.
    fn nt_hash(&self, user: &str) -> Option<[u8; 16]>;
    /// The identity of a user who already proved their password through NLA.
    fn identity_after_nla(&self, user: &str, peer: SocketAddr) -> impl Future<Output = Result<Self::Identity, AuthFailure>>;
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("handshake not finished within {0:?}")]
    Timeout(Duration),
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("malformed pre-connection PDU: {0}")]
    BadPreconnectionPdu(String),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("RDP handshake failed: {0}")]
    Handshake(String),
    #[error("authentication failed for user {user:?}{}: {reason}", if *.via_nla { " (NLA)" } else { "" })]
    AuthenticationFailed { user: String, reason: String, via_nla: bool },
    #[error("client sent no credentials (this host has no logon screen)")]
    NoCredentials,
    #[error("client unsupported: {0}")]
    Unsupported(String),
}

/// A client that completed the connection sequence.
pub struct Accepted<I> {
    pub identity: I,
    pub terminal: Terminal,
}

/// Run the server side of the connection sequence on `stream`.
pub async fn accept<A: Authenticate>(
    stream: TcpStream,
    peer: SocketAddr,
    config: &AcceptConfig,
    auth: &A,
) -> Result<Accepted<A::Identity>, AcceptError> {
    match tokio::time::timeout(config.handshake_timeout, accept_inner(stream, peer, config, auth)).await {
        Ok(result) => result,
        Err(_) => Err(AcceptError::Timeout(config.handshake_timeout)),
    }
}

async fn accept_inner<A: Authenticate>(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &AcceptConfig,
    auth: &A,
) -> Result<Accepted<A::Identity>, AcceptError> {
    stream.set_nodelay(true)?;
    let requested_session = read_preconnection_pdu(&mut stream).await?;

    // HYBRID_EX is not offered: plain HYBRID needs no early-authorization PDU and every client
    // that speaks NLA accepts it.
    let security = match config.security {
        Security::Tls => SecurityProtocol::SSL,
        Security::Negotiate => SecurityProtocol::SSL | SecurityProtocol::HYBRID,
        Security::Nla => SecurityProtocol::HYBRID,
    };
    let size = config.default_size;
    let (resize_tx, resize_rx) = watch::channel(None);
    let mut acceptor = Acceptor::new(
        security,
        DesktopSize { width: size.width, height: size.height },
        server_capabilities(size),
        None,
    );
    acceptor.set_honor_client_desktop_size(Some(DesktopSize { width: 8192, height: 8192 }));
    acceptor.attach_static_channel(
        DrdynvcServer::new().with_dynamic_channel(DisplayControlServer::new(Box::new(ResizeRequests(resize_tx)))),
    );

    let framed = TokioFramed::new(stream);
    let begin = accept_begin(framed, &mut acceptor).await.map_err(handshake_err)?;
    let BeginResult::ShouldUpgrade(tcp) = begin else {
        return Err(AcceptError::Unsupported("client refused TLS".into()));
    };
    let tls = config.tls.accept(tcp).await.map_err(AcceptError::Tls)?;
    acceptor.mark_security_upgrade_as_done();
    let mut framed = TokioFramed::new(tls);

    let mut nla_user = None;
    if acceptor.should_perform_credssp() {
        match crate::nla::run(&mut framed, config.public_key.clone(), false, |user| auth.nt_hash(user)).await? {
            crate::nla::NlaOutcome::Authenticated(user) => nla_user = Some(user),
            crate::nla::NlaOutcome::Refused { user, reason } => {
                return Err(AcceptError::AuthenticationFailed { user: user.unwrap_or_default(), reason, via_nla: true });
            }
        }
        acceptor.mark_credssp_as_done();
    }

    let mut gate = Gate { auth, peer, identity: None, refused: None, desktop_size: None };
    let result = accept_finalize_with(framed, &mut acceptor, &mut gate).await;
    let (framed, result) = match result {
        Ok(done) => done,
        Err(e) => {
            if let Some((user, reason)) = gate.refused.take() {
                return Err(AcceptError::AuthenticationFailed { user, reason, via_nla: false });
            }
            return Err(handshake_err(e));
        }
    };
    let (user, domain, identity) = match (gate.identity.take(), nla_user) {
        (Some(checked), _) => checked,
        (None, Some(user)) => {
            let identity = auth
                .identity_after_nla(&user, peer)
                .await
                .map_err(|e| AcceptError::AuthenticationFailed { user: user.clone(), reason: e.0, via_nla: true })?;
            (user, None, identity)
        }
        (None, None) => return Err(AcceptError::NoCredentials),
    };

    let negotiated = negotiate(&result.capabilities, config.codec)?;
    let size = gate
        .desktop_size
        .map(|s| Size::new(s.width, s.height))
        .unwrap_or(config.default_size);
    info!(%peer, user, size = ?(size.width, size.height), codec = negotiated.profile.name(), session = ?requested_session, "client connected");
    let terminal = Terminal::new(
        framed,
        acceptor,
        result,
        negotiated,
        size,
        resize_rx,
        crate::active::ClientDetails {
            peer,
            user,
            domain,
            requested_session,
            keyboard_layout: KeyboardLayout::default(),
        },
    );
    Ok(Accepted { identity, terminal })
}

/// The whole cause chain: IronRDP's top-level message says where, its sources say what.
fn handshake_err(e: ConnectorError) -> AcceptError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    AcceptError::Handshake(text)
}

/// MS-RDPEPS: a client asking for a particular session sends a pre-connection PDU before the
/// X.224 request. Anything else starts with a TPKT header (version 3).
async fn read_preconnection_pdu(stream: &mut TcpStream) -> Result<Option<u32>, AcceptError> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(AcceptError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before sending anything")));
    }
    if first[0] == 0x03 {
        return Ok(None);
    }
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await?;
    let size = u32::from_le_bytes(size) as usize;
    // v1 is 16 bytes; v2 adds a string of at most 64 Ki UTF-16 units.
    if !(PreconnectionBlob::FIXED_PART_SIZE..=PreconnectionBlob::FIXED_PART_SIZE + 2 + 2 * 65536).contains(&size) {
        return Err(AcceptError::BadPreconnectionPdu(format!("size field {size} out of range")));
    }
    let mut buf = vec![0u8; size];
    buf[..4].copy_from_slice(&(size as u32).to_le_bytes());
    stream.read_exact(&mut buf[4..]).await?;
    let pcb: PreconnectionBlob = decode(&buf).map_err(|e| AcceptError::BadPreconnectionPdu(e.to_string()))?;
    debug!(?pcb, "pre-connection PDU");
    Ok(Some(pcb.id))
}

/// Checks credentials at the point the acceptor offers them, and records the client's size.
struct Gate<'a, A: Authenticate> {
    auth: &'a A,
    peer: SocketAddr,
    identity: Option<(String, Option<String>, A::Identity)>,
    refused: Option<(String, String)>,
    desktop_size: Option<DesktopSize>,
}

#[async_trait::async_trait(?Send)]
impl<A: Authenticate> ConnectionSetupHandler for Gate<'_, A> {
    async fn handle_credentials(&mut self, credentials: Option<ReceivedCredentials>) -> ConnectorResult<()> {
        let Some(received) = credentials else {
            return Err(ConnectorError::general("no credentials"));
        };
        let creds = received.credentials;
        if creds.username.is_empty() {
            self.refused = Some((String::new(), "empty user name".into()));
            return Err(ConnectorError::general("empty user name"));
        }
        match self.auth.authenticate(&creds.username, creds.domain.as_deref(), &creds.password, self.peer).await {
            Ok(identity) => {
                self.identity = Some((creds.username, creds.domain, identity));
                Ok(())
            }
            Err(failure) => {
                self.refused = Some((creds.username, failure.0));
                Err(ConnectorError::general("authentication failed"))
            }
        }
    }

    async fn prepare_capability_exchange(&mut self, desktop_size: DesktopSize) -> ConnectorResult<()> {
        self.desktop_size = Some(desktop_size);
        Ok(())
    }
}

/// Display-control requests leave the channel processor through a watch: only the newest
/// layout matters.
struct ResizeRequests(watch::Sender<Option<Size>>);

impl DisplayControlHandler for ResizeRequests {
    fn monitor_layout(&self, layout: DisplayControlMonitorLayout) {
        let Some(primary) = layout.monitors().iter().find(|m| m.is_primary()).or(layout.monitors().first()) else {
            return;
        };
        let (w, h) = primary.dimensions();
        // Even widths keep every codec happy; RDP caps a side at 8192.
        let size = Size::new(((w as u16).clamp(200, 8192)) & !1, (h as u16).clamp(200, 8192));
        self.0.send_replace(Some(size));
    }
}

/// Pointer cache entries we use at most, whatever the client offers: each holds a shape on our side.
const POINTER_CACHE_SIZE: u16 = 32;

fn server_capabilities(size: Size) -> Vec<CapabilitySet> {
    vec![
        CapabilitySet::General(capability_sets::General {
            extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED,
            refresh_rect_support: true,
            suppress_output_support: true,
            ..Default::default()
        }),
        CapabilitySet::Bitmap(capability_sets::Bitmap {
            pref_bits_per_pix: 32,
            desktop_width: size.width,
            desktop_height: size.height,
            desktop_resize_flag: true,
            drawing_flags: capability_sets::BitmapDrawingFlags::empty(),
        }),
        CapabilitySet::Order(capability_sets::Order::new(
            capability_sets::OrderFlags::empty(),
            capability_sets::OrderSupportExFlags::empty(),
            2048,
            224,
        )),
        CapabilitySet::SurfaceCommands(capability_sets::SurfaceCommands { flags: CmdFlags::SET_SURFACE_BITS | CmdFlags::FRAME_MARKER }),
        CapabilitySet::Pointer(capability_sets::Pointer {
            color_pointer_cache_size: POINTER_CACHE_SIZE,
            pointer_cache_size: POINTER_CACHE_SIZE,
        }),
        // Both sides must set a flag before shapes past 32x32 (96x96 flag) or 96x96 (Large
        // Pointer updates) may be sent; the client's confirmed flags decide.
        CapabilitySet::LargePointer(capability_sets::LargePointer {
            flags: capability_sets::LargePointerSupportFlags::UP_TO_96X96_PIXELS
                | capability_sets::LargePointerSupportFlags::UP_TO_384X384_PIXELS,
        }),
        CapabilitySet::Input(capability_sets::Input {
            input_flags: capability_sets::InputFlags::SCANCODES
                | capability_sets::InputFlags::MOUSEX
                | capability_sets::InputFlags::FASTPATH_INPUT
                | capability_sets::InputFlags::UNICODE
                | capability_sets::InputFlags::FASTPATH_INPUT_2
                | capability_sets::InputFlags::TS_MOUSE_HWHEEL,
            keyboard_layout: 0,
            keyboard_type: None,
            keyboard_subtype: 0,
            keyboard_function_key: 12,
            keyboard_ime_filename: String::new(),
        }),
        CapabilitySet::VirtualChannel(capability_sets::VirtualChannel {
            flags: capability_sets::VirtualChannelFlags::NO_COMPRESSION,
            chunk_size: None,
        }),
        CapabilitySet::MultiFragmentUpdate(capability_sets::MultifragmentUpdate { max_request_size: 8 * 1024 * 1024 }),
        CapabilitySet::BitmapCodecs(
            capability_sets::server_codecs_capabilities(&[]).unwrap_or_else(|_| BitmapCodecs(Vec::new())),
        ),
    ]
}

/// Choose how to talk to this client from what it confirmed.
fn negotiate(caps: &[CapabilitySet], preference: CodecPreference) -> Result<Negotiated, AcceptError> {
    let mut fastpath = false;
    let mut surface_bits = false;
    let mut remotefx = None;
    let mut max_request_size = 0x3F_0000u32;
    let mut resizable = false;
    let mut layout = None;
    let mut pointer_cache = 0;
    let mut large_pointer = capability_sets::LargePointerSupportFlags::empty();
    for cap in caps {
        match cap {
            CapabilitySet::General(g) => fastpath = g.extra_flags.contains(GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED),
            CapabilitySet::Bitmap(b) => resizable = b.desktop_resize_flag,
            CapabilitySet::SurfaceCommands(s) => surface_bits = s.flags.contains(CmdFlags::SET_SURFACE_BITS),
            CapabilitySet::MultiFragmentUpdate(m) => max_request_size = m.max_request_size,
            CapabilitySet::Input(i) if i.keyboard_layout != 0 => layout = Some(i.keyboard_layout),
            // pointerCacheSize is the cache New Pointer updates fill (colorPointerCacheSize is
            // for 24 bpp Color Pointer updates, which we do not send).
            CapabilitySet::Pointer(p) => pointer_cache = p.pointer_cache_size.min(POINTER_CACHE_SIZE),
            CapabilitySet::LargePointer(l) => large_pointer = l.flags,
            CapabilitySet::BitmapCodecs(BitmapCodecs(codecs)) => {
                for codec in codecs {
                    if let CodecProperty::RemoteFx(RemoteFxContainer::ClientContainer(c))
                    | CodecProperty::ImageRemoteFx(RemoteFxContainer::ClientContainer(c)) = &codec.property
                    {
                        let rlgr3 = c.caps_data.0.0.iter().any(|cap| cap.entropy_bits == EntropyBits::Rlgr3);
                        remotefx = Some(CodecProfile::RemoteFx { codec_id: codec.id, rlgr3 });
                    }
                }
            }
            _ => {}
        }
    }
    if !fastpath {
        return Err(AcceptError::Unsupported("client does not accept fast-path output".into()));
    }
    let profile = match (preference, remotefx, surface_bits) {
        (CodecPreference::Auto, Some(rfx), true) => rfx,
        _ => CodecProfile::Planar,
    };
    if layout.is_none() {
        warn!("client did not say its keyboard layout; assuming US");
    }
    let pointer = PointerLimits::new(
        pointer_cache,
        large_pointer.contains(capability_sets::LargePointerSupportFlags::UP_TO_96X96_PIXELS),
        large_pointer.contains(capability_sets::LargePointerSupportFlags::UP_TO_384X384_PIXELS),
        max_request_size,
    );
    debug!(?pointer, "pointer shapes");
    Ok(Negotiated { profile, max_request_size, resizable, keyboard_layout: layout.map(KeyboardLayout), pointer })
}
