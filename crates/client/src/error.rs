//! What can go wrong, split by phase: [`ConnectError`] before the session is up, [`SessionError`]
//! after. Tests assert on these, so each failure a test cares about has its own variant.

use std::io;

use crate::errinfo;

/// Why [`connect`](crate::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection could not be made, or the socket failed before the security upgrade.
    #[error("I/O: {0}")]
    Io(#[source] io::Error),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(#[source] io::Error),
    /// The server rejected our credentials: NLA (CredSSP) logon failure, early user authorization
    /// "access denied", or a Set Error Info code that means access denied
    /// (see [`errinfo::is_access_denied`]) during the connection sequence.
    #[error("authentication failed{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    AuthenticationFailed {
        /// What the server said, for humans (an NTSTATUS, an error info name, ...).
        detail: Option<String>,
    },
    /// The server ended the connection during the connection sequence for another reason.
    /// `error_info` is the Set Error Info code it sent first, if it sent one.
    #[error("refused by server{}", error_info.map(|c| format!(": error info 0x{c:X} ({})", errinfo::name(c))).unwrap_or_default())]
    Refused { error_info: Option<u32> },
    /// The X.224 security negotiation failed (e.g. the server requires NLA and we offered TLS only).
    #[error("security negotiation failed: {0}")]
    SecurityNegotiation(String),
    /// The server sent something we did not understand or did not expect.
    #[error("protocol: {0}")]
    Protocol(String),
    /// [`ClientConfig::connect_timeout`](crate::ClientConfig::connect_timeout) elapsed.
    #[error("timed out connecting")]
    Timeout,
}

/// How an access-denied Set Error Info reads in [`ConnectError::AuthenticationFailed`]'s detail;
/// [`ConnectError::error_info`] reads the code back from it.
const ERROR_INFO_PREFIX: &str = "error info 0x";

pub(crate) fn error_info_detail(code: u32) -> String {
    format!("{ERROR_INFO_PREFIX}{code:X} ({})", errinfo::name(code))
}

impl ConnectError {
    /// The Set Error Info code the server sent when it refused us during the connection
    /// sequence, whichever variant that made this (`Refused`, or `AuthenticationFailed` for
    /// the access-denied codes). A refusal right after the sequence shows up on the client's
    /// first pump instead, as [`SessionError::Closed`].
    pub fn error_info(&self) -> Option<u32> {
        match self {
            ConnectError::Refused { error_info } => *error_info,
            ConnectError::AuthenticationFailed {
                detail: Some(detail),
            } => {
                let hex = detail.strip_prefix(ERROR_INFO_PREFIX)?;
                let end = hex
                    .find(|c: char| !c.is_ascii_hexdigit())
                    .unwrap_or(hex.len());
                u32::from_str_radix(&hex[..end], 16).ok()
            }
            _ => None,
        }
    }
}

/// Why a connected [`Client`](crate::Client) call failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("I/O: {0}")]
    Io(#[source] io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server ended the session. `error_info` is the last Set Error Info code it sent
    /// (e.g. `0xC` when the user logged off, `0x5` when another connection took the session).
    #[error("server closed the connection{}", error_info.map(|c| format!(" with error info 0x{c:X} ({})", errinfo::name(c))).unwrap_or_default())]
    Closed { error_info: Option<u32> },
    /// The operation needs something the server did not offer (e.g. resize without the
    /// display control channel).
    #[error("not available: {0}")]
    Unavailable(String),
    /// The arguments cannot be sent as asked (e.g. a resize to an odd width).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl SessionError {
    /// The Set Error Info code if this is a server-side close, so tests can write
    /// `assert_eq!(err.closed_with(), Some(0xC))`.
    pub fn closed_with(&self) -> Option<u32> {
        match self {
            SessionError::Closed { error_info } => *error_info,
            _ => None,
        }
    }

    /// Whether the server ended the session (with or without an error info code).
    pub fn is_closed(&self) -> bool {
        matches!(self, SessionError::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_code_is_readable_from_every_refusal() {
        let denied = ConnectError::AuthenticationFailed {
            detail: Some(error_info_detail(0x9)),
        };
        assert_eq!(denied.error_info(), Some(0x9));
        assert_eq!(
            denied.to_string(),
            "authentication failed: error info 0x9 (ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES)"
        );
        assert_eq!(
            ConnectError::Refused {
                error_info: Some(0x10C9)
            }
            .error_info(),
            Some(0x10C9)
        );
        assert_eq!(
            ConnectError::Refused { error_info: None }.error_info(),
            None
        );
        let nla = ConnectError::AuthenticationFailed {
            detail: Some("NLA: server returned NTSTATUS 0xC000006D".into()),
        };
        assert_eq!(nla.error_info(), None, "an NTSTATUS is no error info");
        assert_eq!(ConnectError::Timeout.error_info(), None);
    }
}
