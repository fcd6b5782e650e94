//! A real Terminal (accept + run) on loopback, showing fake desktops: a canvas with a stage, a
//! cursor the test sets, and an input sink that records what reaches it.

#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdhost_desktop::{Canvas, ClipboardOffer, ClipboardText, CursorShape, InputEvent, KeyboardLayout, Size};
use rdhost_frames::{FeedProfile, Stage};
use rdhost_rdp::{
    AcceptConfig, AuthFailure, Authenticate, ClientDetails, CodecPreference, ControlRequest, InputSink, Security, Showing,
    TerminalCommand, TerminalEnd, TerminalStats,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// A desktop that is a canvas, a cursor the test sets and a record of the input it got.
pub struct FakeDesktop {
    pub canvas: Arc<Canvas>,
    pub stage: Stage,
    cursor: watch::Sender<Option<Arc<CursorShape>>>,
    /// Whether resize requests change the canvas (a primary's do; a viewer's do not).
    follows_resize: bool,
    pub input: Mutex<Vec<InputEvent>>,
    pub layouts: Mutex<Vec<KeyboardLayout>>,
    /// Control levels asked for on encomsp, in order.
    pub control_requests: Mutex<Vec<ControlRequest>>,
    /// Text copied in the desktop, as a desktop publishes it.
    pub clipboard: watch::Sender<Option<ClipboardText>>,
    /// What the client offers, newest last (`None`: it holds no text any more).
    pub offers: Mutex<Vec<Option<ClipboardOffer>>>,
    /// Whether the terminal takes part in the clipboard (a primary does; a watching viewer not).
    pub clipboard_allowed: std::sync::atomic::AtomicBool,
}

impl FakeDesktop {
    pub fn new(size: Size, follows_resize: bool) -> Arc<Self> {
        let canvas = Canvas::new(size);
        Arc::new(Self {
            stage: Stage::new(Arc::clone(&canvas)),
            canvas,
            cursor: watch::channel(None).0,
            follows_resize,
            input: Mutex::new(Vec::new()),
            layouts: Mutex::new(Vec::new()),
            control_requests: Mutex::new(Vec::new()),
            clipboard: watch::channel(None).0,
            offers: Mutex::new(Vec::new()),
            clipboard_allowed: std::sync::atomic::AtomicBool::new(true),
        })
    }

    pub fn set_cursor(&self, shape: Option<Arc<CursorShape>>) {
        self.cursor.send_replace(shape);
    }

    /// Paint the whole canvas one colour.
    pub fn fill(&self, rgb: [u8; 3]) {
        self.canvas.draw(|pixels, size| {
            for px in pixels.chunks_mut(4) {
                px.copy_from_slice(&[rgb[2], rgb[1], rgb[0], 0xFF]);
            }
            vec![size.rect()]
        });
    }

    pub fn input_seen(&self) -> Vec<InputEvent> {
        self.input.lock().unwrap().clone()
    }

    /// What a terminal with `profile` shows of this desktop as session `session_id`.
    pub fn showing(self: &Arc<Self>, session_id: u32, profile: FeedProfile) -> Showing {
        Showing {
            session_id,
            feed: self.stage.feed(profile),
            cursor: self.cursor.subscribe(),
            input: Arc::new(Sink(Arc::clone(self))),
        }
    }
}

/// Forwards everything to the fake desktop, as the host's sink does for a primary terminal.
struct Sink(Arc<FakeDesktop>);

impl InputSink for Sink {
    fn input(&self, event: InputEvent) {
        self.0.input.lock().unwrap().push(event);
    }
    fn resize(&self, size: Size) {
        if self.0.follows_resize {
            self.0.canvas.resize(size);
        }
    }
    fn keyboard_layout(&self, layout: KeyboardLayout) {
        self.0.layouts.lock().unwrap().push(layout);
    }
    fn control_request(&self, request: ControlRequest) {
        self.0.control_requests.lock().unwrap().push(request);
    }
    fn clipboard(&self) -> Option<watch::Receiver<Option<ClipboardText>>> {
        Some(self.0.clipboard.subscribe())
    }
    fn clipboard_allowed(&self) -> bool {
        self.0.clipboard_allowed.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn clipboard_offer(&self, offer: Option<ClipboardOffer>) {
        self.0.offers.lock().unwrap().push(offer);
    }
}

/// The ticket an attendee must bring (in the Client Info's WorkingDir).
pub const TICKET: &str = "ticket-42";

/// Anyone with the password "pw" is let in (through NLA too), and an attendee with the ticket
/// `TICKET` and the invitation password "pw" (Password "*", as xfreerdp /assistance sends it);
/// it keeps what it was shown of the client.
#[derive(Default)]
pub struct Password {
    pub seen: Mutex<Option<ClientDetails>>,
}

impl Authenticate for Password {
    type Identity = ();
    async fn authenticate(&self, client: &ClientDetails, password: &str) -> Result<(), AuthFailure> {
        *self.seen.lock().unwrap() = Some(client.clone());
        let attendee = password == "*" && client.working_dir == TICKET && client.alternate_shell == "pw";
        if password == "pw" || attendee { Ok(()) } else { Err(AuthFailure("wrong password".into())) }
    }
    fn nt_hash(&self, _user: &str) -> Option<[u8; 16]> {
        use md4::Digest as _;
        let utf16: Vec<u8> = "pw".encode_utf16().flat_map(u16::to_le_bytes).collect();
        Some(md4::Md4::digest(&utf16).into())
    }
    async fn identity_after_nla(&self, client: &ClientDetails) -> Result<(), AuthFailure> {
        *self.seen.lock().unwrap() = Some(client.clone());
        Ok(())
    }
}

pub fn accept_config(security: Security) -> AcceptConfig {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    AcceptConfig {
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        security,
        handshake_timeout: Duration::from_secs(20),
        default_size: Size::new(640, 480),
        codec: CodecPreference::Lossless,
        public_key: cert_public_key(cert.der()),
    }
}

/// The certificate's subject public key (the BIT STRING's content), which CredSSP binds to.
fn cert_public_key(der: &[u8]) -> Vec<u8> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes().to_vec()
}

/// How the terminal gets its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The accepted TCP socket itself.
    Tcp,
    /// An in-memory pipe, relayed to the TCP socket: the terminal never sees a socket.
    Pipe,
}

/// What the terminal knew once the client finished the connection sequence.
pub struct Connected {
    pub profile: FeedProfile,
    pub client: ClientDetails,
    /// What the authenticator was shown.
    pub authenticated: ClientDetails,
    pub stats: Arc<TerminalStats>,
    pub encomsp_joined: bool,
}

/// A terminal serving one client on a loopback port.
pub struct Served {
    pub addr: SocketAddr,
    pub commands: mpsc::Sender<TerminalCommand>,
    pub connected: oneshot::Receiver<Connected>,
    pub end: oneshot::Receiver<TerminalEnd>,
}

/// Serve `desktop` as session `session_id` to the first client that connects (TLS security).
pub async fn serve(desktop: Arc<FakeDesktop>, session_id: u32, transport: Transport) -> Served {
    serve_with(desktop, session_id, transport, Security::Tls).await
}

pub async fn serve_with(desktop: Arc<FakeDesktop>, session_id: u32, transport: Transport, security: Security) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = async move { listener.accept().await.map(|(stream, _)| stream) };
    run_terminal(desktop, session_id, transport, security, addr, socket)
}

/// Reverse connect: dial `viewer` (which listens) and serve the client there (TLS security).
pub fn serve_reverse(desktop: Arc<FakeDesktop>, session_id: u32, viewer: SocketAddr) -> Served {
    run_terminal(desktop, session_id, Transport::Tcp, Security::Tls, viewer, TcpStream::connect(viewer))
}

/// A terminal on whatever socket `socket` brings. A refused client ends the task quietly:
/// `connected` and `end` then fail.
fn run_terminal(
    desktop: Arc<FakeDesktop>,
    session_id: u32,
    transport: Transport,
    security: Security,
    addr: SocketAddr,
    socket: impl Future<Output = std::io::Result<TcpStream>> + 'static,
) -> Served {
    let (commands, command_rx) = mpsc::channel(8);
    let (connected_tx, connected) = oneshot::channel();
    let (end_tx, end) = oneshot::channel();
    // IronRDP's acceptor futures are not Send: the terminal runs on the test's LocalSet.
    tokio::task::spawn_local(async move {
        let stream = socket.await.unwrap();
        let peer = stream.peer_addr().unwrap();
        stream.set_nodelay(true).unwrap();
        let auth = Password::default();
        let accepted = match transport {
            Transport::Tcp => rdhost_rdp::accept(stream, peer, &accept_config(security), &auth).await,
            Transport::Pipe => {
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                tokio::spawn(async move {
                    let (mut stream, mut ours) = (stream, ours);
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut ours).await;
                });
                rdhost_rdp::accept(theirs, peer, &accept_config(security), &auth).await
            }
        };
        let terminal = match accepted {
            Ok(accepted) => accepted.terminal,
            Err(e) => {
                eprintln!("connection refused: {e}");
                return;
            }
        };
        let profile = terminal.feed_profile();
        let _ = connected_tx.send(Connected {
            profile,
            client: terminal.client().clone(),
            authenticated: auth.seen.lock().unwrap().clone().expect("the authenticator was asked"),
            stats: terminal.stats(),
            encomsp_joined: terminal.encomsp_joined(),
        });
        let showing = desktop.showing(session_id, profile);
        let _ = end_tx.send(terminal.run(showing, command_rx).await);
    });
    Served { addr, commands, connected, end }
}

/// A child process killed and reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

/// An X server for xfreerdp, and its DISPLAY; `None` (the test is skipped) when xfreerdp or
/// Xvfb is missing, which CI does not allow.
pub fn xvfb() -> Option<(Proc, String)> {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    if !on_path("xfreerdp") || !on_path("Xvfb") {
        assert!(std::env::var_os("CI").is_none(), "xfreerdp and Xvfb are needed (apt packages freerdp2-x11, xvfb)");
        eprintln!("skipped: xfreerdp or Xvfb missing");
        return None;
    }
    // -displayfd picks a free display and prints its number when ready: no races with others.
    let mut xvfb = Proc(
        Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x900x24", "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(xvfb.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    Some((xvfb, format!(":{}", line.trim())))
}
