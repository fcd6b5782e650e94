//! The session table: which sessions exist, which terminals are attached to each, and the rules
//! for logon, reconnect, disconnect, logoff and viewer attachments (spec.md §1.4).
//!
//! Vocabulary (DESIGN.md): a *session* is one logged-on user's desktop and processes; a
//! *terminal* is one connected client. A session has at most one *primary* terminal (its size
//! and keyboard layout drive the desktop) and any number of *viewer attachments*, each with a
//! *control level*. A terminal shows at most one session. Disconnecting detaches the primary
//! and leaves the session running; logoff ends the session.
//!
//! Invariants kept by every operation (checked after each step in the tests):
//! - a terminal is the primary of at most one session and a viewer of at most one session;
//! - it is both only while its session shadows: state Shadow, `shadowing` names the session it
//!   views, and it is among that session's viewers;
//! - a session's primary is never also one of its own viewers.
//!
//! Operations decide first and mutate after: a refused operation changes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::SystemTime;

use crate::effect::{CloseReason, ControlLevel, Effect, Role};
use crate::permissions::Permissions;
use crate::wts::WtsError;

/// Session ids are per host, start at 1 and are never reused while the process lives.
pub type SessionId = u32;

/// One connected client (an RDP connection). Allocated by the wiring; opaque here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId(pub u64);

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", self.0)
    }
}

/// `WTS_CONNECTSTATE_CLASS`: the variant order is the WTS ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// User logged on and attached to a terminal.
    Active,
    /// Terminal attached, no user logged on yet.
    Connected,
    /// In the process of connecting to the client.
    ConnectQuery,
    /// This session is shadowing another: its terminal shows that session's screen.
    Shadow,
    /// User logged on, no terminal attached; the session keeps running.
    Disconnected,
    /// Waiting for a client to connect.
    Idle,
    /// A listener; never a user's session.
    Listen,
    /// Being logged off.
    Reset,
    /// Down due to an error.
    Down,
    /// Initializing: the desktop is starting.
    Init,
}

impl SessionState {
    /// All states in WTS ordinal order.
    pub const ALL: [SessionState; 10] = [
        Self::Active,
        Self::Connected,
        Self::ConnectQuery,
        Self::Shadow,
        Self::Disconnected,
        Self::Idle,
        Self::Listen,
        Self::Reset,
        Self::Down,
        Self::Init,
    ];

    /// The `WTS_CONNECTSTATE_CLASS` value (WTSActive = 0 … WTSInit = 9).
    pub fn as_wts(self) -> u32 {
        match self {
            Self::Active => 0,
            Self::Connected => 1,
            Self::ConnectQuery => 2,
            Self::Shadow => 3,
            Self::Disconnected => 4,
            Self::Idle => 5,
            Self::Listen => 6,
            Self::Reset => 7,
            Self::Down => 8,
            Self::Init => 9,
        }
    }

    /// Inverse of [`as_wts`](Self::as_wts).
    pub fn from_wts(value: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(value).ok()?).copied()
    }

    /// The `WTS_CONNECTSTATE_CLASS` name without its `WTS` prefix (`Active`, `ConnectQuery`,
    /// `Disconnected`, …): what the control API's JSON says.
    pub fn wts_name(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Connected => "Connected",
            Self::ConnectQuery => "ConnectQuery",
            Self::Shadow => "Shadow",
            Self::Disconnected => "Disconnected",
            Self::Idle => "Idle",
            Self::Listen => "Listen",
            Self::Reset => "Reset",
            Self::Down => "Down",
            Self::Init => "Init",
        }
    }

    /// The word `qwinsta` prints in its STATE column.
    pub fn qwinsta_word(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Connected => "Conn",
            Self::ConnectQuery => "ConnQ",
            Self::Shadow => "Shadow",
            Self::Disconnected => "Disc",
            Self::Idle => "Idle",
            Self::Listen => "Listen",
            Self::Reset => "Reset",
            Self::Down => "Down",
            Self::Init => "Init",
        }
    }

    /// The session is being torn down: nobody may connect to it any more.
    pub fn is_ending(self) -> bool {
        matches!(self, Self::Reset | Self::Down)
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.qwinsta_word())
    }
}

/// A terminal watching a session that is not its own: a shadowing session's terminal or a
/// sharing attendee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub terminal: TerminalId,
    pub level: ControlLevel,
    /// When it attached.
    pub since: SystemTime,
}

/// One logged-on user's desktop and processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user: String,
    pub state: SessionState,
    /// The session's own terminal, if one is attached. It shows this session, except while the
    /// session is Shadow: then it shows [`shadowing`](Self::shadowing)'s screen as a viewer.
    pub primary: Option<TerminalId>,
    /// Further terminals watching this session, in the order they attached.
    pub viewers: Vec<Viewer>,
    /// While Shadow: the session whose screen the primary terminal shows.
    pub shadowing: Option<SessionId>,
    /// When the session was created; updated to when its desktop became ready (logon completed).
    pub logon_time: SystemTime,
    /// When a primary terminal last attached.
    pub connect_time: Option<SystemTime>,
    /// When a primary terminal last detached.
    pub disconnect_time: Option<SystemTime>,
}

/// Host-wide session policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Windows default (`fSingleSessionPerUser`): a user logging on again takes over their
    /// running session instead of getting a second one.
    pub single_session_per_user: bool,
    /// Upper bound on concurrent sessions (all users, all states); `None` = unlimited.
    pub max_sessions: Option<usize>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            single_session_per_user: true,
            max_sessions: None,
        }
    }
}

/// Whether a logon created a session or attached to an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogonKind {
    /// A new session in state Init: the wiring starts its desktop, then calls
    /// [`SessionTable::desktop_ready`] or [`SessionTable::desktop_failed`].
    New,
    /// An existing session now shown on this terminal.
    Reconnect,
}

/// The decision for a logon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logon {
    pub session: SessionId,
    pub kind: LogonKind,
    /// The terminal that was showing this session and is now replaced: it gets
    /// `ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION` and is closed. It is attached to nothing any
    /// more, so its later [`SessionTable::terminal_gone`] changes nothing.
    pub displaced: Option<TerminalId>,
}

/// Why a logon was refused. Messages are for logs; what a client learns is the wiring's choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogonError {
    #[error("session {0} does not exist")]
    SessionNotFound(SessionId),
    /// The requested session belongs to someone else. Callers must not tell the client whose.
    #[error("session {0} belongs to another user; refused")]
    NotYourSession(SessionId),
    #[error("session {0} is being logged off; try again without a session id")]
    SessionEnding(SessionId),
    #[error("the host already runs its maximum number of sessions")]
    TooManySessions,
}

/// Misuse of the table by the wiring (an operation that does not fit the session's state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("no session {0}")]
    NoSuchSession(SessionId),
    #[error("session {id} is {state}, expected {expected}")]
    WrongState {
        id: SessionId,
        state: SessionState,
        expected: SessionState,
    },
}

/// A session that was removed by [`SessionTable::end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Final snapshot (state Reset), with the primary and viewers that were attached.
    pub session: Session,
    /// The terminal that was showing it: tell it why (e.g. `ERRINFO_LOGOFF_BY_USER`) and close it.
    pub terminal: Option<TerminalId>,
}

/// WTS-style notifications (`WTS_EVENT_*` / `WM_WTSSESSION_CHANGE`) produced by table operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Create {
        id: SessionId,
    },
    Delete {
        id: SessionId,
    },
    Connect {
        id: SessionId,
        terminal: TerminalId,
    },
    Disconnect {
        id: SessionId,
        terminal: TerminalId,
    },
    Logon {
        id: SessionId,
        user: String,
    },
    Logoff {
        id: SessionId,
        user: String,
    },
    StateChange {
        id: SessionId,
        from: SessionState,
        to: SessionState,
    },
    /// A shadow of or by this session started or stopped (`WTS_SESSION_REMOTE_CONTROL` 0x9);
    /// both the shadowing and the shadowed session get one.
    RemoteControl {
        id: SessionId,
    },
}

impl SessionEvent {
    pub fn session(&self) -> SessionId {
        match self {
            Self::Create { id }
            | Self::Delete { id }
            | Self::Connect { id, .. }
            | Self::Disconnect { id, .. }
            | Self::Logon { id, .. }
            | Self::Logoff { id, .. }
            | Self::StateChange { id, .. }
            | Self::RemoteControl { id } => *id,
        }
    }

    /// The `WTS_EVENT_*` bit for `WTSWaitSystemEvent` masks. Remote control has no bit of its
    /// own there; it changes the shadowing session's state, so it counts as STATECHANGE.
    pub fn wts_event_flag(&self) -> u32 {
        match self {
            Self::Create { .. } => 0x1,
            Self::Delete { .. } => 0x2,
            Self::Connect { .. } => 0x8,
            Self::Disconnect { .. } => 0x10,
            Self::Logon { .. } => 0x20,
            Self::Logoff { .. } => 0x40,
            Self::StateChange { .. } | Self::RemoteControl { .. } => 0x80,
        }
    }
}

/// Events kept for [`SessionTable::drain_events`]; beyond this the oldest are dropped, so a
/// consumer that never drains cannot make the table grow.
pub const EVENT_QUEUE_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) session: Session,
    /// The desktop became ready at least once: a logoff is reported as WTS LOGOFF.
    pub(crate) logged_on: bool,
    /// Set by a logoff/reset request: what the primary is told when the desktop has ended.
    pub(crate) logoff_reason: Option<CloseReason>,
}

/// Which terminal each session's desktop follows, to report changes as [`Effect::Follow`].
pub(crate) type FollowMap = BTreeMap<SessionId, Option<TerminalId>>;

/// All sessions of this host and the terminals attached to them.
#[derive(Debug)]
pub struct SessionTable {
    pub(crate) policy: Policy,
    pub(crate) permissions: Permissions,
    pub(crate) sessions: BTreeMap<SessionId, Entry>,
    /// `None` once the u32 id space is used up (ids are never reused).
    pub(crate) next_id: Option<SessionId>,
    events: VecDeque<SessionEvent>,
    events_dropped: u64,
}

impl SessionTable {
    /// A table whose WTS operations use the default [`Permissions`] (no admin group, no grants).
    pub fn new(policy: Policy) -> Self {
        Self::with_permissions(policy, Permissions::default())
    }

    /// A table whose WTS operations check callers against `permissions`.
    pub fn with_permissions(policy: Policy, permissions: Permissions) -> Self {
        Self {
            policy,
            permissions,
            sessions: BTreeMap::new(),
            next_id: Some(1),
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Replace the permission rules (configuration reload); later operations use them.
    pub fn set_permissions(&mut self, permissions: Permissions) {
        self.permissions = permissions;
    }

    /// A user authenticated on `terminal`: decide which session it shows.
    ///
    /// `requested` is the client's pre-connection id (`xfreerdp /pcid:ID`). Without one, the
    /// user's most recently disconnected session wins; else, under single-session policy, their
    /// running session is taken over; else a new session is created (state Init).
    /// If `terminal` was showing another session, that session is disconnected (keeps running).
    /// A takeover works the same whether the desktop is up or still starting: the new terminal
    /// becomes the primary and the displaced one is attached to nothing.
    pub fn logon(
        &mut self,
        user: &str,
        terminal: TerminalId,
        requested: Option<SessionId>,
        now: SystemTime,
    ) -> Result<Logon, LogonError> {
        // Decide first, mutate after: a refused logon changes nothing.
        let target = match requested {
            Some(id) => {
                let entry = self
                    .sessions
                    .get(&id)
                    .ok_or(LogonError::SessionNotFound(id))?;
                if entry.session.user != user {
                    return Err(LogonError::NotYourSession(id));
                }
                if entry.session.state.is_ending() {
                    return Err(LogonError::SessionEnding(id));
                }
                Some(id)
            }
            None => self.pick_existing(user),
        };
        let current = self.session_of(terminal);

        let Some(id) = target else {
            if let Some(max) = self.policy.max_sessions
                && self.sessions.len() >= max
            {
                return Err(LogonError::TooManySessions);
            }
            let id = self.next_id.ok_or(LogonError::TooManySessions)?;
            self.next_id = id.checked_add(1);
            self.release(terminal, now);
            let session = Session {
                id,
                user: user.to_owned(),
                state: SessionState::Init,
                primary: Some(terminal),
                viewers: Vec::new(),
                shadowing: None,
                logon_time: now,
                connect_time: Some(now),
                disconnect_time: None,
            };
            self.sessions.insert(
                id,
                Entry {
                    session,
                    logged_on: false,
                    logoff_reason: None,
                },
            );
            self.push(SessionEvent::Create { id });
            self.push(SessionEvent::Connect { id, terminal });
            return Ok(Logon {
                session: id,
                kind: LogonKind::New,
                displaced: None,
            });
        };

        if current == Some(id) {
            // Logging on again on the terminal already showing it: nothing moves.
            return Ok(Logon {
                session: id,
                kind: LogonKind::Reconnect,
                displaced: None,
            });
        }
        self.release(terminal, now);
        let displaced = self.attach(id, terminal, now);
        Ok(Logon {
            session: id,
            kind: LogonKind::Reconnect,
            displaced,
        })
    }

    /// What the wiring does for a logon decision: close the displaced terminal (0x5), show the
    /// session on `terminal` as its primary, and let its desktop follow that terminal.
    /// The wiring's terminals log on once, on a terminal that showed nothing before.
    pub fn logon_effects(&self, logon: &Logon, terminal: TerminalId) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Some(displaced) = logon.displaced {
            effects.push(Effect::Close {
                terminal: displaced,
                reason: CloseReason::ReplacedByOtherConnection,
            });
        }
        effects.push(Effect::Show {
            terminal,
            session: logon.session,
            role: Role::Primary,
        });
        effects.push(Effect::Follow {
            session: logon.session,
            terminal: self.follows(logon.session),
        });
        effects
    }

    /// A session for a desktop that already exists with its user at it (the display a sharer
    /// shares): no primary terminal, and Active at once, since there is no desktop to start.
    /// Reported as a logon whose desktop is ready: Create, Logon, StateChange Init → Active.
    /// Attendees attach to it as viewers. Refused like a new logon when the host runs its
    /// maximum number of sessions.
    pub fn open_console(&mut self, user: &str, now: SystemTime) -> Result<SessionId, LogonError> {
        if let Some(max) = self.policy.max_sessions
            && self.sessions.len() >= max
        {
            return Err(LogonError::TooManySessions);
        }
        let id = self.next_id.ok_or(LogonError::TooManySessions)?;
        self.next_id = id.checked_add(1);
        let session = Session {
            id,
            user: user.to_owned(),
            state: SessionState::Active,
            primary: None,
            viewers: Vec::new(),
            shadowing: None,
            logon_time: now,
            connect_time: None,
            disconnect_time: None,
        };
        self.sessions.insert(
            id,
            Entry {
                session,
                logged_on: true,
                logoff_reason: None,
            },
        );
        self.push(SessionEvent::Create { id });
        self.push(SessionEvent::Logon {
            id,
            user: user.to_owned(),
        });
        self.push(SessionEvent::StateChange {
            id,
            from: SessionState::Init,
            to: SessionState::Active,
        });
        Ok(id)
    }

    /// The session a user without a requested id gets, if an existing one.
    fn pick_existing(&self, user: &str) -> Option<SessionId> {
        let mine = || {
            self.sessions
                .values()
                .map(|e| &e.session)
                .filter(move |s| s.user == user && !s.state.is_ending())
        };
        // Detached sessions first (Disconnected, or Init whose terminal closed while the desktop
        // was starting): the most recently disconnected one.
        let detached = mine()
            .filter(|s| s.primary.is_none())
            .max_by_key(|s| (s.disconnect_time, s.id))
            .map(|s| s.id);
        if detached.is_some() || !self.policy.single_session_per_user {
            return detached;
        }
        // Single session per user: take over the one shown elsewhere (most recently connected).
        mine().max_by_key(|s| (s.connect_time, s.id)).map(|s| s.id)
    }

    /// Make `terminal` the primary of session `id`; returns the primary it replaces. A shadow the
    /// session was running ends (the replaced terminal was the one watching). The caller has
    /// released `terminal` from whatever it showed.
    pub(crate) fn attach(
        &mut self,
        id: SessionId,
        terminal: TerminalId,
        now: SystemTime,
    ) -> Option<TerminalId> {
        self.end_shadow(id);
        let entry = self
            .sessions
            .get_mut(&id)
            .expect("attach: caller checked the session exists");
        let s = &mut entry.session;
        let displaced = s.primary.replace(terminal);
        if displaced.is_some() {
            s.disconnect_time = Some(now);
        }
        s.connect_time = Some(now);
        let from = s.state;
        let to = match from {
            SessionState::Disconnected | SessionState::Shadow => SessionState::Active,
            other => other,
        };
        s.state = to;
        if let Some(old) = displaced {
            self.push(SessionEvent::Disconnect { id, terminal: old });
        }
        self.push(SessionEvent::Connect { id, terminal });
        if from != to {
            self.push(SessionEvent::StateChange { id, from, to });
        }
        displaced
    }

    /// Detach the primary of `id`, ending its shadow if it runs one; the session keeps running.
    /// Returns that terminal.
    pub(crate) fn detach(&mut self, id: SessionId, now: SystemTime) -> Option<TerminalId> {
        self.sessions.get(&id)?.session.primary?;
        self.end_shadow(id);
        let entry = self.sessions.get_mut(&id)?;
        let s = &mut entry.session;
        let terminal = s.primary.take()?;
        s.disconnect_time = Some(now);
        let from = s.state;
        let to = match from {
            SessionState::Active
            | SessionState::Connected
            | SessionState::ConnectQuery
            | SessionState::Shadow => SessionState::Disconnected,
            // Init stays Init until its desktop is ready (then becomes Disconnected);
            // ending sessions stay ending.
            other => other,
        };
        s.state = to;
        self.push(SessionEvent::Disconnect { id, terminal });
        if from != to {
            self.push(SessionEvent::StateChange { id, from, to });
        }
        Some(terminal)
    }

    /// End the shadow `shadower` runs, if any: its primary leaves the target's viewers and
    /// `shadowing` is cleared. The state is the caller's to set (Active when the terminal comes
    /// home, Disconnected when it goes away). Returns the target and the terminal.
    pub(crate) fn end_shadow(&mut self, shadower: SessionId) -> Option<(SessionId, TerminalId)> {
        let s = &mut self.sessions.get_mut(&shadower)?.session;
        let target = s.shadowing.take()?;
        let terminal = s
            .primary
            .expect("a shadowing session has its terminal attached");
        if let Some(t) = self.sessions.get_mut(&target) {
            t.session.viewers.retain(|v| v.terminal != terminal);
        }
        self.push(SessionEvent::RemoteControl { id: shadower });
        self.push(SessionEvent::RemoteControl { id: target });
        Some((target, terminal))
    }

    /// `shadower`'s terminal stops watching and shows its own session again: Shadow → Active.
    /// Returns that terminal, `None` if the session was not shadowing.
    pub(crate) fn return_home(&mut self, shadower: SessionId) -> Option<TerminalId> {
        let (_, terminal) = self.end_shadow(shadower)?;
        let s = &mut self.sessions.get_mut(&shadower)?.session;
        let from = s.state;
        s.state = SessionState::Active;
        if from != SessionState::Active {
            self.push(SessionEvent::StateChange {
                id: shadower,
                from,
                to: SessionState::Active,
            });
        }
        Some(terminal)
    }

    /// Undo every attachment of `terminal`: as a primary its session is detached (keeps
    /// running), as a viewer it is removed. Returns whether it was attached.
    pub(crate) fn release(&mut self, terminal: TerminalId, now: SystemTime) -> bool {
        if let Some(id) = self.session_of(terminal) {
            self.detach(id, now);
            return true;
        }
        if let Some((id, _)) = self.viewer_of(terminal) {
            if let Some(entry) = self.sessions.get_mut(&id) {
                entry.session.viewers.retain(|v| v.terminal != terminal);
            }
            return true;
        }
        false
    }

    /// The desktop of a new session is up: Init → Active, or Disconnected if its terminal
    /// already closed. Logon completes now.
    pub fn desktop_ready(&mut self, id: SessionId, now: SystemTime) -> Result<(), ModelError> {
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(ModelError::NoSuchSession(id))?;
        let s = &mut entry.session;
        if s.state != SessionState::Init {
            return Err(ModelError::WrongState {
                id,
                state: s.state,
                expected: SessionState::Init,
            });
        }
        let to = if s.primary.is_some() {
            SessionState::Active
        } else {
            SessionState::Disconnected
        };
        s.state = to;
        s.logon_time = now;
        entry.logged_on = true;
        let user = s.user.clone();
        self.push(SessionEvent::Logon { id, user });
        self.push(SessionEvent::StateChange {
            id,
            from: SessionState::Init,
            to,
        });
        Ok(())
    }

    /// The desktop could not start: the session is removed. The returned snapshot (state Down)
    /// still names the terminals that were waiting for it, which the wiring must tell and close
    /// (or use [`desktop_failed_effects`](Self::desktop_failed_effects)).
    pub fn desktop_failed(&mut self, id: SessionId) -> Option<Session> {
        self.remove(id, SessionState::Down, CloseReason::DisplayFailed, None)
            .map(|(session, _)| session)
    }

    /// [`desktop_failed`](Self::desktop_failed) as effects: every attached terminal is closed
    /// with [`CloseReason::DisplayFailed`].
    pub fn desktop_failed_effects(&mut self, id: SessionId) -> Vec<Effect> {
        self.remove(id, SessionState::Down, CloseReason::DisplayFailed, None)
            .map(|(_, effects)| effects)
            .unwrap_or_default()
    }

    /// A terminal went away (client disconnect, crash, timeout, protocol error). Its session, if
    /// it was a primary, goes Disconnected and keeps running; a viewer is removed. Returns the
    /// session it was attached to (its own one, for a shadowing terminal).
    pub fn terminal_closed(&mut self, terminal: TerminalId, now: SystemTime) -> Option<SessionId> {
        let id = self
            .session_of(terminal)
            .or_else(|| self.viewer_of(terminal).map(|(id, _)| id))?;
        self.terminal_gone(terminal, now);
        Some(id)
    }

    /// A terminal went away, in any role: a primary's session goes Disconnected (a shadow it ran
    /// ends, its viewer attachment with it); a viewer is removed. A terminal attached to nothing
    /// (e.g. one displaced by a takeover) changes nothing.
    pub fn terminal_gone(&mut self, terminal: TerminalId, now: SystemTime) -> Vec<Effect> {
        let before = self.follow_map();
        let mut effects = Vec::new();
        if self.release(terminal, now) {
            self.follow_changes(&before, &mut effects);
        }
        effects
    }

    /// Disconnect a session on request (`WTSDisconnectSession` / `tsdiscon`): returns the terminal
    /// to tell and close, `None` if none was attached.
    pub fn disconnect(
        &mut self,
        id: SessionId,
        now: SystemTime,
    ) -> Result<Option<TerminalId>, ModelError> {
        if !self.sessions.contains_key(&id) {
            return Err(ModelError::NoSuchSession(id));
        }
        Ok(self.detach(id, now))
    }

    /// A logoff was requested and the session's processes are being stopped: → Reset, so no one
    /// can reconnect to it meanwhile. Call [`end`](Self::end) once they are gone. Returns the
    /// terminal showing it (still attached until `end`). Idempotent.
    pub fn begin_logoff(&mut self, id: SessionId) -> Result<Option<TerminalId>, ModelError> {
        if !self.sessions.contains_key(&id) {
            return Err(ModelError::NoSuchSession(id));
        }
        self.mark_reset(id, None);
        Ok(self.sessions.get(&id).and_then(|e| e.session.primary))
    }

    /// → Reset (once), remembering why the primary will be closed at the end.
    pub(crate) fn mark_reset(&mut self, id: SessionId, reason: Option<CloseReason>) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.logoff_reason.is_none() {
            entry.logoff_reason = reason;
        }
        let s = &mut entry.session;
        if !s.state.is_ending() {
            let from = s.state;
            s.state = SessionState::Reset;
            self.push(SessionEvent::StateChange {
                id,
                from,
                to: SessionState::Reset,
            });
        }
    }

    /// Logoff or desktop exited: the session is removed. `Ended::terminal` is the terminal that
    /// was showing it (tell it, e.g. `ERRINFO_LOGOFF_BY_USER`, and close it). Shadowing
    /// terminals that watched it return to their own sessions.
    pub fn end(&mut self, id: SessionId, now: SystemTime) -> Option<Ended> {
        let (session, _) = self.remove(
            id,
            SessionState::Reset,
            CloseReason::LoggedOffBySelf,
            Some(now),
        )?;
        Some(Ended {
            terminal: session.primary,
            session,
        })
    }

    /// The session's desktop ended: the session is removed (as [`end`](Self::end)). The primary
    /// is closed with the reason a logoff/reset request left, else with `natural_reason` (what
    /// ended the desktop: its program exited, it failed); sharing viewers are closed alike;
    /// every shadowing terminal is shown its own session again.
    pub fn end_effects(
        &mut self,
        id: SessionId,
        natural_reason: CloseReason,
        now: SystemTime,
    ) -> Vec<Effect> {
        self.remove(id, SessionState::Reset, natural_reason, Some(now))
            .map(|(_, effects)| effects)
            .unwrap_or_default()
    }

    /// Remove session `id`, ending in state `to`. Returns its final snapshot (with the primary
    /// and viewers that were attached) and the effects for the terminals that were attached.
    fn remove(
        &mut self,
        id: SessionId,
        to: SessionState,
        natural_reason: CloseReason,
        now: Option<SystemTime>,
    ) -> Option<(Session, Vec<Effect>)> {
        let entry = self.sessions.get(&id)?;
        let reason = entry.logoff_reason.unwrap_or(natural_reason);
        let viewers = entry.session.viewers.clone();
        let before = self.follow_map();
        let mut effects = Vec::new();
        // It was watching another session: that attachment goes with it.
        self.end_shadow(id);
        let entry = self.sessions.get_mut(&id)?;
        let from = entry.session.state;
        entry.session.state = to;
        let primary = entry.session.primary;
        if primary.is_some()
            && let Some(now) = now
        {
            entry.session.disconnect_time = Some(now);
        }
        if from != to {
            self.push(SessionEvent::StateChange { id, from, to });
        }
        if let Some(terminal) = primary {
            self.push(SessionEvent::Disconnect { id, terminal });
            effects.push(Effect::Close { terminal, reason });
        }
        for viewer in &viewers {
            let terminal = viewer.terminal;
            match self.session_of(terminal) {
                // A shadowing terminal has a home to go back to.
                Some(home) if self.get(home).and_then(|s| s.shadowing) == Some(id) => {
                    self.return_home(home);
                    effects.push(Effect::Show {
                        terminal,
                        session: home,
                        role: Role::Primary,
                    });
                }
                _ => effects.push(Effect::Close { terminal, reason }),
            }
        }
        let Entry {
            mut session,
            logged_on,
            ..
        } = self.sessions.remove(&id)?;
        session.viewers = viewers;
        if logged_on {
            self.push(SessionEvent::Logoff {
                id,
                user: session.user.clone(),
            });
        }
        self.push(SessionEvent::Delete { id });
        self.follow_changes(&before, &mut effects);
        Some((session, effects))
    }

    // --- Viewer attachments -------------------------------------------------------------

    /// Attach `terminal` as a viewer of `session` at `level` (sharing attendees; shadowing uses
    /// [`start_shadow`](Self::start_shadow)). A session still starting may be watched (the
    /// viewer waits for the desktop). Attaching again to the same session changes the level.
    /// Refused: the session is missing or being logged off; the terminal is a primary, or
    /// already views another session (a terminal shows one session).
    pub fn attach_viewer(
        &mut self,
        terminal: TerminalId,
        session: SessionId,
        level: ControlLevel,
        now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        let s = self
            .get(session)
            .ok_or(WtsError::SessionNotFound(session))?;
        if s.state.is_ending() {
            return Err(WtsError::Busy(session));
        }
        if let Some(own) = self.session_of(terminal) {
            return Err(WtsError::InvalidParameter(format!(
                "terminal {terminal} is the primary terminal of session {own}"
            )));
        }
        match self.viewer_of(terminal) {
            Some((viewed, _)) if viewed == session => return self.set_level(terminal, level),
            Some((viewed, _)) => {
                return Err(WtsError::InvalidParameter(format!(
                    "terminal {terminal} already views session {viewed}"
                )));
            }
            None => {}
        }
        let entry = self.sessions.get_mut(&session).expect("checked above");
        entry.session.viewers.push(Viewer {
            terminal,
            level,
            since: now,
        });
        Ok(vec![Effect::Show {
            terminal,
            session,
            role: Role::Viewer(level),
        }])
    }

    /// Change a viewer's control level (shadowing terminals included). No effect when it
    /// already has that level; refused for a terminal that is no viewer.
    pub fn set_level(
        &mut self,
        terminal: TerminalId,
        level: ControlLevel,
    ) -> Result<Vec<Effect>, WtsError> {
        let (session, old) = self
            .viewer_of(terminal)
            .ok_or_else(|| not_a_viewer(terminal))?;
        if old == level {
            return Ok(Vec::new());
        }
        let entry = self.sessions.get_mut(&session).expect("viewer_of found it");
        for viewer in &mut entry.session.viewers {
            if viewer.terminal == terminal {
                viewer.level = level;
            }
        }
        Ok(vec![Effect::SetLevel { terminal, level }])
    }

    /// Detach a viewer on the host's decision (an attendee revoked, a shadower sent away): a
    /// sharing viewer is closed with `reason`; a shadowing terminal goes back to its own
    /// session instead (it has one).
    pub fn detach_viewer(
        &mut self,
        terminal: TerminalId,
        reason: CloseReason,
        now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        let (session, _) = self
            .viewer_of(terminal)
            .ok_or_else(|| not_a_viewer(terminal))?;
        if self.session_of(terminal).is_some() {
            return Ok(self.stop_shadow_of_terminal(terminal, now));
        }
        let entry = self.sessions.get_mut(&session).expect("viewer_of found it");
        entry.session.viewers.retain(|v| v.terminal != terminal);
        Ok(vec![Effect::Close { terminal, reason }])
    }

    // --- Reading ------------------------------------------------------------------------

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id).map(|e| &e.session)
    }

    /// Everything known about session `id` (the same as [`get`](Self::get); permission checks
    /// are [`query`](Self::query)'s).
    pub fn info(&self, id: SessionId) -> Option<&Session> {
        self.get(id)
    }

    /// The session `terminal` is the primary terminal of: its own session. While that session
    /// shadows, the terminal displays another one; see [`shows`](Self::shows).
    pub fn session_of(&self, terminal: TerminalId) -> Option<SessionId> {
        // Linear: session counts are hundreds at most, and one source of truth beats two.
        self.iter()
            .find(|s| s.primary == Some(terminal))
            .map(|s| s.id)
    }

    /// What `terminal` displays now, and as what.
    pub fn shows(&self, terminal: TerminalId) -> Option<(SessionId, Role)> {
        if let Some(id) = self.session_of(terminal)
            && self.get(id).is_some_and(|s| s.shadowing.is_none())
        {
            return Some((id, Role::Primary));
        }
        self.viewer_of(terminal)
            .map(|(id, level)| (id, Role::Viewer(level)))
    }

    /// The viewers of `session` and their control levels, in the order they attached.
    pub fn viewers(&self, session: SessionId) -> Vec<(TerminalId, ControlLevel)> {
        self.get(session)
            .map(|s| s.viewers.iter().map(|v| (v.terminal, v.level)).collect())
            .unwrap_or_default()
    }

    /// The terminal whose size and keyboard layout `session`'s desktop follows: its primary,
    /// while that shows it (not while it shadows another session).
    pub fn follows(&self, session: SessionId) -> Option<TerminalId> {
        self.get(session)
            .filter(|s| s.shadowing.is_none())
            .and_then(|s| s.primary)
    }

    /// The session `terminal` views (as a sharing viewer or for a shadow), with its level.
    pub(crate) fn viewer_of(&self, terminal: TerminalId) -> Option<(SessionId, ControlLevel)> {
        self.iter().find_map(|s| {
            s.viewers
                .iter()
                .find(|v| v.terminal == terminal)
                .map(|v| (s.id, v.level))
        })
    }

    /// Whether the session's desktop is up with its user logged on and not being logged off.
    pub(crate) fn is_logged_on(&self, id: SessionId) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|e| e.logged_on && !e.session.state.is_ending())
    }

    pub(crate) fn follow_map(&self) -> FollowMap {
        self.iter().map(|s| (s.id, self.follows(s.id))).collect()
    }

    /// Append a [`Effect::Follow`] for every remaining session whose followed terminal differs
    /// from `before`.
    pub(crate) fn follow_changes(&self, before: &FollowMap, effects: &mut Vec<Effect>) {
        for s in self.iter() {
            let now = self.follows(s.id);
            if before.get(&s.id).copied().flatten() != now {
                effects.push(Effect::Follow {
                    session: s.id,
                    terminal: now,
                });
            }
        }
    }

    /// All sessions, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values().map(|e| &e.session)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Notifications produced since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<SessionEvent> {
        self.events.drain(..).collect()
    }

    /// How many events were dropped because nobody drained them in time.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    pub(crate) fn push(&mut self, event: SessionEvent) {
        if self.events.len() >= EVENT_QUEUE_CAPACITY {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Panics unless the invariants in the module docs hold.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        use std::collections::BTreeSet;
        let mut primaries = BTreeSet::new();
        let mut viewing = BTreeSet::new();
        for s in self.iter() {
            if let Some(t) = s.primary {
                assert!(primaries.insert(t), "{t} is the primary of two sessions");
                assert!(
                    s.viewers.iter().all(|v| v.terminal != t),
                    "session {} views itself",
                    s.id
                );
            }
            for v in &s.viewers {
                assert!(viewing.insert(v.terminal), "{} views twice", v.terminal);
            }
            assert_eq!(
                s.state == SessionState::Shadow,
                s.shadowing.is_some(),
                "session {}: state {} with shadowing {:?}",
                s.id,
                s.state,
                s.shadowing
            );
            if let Some(target) = s.shadowing {
                let t = s.primary.expect("a shadowing session has a terminal");
                let target = self.get(target).expect("shadow target exists");
                assert!(target.viewers.iter().any(|v| v.terminal == t));
            }
        }
        for t in primaries.intersection(&viewing) {
            let own = self.get(self.session_of(*t).unwrap()).unwrap();
            let (viewed, _) = self.viewer_of(*t).unwrap();
            assert_eq!(
                own.shadowing,
                Some(viewed),
                "{t} is a primary and a viewer without a shadow"
            );
        }
    }
}

fn not_a_viewer(terminal: TerminalId) -> WtsError {
    WtsError::InvalidParameter(format!(
        "terminal {terminal} is not a viewer of any session"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{T1, T2, T3, ready as active, t};
    use SessionEvent as E;
    use SessionState as S;

    fn table() -> SessionTable {
        SessionTable::new(Policy::default())
    }

    fn state(tab: &SessionTable, id: SessionId) -> SessionState {
        tab.get(id).unwrap().state
    }

    #[test]
    fn wts_ordinals_and_qwinsta_words() {
        let words: Vec<String> = SessionState::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            words,
            [
                "Active", "Conn", "ConnQ", "Shadow", "Disc", "Idle", "Listen", "Reset", "Down",
                "Init"
            ]
        );
        for (i, s) in SessionState::ALL.iter().enumerate() {
            assert_eq!(s.as_wts(), i as u32);
            assert_eq!(SessionState::from_wts(i as u32), Some(*s));
        }
        assert_eq!(S::Disconnected.as_wts(), 4);
        assert_eq!(S::Init.as_wts(), 9);
        assert_eq!(SessionState::from_wts(10), None);
        assert_eq!(format!("{:<7}|", S::Disconnected), "Disc   |");
    }

    #[test]
    fn first_logon_creates_init_session_then_ready_makes_it_active() {
        let mut tab = table();
        let logon = tab.logon("alice", T1, None, t(0)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: 1,
                kind: LogonKind::New,
                displaced: None
            }
        );
        let s = tab.get(1).unwrap();
        assert_eq!(
            (s.state, s.primary, s.user.as_str()),
            (S::Init, Some(T1), "alice")
        );
        assert_eq!(
            (s.logon_time, s.connect_time, s.disconnect_time),
            (t(0), Some(t(0)), None)
        );
        assert_eq!(tab.session_of(T1), Some(1));
        assert_eq!(
            tab.drain_events(),
            [
                E::Create { id: 1 },
                E::Connect {
                    id: 1,
                    terminal: T1
                }
            ]
        );

        tab.desktop_ready(1, t(2)).unwrap();
        assert_eq!(state(&tab, 1), S::Active);
        assert_eq!(tab.get(1).unwrap().logon_time, t(2));
        assert_eq!(
            tab.drain_events(),
            [
                E::Logon {
                    id: 1,
                    user: "alice".into()
                },
                E::StateChange {
                    id: 1,
                    from: S::Init,
                    to: S::Active
                }
            ]
        );
        assert!(tab.drain_events().is_empty());
    }

    #[test]
    fn desktop_ready_only_from_init() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        assert_eq!(
            tab.desktop_ready(id, t(1)),
            Err(ModelError::WrongState {
                id,
                state: S::Active,
                expected: S::Init
            })
        );
        assert_eq!(
            tab.desktop_ready(99, t(1)),
            Err(ModelError::NoSuchSession(99))
        );
    }

    #[test]
    fn terminal_closed_disconnects_and_session_keeps_running() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        assert_eq!(tab.terminal_closed(T1, t(5)), Some(id));
        let s = tab.get(id).unwrap();
        assert_eq!(
            (s.state, s.primary, s.disconnect_time),
            (S::Disconnected, None, Some(t(5)))
        );
        assert_eq!(tab.session_of(T1), None);
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect { id, terminal: T1 },
                E::StateChange {
                    id,
                    from: S::Active,
                    to: S::Disconnected
                }
            ]
        );
        // A terminal that shows nothing closing is a no-op.
        assert_eq!(tab.terminal_closed(T1, t(6)), None);
        assert_eq!(tab.terminal_closed(T3, t(6)), None);
        assert!(tab.drain_events().is_empty());
    }

    #[test]
    fn same_user_gets_disconnected_session_back() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        tab.terminal_closed(T1, t(5));
        tab.drain_events();
        let logon = tab.logon("alice", T2, None, t(9)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: id,
                kind: LogonKind::Reconnect,
                displaced: None
            }
        );
        let s = tab.get(id).unwrap();
        assert_eq!(
            (s.state, s.primary, s.connect_time),
            (S::Active, Some(T2), Some(t(9)))
        );
        assert_eq!(s.logon_time, t(0), "reconnect is not a new logon");
        assert_eq!(
            tab.drain_events(),
            [
                E::Connect { id, terminal: T2 },
                E::StateChange {
                    id,
                    from: S::Disconnected,
                    to: S::Active
                }
            ]
        );
        assert_eq!(tab.len(), 1);
    }

    #[test]
    fn most_recently_disconnected_session_wins() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let a = active(&mut tab, "alice", T1, t(0));
        let b = active(&mut tab, "alice", T2, t(1));
        assert_ne!(a, b);
        tab.terminal_closed(T2, t(10)); // b disconnected first
        tab.terminal_closed(T1, t(20)); // a more recently
        assert_eq!(tab.logon("alice", T3, None, t(30)).unwrap().session, a);
        tab.terminal_closed(T3, t(40));
        // Now a was disconnected at 40, b at 10.
        assert_eq!(tab.logon("alice", T3, None, t(50)).unwrap().session, a);
        assert_eq!(
            tab.logon("alice", TerminalId(4), None, t(60))
                .unwrap()
                .session,
            b
        );
    }

    #[test]
    fn other_users_disconnected_sessions_are_not_picked() {
        let mut tab = table();
        let a = active(&mut tab, "alice", T1, t(0));
        tab.terminal_closed(T1, t(1));
        let logon = tab.logon("bob", T2, None, t(2)).unwrap();
        assert_eq!(logon.kind, LogonKind::New);
        assert_ne!(logon.session, a);
        assert_eq!(state(&tab, a), S::Disconnected);
    }

    #[test]
    fn two_users_get_two_sessions_and_ids_count_up() {
        let mut tab = table();
        let a = active(&mut tab, "alice", T1, t(0));
        let b = active(&mut tab, "bob", T2, t(0));
        assert_eq!((a, b), (1, 2));
        assert_eq!(
            tab.iter()
                .map(|s| (s.id, s.user.as_str()))
                .collect::<Vec<_>>(),
            [(1, "alice"), (2, "bob")]
        );
    }

    #[test]
    fn single_session_per_user_takes_over_active_session() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        let logon = tab.logon("alice", T2, None, t(5)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: id,
                kind: LogonKind::Reconnect,
                displaced: Some(T1)
            }
        );
        let s = tab.get(id).unwrap();
        assert_eq!(
            (s.state, s.primary, s.disconnect_time, s.connect_time),
            (S::Active, Some(T2), Some(t(5)), Some(t(5)))
        );
        assert_eq!(tab.session_of(T1), None);
        assert_eq!(tab.session_of(T2), Some(id));
        // A gets DISCONNECT then CONNECT; its state stays Active.
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect { id, terminal: T1 },
                E::Connect { id, terminal: T2 }
            ]
        );
        // The displaced terminal closing afterwards must not disconnect the session.
        assert_eq!(tab.terminal_closed(T1, t(6)), None);
        assert_eq!(state(&tab, id), S::Active);
    }

    #[test]
    fn multi_session_policy_gives_a_second_session() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let a = active(&mut tab, "alice", T1, t(0));
        let logon = tab.logon("alice", T2, None, t(1)).unwrap();
        assert_eq!(logon.kind, LogonKind::New);
        assert_ne!(logon.session, a);
        assert_eq!(logon.displaced, None);
        assert_eq!(state(&tab, a), S::Active);
    }

    #[test]
    fn disconnected_session_preferred_over_takeover() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let a = active(&mut tab, "alice", T1, t(0));
        let b = active(&mut tab, "alice", T2, t(1));
        tab.terminal_closed(T2, t(2));
        tab.policy.single_session_per_user = true;
        let logon = tab.logon("alice", T3, None, t(3)).unwrap();
        assert_eq!((logon.session, logon.displaced), (b, None));
        assert_eq!(tab.get(a).unwrap().primary, Some(T1));
    }

    #[test]
    fn takeover_picks_most_recently_connected() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let _a = active(&mut tab, "alice", T1, t(0));
        let b = active(&mut tab, "alice", T2, t(1));
        tab.policy.single_session_per_user = true;
        let logon = tab.logon("alice", T3, None, t(3)).unwrap();
        assert_eq!((logon.session, logon.displaced), (b, Some(T2)));
    }

    #[test]
    fn requested_session_reconnects() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let a = active(&mut tab, "alice", T1, t(0));
        let b = active(&mut tab, "alice", T2, t(1));
        tab.terminal_closed(T1, t(2));
        tab.terminal_closed(T2, t(3));
        // Without an id alice would get b (most recent); she asks for a.
        let logon = tab.logon("alice", T3, Some(a), t(4)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: a,
                kind: LogonKind::Reconnect,
                displaced: None
            }
        );
        assert_eq!(state(&tab, a), S::Active);
        assert_eq!(state(&tab, b), S::Disconnected);
    }

    #[test]
    fn requested_active_session_displaces_its_terminal() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let a = active(&mut tab, "alice", T1, t(0));
        let logon = tab.logon("alice", T2, Some(a), t(1)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: a,
                kind: LogonKind::Reconnect,
                displaced: Some(T1)
            }
        );
    }

    #[test]
    fn requested_session_must_exist() {
        let mut tab = table();
        assert_eq!(
            tab.logon("alice", T1, Some(7), t(0)),
            Err(LogonError::SessionNotFound(7))
        );
        assert!(tab.is_empty());
        assert!(tab.drain_events().is_empty());
    }

    #[test]
    fn requested_session_of_another_user_is_refused_and_untouched() {
        let mut tab = table();
        let a = active(&mut tab, "alice", T1, t(0));
        tab.terminal_closed(T1, t(1));
        tab.drain_events();
        assert_eq!(
            tab.logon("bob", T2, Some(a), t(2)),
            Err(LogonError::NotYourSession(a))
        );
        let err = LogonError::NotYourSession(a).to_string();
        assert!(
            !err.contains("alice"),
            "the message must not reveal the owner: {err}"
        );
        assert_eq!(state(&tab, a), S::Disconnected);
        assert_eq!(tab.session_of(T2), None);
        assert!(tab.drain_events().is_empty());
    }

    #[test]
    fn requested_session_being_logged_off_is_refused() {
        let mut tab = table();
        let a = active(&mut tab, "alice", T1, t(0));
        tab.terminal_closed(T1, t(1));
        assert_eq!(tab.begin_logoff(a), Ok(None));
        assert_eq!(
            tab.logon("alice", T2, Some(a), t(2)),
            Err(LogonError::SessionEnding(a))
        );
        // Without an id she gets a fresh session instead of the ending one.
        let logon = tab.logon("alice", T2, None, t(3)).unwrap();
        assert_eq!(logon.kind, LogonKind::New);
        assert_ne!(logon.session, a);
    }

    #[test]
    fn ending_session_is_not_taken_over() {
        let mut tab = table();
        let a = active(&mut tab, "alice", T1, t(0));
        tab.begin_logoff(a).unwrap();
        let logon = tab.logon("alice", T2, None, t(1)).unwrap();
        assert_eq!((logon.kind, logon.displaced), (LogonKind::New, None));
        assert_eq!(tab.get(a).unwrap().primary, Some(T1));
    }

    #[test]
    fn terminal_shows_at_most_one_session() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let a = active(&mut tab, "alice", T1, t(0));
        let b = active(&mut tab, "alice", T2, t(0));
        tab.terminal_closed(T2, t(1));
        tab.drain_events();
        // T1 (showing a) now asks for b: a is disconnected, b is shown on T1.
        let logon = tab.logon("alice", T1, Some(b), t(2)).unwrap();
        assert_eq!((logon.session, logon.displaced), (b, None));
        assert_eq!(state(&tab, a), S::Disconnected);
        assert_eq!(tab.get(a).unwrap().primary, None);
        assert_eq!(tab.session_of(T1), Some(b));
        assert_eq!(tab.iter().filter(|s| s.primary == Some(T1)).count(), 1);
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect {
                    id: a,
                    terminal: T1
                },
                E::StateChange {
                    id: a,
                    from: S::Active,
                    to: S::Disconnected
                },
                E::Connect {
                    id: b,
                    terminal: T1
                },
                E::StateChange {
                    id: b,
                    from: S::Disconnected,
                    to: S::Active
                },
            ]
        );
    }

    #[test]
    fn new_session_on_a_terminal_detaches_its_old_one() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let a = active(&mut tab, "alice", T1, t(0));
        let logon = tab.logon("bob", T1, None, t(1)).unwrap();
        assert_eq!(logon.kind, LogonKind::New);
        assert_eq!(state(&tab, a), S::Disconnected);
        assert_eq!(tab.session_of(T1), Some(logon.session));
    }

    #[test]
    fn logon_again_on_same_terminal_is_a_no_op() {
        let mut tab = table();
        let a = active(&mut tab, "alice", T1, t(0));
        let logon = tab.logon("alice", T1, None, t(1)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: a,
                kind: LogonKind::Reconnect,
                displaced: None
            }
        );
        assert_eq!(
            tab.logon("alice", T1, Some(a), t(1)).unwrap().displaced,
            None
        );
        assert!(tab.drain_events().is_empty());
        assert_eq!(state(&tab, a), S::Active);
    }

    #[test]
    fn max_sessions_is_enforced_and_reconnect_still_works() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: true,
            max_sessions: Some(2),
        });
        let a = active(&mut tab, "alice", T1, t(0));
        active(&mut tab, "bob", T2, t(0));
        assert_eq!(
            tab.logon("carol", T3, None, t(1)),
            Err(LogonError::TooManySessions)
        );
        assert_eq!(tab.len(), 2);
        tab.terminal_closed(T1, t(2));
        // Reconnecting creates nothing, so the limit does not apply.
        assert_eq!(tab.logon("alice", T3, None, t(3)).unwrap().session, a);
        // After a logoff there is room again.
        tab.end(a, t(4)).unwrap();
        assert_eq!(
            tab.logon("carol", T3, None, t(5)).unwrap().kind,
            LogonKind::New
        );
    }

    #[test]
    fn ids_are_never_reused() {
        let mut tab = table();
        let a = active(&mut tab, "alice", T1, t(0));
        tab.end(a, t(1)).unwrap();
        let b = active(&mut tab, "alice", T1, t(2));
        assert_eq!((a, b), (1, 2));
    }

    #[test]
    fn id_space_exhaustion_refuses_instead_of_reusing() {
        let mut tab = table();
        tab.next_id = Some(SessionId::MAX);
        let last = active(&mut tab, "alice", T1, t(0));
        assert_eq!(last, SessionId::MAX);
        tab.end(last, t(1)).unwrap();
        assert_eq!(
            tab.logon("alice", T1, None, t(2)),
            Err(LogonError::TooManySessions)
        );
    }

    #[test]
    fn terminal_closed_while_desktop_starts_then_ready_gives_disconnected() {
        let mut tab = table();
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        assert_eq!(tab.terminal_closed(T1, t(1)), Some(id));
        assert_eq!(
            state(&tab, id),
            S::Init,
            "stays Init until the desktop is up"
        );
        tab.drain_events();
        tab.desktop_ready(id, t(2)).unwrap();
        assert_eq!(state(&tab, id), S::Disconnected);
        assert_eq!(
            tab.drain_events(),
            [
                E::Logon {
                    id,
                    user: "alice".into()
                },
                E::StateChange {
                    id,
                    from: S::Init,
                    to: S::Disconnected
                }
            ]
        );
    }

    #[test]
    fn reconnect_to_a_starting_session_stays_init() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        tab.terminal_closed(T1, t(1));
        // Detached starting session is picked like a disconnected one.
        let logon = tab.logon("alice", T2, None, t(2)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: id,
                kind: LogonKind::Reconnect,
                displaced: None
            }
        );
        assert_eq!(state(&tab, id), S::Init);
        tab.desktop_ready(id, t(3)).unwrap();
        assert_eq!(state(&tab, id), S::Active);
    }

    #[test]
    fn takeover_of_a_starting_session_displaces_its_terminal() {
        let mut tab = table();
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        let logon = tab.logon("alice", T2, None, t(1)).unwrap();
        assert_eq!(
            logon,
            Logon {
                session: id,
                kind: LogonKind::Reconnect,
                displaced: Some(T1)
            }
        );
        assert_eq!(state(&tab, id), S::Init);
    }

    #[test]
    fn desktop_failed_removes_and_names_waiting_terminal() {
        let mut tab = table();
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        tab.drain_events();
        let s = tab.desktop_failed(id).unwrap();
        assert_eq!((s.state, s.primary), (S::Down, Some(T1)));
        assert!(tab.get(id).is_none());
        assert_eq!(tab.session_of(T1), None);
        assert_eq!(
            tab.drain_events(),
            [
                E::StateChange {
                    id,
                    from: S::Init,
                    to: S::Down
                },
                E::Disconnect { id, terminal: T1 },
                E::Delete { id },
            ]
        );
        assert_eq!(tab.desktop_failed(id), None);
    }

    #[test]
    fn end_removes_session_and_names_its_terminal() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        let ended = tab.end(id, t(9)).unwrap();
        assert_eq!(ended.terminal, Some(T1));
        assert_eq!(ended.session.state, S::Reset);
        assert_eq!(ended.session.disconnect_time, Some(t(9)));
        assert!(tab.get(id).is_none());
        assert_eq!(tab.session_of(T1), None);
        assert_eq!(
            tab.drain_events(),
            [
                E::StateChange {
                    id,
                    from: S::Active,
                    to: S::Reset
                },
                E::Disconnect { id, terminal: T1 },
                E::Logoff {
                    id,
                    user: "alice".into()
                },
                E::Delete { id },
            ]
        );
        assert_eq!(tab.end(id, t(10)), None);
        // A closing terminal after the end is harmless.
        assert_eq!(tab.terminal_closed(T1, t(11)), None);
    }

    #[test]
    fn end_of_disconnected_session_has_no_terminal() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        tab.terminal_closed(T1, t(1));
        tab.drain_events();
        let ended = tab.end(id, t(2)).unwrap();
        assert_eq!(ended.terminal, None);
        assert_eq!(ended.session.disconnect_time, Some(t(1)));
        assert_eq!(
            tab.drain_events(),
            [
                E::StateChange {
                    id,
                    from: S::Disconnected,
                    to: S::Reset
                },
                E::Logoff {
                    id,
                    user: "alice".into()
                },
                E::Delete { id },
            ]
        );
    }

    #[test]
    fn begin_logoff_then_end() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        assert_eq!(tab.begin_logoff(id), Ok(Some(T1)));
        assert_eq!(state(&tab, id), S::Reset);
        assert_eq!(tab.begin_logoff(id), Ok(Some(T1)), "idempotent");
        assert_eq!(
            tab.drain_events(),
            [E::StateChange {
                id,
                from: S::Active,
                to: S::Reset
            }]
        );
        // The terminal closing during logoff does not revive it as Disconnected.
        assert_eq!(tab.terminal_closed(T1, t(1)), Some(id));
        assert_eq!(state(&tab, id), S::Reset);
        let ended = tab.end(id, t(2)).unwrap();
        assert_eq!(ended.terminal, None);
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect { id, terminal: T1 },
                E::Logoff {
                    id,
                    user: "alice".into()
                },
                E::Delete { id }
            ]
        );
        assert_eq!(tab.begin_logoff(id), Err(ModelError::NoSuchSession(id)));
    }

    #[test]
    fn end_before_logon_completed_reports_no_logoff() {
        let mut tab = table();
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        tab.drain_events();
        tab.end(id, t(1)).unwrap();
        let events = tab.drain_events();
        assert!(
            !events.iter().any(|e| matches!(e, E::Logoff { .. })),
            "{events:?}"
        );
        assert_eq!(events.last(), Some(&E::Delete { id }));
    }

    #[test]
    fn disconnect_on_request() {
        let mut tab = table();
        let id = active(&mut tab, "alice", T1, t(0));
        assert_eq!(tab.disconnect(id, t(1)), Ok(Some(T1)));
        assert_eq!(state(&tab, id), S::Disconnected);
        assert_eq!(tab.disconnect(id, t(2)), Ok(None));
        assert_eq!(tab.get(id).unwrap().disconnect_time, Some(t(1)));
        assert_eq!(tab.disconnect(42, t(2)), Err(ModelError::NoSuchSession(42)));
    }

    #[test]
    fn event_queue_is_bounded_and_drops_oldest() {
        let mut tab = SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        });
        let id = active(&mut tab, "alice", T1, t(0));
        // Each reconnect+disconnect cycle produces 4 events.
        for i in 0..(EVENT_QUEUE_CAPACITY as u64) {
            tab.terminal_closed(T1, t(i));
            tab.logon("alice", T1, Some(id), t(i)).unwrap();
        }
        assert_eq!(tab.events_dropped(), 3 * EVENT_QUEUE_CAPACITY as u64);
        let events = tab.drain_events();
        assert_eq!(events.len(), EVENT_QUEUE_CAPACITY);
        // The newest survive.
        assert_eq!(
            events.last(),
            Some(&E::StateChange {
                id,
                from: S::Disconnected,
                to: S::Active
            })
        );
    }

    #[test]
    fn event_flags_and_ids() {
        let events = [
            (E::Create { id: 1 }, 0x1),
            (E::Delete { id: 1 }, 0x2),
            (
                E::Connect {
                    id: 1,
                    terminal: T1,
                },
                0x8,
            ),
            (
                E::Disconnect {
                    id: 1,
                    terminal: T1,
                },
                0x10,
            ),
            (
                E::Logon {
                    id: 1,
                    user: "a".into(),
                },
                0x20,
            ),
            (
                E::Logoff {
                    id: 1,
                    user: "a".into(),
                },
                0x40,
            ),
            (
                E::StateChange {
                    id: 1,
                    from: S::Init,
                    to: S::Active,
                },
                0x80,
            ),
        ];
        for (e, flag) in events {
            assert_eq!(e.wts_event_flag(), flag, "{e:?}");
            assert_eq!(e.session(), 1);
        }
    }

    #[test]
    fn logon_error_messages_are_clear() {
        assert_eq!(
            LogonError::SessionNotFound(3).to_string(),
            "session 3 does not exist"
        );
        assert!(LogonError::TooManySessions.to_string().contains("maximum"));
        assert!(
            LogonError::SessionEnding(3)
                .to_string()
                .contains("logged off")
        );
    }
}

/// Viewer attachments, roles, followed terminals and effects of the table's own operations.
#[cfg(test)]
mod attachment_tests {
    use super::*;
    use crate::testing::*;
    use ControlLevel as L;
    use SessionEvent as E;
    use SessionState as S;

    fn multi() -> SessionTable {
        SessionTable::new(Policy {
            single_session_per_user: false,
            max_sessions: None,
        })
    }

    #[test]
    fn wts_names_for_json() {
        let names: Vec<&str> = SessionState::ALL.iter().map(|s| s.wts_name()).collect();
        assert_eq!(
            names,
            [
                "Active",
                "Connected",
                "ConnectQuery",
                "Shadow",
                "Disconnected",
                "Idle",
                "Listen",
                "Reset",
                "Down",
                "Init"
            ]
        );
    }

    #[test]
    fn remote_control_event_counts_as_state_change() {
        let e = E::RemoteControl { id: 4 };
        assert_eq!((e.session(), e.wts_event_flag()), (4, 0x80));
    }

    #[test]
    fn primary_shows_its_session_and_its_desktop_follows_it() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        assert_eq!(tab.shows(T1), Some((a, Role::Primary)));
        assert_eq!(tab.follows(a), Some(T1));
        assert_eq!(tab.shows(T2), None);
        assert_eq!(tab.viewers(a), []);
        assert_eq!(tab.viewers(99), []);
        assert_eq!(tab.follows(99), None);
        assert_eq!(tab.info(a), tab.get(a));
        tab.terminal_closed(T1, t(1));
        assert_eq!(tab.follows(a), None);
        assert_eq!(tab.shows(T1), None);
    }

    #[test]
    fn logon_effects_for_a_new_session() {
        let mut tab = multi();
        let logon = tab.logon("alice", T1, None, t(0)).unwrap();
        assert_eq!(
            tab.logon_effects(&logon, T1),
            [
                Effect::Show {
                    terminal: T1,
                    session: logon.session,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: logon.session,
                    terminal: Some(T1)
                }
            ]
        );
    }

    #[test]
    fn takeover_while_the_desktop_starts_leaves_one_consistent_terminal() {
        // The bug of issue 7: a second logon reconnecting to a session whose desktop is still
        // starting. The new terminal takes over, the old one is closed and attached to nothing.
        let mut tab = SessionTable::new(Policy::default());
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        let logon = tab.logon("alice", T2, None, t(1)).unwrap();
        assert_eq!(logon.displaced, Some(T1));
        assert_eq!(
            tab.logon_effects(&logon, T2),
            [
                Effect::Close {
                    terminal: T1,
                    reason: CloseReason::ReplacedByOtherConnection
                },
                Effect::Show {
                    terminal: T2,
                    session: id,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: id,
                    terminal: Some(T2)
                }
            ]
        );
        tab.assert_consistent();
        assert_eq!(tab.shows(T1), None);
        assert_eq!(tab.shows(T2), Some((id, Role::Primary)));
        tab.drain_events();
        // The displaced client's connection ends later: nothing changes.
        assert_eq!(tab.terminal_gone(T1, t(2)), []);
        assert_eq!(tab.terminal_closed(T1, t(2)), None);
        assert!(tab.drain_events().is_empty());
        let s = tab.get(id).unwrap();
        assert_eq!((s.state, s.primary), (S::Init, Some(T2)));
        tab.desktop_ready(id, t(3)).unwrap();
        let s = tab.get(id).unwrap();
        assert_eq!((s.state, s.primary), (S::Active, Some(T2)));
        tab.assert_consistent();
    }

    #[test]
    fn attach_viewer_shows_the_session_at_its_level() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        assert_eq!(
            tab.attach_viewer(T2, a, L::View, t(5)),
            Ok(vec![Effect::Show {
                terminal: T2,
                session: a,
                role: Role::Viewer(L::View)
            }])
        );
        assert_eq!(
            tab.attach_viewer(T3, a, L::None, t(6)).unwrap(),
            [Effect::Show {
                terminal: T3,
                session: a,
                role: Role::Viewer(L::None)
            }]
        );
        tab.assert_consistent();
        assert_eq!(tab.viewers(a), [(T2, L::View), (T3, L::None)]);
        assert_eq!(
            tab.get(a).unwrap().viewers[0],
            Viewer {
                terminal: T2,
                level: L::View,
                since: t(5)
            }
        );
        assert_eq!(tab.shows(T2), Some((a, Role::Viewer(L::View))));
        // Viewers neither drive the desktop nor own the session.
        assert_eq!(tab.follows(a), Some(T1));
        assert_eq!(tab.session_of(T2), None);
        // Attachments are no WTS events.
        assert!(tab.drain_events().is_empty());
    }

    #[test]
    fn set_level_changes_only_what_changed() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::None, t(1)).unwrap();
        tab.attach_viewer(T3, a, L::View, t(1)).unwrap();
        assert_eq!(
            tab.set_level(T2, L::Interactive),
            Ok(vec![Effect::SetLevel {
                terminal: T2,
                level: L::Interactive
            }])
        );
        assert_eq!(tab.set_level(T2, L::Interactive), Ok(vec![]));
        assert_eq!(tab.viewers(a), [(T2, L::Interactive), (T3, L::View)]);
        // Attaching again to the same session is a level change.
        assert_eq!(
            tab.attach_viewer(T3, a, L::None, t(2)).unwrap(),
            [Effect::SetLevel {
                terminal: T3,
                level: L::None
            }]
        );
        assert_eq!(tab.viewers(a), [(T2, L::Interactive), (T3, L::None)]);
        assert_eq!(tab.get(a).unwrap().viewers[1].since, t(1));
        tab.assert_consistent();
    }

    #[test]
    fn set_level_needs_a_viewer() {
        let mut tab = multi();
        let _a = ready(&mut tab, "alice", T1, t(0));
        for terminal in [T1, T2] {
            let err = tab.set_level(terminal, L::View).unwrap_err();
            assert_eq!(err.code(), 87);
            assert!(err.to_string().contains("not a viewer"), "{err}");
        }
    }

    #[test]
    fn attach_viewer_refusals_change_nothing() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        tab.attach_viewer(T3, b, L::View, t(1)).unwrap();
        let c = ready(&mut tab, "carol", T4, t(0));
        tab.begin_logoff(c).unwrap();
        tab.drain_events();
        let before = snapshot(&tab);
        assert_eq!(
            tab.attach_viewer(T5, 99, L::View, t(2)),
            Err(WtsError::SessionNotFound(99))
        );
        // A primary terminal cannot also watch (it shows its own session).
        let err = tab.attach_viewer(T2, a, L::View, t(2)).unwrap_err();
        assert!(matches!(err, WtsError::InvalidParameter(ref m) if m.contains("primary")));
        // A terminal shows one session.
        let err = tab.attach_viewer(T3, a, L::View, t(2)).unwrap_err();
        assert!(matches!(err, WtsError::InvalidParameter(ref m) if m.contains("already views")));
        assert_eq!(
            tab.attach_viewer(T5, c, L::View, t(2)),
            Err(WtsError::Busy(c))
        );
        assert_eq!(snapshot(&tab), before);
        assert!(tab.drain_events().is_empty());
    }

    #[test]
    fn a_viewer_may_wait_for_a_starting_desktop() {
        let mut tab = multi();
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        tab.attach_viewer(T2, id, L::View, t(0)).unwrap();
        tab.desktop_ready(id, t(1)).unwrap();
        assert_eq!(tab.get(id).unwrap().state, S::Active);
        assert_eq!(tab.viewers(id), [(T2, L::View)]);
    }

    #[test]
    fn viewer_gone_is_removed_and_nothing_else_changes() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::View, t(1)).unwrap();
        tab.attach_viewer(T3, a, L::View, t(1)).unwrap();
        assert_eq!(tab.terminal_gone(T2, t(2)), []);
        assert_eq!(tab.viewers(a), [(T3, L::View)]);
        assert_eq!(tab.terminal_closed(T3, t(2)), Some(a));
        assert_eq!(tab.viewers(a), []);
        assert_eq!(tab.get(a).unwrap().state, S::Active);
        assert!(tab.drain_events().is_empty());
        assert_eq!(tab.terminal_gone(T3, t(3)), []);
    }

    #[test]
    fn primary_gone_disconnects_and_viewers_keep_watching() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::Interactive, t(1)).unwrap();
        assert_eq!(
            tab.terminal_gone(T1, t(2)),
            [Effect::Follow {
                session: a,
                terminal: None
            }]
        );
        let s = tab.get(a).unwrap();
        assert_eq!((s.state, s.primary), (S::Disconnected, None));
        assert_eq!(tab.viewers(a), [(T2, L::Interactive)]);
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect {
                    id: a,
                    terminal: T1
                },
                E::StateChange {
                    id: a,
                    from: S::Active,
                    to: S::Disconnected
                }
            ]
        );
        // Reconnecting brings a primary back; the viewer is still there.
        tab.logon("alice", T3, None, t(3)).unwrap();
        assert_eq!(tab.follows(a), Some(T3));
        assert_eq!(tab.viewers(a), [(T2, L::Interactive)]);
        tab.assert_consistent();
    }

    #[test]
    fn primary_of_a_starting_session_gone_follows_nobody() {
        let mut tab = multi();
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        assert_eq!(
            tab.terminal_gone(T1, t(1)),
            [Effect::Follow {
                session: id,
                terminal: None
            }]
        );
        assert_eq!(tab.get(id).unwrap().state, S::Init);
    }

    #[test]
    fn logon_on_a_viewing_terminal_leaves_the_viewed_session() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::View, t(1)).unwrap();
        let logon = tab.logon("bob", T2, None, t(2)).unwrap();
        assert_eq!(tab.viewers(a), []);
        assert_eq!(tab.shows(T2), Some((logon.session, Role::Primary)));
        tab.assert_consistent();
    }

    #[test]
    fn detach_viewer_closes_a_sharing_viewer() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::View, t(1)).unwrap();
        assert_eq!(
            tab.detach_viewer(T2, CloseReason::Refused, t(2)),
            Ok(vec![Effect::Close {
                terminal: T2,
                reason: CloseReason::Refused
            }])
        );
        assert_eq!(tab.viewers(a), []);
        assert_eq!(
            tab.detach_viewer(T2, CloseReason::Refused, t(2))
                .unwrap_err()
                .code(),
            87
        );
        assert_eq!(
            tab.detach_viewer(T1, CloseReason::Refused, t(2))
                .unwrap_err()
                .code(),
            87
        );
        assert_eq!(tab.get(a).unwrap().state, S::Active);
    }

    #[test]
    fn end_effects_close_primary_and_viewers_with_the_natural_reason() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T3, t(0));
        tab.attach_viewer(T2, a, L::View, t(1)).unwrap();
        assert_eq!(
            tab.end_effects(a, CloseReason::LoggedOffBySelf, t(2)),
            [
                Effect::Close {
                    terminal: T1,
                    reason: CloseReason::LoggedOffBySelf
                },
                Effect::Close {
                    terminal: T2,
                    reason: CloseReason::LoggedOffBySelf
                }
            ]
        );
        assert!(tab.get(a).is_none());
        assert_eq!(tab.shows(T2), None);
        assert_eq!(tab.follows(b), Some(T3));
        assert_eq!(
            tab.drain_events(),
            [
                E::StateChange {
                    id: a,
                    from: S::Active,
                    to: S::Reset
                },
                E::Disconnect {
                    id: a,
                    terminal: T1
                },
                E::Logoff {
                    id: a,
                    user: "alice".into()
                },
                E::Delete { id: a },
            ]
        );
        assert_eq!(tab.end_effects(a, CloseReason::LoggedOffBySelf, t(3)), []);
        tab.assert_consistent();
    }

    #[test]
    fn end_of_a_disconnected_session_closes_only_its_viewers() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::View, t(1)).unwrap();
        tab.terminal_gone(T1, t(2));
        assert_eq!(
            tab.end_effects(a, CloseReason::Shutdown, t(3)),
            [Effect::Close {
                terminal: T2,
                reason: CloseReason::Shutdown
            }]
        );
    }

    #[test]
    fn end_reports_the_viewers_that_were_attached() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::View, t(1)).unwrap();
        let ended = tab.end(a, t(2)).unwrap();
        assert_eq!(ended.terminal, Some(T1));
        assert_eq!(ended.session.viewers.len(), 1);
        assert_eq!(tab.shows(T2), None);
        tab.assert_consistent();
    }

    #[test]
    fn desktop_failed_effects_close_everyone_waiting() {
        let mut tab = multi();
        let id = tab.logon("alice", T1, None, t(0)).unwrap().session;
        tab.attach_viewer(T2, id, L::View, t(0)).unwrap();
        tab.drain_events();
        assert_eq!(
            tab.desktop_failed_effects(id),
            [
                Effect::Close {
                    terminal: T1,
                    reason: CloseReason::DisplayFailed
                },
                Effect::Close {
                    terminal: T2,
                    reason: CloseReason::DisplayFailed
                }
            ]
        );
        assert!(tab.is_empty());
        assert_eq!(
            tab.drain_events(),
            [
                E::StateChange {
                    id,
                    from: S::Init,
                    to: S::Down
                },
                E::Disconnect { id, terminal: T1 },
                E::Delete { id },
            ]
        );
        assert_eq!(tab.desktop_failed_effects(id), []);
    }

    #[test]
    fn old_disconnect_and_logoff_keep_working_with_viewers() {
        let mut tab = multi();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.attach_viewer(T2, a, L::View, t(0)).unwrap();
        assert_eq!(tab.disconnect(a, t(1)), Ok(Some(T1)));
        assert_eq!(tab.viewers(a), [(T2, L::View)]);
        assert_eq!(tab.begin_logoff(a), Ok(None));
        assert_eq!(tab.get(a).unwrap().state, S::Reset);
        tab.assert_consistent();
    }
}
