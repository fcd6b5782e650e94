//! The connection sequence, from the first byte to an active [`Terminal`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ironrdp_acceptor::{Acceptor, AcceptorResult, AcceptorState, BeginResult, DesktopSize, FinalizationState, accept_begin};
use ironrdp_async::FramedWrite as _;
use ironrdp_connector::{ConnectorError, Sequence as _, state_downcast};
use ironrdp_core::{WriteBuf, decode};
use ironrdp_displaycontrol::pdu::DisplayControlMonitorLayout;
use ironrdp_displaycontrol::server::{DisplayControlHandler, DisplayControlServer};
use ironrdp_dvc::DrdynvcServer;
use ironrdp_pdu::gcc::{ClientColorDepth, SupportedColorDepths};
use ironrdp_pdu::mcs::{ConnectInitial, SendDataRequest};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::pcb::PreconnectionBlob;
use ironrdp_pdu::x224::{X224, X224Data};
use ironrdp_pdu::rdp::capability_sets::{
    self, BitmapCodecs, CapabilitySet, CmdFlags, CodecProperty, EntropyBits, GeneralExtraFlags, RemoteFxContainer,
};
use ironrdp_tokio::LocalTokioFramed;
use rdhost_desktop::{KeyboardLayout, Size};
use rdhost_frames::{CodecProfile, PointerLimits};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::active::{Negotiated, Terminal};
use crate::client::{ClientDetails, announced_size};
use crate::encomsp::EncomspChannel;
use crate::pdus::{self, Channels};

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
    /// H.264 (AVC420) over the graphics pipeline when the client offers it (GFX with AVC420),
    /// else RemoteFX when the client decodes it, else lossless planar, else raw.
    #[default]
    Auto,
    /// Lossless planar even when RemoteFX or H.264 is offered (sharpest text).
    Lossless,
    /// As `Auto`, without the graphics pipeline: RemoteFX or planar over fast-path.
    NoH264,
}

impl CodecPreference {
    /// Whether a client that speaks the graphics pipeline is offered it.
    fn offers_gfx(self) -> bool {
        self == CodecPreference::Auto
    }
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
///
/// Both checks run right after the client's Client Info PDU, before licensing and the
/// capability exchange: `client` holds everything the client has said by then (its desktop
/// size is the one it asked for).
pub trait Authenticate: Sync {
    type Identity: 'static;
    /// Check `password` for `client.user` (TLS security: the password came in the Client Info).
    fn authenticate(&self, client: &ClientDetails, password: &str) -> impl Future<Output = Result<Self::Identity, AuthFailure>>;
    /// The NT hash NLA needs to check `user`, if the host keeps one.
    fn nt_hash(&self, user: &str) -> Option<[u8; 16]>;
    /// The identity of `client.user`, who already proved their password through NLA.
    fn identity_after_nla(&self, client: &ClientDetails) -> impl Future<Output = Result<Self::Identity, AuthFailure>>;
    /// Every account NLA can check, with its NT hash. Asked only when a client wraps NTLM in
    /// SPNEGO (mstsc does): the SPNEGO server takes its accounts before the client names one
    /// (see `nla.rs`). None (the default): such clients are refused; raw NTLM still works.
    fn nla_accounts(&self) -> Vec<(String, [u8; 16])> {
        Vec::new()
    }
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

/// Any byte stream a terminal runs over once TLS is on: a socket we accepted or dialled, TCP
/// or Unix. Boxed, so that a terminal has one type whatever carries it.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

pub(crate) type Framed = LocalTokioFramed<Box<dyn ByteStream>>;

/// Run the server side of the connection sequence on `stream` (setting socket options such as
/// TCP_NODELAY is the caller's business).
pub async fn accept<S, A>(stream: S, peer: SocketAddr, config: &AcceptConfig, auth: &A) -> Result<Accepted<A::Identity>, AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Authenticate,
{
    match tokio::time::timeout(config.handshake_timeout, accept_inner(stream, peer, config, auth)).await {
        Ok(result) => result,
        Err(_) => Err(AcceptError::Timeout(config.handshake_timeout)),
    }
}

async fn accept_inner<S, A>(mut stream: S, peer: SocketAddr, config: &AcceptConfig, auth: &A) -> Result<Accepted<A::Identity>, AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Authenticate,
{
    let (pcb, replay) = read_preconnection_pdu(&mut stream).await?;
    let mut client = ClientDetails::new(peer, pcb, config.default_size);

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
    // The dynamic channels (drdynvc) are attached once the client's core data says whether it
    // speaks the graphics pipeline (see `finish_sequence`).
    // Joined only by clients that list it (desktop-sharing attendees). Their `remdesk` channel
    // (Remote Assistance) gets an id but no processor: its client waits for a server greeting
    // that never comes, and what it sends is dropped as data on an unknown channel.
    acceptor.attach_static_channel(EncomspChannel::default());
    acceptor.attach_static_channel(crate::clipboard::server_channel());

    let framed = LocalTokioFramed::<S>::new_with_leftover(stream, replay);
    let begin = accept_begin(framed, &mut acceptor).await.map_err(handshake_err)?;
    let BeginResult::ShouldUpgrade(plain) = begin else {
        return Err(AcceptError::Unsupported("client refused TLS".into()));
    };
    let tls = config.tls.accept(plain).await.map_err(AcceptError::Tls)?;
    acceptor.mark_security_upgrade_as_done();
    let mut framed = Framed::new(Box::new(tls) as Box<dyn ByteStream>);

    let mut nla_user = None;
    if acceptor.should_perform_credssp() {
        match crate::nla::run(&mut framed, config.public_key.clone(), false, |user| auth.nt_hash(user), || auth.nla_accounts()).await? {
            crate::nla::NlaOutcome::Authenticated(user) => nla_user = Some(user),
            crate::nla::NlaOutcome::Refused { user, reason } => {
                return Err(AcceptError::AuthenticationFailed { user: user.unwrap_or_default(), reason, via_nla: true });
            }
        }
        acceptor.mark_credssp_as_done();
    }

    let security = if nla_user.is_some() { "nla" } else { "tls" };
    let dynamic = DynamicChannels { resize: resize_tx, codec: config.codec };
    let (result, identity, depth) = finish_sequence(&mut framed, &mut acceptor, &mut client, auth, nla_user, dynamic).await?;
    let negotiated = negotiate(&result.capabilities, config.codec, depth)?;
    let codec = negotiated.profile.name();
    let terminal = Terminal::new(framed, acceptor, result, negotiated, resize_rx, client);
    let client = terminal.client();
    info!(
        %peer,
        user = client.user,
        client_name = client.client_name,
        size = ?(client.size.width, client.size.height),
        security,
        bpp = negotiated.profile.bits_per_pixel(),
        codec,
        gfx = client.gfx,
        session = ?client.pcb_id,
        encomsp = terminal.encomsp_joined(),
        "client connected"
    );
    Ok(Accepted { identity, terminal })
}

/// Which of the PDUs crossing a step the client's details are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    /// The client's MCS Connect Initial: its core data (name, build, size, layout).
    ConnectInitial,
    /// The client's Client Info PDU: user, password, address, shell; credentials are checked
    /// right after it.
    ClientInfo,
    /// Our Demand Active: the size the client is told it has.
    DemandActive,
    Nothing,
}

/// Drive the acceptor from the secure channel to the end of the connection sequence, the way
/// ironrdp-async's `accept_finalize_with` does, reading the client's details from the PDUs that
/// pass through and checking its credentials once its Client Info is in. Returns the session's
/// colour depth besides (see [`session_depth`]).
async fn finish_sequence<A: Authenticate>(
    framed: &mut Framed,
    acceptor: &mut Acceptor,
    client: &mut ClientDetails,
    auth: &A,
    nla_user: Option<String>,
    dynamic: DynamicChannels,
) -> Result<(AcceptorResult, A::Identity, u16), AcceptError> {
    let mut buf = WriteBuf::new();
    let mut identity = None;
    let mut depth = None;
    let mut dynamic = Some(dynamic);
    loop {
        if let Some(result) = acceptor.get_result() {
            // Fails closed: should the Client Info moment ever be missed, nobody is let in.
            let identity = identity.ok_or(AcceptError::NoCredentials)?;
            return Ok((result, identity, depth.unwrap_or(32)));
        }
        let watched = match state_downcast::<AcceptorState>(acceptor.state()) {
            Some(AcceptorState::BasicSettingsWaitInitial { .. }) => Watched::ConnectInitial,
            Some(AcceptorState::SecureSettingsExchange { .. }) => Watched::ClientInfo,
            Some(AcceptorState::CapabilitiesSendServer { .. }) => Watched::DemandActive,
            _ => Watched::Nothing,
        };
        let step_depth = depth;
        // The client's core data is read before the acceptor takes it: the channels it joins
        // there must be attached by then.
        let mut before_step = |acceptor: &mut Acceptor, pdu: &[u8]| {
            if watched != Watched::ConnectInitial {
                return;
            }
            if let Err(e) = client.read_connect_initial(pdu) {
                debug!("client core data unreadable: {e}");
            }
            let session = session_depth(pdu);
            depth = Some(session);
            if let Some(dynamic) = dynamic.take() {
                acceptor.attach_static_channel(dynamic.server(client.gfx && session == 32));
            }
        };
        let received = sequence_step(framed, acceptor, &mut buf, step_depth, Some(&mut before_step)).await?;
        let mut password = None;
        match (watched, &received) {
            (Watched::ClientInfo, Some(pdu)) => match client.read_client_info(pdu) {
                Ok(sent) => password = Some(sent),
                Err(e) => debug!("client info unreadable: {e}"),
            },
            (Watched::DemandActive, None) => {
                if let Some(size) = announced_size(buf.filled()) {
                    client.size = size;
                }
            }
            _ => {}
        }
        if watched == Watched::ClientInfo {
            match check_credentials(client, auth, nla_user.as_deref(), password).await {
                Ok(checked) => identity = Some(checked),
                Err(refused) => {
                    buf.clear();
                    if let Ok(written @ 1..) = acceptor.encode_access_denied(&mut buf) {
                        let _ = framed.write_all(&buf.filled()[..written]).await;
                    }
                    return Err(refused);
                }
            }
        }
    }
}

/// The colour depth of the session the client asks for in its MCS Connect Initial (GCC Client
/// Core Data), as one this host encodes (see [`depth_for`]); 32 when unreadable.
fn session_depth(connect_initial: &[u8]) -> u16 {
    decode::<X224<X224Data<'_>>>(connect_initial)
        .ok()
        .and_then(|X224(data)| decode::<ConnectInitial>(data.data.as_ref()).ok())
        .map_or(32, |initial| {
            let core = &initial.conference_create_request.gcc_blocks().core;
            depth_for(core.client_color_depth(), core.optional_data.supported_color_depths)
        })
}

/// The session depth for a client that asks for `wanted` (highColorDepth, or 32 with
/// RNS_UD_CS_WANT_32BPP_SESSION) and supports `supported`: 32, 24 or 16, the depths this host
/// encodes. A client asking for 24 gets 32 when it supports 32 (rdesktop asks for its X
/// display's depth, 24; clients take the depth our Demand Active announces, MS-RDPBCGR
/// 2.2.7.1.2 preferredBitsPerPixel), else 24 (`xfreerdp /bpp:24`). 15 and 8 bits become 16.
fn depth_for(wanted: ClientColorDepth, supported: Option<SupportedColorDepths>) -> u16 {
    // Clients before RDP 5 send no list: then everything goes.
    let supports = |depth| supported.is_none_or(|s| s.contains(depth));
    match wanted {
        ClientColorDepth::Bpp32 => 32,
        ClientColorDepth::Bpp24 if supports(SupportedColorDepths::BPP32) => 32,
        ClientColorDepth::Bpp24 if supports(SupportedColorDepths::BPP24) => 24,
        _ if supports(SupportedColorDepths::BPP16) => 16,
        _ => 32,
    }
}

/// Where the acceptor stands before a step, for what `sequence_step` does beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepPoint {
    /// It sends the Demand Active.
    DemandActive,
    /// It sends another share-control PDU: the Monitor Layout, the Font Map.
    ShareControl,
    /// It waits for the client's Confirm Active.
    ConfirmActive,
    /// It sends the server's Synchronize, Cooperate or Granted Control (after the Font List).
    ServerFinalization,
    Other,
}

fn step_point(acceptor: &Acceptor) -> StepPoint {
    match state_downcast::<AcceptorState>(acceptor.state()) {
        Some(AcceptorState::CapabilitiesSendServer { .. }) => StepPoint::DemandActive,
        Some(AcceptorState::MonitorLayoutSend { .. }) => StepPoint::ShareControl,
        Some(AcceptorState::CapabilitiesWaitConfirm { .. }) => StepPoint::ConfirmActive,
        Some(AcceptorState::ConnectionFinalization { finalization, .. }) => match state_downcast::<FinalizationState>(finalization.state()) {
            Some(
                FinalizationState::SendSynchronizeConfirm
                | FinalizationState::SendControlCooperateConfirm
                | FinalizationState::SendGrantedControlConfirm,
            ) => StepPoint::ServerFinalization,
            Some(FinalizationState::SendFontMap) => StepPoint::ShareControl,
            _ => StepPoint::Other,
        },
        _ => StepPoint::Other,
    }
}

/// Called with a PDU the acceptor is about to take (see `finish_sequence`).
type BeforeStep<'a> = &'a mut dyn FnMut(&mut Acceptor, &[u8]);

/// One step of a connection sequence: read the PDU the acceptor waits for (if any), step, send
/// its answer. Returns the PDU read; what was sent stays in `buf`.
///
/// What we send differs from what IronRDP's acceptor (0.12) writes in three ways:
/// - Share id. The acceptor's share-control PDUs carry share id 0; rdesktop keeps waiting for a
///   Demand Active until it has a non-zero one. Ours carry [`pdus::SHARE_ID`], as every
///   share-control PDU after them does.
/// - `depth`: our Demand Active announces the session's colour depth; the acceptor's capability
///   sets were fixed before the client said what it wants.
/// - Connection finalization. The acceptor sends the server's Synchronize, Control (Cooperate)
///   and Control (Granted Control) only after the client's Font List. MS-RDPBCGR 2.2.1.19 sends
///   the Synchronize "after receiving the Confirm Active PDU", and clients that wait for those
///   three before sending their Font List (rdesktop) deadlock against the acceptor's order. So
///   we send them ourselves as soon as the acceptor has taken the Confirm Active, and when the
///   acceptor reaches its own copies (after the Font List) we step through them without writing
///   them: its state machine runs unchanged. Its Font Map goes out as it is, after the Font List.
///   Clients that send everything first (FreeRDP, mstsc, IronRDP) find the same PDUs in the
///   same order, only earlier.
async fn sequence_step(
    framed: &mut Framed,
    acceptor: &mut Acceptor,
    buf: &mut WriteBuf,
    depth: Option<u16>,
    before_step: Option<BeforeStep<'_>>,
) -> Result<Option<Bytes>, AcceptError> {
    buf.clear();
    let point = step_point(acceptor);
    let (received, written) = match acceptor.next_pdu_hint() {
        Some(hint) => {
            let pdu = framed.read_by_hint(hint).await?;
            if let Some(before_step) = before_step {
                before_step(acceptor, &pdu);
            }
            let written = acceptor.step(&pdu, framed.last_read_at(), buf).map_err(handshake_err)?;
            (Some(pdu), written)
        }
        None => (None, acceptor.step_no_input(buf).map_err(handshake_err)?),
    };
    let mut len = written.size();
    match (point, len) {
        (StepPoint::DemandActive | StepPoint::ShareControl, Some(n)) => {
            let rewritten = pdus::our_share_pdu(&buf.filled()[..n], if point == StepPoint::DemandActive { depth } else { None })
                .ok_or_else(|| AcceptError::Handshake(format!("the acceptor wrote no share-control PDU at {point:?}")))?;
            buf.clear();
            buf.write_slice(&rewritten);
            len = Some(rewritten.len());
        }
        // Sent already, right after the Confirm Active.
        (StepPoint::ServerFinalization, _) => len = None,
        _ => {}
    }
    if let Some(len) = len {
        framed.write_all(&buf.filled()[..len]).await?;
    }
    let finalizing = matches!(state_downcast::<AcceptorState>(acceptor.state()), Some(AcceptorState::ConnectionFinalization { .. }));
    if point == StepPoint::ConfirmActive && finalizing {
        // The Confirm Active came on the I/O channel from the client's user channel.
        let channels = received
            .as_deref()
            .and_then(|pdu| decode::<X224<SendDataRequest<'_>>>(pdu).ok())
            .map(|X224(request)| Channels { io: request.channel_id, user: request.initiator_id })
            .ok_or_else(|| AcceptError::Handshake("Confirm Active is no MCS Send Data Request".into()))?;
        framed.write_all(&pdus::finalization_start(channels)).await?;
    }
    Ok(received)
}

/// The rest of a deactivation-reactivation, from the client's Confirm Active on, for a session of
/// `bits_per_pixel` (the terminal's
/// `CodecProfile::bits_per_pixel()`): the new Demand Active must announce the depth the
/// session's bitmaps have, as the first one did.
pub(crate) async fn finish_reactivation_at(
    framed: &mut Framed,
    acceptor: &mut Acceptor,
    bits_per_pixel: Option<u16>,
) -> Result<AcceptorResult, AcceptError> {
    let mut buf = WriteBuf::new();
    loop {
        if let Some(result) = acceptor.get_result() {
            return Ok(result);
        }
        sequence_step(framed, acceptor, &mut buf, bits_per_pixel, None).await?;
    }
}

async fn check_credentials<A: Authenticate>(
    client: &mut ClientDetails,
    auth: &A,
    nla_user: Option<&str>,
    password: Option<String>,
) -> Result<A::Identity, AcceptError> {
    let refused = |client: &ClientDetails, reason: String, via_nla: bool| AcceptError::AuthenticationFailed {
        user: client.user.clone(),
        reason,
        via_nla,
    };
    if let Some(user) = nla_user {
        // NLA proved this account; the Client Info may name another (or none).
        client.user = user.to_owned();
        client.domain = None;
        return auth.identity_after_nla(client).await.map_err(|e| refused(client, e.0, true));
    }
    let Some(password) = password else { return Err(AcceptError::NoCredentials) };
    // A desktop-sharing attendee may name nobody (xfreerdp in assistance mode without /u:):
    // its ticket (WorkingDir) and password (AlternateShell) are what the authenticator checks.
    if client.user.is_empty() && client.working_dir.is_empty() {
        return Err(refused(client, "empty user name".into(), false));
    }
    auth.authenticate(client, &password).await.map_err(|e| refused(client, e.0, false))
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
/// X.224 request. Anything else starts with a TPKT header (version 3); a pre-connection PDU
/// cannot, its first byte being the low byte of an even size. Returns the PDU, if any, and the
/// bytes read past it, which the connection sequence reads again.
async fn read_preconnection_pdu<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Option<PreconnectionBlob>, BytesMut), AcceptError> {
    let mut size = [0u8; 4];
    if stream.read(&mut size[..1]).await? == 0 {
        return Err(AcceptError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before sending anything")));
    }
    if size[0] == 0x03 {
        return Ok((None, BytesMut::from(&size[..1])));
    }
    stream.read_exact(&mut size[1..]).await?;
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
    Ok((Some(pcb), BytesMut::new()))
}

/// The dynamic channels a connection offers, settled once its core data is in.
struct DynamicChannels {
    resize: watch::Sender<Option<Size>>,
    codec: CodecPreference,
}

impl DynamicChannels {
    /// Display control always; the graphics pipeline to a client whose core data says it speaks
    /// it (in a 32-bit session, the only depth its surfaces have) when the host's codec
    /// preference allows it. Whether it then carries H.264 is settled on the channel itself
    /// (the client's capabilities, see `gfx.rs`).
    fn server(self, client_gfx: bool) -> DrdynvcServer {
        let server = DrdynvcServer::new().with_dynamic_channel(DisplayControlServer::new(Box::new(ResizeRequests(self.resize))));
        if client_gfx && self.codec.offers_gfx() {
            server.with_dynamic_channel(crate::gfx::GfxChannel::new())
        } else {
            server
        }
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

/// Choose how to talk to this client from what it confirmed, for a session of `depth` bits per
/// pixel (see [`session_depth`]).
fn negotiate(caps: &[CapabilitySet], preference: CodecPreference, depth: u16) -> Result<Negotiated, AcceptError> {
    let mut fastpath = false;
    let mut surface_commands = false;
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
            CapabilitySet::SurfaceCommands(s) => {
                surface_commands = true;
                surface_bits = s.flags.contains(CmdFlags::SET_SURFACE_BITS);
            }
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
        // Clients draw every bitmap at the session's depth; RemoteFX and planar are 32-bit.
        _ if depth == 16 => CodecProfile::Interleaved16,
        _ if depth == 24 => CodecProfile::Interleaved24,
        (CodecPreference::Auto | CodecPreference::NoH264, Some(rfx), true) => rfx,
        // A client without the Surface Commands capability predates RDP 7: rdesktop and the
        // decoders derived from it, which take planar bitmaps only with an alpha plane.
        _ if !surface_commands => CodecProfile::PlanarWithAlpha,
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

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::pcb::PcbVersion;

    async fn preconnection(bytes: &[u8]) -> Result<(Option<PreconnectionBlob>, BytesMut), AcceptError> {
        let mut stream = bytes;
        read_preconnection_pdu(&mut stream).await
    }

    #[tokio::test]
    async fn a_tpkt_header_is_no_preconnection_pdu_and_is_read_again() {
        let (pcb, replay) = preconnection(&[0x03, 0x00, 0x00, 0x13]).await.unwrap();
        assert!(pcb.is_none());
        assert_eq!(&replay[..], &[0x03]);
    }

    #[tokio::test]
    async fn preconnection_pdus_v1_and_v2() {
        let v1 = encode_vec(&PreconnectionBlob { version: PcbVersion::V1, id: 7, v2_payload: None }).unwrap();
        let (pcb, replay) = preconnection(&v1).await.unwrap();
        assert_eq!(pcb.map(|p| p.id), Some(7));
        assert!(replay.is_empty());

        let v2 = encode_vec(&PreconnectionBlob { version: PcbVersion::V2, id: 0, v2_payload: Some("vm-7".into()) }).unwrap();
        let mut stream = [v2.as_slice(), &[0x03, 0x00]].concat();
        let (pcb, replay) = preconnection(&stream).await.unwrap();
        assert_eq!(pcb.and_then(|p| p.v2_payload).as_deref(), Some("vm-7"));
        // Nothing past the PDU is consumed: the X.224 request that follows stays in the stream.
        assert!(replay.is_empty());
        stream.truncate(v2.len() - 1);
        assert!(preconnection(&stream).await.is_err(), "a truncated PDU is an error");
    }

    /// Lets anyone in whose password is "pw", and keeps who asked.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(String, String, String)>>);

    impl Authenticate for Recorder {
        type Identity = ();
        async fn authenticate(&self, client: &ClientDetails, password: &str) -> Result<(), AuthFailure> {
            self.0.lock().unwrap().push((client.user.clone(), client.working_dir.clone(), password.to_owned()));
            if password == "pw" || client.alternate_shell == "pw" { Ok(()) } else { Err(AuthFailure("wrong password".into())) }
        }
        fn nt_hash(&self, _user: &str) -> Option<[u8; 16]> {
            None
        }
        async fn identity_after_nla(&self, _client: &ClientDetails) -> Result<(), AuthFailure> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_empty_user_reaches_the_authenticator_only_with_a_ticket() {
        let auth = Recorder::default();
        let mut client = ClientDetails::new("192.0.2.1:4000".parse().unwrap(), None, Size::new(800, 600));
        let refused = check_credentials(&mut client, &auth, None, Some("pw".into())).await;
        assert!(matches!(refused, Err(AcceptError::AuthenticationFailed { ref reason, .. }) if reason == "empty user name"));
        assert!(auth.0.lock().unwrap().is_empty(), "refused before the authenticator");

        // xfreerdp /assistance without /u: Password "*", the ticket and the invitation's
        // password in WorkingDir and AlternateShell, untouched.
        client.working_dir = "ticket-1".into();
        client.alternate_shell = "pw".into();
        check_credentials(&mut client, &auth, None, Some("*".into())).await.unwrap();
        assert_eq!(*auth.0.lock().unwrap(), vec![(String::new(), "ticket-1".to_owned(), "*".to_owned())]);
        assert!(check_credentials(&mut client, &auth, None, None).await.is_err(), "no Client Info, no entry");
    }

    #[tokio::test]
    async fn a_silly_preconnection_size_is_refused() {
        assert!(matches!(preconnection(&[0x02, 0x00, 0x00, 0x00]).await, Err(AcceptError::BadPreconnectionPdu(_))));
        assert!(matches!(preconnection(&[]).await, Err(AcceptError::Io(_))));
    }

    #[test]
    fn the_session_depth_follows_what_the_client_asks_for_and_supports() {
        use ClientColorDepth::*;
        let all = SupportedColorDepths::all();
        // FreeRDP's default (highColorDepth 24, WANT_32BPP) reads as 32.
        assert_eq!(depth_for(Bpp32, Some(all)), 32);
        // rdesktop on a 24-bit X display: asks for 24, supports 32.
        assert_eq!(depth_for(Bpp24, Some(all)), 32);
        // xfreerdp /bpp:24 lists no 32.
        let no_32 = SupportedColorDepths::BPP24 | SupportedColorDepths::BPP16 | SupportedColorDepths::BPP15;
        assert_eq!(depth_for(Bpp24, Some(no_32)), 24);
        // xfreerdp /bpp:16, rdesktop -a 16 (which lists 32 too: what it asks for decides).
        assert_eq!(depth_for(Rgb565Bpp16, Some(no_32)), 16);
        assert_eq!(depth_for(Rgb565Bpp16, Some(all)), 16);
        assert_eq!(depth_for(Rgb555Bpp16, Some(all)), 16);
        assert_eq!(depth_for(Bpp8, Some(all)), 16);
        // Clients that list nothing get what they ask for where we have it.
        assert_eq!(depth_for(Bpp24, None), 32);
        assert_eq!(depth_for(Rgb565Bpp16, None), 16);
        // Nothing we have fits: 32, which every client decodes in practice.
        assert_eq!(depth_for(Bpp8, Some(SupportedColorDepths::BPP24)), 32);
        assert_eq!(session_depth(&[0x03, 0x00, 0x00, 0x07, 0x02, 0xF0, 0x80]), 32, "unreadable: 32");
    }

    fn confirmed(surface_commands: bool, remotefx: bool) -> Vec<CapabilitySet> {
        let mut caps = vec![CapabilitySet::General(capability_sets::General {
            extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED,
            ..Default::default()
        })];
        if surface_commands {
            caps.push(CapabilitySet::SurfaceCommands(capability_sets::SurfaceCommands { flags: CmdFlags::SET_SURFACE_BITS }));
        }
        if remotefx {
            use ironrdp_pdu::rdp::capability_sets::{Codec, RfxCaps, RfxCapset, RfxClientCapsContainer, RfxICap, RfxICapFlags, CaptureFlags};
            let container = RfxClientCapsContainer {
                capture_flags: CaptureFlags::empty(),
                caps_data: RfxCaps(RfxCapset(vec![RfxICap { flags: RfxICapFlags::empty(), entropy_bits: EntropyBits::Rlgr3 }])),
            };
            caps.push(CapabilitySet::BitmapCodecs(BitmapCodecs(vec![Codec {
                id: 3,
                property: CodecProperty::RemoteFx(RemoteFxContainer::ClientContainer(container)),
            }])));
        }
        caps
    }

    #[test]
    fn the_graphics_pipeline_is_offered_to_gfx_clients_when_the_host_prefers_h264() {
        use crate::gfx::GfxChannel;
        let offered = |codec, client_gfx| {
            let (resize, _) = watch::channel(None);
            let server = DynamicChannels { resize, codec }.server(client_gfx);
            assert!(server.get_channel_id_by_type::<DisplayControlServer>().is_some(), "display control always");
            server.get_channel_id_by_type::<GfxChannel>().is_some()
        };
        assert!(offered(CodecPreference::Auto, true));
        assert!(!offered(CodecPreference::Auto, false), "not to a client whose core data does not say GFX");
        assert!(!offered(CodecPreference::Lossless, true));
        assert!(!offered(CodecPreference::NoH264, true));
    }

    #[test]
    fn the_codec_follows_the_depth_and_what_the_client_decodes() {
        let profile = |caps: &[CapabilitySet], depth| negotiate(caps, CodecPreference::Auto, depth).unwrap().profile;
        // FreeRDP: RemoteFX at 32 bpp; its bitmaps at the depth of a 16 or 24-bit session.
        assert_eq!(profile(&confirmed(true, true), 32), CodecProfile::RemoteFx { codec_id: 3, rlgr3: true });
        assert_eq!(profile(&confirmed(true, true), 16), CodecProfile::Interleaved16);
        assert_eq!(profile(&confirmed(true, true), 24), CodecProfile::Interleaved24);
        assert_eq!(profile(&confirmed(true, false), 32), CodecProfile::Planar);
        assert_eq!(negotiate(&confirmed(true, true), CodecPreference::Lossless, 32).unwrap().profile, CodecProfile::Planar);
        // Without H.264 the fast-path choice is Auto's.
        assert_eq!(negotiate(&confirmed(true, true), CodecPreference::NoH264, 32).unwrap().profile, CodecProfile::RemoteFx { codec_id: 3, rlgr3: true });
        // rdesktop: no Surface Commands capability, planar with the alpha plane it needs.
        assert_eq!(profile(&confirmed(false, false), 32), CodecProfile::PlanarWithAlpha);
        assert_eq!(profile(&confirmed(false, false), 16), CodecProfile::Interleaved16);
        // Every profile's depth is the one announced.
        for depth in [16, 24, 32] {
            assert_eq!(profile(&confirmed(false, false), depth).bits_per_pixel(), depth);
        }
    }
}
