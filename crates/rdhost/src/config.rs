//! `rdhost serve` configuration: command-line flags over a TOML file over defaults.
//!
//! Every key of the file ([`Settings`]) has the same name as its flag with `_` for `-`.
//! Unknown keys are errors that name the key, so a typo never silently falls back to a default.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Where a session's pixels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DesktopKind {
    /// The built-in terminal desktop: a login shell in a PTY drawn by rdhost itself.
    Terminal,
    /// An X server per session (Xorg with the dummy driver, or Xvfb) running the user's
    /// session program: real graphical applications.
    X11,
    /// An X display that already exists (`display`, `xauthority`): sessions show and drive it,
    /// e.g. the machine's console. Logging off leaves that display running.
    Display,
}

impl DesktopKind {
    pub fn name(self) -> &'static str {
        match self {
            DesktopKind::Terminal => "terminal",
            DesktopKind::X11 => "x11",
            DesktopKind::Display => "display",
        }
    }
}

/// Which X server an x11 session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum XServerChoice {
    /// Xorg with the dummy driver when installed (resizes to any size), else Xvfb.
    #[default]
    Auto,
    /// Xorg with the dummy driver (packages xserver-xorg-core, xserver-xorg-video-dummy).
    Xorg,
    /// Xvfb (package xvfb): can only shrink below the size it started with.
    Xvfb,
}

/// Which RDP security protocols the host accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityMode {
    /// Offer NLA when the client asks for it and it can work, else TLS.
    #[default]
    Negotiate,
    /// TLS only; credentials arrive in the client info (the logon screen is never needed).
    Tls,
    /// NLA (CredSSP) only: needs users-file accounts with NT hashes.
    Nla,
}

/// Where credentials are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AuthBackendKind {
    /// The users file while it has users, else PAM.
    #[default]
    Auto,
    /// Only the users file.
    UsersFile,
    /// Only PAM (service "rdhost").
    Pam,
}

/// Which codec the host prefers when a client offers several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CodecChoice {
    /// H.264 (AVC420) over the graphics pipeline when the client offers it, else RemoteFX when
    /// the client decodes it, else lossless planar bitmaps.
    #[default]
    Auto,
    /// Lossless planar bitmaps even when H.264 or RemoteFX is offered (sharpest text, more bytes
    /// for photos and motion).
    Lossless,
    /// As auto without H.264: RemoteFX when the client decodes it, else lossless planar.
    NoH264,
}

/// A config value read with its type's `FromStr` (for types of other crates, which know no serde).
fn parse_opt<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error>
where
    T::Err: fmt::Display,
{
    Option::<String>::deserialize(d)?.map(|text| text.parse().map_err(serde::de::Error::custom)).transpose()
}

/// A desktop size `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesktopSize {
    pub width: u16,
    pub height: u16,
}

/// RDP's limits on desktop dimensions (MS-RDPBCGR: 200..=8192 per side for monitors).
pub const MIN_SIDE: u16 = 200;
pub const MAX_SIDE: u16 = 8192;

impl FromStr for DesktopSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a size: use WIDTHxHEIGHT, e.g. 1280x800");
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let (width, height): (u16, u16) =
            (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
        for side in [width, height] {
            if !(MIN_SIDE..=MAX_SIDE).contains(&side) {
                return Err(format!(
                    "{s:?}: each side must be between {MIN_SIDE} and {MAX_SIDE} pixels"
                ));
            }
        }
        Ok(Self { width, height })
    }
}

impl fmt::Display for DesktopSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl<'de> Deserialize<'de> for DesktopSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One layer of settings (the flags, or the file); `None` = not given at this layer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub desktop: Option<DesktopKind>,
    pub security: Option<SecurityMode>,
    pub auth: Option<AuthBackendKind>,
    /// The PAM service of logons and sessions (`/etc/pam.d/<name>`).
    pub pam_service: Option<String>,
    /// As root: open a PAM session for every session.
    pub pam_session: Option<bool>,
    pub single_session_per_user: Option<bool>,
    pub max_sessions: Option<usize>,
    pub handshake_timeout_secs: Option<u64>,
    pub font_px: Option<f32>,
    pub codec: Option<CodecChoice>,
    pub default_size: Option<DesktopSize>,
    pub x_server: Option<XServerChoice>,
    pub session_command: Option<String>,
    pub display: Option<String>,
    pub xauthority: Option<PathBuf>,
    /// X desktops: the PRIMARY selection is part of the clipboard too.
    pub clipboard_primary: Option<bool>,
    pub log: Option<String>,
    pub control_socket: Option<PathBuf>,
    pub admin_group: Option<String>,
    #[serde(default, deserialize_with = "parse_opt")]
    pub shadow: Option<rdhost_model::ShadowPolicy>,
    /// The key that ends a shadow, e.g. "ctrl+keypad-multiply".
    pub shadow_hotkey: Option<String>,
    /// Extra WTS permissions per group: `[grants] helpdesk = ["query", "message", "remote-control"]`.
    pub grants: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl Settings {
    /// Parse a config file's text. Relative `state_dir` is relative to the file's directory.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut settings: Settings = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(dir) = &settings.state_dir
            && dir.is_relative()
            && let Some(parent) = path.parent()
        {
            settings.state_dir = Some(parent.join(dir));
        }
        Ok(settings)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        Self::from_toml(&text, path)
    }

    /// `self` where given, else `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            listen: self.listen.or(lower.listen),
            state_dir: self.state_dir.or(lower.state_dir),
            desktop: self.desktop.or(lower.desktop),
            security: self.security.or(lower.security),
            auth: self.auth.or(lower.auth),
            pam_service: self.pam_service.or(lower.pam_service),
            pam_session: self.pam_session.or(lower.pam_session),
            single_session_per_user: self
                .single_session_per_user
                .or(lower.single_session_per_user),
            max_sessions: self.max_sessions.or(lower.max_sessions),
            handshake_timeout_secs: self.handshake_timeout_secs.or(lower.handshake_timeout_secs),
            font_px: self.font_px.or(lower.font_px),
            codec: self.codec.or(lower.codec),
            default_size: self.default_size.or(lower.default_size),
            x_server: self.x_server.or(lower.x_server),
            session_command: self.session_command.or(lower.session_command),
            display: self.display.or(lower.display),
            xauthority: self.xauthority.or(lower.xauthority),
            clipboard_primary: self.clipboard_primary.or(lower.clipboard_primary),
            log: self.log.or(lower.log),
            control_socket: self.control_socket.or(lower.control_socket),
            admin_group: self.admin_group.or(lower.admin_group),
            shadow: self.shadow.or(lower.shadow),
            shadow_hotkey: self.shadow_hotkey.or(lower.shadow_hotkey),
            grants: self.grants.or(lower.grants),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(
        "cannot work out a default state directory (no $XDG_STATE_HOME or $HOME); pass --state-dir DIR"
    )]
    NoStateDir,
    /// A valid setting that cannot work on this machine (the X server it names is not
    /// installed, PAM is missing for `auth = "pam"`): starting again will not help either.
    #[error("`{key}` cannot work here: {message}")]
    Unusable { key: &'static str, message: String },
}

/// The exit status of `rdhost serve` for a configuration it cannot run with: sysexits.h's
/// EX_CONFIG. The unit's `RestartPreventExitStatus=` names it, so systemd does not restart the
/// host every few seconds over a typo that only an administrator can fix.
pub const EX_CONFIG: u8 = 78;

/// Whether `error` (or anything it wraps) is a [`ConfigError`]: the host stops with
/// [`EX_CONFIG`] then, not with the status of errors a restart may cure.
pub fn is_config_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<ConfigError>())
}

/// Everything `rdhost serve` needs to run, after precedence and validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub desktop: DesktopKind,
    pub security: SecurityMode,
    pub auth: AuthBackendKind,
    /// The PAM service (`/etc/pam.d/<name>`) that checks system users' passwords and opens
    /// sessions' PAM sessions.
    pub pam_service: String,
    /// As root: every session of a system account gets a PAM session (pam_systemd, pam_limits,
    /// pam_env, ...), opened before its desktop starts and closed when it ends.
    pub pam_session: bool,
    pub single_session_per_user: bool,
    pub max_sessions: Option<usize>,
    pub handshake_timeout_secs: u64,
    pub font_px: f32,
    pub codec: CodecChoice,
    /// Desktop size when the client states none (width, height).
    pub default_size: (u16, u16),
    /// x11: which X server.
    pub x_server: XServerChoice,
    /// x11: the session program when the user has no executable `~/.xsession` (run by the
    /// user's login shell with `-c`).
    pub session_command: String,
    /// display: the existing X display and its Xauthority file.
    pub display: Option<ExistingDisplay>,
    /// X desktops: PRIMARY (the mouse selection, pasted by a middle click) follows the clipboard
    /// both ways, as well as CLIPBOARD.
    pub clipboard_primary: bool,
    /// A tracing filter (`info`, `rdhost=debug,info`, …).
    pub log: String,
    /// The control API's Unix socket.
    pub control_socket: PathBuf,
    /// Members hold every WTS permission on every session (root always does).
    pub admin_group: Option<String>,
    pub shadow: rdhost_model::ShadowPolicy,
    /// Ends a shadow when pressed in the shadowing client (Windows: Ctrl + keypad *).
    pub shadow_hotkey: rdhost_desktop::Hotkey,
    /// Extra permission bits (`WTS_SECURITY_*`) per group.
    pub grants: Vec<(String, u32)>,
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:3389";
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_FONT_PX: f32 = 16.0;
pub const DEFAULT_SIZE: (u16, u16) = (1024, 768);
pub const DEFAULT_LOG: &str = "info";
pub const DEFAULT_PAM_SERVICE: &str = "rdhost";
/// Debian's alternatives: whichever terminal and window manager are installed.
pub const DEFAULT_SESSION_COMMAND: &str = "x-terminal-emulator & exec x-window-manager";

/// An X display that exists already (`desktop = "display"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingDisplay {
    pub name: String,
    pub xauthority: Option<PathBuf>,
}

impl ServeConfig {
    /// Flags over the config file (if any) over defaults.
    pub fn resolve(flags: Settings, config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = config_file
            .map(Settings::load)
            .transpose()?
            .unwrap_or_default();
        Self::from_settings(flags.over(file), crate::state_dir::default_state_dir())
    }

    /// Apply defaults and validate. `default_state_dir` is injected for testability.
    pub fn from_settings(
        s: Settings,
        default_state_dir: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid { key, message };
        let state_dir = s
            .state_dir
            .or(default_state_dir)
            .ok_or(ConfigError::NoStateDir)?;
        if let Some(0) = s.max_sessions {
            return Err(invalid(
                "max_sessions",
                "must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        let handshake_timeout_secs = s
            .handshake_timeout_secs
            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT_SECS);
        if !(1..=3600).contains(&handshake_timeout_secs) {
            return Err(invalid(
                "handshake_timeout_secs",
                format!("{handshake_timeout_secs} is not between 1 and 3600"),
            ));
        }
        let font_px = s.font_px.unwrap_or(DEFAULT_FONT_PX);
        if !(font_px.is_finite() && (6.0..=128.0).contains(&font_px)) {
            return Err(invalid(
                "font_px",
                format!("{font_px} is not between 6 and 128"),
            ));
        }
        let log = s.log.unwrap_or_else(|| DEFAULT_LOG.to_owned());
        tracing_subscriber::EnvFilter::try_new(&log).map_err(|e| {
            invalid(
                "log",
                format!("{log:?} is not a log filter ({e}); e.g. info, debug, rdhost=debug,warn"),
            )
        })?;
        let pam_service = s.pam_service.unwrap_or_else(|| DEFAULT_PAM_SERVICE.to_owned());
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "._-+".contains(c);
        if pam_service.is_empty() || pam_service.starts_with('.') || !pam_service.chars().all(name_ok) {
            return Err(invalid(
                "pam_service",
                format!("{pam_service:?} is not a PAM service name (a file name in /etc/pam.d: letters, digits, . _ - +)"),
            ));
        }
        let desktop = s.desktop.unwrap_or(DesktopKind::Terminal);
        let session_command = s.session_command.unwrap_or_else(|| DEFAULT_SESSION_COMMAND.to_owned());
        if session_command.trim().is_empty() {
            return Err(invalid("session_command", "is empty; leave it out for the default".into()));
        }
        let display = match desktop {
            DesktopKind::Display => {
                let name = s.display.or_else(|| std::env::var("DISPLAY").ok().filter(|d| !d.is_empty())).ok_or_else(|| {
                    invalid("display", "desktop \"display\" needs the X display to show, e.g. --display :0".into())
                })?;
                if !is_local_display(&name) {
                    return Err(invalid("display", format!("{name:?} is not a local X display like \":0\"")));
                }
                let xauthority = s.xauthority.or_else(|| std::env::var_os("XAUTHORITY").filter(|x| !x.is_empty()).map(PathBuf::from));
                Some(ExistingDisplay { name, xauthority })
            }
            _ => None,
        };
        let mut grants = Vec::new();
        for (group, names) in s.grants.unwrap_or_default() {
            let mut bits = 0;
            for name in &names {
                bits |= rdhost_model::perm::from_name(name).ok_or_else(|| {
                    let known: Vec<String> = rdhost_model::perm::NAMES.iter().map(|(_, n)| n.to_lowercase().replace('_', "-")).collect();
                    invalid("grants", format!("group {group:?}: {name:?} is not a permission; use {} or all", known.join(", ")))
                })?;
            }
            grants.push((group, bits));
        }
        let control_socket = s.control_socket.unwrap_or_else(|| {
            crate::control::client::default_serve_socket(
                nix::unistd::geteuid().is_root(),
                std::env::var_os("XDG_RUNTIME_DIR").as_deref().map(Path::new),
                nix::unistd::geteuid().as_raw(),
            )
        });
        Ok(Self {
            control_socket,
            admin_group: s.admin_group.filter(|g| !g.is_empty()),
            shadow: s.shadow.unwrap_or_default(),
            shadow_hotkey: match s.shadow_hotkey {
                Some(text) => text.parse().map_err(|e| invalid("shadow_hotkey", e))?,
                None => rdhost_desktop::Hotkey::SHADOW_DEFAULT,
            },
            grants,
            listen: s
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            state_dir,
            desktop,
            security: s.security.unwrap_or_default(),
            auth: s.auth.unwrap_or_default(),
            pam_service,
            pam_session: s.pam_session.unwrap_or(true),
            single_session_per_user: s.single_session_per_user.unwrap_or(true),
            max_sessions: s.max_sessions,
            handshake_timeout_secs,
            font_px,
            codec: s.codec.unwrap_or_default(),
            default_size: s.default_size.map_or(DEFAULT_SIZE, |d| (d.width, d.height)),
            x_server: s.x_server.unwrap_or_default(),
            session_command,
            display,
            clipboard_primary: s.clipboard_primary.unwrap_or(true),
            log,
        })
    }

    /// The session policy for the model's `SessionTable`.
    pub fn policy(&self) -> rdhost_model::Policy {
        rdhost_model::Policy {
            single_session_per_user: self.single_session_per_user,
            max_sessions: self.max_sessions,
        }
    }

    /// Who holds which WTS permissions (beyond root and each user on their own sessions).
    pub fn permissions(&self) -> rdhost_model::Permissions {
        rdhost_model::Permissions { admin_group: self.admin_group.clone(), grants: self.grants.clone() }
    }
}

/// ":N" or ":N.S" (or "unix:N"): a display on this machine's Unix socket.
fn is_local_display(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(':').or_else(|| name.strip_prefix("unix:")) else {
        return false;
    };
    let mut parts = rest.split('.');
    let number_ok = parts.next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let screen_ok = parts.next().is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    number_ok && screen_ok && parts.next().is_none()
}

/// The `Config keys` section of `rdhost serve --help`.
pub const CONFIG_KEYS_HELP: &str = "\
Config keys (TOML, all optional; a flag beats the file, the file beats the default;
unknown keys are errors):
  listen = \"0.0.0.0:3389\"          Address and port to accept RDP on.                 --listen
  state_dir = \"/var/lib/rdhost\"    Users file and TLS certificate (relative paths are
                                   relative to the config file). Default: /var/lib/rdhost
                                   as root, else $XDG_STATE_HOME/rdhost or
                                   ~/.local/state/rdhost.                             --state-dir
  desktop = \"terminal\"             terminal (built-in shell, needs nothing) | x11 (an
                                   X server per session) | display (an existing X
                                   display, see `display`).                          --desktop
  x_server = \"auto\"                x11: auto (Xorg + dummy driver if installed, else
                                   Xvfb) | xorg | xvfb.                              --x-server
  session_command = \"...\"          x11: what a session runs when the user has no
                                   executable ~/.xsession, via their login shell.
                                   Default: \"x-terminal-emulator & exec
                                   x-window-manager\" (Debian's alternatives).        --session-command
  display = \":0\"                   display: the X display to show [default: $DISPLAY]. --display
  xauthority = \"/home/me/.Xauthority\"
                                   display: its cookie file [default: $XAUTHORITY].  --xauthority
  clipboard_primary = true         x11, display: the X PRIMARY selection (select with
                                   the mouse, paste with a middle click) is part of
                                   the clipboard: a client's copy is pasted by either,
                                   selecting text in the session copies it to the
                                   client. false: CLIPBOARD (Ctrl+C/Ctrl+V) only.
  security = \"negotiate\"           negotiate | tls | nla. nla needs users-file
                                   accounts added with --nt-hash.                     --security
  auth = \"auto\"                    auto (users file if it has users, else PAM)
                                   | users-file | pam.                                --auth
  pam_service = \"rdhost\"          The PAM service (/etc/pam.d/NAME) that checks system
                                   users' passwords and opens sessions' PAM sessions.
  pam_session = true               As root: each session of a system account opens a
                                   PAM session (pam_systemd's logind session, pam_env,
                                   pam_limits ...) before its desktop starts and
                                   closes it at logoff; its environment reaches the
                                   session's programs.
  single_session_per_user = true   A user logging on again takes over their running
                                   session instead of getting a second one.
  max_sessions = 50                Limit on concurrent sessions (default: none).      --max-sessions
  handshake_timeout_secs = 10      Drop connections that have not finished the RDP
                                   handshake (including logon) in time.
  font_px = 16.0                   Terminal desktop font size in pixels.
  codec = \"auto\"                   auto (H.264 over the graphics pipeline when the
                                   client offers it, else RemoteFX, else lossless
                                   planar) | no-h264 (RemoteFX, else planar)
                                   | lossless (always planar).
  default_size = \"1024x768\"        Desktop size when the client asks for none.
  log = \"info\"                     Log filter: error | warn | info | debug | trace,
                                   or per module: \"rdhost=debug,info\".                --log
  control_socket = \"/run/rdhost/control.sock\"
                                   The control API (rdhost query|connect|…, curl
                                   --unix-socket). Default: /run/rdhost/control.sock
                                   as root, else $XDG_RUNTIME_DIR/rdhost/control.sock. --control-socket
  admin_group = \"rdhost-admins\"    Members may manage every session (root always may).
  shadow = \"control-with-consent\"  Who may shadow: disabled | control-with-consent |
                                   control | view-with-consent | view.               --shadow
  shadow_hotkey = \"ctrl+keypad-multiply\"
                                   Ends a shadow (ctrl/alt/shift + a letter, digit,
                                   f1-f12, keypad-multiply|minus|plus|divide, home…).
  [grants]                         Extra permissions per group on others' sessions:
  helpdesk = [\"query\", \"message\", \"remote-control\"]
                                   (query set reset virtual remote-control logon
                                   logoff message connect disconnect all).";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("/etc/rdhost/rdhost.toml"))
    }

    fn defaults() -> Option<PathBuf> {
        Some(PathBuf::from("/default/state"))
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let c = ServeConfig::from_settings(Settings::default(), defaults()).unwrap();
        assert_eq!(
            c,
            ServeConfig {
                listen: "0.0.0.0:3389".parse().unwrap(),
                state_dir: "/default/state".into(),
                desktop: DesktopKind::Terminal,
                security: SecurityMode::Negotiate,
                auth: AuthBackendKind::Auto,
                pam_service: "rdhost".into(),
                pam_session: true,
                single_session_per_user: true,
                max_sessions: None,
                handshake_timeout_secs: 10,
                font_px: 16.0,
                codec: CodecChoice::Auto,
                default_size: (1024, 768),
                x_server: XServerChoice::Auto,
                session_command: DEFAULT_SESSION_COMMAND.into(),
                display: None,
                clipboard_primary: true,
                log: "info".into(),
                control_socket: c.control_socket.clone(),
                admin_group: None,
                shadow: rdhost_model::ShadowPolicy::ControlWithConsent,
                shadow_hotkey: rdhost_desktop::Hotkey::SHADOW_DEFAULT,
                grants: Vec::new(),
            }
        );
        assert!(c.control_socket.ends_with("control.sock"), "{}", c.control_socket.display());
        assert_eq!(
            c.policy(),
            rdhost_model::Policy {
                single_session_per_user: true,
                max_sessions: None
            }
        );
    }

    #[test]
    fn every_key_parses() {
        let s = parse(
            r#"
            listen = "127.0.0.1:13389"
            state_dir = "/srv/rdhost"
            desktop = "terminal"
            security = "nla"
            auth = "users-file"
            single_session_per_user = false
            max_sessions = 5
            handshake_timeout_secs = 30
            font_px = 20.5
            default_size = "1280x800"
            log = "rdhost=debug,info"
            "#,
        )
        .unwrap();
        let c = ServeConfig::from_settings(s, defaults()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:13389".parse().unwrap());
        assert_eq!(c.state_dir, PathBuf::from("/srv/rdhost"));
        assert_eq!(
            (c.security, c.auth),
            (SecurityMode::Nla, AuthBackendKind::UsersFile)
        );
        assert_eq!(
            (c.single_session_per_user, c.max_sessions),
            (false, Some(5))
        );
        assert_eq!(
            (c.handshake_timeout_secs, c.font_px, c.default_size),
            (30, 20.5, (1280, 800))
        );
        assert_eq!(c.log, "rdhost=debug,info");
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let file =
            parse("listen = \"127.0.0.1:1000\"\nlog = \"debug\"\nstate_dir = \"/file/state\"\n")
                .unwrap();
        let flags = Settings {
            listen: Some("127.0.0.1:2000".parse().unwrap()),
            ..Settings::default()
        };
        let c = ServeConfig::from_settings(flags.over(file), defaults()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2000".parse().unwrap(), "flag wins");
        assert_eq!(c.log, "debug", "file beats default");
        assert_eq!(
            c.state_dir,
            PathBuf::from("/file/state"),
            "file beats default state dir"
        );
        assert_eq!(c.handshake_timeout_secs, 10, "default when neither");
    }

    #[test]
    fn resolve_reads_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rdhost.toml");
        std::fs::write(&path, "state_dir = \"state\"\nmax_sessions = 3\n").unwrap();
        let flags = Settings {
            max_sessions: Some(7),
            ..Settings::default()
        };
        let c = ServeConfig::resolve(flags, Some(&path)).unwrap();
        assert_eq!(
            c.state_dir,
            tmp.path().join("state"),
            "relative to the file"
        );
        assert_eq!(c.max_sessions, Some(7));
        let err = ServeConfig::resolve(Settings::default(), Some(&tmp.path().join("missing.toml")))
            .unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = parse("listen = \"0.0.0.0:3389\"\nlisten_port = 3389\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("/etc/rdhost/rdhost.toml"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let cases = [
            ("desktop = \"wayland\"", "wayland"),
            ("x_server = \"xnest\"", "xnest"),
            ("security = \"rdp\"", "rdp"),
            ("listen = \"3389\"", "listen"),
            ("default_size = \"big\"", "WIDTHxHEIGHT"),
            ("default_size = \"100x100\"", "between 200 and 8192"),
            ("max_sessions = -1", "max_sessions"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let invalid = [
            (
                Settings {
                    max_sessions: Some(0),
                    ..Default::default()
                },
                "max_sessions",
            ),
            (
                Settings {
                    handshake_timeout_secs: Some(0),
                    ..Default::default()
                },
                "handshake_timeout_secs",
            ),
            (
                Settings {
                    font_px: Some(f32::NAN),
                    ..Default::default()
                },
                "font_px",
            ),
            (
                Settings {
                    font_px: Some(500.0),
                    ..Default::default()
                },
                "font_px",
            ),
            (
                Settings {
                    log: Some("rdhost=loud".into()),
                    ..Default::default()
                },
                "log",
            ),
        ];
        for (s, key) in invalid {
            let err = ServeConfig::from_settings(s, defaults())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
        let err = ServeConfig::from_settings(Settings::default(), None).unwrap_err();
        assert!(err.to_string().contains("--state-dir"), "{err}");
    }

    #[test]
    fn x_desktops_take_their_keys() {
        let s = parse("desktop = \"x11\"\nx_server = \"xvfb\"\nsession_command = \"xterm\"\n").unwrap();
        let c = ServeConfig::from_settings(s, defaults()).unwrap();
        assert_eq!((c.desktop, c.x_server, c.session_command.as_str(), c.display), (DesktopKind::X11, XServerChoice::Xvfb, "xterm", None));
        assert!(c.clipboard_primary, "PRIMARY is followed unless switched off");
        let c = ServeConfig::from_settings(parse("clipboard_primary = false").unwrap(), defaults()).unwrap();
        assert!(!c.clipboard_primary);
        assert!(parse("clipboard_primary = \"yes\"").is_err(), "a boolean");
    }

    #[test]
    fn pam_keys() {
        let c = ServeConfig::from_settings(parse("pam_service = \"rdhost-test\"\npam_session = false").unwrap(), defaults()).unwrap();
        assert_eq!((c.pam_service.as_str(), c.pam_session), ("rdhost-test", false));
        for bad in ["", "../shadow", "a b", ".hidden"] {
            let s = Settings { pam_service: Some(bad.into()), ..Default::default() };
            let err = ServeConfig::from_settings(s, defaults()).unwrap_err().to_string();
            assert!(err.contains("`pam_service`"), "{bad:?}: {err}");
        }

        let s = parse("desktop = \"display\"\ndisplay = \":3.0\"\nxauthority = \"/run/x/auth\"\n").unwrap();
        let c = ServeConfig::from_settings(s, defaults()).unwrap();
        assert_eq!(c.display, Some(ExistingDisplay { name: ":3.0".into(), xauthority: Some("/run/x/auth".into()) }));

        for bad in ["otherhost:0", ":", ":x", ":1.", "1"] {
            let s = Settings { desktop: Some(DesktopKind::Display), display: Some(bad.into()), ..Default::default() };
            let err = ServeConfig::from_settings(s, defaults()).unwrap_err().to_string();
            assert!(err.contains("`display`") && err.contains("local X display"), "{bad}: {err}");
        }
        let s = Settings { session_command: Some("  ".into()), ..Default::default() };
        assert!(ServeConfig::from_settings(s, defaults()).unwrap_err().to_string().contains("`session_command`"));
    }

    #[test]
    fn size_parsing() {
        assert_eq!(
            "1280x800".parse::<DesktopSize>(),
            Ok(DesktopSize {
                width: 1280,
                height: 800
            })
        );
        assert_eq!(
            "1280X800".parse::<DesktopSize>().unwrap().to_string(),
            "1280x800"
        );
        assert!("1280".parse::<DesktopSize>().is_err());
        assert!("1280x99999".parse::<DesktopSize>().is_err());
    }

    #[test]
    fn grants_name_permissions_and_bad_names_are_refused() {
        let s = parse("[grants]\nhelpdesk = [\"query\", \"message\", \"remote-control\"]\nops = [\"all\"]\n").unwrap();
        let c = ServeConfig::from_settings(s, defaults()).unwrap();
        assert_eq!(c.grants, vec![("helpdesk".to_owned(), 0x1 | 0x80 | 0x10), ("ops".to_owned(), 0x3FF)]);
        let s = parse("[grants]\nhelpdesk = [\"shadow-everyone\"]\n").unwrap();
        let err = ServeConfig::from_settings(s, defaults()).unwrap_err().to_string();
        assert!(err.contains("shadow-everyone") && err.contains("remote-control"), "{err}");
        let s = parse("shadow = \"view-with-consent\"\nadmin_group = \"wheel\"\ncontrol_socket = \"/tmp/x.sock\"").unwrap();
        let c = ServeConfig::from_settings(s, defaults()).unwrap();
        assert_eq!((c.shadow, c.admin_group.as_deref(), c.control_socket.as_path()), (rdhost_model::ShadowPolicy::ViewWithConsent, Some("wheel"), Path::new("/tmp/x.sock")));
    }

    #[test]
    fn help_lists_every_key() {
        for key in [
            "listen",
            "state_dir",
            "desktop",
            "security",
            "auth",
            "pam_service",
            "pam_session",
            "single_session_per_user",
            "max_sessions",
            "handshake_timeout_secs",
            "font_px",
            "codec",
            "default_size",
            "x_server",
            "session_command",
            "display",
            "xauthority",
            "clipboard_primary",
            "log",
            "control_socket",
            "admin_group",
            "shadow",
            "shadow_hotkey",
        ] {
            assert!(
                CONFIG_KEYS_HELP.contains(&format!("  {key} = ")),
                "{key} missing from help"
            );
            // And the file accepts it.
            let text = format!("{key} = {}", sample_value(key));
            parse(&text).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    fn sample_value(key: &str) -> &'static str {
        match key {
            "listen" => "\"[::]:3389\"",
            "state_dir" => "\"/x\"",
            "desktop" => "\"terminal\"",
            "security" => "\"tls\"",
            "auth" => "\"pam\"",
            "single_session_per_user" | "clipboard_primary" | "pam_session" => "true",
            "pam_service" => "\"login\"",
            "max_sessions" | "handshake_timeout_secs" => "3",
            "font_px" => "12.0",
            "codec" => "\"lossless\"",
            "default_size" => "\"800x600\"",
            "x_server" => "\"xvfb\"",
            "session_command" => "\"xterm\"",
            "display" => "\":0\"",
            "xauthority" => "\"/root/.Xauthority\"",
            "control_socket" => "\"/tmp/c.sock\"",
            "admin_group" => "\"wheel\"",
            "shadow" => "\"view\"",
            "shadow_hotkey" => "\"ctrl+alt+f12\"",
            _ => "\"warn\"",
        }
    }
}
