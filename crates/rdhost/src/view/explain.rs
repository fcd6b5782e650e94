//! Failures in words a user can act on: what happened, with the server's code, and what to do.

use rdhost_client::{ConnectError, SessionError, errinfo};

use super::dial;

/// Who we were talking to, for the wording.
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    Host { user: &'a str, at: &'a str },
    Sharer { at: &'a str },
}

fn code(c: u32) -> String {
    format!("0x{c:X} {}", errinfo::name(c))
}

/// The Set Error Info code an authentication failure carries in its detail, if any (the client
/// writes it as "error info 0x9 (NAME)").
fn code_in(detail: &str) -> Option<u32> {
    let hex = detail.strip_prefix("error info 0x")?;
    let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    u32::from_str_radix(&digits, 16).ok()
}

/// Why the connection sequence failed.
pub fn connect_failed(peer: Peer<'_>, e: &ConnectError) -> String {
    match (peer, e) {
        (Peer::Sharer { .. }, ConnectError::AuthenticationFailed { detail }) => {
            let why = match detail.as_deref() {
                Some(d) => match code_in(d) {
                    Some(c) => format!(" ({})", code(c)),
                    None => format!(" ({d})"),
                },
                None => String::new(),
            };
            format!(
                "the sharer refused the connection{why}: wrong password or unknown invitation — check the \
                 password, or ask the sharer for a new invitation"
            )
        }
        (Peer::Sharer { .. }, ConnectError::Refused { error_info: Some(c) }) => sharer_refused(*c),
        (Peer::Sharer { .. }, ConnectError::Refused { error_info: None }) => {
            "the sharer closed the connection before admitting you, without a reason: the invitation may be \
             revoked or full, or the password wrong — ask the sharer (its log says why)"
                .to_owned()
        }
        (Peer::Host { user, at }, ConnectError::AuthenticationFailed { detail }) => format!(
            "logon as {user} at {at} failed{}: check the user name and password",
            detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        (Peer::Host { at, .. }, ConnectError::Refused { error_info: Some(c) }) => {
            format!("{at} refused the connection ({}) — its log says why", code(*c))
        }
        (Peer::Host { at, .. }, ConnectError::Refused { error_info: None }) => {
            format!("{at} closed the connection during the connection sequence without a reason — its log says why")
        }
        (peer, ConnectError::Tls(e)) => {
            format!("the TLS handshake with {} failed: {e} — is it an RDP server that offers TLS?", at(peer))
        }
        (peer, ConnectError::SecurityNegotiation(s)) => format!(
            "security negotiation with {} failed: {s} — it wants a security protocol this viewer does not offer",
            at(peer)
        ),
        (peer, ConnectError::Io(e)) => format!("the connection to {} failed: {}", at(peer), dial::describe(e)),
        (peer, ConnectError::Protocol(s)) => {
            format!("{} sent something this viewer does not understand: {s}", at(peer))
        }
        (peer, ConnectError::Timeout) => format!(
            "{} accepted the TCP connection but did not finish the RDP connection sequence in time — is it an \
             RDP server, and is it busy?",
            at(peer)
        ),
    }
}

/// The sharer turned us away with Set Error Info `c` (during the connection sequence, or
/// right after it: admission may come once the connection is up).
fn sharer_refused(c: u32) -> String {
    match c {
        errinfo::SERVER_INSUFFICIENT_PRIVILEGES | errinfo::SERVER_FRESH_CREDENTIALS_REQUIRED => format!(
            "the sharer refused the connection ({}): wrong password or unknown invitation — check the \
             password, or ask the sharer for a new invitation",
            code(c)
        ),
        errinfo::SERVER_DENIED_CONNECTION => format!(
            "the sharer refused the connection ({}): the invitation was revoked or has as many attendees \
             as it allows — ask the sharer for a new invitation",
            code(c)
        ),
        _ => format!("the sharer refused the connection ({}) — ask the sharer why (its log says)", code(c)),
    }
}

fn at<'a>(peer: Peer<'a>) -> &'a str {
    match peer {
        Peer::Host { at, .. } | Peer::Sharer { at } => at,
    }
}

/// Why a running connection ended (not by us).
pub fn session_ended(peer: Peer<'_>, e: &SessionError) -> String {
    match (peer, e) {
        (
            Peer::Sharer { .. },
            SessionError::Closed {
                error_info:
                    Some(
                        c @ (errinfo::SERVER_DENIED_CONNECTION
                        | errinfo::SERVER_INSUFFICIENT_PRIVILEGES
                        | errinfo::SERVER_FRESH_CREDENTIALS_REQUIRED),
                    ),
            },
        ) => sharer_refused(*c),
        (Peer::Sharer { .. }, SessionError::Closed { error_info: Some(c) }) => {
            let what = match *c {
                errinfo::RPC_INITIATED_DISCONNECT => "the sharer ended your connection",
                errinfo::RPC_INITIATED_DISCONNECT_BY_USER => "the sharer disconnected you",
                errinfo::RPC_INITIATED_LOGOFF | errinfo::LOGOFF_BY_USER => "the shared session ended",
                errinfo::DISCONNECTED_BY_OTHER_CONNECTION => "another connection took your place",
                errinfo::SERVER_SHUTDOWN | errinfo::SERVER_REBOOT => "the sharer's machine is going down",
                _ => "the sharer closed the connection",
            };
            format!("{what} ({})", code(*c))
        }
        (Peer::Sharer { .. }, SessionError::Closed { error_info: None }) => {
            "the sharer closed the connection (it stopped sharing, or ended your connection)".to_owned()
        }
        (Peer::Host { .. }, SessionError::Closed { error_info: Some(c) }) => {
            let what = match *c {
                errinfo::RPC_INITIATED_DISCONNECT => {
                    "the session was disconnected by an administrator; it keeps running — connect again to resume it"
                }
                errinfo::RPC_INITIATED_DISCONNECT_BY_USER => {
                    "the session was disconnected from inside; it keeps running — connect again to resume it"
                }
                errinfo::RPC_INITIATED_LOGOFF => "the session was logged off by an administrator",
                errinfo::LOGOFF_BY_USER => "the session was logged off",
                errinfo::IDLE_TIMEOUT => "the session was disconnected for being idle",
                errinfo::LOGON_TIMEOUT => "the logon took too long",
                errinfo::DISCONNECTED_BY_OTHER_CONNECTION => {
                    "another connection took the session (it is shown elsewhere now)"
                }
                errinfo::SERVER_SHUTDOWN | errinfo::SERVER_REBOOT => "the host is going down",
                _ => "the host closed the connection",
            };
            format!("{what} ({})", code(*c))
        }
        (Peer::Host { .. }, SessionError::Closed { error_info: None }) => {
            "the host closed the connection without a reason".to_owned()
        }
        (_, SessionError::Io(e)) => format!("the connection broke: {}", dial::describe(e)),
        (_, SessionError::Protocol(s)) => format!("protocol error: {s}"),
        (_, SessionError::Unavailable(s)) => format!("not available: {s}"),
        (_, SessionError::InvalidArgument(s)) => format!("invalid request: {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_password_says_what_to_do() {
        let e = ConnectError::AuthenticationFailed {
            detail: Some("error info 0x9 (ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES)".into()),
        };
        let text = connect_failed(Peer::Sharer { at: "127.0.0.1:3390" }, &e);
        assert_eq!(
            text,
            "the sharer refused the connection (0x9 ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES): wrong password or \
             unknown invitation — check the password, or ask the sharer for a new invitation"
        );
        let host = connect_failed(Peer::Host { user: "alice", at: "h:3389" }, &e);
        assert!(host.starts_with("logon as alice at h:3389 failed"), "{host}");
    }

    #[test]
    fn codes_are_named() {
        assert_eq!(code_in("error info 0x1A (X)"), Some(0x1A));
        assert_eq!(code_in("STATUS_LOGON_FAILURE"), None);
        let ended = session_ended(
            Peer::Sharer { at: "x" },
            &SessionError::Closed { error_info: Some(errinfo::RPC_INITIATED_DISCONNECT) },
        );
        assert_eq!(ended, "the sharer ended your connection (0x1 ERRINFO_RPC_INITIATED_DISCONNECT)");
        let denied = connect_failed(
            Peer::Sharer { at: "x" },
            &ConnectError::Refused { error_info: Some(errinfo::SERVER_DENIED_CONNECTION) },
        );
        assert!(denied.contains("revoked"), "{denied}");
        // Refused once the connection is up: the same words.
        let late = session_ended(
            Peer::Sharer { at: "x" },
            &SessionError::Closed { error_info: Some(errinfo::SERVER_INSUFFICIENT_PRIVILEGES) },
        );
        assert!(late.contains("wrong password or unknown invitation"), "{late}");
    }
}
