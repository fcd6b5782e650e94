//! A connected client showing a desktop: input in, screen updates out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ironrdp_acceptor::{Acceptor, AcceptorResult, DesktopSize, accept_finalize};
use ironrdp_async::FramedWrite as _;
use ironrdp_core::decode;
use ironrdp_pdu::Action;
use ironrdp_pdu::input::fast_path::FastPathInput;
use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, McsMessage};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::x224::X224;
use ironrdp_svc::{StaticChannelSet, server_encode_svc_messages};
use ironrdp_tokio::TokioFramed;
use rdhost_desktop::{CursorShape, Desktop, InputEvent, KeyboardLayout, Rect, Size};
use rdhost_frames::{CodecProfile, Encoder, PointerLimits, default_pointer};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use crate::input;
use crate::pdus::{self, Channels};
use crate::pointer::PointerCache;

/// A client that does not take our bytes for this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

type Framed = TokioFramed<TlsStream<TcpStream>>;

/// What the connection sequence settled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Negotiated {
    pub profile: CodecProfile,
    pub max_request_size: u32,
    /// The client takes a deactivation-reactivation with a new size.
    pub resizable: bool,
    pub keyboard_layout: Option<KeyboardLayout>,
    pub pointer: PointerLimits,
}

/// Who the client is and what it asked for.
#[derive(Debug, Clone)]
pub(crate) struct ClientDetails {
    pub peer: SocketAddr,
    pub user: String,
    pub domain: Option<String>,
    pub requested_session: Option<u32>,
    pub keyboard_layout: KeyboardLayout,
}

/// Orders for a running terminal.
pub enum TerminalCommand {
    /// Show another desktop from now on (reconnect elsewhere, `tscon`).
    Show(Arc<dyn Desktop>),
    /// Tell the client why (a Set Error Info code, see [`crate::error_info`]) and close.
    Disconnect { error_info: u32 },
}

/// How a terminal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalEnd {
    /// The client said goodbye.
    ClientLeft,
    /// The connection broke, timed out or carried garbage. The text says what happened.
    ConnectionLost(String),
    /// We closed it on command, with this error info code.
    Disconnected { error_info: u32 },
}

/// One connected RDP client.
pub struct Terminal {
    framed: Framed,
    acceptor: Acceptor,
    channels: Channels,
    static_channels: StaticChannelSet,
    negotiated: Negotiated,
    encoder: Encoder,
    /// Which pointer shapes the client holds, by cache index.
    pointer: PointerCache,
    size: Size,
    resize_requests: watch::Receiver<Option<Size>>,
    client: ClientDetails,
    /// Input that arrived during the connection sequence, delivered once a desktop is shown.
    early_input: Vec<Vec<u8>>,
    /// Where the client's pointer last was: a wheel event's own position is not to be trusted
    /// (FreeRDP sends 0, 0).
    pointer_at: (u16, u16),
}

impl Terminal {
    pub(crate) fn new(
        framed: Framed,
        acceptor: Acceptor,
        result: AcceptorResult,
        negotiated: Negotiated,
        size: Size,
        resize_requests: watch::Receiver<Option<Size>>,
        mut client: ClientDetails,
    ) -> Self {
        if let Some(layout) = negotiated.keyboard_layout {
            client.keyboard_layout = layout;
        } else if result.keyboard_layout != 0 {
            client.keyboard_layout = KeyboardLayout(result.keyboard_layout);
        }
        Self {
            framed,
            acceptor,
            channels: Channels { io: result.io_channel_id, user: result.user_channel_id },
            static_channels: result.static_channels,
            encoder: Encoder::new(negotiated.profile, negotiated.max_request_size),
            pointer: PointerCache::new(negotiated.pointer),
            negotiated,
            size,
            resize_requests,
            client,
            early_input: result.input_events,
            pointer_at: (0, 0),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.client.peer
    }
    pub fn user(&self) -> &str {
        &self.client.user
    }
    pub fn domain(&self) -> Option<&str> {
        self.client.domain.as_deref()
    }
    /// The session id the client asked for with a pre-connection PDU (`xfreerdp /pcid:ID`).
    pub fn requested_session(&self) -> Option<u32> {
        self.client.requested_session
    }
    /// The desktop size the client asked for.
    pub fn size(&self) -> Size {
        self.size
    }
    pub fn keyboard_layout(&self) -> KeyboardLayout {
        self.client.keyboard_layout
    }
    pub fn codec(&self) -> CodecProfile {
        self.negotiated.profile
    }

    /// Tell the client which session it is in (clients show it; `/pcid` users need it).
    pub async fn announce_logon(&mut self, session_id: u32) -> Result<(), TerminalEnd> {
        let domain = self.client.domain.clone().unwrap_or_default();
        let bytes = pdus::logon_info(self.channels, session_id, &self.client.user, &domain);
        self.write(&bytes).await
    }

    /// Refuse the client before showing anything: send the error info and close.
    pub async fn refuse(mut self, error_info: u32) {
        self.say_goodbye(error_info).await;
    }

    /// Show `desktop` until the client leaves, the connection breaks, or a command ends it.
    pub async fn run(mut self, desktop: Arc<dyn Desktop>, mut commands: mpsc::Receiver<TerminalCommand>) -> TerminalEnd {
        let mut desktop = desktop;
        self.attach(&desktop);
        let mut screen = desktop.canvas().subscribe();
        // Only the newest shape matters: a watch never queues the ones in between.
        let mut cursor = desktop.cursor();
        if let Err(end) = self.show_pointer(cursor.borrow_and_update().clone()).await {
            return end;
        }
        if let Err(end) = self.start_channels().await {
            return end;
        }
        for frame in std::mem::take(&mut self.early_input) {
            if let Err(end) = self.handle_pdu(&frame, &desktop).await {
                return end;
            }
        }
        let mut suppressed = false;
        loop {
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(TerminalCommand::Show(next)) => {
                        desktop = next;
                        self.attach(&desktop);
                        screen = desktop.canvas().subscribe();
                        cursor = desktop.cursor();
                        if let Err(end) = self.show_pointer(cursor.borrow_and_update().clone()).await {
                            return end;
                        }
                    }
                    Some(TerminalCommand::Disconnect { error_info }) => {
                        self.say_goodbye(error_info).await;
                        return TerminalEnd::Disconnected { error_info };
                    }
                    // The owner is gone: nobody can use this terminal any more.
                    None => {
                        self.say_goodbye(crate::error_info::SERVER_SHUTDOWN).await;
                        return TerminalEnd::Disconnected { error_info: crate::error_info::SERVER_SHUTDOWN };
                    }
                },
                pdu = self.framed.read_pdu() => {
                    let frame = match pdu {
                        Ok((_, frame)) => frame,
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return TerminalEnd::ConnectionLost("client closed the connection".into()),
                        Err(e) => return TerminalEnd::ConnectionLost(format!("read failed: {e}")),
                    };
                    match self.handle_pdu(&frame, &desktop).await {
                        Ok(Some(ClientRequest::Leave)) => return TerminalEnd::ClientLeft,
                        Ok(Some(ClientRequest::Suppress(on))) => suppressed = on,
                        Ok(Some(ClientRequest::Refresh(rect))) => { suppressed = false; screen.invalidate(rect) }
                        Ok(None) => {}
                        Err(end) => return end,
                    }
                },
                Ok(()) = self.resize_requests.changed() => {
                    let requested = *self.resize_requests.borrow_and_update();
                    if let Some(size) = requested {
                        if self.negotiated.resizable {
                            debug!(?size, "client asked for a new size");
                            desktop.resize(size);
                        }
                    }
                },
                Ok(()) = cursor.changed() => {
                    let shape = cursor.borrow_and_update().clone();
                    if let Err(end) = self.show_pointer(shape).await {
                        return end;
                    }
                },
                () = screen.changed(), if !suppressed => {
                    let Some(frame) = screen.take_aligned(self.encoder.x_alignment()) else { continue };
                    if frame.size != self.size {
                        if !self.negotiated.resizable {
                            // The client cannot follow: keep the desktop at its size.
                            desktop.resize(self.size);
                            continue;
                        }
                        self = match self.reactivate(frame.size).await {
                            Ok(terminal) => terminal,
                            Err(end) => return end,
                        };
                        // A reactivated client starts again from its default pointer.
                        if let Err(end) = self.show_pointer(cursor.borrow().clone()).await {
                            return end;
                        }
                    }
                    let mut encoder = std::mem::replace(&mut self.encoder, Encoder::new(self.negotiated.profile, self.negotiated.max_request_size));
                    // Encoding is CPU work: keep it off the connection's thread.
                    let encoded = tokio::task::spawn_blocking(move || {
                        let out = encoder.encode(&frame);
                        (encoder, out)
                    }).await;
                    let bytes = match encoded {
                        Ok((encoder, Ok(bytes))) => { self.encoder = encoder; bytes }
                        Ok((encoder, Err(e))) => { self.encoder = encoder; warn!(error = %e, "encoding failed; frame dropped"); continue }
                        Err(e) => return TerminalEnd::ConnectionLost(format!("encoder panicked: {e}")),
                    };
                    if let Err(end) = self.write(&bytes).await {
                        return end;
                    }
                },
            }
        }
    }

    /// Virtual channels speak first (the dynamic-channel server offers its capabilities and
    /// opens display control); once per connection, not again after a reactivation.
    async fn start_channels(&mut self) -> Result<(), TerminalEnd> {
        let mut out = Vec::new();
        for (_, channel, channel_id) in self.static_channels.iter_mut() {
            let Some(channel_id) = channel_id else { continue };
            let messages = channel.start().map_err(|e| TerminalEnd::ConnectionLost(format!("virtual channel start: {e}")))?;
            let bytes = server_encode_svc_messages(messages, channel_id, self.channels.user)
                .map_err(|e| TerminalEnd::ConnectionLost(format!("virtual channel start: {e}")))?;
            out.extend(bytes);
        }
        self.write(&out).await
    }

    fn attach(&mut self, desktop: &Arc<dyn Desktop>) {
        desktop.set_keyboard_layout(self.client.keyboard_layout);
        if desktop.canvas().size() != self.size {
            desktop.resize(self.size);
        }
    }

    /// Make the client show `shape` (`None`: its default arrow).
    async fn show_pointer(&mut self, shape: Option<Arc<CursorShape>>) -> Result<(), TerminalEnd> {
        let bytes = self.pointer.update_for(shape.as_ref()).unwrap_or_else(|e| {
            warn!(error = %e, "pointer shape not sent; default pointer instead");
            default_pointer()
        });
        self.write(&bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), TerminalEnd> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.framed.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TerminalEnd::ConnectionLost(format!("write failed: {e}"))),
            Err(_) => Err(TerminalEnd::ConnectionLost(format!("client took no data for {WRITE_TIMEOUT:?}"))),
        }
    }

    async fn say_goodbye(&mut self, error_info: u32) {
        let mut bytes = pdus::set_error_info(self.channels, error_info);
        bytes.extend(pdus::disconnect_ultimatum());
        if self.write(&bytes).await.is_ok() {
            // Give TLS a chance to say close_notify; the client may already be gone.
            let (stream, _) = self.framed.get_inner_mut();
            let _ = tokio::time::timeout(Duration::from_secs(2), tokio::io::AsyncWriteExt::shutdown(stream)).await;
        }
    }

    /// Deactivation-reactivation (MS-RDPBCGR 1.3.1.3): the client's screen takes a new size.
    async fn reactivate(mut self, size: Size) -> Result<Self, TerminalEnd> {
        info!(peer = %self.client.peer, ?size, "resizing client screen");
        self.write(&pdus::deactivate_all(self.channels)).await?;
        let Terminal { framed, acceptor, static_channels, mut pointer, .. } = self;
        // The client may drop its pointer cache with the rest of its state.
        pointer.clear();
        let mut acceptor = Acceptor::new_deactivation_reactivation(
            acceptor,
            static_channels,
            DesktopSize { width: size.width, height: size.height },
        )
        .map_err(|e| TerminalEnd::ConnectionLost(format!("reactivation: {e}")))?;
        let (framed, result) = accept_finalize(framed, &mut acceptor)
            .await
            .map_err(|e| TerminalEnd::ConnectionLost(format!("reactivation: {e:#}")))?;
        Ok(Terminal {
            framed,
            acceptor,
            channels: Channels { io: result.io_channel_id, user: result.user_channel_id },
            static_channels: result.static_channels,
            encoder: Encoder::new(self.negotiated.profile, self.negotiated.max_request_size),
            pointer,
            size,
            early_input: result.input_events,
            pointer_at: (0, 0),
            ..self
        })
    }

    /// Handle one PDU from the client.
    async fn handle_pdu(&mut self, frame: &[u8], desktop: &Arc<dyn Desktop>) -> Result<Option<ClientRequest>, TerminalEnd> {
        let action = Action::from_fp_output_header(frame[0]).map_err(|_| garbage("unknown PDU header"))?;
        let mut events = Vec::new();
        match action {
            Action::FastPath => {
                let input: FastPathInput = decode(frame).map_err(|e| garbage(&format!("fast-path input: {e}")))?;
                for event in input.input_events() {
                    input::from_fastpath(event, &mut events);
                }
            }
            Action::X224 => {
                let message: X224<McsMessage<'_>> = decode(frame).map_err(|e| garbage(&format!("MCS: {e}")))?;
                match message.0 {
                    McsMessage::SendDataRequest(data) if data.channel_id == self.channels.io => {
                        let control: ShareControlHeader =
                            decode(data.user_data.as_ref()).map_err(|e| garbage(&format!("share control: {e}")))?;
                        let ShareControlPdu::Data(header) = control.share_control_pdu else {
                            debug!("ignoring share control PDU");
                            return Ok(None);
                        };
                        match header.share_data_pdu {
                            ShareDataPdu::Input(pdu) => {
                                for event in &pdu.0 {
                                    input::from_slow_path(event, &mut events);
                                }
                            }
                            // The client asks to log off; Windows answers "denied" and the
                            // client then disconnects, leaving the session running.
                            ShareDataPdu::ShutdownRequest => {
                                self.write(&pdus::shutdown_denied(self.channels)).await?;
                            }
                            ShareDataPdu::SuppressOutput(pdu) => return Ok(Some(ClientRequest::Suppress(pdu.desktop_rect.is_none()))),
                            ShareDataPdu::RefreshRectangle(pdu) => {
                                let rect = pdu.areas_to_refresh.iter().fold(Rect::new(0, 0, 0, 0), |acc, r| {
                                    acc.union(Rect::new(r.left, r.top, r.right.saturating_sub(r.left).saturating_add(1), r.bottom.saturating_sub(r.top).saturating_add(1)))
                                });
                                return Ok(Some(ClientRequest::Refresh(rect)));
                            }
                            other => debug!(pdu = ?std::mem::discriminant(&other), "ignoring share data PDU"),
                        }
                    }
                    McsMessage::SendDataRequest(data) => {
                        let channel_id = data.channel_id;
                        let Some(svc) = self.static_channels.get_by_channel_id_mut(channel_id) else {
                            debug!(channel_id, "data on an unknown channel");
                            return Ok(None);
                        };
                        let responses = svc.process(&data.user_data).map_err(|e| garbage(&format!("virtual channel {channel_id}: {e}")))?;
                        let bytes = server_encode_svc_messages(responses, channel_id, self.channels.user)
                            .map_err(|e| garbage(&format!("virtual channel reply: {e}")))?;
                        self.write(&bytes).await?;
                    }
                    McsMessage::DisconnectProviderUltimatum(DisconnectProviderUltimatum { .. }) => return Ok(Some(ClientRequest::Leave)),
                    _ => debug!("ignoring MCS message"),
                }
            }
        }
        for mut event in events {
            match &mut event {
                InputEvent::PointerMove { x, y } | InputEvent::Button { x, y, .. } => self.pointer_at = (*x, *y),
                InputEvent::Wheel { x, y, .. } => (*x, *y) = self.pointer_at,
                _ => {}
            }
            desktop.input(event);
        }
        Ok(None)
    }
}

enum ClientRequest {
    Leave,
    Suppress(bool),
    Refresh(Rect),
}

fn garbage(what: &str) -> TerminalEnd {
    TerminalEnd::ConnectionLost(format!("malformed PDU from client: {what}"))
}

