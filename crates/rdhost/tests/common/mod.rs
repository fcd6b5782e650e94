//! Test harness: a real `rdhost serve` process on 127.0.0.1 with an ephemeral port and its own
//! state directory, killed (and its sessions with it) when the handle drops.
#![allow(dead_code)] // each test binary uses a different part
pub mod sharer;
pub mod xfreerdp;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rdhost");

pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    pub state: tempfile::TempDir,
    /// Everything the host wrote to stderr so far (its log).
    log: Arc<Mutex<String>>,
}

impl Host {
    /// Start a host with `users` (name, password) in its users file and `config` as its TOML
    /// config file (may be empty).
    pub fn start(users: &[(&str, &str)], config: &str) -> Host {
        Self::start_with(users, config, false)
    }

    /// Like [`Host::start`], with NT hashes stored for every user, so NLA is offered.
    pub fn start_nla(users: &[(&str, &str)], config: &str) -> Host {
        Self::start_with(users, config, true)
    }

    fn start_with(users: &[(&str, &str)], config: &str, nt_hashes: bool) -> Host {
        clear_stale_pyenv_lock();
        let state = tempfile::tempdir().expect("temp state dir");
        for (name, password) in users {
            add_user(state.path(), name, password, nt_hashes);
        }
        let config_path = state.path().join("rdhost.toml");
        std::fs::write(&config_path, config).unwrap();
        // Each host its own control socket: tests run side by side. The state directory is
        // private (0700), so the socket lives beside it, where other users may reach it.
        let socket = control_socket_for(state.path());
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state.path())
            .arg("--config")
            .arg(&config_path)
            .arg("--control-socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rdhost serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("rdhost listening on ") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("rdhost did not start; its log:\n{}", log.lock().unwrap());
            }
        };
        Host { child, addr, state, log }
    }

    /// The host's control socket.
    pub fn socket(&self) -> PathBuf {
        control_socket_for(self.state.path())
    }

    /// Run `rdhost ARGS --socket <this host's>` and return (exit code, stdout, stderr).
    pub fn control(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .env_remove("RDHOST_CONTROL_SOCKET")
            .stdin(Stdio::null())
            .output()
            .expect("run the rdhost CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `rdhost query session --json`, parsed.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.control(&["query", "session", "--json"]);
        assert_eq!(code, 0, "query session failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("query session --json printed no JSON ({e}): {out}"))
    }

    /// The state of session `id` as `query session` reports it (None: no such session).
    pub fn state_of(&self, id: u32) -> Option<String> {
        self.sessions().into_iter().find(|s| s["id"] == id).map(|s| s["state"].as_str().unwrap().to_owned())
    }

    /// Wait until session `id` is in `state` (None: gone).
    pub fn wait_state(&self, id: u32, state: Option<&str>, timeout: Duration) -> bool {
        wait_until(timeout, || self.state_of(id).as_deref() == state)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle` (the host logs asynchronously).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Follow `rdhost events --json` in the background.
    pub fn events(&self) -> EventStream {
        EventStream::follow(Command::new(BIN).args(["events", "--json", "--socket"]).arg(self.socket()))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client config for this host.
    pub fn client(&self, user: &str, password: &str) -> rdhost_client::ClientConfig {
        let mut cfg = rdhost_client::ClientConfig::new(self.addr, user, password);
        cfg.width = 1024;
        cfg.height = 768;
        cfg.connect_timeout = Duration::from_secs(30);
        cfg
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        let status = self.terminate();
        status
    }

    fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Sessions of root run root's login shell; on machines where it runs `pyenv init`, a shell
/// killed while starting leaves pyenv's lock behind and every later login shell waits 60 s for
/// it. A lock older than a minute is stale: remove it.
fn clear_stale_pyenv_lock() {
    let Some(home) = std::env::var_os("HOME") else { return };
    let lock = Path::new(&home).join(".pyenv/shims/.pyenv-shim");
    let stale = std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60));
    if stale {
        let _ = std::fs::remove_file(&lock);
    }
}

/// Where a host with state directory `state` keeps its control socket in tests.
pub fn control_socket_for(state: &Path) -> PathBuf {
    let name = state.file_name().unwrap().to_string_lossy().into_owned();
    std::env::temp_dir().join(format!("rdhost-test-sockets/{name}/control.sock"))
}

pub fn add_user(state: &Path, name: &str, password: &str, nt_hash: bool) {
    add_user_with(state, name, password, if nt_hash { &["--nt-hash"] } else { &[] });
}

/// `rdhost user add NAME EXTRA...` with the password on stdin. As root, without a
/// `--system-user` in EXTRA, the account runs its sessions as root, said explicitly (as root
/// `user add` refuses to pick that itself): the tests' sessions are the test user's own.
pub fn add_user_with(state: &Path, name: &str, password: &str, extra: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0 && !extra.contains(&"--system-user");
    let mut child = Command::new(BIN)
        .args(["user", "add", name, "--state-dir"])
        .arg(state)
        .args(extra)
        .args(if as_root { &["--system-user", "root"][..] } else { &[] })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("rdhost user add");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success(), "rdhost user add {name} failed");
}

/// A token that only appears on screen when the shell evaluated it (the typed command line
/// holds `$((a*b))`, the output holds the product).
pub fn shell_token() -> (String, String) {
    // Different for every call of a test process: a token already on screen proves nothing.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let a = 1000 + (std::process::id() % 9000);
    let b = 7 + CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 90;
    (format!("echo x$(({a}*{b}))y\n"), format!("x{}y", a * b))
}

/// Is `text` on the client's screen, drawn by the terminal desktop's font?
pub fn on_screen(client: &rdhost_client::Client, text: &str) -> bool {
    rdhost_desktop::terminal::find_text(client.rgba(), client.width().into(), client.height().into(), 16.0, text)
        .is_some()
}

pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("rdhost-test-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A workspace binary built next to `rdhost` (the test programs of crates/xprobe).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = Path::new(BIN).with_file_name(name);
    assert!(path.exists(), "{} is missing: build the workspace first (cargo build --workspace)", path.display());
    path
}

/// X servers started by this host (children of its sessions), oldest first.
pub fn x_servers_of(host: &Host) -> Vec<u32> {
    // (start time, pid, parent pid)
    let mut found: Vec<(u64, u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        let (ppid, start): (u32, u64) = (fields[1].parse().unwrap_or(0), fields[19].parse().unwrap_or(0));
        let comm = &stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()];
        if (comm == "Xorg" || comm == "Xvfb") && is_descendant(ppid, host.pid()) {
            found.push((start, pid, ppid));
        }
    }
    // An X server forks to run xkbcomp (a layout change): until it execs, the child is "Xorg" too.
    let servers: Vec<u32> = found.iter().map(|f| f.1).collect();
    found.retain(|f| !servers.contains(&f.2));
    found.sort();
    found.into_iter().map(|(_, pid, _)| pid).collect()
}

fn is_descendant(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..10 {
        if pid == ancestor {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return false };
        pid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    }
    false
}

/// Poll `done` every 50 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `… events --json` command followed in the background (the host's or a sharer's); the
/// events so far. The follower is killed on drop.
pub struct EventStream {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl EventStream {
    /// Start following; returns once the follower had time to subscribe.
    pub fn follow(command: &mut Command) -> EventStream {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the events follower");
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                // A line that is not JSON is kept as a string: the test's assertion shows it.
                let event = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
                sink.lock().unwrap().push(event);
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        EventStream { child, lines }
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until some event satisfies `pred`; returns it.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.lines.lock().unwrap().iter().find(|e| pred(e)).cloned();
            found.is_some()
        });
        found
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The colour of `rdhost-xrecorder`'s window before any key press, and after the first.
pub const RECORDER_IDLE: [u8; 3] = [0x33, 0x66, 0xcc];
pub const RECORDER_PRESSED: [u8; 3] = [0xcc, 0x66, 0x33];

/// A session command running `rdhost-xrecorder` (a full-screen window that logs its input) with
/// its log at `dir/recorder.log`, returned with the command. The log and `dir` are
/// world-writable/readable: the session may run as another user than the test.
pub fn recorder_command(dir: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("recorder.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let command = format!("exec {} --override-redirect > {} 2>&1", workspace_bin("rdhost-xrecorder").display(), log.display());
    (log, command)
}
