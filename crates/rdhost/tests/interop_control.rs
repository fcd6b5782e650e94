//! Session management with a real client: FreeRDP's `xfreerdp` (2.11) against a real host on
//! loopback, driven by the `rdhost` CLI over the host's control socket. Each xfreerdp runs on an
//! Xvfb of its own (an overlapping window would spoil the other's screenshot), keystrokes go in
//! through xdotool, and what a window shows is read back from a screenshot of it.
//!
//! Sessions are made recognisable by colour: a shell told `printf '\033[42m\033[H\033[2J'`
//! clears its screen to green. Each shell also sets `S=<its user>`, so a command typed through a
//! window writes which session's shell ran it (`echo $S > file`).
//!
//! Skips (with a note) when a tool is missing, unless `CI` is set: then it fails and names the
//! package to install.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::xfreerdp::{Bounds, HEIGHT, Shot, WAIT, WIDTH, Xfreerdp, tools_present, wait_until};
use common::{BIN, Host};

const ALICE: (&str, &str) = ("alice", "alice-pw-1");
const BOB: (&str, &str) = ("bob", "bob-pw-1");

/// Background colours (SGR code, and the xterm RGB the terminal desktop draws it in).
const GREEN: (u8, [u8; 3]) = (42, [0, 205, 0]);
const MAGENTA: (u8, [u8; 3]) = (45, [205, 0, 205]);
/// The message box's panel and title bar (crates/desktop/src/message.rs).
const BOX_PANEL: [u8; 3] = [0xE4, 0xE4, 0xE4];
const BOX_TITLE_BAR: [u8; 3] = [0x1F, 0x4E, 0x8C];
/// Per-channel slack for colours that went through the client's (lossy) codec.
const TOLERANCE: u8 = 28;

/// FreeRDP's exit codes for Set Error Info 0x1 (disconnect by an admin tool), 0x2 (logoff by an
/// admin tool) and 0x5 (another connection took the session).
const XF_EXIT_DISCONNECT: i32 = 1;
const XF_EXIT_LOGOFF: i32 = 2;
const XF_EXIT_CONN_REPLACED: i32 = 5;

/// Wait for a shell prompt in `window`, then set `S` to `user` and clear the screen to `colour`.
fn paint(window: &Xfreerdp, host: &Host, user: &str, colour: (u8, [u8; 3])) {
    assert!(
        window.wait_shot("prompt", |s| s.shows("$") || s.shows("#")),
        "{}: a shell prompt shows; host log:\n{}\nxfreerdp:\n{}",
        window.label(),
        host.log(),
        window.log()
    );
    window.type_line(&format!("S={user}; printf '\\033[{}m\\033[H\\033[2J'", colour.0));
    assert!(
        window.wait_shot("painted", |s| s.share_near(colour.1, TOLERANCE) > 0.6),
        "{}: the screen turns {:?}; host log:\n{}",
        window.label(),
        colour.1,
        host.log()
    );
}

/// The id of `user`'s Active session, once the host lists one.
fn active_session_of(host: &Host, user: &str) -> u32 {
    let mut id = None;
    assert!(
        wait_until(WAIT, || {
            id = host.sessions().iter().find(|s| s["user"] == user && s["state"] == "Active").and_then(|s| s["id"].as_u64());
            id.is_some()
        }),
        "{user} has an Active session: {:?}\nhost log:\n{}",
        host.sessions(),
        host.log()
    );
    u32::try_from(id.unwrap()).unwrap()
}

/// How many logons (new or reconnecting) the host has logged.
fn logons(host: &Host) -> usize {
    host.log().lines().filter(|l| l.contains("shows session")).count()
}

/// A directory every session's shell may write to, for files that say which shell ran a command.
fn drop_box() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

#[test]
fn connect_moves_a_live_xfreerdp_window_and_the_replaced_one_exits_with_5() {
    if !tools_present("xfreerdp control interop") {
        return;
    }
    let host = Host::start(&[ALICE, BOB], "");
    let mut alice_window = Xfreerdp::open(&host, ALICE, "connect-alice");
    paint(&alice_window, &host, ALICE.0, GREEN);
    let a = active_session_of(&host, ALICE.0);
    let mut bob_window = Xfreerdp::open(&host, BOB, "connect-bob");
    assert!(bob_window.wait_shot("prompt", |s| s.shows("$") || s.shows("#")), "bob's prompt shows");
    let b = active_session_of(&host, BOB.0);
    let before = bob_window.shot().expect("a screenshot of bob's window");
    assert!(before.share_near(GREEN.1, TOLERANCE) < 0.05, "bob's own screen is not green yet");
    let bob_pid = bob_window.pid();
    assert_eq!(logons(&host), 2, "{}", host.log());

    // tscon A /dest:B: alice's client is dropped with 0x5; bob's shows A without reconnecting.
    let (code, _, err) = host.control(&["connect", &a.to_string(), "--dest", &b.to_string()]);
    assert_eq!(code, 0, "connect failed: {err}\nhost log:\n{}", host.log());
    let status = alice_window.wait_exit(WAIT).unwrap_or_else(|| panic!("alice's xfreerdp still runs after connect:\n{}", alice_window.log()));
    assert_eq!(status.code(), Some(XF_EXIT_CONN_REPLACED), "alice's xfreerdp:\n{}", alice_window.log());
    assert!(
        bob_window.wait_shot("moved", |s| s.share_near(GREEN.1, TOLERANCE) > 0.6),
        "bob's window shows alice's green session; host log:\n{}\nxfreerdp:\n{}",
        host.log(),
        bob_window.log()
    );
    assert!(bob_window.exited().is_none(), "bob's xfreerdp still runs:\n{}", bob_window.log());
    assert_eq!(bob_window.pid(), bob_pid);
    assert_eq!(logons(&host), 2, "nobody logged on again: the window moved live\n{}", host.log());
    assert!(host.log().contains("terminal switches session"), "the host switched the terminal:\n{}", host.log());
    assert_eq!(host.state_of(a).as_deref(), Some("Active"));
    assert_eq!(host.state_of(b).as_deref(), Some("Disconnected"));
    // The moved window drives alice's shell now.
    let files = drop_box();
    let whose = files.path().join("whose");
    bob_window.type_line(&format!("echo $S > {}", whose.display()));
    assert!(wait_until(WAIT, || read_trimmed(&whose).as_deref() == Some(ALICE.0)), "typed into alice's shell: {:?}", read_trimmed(&whose));
}

#[test]
fn xfreerdp_exits_with_the_codes_of_logoff_and_disconnect() {
    if !tools_present("xfreerdp control interop") {
        return;
    }
    let host = Host::start(&[ALICE], "");

    // logoff: the client gets 0x2 and the session ends.
    let mut first = Xfreerdp::open(&host, ALICE, "logoff");
    assert!(first.wait_shot("prompt", |s| s.shows("$") || s.shows("#")), "a prompt shows:\n{}", host.log());
    let a = active_session_of(&host, ALICE.0);
    let (code, _, err) = host.control(&["logoff", &a.to_string()]);
    assert_eq!(code, 0, "{err}");
    let status = first.wait_exit(WAIT).unwrap_or_else(|| panic!("xfreerdp still runs after logoff:\n{}", first.log()));
    assert_eq!(status.code(), Some(XF_EXIT_LOGOFF), "xfreerdp:\n{}\nhost log:\n{}", first.log(), host.log());
    assert!(host.wait_state(a, None, WAIT), "the session ends: {:?}", host.sessions());
    drop(first);

    // tsdiscon: the client gets 0x1 and the session stays, Disconnected.
    let mut second = Xfreerdp::open(&host, ALICE, "disconnect");
    assert!(second.wait_shot("prompt", |s| s.shows("$") || s.shows("#")), "a prompt shows:\n{}", host.log());
    let a = active_session_of(&host, ALICE.0);
    let (code, _, err) = host.control(&["disconnect", &a.to_string()]);
    assert_eq!(code, 0, "{err}");
    let status = second.wait_exit(WAIT).unwrap_or_else(|| panic!("xfreerdp still runs after disconnect:\n{}", second.log()));
    assert!(host.wait_state(a, Some("Disconnected"), WAIT), "the session stays: {:?}", host.sessions());
    assert_eq!(status.code(), Some(XF_EXIT_DISCONNECT), "xfreerdp:\n{}\nhost log:\n{}", second.log(), host.log());
}

#[test]
fn a_message_box_shows_in_the_xfreerdp_window_and_is_answered_from_it() {
    if !tools_present("xfreerdp control interop") {
        return;
    }
    let host = Host::start(&[ALICE], "");
    let window = Xfreerdp::open(&host, ALICE, "msg");
    assert!(window.wait_shot("prompt", |s| s.shows("$") || s.shows("#")), "a prompt shows:\n{}", host.log());
    let a = active_session_of(&host, ALICE.0);
    let before = window.shot().expect("a screenshot");
    assert!(before.band_of(BOX_TITLE_BAR, TOLERANCE, 50).is_none(), "no title-bar blue before the message");

    // msg --wait blocks until the box is answered: in the background, answered from xfreerdp.
    let socket = host.socket();
    let asking = std::thread::spawn(move || {
        Command::new(BIN)
            .args(["msg", &a.to_string(), "--title", "Notice", "--wait", "Backup", "starts", "soon", "--socket"])
            .arg(socket)
            .env_remove("RDHOST_CONTROL_SOCKET")
            .output()
            .expect("run rdhost msg")
    });
    // The box: a blue title bar at least 24 columns wide, centred horizontally in the upper half,
    // a band of light-grey panel right under it, and the text in the terminal font.
    let (w, h) = (WIDTH, HEIGHT);
    let boxed = |s: &Shot| {
        let Some(title) = s.band_of(BOX_TITLE_BAR, TOLERANCE, 150) else { return false };
        let (tw, th) = (title.right - title.left + 1, title.bottom - title.top + 1);
        let centre = (title.left + title.right) / 2;
        let below = Bounds { left: title.left, top: title.bottom + 2, right: title.right, bottom: (title.bottom + th).min(s.height - 1) };
        tw >= 200
            && (10..=40).contains(&th)
            && s.share_in(title, BOX_TITLE_BAR, TOLERANCE) > 0.7
            && centre.abs_diff(w / 2) <= 24
            && title.top > h / 4
            && title.top < h / 2
            && s.share_in(below, BOX_PANEL, TOLERANCE) > 0.8
            && s.shows("Backup starts soon")
    };
    assert!(
        window.wait_shot("msg-box", boxed),
        "the message box is drawn in the xfreerdp window; host log:\n{}\nxfreerdp:\n{}",
        host.log(),
        window.log()
    );

    // Enter presses the focused OK button; the box goes and the answer comes back.
    window.key("Return");
    assert!(window.wait_shot("msg-gone", |s| s.band_of(BOX_TITLE_BAR, TOLERANCE, 50).is_none()), "OK closes the box");
    let out = asking.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("IDOK (1)"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Bob shadows alice from inside his session; `control` says whether he asked for (and the
/// policy gives) control. Checks his window, where his keys go, and the hotkey back.
fn shadow_through_xfreerdp(policy: &str, control: bool) {
    let host = Host::start(&[ALICE, BOB], &format!("shadow = \"{policy}\"\n"));
    let alice_window = Xfreerdp::open(&host, ALICE, &format!("{policy}-alice"));
    paint(&alice_window, &host, ALICE.0, GREEN);
    let a = active_session_of(&host, ALICE.0);
    let bob_window = Xfreerdp::open(&host, BOB, &format!("{policy}-bob"));
    paint(&bob_window, &host, BOB.0, MAGENTA);
    let b = active_session_of(&host, BOB.0);

    // `rdhost shadow A` typed into bob's shell: the session tells the CLI its host.
    bob_window.type_line(&format!("{BIN} shadow {a}{}", if control { " --control" } else { "" }));
    assert!(
        bob_window.wait_shot("shadowing", |s| s.share_near(GREEN.1, TOLERANCE) > 0.6),
        "bob's window shows alice's green session; host log:\n{}\nxfreerdp:\n{}",
        host.log(),
        bob_window.log()
    );
    assert!(host.wait_state(b, Some("Shadow"), WAIT), "bob's session shadows: {:?}", host.sessions());
    assert_eq!(host.state_of(a).as_deref(), Some("Active"));
    let alice = host.sessions().into_iter().find(|s| s["id"] == a).unwrap();
    let level = if control { "interactive" } else { "view" };
    assert_eq!(alice["viewers"][0]["control_level"], level, "{alice}");

    // Bob's keys: into alice's shell with control, nowhere without (not his own shell either).
    let files = drop_box();
    let while_shadowing = files.path().join("while-shadowing");
    bob_window.type_line(&format!("echo $S > {}", while_shadowing.display()));
    if control {
        assert!(
            wait_until(WAIT, || read_trimmed(&while_shadowing).as_deref() == Some(ALICE.0)),
            "bob's typing runs in alice's shell: {:?}\nhost log:\n{}",
            read_trimmed(&while_shadowing),
            host.log()
        );
    } else {
        // A shell runs a typed line within a few hundred ms (the control variant shows it).
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(read_trimmed(&while_shadowing), None, "a view-only shadow's keys reach no shell");
        assert!(bob_window.shot().is_some_and(|s| s.share_near(GREEN.1, TOLERANCE) > 0.6), "bob still sees alice");
    }

    // Ctrl + keypad * returns bob's window to his own (magenta) session, and his keys to his shell.
    bob_window.key("ctrl+KP_Multiply");
    assert!(
        bob_window.wait_shot("returned", |s| s.share_near(MAGENTA.1, TOLERANCE) > 0.5),
        "the hotkey returns bob's window to his session; host log:\n{}",
        host.log()
    );
    assert!(host.wait_state(b, Some("Active"), WAIT), "bob's session is Active again: {:?}", host.sessions());
    let after = files.path().join("after");
    bob_window.type_line(&format!("echo $S > {}", after.display()));
    assert!(wait_until(WAIT, || read_trimmed(&after).as_deref() == Some(BOB.0)), "bob types into his own shell again: {:?}", read_trimmed(&after));
    if !control {
        assert_eq!(read_trimmed(&while_shadowing), None, "the view-only keys were dropped, not held back");
    }
    assert!(alice_window.shot().is_some_and(|s| s.share_near(GREEN.1, TOLERANCE) > 0.5), "alice's own window kept her session");
}

#[test]
fn xfreerdp_shadows_view_only_and_the_hotkey_returns() {
    if tools_present("xfreerdp control interop") {
        shadow_through_xfreerdp("view", false);
    }
}

#[test]
fn xfreerdp_shadows_with_control_and_the_hotkey_returns() {
    if tools_present("xfreerdp control interop") {
        shadow_through_xfreerdp("control", true);
    }
}
