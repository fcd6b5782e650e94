//! Which desktop a new session gets, from the configuration: checked once at start (so a
//! missing X server is an error at `serve`, not at the first logon), then used per session.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rdhost_desktop::terminal::{RunAs, TerminalDesktop, TerminalOptions};
use rdhost_desktop::x11::server::{self, SessionServerOptions, XServerKind, XServerPreference};
use rdhost_desktop::x11::{AttachOptions, X11Desktop, XDisplay};
use rdhost_desktop::{Desktop, KeyboardLayout, Size};

use crate::auth::SystemUser;
use crate::config::{ConfigError, DesktopKind, ServeConfig, XServerChoice};
use crate::control::protocol::ENV_SOCKET;

/// How sessions get their desktops, and the PAM session each gets first.
pub struct DesktopSource {
    kind: Source,
    /// `Some` when sessions open PAM sessions (the host is root, `pam_session` is on).
    pam: Option<SessionPam>,
}

enum Source {
    Terminal { font_px: f32 },
    X11 { server: XServerKind, session_command: String, runtime_base: PathBuf, clipboard_primary: bool },
    Display { display: XDisplay, clipboard_primary: bool },
}

/// Where sessions' PAM sessions are opened.
struct SessionPam {
    service: String,
}

impl DesktopSource {
    /// The built-in terminal desktop, without PAM sessions (the sharer: the user's own).
    pub fn terminal(font_px: f32) -> Self {
        DesktopSource { kind: Source::Terminal { font_px }, pam: None }
    }

    /// An existing display, without PAM sessions or PRIMARY (the sharer: the user's own screen).
    pub fn display(display: XDisplay) -> Self {
        DesktopSource { kind: Source::Display { display, clipboard_primary: false }, pam: None }
    }

    /// Check that the configured desktop can work here; the error says what to install or set.
    pub fn from_config(config: &ServeConfig) -> anyhow::Result<Self> {
        let kind = match config.desktop {
            DesktopKind::Terminal => Source::Terminal { font_px: config.font_px },
            DesktopKind::X11 => {
                let preference = match config.x_server {
                    XServerChoice::Auto => XServerPreference::Auto,
                    XServerChoice::Xorg => XServerPreference::XorgDummy,
                    XServerChoice::Xvfb => XServerPreference::Xvfb,
                };
                // A missing X server is fixed by installing one or changing the config, never by
                // starting again: a configuration error. (An existing display that does not
                // answer yet, below, may come up later: an ordinary error, retried.)
                let server = server::find_x_server(preference).map_err(|e| ConfigError::Unusable {
                    key: if config.x_server == XServerChoice::Auto { "desktop" } else { "x_server" },
                    message: format!("desktop x11 cannot start: {e}"),
                })?;
                let runtime_base = runtime_base(&config.state_dir);
                remove_stale_runtime_dirs(&runtime_base);
                Source::X11 {
                    server,
                    session_command: config.session_command.clone(),
                    runtime_base,
                    clipboard_primary: config.clipboard_primary,
                }
            }
            DesktopKind::Display => {
                let Some(existing) = &config.display else { bail!("desktop display needs --display") };
                let display = XDisplay { name: existing.name.clone(), xauthority: existing.xauthority.clone() };
                // Connect once now: a wrong name or cookie is reported at start, with what to fix.
                X11Desktop::probe(&display).with_context(|| {
                    format!(
                        "cannot use X display {} (is it running, and does --xauthority {} hold its cookie?)",
                        display.name,
                        display.xauthority.as_deref().map_or_else(|| "(none)".into(), |p| p.display().to_string())
                    )
                })?;
                Source::Display { display, clipboard_primary: config.clipboard_primary }
            }
        };
        // Without root a session is the host's user's own: no PAM session to open for it.
        let pam = (config.pam_session && nix::unistd::geteuid().is_root()).then(|| SessionPam { service: config.pam_service.clone() });
        if pam.is_some()
            && let Err(e) = crate::pam::system()
        {
            tracing::warn!("sessions open no PAM sessions: {e}");
        }
        Ok(DesktopSource { kind, pam })
    }

    /// The `desktop:` line `serve` prints at start.
    pub fn describe(&self) -> String {
        let desktop = match &self.kind {
            Source::Terminal { .. } => "built-in terminal (a login shell in a terminal emulator)".into(),
            Source::X11 { server, session_command, .. } => {
                let how = match server {
                    XServerKind::XorgDummy => "Xorg with the dummy driver",
                    XServerKind::Xvfb => "Xvfb",
                };
                format!("x11, an X server per session ({how}); session program: ~/.xsession if executable, else {session_command:?}")
            }
            Source::Display { display, .. } => format!("the existing X display {}", display.name),
        };
        match &self.pam {
            Some(pam) => format!("{desktop}; a PAM session each (service {:?})", pam.service),
            None => desktop,
        }
    }

    /// The desktop kind's name, as the config spells it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Source::Terminal { .. } => "terminal",
            Source::X11 { .. } => "x11",
            Source::Display { .. } => "display",
        }
    }

    /// Every session shows the same existing display: there can be only one session.
    pub fn is_single_display(&self) -> bool {
        matches!(self.kind, Source::Display { .. })
    }

    /// Start the desktop of session `session`, running as `run_as` (None: the host's user),
    /// for a client at `client_address`. Its processes find the host's control socket in
    /// `RDHOST_CONTROL_SOCKET`. A session of a system account first opens its PAM session
    /// (when the host opens them), which closes when the desktop ends; the variables PAM set
    /// are in the session's environment.
    pub async fn start(
        &self,
        session: u32,
        run_as: Option<&SystemUser>,
        client_address: Option<IpAddr>,
        size: Size,
        layout: KeyboardLayout,
        control_socket: &Path,
    ) -> anyhow::Result<Arc<dyn Desktop>> {
        let mut env = Vec::new();
        let pam = match (&self.pam, run_as) {
            (Some(pam), Some(user)) if crate::pam::system().is_ok() => {
                let session_type = if matches!(self.kind, Source::Terminal { .. }) { "tty" } else { "x11" };
                let request = crate::pam::SessionRequest {
                    service: pam.service.clone(),
                    user: user.name.clone(),
                    tty: format!("rdhost/{session}"),
                    rhost: client_address.map(|a| a.to_string()),
                    env: vec![("XDG_SESSION_TYPE".into(), session_type.into()), ("XDG_SESSION_CLASS".into(), "user".into())],
                };
                let (pam, pam_env) = PamSession::open(&request)
                    .await
                    .with_context(|| format!("cannot open the PAM session of {} (service {:?})", user.name, pam.service))?;
                env = pam_env;
                Some(pam)
            }
            _ => None,
        };
        // Ours last: a PAM module cannot move the control socket.
        env.push((ENV_SOCKET.to_owned(), control_socket.display().to_string()));
        let started = self.start_desktop(session, run_as, size, layout, env).await;
        let Some(pam) = pam else { return started };
        match &started {
            Ok(desktop) => {
                // Closed when the desktop ends (or, if the host goes first, by the helper itself).
                let mut ended = desktop.ended();
                tokio::spawn(async move {
                    let _ = ended.wait_for(Option::is_some).await;
                    pam.close(session).await;
                });
            }
            Err(_) => pam.close(session).await,
        }
        started
    }

    async fn start_desktop(
        &self,
        session: u32,
        run_as: Option<&SystemUser>,
        size: Size,
        layout: KeyboardLayout,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Arc<dyn Desktop>> {
        let run_as = run_as.map(|u| RunAs { user: u.name.clone(), uid: u.uid, gid: u.gid, home: u.home.clone(), shell: u.shell.clone() });
        match &self.kind {
            Source::Terminal { font_px } => {
                let options = TerminalOptions { size, font_px: *font_px, run_as, layout, env, ..Default::default() };
                Ok(TerminalDesktop::start(options)?)
            }
            Source::X11 { server, session_command, runtime_base, clipboard_primary } => {
                let runtime_dir = session_runtime_dir(runtime_base, session, run_as.as_ref())?;
                let mut options = SessionServerOptions::new(*server, size, runtime_dir);
                options.session_command = session_command.clone();
                options.run_as = run_as;
                options.env = env;
                let desktop = X11Desktop::start_session(options, layout).await?;
                desktop.follow_primary(*clipboard_primary);
                Ok(desktop)
            }
            Source::Display { display, clipboard_primary } => {
                let options = AttachOptions { allow_resize: false, apply_layout: false };
                let desktop = X11Desktop::attach(display.clone(), options)?;
                desktop.follow_primary(*clipboard_primary);
                Ok(desktop)
            }
        }
    }
}

/// A session's PAM session, held open by a helper process (see `crate::pam`): the session
/// ends when the helper's stdin does.
struct PamSession {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
}

/// How long a PAM stack may take to open a session (pam_systemd waits for logind) or close it.
const PAM_TIMEOUT: Duration = Duration::from_secs(60);

impl PamSession {
    /// Start the helper and open the session; the environment the session's modules set.
    async fn open(request: &crate::pam::SessionRequest) -> anyhow::Result<(PamSession, Vec<(String, String)>)> {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        // This very program (the running binary even if the package was upgraded under it),
        // with nothing of the host's environment: PAM modules get a clean one.
        let mut child = tokio::process::Command::new("/proc/self/exe")
            .arg(crate::pam::SESSION_HELPER_ARG)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the PAM session helper")?;
        let (mut stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        let exchange = async {
            let mut line = serde_json::to_string(request)?;
            line.push('\n');
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await?;
            let mut reply = String::new();
            tokio::io::BufReader::new(stdout).read_line(&mut reply).await?;
            anyhow::Ok(reply)
        };
        let reply = match tokio::time::timeout(PAM_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                let _ = child.kill().await;
                return Err(e.context("the PAM session helper failed"));
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("the PAM stack did not open the session within {} s", PAM_TIMEOUT.as_secs());
            }
        };
        match serde_json::from_str::<crate::pam::HelperReply>(&reply) {
            Ok(crate::pam::HelperReply::Opened { env }) => Ok((PamSession { child, stdin }, env)),
            Ok(crate::pam::HelperReply::Failed { error }) => {
                let _ = child.wait().await;
                Err(anyhow::anyhow!(error))
            }
            Err(_) => {
                let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                bail!("the PAM session helper ended without an answer ({status})")
            }
        }
    }

    /// End the PAM session and wait for its helper.
    async fn close(self, session: u32) {
        let PamSession { mut child, stdin } = self;
        drop(stdin);
        match tokio::time::timeout(PAM_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => tracing::debug!(session, "PAM session closed"),
            Ok(Ok(status)) => tracing::warn!(session, "closing the PAM session failed ({status})"),
            Ok(Err(e)) => tracing::warn!(session, "closing the PAM session: {e}"),
            Err(_) => {
                tracing::warn!(session, "the PAM stack did not close the session within {} s; helper killed", PAM_TIMEOUT.as_secs());
                let _ = child.kill().await;
            }
        }
    }
}

impl DesktopSource {
    /// A session's desktop has ended: remove its private directory (the X server's logs too;
    /// what went wrong is in the host's log).
    pub fn session_ended(&self, session: u32) {
        if let Source::X11 { runtime_base, .. } = &self.kind {
            let dir = runtime_base.join(session_dir_name(std::process::id(), session));
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(session, dir = %dir.display(), "cannot remove the session's directory: {e}");
            }
        }
    }
}

/// Where session X servers keep their cookie, config and log: the usual runtime directory
/// (root: /run/rdhost; others: $XDG_RUNTIME_DIR/rdhost), else under the state directory.
fn runtime_base(state_dir: &Path) -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/rdhost");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("rdhost"),
        None => state_dir.join("run"),
    }
}

/// Session directories are named `<host pid>-session-<id>`: several hosts can share the base.
fn session_dir_name(host_pid: u32, session: u32) -> String {
    format!("{host_pid}-session-{session}")
}

/// Remove what hosts that did not shut down cleanly left behind (their pid is gone).
fn remove_stale_runtime_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split_once("-session-")).and_then(|(pid, _)| pid.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh private directory for one session, owned by the user it runs as.
fn session_runtime_dir(base: &Path, session: u32, run_as: Option<&RunAs>) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(base).with_context(|| format!("cannot create {}", base.display()))?;
    let dir = base.join(session_dir_name(std::process::id(), session));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove the stale {}", dir.display()))?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(user) = run_as
        && nix::unistd::geteuid().is_root()
    {
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(user.uid)), Some(nix::unistd::Gid::from_raw(user.gid)))
            .with_context(|| format!("cannot give {} to {}", dir.display(), user.user))?;
    }
    Ok(dir)
}
