//! X desktops at the boundary: a real host on loopback giving each session its own X server,
//! our headless client, and real X programs in the session (xterm, and `rdhost-xrecorder`, which
//! logs the input it receives). Also the `display` desktop, attached to an Xvfb the test starts.
//!
//! Skips (with a note) when an X server or tool is missing, unless `CI` is set: then it fails
//! and names the package to install.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Host, RECORDER_IDLE, artifacts_dir, workspace_bin, x_servers_of};
use rdhost_client::{Button, Client};

const WAIT: Duration = Duration::from_secs(30);
const USER: (&str, &str) = ("alice", "alice-pw-1");

/// Are these programs installed? When not: panic under CI, otherwise say why and return false.
fn have(test: &str, tools: &[(&str, &str)]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !(Path::new(tool).is_absolute() && Path::new(tool).exists()) && !std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
        .map(|(tool, package)| format!("{tool} (apt package {package})"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: missing, install them: {}", missing.join(", "));
    }
    eprintln!("{test}: skipped, missing: {}", missing.join(", "));
    false
}

/// What every x11 test needs: an X server of either kind.
fn have_x_server(test: &str) -> bool {
    let xorg = Path::new("/usr/lib/xorg/Xorg").exists() && Path::new("/usr/lib/xorg/modules/drivers/dummy_drv.so").exists();
    xorg || have(test, &[("Xvfb", "xvfb")])
}

/// The host config for x11 sessions running `command`.
fn x11_config(command: &str) -> String {
    format!("desktop = \"x11\"\nsession_command = {command:?}\n")
}

/// A session whose program is the input recorder, logging to a file the test reads.
struct RecorderSession {
    host: Host,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RecorderSession {
    fn start(extra_config: &str) -> RecorderSession {
        let dir = tempfile::tempdir().unwrap();
        let (log, command) = common::recorder_command(dir.path());
        let host = Host::start(&[USER], &format!("{}{extra_config}", x11_config(&command)));
        RecorderSession { host, log, _dir: dir }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Wait until a recorder line satisfies `pred`; on timeout, fail with what it did log.
    fn expect(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if Instant::now() > deadline {
                panic!("recorder never logged {what}; it logged:\n{}\nhost log:\n{}", self.lines().join("\n"), self.host.log());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

async fn login(host: &Host, cfg: rdhost_client::ClientConfig) -> (Client, u32) {
    let mut client = rdhost_client::connect(cfg).await.unwrap_or_else(|e| panic!("logon: {e}\nhost log:\n{}", host.log()));
    assert!(client.pump_until(WAIT, |c| c.server_session_id().is_some()).await.unwrap(), "host announces the session id");
    let id = client.server_session_id().unwrap();
    (client, id)
}

/// Pixels of `rgb` on the client's screen, give or take RemoteFX's rounding.
fn count_colour(client: &Client, rgb: [u8; 3]) -> usize {
    client.rgba().chunks_exact(4).filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 8)).count()
}

async fn shows_colour(client: &mut Client, rgb: [u8; 3], at_least: usize, name: &str) {
    let shown = client.pump_until(WAIT, |c| count_colour(c, rgb) >= at_least).await.unwrap();
    if !shown {
        client.save_png(&artifacts_dir().join(format!("{name}.png"))).unwrap();
    }
    assert!(shown, "{name}: {at_least}+ pixels of {rgb:02x?} on the client (have {})", count_colour(client, rgb));
}

// ---------------------------------------------------------------------------------------------

/// xterm's colour 2 ("green3"): what `printf '\e[42m   '` paints.
const XTERM_GREEN: [u8; 3] = [0, 205, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_runs_in_an_xterm_and_exit_logs_off() {
    if !have_x_server("xterm") || !have("xterm", &[("xterm", "xterm")]) {
        return;
    }
    let host = Host::start(&[USER], &x11_config("exec xterm -geometry 100x30+0+0"));
    let (mut client, _) = login(&host, host.client(USER.0, USER.1)).await;
    assert!(host.log().contains("x11"), "the host says which desktop it uses:\n{}", host.log());
    // The xterm (white, 100x30 cells at the top-left) is up; without a window manager keyboard
    // focus follows the pointer, so put it over the xterm.
    shows_colour(&mut client, [0xff, 0xff, 0xff], 400 * 300, "xterm-window").await;

    // The pointer takes each X window's cursor: the root window's, then xterm's text cursor.
    let shape = |c: &Client| match c.pointer() {
        rdhost_client::Pointer::Shape(s) => Some(s.clone()),
        _ => None,
    };
    client.mouse_move(900, 700).await.unwrap();
    assert!(client.pump_until(WAIT, |c| shape(c).is_some()).await.unwrap(), "the X cursor reaches the client: {:?}", client.pointer());
    // The pointer started over the xterm: let the root window's cursor arrive.
    client.pump_for(Duration::from_millis(700)).await.unwrap();
    let root_cursor = shape(&client).unwrap();
    client.mouse_move(200, 200).await.unwrap();
    assert!(
        client.pump_until(WAIT, |c| shape(c).is_some_and(|s| s != root_cursor)).await.unwrap(),
        "over the xterm the pointer takes its cursor (still {}x{} hotspot {},{})",
        root_cursor.width,
        root_cursor.height,
        root_cursor.hotspot_x,
        root_cursor.hotspot_y
    );
    // Only the shell's output (not the echoed command line) is a bar of green cells.
    client.type_text("printf '\\033[42m%60s\\033[0m\\n' ''\n").await.unwrap();
    shows_colour(&mut client, XTERM_GREEN, 60 * 5 * 10, "xterm-green").await;

    // Leaving the shell ends xterm, the session program: the session logs off (0xC).
    client.type_text("exit\n").await.unwrap();
    assert_eq!(closed_code(&mut client, WAIT).await, Some(Some(0xC)), "the host ends the connection with logoff-by-user");
    assert!(host.wait_log("session ended", WAIT), "{}", host.log());
    assert!(x_servers_of(&host).is_empty(), "the X server ended with the session");
    // Its private directory (cookie, config, logs) is gone too; as root it lives in /run/rdhost.
    let dir = Path::new("/run/rdhost").join(format!("{}-session-1", host.pid()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!(nix_is_root() && dir.exists()), "{} is left behind", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_buttons_and_wheels_reach_an_x_program_where_they_happened() {
    if !have_x_server("input") {
        return;
    }
    let rec = RecorderSession::start("");
    let (mut client, _) = login(&rec.host, rec.host.client(USER.0, USER.1)).await;
    rec.expect("ready", |l| l.starts_with("ready"));
    shows_colour(&mut client, RECORDER_IDLE, 1000, "recorder-window").await;

    client.mouse_move(321, 234).await.unwrap();
    client.button(Button::Left, true).await.unwrap();
    client.button(Button::Left, false).await.unwrap();
    client.pump_for(Duration::from_millis(50)).await.unwrap();
    let press = rec.expect("a left click", |l| l.starts_with("button-press") && field(l, "button") == Some("1"));
    assert_eq!((field(&press, "x"), field(&press, "y")), (Some("321"), Some("234")), "{press}");

    for (button, number) in [(Button::Middle, "2"), (Button::Right, "3"), (Button::X1, "8"), (Button::X2, "9")] {
        client.mouse_move(400, 300).await.unwrap();
        client.button(button, true).await.unwrap();
        client.button(button, false).await.unwrap();
        let line = rec.expect(&format!("{button:?} as button {number}"), |l| l.starts_with("button-press") && field(l, "button") == Some(number));
        assert_eq!((field(&line, "x"), field(&line, "y")), (Some("400"), Some("300")), "{line}");
        rec.expect(&format!("{button:?} released"), |l| l.starts_with("button-release") && field(l, "button") == Some(number));
    }
    // One notch each way on each axis: X buttons 4/5 (vertical) and 6/7 (horizontal).
    for (delta, horizontal, number) in [(120, false, "4"), (-120, false, "5"), (-120, true, "6"), (120, true, "7")] {
        client.wheel(delta, horizontal).await.unwrap();
        rec.expect(&format!("wheel {delta} horizontal={horizontal} as button {number}"), |l| l.starts_with("button-press") && field(l, "button") == Some(number));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_clients_layout_and_unicode_arrives() {
    if !have_x_server("layout") {
        return;
    }
    let rec = RecorderSession::start("");
    let mut cfg = rec.host.client(USER.0, USER.1);
    cfg.keyboard_layout = 0x0407; // German
    let (mut client, _) = login(&rec.host, cfg).await;
    rec.expect("ready", |l| l.starts_with("ready"));
    client.mouse_move(100, 100).await.unwrap();

    async fn tap(client: &mut Client, code: u8, extended: bool) {
        client.key(code, extended, true).await.unwrap();
        client.key(code, extended, false).await.unwrap();
    }
    // German: the key right of T is Z, the one right of Left Shift is Y, AltGr+Q is @.
    tap(&mut client, 0x15, false).await;
    rec.expect("z from the Y/Z key", |l| l.starts_with("key-press") && field(l, "text") == Some("z"));
    tap(&mut client, 0x2C, false).await;
    rec.expect("y from the Z/Y key", |l| l.starts_with("key-press") && field(l, "text") == Some("y"));
    client.key(0x38, true, true).await.unwrap();
    tap(&mut client, 0x10, false).await;
    client.key(0x38, true, false).await.unwrap();
    rec.expect("@ from AltGr+Q", |l| l.starts_with("key-press") && field(l, "text") == Some("@"));

    // Characters on no key of the layout arrive as Unicode events.
    for ch in ['ж', '€', 'ß'] {
        client.unicode(ch).await.unwrap();
        rec.expect(&format!("{ch} from a Unicode event"), |l| l.starts_with("key-press") && field(l, "text") == Some(&ch.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_and_reconnect_keep_the_same_x_server() {
    if !have_x_server("resize") {
        return;
    }
    let rec = RecorderSession::start("");
    let (mut client, session) = login(&rec.host, rec.host.client(USER.0, USER.1)).await;
    rec.expect("ready", |l| l.starts_with("ready"));
    shows_colour(&mut client, RECORDER_IDLE, 1000, "before-resize").await;
    let x_servers_before = x_servers_of(&rec.host);
    assert_eq!(x_servers_before.len(), 1, "one X server for the session: {x_servers_before:?}");

    let deadline = Instant::now() + WAIT;
    while !client.display_control_ready() {
        assert!(Instant::now() < deadline, "display control opens");
        client.pump_for(Duration::from_millis(50)).await.unwrap();
    }
    client.request_resize(1280, 800).await.unwrap();
    assert!(client.pump_until(WAIT, |c| (c.width(), c.height()) == (1280, 800)).await.unwrap(), "the desktop takes the new size");
    rec.expect("the X screen at 1280x800", |l| l == "screen w=1280 h=800");
    // The full-screen recorder window grew with the screen: a click at the bottom-right reaches it.
    client.mouse_move(1270, 790).await.unwrap();
    client.button(Button::Left, true).await.unwrap();
    client.button(Button::Left, false).await.unwrap();
    let line = rec.expect("a click in the grown area", |l| l.starts_with("button-press") && field(l, "button") == Some("1"));
    assert_eq!((field(&line, "x"), field(&line, "y")), (Some("1270"), Some("790")), "{line}");
    client.disconnect().await.unwrap();

    let mut cfg = rec.host.client(USER.0, USER.1);
    (cfg.width, cfg.height) = (800, 600);
    let (mut again, session_again) = login(&rec.host, cfg).await;
    assert_eq!(session_again, session, "the same session");
    assert!(again.pump_until(WAIT, |c| (c.width(), c.height()) == (800, 600)).await.unwrap(), "reconnect at another size");
    rec.expect("the X screen at 800x600", |l| l == "screen w=800 h=600");
    shows_colour(&mut again, RECORDER_IDLE, 1000, "after-reconnect").await;
    assert_eq!(x_servers_of(&rec.host), x_servers_before, "the same X server serves the reconnect");
    again.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_x_server_ends_only_its_session_with_a_clear_error() {
    if !have_x_server("crash") {
        return;
    }
    let host = Host::start(&[USER, ("bob", "bob-pw-2")], &x11_config("exec sleep 1000"));
    let (mut alice, _) = login(&host, host.client(USER.0, USER.1)).await;
    let (mut bob, _) = login(&host, host.client("bob", "bob-pw-2")).await;
    let servers = x_servers_of(&host);
    assert_eq!(servers.len(), 2, "{servers:?}");
    // Kill one of them; its session, and only that one, must end.
    let victim = servers[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let ended_alice = closed_code(&mut alice, Duration::from_secs(10)).await;
    let ended_bob = closed_code(&mut bob, Duration::from_secs(2)).await;
    let (ended, alive) = match (ended_alice, ended_bob) {
        (Some(code), None) => (code, &mut bob),
        (None, Some(code)) => (code, &mut alice),
        other => panic!("exactly one session must end, got {other:?}\nhost log:\n{}", host.log()),
    };
    assert_eq!(ended, Some(0x10), "the client is told the display server failed (ERRINFO_SERVER_DWM_CRASH)");
    assert!(host.wait_log("exited", WAIT) && host.log().contains("X server"), "the log says what happened:\n{}", host.log());
    alive.pump_for(Duration::from_millis(500)).await.unwrap();
    assert!(!alive.closed(), "the other session carries on");
    assert_eq!(x_servers_of(&host).len(), 1);
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The Set Error Info code with which the host ended the client, or `None` if it still runs
/// after `timeout`.
async fn closed_code(client: &mut Client, timeout: Duration) -> Option<Option<u32>> {
    match client.pump_until(timeout, |c| c.closed()).await {
        Ok(true) => Some(client.error_info()),
        Ok(false) => None,
        Err(rdhost_client::SessionError::Closed { error_info }) => Some(error_info),
        Err(e) => panic!("client failed: {e}"),
    }
}

#[test]
fn x11_without_an_x_server_exits_naming_the_package() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--desktop", "x11", "--x-server", "xvfb", "--state-dir"])
        .arg(state.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(stderr.contains("install the package xvfb"), "names the package: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// The `display` desktop: an X display that exists already.

/// An Xvfb this test starts, with a private cookie; killed on drop.
struct OwnXvfb {
    child: Child,
    name: String,
    xauthority: PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnXvfb {
    fn start() -> OwnXvfb {
        let dir = tempfile::tempdir().unwrap();
        let xauthority = dir.path().join("Xauthority");
        let cookie = rdhost_desktop::x11::xauth::Cookie::generate().unwrap();
        // The server accepts any cookie in its -auth file; clients need the display number.
        rdhost_desktop::x11::xauth::write_file(&xauthority, 0, &cookie).unwrap();
        let (read, write) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let fd = write.as_raw_fd();
        let mut command = Command::new("Xvfb");
        command
            .args(["-displayfd", &fd.to_string(), "-nolisten", "tcp", "-screen", "0", "1024x768x24", "-auth"])
            .arg(&xauthority)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The pipe's write end must survive exec in the child only.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                Ok(())
            });
        }
        let child = command.spawn().expect("start Xvfb");
        drop(write);
        let mut number = String::new();
        use std::io::Read;
        let mut read = read;
        let mut byte = [0u8; 1];
        while read.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            number.push(byte[0] as char);
        }
        let number: u32 = number.trim().parse().expect("Xvfb reports its display number");
        rdhost_desktop::x11::xauth::write_file(&xauthority, number, &cookie).unwrap();
        OwnXvfb { child, name: format!(":{number}"), xauthority, _dir: dir }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for OwnXvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_display_desktop_shows_an_existing_x_display() {
    if !have("attach", &[("Xvfb", "xvfb")]) {
        return;
    }
    let mut xvfb = OwnXvfb::start();
    // A program draws on the display before the host exists.
    let mut recorder = Command::new(workspace_bin("rdhost-xrecorder"))
        .arg("--override-redirect")
        .env("DISPLAY", &xvfb.name)
        .env("XAUTHORITY", &xvfb.xauthority)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let config = format!("desktop = \"display\"\ndisplay = {:?}\nxauthority = {:?}\n", xvfb.name, xvfb.xauthority);
    let host = Host::start(&[USER, ("carol", "carol-pw-1")], &config);
    assert!(host.log().is_empty() || !host.log().contains("ERROR"), "{}", host.log());
    let (mut client, session) = login(&host, host.client(USER.0, USER.1)).await;
    shows_colour(&mut client, RECORDER_IDLE, 1024 * 700, "attached").await;
    // The display is one desktop, like the console: one session shows it, and another user is
    // refused while it exists.
    let mut carol = rdhost_client::connect(host.client("carol", "carol-pw-1")).await.expect("carol's handshake completes");
    assert!(carol.pump_until(WAIT, |c| c.closed()).await.unwrap_or(true), "carol is refused");
    assert_eq!(carol.error_info(), Some(0x7), "refused with SERVER_DENIED_CONNECTION");
    assert_eq!(host.sessions().len(), 1, "one session for the display");
    assert_eq!(host.sessions()[0]["id"], session);
    // Input drives that display: a key press makes the recorder change its colour.
    client.mouse_move(50, 50).await.unwrap();
    client.key(0x1E, false, true).await.unwrap();
    client.key(0x1E, false, false).await.unwrap();
    assert!(client.pump_until(WAIT, |c| count_colour(c, RECORDER_IDLE) < 1000).await.unwrap(), "the key reached the program");
    client.disconnect().await.unwrap();
    drop(host);
    assert!(xvfb.running(), "the host never ends a display it did not start");
    let _ = recorder.kill();
    let _ = recorder.wait();
}

#[test]
fn the_display_desktop_refuses_a_display_it_cannot_open() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--desktop", "display", "--display", ":987", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(stderr.contains(":987") && stderr.contains("xauthority"), "says what to check: {stderr}");
}
