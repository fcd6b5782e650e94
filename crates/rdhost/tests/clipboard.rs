//! Clipboard at the boundary: a real host on loopback, text copied and pasted both ways over
//! `cliprdr`, for both desktops, with our headless client and with xfreerdp `/clipboard`.
//!
//! - Terminal desktop: the client's text is pasted into the shell (Shift+Insert) and runs; text
//!   the shell printed, selected with a mouse drag or a double click, reaches the client.
//! - X desktop: xclip in the session (on its display, with its cookie) copies and pastes, in
//!   CLIPBOARD and (unless `clipboard_primary = false`) PRIMARY.
//! - xfreerdp: xclip on xfreerdp's own Xvfb is the user's side of the client.
//!
//! Skips (with a note) when a tool is missing, unless `CI` is set: then it fails and names the
//! package (xclip, besides the interop tools).

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::xfreerdp::{Proc, Shot, Xvfb, tools_present};
use common::{Host, on_screen, shell_token, wait_until};
use rdhost_client::{Button, Client};

const WAIT: Duration = Duration::from_secs(30);
const USER: (&str, &str) = ("alice", "alice-pw-1");
const CF_UNICODETEXT: u32 = 13;
/// The terminal desktop's font size (the host's default).
const FONT_PX: f32 = 16.0;

fn have_xclip(test: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join("xclip").is_file()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: xclip is missing, install it (apt package xclip)");
    eprintln!("{test}: skipped, xclip is missing");
    false
}

fn have_x_server(test: &str) -> bool {
    let xorg = Path::new("/usr/lib/xorg/Xorg").exists() && Path::new("/usr/lib/xorg/modules/drivers/dummy_drv.so").exists();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if xorg || std::env::split_paths(&path).any(|d| d.join("Xvfb").is_file()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: no X server, install one (apt package xvfb)");
    eprintln!("{test}: skipped, no X server");
    false
}

/// A token only the shell's evaluation shows, and a command line that prints it.
fn pick_token() -> (String, String) {
    let n = std::process::id() % 100_000 + 7;
    (format!("printf 'pick%sme\\n' {n}"), format!("pick{n}me"))
}

/// Shift+Insert: the terminal desktop's paste key.
async fn shift_insert(client: &mut Client) {
    client.key(0x2A, false, true).await.unwrap();
    client.key(0x52, true, true).await.unwrap();
    client.key(0x52, true, false).await.unwrap();
    client.key(0x2A, false, false).await.unwrap();
}

/// The pixel centre of terminal cell (`col`, `row`).
fn cell_centre(col: u32, row: u32) -> (u16, u16) {
    let m = rdhost_desktop::terminal::cell_metrics(FONT_PX);
    (col as u16 * m.width + m.width / 2, row as u16 * m.height + m.height / 2)
}

async fn logon(host: &Host) -> Client {
    let mut cfg = host.client(USER.0, USER.1);
    cfg.clipboard = true;
    let mut client = rdhost_client::connect(cfg).await.unwrap_or_else(|e| panic!("logon: {e}\nhost log:\n{}", host.log()));
    assert!(client.pump_until(WAIT, Client::clipboard_ready).await.unwrap(), "the clipboard channel initializes\nhost log:\n{}", host.log());
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_desktop_pastes_our_clients_text_and_copies_a_mouse_selection() {
    let host = Host::start(&[USER], "");
    let mut client = logon(&host).await;
    assert!(client.pump_until(WAIT, |c| on_screen(c, "#") || on_screen(c, "$")).await.unwrap(), "a prompt appears");

    // The client copies a command; Shift+Insert pastes it (a bracketed paste in bash: the line
    // waits for Enter), and it runs.
    let (command, token) = shell_token();
    client.set_clipboard(command.trim_end()).await.unwrap();
    client.pump_for(Duration::from_millis(300)).await.unwrap();
    assert_eq!(client.clipboard_counters().data_requests, 0, "nothing is fetched before the paste");
    shift_insert(&mut client).await;
    let pasted = client.pump_until(WAIT, |c| c.clipboard_counters().data_requests == 1).await.unwrap();
    assert!(pasted, "the paste fetches the client's text\nhost log:\n{}", host.log());
    client.type_text("\n").await.unwrap();
    let ran = client.pump_until(WAIT, |c| on_screen(c, &token)).await.unwrap();
    if !ran {
        client.save_png(&common::artifacts_dir().join("clipboard-terminal-paste.png")).unwrap();
    }
    assert!(ran, "the pasted command ran ({token} on screen)");

    // The shell prints a word; a drag over it copies it, and the client is offered it.
    let (command, word) = pick_token();
    client.type_text(&format!("{command}\n")).await.unwrap();
    assert!(client.pump_until(WAIT, |c| on_screen(c, &word)).await.unwrap(), "{word} on screen");
    let (col, row) =
        rdhost_desktop::terminal::find_text(client.rgba(), client.width().into(), client.height().into(), FONT_PX, &word).unwrap();
    let lists = client.clipboard_counters().format_lists;
    let (x0, y0) = cell_centre(col, row);
    let (x1, y1) = cell_centre(col + word.len() as u32 - 1, row);
    client.mouse_move(x0, y0).await.unwrap();
    client.button(Button::Left, true).await.unwrap();
    client.mouse_move((x0 + x1) / 2, y1).await.unwrap();
    client.mouse_move(x1, y1).await.unwrap();
    client.button(Button::Left, false).await.unwrap();
    assert!(client.pump_until(WAIT, |c| c.clipboard_counters().format_lists > lists).await.unwrap(), "the copy is announced");
    assert!(client.server_clipboard_formats().unwrap().contains(&CF_UNICODETEXT));
    assert_eq!(client.paste(WAIT).await.unwrap(), word);

    // A double click on a path copies it whole.
    let path = format!("/tmp/{word}.d/x");
    client.type_text(&format!("echo x {path} y\n")).await.unwrap();
    let at = |c: &Client| {
        rdhost_desktop::terminal::find_text(c.rgba(), c.width().into(), c.height().into(), FONT_PX, &format!("x {path} y"))
    };
    assert!(client.pump_until(WAIT, |c| at(c).is_some()).await.unwrap(), "{path} on screen");
    let (col, row) = at(&client).unwrap();
    let lists = client.clipboard_counters().format_lists;
    let (x, y) = cell_centre(col + 2 + 5, row);
    client.mouse_move(x, y).await.unwrap();
    for pressed in [true, false, true, false] {
        client.button(Button::Left, pressed).await.unwrap();
    }
    assert!(client.pump_until(WAIT, |c| c.clipboard_counters().format_lists > lists).await.unwrap(), "the word is announced");
    assert_eq!(client.paste(WAIT).await.unwrap(), path);
    client.disconnect().await.unwrap();
}

/// An X session whose program writes its environment (DISPLAY, XAUTHORITY) where the test can
/// read it, then waits: the test runs xclip as one of the session's programs.
struct XSession {
    host: Host,
    env_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl XSession {
    fn start() -> XSession {
        XSession::start_with("")
    }

    /// With more config lines.
    fn start_with(config: &str) -> XSession {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        // The session may run as another user than the test.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let env_file = dir.path().join("session.env");
        let command = format!("env > {0}.tmp && mv {0}.tmp {0}; exec sleep 100000", env_file.display());
        let host = Host::start(&[USER], &format!("desktop = \"x11\"\nsession_command = {command:?}\n{config}"));
        XSession { host, env_file, _dir: dir }
    }

    /// The session's DISPLAY and XAUTHORITY, once its program ran.
    fn env(&self) -> HashMap<String, String> {
        let mut vars = HashMap::new();
        let ran = wait_until(WAIT, || {
            let text = std::fs::read_to_string(&self.env_file).unwrap_or_default();
            vars = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            vars.contains_key("DISPLAY")
        });
        assert!(ran, "the session program never ran\nhost log:\n{}", self.host.log());
        vars
    }

    /// xclip as a program of the session.
    fn xclip(&self, args: &[&str]) -> Command {
        let env = self.env();
        let mut command = Command::new("xclip");
        command.args(args).env("DISPLAY", &env["DISPLAY"]).stderr(Stdio::null());
        if let Some(auth) = env.get("XAUTHORITY") {
            command.env("XAUTHORITY", auth);
        }
        command
    }
}

/// Copy `text` with xclip (it forks and serves the selection until another copy).
fn xclip_copy(command: Command, text: &str) {
    xclip_copy_to(command, "clipboard", text)
}

/// Copy `text` to `selection` (clipboard, primary) with xclip.
fn xclip_copy_to(mut command: Command, selection: &str, text: &str) {
    let mut child = command.args(["-selection", selection, "-i"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "xclip -i failed");
}

/// Paste with xclip until it gives `want` (a client may take a moment to announce its copy).
fn xclip_paste_until(command: impl Fn() -> Command, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out: Output = command().args(["-selection", "clipboard", "-o"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text == want || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_desktop_copies_and_pastes_with_our_client() {
    let test = "x_desktop_copies_and_pastes_with_our_client";
    if !have_x_server(test) || !have_xclip(test) {
        return;
    }
    let session = XSession::start();
    let mut client = logon(&session.host).await;
    session.env();

    // A program of the session copies: the client is offered it and pastes it.
    let lists = client.clipboard_counters().format_lists;
    xclip_copy(session.xclip(&[]), "copied in the session ✓\nline two");
    let announced = client.pump_until(WAIT, |c| c.clipboard_counters().format_lists > lists).await.unwrap();
    assert!(announced, "the session's copy is announced\nhost log:\n{}", session.host.log());
    assert_eq!(client.paste(WAIT).await.unwrap(), "copied in the session ✓\nline two");

    // The client copies: a program of the session pastes it (while the client answers).
    client.set_clipboard("copied on the client ✓").await.unwrap();
    client.pump_for(Duration::from_millis(300)).await.unwrap();
    let paste = tokio::task::spawn_blocking({
        let command = session.xclip(&[]);
        move || {
            let mut command = command;
            command.args(["-selection", "clipboard", "-o"]).output().unwrap()
        }
    });
    let deadline = Instant::now() + WAIT;
    while !paste.is_finished() && Instant::now() < deadline {
        client.pump_for(Duration::from_millis(50)).await.unwrap();
    }
    let out = paste.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "copied on the client ✓");
    assert_eq!(client.clipboard_counters().data_requests, 1);
    client.disconnect().await.unwrap();
}

/// xfreerdp with `+clipboard` on a private Xvfb; its window once shown.
struct ClipClient {
    xvfb: Xvfb,
    client: Proc,
    window: String,
}

impl ClipClient {
    fn start(host: &Host) -> ClipClient {
        let xvfb = Xvfb::start();
        let home = xvfb.dir().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = |name: &str| std::fs::File::create(xvfb.dir().join(name)).unwrap();
        let client = Proc::spawn(
            "xfreerdp",
            xvfb.command("xfreerdp")
                .arg(format!("/v:{}", host.addr))
                .arg(format!("/u:{}", USER.0))
                .arg(format!("/p:{}", USER.1))
                .args(["/cert:ignore", "/size:1024x768", "/kbd:0x409", "-grab-keyboard", "+clipboard"])
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .stdout(log("xfreerdp.out"))
                .stderr(log("xfreerdp.err")),
        );
        let mut this = ClipClient { xvfb, client, window: String::new() };
        let shown = wait_until(WAIT, || {
            let found = this.xvfb.xdotool(&["search", "--onlyvisible", "--class", "xfreerdp"]);
            this.window = String::from_utf8_lossy(&found.stdout).lines().next().unwrap_or("").trim().to_owned();
            !this.window.is_empty() || this.client.exited().is_some()
        });
        assert!(shown && !this.window.is_empty(), "no xfreerdp window:\n{}\nhost log:\n{}", this.log(), host.log());
        this
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.xvfb.dir().join(name)).unwrap_or_default();
        format!("{}{}", read("xfreerdp.out"), read("xfreerdp.err"))
    }

    /// xclip on the client's display: the user's side of its clipboard.
    fn xclip(&self) -> Command {
        let mut command = self.xvfb.command("xclip");
        command.stderr(Stdio::null());
        command
    }

    fn xdotool(&self, args: &[&str]) {
        let out = self.xvfb.xdotool(args);
        assert!(out.status.success(), "xdotool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn key(&self, keys: &str) {
        self.xdotool(&["windowfocus", "--sync", &self.window]);
        self.xdotool(&["key", keys]);
    }

    fn type_line(&self, text: &str) {
        self.xdotool(&["windowfocus", "--sync", &self.window]);
        self.xdotool(&["type", "--delay", "40", text]);
        self.xdotool(&["key", "Return"]);
    }

    /// Screenshots until `text` shows in the terminal font: its (column, row).
    fn wait_text(&self, text: &str) -> Option<(u32, u32)> {
        let mut at = None;
        wait_until(WAIT, || {
            at = self
                .xvfb
                .screenshot(&self.window)
                .and_then(|shot: Shot| rdhost_desktop::terminal::find_text(&shot.rgba, shot.width, shot.height, FONT_PX, text));
            at.is_some()
        });
        at
    }
}

/// A program of the session pastes `selection` while the client answers its fetch: the text,
/// or "" when there was none to paste.
async fn session_paste(session: &XSession, client: &mut Client, selection: &str) -> String {
    let paste = tokio::task::spawn_blocking({
        let mut command = session.xclip(&[]);
        command.args(["-selection", selection, "-o"]);
        move || command.output().unwrap()
    });
    let deadline = Instant::now() + WAIT;
    while !paste.is_finished() && Instant::now() < deadline {
        client.pump_for(Duration::from_millis(50)).await.unwrap();
    }
    String::from_utf8_lossy(&paste.await.unwrap().stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_desktop_follows_primary_unless_switched_off() {
    let test = "x_desktop_follows_primary_unless_switched_off";
    if !have_x_server(test) || !have_xclip(test) {
        return;
    }
    // By default: text selected in the session (PRIMARY) reaches the client, and the client's
    // copy is pasted by a middle click (PRIMARY) as well as by Ctrl+V (CLIPBOARD).
    let session = XSession::start();
    let mut client = logon(&session.host).await;
    session.env();
    let lists = client.clipboard_counters().format_lists;
    xclip_copy_to(session.xclip(&[]), "primary", "selected in the session ✓");
    let announced = client.pump_until(WAIT, |c| c.clipboard_counters().format_lists > lists).await.unwrap();
    assert!(announced, "a selection in the session is announced\nhost log:\n{}", session.host.log());
    assert_eq!(client.paste(WAIT).await.unwrap(), "selected in the session ✓");

    client.set_clipboard("copied on the client, pasted twice").await.unwrap();
    client.pump_for(Duration::from_millis(300)).await.unwrap();
    assert_eq!(session_paste(&session, &mut client, "primary").await, "copied on the client, pasted twice");
    assert_eq!(session_paste(&session, &mut client, "clipboard").await, "copied on the client, pasted twice");
    assert_eq!(client.clipboard_counters().data_requests, 1, "fetched once for both selections");
    client.disconnect().await.unwrap();
    drop(session);

    // clipboard_primary = false: CLIPBOARD only, both ways.
    let session = XSession::start_with("clipboard_primary = false\n");
    let mut client = logon(&session.host).await;
    session.env();
    let lists = client.clipboard_counters().format_lists;
    xclip_copy_to(session.xclip(&[]), "primary", "selected, not copied");
    client.pump_for(Duration::from_millis(1500)).await.unwrap();
    assert_eq!(client.clipboard_counters().format_lists, lists, "a selection is not announced when PRIMARY is off");
    xclip_copy(session.xclip(&[]), "copied with Ctrl+C");
    assert!(client.pump_until(WAIT, |c| c.clipboard_counters().format_lists > lists).await.unwrap(), "CLIPBOARD still is");
    assert_eq!(client.paste(WAIT).await.unwrap(), "copied with Ctrl+C");
    client.set_clipboard("for Ctrl+V only").await.unwrap();
    client.pump_for(Duration::from_millis(300)).await.unwrap();
    assert_eq!(session_paste(&session, &mut client, "clipboard").await, "for Ctrl+V only");
    assert_eq!(session_paste(&session, &mut client, "primary").await, "selected, not copied", "PRIMARY keeps the session's own selection");
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_desktop_copies_and_pastes_with_xfreerdp() {
    let test = "x_desktop_copies_and_pastes_with_xfreerdp";
    if !tools_present(test) || !have_xclip(test) {
        return;
    }
    let session = XSession::start();
    let client = ClipClient::start(&session.host);
    session.env();

    // Copied on the client's display: pasted by a program of the session.
    xclip_copy(client.xclip(), "from xfreerdp's side ✓");
    let pasted = tokio::task::spawn_blocking({
        let env = session.env();
        move || {
            xclip_paste_until(
                || {
                    let mut c = Command::new("xclip");
                    c.env("DISPLAY", &env["DISPLAY"]).stderr(Stdio::null());
                    if let Some(auth) = env.get("XAUTHORITY") {
                        c.env("XAUTHORITY", auth);
                    }
                    c
                },
                "from xfreerdp's side ✓",
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(pasted, "from xfreerdp's side ✓", "xfreerdp log:\n{}\nhost log:\n{}", client.log(), session.host.log());

    // Copied in the session: pasted on the client's display.
    xclip_copy(session.xclip(&[]), "from the session's side ✓");
    let display = client.xvfb.name().to_owned();
    let pasted = tokio::task::spawn_blocking(move || {
        xclip_paste_until(
            || {
                let mut c = Command::new("xclip");
                c.env("DISPLAY", &display).stderr(Stdio::null());
                c
            },
            "from the session's side ✓",
        )
    })
    .await
    .unwrap();
    assert_eq!(pasted, "from the session's side ✓", "xfreerdp log:\n{}\nhost log:\n{}", client.log(), session.host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_desktop_copies_and_pastes_with_xfreerdp() {
    let test = "terminal_desktop_copies_and_pastes_with_xfreerdp";
    if !tools_present(test) || !have_xclip(test) {
        return;
    }
    let host = Host::start(&[USER], "");
    let client = ClipClient::start(&host);
    let prompt = wait_until(WAIT, || {
        client.xvfb.screenshot(&client.window).is_some_and(|s| s.shows("#") || s.shows("$"))
    });
    assert!(prompt, "no prompt:\n{}", client.log());

    // Copied on the client's display, pasted into the shell with Shift+Insert.
    let (command, token) = shell_token();
    xclip_copy(client.xclip(), command.trim_end());
    // xfreerdp announces its new clipboard to the host first.
    std::thread::sleep(Duration::from_millis(500));
    client.key("shift+Insert");
    std::thread::sleep(Duration::from_millis(500));
    client.key("Return");
    assert!(client.wait_text(&token).is_some(), "the pasted command ran\nxfreerdp log:\n{}\nhost log:\n{}", client.log(), host.log());

    // The shell prints a word; a drag over it in xfreerdp's window copies it to the client's display.
    let (command, word) = pick_token();
    client.type_line(&command);
    let (col, row) = client.wait_text(&word).expect("the word on screen");
    let (x0, y0) = cell_centre(col, row);
    let (x1, y1) = cell_centre(col + word.len() as u32 - 1, row);
    let window = client.window.clone();
    client.xdotool(&["mousemove", "--window", &window, &x0.to_string(), &y0.to_string()]);
    client.xdotool(&["mousedown", "1"]);
    client.xdotool(&["mousemove", "--window", &window, &((x0 + x1) / 2).to_string(), &y1.to_string()]);
    client.xdotool(&["mousemove", "--window", &window, &x1.to_string(), &y1.to_string()]);
    client.xdotool(&["mouseup", "1"]);
    let display = client.xvfb.name().to_owned();
    let want = word.clone();
    let pasted = tokio::task::spawn_blocking(move || {
        xclip_paste_until(
            || {
                let mut c = Command::new("xclip");
                c.env("DISPLAY", &display).stderr(Stdio::null());
                c
            },
            &want,
        )
    })
    .await
    .unwrap();
    assert_eq!(pasted, word, "xfreerdp log:\n{}\nhost log:\n{}", client.log(), host.log());
}
