//! The model's decisions as data: what a terminal shows, with which control level, which terminal
//! a session's desktop follows, and which terminals to close and why.
//!
//! Every session operation returns a `Vec<Effect>`; the wiring carries the effects out in order
//! and holds no rules of its own (DESIGN.md: "decisions come back as data").

use std::fmt;
use std::str::FromStr;

use crate::session::{SessionId, TerminalId};

/// What a viewer attachment may do (RDPSRAPI `CTRL_LEVEL`). The primary terminal of a session
/// always has full control; levels apply to viewers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ControlLevel {
    /// Attached but shown nothing and heard nothing (an attendee waiting to be admitted).
    None,
    /// Sees the screen; its input is dropped.
    View,
    /// Sees the screen and its input reaches the desktop.
    Interactive,
}

impl ControlLevel {
    /// Whether the terminal is fed the session's screen.
    pub fn sees_screen(self) -> bool {
        matches!(self, Self::View | Self::Interactive)
    }

    /// Whether the terminal's keyboard and mouse reach the desktop.
    pub fn may_input(self) -> bool {
        self == Self::Interactive
    }

    /// The `CTRL_LEVEL` value: NONE 1, VIEW 2, INTERACTIVE 3 (0 is INVALID, 4/5 are requests).
    pub fn as_ctrl_level(self) -> u32 {
        match self {
            Self::None => 1,
            Self::View => 2,
            Self::Interactive => 3,
        }
    }

    /// Inverse of [`as_ctrl_level`](Self::as_ctrl_level); the request values 4/5 are not levels.
    pub fn from_ctrl_level(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::None),
            2 => Some(Self::View),
            3 => Some(Self::Interactive),
            _ => None,
        }
    }

    /// The word used in the CLI and the control API.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::View => "view",
            Self::Interactive => "interactive",
        }
    }
}

impl fmt::Display for ControlLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A word that is not `none`, `view` or `interactive`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown control level {0:?}: expected none, view or interactive")]
pub struct UnknownControlLevel(pub String);

impl FromStr for ControlLevel {
    type Err = UnknownControlLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "view" => Ok(Self::View),
            "interactive" => Ok(Self::Interactive),
            other => Err(UnknownControlLevel(other.to_owned())),
        }
    }
}

/// How a terminal is attached to the session it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The session's own terminal: its size and keyboard layout drive the desktop, its input
    /// always reaches it.
    Primary,
    /// A further terminal watching the session (shadow, sharing attendee) at a control level;
    /// it is shown the session's size and never changes it.
    Viewer(ControlLevel),
}

impl Role {
    /// Whether the terminal is fed the session's screen.
    pub fn sees_screen(self) -> bool {
        match self {
            Self::Primary => true,
            Self::Viewer(level) => level.sees_screen(),
        }
    }

    /// Whether the terminal's input reaches the desktop.
    pub fn may_input(self) -> bool {
        match self {
            Self::Primary => true,
            Self::Viewer(level) => level.may_input(),
        }
    }
}

/// Why the host closes a terminal: each maps to the MS-RDPBCGR Set Error Info code the client
/// is sent first, so that it can tell its user (and xfreerdp exits with that code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Its session was taken by another connection (logon takeover, `connect`).
    /// `ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION` 0x5.
    ReplacedByOtherConnection,
    /// Disconnected by a command run outside the session. `ERRINFO_RPC_INITIATED_DISCONNECT` 0x1.
    DisconnectedByOther,
    /// Disconnected by a command run inside the session itself.
    /// `ERRINFO_RPC_INITIATED_DISCONNECT_BY_USER` 0xB.
    DisconnectedBySelf,
    /// Logged off (or reset) from outside the session. `ERRINFO_RPC_INITIATED_LOGOFF` 0x2.
    LoggedOffByOther,
    /// Logged off from inside the session (or its program exited). `ERRINFO_LOGOFF_BY_USER` 0xC.
    LoggedOffBySelf,
    /// The session's display server failed. `ERRINFO_SERVER_DWM_CRASH` 0x10.
    DisplayFailed,
    /// The host refused the connection. `ERRINFO_SERVER_DENIED_CONNECTION` 0x7.
    Refused,
    /// The host is shutting down. `ERRINFO_SERVER_SHUTDOWN` 0x19.
    Shutdown,
}

impl CloseReason {
    /// The Set Error Info code (MS-RDPBCGR 2.2.5.1.1) to send before closing.
    pub fn error_info(self) -> u32 {
        match self {
            Self::ReplacedByOtherConnection => 0x5,
            Self::DisconnectedByOther => 0x1,
            Self::DisconnectedBySelf => 0xB,
            Self::LoggedOffByOther => 0x2,
            Self::LoggedOffBySelf => 0xC,
            Self::DisplayFailed => 0x10,
            Self::Refused => 0x7,
            Self::Shutdown => 0x19,
        }
    }
}

/// One thing the wiring must do. Operations return them in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Show `session`'s desktop on `terminal` from now on (a live switch if it showed something
    /// else: deactivation-reactivation when the size differs); Save Session Info carries
    /// `session`. `role` says whether it drives the desktop or watches at a control level.
    Show {
        terminal: TerminalId,
        session: SessionId,
        role: Role,
    },
    /// A viewer's control level changed; it keeps showing the same session (no re-show needed).
    SetLevel {
        terminal: TerminalId,
        level: ControlLevel,
    },
    /// Tell the terminal why (Set Error Info) and close it.
    Close {
        terminal: TerminalId,
        reason: CloseReason,
    },
    /// End every process of the session (logoff/reset); the wiring calls
    /// [`SessionTable::end_effects`](crate::SessionTable::end_effects) once the desktop has ended.
    Terminate { session: SessionId },
    /// From now on the session's desktop follows this terminal's size and keyboard layout (its
    /// primary, while that shows it). `None`: nobody drives it; it keeps its size.
    Follow {
        session: SessionId,
        terminal: Option<TerminalId>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_levels() {
        use ControlLevel as L;
        assert_eq!(
            [L::None, L::View, L::Interactive].map(|l| (l.sees_screen(), l.may_input())),
            [(false, false), (true, false), (true, true)]
        );
        assert_eq!(
            [L::None, L::View, L::Interactive].map(L::as_ctrl_level),
            [1, 2, 3]
        );
        for level in [L::None, L::View, L::Interactive] {
            assert_eq!(L::from_ctrl_level(level.as_ctrl_level()), Some(level));
            assert_eq!(level.to_string().parse::<L>(), Ok(level));
        }
        assert_eq!(L::from_ctrl_level(0), None);
        assert_eq!(L::from_ctrl_level(4), None);
        assert!(L::None < L::View && L::View < L::Interactive);
        let err = "full".parse::<L>().unwrap_err().to_string();
        assert!(
            err.contains("\"full\"") && err.contains("interactive"),
            "{err}"
        );
    }

    #[test]
    fn roles() {
        assert!(Role::Primary.sees_screen() && Role::Primary.may_input());
        assert!(!Role::Viewer(ControlLevel::None).sees_screen());
        assert!(Role::Viewer(ControlLevel::View).sees_screen());
        assert!(!Role::Viewer(ControlLevel::View).may_input());
        assert!(Role::Viewer(ControlLevel::Interactive).may_input());
    }

    #[test]
    fn close_reasons_map_to_set_error_info_codes() {
        use CloseReason as R;
        let codes = [
            (R::ReplacedByOtherConnection, 0x5),
            (R::DisconnectedByOther, 0x1),
            (R::DisconnectedBySelf, 0xB),
            (R::LoggedOffByOther, 0x2),
            (R::LoggedOffBySelf, 0xC),
            (R::DisplayFailed, 0x10),
            (R::Refused, 0x7),
            (R::Shutdown, 0x19),
        ];
        for (reason, code) in codes {
            assert_eq!(reason.error_info(), code, "{reason:?}");
        }
    }
}
