//! Desktop Sharing on a host: each shared session has a `Sharing` (the model's invitations,
//! attendees and levels); this file asks it and carries out its decisions — commands to
//! attendees' terminals, the control API's share requests, and `ConnectToClient`'s dialling.
//! Used by the daemon (a user shares their own session) and by the standalone sharer (one
//! console session that is an existing display or a command).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rdhost_desktop::{Desktop, MessageBoard};
use rdhost_model::{
    Attendee, AttendeeId, Caller, ConnectionString, ControlLevel, DriveRefusal, Invitation, InvitationId, Listener, SessionId, ShareEffect, ShareError,
    ShareEvent, SharedRect, Sharing, SharingPolicy, TerminalId,
};
use rdhost_rdp::{Stage, TerminalCommand};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::host::{DesktopSlot, Host, SessionDesktop};
use crate::control::protocol::{ApiError, AttendeeInfo, EventRecord, InvitationInfo, RectInfo, Reply, Request, SharingInfo, rfc3339};

/// How long one address of a viewer's connection string may take to answer.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dialled viewer may take from TCP connect to admission.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(30);

fn share_error(e: ShareError) -> ApiError {
    match e {
        ShareError::NoSuchInvitation(_) | ShareError::NoSuchAttendee(_) => ApiError::new(1168, "ERROR_NOT_FOUND", e.to_string()),
        ShareError::Closed => ApiError::new(7007, "ERROR_CTX_CLOSE_PENDING", e.to_string()),
        other => ApiError::invalid(other.to_string()),
    }
}

fn not_shared() -> ApiError {
    ApiError::new(1168, "ERROR_NOT_FOUND", "this session is not being shared: start with `rdhost share start`")
}

pub(super) fn attendee_info(a: &Attendee) -> AttendeeInfo {
    AttendeeInfo {
        id: a.id.0,
        name: a.name.clone(),
        level: a.level.name().into(),
        invitation: a.invitation.0,
        address: a.address.clone(),
        connected: rfc3339(a.connected),
    }
}

fn rect_info(r: SharedRect) -> RectInfo {
    RectInfo { left: r.left, top: r.top, right: r.right, bottom: r.bottom }
}

/// Where attendees reach a listener bound to `local`: that address, or for a wildcard bind every
/// address of this machine (loopback last: remote viewers try the others first).
pub(super) fn listeners_for(local: SocketAddr) -> Vec<Listener> {
    let port = local.port();
    let mut addresses: Vec<IpAddr> = Vec::new();
    if local.ip().is_unspecified() {
        if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
            for interface in interfaces {
                let Some(address) = interface.address else { continue };
                let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                    (Some(v4), _) => IpAddr::V4(v4.ip()),
                    // Link-local IPv6 needs a scope the string cannot carry portably: skip it.
                    (_, Some(v6)) if local.is_ipv6() && !v6.ip().is_unicast_link_local() => IpAddr::V6(v6.ip()),
                    _ => continue,
                };
                if !ip.is_loopback() && !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
        }
        addresses.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    } else {
        addresses.push(local.ip());
    }
    addresses.into_iter().map(|ip| Listener { port, name: ip.to_string() }).collect()
}

/// 48 random bytes, base64: the size Windows uses for a ticket.
fn new_ticket() -> String {
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A password people can read aloud: 12 characters without look-alikes.
pub(crate) fn new_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

impl Host {
    /// The addresses new invitations list (`<L>`); empty: reverse connect only.
    pub fn set_listeners(&self, listeners: Vec<Listener>) {
        *self.share_listeners.lock().unwrap_or_else(|e| e.into_inner()) = listeners;
    }

    fn listeners(&self) -> Vec<Listener> {
        self.share_listeners.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// MS-RAI's KH: base64 of the SHA-1 of our public key. Windows viewers compare it with the
    /// key the sharer presents (FreeRDP does not check it).
    fn key_hash(&self) -> String {
        use sha1::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(self.public_key()))
    }

    fn connection_string(&self, sharing: &Sharing, invitation: &Invitation) -> String {
        ConnectionString {
            ticket: Some(invitation.ticket.clone()),
            kh: Some(self.key_hash()),
            kh2: None,
            transport_id: "1".into(),
            sid: sharing.session().to_string(),
            listeners: self.listeners(),
        }
        .to_string()
    }

    fn invitation_info(&self, sharing: &Sharing, invitation: &Invitation) -> InvitationInfo {
        InvitationInfo {
            id: invitation.id.0,
            connection_string: self.connection_string(sharing, invitation),
            group: invitation.group.clone(),
            attendee_limit: invitation.attendee_limit,
            revoked: invitation.revoked,
            attendees: sharing.attendees().filter(|a| a.invitation == invitation.id).count(),
            password: None,
            created: rfc3339(invitation.created),
        }
    }

    /// Make `desktop` a session of its own, already running, with nobody's terminal as its
    /// primary (the person sharing sits at it), and share it.
    pub fn open_console(self: &Arc<Self>, user: &str, desktop: Arc<dyn Desktop>, policy: SharingPolicy) -> Result<SessionId, rdhost_model::LogonError> {
        let live = Arc::new(SessionDesktop {
            stage: Stage::new(Arc::clone(desktop.canvas())),
            board: MessageBoard::new(Arc::clone(desktop.canvas())),
            desktop,
        });
        self.spawn_on_runtime(live.board.follow_resizes());
        self.with_state(|state| {
            let session = state.table.open_console(user, SystemTime::now())?;
            state.desktops.insert(session, DesktopSlot::running(Arc::clone(&live)));
            state.sharings.insert(session, Sharing::new(session, policy));
            Ok(session)
        })
    }

    /// `CreateInvitation` on `session`'s sharing (made with `policy` if the session is not shared yet).
    pub fn create_invitation(
        &self,
        session: SessionId,
        password: Option<String>,
        attendee_limit: u32,
        group: Option<String>,
        policy: SharingPolicy,
    ) -> Result<InvitationInfo, ApiError> {
        let picked = password.is_none();
        let password = password.unwrap_or_else(new_password);
        let info = self.with_state(|state| {
            let sharing = state.sharings.entry(session).or_insert_with(|| Sharing::new(session, policy));
            let group = group.unwrap_or_else(|| "attendees".into());
            let id = sharing.create_invitation(new_ticket(), password.clone(), group, attendee_limit, SystemTime::now()).map_err(share_error)?.id;
            let invitation = sharing.invitations().find(|i| i.id == id).expect("just made").clone();
            Ok::<_, ApiError>(self.invitation_info(sharing, &invitation))
        })?;
        Ok(InvitationInfo { password: picked.then_some(password), ..info })
    }

    /// Carry out what a sharing decided for `session`.
    pub(super) fn apply_share(self: &Arc<Self>, session: SessionId, effects: Vec<ShareEffect>) {
        for effect in effects {
            match effect {
                ShareEffect::Session(effect) => self.apply(vec![effect]),
                ShareEffect::Participant(notice) => self.command(
                    notice.terminal,
                    TerminalCommand::Participant(rdhost_rdp::Participant {
                        participant_id: notice.participant_id,
                        group_id: notice.group_id,
                        may_view: notice.may_view,
                        may_interact: notice.may_interact,
                        is_participant: notice.is_participant,
                        name: notice.name,
                    }),
                ),
                ShareEffect::Pause { paused } => {
                    for terminal in self.attendee_terminals(session) {
                        self.command(terminal, TerminalCommand::Pause(paused));
                    }
                }
                ShareEffect::PauseTerminal { terminal } => self.command(terminal, TerminalCommand::Pause(true)),
                // A terminal's showing is built with its sharing's rectangle: its Show brings it.
                ShareEffect::RegionTerminal { .. } => {}
                ShareEffect::ParticipantRemoved(notice) => self.command(
                    notice.terminal,
                    TerminalCommand::ParticipantRemoved { participant_id: notice.participant_id, disc_type: notice.reason.code() },
                ),
                // Each attendee gets a feed of the new rectangle (a reactivation when its size changes).
                ShareEffect::Region(_) => {
                    for terminal in self.attendee_terminals(session) {
                        self.show(terminal, session);
                    }
                }
            }
        }
    }

    fn attendee_terminals(&self, session: SessionId) -> Vec<TerminalId> {
        self.lock().sharings.get(&session).map(|s| s.attendees().map(|a| a.terminal).collect()).unwrap_or_default()
    }

    /// An attendee asked for a control level (MS-RDPEMC, on its own connection).
    pub(super) fn control_request(self: &Arc<Self>, terminal: TerminalId, view: bool, interact: bool) {
        let decided = self.with_state(|state| {
            let (session, sharing) = state.sharings.iter_mut().find(|(_, s)| s.attendee_of(terminal).is_some())?;
            Some((*session, sharing.control_request(&mut state.table, terminal, view, interact)))
        });
        if let Some((session, effects)) = decided {
            self.apply_share(session, effects);
        }
    }

    pub(super) fn publish_share(&self, events: Vec<(SessionId, ShareEvent)>) {
        let time = rfc3339(SystemTime::now());
        for (session, event) in events {
            let record = |name: &str| EventRecord { event: name.into(), session, time: time.clone(), ..EventRecord::default() };
            let record = match event {
                ShareEvent::AttendeeConnected { attendee } => EventRecord { attendee: Some(attendee_info(&attendee)), ..record("attendee-connected") },
                ShareEvent::AttendeeDisconnected { attendee, reason } => EventRecord {
                    attendee: Some(attendee_info(&attendee)),
                    reason: Some(reason.name().into()),
                    ..record("attendee-disconnected")
                },
                ShareEvent::AttendeeUpdated { attendee } => EventRecord { attendee: Some(attendee_info(&attendee)), ..record("attendee-updated") },
                ShareEvent::ControlLevelChangeRequested { attendee, requested } => EventRecord {
                    attendee: Some(attendee_info(&attendee)),
                    requested: Some(requested.name().into()),
                    ..record("control-level-change-requested")
                },
                ShareEvent::ConnectionFailed { addresses, reason } => {
                    EventRecord { addresses: Some(addresses), reason: Some(reason), ..record("connection-failed") }
                }
                ShareEvent::GraphicsPaused => record("graphics-paused"),
                ShareEvent::GraphicsResumed => record("graphics-resumed"),
                ShareEvent::SharedRectChanged { rect } => EventRecord { rect: rect.map(rect_info), ..record("shared-rect-changed") },
                ShareEvent::InvitationCreated { id, .. } => EventRecord { invitation: Some(id.0), ..record("invitation-created") },
                ShareEvent::InvitationRevoked { id } => EventRecord { invitation: Some(id.0), ..record("invitation-revoked") },
                ShareEvent::Closed => record("sharing-closed"),
            };
            info!(event = record.event, session, "sharing event");
            let _ = self.events.send(record);
        }
    }

    /// Which shared session a share request is about (the model decides): the sharer's only
    /// one, or the caller's own.
    fn shared_session(&self, caller: &Caller) -> Result<SessionId, ApiError> {
        let host_uid = nix::unistd::geteuid().as_raw();
        let sharing = self.lock().sharings.keys().next().copied();
        self.admission.driven_session(caller, host_uid, sharing).map_err(|refusal| match refusal {
            DriveRefusal::NotTheSharer => ApiError::new(5, "ERROR_ACCESS_DENIED", "only the user who shares this desktop may drive the sharing"),
            DriveRefusal::NoSession => ApiError::new(7022, "ERROR_CTX_WINSTATION_NOT_FOUND", "run this inside the rdhost session you want to share"),
            DriveRefusal::NotShared => not_shared(),
        })
    }

    /// The control API's Desktop Sharing requests.
    pub(super) async fn share_call(self: &Arc<Self>, caller: &Caller, request: Request) -> Result<Reply, ApiError> {
        let session = self.shared_session(caller)?;
        let done = Ok(Reply::Done { ok: true });
        let now = SystemTime::now;
        // Run `f` on the session's sharing, then carry out its effects.
        let act = |f: &mut dyn FnMut(&mut Sharing, &mut rdhost_model::SessionTable) -> Result<Vec<ShareEffect>, ShareError>| {
            let effects = self.with_state(|state| {
                let sharing = state.sharings.get_mut(&session).ok_or_else(not_shared)?;
                f(sharing, &mut state.table).map_err(share_error)
            })?;
            self.apply_share(session, effects);
            Ok::<_, ApiError>(())
        };
        match request {
            Request::ShareInfo => {
                let state = self.lock();
                let sharing = state.sharings.get(&session).ok_or_else(not_shared)?;
                let word = if sharing.is_closed() {
                    "closed"
                } else if sharing.paused() {
                    "paused"
                } else {
                    "open"
                };
                Ok(Reply::Sharing(SharingInfo {
                    session,
                    state: word.into(),
                    rect: sharing.rect().map(rect_info),
                    listeners: self.listeners().iter().map(|l| format!("{}:{}", l.name, l.port)).collect(),
                    attendees: sharing.attendees().count(),
                }))
            }
            Request::Invite { password, attendee_limit, group, policy } => {
                let policy = match policy {
                    None => SharingPolicy::default(),
                    Some(p) => {
                        let level = |text: &str| text.parse::<ControlLevel>().map_err(|e| ApiError::invalid(e.to_string()));
                        SharingPolicy::new(level(&p.default_level)?, level(&p.auto_grant)?).map_err(share_error)?
                    }
                };
                Ok(Reply::Invitation(self.create_invitation(session, password, attendee_limit, group, policy)?))
            }
            Request::Invitations => {
                let state = self.lock();
                let sharing = state.sharings.get(&session).ok_or_else(not_shared)?;
                Ok(Reply::Invitations(sharing.invitations().map(|i| self.invitation_info(sharing, i)).collect()))
            }
            Request::Revoke { invitation } => {
                act(&mut |sharing, _| sharing.revoke(InvitationId(invitation)).map(|()| Vec::new()))?;
                done
            }
            Request::Attendees => {
                let state = self.lock();
                let sharing = state.sharings.get(&session).ok_or_else(not_shared)?;
                Ok(Reply::Attendees(sharing.attendees().map(attendee_info).collect()))
            }
            Request::SetLevel { attendee, level } => {
                let level: ControlLevel = level.parse().map_err(|e: rdhost_model::UnknownControlLevel| ApiError::invalid(e.to_string()))?;
                act(&mut |sharing, table| sharing.set_level(table, AttendeeId(attendee), level))?;
                done
            }
            Request::Terminate { attendee } => {
                act(&mut |sharing, table| sharing.terminate(table, AttendeeId(attendee), now()))?;
                done
            }
            Request::Pause => {
                act(&mut |sharing, _| Ok(sharing.pause()))?;
                done
            }
            Request::Resume => {
                act(&mut |sharing, _| Ok(sharing.resume()))?;
                done
            }
            Request::CloseSharing => {
                act(&mut |sharing, table| Ok(sharing.close(table, now())))?;
                if self.admission.forgets_closed_sharings() {
                    self.lock().sharings.remove(&session);
                }
                self.sharing_closed.send_replace(true);
                done
            }
            Request::SharedRect { rect } => {
                let size = match self.desktop_of(session).await {
                    Some(live) => live.desktop.canvas().size(),
                    None => return Err(not_shared()),
                };
                let rect = rect.map(|r| SharedRect { left: r.left, top: r.top, right: r.right, bottom: r.bottom });
                act(&mut |sharing, _| sharing.set_rect(rect, (size.width, size.height)))?;
                done
            }
            Request::ConnectToClient { connection_string } => self.connect_to_client(session, &connection_string).await,
            other => Err(ApiError::invalid(format!("not a sharing request: {:?}", other.for_log()))),
        }
    }

    /// `ConnectToClient`: dial each `<L>` of the viewer's string in turn; on the first socket
    /// that connects, serve the viewer (still the RDP client) as any attendee. Answers once it
    /// is admitted, or with every address tried and why.
    async fn connect_to_client(self: &Arc<Self>, session: SessionId, text: &str) -> Result<Reply, ApiError> {
        let parsed = ConnectionString::parse(text).map_err(|e| ApiError::invalid(format!("the viewer's connection string: {e}")))?;
        if self.lock().sharings.get(&session).is_none_or(|s| s.is_closed()) {
            return Err(not_shared());
        }
        let mut tried = Vec::new();
        for listener in &parsed.listeners {
            let address = format!("{}:{}", listener.name, listener.port);
            let target = match listener.name.parse::<IpAddr>() {
                Ok(ip) => format!("{}", SocketAddr::new(ip, listener.port)),
                Err(_) => address.clone(),
            };
            let stream = match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(&target)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tried.push(format!("{address} ({e})"));
                    continue;
                }
                Err(_) => {
                    tried.push(format!("{address} (no answer within {}s)", DIAL_TIMEOUT.as_secs()));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, listener.port)));
            info!(%peer, "connect-to-client: connected, waiting for the viewer's RDP connection");
            let (report, admitted) = oneshot::channel();
            self.spawn_connection(stream, peer, Some(report));
            return match tokio::time::timeout(ADMISSION_TIMEOUT, admitted).await {
                Ok(Ok(Ok(attendee))) => {
                    let state = self.lock();
                    let info = state.sharings.get(&session).and_then(|s| s.attendee(attendee)).map(attendee_info);
                    info.map(Reply::Attendee).ok_or_else(|| ApiError::new(1236, "ERROR_CONNECTION_ABORTED", "the viewer left right after joining"))
                }
                Ok(Ok(Err(why))) => {
                    self.connection_failed(session, vec![address.clone()], why.clone());
                    Err(ApiError::new(1236, "ERROR_CONNECTION_ABORTED", format!("{address}: {why}")))
                }
                _ => {
                    let why = format!("the viewer at {address} did not complete its connection within {}s", ADMISSION_TIMEOUT.as_secs());
                    self.connection_failed(session, vec![address], why.clone());
                    Err(ApiError::new(1236, "ERROR_CONNECTION_ABORTED", why))
                }
            };
        }
        let why = "no address of the viewer's connection string could be reached".to_owned();
        warn!(tried = tried.join(", "), "connect-to-client failed");
        self.connection_failed(session, parsed.listeners.iter().map(|l| format!("{}:{}", l.name, l.port)).collect(), why.clone());
        Err(ApiError::new(1231, "ERROR_NETWORK_UNREACHABLE", format!("{why}; tried {}", tried.join(", "))))
    }

    fn connection_failed(&self, session: SessionId, addresses: Vec<String>, reason: String) {
        self.with_state(|state| {
            if let Some(sharing) = state.sharings.get_mut(&session) {
                sharing.connection_failed(addresses, reason);
            }
        });
    }

    /// Resolves when a sharing of this host was closed (`rdhost share close`).
    pub fn sharing_closed(&self) -> watch::Receiver<bool> {
        self.sharing_closed.subscribe()
    }
}
