//! The RDP wire: turns a byte stream into a [`Terminal`].
//!
//! [`accept`] runs the connection sequence on any stream (a socket we accepted, or one we
//! dialled for reverse connect): optional pre-connection PDU, TLS, credentials (checked by the
//! caller's [`Authenticate`]), capability exchange. The resulting [`Terminal`] then shows a
//! [`Desktop`](rdhost_desktop::Desktop) until told otherwise. Which desktop, and what happens
//! when the client goes, is the caller's business: nothing here knows about sessions.

mod accept;
mod active;
mod input;
mod nla;
mod pdus;
mod pointer;

pub use accept::{AcceptConfig, AcceptError, Accepted, AuthFailure, Authenticate, CodecPreference, Security, accept};
pub use active::{Terminal, TerminalCommand, TerminalEnd};

/// Set Error Info codes (MS-RDPBCGR 2.2.5.1.1) a host sends when it ends a connection.
pub mod error_info {
    /// An administrator disconnected the session from another session.
    pub const RPC_INITIATED_DISCONNECT: u32 = 0x1;
    /// An administrator logged the session off from another session.
    pub const RPC_INITIATED_LOGOFF: u32 = 0x2;
    pub const IDLE_TIMEOUT: u32 = 0x3;
    pub const LOGON_TIMEOUT: u32 = 0x4;
    /// Another connection took over the session.
    pub const DISCONNECTED_BY_OTHER_CONNECTION: u32 = 0x5;
    pub const SERVER_DENIED_CONNECTION: u32 = 0x7;
    pub const SERVER_INSUFFICIENT_PRIVILEGES: u32 = 0x9;
    /// The user disconnected from inside the session.
    pub const RPC_INITIATED_DISCONNECT_BY_USER: u32 = 0xB;
    /// The user logged off (their shell or session program ended).
    pub const LOGOFF_BY_USER: u32 = 0xC;
    /// "The DWM process running in the session exited unexpectedly": the nearest Windows code
    /// for the session's display server (its X server, or PTY) failing.
    pub const SERVER_DWM_CRASH: u32 = 0x10;
    pub const SERVER_SHUTDOWN: u32 = 0x19;
}
