//! What to connect to, as whom: the command line turned into a [`Plan`], with every local
//! failure (an unreadable invitation, a missing password) reported before any network traffic.

use std::io::{BufRead, IsTerminal as _};
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context as _, bail};
use rdhost_model::ConnectionString;

use super::reverse::Listening;
use super::{RequestedLevel, ViewArgs};

pub const DEFAULT_RDP_PORT: u16 = 3389;

/// A desktop size, `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u16,
    pub height: u16,
}

impl Default for Size {
    fn default() -> Self {
        Size { width: 1024, height: 768 }
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a size: write WIDTHxHEIGHT, e.g. 1280x800 (each 200..=8192)");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u16 = w.trim().parse().map_err(|_| bad())?;
        let height: u16 = h.trim().parse().map_err(|_| bad())?;
        if !(200..=8192).contains(&width) || !(200..=8192).contains(&height) {
            return Err(bad());
        }
        Ok(Size { width, height })
    }
}

/// Whom the viewer talks to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A session of an RDP host: log on as `user`.
    Host { host: String, port: u16, user: String },
    /// A sharer, as an attendee of `invitation`; with `listen`, the sharer dials us.
    Sharer { invitation: ConnectionString, listen: Option<SocketAddr> },
}

impl Target {
    pub fn is_sharer(&self) -> bool {
        matches!(self, Target::Sharer { .. })
    }
}

/// Where the TCP connection comes from, once prepared.
pub enum Endpoint {
    /// We dial these (name, port) pairs, all at once, and keep the first that answers.
    Dial(Vec<(String, u16)>),
    /// We listen; the sharer dials in.
    Listen(Listening),
}

#[derive(Debug)]
pub struct Plan {
    pub target: Target,
    pub password: String,
    /// The attendee name (sharer) or the client name (host).
    pub name: String,
    pub request: Option<RequestedLevel>,
    pub size: Size,
    /// Whether to offer the graphics pipeline (`--gfx`).
    pub gfx: rdhost_client::Gfx,
}

impl Plan {
    pub fn from_args(args: ViewArgs) -> anyhow::Result<Plan> {
        let target = match (args.host, args.invitation) {
            (Some(host), None) => {
                let (host, port) = parse_host_port(&host)?;
                let user = args.user.context("--user USER is needed to log on to a host")?;
                Target::Host { host, port, user }
            }
            (None, Some(invitation)) => {
                Target::Sharer { invitation: load_invitation(&invitation)?, listen: args.listen }
            }
            _ => bail!("give either HOST[:PORT] --user USER, or --invitation FILE|STRING"),
        };
        let name = match args.name {
            Some(name) if name.trim().is_empty() => bail!("--name must not be empty"),
            Some(name) => name,
            None if target.is_sharer() => local_user_name(),
            None => local_host_name(),
        };
        // The password is asked for later (`obtain_password`), once nothing else can fail first.
        Ok(Plan {
            target,
            password: String::new(),
            name,
            request: args.request_control,
            size: args.size.unwrap_or_default(),
            gfx: args.gfx.map(Into::into).unwrap_or_default(),
        })
    }

    /// A short human name of the other side, for the window title and messages.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Host { host, port, user } => format!("{user}@{}", host_port(host, *port)),
            Target::Sharer { listen: Some(_), .. } => "reverse connect".to_owned(),
            Target::Sharer { invitation, listen: None } => {
                let mut names = invitation.listeners.iter().map(|l| host_port(&l.name, l.port));
                match (names.next(), invitation.listeners.len()) {
                    (None, _) => "invitation without addresses".to_owned(),
                    (Some(first), 1) => format!("sharer {first}"),
                    (Some(first), n) => format!("sharer {first} (+{} more)", n - 1),
                }
            }
        }
    }

    /// Binds the reverse-connect listener (printing our connection string) or lists what to dial.
    pub async fn prepare(&self) -> anyhow::Result<Endpoint> {
        match &self.target {
            Target::Host { host, port, .. } => Ok(Endpoint::Dial(vec![(host.clone(), *port)])),
            Target::Sharer { invitation, listen: None } => {
                if invitation.listeners.is_empty() {
                    bail!(
                        "the invitation lists no address to connect to (no <L P=\"…\" N=\"…\"/>); ask the \
                         sharer for an invitation made while it listens, or use --listen for reverse connect"
                    );
                }
                Ok(Endpoint::Dial(invitation.listeners.iter().map(|l| (l.name.clone(), l.port)).collect()))
            }
            Target::Sharer { listen: Some(addr), .. } => {
                let listening = Listening::bind(*addr).await?;
                listening.announce()?;
                Ok(Endpoint::Listen(listening))
            }
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
pub fn parse_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let s = s.trim();
    let bad_port = |p: &str| anyhow::anyhow!("`{p}` in `{s}` is not a port number (1-65535)");
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| bad_port(p));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .with_context(|| format!("`{s}`: an IPv6 address in brackets needs the closing `]`"))?;
        let port = match after {
            "" => DEFAULT_RDP_PORT,
            _ => parse_port(after.strip_prefix(':').with_context(|| format!("`{s}`: write [ADDRESS]:PORT"))?)?,
        };
        (host, port)
    } else if s.matches(':').count() > 1 {
        // More than one colon and no brackets: an IPv6 address alone.
        (s, DEFAULT_RDP_PORT)
    } else if let Some((host, port)) = s.split_once(':') {
        (host, parse_port(port)?)
    } else {
        (s, DEFAULT_RDP_PORT)
    };
    if host.is_empty() {
        bail!("`{s}` has no host name or address");
    }
    Ok((host.to_owned(), port))
}

/// `host:port`, with brackets around IPv6 addresses.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The invitation from `--invitation`: the connection string itself when it starts with `<`,
/// else a file holding one (a bare `<E>…</E>`, or a `.msrcIncident` that carries it; UTF-8 or
/// UTF-16).
pub fn load_invitation(arg: &str) -> anyhow::Result<ConnectionString> {
    let parsed = if arg.trim_start().starts_with('<') {
        ConnectionString::parse(arg)
    } else {
        let bytes = std::fs::read(arg).with_context(|| {
            format!("cannot read the invitation file `{arg}` (an invitation given as a string must start with `<E>`)")
        })?;
        ConnectionString::parse_bytes(&bytes)
    };
    let invitation = parsed.map_err(|e| {
        anyhow::anyhow!("the invitation is not usable: {e}; ask the sharer to send it again (`rdhost share invite`)")
    })?;
    if invitation.ticket.is_none() {
        bail!(
            "the invitation has no ticket (<A ID=\"…\"/>): this looks like a viewer's reverse-connect \
             string, not a sharer's invitation; ask the sharer for the invitation it printed"
        );
    }
    Ok(invitation)
}

/// `--password PW`, `--password -` (one line of standard input), or a prompt on a terminal.
pub fn obtain_password(arg: Option<&str>, target: &Target) -> anyhow::Result<String> {
    let whose = match target {
        Target::Host { user, .. } => format!("{user}'s password"),
        Target::Sharer { .. } => "the invitation's password".to_owned(),
    };
    match arg {
        Some("-") => read_password_line(std::io::stdin().lock(), &whose),
        Some(pw) => Ok(pw.to_owned()),
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("{}: ", capitalise(&whose))).with_context(|| format!("reading {whose}"))
        }
        None => bail!(
            "no password: give --password PW, or --password - to read {whose} from standard input \
             (--password '' if the invitation has none)"
        ),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// One line, without its line ending. An empty line is a valid (empty) password.
fn read_password_line(mut input: impl BufRead, whose: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = input.read_line(&mut line).with_context(|| format!("reading {whose} from standard input"))?;
    if n == 0 {
        bail!(
            "--password -: standard input is empty; pipe {whose} in, e.g. `echo \"$PW\" | rdhost view … --password -`"
        );
    }
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

/// The name of the user running the viewer: what a sharer sees by default.
fn local_user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "attendee".to_owned())
}

/// This machine's name: the client name a host sees by default (like mstsc and xfreerdp).
fn local_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rdhost-view".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_forms() {
        let ok = |s: &str| parse_host_port(s).unwrap();
        assert_eq!(ok("example.org"), ("example.org".into(), 3389));
        assert_eq!(ok("example.org:3390"), ("example.org".into(), 3390));
        assert_eq!(ok("10.0.0.1:1"), ("10.0.0.1".into(), 1));
        assert_eq!(ok("[::1]:3390"), ("::1".into(), 3390));
        assert_eq!(ok("[fe80::1%eth0]"), ("fe80::1%eth0".into(), 3389));
        assert_eq!(ok("2001:db8::5"), ("2001:db8::5".into(), 3389));
        for bad in ["", ":3389", "host:", "host:0", "host:65536", "host:x", "[::1", "[::1]3389", "[]:5"] {
            assert!(parse_host_port(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("1280x800".parse::<Size>(), Ok(Size { width: 1280, height: 800 }));
        assert!("1280".parse::<Size>().is_err());
        assert!("100x100".parse::<Size>().is_err());
        assert!("9000x800".parse::<Size>().is_err());
    }

    #[test]
    fn invitations_from_strings_and_files() {
        let e = r#"<E><A KH="k" ID="t"/><C><T ID="1" SID="0"><L P="3390" N="127.0.0.1"/></T></C></E>"#;
        let cs = load_invitation(e).unwrap();
        assert_eq!(cs.ticket.as_deref(), Some("t"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("inv.msrcIncident");
        std::fs::write(&file, format!("{e}\n")).unwrap();
        assert_eq!(load_invitation(file.to_str().unwrap()).unwrap(), cs);
        let missing = load_invitation(dir.path().join("nope").to_str().unwrap()).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read the invitation file"), "{missing:#}");
        let reverse = r#"<E><C><T ID="1" SID="0"><L P="3390" N="127.0.0.1"/></T></C></E>"#;
        assert!(load_invitation(reverse).unwrap_err().to_string().contains("no ticket"));
        assert!(load_invitation("<E><C>").unwrap_err().to_string().starts_with("the invitation is not usable"));
    }

    #[test]
    fn password_line() {
        assert_eq!(read_password_line(&b"pw\r\nmore"[..], "x").unwrap(), "pw");
        assert_eq!(read_password_line(&b"\n"[..], "x").unwrap(), "");
        assert_eq!(read_password_line(&b"no-newline"[..], "x").unwrap(), "no-newline");
        assert!(read_password_line(&b""[..], "x").is_err());
    }
}
