//! A real client for the interop tests: FreeRDP's `xfreerdp` on a private Xvfb, keystrokes through
//! xdotool, and screenshots of its window with ImageMagick's `import`.
//!
//! Every xfreerdp gets an Xvfb of its own: an overlapping window would spoil another's screenshot,
//! and the only xfreerdp window on the display is then its own.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Host, artifacts_dir};

/// How long a client may take to show, draw or exit.
pub const WAIT: Duration = Duration::from_secs(30);
/// The size xfreerdp asks for.
pub const WIDTH: u32 = 1024;
pub const HEIGHT: u32 = 768;

/// Tools the harness runs, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] =
    &[("Xvfb", "xvfb"), ("xfreerdp", "freerdp2-x11"), ("xdotool", "xdotool"), ("import", "imagemagick")];

/// Are all tools there? When not: panic naming the packages under CI, otherwise say why and
/// return `false` (the test returns).
pub fn tools_present(test: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .map(|(tool, package)| format!("{tool} (apt package {package})"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: missing tools, install them: {}", missing.join(", "));
    eprintln!("{test}: skipped, missing tools: {}", missing.join(", "));
    false
}

/// [`tools_present`], and `more` (tool, Debian package) besides.
pub fn tools_present_with(test: &str, more: &[(&str, &str)]) -> bool {
    if !tools_present(test) {
        return false;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = more
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .map(|(tool, package)| format!("{tool} (apt package {package})"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: missing tools, install them: {}", missing.join(", "));
    eprintln!("{test}: skipped, missing tools: {}", missing.join(", "));
    false
}

pub use super::wait_until;

/// A child process that is killed and reaped when dropped.
pub struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    pub fn spawn(name: &str, command: &mut Command) -> Proc {
        let child = command.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { child, name: name.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The exit status once the process ends by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.exited();
            status.is_some()
        });
        status
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
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
pub struct Xvfb {
    display: String,
    /// The server's log, and room for its clients' files.
    dir: tempfile::TempDir,
    server: Proc,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        let dir = tempfile::tempdir().expect("temp dir");
        // -displayfd: the server picks a free display number itself and writes it once it
        // accepts connections, so parallel tests (and the hosts' own X servers) never race for one.
        let mut server = Proc::spawn(
            "Xvfb",
            Command::new("Xvfb")
                .args(["-displayfd", "1", "-screen", "0", "1280x900x24", "-nolisten", "tcp", "-noreset"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.path().join("xvfb.log")).unwrap()),
        );
        let mut number = String::new();
        let _ = std::io::BufReader::new(server.child.stdout.take().unwrap()).read_line(&mut number);
        let number = number.trim();
        // (On panic `server` drops: the process is killed.)
        assert!(
            !number.is_empty(),
            "Xvfb did not start: {}",
            std::fs::read_to_string(dir.path().join("xvfb.log")).unwrap_or_default()
        );
        Xvfb { display: format!(":{number}"), dir, server }
    }

    /// The display's name, `:N`.
    pub fn name(&self) -> &str {
        &self.display
    }

    /// A directory that lives as long as the display.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `program` as a client of this display.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DISPLAY", &self.display).env_remove("WAYLAND_DISPLAY").stdin(Stdio::null());
        command
    }

    pub fn xdotool(&self, args: &[&str]) -> Output {
        self.command("xdotool").args(args).output().expect("run xdotool")
    }

    /// A screenshot of `window` (None: it is not there, or `import` failed).
    pub fn screenshot(&self, window: &str) -> Option<Shot> {
        let out = self.command("import").args(["-window", window, "-depth", "8", "ppm:-"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        Shot::from_ppm(&out.stdout)
    }
}

/// One xfreerdp on a private Xvfb. Dropping it kills (and reaps) both, the client first: it would
/// otherwise see its display vanish and log noise.
pub struct Xfreerdp {
    label: String,
    client: Proc,
    /// Its top-level window, once found (see [`Xfreerdp::wait_window`]).
    window: String,
    // Last, so that the client drops before its X server.
    xvfb: Xvfb,
}

impl Xfreerdp {
    /// Start an Xvfb and an xfreerdp on it logging on to `host` as `user` with `password`;
    /// returns at once (the client may still be connecting, or on its way out).
    pub fn start(host: &Host, (user, password): (&str, &str), label: &str) -> Xfreerdp {
        let xvfb = Xvfb::start();
        // Its config and known-hosts files stay out of the real home.
        let home = xvfb.dir().join("home");
        std::fs::create_dir_all(&home).unwrap();
        // Separate files: one shared file would interleave its buffered stdout with stderr.
        let log = |name: &str| std::fs::File::create(xvfb.dir().join(name)).unwrap();
        let client = Proc::spawn(
            "xfreerdp",
            xvfb.command("xfreerdp")
                .arg(format!("/v:{}", host.addr))
                .arg(format!("/u:{user}"))
                .arg(format!("/p:{password}"))
                .args(["/cert:ignore", &format!("/size:{WIDTH}x{HEIGHT}"), "/kbd:0x409", "-grab-keyboard"])
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .stdout(log("xfreerdp.out"))
                .stderr(log("xfreerdp.err")),
        );
        Xfreerdp { label: label.to_owned(), client, window: String::new(), xvfb }
    }

    /// Start an Xvfb and an xfreerdp on it with exactly `args` (`args[0]` is its first argument:
    /// an invitation file must come first); returns at once. For clients that are not tied to a
    /// [`Host`], such as attendees of a sharer.
    pub fn start_args(args: &[String], label: &str) -> Xfreerdp {
        Self::start_args_env(args, &[], label)
    }

    /// [`Xfreerdp::start_args`] with `env` set for the client (FreeRDP's `WLOG_*` logging, say).
    pub fn start_args_env(args: &[String], env: &[(&str, &str)], label: &str) -> Xfreerdp {
        let xvfb = Xvfb::start();
        let home = xvfb.dir().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = |name: &str| std::fs::File::create(xvfb.dir().join(name)).unwrap();
        let client = Proc::spawn(
            "xfreerdp",
            xvfb.command("xfreerdp")
                .args(args)
                .envs(env.iter().copied())
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .stdout(log("xfreerdp.out"))
                .stderr(log("xfreerdp.err")),
        );
        Xfreerdp { label: label.to_owned(), client, window: String::new(), xvfb }
    }

    /// [`Xfreerdp::start`], then wait until the client's window is mapped.
    pub fn open(host: &Host, user: (&str, &str), label: &str) -> Xfreerdp {
        let mut client = Self::start(host, user, label);
        client.wait_window(host);
        client
    }

    /// Wait for the client's top-level window; panics when the client exits first or none
    /// shows within [`WAIT`].
    pub fn wait_window(&mut self, host: &Host) {
        self.wait_window_for(|| format!("host log:\n{}", host.log()));
    }

    /// [`Xfreerdp::wait_window`] for a client of any server: `server_log` says what the server
    /// logged, for the failure message.
    pub fn wait_window_for(&mut self, server_log: impl Fn() -> String) {
        let deadline = Instant::now() + WAIT;
        // Only this client draws on this display: the first visible xfreerdp window is its own.
        while self.window.is_empty() {
            let found = self.xvfb.xdotool(&["search", "--onlyvisible", "--class", "xfreerdp"]);
            self.window = String::from_utf8_lossy(&found.stdout).lines().next().unwrap_or("").trim().to_owned();
            if self.window.is_empty() {
                if let Some(status) = self.exited() {
                    panic!("{}: xfreerdp exited ({status}) before showing a window:\n{}", self.label, self.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: no xfreerdp window:\n{}\n{}",
                    self.label,
                    self.log(),
                    server_log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The name it was started with (in failure messages and artifact names).
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> u32 {
        self.client.pid()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.client.exited()
    }

    /// The client's exit status once it ends by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.client.wait_exit(timeout)
    }

    /// Kill the client without a word to the host (its display stays until this drops).
    pub fn kill(&mut self) {
        self.client.kill();
    }

    /// What the client printed: its stderr, then its stdout.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.xvfb.dir().join(name)).unwrap_or_default();
        format!("{}{}", read("xfreerdp.err"), read("xfreerdp.out"))
    }

    /// Focus the window: without a window manager windowactivate is unavailable, and focus is
    /// what routes XTest keystrokes to it.
    fn focus(&self) {
        assert!(!self.window.is_empty(), "{}: keys before its window was found", self.label);
        let _ = self.xvfb.xdotool(&["windowfocus", "--sync", &self.window]);
    }

    /// Type `text` into the window.
    pub fn type_text(&self, text: &str) {
        self.focus();
        let out = self.xvfb.xdotool(&["type", "--delay", "40", text]);
        assert!(out.status.success(), "xdotool type: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Type `text` and Return.
    pub fn type_line(&self, text: &str) {
        self.type_text(text);
        self.key("Return");
    }

    /// Press `keys` (xdotool's syntax, e.g. `ctrl+KP_Multiply`) in the window.
    pub fn key(&self, keys: &str) {
        self.focus();
        let out = self.xvfb.xdotool(&["key", keys]);
        assert!(out.status.success(), "xdotool key {keys}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// What the window shows now.
    pub fn shot(&self) -> Option<Shot> {
        self.xvfb.screenshot(&self.window)
    }

    /// Screenshots until one satisfies `done`; on timeout the last is saved as an artifact named
    /// after the test binary, the client's label and `what`, and `false` returned.
    pub fn wait_shot(&self, what: &str, done: impl Fn(&Shot) -> bool) -> bool {
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
            // The crate is the test binary: labels need only be unique within one.
            let binary = module_path!().split("::").next().unwrap_or("interop");
            let path = artifacts_dir().join(format!("{binary}-{}-{what}.ppm", self.label));
            shot.save(&path);
            eprintln!("{}: last screenshot saved to {}", self.label, path.display());
        }
        false
    }

    /// Keep `shot` as an artifact named like [`Xfreerdp::wait_shot`]'s (for checks that a
    /// window does *not* show something); returns where.
    pub fn save_artifact(&self, shot: &Shot, what: &str) -> std::path::PathBuf {
        let binary = module_path!().split("::").next().unwrap_or("interop");
        let path = artifacts_dir().join(format!("{binary}-{}-{what}.ppm", self.label));
        shot.save(&path);
        eprintln!("{}: screenshot saved to {}", self.label, path.display());
        path
    }

    /// Screenshots until one shows any of `texts` in the terminal font: the index of the one
    /// found (None on timeout, see [`Xfreerdp::wait_shot`]).
    pub fn wait_any(&self, texts: &[&str], what: &str) -> Option<usize> {
        let found = std::cell::Cell::new(None);
        self.wait_shot(what, |shot| {
            found.set(texts.iter().position(|t| shot.shows(t)));
            found.get().is_some()
        });
        found.get()
    }

    /// Screenshots until one shows `text` in the terminal font.
    pub fn wait_text(&self, text: &str, what: &str) -> bool {
        self.wait_any(&[text], what).is_some()
    }
}

/// A window's pixels, RGBA.
pub struct Shot {
    pub rgba: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// A rectangle of a shot, inclusive.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl Shot {
    /// Decode a binary PPM (P6, maxval 255): it carries its own size, so no separate geometry
    /// query can disagree with the pixels.
    pub fn from_ppm(data: &[u8]) -> Option<Shot> {
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

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Is `pixel` within `tolerance` of `colour` per channel? (The client's codecs are lossy.)
    pub fn near(pixel: [u8; 3], colour: [u8; 3], tolerance: u8) -> bool {
        (0..3).all(|c| pixel[c].abs_diff(colour[c]) <= tolerance)
    }

    /// How many pixels are within `tolerance` of `colour`.
    pub fn count_near(&self, colour: [u8; 3], tolerance: u8) -> usize {
        self.rgba.chunks_exact(4).filter(|p| Self::near([p[0], p[1], p[2]], colour, tolerance)).count()
    }

    /// The share of all pixels within `tolerance` of `colour`.
    pub fn share_near(&self, colour: [u8; 3], tolerance: u8) -> f64 {
        self.count_near(colour, tolerance) as f64 / f64::from(self.width * self.height)
    }

    /// The share of pixels within `b` that are within `tolerance` of `colour`.
    pub fn share_in(&self, b: Bounds, colour: [u8; 3], tolerance: u8) -> f64 {
        let mut n = 0;
        for y in b.top..=b.bottom {
            for x in b.left..=b.right {
                n += usize::from(Self::near(self.pixel(x, y), colour, tolerance));
            }
        }
        n as f64 / f64::from((b.right - b.left + 1) * (b.bottom - b.top + 1))
    }

    /// The band of rows in which at least `per_row` pixels are `colour` (within `tolerance`),
    /// spanning the columns those rows hold it in (None: no such row). Stray pixels of a similar
    /// colour elsewhere (a button's edge, blended glyph edges) do not stretch it.
    pub fn band_of(&self, colour: [u8; 3], tolerance: u8, per_row: u32) -> Option<Bounds> {
        let mut band: Option<Bounds> = None;
        for y in 0..self.height {
            let xs: Vec<u32> = (0..self.width).filter(|&x| Self::near(self.pixel(x, y), colour, tolerance)).collect();
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
    pub fn shows(&self, text: &str) -> bool {
        rdhost_desktop::terminal::find_text(&self.rgba, self.width, self.height, 16.0, text).is_some()
    }

    /// Save as a binary PPM.
    pub fn save(&self, path: &Path) {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend(self.rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]));
        let _ = std::fs::write(path, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Stock clients of every kind (the interop matrix): xfreerdp, rdesktop, Remmina.

/// A stock RDP client and how it is started.
#[derive(Debug, Clone)]
pub enum Stock {
    /// FreeRDP's `xfreerdp`, with these arguments after the server, credentials, `/cert:ignore`
    /// and the size.
    Xfreerdp(Vec<String>),
    /// `rdesktop` (1.9), with these arguments after the credentials and the size. It asks on
    /// stdin whether to trust our self-signed certificate; it is told "yes".
    Rdesktop(Vec<String>),
    /// Remmina's RDP plugin (FreeRDP 2 inside), from a connection profile with these extra
    /// `key=value` settings (`security=tls`, `colordepth=16`, …).
    Remmina(Vec<String>),
}

impl Stock {
    pub fn xfreerdp(args: &[&str]) -> Stock {
        Stock::Xfreerdp(args.iter().map(|a| a.to_string()).collect())
    }

    pub fn rdesktop(args: &[&str]) -> Stock {
        Stock::Rdesktop(args.iter().map(|a| a.to_string()).collect())
    }

    pub fn remmina(settings: &[&str]) -> Stock {
        Stock::Remmina(settings.iter().map(|a| a.to_string()).collect())
    }

    /// The tools this client needs beyond the harness' own, with their Debian packages.
    pub fn tools(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Stock::Xfreerdp(_) => &[],
            Stock::Rdesktop(_) => &[("rdesktop", "rdesktop")],
            // The profile's password is 3DES-encrypted with Remmina's secret: openssl does that.
            Stock::Remmina(_) => &[("remmina", "remmina remmina-plugin-rdp"), ("openssl", "openssl")],
        }
    }

    fn program(&self) -> &'static str {
        match self {
            Stock::Xfreerdp(_) => "xfreerdp",
            Stock::Rdesktop(_) => "rdesktop",
            Stock::Remmina(_) => "remmina",
        }
    }

    /// The WM_CLASS of its session window (an xdotool regex).
    fn window_class(&self) -> &'static str {
        match self {
            Stock::Xfreerdp(_) => "xfreerdp",
            Stock::Rdesktop(_) => "rdesktop",
            Stock::Remmina(_) => "Remmina",
        }
    }
}

/// [`tools_present_with`] for a stock client.
pub fn stock_tools_present(test: &str, stock: &Stock) -> bool {
    tools_present_with(test, stock.tools())
}

/// The secret Remmina encrypts profile passwords with (remmina.pref `secret`): 24 bytes of
/// 3DES key, then 8 of CBC IV. Tests write their own, so they can encrypt.
const REMMINA_SECRET: [u8; 32] = *b"rdhost-interop-matrix-secret-32b";

/// `password` as Remmina stores it in a profile: zero-padded to a whole number of 8-byte blocks
/// (at least one zero), 3DES-CBC with [`REMMINA_SECRET`], base64.
fn remmina_password(password: &str) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut plain = password.as_bytes().to_vec();
    plain.resize(plain.len() + 8 - plain.len() % 8, 0);
    let mut child = Command::new("openssl")
        .args(["enc", "-des-ede3-cbc", "-nopad", "-a", "-A", "-K", &hex(&REMMINA_SECRET[..24]), "-iv", &hex(&REMMINA_SECRET[24..])])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &plain).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl enc: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One stock client on a private Xvfb, logging on to a host. Dropping it kills (and reaps) the
/// client, then its X server.
pub struct StockClient {
    label: String,
    stock: Stock,
    client: Proc,
    window: String,
    xvfb: Xvfb,
}

impl StockClient {
    /// Start an Xvfb and `stock` on it logging on to `host` as `user` with `password`; returns
    /// at once.
    pub fn start(stock: &Stock, host: &Host, (user, password): (&str, &str), label: &str) -> StockClient {
        let xvfb = Xvfb::start();
        let home = xvfb.dir().join("home");
        std::fs::create_dir_all(home.join(".config")).unwrap();
        let log = |name: &str| std::fs::File::create(xvfb.dir().join(name)).unwrap();
        let mut command = xvfb.command(stock.program());
        command.env("HOME", &home).env("XDG_CONFIG_HOME", home.join(".config")).stdout(log("client.out")).stderr(log("client.err"));
        match stock {
            Stock::Xfreerdp(args) => {
                command
                    .arg(format!("/v:{}", host.addr))
                    .arg(format!("/u:{user}"))
                    .arg(format!("/p:{password}"))
                    .args(["/cert:ignore", &format!("/size:{WIDTH}x{HEIGHT}"), "/kbd:0x409", "-grab-keyboard"])
                    .args(args);
            }
            Stock::Rdesktop(args) => {
                let answer = xvfb.dir().join("trust-certificate");
                std::fs::write(&answer, "yes\n").unwrap();
                command
                    .args(["-u", user, "-p", password, "-g", &format!("{WIDTH}x{HEIGHT}"), "-k", "en-us"])
                    .args(args)
                    .arg(host.addr.to_string())
                    .stdin(std::fs::File::open(answer).unwrap());
            }
            Stock::Remmina(settings) => {
                let config = home.join(".config/remmina");
                std::fs::create_dir_all(&config).unwrap();
                // No toolbar and no tab: the session fills the window, as the screenshot reader needs
                // (it reads text on a grid from the top-left corner).
                let pref = format!("[remmina_pref]\nsecret={}\nhide_connection_toolbar=true\nalways_show_tab=false\n", base64(&REMMINA_SECRET));
                std::fs::write(config.join("remmina.pref"), pref).unwrap();
                let profile = xvfb.dir().join("rdhost.remmina");
                let mut text = format!(
                    "[remmina]\nname=rdhost-{label}\nprotocol=RDP\nserver={}\nusername={user}\npassword={}\ncert_ignore=1\n\
                     disabletoolbar=1\nresolution_mode=2\nresolution_width={WIDTH}\nresolution_height={HEIGHT}\ndisableautoreconnect=1\n",
                    host.addr,
                    remmina_password(password)
                );
                for setting in settings {
                    text.push_str(setting);
                    text.push('\n');
                }
                std::fs::write(&profile, text).unwrap();
                command.arg("-c").arg(&profile);
            }
        }
        let client = Proc::spawn(stock.program(), &mut command);
        StockClient { label: label.to_owned(), stock: stock.clone(), client, window: String::new(), xvfb }
    }

    /// [`StockClient::start`], then wait until its window is mapped.
    pub fn open(stock: &Stock, host: &Host, user: (&str, &str), label: &str) -> StockClient {
        let mut client = Self::start(stock, host, user, label);
        client.wait_window(host);
        client
    }

    /// Wait for the client's window; panics when the client exits first or none shows within
    /// [`WAIT`].
    pub fn wait_window(&mut self, host: &Host) {
        let deadline = Instant::now() + WAIT;
        while self.window.is_empty() {
            let found = self.xvfb.xdotool(&["search", "--onlyvisible", "--class", self.stock.window_class()]);
            self.window = String::from_utf8_lossy(&found.stdout).lines().next().unwrap_or("").trim().to_owned();
            if self.window.is_empty() {
                if let Some(status) = self.client.exited() {
                    panic!("{}: {} exited ({status}) before showing a window:\n{}", self.label, self.stock.program(), self.log());
                }
                assert!(Instant::now() < deadline, "{}: no window:\n{}\nhost log:\n{}", self.label, self.log(), host.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.client.exited()
    }

    /// Kill the client without a word to the host.
    pub fn kill(&mut self) {
        self.client.kill();
    }

    /// What the client printed: its stderr, then its stdout.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.xvfb.dir().join(name)).unwrap_or_default();
        format!("{}{}", read("client.err"), read("client.out"))
    }

    /// Focus the window, with the pointer in it: Remmina takes the keyboard when the pointer
    /// enters, a moment after focus; keys before that are lost.
    fn focus(&self) {
        assert!(!self.window.is_empty(), "{}: keys before its window was found", self.label);
        let _ = self.xvfb.xdotool(&["windowfocus", "--sync", &self.window]);
        let _ = self.xvfb.xdotool(&["mousemove", "--window", &self.window, "100", "100"]);
        if matches!(self.stock, Stock::Remmina(_)) {
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Type `text` and Return into the window.
    pub fn type_line(&self, text: &str) {
        self.focus();
        let out = self.xvfb.xdotool(&["type", "--delay", "40", text]);
        assert!(out.status.success(), "xdotool type: {}", String::from_utf8_lossy(&out.stderr));
        let out = self.xvfb.xdotool(&["key", "Return"]);
        assert!(out.status.success(), "xdotool key: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Screenshots until one shows any of `texts` in the terminal font: the index of the one
    /// found; on timeout the last is saved as an artifact named after the label and `what`.
    pub fn wait_any(&self, texts: &[&str], what: &str) -> Option<usize> {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(shot) = self.xvfb.screenshot(&self.window) {
                if let Some(found) = texts.iter().position(|t| shot.shows(t)) {
                    return Some(found);
                }
                last = Some(shot);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        if let Some(shot) = last {
            let path = artifacts_dir().join(format!("interop_matrix-{}-{what}.ppm", self.label));
            shot.save(&path);
            eprintln!("{}: last screenshot saved to {}", self.label, path.display());
        }
        None
    }

    pub fn wait_text(&self, text: &str, what: &str) -> bool {
        self.wait_any(&[text], what).is_some()
    }

    /// The client's version, as `--version` (or its usage text) says it, for the matrix.
    pub fn version(&self) -> String {
        let out = self
            .xvfb
            .command(self.stock.program())
            .arg("--version")
            .env("HOME", self.xvfb.dir().join("home"))
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_default();
        // "This is FreeRDP version 2.11.7 (2.11.7)", "Version 1.9.0. Copyright …", "… - 1.4.29 (git n/a)"
        let version = |word: &str| {
            let word = word.trim_end_matches(|c: char| !c.is_ascii_digit());
            let dotted = word.split('.').count() >= 2 && word.split('.').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
            dotted.then(|| word.to_owned())
        };
        out.lines().find_map(|l| l.split_whitespace().find_map(version)).unwrap_or_else(|| "?".into())
    }
}
