//! `rdhost share`: Windows Desktop Sharing from the command line. `start` runs a sharer (the
//! composition lives in `wiring::sharer`); the other subcommands are requests to a running
//! sharer's control socket, printed for people (or as JSON).

pub mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::control::client::{self, CallError};
use crate::control::commands::{event_line, finish, read_password};
use crate::control::protocol::{AttendeeInfo, InvitationInfo, RectInfo, Request};
use cli::{ControlArgs, GrantLevel, ShareCommand};

/// The sharer's control socket when `--control` is not given: `$XDG_RUNTIME_DIR/rdhost/share.sock`
/// (`/tmp/rdhost-UID/share.sock` without one).
pub fn default_control_socket() -> PathBuf {
    let uid = nix::unistd::getuid().as_raw();
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|d| d.is_absolute()) {
        Some(dir) => dir.join("rdhost/share.sock"),
        None => PathBuf::from(format!("/tmp/rdhost-{uid}/share.sock")),
    }
}

impl ControlArgs {
    pub fn path(&self) -> PathBuf {
        self.control.clone().unwrap_or_else(default_control_socket)
    }
}

impl GrantLevel {
    pub fn name(self) -> &'static str {
        match self {
            GrantLevel::None => "none",
            GrantLevel::View => "view",
            GrantLevel::Interactive => "interactive",
        }
    }
}

/// A password argument: `-` reads a line from stdin.
pub(crate) fn password_arg(arg: Option<&str>) -> anyhow::Result<Option<String>> {
    match arg {
        Some("-") => Ok(Some(read_password().context("cannot read the password from standard input")?)),
        other => Ok(other.map(str::to_owned)),
    }
}

/// Write an invitation where xfreerdp 2.11 can take it as its first argument.
pub(crate) fn write_invitation_file(path: &Path, connection_string: &str) -> anyhow::Result<()> {
    let parsed = rdhost_model::ConnectionString::parse(connection_string)
        .map_err(|e| anyhow::anyhow!("the sharer's invitation does not parse: {e}"))?;
    std::fs::write(path, parsed.to_msrc_incident()).with_context(|| format!("cannot write the invitation file {}", path.display()))
}

pub fn run(command: ShareCommand) -> anyhow::Result<ExitCode> {
    if let ShareCommand::Start(args) = command {
        return crate::wiring::sharer::start(args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_request(command, &mut std::io::stdout().lock()))
}

async fn run_request(command: ShareCommand, out: &mut dyn std::io::Write) -> anyhow::Result<ExitCode> {
    let done = |socket: PathBuf, request: Request| async move { share_finish(client::call(&socket, &request).await.map(|_| ())) };
    Ok(match command {
        ShareCommand::Start(_) => unreachable!("handled by run"),
        ShareCommand::Invite(a) => {
            let request = Request::Invite { password: password_arg(a.password.as_deref())?, attendee_limit: a.attendee_limit, group: a.group, policy: None };
            match client::call_as::<InvitationInfo>(&a.control.path(), &request).await {
                Ok(invitation) => {
                    writeln!(out, "{}", invitation.connection_string)?;
                    if let Some(password) = &invitation.password {
                        eprintln!("rdhost: invitation {} password: {password}", invitation.id);
                    }
                    if let Some(path) = &a.invitation_file {
                        write_invitation_file(path, &invitation.connection_string)?;
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => share_finish(Err(e)),
            }
        }
        ShareCommand::Invitations(a) => match client::call_as::<Vec<InvitationInfo>>(&a.control.path(), &Request::Invitations).await {
            Ok(list) => {
                if a.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                } else {
                    writeln!(out, "{:>4}  {:<8} {:>9}  {:<12} CONNECTION STRING", "ID", "STATE", "ATTENDEES", "GROUP")?;
                    for i in &list {
                        let state = if i.revoked { "revoked" } else { "valid" };
                        let used = format!("{}/{}", i.attendees, i.attendee_limit);
                        writeln!(out, "{:>4}  {:<8} {:>9}  {:<12} {}", i.id, state, used, i.group, i.connection_string)?;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => share_finish(Err(e)),
        },
        ShareCommand::Revoke(a) => done(a.control.path(), Request::Revoke { invitation: a.id }).await,
        ShareCommand::Attendees(a) => match client::call_as::<Vec<AttendeeInfo>>(&a.control.path(), &Request::Attendees).await {
            Ok(list) => {
                if a.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                } else {
                    writeln!(out, "{:>4}  {:<20} {:<12} {:>10}  {:<22} CONNECTED", "ID", "NAME", "LEVEL", "INVITATION", "ADDRESS")?;
                    for t in &list {
                        writeln!(out, "{:>4}  {:<20} {:<12} {:>10}  {:<22} {}", t.id, t.name, t.level, t.invitation, t.address, t.connected)?;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => share_finish(Err(e)),
        },
        ShareCommand::Level(a) => done(a.control.path(), Request::SetLevel { attendee: a.attendee, level: a.level.name().into() }).await,
        ShareCommand::Terminate(a) => done(a.control.path(), Request::Terminate { attendee: a.id }).await,
        ShareCommand::Pause(a) => done(a.path(), Request::Pause).await,
        ShareCommand::Resume(a) => done(a.path(), Request::Resume).await,
        ShareCommand::Close(a) => done(a.path(), Request::CloseSharing).await,
        ShareCommand::Rect(a) => {
            let rect = match (a.all, a.left, a.top, a.right, a.bottom) {
                (false, Some(left), Some(top), Some(right), Some(bottom)) => Some(RectInfo { left, top, right, bottom }),
                _ => None,
            };
            done(a.control.path(), Request::SharedRect { rect }).await
        }
        ShareCommand::ConnectToClient(a) => {
            // A file holding the viewer's string works too.
            let text = if a.connection_string.trim_start().starts_with('<') {
                a.connection_string.clone()
            } else {
                std::fs::read_to_string(&a.connection_string).with_context(|| {
                    format!("{:?} is neither a connection string (<E>…</E>) nor a readable file", a.connection_string)
                })?
            };
            match client::call_as::<AttendeeInfo>(&a.control.path(), &Request::ConnectToClient { connection_string: text }).await {
                Ok(attendee) => {
                    writeln!(out, "attendee {} ({}) connected from {}", attendee.id, attendee.name, attendee.address)?;
                    ExitCode::SUCCESS
                }
                Err(e) => share_finish(Err(e)),
            }
        }
        ShareCommand::Events(a) => {
            let result = client::follow_events(&a.control.path(), |event| {
                let line = if a.json { serde_json::to_string(&event).expect("events serialise") } else { event_line(&event) };
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    std::process::exit(0);
                }
            })
            .await;
            share_finish(result)
        }
    })
}

/// Like the session commands' ending, but a missing socket means no sharer runs.
fn share_finish(result: Result<(), CallError>) -> ExitCode {
    match result {
        Err(CallError::Connect { path, source }) => {
            eprintln!("rdhost: no sharer answers on {}: {source} (start one with `rdhost share start`, or pass --control PATH)", path.display());
            ExitCode::FAILURE
        }
        other => finish(other),
    }
}
