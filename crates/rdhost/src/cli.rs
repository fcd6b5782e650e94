//! The command line. Scripts rely on these forms:
//! `rdhost serve [--listen ADDR:PORT] [--state-dir DIR] [--config FILE] [--desktop terminal|x11|display]`,
//! `rdhost user add NAME [--state-dir DIR] [--system-user USER] [--nt-hash]`,
//! `rdhost user list [--state-dir DIR]`, `rdhost user remove NAME [--state-dir DIR]`,
//! `rdhost query session [ID|USER] [--json]`, `rdhost connect ID [--dest ID] [--password PW|-] [--no-wait]`,
//! `rdhost disconnect [ID] [--no-wait]`, `rdhost logoff [ID] [--no-wait]`, `rdhost reset ID`,
//! `rdhost msg ID|USER|* [--title T] [--buttons ok|okcancel|yesno] [--time SECONDS] [--wait] TEXT...`,
//! `rdhost shadow ID [--control]`, `rdhost shadow --stop`, `rdhost events [--json]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::control::commands::{ConnectArgs, EventsArgs, MsgArgs, QueryCommand, ResetArgs, SessionCommand, SessionOpArgs, ShadowArgs};
use crate::config::{AuthBackendKind, CONFIG_KEYS_HELP, DesktopKind, SecurityMode, Settings, XServerChoice};

const ABOUT: &str = "A multi-session RDP host for Linux: stock RDP clients log in and get a desktop \
that survives disconnects.";

const LONG_ABOUT: &str = "\
A multi-session RDP host for Linux. Stock RDP clients (xfreerdp/Remmina, mstsc, IronRDP) log in
and get a session with a desktop. A session outlives its connection: when the client disconnects
or crashes the session keeps running, and the same user logging in again gets it back.

Quick start (as an ordinary user, no root needed):
  echo 'a-good-password' | rdhost user add alice
  rdhost serve --listen 127.0.0.1:3389
  xfreerdp /v:127.0.0.1:3389 /u:alice /p:a-good-password /cert:ignore

Managing sessions (the Windows tools' names; run inside a session they need no flags):
  rdhost query session              list sessions (qwinsta)
  rdhost connect 3 --dest 5         show session 3 in the client window of session 5 (tscon)
  rdhost disconnect 3               detach session 3's client, keep it running (tsdiscon)
  rdhost logoff 3 / rdhost reset 3  end session 3 and every process in it
  rdhost msg alice --wait Hello     a message box in alice's sessions (msg)
  rdhost shadow 3 --control         watch and drive session 3 from your own (shadow)
  rdhost events --json              follow session notifications

Run `rdhost help serve` and `rdhost help user add` for the details.";

const SERVE_LONG_ABOUT: &str = "\
Run the RDP host in the foreground until SIGINT/SIGTERM.

At start it prints the listen address and the SHA-256 fingerprint of its TLS certificate
(compare it with what your client shows on first connect). The certificate is generated on
first start and kept in the state directory.

Sessions: a user's first logon creates a session; disconnecting leaves it running; logging on
again returns the most recently disconnected one (or the one the client asks for with a
pre-connection id, `xfreerdp /pcid:ID`, refused if it is not theirs). Logging out (exiting the
shell) ends it.

Who may log in (--auth): by default accounts from the users file (`rdhost user add`) while it has
any, otherwise system users through PAM (service `rdhost`, /etc/pam.d/rdhost or /etc/pam.d/other).
As root, a PAM user's session runs as that user; a users-file account runs as its --system-user
(default: the system account of the same name; with neither, its logons are refused, never run
as root). Not as root, every session runs as the host's user. PAM (libpam.so.0) is loaded at run
time; where it is missing, --auth pam refuses to start and auto serves users-file accounts only.

Desktops (--desktop): `terminal` (default) is a login shell drawn by rdhost itself and needs
nothing installed. `x11` gives each session its own X server (Xorg with the dummy driver, or
Xvfb) running the user's ~/.xsession if it is executable, else --session-command; install
`xserver-xorg-core xserver-xorg-video-dummy` (or `xvfb`) plus a window manager and a terminal,
e.g. `icewm xterm`. Logging off (leaving the window manager) ends the X server and every process
of the session. `display` shows an X display that already exists (--display, --xauthority), such
as the machine's console; logging off then leaves that display running.

Repeated failed logons from one address are answered ever more slowly (1 s, 2 s, 4 s … 30 s).";

const SERVE_AFTER_HELP: &str = "\
Files (in the state directory):
  users.toml      users-file accounts (rdhost user add|list|remove)
  tls/cert.pem    TLS certificate (self-signed, generated on first start; may be replaced)
  tls/key.pem     its private key (mode 0600)

Examples:
  rdhost serve
  rdhost serve --listen 127.0.0.1:13389 --state-dir /tmp/rdhost-test
  rdhost serve --config /etc/rdhost/rdhost.toml
  rdhost serve --desktop x11                          # an X desktop per session
  rdhost serve --desktop display --display :0 --xauthority ~/.Xauthority
  xfreerdp /v:HOST /u:alice /cert:ignore /pcid:3      # reconnect to session 3";

const USER_LONG_ABOUT: &str = "\
Manage the users file: accounts that exist only for rdhost (useful in containers, for tests, or
to give RDP access without a system account). Passwords are stored as argon2id hashes in
users.toml in the state directory (mode 0600). A running `rdhost serve` picks up changes at the
next logon, no restart needed. While the file has users, `--auth auto` (the default) checks
logons against it instead of PAM.";

const USER_ADD_LONG_ABOUT: &str = "\
Add an account to the users file.

The password is read from standard input when it is not a terminal (one line; the trailing
newline is removed), otherwise you are prompted twice without echo. Empty passwords are refused.

Names: 1-64 characters of letters, digits, '.', '_', '-', not starting with '.' or '-'.
An existing name is refused: remove it first to change its password or settings.";

const USER_ADD_AFTER_HELP: &str = "\
Examples:
  rdhost user add alice                                  # prompts for the password
  printf '%s\\n' \"$PASSWORD\" | rdhost user add alice     # from a script
  sudo rdhost user add bob --state-dir /var/lib/rdhost --system-user bob --nt-hash";

const STATE_DIR_HELP: &str = "State directory holding users.toml [default: /var/lib/rdhost as root, \
else $XDG_STATE_HOME/rdhost or ~/.local/state/rdhost]. Use the same one as `rdhost serve`.";

#[derive(Debug, Parser)]
#[command(name = "rdhost", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the RDP host (listens for RDP clients until SIGINT/SIGTERM).
    #[command(long_about = SERVE_LONG_ABOUT, after_long_help = format!("{CONFIG_KEYS_HELP}\n\n{SERVE_AFTER_HELP}"))]
    Serve(ServeArgs),
    /// Add, list or remove users-file accounts.
    #[command(subcommand, long_about = USER_LONG_ABOUT)]
    User(UserCommand),
    /// Query the host: `rdhost query session` lists sessions.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Connect a session to a client window (tscon, WTSConnectSession): the client showing
    /// --dest (default: your session) shows session ID from now on, without reconnecting.
    #[command(long_about = CONNECT_LONG_ABOUT, after_long_help = "Examples:\n  rdhost connect 3                  # show session 3 in your own window\n  rdhost connect 3 --dest 5 --password -   # session 5's window shows 3; password on stdin")]
    Connect(ConnectArgs),
    /// Disconnect a session's client (tsdiscon); the session keeps running.
    #[command(after_long_help = "Examples:\n  rdhost disconnect        # your own session\n  rdhost disconnect 3")]
    Disconnect(SessionOpArgs),
    /// Log a session off: every process of it ends and the session is deleted.
    #[command(after_long_help = "Examples:\n  rdhost logoff            # your own session\n  rdhost logoff 3 --no-wait")]
    Logoff(SessionOpArgs),
    /// Reset (end) a session at once (reset session, rwinsta).
    Reset(ResetArgs),
    /// Show a message box in sessions (msg, WTSSendMessage); --wait prints the answer.
    #[command(after_long_help = "Examples:\n  rdhost msg 3 Backup starts in 5 minutes\n  rdhost msg alice --buttons yesno --time 30 --wait Restart now?\n  rdhost msg '*' --title Maintenance Logging everyone off at 18:00")]
    Msg(MsgArgs),
    /// Shadow (remote-control) another session from inside your own (shadow, WTSStartRemoteControlSession).
    #[command(long_about = SHADOW_LONG_ABOUT, after_long_help = "Examples:\n  rdhost shadow 3            # watch session 3\n  rdhost shadow 3 --control  # watch and drive it\n  rdhost shadow --stop")]
    Shadow(ShadowArgs),
    /// Follow session events (logon, logoff, connect, disconnect, state change, remote control).
    #[command(after_long_help = "Examples:\n  rdhost events\n  rdhost events --json | jq .")]
    Events(EventsArgs),
    /// Share a desktop with invited attendees (Windows Desktop Sharing): `rdhost share start`.
    #[command(subcommand, long_about = crate::share::cli::SHARE_LONG_ABOUT)]
    Share(crate::share::cli::ShareCommand),
    /// View a remote desktop: a host session, a sharer's invitation, or wait for a sharer to
    /// dial in (reverse connect).
    #[command(long_about = crate::view::VIEW_LONG_ABOUT, after_long_help = crate::view::VIEW_EXAMPLES)]
    View(crate::view::ViewArgs),
}

const CONNECT_LONG_ABOUT: &str = "\
Connect session ID to the client window that shows --dest (tscon, WTSConnectSession).

The window that showed --dest (default: the session you run this in) shows session ID from now
on, live, without reconnecting; --dest is disconnected and keeps running. A client that was
showing ID is dropped (it is told: another connection took the session). You need ID's user's
password unless you are that user or root (--password PW, or --password - to read it from stdin).

Failures print the Windows code: 7022 session not found, 5 access denied, 1326 logon failure
(wrong password), 7024 busy, 87 invalid parameter.";

const SHADOW_LONG_ABOUT: &str = "\
Shadow another session: your client window shows session ID (and with --control your keyboard
and mouse drive it) until you press Ctrl+* on the numeric keypad or run `rdhost shadow --stop`.
Run it from inside your own session. Your session's state is Shadow meanwhile; the target stays
Active. Depending on the host's shadow policy (`rdhost serve --shadow`), the target's user is
asked first; no answer is a refusal (7044 ERROR_CTX_SHADOW_DENIED).";

impl Command {
    /// The session-management commands, if this is one.
    pub fn into_session_command(self) -> Result<SessionCommand, Command> {
        Ok(match self {
            Command::Query(c) => SessionCommand::Query(c),
            Command::Connect(a) => SessionCommand::Connect(a),
            Command::Disconnect(a) => SessionCommand::Disconnect(a),
            Command::Logoff(a) => SessionCommand::Logoff(a),
            Command::Reset(a) => SessionCommand::Reset(a),
            Command::Msg(a) => SessionCommand::Msg(a),
            Command::Shadow(a) => SessionCommand::Shadow(a),
            Command::Events(a) => SessionCommand::Events(a),
            other => return Err(other),
        })
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to accept RDP connections on [default: 0.0.0.0:3389].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Where the users file and TLS certificate live [default: /var/lib/rdhost as root, else
    /// $XDG_STATE_HOME/rdhost or ~/.local/state/rdhost]. Created (mode 0700) if missing.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// TOML config file; its keys are listed below (`rdhost serve --help`). Flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What a session shows [default: terminal].
    #[arg(long, value_enum)]
    pub desktop: Option<DesktopKind>,
    /// x11: which X server a session runs [default: auto].
    #[arg(long, value_enum)]
    pub x_server: Option<XServerChoice>,
    /// x11: the session program for users without an executable ~/.xsession, run by their login
    /// shell [default: "x-terminal-emulator & exec x-window-manager"].
    #[arg(long, value_name = "COMMAND")]
    pub session_command: Option<String>,
    /// display: the existing X display sessions show, e.g. :0 [default: $DISPLAY].
    #[arg(long, value_name = "DISPLAY")]
    pub display: Option<String>,
    /// display: the Xauthority file with that display's cookie [default: $XAUTHORITY].
    #[arg(long, value_name = "FILE")]
    pub xauthority: Option<PathBuf>,
    /// RDP security protocols to accept [default: negotiate].
    #[arg(long, value_enum)]
    pub security: Option<SecurityMode>,
    /// Where logons are checked [default: auto].
    #[arg(long, value_enum)]
    pub auth: Option<AuthBackendKind>,
    /// Refuse new sessions beyond this many [default: no limit].
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Log filter, e.g. info, debug, rdhost=debug,warn [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// The control API's Unix socket (rdhost query|connect|disconnect|…, curl --unix-socket)
    /// [default: /run/rdhost/control.sock as root, else $XDG_RUNTIME_DIR/rdhost/control.sock].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Who may shadow sessions (`rdhost shadow`): disabled, control-with-consent (the target's
    /// user is asked), control, view-with-consent, view [default: control-with-consent].
    #[arg(long, value_name = "POLICY")]
    pub shadow: Option<rdhost_model::ShadowPolicy>,
}

impl ServeArgs {
    /// The flags as the top settings layer.
    pub fn settings(&self) -> Settings {
        Settings {
            listen: self.listen,
            state_dir: self.state_dir.clone(),
            desktop: self.desktop,
            x_server: self.x_server,
            session_command: self.session_command.clone(),
            display: self.display.clone(),
            xauthority: self.xauthority.clone(),
            security: self.security,
            auth: self.auth,
            max_sessions: self.max_sessions,
            log: self.log.clone(),
            control_socket: self.control_socket.clone(),
            shadow: self.shadow,
            ..Settings::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account (password from stdin, or prompted twice on a terminal).
    #[command(long_about = USER_ADD_LONG_ABOUT, after_long_help = USER_ADD_AFTER_HELP)]
    Add(UserAddArgs),
    /// List accounts: name, system user, whether NLA is possible. Never prints hashes.
    #[command(after_long_help = "Example:\n  rdhost user list --state-dir /var/lib/rdhost")]
    List(UserListArgs),
    /// Remove an account. Its running sessions continue until logged off.
    #[command(after_long_help = "Example:\n  rdhost user remove alice")]
    Remove(UserRemoveArgs),
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// Account name (what the user types into the RDP client).
    pub name: String,
    #[arg(long, value_name = "DIR", help = STATE_DIR_HELP)]
    pub state_dir: Option<PathBuf>,
    /// System account this user's sessions run as when `rdhost serve` runs as root [default: the
    /// system account of the same name; as root, `user add` refuses a name with no such account:
    /// pass --system-user root explicitly for root sessions]. Ignored when the host is not root.
    #[arg(long, value_name = "USER")]
    pub system_user: Option<String>,
    /// Also store the NT hash (MD4 of the password) so this user can log on with NLA (CredSSP),
    /// which needs NTLM. Trade-off: the NT hash is password-equivalent for NTLM (anyone who reads
    /// users.toml can log on as this user over NLA without cracking anything), whereas the argon2id
    /// hash alone is not. Without it the user logs on over TLS with the password in the client info.
    #[arg(long)]
    pub nt_hash: bool,
}

#[derive(Debug, Args)]
pub struct UserListArgs {
    #[arg(long, value_name = "DIR", help = STATE_DIR_HELP)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UserRemoveArgs {
    /// Account name to remove.
    pub name: String,
    #[arg(long, value_name = "DIR", help = STATE_DIR_HELP)]
    pub state_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn scripted_forms_parse() {
        let cli = Cli::try_parse_from([
            "rdhost",
            "serve",
            "--listen",
            "127.0.0.1:13389",
            "--state-dir",
            "/tmp/s",
            "--config",
            "/etc/r.toml",
            "--desktop",
            "terminal",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let s = args.settings();
        assert_eq!(s.listen, Some("127.0.0.1:13389".parse().unwrap()));
        assert_eq!(s.state_dir, Some(PathBuf::from("/tmp/s")));
        assert_eq!(s.desktop, Some(DesktopKind::Terminal));
        assert_eq!(args.config, Some(PathBuf::from("/etc/r.toml")));

        let cli = Cli::try_parse_from([
            "rdhost",
            "user",
            "add",
            "bob",
            "--state-dir",
            "/s",
            "--system-user",
            "bob",
            "--nt-hash",
        ])
        .unwrap();
        let Command::User(UserCommand::Add(a)) = cli.command else {
            panic!("not user add")
        };
        assert_eq!(
            (a.name.as_str(), a.system_user.as_deref(), a.nt_hash),
            ("bob", Some("bob"), true)
        );

        assert!(matches!(
            Cli::try_parse_from(["rdhost", "user", "list", "--state-dir", "/s"])
                .unwrap()
                .command,
            Command::User(UserCommand::List(_))
        ));
        assert!(matches!(
            Cli::try_parse_from(["rdhost", "user", "remove", "bob"])
                .unwrap()
                .command,
            Command::User(UserCommand::Remove(_))
        ));
    }

    #[test]
    fn session_management_forms_parse() {
        use crate::control::protocol::{MessageButtons, SessionRef};
        let parse = |args: &[&str]| {
            let mut all = vec!["rdhost"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).unwrap_or_else(|e| panic!("{args:?}: {e}")).command.into_session_command().unwrap()
        };
        let SessionCommand::Query(QueryCommand::Session(q)) = parse(&["query", "session", "alice", "--json", "--socket", "/s"]) else { panic!() };
        assert_eq!((q.filter.as_deref(), q.json, q.socket.socket.as_deref()), (Some("alice"), true, Some(std::path::Path::new("/s"))));
        let SessionCommand::Connect(c) = parse(&["connect", "3", "--dest", "5", "--password", "-", "--no-wait"]) else { panic!() };
        assert_eq!((c.session, c.dest, c.password.as_deref(), c.no_wait), (SessionRef::Id(3), Some(SessionRef::Id(5)), Some("-"), true));
        let SessionCommand::Disconnect(d) = parse(&["disconnect"]) else { panic!() };
        assert_eq!((d.session, d.no_wait), (None, false));
        let SessionCommand::Logoff(l) = parse(&["logoff", "4", "--no-wait"]) else { panic!() };
        assert_eq!((l.session, l.no_wait), (Some(SessionRef::Id(4)), true));
        let SessionCommand::Reset(r) = parse(&["reset", "4"]) else { panic!() };
        assert_eq!(r.session, SessionRef::Id(4));
        let SessionCommand::Msg(m) = parse(&["msg", "*", "--title", "T", "--buttons", "yesno", "--time", "5", "--wait", "hello", "there"]) else { panic!() };
        assert_eq!((m.target.as_str(), m.title.as_deref(), m.buttons, m.time, m.wait), ("*", Some("T"), MessageButtons::Yesno, Some(5), true));
        assert_eq!(m.text, ["hello", "there"]);
        let SessionCommand::Shadow(s) = parse(&["shadow", "3", "--control"]) else { panic!() };
        assert_eq!((s.session, s.control, s.stop), (Some(3), true, false));
        let SessionCommand::Shadow(s) = parse(&["shadow", "--stop"]) else { panic!() };
        assert!(s.stop && s.session.is_none());
        let SessionCommand::Events(e) = parse(&["events", "--json"]) else { panic!() };
        assert!(e.json);
        assert!(Cli::try_parse_from(["rdhost", "shadow"]).is_err());
        assert!(Cli::try_parse_from(["rdhost", "msg", "3"]).is_err());
        assert!(Cli::try_parse_from(["rdhost", "connect", "x"]).unwrap_err().to_string().contains("not a session id"));
    }

    #[test]
    fn unknown_desktop_is_refused_with_the_choices() {
        let err = Cli::try_parse_from(["rdhost", "serve", "--desktop", "wayland"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("wayland") && err.contains("terminal") && err.contains("x11"), "{err}");
    }

    #[test]
    fn serve_long_help_documents_config_keys_and_files() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        for needle in [
            "Config keys",
            "handshake_timeout_secs",
            "tls/key.pem",
            "0.0.0.0:3389",
            "Examples",
        ] {
            assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
        }
        let mut cmd = Cli::command();
        let user = cmd.find_subcommand_mut("user").unwrap();
        let help = user
            .find_subcommand_mut("add")
            .unwrap()
            .render_long_help()
            .to_string();
        for needle in [
            "password-equivalent",
            "standard input",
            "--system-user",
            "Examples",
        ] {
            assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
        }
    }
}
