//! A session's own X server and session program, for each kind of server: it admits only its
//! cookie, picks a free display, and every way the session ends leaves no process behind.
//! A kind that is not installed is skipped, unless `CI` is set (then it fails).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdhost_desktop::process::{Mechanism, is_alive};
use rdhost_desktop::x11::XDisplay;
use rdhost_desktop::x11::server::{SessionServer, SessionServerOptions, XServerKind, XServerPreference, find_x_server};
use rdhost_desktop::x11::xauth::{Cookie, read_cookie};
use rdhost_desktop::{DesktopEnd, RunAs, Size};
use x11rb::connection::Connection;
use x11rb::rust_connection::{DefaultStream, RustConnection};

const WAIT: Duration = Duration::from_secs(20);

/// The kinds to test: installed ones, or all of them under CI (where a missing one must fail).
fn kinds() -> Vec<XServerKind> {
    let ci = std::env::var_os("CI").is_some();
    [(XServerPreference::XorgDummy, XServerKind::XorgDummy), (XServerPreference::Xvfb, XServerKind::Xvfb)]
        .into_iter()
        .filter_map(|(pref, kind)| match find_x_server(pref) {
            Ok(found) => {
                assert_eq!(found, kind);
                Some(kind)
            }
            Err(e) if ci => panic!("{e}"),
            Err(e) => {
                eprintln!("skipping {}: {e}", kind.name());
                None
            }
        })
        .collect()
}

/// A private runtime directory that removes itself.
struct RuntimeDir(PathBuf);

impl RuntimeDir {
    fn new(name: &str) -> RuntimeDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rdhost-xserver-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        RuntimeDir(dir)
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(kind: XServerKind, dir: &RuntimeDir, command: &str) -> SessionServerOptions {
    let mut opts = SessionServerOptions::new(kind, Size::new(1024, 768), dir.0.clone());
    opts.session_command = command.into();
    opts.user_xsession = false;
    opts
}

async fn start(kind: XServerKind, dir: &RuntimeDir, command: &str) -> SessionServer {
    match tokio::time::timeout(WAIT, SessionServer::start(options(kind, dir, command))).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => panic!("{} did not start: {e}", kind.name()),
        Err(_) => panic!("{} took too long to start", kind.name()),
    }
}

async fn ended(server: &SessionServer) -> DesktopEnd {
    tokio::time::timeout(WAIT, server.wait()).await.expect("the session did not end in time")
}

/// Connect to the display's socket with `cookie` (or none).
fn connect(display: &XDisplay, cookie: Option<&Cookie>) -> Result<RustConnection, String> {
    let number = display.number().unwrap();
    let socket = UnixStream::connect(format!("/tmp/.X11-unix/X{number}")).map_err(|e| e.to_string())?;
    let (stream, _) = DefaultStream::from_unix_stream(socket).map_err(|e| e.to_string())?;
    let (name, data) = cookie.map_or((Vec::new(), Vec::new()), |c| (c.name.clone(), c.data.clone()));
    RustConnection::connect_to_stream_with_auth_info(stream, 0, name, data).map_err(|e| e.to_string())
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

fn gone(pid: u32) -> bool {
    !is_alive(pid as i32)
}

#[tokio::test]
async fn each_kind_admits_only_its_cookie_and_ends_clean() {
    for kind in kinds() {
        let dir = RuntimeDir::new("cookie");
        let server = start(kind, &dir, "sleep 1000").await;
        let display = server.display().clone();
        let auth = display.xauthority.clone().unwrap();
        assert!(auth.starts_with(&dir.0));
        assert_eq!(std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777, 0o600);
        let cookie = read_cookie(&auth, display.number().unwrap()).unwrap().expect("a cookie for the display");

        let conn = connect(&display, Some(&cookie)).unwrap_or_else(|e| panic!("{}: with the cookie: {e}", kind.name()));
        let screen = &conn.setup().roots[0];
        let size = (screen.width_in_pixels, screen.height_in_pixels);
        match kind {
            XServerKind::XorgDummy => assert_eq!(size, (1024, 768), "Xorg starts at the size asked for"),
            // Xvfb starts at its maximum (the caller shrinks it with RandR).
            XServerKind::Xvfb => assert_eq!(size, (1920, 1200)),
        }
        drop(conn);
        assert!(connect(&display, None).is_err(), "{}: a client without the cookie was let in", kind.name());
        let wrong = Cookie::generate().unwrap();
        assert!(connect(&display, Some(&wrong)).is_err(), "{}: a client with a wrong cookie was let in", kind.name());

        let (x, session) = (server.x_server_pid(), server.session_pid());
        assert!(!gone(x) && !gone(session));
        server.terminate();
        assert_eq!(ended(&server).await, DesktopEnd::Terminated);
        assert!(gone(x), "{}: the X server outlived the session", kind.name());
        assert!(gone(session), "{}: the session program outlived the session", kind.name());
        assert!(!auth.exists(), "the Xauthority file was left behind");
        assert!(!dir.0.join("xorg.conf").exists(), "the Xorg configuration was left behind");
        let number = display.number().unwrap();
        let lock = std::fs::read_to_string(format!("/tmp/.X{number}-lock")).ok().and_then(|s| s.trim().parse::<u32>().ok());
        assert_ne!(lock, Some(x), "the server's lock file was left behind");
        let socket = format!("/tmp/.X11-unix/X{number}");
        assert!(UnixStream::connect(&socket).is_ok() || !Path::new(&socket).exists(), "the server's socket {socket} was left behind");
    }
}

#[tokio::test]
async fn concurrent_starts_get_distinct_displays() {
    for kind in kinds() {
        let dirs = [RuntimeDir::new("many"), RuntimeDir::new("many"), RuntimeDir::new("many")];
        let (a, b, c) = tokio::join!(start(kind, &dirs[0], "sleep 1000"), start(kind, &dirs[1], "sleep 1000"), start(kind, &dirs[2], "sleep 1000"));
        let mut numbers: Vec<u32> = [&a, &b, &c].iter().map(|s| s.display().number().unwrap()).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), 3, "{}: displays {:?} {:?} {:?}", kind.name(), a.display(), b.display(), c.display());
        for server in [&a, &b, &c] {
            server.terminate();
        }
        for server in [&a, &b, &c] {
            assert_eq!(ended(server).await, DesktopEnd::Terminated);
            assert!(gone(server.x_server_pid()));
        }
    }
}

#[tokio::test]
async fn the_session_program_exiting_is_a_logoff() {
    for kind in kinds() {
        let dir = RuntimeDir::new("logoff");
        // Output goes to the session log; the environment is the one asked for.
        let server = start(kind, &dir, "echo \"display=$DISPLAY type=$XDG_SESSION_TYPE\"; sleep 0.3").await;
        let x = server.x_server_pid();
        assert_eq!(ended(&server).await, DesktopEnd::UserLoggedOff);
        assert!(gone(x), "{}: the X server outlived the session program", kind.name());
        let log = std::fs::read_to_string(dir.0.join("session.log")).unwrap();
        assert!(log.contains(&format!("display={} type=x11", server.display().name)), "session.log: {log}");
    }
}

#[tokio::test]
async fn the_x_server_dying_fails_the_session_and_ends_it() {
    for kind in kinds() {
        let dir = RuntimeDir::new("crash");
        let server = start(kind, &dir, "sleep 1000").await;
        let (x, session) = (server.x_server_pid(), server.session_pid());
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(x as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        match ended(&server).await {
            DesktopEnd::Failed(msg) => {
                assert!(msg.contains("X server") && msg.contains(kind.name()) && msg.contains(&server.display().name), "{msg}");
                assert!(msg.contains("SIGKILL"), "{msg}");
            }
            other => panic!("{}: ended with {other:?}", kind.name()),
        }
        assert!(gone(session), "{}: the session program outlived its X server", kind.name());
        let number = server.display().number().unwrap();
        let socket = format!("/tmp/.X11-unix/X{number}");
        // Another server may have taken the number since; then the socket is a live one.
        let taken = UnixStream::connect(&socket).is_ok();
        assert!(taken || !Path::new(&socket).exists(), "the killed server's socket {socket} was left behind");
    }
}

#[tokio::test]
async fn processes_that_left_the_unix_session_end_at_terminate() {
    for kind in kinds() {
        let dir = RuntimeDir::new("setsid");
        let pidfile = dir.0.join("escaped");
        let command = format!("setsid sh -c 'echo $$ > {}; exec sleep 1000' & exec sleep 1000", pidfile.display());
        let server = start(kind, &dir, &command).await;
        let mut escaped = None;
        for _ in 0..500 {
            escaped = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<i32>().ok());
            if escaped.is_some_and(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let escaped = escaped.expect("the setsid sleep did not start");
        let mechanism = server.mechanism().clone();
        server.terminate();
        assert_eq!(ended(&server).await, DesktopEnd::Terminated);
        let alive = is_alive(escaped);
        if alive {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(escaped), nix::sys::signal::Signal::SIGKILL);
        }
        match mechanism {
            Mechanism::Cgroup(cgroup) => {
                assert!(!alive, "{}: the setsid sleep {escaped} outlived the session", kind.name());
                assert!(!cgroup.exists(), "the session cgroup {} was left behind", cgroup.display());
            }
            // Without a cgroup nothing can find it; only root on a cgroup v2 hierarchy has one.
            Mechanism::ProcessSessions => assert!(!nix::unistd::geteuid().is_root() || std::env::var_os("CI").is_none(), "no cgroup under CI as root"),
        }
    }
}

#[tokio::test]
async fn as_root_the_server_and_session_run_as_the_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: the host is not root");
        return;
    }
    for kind in kinds() {
        let dir = RuntimeDir::new("user");
        std::os::unix::fs::chown(&dir.0, Some(65534), Some(65534)).unwrap();
        let mut opts = options(kind, &dir, "id -u; sleep 1000");
        opts.run_as = Some(RunAs { user: "nobody".into(), uid: 65534, gid: 65534, home: dir.0.clone(), shell: "/bin/sh".into() });
        let server = tokio::time::timeout(WAIT, SessionServer::start(opts)).await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
        assert_eq!(uid_of(server.x_server_pid()), Some(65534), "{}: the X server is not the user's", kind.name());
        assert_eq!(uid_of(server.session_pid()), Some(65534), "the session program is not the user's");
        let auth = server.display().xauthority.clone().unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&auth).unwrap().uid(), 65534, "the user cannot read their Xauthority");
        let cookie = read_cookie(&auth, server.display().number().unwrap()).unwrap().unwrap();
        connect(server.display(), Some(&cookie)).unwrap();
        server.terminate();
        assert_eq!(ended(&server).await, DesktopEnd::Terminated);
        assert!(gone(server.x_server_pid()));
    }
}

#[tokio::test]
async fn a_missing_runtime_directory_is_an_error() {
    for kind in kinds() {
        let opts = SessionServerOptions::new(kind, Size::new(800, 600), "/nonexistent/rdhost-runtime".into());
        let err = SessionServer::start(opts).await.err().expect("started without a runtime directory");
        assert!(err.to_string().contains("/nonexistent/rdhost-runtime"), "{err}");
    }
}

#[test]
fn auto_prefers_xorg_with_the_dummy_driver() {
    let xorg = find_x_server(XServerPreference::XorgDummy).is_ok();
    match find_x_server(XServerPreference::Auto) {
        Ok(kind) => assert_eq!(kind == XServerKind::XorgDummy, xorg),
        Err(e) => {
            assert!(!xorg);
            let text = e.to_string();
            assert!(text.contains("xserver-xorg-video-dummy") && text.contains("xvfb"), "{text}");
        }
    }
}

async fn wait_gone(pids: &[u32]) -> bool {
    for _ in 0..500 {
        if pids.iter().all(|&p| gone(p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn dropping_the_server_ends_the_session() {
    for kind in kinds() {
        let dir = RuntimeDir::new("drop");
        // An odd width, as clients ask for (1366 is a common laptop width).
        let mut opts = options(kind, &dir, "sleep 1000 & exec sleep 1000");
        opts.size = Size::new(1366, 768);
        let server = tokio::time::timeout(WAIT, SessionServer::start(opts)).await.unwrap().unwrap();
        if kind == XServerKind::XorgDummy {
            let cookie = read_cookie(server.display().xauthority.as_ref().unwrap(), server.display().number().unwrap()).unwrap().unwrap();
            let conn = connect(server.display(), Some(&cookie)).unwrap();
            let screen = &conn.setup().roots[0];
            assert_eq!((screen.width_in_pixels, screen.height_in_pixels), (1366, 768));
        }
        let pids = [server.x_server_pid(), server.session_pid()];
        let auth = server.display().xauthority.clone().unwrap();
        drop(server);
        assert!(wait_gone(&pids).await, "{}: processes outlived their dropped server: {pids:?}", kind.name());
        for _ in 0..100 {
            if !auth.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!auth.exists(), "the Xauthority file outlived the dropped server");
    }
}

/// The runtime shutting down mid-session drops the supervising task: its guard kills everything.
#[test]
fn a_runtime_shutting_down_leaves_no_process() {
    for kind in kinds() {
        let dir = RuntimeDir::new("runtime");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (server, members) = runtime.block_on(async {
            let server = start(kind, &dir, "sleep 1000 & exec sleep 1000").await;
            // Wait for the background sleep, so there is a process only the guard can reach.
            let mut members = Vec::new();
            for _ in 0..500 {
                members = match server.mechanism() {
                    Mechanism::Cgroup(cgroup) => std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap().lines().map(|l| l.parse::<u32>().unwrap()).collect(),
                    Mechanism::ProcessSessions => rdhost_desktop::process::session_members(server.session_pid() as i32).into_iter().map(|p| p as u32).collect(),
                };
                if members.len() >= 3 || (matches!(server.mechanism(), Mechanism::ProcessSessions) && members.len() >= 2) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (server, members)
        });
        let pids = [server.x_server_pid(), server.session_pid()];
        drop(runtime);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline && !pids.iter().chain(&members).all(|&p| gone(p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(pids.iter().chain(&members).all(|&p| gone(p)), "{}: left after the runtime went: {pids:?} {members:?}", kind.name());
        drop(server);
    }
}
