//! Interop with a real client: FreeRDP's `xfreerdp` on a private Xvfb display against a real
//! host on loopback. Keystrokes go in through xdotool, and what the xfreerdp window shows is read
//! back from a screenshot of it with the terminal desktop's own font.
//!
//! Skips (with a note) when a tool is missing, unless `CI` is set: then it fails and names the
//! package to install.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Host, artifacts_dir, shell_token};

const WAIT: Duration = Duration::from_secs(30);
const USER: (&str, &str) = ("alice", "alice-pw-1");
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 768;

/// Tools the test runs, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] =
    &[("Xvfb", "xvfb"), ("xfreerdp", "freerdp2-x11"), ("xdotool", "xdotool"), ("import", "imagemagick")];

/// Are all tools there? When not: panic under CI, otherwise say why and let the test return.
fn tools_present(test: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&(&str, &str)> = TOOLS
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let list: Vec<String> = missing.iter().map(|(tool, package)| format!("{tool} (apt package {package})")).collect();
    if std::env::var_os("CI").is_some() {
        panic!("{test}: missing tools, install them: {}", list.join(", "));
    }
    eprintln!("{test}: skipped, missing tools: {}", list.join(", "));
    false
}

/// A child process that is killed and reaped when dropped.
struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command) -> Proc {
        let child = command.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { child, name: name.to_owned() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait up to `timeout` for the process to exit by itself.
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

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            eprintln!("killing {} (pid {})", self.name, self.pid());
        }
        self.kill();
    }
}

/// A private Xvfb display; the server is killed when this drops.
struct Display {
    number: u32,
    /// Where the clients' output goes, for failure messages.
    dir: tempfile::TempDir,
    // Last, so that clients created by the test (declared later) drop before the X server.
    _server: Proc,
}

impl Display {
    fn start() -> Display {
        // Tests run in parallel threads: two of them probing the same number at once would both
        // see the winner's socket and think it theirs. One allocation at a time.
        static ALLOCATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = ALLOCATING.lock().unwrap_or_else(|e| e.into_inner());
        let mut dir = tempfile::tempdir().expect("temp dir");
        for number in 60..600 {
            let taken = Path::new(&format!("/tmp/.X{number}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{number}")).exists();
            if taken {
                continue;
            }
            let mut server = Proc::spawn(
                "Xvfb",
                Command::new("Xvfb")
                    .arg(format!(":{number}"))
                    .args(["-screen", "0", "1280x900x24", "-nolisten", "tcp", "-noreset"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(File::create(dir.path().join(format!("xvfb-{number}.log"))).unwrap()),
            );
            // Ready when its socket is there; gone when another server won the number.
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && server.exited().is_none() && !socket.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if server.exited().is_some() {
                continue;
            }
            assert!(socket.exists(), "Xvfb :{number} did not create its socket");
            let mut display = Display { number, dir, _server: server };
            // The socket exists slightly before the server accepts; a query confirms it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !display.xdotool(&["getdisplaygeometry"]).status.success() {
                assert!(Instant::now() < deadline, "Xvfb :{number} does not answer");
                std::thread::sleep(Duration::from_millis(20));
            }
            // Another process may have won the number between our check and our start.
            if display._server.exited().is_some() {
                dir = display.dir;
                continue;
            }
            return display;
        }
        panic!("no free X display number in :60..:600");
    }

    fn name(&self) -> String {
        format!(":{}", self.number)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DISPLAY", self.name()).env_remove("WAYLAND_DISPLAY").stdin(Stdio::null());
        command
    }

    fn xdotool(&self, args: &[&str]) -> std::process::Output {
        self.command("xdotool").args(args).output().expect("run xdotool")
    }

    /// Start xfreerdp against `host` as `user` with `password`; its output goes to a file
    /// named after `label`.
    fn xfreerdp(&self, host: &Host, user: &str, password: &str, label: &str) -> Proc {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = File::create(self.dir.path().join(format!("{label}.log"))).unwrap();
        Proc::spawn(
            "xfreerdp",
            self.command("xfreerdp")
                .arg(format!("/v:{}", host.addr))
                .arg(format!("/u:{user}"))
                .arg(format!("/p:{password}"))
                .args(["/cert:ignore", &format!("/size:{WIDTH}x{HEIGHT}"), "/kbd:0x409", "-grab-keyboard"])
                // Its config and known-hosts files stay out of the real home.
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
    }

    fn client_log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{label}.log"))).unwrap_or_default()
    }

    /// The top-level window of the xfreerdp process `client`, once it is mapped.
    fn window_of(&self, client: &mut Proc, label: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let pid = client.pid().to_string();
            let by_pid = self.xdotool(&["search", "--onlyvisible", "--pid", &pid]);
            let by_class = self.xdotool(&["search", "--onlyvisible", "--class", "xfreerdp"]);
            let found = [by_pid, by_class]
                .into_iter()
                .flat_map(|out| String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>())
                .find(|id| !id.trim().is_empty());
            if let Some(id) = found {
                return id.trim().to_owned();
            }
            if let Some(status) = client.exited() {
                panic!("xfreerdp exited ({status}) before showing a window; its output:\n{}", self.client_log(label));
            }
            assert!(Instant::now() < deadline, "no xfreerdp window; its output:\n{}", self.client_log(label));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The window's pixels as RGBA, with its width and height.
    fn screenshot(&self, window: &str) -> Option<Shot> {
        let out = self.command("import").args(["-window", window, "-depth", "8", "ppm:-"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        Shot::from_ppm(&out.stdout)
    }

    fn focus(&self, window: &str) {
        // Without a window manager windowactivate is unavailable; focus is enough for XTest
        // keystrokes to reach the window.
        let _ = self.xdotool(&["windowfocus", "--sync", window]);
    }

    fn type_text(&self, window: &str, text: &str) {
        self.focus(window);
        let out = self.xdotool(&["type", "--delay", "40", text]);
        assert!(out.status.success(), "xdotool type: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn key(&self, window: &str, key: &str) {
        self.focus(window);
        let out = self.xdotool(&["key", key]);
        assert!(out.status.success(), "xdotool key: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Take screenshots of `window` until one shows `text` in the terminal font. On timeout the
    /// last screenshot is saved as an artifact named `artifact` and `false` returned.
    fn wait_text(&self, window: &str, text: &str, artifact: &str) -> bool {
        self.wait_any(window, &[text], artifact).is_some()
    }

    fn wait_any(&self, window: &str, texts: &[&str], artifact: &str) -> Option<usize> {
        let found = std::cell::Cell::new(None);
        self.wait_shot(window, artifact, |shot| {
            found.set(texts.iter().position(|t| shot.shows(t)));
            found.get().is_some()
        });
        found.get()
    }

    /// Take screenshots of `window` until `done` holds for one; on timeout save the last as an
    /// artifact named `artifact` and return false.
    fn wait_shot(&self, window: &str, artifact: &str, done: impl Fn(&Shot) -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(shot) = self.screenshot(window) {
                if done(&shot) {
                    return true;
                }
                last = Some(shot);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        if let Some(shot) = last {
            let path = artifacts_dir().join(format!("{artifact}.ppm"));
            shot.save(&path);
            eprintln!("screenshot saved to {}", path.display());
        }
        false
    }
}

struct Shot {
    rgba: Vec<u8>,
    width: u32,
    height: u32,
}

impl Shot {
    /// Decode a binary PPM (P6, maxval 255).
    fn from_ppm(data: &[u8]) -> Option<Shot> {
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while i < data.len() && data[i].is_ascii_whitespace() {
                i += 1;
            }
            if data.get(i) == Some(&b'#') {
                while i < data.len() && data[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            let start = i;
            while i < data.len() && !data[i].is_ascii_whitespace() {
                i += 1;
            }
            if start == i {
                return None;
            }
            fields.push(std::str::from_utf8(&data[start..i]).ok()?.to_owned());
        }
        i += 1; // the single whitespace after maxval
        if fields[0] != "P6" || fields[3] != "255" {
            return None;
        }
        let (width, height): (u32, u32) = (fields[1].parse().ok()?, fields[2].parse().ok()?);
        let pixels = data.get(i..i + width as usize * height as usize * 3)?;
        let rgba = pixels.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        Some(Shot { rgba, width, height })
    }

    fn shows(&self, text: &str) -> bool {
        rdhost_desktop::terminal::find_text(&self.rgba, self.width, self.height, 16.0, text).is_some()
    }

    fn save(&self, path: &Path) {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend(self.rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]));
        let _ = std::fs::write(path, out);
    }
}

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

#[test]
fn xfreerdp_types_into_the_session_and_a_second_xfreerdp_reconnects_to_it() {
    if !tools_present("xfreerdp interop") {
        return;
    }
    let display = Display::start();
    let host = Host::start(&[USER], "");

    let mut first = display.xfreerdp(&host, USER.0, USER.1, "first");
    let window = display.window_of(&mut first, "first");
    assert!(
        display.wait_any(&window, &["$", "#"], "xfreerdp-prompt").is_some(),
        "a shell prompt shows in the xfreerdp window; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        display.client_log("first")
    );
    assert!(host.wait_log("shows session", WAIT), "host logs the logon:\n{}", host.log());

    let (command, token) = shell_token();
    display.type_text(&window, command.trim_end());
    display.key(&window, "Return");
    assert!(
        display.wait_text(&window, &token, "xfreerdp-typed"),
        "the shell's output {token} shows in the xfreerdp window; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        display.client_log("first")
    );

    // A client that vanishes without a word; the session stays.
    first.kill();
    let mut second = display.xfreerdp(&host, USER.0, USER.1, "second");
    let window = display.window_of(&mut second, "second");
    assert!(
        display.wait_text(&window, &token, "xfreerdp-reconnected"),
        "the earlier output {token} shows in the second xfreerdp window; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        display.client_log("second")
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
    assert!(second.exited().is_none(), "second xfreerdp still runs:\n{}", display.client_log("second"));
}

#[test]
fn xfreerdp_with_a_wrong_password_is_refused() {
    if !tools_present("xfreerdp interop") {
        return;
    }
    let display = Display::start();
    let host = Host::start(&[USER], "");

    let mut client = display.xfreerdp(&host, USER.0, "not-the-password", "wrong");
    let status = client
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("xfreerdp did not give up; its output:\n{}", display.client_log("wrong")));
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
    let display = Display::start();
    let host = Host::start_nla(&[USER], "");

    let mut client = display.xfreerdp(&host, USER.0, "not-the-password", "nla-wrong");
    let status = client
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("xfreerdp did not give up; its output:\n{}", display.client_log("nla-wrong")));
    assert_eq!(status.code(), Some(XF_EXIT_LOGON_FAILURE), "output:\n{}", display.client_log("nla-wrong"));
    assert!(host.wait_log("(NLA)", WAIT), "host logs the failed NLA logon:\n{}", host.log());
    assert!(shown_sessions(&host.log()).is_empty(), "no session exists:\n{}", host.log());

    // The right password over NLA gets a session (after the throttle's delay for the failure).
    let mut client = display.xfreerdp(&host, USER.0, USER.1, "nla-right");
    let window = display.window_of(&mut client, "nla-right");
    assert!(
        display.wait_any(&window, &["$", "#"], "xfreerdp-nla-prompt").is_some(),
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
    let display = Display::start();
    let host = Host::start(&[USER], "");

    let mut client = display.xfreerdp(&host, USER.0, USER.1, "logoff");
    let window = display.window_of(&mut client, "logoff");
    assert!(
        display.wait_any(&window, &["$", "#"], "xfreerdp-logoff-prompt").is_some(),
        "a shell prompt shows; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        display.client_log("logoff")
    );
    display.type_text(&window, "exit");
    display.key(&window, "Return");
    let status = client.wait_exit(WAIT).unwrap_or_else(|| {
        panic!(
            "xfreerdp still runs after the shell exited; host log:\n{}\nxfreerdp output:\n{}",
            host.log(),
            display.client_log("logoff")
        )
    });
    eprintln!("xfreerdp after logoff exited with {status}");
    assert_eq!(
        status.code(),
        Some(XF_EXIT_LOGOFF),
        "xfreerdp exits with the logoff code; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        display.client_log("logoff")
    );
}

// ---------------------------------------------------------------------------------------------
// X desktops through xfreerdp.

/// The recorder's window colour before any key press, and after the first (see rdhost-xprobe).
const RECORDER_IDLE: [u8; 3] = [0x33, 0x66, 0xcc];
const RECORDER_PRESSED: [u8; 3] = [0xcc, 0x66, 0x33];

impl Shot {
    /// Pixels within `tolerance` of `rgb` per channel (RemoteFX is lossy).
    fn count_near(&self, rgb: [u8; 3], tolerance: u8) -> usize {
        self.rgba.chunks_exact(4).filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= tolerance)).count()
    }
}

#[test]
fn xfreerdp_shows_an_x_session_and_reconnects_to_the_same_x_server() {
    // Xvfb is among the tools, so the host has an X server for the session too.
    if !tools_present("xfreerdp x11 interop") {
        return;
    }
    let display = Display::start();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("recorder.log");
    std::fs::write(&record, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
    let command = format!("exec {} --override-redirect > {} 2>&1", common::workspace_bin("rdhost-xrecorder").display(), record.display());
    let host = Host::start(&[USER], &format!("desktop = \"x11\"\nsession_command = {command:?}\n"));

    let mut first = display.xfreerdp(&host, USER.0, USER.1, "x11-first");
    let window = display.window_of(&mut first, "x11-first");
    // Most of the window is the recorder's colour: the session's X content reaches xfreerdp.
    let area = (WIDTH * HEIGHT) as usize;
    assert!(
        display.wait_shot(&window, "xfreerdp-x11", |s| s.count_near(RECORDER_IDLE, 12) > area * 8 / 10),
        "the X session's window shows in xfreerdp; host log:\n{}\nxfreerdp output:\n{}",
        host.log(),
        display.client_log("x11-first")
    );
    // Keys typed into xfreerdp reach the X program in the session.
    display.type_text(&window, "q");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&record).unwrap_or_default().lines().any(|l| l.starts_with("key-press") && l.contains("text=q"))),
        "the recorder got the key; it logged:\n{}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
    let servers = common::x_servers_of(&host);
    assert_eq!(servers.len(), 1, "{servers:?}");

    first.kill();
    let mut second = display.xfreerdp(&host, USER.0, USER.1, "x11-second");
    let window = display.window_of(&mut second, "x11-second");
    assert!(
        display.wait_shot(&window, "xfreerdp-x11-reconnected", |s| s.count_near(RECORDER_IDLE, 12) + s.count_near(RECORDER_PRESSED, 12) > area * 8 / 10),
        "the same window shows after reconnecting; host log:\n{}",
        host.log()
    );
    assert_eq!(common::x_servers_of(&host), servers, "the same X server serves the second client");
    let shown = shown_sessions(&host.log());
    assert_eq!(shown.len(), 2, "two logons:\n{}", host.log());
    assert_eq!(shown[1], (shown[0].0.clone(), true), "the second is a reconnect:\n{}", host.log());
}
