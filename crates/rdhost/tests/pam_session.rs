//! A PAM session for every session (host run as root): a system user's session opens its PAM
//! session before the desktop starts, with PAM_TTY `rdhost/<id>` and PAM_RHOST the client's
//! address; the variables the session modules set reach the session's shell; logoff closes it.
//! A users-file account mapped to that system user gets one too.
//!
//! The proof is a PAM service of the test's own (`/etc/pam.d/rdhost-test-<pid>`, removed
//! afterwards, chosen with the `pam_service` key): pam_env reads a variable from a file of the
//! test's, and pam_exec appends `$PAM_TYPE $PAM_USER $PAM_TTY $PAM_RHOST` to a marker file at
//! open_session and at close_session. Needs root, useradd/chpasswd/userdel and pam_exec; under CI
//! a missing one fails the test, elsewhere it is skipped.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Host, add_user_with, on_screen, wait_until};
use rdhost_client::Client;

const WAIT: Duration = Duration::from_secs(30);
const USER: &str = "rdhostpamsess";

/// Where Debian keeps PAM modules.
fn pam_module(name: &str) -> Option<PathBuf> {
    ["/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security", "/lib/security", "/usr/lib/security"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
}

fn possible(test: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["useradd", "chpasswd", "userdel"] {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            missing.push(format!("{tool} (apt package passwd)"));
        }
    }
    for module in ["pam_exec.so", "pam_env.so", "pam_unix.so"] {
        if pam_module(module).is_none() {
            missing.push(format!("{module} (apt package libpam-modules)"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: needs {}", missing.join(", "));
    eprintln!("{test}: skipped, needs {}", missing.join(", "));
    false
}

/// The test's PAM service and system user, removed again however the test ends.
struct Fixture {
    service: String,
    pam_file: PathBuf,
    marker: PathBuf,
    value: String,
    password: String,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn create() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // pam_exec runs the script as root; the directory must be reachable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let marker = dir.path().join("marker");
        let script = dir.path().join("mark.sh");
        std::fs::write(&script, format!("#!/bin/sh\necho \"$PAM_TYPE $PAM_USER $PAM_TTY $PAM_RHOST\" >> {}\n", marker.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let value = format!("from-pam-{}", std::process::id());
        let env_file = dir.path().join("environment");
        std::fs::write(&env_file, format!("RDHOST_PAM_TEST={value}\n")).unwrap();

        let service = format!("rdhost-test-{}", std::process::id());
        let pam_file = Path::new("/etc/pam.d").join(&service);
        std::fs::write(
            &pam_file,
            format!(
                "auth required pam_unix.so\naccount required pam_unix.so\n\
                 session required pam_env.so readenv=1 envfile={}\n\
                 session required pam_exec.so quiet {}\n\
                 session required pam_unix.so\n",
                env_file.display(),
                script.display()
            ),
        )
        .unwrap();

        let password = format!("Pam-{}-session", std::process::id());
        let _ = Command::new("userdel").args(["-r", USER]).stderr(Stdio::null()).output(); // an earlier run's
        let fixture = Fixture { service, pam_file, marker, value, password, _dir: dir };
        let made = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", USER]).status().unwrap();
        assert!(made.success(), "useradd {USER}");
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut chpasswd.stdin.take().unwrap(), format!("{USER}:{}\n", fixture.password).as_bytes()).unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd");
        fixture
    }

    fn marks(&self) -> String {
        std::fs::read_to_string(&self.marker).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pam_file);
        let _ = Command::new("userdel").args(["-r", USER]).stderr(Stdio::null()).output();
    }
}

/// Log on as `user`, check the PAM variable in the shell and the open mark, log off with
/// `exit`, check the close mark.
async fn session_round(fixture: &Fixture, host: &Host, user: &str, password: &str, session: u32) {
    let mut client = rdhost_client::connect(host.client(user, password))
        .await
        .unwrap_or_else(|e| panic!("logon of {user}: {e}\nhost log:\n{}", host.log()));
    assert!(client.pump_until(WAIT, |c| on_screen(c, "$")).await.unwrap(), "a prompt\nhost log:\n{}", host.log());
    let opened = format!("open_session {USER} rdhost/{session} 127.0.0.1\n");
    assert!(fixture.marks().contains(&opened), "no {opened:?} in the marks: {:?}\nhost log:\n{}", fixture.marks(), host.log());
    assert!(!fixture.marks().contains("close_session"), "closed early: {:?}", fixture.marks());

    // Only the shell's expansion shows the value: the typed line has the variable's name.
    client.type_text("echo \"pam=$RDHOST_PAM_TEST.\"\n").await.unwrap();
    let want = format!("pam={}.", fixture.value);
    let seen = client.pump_until(WAIT, |c| on_screen(c, &want)).await.unwrap();
    if !seen {
        client.save_png(&common::artifacts_dir().join(format!("pam-session-{session}.png"))).unwrap();
    }
    assert!(seen, "{want} on screen: the PAM environment reaches the session's shell");

    // Logoff: the PAM session is closed.
    client.type_text("exit\n").await.unwrap();
    // Ends in a close either way (a Set Error Info first, or the socket).
    let _ = client.pump_until(WAIT, Client::closed).await;
    let closed = format!("close_session {USER} rdhost/{session} 127.0.0.1\n");
    assert!(wait_until(WAIT, || fixture.marks().contains(&closed)), "no {closed:?}: {:?}\nhost log:\n{}", fixture.marks(), host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_opens_a_pam_session_with_its_environment_and_closes_it_at_logoff() {
    let test = "every_session_opens_a_pam_session_with_its_environment_and_closes_it_at_logoff";
    if !possible(test) {
        return;
    }
    let fixture = Fixture::create();

    // A system user through PAM (auth and session in the test's service).
    let host = Host::start(&[], &format!("auth = \"pam\"\npam_service = \"{}\"\n", fixture.service));
    session_round(&fixture, &host, USER, &fixture.password, 1).await;
    drop(host);

    // A users-file account that runs as that system user: the session stack only.
    let host = Host::start(&[], &format!("pam_service = \"{}\"\n", fixture.service));
    add_user_with(host.state.path(), "filepam", "file-pw-1", &["--system-user", USER]);
    std::fs::write(&fixture.marker, "").unwrap();
    session_round(&fixture, &host, "filepam", "file-pw-1", 1).await;
    drop(host);

    // pam_session = false: no PAM session, no variable.
    let host = Host::start(&[], &format!("auth = \"pam\"\npam_service = \"{}\"\npam_session = false\n", fixture.service));
    std::fs::write(&fixture.marker, "").unwrap();
    let mut client = rdhost_client::connect(host.client(USER, &fixture.password)).await.unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, "$")).await.unwrap(), "a prompt");
    client.type_text("echo \"pam=$RDHOST_PAM_TEST.\"\n").await.unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, "pam=.")).await.unwrap(), "the variable is unset");
    assert_eq!(fixture.marks(), "", "no PAM session opened");
}
