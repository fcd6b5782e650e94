//! Helpers shared by the model's tests: fixed times, terminal ids, callers, ready sessions.

use std::time::{Duration, SystemTime};

use crate::{Caller, LogonKind, SessionId, SessionTable, TerminalId};

/// A fixed point in time plus `secs`.
pub fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

pub const T1: TerminalId = TerminalId(1);
pub const T2: TerminalId = TerminalId(2);
pub const T3: TerminalId = TerminalId(3);
pub const T4: TerminalId = TerminalId(4);
pub const T5: TerminalId = TerminalId(5);
pub const T6: TerminalId = TerminalId(6);

/// A new, ready, Active session for `user` on `terminal`; events drained.
pub fn ready(
    tab: &mut SessionTable,
    user: &str,
    terminal: TerminalId,
    now: SystemTime,
) -> SessionId {
    let logon = tab.logon(user, terminal, None, now).unwrap();
    assert_eq!(logon.kind, LogonKind::New);
    tab.desktop_ready(logon.session, now).unwrap();
    tab.drain_events();
    tab.assert_consistent();
    logon.session
}

/// A caller `user` (uid 1000 + a small hash, root for "root") in `groups`, inside `session`.
pub fn caller(user: &str, groups: &[&str], session: Option<SessionId>) -> Caller {
    let uid = if user == "root" {
        0
    } else {
        1000 + user.bytes().map(u32::from).sum::<u32>()
    };
    Caller {
        uid,
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        session,
    }
}

/// Everything observable about the table, to show that a refused operation changed nothing.
pub fn snapshot(tab: &SessionTable) -> Vec<crate::Session> {
    tab.iter().cloned().collect()
}
