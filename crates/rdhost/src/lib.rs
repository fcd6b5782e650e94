//! rdhost, the host side: command line, configuration, state directory, credentials and TLS
//! identity. The daemon wiring (listener, session actors) composes these with the model, rdp,
//! desktop and frames crates.

pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod pam;
pub mod share;
pub mod state_dir;
pub mod tls;
pub mod user_cmd;
pub mod users;
pub mod view;
pub mod wiring;

/// Start logging with a tracing filter (`info`, `rdhost=debug,warn`, …): to the journal, with
/// levels as priorities and fields as journal fields, when stderr is systemd's journal stream
/// (rdhost.service), else to stderr.
pub fn init_logging(filter: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The filter was validated when the config was built.
    // Every client that connects by IP address makes rustls warn about its SNI; that is noise.
    let filter = if filter.contains("rustls") {
        filter.to_owned()
    } else {
        format!("{filter},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into());
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                // syslog's meaning of the levels (the crate's default makes info "notice").
                let journal = journal.with_priority_mappings(tracing_journald::PriorityMappings {
                    info: tracing_journald::Priority::Informational,
                    debug: tracing_journald::Priority::Debug,
                    ..tracing_journald::PriorityMappings::new()
                });
                tracing_subscriber::registry().with(filter).with(journal).try_init().ok();
                return;
            }
            // stderr still reaches the journal, as plain lines.
            Err(e) => eprintln!(
                "rdhost: stderr is the journal's stream but journald's socket cannot be reached ({e}); logging to stderr"
            ),
        }
    }
    // Colour codes only on a terminal: log files want plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init().ok();
}

/// Whether stderr is the stream systemd connected to the journal: `$JOURNAL_STREAM` names its
/// device and inode (systemd.exec(5)). Comparing them, rather than trusting the variable alone,
/// keeps a program started from a service with its stderr redirected (an inherited variable)
/// from logging to the journal behind its caller's back.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(stderr)
        .metadata()
        .is_ok_and(|m| journal_stream_is(&stream.to_string_lossy(), m.dev(), m.ino()))
}

/// `$JOURNAL_STREAM` (`DEVICE:INODE`, both decimal) names the stream with this device and inode.
fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

#[cfg(test)]
mod logging_tests {
    use super::journal_stream_is;

    #[test]
    fn journal_stream_names_one_device_and_inode() {
        assert!(journal_stream_is("8:4242", 8, 4242));
        assert!(journal_stream_is("18446744073709551615:1", u64::MAX, 1));
        for other in ["8:4243", "9:4242", "4242:8", "8:", ":4242", "8", "", "8:4242:1", "x:4242", " 8:4242", "-8:4242"] {
            assert!(!journal_stream_is(other, 8, 4242), "{other:?}");
        }
    }
}
