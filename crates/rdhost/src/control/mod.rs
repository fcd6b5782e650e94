//! The control API: JSON over HTTP/1.1 on a Unix socket (WTS-style session management).
//!
//! `protocol` is the one description of requests and replies; `server` carries them for the
//! host (caller identity from `SO_PEERCRED`), `client` and `commands` for the CLI.

pub mod client;
pub mod commands;
pub mod protocol;
pub mod server;
