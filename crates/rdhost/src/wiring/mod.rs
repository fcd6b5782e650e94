//! The daemon (`rdhost serve`): a listener, the session table, desktops and terminals, wired
//! together. Rules live in `rdhost_model`; this module only carries facts to the model and its
//! decisions to the terminals and desktops.

mod control;
mod desktops;
mod gate;
mod host;
mod memory;
mod sharing;
pub mod sharer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdhost_desktop::Size;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::{self, RunAsPolicy};
use crate::config::{CodecChoice, SecurityMode, ServeConfig};
use crate::state_dir::StateDir;
use crate::tls;

pub use desktops::DesktopSource;
pub use host::Host;

/// Run the host until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // First: a service manager stopping the host while it starts gets a clean stop too.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let state = StateDir::create(&config.state_dir)
        .with_context(|| format!("cannot create the state directory {}", config.state_dir.display()))?;
    let identity = tls::load_or_generate(&state).context("cannot set up the TLS certificate")?;
    let tls_config = identity.server_config().context("cannot use the TLS certificate")?;
    let authenticator = auth::build_for_serve(config.auth, &config.pam_service, state.users_file(), RunAsPolicy::detect())?;

    let security = match config.security {
        SecurityMode::Tls => rdhost_rdp::Security::Tls,
        SecurityMode::Nla => rdhost_rdp::Security::Nla,
        SecurityMode::Negotiate => rdhost_rdp::Security::Negotiate,
    };
    let accept = rdhost_rdp::AcceptConfig {
        tls: tokio_rustls::TlsAcceptor::from(tls_config),
        security,
        handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
        default_size: Size::new(config.default_size.0, config.default_size.1),
        codec: match config.codec {
            CodecChoice::Auto => rdhost_rdp::CodecPreference::Auto,
            CodecChoice::Lossless => rdhost_rdp::CodecPreference::Lossless,
            CodecChoice::NoH264 => rdhost_rdp::CodecPreference::NoH264,
        },
        public_key: identity.public_key.clone(),
    };

    let desktop_source = DesktopSource::from_config(&config)?;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another RDP server running there?)", config.listen))?;
    let local: SocketAddr = listener.local_addr()?;
    let (desktop, authentication) = (desktop_source.describe(), authenticator.describe());

    let host = Host::new(&config, authenticator, accept, desktop_source, rdhost_model::Admission::Accounts, tokio::runtime::Handle::current());
    host.set_listeners(sharing::listeners_for(local));
    // Bound before "listening" is printed: whoever reads that line may use the socket at once.
    let control = crate::control::server::bind(&config.control_socket).await?;
    let _socket_file = crate::control::server::SocketFile(config.control_socket.clone());
    // Scripts and tests read these lines: keep their shape.
    println!("rdhost listening on {local}");
    println!("TLS certificate SHA-256 fingerprint: {}", identity.fingerprint);
    println!("desktop: {desktop}");
    println!("authentication: {authentication}");
    println!("control socket: {}", config.control_socket.display());
    info!(%local, cert = %identity.cert_path.display(), generated = identity.generated, "listening");
    tokio::spawn(crate::control::server::serve(control, Arc::clone(&host)));

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small input and pointer PDUs must not wait for Nagle.
                    if let Err(e) = stream.set_nodelay(true) {
                        warn!(%peer, error = %e, "cannot set TCP_NODELAY");
                    }
                    host.spawn_connection(stream, peer, None);
                }
                // Out of file descriptors and the like: keep serving the others.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = tokio::signal::ctrl_c() => { info!("SIGINT: shutting down"); break }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break }
        }
    }
    drop(listener);
    host.shutdown().await;
    println!("rdhost stopped");
    Ok(())
}
