//! The three servers compared, each started on 127.0.0.1 with a free port and one desktop program
//! (a shell script, the same for every server) at one size, logged on by the same PAM user:
//!
//! - rdhost: `rdhost serve` with `auth = "pam"` and an x11 desktop whose `session_command` runs
//!   the script (Xorg with the dummy driver, as the user).
//! - xrdp: `xrdp-sesman` and `xrdp` in the foreground with their own sesman.ini / xrdp.ini in a
//!   scratch directory: TLS, the Xorg (xorgxrdp) session, the script as the window manager.
//! - FreeRDP's shadow server: `freerdp-shadow-cli +auth /sec:tls` showing an Xvfb of that size on
//!   which the script runs (it has no sessions of its own: every client sees that one display).
//!
//! Dropping a server stops every process it started (and the test user's session processes are
//! ended by whoever ends the session: [`Server::end_session`], or the test user's drop).

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdhost_client::ClientConfig;
use rdhost_xprobe::xvfb::Xvfb;

use super::setup::TestUser;
use crate::host::{Host, ScratchDir, stop_tree};
use crate::procfs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum ServerKind {
    Rdhost,
    Xrdp,
    Shadow,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Rdhost => "rdhost",
            ServerKind::Xrdp => "xrdp",
            ServerKind::Shadow => "shadow",
        }
    }
}

/// How long a server may take to accept connections.
const START: Duration = Duration::from_secs(30);

/// A child process with its output in a log file; stopped with its descendants on drop.
struct Daemon {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Daemon {
    fn spawn(mut command: Command, name: &'static str, log: PathBuf) -> Result<Daemon> {
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        Ok(Daemon { child, name, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of its log.
    fn tail(&self) -> String {
        let lines: Vec<String> = std::fs::File::open(&self.log)
            .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
            .unwrap_or_default();
        let from = lines.len().saturating_sub(30);
        format!("{} log ({}):\n{}", self.name, self.log.display(), lines[from..].join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_tree(&mut self.child, self.name);
    }
}

/// A port nobody listens on now (the kernel's choice), for servers that cannot be told port 0.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Wait until one of `addrs` accepts connections, failing early when a daemon exits.
fn wait_listening(addrs: &[SocketAddr], daemons: &mut [&mut Daemon]) -> Result<()> {
    let t0 = Instant::now();
    let addr = addrs[0];
    loop {
        if addrs.iter().any(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()) {
            return Ok(());
        }
        for d in daemons.iter_mut() {
            if let Some(status) = d.exited() {
                bail!("{} exited ({status}) before {addr} accepted connections; {}", d.name, d.tail());
            }
        }
        if t0.elapsed() > START {
            let logs: Vec<String> = daemons.iter().map(|d| d.tail()).collect();
            bail!("nothing accepts connections on {addr} after {START:?}; {}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Xrdp {
    // Dropped in this order: xrdp first (it holds the connections), then sesman, then the files.
    xrdp: Daemon,
    sesman: Daemon,
    addr: SocketAddr,
    _dir: ScratchDir,
}

pub struct Shadow {
    server: Daemon,
    program: Daemon,
    xvfb: Xvfb,
    addr: SocketAddr,
}

pub enum Server {
    Rdhost(Host),
    Xrdp(Xrdp),
    Shadow(Shadow),
}

/// What every server is started with.
pub struct Desktop<'a> {
    /// The session program: an executable script every server runs the same way.
    pub script: &'a Path,
    pub size: (u16, u16),
    /// rdhost's own extra configuration lines (TOML), e.g. `codec = "lossless"`.
    pub rdhost_config: &'a str,
}

impl Server {
    pub fn start(kind: ServerKind, rdhost: &Path, desktop: &Desktop<'_>) -> Result<Server> {
        match kind {
            ServerKind::Rdhost => {
                let config = format!(
                    "desktop = \"x11\"\nsession_command = {:?}\nauth = \"pam\"\n{}\n",
                    format!("exec {}", desktop.script.display()),
                    desktop.rdhost_config
                );
                Ok(Server::Rdhost(Host::start(rdhost, "compare", &[], &config)?))
            }
            ServerKind::Xrdp => start_xrdp(desktop.script).map(Server::Xrdp),
            ServerKind::Shadow => start_shadow(desktop.script, desktop.size).map(Server::Shadow),
        }
        .with_context(|| format!("start {}", kind.name()))
    }

    pub fn kind(&self) -> ServerKind {
        match self {
            Server::Rdhost(_) => ServerKind::Rdhost,
            Server::Xrdp(_) => ServerKind::Xrdp,
            Server::Shadow(_) => ServerKind::Shadow,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Server::Rdhost(h) => h.addr,
            Server::Xrdp(x) => x.addr,
            Server::Shadow(s) => s.addr,
        }
    }

    /// The processes whose trees are the server (its sessions' processes are found by uid too).
    pub fn roots(&self) -> Vec<u32> {
        match self {
            Server::Rdhost(h) => vec![h.pid()],
            Server::Xrdp(x) => vec![x.xrdp.pid(), x.sesman.pid()],
            Server::Shadow(s) => {
                // The Xvfb is the desktop the shadow server shows: its X server, counted like the
                // session X servers of the others. This process started it (with -displayfd it
                // writes no lock file): the child of ours whose command line names its cookie.
                let auth = s.xvfb.xauthority().display().to_string();
                let xvfb = procfs::descendants(std::process::id())
                    .into_iter()
                    .find(|&p| procfs::cmdline(p).is_some_and(|c| c.starts_with("Xvfb ") && c.contains(&auth)));
                vec![s.server.pid(), s.program.pid()].into_iter().chain(xvfb).collect()
            }
        }
    }

    pub fn client(&self, user: &TestUser, size: (u16, u16)) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.addr(), user.name.clone(), user.password.clone());
        (cfg.width, cfg.height) = size;
        cfg.connect_timeout = Duration::from_secs(30);
        cfg.client_name = "rdhost-bench".into();
        cfg
    }

    pub fn check_running(&mut self) -> Result<()> {
        match self {
            Server::Rdhost(h) => h.check_running(),
            Server::Xrdp(x) => {
                for d in [&mut x.xrdp, &mut x.sesman] {
                    if let Some(status) = d.exited() {
                        bail!("{} exited ({status}); {}", d.name, d.tail());
                    }
                }
                Ok(())
            }
            Server::Shadow(s) => match s.server.exited() {
                Some(status) => bail!("freerdp-shadow-cli exited ({status}); {}", s.server.tail()),
                None => Ok(()),
            },
        }
    }

    /// The server's recent log lines, for error messages.
    pub fn log(&self) -> String {
        match self {
            Server::Rdhost(h) => h.log(),
            Server::Xrdp(x) => format!("{}\n{}", x.xrdp.tail(), x.sesman.tail()),
            Server::Shadow(s) => s.server.tail(),
        }
    }

    /// End the user's session (its X server and program), so that the next logon starts a new
    /// one: every process of the test user ends, and the server notices. The shadow server has
    /// no sessions: nothing to end.
    pub fn end_session(&mut self, user: &TestUser) {
        if self.kind() != ServerKind::Shadow {
            user.end_processes();
            // Let the server see its session's end before the next logon.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// sesman's port as xrdp will look for it: xrdp reads it from the system's sesman.ini, never
/// from the one given to sesman with `-c`.
fn system_sesman_port() -> u16 {
    std::fs::read_to_string("/etc/xrdp/sesman.ini")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.trim().strip_prefix("ListenPort=")?.trim().parse().ok()))
        .unwrap_or(3350)
}

fn start_xrdp(script: &Path) -> Result<Xrdp> {
    let dir = ScratchDir::new("xrdp")?;
    let sesman_port = system_sesman_port();
    // sesman built with IPv6 (Debian's) listens on ::1 for "127.0.0.1".
    let sesman_addrs = [SocketAddr::from(([127, 0, 0, 1], sesman_port)), SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, sesman_port))];
    if sesman_addrs.iter().any(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()) {
        bail!(
            "port {sesman_port} (xrdp-sesman's, from /etc/xrdp/sesman.ini) is in use: is the system's xrdp-sesman running? \
             (xrdp finds sesman only at that port)"
        );
    }
    let port = free_port()?;
    let d = dir.path();
    let xrdp_ini = format!(
        "[Globals]\nini_version=1\nfork=true\nport=tcp://127.0.0.1:{port}\nuse_vsock=false\ntcp_nodelay=true\ntcp_keepalive=true\n\
         security_layer=tls\ncrypt_level=high\ncertificate=\nkey_file=\nssl_protocols=TLSv1.2, TLSv1.3\nautorun=Xorg\n\
         allow_channels=true\nallow_multimon=true\nbitmap_cache=true\nbitmap_compression=true\nbulk_compression=true\n\
         max_bpp=32\nnew_cursors=true\nuse_fastpath=both\n\n\
         [Logging]\nLogFile={d}/xrdp.log\nLogLevel=INFO\nEnableSyslog=false\n\n\
         [Channels]\nrdpdr=true\nrdpsnd=true\ndrdynvc=true\ncliprdr=true\nrail=true\nxrdpvr=true\ntcutils=true\n\n\
         [Xorg]\nname=Xorg\nlib=libxup.so\nusername=ask\npassword=ask\nip=127.0.0.1\nport=-1\ncode=20\n",
        d = d.display()
    );
    let sesman_ini = format!(
        "[Globals]\nListenAddress=127.0.0.1\nListenPort={sesman_port}\nEnableUserWindowManager=false\nUserWindowManager=startwm.sh\n\
         DefaultWindowManager={script}\nReconnectScript=/etc/xrdp/reconnectwm.sh\n\n\
         [Security]\nAllowRootLogin=false\nMaxLoginRetry=4\nTerminalServerUsers=tsusers\nTerminalServerAdmins=tsadmins\nAlwaysGroupCheck=false\n\n\
         [Sessions]\nX11DisplayOffset=70\nMaxSessions=50\nKillDisconnected=false\nDisconnectedTimeLimit=0\nIdleTimeLimit=0\nPolicy=Default\n\n\
         [Logging]\nLogFile={d}/sesman.log\nLogLevel=INFO\nEnableSyslog=false\n\n\
         [Xorg]\nparam=/usr/lib/xorg/Xorg\nparam=-config\nparam=xrdp/xorg.conf\nparam=-noreset\nparam=-nolisten\nparam=tcp\nparam=-logfile\nparam=.xorgxrdp.%s.log\n\n\
         [Chansrv]\nFuseMountName=thinclient_drives\nFileUmask=077\n\n[ChansrvLogging]\nLogLevel=INFO\nEnableSyslog=false\n\n[SessionVariables]\n",
        script = script.display(),
        d = d.display()
    );
    std::fs::write(d.join("xrdp.ini"), xrdp_ini)?;
    std::fs::write(d.join("sesman.ini"), sesman_ini)?;
    // The daemons' runtime directory (systemd's ExecStartPre does this on a real install).
    if Path::new("/usr/share/xrdp/socksetup").exists() {
        let _ = Command::new("/usr/share/xrdp/socksetup").status();
    }
    // A pid file of a daemon that is gone (a killed earlier run) makes them refuse to start.
    for pid_file in ["/var/run/xrdp/xrdp.pid", "/var/run/xrdp/xrdp-sesman.pid"] {
        let alive = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if alive {
            bail!("{pid_file} names a running process: is the system's xrdp running? Stop it first");
        }
        let _ = std::fs::remove_file(pid_file);
    }
    let mut sesman_cmd = Command::new("xrdp-sesman");
    sesman_cmd.args(["--nodaemon", "--config"]).arg(d.join("sesman.ini"));
    let mut sesman = Daemon::spawn(sesman_cmd, "xrdp-sesman", d.join("sesman.out"))?;
    wait_listening(&sesman_addrs, &mut [&mut sesman])?;
    let mut xrdp_cmd = Command::new("xrdp");
    xrdp_cmd.args(["--nodaemon", "--config"]).arg(d.join("xrdp.ini"));
    let mut xrdp = Daemon::spawn(xrdp_cmd, "xrdp", d.join("xrdp.out"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(&[addr], &mut [&mut xrdp, &mut sesman])?;
    Ok(Xrdp { xrdp, sesman, addr, _dir: dir })
}

fn start_shadow(script: &Path, size: (u16, u16)) -> Result<Shadow> {
    let xvfb = Xvfb::start(size.0, size.1).context("start Xvfb")?;
    let mut program_cmd = Command::new(script);
    program_cmd.envs(xvfb.env());
    let log_dir = xvfb.xauthority().parent().map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let program = Daemon::spawn(program_cmd, "session program", log_dir.join("program.log"))?;
    // freerdp-shadow-cli 2.11 sometimes fails its first start on a fresh Xvfb ("unsupported X11
    // server color depth: 0"); a second one works.
    let mut last = None;
    for attempt in 0..3 {
        let port = free_port()?;
        let mut cmd = Command::new("freerdp-shadow-cli");
        cmd.args([&format!("/port:{port}"), "/bind-address:127.0.0.1", "+auth", "/sec:tls"]).envs(xvfb.env());
        let mut server = Daemon::spawn(cmd, "freerdp-shadow-cli", log_dir.join(format!("shadow-{attempt}.log")))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match wait_listening(&[addr], &mut [&mut server]) {
            Ok(()) => return Ok(Shadow { server, program, xvfb, addr }),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(last.unwrap()).context("freerdp-shadow-cli did not start in 3 attempts")
}
