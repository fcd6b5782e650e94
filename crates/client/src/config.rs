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
    /// Sent to the server; truncated to 15 characters by the protocol.
    pub client_name: String,
}

impl ClientConfig {
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
        }
    }
}
