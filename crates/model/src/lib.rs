//! Session and admission rules as pure state machines: no I/O, no clock reads.
//!
//! Everything here is deterministic: time is always an argument, nothing blocks and nothing
//! talks to the outside world. The daemon wiring feeds facts in (a user authenticated on a
//! terminal, a terminal closed, a desktop became ready or exited, a caller asked for a WTS
//! operation) and acts on the decisions ([`Effect`]s) and [`SessionEvent`]s that come out.

pub mod effect;
pub mod invitation;
pub mod permissions;
pub mod session;
pub mod sharing;
pub mod throttle;
pub mod wts;

#[cfg(test)]
mod testing;

pub use effect::{CloseReason, ControlLevel, Effect, Role, UnknownControlLevel};
pub use invitation::{ConnectionString, ConnectionStringError, Listener};
pub use permissions::{Caller, Permissions, perm};
pub use session::{
    EVENT_QUEUE_CAPACITY, Ended, Logon, LogonError, LogonKind, ModelError, Policy, Session,
    SessionEvent, SessionId, SessionState, SessionTable, TerminalId, Viewer,
};
pub use sharing::{
    Admission, Attendee, AttendeeId, DisconnectReason, DriveRefusal, Invitation, InvitationId, ParticipantNotice, Refusal,
    RemovedNotice, ShareEffect, ShareError, ShareEvent, SharedRect, Sharing, SharingPolicy,
};
pub use throttle::{AuthThrottle, ThrottleConfig};
pub use wts::{
    LOGONID_CURRENT, PasswordProof, ShadowPlan, ShadowPolicy, Target, UnknownShadowPolicy, WtsError,
};
