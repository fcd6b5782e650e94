//! The control API's messages and how they travel over HTTP/1.1 on the Unix socket.
//!
//! One table ([`Request::to_http`] / [`Request::from_http`]) serves both the host and the CLI, so
//! the two cannot drift apart. Plain HTTP keeps the API usable with
//! `curl --unix-socket /run/rdhost/control.sock http://localhost/v1/sessions`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The variable the host puts into every session's environment: commands run inside a session
/// reach their own host without flags.
pub const ENV_SOCKET: &str = "RDHOST_CONTROL_SOCKET";

/// A session argument: an id, or the caller's own session (`LOGONID_CURRENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionRef {
    #[default]
    Current,
    Id(u32),
}

impl fmt::Display for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionRef::Current => f.write_str("current"),
            SessionRef::Id(id) => write!(f, "{id}"),
        }
    }
}

impl FromStr for SessionRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "current" | "" => Ok(SessionRef::Current),
            other => other
                .parse()
                .map(SessionRef::Id)
                .map_err(|_| format!("{other:?} is not a session id (a number, or \"current\")")),
        }
    }
}

impl Serialize for SessionRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SessionRef::Current => s.serialize_str("current"),
            SessionRef::Id(id) => s.serialize_u32(*id),
        }
    }
}

impl<'de> Deserialize<'de> for SessionRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Id(id) => Ok(SessionRef::Id(id)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// One session as `query session` and `WTSQuerySessionInformation` see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: u32,
    /// The name the client logged on with.
    pub user: String,
    /// The WTS state name: Active, Connected, ConnectQuery, Shadow, Disconnected, Idle, Listen,
    /// Reset, Down, Init.
    pub state: String,
    /// `rdp-tcp#N` while a terminal shows the session, empty when none does (as qwinsta prints).
    pub session_name: String,
    /// This is the caller's own session.
    pub current: bool,
    pub client_name: String,
    pub client_address: String,
    pub client_build: u32,
    pub client_width: u16,
    pub client_height: u16,
    /// RFC 3339, UTC.
    pub logon_time: String,
    pub connect_time: Option<String>,
    pub disconnect_time: Option<String>,
    pub last_input_time: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// What the session shows: terminal, x11, display.
    pub desktop: String,
    /// While Shadow: the session this one's terminal is viewing.
    pub shadowing: Option<u32>,
    /// Further terminals watching this session (shadowing sessions' terminals).
    pub viewers: Vec<ViewerInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewerInfo {
    /// The session whose terminal this is, when it belongs to one (a shadowing session).
    pub session: Option<u32>,
    /// none | view | interactive
    pub control_level: String,
    pub client_name: String,
    pub client_address: String,
}

/// A failed operation: the Windows error code and name, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code} {name})")]
pub struct ApiError {
    pub code: u32,
    pub name: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u32, name: &str, message: impl Into<String>) -> Self {
        Self { code, name: name.to_owned(), message: message.into() }
    }

    /// A request the API does not understand (ERROR_INVALID_PARAMETER).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(87, "ERROR_INVALID_PARAMETER", message)
    }

    /// The HTTP status that goes with the Windows code.
    pub fn http_status(&self) -> u16 {
        match self.code {
            87 => 400,
            5 | 1326 | 7044 | 7045 | 7051 => 403,
            7022 | 7057 => 404,
            7024 | 7007 => 409,
            _ => 500,
        }
    }
}

/// Message-box buttons (`MB_OK`, `MB_OKCANCEL`, `MB_YESNO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MessageButtons {
    #[default]
    Ok,
    Okcancel,
    Yesno,
}

/// What one session answered to a message (`WTSSendMessage`'s pResponse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAnswerInfo {
    pub session: u32,
    /// IDOK 1, IDCANCEL 2, IDYES 6, IDNO 7, IDTIMEOUT 32000, IDASYNC 32001.
    pub answer: u32,
    /// IDOK, IDCANCEL, …
    pub name: String,
}

/// Everything the control API can be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Sessions the caller may query; `filter` is an id or a user name.
    Query { filter: Option<String> },
    /// `WTSConnectSession(session, dest)`: the terminal showing `dest` shows `session` from now on.
    Connect { session: SessionRef, dest: SessionRef, password: Option<String>, wait: bool },
    Disconnect { session: SessionRef, wait: bool },
    Logoff { session: SessionRef, wait: bool },
    Reset { session: SessionRef },
    /// `WTSSendMessage` to `target` (an id, a user name, or `*`). `time_secs` 0 = no timeout.
    Message { target: String, title: String, text: String, buttons: MessageButtons, time_secs: u64, wait: bool },
    /// Make the caller's terminal a viewer of `target` (`WTSStartRemoteControlSession`).
    Shadow { target: u32, control: bool },
    /// Return the caller's terminal to its own session.
    ShadowStop,
    // --- Desktop Sharing: the sharing session of the caller's session (the sharer's only one) ---
    /// The sharing session: state, shared rectangle, where attendees connect.
    ShareInfo,
    /// `CreateInvitation`. `password` None: the sharer picks one (returned once). `policy`
    /// applies when this invitation starts the session's sharing.
    Invite { password: Option<String>, attendee_limit: u32, group: Option<String>, policy: Option<SharePolicyInfo> },
    Invitations,
    Revoke { invitation: u32 },
    Attendees,
    SetLevel { attendee: u32, level: String },
    Terminate { attendee: u32 },
    Pause,
    Resume,
    /// `Close`: every attendee is dropped; final.
    CloseSharing,
    /// `SetDesktopSharedRect`; None shares the whole desktop.
    SharedRect { rect: Option<RectInfo> },
    /// `ConnectToClient`: dial a listening viewer; answers once it is admitted or every address failed.
    ConnectToClient { connection_string: String },
}

/// The host's answer to a [`Request`] that succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Sessions(Vec<SessionInfo>),
    Answers { answers: Vec<MessageAnswerInfo> },
    Done { ok: bool },
    Sharing(SharingInfo),
    Invitation(InvitationInfo),
    Invitations(Vec<InvitationInfo>),
    Attendee(AttendeeInfo),
    Attendees(Vec<AttendeeInfo>),
}

/// A sharing session (`IRDPSRAPISharingSession`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingInfo {
    /// The shared session.
    pub session: u32,
    /// open | paused | closed
    pub state: String,
    pub rect: Option<RectInfo>,
    /// Where attendees connect (the `<L>` entries of new invitations); empty: reverse connect only.
    pub listeners: Vec<String>,
    pub attendees: usize,
}

/// An invitation (`IRDPSRAPIInvitation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationInfo {
    pub id: u32,
    /// The MS-RAI connection string (`<E>…</E>`) to give the attendee.
    pub connection_string: String,
    pub group: String,
    pub attendee_limit: u32,
    pub revoked: bool,
    /// Attendees connected with it now.
    pub attendees: usize,
    /// Only in the answer to the `Invite` that made it, when the sharer picked the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub created: String,
}

/// An attendee (`IRDPSRAPIAttendee`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendeeInfo {
    pub id: u32,
    /// `RemoteName`: the name the attendee gave.
    pub name: String,
    /// none | view | interactive
    pub level: String,
    pub invitation: u32,
    pub address: String,
    /// RFC 3339, UTC.
    pub connected: String,
}

/// How a new sharing treats attendees: the level they start at (none or view) and up to which
/// level their requests are granted at once (none: not at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharePolicyInfo {
    pub default_level: String,
    pub auto_grant: String,
}

/// A rectangle of the desktop; right and bottom exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RectInfo {
    pub left: u16,
    pub top: u16,
    pub right: u16,
    pub bottom: u16,
}

/// Request bodies on the wire (the path carries the session).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dest: Option<SessionRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    target: String,
    #[serde(default)]
    title: String,
    text: String,
    #[serde(default)]
    buttons: MessageButtons,
    #[serde(default)]
    time_secs: u64,
    #[serde(default)]
    wait: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowBody {
    target: u32,
    #[serde(default)]
    control: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default = "default_attendee_limit")]
    attendee_limit: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<SharePolicyInfo>,
}

fn default_attendee_limit() -> u32 {
    10
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelBody {
    level: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RectBody {
    rect: Option<RectInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectToClientBody {
    connection_string: String,
}

fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("{what}: {e}")))
}

fn number(text: &str, what: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| ApiError::invalid(format!("{text:?} is not an {what} id (a number)")))
}

/// The path of the event stream (newline-delimited JSON, one [`EventRecord`] per line).
pub const EVENTS_PATH: &str = "/v1/events";

impl Request {
    /// The request as logs may show it: passwords hidden.
    pub fn for_log(&self) -> Request {
        match self {
            Request::Connect { session, dest, password: Some(_), wait } => {
                Request::Connect { session: *session, dest: *dest, password: Some("(hidden)".into()), wait: *wait }
            }
            Request::Invite { password: Some(_), attendee_limit, group, policy } => {
                Request::Invite { password: Some("(hidden)".into()), attendee_limit: *attendee_limit, group: group.clone(), policy: policy.clone() }
            }
            other => other.clone(),
        }
    }

    /// Method, path and JSON body.
    pub fn to_http(&self) -> (&'static str, String, Option<String>) {
        let body = |b: &OpBody| Some(serde_json::to_string(b).expect("request bodies serialise"));
        fn json<T: Serialize>(b: &T) -> Option<String> {
            Some(serde_json::to_string(b).expect("request bodies serialise"))
        }
        match self {
            Request::Query { filter: None } => ("GET", "/v1/sessions".into(), None),
            Request::Query { filter: Some(f) } => ("GET", format!("/v1/sessions?filter={}", percent_encode(f)), None),
            Request::Connect { session, dest, password, wait } => (
                "POST",
                format!("/v1/sessions/{session}/connect"),
                body(&OpBody { dest: Some(*dest), password: password.clone(), wait: *wait }),
            ),
            Request::Disconnect { session, wait } => {
                ("POST", format!("/v1/sessions/{session}/disconnect"), body(&OpBody { wait: *wait, ..OpBody::default() }))
            }
            Request::Logoff { session, wait } => {
                ("POST", format!("/v1/sessions/{session}/logoff"), body(&OpBody { wait: *wait, ..OpBody::default() }))
            }
            Request::Reset { session } => ("POST", format!("/v1/sessions/{session}/reset"), body(&OpBody { wait: true, ..OpBody::default() })),
            Request::Message { target, title, text, buttons, time_secs, wait } => (
                "POST",
                "/v1/messages".into(),
                Some(
                    serde_json::to_string(&MessageBody {
                        target: target.clone(),
                        title: title.clone(),
                        text: text.clone(),
                        buttons: *buttons,
                        time_secs: *time_secs,
                        wait: *wait,
                    })
                    .expect("message body serialises"),
                ),
            ),
            Request::Shadow { target, control } => (
                "POST",
                "/v1/shadow".into(),
                Some(serde_json::to_string(&ShadowBody { target: *target, control: *control }).expect("shadow body serialises")),
            ),
            Request::ShadowStop => ("POST", "/v1/shadow/stop".into(), None),
            Request::ShareInfo => ("GET", "/v1/share".into(), None),
            Request::Invite { password, attendee_limit, group, policy } => (
                "POST",
                "/v1/share/invitations".into(),
                json(&InviteBody { password: password.clone(), attendee_limit: *attendee_limit, group: group.clone(), policy: policy.clone() }),
            ),
            Request::Invitations => ("GET", "/v1/share/invitations".into(), None),
            Request::Revoke { invitation } => ("POST", format!("/v1/share/invitations/{invitation}/revoke"), None),
            Request::Attendees => ("GET", "/v1/share/attendees".into(), None),
            Request::SetLevel { attendee, level } => {
                ("POST", format!("/v1/share/attendees/{attendee}/level"), json(&LevelBody { level: level.clone() }))
            }
            Request::Terminate { attendee } => ("POST", format!("/v1/share/attendees/{attendee}/terminate"), None),
            Request::Pause => ("POST", "/v1/share/pause".into(), None),
            Request::Resume => ("POST", "/v1/share/resume".into(), None),
            Request::CloseSharing => ("POST", "/v1/share/close".into(), None),
            Request::SharedRect { rect } => ("POST", "/v1/share/rect".into(), json(&RectBody { rect: *rect })),
            Request::ConnectToClient { connection_string } => (
                "POST",
                "/v1/share/connect-to-client".into(),
                json(&ConnectToClientBody { connection_string: connection_string.clone() }),
            ),
        }
    }

    /// Parse what [`to_http`](Self::to_http) makes (and what a person types into curl).
    pub fn from_http(method: &str, path_and_query: &str, body: &[u8]) -> Result<Request, ApiError> {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let json = |what: &str| -> Result<serde_json::Value, ApiError> {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(serde_json::Value::Object(Default::default()));
            }
            serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("{what}: the body is not valid JSON: {e}")))
        };
        let parse_body = |what: &str| -> Result<OpBody, ApiError> {
            serde_json::from_value(json(what)?).map_err(|e| ApiError::invalid(format!("{what}: {e}")))
        };
        let session = |text: &str| text.parse::<SessionRef>().map_err(ApiError::invalid);
        match (method, segments.as_slice()) {
            ("GET", ["v1", "sessions"]) => {
                let filter = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == "filter")
                    .map(|(_, v)| percent_decode(v))
                    .filter(|v| !v.is_empty());
                Ok(Request::Query { filter })
            }
            ("GET", ["v1", "sessions", id]) => Ok(Request::Query { filter: Some((*id).to_owned()) }),
            ("POST", ["v1", "sessions", id, op]) => {
                let session = session(id)?;
                let b = parse_body(op)?;
                match *op {
                    "connect" => Ok(Request::Connect { session, dest: b.dest.unwrap_or_default(), password: b.password, wait: b.wait }),
                    "disconnect" => Ok(Request::Disconnect { session, wait: b.wait }),
                    "logoff" => Ok(Request::Logoff { session, wait: b.wait }),
                    "reset" => Ok(Request::Reset { session }),
                    other => Err(ApiError::invalid(format!("unknown operation {other:?}: connect, disconnect, logoff or reset"))),
                }
            }
            ("POST", ["v1", "messages"]) => {
                let b: MessageBody = serde_json::from_value(json("message")?).map_err(|e| ApiError::invalid(format!("message: {e}")))?;
                Ok(Request::Message { target: b.target, title: b.title, text: b.text, buttons: b.buttons, time_secs: b.time_secs, wait: b.wait })
            }
            ("POST", ["v1", "shadow"]) => {
                let b: ShadowBody = serde_json::from_value(json("shadow")?).map_err(|e| ApiError::invalid(format!("shadow: {e}")))?;
                Ok(Request::Shadow { target: b.target, control: b.control })
            }
            ("POST", ["v1", "shadow", "stop"]) => Ok(Request::ShadowStop),
            ("GET", ["v1", "share"]) => Ok(Request::ShareInfo),
            ("POST", ["v1", "share", "invitations"]) => {
                let b: InviteBody = typed(json("invite")?, "invite")?;
                Ok(Request::Invite { password: b.password, attendee_limit: b.attendee_limit, group: b.group, policy: b.policy })
            }
            ("GET", ["v1", "share", "invitations"]) => Ok(Request::Invitations),
            ("POST", ["v1", "share", "invitations", id, "revoke"]) => Ok(Request::Revoke { invitation: number(id, "invitation")? }),
            ("GET", ["v1", "share", "attendees"]) => Ok(Request::Attendees),
            ("POST", ["v1", "share", "attendees", id, "level"]) => {
                let b: LevelBody = typed(json("level")?, "level")?;
                Ok(Request::SetLevel { attendee: number(id, "attendee")?, level: b.level })
            }
            ("POST", ["v1", "share", "attendees", id, "terminate"]) => Ok(Request::Terminate { attendee: number(id, "attendee")? }),
            ("POST", ["v1", "share", "pause"]) => Ok(Request::Pause),
            ("POST", ["v1", "share", "resume"]) => Ok(Request::Resume),
            ("POST", ["v1", "share", "close"]) => Ok(Request::CloseSharing),
            ("POST", ["v1", "share", "rect"]) => {
                let b: RectBody = typed(json("rect")?, "rect")?;
                Ok(Request::SharedRect { rect: b.rect })
            }
            ("POST", ["v1", "share", "connect-to-client"]) => {
                let b: ConnectToClientBody = typed(json("connect-to-client")?, "connect-to-client")?;
                Ok(Request::ConnectToClient { connection_string: b.connection_string })
            }
            _ => Err(ApiError::invalid(format!(
                "no such request: {method} {path} (GET /v1/sessions, GET /v1/sessions/ID, POST /v1/sessions/ID/connect|disconnect|logoff|reset, POST /v1/messages, POST /v1/shadow, POST /v1/shadow/stop, GET /v1/share, GET|POST /v1/share/invitations, POST /v1/share/invitations/ID/revoke, GET /v1/share/attendees, POST /v1/share/attendees/ID/level|terminate, POST /v1/share/pause|resume|close|rect|connect-to-client, GET {EVENTS_PATH})"
            ))),
        }
    }
}

/// One session notification on the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventRecord {
    /// create, delete, connect, disconnect, logon, logoff, state-change, remote-control, lagged
    pub event: String,
    pub session: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// For `lagged`: how many events this subscriber missed because it read too slowly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
    /// Sharing events: the attendee concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attendee: Option<AttendeeInfo>,
    /// attendee-disconnected: APP, ERR or CLI; connection-failed: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// control-level-change-requested: the level asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// connection-failed: every address tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// shared-rect-changed: the new rectangle (absent: the whole desktop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rect: Option<RectInfo>,
    /// invitation-created / invitation-revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<u32>,
    /// RFC 3339, UTC.
    pub time: String,
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Format a time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_survives_the_http_round_trip() {
        let requests = [
            Request::Query { filter: None },
            Request::Query { filter: Some("alice smith".into()) },
            Request::Query { filter: Some("7".into()) },
            Request::Connect { session: SessionRef::Id(3), dest: SessionRef::Current, password: Some("p w".into()), wait: false },
            Request::Connect { session: SessionRef::Current, dest: SessionRef::Id(9), password: None, wait: true },
            Request::Disconnect { session: SessionRef::Current, wait: true },
            Request::Logoff { session: SessionRef::Id(4), wait: false },
            Request::Reset { session: SessionRef::Id(4) },
            Request::Message {
                target: "*".into(),
                title: "T".into(),
                text: "hello\nworld".into(),
                buttons: MessageButtons::Yesno,
                time_secs: 5,
                wait: true,
            },
            Request::Shadow { target: 2, control: true },
            Request::ShadowStop,
            Request::ShareInfo,
            Request::Invite {
                password: Some("pw".into()),
                attendee_limit: 3,
                group: Some("g".into()),
                policy: Some(SharePolicyInfo { default_level: "view".into(), auto_grant: "interactive".into() }),
            },
            Request::Invite { password: None, attendee_limit: 10, group: None, policy: None },
            Request::Invitations,
            Request::Revoke { invitation: 2 },
            Request::Attendees,
            Request::SetLevel { attendee: 4, level: "interactive".into() },
            Request::Terminate { attendee: 4 },
            Request::Pause,
            Request::Resume,
            Request::CloseSharing,
            Request::SharedRect { rect: Some(RectInfo { left: 1, top: 2, right: 30, bottom: 40 }) },
            Request::SharedRect { rect: None },
            Request::ConnectToClient { connection_string: "<E><C><T ID=\"1\" SID=\"0\"><L P=\"1\" N=\"127.0.0.1\"/></T></C></E>".into() },
        ];
        for request in requests {
            let (method, path, body) = request.to_http();
            let back = Request::from_http(method, &path, body.as_deref().unwrap_or("").as_bytes()).unwrap();
            assert_eq!(back, request, "{method} {path} {body:?}");
        }
    }

    #[test]
    fn logs_never_see_passwords() {
        let request = Request::Connect { session: SessionRef::Id(1), dest: SessionRef::Current, password: Some("s3cret".into()), wait: true };
        assert!(!format!("{:?}", request.for_log()).contains("s3cret"));
    }

    #[test]
    fn curl_forms_parse() {
        assert_eq!(
            Request::from_http("POST", "/v1/sessions/3/disconnect", b"").unwrap(),
            Request::Disconnect { session: SessionRef::Id(3), wait: true }
        );
        assert_eq!(
            Request::from_http("POST", "/v1/sessions/current/connect", br#"{"dest": 5}"#).unwrap(),
            Request::Connect { session: SessionRef::Current, dest: SessionRef::Id(5), password: None, wait: true }
        );
        assert_eq!(Request::from_http("GET", "/v1/sessions/12", b"").unwrap(), Request::Query { filter: Some("12".into()) });
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (method, path, body, needle) in [
            ("GET", "/v2/nothing", "", "no such request"),
            ("POST", "/v1/sessions/abc/logoff", "", "not a session id"),
            ("POST", "/v1/sessions/1/explode", "", "unknown operation"),
            ("POST", "/v1/sessions/1/connect", "{not json", "not valid JSON"),
            ("POST", "/v1/sessions/1/connect", r#"{"dset": 2}"#, "unknown field"),
            ("POST", "/v1/messages", r#"{"title": "x"}"#, "missing field"),
        ] {
            let err = Request::from_http(method, path, body.as_bytes()).unwrap_err();
            assert_eq!(err.code, 87);
            assert!(err.message.contains(needle), "{method} {path}: {}", err.message);
        }
    }

    #[test]
    fn percent_coding_round_trips() {
        for s in ["alice", "a b&c=d", "ü%", "%", "%4"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn errors_map_to_http_statuses() {
        assert_eq!(ApiError::new(7022, "ERROR_CTX_WINSTATION_NOT_FOUND", "x").http_status(), 404);
        assert_eq!(ApiError::new(5, "ERROR_ACCESS_DENIED", "x").http_status(), 403);
        assert_eq!(ApiError::invalid("x").http_status(), 400);
        assert_eq!(ApiError::new(7024, "ERROR_CTX_WINSTATION_BUSY", "x").to_string(), "x (7024 ERROR_CTX_WINSTATION_BUSY)");
    }
}
