//! A connected client: what it shows comes from a session's feed, what it types goes to an
//! input sink. Which session, and what the input may do there, is the caller's business.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ironrdp_acceptor::{Acceptor, AcceptorResult, DesktopSize};
use rdhost_desktop::clipboard::{ClipboardOffer, ClipboardText};
use rdhost_desktop::{CursorShape, InputEvent, KeyboardLayout, Size};
use rdhost_frames::{CodecProfile, Feed, FeedProfile, PointerLimits, Update, default_pointer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::accept::{Framed, finish_reactivation_at};
use rdhost_encomsp::EncomspPdu;

use crate::client::ClientDetails;
use crate::clipboard::ClipboardLink;
use crate::encomsp::{ControlRequest, Participant};
use crate::gfx::{GfxStatus, RateControl};
use crate::pdus::{self, Channels};
use crate::pointer::PointerCache;
use crate::state::{ActiveAction, ActiveState};

/// A client that does not take our bytes for this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a goodbye waits for the client to take it and close.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// A client that does not finish a deactivation-reactivation in this long is gone.
const REACTIVATION_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Where a terminal's input goes. The wiring implements it (the gate applies the terminal's
/// control level; only a session's primary terminal may resize the desktop or set its layout).
/// Every call must return at once: it runs on the terminal's loop.
pub trait InputSink: Send + Sync {
    fn input(&self, event: InputEvent);
    /// The client asked for a new desktop size (display control, or its size when it starts
    /// showing a session).
    fn resize(&self, size: Size);
    fn keyboard_layout(&self, layout: KeyboardLayout);
    /// The client asked for a control level on the `encomsp` channel (an attendee of a shared
    /// desktop). Nothing changes until the owner decides; the connection is the identity.
    fn control_request(&self, _request: ControlRequest) {}
    /// The session's clipboard (text copied in its desktop) and its changes; `None`, the
    /// default, for a session without one. The terminal offers its text to the client.
    fn clipboard(&self) -> Option<watch::Receiver<Option<ClipboardText>>> {
        None
    }
    /// Whether this terminal takes part in the session's clipboard now (a primary and an
    /// interactive viewer do). Asked at every exchange: the answer may change while it shows
    /// the session. No by default.
    fn clipboard_allowed(&self) -> bool {
        false
    }
    /// The client copied text (`Some`: the desktop fetches it when a program pastes), or holds
    /// no text any more. Called only when [`clipboard_allowed`](Self::clipboard_allowed).
    fn clipboard_offer(&self, _offer: Option<ClipboardOffer>) {}
}

/// What a terminal shows: a session's encoded screen, its pointer shape, and where input goes.
pub struct Showing {
    /// Sent to the client (Save Session Info): clients show it, `/pcid` users need it.
    pub session_id: u32,
    pub feed: Feed,
    /// Only the newest shape matters: a watch never queues the ones in between.
    pub cursor: watch::Receiver<Option<Arc<CursorShape>>>,
    pub input: Arc<dyn InputSink>,
}

/// Orders for a running terminal.
pub enum TerminalCommand {
    /// Show another session from now on, without the client reconnecting (`tscon`, shadow).
    Show(Showing),
    /// Tell the client why (a Set Error Info code, see [`crate::error_info`]) and close.
    Disconnect { error_info: u32 },
    /// Tell the client about a participant (OD_PARTICIPANT_CREATED on `encomsp`): itself,
    /// with its new control level, or another attendee. Nothing is sent (and a debug line is
    /// logged) when the client did not join `encomsp`.
    Participant(Participant),
    /// Tell the client a participant left (OD_PARTICIPANT_REMOVED on `encomsp`), and why
    /// (`disc_type`: 0 the sharer ended it, 1 an error, 2 it left itself). Nothing is sent when
    /// the client did not join `encomsp`.
    ParticipantRemoved { participant_id: u32, disc_type: u32 },
    /// Pause (`true`) or resume the picture: no screen updates while paused, whatever is
    /// shown; the client is told (GRAPHICS_STREAM_PAUSED / RESUMED) when it joined `encomsp`,
    /// and gets the whole, newest screen on resume. The pause outlasts a [`Show`](Self::Show).
    Pause(bool),
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

/// A terminal's traffic, readable by the wiring while the terminal runs.
#[derive(Debug, Default)]
pub struct TerminalStats {
    /// Bytes of PDUs read from the client in the active phase.
    pub bytes_in: AtomicU64,
    /// Bytes written to the client in the active phase (before TLS).
    pub bytes_out: AtomicU64,
    /// Input PDUs (those carrying at least one input event).
    pub frames_in: AtomicU64,
    /// Screen updates written (one per update from the feed, whatever its parts).
    pub frames_out: AtomicU64,
    /// When the last input PDU arrived, in milliseconds since the Unix epoch; 0 before any.
    pub last_input: AtomicU64,
}

/// How pixels reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    /// Fast-path updates in the codec the connection sequence settled.
    FastPath,
    /// H.264 (AVC420) frames over the graphics pipeline, since the client's advertisement
    /// number `generation` (see [`GfxStatus`]).
    Gfx { generation: u32 },
}

/// One connected RDP client.
pub struct Terminal {
    framed: Framed,
    /// The finished connection sequence, kept for deactivation-reactivation (which consumes
    /// it and leaves the next one here).
    acceptor: Option<Acceptor>,
    state: ActiveState,
    negotiated: Negotiated,
    /// Which pointer shapes the client holds, by cache index.
    pointer: PointerCache,
    /// The client's screen now.
    size: Size,
    /// The size the client wants: its own at first, then what display control asks for.
    wanted: Size,
    resize_requests: watch::Receiver<Option<Size>>,
    client: ClientDetails,
    /// Suppress Output is on: the client's window is hidden.
    suppressed: bool,
    /// The owner paused the picture ([`TerminalCommand::Pause`]).
    paused: bool,
    /// Input that arrived during the connection sequence, delivered once something is shown.
    early_input: Vec<Vec<u8>>,
    stats: Arc<TerminalStats>,
    /// The `cliprdr` channel's traffic with the shown session's clipboard.
    clipboard: ClipboardLink,
    pipeline: Pipeline,
    /// The graphics surface must be made again before the next frame, whatever its size: the
    /// frames come from another feed now, which the client's decoder has not seen.
    new_surface: bool,
    /// The client's graphics pipeline was found to carry no H.264 (said once in the log).
    gfx_without_avc: bool,
    /// The H.264 bit rate this terminal asks for, from its acknowledgements' round trip.
    rate: RateControl,
}

impl Terminal {
    pub(crate) fn new(
        framed: Framed,
        acceptor: Acceptor,
        result: AcceptorResult,
        negotiated: Negotiated,
        resize_requests: watch::Receiver<Option<Size>>,
        mut client: ClientDetails,
    ) -> Self {
        // The Input capability's layout is the client's final word; the core data's came first.
        if let Some(layout) = negotiated.keyboard_layout {
            client.keyboard_layout = layout;
        }
        Self {
            framed,
            acceptor: Some(acceptor),
            state: ActiveState::new(Channels { io: result.io_channel_id, user: result.user_channel_id }, result.static_channels),
            pointer: PointerCache::new(negotiated.pointer),
            negotiated,
            size: client.size,
            wanted: client.size,
            resize_requests,
            client,
            suppressed: false,
            paused: false,
            early_input: result.input_events,
            stats: Arc::new(TerminalStats::default()),
            clipboard: ClipboardLink::default(),
            pipeline: Pipeline::FastPath,
            new_surface: false,
            gfx_without_avc: false,
            rate: RateControl::default(),
        }
    }

    /// Who the client is and what it asked for.
    pub fn client(&self) -> &ClientDetails {
        &self.client
    }

    /// What a feed for this terminal must encode: its codec, and its request-size limit.
    pub fn feed_profile(&self) -> FeedProfile {
        FeedProfile::new(self.negotiated.profile, self.negotiated.max_request_size)
    }

    pub fn stats(&self) -> Arc<TerminalStats> {
        Arc::clone(&self.stats)
    }

    /// Whether the client joined the `encomsp` channel (desktop-sharing attendees do): only
    /// then do [`TerminalCommand::Participant`] and the pause notices reach it.
    pub fn encomsp_joined(&self) -> bool {
        self.state.encomsp_joined()
    }

    /// Refuse the client before showing anything: send the error info and close.
    pub async fn refuse(mut self, error_info: u32) {
        self.say_goodbye(error_info).await;
    }

    /// Show `showing` (and whatever later [`TerminalCommand::Show`]s bring) until the client
    /// leaves, the connection breaks, or a command ends it.
    pub async fn run(mut self, mut showing: Showing, mut commands: mpsc::Receiver<TerminalCommand>) -> TerminalEnd {
        match self.active_loop(&mut showing, &mut commands).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    /// Every way of ending leaves this loop as an `Err`.
    async fn active_loop(&mut self, showing: &mut Showing, commands: &mut mpsc::Receiver<TerminalCommand>) -> Result<Infallible, TerminalEnd> {
        self.start_showing(showing).await?;
        let started = self.state.start_channels().map_err(TerminalEnd::ConnectionLost)?;
        self.write(&started).await?;
        for frame in std::mem::take(&mut self.early_input) {
            self.handle_pdu(&frame, showing).await?;
        }
        loop {
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(TerminalCommand::Show(next)) => {
                        info!(peer = %self.client.peer, from = showing.session_id, to = next.session_id, "terminal switches session");
                        *showing = next;
                        self.start_showing(showing).await?;
                    }
                    Some(TerminalCommand::Disconnect { error_info }) => {
                        self.say_goodbye(error_info).await;
                        return Err(TerminalEnd::Disconnected { error_info });
                    }
                    Some(TerminalCommand::Participant(participant)) => self.send_encomsp(&participant.to_pdu()).await?,
                    Some(TerminalCommand::ParticipantRemoved { participant_id, disc_type }) => {
                        self.send_encomsp(&EncomspPdu::ParticipantRemoved { participant_id, disc_type, disc_code: 0 }).await?
                    }
                    Some(TerminalCommand::Pause(on)) => self.pause(on, showing).await?,
                    // The owner is gone: nobody can use this terminal any more.
                    None => {
                        self.say_goodbye(crate::error_info::SERVER_SHUTDOWN).await;
                        return Err(TerminalEnd::Disconnected { error_info: crate::error_info::SERVER_SHUTDOWN });
                    }
                },
                pdu = self.framed.read_pdu() => {
                    let frame = match pdu {
                        Ok((_, frame)) => frame,
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return Err(TerminalEnd::ConnectionLost("client closed the connection".into()));
                        }
                        Err(e) => return Err(TerminalEnd::ConnectionLost(format!("read failed: {e}"))),
                    };
                    self.stats.bytes_in.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    self.handle_pdu(&frame, showing).await?;
                    self.follow_pipeline(showing);
                },
                Ok(()) = self.resize_requests.changed() => {
                    let requested = *self.resize_requests.borrow_and_update();
                    if let Some(size) = requested.filter(|_| self.negotiated.resizable) {
                        debug!(?size, "client asked for a new size");
                        self.wanted = size;
                        // The desktop's new size, if the sink lets it change, comes back
                        // through the feed, and the client is reactivated then.
                        showing.input.resize(size);
                    }
                },
                Ok(()) = showing.cursor.changed() => {
                    let shape = showing.cursor.borrow_and_update().clone();
                    self.show_pointer(shape).await?;
                },
                wake = self.clipboard.next() => {
                    let bytes = self.clipboard.wake(wake, &mut self.state, &*showing.input);
                    self.write_some(&bytes).await?;
                },
                update = showing.feed.next(), if !self.feed_paused() && self.may_send_frame() => match update {
                    Ok(update) => self.show_update(update, showing).await?,
                    Err(e) => warn!(error = %e, "encoding failed; update dropped"),
                },
            }
        }
    }

    /// Begin showing a session: at the start, and after every switch.
    async fn start_showing(&mut self, showing: &mut Showing) -> Result<(), TerminalEnd> {
        // A feed comes in the codec of the connection sequence: on the graphics pipeline the
        // terminal takes the same view of the same stage as H.264, on a surface of its own.
        if matches!(self.pipeline, Pipeline::Gfx { .. }) {
            self.retarget_feed(showing);
            self.new_surface = true;
        }
        // The sink decides whether this terminal may drive the desktop (a primary does).
        showing.input.keyboard_layout(self.client.keyboard_layout);
        showing.input.resize(self.wanted);
        let domain = self.client.domain.clone().unwrap_or_default();
        self.write(&pdus::logon_info(self.state.channels(), showing.session_id, &self.client.user, &domain)).await?;
        showing.feed.set_paused(self.feed_paused());
        // A feed's first update is the whole screen, at the desktop's size: a size that differs
        // from the client's reactivates it there (see `show_update`).
        let shape = showing.cursor.borrow_and_update().clone();
        self.show_pointer(shape).await?;
        let bytes = self.clipboard.show(&mut self.state, &*showing.input);
        self.write_some(&bytes).await
    }

    async fn show_update(&mut self, update: Update, showing: &mut Showing) -> Result<(), TerminalEnd> {
        if let Pipeline::Gfx { .. } = self.pipeline {
            return self.show_frame(update, showing).await;
        }
        if update.size != self.size {
            if !self.negotiated.resizable {
                // The client cannot follow: ask for the desktop back at its size (only a
                // primary gets it) and show nothing of another size.
                showing.input.resize(self.size);
                return Ok(());
            }
            // An update at a new size repaints the whole screen: after the reactivation it is
            // written as it is.
            self.reactivate(update.size, showing).await?;
        }
        self.write_parts(update.parts.iter().map(|part| &part[..])).await?;
        self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// One EGFX frame. A new size (or a new feed) gets a new surface first: ResetGraphics makes
    /// the client's screen that size (no deactivation-reactivation on the graphics pipeline).
    async fn show_frame(&mut self, update: Update, showing: &mut Showing) -> Result<(), TerminalEnd> {
        let surface = self.state.gfx().and_then(|gfx| gfx.surface_size());
        if self.new_surface || surface != Some(update.size) {
            if update.size != self.size && !self.negotiated.resizable {
                showing.input.resize(self.size);
                return Ok(());
            }
            match self.state.gfx_send(|gfx| gfx.reset_surface(update.size)) {
                Ok(bytes) => self.write(&bytes).await?,
                Err(e) => {
                    // The channel went away under us: the next PDU from the client tells, and
                    // the terminal goes back to fast-path then.
                    warn!(peer = %self.client.peer, error = %e, "graphics surface not made; update dropped");
                    return Ok(());
                }
            }
            if update.size != self.size {
                info!(peer = %self.client.peer, size = ?update.size, "client screen resized (graphics pipeline)");
            }
            self.size = update.size;
            self.new_surface = false;
        }
        if update.gfx.is_empty() {
            return Ok(());
        }
        match self.state.gfx_send(|gfx| gfx.frame(&update.gfx, Instant::now())) {
            Ok(bytes) => {
                self.write(&bytes).await?;
                self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => warn!(peer = %self.client.peer, error = %e, "graphics frame not sent"),
        }
        Ok(())
    }

    /// Whether the feed may be asked for another update: on the graphics pipeline only while
    /// fewer frames than the window are unacknowledged (the stage coalesces meanwhile).
    fn may_send_frame(&self) -> bool {
        match self.pipeline {
            Pipeline::FastPath => true,
            Pipeline::Gfx { .. } => self.state.gfx_frames().is_none_or(|frames| frames.can_send()),
        }
    }

    /// Follow what the graphics pipeline offers now: switch to H.264 once the client confirmed
    /// capabilities with AVC420, take a fresh feed when it starts its graphics over, and go back
    /// to the fast-path codec when the channel closes.
    fn follow_pipeline(&mut self, showing: &mut Showing) {
        let status = self.state.gfx_status();
        let wanted = match status {
            Some(GfxStatus::Ready { avc420: true, generation }) => Pipeline::Gfx { generation },
            _ => Pipeline::FastPath,
        };
        if matches!(status, Some(GfxStatus::Ready { avc420: false, .. })) && !self.gfx_without_avc {
            self.gfx_without_avc = true;
            info!(peer = %self.client.peer, codec = self.negotiated.profile.name(), "graphics pipeline without AVC420; terminal stays on fast-path");
        }
        if wanted == self.pipeline {
            if let Pipeline::Gfx { .. } = self.pipeline {
                self.adapt_rate(showing);
            }
            return;
        }
        match wanted {
            Pipeline::Gfx { .. } => info!(peer = %self.client.peer, codec = "avc420 over EGFX", "terminal codec"),
            Pipeline::FastPath => info!(peer = %self.client.peer, codec = self.negotiated.profile.name(), "graphics pipeline closed; terminal codec"),
        }
        self.pipeline = wanted;
        self.new_surface = true;
        self.retarget_feed(showing);
    }

    /// Ask the shared H.264 encoder for fewer bits while this client acknowledges slowly, and
    /// for its own rate again once it keeps up. The rate is the profile's, shared with every
    /// terminal of it (the last ask wins): a slow one lowers it for all until it recovers.
    fn adapt_rate(&mut self, showing: &mut Showing) {
        let Some(round_trip) = self.state.gfx_frames().and_then(|frames| frames.round_trip()) else { return };
        let full = rdhost_frames::H264Encoder::default_bitrate(showing.feed.size());
        if let Some(rate) = self.rate.adapt(round_trip, full, Instant::now()) {
            debug!(peer = %self.client.peer, ?round_trip, ?rate, "H.264 bit rate");
            showing.feed.set_bitrate(rate);
        }
    }

    /// Replace the shown feed with one of the same stage and view in this terminal's codec now:
    /// it joins that codec's group and starts with the whole screen.
    fn retarget_feed(&mut self, showing: &mut Showing) {
        let codec = match self.pipeline {
            Pipeline::FastPath => self.negotiated.profile,
            Pipeline::Gfx { .. } => CodecProfile::Avc420,
        };
        let old = &showing.feed;
        let profile = FeedProfile::new(codec, self.negotiated.max_request_size).with_region(old.profile().region);
        let mut feed = old.stage().feed(profile);
        feed.set_hidden(old.is_hidden());
        feed.set_paused(self.feed_paused());
        showing.feed = feed;
        self.rate = RateControl::default();
    }

    /// Carry out what one PDU from the client asks for.
    async fn handle_pdu(&mut self, frame: &[u8], showing: &mut Showing) -> Result<(), TerminalEnd> {
        let actions = self.state.process(frame).map_err(|e| TerminalEnd::ConnectionLost(e.to_string()))?;
        let mut input = false;
        for action in actions {
            match action {
                ActiveAction::Input(event) => {
                    showing.input.input(event);
                    input = true;
                }
                ActiveAction::Write(bytes) => self.write(&bytes).await?,
                ActiveAction::Suppress(on) => {
                    self.suppressed = on;
                    showing.feed.set_paused(self.feed_paused());
                }
                ActiveAction::Refresh(rect) => {
                    // A client that asks for pixels wants to see them (unless the owner paused
                    // the picture: then it gets them on resume).
                    self.suppressed = false;
                    showing.feed.set_paused(self.feed_paused());
                    showing.feed.refresh(rect);
                }
                ActiveAction::Leave => return Err(TerminalEnd::ClientLeft),
                ActiveAction::ControlRequest(request) => {
                    debug!(peer = %self.client.peer, ?request, "client asks for a control level");
                    showing.input.control_request(request);
                }
            }
        }
        let bytes = self.clipboard.after_pdu(&mut self.state, &*showing.input);
        self.write_some(&bytes).await?;
        if input {
            self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            self.stats.last_input.store(now, Ordering::Relaxed);
        }
        Ok(())
    }

    /// No screen updates: the client hid its window, or the owner paused the picture.
    fn feed_paused(&self) -> bool {
        self.suppressed || self.paused
    }

    async fn pause(&mut self, on: bool, showing: &mut Showing) -> Result<(), TerminalEnd> {
        info!(peer = %self.client.peer, paused = on, "picture paused or resumed");
        self.paused = on;
        showing.feed.set_paused(self.feed_paused());
        let notice = if on { EncomspPdu::GraphicsStreamPaused } else { EncomspPdu::GraphicsStreamResumed };
        self.send_encomsp(&notice).await?;
        if !on {
            // The whole screen, as it is now: the client's picture is as old as the pause.
            let size = showing.feed.size();
            showing.feed.refresh(size.rect());
        }
        Ok(())
    }

    /// Send `pdu` on the encomsp channel, if the client joined it.
    async fn send_encomsp(&mut self, pdu: &EncomspPdu) -> Result<(), TerminalEnd> {
        match self.state.encomsp_message(pdu) {
            Some(Ok(bytes)) => self.write(&bytes).await,
            Some(Err(e)) => {
                warn!(error = %e, "encomsp PDU not sent");
                Ok(())
            }
            None => {
                debug!(peer = %self.client.peer, pdu_type = pdu.pdu_type(), "client did not join encomsp; nothing sent");
                Ok(())
            }
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
        self.write_parts(std::iter::once(bytes)).await
    }

    /// `write`, skipping the flush when there is nothing to write.
    async fn write_some(&mut self, bytes: &[u8]) -> Result<(), TerminalEnd> {
        if bytes.is_empty() { Ok(()) } else { self.write(bytes).await }
    }

    /// Write PDUs in order, flushing once after the last.
    async fn write_parts<'a>(&mut self, parts: impl Iterator<Item = &'a [u8]>) -> Result<(), TerminalEnd> {
        let (stream, _) = self.framed.get_inner_mut();
        let stats = &self.stats;
        let written = tokio::time::timeout(WRITE_TIMEOUT, async move {
            for part in parts {
                stream.write_all(part).await?;
                stats.bytes_out.fetch_add(part.len() as u64, Ordering::Relaxed);
            }
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TerminalEnd::ConnectionLost(format!("write failed: {e}"))),
            Err(_) => Err(TerminalEnd::ConnectionLost(format!("client took no data for {WRITE_TIMEOUT:?}"))),
        }
    }

    async fn say_goodbye(&mut self, error_info: u32) {
        let mut bytes = pdus::set_error_info(self.state.channels(), error_info);
        bytes.extend(pdus::disconnect_ultimatum());
        if self.write(&bytes).await.is_ok() {
            // Give TLS a chance to say close_notify; the client may already be gone.
            let (stream, _) = self.framed.get_inner_mut();
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, stream.shutdown()).await;
            // Then read (and drop) what the client still sends until it closes. Closing a socket
            // with unread data makes the kernel reset the connection; a client whose next write
            // fails then gives up without reading the Set Error Info it already holds (xfreerdp,
            // refused right after activation, exited 131 instead of the code).
            let drain = async {
                let mut sink = [0u8; 4096];
                while let Ok(1..) = stream.read(&mut sink).await {}
            };
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, drain).await;
        }
    }

    /// Deactivation-reactivation (MS-RDPBCGR 1.3.1.3): the client's screen takes a new size.
    /// Input the client sends meanwhile goes to the sink; the pointer shape is sent again
    /// because the client may have dropped its pointer cache with the rest of its state.
    async fn reactivate(&mut self, size: Size, showing: &mut Showing) -> Result<(), TerminalEnd> {
        info!(peer = %self.client.peer, ?size, "resizing client screen");
        let lost = |e: &dyn std::fmt::Display| TerminalEnd::ConnectionLost(format!("reactivation: {e}"));
        self.write(&pdus::deactivate_all(self.state.channels())).await?;
        let consumed = self.acceptor.take().ok_or_else(|| lost(&"no finished connection sequence to reactivate"))?;
        let mut acceptor = Acceptor::new_deactivation_reactivation(
            consumed,
            self.state.take_static_channels(),
            DesktopSize { width: size.width, height: size.height },
        )
        .map_err(|e| lost(&e))?;
        let result = tokio::time::timeout(REACTIVATION_TIMEOUT, finish_reactivation_at(&mut self.framed, &mut acceptor, Some(self.negotiated.profile.bits_per_pixel())))
            .await
            .map_err(|_| lost(&format_args!("client did not answer within {REACTIVATION_TIMEOUT:?}")))?
            .map_err(|e| lost(&e))?;
        self.acceptor = Some(acceptor);
        self.state.reactivated(Channels { io: result.io_channel_id, user: result.user_channel_id }, result.static_channels);
        self.size = size;
        self.pointer.clear();
        for frame in &result.input_events {
            self.handle_pdu(frame, showing).await?;
        }
        let shape = showing.cursor.borrow().clone();
        self.show_pointer(shape).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wiring keeps terminals and their commands on other threads than the one they
    /// were made on.
    #[test]
    fn terminals_and_their_commands_move_between_threads() {
        fn send<T: Send>() {}
        send::<Terminal>();
        send::<TerminalCommand>();
        send::<Arc<TerminalStats>>();
        fn sync<T: Sync>() {}
        sync::<TerminalStats>();
    }
}
