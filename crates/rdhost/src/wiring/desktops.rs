//! Which desktop a new session gets, from the configuration: checked once at start (so a
//! missing X server is an error at `serve`, not at the first logon), then used per session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rdhost_desktop::terminal::{RunAs, TerminalDesktop, TerminalOptions};
use rdhost_desktop::x11::server::{self, SessionServerOptions, XServerKind, XServerPreference};
use rdhost_desktop::x11::{AttachOptions, X11Desktop, XDisplay};
use rdhost_desktop::{Desktop, KeyboardLayout, Size};

use crate::auth::SystemUser;
use crate::config::{DesktopKind, ServeConfig, XServerChoice};
use crate::control::protocol::ENV_SOCKET;

/// How sessions get their desktops.
pub enum DesktopSource {
    Terminal { font_px: f32 },
    X11 { server: XServerKind, session_command: String, runtime_base: PathBuf },
    Display { display: XDisplay },
}

impl DesktopSource {
    /// Check that the configured desktop can work here; the error says what to install or set.
    pub fn from_config(config: &ServeConfig) -> anyhow::Result<Self> {
        Ok(match config.desktop {
            DesktopKind::Terminal => DesktopSource::Terminal { font_px: config.font_px },
            DesktopKind::X11 => {
                let preference = match config.x_server {
                    XServerChoice::Auto => XServerPreference::Auto,
                    XServerChoice::Xorg => XServerPreference::XorgDummy,
                    XServerChoice::Xvfb => XServerPreference::Xvfb,
                };
                let server = server::find_x_server(preference).context("desktop x11 cannot start")?;
                let runtime_base = runtime_base(&config.state_dir);
                remove_stale_runtime_dirs(&runtime_base);
                DesktopSource::X11 { server, session_command: config.session_command.clone(), runtime_base }
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
                DesktopSource::Display { display }
            }
        })
    }

    /// The `desktop:` line `serve` prints at start.
    pub fn describe(&self) -> String {
        match self {
            DesktopSource::Terminal { .. } => "built-in terminal (a login shell in a terminal emulator)".into(),
            DesktopSource::X11 { server, session_command, .. } => {
                let how = match server {
                    XServerKind::XorgDummy => "Xorg with the dummy driver",
                    XServerKind::Xvfb => "Xvfb",
                };
                format!("x11, an X server per session ({how}); session program: ~/.xsession if executable, else {session_command:?}")
            }
            DesktopSource::Display { display } => format!("the existing X display {}", display.name),
        }
    }

    /// The desktop kind's name, as the config spells it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            DesktopSource::Terminal { .. } => "terminal",
            DesktopSource::X11 { .. } => "x11",
            DesktopSource::Display { .. } => "display",
        }
    }

    /// Every session shows the same existing display: there can be only one session.
    pub fn is_single_display(&self) -> bool {
        matches!(self, DesktopSource::Display { .. })
    }

    /// Start the desktop of session `session`, running as `run_as` (None: the host's user).
    /// Its processes find the host's control socket in `RDHOST_CONTROL_SOCKET`.
    pub async fn start(
        &self,
        session: u32,
        run_as: Option<&SystemUser>,
        size: Size,
        layout: KeyboardLayout,
        control_socket: &Path,
    ) -> anyhow::Result<Arc<dyn Desktop>> {
        let run_as = run_as.map(|u| RunAs { user: u.name.clone(), uid: u.uid, gid: u.gid, home: u.home.clone(), shell: u.shell.clone() });
        let env = vec![(ENV_SOCKET.to_owned(), control_socket.display().to_string())];
        match self {
            DesktopSource::Terminal { font_px } => {
                let options = TerminalOptions { size, font_px: *font_px, run_as, layout, env, ..Default::default() };
                Ok(TerminalDesktop::start(options)?)
            }
            DesktopSource::X11 { server, session_command, runtime_base } => {
                let runtime_dir = session_runtime_dir(runtime_base, session, run_as.as_ref())?;
                let mut options = SessionServerOptions::new(*server, size, runtime_dir);
                options.session_command = session_command.clone();
                options.run_as = run_as;
                options.env = env;
                Ok(X11Desktop::start_session(options, layout).await?)
            }
            DesktopSource::Display { display } => {
                let options = AttachOptions { allow_resize: false, apply_layout: false };
                Ok(X11Desktop::attach(display.clone(), options)?)
            }
        }
    }
}

impl DesktopSource {
    /// A session's desktop has ended: remove its private directory (the X server's logs too;
    /// what went wrong is in the host's log).
    pub fn session_ended(&self, session: u32) {
        if let DesktopSource::X11 { runtime_base, .. } = self {
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
