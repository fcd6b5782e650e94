//! The host's state, held in one place: the session table (the model), each session's desktop
//! with its stage and message board, and each connected terminal. One lock guards it all, so
//! the model's decisions and what the wiring knows never disagree; the lock is never held
//! across an await.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rdhost_desktop::{Desktop, DesktopEnd, MessageBoard};
use rdhost_model::{
    Admission, AuthThrottle, CloseReason, ControlLevel, DisconnectReason, Effect, LogonError, LogonKind, Refusal, Role, SessionEvent, SessionId,
    SessionTable, Sharing, TerminalId, ThrottleConfig,
};
use rdhost_rdp::{
    AcceptConfig, Accepted, AuthFailure, Authenticate, ClientDetails, FeedProfile, Showing, Stage, TerminalCommand,
    TerminalEnd, TerminalStats, error_info,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::task::LocalPoolHandle;
use tracing::{debug, info, warn};

use super::memory::return_freed_memory;
use super::desktops::DesktopSource;
use super::gate::Gate;
use crate::auth::{AuthError, Authenticator, Identity};
use crate::config::ServeConfig;
use crate::control::protocol::{EventRecord, rfc3339};

/// Events kept for slow `rdhost events` readers before they are told they missed some.
const EVENT_BACKLOG: usize = 1024;

/// What a connection turned out to be once its credentials were looked at.
pub enum Admitted {
    User(Identity),
    /// A sharing attendee: the invitation's password is checked at admission, by the model.
    Attendee,
}

/// How a dialled connection (`connect-to-client`) ended its admission: the attendee's id, or why not.
pub(super) type AdmissionReport = oneshot::Sender<Result<rdhost_model::AttendeeId, String>>;

pub struct Host {
    state: Mutex<HostState>,
    pub(super) admission: Admission,
    /// IronRDP's acceptor futures are not Send: each connection lives on one pool thread.
    pool: LocalPoolHandle,
    next_terminal: AtomicU64,
    pub(super) authenticator: Arc<dyn Authenticator>,
    accept: AcceptConfig,
    desktop_source: DesktopSource,
    pub(super) shadow_policy: rdhost_model::ShadowPolicy,
    shadow_hotkey: rdhost_desktop::Hotkey,
    pub(super) control_socket: std::path::PathBuf,
    pub(super) events: broadcast::Sender<EventRecord>,
    /// Desktops and their watchers run on the main runtime, not on a connection's thread.
    runtime: tokio::runtime::Handle,
    /// Where attendees reach this host: the `<L>` entries of new invitations.
    pub(super) share_listeners: Mutex<Vec<rdhost_model::Listener>>,
    /// Set when a sharing is closed (the standalone sharer then exits).
    pub(super) sharing_closed: watch::Sender<bool>,
}

pub(super) struct HostState {
    pub table: SessionTable,
    throttle: AuthThrottle,
    pub desktops: HashMap<SessionId, DesktopSlot>,
    pub terminals: HashMap<TerminalId, TerminalSlot>,
    /// Sessions being shared (Desktop Sharing), by session.
    pub sharings: HashMap<SessionId, Sharing>,
}

/// A session's desktop: `None` while it starts; the sender goes when the session ends.
pub(super) struct DesktopSlot {
    pub ready: watch::Sender<Option<Arc<SessionDesktop>>>,
    /// A logoff arrived while the desktop was starting: end it as soon as it is up.
    terminate_when_ready: bool,
}

impl DesktopSlot {
    /// The slot of a desktop that already runs (the sharer's display).
    pub fn running(live: Arc<SessionDesktop>) -> Self {
        DesktopSlot { ready: watch::Sender::new(Some(live)), terminate_when_ready: false }
    }
}

/// A running desktop and what its terminals share: the stage (one encode per codec profile)
/// and the message board (boxes every terminal of the session sees).
pub(super) struct SessionDesktop {
    pub desktop: Arc<dyn Desktop>,
    pub stage: Stage,
    pub board: Arc<MessageBoard>,
}

pub(super) struct TerminalSlot {
    pub(super) commands: mpsc::Sender<TerminalCommand>,
    pub client: ClientDetails,
    pub stats: Arc<TerminalStats>,
    profile: FeedProfile,
    /// The gate of what it shows now.
    gate: Option<Arc<Gate>>,
}

impl Host {
    pub fn new(
        config: &ServeConfig,
        authenticator: Arc<dyn Authenticator>,
        accept: AcceptConfig,
        desktop_source: DesktopSource,
        admission: Admission,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        let mut policy = config.policy();
        if desktop_source.is_single_display() {
            // An existing display is one desktop, like the Windows console: one session shows it.
            policy.max_sessions = Some(1);
        }
        Arc::new(Self {
            state: Mutex::new(HostState {
                table: SessionTable::with_permissions(policy, config.permissions()),
                throttle: AuthThrottle::new(ThrottleConfig::default()),
                desktops: HashMap::new(),
                terminals: HashMap::new(),
                sharings: HashMap::new(),
            }),
            admission,
            pool: LocalPoolHandle::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
            next_terminal: AtomicU64::new(1),
            authenticator,
            accept,
            desktop_source,
            shadow_policy: config.shadow,
            shadow_hotkey: config.shadow_hotkey,
            control_socket: config.control_socket.clone(),
            events: broadcast::channel(EVENT_BACKLOG).0,
            runtime,
            share_listeners: Mutex::new(Vec::new()),
            sharing_closed: watch::Sender::new(false),
        })
    }

    /// Our certificate's public key (what invitations' KH is a hash of).
    pub(super) fn public_key(&self) -> &[u8] {
        &self.accept.public_key
    }

    pub(super) fn spawn_on_runtime(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    pub(super) fn desktop_kind(&self) -> &'static str {
        self.desktop_source.kind_name()
    }

    /// The state, locked. Never held across an await.
    pub(super) fn lock(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the state, then publish the session events it caused.
    pub(super) fn with_state<R>(&self, f: impl FnOnce(&mut HostState) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state);
        let events = state.table.drain_events();
        let share_events: Vec<_> = state.sharings.iter_mut().flat_map(|(id, s)| s.drain_events().into_iter().map(|e| (*id, e))).collect();
        drop(state);
        self.publish(events);
        self.publish_share(share_events);
        result
    }

    fn publish(&self, events: Vec<SessionEvent>) {
        let time = rfc3339(SystemTime::now());
        for event in events {
            debug!(?event, "session event");
            let record = |name: &str| EventRecord {
                event: name.into(),
                session: event.session(),
                time: time.clone(),
                ..EventRecord::default()
            };
            let record = match &event {
                SessionEvent::Create { .. } => record("create"),
                SessionEvent::Delete { .. } => record("delete"),
                SessionEvent::Connect { .. } => record("connect"),
                SessionEvent::Disconnect { .. } => record("disconnect"),
                SessionEvent::Logon { user, .. } => EventRecord { user: Some(user.clone()), ..record("logon") },
                SessionEvent::Logoff { user, .. } => EventRecord { user: Some(user.clone()), ..record("logoff") },
                SessionEvent::StateChange { from, to, .. } => EventRecord {
                    from: Some(from.wts_name().into()),
                    to: Some(to.wts_name().into()),
                    ..record("state-change")
                },
                SessionEvent::RemoteControl { .. } => record("remote-control"),
            };
            // Nobody listening is fine.
            let _ = self.events.send(record);
        }
    }

    /// Serve one client on a pool thread (the acceptor's futures are not Send).
    pub fn spawn_connection<S>(self: &Arc<Self>, stream: S, peer: SocketAddr, report: Option<AdmissionReport>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let host = Arc::clone(self);
        self.pool.spawn_pinned(move || async move { host.run_connection(stream, peer, report).await });
    }

    /// One client, from its first byte to its last. `report` (a dialled attendee) learns
    /// whether it was admitted.
    pub async fn run_connection<S>(self: Arc<Self>, stream: S, peer: SocketAddr, report: Option<AdmissionReport>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Hold every answer to an address that recently failed to log on, whatever the protocol.
        let delay = self.lock().throttle.delay(peer.ip(), Instant::now());
        if !delay.is_zero() {
            info!(%peer, ?delay, "holding the answer after earlier failures from this address");
            tokio::time::sleep(delay).await;
        }
        // "negotiate" offers NLA only while it can check every account the host would accept.
        let mut accept = self.accept.clone();
        if accept.security == rdhost_rdp::Security::Negotiate && !self.authenticator.nla_ready() {
            accept.security = rdhost_rdp::Security::Tls;
        }
        let Accepted { identity, terminal } = match rdhost_rdp::accept(stream, peer, &accept, &*self).await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Password failures are counted where the password is checked; NLA ones here.
                if let rdhost_rdp::AcceptError::AuthenticationFailed { via_nla: true, .. } = e {
                    self.lock().throttle.record_failure(peer.ip(), Instant::now());
                }
                warn!(%peer, "connection dropped: {e}");
                if let Some(report) = report {
                    let _ = report.send(Err(format!("the RDP connection failed: {e}")));
                }
                return;
            }
        };
        let identity = match identity {
            Admitted::User(identity) => identity,
            Admitted::Attendee => return self.run_attendee(terminal, peer, report).await,
        };
        let terminal_id = TerminalId(self.next_terminal.fetch_add(1, Ordering::Relaxed));
        let (commands, command_rx) = mpsc::channel(8);
        let slot = TerminalSlot {
            commands,
            client: terminal.client().clone(),
            stats: terminal.stats(),
            profile: terminal.feed_profile(),
            gate: None,
        };
        let decided = self.with_state(|state| {
            state.terminals.insert(terminal_id, slot);
            let logon = state.table.logon(&identity.user, terminal_id, terminal.client().pcb_id, SystemTime::now())?;
            if logon.kind == LogonKind::New {
                state.desktops.insert(logon.session, DesktopSlot { ready: watch::Sender::new(None), terminate_when_ready: false });
            }
            let effects = state.table.logon_effects(&logon, terminal_id);
            Ok::<_, LogonError>((logon, effects))
        });
        let (logon, effects) = match decided {
            Ok(decided) => decided,
            Err(e) => {
                self.lock().terminals.remove(&terminal_id);
                warn!(%peer, user = identity.user, "logon refused: {e}");
                let code = match e {
                    LogonError::NotYourSession(_) => error_info::SERVER_INSUFFICIENT_PRIVILEGES,
                    _ => error_info::SERVER_DENIED_CONNECTION,
                };
                terminal.refuse(code).await;
                return;
            }
        };
        // This terminal's own show is the one it starts with, not a command.
        self.apply(effects.into_iter().filter(|e| !matches!(e, Effect::Show { terminal, .. } if *terminal == terminal_id)).collect());
        if logon.kind == LogonKind::New {
            let host = Arc::clone(&self);
            let (size, layout, run_as) = (terminal.client().size, terminal.client().keyboard_layout, identity.run_as.clone());
            let session = logon.session;
            let client_address = peer.ip();
            self.runtime.spawn(async move { host.start_desktop(session, run_as, client_address, size, layout).await });
        }
        info!(%peer, user = identity.user, session = logon.session, kind = ?logon.kind, "terminal {} shows session {}", terminal_id.0, logon.session);

        self.show_until_gone(terminal, terminal_id, logon.session, command_rx, peer).await;
    }

    /// Run a terminal that the model has placed, until it ends; then tell the model.
    pub(super) async fn show_until_gone(
        self: &Arc<Self>,
        terminal: rdhost_rdp::Terminal,
        terminal_id: TerminalId,
        session: SessionId,
        command_rx: mpsc::Receiver<TerminalCommand>,
        peer: SocketAddr,
    ) {
        let end = match self.showing(terminal_id, session).await {
            Some(showing) => terminal.run(showing, command_rx).await,
            None => {
                terminal.refuse(error_info::SERVER_DENIED_CONNECTION).await;
                TerminalEnd::Disconnected { error_info: error_info::SERVER_DENIED_CONNECTION }
            }
        };
        // An attendee that went by itself left (CLI); one lost to an error is ERR.
        let why = match &end {
            TerminalEnd::ConnectionLost(_) => DisconnectReason::Err,
            _ => DisconnectReason::Cli,
        };
        let (shown, effects, share_effects) = self.with_state(|state| {
            state.terminals.remove(&terminal_id);
            let shown = state.table.shows(terminal_id).map(|(session, _)| session);
            let mut share_effects = Vec::new();
            for (id, sharing) in state.sharings.iter_mut() {
                if sharing.attendee_of(terminal_id).is_some() {
                    share_effects.push((*id, sharing.terminal_gone(&mut state.table, terminal_id, why, SystemTime::now())));
                }
            }
            (shown, state.table.terminal_gone(terminal_id, SystemTime::now()), share_effects)
        });
        for (session, effects) in share_effects {
            self.apply_share(session, effects);
        }
        self.apply(effects);
        let session = shown.map_or_else(|| "none".to_owned(), |s| s.to_string());
        match &end {
            TerminalEnd::ConnectionLost(why) => info!(%peer, %session, "terminal {} lost: {why}", terminal_id.0),
            other => info!(%peer, %session, "terminal {} ended: {other:?}", terminal_id.0),
        }
        // The terminal (and its feed) is gone by now.
        return_freed_memory();
    }

    /// Admit a sharing attendee (its ticket and password against the invitations, by the model),
    /// then show it the shared session at its control level.
    async fn run_attendee(self: Arc<Self>, terminal: rdhost_rdp::Terminal, peer: SocketAddr, report: Option<AdmissionReport>) {
        let terminal_id = TerminalId(self.next_terminal.fetch_add(1, Ordering::Relaxed));
        let (commands, command_rx) = mpsc::channel(8);
        let client = terminal.client().clone();
        let slot = TerminalSlot { commands, client: client.clone(), stats: terminal.stats(), profile: terminal.feed_profile(), gate: None };
        // xfreerdp's RA mode sends the user name given with /u: (often none): then the client's
        // computer name stands for the attendee.
        let name = if client.user.is_empty() { client.client_name.clone() } else { client.user.clone() };
        let decided = self.with_state(|state| {
            let ticket = client.working_dir.as_str();
            let Some(session) = self.admission.sharing_for_ticket(ticket, state.sharings.iter()) else { return Err(Refusal::UnknownTicket) };
            let sharing = state.sharings.get_mut(&session).expect("found above");
            let (attendee, effects) =
                sharing.admit(&mut state.table, ticket, &client.alternate_shell, &name, &peer.to_string(), terminal_id, SystemTime::now())?;
            state.terminals.insert(terminal_id, slot);
            Ok((session, attendee, effects))
        });
        let (session, attendee, effects) = match decided {
            Ok(decided) => decided,
            Err(refusal) => {
                warn!(%peer, attendee = name, ticket_len = client.working_dir.len(), "attendee refused: {refusal}");
                if matches!(refusal, Refusal::WrongPassword(_) | Refusal::UnknownTicket) {
                    self.lock().throttle.record_failure(peer.ip(), Instant::now());
                }
                if let Some(report) = report {
                    let _ = report.send(Err(format!("the viewer was refused: {refusal}")));
                }
                terminal.refuse(refusal.error_info()).await;
                return;
            }
        };
        info!(%peer, attendee = name, session, "attendee {} joined as terminal {}", attendee.0, terminal_id.0);
        // Its own show is the one it starts with, not a command.
        let (own, others): (Vec<_>, Vec<_>) = effects
            .into_iter()
            .partition(|e| matches!(e, rdhost_model::ShareEffect::Session(Effect::Show { terminal, .. }) if *terminal == terminal_id));
        drop(own);
        // Commands for this terminal (its participant notice, a pause) wait in its queue until it runs.
        self.apply_share(session, others);
        if let Some(report) = report {
            let _ = report.send(Ok(attendee));
        }
        self.show_until_gone(terminal, terminal_id, session, command_rx, peer).await;
    }

    /// Start the desktop of a new session, publish it to whoever waits, and watch it for its end.
    async fn start_desktop(
        self: Arc<Self>,
        session: SessionId,
        run_as: Option<crate::auth::SystemUser>,
        client_address: std::net::IpAddr,
        size: rdhost_desktop::Size,
        layout: rdhost_desktop::KeyboardLayout,
    ) {
        let started =
            self.desktop_source.start(session, run_as.as_ref(), Some(client_address), size, layout, &self.control_socket).await;
        let desktop = match started {
            Ok(desktop) => desktop,
            Err(e) => {
                warn!(session, "cannot start the session's desktop: {e:#}");
                let effects = self.with_state(|state| {
                    state.desktops.remove(&session);
                    state.table.desktop_failed_effects(session)
                });
                self.apply(effects);
                return;
            }
        };
        let live = Arc::new(SessionDesktop {
            stage: Stage::new(Arc::clone(desktop.canvas())),
            board: MessageBoard::new(Arc::clone(desktop.canvas())),
            desktop: Arc::clone(&desktop),
        });
        self.runtime.spawn(live.board.follow_resizes());
        let terminate = self.with_state(|state| {
            if let Err(e) = state.table.desktop_ready(session, SystemTime::now()) {
                warn!(session, "session table disagrees after desktop start: {e}");
            }
            let slot = state.desktops.get_mut(&session)?;
            slot.ready.send_replace(Some(Arc::clone(&live)));
            Some(slot.terminate_when_ready)
        });
        match terminate {
            None => desktop.terminate(), // the session went while its desktop started
            Some(true) => desktop.terminate(),
            Some(false) => {}
        }
        self.watch_desktop(session, desktop).await;
    }

    /// When a desktop ends, its session ends, and the terminals showing it are told why.
    async fn watch_desktop(self: Arc<Self>, session: SessionId, desktop: Arc<dyn Desktop>) {
        let mut ended = desktop.ended();
        let reason = match ended.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().expect("waited for Some"),
            Err(_) => DesktopEnd::Failed("desktop vanished".into()),
        };
        self.desktop_source.session_ended(session);
        let natural = match &reason {
            DesktopEnd::UserLoggedOff => CloseReason::LoggedOffBySelf,
            DesktopEnd::Terminated => CloseReason::LoggedOffByOther,
            DesktopEnd::Failed(_) => CloseReason::DisplayFailed,
        };
        info!(session, ?reason, "session ended");
        let effects = self.with_state(|state| {
            state.desktops.remove(&session);
            state.table.end_effects(session, natural, SystemTime::now())
        });
        self.apply(effects);
        // The desktop's canvas, stage and capture buffers go with the last reference; the
        // connection's trim has long passed by then (see `memory`).
        drop(desktop);
        return_freed_memory();
    }

    /// The running desktop of `session`, waiting while it starts; `None` if it never will.
    pub(super) async fn desktop_of(&self, session: SessionId) -> Option<Arc<SessionDesktop>> {
        let mut ready = self.lock().desktops.get(&session)?.ready.subscribe();
        let desktop = ready.wait_for(Option::is_some).await.ok()?.clone();
        desktop
    }

    /// What `terminal` needs to show `session`, in the role the model gives it, once that desktop
    /// runs. `None` when the session went away, or the model moved the terminal elsewhere.
    async fn showing(self: &Arc<Self>, terminal: TerminalId, session: SessionId) -> Option<Showing> {
        let live = self.desktop_of(session).await?;
        self.build_showing(&mut self.lock(), terminal, session, &live)
    }

    /// Build the showing under the state lock, so that it agrees with the model at this moment.
    fn build_showing(self: &Arc<Self>, state: &mut HostState, terminal: TerminalId, session: SessionId, live: &SessionDesktop) -> Option<Showing> {
        // The model may have moved the terminal meanwhile (then a newer Show follows), or changed
        // its level (then its current role counts).
        let (shown, role) = state.table.shows(terminal)?;
        if shown != session {
            return None;
        }
        // A shadowing terminal still belongs to its own session: the client keeps that id.
        let session_id = match role {
            Role::Primary => session,
            Role::Viewer(_) => state.table.session_of(terminal).unwrap_or(session),
        };
        let host = Arc::downgrade(self);
        let on_hotkey = Box::new(move || {
            if let Some(host) = host.upgrade() {
                let effects = host.with_state(|state| state.table.stop_shadow_of_terminal(terminal, SystemTime::now()));
                host.apply(effects);
            }
        });
        // A sharing attendee sees only the shared rectangle, and its pointer lands inside it.
        let region = state.sharings.get(&session).filter(|s| s.attendee_of(terminal).is_some()).and_then(|s| s.rect());
        let offset = region.map_or((0, 0), |r| (r.left, r.top));
        let host = Arc::downgrade(self);
        let on_request = Box::new(move |view: bool, interact: bool| {
            if let Some(host) = host.upgrade() {
                host.control_request(terminal, view, interact);
            }
        });
        let gate = Gate::new(Arc::clone(&live.desktop), Arc::clone(&live.board), role, self.shadow_hotkey, on_hotkey)
            .with_sharing(offset, on_request);
        let slot = state.terminals.get_mut(&terminal)?;
        slot.gate = Some(Arc::clone(&gate));
        let profile = slot.profile.with_region(region.map(|r| rdhost_desktop::Rect::new(r.left, r.top, r.right - r.left, r.bottom - r.top)));
        let mut feed = live.stage.feed(profile);
        // An attendee at control level none is sent no graphics.
        feed.set_hidden(role == Role::Viewer(ControlLevel::None));
        Some(Showing { session_id, feed, cursor: live.desktop.cursor(), input: gate })
    }

    /// Carry out the model's decisions.
    pub(super) fn apply(self: &Arc<Self>, effects: Vec<Effect>) {
        for effect in effects {
            debug!(?effect, "carrying out");
            match effect {
                Effect::Show { terminal, session, .. } => self.show(terminal, session),
                Effect::SetLevel { terminal, level } => {
                    let (gate, session) = {
                        let state = self.lock();
                        (state.terminals.get(&terminal).and_then(|t| t.gate.clone()), state.table.shows(terminal).map(|(s, _)| s))
                    };
                    if let Some(gate) = gate {
                        let before = gate.set_role(Role::Viewer(level));
                        // Seeing the screen or not is the feed's business: give it a new one.
                        if let Some(session) = session
                            && before.sees_screen() != level.sees_screen()
                        {
                            self.show(terminal, session);
                        }
                    }
                }
                Effect::Close { terminal, reason } => self.command(terminal, TerminalCommand::Disconnect { error_info: reason.error_info() }),
                Effect::Terminate { session } => {
                    let desktop = {
                        let mut state = self.lock();
                        match state.desktops.get_mut(&session) {
                            Some(slot) => {
                                let live = slot.ready.borrow().clone();
                                if live.is_none() {
                                    slot.terminate_when_ready = true;
                                }
                                live
                            }
                            None => None,
                        }
                    };
                    if let Some(live) = desktop {
                        live.desktop.terminate();
                    }
                }
                Effect::Follow { session: _, terminal: Some(terminal) } => {
                    if let Some(gate) = self.lock().terminals.get(&terminal).and_then(|t| t.gate.clone()) {
                        gate.lead();
                    }
                }
                Effect::Follow { terminal: None, .. } => {}
            }
        }
    }

    /// Send `terminal` what it needs to show `session` (once that desktop runs), as the model says.
    pub(super) fn show(self: &Arc<Self>, terminal: TerminalId, session: SessionId) {
        let host = Arc::clone(self);
        self.runtime.spawn(async move {
            let Some(live) = host.desktop_of(session).await else { return };
            // Built and sent under one lock: Shows reach a terminal in the model's order.
            let mut state = host.lock();
            let Some(showing) = host.build_showing(&mut state, terminal, session, &live) else { return };
            if let Some(slot) = state.terminals.get(&terminal)
                && slot.commands.try_send(TerminalCommand::Show(showing)).is_err()
            {
                // A terminal whose commands back up is about to end on its own.
                debug!(terminal = terminal.0, "terminal not taking commands");
            }
        });
    }

    pub(super) fn command(&self, terminal: TerminalId, command: TerminalCommand) {
        let sender = self.lock().terminals.get(&terminal).map(|t| t.commands.clone());
        if let Some(sender) = sender {
            // A terminal that is not taking commands is about to end on its own.
            if sender.try_send(command).is_err() {
                debug!(terminal = terminal.0, "terminal not taking commands");
            }
        }
    }

    /// Tell every client the host is going away and end every session.
    pub async fn shutdown(&self) {
        let (terminals, desktops): (Vec<_>, Vec<_>) = {
            let state = self.lock();
            (
                state.terminals.values().map(|t| t.commands.clone()).collect(),
                state.desktops.values().filter_map(|d| d.ready.borrow().clone()).collect(),
            )
        };
        for sender in terminals {
            let _ = sender.try_send(TerminalCommand::Disconnect { error_info: error_info::SERVER_SHUTDOWN });
        }
        for live in &desktops {
            live.desktop.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for live in desktops {
            let mut ended = live.desktop.ended();
            while ended.borrow_and_update().is_none() && Instant::now() < deadline {
                let _ = tokio::time::timeout(Duration::from_millis(200), ended.changed()).await;
            }
        }
        // Let the goodbye PDUs reach the clients.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Authenticate for Host {
    type Identity = Admitted;

    fn nt_hash(&self, user: &str) -> Option<[u8; 16]> {
        self.authenticator.nt_hash(user)
    }

    fn nla_accounts(&self) -> Vec<(String, [u8; 16])> {
        self.authenticator.nla_accounts()
    }

    async fn identity_after_nla(&self, client: &ClientDetails) -> Result<Admitted, AuthFailure> {
        self.identity_after_nla_inner(client).await.map(Admitted::User)
    }

    async fn authenticate(&self, client: &ClientDetails, password: &str) -> Result<Admitted, AuthFailure> {
        // An invitation's ticket (Client Info WorkingDir) makes an attendee: its password travels
        // in AlternateShell and is checked at admission, where the refusal reaches the client.
        if self.admission.is_attendee(&client.working_dir, self.lock().sharings.values()) {
            return Ok(Admitted::Attendee);
        }
        self.authenticate_inner(client, password).await.map(Admitted::User)
    }
}

impl Host {
    async fn identity_after_nla_inner(&self, client: &ClientDetails) -> Result<Identity, AuthFailure> {
        let authenticator = Arc::clone(&self.authenticator);
        let u = client.user.clone();
        let result = tokio::task::spawn_blocking(move || authenticator.identity_after_nla(&u))
            .await
            .unwrap_or_else(|e| Err(AuthError::Backend(format!("authenticator panicked: {e}"))));
        result.map_err(|e| {
            warn!(peer = %client.peer, user = client.user, "NLA logon refused: {e}");
            AuthFailure(e.to_string())
        })
    }

    async fn authenticate_inner(&self, client: &ClientDetails, password: &str) -> Result<Identity, AuthFailure> {
        let peer = client.peer;
        let result = self.check_password(&client.user, client.domain.as_deref(), password).await;
        match result {
            Ok(identity) => {
                self.lock().throttle.record_success(peer.ip());
                Ok(identity)
            }
            Err(e) => {
                self.lock().throttle.record_failure(peer.ip(), Instant::now());
                warn!(%peer, user = client.user, "authentication failed: {e}");
                Err(AuthFailure(e.to_string()))
            }
        }
    }
}

impl Host {
    /// Check a password off the async threads (PAM and argon2 take their time).
    pub(super) async fn check_password(&self, user: &str, domain: Option<&str>, password: &str) -> Result<Identity, AuthError> {
        let authenticator = Arc::clone(&self.authenticator);
        let (u, d, p) = (user.to_owned(), domain.map(str::to_owned), password.to_owned());
        tokio::task::spawn_blocking(move || authenticator.authenticate(&u, d.as_deref(), &p))
            .await
            .unwrap_or_else(|e| Err(AuthError::Backend(format!("authenticator panicked: {e}"))))
    }
}
