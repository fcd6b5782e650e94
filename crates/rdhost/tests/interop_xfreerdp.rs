//! Interop with a real client: FreeRDP's `xfreerdp`, each on a private Xvfb, against a real
//! host on loopback. Keystrokes go in through xdotool, and what the xfreerdp window shows is read
//! back from a screenshot of it with the terminal desktop's own font.
//!
//! Skips (with a note) when a tool is missing, unless `CI` is set: then it fails and names the
//! package to install.

mod common;

use common::xfreerdp::{HEIGHT, WAIT, WIDTH, Xfreerdp, tools_present, wait_until};
use common::{Host, RECORDER_IDLE, RECORDER_PRESSED, shell_token};

const USER: (&str, &str) = ("alice", "alice-pw-1");

/// Session ids of the host's "terminal N shows session S" lines, with whether each was a
/// reconnect.
fn shown_sessions(log: &str) -> Vec<(String, bool)> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("shows session ")? + "shows session ".len()..];
            let session = rest.split_whitespace().next()?.to_owned();
            Some((session, line.contains("kind=Reconnect")))
        })
        .collect()
}

#[test]
fn xfreerdp_types_into_the_session_and_a_second_xfreerdp_reconnects_to_it() {
    if !tools_present("xfreerdp interop") {
        return;
    }
    let host = Host::start(&[USER], "");

    let mut first = Xfreerdp::open(&host, USER, "first");
    assert!(
        first.wait_any(&["$", "#"], "prompt").is_some(),
        "a shell prompt shows in the xfreerdp window; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        first.log()
    );
    assert!(host.wait_log("shows session", WAIT), "host logs the logon:\n{}", host.log());

    let (command, token) = shell_token();
    first.type_line(command.trim_end());
    assert!(
        first.wait_text(&token, "typed"),
        "the shell's output {token} shows in the xfreerdp window; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        first.log()
    );

    // A client that vanishes without a word; the session stays.
    first.kill();
    let mut second = Xfreerdp::open(&host, USER, "second");
    assert!(
        second.wait_text(&token, "reconnected"),
        "the earlier output {token} shows in the second xfreerdp window; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        second.log()
    );
    assert!(
        wait_until(WAIT, || shown_sessions(&host.log()).len() >= 2),
        "host logs the second terminal:\n{}",
        host.log()
    );
    let shown = shown_sessions(&host.log());
    assert_eq!(shown.len(), 2, "two logons:\n{}", host.log());
    assert!(!shown[0].1, "first logon is a new session:\n{}", host.log());
    assert_eq!(shown[1], (shown[0].0.clone(), true), "second terminal shows the same session:\n{}", host.log());
    assert!(second.exited().is_none(), "second xfreerdp still runs:\n{}", second.log());
}

#[test]
fn xfreerdp_with_a_wrong_password_is_refused() {
    if !tools_present("xfreerdp interop") {
        return;
    }
    let host = Host::start(&[USER], "");

    let mut client = Xfreerdp::start(&host, (USER.0, "not-the-password"), "wrong");
    let status = client.wait_exit(WAIT).unwrap_or_else(|| panic!("xfreerdp did not give up; its output:\n{}", client.log()));
    eprintln!("xfreerdp with a wrong password exited with {status}");
    // FreeRDP 2.11 maps the host's ERRINFO 0x9 (access denied) to exit code 131.
    assert!(!status.success(), "xfreerdp with a wrong password exits non-zero, got {status}");
    assert!(status.code().is_some(), "xfreerdp exits by itself, not by a signal: {status}");
    assert!(host.wait_log("authentication failed", WAIT), "host logs the failed logon:\n{}", host.log());
    assert!(shown_sessions(&host.log()).is_empty(), "no session is shown:\n{}", host.log());
}

/// FreeRDP's exit code when NLA reports a logon failure (XF_EXIT_LOGON_FAILURE).
const XF_EXIT_LOGON_FAILURE: i32 = 134;

#[test]
fn xfreerdp_with_a_wrong_password_under_nla_exits_with_its_logon_failure_code() {
    if !tools_present("xfreerdp interop") {
        return;
    }
    let host = Host::start_nla(&[USER], "");

    let mut client = Xfreerdp::start(&host, (USER.0, "not-the-password"), "nla-wrong");
    let status = client.wait_exit(WAIT).unwrap_or_else(|| panic!("xfreerdp did not give up; its output:\n{}", client.log()));
    assert_eq!(status.code(), Some(XF_EXIT_LOGON_FAILURE), "output:\n{}", client.log());
    assert!(host.wait_log("(NLA)", WAIT), "host logs the failed NLA logon:\n{}", host.log());
    assert!(shown_sessions(&host.log()).is_empty(), "no session exists:\n{}", host.log());

    // The right password over NLA gets a session (after the throttle's delay for the failure).
    let client = Xfreerdp::open(&host, USER, "nla-right");
    assert!(
        client.wait_any(&["$", "#"], "prompt").is_some(),
        "a shell prompt shows over NLA; host log:\n{}",
        host.log()
    );
}

/// FreeRDP's exit code for ERRINFO_LOGOFF_BY_USER (0xC).
const XF_EXIT_LOGOFF: i32 = 12;

#[test]
fn xfreerdp_exits_with_the_logoff_code_when_the_shell_exits() {
    if !tools_present("xfreerdp interop") {
        return;
    }
    let host = Host::start(&[USER], "");

    let mut client = Xfreerdp::open(&host, USER, "logoff");
    assert!(
        client.wait_any(&["$", "#"], "prompt").is_some(),
        "a shell prompt shows; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        client.log()
    );
    client.type_line("exit");
    let status = client.wait_exit(WAIT).unwrap_or_else(|| {
        panic!(
            "xfreerdp still runs after the shell exited; host log:\n{}\nxfreerdp output:\n{}",
            host.log(),
            client.log()
        )
    });
    eprintln!("xfreerdp after logoff exited with {status}");
    assert_eq!(
        status.code(),
        Some(XF_EXIT_LOGOFF),
        "xfreerdp exits with the logoff code; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        client.log()
    );
}

// ---------------------------------------------------------------------------------------------
// X desktops through xfreerdp.


#[test]
fn xfreerdp_shows_an_x_session_and_reconnects_to_the_same_x_server() {
    // Xvfb is among the tools, so the host has an X server for the session too.
    if !tools_present("xfreerdp x11 interop") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (record, command) = common::recorder_command(dir.path());
    let host = Host::start(&[USER], &format!("desktop = \"x11\"\nsession_command = {command:?}\n"));

    let mut first = Xfreerdp::open(&host, USER, "x11-first");
    // Most of the window is the recorder's colour: the session's X content reaches xfreerdp.
    let area = (WIDTH * HEIGHT) as usize;
    assert!(
        first.wait_shot("window", |s| s.count_near(RECORDER_IDLE, 12) > area * 8 / 10),
        "the X session's window shows in xfreerdp; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        first.log()
    );
    // Keys typed into xfreerdp reach the X program in the session.
    first.type_text("q");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&record).unwrap_or_default().lines().any(|l| l.starts_with("key-press") && l.contains("text=q"))),
        "the recorder got the key; it logged:\n{}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
    let servers = common::x_servers_of(&host);
    assert_eq!(servers.len(), 1, "{servers:?}");

    first.kill();
    let second = Xfreerdp::open(&host, USER, "x11-second");
    assert!(
        second.wait_shot("window", |s| s.count_near(RECORDER_IDLE, 12) + s.count_near(RECORDER_PRESSED, 12) > area * 8 / 10),
        "the same window shows after reconnecting; host log:\n{}",
        host.log()
    );
    assert_eq!(common::x_servers_of(&host), servers, "the same X server serves the second client");
    let shown = shown_sessions(&host.log());
    assert_eq!(shown.len(), 2, "two logons:\n{}", host.log());
    assert_eq!(shown[1], (shown[0].0.clone(), true), "the second is a reconnect:\n{}", host.log());
}
