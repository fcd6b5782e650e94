//! The session table: which sessions exist, which terminal shows which session, and the rules
//! for logon, reconnect, disconnect and logoff (spec.md §1.4).
//!
//! Vocabulary (DESIGN.md): a *session* is one logged-on user's desktop and processes; a
//! *terminal* is one connected client. A terminal shows at most one session and a session is
//! shown by at most one (primary) terminal. Disconnecting detaches the terminal and leaves the
//! session running; logoff ends the session.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::SystemTime;

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
    /// This session is shadowing another.
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

/// One logged-on user's desktop and processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user: String,
    pub state: SessionState,
    /// The terminal showing this session, if any.
    pub terminal: Option<TerminalId>,
    /// When the session was created; updated to when its desktop became ready (logon completed).
    pub logon_time: SystemTime,
    /// When a terminal last attached.
    pub connect_time: Option<SystemTime>,
    /// When a terminal last detached.
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
    /// `ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION` and is closed.
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
    /// Final snapshot (state Reset).
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
            | Self::StateChange { id, .. } => *id,
        }
    }

    /// The `WTS_EVENT_*` bit for `WTSWaitSystemEvent` masks.
    pub fn wts_event_flag(&self) -> u32 {
        match self {
            Self::Create { .. } => 0x1,
            Self::Delete { .. } => 0x2,
            Self::Connect { .. } => 0x8,
            Self::Disconnect { .. } => 0x10,
            Self::Logon { .. } => 0x20,
            Self::Logoff { .. } => 0x40,
            Self::StateChange { .. } => 0x80,
        }
    }
}

/// Events kept for [`SessionTable::drain_events`]; beyond this the oldest are dropped, so a
/// consumer that never drains cannot make the table grow.
pub const EVENT_QUEUE_CAPACITY: usize = 1024;

#[derive(Debug)]
struct Entry {
    session: Session,
    /// The desktop became ready at least once: a logoff is reported as WTS LOGOFF.
    logged_on: bool,
}

/// All sessions of this host and the terminals showing them.
#[derive(Debug)]
pub struct SessionTable {
    policy: Policy,
    sessions: BTreeMap<SessionId, Entry>,
    /// `None` once the u32 id space is used up (ids are never reused).
    next_id: Option<SessionId>,
    events: VecDeque<SessionEvent>,
    events_dropped: u64,
}

impl SessionTable {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            sessions: BTreeMap::new(),
            next_id: Some(1),
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A user authenticated on `terminal`: decide which session it shows.
    ///
    /// `requested` is the client's pre-connection id (`xfreerdp /pcid:ID`). Without one, the
    /// user's most recently disconnected session wins; else, under single-session policy, their
    /// running session is taken over; else a new session is created (state Init).
    /// If `terminal` was showing another session, that session is disconnected (keeps running).
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
            if let Some(cur) = current {
                self.detach(cur, now);
            }
            let session = Session {
                id,
                user: user.to_owned(),
                state: SessionState::Init,
                terminal: Some(terminal),
                logon_time: now,
                connect_time: Some(now),
                disconnect_time: None,
            };
            self.sessions.insert(
                id,
                Entry {
                    session,
                    logged_on: false,
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
        if let Some(cur) = current {
            self.detach(cur, now);
        }
        let displaced = self.attach(id, terminal, now);
        Ok(Logon {
            session: id,
            kind: LogonKind::Reconnect,
            displaced,
        })
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
            .filter(|s| s.terminal.is_none())
            .max_by_key(|s| (s.disconnect_time, s.id))
            .map(|s| s.id);
        if detached.is_some() || !self.policy.single_session_per_user {
            return detached;
        }
        // Single session per user: take over the one shown elsewhere (most recently connected).
        mine().max_by_key(|s| (s.connect_time, s.id)).map(|s| s.id)
    }

    /// Show session `id` on `terminal`; returns the terminal it replaces.
    fn attach(
        &mut self,
        id: SessionId,
        terminal: TerminalId,
        now: SystemTime,
    ) -> Option<TerminalId> {
        let entry = self
            .sessions
            .get_mut(&id)
            .expect("attach: caller checked the session exists");
        let s = &mut entry.session;
        let displaced = s.terminal.replace(terminal);
        if displaced.is_some() {
            s.disconnect_time = Some(now);
        }
        s.connect_time = Some(now);
        let from = s.state;
        let to = if from == SessionState::Disconnected {
            SessionState::Active
        } else {
            from
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

    /// Detach whatever terminal shows `id`; the session keeps running. Returns that terminal.
    fn detach(&mut self, id: SessionId, now: SystemTime) -> Option<TerminalId> {
        let entry = self.sessions.get_mut(&id)?;
        let s = &mut entry.session;
        let terminal = s.terminal.take()?;
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
        let to = if s.terminal.is_some() {
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
    /// still names the terminal that was waiting for it, which the wiring must tell and close.
    pub fn desktop_failed(&mut self, id: SessionId) -> Option<Session> {
        let Entry { mut session, .. } = self.sessions.remove(&id)?;
        let from = session.state;
        session.state = SessionState::Down;
        if from != SessionState::Down {
            self.push(SessionEvent::StateChange {
                id,
                from,
                to: SessionState::Down,
            });
        }
        if let Some(terminal) = session.terminal {
            self.push(SessionEvent::Disconnect { id, terminal });
        }
        self.push(SessionEvent::Delete { id });
        Some(session)
    }

    /// A terminal went away (client disconnect, crash, timeout, protocol error). Its session, if
    /// any, goes Disconnected and keeps running. Returns that session.
    pub fn terminal_closed(&mut self, terminal: TerminalId, now: SystemTime) -> Option<SessionId> {
        let id = self.session_of(terminal)?;
        self.detach(id, now);
        Some(id)
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
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(ModelError::NoSuchSession(id))?;
        let s = &mut entry.session;
        let terminal = s.terminal;
        if !s.state.is_ending() {
            let from = s.state;
            s.state = SessionState::Reset;
            self.push(SessionEvent::StateChange {
                id,
                from,
                to: SessionState::Reset,
            });
        }
        Ok(terminal)
    }

    /// Logoff or desktop exited: the session is removed. `Ended::terminal` is the terminal that
    /// was showing it (tell it, e.g. `ERRINFO_LOGOFF_BY_USER`, and close it).
    pub fn end(&mut self, id: SessionId, now: SystemTime) -> Option<Ended> {
        let Entry {
            mut session,
            logged_on,
        } = self.sessions.remove(&id)?;
        let from = session.state;
        if from != SessionState::Reset {
            session.state = SessionState::Reset;
            self.push(SessionEvent::StateChange {
                id,
                from,
                to: SessionState::Reset,
            });
        }
        let terminal = session.terminal;
        if let Some(terminal) = terminal {
            session.disconnect_time = Some(now);
            self.push(SessionEvent::Disconnect { id, terminal });
        }
        if logged_on {
            self.push(SessionEvent::Logoff {
                id,
                user: session.user.clone(),
            });
        }
        self.push(SessionEvent::Delete { id });
        Some(Ended { session, terminal })
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id).map(|e| &e.session)
    }

    /// The session `terminal` shows, if any.
    pub fn session_of(&self, terminal: TerminalId) -> Option<SessionId> {
        // Linear: session counts are hundreds at most, and one source of truth beats two.
        self.iter()
            .find(|s| s.terminal == Some(terminal))
            .map(|s| s.id)
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

    fn push(&mut self, event: SessionEvent) {
        if self.events.len() >= EVENT_QUEUE_CAPACITY {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionEvent as E;
    use SessionState as S;
    use std::time::Duration;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }
    const T1: TerminalId = TerminalId(1);
    const T2: TerminalId = TerminalId(2);
    const T3: TerminalId = TerminalId(3);

    fn table() -> SessionTable {
        SessionTable::new(Policy::default())
    }

    /// A new, ready, Active session for `user` on `terminal`; events drained.
    fn active(
        tab: &mut SessionTable,
        user: &str,
        terminal: TerminalId,
        now: SystemTime,
    ) -> SessionId {
        let logon = tab.logon(user, terminal, None, now).unwrap();
        assert_eq!(logon.kind, LogonKind::New);
        tab.desktop_ready(logon.session, now).unwrap();
        tab.drain_events();
        logon.session
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
            (s.state, s.terminal, s.user.as_str()),
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
            (s.state, s.terminal, s.disconnect_time),
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
            (s.state, s.terminal, s.connect_time),
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
            (s.state, s.terminal, s.disconnect_time, s.connect_time),
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
        assert_eq!(tab.get(a).unwrap().terminal, Some(T1));
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
        assert_eq!(tab.get(a).unwrap().terminal, Some(T1));
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
        assert_eq!(tab.get(a).unwrap().terminal, None);
        assert_eq!(tab.session_of(T1), Some(b));
        assert_eq!(tab.iter().filter(|s| s.terminal == Some(T1)).count(), 1);
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
        assert_eq!((s.state, s.terminal), (S::Down, Some(T1)));
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
