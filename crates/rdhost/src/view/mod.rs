//! `rdhost view`: the viewer. It connects to a host session (user + password), to a sharer (an
//! invitation + password, as an attendee), or waits for a sharer to dial in (reverse connect),
//! and shows the remote desktop in a window, or writes one picture headless (`--snapshot`).
//!
//! Threads: winit wants the main thread, so the RDP client runs on a tokio runtime in another
//! thread (`link`); pictures travel to the window through a latest-only slot, input back through
//! a bounded channel.

mod dial;
mod explain;
mod keys;
mod link;
mod plan;
mod reverse;
mod snapshot;
mod window;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

pub use plan::Size;

pub const VIEW_LONG_ABOUT: &str = "\
View a remote desktop, in a window or headless (--snapshot).

Three ways to reach it:
  HOST[:PORT] --user U         log on to a session of an RDP host such as `rdhost serve`
                               (port 3389 unless given; IPv6 as [addr]:port)
  --invitation FILE|STRING     join a desktop someone shares (`rdhost share`, Windows Desktop
                               Sharing) as an attendee. FILE is the invitation the sharer sent
                               (.msrcIncident or a text file); an argument starting with `<` is
                               the connection string itself. Every address in it is tried at once
                               and the first that answers is used.
  --listen ADDR:PORT --invitation FILE|STRING
                               reverse connect, for when the sharer cannot reach you (NAT): the
                               viewer listens and prints its own connection string as the first
                               line of standard output. Send it to the sharer, who runs
                               `rdhost share connect-to-client STRING`; the sharer dials in and
                               you are admitted like any attendee. With ADDR 0.0.0.0 (or ::) the
                               string lists this machine's addresses; with port 0 the real port.
                               One sharer connection is accepted; later ones are closed.

The password (the user's, or the invitation's, which the sharer gives you separately) comes from
--password PW, from standard input with --password -, or from a prompt on a terminal.

An attendee starts at the control level the sharer chose (usually none: no picture yet, or view).
--request-control view|interactive asks the sharer for more right after connecting; in the
window, Ctrl+Alt+C asks for interactive control, or gives it back (view). The window title
shows the target, the state (connecting, connected, paused, disconnected: why) and your control
level. Keyboard and mouse go to the remote desktop (the sharer drops them unless you are
interactive). The picture is drawn 1:1; a smaller window crops it.

--gfx asks the host for the graphics pipeline (MS-RDPEGFX) with H.264 (AVC420), as mstsc and
xfreerdp do: far fewer bytes and smoother motion from a host that has it (a host without it
just sends ordinary bitmap updates). --gfx no-avc offers the pipeline without H.264. It is off by default because H.264 is lossy (small text is slightly soft) and the default
path (RemoteFX, or lossless bitmaps) keeps every pixel the host has.

--snapshot FILE.png runs without a window, even when a display exists: it connects, waits for
the first picture (at most 30 s: a sharer that never grants view access ends it with an error),
keeps receiving for --after-ms (default 1000), writes the PNG and exits 0.

Without --snapshot a window needs DISPLAY or WAYLAND_DISPLAY. The exit status is 0 when you close
the window or the snapshot was written, 1 on any failure (the message says what happened and
what to do). Logging: RUST_LOG (default warn) on standard error.";

pub const VIEW_EXAMPLES: &str = "\
Examples:
  rdhost view 127.0.0.1:3389 --user alice                     # prompts for alice's password
  rdhost view host.example --user alice --password - < pw.txt
  rdhost view --invitation inv.msrcIncident --password 'the-pw' --name Bob
  rdhost view --invitation '<E><A KH=\"…\" ID=\"…\"/><C><T ID=\"1\" SID=\"0\"><L P=\"3390\" N=\"192.168.1.5\"/></T></C></E>' --password - --request-control view
  rdhost view --listen 0.0.0.0:5500 --invitation inv.msrcIncident --password 'the-pw'
  rdhost view --invitation inv.msrcIncident --password 'the-pw' --request-control view --snapshot shot.png --after-ms 2000";

/// What `--gfx` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GfxArg {
    /// The graphics pipeline with H.264 (AVC420; AVC444 is decoded too).
    Avc420,
    /// The graphics pipeline without H.264.
    NoAvc,
    /// No graphics pipeline (the default).
    Off,
}

impl From<GfxArg> for rdhost_client::Gfx {
    fn from(arg: GfxArg) -> Self {
        match arg {
            GfxArg::Avc420 => rdhost_client::Gfx::Avc420,
            GfxArg::NoAvc => rdhost_client::Gfx::NoAvc,
            GfxArg::Off => rdhost_client::Gfx::Off,
        }
    }
}

/// The control level to ask the sharer for (`--request-control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestedLevel {
    /// See the desktop.
    View,
    /// See it and drive it with keyboard and mouse.
    Interactive,
}

#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// An RDP host to log on to, HOST or HOST:PORT (port 3389 unless given; IPv6 as [ADDR]:PORT).
    #[arg(value_name = "HOST[:PORT]", requires = "user", conflicts_with_all = ["invitation", "listen"])]
    pub host: Option<String>,
    /// The user to log on as (with HOST).
    #[arg(long, short = 'u', value_name = "USER", requires = "host")]
    pub user: Option<String>,
    /// A sharer's invitation: a file (e.g. .msrcIncident), or the connection string itself when
    /// it starts with `<`.
    #[arg(long, value_name = "FILE|STRING", required_unless_present = "host")]
    pub invitation: Option<String>,
    /// Reverse connect: listen on ADDR:PORT, print this viewer's connection string, and wait
    /// for the sharer to dial in (needs --invitation).
    #[arg(long, value_name = "ADDR:PORT", requires = "invitation")]
    pub listen: Option<std::net::SocketAddr>,
    /// The password: the user's (HOST) or the invitation's; `-` reads one line from standard
    /// input [default: prompt on a terminal].
    #[arg(long, value_name = "PW|-")]
    pub password: Option<String>,
    /// Your name: the attendee name a sharer sees [default: your user name]; with HOST, the
    /// client name the host sees [default: this machine's name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Ask the sharer for this control level once connected.
    #[arg(long, value_name = "LEVEL", value_enum)]
    pub request_control: Option<RequestedLevel>,
    /// Headless: write the remote desktop to this PNG file and exit.
    #[arg(long, value_name = "FILE.png")]
    pub snapshot: Option<PathBuf>,
    /// With --snapshot: how long to keep receiving after the first picture, in milliseconds
    /// [default: 1000].
    #[arg(long, value_name = "N", requires = "snapshot")]
    pub after_ms: Option<u64>,
    /// The desktop size to ask for, WIDTHxHEIGHT [default: 1024x768]. A sharer's desktop has
    /// its own size.
    #[arg(long, value_name = "WxH")]
    pub size: Option<Size>,
    /// Offer the graphics pipeline (MS-RDPEGFX): H.264 (`--gfx` alone is `--gfx avc420`), or
    /// without H.264 (`no-avc`). Off by default: H.264 is lossy; see above.
    #[arg(long, value_name = "MODE", value_enum, num_args = 0..=1, default_missing_value = "avc420")]
    pub gfx: Option<GfxArg>,
}

/// Runs `rdhost view`. Blocking: the window needs the main thread.
pub fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let snapshot = args
        .snapshot
        .clone()
        .map(|path| snapshot::Options { path, after: std::time::Duration::from_millis(args.after_ms.unwrap_or(1000)) });
    // Everything that can fail without a network fails before the password is asked for.
    let password = args.password.clone();
    let mut plan = plan::Plan::from_args(args)?;
    if snapshot.is_none() && !window::display_available() {
        anyhow::bail!(
            "no display: DISPLAY and WAYLAND_DISPLAY are both unset; run this inside a graphical \
             session, or use --snapshot FILE.png to save one picture without a window"
        );
    }
    plan.password = plan::obtain_password(password.as_deref(), &plan.target)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rdhost-view")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Reverse connect binds and prints its connection string before anything else happens, so
    // a script can read the first line while we wait.
    let endpoint = runtime.block_on(plan.prepare())?;
    match snapshot {
        Some(options) => runtime.block_on(snapshot::run(&plan, endpoint, options)),
        None => window::run(runtime, plan, endpoint),
    }
}

fn init_tracing() {
    // winit warns about harmless display quirks (Xvfb's 0 mm screen, no XSETTINGS): not for users.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,winit=error"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Another subscriber may exist when this runs inside a test; keep it.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
