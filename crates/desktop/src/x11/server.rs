//! A session's own X server and session program, and the end of every process in the session.
//!
//! The X server (Xorg with the dummy driver, or Xvfb) runs as the session's user, picks a free
//! display number itself (`-displayfd`: no race between sessions starting together), and lets
//! in only clients with the session's private cookie. The session program (the user's
//! `~/.xsession`, or a command run by the login shell) runs next to it. Both are in the
//! session's [`SessionProcesses`], so logoff ends everything they started; the X server goes
//! last, so clients end while their display is still there.

use std::ffi::{CString, OsString};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::xauth::{self, Cookie};
use super::{X11Error, XDisplay};
use crate::process::{self, Containment, Identity, Launch, Mechanism, SessionProcesses, identity, set_env};
use crate::{DesktopEnd, RunAs, Size};

/// The session command when the user has no `~/.xsession`: Debian's alternatives for a terminal
/// and a window manager (whichever are installed; e.g. xterm and icewm). The window manager's
/// exit is the logoff.
pub const DEFAULT_SESSION_COMMAND: &str = "x-terminal-emulator & exec x-window-manager";

pub const XORG: &str = "/usr/lib/xorg/Xorg";
pub const DUMMY_DRIVER: &str = "/usr/lib/xorg/modules/drivers/dummy_drv.so";

/// Xvfb's screen when the caller names no maximum: it cannot grow past its start size.
pub const XVFB_DEFAULT_MAX: Size = Size::new(1920, 1200);
/// How long the X server gets to report its display number.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Between SIGHUP and SIGKILL for the session's programs at logoff.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Between SIGTERM and SIGKILL for the X server, after its clients are gone.
const SERVER_GRACE: Duration = Duration::from_secs(2);
/// The largest screen the dummy driver's video memory must hold (RDP's largest desktop).
const MAX_SIDE: u32 = 8192;
/// A session program that fails (non-zero status, or a signal) this soon after it started
/// never ran a session (an unreadable home, a broken `~/.xsession`): the session failed, it was
/// not a logoff. A logoff is a zero status, or a failure after this.
const QUICK_EXIT: Duration = Duration::from_secs(10);
/// How much of the session log a failure quotes.
const LOG_TAIL_LINES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XServerKind {
    /// Xorg with the dummy video driver: RandR resizes it to any size, and memory follows the
    /// size in use.
    XorgDummy,
    /// Xvfb: allocates (and dirties) its whole framebuffer at start and cannot grow past it.
    Xvfb,
}

impl XServerKind {
    /// The name used in messages ("Xorg", "Xvfb").
    pub fn name(self) -> &'static str {
        match self {
            XServerKind::XorgDummy => "Xorg",
            XServerKind::Xvfb => "Xvfb",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XServerPreference {
    /// Xorg with the dummy driver when installed, else Xvfb.
    #[default]
    Auto,
    XorgDummy,
    Xvfb,
}

fn xorg_dummy_installed() -> bool {
    let executable = std::fs::metadata(XORG).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    executable && Path::new(DUMMY_DRIVER).is_file()
}

fn xvfb_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join("Xvfb"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The X server to start sessions with, or an error that says which packages to install.
pub fn find_x_server(pref: XServerPreference) -> Result<XServerKind, X11Error> {
    const XORG_PACKAGES: &str = "xserver-xorg-core xserver-xorg-video-dummy";
    match pref {
        XServerPreference::XorgDummy if xorg_dummy_installed() => Ok(XServerKind::XorgDummy),
        XServerPreference::XorgDummy => Err(X11Error::NoXServer(format!(
            "Xorg with the dummy driver is not installed ({XORG}, {DUMMY_DRIVER}): install the packages {XORG_PACKAGES}"
        ))),
        XServerPreference::Xvfb if xvfb_path().is_some() => Ok(XServerKind::Xvfb),
        XServerPreference::Xvfb => Err(X11Error::NoXServer("Xvfb is not installed (not in PATH): install the package xvfb".into())),
        XServerPreference::Auto if xorg_dummy_installed() => Ok(XServerKind::XorgDummy),
        XServerPreference::Auto if xvfb_path().is_some() => Ok(XServerKind::Xvfb),
        XServerPreference::Auto => Err(X11Error::NoXServer(format!(
            "no X server for sessions is installed: install the packages {XORG_PACKAGES} (or xvfb)"
        ))),
    }
}

#[derive(Debug, Clone)]
pub struct SessionServerOptions {
    pub kind: XServerKind,
    /// The screen size at start (Xorg). Xvfb starts at `max_size` and is resized down by RandR.
    pub size: Size,
    /// Xvfb only: its framebuffer, allocated and written whole at start, which RandR cannot
    /// grow. Larger costs memory for every session (about 4 bytes a pixel: 9 MB at
    /// 1920x1200, 33 MB at 3840x2160); smaller caps the size clients get. `None`: the larger
    /// of `size` and [`XVFB_DEFAULT_MAX`] on each side.
    pub max_size: Option<Size>,
    /// The user the X server and session run as (the host is root). `None`: the host's user.
    pub run_as: Option<RunAs>,
    /// Run by the user's login shell (`$SHELL -l -c`), for a login-like environment.
    pub session_command: String,
    /// Run the user's `~/.xsession` instead of `session_command` when it is executable.
    pub user_xsession: bool,
    /// Extra environment for the session program, applied last.
    pub env: Vec<(String, String)>,
    /// A private directory (0700, owned by the user) the caller made for this session: the
    /// Xauthority file, the Xorg configuration and the logs go there.
    pub runtime_dir: PathBuf,
    /// `XDG_RUNTIME_DIR` for the session program, when the caller has one.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// How the session's processes are kept together (a cgroup when possible).
    pub containment: Containment,
}

impl SessionServerOptions {
    pub fn new(kind: XServerKind, size: Size, runtime_dir: PathBuf) -> SessionServerOptions {
        SessionServerOptions {
            kind,
            size,
            max_size: None,
            run_as: None,
            session_command: DEFAULT_SESSION_COMMAND.into(),
            user_xsession: true,
            env: Vec::new(),
            runtime_dir,
            xdg_runtime_dir: None,
            containment: Containment::Auto,
        }
    }
}

/// A session's running X server and session program. Dropping it ends the session (in the
/// background); [`terminate`](Self::terminate) and [`ended`](Self::ended) let the owner do it
/// and see it done.
pub struct SessionServer {
    kind: XServerKind,
    display: XDisplay,
    x_pid: u32,
    session_pid: u32,
    mechanism: Mechanism,
    stop: Arc<Notify>,
    ended: watch::Receiver<Option<DesktopEnd>>,
}

/// Files to remove when the session ends, however it ends (the supervising task may be
/// dropped with its runtime).
struct RuntimeFiles {
    paths: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    /// The server's socket and lock file (a killed server leaves them), each with the inode it
    /// had while the server ran: removed only while still the same file, not one a newer server
    /// on the same display number made.
    display: Vec<(PathBuf, (u64, u64))>,
    number: Option<u32>,
}

/// True when a server accepts connections on display `number` (its abstract socket, which
/// Linux X servers open first, or the socket file).
fn display_in_use(number: u32) -> bool {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let name = format!("/tmp/.X11-unix/X{number}");
    let abstract_live = SocketAddr::from_abstract_name(name.as_bytes()).is_ok_and(|a| UnixStream::connect_addr(&a).is_ok());
    abstract_live || UnixStream::connect(&name).is_ok()
}

fn identify(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Drop for RuntimeFiles {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
        // Another server may have taken the number since ours died (and a file system may
        // give its new socket the freed inode): only a display nobody serves is cleaned up.
        if self.number.is_some_and(|n| !self.display.is_empty() && !display_in_use(n)) {
            for (path, id) in &self.display {
                if identify(path) == Some(*id) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

impl SessionServer {
    /// Start the X server, wait for its display number, write the clients' Xauthority, and
    /// start the session program. Call inside a tokio runtime.
    pub async fn start(opts: SessionServerOptions) -> Result<SessionServer, X11Error> {
        let who = identity(opts.run_as.as_ref())?;
        let dir = &opts.runtime_dir;
        if !dir.is_dir() {
            return Err(X11Error::ServerStart(format!("the runtime directory {} does not exist", dir.display())));
        }
        ensure_socket_dir();
        let mut files = RuntimeFiles { paths: Vec::new(), dirs: Vec::new(), display: Vec::new(), number: None };
        let auth_path = dir.join("Xauthority");
        let cookie = Cookie::generate()?;
        // The server reads its cookie from this file at start; the display number in it does
        // not matter to the server, and it is rewritten for clients once known.
        files.paths.push(auth_path.clone());
        xauth::write_file(&auth_path, 0, &cookie)?;
        chown_to(&auth_path, &who)?;

        let procs = SessionProcesses::new(opts.containment);
        // The session program starts before the X server and waits for its display number on
        // stdin: its fork (and its move into the session's cgroup, which costs the kernel a
        // grace period of 7-16 ms when it is the first in a while) overlaps the server's start
        // instead of following it, and the server's move right after it is then nearly free.
        let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let mut session = match start_session(&opts, &who, &procs, &auth_path, ready_read) {
            Ok(s) => s,
            Err(e) => {
                procs.finish().await;
                return Err(e);
            }
        };
        let (mut x, number) = match start_x_server(&opts, &who, &procs, &auth_path, &mut files).await {
            Ok(started) => started,
            Err(e) => {
                // start_x_server ended every process of the set, the waiting session program too.
                let _ = session.child.wait().await;
                return Err(e);
            }
        };
        let x_pid = x.id().unwrap_or(0);
        files.number = Some(number);
        for path in [format!("/tmp/.X11-unix/X{number}"), format!("/tmp/.X{number}-lock")] {
            let path = PathBuf::from(path);
            if let Some(id) = identify(&path) {
                files.display.push((path, id));
            }
        }
        let display = XDisplay { name: format!(":{number}"), xauthority: Some(auth_path.clone()) };

        // The clients' cookie names the display; then the session program may go on.
        let released = xauth::write_file(&auth_path, number, &cookie)
            .and_then(|()| chown_to(&auth_path, &who))
            .and_then(|()| std::fs::File::from(ready_write).write_all(format!("{number}\n").as_bytes()));
        if let Err(e) = released {
            let _ = x.start_kill();
            procs.finish().await;
            let _ = x.wait().await;
            let _ = session.child.wait().await;
            return Err(X11Error::Session(format!("cannot start the session program on display :{number}: {e}")));
        }
        session.started = Instant::now();
        let session_pid = session.child.id().unwrap_or(0);
        let shown = display.name.as_str();
        tracing::info!(
            display = shown, server = opts.kind.name(), x_pid, session_pid, user = %who.user,
            mechanism = ?procs.mechanism(), "session X server started"
        );
        let mechanism = procs.mechanism();
        let stop = Arc::new(Notify::new());
        let (ended_tx, ended) = watch::channel(None);
        let watch = Watch {
            kind: opts.kind,
            display: display.name.clone(),
            x,
            session: session.child,
            program: session.program,
            runner: session.runner,
            session_log: session.log,
            started: session.started,
            procs,
            files,
            stop: Arc::clone(&stop),
            ended: ended_tx,
        };
        tokio::spawn(watch.run());
        Ok(SessionServer { kind: opts.kind, display, x_pid, session_pid, mechanism, stop, ended })
    }

    pub fn kind(&self) -> XServerKind {
        self.kind
    }

    /// The display (":N") and the Xauthority file with its cookie.
    pub fn display(&self) -> &XDisplay {
        &self.display
    }

    pub fn x_server_pid(&self) -> u32 {
        self.x_pid
    }

    pub fn session_pid(&self) -> u32 {
        self.session_pid
    }

    /// How the session's processes are kept together (a cgroup, or Unix sessions).
    pub fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// `Some` once every process of the session is gone: `UserLoggedOff` (the session program
    /// exited), `Failed` (the X server exited first, or the session program failed at once:
    /// the text names it, its exit status and the end of its log), `Terminated` (after
    /// [`terminate`](Self::terminate)).
    pub fn ended(&self) -> watch::Receiver<Option<DesktopEnd>> {
        self.ended.clone()
    }

    /// End every process of the session (logoff). Returns at once; idempotent.
    pub fn terminate(&self) {
        self.stop.notify_one();
    }

    /// Wait for the end (see [`ended`](Self::ended)).
    pub async fn wait(&self) -> DesktopEnd {
        let mut rx = self.ended.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(end) => end.clone().expect("waited for Some"),
            Err(_) => DesktopEnd::Failed("the session's supervisor is gone".into()),
        }
    }
}

impl Drop for SessionServer {
    /// Nobody can reach the session any more: end it rather than leave its processes behind.
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// Create /tmp/.X11-unix (sticky, world-writable) if missing: a server that is not root cannot.
fn ensure_socket_dir() {
    let dir = Path::new("/tmp/.X11-unix");
    if dir.exists() || !nix::unistd::geteuid().is_root() {
        return;
    }
    if std::fs::create_dir(dir).is_ok() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
    }
}

fn chown_to(path: &Path, who: &Identity) -> io::Result<()> {
    if who.switch.is_some() {
        std::os::unix::fs::chown(path, Some(who.uid()), Some(who.gid()))?;
    }
    Ok(())
}

/// A file the session's processes write to (a log), owned by the user so they can read it.
fn log_file(path: &Path, who: &Identity) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    chown_to(path, who)?;
    Ok(file)
}

/// The Xorg configuration: the dummy driver with video memory for the largest screen, a monitor
/// that accepts any mode, and a screen that starts at `size` (RandR resizes it later).
fn xorg_config(size: Size) -> String {
    let (w, h) = (u32::from(size.width.max(8)), u32::from(size.height.max(8)));
    let video_kib = MAX_SIDE * MAX_SIDE * 4 / 1024;
    // A mode of exactly the start size, with small blanking; the refresh is nominal.
    let (hs, he, ht) = (w + 8, w + 40, w + 80);
    let (vs, ve, vt) = (h + 1, h + 4, h + 10);
    let clock = f64::from(ht) * f64::from(vt) * 60.0 / 1e6;
    format!(
        r#"# Written by rdhost for one session; removed when it ends.
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AutoEnableDevices" "false"
    Option "DontVTSwitch" "true"
    Option "DontZap" "true"
EndSection

# No GLX: it maps Mesa's software renderer and libLLVM, ~54 MiB of a session's ~67 MiB, for a
# framebuffer in memory that no client can accelerate anyway. Every extension capture and input
# use (DAMAGE, MIT-SHM, XFIXES, XTEST, RANDR, XKEYBOARD) is built into the server.
Section "Module"
    Disable "glx"
EndSection

Section "Device"
    Identifier "rdhost-dummy"
    Driver "dummy"
    VideoRam {video_kib}
EndSection

Section "Monitor"
    Identifier "rdhost-monitor"
    HorizSync 1.0 - 10000.0
    VertRefresh 1.0 - 10000.0
    Modeline "{w}x{h}" {clock:.2} {w} {hs} {he} {ht} {h} {vs} {ve} {vt}
EndSection

Section "Screen"
    Identifier "rdhost-screen"
    Device "rdhost-dummy"
    Monitor "rdhost-monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Modes "{w}x{h}"
        Virtual {w} {h}
    EndSubSection
EndSection
"#
    )
}

/// The last lines of a log, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn start_x_server(
    opts: &SessionServerOptions,
    who: &Identity,
    procs: &SessionProcesses,
    auth_path: &Path,
    files: &mut RuntimeFiles,
) -> Result<(Child, u32), X11Error> {
    let dir = &opts.runtime_dir;
    let stderr_path = dir.join("xserver.log");
    let stderr = log_file(&stderr_path, who)?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let displayfd = write_end.as_raw_fd().to_string();
    let auth = auth_path.as_os_str().to_owned();
    let mut log_for_error = stderr_path.clone();

    let mut cmd = match opts.kind {
        XServerKind::XorgDummy => {
            let config = dir.join("xorg.conf");
            let configdir = dir.join("xorg.conf.d");
            let xorg_log = dir.join("Xorg.log");
            files.paths.push(config.clone());
            files.dirs.push(configdir.clone());
            std::fs::write(&config, xorg_config(opts.size))?;
            // Empty: the system's /etc/X11/xorg.conf.d (input drivers, a real card) is not ours.
            match std::fs::create_dir(&configdir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
            chown_to(&config, who)?;
            chown_to(&configdir, who)?;
            log_for_error = xorg_log.clone();
            let mut cmd = Command::new(XORG);
            cmd.arg("-config").arg(&config).arg("-configdir").arg(&configdir).arg("-logfile").arg(&xorg_log);
            // No VT of its own: it draws into memory, and must not take the console.
            cmd.args(["-novtswitch", "-sharevts"]);
            cmd
        }
        XServerKind::Xvfb => {
            let program = xvfb_path().ok_or_else(|| X11Error::NoXServer("Xvfb is not installed (not in PATH): install the package xvfb".into()))?;
            let max = opts.max_size.unwrap_or(Size::new(opts.size.width.max(XVFB_DEFAULT_MAX.width), opts.size.height.max(XVFB_DEFAULT_MAX.height)));
            let mut cmd = Command::new(program);
            cmd.arg("-screen").arg("0").arg(format!("{}x{}x24", max.width, max.height));
            // As for Xorg (see `xorg_config`): GLX would map Mesa and libLLVM, ~52 MiB.
            cmd.args(["-extension", "GLX"]);
            cmd
        }
    };
    cmd.args(["-nolisten", "tcp", "-noreset", "-displayfd", &displayfd]).arg("-auth").arg(&auth);
    let shell = who.login_shell();
    cmd.env_clear()
        .envs(process::session_env(who, &shell))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr.try_clone()?))
        .stderr(Stdio::from(stderr));
    let cwd = CString::new(dir.as_os_str().as_bytes()).map_err(|_| X11Error::ServerStart("the runtime directory's path contains a NUL byte".into()))?;
    let launch = Launch { switch: who.switch.clone(), cwd, controlling_tty: false, inherit_fds: vec![write_end.as_raw_fd()] };
    let name = opts.kind.name();
    let mut x = procs.spawn(cmd, launch).map_err(|e| X11Error::ServerStart(format!("cannot run {name}: {e}")))?;
    // Only the server may hold the write end: its exit must read as end of file here.
    drop(write_end);

    let number = tokio::select! {
        biased;
        n = read_display_number(read_end) => n,
        status = x.wait() => Err(match status {
            Ok(s) => format!("{name} exited at start ({})", describe(s)),
            Err(e) => format!("waiting for {name}: {e}"),
        }),
        () = tokio::time::sleep(START_TIMEOUT) => Err(format!("{name} reported no display number within {} s", START_TIMEOUT.as_secs())),
    };
    match number {
        Ok(n) => Ok((x, n)),
        Err(reason) => {
            let _ = x.start_kill();
            procs.finish().await;
            let _ = x.wait().await;
            let log = tail(&log_for_error, 15);
            let also = if log_for_error != stderr_path { format!("\n{}", tail(&stderr_path, 5)) } else { String::new() };
            Err(X11Error::ServerStart(format!("{reason}; the end of {}:\n{log}{also}", log_for_error.display())))
        }
    }
}

/// What `-displayfd` writes: the display number and a newline, once the server accepts clients.
async fn read_display_number(fd: OwnedFd) -> Result<u32, String> {
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).map_err(|e| format!("reading the display number: {e}"))?;
    let mut text = Vec::new();
    let mut buf = [0u8; 32];
    loop {
        let n = pipe.read(&mut buf).await.map_err(|e| format!("reading the display number: {e}"))?;
        if n == 0 {
            return Err("the X server closed -displayfd without a display number (it exited)".into());
        }
        text.extend_from_slice(&buf[..n]);
        if text.contains(&b'\n') || text.len() > 16 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&text);
    line.trim().parse().map_err(|_| format!("the X server sent {:?} for its display number", line.trim()))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// A started session program, and how to name it in messages.
struct SessionProgram {
    child: Child,
    /// "~/.xsession (/home/alice/.xsession)" or "the session command \"…\"".
    program: String,
    /// "run by /bin/bash -l -c as alice".
    runner: String,
    log: PathBuf,
    started: Instant,
}

/// The shell script that holds the session program until its display is up: it reads the
/// display number from stdin (the host writes it once the X server accepts clients; end of file
/// when the server failed), then becomes the user's login shell running the command. `sh` is
/// POSIX everywhere, whatever the user's own shell is.
const WAIT_FOR_DISPLAY: &str = r#"IFS= read -r n || exit 1; DISPLAY=":$n"; export DISPLAY; exec "$1" -l -c "$2" </dev/null"#;

/// The session program: `~/.xsession`, or the command, run by the user's login shell, started
/// waiting for its display number on `ready` (see [`WAIT_FOR_DISPLAY`]).
fn start_session(opts: &SessionServerOptions, who: &Identity, procs: &SessionProcesses, auth_path: &Path, ready: OwnedFd) -> Result<SessionProgram, X11Error> {
    let shell = who.login_shell();
    let xsession = who.home.join(".xsession");
    let own_script = opts.user_xsession && std::fs::metadata(&xsession).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let command: OsString = if own_script { "exec \"$HOME/.xsession\"".into() } else { opts.session_command.clone().into() };
    let what = if own_script { format!("~/.xsession ({})", xsession.display()) } else { format!("the session command {:?}", opts.session_command) };
    let runner = format!("run by {} -l -c as {}", shell.display(), who.user);

    let mut env = process::session_env(who, &shell);
    set_env(&mut env, "XAUTHORITY", auth_path);
    set_env(&mut env, "XDG_SESSION_TYPE", "x11");
    if let Some(dir) = &opts.xdg_runtime_dir {
        set_env(&mut env, "XDG_RUNTIME_DIR", dir.clone());
    }
    for (key, value) in &opts.env {
        set_env(&mut env, key, value);
    }
    let log_path = opts.runtime_dir.join("session.log");
    let log = log_file(&log_path, who)?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(WAIT_FOR_DISPLAY)
        .arg("rdhost-session")
        .arg(&shell)
        .arg(&command)
        .env_clear()
        .envs(env)
        .stdin(Stdio::from(ready))
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    let launch = Launch { switch: who.switch.clone(), cwd: who.home_cstring()?, controlling_tty: false, inherit_fds: Vec::new() };
    let child = procs.spawn(cmd, launch).map_err(|e| X11Error::Session(format!("cannot run {} -l -c {:?}: {e}", shell.display(), command)))?;
    Ok(SessionProgram { child, program: what, runner, log: log_path, started: Instant::now() })
}

/// Did a session program that ended with `status` after `ran` fail to start a session at all?
fn failed_at_once(status: ExitStatus, ran: Duration) -> bool {
    !status.success() && ran < QUICK_EXIT
}

/// The error for a session program that failed at once: what it was, how it ended, and the end
/// of its log (the log goes with the session's runtime directory, so it is quoted here).
fn quick_exit_message(program: &str, runner: &str, status: ExitStatus, ran: Duration, log: &Path) -> String {
    let tail = tail(log, LOG_TAIL_LINES);
    let log_part = if tail.is_empty() { format!("its log {} is empty", log.display()) } else { format!("the end of its log {}:\n{tail}", log.display()) };
    format!("the session program failed: {program} exited after {:.1} s with {} ({runner}); {log_part}", ran.as_secs_f32(), describe(status))
}

/// The task that owns the session's processes from start to end.
struct Watch {
    kind: XServerKind,
    display: String,
    x: Child,
    session: Child,
    /// How to name the session program in messages, and where its output goes.
    program: String,
    runner: String,
    session_log: PathBuf,
    /// When the session program started.
    started: Instant,
    procs: SessionProcesses,
    files: RuntimeFiles,
    stop: Arc<Notify>,
    ended: watch::Sender<Option<DesktopEnd>>,
}

impl Watch {
    async fn run(mut self) {
        // A session program that failed at once: its status and run time, for the message made
        // once every process is gone (its log is complete only then).
        let mut failed = None;
        let end = tokio::select! {
            // First: when both are done by now, the server's exit is the cause of the other.
            biased;
            status = self.x.wait() => {
                let how = status.map_or_else(|e| format!("cannot wait for it: {e}"), describe);
                let msg = format!("the X server ({}, display {}) exited: {how}", self.kind.name(), self.display);
                tracing::warn!("{msg}");
                DesktopEnd::Failed(msg)
            }
            status = self.session.wait() => {
                let ran = self.started.elapsed();
                match status {
                    Ok(status) if failed_at_once(status, ran) => {
                        failed = Some((status, ran));
                        DesktopEnd::Failed(String::new())
                    }
                    status => {
                        let how = status.map_or_else(|e| format!("cannot wait for it: {e}"), describe);
                        tracing::debug!(display = %self.display, status = %how, "session program exited");
                        DesktopEnd::UserLoggedOff
                    }
                }
            }
            () = self.stop.notified() => DesktopEnd::Terminated,
        };
        self.end_all().await;
        let end = match failed {
            Some((status, ran)) => {
                let msg = quick_exit_message(&self.program, &self.runner, status, ran, &self.session_log);
                // No fields after the message: they would trail its quoted log.
                tracing::warn!("{msg}");
                DesktopEnd::Failed(msg)
            }
            None => end,
        };
        drop(self.files);
        tracing::debug!(display = %self.display, ?end, "session X server ended");
        self.ended.send_replace(Some(end));
    }

    /// Every process of the session, the X server last: its clients get SIGHUP and a grace
    /// while their display is still up, then whatever is left is killed, then the server.
    async fn end_all(&mut self) {
        let keep: Vec<i32> = self.x.id().map(|p| p as i32).into_iter().collect();
        let deadline = Instant::now() + HANGUP_GRACE;
        self.procs.hang_up(&keep);
        let _ = tokio::time::timeout_at(deadline, self.session.wait()).await;
        if !self.procs.wait_gone(&keep, deadline).await {
            self.procs.kill_except(&keep);
            let _ = self.session.start_kill();
            self.procs.wait_gone(&keep, Instant::now() + Duration::from_secs(1)).await;
        }
        if let Some(pid) = self.x.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            let _ = tokio::time::timeout(SERVER_GRACE, self.x.wait()).await;
        }
        // SIGKILL to whatever is still there (the server too, if it ignored SIGTERM).
        self.procs.finish().await;
        let _ = self.x.wait().await;
        let _ = self.session.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// A private directory that removes itself (no dev-dependencies in this crate).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("rdhost-server-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_failure_soon_after_start_is_a_failed_session_and_a_zero_status_a_logoff() {
        let code = |c: i32| ExitStatus::from_raw(c << 8);
        let killed = ExitStatus::from_raw(libc::SIGSEGV);
        assert!(failed_at_once(code(3), Duration::from_millis(50)));
        assert!(failed_at_once(killed, Duration::from_secs(1)));
        assert!(!failed_at_once(code(0), Duration::from_millis(50)), "a quick exit 0 is a logoff");
        assert!(!failed_at_once(code(1), QUICK_EXIT + Duration::from_secs(1)), "a failure later is a logoff");

        let dir = TempDir::new();
        let log = dir.path().join("session.log");
        std::fs::write(&log, "line 1\n\nxmessage: cannot open display\nicewm: no theme\n").unwrap();
        let msg = quick_exit_message("the session command \"x\"", "run by /bin/sh -l -c as alice", code(3), Duration::from_millis(120), &log);
        assert!(
            msg.starts_with("the session program failed: the session command \"x\" exited after 0.1 s with exit status 3 (run by /bin/sh -l -c as alice); the end of its log"),
            "{msg}"
        );
        assert!(msg.ends_with("line 1\nxmessage: cannot open display\nicewm: no theme"), "{msg}");
        let msg = quick_exit_message("p", "run by /bin/sh -l -c as alice", killed, Duration::ZERO, &dir.path().join("missing.log"));
        assert!(msg.contains("killed by SIGSEGV") && msg.contains("is empty"), "{msg}");
    }

    /// An X server to test with, or `None` (then skipped, except under CI).
    fn x_server() -> Option<XServerKind> {
        match find_x_server(XServerPreference::Auto) {
            Ok(kind) => Some(kind),
            Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
            Err(e) => {
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    fn runtime_dir() -> TempDir {
        TempDir::new()
    }

    async fn end_of(opts: SessionServerOptions) -> DesktopEnd {
        let server = tokio::time::timeout(Duration::from_secs(20), SessionServer::start(opts)).await.expect("starts in time").expect("starts");
        tokio::time::timeout(Duration::from_secs(20), server.wait()).await.expect("ends in time")
    }

    /// Every installed kind of session server starts without GLX (Mesa and libLLVM, most of its
    /// memory) and with every extension capture and input need.
    #[tokio::test]
    async fn session_servers_run_without_glx_and_with_what_capture_and_input_use() {
        let kinds: Vec<XServerKind> = [XServerPreference::XorgDummy, XServerPreference::Xvfb]
            .into_iter()
            .filter_map(|pref| find_x_server(pref).ok())
            .collect();
        if kinds.is_empty() && x_server().is_none() {
            return;
        }
        for kind in kinds {
            let dir = runtime_dir();
            let mut opts = SessionServerOptions::new(kind, Size::new(800, 600), dir.path().to_owned());
            opts.user_xsession = false;
            opts.session_command = "exec sleep 1000".into();
            let server = tokio::time::timeout(Duration::from_secs(20), SessionServer::start(opts)).await.expect("starts in time").expect("starts");
            // `connect` fails naming any extension capture needs that is missing.
            let connected = crate::x11::display::connect(server.display()).expect("connects with every extension capture needs");
            let listed = x11rb::protocol::xproto::ConnectionExt::list_extensions(&connected.conn).expect("asks").reply().expect("lists extensions");
            let names: Vec<String> = listed
                .names
                .iter()
                .map(|n| String::from_utf8_lossy(&n.name).into_owned())
                .collect();
            assert!(names.iter().any(|n| n == "XKEYBOARD"), "{}: no XKEYBOARD in {names:?}", kind.name());
            assert!(!names.iter().any(|n| n == "GLX"), "{}: GLX is loaded: {names:?}", kind.name());
            drop(connected);
            server.terminate();
            tokio::time::timeout(Duration::from_secs(20), server.wait()).await.expect("ends in time");
        }
    }

    #[tokio::test]
    async fn a_session_command_that_fails_at_once_names_itself_its_status_and_its_log() {
        let Some(kind) = x_server() else { return };
        let dir = runtime_dir();
        let mut opts = SessionServerOptions::new(kind, Size::new(800, 600), dir.path().to_owned());
        opts.user_xsession = false;
        opts.session_command = "echo 'no window manager here' >&2; exit 3".into();
        match end_of(opts).await {
            DesktopEnd::Failed(msg) => {
                eprintln!("{msg}");
                assert!(msg.contains("the session command \"echo 'no window manager here' >&2; exit 3\""), "{msg}");
                assert!(msg.contains("exit status 3"), "{msg}");
                assert!(msg.ends_with("no window manager here"), "{msg}");
            }
            other => panic!("ended with {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_xsession_the_user_cannot_run_fails_the_session() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not root (the session must run as another user)");
            return;
        }
        let Some(kind) = x_server() else { return };
        let dir = runtime_dir();
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        // nobody's home is root's and closed to them: the ~/.xsession in it is executable (so
        // it is chosen), but they cannot reach it.
        let home = TempDir::new();
        let xsession = home.path().join(".xsession");
        std::fs::write(&xsession, "#!/bin/sh\nexec sleep 1000\n").unwrap();
        std::fs::set_permissions(&xsession, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut opts = SessionServerOptions::new(kind, Size::new(800, 600), dir.path().to_owned());
        opts.run_as = Some(RunAs { user: "nobody".into(), uid: 65534, gid: 65534, home: home.path().to_owned(), shell: "/bin/sh".into() });
        match end_of(opts).await {
            DesktopEnd::Failed(msg) => {
                eprintln!("{msg}");
                assert!(msg.contains(&format!("~/.xsession ({}) exited", xsession.display())) && msg.contains("as nobody)"), "{msg}");
                assert!(msg.contains("exit status 126") || msg.contains("exit status 127"), "{msg}");
                assert!(msg.contains("Permission denied") || msg.contains("not found") || msg.contains("No such file"), "{msg}");
            }
            other => panic!("ended with {other:?}"),
        }
    }
}
