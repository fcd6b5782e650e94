//! A real `rdhost serve` on 127.0.0.1 with an ephemeral port, its own state directory and its
//! own control socket (in that directory: as root the default /run/rdhost/control.sock would
//! collide with any other host on the machine). Dropping the handle stops it (SIGTERM, then
//! SIGKILL), kills any of its descendants that outlived it, and removes the state directory.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};

use crate::procfs;

/// Lines of the host's log kept for error messages.
const LOG_LINES: usize = 200;

pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    socket: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// A fresh directory under the system temp dir (removed by [`Host`]'s drop).
pub(crate) fn make_dir(label: &str) -> Result<PathBuf> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("rdhost-bench-{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

pub fn add_users(bin: &Path, state: &Path, users: &[(String, String)]) -> Result<()> {
    // One after the other: each rewrites the users file.
    for (name, password) in users {
        // As root, `user add` wants the system account named: the benchmark's sessions run as
        // root then (not root, the host's own user, and this is ignored).
        let mut child = Command::new(bin)
            .args(["user", "add", name, "--system-user", "root", "--state-dir"])
            .arg(state)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {} user add", bin.display()))?;
        writeln!(child.stdin.take().unwrap(), "{password}")?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("rdhost user add {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

impl Host {
    /// Start a host with `users` (name, password) and `config` as its TOML config file.
    pub fn start(bin: &Path, label: &str, users: &[(String, String)], config: &str) -> Result<Host> {
        let dir = make_dir(label)?;
        // From here on the directory is removed on error too.
        let cleanup = DirGuard(Some(dir.clone()));
        add_users(bin, &dir, users)?;
        let config_path = dir.join("rdhost.toml");
        std::fs::write(&config_path, config)?;
        let socket = dir.join("control.sock");
        // sun_path holds 108 bytes; a long $TMPDIR would make bind fail with a vaguer error.
        if socket.as_os_str().len() > 100 {
            bail!("the control socket path {} is too long for a Unix socket: set TMPDIR to a shorter directory", socket.display());
        }
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(&dir)
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
            .with_context(|| format!("start {} serve", bin.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (control_tx, control_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("rdhost listening on ") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>());
                }
                // Printed once the control socket is bound (after the listen address).
                if line.starts_with("control socket: ") {
                    let _ = control_tx.send(());
                }
            }
        });
        let mut host = Host { child, addr: "127.0.0.1:0".parse().unwrap(), dir, socket, log };
        std::mem::forget(cleanup); // the host owns the directory now
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addr)) => host.addr = addr,
            Ok(Err(e)) => bail!("rdhost printed a bad listen address: {e}\n{}", host.log()),
            Err(_) => bail!("rdhost did not print its listen address within 60 s; its log:\n{}", host.log()),
        }
        if control_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            bail!("rdhost did not open its control socket {} within 30 s; its log:\n{}", host.socket.display(), host.log());
        }
        Ok(host)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's control socket (`rdhost serve --control-socket`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The last lines of the host's log.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().iter().map(|l| format!("{l}\n")).collect()
    }

    pub fn check_running(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("rdhost exited ({status}); its log:\n{}", self.log());
        }
        Ok(())
    }

    pub fn client(&self, user: &str, password: &str) -> rdhost_client::ClientConfig {
        let mut cfg = rdhost_client::ClientConfig::new(self.addr, user, password);
        cfg.width = 1024;
        cfg.height = 768;
        cfg.connect_timeout = Duration::from_secs(30);
        cfg.client_name = "rdhost-bench".into();
        cfg
    }

    fn stop(&mut self) {
        stop_tree(&mut self.child, "rdhost");
    }
}

/// Stop a server process and everything it started: SIGTERM, SIGKILL after 10 s, then SIGKILL
/// for whatever of its descendants (as they were before the signal) outlived it by 3 s — each
/// matched by pid *and* start time, so never a recycled pid.
pub fn stop_tree(child: &mut Child, name: &str) {
    let pid = child.id();
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let descendants: Vec<(u32, u64)> = procfs::descendants(pid)
        .into_iter()
        .filter_map(|p| procfs::start_time(p).map(|t| (p, t)))
        .collect();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !exited {
        eprintln!("rdhost-bench: {name} ({pid}) ignored SIGTERM for 10 s; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
    // Give its children a moment to see it gone, then kill what is left.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<u32> = descendants
            .iter()
            .filter(|(p, t)| procfs::start_time(*p) == Some(*t))
            .map(|(p, _)| *p)
            .collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("rdhost-bench: {} processes outlived {name}; killing them", left.len());
            for p in left {
                let _ = Command::new("kill").args(["-KILL", &p.to_string()]).status();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scratch directory of the benchmark's own (not a host's), removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> Result<ScratchDir> {
        make_dir(label).map(ScratchDir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
