//! `rdhost share start`: the standalone sharer. A `Host` that admits only invitations, with
//! one console session (an existing X display, or a command in the built-in terminal desktop),
//! its own control socket, and a listener unless reverse connect is all it does. Run inside an
//! rdhost session without --display/--command, it asks that host to share the session instead.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rdhost_desktop::terminal::{TerminalDesktop, TerminalOptions};
use rdhost_desktop::x11::{AttachOptions, X11Desktop, XDisplay};
use rdhost_desktop::{Desktop, Size};
use rdhost_model::{Admission, ControlLevel, SharingPolicy};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::host::Host;
use super::sharing::{listeners_for, new_password};
use super::DesktopSource;
use crate::auth::{self, RunAsPolicy};
use crate::config::{DesktopKind, DesktopSize, SecurityMode, ServeConfig, Settings};
use crate::control::protocol::{ENV_SOCKET, Request};
use crate::share::cli::{GrantLevel, StartArgs, StartLevel};
use crate::share::{password_arg, write_invitation_file};
use crate::state_dir::StateDir;
use crate::tls;

/// The variable a shared command finds the sharer's control socket in.
pub const ENV_SHARE_SOCKET: &str = "RDHOST_SHARE_SOCKET";

pub fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    crate::init_logging(&args.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let through_host = args.display.is_none() && args.command.is_none() && std::env::var_os(ENV_SOCKET).is_some_and(|s| !s.is_empty());
    if through_host {
        return runtime.block_on(share_through_host(args));
    }
    runtime.block_on(run(args))
}

fn policy(args: &StartArgs) -> anyhow::Result<SharingPolicy> {
    let default_level = match args.default_level {
        StartLevel::None => ControlLevel::None,
        StartLevel::View => ControlLevel::View,
    };
    let auto_grant = match args.auto_grant {
        GrantLevel::None => ControlLevel::None,
        GrantLevel::View => ControlLevel::View,
        GrantLevel::Interactive => ControlLevel::Interactive,
    };
    SharingPolicy::new(default_level, auto_grant).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The invitation's password: given, read from stdin, or made up (and shown on stderr).
fn invitation_password(args: &StartArgs) -> anyhow::Result<String> {
    Ok(match password_arg(args.password.as_deref())? {
        Some(password) if password.is_empty() => bail!("the invitation password is empty: give one, or leave --password out for a random one"),
        Some(password) => password,
        None => {
            let password = new_password();
            eprintln!("invitation password: {password}");
            password
        }
    })
}

async fn start_desktop(args: &StartArgs, control: &Path) -> anyhow::Result<(Arc<dyn Desktop>, DesktopKind, Option<XDisplay>)> {
    if let Some(command) = &args.command {
        let size: DesktopSize = args.size.parse().map_err(|e: String| anyhow::anyhow!("--size: {e}"))?;
        let options = TerminalOptions {
            size: Size::new(size.width, size.height),
            font_px: args.font_px,
            // A command line is sh syntax, whatever the user's login shell is.
            shell: Some(PathBuf::from("/bin/sh")),
            command: Some(command.clone()),
            env: vec![(ENV_SHARE_SOCKET.to_owned(), control.display().to_string())],
            ..Default::default()
        };
        let desktop = TerminalDesktop::start(options).with_context(|| format!("cannot start {command:?} in the terminal desktop"))?;
        return Ok((desktop, DesktopKind::Terminal, None));
    }
    let name = args
        .display
        .clone()
        .or_else(|| std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()))
        .ok_or_else(|| anyhow::anyhow!("nothing to share: DISPLAY is not set; pass --display :N, or --command CMD for a terminal desktop"))?;
    let xauthority = args.xauthority.clone().or_else(|| std::env::var_os("XAUTHORITY").filter(|x| !x.is_empty()).map(PathBuf::from));
    let display = XDisplay { name: name.clone(), xauthority: xauthority.clone() };
    X11Desktop::probe(&display).with_context(|| {
        format!(
            "cannot use X display {name} (is it running, and does --xauthority {} hold its cookie?)",
            xauthority.as_deref().map_or_else(|| "(none)".into(), |p| p.display().to_string())
        )
    })?;
    // The sharer's own screen keeps its size and keyboard layout: attendees adapt to it.
    let desktop = X11Desktop::attach(display.clone(), AttachOptions { allow_resize: false, apply_layout: false })
        .with_context(|| format!("cannot share X display {name}"))?;
    Ok((desktop, DesktopKind::Display, Some(display)))
}

async fn run(args: StartArgs) -> anyhow::Result<ExitCode> {
    let control_path = args.control.path();
    let policy = policy(&args)?;
    let password = invitation_password(&args)?;
    // Bind first: a port in use is reported before anything starts.
    let listener = if args.no_listen {
        None
    } else {
        Some(TcpListener::bind(args.listen).await.with_context(|| {
            format!("cannot listen on {} (is another sharer or RDP server there? pass --listen ADDR:PORT or --no-listen)", args.listen)
        })?)
    };
    let (desktop, kind, display) = start_desktop(&args, &control_path).await?;

    let settings = Settings {
        desktop: Some(kind),
        display: display.as_ref().map(|d| d.name.clone()),
        xauthority: display.as_ref().and_then(|d| d.xauthority.clone()),
        listen: Some(args.listen),
        control_socket: Some(control_path.clone()),
        security: Some(SecurityMode::Tls),
        ..Settings::default()
    };
    // The sharer is a user's tool, root included: its certificate lives in the user's state
    // directory, never in the system host's /var/lib/rdhost.
    let user_state = crate::state_dir::default_state_dir_for(false, std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"));
    let config = ServeConfig::from_settings(settings, user_state).map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = StateDir::create(&config.state_dir)
        .with_context(|| format!("cannot create the state directory {}", config.state_dir.display()))?;
    let identity = tls::load_or_generate(&state).context("cannot set up the TLS certificate")?;
    let accept = rdhost_rdp::AcceptConfig {
        tls: tokio_rustls::TlsAcceptor::from(identity.server_config().context("cannot use the TLS certificate")?),
        // FreeRDP's Remote Assistance mode never does NLA; the invitation is the credential.
        security: rdhost_rdp::Security::Tls,
        handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
        default_size: Size::new(config.default_size.0, config.default_size.1),
        codec: rdhost_rdp::CodecPreference::Auto,
        public_key: identity.public_key.clone(),
    };
    // No accounts log on here; the authenticator is never asked.
    let authenticator = auth::build(config.auth, state.users_file(), RunAsPolicy::detect());
    let desktop_source = match &display {
        Some(d) => DesktopSource::display(d.clone()),
        None => DesktopSource::terminal(args.font_px),
    };
    let host = Host::new(&config, authenticator, accept, desktop_source, Admission::InvitationsOnly, tokio::runtime::Handle::current());
    let local = match &listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    host.set_listeners(local.map(listeners_for).unwrap_or_default());
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map_or_else(|| "sharer".to_owned(), |u| u.name);
    let session = host.open_console(&user, Arc::clone(&desktop), policy).map_err(|e| anyhow::anyhow!("cannot share the desktop: {e}"))?;
    let invitation = host
        .create_invitation(session, Some(password), args.attendee_limit, None, policy)
        .map_err(|e| anyhow::anyhow!("cannot create the invitation: {}", e.message))?;

    // The first line of standard output is the invitation: scripts read it.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", invitation.connection_string)?;
        out.flush()?;
    }
    if let Some(path) = &args.invitation_file {
        write_invitation_file(path, &invitation.connection_string)?;
        eprintln!("invitation written to {}", path.display());
    }
    let control = crate::control::server::bind(&control_path).await?;
    let _socket_file = crate::control::server::SocketFile(control_path.clone());
    tokio::spawn(crate::control::server::serve(control, Arc::clone(&host)));
    match local {
        Some(local) => eprintln!("sharing {} on {local}", describe(&display)),
        None => eprintln!("sharing {} for reverse connect only (rdhost share connect-to-client)", describe(&display)),
    }
    for l in host_listeners_too_short(&host) {
        warn!("invitation address {l} has 8 characters or fewer: FreeRDP 2.11 skips such addresses; listen on a specific address instead");
    }
    eprintln!("TLS certificate SHA-256 fingerprint: {}", identity.fingerprint);
    eprintln!("control socket: {} (rdhost share attendees|level|pause|close …)", control_path.display());
    info!(session, "sharing started");

    let mut closed = host.sharing_closed();
    let mut ended = desktop.ended();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let code = loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept => match accepted {
                Ok((stream, peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        warn!(%peer, "cannot set TCP_NODELAY: {e}");
                    }
                    host.spawn_connection(stream, peer, None);
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = closed.wait_for(|c| *c) => { eprintln!("sharing closed"); break ExitCode::SUCCESS }
            end = ended.wait_for(Option::is_some) => {
                let why = end.map(|e| format!("{:?}", *e)).unwrap_or_default();
                eprintln!("the shared desktop ended ({why}); sharing stops");
                break ExitCode::SUCCESS;
            }
            _ = tokio::signal::ctrl_c() => { eprintln!("interrupted; sharing stops"); break ExitCode::SUCCESS }
            _ = sigterm.recv() => { eprintln!("terminated; sharing stops"); break ExitCode::SUCCESS }
        }
    };
    drop(listener);
    // Close (everyone told, silently on the sharer's side), then let the goodbyes go out.
    let _ = crate::control::server::ControlApi::call(
        Arc::clone(&host),
        crate::control::server::Peer { uid: nix::unistd::geteuid().as_raw(), gid: 0, pid: None },
        Request::CloseSharing,
    )
    .await;
    host.shutdown().await;
    Ok(code)
}

fn describe(display: &Option<XDisplay>) -> String {
    match display {
        Some(d) => format!("X display {}", d.name),
        None => "the terminal desktop".into(),
    }
}

fn host_listeners_too_short(host: &Host) -> Vec<String> {
    host.share_listeners.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|l| l.name.len() <= 8).map(|l| l.name.clone()).collect()
}

/// Inside an rdhost session: the host shares it (its listener admits the attendees). Stays in
/// the foreground like the standalone sharer; the share subcommands reach the host through a
/// relay on the usual share socket.
async fn share_through_host(args: StartArgs) -> anyhow::Result<ExitCode> {
    let host_socket = PathBuf::from(std::env::var_os(ENV_SOCKET).expect("checked by the caller"));
    let password = invitation_password(&args)?;
    let names = |level: ControlLevel| level.name().to_owned();
    let policy = policy(&args)?;
    let request = Request::Invite {
        password: Some(password),
        attendee_limit: args.attendee_limit,
        group: None,
        policy: Some(crate::control::protocol::SharePolicyInfo { default_level: names(policy.default_level()), auto_grant: names(policy.auto_grant()) }),
    };
    let invitation: crate::control::protocol::InvitationInfo = crate::control::client::call_as(&host_socket, &request)
        .await
        .map_err(|e| anyhow::anyhow!("the rdhost host of this session refused to share it: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", invitation.connection_string)?;
        out.flush()?;
    }
    if let Some(path) = &args.invitation_file {
        write_invitation_file(path, &invitation.connection_string)?;
    }
    let control_path = args.control.path();
    let relay = crate::control::server::bind(&control_path).await?;
    let _socket_file = crate::control::server::SocketFile(control_path.clone());
    eprintln!("this session is shared through its host; control socket: {}", control_path.display());
    let relay_to = host_socket.clone();
    tokio::spawn(async move {
        // Each connection is passed through byte for byte: the host sees this session's
        // process as the caller, as it should.
        while let Ok((mut inbound, _)) = relay.accept().await {
            let to = relay_to.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::UnixStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // `rdhost share close` (through the relay) ends the sharing on the host: then stop too.
    let closed_elsewhere = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if crate::control::client::call(&host_socket, &Request::ShareInfo).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
        _ = closed_elsewhere => {
            eprintln!("sharing closed");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = crate::control::client::call(&host_socket, &Request::CloseSharing).await;
    eprintln!("sharing stopped");
    Ok(ExitCode::SUCCESS)
}
