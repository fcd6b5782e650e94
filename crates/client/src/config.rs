use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Which enhanced security protocols the client offers in the X.224 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS only; credentials travel in the Client Info PDU (`xfreerdp /sec:tls`).
    Tls,
    /// CredSSP/NLA only (`xfreerdp /sec:nla`).
    Nla,
    /// Offer both and let the server choose.
    Negotiate,
}

/// Joining a shared desktop as an attendee (Windows Desktop Sharing / Remote Assistance style),
/// as `xfreerdp inv.msrcIncident /assistance:PASSWORD` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assistance {
    /// The invitation's ticket (the `<A ID>` of its connection string); sent as the Client Info
    /// WorkingDir.
    pub ticket: String,
    /// The invitation's password; sent as the Client Info AlternateShell.
    pub password: String,
}

/// Whether to offer the graphics pipeline (MS-RDPEGFX), and with which codecs.
///
/// Off by default: a server that gets GFX draws everything through it, so a client that offers
/// it no longer exercises the fast-path codecs (RemoteFX, planar, uncompressed) the existing
/// tests and benchmarks measure. Turn it on to get what a Windows or FreeRDP client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gfx {
    /// No GFX: core data does not announce it and the `Microsoft::Windows::RDS::Graphics`
    /// channel is not joined; the server uses fast-path bitmap or surface updates.
    #[default]
    Off,
    /// GFX with H.264: capability sets 10.7 down to 10 (AVC allowed) and 8.1 with AVC420, and an
    /// OpenH264 decoder. AVC444 is decoded too if the server chooses it.
    Avc420,
    /// GFX without H.264: the same versions with AVC disabled, and no decoder, for servers'
    /// fallbacks (planar, RemoteFX, uncompressed on the pipeline, or fast-path).
    NoAvc,
}

/// Everything [`connect`](crate::connect) needs.
///
/// `ClientConfig::new(addr, user, password)` (or `..Default::default()`) fills in the rest.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    pub domain: Option<String>,
    /// Requested desktop size; the server may pick another (see [`Client::width`](crate::Client::width)).
    pub width: u16,
    pub height: u16,
    pub security: Security,
    /// Send an MS-RDPEPS pre-connection PDU (v1) with this Id before the X.224 request, like
    /// `xfreerdp /pcid:ID`, to ask for a particular session.
    pub session_id: Option<u32>,
    /// Windows keyboard layout id (0x409 = US English).
    pub keyboard_layout: u32,
    /// Limit for the whole connection sequence, TCP connect to first activation.
    pub connect_timeout: Duration,
    /// Sent to the server; truncated to 15 characters by the protocol. A sharer may show it.
    pub client_name: String,
    /// Connect as an attendee of a shared desktop: the Client Info carries the ticket and the
    /// invitation's password, `password` is replaced by `"*"`, `username` is the attendee's name
    /// (may be empty), and the `encomsp` channel is requested. TLS only, whatever `security`
    /// says: there is no account for NLA to prove (FreeRDP's assistance mode does the same).
    pub assistance: Option<Assistance>,
    /// Join the `cliprdr` channel: [`Client::set_clipboard`](crate::Client::set_clipboard) and
    /// [`Client::paste`](crate::Client::paste) then work. Off by default.
    pub clipboard: bool,
    /// Offer the graphics pipeline (see [`Gfx`]); [`Gfx::Off`] by default.
    /// [`Client::gfx_counters`](crate::Client::gfx_counters) reports what it brought.
    pub gfx: Gfx,
    /// Offer RemoteFX in the Bitmap Codecs capability (on by default). Off, the client is one
    /// that decodes no codec at all, as an old or minimal client is: it gets planar bitmaps.
    pub remotefx: bool,
}

impl ClientConfig {
    /// An attendee of the shared desktop at `addr`, named `name` (may be empty), admitted with
    /// an invitation's `ticket` and `password`.
    pub fn attendee(
        addr: SocketAddr,
        name: impl Into<String>,
        ticket: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            addr,
            username: name.into(),
            assistance: Some(Assistance {
                ticket: ticket.into(),
                password: password.into(),
            }),
            ..Self::default()
        }
    }

    pub fn new(addr: SocketAddr, username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            addr,
            username: username.into(),
            password: password.into(),
            ..Self::default()
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 3389)),
            username: String::new(),
            password: String::new(),
            domain: None,
            width: 1024,
            height: 768,
            security: Security::Tls,
            session_id: None,
            keyboard_layout: 0x409,
            connect_timeout: Duration::from_secs(20),
            client_name: "rdhost-client".to_owned(),
            assistance: None,
            clipboard: false,
            gfx: Gfx::Off,
            remotefx: true,
        }
    }
}
