//! rdhost, the host side: command line, configuration, state directory, credentials and TLS
//! identity. The daemon wiring (listener, session actors) composes these with the model, rdp,
//! desktop and frames crates.

pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod state_dir;
pub mod tls;
pub mod user_cmd;
pub mod users;
pub mod wiring;
