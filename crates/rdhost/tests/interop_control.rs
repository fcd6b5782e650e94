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

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Host, artifacts_dir};

const WAIT: Duration = Duration::from_secs(30);
const ALICE: (&str, &str) = ("alice", "alice-pw-1");
const BOB: (&str, &str) = ("bob", "bob-pw-1");
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 768;

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

/// Are Xvfb, xfreerdp, xdotool and ImageMagick's import installed? Without them: a panic naming
/// the packages under CI, otherwise a note and `false` (the test returns).
fn have_tools(test: &str) -> bool {
    let needed = [("Xvfb", "xvfb"), ("xfreerdp", "freerdp2-x11"), ("xdotool", "xdotool"), ("import", "imagemagick")];
    let path = std::env::var_os("PATH").unwrap_or_default();
    let absent: Vec<String> = needed
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .map(|(tool, package)| format!("{tool} (apt package {package})"))
        .collect();
    if absent.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: install the missing tools: {}", absent.join(", "));
    eprintln!("{test}: skipped, missing tools: {}", absent.join(", "));
    false
}

/// One xfreerdp on a private Xvfb. Dropping it kills (and reaps) both, the client first.
struct Window {
    label: String,
    client: Child,
    xvfb: Child,
    display: String,
    window: String,
    /// The client's output (and its HOME: its config stays out of the real one).
    dir: tempfile::TempDir,
}

impl Window {
    /// Start an Xvfb and an xfreerdp on it logging on to `host` as `user`; returns once the
    /// client's window is mapped.
    fn open(host: &Host, (user, password): (&str, &str), label: &str) -> Window {
        let dir = tempfile::tempdir().expect("temp dir");
        // -displayfd: the server picks a free display number itself and writes it once it
        // accepts connections, so parallel tests never race for a number.
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x900x24", "-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("xvfb.log")).unwrap())
            .spawn()
            .expect("start Xvfb");
        let mut number = String::new();
        let _ = std::io::BufReader::new(xvfb.stdout.take().unwrap()).read_line(&mut number);
        let number = number.trim().to_owned();
        if number.is_empty() {
            let _ = xvfb.kill();
            let _ = xvfb.wait();
            panic!("Xvfb did not start: {}", std::fs::read_to_string(dir.path().join("xvfb.log")).unwrap_or_default());
        }
        let display = format!(":{number}");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        // Separate files: one shared file would interleave its buffered stdout with stderr.
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let client = match Command::new("xfreerdp")
            .arg(format!("/v:{}", host.addr))
            .arg(format!("/u:{user}"))
            .arg(format!("/p:{password}"))
            .args(["/cert:ignore", &format!("/size:{WIDTH}x{HEIGHT}"), "/kbd:0x409", "-grab-keyboard"])
            .env("DISPLAY", &display)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .stdin(Stdio::null())
            .stdout(log("xfreerdp.out"))
            .stderr(log("xfreerdp.err"))
            .spawn()
        {
            Ok(client) => client,
            Err(e) => {
                let _ = xvfb.kill();
                let _ = xvfb.wait();
                panic!("start xfreerdp: {e}");
            }
        };
        let mut w = Window { label: label.to_owned(), client, xvfb, display, window: String::new(), dir };
        let deadline = Instant::now() + WAIT;
        // Only this client draws on this display: the first visible xfreerdp window is its own.
        while w.window.is_empty() {
            let found = w.xdotool(&["search", "--onlyvisible", "--class", "xfreerdp"]);
            w.window = String::from_utf8_lossy(&found.stdout).lines().next().unwrap_or("").trim().to_owned();
            if w.window.is_empty() {
                if let Some(status) = w.exited() {
                    panic!("{label}: xfreerdp exited ({status}) before showing a window:\n{}", w.log());
                }
                assert!(Instant::now() < deadline, "{label}: no xfreerdp window:\n{}\nhost log:\n{}", w.log(), host.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        w
    }

    fn xdotool(&self, args: &[&str]) -> std::process::Output {
        Command::new("xdotool").args(args).env("DISPLAY", &self.display).stdin(Stdio::null()).output().expect("run xdotool")
    }

    fn pid(&self) -> u32 {
        self.client.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.client.try_wait().ok().flatten()
    }

    /// The client's exit status once it ends by itself within `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the client printed: its stderr, then its stdout.
    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("xfreerdp.err"), read("xfreerdp.out"))
    }

    /// Keystrokes for the window (no window manager: focus is what routes XTest input).
    fn type_line(&self, text: &str) {
        let _ = self.xdotool(&["windowfocus", "--sync", &self.window]);
        let out = self.xdotool(&["type", "--delay", "30", text]);
        assert!(out.status.success(), "xdotool type: {}", String::from_utf8_lossy(&out.stderr));
        self.key("Return");
    }

    fn key(&self, keys: &str) {
        let _ = self.xdotool(&["windowfocus", "--sync", &self.window]);
        let out = self.xdotool(&["key", keys]);
        assert!(out.status.success(), "xdotool key {keys}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// What the window shows now.
    fn shot(&self) -> Option<Shot> {
        let geometry = self.xdotool(&["getwindowgeometry", "--shell", &self.window]);
        let geometry = String::from_utf8_lossy(&geometry.stdout).into_owned();
        let field = |name: &str| geometry.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u32>().ok());
        let (width, height) = (field("WIDTH=")?, field("HEIGHT=")?);
        let out = Command::new("import")
            .args(["-window", &self.window, "-depth", "8", "rgb:-"])
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        (out.status.success() && out.stdout.len() == (width * height * 3) as usize).then(|| Shot { rgb: out.stdout, width, height })
    }

    /// Screenshots until one satisfies `done`; on timeout the last is saved as an artifact
    /// named after the window and `what`, and `false` returned.
    fn wait_shot(&self, what: &str, done: impl Fn(&Shot) -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(shot) = self.shot() {
                if done(&shot) {
                    return true;
                }
                last = Some(shot);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        if let Some(shot) = last {
            let path = artifacts_dir().join(format!("interop-control-{}-{what}.ppm", self.label));
            shot.save(&path);
            eprintln!("{}: last screenshot saved to {}", self.label, path.display());
        }
        false
    }

    /// Wait for a shell prompt, then set `S` to `user` and clear the screen to `colour`.
    fn paint(&self, host: &Host, user: &str, colour: (u8, [u8; 3])) {
        assert!(
            self.wait_shot("prompt", |s| s.shows("$") || s.shows("#")),
            "{}: a shell prompt shows; host log:\n{}\nxfreerdp:\n{}",
            self.label,
            host.log(),
            self.log()
        );
        self.type_line(&format!("S={user}; printf '\\033[{}m\\033[H\\033[2J'", colour.0));
        assert!(
            self.wait_shot("painted", |s| s.share_near(colour.1) > 0.6),
            "{}: the screen turns {:?}; host log:\n{}",
            self.label,
            colour.1,
            host.log()
        );
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // The client first: it would otherwise see its display vanish and log noise.
        for child in [&mut self.client, &mut self.xvfb] {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// A window's pixels, RGB.
struct Shot {
    rgb: Vec<u8>,
    width: u32,
    height: u32,
}

/// A rectangle of a shot, inclusive.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    left: u32,
    top: u32,
    right: u32,
    bottom: u32,
}

impl Shot {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    fn near(pixel: [u8; 3], colour: [u8; 3]) -> bool {
        (0..3).all(|c| pixel[c].abs_diff(colour[c]) <= TOLERANCE)
    }

    /// The share of all pixels that are `colour`.
    fn share_near(&self, colour: [u8; 3]) -> f64 {
        let n = self.rgb.chunks_exact(3).filter(|p| Self::near([p[0], p[1], p[2]], colour)).count();
        n as f64 / f64::from(self.width * self.height)
    }

    /// The share of `colour` within `b`.
    fn share_in(&self, b: Bounds, colour: [u8; 3]) -> f64 {
        let mut n = 0;
        for y in b.top..=b.bottom {
            for x in b.left..=b.right {
                n += usize::from(Self::near(self.pixel(x, y), colour));
            }
        }
        n as f64 / f64::from((b.right - b.left + 1) * (b.bottom - b.top + 1))
    }

    /// The band of rows in which at least `per_row` pixels are `colour`, spanning the columns
    /// those rows hold it in (None: no such row). Stray pixels of a similar colour elsewhere
    /// (a button's edge, blended glyph edges) do not stretch it.
    fn band_of(&self, colour: [u8; 3], per_row: u32) -> Option<Bounds> {
        let mut band: Option<Bounds> = None;
        for y in 0..self.height {
            let xs: Vec<u32> = (0..self.width).filter(|&x| Self::near(self.pixel(x, y), colour)).collect();
            if xs.len() < per_row as usize {
                continue;
            }
            let (left, right) = (xs[0], xs[xs.len() - 1]);
            let b = band.get_or_insert(Bounds { left, top: y, right, bottom: y });
            b.left = b.left.min(left);
            b.right = b.right.max(right);
            b.bottom = y;
        }
        band
    }

    /// Is `text` drawn in the terminal desktop's font?
    fn shows(&self, text: &str) -> bool {
        let rgba: Vec<u8> = self.rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        rdhost_desktop::terminal::find_text(&rgba, self.width, self.height, 16.0, text).is_some()
    }

    fn save(&self, path: &Path) {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.rgb);
        let _ = std::fs::write(path, out);
    }
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    if !have_tools("xfreerdp control interop") {
        return;
    }
    let host = Host::start(&[ALICE, BOB], "");
    let mut alice_window = Window::open(&host, ALICE, "connect-alice");
    alice_window.paint(&host, ALICE.0, GREEN);
    let a = active_session_of(&host, ALICE.0);
    let mut bob_window = Window::open(&host, BOB, "connect-bob");
    assert!(bob_window.wait_shot("prompt", |s| s.shows("$") || s.shows("#")), "bob's prompt shows");
    let b = active_session_of(&host, BOB.0);
    let before = bob_window.shot().expect("a screenshot of bob's window");
    assert!(before.share_near(GREEN.1) < 0.05, "bob's own screen is not green yet");
    let bob_pid = bob_window.pid();
    assert_eq!(logons(&host), 2, "{}", host.log());

    // tscon A /dest:B: alice's client is dropped with 0x5; bob's shows A without reconnecting.
    let (code, _, err) = host.control(&["connect", &a.to_string(), "--dest", &b.to_string()]);
    assert_eq!(code, 0, "connect failed: {err}\nhost log:\n{}", host.log());
    let status = alice_window.wait_exit(WAIT).unwrap_or_else(|| panic!("alice's xfreerdp still runs after connect:\n{}", alice_window.log()));
    assert_eq!(status.code(), Some(XF_EXIT_CONN_REPLACED), "alice's xfreerdp:\n{}", alice_window.log());
    assert!(
        bob_window.wait_shot("moved", |s| s.share_near(GREEN.1) > 0.6),
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
    if !have_tools("xfreerdp control interop") {
        return;
    }
    let host = Host::start(&[ALICE], "");

    // logoff: the client gets 0x2 and the session ends.
    let mut first = Window::open(&host, ALICE, "logoff");
    assert!(first.wait_shot("prompt", |s| s.shows("$") || s.shows("#")), "a prompt shows:\n{}", host.log());
    let a = active_session_of(&host, ALICE.0);
    let (code, _, err) = host.control(&["logoff", &a.to_string()]);
    assert_eq!(code, 0, "{err}");
    let status = first.wait_exit(WAIT).unwrap_or_else(|| panic!("xfreerdp still runs after logoff:\n{}", first.log()));
    assert_eq!(status.code(), Some(XF_EXIT_LOGOFF), "xfreerdp:\n{}\nhost log:\n{}", first.log(), host.log());
    assert!(host.wait_state(a, None, WAIT), "the session ends: {:?}", host.sessions());
    drop(first);

    // tsdiscon: the client gets 0x1 and the session stays, Disconnected.
    let mut second = Window::open(&host, ALICE, "disconnect");
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
    if !have_tools("xfreerdp control interop") {
        return;
    }
    let host = Host::start(&[ALICE], "");
    let window = Window::open(&host, ALICE, "msg");
    assert!(window.wait_shot("prompt", |s| s.shows("$") || s.shows("#")), "a prompt shows:\n{}", host.log());
    let a = active_session_of(&host, ALICE.0);
    let before = window.shot().expect("a screenshot");
    assert!(before.band_of(BOX_TITLE_BAR, 50).is_none(), "no title-bar blue before the message");

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
        let Some(title) = s.band_of(BOX_TITLE_BAR, 150) else { return false };
        let (tw, th) = (title.right - title.left + 1, title.bottom - title.top + 1);
        let centre = (title.left + title.right) / 2;
        let below = Bounds { left: title.left, top: title.bottom + 2, right: title.right, bottom: (title.bottom + th).min(s.height - 1) };
        tw >= 200
            && (10..=40).contains(&th)
            && s.share_in(title, BOX_TITLE_BAR) > 0.7
            && centre.abs_diff(w / 2) <= 24
            && title.top > h / 4
            && title.top < h / 2
            && s.share_in(below, BOX_PANEL) > 0.8
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
    assert!(window.wait_shot("msg-gone", |s| s.band_of(BOX_TITLE_BAR, 50).is_none()), "OK closes the box");
    let out = asking.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("IDOK (1)"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Bob shadows alice from inside his session; `control` says whether he asked for (and the
/// policy gives) control. Checks his window, where his keys go, and the hotkey back.
fn shadow_through_xfreerdp(policy: &str, control: bool) {
    let host = Host::start(&[ALICE, BOB], &format!("shadow = \"{policy}\"\n"));
    let alice_window = Window::open(&host, ALICE, &format!("{policy}-alice"));
    alice_window.paint(&host, ALICE.0, GREEN);
    let a = active_session_of(&host, ALICE.0);
    let bob_window = Window::open(&host, BOB, &format!("{policy}-bob"));
    bob_window.paint(&host, BOB.0, MAGENTA);
    let b = active_session_of(&host, BOB.0);

    // `rdhost shadow A` typed into bob's shell: the session tells the CLI its host.
    bob_window.type_line(&format!("{BIN} shadow {a}{}", if control { " --control" } else { "" }));
    assert!(
        bob_window.wait_shot("shadowing", |s| s.share_near(GREEN.1) > 0.6),
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
        assert!(bob_window.shot().is_some_and(|s| s.share_near(GREEN.1) > 0.6), "bob still sees alice");
    }

    // Ctrl + keypad * returns bob's window to his own (magenta) session, and his keys to his shell.
    bob_window.key("ctrl+KP_Multiply");
    assert!(
        bob_window.wait_shot("returned", |s| s.share_near(MAGENTA.1) > 0.5),
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
    assert!(alice_window.shot().is_some_and(|s| s.share_near(GREEN.1) > 0.5), "alice's own window kept her session");
}

#[test]
fn xfreerdp_shadows_view_only_and_the_hotkey_returns() {
    if have_tools("xfreerdp control interop") {
        shadow_through_xfreerdp("view", false);
    }
}

#[test]
fn xfreerdp_shadows_with_control_and_the_hotkey_returns() {
    if have_tools("xfreerdp control interop") {
        shadow_through_xfreerdp("control", true);
    }
}
