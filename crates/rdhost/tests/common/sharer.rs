//! A real `rdhost share start` process on 127.0.0.1 (an ephemeral port), sharing a command in
//! the built-in terminal desktop, with its own control socket and state; killed on drop.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BIN, EventStream, wait_until};

/// What the shared shell prints first: on an attendee's screen, the picture has arrived.
pub const READY: &str = "shared-shell-ready";

pub struct Sharer {
    child: Child,
    /// The first line of its output: the invitation's connection string.
    pub invitation: String,
    /// Where it listens (None with --no-listen).
    pub addr: Option<SocketAddr>,
    pub password: String,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

impl Sharer {
    /// Share `sh` (an interactive shell) with invitation password `password`; `extra` are more
    /// `share start` flags (`--auto-grant view`, `--attendee-limit 1`, `--no-listen`, …).
    pub fn start(password: &str, extra: &[&str]) -> Sharer {
        Self::start_command(&format!("echo {READY}; exec sh"), password, extra)
    }

    pub fn start_command(command: &str, password: &str, extra: &[&str]) -> Sharer {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let listen: &[&str] = if extra.contains(&"--no-listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        let mut child = Command::new(BIN)
            .args(["share", "start", "--command", command, "--password", password, "--control"])
            .arg(dir.path().join("share.sock"))
            .args(listen)
            .args(extra)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_RUNTIME_DIR", &run)
            .env_remove("RDHOST_CONTROL_SOCKET")
            .env_remove("DISPLAY")
            .env("NO_COLOR", "1")
            .env("PS1", "$ ")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rdhost share start");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
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
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(first) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let invitation = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rdhost share start printed no invitation; its log:\n{}", log.lock().unwrap());
            }
        };
        let addr = if listen.is_empty() { None } else { Some(listener_of(&invitation)) };
        // The control socket is bound right after the invitation is printed.
        let socket = dir.path().join("share.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Sharer { child, invitation, addr, password: password.to_owned(), dir, log }
    }

    pub fn control_path(&self) -> PathBuf {
        self.dir.path().join("share.sock")
    }

    /// Write the invitation where xfreerdp takes it (`.msrcIncident`).
    pub fn invitation_file(&self) -> PathBuf {
        let path = self.dir.path().join("inv.msrcIncident");
        std::fs::write(&path, format!("{}\n", self.invitation)).unwrap();
        path
    }

    /// `rdhost share ARGS --control <this sharer's>`: (exit code, stdout, stderr).
    pub fn share(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .arg("share")
            .args(args)
            .arg("--control")
            .arg(self.control_path())
            .stdin(Stdio::null())
            .output()
            .expect("run rdhost share");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `share attendees --json`.
    pub fn attendees(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.share(&["attendees", "--json"]);
        assert_eq!(code, 0, "share attendees failed: {err}");
        serde_json::from_str(&out).expect("attendees JSON")
    }

    /// Wait until some attendee satisfies `pred`; returns it.
    pub fn wait_attendee(&self, timeout: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.attendees().into_iter().find(|a| pred(a));
            found.is_some()
        });
        found
    }

    /// A client config joining with this sharer's invitation as `name`.
    pub fn client(&self, name: &str, password: &str) -> rdhost_client::ClientConfig {
        let parsed = rdhost_model::ConnectionString::parse(&self.invitation).expect("the sharer's invitation parses");
        let addr = self.addr.expect("the sharer listens");
        let mut cfg = rdhost_client::ClientConfig::new(addr, name, "*");
        cfg.width = 1024;
        cfg.height = 768;
        cfg.connect_timeout = Duration::from_secs(30);
        cfg.assistance = Some(rdhost_client::Assistance {
            ticket: parsed.ticket.expect("an invitation has a ticket"),
            password: password.to_owned(),
        });
        cfg
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the sharer to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Sharer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The 127.0.0.1 listener of a connection string.
pub fn listener_of(connection_string: &str) -> SocketAddr {
    let parsed = rdhost_model::ConnectionString::parse(connection_string).expect("connection string parses");
    let l = parsed.listeners.iter().find(|l| l.name == "127.0.0.1").expect("a 127.0.0.1 listener");
    SocketAddr::from(([127, 0, 0, 1], l.port))
}

impl Sharer {
    /// Follow `rdhost share events --json` in the background.
    pub fn events(&self) -> EventStream {
        EventStream::follow(Command::new(BIN).args(["share", "events", "--json", "--control"]).arg(self.control_path()))
    }
}
