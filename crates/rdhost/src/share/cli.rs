//! `rdhost share …`: the command line of the sharer and of the commands that drive it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

pub const SHARE_LONG_ABOUT: &str = "\
Share a desktop with invited attendees (Windows Desktop Sharing).

`rdhost share start` shares an X display (or a command in the built-in terminal desktop) and
prints an invitation (an MS-RAI connection string) as its first line of output. Send it and,
separately, the password to the people you invite; they join with `rdhost view --invitation` or
`xfreerdp inv.msrcIncident /assistance:PASSWORD /sec:tls /cert:ignore`. Attendees start unable
to see or control anything (or at --default-level view); you raise their level with
`rdhost share level`. Run inside an rdhost session, `share start` shares that session through
the host instead (the host's own address admits the attendees).

The other subcommands drive a running sharer through its control socket (--control).";

const START_EXAMPLES: &str = "\
Examples:
  rdhost share start --password - --invitation-file inv.msrcIncident   # share $DISPLAY
  rdhost share start --command htop --listen 127.0.0.1:3390 --password s3cret --auto-grant view
  rdhost share start --no-listen --password s3cret          # reverse connect only
  rdhost share connect-to-client \"$(cat viewer-string.txt)\"";

#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Start sharing (stays in the foreground; the first line of output is the invitation).
    #[command(after_long_help = START_EXAMPLES)]
    Start(StartArgs),
    /// Create another invitation; prints its connection string.
    Invite(InviteArgs),
    /// List the invitations.
    Invitations(ListArgs),
    /// Revoke an invitation: new connections with it are refused; connected attendees stay.
    Revoke(IdArgs),
    /// List the attendees: id, name, control level, invitation, address, connected time.
    Attendees(ListArgs),
    /// Set an attendee's control level (none: sees nothing; view; interactive: keyboard and mouse).
    Level(LevelArgs),
    /// Disconnect an attendee (they may reconnect while their invitation is valid; revoke it too).
    Terminate(IdArgs),
    /// Stop sending the screen to every attendee until `resume`.
    Pause(ControlArgs),
    /// Send the screen again after `pause`.
    Resume(ControlArgs),
    /// End the sharing: every attendee is disconnected and the sharer exits. Final.
    Close(ControlArgs),
    /// Share only a rectangle of the desktop (right and bottom exclusive); `rect --all` shares it all again.
    Rect(RectArgs),
    /// Reverse connect: dial a listening viewer (`rdhost view --listen`) given its connection string.
    #[command(name = "connect-to-client")]
    ConnectToClient(ConnectToClientArgs),
    /// Follow the sharing's events (attendee connected/disconnected/updated, control requests, …).
    Events(ListArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ControlArgs {
    /// The sharer's control socket [default: $XDG_RUNTIME_DIR/rdhost/share.sock].
    #[arg(long, value_name = "PATH", env = "RDHOST_SHARE_SOCKET")]
    pub control: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartLevel {
    None,
    View,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrantLevel {
    None,
    View,
    Interactive,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The X display to share [default: $DISPLAY].
    #[arg(long, value_name = ":N", conflicts_with = "command")]
    pub display: Option<String>,
    /// The Xauthority file holding the display's cookie [default: $XAUTHORITY].
    #[arg(long, value_name = "FILE", requires = "display")]
    pub xauthority: Option<PathBuf>,
    /// Share the built-in terminal desktop running this command (needs no X server).
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// Where attendees connect.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:3390", conflicts_with = "no_listen")]
    pub listen: SocketAddr,
    /// Listen nowhere: attendees join only by reverse connect (`connect-to-client`).
    #[arg(long)]
    pub no_listen: bool,
    /// The invitation's password (`-`: read a line from stdin) [default: a random one, printed on stderr].
    #[arg(long, value_name = "PW")]
    pub password: Option<String>,
    /// How many attendees the invitation admits at once.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub attendee_limit: u32,
    /// Also write the invitation to FILE (a .msrcIncident that xfreerdp takes as its first argument).
    #[arg(long, value_name = "FILE")]
    pub invitation_file: Option<PathBuf>,
    /// The level new attendees start at (never interactive until you grant it).
    #[arg(long, value_enum, value_name = "LEVEL", default_value = "none")]
    pub default_level: StartLevel,
    /// Grant every control request up to this level at once (`view` also starts attendees at view).
    #[arg(long, value_enum, value_name = "LEVEL", default_value = "none")]
    pub auto_grant: GrantLevel,
    #[command(flatten)]
    pub control: ControlArgs,
    /// Terminal desktop: font size in pixels.
    #[arg(long, value_name = "PX", default_value_t = crate::config::DEFAULT_FONT_PX, hide = true)]
    pub font_px: f32,
    /// Terminal desktop: its size.
    #[arg(long, value_name = "WxH", default_value = "1024x768")]
    pub size: String,
    /// Log filter (tracing syntax), to stderr.
    #[arg(long, value_name = "FILTER", default_value = "info", env = "RDHOST_LOG")]
    pub log: String,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The new invitation's password (`-`: read from stdin) [default: a random one, printed on stderr].
    #[arg(long, value_name = "PW")]
    pub password: Option<String>,
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub attendee_limit: u32,
    /// Attendee group name (Windows' bstrGroupName).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Also write the invitation to FILE (.msrcIncident).
    #[arg(long, value_name = "FILE")]
    pub invitation_file: Option<PathBuf>,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The id (see `rdhost share invitations` / `attendees`).
    pub id: u32,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct LevelArgs {
    /// The attendee's id (see `rdhost share attendees`).
    pub attendee: u32,
    #[arg(value_enum)]
    pub level: GrantLevel,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct RectArgs {
    #[arg(required_unless_present = "all")]
    pub left: Option<u16>,
    #[arg(required_unless_present = "all")]
    pub top: Option<u16>,
    #[arg(required_unless_present = "all")]
    pub right: Option<u16>,
    #[arg(required_unless_present = "all")]
    pub bottom: Option<u16>,
    /// Share the whole desktop again.
    #[arg(long, conflicts_with_all = ["left", "top", "right", "bottom"])]
    pub all: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ConnectToClientArgs {
    /// The viewer's connection string (`<E>…</E>`, as `rdhost view --listen` prints it), or a file holding it.
    #[arg(value_name = "STRING")]
    pub connection_string: String,
    #[command(flatten)]
    pub control: ControlArgs,
}
