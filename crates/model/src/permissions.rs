//! Who may do what to which session: the `WTS_SECURITY_*` bits of spec.md §1.2.
//!
//! Windows checks these bits against each session's security descriptor. Linux has no such
//! descriptors, so the rule is fixed and small (issue 7): root and members of the configured
//! admin group hold every bit on every session; a user holds every bit on the sessions of their
//! own user name ("after a user logs on to a session, the user is granted all other permissions
//! for his or her session"); everyone holds QUERY ("Remote Desktop Users get Query by
//! default"); further bits are granted per Unix group. There are no explicit denies.

use crate::session::{Session, SessionId};

/// The `WTS_SECURITY_*` (= `WINSTATION_*`) access bits.
pub mod perm {
    /// Query information (enumerate, query a session).
    pub const QUERY: u32 = 0x1;
    /// Set information (connection properties).
    pub const SET: u32 = 0x2;
    /// Reset ("end a session"); also what logging off another user's session needs.
    pub const RESET: u32 = 0x4;
    /// Open virtual channels.
    pub const VIRTUAL: u32 = 0x8;
    /// Remote control (shadow).
    pub const REMOTE_CONTROL: u32 = 0x10;
    /// Log on to a new session.
    pub const LOGON: u32 = 0x20;
    /// Log off (one's own current session).
    pub const LOGOFF: u32 = 0x40;
    /// Send a message.
    pub const MESSAGE: u32 = 0x80;
    /// Connect to another session.
    pub const CONNECT: u32 = 0x100;
    /// Disconnect.
    pub const DISCONNECT: u32 = 0x200;
    /// Every bit above.
    pub const ALL: u32 = 0x3FF;

    /// The bit names, for messages and the CLI (lowest bit first).
    pub const NAMES: [(u32, &str); 10] = [
        (QUERY, "QUERY"),
        (SET, "SET"),
        (RESET, "RESET"),
        (VIRTUAL, "VIRTUAL"),
        (REMOTE_CONTROL, "REMOTE_CONTROL"),
        (LOGON, "LOGON"),
        (LOGOFF, "LOGOFF"),
        (MESSAGE, "MESSAGE"),
        (CONNECT, "CONNECT"),
        (DISCONNECT, "DISCONNECT"),
    ];

    /// The bit a name stands for, for configuration files: case-insensitive, `-` for `_`
    /// (`remote-control`), and `all`.
    pub fn from_name(name: &str) -> Option<u32> {
        let name = name.replace('-', "_");
        if name.eq_ignore_ascii_case("ALL") {
            return Some(ALL);
        }
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(&name))
            .map(|(bit, _)| *bit)
    }
}

/// Who is calling a WTS operation. The wiring fills it from `SO_PEERCRED` and the calling
/// process's session cgroup, never from anything the caller sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// The caller's user name; compared with [`Session::user`] to find its own sessions.
    pub user: String,
    /// Names of the Unix groups the caller is a member of (for `admin_group` and grants).
    pub groups: Vec<String>,
    /// The session the calling process runs in (`LOGONID_CURRENT`), if any.
    pub session: Option<SessionId>,
}

impl Caller {
    /// Whether the caller is root, who holds everything and never needs a password.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Who holds which `WTS_SECURITY_*` bits (spec §1.2): root (uid 0) and members of
/// `admin_group` hold all; a user holds all on sessions of their own user name; everyone holds
/// QUERY; further bits per group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Members of this Unix group hold every bit on every session.
    pub admin_group: Option<String>,
    /// `(group, bits)`: members of `group` hold `bits` on every session.
    pub grants: Vec<(String, u32)>,
}

impl Permissions {
    /// Bits everyone holds on every session.
    pub const EVERYONE: u32 = perm::QUERY;

    /// The bits `caller` holds on `session`.
    pub fn held(&self, caller: &Caller, session: &Session) -> u32 {
        if self.is_admin(caller) || caller.user == session.user {
            return perm::ALL;
        }
        self.grants
            .iter()
            .filter(|(group, _)| caller.in_group(group))
            .fold(Self::EVERYONE, |bits, (_, granted)| bits | granted)
            & perm::ALL
    }

    /// Root, or a member of the admin group.
    pub fn is_admin(&self, caller: &Caller) -> bool {
        caller.is_root()
            || self
                .admin_group
                .as_deref()
                .is_some_and(|group| caller.in_group(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionState;
    use std::time::SystemTime;

    fn session(user: &str) -> Session {
        Session {
            id: 1,
            user: user.into(),
            state: SessionState::Active,
            primary: None,
            viewers: Vec::new(),
            shadowing: None,
            logon_time: SystemTime::UNIX_EPOCH,
            connect_time: None,
            disconnect_time: None,
        }
    }

    fn caller(uid: u32, user: &str, groups: &[&str]) -> Caller {
        Caller {
            uid,
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            session: None,
        }
    }

    #[test]
    fn bits_match_wts_security_values() {
        let bits: Vec<u32> = perm::NAMES.iter().map(|(b, _)| *b).collect();
        assert_eq!(
            bits,
            [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200]
        );
        assert_eq!(bits.iter().fold(0, |a, b| a | b), perm::ALL);
        assert_eq!(perm::from_name("remote_control"), Some(0x10));
        assert_eq!(perm::from_name("remote-control"), Some(0x10));
        assert_eq!(perm::from_name("Disconnect"), Some(0x200));
        assert_eq!(perm::from_name("All"), Some(perm::ALL));
        assert_eq!(perm::from_name("shadow"), None);
    }

    #[test]
    fn owner_root_and_admins_hold_everything() {
        let p = Permissions {
            admin_group: Some("rdadmin".into()),
            grants: vec![],
        };
        let s = session("alice");
        assert_eq!(p.held(&caller(1000, "alice", &[]), &s), perm::ALL);
        assert_eq!(p.held(&caller(0, "root", &[]), &s), perm::ALL);
        assert_eq!(p.held(&caller(1002, "carol", &["rdadmin"]), &s), perm::ALL);
        assert!(p.is_admin(&caller(0, "root", &[])));
        assert!(p.is_admin(&caller(1002, "carol", &["users", "rdadmin"])));
        assert!(!p.is_admin(&caller(1000, "alice", &["users"])));
    }

    #[test]
    fn others_hold_query_plus_their_groups_grants() {
        let p = Permissions {
            admin_group: None,
            grants: vec![
                ("helpdesk".into(), perm::REMOTE_CONTROL | perm::MESSAGE),
                ("ops".into(), perm::RESET),
                ("weird".into(), 0xFFFF_0000),
            ],
        };
        let s = session("alice");
        assert_eq!(p.held(&caller(1001, "bob", &[]), &s), perm::QUERY);
        assert_eq!(
            p.held(&caller(1001, "bob", &["helpdesk"]), &s),
            perm::QUERY | perm::REMOTE_CONTROL | perm::MESSAGE
        );
        assert_eq!(
            p.held(&caller(1001, "bob", &["helpdesk", "ops"]), &s),
            perm::QUERY | perm::REMOTE_CONTROL | perm::MESSAGE | perm::RESET
        );
        // Bits outside the WTS set are never held.
        assert_eq!(p.held(&caller(1001, "bob", &["weird"]), &s), perm::QUERY);
        // Without an admin group, a group of that name is not special.
        assert!(!p.is_admin(&caller(1001, "bob", &["rdadmin"])));
    }

    #[test]
    fn same_uid_other_name_is_not_the_owner() {
        // Ownership is by the name the session logged on with, as in Windows.
        let p = Permissions::default();
        assert_eq!(
            p.held(&caller(1000, "alice2", &[]), &session("alice")),
            perm::QUERY
        );
    }
}
