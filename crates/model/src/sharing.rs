//! The Windows Desktop Sharing object model (RDPSRAPI, spec.md §2.2–§2.7 and §4), pure:
//! invitations, admission, attendees and their control levels, control requests, pause, the
//! shared rectangle, terminate and close.
//!
//! An attendee is a viewer attachment of the shared session in the [`SessionTable`]: admission
//! attaches its terminal ([`SessionTable::attach_viewer`]), a level change is
//! [`SessionTable::set_level`], terminate is [`SessionTable::detach_viewer`]. [`Sharing`] adds
//! what Windows Desktop Sharing has on top: which invitation admitted whom, attendee ids,
//! MS-RDPEMC participant notices, pause and the shared rectangle. Every operation returns
//! [`ShareEffect`]s for the wiring to carry out in order, and records [`ShareEvent`]s (the
//! `_IRDPSessionEvents` a sharer application would see) for `rdhost share events`.
//!
//! Identity is the terminal (the RDP connection), never a participant id a client sends:
//! FreeRDP sends 0 in every control request (spec.md §3.6).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::SystemTime;

use crate::effect::{CloseReason, ControlLevel, Effect};
use crate::permissions::Caller;
use crate::session::{EVENT_QUEUE_CAPACITY, SessionId, SessionTable, TerminalId};
use crate::wts::WtsError;

/// Longest ticket, password and group name, in characters (`CreateInvitation`'s limits).
pub const MAX_INVITATION_FIELD_LEN: usize = 255;
/// Attendee names (`RemoteName`, from the client) and addresses are cut to this many characters.
pub const MAX_ATTENDEE_NAME_LEN: usize = 255;

/// An invitation's id: from 1, in creation order, never reused. Shown as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvitationId(pub u32);

impl fmt::Display for InvitationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An attendee's id: from 1, never reused. It is also the MS-RDPEMC ParticipantId we send
/// (0 is the sharer, `CONST_ATTENDEE_ID_HOST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttendeeId(pub u32);

impl fmt::Display for AttendeeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// `IRDPSRAPIInvitation`: a ticket and password that admit up to `attendee_limit` attendees
/// at a time. Invitations are never deleted, only revoked.
#[derive(Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: InvitationId,
    /// The `<A ID>` of the connection string; the client sends it as Client Info WorkingDir.
    pub ticket: String,
    pub group: String,
    /// The MS-RDPEMC GroupId sent in participant notices: one number per group name.
    pub group_id: u32,
    /// Sent out of band; the client sends it as Client Info AlternateShell.
    pub password: String,
    pub attendee_limit: u32,
    /// No new attendees by this invitation; those connected stay.
    pub revoked: bool,
    pub created: SystemTime,
}

impl fmt::Debug for Invitation {
    /// Without the password, which must not reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invitation")
            .field("id", &self.id)
            .field("ticket", &self.ticket)
            .field("group", &self.group)
            .field("group_id", &self.group_id)
            .field("password", &"<hidden>")
            .field("attendee_limit", &self.attendee_limit)
            .field("revoked", &self.revoked)
            .field("created", &self.created)
            .finish()
    }
}

/// `IRDPSRAPIAttendee`: one admitted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    pub id: AttendeeId,
    pub terminal: TerminalId,
    /// `RemoteName`: what the client calls itself (Client Info user name), control
    /// characters replaced, at most [`MAX_ATTENDEE_NAME_LEN`] characters.
    pub name: String,
    pub level: ControlLevel,
    pub invitation: InvitationId,
    /// The peer address, as the wiring gave it.
    pub address: String,
    pub connected: SystemTime,
}

/// `ATTENDEE_DISCONNECT_REASON` (also MS-RDPEMC `OD_PARTICIPANT_REMOVED.DiscType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The sharer terminated the connection.
    App,
    /// An error while processing the attendee.
    Err,
    /// The attendee disconnected itself.
    Cli,
}

impl DisconnectReason {
    /// APP 0, ERR 1, CLI 2.
    pub fn code(self) -> u32 {
        match self {
            Self::App => 0,
            Self::Err => 1,
            Self::Cli => 2,
        }
    }

    /// `APP`, `ERR`, `CLI`: what `rdhost share events` prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::App => "APP",
            Self::Err => "ERR",
            Self::Cli => "CLI",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Why a connection was not admitted (spec.md §2.4, §4). Display is the sharer's log line; the
/// client only learns [`error_info`](Self::error_info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No invitation has the ticket the client sent.
    UnknownTicket,
    WrongPassword(InvitationId),
    Revoked(InvitationId),
    LimitReached {
        invitation: InvitationId,
        limit: u32,
    },
    /// The sharing session was closed (final).
    Closed,
    /// The shared session cannot take the terminal (it ended, or the terminal already shows
    /// something): a wiring problem, not the client's.
    Unavailable(String),
}

impl Refusal {
    /// The Set Error Info code (MS-RDPBCGR 2.2.5.1.1) sent before closing; xfreerdp exits with it.
    ///
    /// Wrong credentials (unknown ticket, wrong password) get
    /// `ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES` 0x9, the same for both so that a guesser cannot
    /// tell a valid ticket from an invalid one. Valid credentials that cannot be honoured now
    /// (revoked, attendee limit, closed, unavailable) get `ERRINFO_SERVER_DENIED_CONNECTION`
    /// 0x7: the client's user did nothing wrong and may ask the sharer for a new invitation.
    pub fn error_info(&self) -> u32 {
        match self {
            Self::UnknownTicket | Self::WrongPassword(_) => 0x9,
            Self::Revoked(_) | Self::LimitReached { .. } | Self::Closed | Self::Unavailable(_) => {
                0x7
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownTicket => {
                write!(f, "refused: no invitation has the ticket the client sent")
            }
            Self::WrongPassword(id) => write!(f, "refused: wrong password for invitation {id}"),
            Self::Revoked(id) => write!(f, "refused: invitation {id} is revoked"),
            Self::LimitReached { invitation, limit } => write!(
                f,
                "refused: invitation {invitation} already has its limit of {limit} attendee(s) connected"
            ),
            Self::Closed => write!(f, "refused: the sharing session is closed"),
            Self::Unavailable(why) => {
                write!(f, "refused: the shared session cannot take it: {why}")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// A sharer's request that cannot be carried out; the messages are for the CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("no invitation {0} (see `rdhost share invitations`)")]
    NoSuchInvitation(u32),
    #[error("no attendee {0} is connected (see `rdhost share attendees`)")]
    NoSuchAttendee(u32),
    #[error("the sharing session is closed; start a new one with `rdhost share start`")]
    Closed,
    #[error("another invitation already has this ticket; every ticket must be unique")]
    DuplicateTicket,
    #[error("the ticket is empty")]
    EmptyTicket,
    #[error("the {what} is {len} characters long; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the attendee limit must be at least 1")]
    ZeroLimit,
    #[error(
        "the {what} cannot be {level}: attendees start at none or view, and only the sharer grants interactive"
    )]
    InvalidLevel {
        what: &'static str,
        level: ControlLevel,
    },
    #[error("bad shared rectangle {rect}: {problem}")]
    BadRect { rect: SharedRect, problem: String },
    #[error("the session table refused: {0}")]
    Table(WtsError),
    #[error("no {0} ids are left")]
    Exhausted(&'static str),
}

/// How attendees start and which control requests are granted without asking the sharer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharingPolicy {
    default_level: ControlLevel,
    auto_grant: ControlLevel,
}

impl SharingPolicy {
    /// `default_level`: `DefaultAttendeeControlLevel`, None or View (Windows refuses
    /// Interactive). `auto_grant`: requests are granted at once up to this level (None: off).
    pub fn new(default_level: ControlLevel, auto_grant: ControlLevel) -> Result<Self, ShareError> {
        if default_level == ControlLevel::Interactive {
            return Err(ShareError::InvalidLevel {
                what: "default attendee control level",
                level: default_level,
            });
        }
        Ok(Self {
            default_level,
            auto_grant,
        })
    }

    pub fn default_level(&self) -> ControlLevel {
        self.default_level
    }

    pub fn auto_grant(&self) -> ControlLevel {
        self.auto_grant
    }

    /// Where a new attendee starts: the default level, raised to View when requests for View
    /// are granted anyway (`--auto-grant view` starts everyone at VIEW); never Interactive.
    pub fn start_level(&self) -> ControlLevel {
        self.default_level
            .max(self.auto_grant.min(ControlLevel::View))
    }
}

impl Default for SharingPolicy {
    /// Windows' defaults: start at None, grant nothing by itself.
    fn default() -> Self {
        Self {
            default_level: ControlLevel::None,
            auto_grant: ControlLevel::None,
        }
    }
}

/// The part of the sharer's desktop attendees see (`SetDesktopSharedRect`); right and bottom
/// are exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedRect {
    pub left: u16,
    pub top: u16,
    pub right: u16,
    pub bottom: u16,
}

impl SharedRect {
    pub fn new(left: u16, top: u16, right: u16, bottom: u16) -> Self {
        Self {
            left,
            top,
            right,
            bottom,
        }
    }

    pub fn width(&self) -> u16 {
        self.right.saturating_sub(self.left)
    }

    pub fn height(&self) -> u16 {
        self.bottom.saturating_sub(self.top)
    }

    /// Non-empty and inside a desktop of `width` × `height` pixels.
    pub fn validate(&self, (width, height): (u16, u16)) -> Result<(), ShareError> {
        let bad = |problem: String| ShareError::BadRect {
            rect: *self,
            problem,
        };
        if self.right <= self.left || self.bottom <= self.top {
            return Err(bad(
                "it is empty: right must be greater than left and bottom greater than top".into(),
            ));
        }
        if self.right > width || self.bottom > height {
            return Err(bad(format!(
                "it reaches outside the {width}x{height} desktop (right ≤ {width}, bottom ≤ {height})"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for SharedRect {
    /// `LEFT TOP RIGHT BOTTOM`, as `rdhost share rect` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.left, self.top, self.right, self.bottom
        )
    }
}

/// MS-RDPEMC `OD_PARTICIPANT_CREATED`, sent to `terminal`: participant `participant_id` exists
/// with these rights. `is_participant`: it describes the receiving terminal itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantNotice {
    pub terminal: TerminalId,
    pub participant_id: u32,
    pub group_id: u32,
    pub may_view: bool,
    pub may_interact: bool,
    pub is_participant: bool,
    pub name: String,
}

/// MS-RDPEMC `OD_PARTICIPANT_REMOVED`, sent to `terminal`: participant `participant_id` left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedNotice {
    pub terminal: TerminalId,
    pub participant_id: u32,
    pub reason: DisconnectReason,
}

/// One thing the wiring must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareEffect {
    /// A session-table decision (Show / SetLevel / Close), carried out as for any terminal.
    Session(Effect),
    /// Send `OD_PARTICIPANT_CREATED` on the terminal's encomsp channel.
    Participant(ParticipantNotice),
    /// Send `OD_PARTICIPANT_REMOVED` on the terminal's encomsp channel.
    ParticipantRemoved(RemovedNotice),
    /// Stop (or restart) graphics for every attendee, and send each
    /// `GRAPHICS_STREAM_PAUSED` (or `_RESUMED`).
    Pause { paused: bool },
    /// A newly admitted terminal joins while graphics are paused: give it none and send it
    /// `GRAPHICS_STREAM_PAUSED`. Follows its `Show`; carry it out before its first frame.
    PauseTerminal { terminal: TerminalId },
    /// Every attendee now shows only this rectangle of the desktop (`None`: all of it).
    Region(Option<SharedRect>),
    /// A newly admitted terminal shows only this rectangle. Follows its `Show`; carry it out
    /// before its first frame.
    RegionTerminal {
        terminal: TerminalId,
        rect: SharedRect,
    },
}

/// What `rdhost share events` streams (`_IRDPSessionEvents` on the sharer side); data only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareEvent {
    /// `OnAttendeeConnected`.
    AttendeeConnected {
        attendee: Attendee,
    },
    /// `OnAttendeeDisconnected`; not raised when the sharing session closes.
    AttendeeDisconnected {
        attendee: Attendee,
        reason: DisconnectReason,
    },
    /// `OnAttendeeUpdate`: its control level changed.
    AttendeeUpdated {
        attendee: Attendee,
    },
    /// `OnControlLevelChangeRequest`: the attendee as it was when it asked.
    ControlLevelChangeRequested {
        attendee: Attendee,
        requested: ControlLevel,
    },
    /// `ConnectToClient` reached none of the addresses.
    ConnectionFailed {
        addresses: Vec<String>,
        reason: String,
    },
    GraphicsPaused,
    GraphicsResumed,
    /// `OnSharedRectChanged`.
    SharedRectChanged {
        rect: Option<SharedRect>,
    },
    /// Not a Windows event; lets a watcher follow `rdhost share invite`. No secrets.
    InvitationCreated {
        id: InvitationId,
        group: String,
        attendee_limit: u32,
    },
    InvitationRevoked {
        id: InvitationId,
    },
    /// The sharing session closed (final).
    Closed,
}

/// One sharing session (`RDPSession` after `Open`): one shared session of the table, its
/// invitations and attendees.
#[derive(Debug)]
pub struct Sharing {
    session: SessionId,
    policy: SharingPolicy,
    invitations: Vec<Invitation>,
    attendees: BTreeMap<AttendeeId, Attendee>,
    next_attendee: Option<u32>,
    paused: bool,
    rect: Option<SharedRect>,
    closed: bool,
    events: VecDeque<ShareEvent>,
    events_dropped: u64,
}

impl Sharing {
    /// Share `session` (e.g. one from [`SessionTable::open_console`]) under `policy`.
    pub fn new(session: SessionId, policy: SharingPolicy) -> Self {
        Self {
            session,
            policy,
            invitations: Vec::new(),
            attendees: BTreeMap::new(),
            next_attendee: Some(1),
            paused: false,
            rect: None,
            closed: false,
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    pub fn policy(&self) -> SharingPolicy {
        self.policy
    }

    // --- Invitations ----------------------------------------------------------------------

    /// `CreateInvitation`: `ticket` (the caller generates it, fresh and random) must be
    /// non-empty and unique among all invitations, revoked ones included; ticket, password and
    /// group at most 255 characters; `attendee_limit` at least 1. Refused once closed.
    pub fn create_invitation(
        &mut self,
        ticket: String,
        password: String,
        group: String,
        attendee_limit: u32,
        now: SystemTime,
    ) -> Result<&Invitation, ShareError> {
        if self.closed {
            return Err(ShareError::Closed);
        }
        if ticket.is_empty() {
            return Err(ShareError::EmptyTicket);
        }
        for (what, value) in [
            ("ticket", &ticket),
            ("password", &password),
            ("group name", &group),
        ] {
            let len = value.chars().count();
            if len > MAX_INVITATION_FIELD_LEN {
                return Err(ShareError::TooLong {
                    what,
                    len,
                    max: MAX_INVITATION_FIELD_LEN,
                });
            }
        }
        if attendee_limit == 0 {
            return Err(ShareError::ZeroLimit);
        }
        if self.invitations.iter().any(|i| i.ticket == ticket) {
            return Err(ShareError::DuplicateTicket);
        }
        let id = u32::try_from(self.invitations.len() + 1)
            .map_err(|_| ShareError::Exhausted("invitation"))?;
        let group_id = match self.invitations.iter().find(|i| i.group == group) {
            Some(same) => same.group_id,
            None => self
                .invitations
                .iter()
                .map(|i| i.group_id)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or(ShareError::Exhausted("group"))?,
        };
        let invitation = Invitation {
            id: InvitationId(id),
            ticket,
            group,
            group_id,
            password,
            attendee_limit,
            revoked: false,
            created: now,
        };
        self.push(ShareEvent::InvitationCreated {
            id: invitation.id,
            group: invitation.group.clone(),
            attendee_limit,
        });
        self.invitations.push(invitation);
        Ok(self.invitations.last().expect("just pushed"))
    }

    /// `put_Revoked(TRUE)`: no new attendees by this invitation; those connected stay.
    /// Revoking again changes nothing.
    pub fn revoke(&mut self, id: InvitationId) -> Result<(), ShareError> {
        let invitation = self
            .invitations
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or(ShareError::NoSuchInvitation(id.0))?;
        if !invitation.revoked {
            invitation.revoked = true;
            self.push(ShareEvent::InvitationRevoked { id });
        }
        Ok(())
    }

    /// All invitations in creation order, revoked ones included.
    pub fn invitations(&self) -> impl Iterator<Item = &Invitation> {
        self.invitations.iter()
    }

    pub fn invitation(&self, id: InvitationId) -> Option<&Invitation> {
        self.invitations.iter().find(|i| i.id == id)
    }

    /// The invitation with this ticket, revoked or not: lets the host tell an attendee from a
    /// normal logon. Compares every ticket in constant time.
    pub fn invitation_for_ticket(&self, ticket: &str) -> Option<&Invitation> {
        let mut found = None;
        // No early exit: the time taken does not tell how much of a ticket matched.
        for invitation in &self.invitations {
            if constant_time_eq(invitation.ticket.as_bytes(), ticket.as_bytes()) {
                found = Some(invitation);
            }
        }
        found
    }

    /// How many attendees an invitation admitted that are still connected.
    pub fn attendee_count(&self, id: InvitationId) -> usize {
        self.attendees
            .values()
            .filter(|a| a.invitation == id)
            .count()
    }

    // --- Attendees ------------------------------------------------------------------------

    /// A connection on `terminal` sent `ticket` (Client Info WorkingDir) and `password`
    /// (AlternateShell): admit it as an attendee (spec.md §2.4) if the sharing is open, an
    /// invitation has that ticket and password, is not revoked and has fewer connected
    /// attendees than its limit. Checked in that order, so that without the password nothing
    /// about the invitation's state is revealed. A refused connection changes nothing.
    ///
    /// Effects: the terminal is shown the session at the policy's start level
    /// ([`SharingPolicy::start_level`]), brought up to the current pause and rectangle, told
    /// about itself (`is_participant`), and every other attendee is told about it.
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &mut self,
        table: &mut SessionTable,
        ticket: &str,
        password: &str,
        name: &str,
        address: &str,
        terminal: TerminalId,
        now: SystemTime,
    ) -> Result<(AttendeeId, Vec<ShareEffect>), Refusal> {
        if self.closed {
            return Err(Refusal::Closed);
        }
        let invitation = self
            .invitation_for_ticket(ticket)
            .ok_or(Refusal::UnknownTicket)?;
        if !constant_time_eq(invitation.password.as_bytes(), password.as_bytes()) {
            return Err(Refusal::WrongPassword(invitation.id));
        }
        if invitation.revoked {
            return Err(Refusal::Revoked(invitation.id));
        }
        let (invitation, group_id, limit) = (
            invitation.id,
            invitation.group_id,
            invitation.attendee_limit,
        );
        if self.attendee_count(invitation) >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(Refusal::LimitReached { invitation, limit });
        }
        if let Some(other) = self.attendee_of(terminal) {
            return Err(Refusal::Unavailable(format!(
                "terminal {terminal} is already attendee {}",
                other.id
            )));
        }
        let id = self
            .next_attendee
            .ok_or_else(|| Refusal::Unavailable("no attendee ids are left".into()))?;
        let level = self.policy.start_level();
        let shown = table
            .attach_viewer(terminal, self.session, level, now)
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;

        self.next_attendee = id.checked_add(1);
        let attendee = Attendee {
            id: AttendeeId(id),
            terminal,
            name: clean(name),
            level,
            invitation,
            address: clean(address),
            connected: now,
        };
        let mut effects: Vec<ShareEffect> = shown.into_iter().map(ShareEffect::Session).collect();
        if self.paused {
            effects.push(ShareEffect::PauseTerminal { terminal });
        }
        if let Some(rect) = self.rect {
            effects.push(ShareEffect::RegionTerminal { terminal, rect });
        }
        effects.push(notice(&attendee, group_id, terminal));
        for other in self.attendees.values() {
            effects.push(notice(&attendee, group_id, other.terminal));
        }
        self.push(ShareEvent::AttendeeConnected {
            attendee: attendee.clone(),
        });
        self.attendees.insert(attendee.id, attendee);
        Ok((AttendeeId(id), effects))
    }

    /// `put_ControlLevel`: the sharer sets any level, Interactive included. Effects: the
    /// table's `SetLevel`, then a participant notice with the new rights to every attendee
    /// (MS-RDPEMC: "notify participants when the control level of a participant has
    /// changed"). Setting the level it has changes nothing.
    pub fn set_level(
        &mut self,
        table: &mut SessionTable,
        attendee: AttendeeId,
        level: ControlLevel,
    ) -> Result<Vec<ShareEffect>, ShareError> {
        let current = self
            .attendees
            .get(&attendee)
            .ok_or(ShareError::NoSuchAttendee(attendee.0))?;
        let changed = table
            .set_level(current.terminal, level)
            .map_err(ShareError::Table)?;
        if changed.is_empty() && current.level == level {
            return Ok(Vec::new());
        }
        let a = self.attendees.get_mut(&attendee).expect("looked up above");
        a.level = level;
        let a = a.clone();
        let group_id = self.group_id(a.invitation);
        let mut effects: Vec<ShareEffect> = changed.into_iter().map(ShareEffect::Session).collect();
        for to in self.attendees.values() {
            effects.push(notice(&a, group_id, to.terminal));
        }
        self.push(ShareEvent::AttendeeUpdated { attendee: a });
        Ok(effects)
    }

    /// An attendee's terminal sent `OD_PARTICIPANT_CTRL_CHANGE`: REQUEST_INTERACT asks for
    /// Interactive; REQUEST_VIEW alone (or no flag) asks for View. The identity is the
    /// terminal; a terminal that is no attendee is ignored. Raises the request event, then
    /// grants up to the policy's auto-grant level; it never lowers a level (a FreeRDP viewer
    /// "releasing" control with a View request keeps its level until the sharer changes it).
    pub fn control_request(
        &mut self,
        table: &mut SessionTable,
        terminal: TerminalId,
        view: bool,
        interact: bool,
    ) -> Vec<ShareEffect> {
        let Some(attendee) = self.attendee_of(terminal).cloned() else {
            return Vec::new();
        };
        let requested = match (view, interact) {
            (_, true) => ControlLevel::Interactive,
            (_, false) => ControlLevel::View,
        };
        let grant = requested.min(self.policy.auto_grant);
        let (id, current) = (attendee.id, attendee.level);
        self.push(ShareEvent::ControlLevelChangeRequested {
            attendee,
            requested,
        });
        if grant > current {
            // Only fails if the table lost the attachment; then there is nothing to grant.
            return self.set_level(table, id, grant).unwrap_or_default();
        }
        Vec::new()
    }

    /// `TerminateConnection`: close the attendee's terminal (Set Error Info 0x1, disconnected by
    /// the sharer) and raise the disconnect event with reason APP; the other attendees are
    /// told it left. It may reconnect with its invitation unless that is revoked.
    pub fn terminate(
        &mut self,
        table: &mut SessionTable,
        attendee: AttendeeId,
        now: SystemTime,
    ) -> Result<Vec<ShareEffect>, ShareError> {
        let a = self
            .attendees
            .remove(&attendee)
            .ok_or(ShareError::NoSuchAttendee(attendee.0))?;
        let mut effects = close_viewer(table, a.terminal, now);
        effects.extend(self.removed_notices(&a, DisconnectReason::App));
        self.push(ShareEvent::AttendeeDisconnected {
            attendee: a,
            reason: DisconnectReason::App,
        });
        Ok(effects)
    }

    /// A terminal's connection ended: the client left (`Cli`) or failed (`Err`). No effect for
    /// a terminal that is no attendee (e.g. one already terminated).
    pub fn terminal_gone(
        &mut self,
        table: &mut SessionTable,
        terminal: TerminalId,
        reason: DisconnectReason,
        now: SystemTime,
    ) -> Vec<ShareEffect> {
        let Some(id) = self.attendee_of(terminal).map(|a| a.id) else {
            return Vec::new();
        };
        let a = self.attendees.remove(&id).expect("found above");
        let mut effects: Vec<ShareEffect> = table
            .terminal_gone(terminal, now)
            .into_iter()
            .map(ShareEffect::Session)
            .collect();
        effects.extend(self.removed_notices(&a, reason));
        self.push(ShareEvent::AttendeeDisconnected {
            attendee: a,
            reason,
        });
        effects
    }

    pub fn attendees(&self) -> impl Iterator<Item = &Attendee> {
        self.attendees.values()
    }

    pub fn attendee(&self, id: AttendeeId) -> Option<&Attendee> {
        self.attendees.get(&id)
    }

    /// The attendee connected on `terminal`.
    pub fn attendee_of(&self, terminal: TerminalId) -> Option<&Attendee> {
        self.attendees.values().find(|a| a.terminal == terminal)
    }

    // --- The session ----------------------------------------------------------------------

    /// `Pause`: graphics stop for every attendee. Pausing again (or once closed) does nothing.
    pub fn pause(&mut self) -> Vec<ShareEffect> {
        self.set_paused(true)
    }

    /// `Resume`: graphics start again. Resuming again (or once closed) does nothing.
    pub fn resume(&mut self) -> Vec<ShareEffect> {
        self.set_paused(false)
    }

    fn set_paused(&mut self, paused: bool) -> Vec<ShareEffect> {
        if self.closed || self.paused == paused {
            return Vec::new();
        }
        self.paused = paused;
        self.push(if paused {
            ShareEvent::GraphicsPaused
        } else {
            ShareEvent::GraphicsResumed
        });
        vec![ShareEffect::Pause { paused }]
    }

    /// `SetDesktopSharedRect`: attendees see only `rect` of the sharer's `desktop` (width,
    /// height); `None` shares all of it. The rectangle must be non-empty and inside the
    /// desktop. Setting the current one again does nothing.
    pub fn set_rect(
        &mut self,
        rect: Option<SharedRect>,
        desktop: (u16, u16),
    ) -> Result<Vec<ShareEffect>, ShareError> {
        if self.closed {
            return Err(ShareError::Closed);
        }
        if let Some(r) = &rect {
            r.validate(desktop)?;
        }
        if rect == self.rect {
            return Ok(Vec::new());
        }
        self.rect = rect;
        self.push(ShareEvent::SharedRectChanged { rect });
        Ok(vec![ShareEffect::Region(rect)])
    }

    /// `Close`: every attendee is closed (Set Error Info 0x1) without disconnect events
    /// (Windows semantics), and the sharing is over: later admissions are refused
    /// ([`Refusal::Closed`]), invitations stay listed. Closing again does nothing.
    pub fn close(&mut self, table: &mut SessionTable, now: SystemTime) -> Vec<ShareEffect> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        let attendees = std::mem::take(&mut self.attendees);
        let mut effects = Vec::new();
        for a in attendees.values() {
            effects.extend(close_viewer(table, a.terminal, now));
        }
        self.push(ShareEvent::Closed);
        effects
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn rect(&self) -> Option<SharedRect> {
        self.rect
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// `ConnectToClient` reached none of `addresses`: record the event.
    pub fn connection_failed(&mut self, addresses: Vec<String>, reason: String) {
        self.push(ShareEvent::ConnectionFailed { addresses, reason });
    }

    /// Events since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<ShareEvent> {
        self.events.drain(..).collect()
    }

    /// How many events were dropped because nobody drained them in time.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    fn push(&mut self, event: ShareEvent) {
        if self.events.len() >= EVENT_QUEUE_CAPACITY {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn group_id(&self, invitation: InvitationId) -> u32 {
        self.invitation(invitation).map_or(0, |i| i.group_id)
    }

    /// `OD_PARTICIPANT_REMOVED` about `gone` to every remaining attendee.
    fn removed_notices(&self, gone: &Attendee, reason: DisconnectReason) -> Vec<ShareEffect> {
        self.attendees
            .values()
            .map(|to| {
                ShareEffect::ParticipantRemoved(RemovedNotice {
                    terminal: to.terminal,
                    participant_id: gone.id.0,
                    reason,
                })
            })
            .collect()
    }
}

/// `OD_PARTICIPANT_CREATED` about `about`, for terminal `to`.
fn notice(about: &Attendee, group_id: u32, to: TerminalId) -> ShareEffect {
    ShareEffect::Participant(ParticipantNotice {
        terminal: to,
        participant_id: about.id.0,
        group_id,
        may_view: about.level.sees_screen(),
        may_interact: about.level.may_input(),
        is_participant: about.terminal == to,
        name: about.name.clone(),
    })
}

/// Close an attendee's terminal on the sharer's decision. The table detaches it; should the
/// table no longer know it as a viewer (its session ended first), the terminal is still closed.
fn close_viewer(
    table: &mut SessionTable,
    terminal: TerminalId,
    now: SystemTime,
) -> Vec<ShareEffect> {
    let reason = CloseReason::DisconnectedByOther;
    let effects = table
        .detach_viewer(terminal, reason, now)
        .unwrap_or_else(|_| vec![Effect::Close { terminal, reason }]);
    effects.into_iter().map(ShareEffect::Session).collect()
}

/// A client-supplied string fit for logs and the CLI: control characters replaced, bounded.
fn clean(s: &str) -> String {
    s.chars()
        .take(MAX_ATTENDEE_NAME_LEN)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// Equal contents, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// For fuzzing and the robustness test: run a sequence of sharing operations read from `data`
/// against a session table, and check after each that the two agree (every attendee is a
/// viewer of the shared session at its level, and nothing else is), that limits hold, that
/// notices go to attendees only, and that nobody becomes Interactive without the sharer's
/// say. Panics on a violation (that is its purpose); never otherwise. Returns how many
/// attendees were admitted, so that a caller can tell the sequences reached admission.
#[doc(hidden)]
pub fn check_operations(data: &[u8]) -> usize {
    use crate::effect::Role;
    use crate::session::Policy;
    use std::time::Duration;

    const LEVELS: [ControlLevel; 3] = [
        ControlLevel::None,
        ControlLevel::View,
        ControlLevel::Interactive,
    ];
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let Some(first) = next() else { return 0 };
    let mut admitted = 0;
    let policy = SharingPolicy::new(
        LEVELS[usize::from(first & 1)],
        LEVELS[usize::from(first >> 1) % 3],
    )
    .expect("never Interactive by default");
    let mut table = SessionTable::new(Policy::default());
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let session = table.open_console("sharer", start).expect("an empty table");
    let mut sharing = Sharing::new(session, policy);
    let mut granted_interactive = policy.auto_grant() == ControlLevel::Interactive;
    let mut step = 0u64;
    while let Some(op) = next() {
        step += 1;
        let now = start + Duration::from_secs(step);
        let a = next().unwrap_or(0);
        let b = next().unwrap_or(0);
        let terminal = TerminalId(u64::from(a % 6) + 1);
        let attendee = AttendeeId(u32::from(a % 8));
        let was_closed = sharing.is_closed();
        // Admissions common and close rare, so that sequences get somewhere before it.
        let kind = match op % 16 {
            0 | 1 => 0,
            2..=5 => 2,
            6 => 1,
            7 | 8 => 3,
            9 => 4,
            10 => 5,
            11 => 6,
            12 => 7,
            13 => 8,
            14 => 9,
            _ if a % 8 == 0 => 10,
            _ => 4,
        };
        let effects = match kind {
            0 => {
                let made = sharing.create_invitation(
                    format!("t{}", a % 4),
                    format!("p{}", b % 2),
                    format!("g{}", b % 3),
                    u32::from(b % 4),
                    now,
                );
                assert!(
                    made.is_ok()
                        || matches!(
                            made,
                            Err(ShareError::DuplicateTicket
                                | ShareError::ZeroLimit
                                | ShareError::Closed)
                        )
                );
                Vec::new()
            }
            1 => {
                let _ = sharing.revoke(InvitationId(u32::from(a % 5)));
                Vec::new()
            }
            2 => {
                let ticket = format!("t{}", b % 4);
                let password = format!("p{}", (b >> 2) % 2);
                match sharing.admit(
                    &mut table,
                    &ticket,
                    &password,
                    "viewer\u{1b}[31m",
                    "addr",
                    terminal,
                    now,
                ) {
                    Ok((id, effects)) => {
                        assert_eq!(
                            effects.first(),
                            Some(&ShareEffect::Session(Effect::Show {
                                terminal,
                                session,
                                role: Role::Viewer(policy.start_level()),
                            }))
                        );
                        let a = sharing.attendee(id).expect("admitted");
                        assert!(!a.name.chars().any(char::is_control));
                        admitted += 1;
                        effects
                    }
                    Err(refusal) => {
                        assert!(matches!(refusal.error_info(), 0x7 | 0x9));
                        Vec::new()
                    }
                }
            }
            3 => {
                let level = LEVELS[usize::from(b % 3)];
                granted_interactive |= level == ControlLevel::Interactive;
                sharing
                    .set_level(&mut table, attendee, level)
                    .unwrap_or_default()
            }
            4 => sharing.control_request(&mut table, terminal, b & 1 != 0, b & 2 != 0),
            5 => sharing
                .terminate(&mut table, attendee, now)
                .unwrap_or_default(),
            6 => {
                let reason = [DisconnectReason::Cli, DisconnectReason::Err][usize::from(b & 1)];
                sharing.terminal_gone(&mut table, terminal, reason, now)
            }
            7 => sharing.pause(),
            8 => sharing.resume(),
            9 => {
                let rect = (b != 0).then(|| {
                    SharedRect::new(
                        u16::from(a % 70),
                        u16::from(b % 50),
                        u16::from(a / 3),
                        u16::from(b / 4),
                    )
                });
                sharing.set_rect(rect, (64, 48)).unwrap_or_default()
            }
            _ => sharing.close(&mut table, now),
        };

        // The sharing and the table agree.
        let mut from_sharing: Vec<_> = sharing.attendees().map(|a| (a.terminal, a.level)).collect();
        from_sharing.sort();
        let mut from_table = table.viewers(session);
        from_table.sort();
        assert_eq!(from_sharing, from_table, "after op {op}");
        for a in sharing.attendees() {
            assert_eq!(
                table.shows(a.terminal),
                Some((session, Role::Viewer(a.level)))
            );
            assert!(granted_interactive || a.level != ControlLevel::Interactive);
        }
        for i in sharing.invitations() {
            assert!(sharing.attendee_count(i.id) <= i.attendee_limit as usize);
        }
        if sharing.is_closed() {
            assert_eq!(sharing.attendees().count(), 0);
        }
        if was_closed {
            assert!(effects.is_empty(), "effects after close: {effects:?}");
        }
        if let Some(rect) = sharing.rect() {
            assert!(rect.validate((64, 48)).is_ok());
        }
        for effect in &effects {
            match effect {
                ShareEffect::Participant(ParticipantNotice { terminal, .. })
                | ShareEffect::ParticipantRemoved(RemovedNotice { terminal, .. }) => {
                    assert!(
                        sharing.attendee_of(*terminal).is_some(),
                        "{effect:?} to a non-attendee"
                    );
                }
                _ => {}
            }
        }
        assert!(sharing.events.len() <= EVENT_QUEUE_CAPACITY);
    }
    admitted
}

/// Who may connect to a host, which decides how a connection and a sharing request find
/// their sharing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Users log on with their accounts; a client bearing an invitation's ticket joins that
    /// sharing instead (`rdhost serve`). A session shared here can be shared again later.
    Accounts,
    /// Only attendees with an invitation (`rdhost share start`): no accounts, one sharing, and
    /// the host ends with it.
    InvitationsOnly,
}

/// Why a sharing request has no session to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveRefusal {
    /// On a sharing-only host, the caller is neither the user running it nor root.
    NotTheSharer,
    /// On an account host, the caller runs outside any session.
    NoSession,
    /// There is no sharing to drive.
    NotShared,
}

impl Admission {
    /// Whether a connection presenting `ticket` (Client Info WorkingDir) is an attendee rather
    /// than a user logging on: it bears one of the `sharings`' tickets, revoked or not (its
    /// admission then says why it is refused), or the host admits only attendees.
    pub fn is_attendee<'a>(self, ticket: &str, mut sharings: impl Iterator<Item = &'a Sharing>) -> bool {
        self == Admission::InvitationsOnly || (!ticket.is_empty() && sharings.any(|s| s.invitation_for_ticket(ticket).is_some()))
    }

    /// The session whose sharing an attendee presenting `ticket` joins: the one with an
    /// invitation bearing it; on a sharing-only host its sharing whatever the ticket, so that
    /// [`Sharing::admit`] refuses a wrong one with the reason the client is shown.
    pub fn sharing_for_ticket<'a>(self, ticket: &str, sharings: impl Iterator<Item = (&'a SessionId, &'a Sharing)>) -> Option<SessionId> {
        let mut first = None;
        for (session, sharing) in sharings {
            if sharing.invitation_for_ticket(ticket).is_some() {
                return Some(*session);
            }
            first = first.or(Some(*session));
        }
        first.filter(|_| self == Admission::InvitationsOnly)
    }

    /// The session a sharing request from `caller` drives. On an account host, the caller's
    /// own session (`rdhost share` runs inside the session it shares). On a sharing-only host
    /// its one sharing (`sharing`), driven only by the user running the host (`host_uid`) or
    /// root: attendees and other local users must not invite, grant or close.
    pub fn driven_session(self, caller: &Caller, host_uid: u32, sharing: Option<SessionId>) -> Result<SessionId, DriveRefusal> {
        match self {
            Admission::InvitationsOnly if caller.uid != host_uid && !caller.is_root() => Err(DriveRefusal::NotTheSharer),
            Admission::InvitationsOnly => sharing.ok_or(DriveRefusal::NotShared),
            Admission::Accounts => caller.session.ok_or(DriveRefusal::NoSession),
        }
    }

    /// Whether a closed sharing is forgotten, so that its session can be shared again: on an
    /// account host; a sharing-only host ends with its sharing.
    pub fn forgets_closed_sharings(self) -> bool {
        self == Admission::Accounts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effect::Role;
    use crate::session::{LogonError, Policy, SessionEvent, SessionState};
    use crate::testing::{T1, T2, T3, T4, t};
    use ControlLevel as L;

    fn setup(policy: SharingPolicy) -> (SessionTable, Sharing) {
        let mut tab = SessionTable::new(Policy::default());
        let session = tab.open_console("alice", t(0)).unwrap();
        tab.drain_events();
        (tab, Sharing::new(session, policy))
    }

    fn policy(default_level: L, auto_grant: L) -> SharingPolicy {
        SharingPolicy::new(default_level, auto_grant).unwrap()
    }

    fn invite(sh: &mut Sharing, ticket: &str, password: &str, limit: u32) -> InvitationId {
        sh.create_invitation(ticket.into(), password.into(), "g".into(), limit, t(0))
            .unwrap()
            .id
    }

    fn admit(
        sh: &mut Sharing,
        tab: &mut SessionTable,
        ticket: &str,
        password: &str,
        terminal: TerminalId,
    ) -> Result<(AttendeeId, Vec<ShareEffect>), Refusal> {
        let name = format!("viewer{}", terminal.0);
        sh.admit(
            tab,
            ticket,
            password,
            &name,
            "127.0.0.1:5000",
            terminal,
            t(1),
        )
    }

    /// A connection is an attendee when it bears a ticket of some sharing, revoked or not, or
    /// on a sharing-only host; its sharing is the one with that ticket, or there the only one.
    #[test]
    fn admission_routes_connections_to_the_sharing_with_their_ticket() {
        let (_, mut a) = setup(SharingPolicy::default());
        let (_, mut b) = setup(SharingPolicy::default());
        let (sa, sb): (SessionId, SessionId) = (7, 9);
        invite(&mut a, "ticket-a", "pw", 5);
        let revoked = invite(&mut b, "ticket-b", "pw", 5);
        b.revoke(revoked).unwrap();
        let both = [(sa, &a), (sb, &b)];
        let iter = || both.iter().map(|(id, s)| (id, *s));
        let sharings = || both.iter().map(|(_, s)| *s);

        let accounts = Admission::Accounts;
        assert!(accounts.is_attendee("ticket-a", sharings()));
        assert!(accounts.is_attendee("ticket-b", sharings()), "a revoked ticket is refused at admission, with its reason");
        assert!(!accounts.is_attendee("", sharings()), "a logon without a ticket");
        assert!(!accounts.is_attendee("a working directory", sharings()));
        assert_eq!(accounts.sharing_for_ticket("ticket-b", iter()), Some(sb));
        assert_eq!(accounts.sharing_for_ticket("ticket-a", iter()), Some(sa));
        assert_eq!(accounts.sharing_for_ticket("other", iter()), None);

        let only = Admission::InvitationsOnly;
        let one = [(sa, &a)];
        assert!(only.is_attendee("", std::iter::empty()), "a sharing-only host has no accounts");
        assert_eq!(only.sharing_for_ticket("wrong", one.iter().map(|(id, s)| (id, *s))), Some(sa), "admit refuses it with its reason");
        assert_eq!(only.sharing_for_ticket("wrong", std::iter::empty()), None);
    }

    /// A sharing request drives the caller's own session on an account host, and on a
    /// sharing-only host its sharing, for the user running it or root only.
    #[test]
    fn admission_decides_which_session_a_sharing_request_drives() {
        let caller = |uid: u32, session: Option<SessionId>| Caller { uid, user: format!("u{uid}"), groups: vec![], session };
        let shared = Some(3);
        let only = Admission::InvitationsOnly;
        assert_eq!(only.driven_session(&caller(1000, None), 1000, shared), Ok(3));
        assert_eq!(only.driven_session(&caller(0, None), 1000, shared), Ok(3), "root");
        assert_eq!(only.driven_session(&caller(1001, shared), 1000, shared), Err(DriveRefusal::NotTheSharer));
        assert_eq!(only.driven_session(&caller(1000, None), 1000, None), Err(DriveRefusal::NotShared));
        assert!(!only.forgets_closed_sharings());

        let accounts = Admission::Accounts;
        assert_eq!(accounts.driven_session(&caller(1001, Some(5)), 0, shared), Ok(5), "the caller's own session");
        assert_eq!(accounts.driven_session(&caller(1001, None), 0, shared), Err(DriveRefusal::NoSession));
        assert!(accounts.forgets_closed_sharings());
    }

    /// The table's viewers of the shared session, as (terminal, level).
    fn viewers(tab: &SessionTable, sh: &Sharing) -> Vec<(TerminalId, L)> {
        tab.assert_consistent();
        tab.viewers(sh.session())
    }

    fn show(terminal: TerminalId, session: SessionId, level: L) -> ShareEffect {
        ShareEffect::Session(Effect::Show {
            terminal,
            session,
            role: Role::Viewer(level),
        })
    }

    fn participant(
        to: TerminalId,
        about: u32,
        level: L,
        is_participant: bool,
        name: &str,
    ) -> ShareEffect {
        ShareEffect::Participant(ParticipantNotice {
            terminal: to,
            participant_id: about,
            group_id: 1,
            may_view: level.sees_screen(),
            may_interact: level.may_input(),
            is_participant,
            name: name.into(),
        })
    }

    #[test]
    fn open_console_is_an_active_session_without_a_terminal() {
        let mut tab = SessionTable::new(Policy::default());
        let id = tab.open_console("alice", t(5)).unwrap();
        let s = tab.get(id).unwrap();
        assert_eq!(
            (s.state, s.primary, s.user.as_str()),
            (SessionState::Active, None, "alice")
        );
        assert_eq!(
            (s.logon_time, s.connect_time, s.disconnect_time),
            (t(5), None, None)
        );
        assert_eq!(tab.follows(id), None);
        assert_eq!(
            tab.drain_events(),
            [
                SessionEvent::Create { id },
                SessionEvent::Logon {
                    id,
                    user: "alice".into()
                },
                SessionEvent::StateChange {
                    id,
                    from: SessionState::Init,
                    to: SessionState::Active
                }
            ]
        );
        tab.assert_consistent();
        // Attendees attach to it like to any session.
        tab.attach_viewer(T1, id, L::View, t(6)).unwrap();
        assert_eq!(tab.shows(T1), Some((id, Role::Viewer(L::View))));
        let mut full = SessionTable::new(Policy {
            single_session_per_user: true,
            max_sessions: Some(1),
        });
        full.open_console("alice", t(0)).unwrap();
        assert_eq!(
            full.open_console("bob", t(0)),
            Err(LogonError::TooManySessions)
        );
        assert_eq!(full.len(), 1);
    }

    #[test]
    fn admission_needs_ticket_password_unrevoked_invitation() {
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        let inv = invite(&mut sh, "ticket-1", "secret", 5);
        let other = invite(&mut sh, "ticket-2", "", 5);
        sh.drain_events();

        assert_eq!(
            admit(&mut sh, &mut tab, "nope", "secret", T1).unwrap_err(),
            Refusal::UnknownTicket
        );
        assert_eq!(
            admit(&mut sh, &mut tab, "", "", T1).unwrap_err(),
            Refusal::UnknownTicket
        );
        assert_eq!(
            admit(&mut sh, &mut tab, "ticket-1", "secreT", T1).unwrap_err(),
            Refusal::WrongPassword(inv)
        );
        assert_eq!(
            admit(&mut sh, &mut tab, "ticket-1", "secret2", T1).unwrap_err(),
            Refusal::WrongPassword(inv)
        );
        assert_eq!(
            admit(&mut sh, &mut tab, "ticket-1", "", T1).unwrap_err(),
            Refusal::WrongPassword(inv)
        );
        // Refusals change nothing.
        assert_eq!(viewers(&tab, &sh), []);
        assert_eq!(sh.attendees().count(), 0);
        assert!(sh.drain_events().is_empty());

        let (id, _) = admit(&mut sh, &mut tab, "ticket-1", "secret", T1).unwrap();
        assert_eq!(id, AttendeeId(1));
        // An invitation without password admits with an empty one only.
        assert_eq!(
            admit(&mut sh, &mut tab, "ticket-2", "x", T2).unwrap_err(),
            Refusal::WrongPassword(other)
        );
        let (id2, _) = admit(&mut sh, &mut tab, "ticket-2", "", T2).unwrap();
        assert_eq!(id2, AttendeeId(2));
        assert_eq!(viewers(&tab, &sh), [(T1, L::None), (T2, L::None)]);
        let a = sh.attendee(id).unwrap();
        assert_eq!(
            (
                a.terminal,
                a.name.as_str(),
                a.level,
                a.invitation,
                a.address.as_str(),
                a.connected
            ),
            (T1, "viewer1", L::None, inv, "127.0.0.1:5000", t(1))
        );
        assert_eq!(sh.attendee_of(T2).map(|a| a.id), Some(id2));

        // Revoked: new connections refused (even with the right password), connected stay.
        sh.revoke(inv).unwrap();
        assert!(sh.invitation(inv).unwrap().revoked);
        assert_eq!(
            admit(&mut sh, &mut tab, "ticket-1", "secret", T3).unwrap_err(),
            Refusal::Revoked(inv)
        );
        // Without the password nothing about the invitation's state leaks.
        assert_eq!(
            admit(&mut sh, &mut tab, "ticket-1", "bad", T3).unwrap_err(),
            Refusal::WrongPassword(inv)
        );
        assert_eq!(viewers(&tab, &sh), [(T1, L::None), (T2, L::None)]);
        // The host still recognises the ticket as an attendee's.
        assert_eq!(
            sh.invitation_for_ticket("ticket-1").map(|i| i.id),
            Some(inv)
        );
        assert!(sh.invitation_for_ticket("ticket-").is_none());
        assert!(sh.invitation_for_ticket("ticket-11").is_none());

        // A terminal cannot be admitted twice, nor if it is someone's primary.
        assert!(matches!(
            admit(&mut sh, &mut tab, "ticket-2", "", T1),
            Err(Refusal::Unavailable(_))
        ));
        let b = crate::testing::ready(&mut tab, "bob", T4, t(0));
        assert_ne!(b, sh.session());
        let refusal = admit(&mut sh, &mut tab, "ticket-2", "", T4).unwrap_err();
        assert!(
            matches!(refusal, Refusal::Unavailable(ref m) if m.contains("primary")),
            "{refusal}"
        );
        assert_eq!(refusal.error_info(), 0x7);
        assert_eq!(viewers(&tab, &sh).len(), 2);
    }

    #[test]
    fn refusals_map_to_error_codes_and_say_why() {
        let i = InvitationId(3);
        let cases = [
            (Refusal::UnknownTicket, 0x9, "no invitation has the ticket"),
            (
                Refusal::WrongPassword(i),
                0x9,
                "wrong password for invitation 3",
            ),
            (Refusal::Revoked(i), 0x7, "invitation 3 is revoked"),
            (
                Refusal::LimitReached {
                    invitation: i,
                    limit: 2,
                },
                0x7,
                "limit of 2",
            ),
            (Refusal::Closed, 0x7, "closed"),
            (Refusal::Unavailable("gone".into()), 0x7, "gone"),
        ];
        for (refusal, code, text) in cases {
            assert_eq!(refusal.error_info(), code, "{refusal:?}");
            assert!(refusal.to_string().contains(text), "{refusal}");
        }
        assert_eq!(
            [
                DisconnectReason::App,
                DisconnectReason::Err,
                DisconnectReason::Cli
            ]
            .map(|r| (r.code(), r.name())),
            [(0, "APP"), (1, "ERR"), (2, "CLI")]
        );
        assert_eq!(format!("{}/{}", InvitationId(7), AttendeeId(9)), "7/9");
    }

    #[test]
    fn attendee_limit_counts_connected_attendees_per_invitation() {
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        let inv = invite(&mut sh, "a", "pw", 2);
        invite(&mut sh, "b", "pw", 1);
        admit(&mut sh, &mut tab, "a", "pw", T1).unwrap();
        admit(&mut sh, &mut tab, "a", "pw", T2).unwrap();
        assert_eq!(sh.attendee_count(inv), 2);
        assert_eq!(
            admit(&mut sh, &mut tab, "a", "pw", T3).unwrap_err(),
            Refusal::LimitReached {
                invitation: inv,
                limit: 2
            }
        );
        // Another invitation has its own count.
        admit(&mut sh, &mut tab, "b", "pw", T4).unwrap();
        // A slot freed by a leaving attendee can be taken again; ids are not reused.
        sh.terminal_gone(&mut tab, T1, DisconnectReason::Cli, t(2));
        let (id, _) = admit(&mut sh, &mut tab, "a", "pw", T3).unwrap();
        assert_eq!(id, AttendeeId(4));
        assert_eq!(
            viewers(&tab, &sh),
            [(T2, L::None), (T4, L::None), (T3, L::None)]
        );
        // And by a terminated one.
        sh.terminate(&mut tab, AttendeeId(2), t(3)).unwrap();
        admit(&mut sh, &mut tab, "a", "pw", T1).unwrap();
        assert_eq!(sh.attendee_count(inv), 2);
    }

    #[test]
    fn start_levels_follow_the_policy() {
        assert!(matches!(
            SharingPolicy::new(L::Interactive, L::None),
            Err(ShareError::InvalidLevel {
                level: L::Interactive,
                ..
            })
        ));
        let starts = [
            ((L::None, L::None), L::None),
            ((L::View, L::None), L::View),
            ((L::None, L::View), L::View),
            ((L::None, L::Interactive), L::View),
            ((L::View, L::Interactive), L::View),
        ];
        for ((default_level, auto_grant), start) in starts {
            let p = policy(default_level, auto_grant);
            assert_eq!(p.start_level(), start, "{p:?}");
            let (mut tab, mut sh) = setup(p);
            invite(&mut sh, "t", "p", 1);
            let (_, effects) = admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
            assert_eq!(
                effects,
                [
                    show(T1, sh.session(), start),
                    participant(T1, 1, start, true, "viewer1")
                ]
            );
            assert_eq!(viewers(&tab, &sh), [(T1, start)]);
        }
        assert_eq!(SharingPolicy::default().start_level(), L::None);
    }

    #[test]
    fn admission_notifies_the_newcomer_and_the_others() {
        let (mut tab, mut sh) = setup(policy(L::View, L::None));
        invite(&mut sh, "t", "p", 5);
        admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        sh.set_level(&mut tab, AttendeeId(1), L::Interactive)
            .unwrap();
        sh.drain_events();
        let (id, effects) = sh
            .admit(&mut tab, "t", "p", "bob\u{7}\nx", "10.1.1.1:6000", T2, t(4))
            .unwrap();
        let name = "bob\u{FFFD}\u{FFFD}x";
        assert_eq!(
            effects,
            [
                show(T2, sh.session(), L::View),
                participant(T2, 2, L::View, true, name),
                participant(T1, 2, L::View, false, name),
            ]
        );
        let a = sh.attendee(id).unwrap().clone();
        assert_eq!(a.name, name);
        assert_eq!(
            sh.drain_events(),
            [ShareEvent::AttendeeConnected { attendee: a }]
        );
        let long = "n".repeat(MAX_ATTENDEE_NAME_LEN + 10);
        sh.admit(&mut tab, "t", "p", &long, "", T3, t(5)).unwrap();
        assert_eq!(
            sh.attendee_of(T3).unwrap().name.chars().count(),
            MAX_ATTENDEE_NAME_LEN
        );
    }

    #[test]
    fn set_level_emits_set_level_and_participant_notices() {
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        invite(&mut sh, "t", "p", 5);
        let (a, _) = admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        admit(&mut sh, &mut tab, "t", "p", T2).unwrap();
        sh.drain_events();
        assert_eq!(
            sh.set_level(&mut tab, a, L::Interactive).unwrap(),
            [
                ShareEffect::Session(Effect::SetLevel {
                    terminal: T1,
                    level: L::Interactive
                }),
                participant(T1, 1, L::Interactive, true, "viewer1"),
                participant(T2, 1, L::Interactive, false, "viewer1"),
            ]
        );
        let updated = sh.attendee(a).unwrap().clone();
        assert_eq!(updated.level, L::Interactive);
        assert_eq!(
            sh.drain_events(),
            [ShareEvent::AttendeeUpdated { attendee: updated }]
        );
        assert_eq!(viewers(&tab, &sh), [(T1, L::Interactive), (T2, L::None)]);
        // The same level again: nothing.
        assert_eq!(sh.set_level(&mut tab, a, L::Interactive).unwrap(), []);
        assert!(sh.drain_events().is_empty());
        // The sharer may lower it too.
        let effects = sh.set_level(&mut tab, a, L::View).unwrap();
        assert_eq!(
            effects[0],
            ShareEffect::Session(Effect::SetLevel {
                terminal: T1,
                level: L::View
            })
        );
        assert_eq!(effects[1], participant(T1, 1, L::View, true, "viewer1"));
        assert_eq!(viewers(&tab, &sh), [(T1, L::View), (T2, L::None)]);
        assert_eq!(
            sh.set_level(&mut tab, AttendeeId(9), L::View),
            Err(ShareError::NoSuchAttendee(9))
        );
    }

    #[test]
    fn control_requests_are_events_and_auto_granted_up_to_the_policy() {
        // Auto-grant off: the request is an event, nothing changes.
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        invite(&mut sh, "t", "p", 5);
        admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        sh.drain_events();
        assert_eq!(sh.control_request(&mut tab, T1, true, true), []);
        let before = sh.attendee_of(T1).unwrap().clone();
        assert_eq!(
            sh.drain_events(),
            [ShareEvent::ControlLevelChangeRequested {
                attendee: before,
                requested: L::Interactive
            }]
        );
        assert_eq!(viewers(&tab, &sh), [(T1, L::None)]);
        sh.control_request(&mut tab, T1, true, false);
        assert!(matches!(
            sh.drain_events()[..],
            [ShareEvent::ControlLevelChangeRequested {
                requested: L::View,
                ..
            }]
        ));
        sh.control_request(&mut tab, T1, false, false);
        assert!(matches!(
            sh.drain_events()[..],
            [ShareEvent::ControlLevelChangeRequested {
                requested: L::View,
                ..
            }]
        ));

        // Auto-grant view: attendees start at View; an interactive request stays at View.
        let (mut tab, mut sh) = setup(policy(L::None, L::View));
        invite(&mut sh, "t", "p", 5);
        admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        sh.drain_events();
        assert_eq!(sh.control_request(&mut tab, T1, true, true), []);
        assert_eq!(sh.drain_events().len(), 1);
        assert_eq!(viewers(&tab, &sh), [(T1, L::View)]);
        // Lowered by the sharer, a view request brings it back.
        sh.set_level(&mut tab, AttendeeId(1), L::None).unwrap();
        let effects = sh.control_request(&mut tab, T1, true, false);
        assert_eq!(
            effects[0],
            ShareEffect::Session(Effect::SetLevel {
                terminal: T1,
                level: L::View
            })
        );
        assert_eq!(viewers(&tab, &sh), [(T1, L::View)]);

        // Auto-grant interactive: granted at once, with notices and both events.
        let (mut tab, mut sh) = setup(policy(L::None, L::Interactive));
        invite(&mut sh, "t", "p", 5);
        admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        admit(&mut sh, &mut tab, "t", "p", T2).unwrap();
        sh.drain_events();
        assert_eq!(
            sh.control_request(&mut tab, T2, true, true),
            [
                ShareEffect::Session(Effect::SetLevel {
                    terminal: T2,
                    level: L::Interactive
                }),
                participant(T1, 2, L::Interactive, false, "viewer2"),
                participant(T2, 2, L::Interactive, true, "viewer2"),
            ]
        );
        let events = sh.drain_events();
        assert!(
            matches!(
                &events[..],
                [
                    ShareEvent::ControlLevelChangeRequested { attendee: asked, requested: L::Interactive },
                    ShareEvent::AttendeeUpdated { attendee: updated },
                ] if asked.level == L::View && asked.terminal == T2 && updated.level == L::Interactive
            ),
            "{events:?}"
        );
        // Identity is the terminal: T1 is untouched.
        assert_eq!(viewers(&tab, &sh), [(T1, L::View), (T2, L::Interactive)]);
        // A view request ("release control") never lowers the level.
        assert_eq!(sh.control_request(&mut tab, T2, true, false), []);
        assert_eq!(viewers(&tab, &sh), [(T1, L::View), (T2, L::Interactive)]);
        // A terminal that is no attendee: ignored, no event.
        sh.drain_events();
        assert_eq!(sh.control_request(&mut tab, T3, true, true), []);
        assert!(sh.drain_events().is_empty());
    }

    #[test]
    fn terminate_is_app_and_leaving_is_cli() {
        let (mut tab, mut sh) = setup(policy(L::View, L::None));
        invite(&mut sh, "t", "p", 5);
        let (a, _) = admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        let (b, _) = admit(&mut sh, &mut tab, "t", "p", T2).unwrap();
        let (c, _) = admit(&mut sh, &mut tab, "t", "p", T3).unwrap();
        sh.drain_events();

        let gone = sh.attendee(a).unwrap().clone();
        assert_eq!(
            sh.terminate(&mut tab, a, t(2)).unwrap(),
            [
                ShareEffect::Session(Effect::Close {
                    terminal: T1,
                    reason: CloseReason::DisconnectedByOther
                }),
                ShareEffect::ParticipantRemoved(RemovedNotice {
                    terminal: T2,
                    participant_id: 1,
                    reason: DisconnectReason::App
                }),
                ShareEffect::ParticipantRemoved(RemovedNotice {
                    terminal: T3,
                    participant_id: 1,
                    reason: DisconnectReason::App
                }),
            ]
        );
        assert_eq!(
            sh.drain_events(),
            [ShareEvent::AttendeeDisconnected {
                attendee: gone,
                reason: DisconnectReason::App
            }]
        );
        assert_eq!(viewers(&tab, &sh), [(T2, L::View), (T3, L::View)]);
        assert_eq!(
            sh.terminate(&mut tab, a, t(2)),
            Err(ShareError::NoSuchAttendee(1))
        );
        // Its connection then ends: already gone, nothing happens.
        assert_eq!(
            sh.terminal_gone(&mut tab, T1, DisconnectReason::Cli, t(3)),
            []
        );
        assert!(sh.drain_events().is_empty());

        // The client leaves by itself.
        let left = sh.attendee(b).unwrap().clone();
        assert_eq!(
            sh.terminal_gone(&mut tab, T2, DisconnectReason::Cli, t(4)),
            [ShareEffect::ParticipantRemoved(RemovedNotice {
                terminal: T3,
                participant_id: 2,
                reason: DisconnectReason::Cli
            })]
        );
        assert_eq!(
            sh.drain_events(),
            [ShareEvent::AttendeeDisconnected {
                attendee: left,
                reason: DisconnectReason::Cli
            }]
        );
        // An error on the last one.
        assert_eq!(
            sh.terminal_gone(&mut tab, T3, DisconnectReason::Err, t(5)),
            []
        );
        assert!(matches!(
            sh.drain_events()[..],
            [ShareEvent::AttendeeDisconnected { reason: DisconnectReason::Err, ref attendee }] if attendee.id == c
        ));
        assert_eq!(viewers(&tab, &sh), []);
        assert_eq!(sh.attendees().count(), 0);
        // The session itself is untouched.
        assert_eq!(tab.get(sh.session()).unwrap().state, SessionState::Active);
    }

    #[test]
    fn pause_and_resume_are_idempotent_and_reach_newcomers() {
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        invite(&mut sh, "t", "p", 5);
        sh.drain_events();
        assert_eq!(sh.resume(), []);
        assert_eq!(sh.pause(), [ShareEffect::Pause { paused: true }]);
        assert!(sh.paused());
        assert_eq!(sh.pause(), []);
        assert_eq!(sh.drain_events(), [ShareEvent::GraphicsPaused]);
        let (_, effects) = admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        assert_eq!(effects[1], ShareEffect::PauseTerminal { terminal: T1 });
        sh.drain_events();
        assert_eq!(sh.resume(), [ShareEffect::Pause { paused: false }]);
        assert_eq!(sh.resume(), []);
        assert!(!sh.paused());
        assert_eq!(sh.drain_events(), [ShareEvent::GraphicsResumed]);
        let (_, effects) = admit(&mut sh, &mut tab, "t", "p", T2).unwrap();
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, ShareEffect::PauseTerminal { .. }))
        );
    }

    #[test]
    fn shared_rect_is_validated_and_reaches_newcomers() {
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        invite(&mut sh, "t", "p", 5);
        sh.drain_events();
        let desktop = (1024, 768);
        for (rect, problem) in [
            (SharedRect::new(10, 10, 10, 20), "empty"),
            (SharedRect::new(10, 20, 30, 20), "empty"),
            (SharedRect::new(30, 10, 10, 20), "empty"),
            (
                SharedRect::new(0, 0, 1025, 10),
                "outside the 1024x768 desktop",
            ),
            (SharedRect::new(0, 700, 10, 769), "outside"),
        ] {
            let err = sh.set_rect(Some(rect), desktop).unwrap_err();
            assert!(matches!(err, ShareError::BadRect { rect: r, .. } if r == rect));
            assert!(err.to_string().contains(problem), "{err}");
        }
        assert_eq!(sh.rect(), None);
        assert!(sh.drain_events().is_empty());

        let rect = SharedRect::new(100, 50, 740, 530);
        assert_eq!(
            (rect.width(), rect.height(), rect.to_string()),
            (640, 480, "100 50 740 530".to_string())
        );
        assert_eq!(
            sh.set_rect(Some(rect), desktop).unwrap(),
            [ShareEffect::Region(Some(rect))]
        );
        assert_eq!(sh.set_rect(Some(rect), desktop).unwrap(), []);
        assert_eq!(sh.rect(), Some(rect));
        assert_eq!(
            sh.drain_events(),
            [ShareEvent::SharedRectChanged { rect: Some(rect) }]
        );
        let (_, effects) = admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        assert_eq!(
            effects[1],
            ShareEffect::RegionTerminal { terminal: T1, rect }
        );
        // The whole desktop is a valid rectangle.
        let whole = SharedRect::new(0, 0, 1024, 768);
        assert_eq!(
            sh.set_rect(Some(whole), desktop).unwrap(),
            [ShareEffect::Region(Some(whole))]
        );
        assert_eq!(
            sh.set_rect(None, desktop).unwrap(),
            [ShareEffect::Region(None)]
        );
        assert_eq!(sh.rect(), None);
    }

    #[test]
    fn close_drops_everyone_silently_and_is_final() {
        let (mut tab, mut sh) = setup(policy(L::View, L::None));
        let inv = invite(&mut sh, "t", "p", 5);
        admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        admit(&mut sh, &mut tab, "t", "p", T2).unwrap();
        sh.drain_events();
        let reason = CloseReason::DisconnectedByOther;
        assert_eq!(
            sh.close(&mut tab, t(9)),
            [
                ShareEffect::Session(Effect::Close {
                    terminal: T1,
                    reason
                }),
                ShareEffect::Session(Effect::Close {
                    terminal: T2,
                    reason
                }),
            ]
        );
        // No AttendeeDisconnected: only Closed.
        assert_eq!(sh.drain_events(), [ShareEvent::Closed]);
        assert!(sh.is_closed());
        assert_eq!(viewers(&tab, &sh), []);
        assert_eq!(sh.attendees().count(), 0);
        assert_eq!(sh.close(&mut tab, t(10)), []);
        assert!(sh.drain_events().is_empty());
        // Final.
        assert_eq!(
            admit(&mut sh, &mut tab, "t", "p", T3).unwrap_err(),
            Refusal::Closed
        );
        assert_eq!(
            admit(&mut sh, &mut tab, "bad", "bad", T3).unwrap_err(),
            Refusal::Closed
        );
        assert_eq!(
            sh.create_invitation("u".into(), "p".into(), "g".into(), 1, t(10))
                .unwrap_err(),
            ShareError::Closed
        );
        assert_eq!(sh.set_rect(None, (10, 10)), Err(ShareError::Closed));
        assert_eq!(sh.pause(), []);
        assert_eq!(
            sh.terminal_gone(&mut tab, T1, DisconnectReason::Cli, t(11)),
            []
        );
        assert!(sh.drain_events().is_empty());
        assert_eq!(sh.invitations().map(|i| i.id).collect::<Vec<_>>(), [inv]);
        assert_eq!(viewers(&tab, &sh), []);
        assert_eq!(tab.get(sh.session()).unwrap().state, SessionState::Active);
    }

    #[test]
    fn close_still_closes_attendees_the_table_forgot() {
        // The shared session ended first (its desktop went away): closing still tells them.
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        invite(&mut sh, "t", "p", 5);
        admit(&mut sh, &mut tab, "t", "p", T1).unwrap();
        tab.end(sh.session(), t(2)).unwrap();
        assert_eq!(
            sh.close(&mut tab, t(3)),
            [ShareEffect::Session(Effect::Close {
                terminal: T1,
                reason: CloseReason::DisconnectedByOther
            })]
        );
        // And a session that is gone refuses newcomers with a reason.
        let (mut tab, mut sh) = setup(SharingPolicy::default());
        invite(&mut sh, "t", "p", 5);
        tab.end(sh.session(), t(2)).unwrap();
        let refusal = admit(&mut sh, &mut tab, "t", "p", T1).unwrap_err();
        assert!(
            matches!(refusal, Refusal::Unavailable(ref m) if m.contains("does not exist")),
            "{refusal}"
        );
    }

    #[test]
    fn invitations_are_checked_numbered_and_revocable() {
        let (_, mut sh) = setup(SharingPolicy::default());
        let long = "x".repeat(MAX_INVITATION_FIELD_LEN + 1);
        let mk = |sh: &mut Sharing, ticket: &str, password: &str, group: &str, limit| {
            sh.create_invitation(ticket.into(), password.into(), group.into(), limit, t(1))
                .cloned()
        };
        assert_eq!(mk(&mut sh, "", "p", "g", 1), Err(ShareError::EmptyTicket));
        assert_eq!(mk(&mut sh, "t", "p", "g", 0), Err(ShareError::ZeroLimit));
        for (ticket, password, group, what) in [
            (long.as_str(), "p", "g", "ticket"),
            ("t", long.as_str(), "g", "password"),
            ("t", "p", long.as_str(), "group name"),
        ] {
            assert_eq!(
                mk(&mut sh, ticket, password, group, 1),
                Err(ShareError::TooLong {
                    what,
                    len: 256,
                    max: 255
                })
            );
        }
        // 255 characters (not bytes) are fine.
        let first = mk(&mut sh, &"é".repeat(255), "p", "viewers", 3).unwrap();
        assert_eq!(
            (
                first.id,
                first.group_id,
                first.attendee_limit,
                first.revoked,
                first.created
            ),
            (InvitationId(1), 1, 3, false, t(1))
        );
        let second = mk(&mut sh, "t2", "", "helpers", 1).unwrap();
        let third = mk(&mut sh, "t3", "", "viewers", 1).unwrap();
        assert_eq!((second.id, second.group_id), (InvitationId(2), 2));
        assert_eq!((third.id, third.group_id), (InvitationId(3), 1));
        assert_eq!(
            mk(&mut sh, "t2", "other", "g", 1),
            Err(ShareError::DuplicateTicket)
        );
        assert_eq!(
            sh.drain_events(),
            [
                ShareEvent::InvitationCreated {
                    id: InvitationId(1),
                    group: "viewers".into(),
                    attendee_limit: 3
                },
                ShareEvent::InvitationCreated {
                    id: InvitationId(2),
                    group: "helpers".into(),
                    attendee_limit: 1
                },
                ShareEvent::InvitationCreated {
                    id: InvitationId(3),
                    group: "viewers".into(),
                    attendee_limit: 1
                },
            ]
        );
        sh.revoke(InvitationId(2)).unwrap();
        sh.revoke(InvitationId(2)).unwrap();
        assert_eq!(
            sh.drain_events(),
            [ShareEvent::InvitationRevoked {
                id: InvitationId(2)
            }]
        );
        assert_eq!(
            sh.revoke(InvitationId(4)),
            Err(ShareError::NoSuchInvitation(4))
        );
        // A revoked invitation's ticket stays taken.
        assert_eq!(
            mk(&mut sh, "t2", "p", "g", 1),
            Err(ShareError::DuplicateTicket)
        );
        assert_eq!(sh.invitations().filter(|i| i.revoked).count(), 1);
        // The password never shows in debug output.
        let debug = format!("{:?}", mk(&mut sh, "t9", "hunter2", "g", 1).unwrap());
        assert!(
            !debug.contains("hunter2") && debug.contains("t9"),
            "{debug}"
        );
    }

    #[test]
    fn events_are_bounded() {
        let (_, mut sh) = setup(SharingPolicy::default());
        for i in 0..EVENT_QUEUE_CAPACITY + 5 {
            sh.connection_failed(vec![format!("h{i}:1")], "refused".into());
        }
        assert_eq!(sh.events_dropped(), 5);
        let events = sh.drain_events();
        assert_eq!(events.len(), EVENT_QUEUE_CAPACITY);
        assert_eq!(
            events[0],
            ShareEvent::ConnectionFailed {
                addresses: vec!["h5:1".into()],
                reason: "refused".into()
            }
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
        assert!(!constant_time_eq(b"", b"\0"));
    }

    /// What the fuzz target does, deterministically and briefly, so that CI runs it.
    #[test]
    fn random_operation_sequences_keep_sharing_and_table_in_step() {
        let mut state = 0x0DDB_A11C_0FFE_E42Au64;
        let mut admitted = 0;
        for _ in 0..3000 {
            let len = 1 + (state % 120) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
                })
                .collect();
            admitted += check_operations(&data);
        }
        assert!(
            admitted > 1000,
            "only {admitted} admissions: the sequences test little"
        );
    }
}
