//! The session-management commands (`query`, `connect`, `disconnect`, `logoff`, `reset`, `msg`,
//! `shadow`, `events`): turn arguments into a [`Request`], print the reply the way the Windows
//! tools do, and exit non-zero with the Windows code when the host refuses.

use std::io::{BufRead as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::client::{self, CallError};
use super::protocol::{EventRecord, MessageButtons, Reply, Request, SessionInfo, SessionRef};

const SOCKET_HELP: &str = "The host's control socket [default: $RDHOST_CONTROL_SOCKET inside a session, \
else /run/rdhost/control.sock when it exists, else $XDG_RUNTIME_DIR/rdhost/control.sock].";

#[derive(Debug, Args, Clone)]
pub struct SocketArg {
    #[arg(long, value_name = "PATH", help = SOCKET_HELP, global = true)]
    pub socket: Option<PathBuf>,
}

impl SocketArg {
    fn path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(client::default_client_socket)
    }
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// List sessions (like `query session` / `qwinsta`): SESSIONNAME USERNAME ID STATE TYPE DEVICE,
    /// `>` before your own. Without an argument, every session you may query.
    #[command(after_long_help = "Examples:\n  rdhost query session\n  rdhost query session alice\n  rdhost query session 3 --json")]
    Session(QuerySessionArgs),
}

#[derive(Debug, Args)]
pub struct QuerySessionArgs {
    /// A session id or a user name.
    #[arg(value_name = "ID|USER")]
    pub filter: Option<String>,
    /// Print a JSON array of sessions (id, user, state, client_name, client_address, logon_time, …).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The session to connect to (`tscon ID`): its desktop moves to the terminal of --dest.
    #[arg(value_name = "ID")]
    pub session: SessionRef,
    /// The session whose terminal (client window) shows ID from now on; that session is
    /// disconnected [default: your own session].
    #[arg(long, value_name = "ID")]
    pub dest: Option<SessionRef>,
    /// The password of ID's user, needed unless you are that user (or root). `-` reads it from
    /// standard input.
    #[arg(long, value_name = "PW")]
    pub password: Option<String>,
    /// Return before the switch has completed.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct SessionOpArgs {
    /// The session [default: your own].
    #[arg(value_name = "ID")]
    pub session: Option<SessionRef>,
    /// Return at once instead of when it is done.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The session to end.
    #[arg(value_name = "ID")]
    pub session: SessionRef,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct MsgArgs {
    /// A session id, a user name (all their sessions) or `*` (every session you may message).
    #[arg(value_name = "ID|USER|*")]
    pub target: String,
    /// The message box's title [default: "Message from USER"].
    #[arg(long, value_name = "T")]
    pub title: Option<String>,
    /// Which buttons the box has.
    #[arg(long, value_enum, default_value = "ok")]
    pub buttons: MessageButtons,
    /// Dismiss the box after this many seconds (answer IDTIMEOUT 32000).
    #[arg(long, value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Wait for the answer and print it (e.g. `IDOK (1)`); without it the answer is IDASYNC (32001).
    #[arg(long)]
    pub wait: bool,
    /// The message.
    #[arg(required = true, value_name = "TEXT")]
    pub text: Vec<String>,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    /// The session to watch. Run it from inside your own session: your client window then shows
    /// session ID until you press Ctrl+* (numeric keypad) or run `rdhost shadow --stop`.
    #[arg(value_name = "ID", required_unless_present = "stop", conflicts_with = "stop")]
    pub session: Option<u32>,
    /// Control it too (keyboard and mouse), not just watch.
    #[arg(long)]
    pub control: bool,
    /// Stop shadowing: your client window shows your own session again.
    #[arg(long)]
    pub stop: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

/// Every session-management command, as the CLI parsed it.
#[derive(Debug)]
pub enum SessionCommand {
    Query(QueryCommand),
    Connect(ConnectArgs),
    Disconnect(SessionOpArgs),
    Logoff(SessionOpArgs),
    Reset(ResetArgs),
    Msg(MsgArgs),
    Shadow(ShadowArgs),
    Events(EventsArgs),
}

/// Run a command against the host; prints to `out`, errors to stderr.
pub fn run(command: SessionCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(command, out))
}

async fn run_async(command: SessionCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (socket, request, json) = match command {
        SessionCommand::Query(QueryCommand::Session(a)) => (a.socket.path(), Request::Query { filter: a.filter }, a.json),
        SessionCommand::Connect(a) => {
            let password = match a.password.as_deref() {
                Some("-") => Some(read_password()?),
                other => other.map(str::to_owned),
            };
            let request = Request::Connect { session: a.session, dest: a.dest.unwrap_or_default(), password, wait: !a.no_wait };
            (a.socket.path(), request, false)
        }
        SessionCommand::Disconnect(a) => (a.socket.path(), Request::Disconnect { session: a.session.unwrap_or_default(), wait: !a.no_wait }, false),
        SessionCommand::Logoff(a) => (a.socket.path(), Request::Logoff { session: a.session.unwrap_or_default(), wait: !a.no_wait }, false),
        SessionCommand::Reset(a) => (a.socket.path(), Request::Reset { session: a.session }, false),
        SessionCommand::Msg(a) => {
            let title = a.title.unwrap_or_default();
            let request = Request::Message {
                target: a.target,
                title,
                text: a.text.join(" "),
                buttons: a.buttons,
                time_secs: a.time.unwrap_or(0),
                wait: a.wait,
            };
            (a.socket.path(), request, false)
        }
        SessionCommand::Shadow(a) => {
            let request = match a.session {
                Some(target) if !a.stop => Request::Shadow { target, control: a.control },
                _ => Request::ShadowStop,
            };
            (a.socket.path(), request, false)
        }
        SessionCommand::Events(a) => {
            let socket = a.socket.path();
            let result = client::follow_events(&socket, |event| {
                let line = if a.json { serde_json::to_string(&event).expect("events serialise") } else { event_line(&event) };
                // A closed stdout (`| head`) ends the command quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    std::process::exit(0);
                }
            })
            .await;
            return Ok(finish(result.map(|()| ())));
        }
    };
    let reply = client::call(&socket, &request).await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => return Ok(finish(Err(e))),
    };
    match (&request, reply) {
        (Request::Query { .. }, Reply::Sessions(sessions)) => {
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&sessions)?)?;
            } else {
                write!(out, "{}", qwinsta_table(&sessions))?;
            }
            if sessions.is_empty() && !json {
                eprintln!("rdhost: no sessions");
            }
        }
        (Request::Message { .. }, Reply::Answers { answers }) => {
            for a in answers {
                writeln!(out, "session {}: {} ({})", a.session, a.name, a.answer)?;
            }
        }
        (_, Reply::Done { .. }) => {}
        (_, other) => anyhow::bail!("the host answered something unexpected: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn finish(result: Result<(), CallError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rdhost: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The short state words `query session` prints.
fn state_word(state: &str) -> &str {
    match state {
        "Connected" => "Conn",
        "ConnectQuery" => "ConnQ",
        "Disconnected" => "Disc",
        other => other,
    }
}

/// `query session`'s table: `SESSIONNAME USERNAME ID STATE TYPE DEVICE`, `>` marks the caller's.
pub fn qwinsta_table(sessions: &[SessionInfo]) -> String {
    let mut text = format!(" {:<18}{:<24}{:>4}  {:<8}{:<12}{}\n", "SESSIONNAME", "USERNAME", "ID", "STATE", "TYPE", "DEVICE");
    for s in sessions {
        let mark = if s.current { '>' } else { ' ' };
        let kind = if s.session_name.is_empty() { "" } else { "rdpwd" };
        text.push_str(&format!(
            "{mark}{:<18}{:<24}{:>4}  {:<8}{:<12}{}\n",
            s.session_name,
            s.user,
            s.id,
            state_word(&s.state),
            kind,
            ""
        ));
    }
    text
}

pub(crate) fn event_line(e: &EventRecord) -> String {
    let mut line = format!("{} {} session {}", e.time, e.event, e.session);
    if let Some(user) = &e.user {
        line.push_str(&format!(" user {user}"));
    }
    if let (Some(from), Some(to)) = (&e.from, &e.to) {
        line.push_str(&format!(" {from} -> {to}"));
    }
    if let Some(missed) = e.missed {
        line.push_str(&format!(" ({missed} events missed)"));
    }
    if let Some(a) = &e.attendee {
        line.push_str(&format!(" attendee {} {:?} level {}", a.id, a.name, a.level));
    }
    if let Some(requested) = &e.requested {
        line.push_str(&format!(" requests {requested}"));
    }
    if let Some(invitation) = e.invitation {
        line.push_str(&format!(" invitation {invitation}"));
    }
    if let Some(r) = &e.rect {
        line.push_str(&format!(" rect {} {} {} {}", r.left, r.top, r.right, r.bottom));
    }
    if let Some(addresses) = &e.addresses {
        line.push_str(&format!(" tried {}", addresses.join(", ")));
    }
    if let Some(reason) = &e.reason {
        line.push_str(&format!(" reason {reason}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, user: &str, state: &str, name: &str, current: bool) -> SessionInfo {
        SessionInfo {
            id,
            user: user.into(),
            state: state.into(),
            session_name: name.into(),
            current,
            client_name: String::new(),
            client_address: String::new(),
            client_build: 0,
            client_width: 0,
            client_height: 0,
            logon_time: "2026-12-02T07:00:00Z".into(),
            connect_time: None,
            disconnect_time: None,
            last_input_time: None,
            bytes_in: 0,
            bytes_out: 0,
            frames_in: 0,
            frames_out: 0,
            desktop: "terminal".into(),
            shadowing: None,
            viewers: Vec::new(),
        }
    }

    #[test]
    fn qwinsta_marks_the_callers_session_and_uses_short_states() {
        let table = qwinsta_table(&[info(1, "alice", "Active", "rdp-tcp#1", true), info(2, "bob", "Disconnected", "", false)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with(" SESSIONNAME") && lines[0].contains("USERNAME") && lines[0].contains("DEVICE"), "{table}");
        assert!(lines[1].starts_with(">rdp-tcp#1") && lines[1].contains("alice") && lines[1].contains("Active"), "{table}");
        assert!(lines[2].starts_with(' ') && lines[2].contains("bob") && lines[2].contains("Disc "), "{table}");
        let id_col = lines[0].find("ID").unwrap() + 1;
        assert_eq!(&lines[1][id_col..=id_col], "1");
    }
}
