//! `rdhost view` as a user runs it: the binary against a real `rdhost serve` host (headless
//! `--snapshot`), its failures and their messages, reverse connect's connection string, and a
//! real window under Xvfb driven by xdotool.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Host};
use rdhost_model::ConnectionString;

const ALICE: (&str, &str) = ("alice", "alice-pw-1");

/// `rdhost view ARGS` without a display, `stdin` piped in; waits for it (at most 90 s).
fn view(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("view")
        .args(args)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rdhost view");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("rdhost view {args:?} did not finish; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port on 127.0.0.1 nobody listens on (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A PNG's size and its pixels as RGB (whatever colour type the file uses).
fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("the PNG exists")));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane PNG")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        png::ColorType::Indexed => unreachable!("EXPAND turns palettes into RGB"),
    };
    (info.width, info.height, rgb)
}

fn non_black(rgb: &[u8]) -> usize {
    rgb.chunks_exact(3).filter(|p| p.iter().any(|&c| c > 40)).count()
}

const INVITATION_TICKET: &str = "dGhpcyBpcyBhIHRpY2tldA==";

fn invitation(listeners: &[(u16, &str)]) -> String {
    let ls: String = listeners.iter().map(|(p, n)| format!("<L P=\"{p}\" N=\"{n}\"/>")).collect();
    format!("<E><A KH=\"a2g=\" ID=\"{INVITATION_TICKET}\"/><C><T ID=\"1\" SID=\"7\">{ls}</T></C></E>")
}

#[test]
fn help_names_every_way_to_connect() {
    let out = Command::new(BIN).args(["view", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "HOST[:PORT]",
        "--user",
        "--invitation <FILE|STRING>",
        "--listen <ADDR:PORT>",
        "--password <PW|->",
        "--name <NAME>",
        "--request-control <LEVEL>",
        "--snapshot <FILE.png>",
        "--after-ms <N>",
        "Ctrl+Alt+C",
        "connect-to-client",
        "Examples:",
    ] {
        assert!(help.contains(needle), "`rdhost view --help` mentions {needle}:\n{help}");
    }
}

#[test]
fn arguments_that_do_not_fit_together_are_refused() {
    // A host needs a user; an invitation and a host exclude each other; --listen needs an invitation.
    for args in [
        &["127.0.0.1", "--password", "x", "--snapshot", "/dev/null"][..],
        &["127.0.0.1", "--user", "a", "--invitation", "<E/>", "--snapshot", "/dev/null"],
        &["--listen", "127.0.0.1:0", "--password", "x", "--snapshot", "/dev/null"],
        &["--invitation", "<E/>", "--after-ms", "5"],
        &["--invitation", "<E/>", "--request-control", "all"],
    ] {
        let out = view(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_a_host_session_has_the_asked_size_and_a_picture() {
    let host = Host::start(&[ALICE], "");
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shot.png");
    let target = host.addr.to_string();
    let out = tokio::task::spawn_blocking({
        let png = png.clone();
        move || {
            view(
                &[
                    &target,
                    "--user",
                    ALICE.0,
                    "--password",
                    "-",
                    "--size",
                    "800x600",
                    "--snapshot",
                    png.to_str().unwrap(),
                    "--after-ms",
                    "1500",
                ],
                &format!("{}\n", ALICE.1),
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "snapshot succeeds: {}\nhost log:\n{}", stderr(&out), host.log());
    assert!(out.stdout.is_empty(), "nothing on standard output: {:?}", String::from_utf8_lossy(&out.stdout));
    let (w, h, rgb) = read_png(&png);
    assert_eq!((w, h), (800, 600), "the host gave the size we asked for");
    let decoded = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap())).read_info().unwrap();
    assert_eq!(decoded.info().color_type, png::ColorType::Rgb, "the snapshot is 8-bit RGB");
    let lit = non_black(&rgb);
    if lit < 50 {
        let _ = std::fs::copy(&png, common::artifacts_dir().join("view-host-snapshot.png"));
    }
    assert!(lit >= 50, "the terminal desktop's prompt is in the picture ({lit} non-black pixels)");
    // The viewer logged on as alice: the host has (had) her session.
    assert!(host.sessions().iter().any(|s| s["user"] == ALICE.0), "alice has a session: {:?}", host.sessions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_for_a_host_says_so_and_fails() {
    let host = Host::start(&[ALICE], "");
    let target = host.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        view(&[&target, "--user", ALICE.0, "--password", "wrong-password", "--snapshot", "/dev/null"], "")
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("logon as alice at") && err.contains("check the user name and password"), "{err}");
}

#[test]
fn an_unreachable_host_is_named() {
    let port = closed_port();
    let out = view(&[&format!("127.0.0.1:{port}"), "--user", "a", "--password", "x", "--snapshot", "/dev/null"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("could not reach 127.0.0.1:{port} (connection refused)")), "{err}");
}

#[test]
fn every_address_of_an_unreachable_invitation_is_named() {
    let (a, b) = (closed_port(), closed_port());
    let inv = invitation(&[(a, "127.0.0.1"), (b, "127.0.0.1")]);
    let out = view(&["--invitation", &inv, "--password", "x", "--snapshot", "/dev/null"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "could not reach any address of the invitation: 127.0.0.1:{a} (connection refused), 127.0.0.1:{b} (connection refused)"
        )),
        "{err}"
    );
    assert!(err.contains("--listen"), "it suggests reverse connect: {err}");
}

#[test]
fn a_bad_invitation_is_refused_before_any_connection() {
    // Cut short.
    let cut = &invitation(&[(3390, "127.0.0.1")])[..40];
    let out = view(&["--invitation", cut, "--password", "x", "--snapshot", "/dev/null"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the invitation is not usable") && err.contains("cut short"), "{err}");

    // A port that is not one.
    let bad_port = invitation(&[(3390, "127.0.0.1")]).replace("3390", "70000");
    let err = stderr(&view(&["--invitation", &bad_port, "--password", "x", "--snapshot", "/dev/null"], ""));
    assert!(err.contains("port") && err.contains("70000"), "{err}");

    // A viewer's reverse-connect string is not an invitation.
    let reverse = "<E><C><T ID=\"1\" SID=\"0\"><L P=\"5000\" N=\"127.0.0.1\"/></T></C></E>";
    let err = stderr(&view(&["--invitation", reverse, "--password", "x", "--snapshot", "/dev/null"], ""));
    assert!(err.contains("no ticket"), "{err}");

    // A file that does not exist.
    let out =
        view(&["--invitation", "/nonexistent/inv.msrcIncident", "--password", "x", "--snapshot", "/dev/null"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read the invitation file `/nonexistent/inv.msrcIncident`"),
        "{}",
        stderr(&out)
    );

    // No password and no terminal to ask on.
    let inv = invitation(&[(3390, "127.0.0.1")]);
    let err = stderr(&view(&["--invitation", &inv, "--snapshot", "/dev/null"], ""));
    assert!(err.contains("no password") && err.contains("--password -"), "{err}");
}

#[test]
fn an_invitation_file_is_read() {
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inv.msrcIncident");
    std::fs::write(&file, format!("{}\n", invitation(&[(port, "127.0.0.1")]))).unwrap();
    let out = view(&["--invitation", file.to_str().unwrap(), "--password", "-", "--snapshot", "/dev/null"], "pw\n");
    // It got as far as dialling the invitation's address.
    assert!(stderr(&out).contains(&format!("127.0.0.1:{port} (connection refused)")), "{}", stderr(&out));
}

#[test]
fn without_a_display_a_window_is_refused_with_the_alternative() {
    let inv = invitation(&[(3390, "127.0.0.1")]);
    let out = view(&["--invitation", &inv, "--password", "x"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no display") && err.contains("--snapshot"), "{err}");
}

/// A running `rdhost view --listen …`; killed on drop.
struct Listening {
    child: Child,
    first_line: String,
}

impl Listening {
    fn start(listen: &str, extra: &[&str]) -> Listening {
        let inv = invitation(&[(3390, "127.0.0.1")]);
        let mut child = Command::new(BIN)
            .args(["view", "--listen", listen, "--invitation", &inv, "--password", "pw", "--snapshot", "/dev/null"])
            .args(extra)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let first_line = rx.recv_timeout(Duration::from_secs(30)).expect("a first line on standard output");
        Listening { child, first_line }
    }

    fn wait(&mut self, timeout: Duration) -> Option<(i32, String)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return Some((status.code().unwrap_or(-1), err));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn reverse_connect_prints_its_connection_string_first_and_listens_there() {
    let mut viewer = Listening::start("127.0.0.1:0", &[]);
    let line = viewer.first_line.trim_end();
    assert!(line.starts_with("<E>") && line.ends_with("</E>"), "one connection string on the first line: {line:?}");
    let parsed = ConnectionString::parse(line).expect("the first line is a connection string");
    assert_eq!(parsed.ticket, None, "a viewer has no ticket to give");
    assert_eq!(parsed.listeners.len(), 1, "{line}");
    assert_eq!(parsed.listeners[0].name, "127.0.0.1");
    let port = parsed.listeners[0].port;
    assert_ne!(port, 0, "the real port, not 0");

    // Something that is not a sharer dials in and hangs up: the viewer says so and fails.
    drop(TcpStream::connect(("127.0.0.1", port)).expect("the viewer listens on the port it printed"));
    let (code, err) = viewer.wait(Duration::from_secs(40)).expect("the viewer gives up on a dead connection");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rdhost: error:"), "{err}");
}

#[test]
fn reverse_connect_on_all_addresses_lists_this_machine() {
    let viewer = Listening::start("0.0.0.0:0", &[]);
    let parsed = ConnectionString::parse(viewer.first_line.trim_end()).expect("a connection string");
    let names: Vec<&str> = parsed.listeners.iter().map(|l| l.name.as_str()).collect();
    assert!(names.contains(&"127.0.0.1"), "loopback is listed: {names:?}");
    assert_eq!(names.last(), Some(&"127.0.0.1"), "loopback comes last: {names:?}");
    assert!(names.iter().all(|n| n.parse::<std::net::Ipv4Addr>().is_ok()), "IPv4 only on 0.0.0.0: {names:?}");
    let port = parsed.listeners[0].port;
    assert!(parsed.listeners.iter().all(|l| l.port == port && port != 0));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok(), "it listens on {addr}");
}

#[test]
fn reverse_connect_on_a_busy_port_fails_at_once() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let inv = invitation(&[(3390, "127.0.0.1")]);
    let out = view(&["--listen", &addr, "--invitation", &inv, "--password", "pw", "--snapshot", "/dev/null"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no connection string when nothing listens");
    assert!(stderr(&out).contains(&format!("cannot listen on {addr}")), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// As an attendee of a real `rdhost share start`.

use common::sharer::Sharer;

#[test]
fn an_attendee_snapshot_forward_and_by_reverse_connect() {
    let sharer = Sharer::start("inv-pw", &["--auto-grant", "view"]);
    let dir = tempfile::tempdir().unwrap();

    // Forward, with the invitation as a .msrcIncident file.
    let png = dir.path().join("forward.png");
    let file = sharer.invitation_file();
    let out = view(
        &[
            "--invitation",
            file.to_str().unwrap(),
            "--password",
            "-",
            "--name",
            "Bob",
            "--snapshot",
            png.to_str().unwrap(),
            "--after-ms",
            "300",
        ],
        "inv-pw\n",
    );
    assert!(out.status.success(), "the attendee's snapshot: {}\nsharer log:\n{}", stderr(&out), sharer.log());
    let (_, _, rgb) = read_png(&png);
    assert!(non_black(&rgb) >= 50, "the shared shell's prompt is in the picture");

    // A wrong password: refused, and the message says what to do.
    let out = view(&["--invitation", &sharer.invitation, "--password", "not-it", "--snapshot", "/dev/null"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the sharer refused the connection") && err.contains("wrong password or unknown invitation"),
        "{err}"
    );

    // Reverse: the viewer listens, the sharer dials the string it printed.
    let png = dir.path().join("reverse.png");
    let mut viewer = Command::new(BIN)
        .args([
            "view",
            "--listen",
            "127.0.0.1:0",
            "--invitation",
            &sharer.invitation,
            "--password",
            "inv-pw",
            "--name",
            "Rev",
        ])
        .args(["--snapshot", png.to_str().unwrap(), "--after-ms", "300"])
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(viewer.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let (code, out, err) = sharer.share(&["connect-to-client", line.trim_end()]);
    assert_eq!(code, 0, "connect-to-client {line}: {out}{err}\nsharer log:\n{}", sharer.log());
    let done = wait_for(Duration::from_secs(60), || matches!(viewer.try_wait(), Ok(Some(_))));
    if !done {
        let _ = viewer.kill();
    }
    let status = viewer.wait().unwrap();
    let mut err = String::new();
    let _ = viewer.stderr.take().unwrap().read_to_string(&mut err);
    assert!(done && status.success(), "the reverse-connected viewer wrote its snapshot: {err}");
    let (_, _, rgb) = read_png(&png);
    assert!(non_black(&rgb) >= 50, "the shared shell's prompt is in the reverse-connect picture");
}

// ---------------------------------------------------------------------------------------------
// The window, under an Xvfb of our own.

/// Are these programs installed? When not: panic under CI, otherwise say why and return false.
fn have(test: &str, tools: &[(&str, &str)]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
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

/// An Xvfb on a free display number (no access control: it is private to this test run); killed
/// on drop.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        let (read, write) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let fd = write.as_raw_fd();
        let mut command = Command::new("Xvfb");
        command
            .args(["-displayfd", &fd.to_string(), "-nolisten", "tcp", "-screen", "0", "1280x1024x24"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The pipe's write end must survive exec in the child.
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
        let mut read = read;
        let mut byte = [0u8; 1];
        while read.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            number.push(byte[0] as char);
        }
        let number: u32 = number.trim().parse().expect("Xvfb reports its display number");
        Xvfb { child, display: format!(":{number}") }
    }

    /// Run an X tool on this display; its standard output.
    fn tool(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program).args(args).env("DISPLAY", &self.display).output().expect(program);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The terminal desktop's text in a PNG (as `common::on_screen` finds it in a client).
fn png_shows(path: &Path, text: &str) -> bool {
    let (w, h, rgb) = read_png(path);
    let rgba: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    rdhost_desktop::terminal::find_text(&rgba, w, h, 16.0, text).is_some()
}

fn wait_for(timeout: Duration, mut what: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_shows_the_session_and_types_into_it() {
    if !have("window", &[("Xvfb", "xvfb"), ("xdotool", "xdotool"), ("import", "imagemagick")]) {
        return;
    }
    let host = Host::start(&[ALICE], "");
    let x = Xvfb::start();
    let mut window = Command::new(BIN)
        .args(["view", &host.addr.to_string(), "--user", ALICE.0, "--password", ALICE.1, "--size", "800x600"])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("screen.png");
    let keep = |name: &str| {
        let _ = std::fs::copy(&shot, common::artifacts_dir().join(name));
    };

    // The title says where and what; the session's prompt appears in the window.
    let (mut id, mut title) = (String::new(), String::new());
    let titled = wait_for(Duration::from_secs(30), || {
        id = x.tool("xdotool", &["search", "--name", "^rdhost view"]).lines().next().unwrap_or("").to_owned();
        title = if id.is_empty() { String::new() } else { x.tool("xdotool", &["getwindowname", &id]) };
        title.starts_with(&format!("rdhost view — alice@{} — connected — control: interactive", host.addr))
    });
    if !titled {
        let _ = window.kill();
        let mut err = String::new();
        let _ = window.stderr.take().unwrap().read_to_string(&mut err);
        panic!(
            "a window titled `rdhost view — alice@… — connected — control: interactive`, not {title:?}; stderr:\n{err}"
        );
    }
    let prompt = wait_for(Duration::from_secs(30), || {
        x.tool("import", &["-window", "root", shot.to_str().unwrap()]);
        shot.exists() && (png_shows(&shot, "$") || png_shows(&shot, "#"))
    });
    if !prompt {
        keep("view-window-prompt.png");
    }
    assert!(prompt, "the session's prompt is drawn in the window");

    // Keys typed into the window reach the shell (US scancodes through the host's keymap).
    x.tool("xdotool", &["mousemove", "--window", &id, "100", "100"]);
    x.tool("xdotool", &["windowfocus", "--sync", &id]);
    let (a, b) = (1000 + std::process::id() % 9000, 37);
    let product = format!("x{}y", a * b);
    x.tool("xdotool", &["type", "--delay", "30", &format!("echo x$(({a}*{b}))y")]);
    x.tool("xdotool", &["key", "Return"]);
    let typed = wait_for(Duration::from_secs(30), || {
        x.tool("import", &["-window", "root", shot.to_str().unwrap()]);
        png_shows(&shot, &product)
    });
    if !typed {
        keep("view-window-typed.png");
    }
    assert!(typed, "the shell's answer {product} is in the window");

    // Closing the window ends the viewer with status 0; the session stays (disconnected).
    x.tool("xdotool", &["windowclose", &id]);
    let closed = wait_for(Duration::from_secs(15), || matches!(window.try_wait(), Ok(Some(_))));
    if !closed {
        let _ = window.kill();
    }
    let status = window.wait().unwrap();
    let mut err = String::new();
    let _ = window.stderr.take().unwrap().read_to_string(&mut err);
    assert!(closed, "closing the window ends the viewer");
    assert_eq!(status.code(), Some(0), "closing the window is not an error: {err}");
    let sessions = host.sessions();
    assert!(
        sessions.iter().any(|s| s["user"] == ALICE.0 && s["state"] == "Disconnected"),
        "alice's session keeps running, disconnected: {sessions:?}"
    );
}
