//! A private Xvfb for one test or benchmark: its own display number (chosen by the server with
//! `-displayfd`), its own cookie, and killed when dropped, so no X server outlives its user.

use std::io::{self, BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use rdhost_desktop::x11::XDisplay;
use rdhost_desktop::x11::xauth::{self, Cookie};
use x11rb::reexports::x11rb_protocol::parse_display::ConnectAddress;
use x11rb::rust_connection::{DefaultStream, RustConnection};

/// Parallel tests start their servers one at a time: each picks a display number by trying
/// them in turn, and simultaneous starts waste attempts racing for the same lock files.
static STARTING: Mutex<()> = Mutex::new(());

/// How long an Xvfb may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Xvfb {
    child: Child,
    display: XDisplay,
    number: u32,
    dir: tempfile::TempDir,
}

impl Xvfb {
    /// Is there an `Xvfb` on `PATH`?
    pub fn installed() -> bool {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("Xvfb").is_file()))
    }

    /// For tests: a running Xvfb, or `None` (with the reason printed) when Xvfb is not installed
    /// and we are not in CI. In CI (`CI` set) a missing Xvfb fails the test.
    pub fn for_test(width: u16, height: u16) -> Option<Xvfb> {
        if !Xvfb::installed() {
            if std::env::var_os("CI").is_some() {
                panic!("Xvfb is not installed, and CI is set: X tests must run in CI");
            }
            eprintln!("skipped: Xvfb is not installed (install the xvfb package to run X tests)");
            return None;
        }
        Some(Xvfb::start(width, height).expect("start Xvfb"))
    }

    /// Start `Xvfb` with one screen of `width`×`height`×24 and a fresh cookie.
    pub fn start(width: u16, height: u16) -> io::Result<Xvfb> {
        let dir = tempfile::Builder::new().prefix("rdhost-xvfb-").tempdir()?;
        let auth = dir.path().join("Xauthority");
        let cookie = Cookie::generate()?;
        // The server takes every cookie in its -auth file whatever display it names; clients
        // match the number, so the file is rewritten once the server has chosen one.
        xauth::write_file(&auth, 0, &cookie)?;
        let log = std::fs::File::create(dir.path().join("Xvfb.log"))?;

        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let (reader, writer) = io::pipe()?;
        let fd = writer.as_raw_fd();
        let mut command = Command::new("Xvfb");
        command
            .args(["-displayfd", &fd.to_string(), "-nolisten", "tcp", "-auth"])
            .arg(&auth)
            .args(["-screen", "0", &format!("{width}x{height}x24")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: only fcntl (async-signal-safe) between fork and exec: keep the pipe's write end
        // open across exec so Xvfb can report its display number there.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(writer);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(BufReader::new(reader).read_line(&mut line).map(|_| line));
        });
        // From here on, dropping `server` kills it.
        let mut server = Xvfb {
            child,
            display: XDisplay {
                name: String::new(),
                xauthority: Some(auth.clone()),
            },
            number: 0,
            dir,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "Xvfb did not report a display number")),
        };
        let number: u32 = line.trim().parse().map_err(|_| {
            let log = std::fs::read_to_string(server.dir.path().join("Xvfb.log")).unwrap_or_default();
            io::Error::other(format!("Xvfb did not start (it said {line:?}): {log}"))
        })?;
        xauth::write_file(&auth, number, &cookie)?;
        server.number = number;
        server.display.name = format!(":{number}");
        Ok(server)
    }

    pub fn display(&self) -> &XDisplay {
        &self.display
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    pub fn xauthority(&self) -> PathBuf {
        self.display.xauthority.clone().expect("always set")
    }

    /// The environment a client of this server needs: `DISPLAY` and `XAUTHORITY`.
    pub fn env(&self) -> [(&'static str, std::ffi::OsString); 2] {
        [("DISPLAY", self.display.name.clone().into()), ("XAUTHORITY", self.xauthority().into())]
    }

    /// A connection with this server's cookie (without touching this process's environment).
    pub fn connect(&self) -> io::Result<RustConnection> {
        let cookie = xauth::read_cookie(&self.xauthority(), self.number)?.ok_or_else(|| io::Error::other("no cookie for the display"))?;
        let (stream, _) = DefaultStream::connect(&ConnectAddress::Socket(format!("/tmp/.X11-unix/X{}", self.number)))?;
        RustConnection::connect_to_stream_with_auth_info(stream, 0, cookie.name, cookie.data)
            .map_err(|e| io::Error::other(format!("connect to {}: {e}", self.display.name)))
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
