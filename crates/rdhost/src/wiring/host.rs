//! The host's shared state: the session table (the model), each session's desktop, and a
//! command line to each connected terminal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rdhost_desktop::{Desktop, DesktopEnd};
use rdhost_model::{AuthThrottle, LogonError, LogonKind, SessionEvent, SessionId, SessionTable, TerminalId, ThrottleConfig};
use rdhost_rdp::{AcceptConfig, Accepted, AuthFailure, Authenticate, Terminal, TerminalCommand, TerminalEnd, error_info};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::auth::{AuthError, Authenticator, Identity};
use crate::config::ServeConfig;
use super::desktops::DesktopSource;

pub struct Host {
    sessions: Mutex<SessionTable>,
    throttle: Mutex<AuthThrottle>,
    desktops: Mutex<HashMap<SessionId, Arc<dyn Desktop>>>,
    terminals: Mutex<HashMap<TerminalId, mpsc::Sender<TerminalCommand>>>,
    next_terminal: AtomicU64,
    authenticator: Arc<dyn Authenticator>,
    accept: AcceptConfig,
    desktop_source: DesktopSource,
    /// Desktops and their watchers run on the main runtime, not on a connection's thread.
    runtime: tokio::runtime::Handle,
}

impl Host {
    pub fn new(
        config: &ServeConfig,
        authenticator: Arc<dyn Authenticator>,
        accept: AcceptConfig,
        desktop_source: DesktopSource,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions: Mutex::new(SessionTable::new(config.policy())),
            throttle: Mutex::new(AuthThrottle::new(ThrottleConfig::default())),
            desktops: Mutex::new(HashMap::new()),
            terminals: Mutex::new(HashMap::new()),
            next_terminal: AtomicU64::new(1),
            authenticator,
            accept,
            desktop_source,
            runtime,
        })
    }

    /// One client, from its first byte to its last.
    pub async fn run_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        // Hold every answer to an address that recently failed to log on, whatever the protocol.
        let delay = self.throttle.lock().unwrap().delay(peer.ip(), Instant::now());
        if !delay.is_zero() {
            info!(%peer, ?delay, "holding the answer after earlier failures from this address");
            tokio::time::sleep(delay).await;
        }
        // "negotiate" offers NLA only while it can check every account the host would accept.
        let mut accept = self.accept.clone();
        if accept.security == rdhost_rdp::Security::Negotiate && !self.authenticator.nla_ready() {
            accept.security = rdhost_rdp::Security::Tls;
        }
        let Accepted { identity, mut terminal } = match rdhost_rdp::accept(stream, peer, &accept, &*self).await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Password failures are counted where the password is checked; NLA ones here.
                if let rdhost_rdp::AcceptError::AuthenticationFailed { via_nla: true, .. } = e {
                    self.throttle.lock().unwrap().record_failure(peer.ip(), Instant::now());
                }
                warn!(%peer, "connection dropped: {e}");
                return;
            }
        };
        let terminal_id = TerminalId(self.next_terminal.fetch_add(1, Ordering::Relaxed));
        let logon = self.sessions.lock().unwrap().logon(&identity.user, terminal_id, terminal.requested_session(), SystemTime::now());
        self.log_events();
        let logon = match logon {
            Ok(logon) => logon,
            Err(e) => {
                warn!(%peer, user = identity.user, "logon refused: {e}");
                let code = match e {
                    LogonError::NotYourSession(_) => error_info::SERVER_INSUFFICIENT_PRIVILEGES,
                    _ => error_info::SERVER_DENIED_CONNECTION,
                };
                terminal.refuse(code).await;
                return;
            }
        };
        let (commands, command_rx) = mpsc::channel(8);
        self.terminals.lock().unwrap().insert(terminal_id, commands);
        if let Some(displaced) = logon.displaced {
            self.command(displaced, TerminalCommand::Disconnect { error_info: error_info::DISCONNECTED_BY_OTHER_CONNECTION });
        }

        let desktop = match logon.kind {
            LogonKind::Reconnect => self.desktops.lock().unwrap().get(&logon.session).cloned(),
            LogonKind::New => self.start_desktop(logon.session, &identity, &terminal).await,
        };
        let Some(desktop) = desktop else {
            self.terminals.lock().unwrap().remove(&terminal_id);
            terminal.refuse(error_info::SERVER_DENIED_CONNECTION).await;
            return;
        };
        info!(%peer, user = identity.user, session = logon.session, kind = ?logon.kind, "terminal {} shows session {}", terminal_id.0, logon.session);

        let end = match terminal.announce_logon(logon.session).await {
            Ok(()) => terminal.run(desktop, command_rx).await,
            Err(end) => end,
        };
        self.terminals.lock().unwrap().remove(&terminal_id);
        let session = self.sessions.lock().unwrap().terminal_closed(terminal_id, SystemTime::now());
        self.log_events();
        match &end {
            TerminalEnd::ConnectionLost(why) => info!(%peer, session, "terminal {} lost: {why}", terminal_id.0),
            other => info!(%peer, session, "terminal {} ended: {other:?}", terminal_id.0),
        }
        // The terminal (and its encoder) is gone by now.
        return_freed_memory();
    }

    /// Start the desktop of a new session and watch it for its end.
    async fn start_desktop(self: &Arc<Self>, session: SessionId, identity: &Identity, terminal: &Terminal) -> Option<Arc<dyn Desktop>> {
        let (size, layout, run_as) = (terminal.size(), terminal.keyboard_layout(), identity.run_as.clone());
        let host = Arc::clone(self);
        let started = self.runtime.spawn(async move { host.desktop_source.start(session, run_as.as_ref(), size, layout).await }).await;
        let desktop: Arc<dyn Desktop> = match started {
            Ok(Ok(desktop)) => desktop,
            Ok(Err(e)) => {
                warn!(session, user = identity.user, "cannot start the session's desktop: {e:#}");
                self.sessions.lock().unwrap().desktop_failed(session);
                self.log_events();
                return None;
            }
            Err(e) => {
                warn!(session, "desktop start panicked: {e}");
                self.sessions.lock().unwrap().desktop_failed(session);
                return None;
            }
        };
        self.desktops.lock().unwrap().insert(session, Arc::clone(&desktop));
        if let Err(e) = self.sessions.lock().unwrap().desktop_ready(session, SystemTime::now()) {
            warn!(session, "session table disagrees after desktop start: {e}");
        }
        self.log_events();
        let host = Arc::clone(self);
        let watched = Arc::clone(&desktop);
        self.runtime.spawn(async move { host.watch_desktop(session, watched).await });
        Some(desktop)
    }

    /// When a desktop ends, its session ends, and the terminal showing it is told why.
    async fn watch_desktop(self: Arc<Self>, session: SessionId, desktop: Arc<dyn Desktop>) {
        let mut ended = desktop.ended();
        let reason = loop {
            if let Some(reason) = ended.borrow_and_update().clone() {
                break reason;
            }
            if ended.changed().await.is_err() {
                break DesktopEnd::Failed("desktop vanished".into());
            }
        };
        self.desktops.lock().unwrap().remove(&session);
        self.desktop_source.session_ended(session);
        let ended = self.sessions.lock().unwrap().end(session, SystemTime::now());
        self.log_events();
        let code = match &reason {
            DesktopEnd::UserLoggedOff => error_info::LOGOFF_BY_USER,
            DesktopEnd::Terminated => error_info::RPC_INITIATED_LOGOFF,
            DesktopEnd::Failed(_) => error_info::SERVER_DWM_CRASH,
        };
        info!(session, ?reason, "session ended");
        if let Some(terminal) = ended.and_then(|e| e.terminal) {
            self.command(terminal, TerminalCommand::Disconnect { error_info: code });
        }
    }

    fn command(&self, terminal: TerminalId, command: TerminalCommand) {
        let sender = self.terminals.lock().unwrap().get(&terminal).cloned();
        if let Some(sender) = sender {
            // A terminal that is not taking commands is about to end on its own.
            if sender.try_send(command).is_err() {
                debug!(terminal = terminal.0, "terminal not taking commands");
            }
        }
    }

    fn log_events(&self) {
        for event in self.sessions.lock().unwrap().drain_events() {
            match event {
                SessionEvent::StateChange { id, from, to } => debug!(session = id, %from, %to, "session state"),
                other => debug!(?other, "session event"),
            }
        }
    }

    /// Tell every client the host is going away and end every session.
    pub async fn shutdown(&self) {
        let terminals: Vec<_> = self.terminals.lock().unwrap().values().cloned().collect();
        for sender in terminals {
            let _ = sender.try_send(TerminalCommand::Disconnect { error_info: error_info::SERVER_SHUTDOWN });
        }
        let desktops: Vec<_> = self.desktops.lock().unwrap().values().cloned().collect();
        for desktop in &desktops {
            desktop.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for desktop in desktops {
            let mut ended = desktop.ended();
            while ended.borrow_and_update().is_none() && Instant::now() < deadline {
                let _ = tokio::time::timeout(Duration::from_millis(200), ended.changed()).await;
            }
        }
        // Let the goodbye PDUs reach the clients.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A connection's encoder buffers (several frames of a full screen) are freed when it ends, but
/// glibc keeps freed memory in its heaps: measured with x11 sessions at 1280x800, the host's RSS
/// grew ~20 MB per disconnected session of which ~15 MB came back with `malloc_trim`. Trimming
/// once per ended connection costs a few milliseconds.
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Authenticate for Host {
    type Identity = Identity;

    fn nt_hash(&self, user: &str) -> Option<[u8; 16]> {
        self.authenticator.nt_hash(user)
    }

    async fn identity_after_nla(&self, user: &str, peer: SocketAddr) -> Result<Identity, AuthFailure> {
        let authenticator = Arc::clone(&self.authenticator);
        let u = user.to_owned();
        let result = tokio::task::spawn_blocking(move || authenticator.identity_after_nla(&u))
            .await
            .unwrap_or_else(|e| Err(AuthError::Backend(format!("authenticator panicked: {e}"))));
        result.map_err(|e| {
            warn!(%peer, user, "NLA logon refused: {e}");
            AuthFailure(e.to_string())
        })
    }

    async fn authenticate(&self, user: &str, domain: Option<&str>, password: &str, peer: SocketAddr) -> Result<Identity, AuthFailure> {
        let authenticator = Arc::clone(&self.authenticator);
        let (u, d, p) = (user.to_owned(), domain.map(str::to_owned), password.to_owned());
        let result = tokio::task::spawn_blocking(move || authenticator.authenticate(&u, d.as_deref(), &p))
            .await
            .unwrap_or_else(|e| Err(AuthError::Backend(format!("authenticator panicked: {e}"))));
        match result {
            Ok(identity) => {
                self.throttle.lock().unwrap().record_success(peer.ip());
                Ok(identity)
            }
            Err(e) => {
                self.throttle.lock().unwrap().record_failure(peer.ip(), Instant::now());
                warn!(%peer, user, "authentication failed: {e}");
                Err(AuthFailure(e.to_string()))
            }
        }
    }
}
