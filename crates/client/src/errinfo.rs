//! Server Set Error Info codes (MS-RDPBCGR 2.2.5.1.1) that tests and tools print or assert on.
//!
//! Kept as plain `u32`s: a host may send codes IronRDP's enum does not know, and the client must
//! still report them exactly.

pub const RPC_INITIATED_DISCONNECT: u32 = 0x1;
pub const RPC_INITIATED_LOGOFF: u32 = 0x2;
pub const IDLE_TIMEOUT: u32 = 0x3;
pub const LOGON_TIMEOUT: u32 = 0x4;
pub const DISCONNECTED_BY_OTHER_CONNECTION: u32 = 0x5;
pub const OUT_OF_MEMORY: u32 = 0x6;
pub const SERVER_DENIED_CONNECTION: u32 = 0x7;
pub const SERVER_INSUFFICIENT_PRIVILEGES: u32 = 0x9;
pub const SERVER_FRESH_CREDENTIALS_REQUIRED: u32 = 0xA;
pub const RPC_INITIATED_DISCONNECT_BY_USER: u32 = 0xB;
pub const LOGOFF_BY_USER: u32 = 0xC;
pub const SERVER_SHUTDOWN: u32 = 0x19;
pub const SERVER_REBOOT: u32 = 0x1A;

/// The Microsoft name of a code, or `"unknown"`.
pub fn name(code: u32) -> &'static str {
    match code {
        0x0 => "ERRINFO_NONE",
        RPC_INITIATED_DISCONNECT => "ERRINFO_RPC_INITIATED_DISCONNECT",
        RPC_INITIATED_LOGOFF => "ERRINFO_RPC_INITIATED_LOGOFF",
        IDLE_TIMEOUT => "ERRINFO_IDLE_TIMEOUT",
        LOGON_TIMEOUT => "ERRINFO_LOGON_TIMEOUT",
        DISCONNECTED_BY_OTHER_CONNECTION => "ERRINFO_DISCONNECTED_BY_OTHERCONNECTION",
        OUT_OF_MEMORY => "ERRINFO_OUT_OF_MEMORY",
        SERVER_DENIED_CONNECTION => "ERRINFO_SERVER_DENIED_CONNECTION",
        SERVER_INSUFFICIENT_PRIVILEGES => "ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES",
        SERVER_FRESH_CREDENTIALS_REQUIRED => "ERRINFO_SERVER_FRESH_CREDENTIALS_REQUIRED",
        RPC_INITIATED_DISCONNECT_BY_USER => "ERRINFO_RPC_INITIATED_DISCONNECT_BYUSER",
        LOGOFF_BY_USER => "ERRINFO_LOGOFF_BY_USER",
        0xF => "ERRINFO_CLOSE_STACK_ON_DRIVER_NOT_READY",
        0x10 => "ERRINFO_SERVER_DWM_CRASH",
        0x11 => "ERRINFO_CLOSE_STACK_ON_DRIVER_FAILURE",
        0x12 => "ERRINFO_CLOSE_STACK_ON_DRIVER_IFACE_FAILURE",
        0x17 => "ERRINFO_SERVER_WINLOGON_CRASH",
        0x18 => "ERRINFO_SERVER_CSRSS_CRASH",
        SERVER_SHUTDOWN => "ERRINFO_SERVER_SHUTDOWN",
        SERVER_REBOOT => "ERRINFO_SERVER_REBOOT",
        0x100..=0x10A => "ERRINFO_LICENSE_*",
        0x400..=0x41A => "ERRINFO_CB_*",
        0x10C9..=0x1195 => "ERRINFO_* (RDP protocol error)",
        _ => "unknown",
    }
}

/// Codes that mean "these credentials may not log on here", reported by
/// [`connect`](crate::connect) as [`ConnectError::AuthenticationFailed`](crate::ConnectError).
/// `0x9` is what IronRDP's acceptor sends when it rejects credentials.
pub fn is_access_denied(code: u32) -> bool {
    matches!(
        code,
        SERVER_INSUFFICIENT_PRIVILEGES | SERVER_FRESH_CREDENTIALS_REQUIRED
    )
}
