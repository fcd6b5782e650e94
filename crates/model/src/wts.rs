//! The WTS operations (spec.md §1.3–§1.5) as decisions over the [`SessionTable`]: query,
//! connect (`WTSConnectSession` / `tscon`), disconnect, logoff, reset, message targets and
//! remote control (shadow). Each checks the caller's `WTS_SECURITY_*` bits (the table's
//! [`Permissions`](crate::Permissions)) and the sessions' states first, and changes nothing
//! when it refuses; on success it returns the [`Effect`]s for the wiring.
//!
//! Where Linux makes a Windows rule meaningless, the choice is written next to the operation.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::effect::{CloseReason, ControlLevel, Effect, Role};
use crate::permissions::{Caller, perm};
use crate::session::{
    Session, SessionEvent, SessionId, SessionState, SessionTable, TerminalId, Viewer,
};

/// Failures of WTS operations: a Windows error code and its name (the CLI prints both) and a
/// readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WtsError {
    #[error("session {0} does not exist")]
    SessionNotFound(SessionId),
    /// A user name that has no session (`msg USER`); Windows reports it as not found too.
    #[error("user {0} has no session")]
    NoSessionForUser(String),
    #[error("access denied: the caller lacks the permission this needs on that session")]
    AccessDenied,
    #[error("logon failure: the password of the session's user is missing or wrong")]
    LogonFailure,
    #[error("session {0} is busy: it is still starting or being logged off")]
    Busy(SessionId),
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("the request to control the session remotely was denied")]
    ShadowDenied,
    #[error("remote control (shadow) is disabled on this host")]
    ShadowDisabled,
    #[error("session {0} cannot be remote controlled: it is not active with a user logged on")]
    ShadowInvalid(SessionId),
    #[error("no remote control (shadow) is running in this session")]
    ShadowNotRunning,
    #[error("the caller is not inside a session; name the session explicitly")]
    NotInSession,
}

impl WtsError {
    /// The Win32 error code (`GetLastError`).
    pub fn code(&self) -> u32 {
        match self {
            Self::SessionNotFound(_) | Self::NoSessionForUser(_) => 7022,
            Self::AccessDenied => 5,
            Self::LogonFailure => 1326,
            Self::Busy(_) => 7024,
            Self::InvalidParameter(_) | Self::NotInSession => 87,
            Self::ShadowDenied => 7044,
            Self::ShadowInvalid(_) => 7050,
            Self::ShadowDisabled => 7051,
            Self::ShadowNotRunning => 7057,
        }
    }

    /// The Win32 name of [`code`](Self::code).
    pub fn name(&self) -> &'static str {
        match self {
            Self::SessionNotFound(_) | Self::NoSessionForUser(_) => {
                "ERROR_CTX_WINSTATION_NOT_FOUND"
            }
            Self::AccessDenied => "ERROR_ACCESS_DENIED",
            Self::LogonFailure => "ERROR_LOGON_FAILURE",
            Self::Busy(_) => "ERROR_CTX_WINSTATION_BUSY",
            Self::InvalidParameter(_) | Self::NotInSession => "ERROR_INVALID_PARAMETER",
            Self::ShadowDenied => "ERROR_CTX_SHADOW_DENIED",
            Self::ShadowInvalid(_) => "ERROR_CTX_SHADOW_INVALID",
            Self::ShadowDisabled => "ERROR_CTX_SHADOW_DISABLED",
            Self::ShadowNotRunning => "ERROR_CTX_SHADOW_NOT_RUNNING",
        }
    }
}

/// `LOGONID_CURRENT` / `WTS_CURRENT_SESSION`: "the caller's own session" as a number.
pub const LOGONID_CURRENT: u32 = u32::MAX;

/// A session argument: an id, or the caller's own session (`LOGONID_CURRENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Current,
    Id(SessionId),
}

impl Target {
    /// From a WTS id argument: [`LOGONID_CURRENT`] means the caller's session.
    pub fn from_wts(id: u32) -> Self {
        if id == LOGONID_CURRENT {
            Self::Current
        } else {
            Self::Id(id)
        }
    }
}

impl From<Option<SessionId>> for Target {
    /// A missing id (the CLI's `rdhost logoff` without ID) means the caller's own session.
    fn from(id: Option<SessionId>) -> Self {
        id.map_or(Self::Current, Self::Id)
    }
}

/// What the wiring found out about the password that came with a connect request. The model
/// says whether one is needed ([`SessionTable::password_needed`]); checking it is I/O (PAM, the
/// users file), so the wiring does that in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProof {
    /// None was given (or it was not checked because none is needed).
    NotGiven,
    /// It is the password of the session's user.
    Verified,
    /// It was checked and is wrong.
    Wrong,
}

/// Windows' five shadow policies (the `Shadow` group policy value, 0–4): whether shadowing is
/// allowed, with which control, and whether the target's user is asked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ShadowPolicy {
    Disabled,
    /// Full control, the target's user is asked first (the Windows default).
    #[default]
    ControlWithConsent,
    /// Full control, nobody is asked.
    Control,
    /// View only, the target's user is asked first.
    ViewWithConsent,
    /// View only, nobody is asked.
    View,
}

impl ShadowPolicy {
    pub const ALL: [ShadowPolicy; 5] = [
        Self::Disabled,
        Self::ControlWithConsent,
        Self::Control,
        Self::ViewWithConsent,
        Self::View,
    ];

    /// The CLI and configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::ControlWithConsent => "control-with-consent",
            Self::Control => "control",
            Self::ViewWithConsent => "view-with-consent",
            Self::View => "view",
        }
    }

    /// The Windows policy value (0 disabled … 4 view without consent).
    pub fn as_wts(self) -> u32 {
        match self {
            Self::Disabled => 0,
            Self::ControlWithConsent => 1,
            Self::Control => 2,
            Self::ViewWithConsent => 3,
            Self::View => 4,
        }
    }

    /// Whether a shadow may take input (else every shadow is view-only).
    pub fn allows_control(self) -> bool {
        matches!(self, Self::ControlWithConsent | Self::Control)
    }

    /// Whether the target's user must agree before a shadow starts.
    pub fn asks_consent(self) -> bool {
        matches!(self, Self::ControlWithConsent | Self::ViewWithConsent)
    }

    /// The level a shadow gets when the caller asked for control (`--control`) or not.
    pub fn level(self, control: bool) -> ControlLevel {
        if control && self.allows_control() {
            ControlLevel::Interactive
        } else {
            ControlLevel::View
        }
    }
}

impl fmt::Display for ShadowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A word that is none of the five shadow policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown shadow policy {0:?}: expected disabled, control-with-consent, control, view-with-consent or view"
)]
pub struct UnknownShadowPolicy(pub String);

impl FromStr for ShadowPolicy {
    type Err = UnknownShadowPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownShadowPolicy(s.to_owned()))
    }
}

/// A shadow that may start: checked by [`SessionTable::shadow_plan`], started (after the
/// target's user agreed, when `ask_consent`) by [`SessionTable::start_shadow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowPlan {
    /// The caller's session, whose terminal will show the target.
    pub shadower: SessionId,
    pub target: SessionId,
    pub level: ControlLevel,
    /// Ask the target's user (a Yes/No message box) before starting.
    pub ask_consent: bool,
}

impl SessionTable {
    /// The session `target` names for `caller`: `Current` is the caller's own session
    /// ([`WtsError::NotInSession`] when it has none). Missing → `SessionNotFound`.
    pub fn resolve(&self, caller: &Caller, target: Target) -> Result<SessionId, WtsError> {
        let id = match target {
            Target::Current => caller.session.ok_or(WtsError::NotInSession)?,
            Target::Id(id) => id,
        };
        if self.sessions.contains_key(&id) {
            Ok(id)
        } else {
            Err(WtsError::SessionNotFound(id))
        }
    }

    /// The `WTS_SECURITY_*` bits `caller` holds on session `id` (0 if it does not exist).
    pub fn held(&self, caller: &Caller, id: SessionId) -> u32 {
        self.get(id).map_or(0, |s| self.permissions.held(caller, s))
    }

    /// `AccessDenied` unless the caller holds every bit of `bits` on `id`.
    fn require(&self, caller: &Caller, id: SessionId, bits: u32) -> Result<(), WtsError> {
        if self.held(caller, id) & bits == bits {
            Ok(())
        } else {
            Err(WtsError::AccessDenied)
        }
    }

    /// The sessions `caller` may see (`WTSEnumerateSessions` omits the others): QUERY held.
    pub fn visible(&self, caller: &Caller) -> impl Iterator<Item = &Session> {
        self.iter()
            .filter(move |s| self.permissions.held(caller, s) & perm::QUERY != 0)
    }

    /// One session for `WTSQuerySessionInformation`: QUERY needed.
    pub fn query(&self, caller: &Caller, target: Target) -> Result<&Session, WtsError> {
        let id = self.resolve(caller, target)?;
        self.require(caller, id, perm::QUERY)?;
        Ok(self.get(id).expect("resolved"))
    }

    /// Whose password a connect to `logon_id` needs from `caller`: `None` when the caller is
    /// that session's user or root (`WTSConnectSession`: "can be an empty string if the caller
    /// is logged on using the same … user name"); members of the admin group need it too, as
    /// administrators do on Windows.
    pub fn password_needed(
        &self,
        caller: &Caller,
        logon_id: Target,
    ) -> Result<Option<String>, WtsError> {
        let id = self.resolve(caller, logon_id)?;
        let user = &self.get(id).expect("resolved").user;
        Ok((!caller.is_root() && caller.user != *user).then(|| user.clone()))
    }

    /// `WTSConnectSession(LogonId, TargetLogonId)` (spec §1.5): the terminal showing
    /// `target_logon_id` shows `logon_id`'s desktop from now on, live (Show + Follow);
    /// `target_logon_id` keeps running Disconnected; a terminal that was showing `logon_id` is
    /// closed with `ReplacedByOtherConnection` (0x5); `logon_id` becomes Active (a session still
    /// starting stays Init and its new terminal waits for the desktop). A shadow either session
    /// ran ends; their viewers stay.
    ///
    /// Windows discards `target_logon_id` when nobody is logged on in it (a logon screen). Here
    /// every session has an authenticated user from its first moment, so it is always kept; one
    /// still starting stays Init and becomes Disconnected when its desktop is up.
    ///
    /// Checked in this order: both `Current`, either missing, the same session → the errors of
    /// spec §1.5; CONNECT+DISCONNECT on `logon_id` and DISCONNECT on `target_logon_id` →
    /// `AccessDenied` (before the password, so it cannot be probed without permission); the
    /// password ([`password_needed`](Self::password_needed); `Wrong` always fails) →
    /// `LogonFailure`; a session being logged off → `Busy`; `target_logon_id` without a terminal
    /// → `InvalidParameter` (there is no terminal to move).
    pub fn connect(
        &mut self,
        caller: &Caller,
        logon_id: Target,
        target_logon_id: Target,
        password: PasswordProof,
        now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        if logon_id == Target::Current && target_logon_id == Target::Current {
            return Err(WtsError::InvalidParameter(
                "LogonId and TargetLogonId cannot both be the current session".into(),
            ));
        }
        let a = self.resolve(caller, logon_id)?;
        let b = self.resolve(caller, target_logon_id)?;
        if a == b {
            return Err(WtsError::InvalidParameter(format!(
                "session {a} cannot be connected to itself"
            )));
        }
        self.require(caller, a, perm::CONNECT | perm::DISCONNECT)?;
        self.require(caller, b, perm::DISCONNECT)?;
        match password {
            PasswordProof::Verified => {}
            PasswordProof::Wrong => return Err(WtsError::LogonFailure),
            PasswordProof::NotGiven => {
                if self.password_needed(caller, Target::Id(a))?.is_some() {
                    return Err(WtsError::LogonFailure);
                }
            }
        }
        let (sa, sb) = (
            self.get(a).expect("resolved"),
            self.get(b).expect("resolved"),
        );
        for s in [sa, sb] {
            if s.state.is_ending() {
                return Err(WtsError::Busy(s.id));
            }
        }
        let Some(terminal) = sb.primary else {
            return Err(WtsError::InvalidParameter(format!(
                "session {b} is not shown on any terminal, so there is none to connect session {a} to"
            )));
        };
        let displaced = sa.primary;

        // Decided: move the terminal.
        let before = self.follow_map();
        let mut effects = Vec::new();
        if let Some(old) = displaced {
            effects.push(Effect::Close {
                terminal: old,
                reason: CloseReason::ReplacedByOtherConnection,
            });
        }
        self.detach(b, now);
        self.attach(a, terminal, now);
        effects.push(Effect::Show {
            terminal,
            session: a,
            role: Role::Primary,
        });
        self.follow_changes(&before, &mut effects);
        Ok(effects)
    }

    /// `WTSDisconnectSession` / `tsdiscon`: DISCONNECT needed. The primary is closed with
    /// `DisconnectedBySelf` (0xB) when the caller runs inside that session, else
    /// `DisconnectedByOther` (0x1); the session keeps running Disconnected (a shadow it ran
    /// ends; its own viewers keep watching). Already disconnected: nothing to do. Being logged
    /// off: `Busy`.
    pub fn disconnect_by(
        &mut self,
        caller: &Caller,
        target: Target,
        now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        let id = self.resolve(caller, target)?;
        self.require(caller, id, perm::DISCONNECT)?;
        let s = self.get(id).expect("resolved");
        if s.state.is_ending() {
            return Err(WtsError::Busy(id));
        }
        let Some(terminal) = s.primary else {
            return Ok(Vec::new());
        };
        let reason = if caller.session == Some(id) {
            CloseReason::DisconnectedBySelf
        } else {
            CloseReason::DisconnectedByOther
        };
        let before = self.follow_map();
        self.detach(id, now);
        let mut effects = vec![Effect::Close { terminal, reason }];
        self.follow_changes(&before, &mut effects);
        Ok(effects)
    }

    /// `WTSLogoffSession` / `logoff`: LOGOFF on the caller's own session (Windows'
    /// CURRENT_USER_ACCESS), RESET on any other (the WTSLogoffSession doc: "you need to have the
    /// Reset permission"). The session goes Reset and every process is ended
    /// ([`Effect::Terminate`]); its primary stays attached until the desktop has ended, and
    /// [`end_effects`](Self::end_effects) then closes it with `LoggedOffBySelf` (0xC, from
    /// inside) or `LoggedOffByOther` (0x2). Already being logged off: nothing more to do.
    /// Still starting: `Busy` (there is nothing to end yet).
    pub fn logoff_by(
        &mut self,
        caller: &Caller,
        target: Target,
        _now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        let id = self.resolve(caller, target)?;
        let bits = if caller.session == Some(id) {
            perm::LOGOFF
        } else {
            perm::RESET
        };
        self.require(caller, id, bits)?;
        self.terminate(caller, id)
    }

    /// `reset session` / `RpcWinStationReset`: RESET needed; otherwise as
    /// [`logoff_by`](Self::logoff_by).
    pub fn reset_by(
        &mut self,
        caller: &Caller,
        target: Target,
        _now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        let id = self.resolve(caller, target)?;
        self.require(caller, id, perm::RESET)?;
        self.terminate(caller, id)
    }

    fn terminate(&mut self, caller: &Caller, id: SessionId) -> Result<Vec<Effect>, WtsError> {
        let state = self.get(id).expect("resolved").state;
        if state.is_ending() {
            return Ok(Vec::new());
        }
        if state == SessionState::Init {
            return Err(WtsError::Busy(id));
        }
        let reason = if caller.session == Some(id) {
            CloseReason::LoggedOffBySelf
        } else {
            CloseReason::LoggedOffByOther
        };
        self.mark_reset(id, Some(reason));
        Ok(vec![Effect::Terminate { session: id }])
    }

    /// The sessions `msg ID|USER|*` (`WTSSendMessage`) reaches; MESSAGE needed on each.
    ///
    /// "The target session must be active": here that means logged on with its desktop running
    /// (Active, Shadow or Disconnected; the box waits in a disconnected desktop until someone
    /// shows it, or its timeout). A session still starting or being logged off cannot take one
    /// (`Busy`). `ID` is one session (all digits); `USER` every session of that user name the
    /// caller may message (none at all → `NoSessionForUser`; none permitted → `AccessDenied`);
    /// `*` every logged-on session the caller may message, silently skipping the others.
    pub fn message_targets(&self, caller: &Caller, spec: &str) -> Result<Vec<SessionId>, WtsError> {
        let spec = spec.trim();
        let may_message = |s: &&Session| self.permissions.held(caller, s) & perm::MESSAGE != 0;
        if spec.is_empty() {
            return Err(WtsError::InvalidParameter(
                "no message target: give a session id, a user name or *".into(),
            ));
        }
        if spec == "*" {
            return Ok(self
                .iter()
                .filter(may_message)
                .filter(|s| self.is_logged_on(s.id))
                .map(|s| s.id)
                .collect());
        }
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            let id = spec
                .parse::<SessionId>()
                .map_err(|_| WtsError::InvalidParameter(format!("{spec} is not a session id")))?;
            let id = self.resolve(caller, Target::Id(id))?;
            self.require(caller, id, perm::MESSAGE)?;
            if !self.is_logged_on(id) {
                return Err(WtsError::Busy(id));
            }
            return Ok(vec![id]);
        }
        let mut theirs = self.iter().filter(|s| s.user == spec).peekable();
        let Some(first) = theirs.peek().map(|s| s.id) else {
            return Err(WtsError::NoSessionForUser(spec.to_owned()));
        };
        let permitted: Vec<SessionId> = theirs.filter(may_message).map(|s| s.id).collect();
        if permitted.is_empty() {
            return Err(WtsError::AccessDenied);
        }
        let targets: Vec<SessionId> = permitted
            .into_iter()
            .filter(|id| self.is_logged_on(*id))
            .collect();
        if targets.is_empty() {
            return Err(WtsError::Busy(first));
        }
        Ok(targets)
    }

    /// Check a shadow (`WTSStartRemoteControlSession`, `rdhost shadow ID [--control]`) before
    /// asking anyone: the caller must run inside a session (`NotInSession`) that is Active on a
    /// terminal of its own (its terminal will show the target); the target must exist, not be
    /// that session (`InvalidParameter`), grant REMOTE_CONTROL (`AccessDenied`), shadowing must
    /// be allowed (`ShadowDisabled`), and the target must be Active with a user logged on
    /// (`ShadowInvalid`, 7050). View-only policies turn `control` into a View level.
    pub fn shadow_plan(
        &self,
        caller: &Caller,
        target: Target,
        control: bool,
        policy: ShadowPolicy,
    ) -> Result<ShadowPlan, WtsError> {
        let shadower = caller.session.ok_or(WtsError::NotInSession)?;
        let shadower = self.resolve(caller, Target::Id(shadower))?;
        let target = self.resolve(caller, target)?;
        if target == shadower {
            return Err(WtsError::InvalidParameter(
                "a session cannot shadow itself".into(),
            ));
        }
        self.require(caller, target, perm::REMOTE_CONTROL)?;
        if policy == ShadowPolicy::Disabled {
            return Err(WtsError::ShadowDisabled);
        }
        self.shadow_terminal(shadower, target)?;
        Ok(ShadowPlan {
            shadower,
            target,
            level: policy.level(control),
            ask_consent: policy.asks_consent(),
        })
    }

    /// The terminal a shadow of `target` by `shadower` would use, if both are in a state to.
    fn shadow_terminal(
        &self,
        shadower: SessionId,
        target: SessionId,
    ) -> Result<TerminalId, WtsError> {
        let s = self
            .get(shadower)
            .ok_or(WtsError::SessionNotFound(shadower))?;
        let terminal = match (s.state, s.primary) {
            (SessionState::Active, Some(terminal)) => terminal,
            (SessionState::Shadow, _) => {
                return Err(WtsError::InvalidParameter(format!(
                    "session {shadower} already shadows session {}; stop that first",
                    s.shadowing.unwrap_or_default()
                )));
            }
            (state, Some(_)) if state == SessionState::Init || state.is_ending() => {
                return Err(WtsError::Busy(shadower));
            }
            _ => {
                return Err(WtsError::InvalidParameter(format!(
                    "session {shadower} has no terminal to show the shadow on"
                )));
            }
        };
        let t = self.get(target).ok_or(WtsError::SessionNotFound(target))?;
        if t.state != SessionState::Active {
            return Err(WtsError::ShadowInvalid(target));
        }
        Ok(terminal)
    }

    /// Start a planned shadow once the target's user answered (`consent`; pass `true` when the
    /// plan did not ask). Refused: `ShadowDenied`; and the states are checked again, since they
    /// may have changed while the question was open. The shadower's terminal becomes a viewer
    /// of the target at the plan's level; the shadower goes Shadow (its desktop follows nobody
    /// meanwhile), the target stays Active; both get a RemoteControl event.
    pub fn start_shadow(
        &mut self,
        plan: &ShadowPlan,
        consent: bool,
        now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        if !consent {
            return Err(WtsError::ShadowDenied);
        }
        if plan.shadower == plan.target {
            return Err(WtsError::InvalidParameter(
                "a session cannot shadow itself".into(),
            ));
        }
        let terminal = self.shadow_terminal(plan.shadower, plan.target)?;
        let before = self.follow_map();
        let shadower = &mut self
            .sessions
            .get_mut(&plan.shadower)
            .expect("checked")
            .session;
        shadower.state = SessionState::Shadow;
        shadower.shadowing = Some(plan.target);
        let target = &mut self
            .sessions
            .get_mut(&plan.target)
            .expect("checked")
            .session;
        target.viewers.push(Viewer {
            terminal,
            level: plan.level,
            since: now,
        });
        self.push(SessionEvent::StateChange {
            id: plan.shadower,
            from: SessionState::Active,
            to: SessionState::Shadow,
        });
        self.push(SessionEvent::RemoteControl { id: plan.shadower });
        self.push(SessionEvent::RemoteControl { id: plan.target });
        let mut effects = vec![Effect::Show {
            terminal,
            session: plan.target,
            role: Role::Viewer(plan.level),
        }];
        self.follow_changes(&before, &mut effects);
        Ok(effects)
    }

    /// `rdhost shadow --stop` / `WTSStopRemoteControlSession`, run inside a session (DISCONNECT
    /// and RESET on it, as `RpcWinStationShadowStop`). From the shadowing session: its terminal
    /// shows its own session again. From a shadowed session (which the spec allows too): every
    /// shadow of it stops, each shadower's terminal going home. Neither: `ShadowNotRunning`.
    pub fn stop_shadow(
        &mut self,
        caller: &Caller,
        now: SystemTime,
    ) -> Result<Vec<Effect>, WtsError> {
        let own = self.resolve(caller, Target::Current)?;
        self.require(caller, own, perm::DISCONNECT | perm::RESET)?;
        let s = self.get(own).expect("resolved");
        if let (Some(_), Some(terminal)) = (s.shadowing, s.primary) {
            return Ok(self.stop_shadow_of_terminal(terminal, now));
        }
        let shadowers: Vec<TerminalId> = self
            .iter()
            .filter(|s| s.shadowing == Some(own))
            .filter_map(|s| s.primary)
            .collect();
        if shadowers.is_empty() {
            return Err(WtsError::ShadowNotRunning);
        }
        Ok(shadowers
            .into_iter()
            .flat_map(|terminal| self.stop_shadow_of_terminal(terminal, now))
            .collect())
    }

    /// The shadow hotkey (Ctrl+* on the keypad) pressed on `terminal`: if its session shadows,
    /// the terminal shows its own session again (Show + Follow). No permission check: the
    /// terminal itself asked. Otherwise nothing.
    pub fn stop_shadow_of_terminal(
        &mut self,
        terminal: TerminalId,
        _now: SystemTime,
    ) -> Vec<Effect> {
        let Some(home) = self.session_of(terminal) else {
            return Vec::new();
        };
        if self.get(home).is_none_or(|s| s.shadowing.is_none()) {
            return Vec::new();
        }
        let before = self.follow_map();
        self.return_home(home);
        let mut effects = vec![Effect::Show {
            terminal,
            session: home,
            role: Role::Primary,
        }];
        self.follow_changes(&before, &mut effects);
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Permissions, Policy};
    use ControlLevel as L;
    use SessionEvent as E;
    use SessionState as S;

    /// Members of `rdadmin` hold everything; `helpdesk` may connect, shadow and message;
    /// `ops` may reset; the rest hold one bit each.
    fn table() -> SessionTable {
        SessionTable::with_permissions(
            Policy {
                single_session_per_user: false,
                max_sessions: None,
            },
            Permissions {
                admin_group: Some("rdadmin".into()),
                grants: vec![
                    (
                        "helpdesk".into(),
                        perm::CONNECT | perm::DISCONNECT | perm::REMOTE_CONTROL | perm::MESSAGE,
                    ),
                    ("ops".into(), perm::RESET),
                    ("logoffonly".into(), perm::LOGOFF),
                    ("connectonly".into(), perm::CONNECT),
                    ("disconnectonly".into(), perm::DISCONNECT),
                ],
            },
        )
    }

    fn alice(session: SessionId) -> Caller {
        caller("alice", &["users"], Some(session))
    }
    fn bob(session: SessionId) -> Caller {
        caller("bob", &["users"], Some(session))
    }
    fn admin(session: Option<SessionId>) -> Caller {
        caller("carol", &["users", "rdadmin"], session)
    }
    fn root() -> Caller {
        caller("root", &[], None)
    }

    /// Asserts that `result` is the error `expected` and that it changed neither the table nor
    /// its events.
    #[track_caller]
    fn refused<T: fmt::Debug>(
        tab: &mut SessionTable,
        op: impl FnOnce(&mut SessionTable) -> Result<T, WtsError>,
        expected: WtsError,
    ) {
        tab.drain_events();
        let before = snapshot(tab);
        let result = op(tab);
        assert_eq!(result.unwrap_err(), expected);
        assert_eq!(
            snapshot(tab),
            before,
            "a refused operation changed the table"
        );
        assert!(
            tab.drain_events().is_empty(),
            "a refused operation made events"
        );
        tab.assert_consistent();
    }

    // --- errors, targets, policies --------------------------------------------------------

    #[test]
    fn error_codes_names_and_messages() {
        let cases = [
            (
                WtsError::SessionNotFound(3),
                7022,
                "ERROR_CTX_WINSTATION_NOT_FOUND",
                "session 3 does not exist",
            ),
            (
                WtsError::NoSessionForUser("zed".into()),
                7022,
                "ERROR_CTX_WINSTATION_NOT_FOUND",
                "user zed has no session",
            ),
            (
                WtsError::AccessDenied,
                5,
                "ERROR_ACCESS_DENIED",
                "access denied",
            ),
            (
                WtsError::LogonFailure,
                1326,
                "ERROR_LOGON_FAILURE",
                "password",
            ),
            (
                WtsError::Busy(4),
                7024,
                "ERROR_CTX_WINSTATION_BUSY",
                "session 4 is busy",
            ),
            (
                WtsError::InvalidParameter("x y".into()),
                87,
                "ERROR_INVALID_PARAMETER",
                "invalid parameter: x y",
            ),
            (
                WtsError::ShadowDenied,
                7044,
                "ERROR_CTX_SHADOW_DENIED",
                "denied",
            ),
            (
                WtsError::ShadowInvalid(5),
                7050,
                "ERROR_CTX_SHADOW_INVALID",
                "session 5 cannot be remote controlled",
            ),
            (
                WtsError::ShadowDisabled,
                7051,
                "ERROR_CTX_SHADOW_DISABLED",
                "disabled",
            ),
            (
                WtsError::ShadowNotRunning,
                7057,
                "ERROR_CTX_SHADOW_NOT_RUNNING",
                "no remote control",
            ),
            (
                WtsError::NotInSession,
                87,
                "ERROR_INVALID_PARAMETER",
                "not inside a session",
            ),
        ];
        for (err, code, name, text) in cases {
            assert_eq!((err.code(), err.name()), (code, name), "{err:?}");
            assert!(err.to_string().contains(text), "{err}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(Target::from_wts(LOGONID_CURRENT), Target::Current);
        assert_eq!(Target::from_wts(0xFFFF_FFFF), Target::Current);
        assert_eq!(Target::from_wts(7), Target::Id(7));
        assert_eq!(Target::from(None), Target::Current);
        assert_eq!(Target::from(Some(2)), Target::Id(2));
    }

    #[test]
    fn shadow_policies() {
        let names: Vec<String> = ShadowPolicy::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            [
                "disabled",
                "control-with-consent",
                "control",
                "view-with-consent",
                "view"
            ]
        );
        for (i, p) in ShadowPolicy::ALL.into_iter().enumerate() {
            assert_eq!(p.name().parse::<ShadowPolicy>(), Ok(p));
            assert_eq!(p.as_wts(), i as u32);
        }
        assert_eq!(ShadowPolicy::default(), ShadowPolicy::ControlWithConsent);
        let err = "Control".parse::<ShadowPolicy>().unwrap_err().to_string();
        assert!(
            err.contains("\"Control\"") && err.contains("view-with-consent"),
            "{err}"
        );
    }

    #[test]
    fn resolve_current_and_ids() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        assert_eq!(tab.resolve(&alice(a), Target::Current), Ok(a));
        assert_eq!(tab.resolve(&alice(a), Target::Id(a)), Ok(a));
        assert_eq!(
            tab.resolve(&root(), Target::Current),
            Err(WtsError::NotInSession)
        );
        assert_eq!(
            tab.resolve(&root(), Target::Id(9)),
            Err(WtsError::SessionNotFound(9))
        );
        // The caller's own session may have ended meanwhile.
        assert_eq!(
            tab.resolve(&alice(9), Target::Current),
            Err(WtsError::SessionNotFound(9))
        );
    }

    // --- query ----------------------------------------------------------------------------

    #[test]
    fn everyone_may_query_every_session() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        let stranger = caller("mallory", &[], None);
        let ids: Vec<SessionId> = tab.visible(&stranger).map(|s| s.id).collect();
        assert_eq!(ids, [a, b]);
        assert_eq!(tab.query(&stranger, Target::Id(a)).unwrap().user, "alice");
        assert_eq!(tab.query(&bob(b), Target::Current).unwrap().id, b);
        assert_eq!(
            tab.query(&stranger, Target::Id(7)),
            Err(WtsError::SessionNotFound(7))
        );
        assert_eq!(tab.held(&stranger, a), perm::QUERY);
        assert_eq!(tab.held(&bob(b), b), perm::ALL);
        assert_eq!(tab.held(&admin(None), a), perm::ALL);
        assert_eq!(tab.held(&stranger, 7), 0);
    }

    // --- connect --------------------------------------------------------------------------

    #[test]
    fn connect_moves_the_terminal_live_and_disconnects_its_session() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "alice", T2, t(1));
        tab.terminal_gone(T1, t(2)); // a is Disconnected
        tab.drain_events();
        // `tscon a` run inside b: b's terminal now shows a.
        let effects = tab
            .connect(
                &alice(b),
                Target::Id(a),
                Target::Current,
                PasswordProof::NotGiven,
                t(3),
            )
            .unwrap();
        assert_eq!(
            effects,
            [
                Effect::Show {
                    terminal: T2,
                    session: a,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: a,
                    terminal: Some(T2)
                },
                Effect::Follow {
                    session: b,
                    terminal: None
                },
            ]
        );
        let (sa, sb) = (tab.get(a).unwrap(), tab.get(b).unwrap());
        assert_eq!(
            (sa.state, sa.primary, sa.connect_time),
            (S::Active, Some(T2), Some(t(3)))
        );
        assert_eq!(
            (sb.state, sb.primary, sb.disconnect_time),
            (S::Disconnected, None, Some(t(3)))
        );
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect {
                    id: b,
                    terminal: T2
                },
                E::StateChange {
                    id: b,
                    from: S::Active,
                    to: S::Disconnected
                },
                E::Connect {
                    id: a,
                    terminal: T2
                },
                E::StateChange {
                    id: a,
                    from: S::Disconnected,
                    to: S::Active
                },
            ]
        );
        tab.assert_consistent();
    }

    #[test]
    fn connect_current_session_to_another_terminal() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "alice", T2, t(0));
        // Run inside a: a's output goes to the terminal showing b; T1 is closed with 0x5.
        let effects = tab
            .connect(
                &alice(a),
                Target::Current,
                Target::Id(b),
                PasswordProof::NotGiven,
                t(1),
            )
            .unwrap();
        assert_eq!(
            effects,
            [
                Effect::Close {
                    terminal: T1,
                    reason: CloseReason::ReplacedByOtherConnection
                },
                Effect::Show {
                    terminal: T2,
                    session: a,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: a,
                    terminal: Some(T2)
                },
                Effect::Follow {
                    session: b,
                    terminal: None
                },
            ]
        );
        assert_eq!(CloseReason::ReplacedByOtherConnection.error_info(), 0x5);
        assert_eq!(tab.shows(T1), None);
        assert_eq!(tab.shows(T2), Some((a, Role::Primary)));
        assert_eq!(tab.get(a).unwrap().state, S::Active);
        assert_eq!(tab.get(b).unwrap().state, S::Disconnected);
        // The closed client going away later changes nothing.
        tab.drain_events();
        assert_eq!(tab.terminal_gone(T1, t(2)), []);
        assert!(tab.drain_events().is_empty());
        tab.assert_consistent();
    }

    #[test]
    fn connect_when_logon_id_is_shown_elsewhere_reports_disconnect_then_connect() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "alice", T2, t(0));
        tab.connect(
            &alice(b),
            Target::Id(a),
            Target::Id(b),
            PasswordProof::NotGiven,
            t(1),
        )
        .unwrap();
        // a stays Active throughout: DISCONNECT then CONNECT, no state change.
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect {
                    id: b,
                    terminal: T2
                },
                E::StateChange {
                    id: b,
                    from: S::Active,
                    to: S::Disconnected
                },
                E::Disconnect {
                    id: a,
                    terminal: T1
                },
                E::Connect {
                    id: a,
                    terminal: T2
                },
            ]
        );
    }

    #[test]
    fn connect_parameter_errors() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "alice", T2, t(0));
        let c = |l, r| {
            move |tab: &mut SessionTable| {
                tab.connect(&alice(a), l, r, PasswordProof::NotGiven, t(1))
            }
        };
        let both = WtsError::InvalidParameter(
            "LogonId and TargetLogonId cannot both be the current session".into(),
        );
        refused(&mut tab, c(Target::Current, Target::Current), both.clone());
        assert_eq!(both.code(), 87);
        let same = WtsError::InvalidParameter(format!("session {a} cannot be connected to itself"));
        refused(&mut tab, c(Target::Id(a), Target::Current), same.clone());
        refused(&mut tab, c(Target::Current, Target::Id(a)), same.clone());
        refused(
            &mut tab,
            c(Target::Id(b), Target::Id(b)),
            WtsError::InvalidParameter(format!("session {b} cannot be connected to itself")),
        );
        refused(
            &mut tab,
            c(Target::Id(9), Target::Current),
            WtsError::SessionNotFound(9),
        );
        refused(
            &mut tab,
            c(Target::Current, Target::Id(9)),
            WtsError::SessionNotFound(9),
        );
        // Current without a session of one's own.
        refused(
            &mut tab,
            |tab| {
                tab.connect(
                    &root(),
                    Target::Id(a),
                    Target::Current,
                    PasswordProof::NotGiven,
                    t(1),
                )
            },
            WtsError::NotInSession,
        );
    }

    #[test]
    fn connect_password_rules() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.terminal_gone(T1, t(0));
        let c = ready(&mut tab, "carol", T3, t(0));
        let carol = admin(Some(c));
        // Whose password is needed.
        assert_eq!(
            tab.password_needed(&carol, Target::Id(a)),
            Ok(Some("alice".into()))
        );
        assert_eq!(tab.password_needed(&alice(c), Target::Id(a)), Ok(None));
        assert_eq!(tab.password_needed(&root(), Target::Id(a)), Ok(None));
        assert_eq!(tab.password_needed(&carol, Target::Current), Ok(None));
        assert_eq!(
            tab.password_needed(&root(), Target::Current),
            Err(WtsError::NotInSession)
        );
        assert_eq!(
            tab.password_needed(&carol, Target::Id(8)),
            Err(WtsError::SessionNotFound(8))
        );
        // An admin connecting alice's session still needs alice's password.
        for proof in [PasswordProof::NotGiven, PasswordProof::Wrong] {
            refused(
                &mut tab,
                |tab| tab.connect(&carol, Target::Id(a), Target::Current, proof, t(1)),
                WtsError::LogonFailure,
            );
        }
        assert_eq!(WtsError::LogonFailure.code(), 1326);
        let effects = tab
            .connect(
                &carol,
                Target::Id(a),
                Target::Current,
                PasswordProof::Verified,
                t(1),
            )
            .unwrap();
        assert_eq!(
            effects[0],
            Effect::Show {
                terminal: T3,
                session: a,
                role: Role::Primary
            }
        );
        assert_eq!(tab.get(c).unwrap().state, S::Disconnected);
        tab.assert_consistent();
    }

    #[test]
    fn connect_own_session_needs_no_password_but_a_wrong_one_fails() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "alice", T2, t(0));
        refused(
            &mut tab,
            |tab| {
                tab.connect(
                    &alice(b),
                    Target::Id(a),
                    Target::Current,
                    PasswordProof::Wrong,
                    t(1),
                )
            },
            WtsError::LogonFailure,
        );
        tab.connect(
            &alice(b),
            Target::Id(a),
            Target::Current,
            PasswordProof::Verified,
            t(1),
        )
        .unwrap();
        assert_eq!(tab.shows(T2), Some((a, Role::Primary)));
    }

    #[test]
    fn root_connects_anything_without_a_password() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.terminal_gone(T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        tab.connect(
            &root(),
            Target::Id(a),
            Target::Id(b),
            PasswordProof::NotGiven,
            t(1),
        )
        .unwrap();
        assert_eq!(tab.shows(T2), Some((a, Role::Primary)));
        assert_eq!(tab.get(b).unwrap().state, S::Disconnected);
    }

    #[test]
    fn connect_permissions_are_checked_before_the_password() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        // bob holds only QUERY on alice's session: denied, whatever the password.
        for proof in [
            PasswordProof::NotGiven,
            PasswordProof::Wrong,
            PasswordProof::Verified,
        ] {
            refused(
                &mut tab,
                |tab| tab.connect(&bob(b), Target::Id(a), Target::Current, proof, t(1)),
                WtsError::AccessDenied,
            );
        }
        // ...and bob may not take alice's terminal for his own session either.
        refused(
            &mut tab,
            |tab| {
                tab.connect(
                    &bob(b),
                    Target::Current,
                    Target::Id(a),
                    PasswordProof::NotGiven,
                    t(1),
                )
            },
            WtsError::AccessDenied,
        );
    }

    #[test]
    fn connect_grants_via_groups() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let d = ready(&mut tab, "dave", T4, t(0));
        let helpdesk = caller("dave", &["helpdesk"], Some(d));
        // CONNECT+DISCONNECT via helpdesk: allowed with alice's password.
        refused(
            &mut tab,
            |tab| {
                tab.connect(
                    &helpdesk,
                    Target::Id(a),
                    Target::Current,
                    PasswordProof::NotGiven,
                    t(1),
                )
            },
            WtsError::LogonFailure,
        );
        // CONNECT alone is not enough: connect disconnects LogonId's old terminal too.
        let connect_only = caller("dave", &["connectonly"], Some(d));
        refused(
            &mut tab,
            |tab| {
                tab.connect(
                    &connect_only,
                    Target::Id(a),
                    Target::Current,
                    PasswordProof::Verified,
                    t(1),
                )
            },
            WtsError::AccessDenied,
        );
        // DISCONNECT on TargetLogonId is what moving its terminal away needs.
        let disconnect_only = caller("erin", &["disconnectonly"], None);
        refused(
            &mut tab,
            |tab| {
                tab.connect(
                    &disconnect_only,
                    Target::Id(d),
                    Target::Id(a),
                    PasswordProof::Verified,
                    t(1),
                )
            },
            WtsError::AccessDenied,
        );
        let helpdesk_outside = caller("erin", &["helpdesk"], None);
        tab.connect(
            &helpdesk_outside,
            Target::Id(d),
            Target::Id(a),
            PasswordProof::Verified,
            t(1),
        )
        .unwrap();
        tab.connect(
            &helpdesk,
            Target::Id(a),
            Target::Current,
            PasswordProof::Verified,
            t(2),
        )
        .unwrap();
        tab.assert_consistent();
    }

    #[test]
    fn connect_a_session_that_is_still_starting() {
        let mut tab = table();
        let a = tab.logon("alice", T1, None, t(0)).unwrap().session; // Init, on T1
        let b = ready(&mut tab, "alice", T2, t(0));
        let effects = tab
            .connect(
                &alice(b),
                Target::Id(a),
                Target::Current,
                PasswordProof::NotGiven,
                t(1),
            )
            .unwrap();
        assert_eq!(
            effects,
            [
                Effect::Close {
                    terminal: T1,
                    reason: CloseReason::ReplacedByOtherConnection
                },
                Effect::Show {
                    terminal: T2,
                    session: a,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: a,
                    terminal: Some(T2)
                },
                Effect::Follow {
                    session: b,
                    terminal: None
                },
            ]
        );
        // Its new terminal waits for the desktop.
        assert_eq!(tab.get(a).unwrap().state, S::Init);
        tab.desktop_ready(a, t(2)).unwrap();
        let s = tab.get(a).unwrap();
        assert_eq!((s.state, s.primary), (S::Active, Some(T2)));
        tab.assert_consistent();
    }

    #[test]
    fn connect_moves_the_terminal_of_a_starting_session_which_keeps_starting() {
        let mut tab = table();
        let b = tab.logon("alice", T2, None, t(0)).unwrap().session; // Init, on T2
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.terminal_gone(T1, t(0));
        tab.connect(
            &alice(a),
            Target::Current,
            Target::Id(b),
            PasswordProof::NotGiven,
            t(2),
        )
        .unwrap();
        assert_eq!(tab.shows(T2), Some((a, Role::Primary)));
        let s = tab.get(b).unwrap();
        assert_eq!((s.state, s.primary), (S::Init, None));
        tab.desktop_ready(b, t(3)).unwrap();
        assert_eq!(tab.get(b).unwrap().state, S::Disconnected);
    }

    #[test]
    fn connect_refuses_sessions_being_logged_off_and_a_target_without_terminal() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "alice", T2, t(0));
        let c = ready(&mut tab, "alice", T3, t(0));
        tab.terminal_gone(T3, t(0));
        let me = alice(b);
        let c_ = |l, r| {
            move |tab: &mut SessionTable| {
                tab.connect(
                    &alice(b),
                    Target::Id(l),
                    Target::Id(r),
                    PasswordProof::NotGiven,
                    t(1),
                )
            }
        };
        refused(
            &mut tab,
            c_(a, c),
            WtsError::InvalidParameter(format!(
                "session {c} is not shown on any terminal, so there is none to connect session {a} to"
            )),
        );
        tab.begin_logoff(a).unwrap();
        refused(&mut tab, c_(a, b), WtsError::Busy(a));
        refused(&mut tab, c_(b, a), WtsError::Busy(a));
        assert_eq!(WtsError::Busy(a).code(), 7024);
        // Still fine between the others.
        tab.connect(
            &me,
            Target::Id(c),
            Target::Current,
            PasswordProof::NotGiven,
            t(2),
        )
        .unwrap();
    }

    #[test]
    fn connect_ends_shadows_on_both_sides() {
        let mut tab = table();
        let x = ready(&mut tab, "alice", T1, t(0));
        let a = ready(&mut tab, "carol", T2, t(0));
        let b = ready(&mut tab, "carol", T3, t(0));
        let carol_a = admin(Some(a));
        let carol_b = admin(Some(b));
        // a shadows x; b shadows x too.
        for who in [&carol_a, &carol_b] {
            let plan = tab
                .shadow_plan(who, Target::Id(x), false, ShadowPolicy::View)
                .unwrap();
            tab.start_shadow(&plan, true, t(1)).unwrap();
        }
        assert_eq!(tab.viewers(x), [(T2, L::View), (T3, L::View)]);
        tab.drain_events();
        // Connect a to b's terminal: T2 (a's, watching x) is closed, T3 stops watching x.
        let effects = tab
            .connect(
                &carol_b,
                Target::Id(a),
                Target::Current,
                PasswordProof::NotGiven,
                t(2),
            )
            .unwrap();
        assert_eq!(
            effects,
            [
                Effect::Close {
                    terminal: T2,
                    reason: CloseReason::ReplacedByOtherConnection
                },
                Effect::Show {
                    terminal: T3,
                    session: a,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: a,
                    terminal: Some(T3)
                },
            ]
        );
        assert_eq!(tab.viewers(x), []);
        let (sa, sb) = (tab.get(a).unwrap(), tab.get(b).unwrap());
        assert_eq!(
            (sa.state, sa.shadowing, sa.primary),
            (S::Active, None, Some(T3))
        );
        assert_eq!(
            (sb.state, sb.shadowing, sb.primary),
            (S::Disconnected, None, None)
        );
        let events = tab.drain_events();
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, E::RemoteControl { .. }))
                .count(),
            4
        );
        tab.assert_consistent();
    }

    #[test]
    fn connect_a_session_to_the_terminal_that_shadows_it() {
        let mut tab = table();
        let x = ready(&mut tab, "carol", T1, t(0));
        let b = ready(&mut tab, "carol", T2, t(0));
        let carol_b = admin(Some(b));
        let plan = tab
            .shadow_plan(&carol_b, Target::Id(x), true, ShadowPolicy::Control)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        tab.connect(
            &carol_b,
            Target::Id(x),
            Target::Current,
            PasswordProof::NotGiven,
            t(2),
        )
        .unwrap();
        assert_eq!(tab.shows(T2), Some((x, Role::Primary)));
        assert_eq!(tab.viewers(x), []);
        tab.assert_consistent();
    }

    // --- disconnect -----------------------------------------------------------------------

    #[test]
    fn disconnect_from_inside_and_outside() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        assert_eq!(
            tab.disconnect_by(&alice(a), Target::Current, t(1)),
            Ok(vec![
                Effect::Close {
                    terminal: T1,
                    reason: CloseReason::DisconnectedBySelf
                },
                Effect::Follow {
                    session: a,
                    terminal: None
                },
            ])
        );
        assert_eq!(CloseReason::DisconnectedBySelf.error_info(), 0xB);
        let s = tab.get(a).unwrap();
        assert_eq!(
            (s.state, s.primary, s.disconnect_time),
            (S::Disconnected, None, Some(t(1)))
        );
        // Already disconnected: nothing to do.
        assert_eq!(
            tab.disconnect_by(&alice(a), Target::Current, t(2)),
            Ok(vec![])
        );

        tab.logon("alice", T2, Some(a), t(3)).unwrap();
        let c = ready(&mut tab, "carol", T3, t(3));
        assert_eq!(
            tab.disconnect_by(&admin(Some(c)), Target::Id(a), t(4))
                .unwrap()[0],
            Effect::Close {
                terminal: T2,
                reason: CloseReason::DisconnectedByOther
            }
        );
        assert_eq!(CloseReason::DisconnectedByOther.error_info(), 0x1);
        // From outside any session: by other, too.
        tab.logon("alice", T4, Some(a), t(5)).unwrap();
        assert_eq!(
            tab.disconnect_by(&alice(c), Target::Id(a), t(6)).unwrap()[0],
            Effect::Close {
                terminal: T4,
                reason: CloseReason::DisconnectedByOther
            }
        );
        tab.logon("alice", T5, Some(a), t(7)).unwrap();
        assert_eq!(
            tab.disconnect_by(&root(), Target::Id(a), t(8)).unwrap()[0],
            Effect::Close {
                terminal: T5,
                reason: CloseReason::DisconnectedByOther
            }
        );
    }

    #[test]
    fn disconnect_refusals() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        refused(
            &mut tab,
            |tab| tab.disconnect_by(&bob(b), Target::Id(a), t(1)),
            WtsError::AccessDenied,
        );
        refused(
            &mut tab,
            |tab| tab.disconnect_by(&bob(b), Target::Id(9), t(1)),
            WtsError::SessionNotFound(9),
        );
        refused(
            &mut tab,
            |tab| tab.disconnect_by(&root(), Target::Current, t(1)),
            WtsError::NotInSession,
        );
        tab.begin_logoff(a).unwrap();
        refused(
            &mut tab,
            |tab| tab.disconnect_by(&alice(a), Target::Current, t(1)),
            WtsError::Busy(a),
        );
    }

    #[test]
    fn disconnect_keeps_the_sessions_viewers_and_ends_its_own_shadow() {
        let mut tab = table();
        let x = ready(&mut tab, "alice", T1, t(0));
        let c = ready(&mut tab, "carol", T3, t(0));
        let d = ready(&mut tab, "carol", T4, t(0));
        // d shadows x; T2 is a sharing viewer of x; c is where the admin runs commands.
        let plan = tab
            .shadow_plan(&admin(Some(d)), Target::Id(x), false, ShadowPolicy::View)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        tab.attach_viewer(T2, x, L::View, t(1)).unwrap();
        // Disconnecting x: its viewers (a shadow and a sharing viewer) keep watching.
        tab.disconnect_by(&admin(Some(c)), Target::Id(x), t(2))
            .unwrap();
        assert_eq!(tab.viewers(x), [(T4, L::View), (T2, L::View)]);
        assert_eq!(tab.get(d).unwrap().state, S::Shadow);
        // Disconnecting the shadowing session d: its shadow ends with its terminal.
        tab.drain_events();
        assert_eq!(
            tab.disconnect_by(&admin(Some(c)), Target::Id(d), t(3)),
            Ok(vec![Effect::Close {
                terminal: T4,
                reason: CloseReason::DisconnectedByOther
            }])
        );
        assert_eq!(tab.viewers(x), [(T2, L::View)]);
        let s = tab.get(d).unwrap();
        assert_eq!(
            (s.state, s.shadowing, s.primary),
            (S::Disconnected, None, None)
        );
        assert_eq!(
            tab.drain_events(),
            [
                E::RemoteControl { id: d },
                E::RemoteControl { id: x },
                E::Disconnect {
                    id: d,
                    terminal: T4
                },
                E::StateChange {
                    id: d,
                    from: S::Shadow,
                    to: S::Disconnected
                },
            ]
        );
        tab.assert_consistent();
    }

    // --- logoff and reset -----------------------------------------------------------------

    #[test]
    fn logoff_from_inside_ends_with_0xc() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        assert_eq!(
            tab.logoff_by(&alice(a), Target::Current, t(1)),
            Ok(vec![Effect::Terminate { session: a }])
        );
        let s = tab.get(a).unwrap();
        assert_eq!((s.state, s.primary), (S::Reset, Some(T1)));
        assert_eq!(
            tab.drain_events(),
            [E::StateChange {
                id: a,
                from: S::Active,
                to: S::Reset
            }]
        );
        // Nobody can reconnect meanwhile; a second request changes nothing.
        assert_eq!(tab.logoff_by(&alice(a), Target::Current, t(2)), Ok(vec![]));
        assert!(tab.drain_events().is_empty());
        // The desktop ended (the wiring saw it terminated): the remembered reason wins.
        assert_eq!(
            tab.end_effects(a, CloseReason::LoggedOffByOther, t(3)),
            [Effect::Close {
                terminal: T1,
                reason: CloseReason::LoggedOffBySelf
            }]
        );
        assert_eq!(CloseReason::LoggedOffBySelf.error_info(), 0xC);
        assert!(tab.is_empty());
    }

    #[test]
    fn logoff_from_outside_ends_with_0x2() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let c = ready(&mut tab, "carol", T3, t(0));
        assert_eq!(
            tab.logoff_by(&admin(Some(c)), Target::Id(a), t(1)),
            Ok(vec![Effect::Terminate { session: a }])
        );
        // A later request from inside does not change why.
        tab.logoff_by(&alice(a), Target::Current, t(2)).unwrap();
        assert_eq!(
            tab.end_effects(a, CloseReason::LoggedOffBySelf, t(3)),
            [Effect::Close {
                terminal: T1,
                reason: CloseReason::LoggedOffByOther
            }]
        );
        assert_eq!(CloseReason::LoggedOffByOther.error_info(), 0x2);
    }

    #[test]
    fn logoff_of_a_disconnected_session_closes_nobody() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.terminal_gone(T1, t(0));
        assert_eq!(
            tab.logoff_by(&root(), Target::Id(a), t(1)),
            Ok(vec![Effect::Terminate { session: a }])
        );
        assert_eq!(tab.end_effects(a, CloseReason::LoggedOffBySelf, t(2)), []);
    }

    #[test]
    fn logoff_needs_reset_on_another_users_session() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        refused(
            &mut tab,
            |tab| tab.logoff_by(&bob(b), Target::Id(a), t(1)),
            WtsError::AccessDenied,
        );
        // LOGOFF is about one's own current session; it does not reach others.
        let logoff_only = caller("bob", &["logoffonly"], Some(b));
        refused(
            &mut tab,
            |tab| tab.logoff_by(&logoff_only, Target::Id(a), t(1)),
            WtsError::AccessDenied,
        );
        let ops = caller("bob", &["ops"], Some(b));
        assert_eq!(
            tab.logoff_by(&ops, Target::Id(a), t(1)),
            Ok(vec![Effect::Terminate { session: a }])
        );
    }

    #[test]
    fn logoff_and_reset_refusals() {
        let mut tab = table();
        let a = tab.logon("alice", T1, None, t(0)).unwrap().session; // still starting
        refused(
            &mut tab,
            |tab| tab.logoff_by(&alice(a), Target::Current, t(1)),
            WtsError::Busy(a),
        );
        refused(
            &mut tab,
            |tab| tab.reset_by(&root(), Target::Id(a), t(1)),
            WtsError::Busy(a),
        );
        refused(
            &mut tab,
            |tab| tab.logoff_by(&root(), Target::Current, t(1)),
            WtsError::NotInSession,
        );
        refused(
            &mut tab,
            |tab| tab.reset_by(&root(), Target::Id(5), t(1)),
            WtsError::SessionNotFound(5),
        );
    }

    #[test]
    fn reset_needs_reset_and_ends_like_logoff() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        refused(
            &mut tab,
            |tab| tab.reset_by(&bob(b), Target::Id(a), t(1)),
            WtsError::AccessDenied,
        );
        // Own session from inside: by self.
        assert_eq!(
            tab.reset_by(&bob(b), Target::Current, t(1)),
            Ok(vec![Effect::Terminate { session: b }])
        );
        assert_eq!(
            tab.end_effects(b, CloseReason::DisplayFailed, t(2)),
            [Effect::Close {
                terminal: T2,
                reason: CloseReason::LoggedOffBySelf
            }]
        );
        let ops = caller("dave", &["ops"], None);
        assert_eq!(
            tab.reset_by(&ops, Target::Id(a), t(3)),
            Ok(vec![Effect::Terminate { session: a }])
        );
        assert_eq!(tab.get(a).unwrap().state, S::Reset);
        assert_eq!(
            tab.end_effects(a, CloseReason::DisplayFailed, t(4)),
            [Effect::Close {
                terminal: T1,
                reason: CloseReason::LoggedOffByOther
            }]
        );
    }

    #[test]
    fn without_a_request_the_natural_reason_is_used() {
        let mut tab = table();
        let a = ready(&mut tab, "alice", T1, t(0));
        tab.begin_logoff(a).unwrap();
        assert_eq!(
            tab.end_effects(a, CloseReason::DisplayFailed, t(1)),
            [Effect::Close {
                terminal: T1,
                reason: CloseReason::DisplayFailed
            }]
        );
    }

    // --- messages -------------------------------------------------------------------------

    #[test]
    fn message_targets_by_id_user_and_star() {
        let mut tab = table();
        let a1 = ready(&mut tab, "alice", T1, t(0));
        let a2 = ready(&mut tab, "alice", T2, t(0));
        tab.terminal_gone(T2, t(0)); // disconnected: the box waits in its desktop
        let b = ready(&mut tab, "bob", T3, t(0));
        // (dave's: alice logging on again would get her disconnected session back)
        let starting = tab.logon("dave", T4, None, t(0)).unwrap().session;
        let me = alice(a1);
        assert_eq!(tab.message_targets(&me, &a1.to_string()), Ok(vec![a1]));
        assert_eq!(tab.message_targets(&me, &a2.to_string()), Ok(vec![a2]));
        assert_eq!(tab.message_targets(&me, "alice"), Ok(vec![a1, a2]));
        assert_eq!(tab.message_targets(&me, " * "), Ok(vec![a1, a2]));
        assert_eq!(tab.message_targets(&admin(None), "*"), Ok(vec![a1, a2, b]));
        assert_eq!(tab.message_targets(&root(), "bob"), Ok(vec![b]));
        let helpdesk = caller("dave", &["helpdesk"], None);
        assert_eq!(tab.message_targets(&helpdesk, "*"), Ok(vec![a1, a2, b]));
        assert_eq!(tab.message_targets(&bob(b), "*"), Ok(vec![b]));
        // Refusals.
        assert_eq!(
            tab.message_targets(&bob(b), &a1.to_string()),
            Err(WtsError::AccessDenied)
        );
        assert_eq!(
            tab.message_targets(&bob(b), "alice"),
            Err(WtsError::AccessDenied)
        );
        assert_eq!(
            tab.message_targets(&me, "99"),
            Err(WtsError::SessionNotFound(99))
        );
        assert_eq!(
            tab.message_targets(&root(), &starting.to_string()),
            Err(WtsError::Busy(starting))
        );
        assert_eq!(
            tab.message_targets(&root(), "dave"),
            Err(WtsError::Busy(starting))
        );
        assert_eq!(
            tab.message_targets(&me, "zed"),
            Err(WtsError::NoSessionForUser("zed".into()))
        );
        assert_eq!(tab.message_targets(&me, " ").unwrap_err().code(), 87);
        assert_eq!(
            tab.message_targets(&me, "99999999999").unwrap_err().code(),
            87
        );
        tab.begin_logoff(b).unwrap();
        assert_eq!(tab.message_targets(&root(), "bob"), Err(WtsError::Busy(b)));
        assert_eq!(tab.message_targets(&admin(None), "*"), Ok(vec![a1, a2]));
    }

    // --- shadow ---------------------------------------------------------------------------

    /// alice's session x on T1 (the target); carol (admin) in session c on T3.
    fn shadow_fixture() -> (SessionTable, SessionId, SessionId) {
        let mut tab = table();
        let x = ready(&mut tab, "alice", T1, t(0));
        let c = ready(&mut tab, "carol", T3, t(0));
        (tab, x, c)
    }

    #[test]
    fn shadow_plans_per_policy() {
        let (tab, x, c) = shadow_fixture();
        let carol = admin(Some(c));
        use ShadowPolicy as P;
        let cases = [
            (P::ControlWithConsent, true, L::Interactive, true),
            (P::ControlWithConsent, false, L::View, true),
            (P::Control, true, L::Interactive, false),
            (P::Control, false, L::View, false),
            (P::ViewWithConsent, true, L::View, true),
            (P::ViewWithConsent, false, L::View, true),
            (P::View, true, L::View, false),
            (P::View, false, L::View, false),
        ];
        for (policy, control, level, ask_consent) in cases {
            assert_eq!(
                tab.shadow_plan(&carol, Target::Id(x), control, policy),
                Ok(ShadowPlan {
                    shadower: c,
                    target: x,
                    level,
                    ask_consent
                }),
                "{policy} control={control}"
            );
        }
        for control in [false, true] {
            assert_eq!(
                tab.shadow_plan(&carol, Target::Id(x), control, P::Disabled),
                Err(WtsError::ShadowDisabled)
            );
        }
    }

    #[test]
    fn shadow_start_and_stop_by_the_caller() {
        let (mut tab, x, c) = shadow_fixture();
        let carol = admin(Some(c));
        let plan = tab
            .shadow_plan(
                &carol,
                Target::Id(x),
                true,
                ShadowPolicy::ControlWithConsent,
            )
            .unwrap();
        assert_eq!(
            tab.start_shadow(&plan, true, t(1)),
            Ok(vec![
                Effect::Show {
                    terminal: T3,
                    session: x,
                    role: Role::Viewer(L::Interactive)
                },
                Effect::Follow {
                    session: c,
                    terminal: None
                },
            ])
        );
        let (sx, sc) = (tab.get(x).unwrap(), tab.get(c).unwrap());
        assert_eq!(
            (sc.state, sc.shadowing, sc.primary),
            (S::Shadow, Some(x), Some(T3))
        );
        assert_eq!(sx.state, S::Active);
        assert_eq!(tab.viewers(x), [(T3, L::Interactive)]);
        assert_eq!(tab.get(x).unwrap().viewers[0].since, t(1));
        assert_eq!(tab.shows(T3), Some((x, Role::Viewer(L::Interactive))));
        assert_eq!(tab.session_of(T3), Some(c));
        assert_eq!(tab.follows(x), Some(T1));
        assert_eq!(tab.follows(c), None);
        assert_eq!(
            tab.drain_events(),
            [
                E::StateChange {
                    id: c,
                    from: S::Active,
                    to: S::Shadow
                },
                E::RemoteControl { id: c },
                E::RemoteControl { id: x },
            ]
        );
        tab.assert_consistent();

        assert_eq!(
            tab.stop_shadow(&carol, t(2)),
            Ok(vec![
                Effect::Show {
                    terminal: T3,
                    session: c,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: c,
                    terminal: Some(T3)
                },
            ])
        );
        let sc = tab.get(c).unwrap();
        assert_eq!((sc.state, sc.shadowing), (S::Active, None));
        assert_eq!(tab.viewers(x), []);
        assert_eq!(
            tab.drain_events(),
            [
                E::RemoteControl { id: c },
                E::RemoteControl { id: x },
                E::StateChange {
                    id: c,
                    from: S::Shadow,
                    to: S::Active
                },
            ]
        );
        refused(
            &mut tab,
            |tab| tab.stop_shadow(&carol, t(3)),
            WtsError::ShadowNotRunning,
        );
        tab.assert_consistent();
    }

    #[test]
    fn shadow_consent_refused_changes_nothing() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(
                &admin(Some(c)),
                Target::Id(x),
                true,
                ShadowPolicy::ControlWithConsent,
            )
            .unwrap();
        refused(
            &mut tab,
            |tab| tab.start_shadow(&plan, false, t(1)),
            WtsError::ShadowDenied,
        );
        assert_eq!(WtsError::ShadowDenied.code(), 7044);
    }

    #[test]
    fn shadow_start_checks_the_states_again() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(
                &admin(Some(c)),
                Target::Id(x),
                true,
                ShadowPolicy::ControlWithConsent,
            )
            .unwrap();
        // While the question was open, alice disconnected.
        tab.terminal_gone(T1, t(1));
        refused(
            &mut tab,
            |tab| tab.start_shadow(&plan, true, t(2)),
            WtsError::ShadowInvalid(x),
        );
        // Or the target ended.
        tab.end(x, t(3));
        refused(
            &mut tab,
            |tab| tab.start_shadow(&plan, true, t(4)),
            WtsError::SessionNotFound(x),
        );
        // A forged plan cannot make a session watch itself.
        let forged = ShadowPlan {
            shadower: c,
            target: c,
            level: L::View,
            ask_consent: false,
        };
        assert_eq!(
            tab.start_shadow(&forged, true, t(5)).unwrap_err().code(),
            87
        );
    }

    #[test]
    fn shadow_plan_refusals() {
        let (mut tab, x, c) = shadow_fixture();
        let b = ready(&mut tab, "bob", T2, t(0));
        let p = ShadowPolicy::Control;
        let carol = admin(Some(c));
        assert_eq!(
            tab.shadow_plan(&admin(None), Target::Id(x), true, p),
            Err(WtsError::NotInSession)
        );
        assert_eq!(
            tab.shadow_plan(&admin(Some(77)), Target::Id(x), true, p),
            Err(WtsError::SessionNotFound(77))
        );
        assert_eq!(
            tab.shadow_plan(&carol, Target::Id(9), true, p),
            Err(WtsError::SessionNotFound(9))
        );
        let own = tab
            .shadow_plan(&carol, Target::Current, true, p)
            .unwrap_err();
        assert!(
            matches!(own, WtsError::InvalidParameter(ref m) if m.contains("itself")),
            "{own}"
        );
        assert_eq!(tab.shadow_plan(&carol, Target::Id(c), true, p), Err(own));
        assert_eq!(
            tab.shadow_plan(&bob(b), Target::Id(x), true, p),
            Err(WtsError::AccessDenied)
        );
        let helpdesk = caller("bob", &["helpdesk"], Some(b));
        assert!(tab.shadow_plan(&helpdesk, Target::Id(x), true, p).is_ok());
        // The target must be Active with a user logged on.
        tab.terminal_gone(T1, t(1));
        assert_eq!(
            tab.shadow_plan(&carol, Target::Id(x), true, p),
            Err(WtsError::ShadowInvalid(x))
        );
        assert_eq!(WtsError::ShadowInvalid(x).code(), 7050);
        let starting = tab.logon("dave", T4, None, t(1)).unwrap().session;
        assert_eq!(
            tab.shadow_plan(&carol, Target::Id(starting), true, p),
            Err(WtsError::ShadowInvalid(starting))
        );
        // The shadower needs a terminal of its own, showing its own session.
        let in_disconnected = caller("carol", &["rdadmin"], Some(x));
        let err = tab
            .shadow_plan(&in_disconnected, Target::Id(b), true, p)
            .unwrap_err();
        assert!(
            matches!(err, WtsError::InvalidParameter(ref m) if m.contains("no terminal")),
            "{err}"
        );
        let plan = tab.shadow_plan(&carol, Target::Id(b), true, p).unwrap();
        tab.start_shadow(&plan, true, t(2)).unwrap();
        let err = tab.shadow_plan(&carol, Target::Id(b), true, p).unwrap_err();
        assert!(
            matches!(err, WtsError::InvalidParameter(ref m) if m.contains("already shadows")),
            "{err}"
        );
        // A shadowing session cannot be shadowed (it is not Active): no cycles.
        assert_eq!(
            tab.shadow_plan(&admin(Some(b)), Target::Id(c), true, p),
            Err(WtsError::ShadowInvalid(c))
        );
        // A shadower being logged off is busy.
        tab.stop_shadow(&carol, t(3)).unwrap();
        tab.begin_logoff(c).unwrap();
        assert_eq!(
            tab.shadow_plan(&carol, Target::Id(b), true, p),
            Err(WtsError::Busy(c))
        );
        tab.assert_consistent();
    }

    #[test]
    fn stop_by_hotkey() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), false, ShadowPolicy::View)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        // The hotkey on a terminal that does not shadow does nothing.
        assert_eq!(tab.stop_shadow_of_terminal(T1, t(2)), []);
        assert_eq!(tab.stop_shadow_of_terminal(T6, t(2)), []);
        assert_eq!(
            tab.stop_shadow_of_terminal(T3, t(2)),
            [
                Effect::Show {
                    terminal: T3,
                    session: c,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: c,
                    terminal: Some(T3)
                },
            ]
        );
        assert_eq!(tab.get(c).unwrap().state, S::Active);
        assert_eq!(tab.viewers(x), []);
        assert_eq!(tab.stop_shadow_of_terminal(T3, t(3)), []);
        tab.assert_consistent();
    }

    #[test]
    fn the_shadowed_session_may_stop_every_shadow_of_it() {
        let (mut tab, x, c) = shadow_fixture();
        let d = ready(&mut tab, "carol", T4, t(0));
        for s in [c, d] {
            let plan = tab
                .shadow_plan(&admin(Some(s)), Target::Id(x), false, ShadowPolicy::View)
                .unwrap();
            tab.start_shadow(&plan, true, t(1)).unwrap();
        }
        tab.attach_viewer(T2, x, L::View, t(1)).unwrap();
        let effects = tab.stop_shadow(&alice(x), t(2)).unwrap();
        assert_eq!(
            effects,
            [
                Effect::Show {
                    terminal: T3,
                    session: c,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: c,
                    terminal: Some(T3)
                },
                Effect::Show {
                    terminal: T4,
                    session: d,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: d,
                    terminal: Some(T4)
                },
            ]
        );
        // The sharing viewer is no shadow and stays.
        assert_eq!(tab.viewers(x), [(T2, L::View)]);
        refused(
            &mut tab,
            |tab| tab.stop_shadow(&alice(x), t(3)),
            WtsError::ShadowNotRunning,
        );
        refused(
            &mut tab,
            |tab| tab.stop_shadow(&root(), t(3)),
            WtsError::NotInSession,
        );
        // Someone else's session cannot be used to stop a shadow.
        let p = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), false, ShadowPolicy::View)
            .unwrap();
        tab.start_shadow(&p, true, t(4)).unwrap();
        refused(
            &mut tab,
            |tab| tab.stop_shadow(&caller("bob", &[], Some(c)), t(5)),
            WtsError::AccessDenied,
        );
    }

    #[test]
    fn target_ends_while_shadowed_and_the_viewer_returns_home() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), true, ShadowPolicy::Control)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        tab.attach_viewer(T2, x, L::View, t(1)).unwrap();
        tab.logoff_by(&alice(x), Target::Current, t(2)).unwrap();
        tab.drain_events();
        assert_eq!(
            tab.end_effects(x, CloseReason::LoggedOffBySelf, t(3)),
            [
                Effect::Close {
                    terminal: T1,
                    reason: CloseReason::LoggedOffBySelf
                },
                Effect::Show {
                    terminal: T3,
                    session: c,
                    role: Role::Primary
                },
                Effect::Close {
                    terminal: T2,
                    reason: CloseReason::LoggedOffBySelf
                },
                Effect::Follow {
                    session: c,
                    terminal: Some(T3)
                },
            ]
        );
        let sc = tab.get(c).unwrap();
        assert_eq!(
            (sc.state, sc.shadowing, sc.primary),
            (S::Active, None, Some(T3))
        );
        assert_eq!(tab.shows(T3), Some((c, Role::Primary)));
        assert_eq!(
            tab.drain_events(),
            [
                E::Disconnect {
                    id: x,
                    terminal: T1
                },
                E::RemoteControl { id: c },
                E::RemoteControl { id: x },
                E::StateChange {
                    id: c,
                    from: S::Shadow,
                    to: S::Active
                },
                E::Logoff {
                    id: x,
                    user: "alice".into()
                },
                E::Delete { id: x },
            ]
        );
        tab.assert_consistent();
    }

    #[test]
    fn old_end_also_sends_shadowers_home() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), true, ShadowPolicy::Control)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        let ended = tab.end(x, t(2)).unwrap();
        assert_eq!(ended.terminal, Some(T1));
        assert_eq!(tab.get(c).unwrap().state, S::Active);
        tab.assert_consistent();
    }

    #[test]
    fn shadowing_session_ends_and_its_attachment_goes() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), true, ShadowPolicy::Control)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        assert_eq!(
            tab.end_effects(c, CloseReason::LoggedOffBySelf, t(2)),
            [Effect::Close {
                terminal: T3,
                reason: CloseReason::LoggedOffBySelf
            }]
        );
        assert_eq!(tab.viewers(x), []);
        assert_eq!(tab.shows(T3), None);
        tab.assert_consistent();
    }

    #[test]
    fn shadowers_terminal_closes() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), true, ShadowPolicy::Control)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        tab.drain_events();
        // Its desktop already followed nobody: no effect.
        assert_eq!(tab.terminal_gone(T3, t(2)), []);
        let sc = tab.get(c).unwrap();
        assert_eq!(
            (sc.state, sc.shadowing, sc.primary),
            (S::Disconnected, None, None)
        );
        assert_eq!(tab.viewers(x), []);
        assert_eq!(tab.get(x).unwrap().state, S::Active);
        assert_eq!(
            tab.drain_events(),
            [
                E::RemoteControl { id: c },
                E::RemoteControl { id: x },
                E::Disconnect {
                    id: c,
                    terminal: T3
                },
                E::StateChange {
                    id: c,
                    from: S::Shadow,
                    to: S::Disconnected
                },
            ]
        );
        // Via the old entry point it names its own session.
        let plan2 = {
            tab.logon("carol", T4, Some(c), t(3)).unwrap();
            tab.shadow_plan(&admin(Some(c)), Target::Id(x), true, ShadowPolicy::Control)
                .unwrap()
        };
        tab.start_shadow(&plan2, true, t(4)).unwrap();
        assert_eq!(tab.terminal_closed(T4, t(5)), Some(c));
        assert_eq!(tab.viewers(x), []);
        tab.assert_consistent();
    }

    #[test]
    fn shadow_viewer_level_and_detach() {
        let (mut tab, x, c) = shadow_fixture();
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), true, ShadowPolicy::Control)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        assert_eq!(
            tab.set_level(T3, L::View),
            Ok(vec![Effect::SetLevel {
                terminal: T3,
                level: L::View
            }])
        );
        assert_eq!(tab.shows(T3), Some((x, Role::Viewer(L::View))));
        // A primary that shadows cannot also be attached as a plain viewer.
        assert_eq!(
            tab.attach_viewer(T3, x, L::View, t(2)).unwrap_err().code(),
            87
        );
        // Detaching a shadowing terminal sends it home instead of closing it.
        assert_eq!(
            tab.detach_viewer(T3, CloseReason::Refused, t(2)),
            Ok(vec![
                Effect::Show {
                    terminal: T3,
                    session: c,
                    role: Role::Primary
                },
                Effect::Follow {
                    session: c,
                    terminal: Some(T3)
                },
            ])
        );
        assert_eq!(tab.get(c).unwrap().state, S::Active);
        tab.assert_consistent();
    }

    #[test]
    fn takeover_of_a_shadowing_session_ends_its_shadow() {
        let mut tab =
            SessionTable::with_permissions(Policy::default(), table().permissions().clone());
        let x = ready(&mut tab, "alice", T1, t(0));
        let c = ready(&mut tab, "carol", T3, t(0));
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), true, ShadowPolicy::Control)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        let logon = tab.logon("carol", T4, None, t(2)).unwrap();
        assert_eq!((logon.session, logon.displaced), (c, Some(T3)));
        let sc = tab.get(c).unwrap();
        assert_eq!(
            (sc.state, sc.shadowing, sc.primary),
            (S::Active, None, Some(T4))
        );
        assert_eq!(tab.viewers(x), []);
        assert_eq!(tab.terminal_gone(T3, t(3)), []);
        tab.assert_consistent();
    }

    #[test]
    fn a_session_may_shadow_while_it_is_watched() {
        let (mut tab, x, c) = shadow_fixture();
        let b = ready(&mut tab, "bob", T2, t(0));
        let plan = tab
            .shadow_plan(&admin(Some(c)), Target::Id(x), false, ShadowPolicy::View)
            .unwrap();
        tab.start_shadow(&plan, true, t(1)).unwrap();
        // x, watched by c, shadows b: c keeps watching x's desktop.
        let plan = tab
            .shadow_plan(
                &caller("alice", &["rdadmin"], Some(x)),
                Target::Id(b),
                false,
                ShadowPolicy::View,
            )
            .unwrap();
        tab.start_shadow(&plan, true, t(2)).unwrap();
        assert_eq!(tab.viewers(x), [(T3, L::View)]);
        assert_eq!(tab.viewers(b), [(T1, L::View)]);
        assert_eq!(tab.shows(T1), Some((b, Role::Viewer(L::View))));
        assert_eq!(tab.get(x).unwrap().state, S::Shadow);
        tab.assert_consistent();
    }

    // --- the permission matrix ------------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Op {
        Query,
        Connect,
        Disconnect,
        Logoff,
        Reset,
        Message,
        Shadow,
    }

    #[derive(Debug, Clone, Copy)]
    enum Who {
        /// alice, inside her session a; the target a2 is her other session.
        Own,
        /// bob, inside his session b.
        Other,
        /// carol of the admin group, inside her session c.
        Admin,
        /// root, inside its session r.
        Root,
        /// dave, granted every bit through his groups, inside his session d.
        Granted,
    }

    /// Run `op` by `who` against alice's session a2 (Active on T5) in a fresh table.
    fn run(op: Op, who: Who) -> Result<(), WtsError> {
        let mut tab = SessionTable::with_permissions(
            Policy {
                single_session_per_user: false,
                max_sessions: None,
            },
            Permissions {
                admin_group: Some("rdadmin".into()),
                grants: vec![
                    (
                        "helpdesk".into(),
                        perm::CONNECT | perm::DISCONNECT | perm::REMOTE_CONTROL,
                    ),
                    ("ops".into(), perm::RESET | perm::MESSAGE),
                ],
            },
        );
        let a = ready(&mut tab, "alice", T1, t(0));
        let b = ready(&mut tab, "bob", T2, t(0));
        let c = ready(&mut tab, "carol", T3, t(0));
        let r = ready(&mut tab, "root", T4, t(0));
        let a2 = ready(&mut tab, "alice", T5, t(0));
        let d = ready(&mut tab, "dave", T6, t(0));
        let me = match who {
            Who::Own => caller("alice", &[], Some(a)),
            Who::Other => caller("bob", &[], Some(b)),
            Who::Admin => caller("carol", &["rdadmin"], Some(c)),
            Who::Root => caller("root", &[], Some(r)),
            Who::Granted => caller("dave", &["helpdesk", "ops"], Some(d)),
        };
        // Whoever needs alice's password has it.
        let proof = if tab.password_needed(&me, Target::Id(a2))?.is_some() {
            PasswordProof::Verified
        } else {
            PasswordProof::NotGiven
        };
        let target = Target::Id(a2);
        let result = match op {
            Op::Query => tab.query(&me, target).map(|_| ()),
            Op::Connect => tab
                .connect(&me, target, Target::Current, proof, t(1))
                .map(|_| ()),
            Op::Disconnect => tab.disconnect_by(&me, target, t(1)).map(|_| ()),
            Op::Logoff => tab.logoff_by(&me, target, t(1)).map(|_| ()),
            Op::Reset => tab.reset_by(&me, target, t(1)).map(|_| ()),
            Op::Message => tab.message_targets(&me, &a2.to_string()).map(|_| ()),
            Op::Shadow => tab
                .shadow_plan(&me, target, true, ShadowPolicy::Control)
                .and_then(|plan| tab.start_shadow(&plan, true, t(1)))
                .map(|_| ()),
        };
        tab.assert_consistent();
        result
    }

    #[test]
    fn permission_matrix() {
        use Op::*;
        let ops = [Query, Connect, Disconnect, Logoff, Reset, Message, Shadow];
        for op in ops {
            for who in [Who::Own, Who::Admin, Who::Root, Who::Granted] {
                assert_eq!(run(op, who), Ok(()), "{op:?} by {who:?}");
            }
            let other = run(op, Who::Other);
            if op == Query {
                assert_eq!(other, Ok(()), "everyone may query");
            } else {
                assert_eq!(other, Err(WtsError::AccessDenied), "{op:?} by another user");
            }
        }
    }
}
