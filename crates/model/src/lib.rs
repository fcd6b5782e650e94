//! Session and admission rules as pure state machines: no I/O, no clock reads.
//!
//! Everything here is deterministic: time is always an argument, nothing blocks and nothing
//! talks to the outside world. The daemon wiring feeds facts in (a user authenticated on a
//! terminal, a terminal closed, a desktop became ready or exited) and acts on the decisions and
//! [`SessionEvent`]s that come out.

pub mod session;
pub mod throttle;

pub use session::{
    EVENT_QUEUE_CAPACITY, Ended, Logon, LogonError, LogonKind, ModelError, Policy, Session,
    SessionEvent, SessionId, SessionState, SessionTable, TerminalId,
};
pub use throttle::{AuthThrottle, ThrottleConfig};
