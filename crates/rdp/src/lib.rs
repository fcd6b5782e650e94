//! The RDP wire: turns a byte stream into a [`Terminal`].
//!
//! [`accept`] runs the connection sequence on any stream (a socket we accepted, or one we
//! dialled for reverse connect): optional pre-connection PDU, TLS, credentials (checked by the
//! caller's [`Authenticate`], which sees the client's [`ClientDetails`]), capability exchange.
//! The resulting [`Terminal`] is fed: it shows what a [`Showing`] brings (a session's encoded
//! screen and pointer) and hands the client's input to its [`InputSink`], until told otherwise.
//! Which session, what the input may do, and what happens when the client goes, is the
//! caller's business: nothing here knows about sessions.
//!
//! Desktop-sharing attendees also join the `encomsp` channel (MS-RDPEMC): their control
//! requests go to the [`InputSink`], and [`TerminalCommand::Participant`] /
//! [`TerminalCommand::Pause`] tell them their level and pause their picture. Whether an attendee
//! may do anything is, again, the caller's business.
//!
//! Clients that join `cliprdr` copy and paste text with the session (MS-RDPECLIP): the
//! [`InputSink`]'s clipboard methods connect it to the desktop's clipboard, and say whether
//! this terminal takes part.
//!
//! Clients whose core data says they speak the graphics pipeline (MS-RDPEGFX) are offered its
//! dynamic channel when the host prefers H.264 ([`CodecPreference::Auto`]); once a client
//! confirms capabilities with AVC420, its terminal takes an H.264 feed of the same view from the
//! stage and sends each update as one EGFX frame, paced by the client's frame
//! acknowledgements (`gfx.rs`). A pipeline without AVC420, or none, leaves the terminal on its
//! fast-path codec.
//!
//! The active phase's decisions (a client PDU in, actions out) live in `state.rs`, without I/O;
//! `Terminal::run` only drives them.

mod accept;
mod active;
mod client;
mod clipboard;
mod encomsp;
mod gfx;
mod input;
mod nla;
mod pdus;
mod pointer;
mod state;

pub use accept::{AcceptConfig, AcceptError, Accepted, AuthFailure, Authenticate, CodecPreference, Security, accept};
pub use active::{InputSink, Showing, Terminal, TerminalCommand, TerminalEnd, TerminalStats};
pub use client::ClientDetails;
pub use clipboard::FETCH_TIMEOUT as CLIPBOARD_FETCH_TIMEOUT;
pub use encomsp::{ControlRequest, Participant};
/// What a [`Showing`] is made of, so that a caller needs no second dependency for it.
pub use rdhost_frames::{Feed, FeedProfile, Stage};
/// What the clipboard methods of [`InputSink`] speak.
pub use rdhost_desktop::clipboard::{ClipboardOffer, ClipboardText};

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
