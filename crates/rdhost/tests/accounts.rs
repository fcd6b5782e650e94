//! Accounts and their sessions at the boundary, with a real `rdhost` process:
//! - as root, a users-file account never runs as root by default: `user add` refuses an account
//!   without a system account to run as, and `serve` refuses its logons with a clear log line;
//! - PAM is loaded at run time (`libpam.so.0`): a logon through it gets PAM's answer;
//! - an X session whose program fails at once ends with an error that names the program, its
//!   exit status and the end of its log, and the client is told the display failed.
//!
//! The root-only tests fail under CI when not root, and skip otherwise.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Host};
use rdhost_client::{Client, ConnectError, SessionError};

const WAIT: Duration = Duration::from_secs(30);
/// No system account has this name (checked below).
const UNMAPPED: &str = "nosuchsysuser";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} must run as root under CI: it checks what a root host does");
    eprintln!("{test}: skipped, not root");
    false
}

/// `rdhost user add NAME ARGS --state-dir STATE` with the password on stdin.
fn user_add(state: &Path, name: &str, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(["user", "add", name])
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rdhost user add");
    writeln!(child.stdin.take().unwrap(), "pw-{name}").unwrap();
    child.wait_with_output().unwrap()
}

/// Put an account without `system_user` in the users file directly, as an older rdhost (or an
/// editor) would have; `user add` itself no longer writes one as root.
fn write_unmapped_account(state: &Path, name: &str, password: &str) {
    let path = state.join("users.toml");
    let mut file = rdhost::users::UsersFile::load(&path).unwrap();
    file.add(rdhost::users::UserEntry::new(name, password, None, false).unwrap()).unwrap();
    file.save(&path).unwrap();
}

/// The Set Error Info code a refused logon ended with: refused during the connection sequence,
/// or closed right after it.
async fn refusal_code(result: Result<Client, ConnectError>) -> Option<u32> {
    match result {
        Err(e @ (ConnectError::Refused { .. } | ConnectError::AuthenticationFailed { .. })) => e.error_info(),
        Err(e) => panic!("refused with an unexpected error: {e}"),
        Ok(mut client) => match client.pump_until(WAIT, Client::closed).await {
            Ok(true) => client.error_info(),
            Ok(false) => panic!("the host did not end the connection"),
            Err(e @ SessionError::Closed { .. }) => e.closed_with(),
            Err(e) => panic!("client failed: {e}"),
        },
    }
}

#[test]
fn as_root_user_add_wants_the_system_account_named() {
    if !root_or_skip("as_root_user_add_wants_the_system_account_named") {
        return;
    }
    assert!(rdhost::auth::SystemUser::lookup(UNMAPPED).unwrap().is_none(), "{UNMAPPED} must not exist here");
    let state = tempfile::tempdir().unwrap();

    let out = user_add(state.path(), UNMAPPED, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("--system-user NAME") && stderr.contains("--system-user root") && stderr.contains(UNMAPPED),
        "the refusal says what to pass: {stderr}"
    );
    assert!(!state.path().join("users.toml").exists(), "nothing written");

    // An existing system account of the same name is taken, and recorded.
    let out = user_add(state.path(), "nobody", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Root, asked for explicitly, stays possible, with a warning.
    let out = user_add(state.path(), UNMAPPED, &["--system-user", "root"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("run as root"), "{stdout}");

    let out = Command::new(BIN).args(["user", "list", "--state-dir"]).arg(state.path()).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| listing.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} listed: {listing}")).to_owned();
    assert!(line("nobody").split_whitespace().nth(1) == Some("nobody"), "{listing}");
    assert!(line(UNMAPPED).split_whitespace().nth(1) == Some("root"), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_serve_refuses_an_account_without_a_system_account() {
    if !root_or_skip("as_root_serve_refuses_an_account_without_a_system_account") {
        return;
    }
    let host = Host::start(&[("alice", "alice-pw-1")], "auth = \"users-file\"\n");
    // The host re-reads the users file at each logon.
    write_unmapped_account(host.state.path(), UNMAPPED, "pw-1");

    let code = refusal_code(rdhost_client::connect(host.client(UNMAPPED, "pw-1")).await).await;
    assert!(code.is_some(), "the client is told it was refused\nhost log:\n{}", host.log());
    assert!(
        host.wait_log(&format!("users-file account \"{UNMAPPED}\" has no system_user"), WAIT),
        "the log says why: {}",
        host.log()
    );
    let line = host.log().lines().find(|l| l.contains("has no system_user")).unwrap().to_owned();
    assert!(line.contains("never as root by default") && line.contains("--system-user NAME"), "{line}");
    assert!(host.sessions().is_empty(), "no session was made: {:?}", host.sessions());

    // The same account with root named explicitly gets in (the administrator's choice).
    let mut alice = rdhost_client::connect(host.client("alice", "alice-pw-1")).await.unwrap_or_else(|e| panic!("alice: {e}\n{}", host.log()));
    assert!(alice.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap());
    alice.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_names_accounts_that_run_as_root_at_start() {
    if !root_or_skip("serve_names_accounts_that_run_as_root_at_start") {
        return;
    }
    // alice is added as the harness adds everyone as root: --system-user root, said explicitly.
    let host = Host::start(&[("alice", "alice-pw-1")], "auth = \"users-file\"\n");
    assert!(
        host.wait_log("users-file account \"alice\" runs its sessions as root (system_user = \"root\")", WAIT),
        "serve warns at start: {}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pam_is_loaded_at_run_time_and_answers() {
    let host = Host::start(&[], "auth = \"pam\"\n");
    let code = refusal_code(rdhost_client::connect(host.client("rdhost-no-such-user-4711", "not-the-password")).await).await;
    assert!(code.is_some(), "refused\n{}", host.log());
    // PAM's own answer (an unknown user is a wrong user name or password), not a load error.
    assert!(host.wait_log("authentication failed: wrong user name or password", WAIT), "{}", host.log());
    assert!(!host.log().contains("PAM is unavailable"), "{}", host.log());
}

// ---------------------------------------------------------------------------------------------
// A session program that fails at once.

fn have_x_server(test: &str) -> bool {
    use rdhost_desktop::x11::server::{XServerPreference, find_x_server};
    match find_x_server(XServerPreference::Auto) {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("{test}: {e}"),
        Err(e) => {
            eprintln!("{test}: skipped: {e}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x_session_whose_program_fails_at_once_ends_with_its_status_and_log() {
    if !have_x_server("an_x_session_whose_program_fails_at_once_ends_with_its_status_and_log") {
        return;
    }
    let command = "echo 'rdhost-test: the window manager is missing' >&2; exit 3";
    let host = Host::start(&[("alice", "alice-pw-1")], &format!("desktop = \"x11\"\nsession_command = {command:?}\n"));
    let code = refusal_code(rdhost_client::connect(host.client("alice", "alice-pw-1")).await).await;
    assert_eq!(code, Some(0x10), "the client is told the session's display failed\nhost log:\n{}", host.log());
    assert!(host.wait_log("exit status 3", WAIT), "the log gives the exit status:\n{}", host.log());
    let log = host.log();
    assert!(log.contains("the session program failed: the session command"), "the log names the program:\n{log}");
    assert!(log.contains("exit 3"), "the log quotes the command:\n{log}");
    assert!(log.contains("rdhost-test: the window manager is missing"), "the log quotes the end of the program's log:\n{log}");
    assert!(!log.contains("X request failed"), "not the X connection it broke:\n{log}");
}
