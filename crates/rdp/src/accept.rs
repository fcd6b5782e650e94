//! The connection sequence, from the first byte to an active [`Terminal`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ironrdp_acceptor::{Acceptor, AcceptorResult, AcceptorState, BeginResult, DesktopSize, accept_begin};
use ironrdp_async::FramedWrite as _;
use ironrdp_connector::{ConnectorError, Sequence as _, state_downcast};
use ironrdp_core::{WriteBuf, decode};
use ironrdp_displaycontrol::pdu::DisplayControlMonitorLayout;
use ironrdp_displaycontrol::server::{DisplayControlHandler, DisplayControlServer};
use ironrdp_dvc::DrdynvcServer;
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::pcb::PreconnectionBlob;
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
    acceptor.attach_static_channel(
        DrdynvcServer::new().with_dynamic_channel(DisplayControlServer::new(Box::new(ResizeRequests(resize_tx)))),
    );
    // Joined only by clients that list it (desktop-sharing attendees). Their `remdesk` channel
    // (Remote Assistance) gets an id but no processor: its client waits for a server greeting
    // that never comes, and what it sends is dropped as data on an unknown channel.
    acceptor.attach_static_channel(EncomspChannel::default());

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
        match crate::nla::run(&mut framed, config.public_key.clone(), false, |user| auth.nt_hash(user)).await? {
            crate::nla::NlaOutcome::Authenticated(user) => nla_user = Some(user),
            crate::nla::NlaOutcome::Refused { user, reason } => {
                return Err(AcceptError::AuthenticationFailed { user: user.unwrap_or_default(), reason, via_nla: true });
            }
        }
        acceptor.mark_credssp_as_done();
    }

    let (result, identity) = finish_sequence(&mut framed, &mut acceptor, &mut client, auth, nla_user).await?;
    let negotiated = negotiate(&result.capabilities, config.codec)?;
    let codec = negotiated.profile.name();
    let terminal = Terminal::new(framed, acceptor, result, negotiated, resize_rx, client);
    let client = terminal.client();
    info!(
        %peer,
        user = client.user,
        client_name = client.client_name,
        size = ?(client.size.width, client.size.height),
        codec,
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
/// pass through and checking its credentials once its Client Info is in.
async fn finish_sequence<A: Authenticate>(
    framed: &mut Framed,
    acceptor: &mut Acceptor,
    client: &mut ClientDetails,
    auth: &A,
    nla_user: Option<String>,
) -> Result<(AcceptorResult, A::Identity), AcceptError> {
    let mut buf = WriteBuf::new();
    let mut identity = None;
    loop {
        if let Some(result) = acceptor.get_result() {
            // Fails closed: should the Client Info moment ever be missed, nobody is let in.
            let identity = identity.ok_or(AcceptError::NoCredentials)?;
            return Ok((result, identity));
        }
        let watched = match state_downcast::<AcceptorState>(acceptor.state()) {
            Some(AcceptorState::BasicSettingsWaitInitial { .. }) => Watched::ConnectInitial,
            Some(AcceptorState::SecureSettingsExchange { .. }) => Watched::ClientInfo,
            Some(AcceptorState::CapabilitiesSendServer { .. }) => Watched::DemandActive,
            _ => Watched::Nothing,
        };
        let received = sequence_step(framed, acceptor, &mut buf).await?;
        let mut password = None;
        match (watched, &received) {
            (Watched::ConnectInitial, Some(pdu)) => {
                if let Err(e) = client.read_connect_initial(pdu) {
                    debug!("client core data unreadable: {e}");
                }
            }
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

/// One step of a connection sequence: read the PDU the acceptor waits for (if any), step, send
/// its answer. Returns the PDU read; the answer stays in `buf`.
async fn sequence_step(framed: &mut Framed, acceptor: &mut Acceptor, buf: &mut WriteBuf) -> Result<Option<Bytes>, AcceptError> {
    buf.clear();
    let (received, written) = match acceptor.next_pdu_hint() {
        Some(hint) => {
            let pdu = framed.read_by_hint(hint).await?;
            let written = acceptor.step(&pdu, framed.last_read_at(), buf).map_err(handshake_err)?;
            (Some(pdu), written)
        }
        None => (None, acceptor.step_no_input(buf).map_err(handshake_err)?),
    };
    if let Some(len) = written.size() {
        framed.write_all(&buf.filled()[..len]).await?;
    }
    Ok(received)
}

/// The rest of a deactivation-reactivation, from the client's Confirm Active on.
pub(crate) async fn finish_reactivation(framed: &mut Framed, acceptor: &mut Acceptor) -> Result<AcceptorResult, AcceptError> {
    let mut buf = WriteBuf::new();
    loop {
        if let Some(result) = acceptor.get_result() {
            return Ok(result);
        }
        sequence_step(framed, acceptor, &mut buf).await?;
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
}
