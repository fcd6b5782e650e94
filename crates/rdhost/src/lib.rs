//! rdhost, the host side: command line, configuration, state directory, credentials and TLS
//! identity. The daemon wiring (listener, session actors) composes these with the model, rdp,
//! desktop and frames crates.

pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod share;
pub mod state_dir;
pub mod tls;
pub mod user_cmd;
pub mod users;
pub mod view;
pub mod wiring;

/// Log to stderr with a tracing filter (`info`, `rdhost=debug,warn`, …).
pub fn init_logging(filter: &str) {
    // The filter was validated when the config was built.
    // Every client that connects by IP address makes rustls warn about its SNI; that is noise.
    let filter = if filter.contains("rustls") {
        filter.to_owned()
    } else {
        format!("{filter},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    // Colour codes only on a terminal: journald and log files want plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init().ok();
}
