use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ironrdp_cliprdr::CliprdrClient;
use ironrdp_connector::connection_activation::{
    ConnectionActivationFactory, ConnectionActivationState,
};
use ironrdp_core::WriteBuf;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_egfx::client::GraphicsPipelineClient;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::Action;
use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags as FastPathKeyboardFlags};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::mouse_x::PointerXFlags;
use ironrdp_pdu::input::scan_code::KeyboardFlags as SlowPathKeyboardFlags;
use ironrdp_pdu::input::unicode::KeyboardFlags as UnicodeKeyboardFlags;
use ironrdp_pdu::input::{InputEvent, InputEventPdu, MousePdu, MouseXPdu, ScanCodePdu, UnicodePdu};
use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason, McsMessage};
use ironrdp_pdu::rdp::capability_sets::InputFlags;
use ironrdp_pdu::rdp::headers::{BasicSecurityHeader, BasicSecurityHeaderFlags, ShareDataPdu};
use ironrdp_pdu::rdp::multitransport::MultitransportResponsePdu;
use ironrdp_pdu::x224::X224;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput};
use ironrdp_svc::{SvcMessage, SvcProcessorMessages};
use ironrdp_tokio::{FramedWrite as _, TokioFramed};
use rdhost_encomsp::{ControlChangeFlags, EncomspPdu};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::clipboard::{ClipboardBackend, ClipboardCounters, ClipboardState, Note, decode_text};
use crate::connect::{self, REMOTEFX_CODEC_ID, Transport, is_hangup};
use crate::encomsp::{EncomspClient, EncomspCounters, EncomspState, ParticipantState};
use crate::gfx::{GfxCounters, SharedGfx};
use crate::keymap::{self, KeyStroke};
use crate::wire::{self, Codec, PointerUpdate};
use crate::{ClientConfig, ConnectError, SessionError};

/// A mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Left,
    Middle,
    Right,
    /// "Back" (extended button 1).
    X1,
    /// "Forward" (extended button 2).
    X2,
}

/// How [`Client::pump_until_or`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pumped<O> {
    /// The predicate held.
    Met,
    /// The timeout passed first.
    TimedOut,
    /// The interrupt completed first, with this output.
    Interrupted(O),
}

/// What one turn of the pump did.
enum Step<O> {
    Handled,
    Deadline,
    Interrupted(O),
}

/// The pointer the server asked the client to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pointer {
    /// The client's own default arrow (also what a fresh activation starts with).
    Default,
    Hidden,
    Shape(PointerShape),
}

/// A pointer image as the client would draw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerShape {
    pub width: u16,
    pub height: u16,
    pub hotspot_x: u16,
    pub hotspot_y: u16,
    /// RGBA8 with straight alpha, rows top to bottom. Pixels the masks mark "invert the screen"
    /// come out as a black and white checkerboard.
    pub rgba: Vec<u8>,
}

/// Connects and runs the connection sequence up to the first activation, within
/// [`ClientConfig::connect_timeout`].
pub async fn connect(cfg: ClientConfig) -> Result<Client, ConnectError> {
    finish(connect::run(&cfg), &cfg).await
}

/// Runs the connection sequence over a TCP connection that already exists, within
/// [`ClientConfig::connect_timeout`]: reverse connect, where a sharer dialled in to a viewer's
/// listener. The other end is the RDP server all the same; `cfg.addr` is not used.
pub async fn connect_over(stream: TcpStream, cfg: ClientConfig) -> Result<Client, ConnectError> {
    finish(connect::run_over(stream, &cfg), &cfg).await
}

async fn finish(
    sequence: impl Future<Output = Result<connect::Connected, ConnectError>>,
    cfg: &ClientConfig,
) -> Result<Client, ConnectError> {
    match tokio::time::timeout(cfg.connect_timeout, sequence).await {
        Ok(result) => Ok(Client::new(result?)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// A connected RDP session: a decoded framebuffer that follows the server's updates (when
/// pumped) and an input sender.
///
/// Nothing happens in the background: PDUs are read and decoded only inside `pump_*` (and
/// the other async methods), so a test fully controls when the picture changes.
pub struct Client {
    framed: TokioFramed<Transport>,
    stage: ActiveStage,
    image: DecodedImage,
    activation: ConnectionActivationFactory,
    io_channel_id: u16,
    user_channel_id: u16,
    fastpath_input: bool,
    /// Which of Refresh Rect / Suppress Output the server allows (General capability set).
    refresh_rect: bool,
    suppress_output: bool,
    mouse: (u16, u16),
    error_info: Option<u32>,
    closed: bool,
    bytes_read: Arc<AtomicU64>,
    frames: u64,
    session_id: Option<u32>,
    codecs: BTreeMap<Codec, u64>,
    codec_scratch: Vec<Codec>,
    pointer: Pointer,
    pointer_updates: BTreeMap<PointerUpdate, u64>,
    pointer_scratch: Vec<PointerUpdate>,
    encomsp: EncomspState,
    clipboard: ClipboardState,
    /// The graphics pipeline's counters, shared with its handler and decoder.
    gfx: SharedGfx,
    /// The MCS channel of `drdynvc`, to find EGFX data in slow-path frames.
    drdynvc_channel: Option<u16>,
}

fn fastpath_input_allowed(flags: InputFlags) -> bool {
    flags.intersects(InputFlags::FASTPATH_INPUT | InputFlags::FASTPATH_INPUT_2)
}

impl Client {
    fn new(connected: connect::Connected) -> Self {
        let connect::Connected {
            framed,
            result,
            bytes_read,
            error_info,
            gfx,
        } = connected;
        let drdynvc_channel = result
            .static_channels
            .get_channel_id_by_type::<DrdynvcClient>();
        let image = DecodedImage::new(
            PixelFormat::RgbA32,
            result.desktop_size.width,
            result.desktop_size.height,
        );
        let fastpath_input = fastpath_input_allowed(result.input_flags);
        let (refresh_rect, suppress_output) =
            (result.refresh_rect_support, result.suppress_output_support);
        let io_channel_id = result.io_channel_id;
        let user_channel_id = result.user_channel_id;
        let window_support_level = result.window_support_level;
        let mut stage = ActiveStageBuilder {
            static_channels: result.static_channels,
            user_channel_id: result.user_channel_id,
            io_channel_id: result.io_channel_id,
            message_channel_id: result.message_channel_id,
            share_id: result.share_id,
            compression_type: result.compression_type,
            enable_server_pointer: result.enable_server_pointer,
            pointer_software_rendering: result.pointer_software_rendering,
        }
        .build();
        stage.set_window_support_level(window_support_level);
        Self {
            framed,
            stage,
            image,
            activation: result.activation_factory,
            io_channel_id,
            user_channel_id,
            fastpath_input,
            refresh_rect,
            suppress_output,
            mouse: (0, 0),
            error_info,
            closed: false,
            bytes_read,
            frames: 0,
            session_id: None,
            codecs: BTreeMap::new(),
            codec_scratch: Vec::new(),
            pointer: Pointer::Default,
            pointer_updates: BTreeMap::new(),
            pointer_scratch: Vec::new(),
            encomsp: EncomspState::default(),
            clipboard: ClipboardState::default(),
            gfx,
            drdynvc_channel,
        }
    }

    /// Desktop width as the server set it (it may differ from the requested width).
    pub fn width(&self) -> u16 {
        self.image.width()
    }

    pub fn height(&self) -> u16 {
        self.image.height()
    }

    /// The decoded framebuffer, RGBA8, `width() * height() * 4` bytes, rows top to bottom.
    pub fn rgba(&self) -> &[u8] {
        self.image.data()
    }

    /// The colour at (x, y) as RGB, or `None` outside the desktop.
    pub fn pixel(&self, x: u16, y: u16) -> Option<[u8; 3]> {
        if x >= self.width() || y >= self.height() {
            return None;
        }
        let i = (usize::from(y) * usize::from(self.width()) + usize::from(x)) * 4;
        let p = &self.image.data()[i..i + 3];
        Some([p[0], p[1], p[2]])
    }

    /// The last Server Set Error Info code received (never `ERRINFO_NONE`).
    pub fn error_info(&self) -> Option<u32> {
        self.error_info
    }

    /// Whether the server has ended the connection (Set Error Info, disconnect, or hang-up).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Bytes read off the TCP socket so far, TLS records included, connection sequence included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Number of PDUs that changed the framebuffer.
    pub fn frames_received(&self) -> u64 {
        self.frames
    }

    /// The session id from the server's Logon Info (Save Session Info PDU), if it sent one.
    pub fn server_session_id(&self) -> Option<u32> {
        self.session_id
    }

    /// How the server encoded its graphics so far: each codec with the number of rectangles
    /// or surface commands that used it. Graphics pipeline commands are the `Gfx*` codecs,
    /// counted per rectangle painted (see [`gfx_counters`](Self::gfx_counters) for frames and
    /// H.264 pictures).
    pub fn codecs_seen(&self) -> Vec<(Codec, u64)> {
        let mut all = self.codecs.clone();
        for (&codec, &n) in &self.gfx.lock().codecs {
            *all.entry(codec).or_default() += n;
        }
        all.into_iter().collect()
    }

    /// What the graphics pipeline (MS-RDPEGFX) brought so far: the capability set the server
    /// confirmed, frames (each acknowledged), H.264 pictures decoded, channel bytes, resets.
    /// All zero unless [`ClientConfig::gfx`] offered it and the server opened the channel.
    pub fn gfx_counters(&self) -> GfxCounters {
        let mut counters = self.gfx.lock().counters.clone();
        if let Some(channel) = self.stage.get_dvc::<GraphicsPipelineClient>() {
            counters.dropped_updates = channel.processor().dropped_updates();
        }
        counters
    }

    /// The pointer as the server last set it.
    pub fn pointer(&self) -> &Pointer {
        &self.pointer
    }

    /// The pointer updates received so far: each kind with how many came.
    pub fn pointer_updates_seen(&self) -> Vec<(PointerUpdate, u64)> {
        self.pointer_updates.iter().map(|(&k, &n)| (k, n)).collect()
    }

    /// What the sharer last told us about ourselves (OD_PARTICIPANT_CREATED with
    /// IS_PARTICIPANT): our id and control level. `None` before it said anything, or after it
    /// removed us. Assistance mode only.
    pub fn participant(&self) -> Option<ParticipantState> {
        self.encomsp.participant
    }

    /// Whether the sharer paused the picture (GRAPHICS_STREAM_PAUSED, until RESUMED).
    pub fn graphics_paused(&self) -> bool {
        self.encomsp.graphics_paused
    }

    /// The encomsp PDUs seen and sent so far.
    pub fn encomsp_counters(&self) -> EncomspCounters {
        self.encomsp.counters
    }

    /// Asks the sharer for a control level (OD_PARTICIPANT_CTRL_CHANGE): to view, and to
    /// interact too when `interactive`. Participant id 0, as xfreerdp sends it: the sharer knows
    /// us by our connection. The answer, if any, is a new [`participant`](Self::participant).
    /// Fails with [`SessionError::Unavailable`] unless we connected in assistance mode.
    pub async fn request_control(&mut self, interactive: bool) -> Result<(), SessionError> {
        self.ensure_open()?;
        let mut flags = ControlChangeFlags::REQUEST_VIEW;
        if interactive {
            flags = flags | ControlChangeFlags::REQUEST_INTERACT;
        }
        let pdu = EncomspPdu::ParticipantCtrlChange {
            flags,
            participant_id: 0,
        };
        if self.stage.get_svc_processor::<EncomspClient>().is_none() {
            return Err(SessionError::Unavailable(
                "no encomsp channel: connect as an attendee (ClientConfig::assistance)".into(),
            ));
        }
        let frame = self
            .stage
            .process_svc_processor_messages(SvcProcessorMessages::<EncomspClient>::new(vec![
                SvcMessage::from(pdu.encode()),
            ]))
            .map_err(|e| SessionError::Unavailable(format!("encomsp channel: {}", e.report())))?;
        self.send(&frame).await?;
        self.encomsp.counters.control_requests_sent += 1;
        Ok(())
    }

    /// Take what the encomsp channel decoded from the last PDU.
    fn take_encomsp(&mut self) {
        let Some(channel) = self.stage.get_svc_processor_mut::<EncomspClient>() else {
            return;
        };
        let (pdus, malformed) = channel.take();
        self.encomsp.counters.malformed += malformed;
        for pdu in pdus {
            debug!(?pdu, "encomsp");
            self.encomsp.apply(pdu);
        }
    }

    /// Puts `text` on our clipboard: the server is told (a Format List) and gets the text when
    /// something in the session pastes it. Before the channel is initialized it is announced
    /// then. Fails with [`SessionError::Unavailable`] unless we connected with
    /// [`ClientConfig::clipboard`].
    pub async fn set_clipboard(&mut self, text: &str) -> Result<(), SessionError> {
        self.ensure_open()?;
        self.clipboard_channel()?;
        self.clipboard.local = Some(text.to_owned());
        if self.clipboard.ready {
            self.announce_clipboard().await?;
        }
        Ok(())
    }

    /// The formats (Windows clipboard format ids: 13 is CF_UNICODETEXT) of what the server
    /// last announced on its clipboard; `None` before it announced anything.
    pub fn server_clipboard_formats(&self) -> Option<&[u32]> {
        self.clipboard.server_formats.as_deref()
    }

    /// Whether the clipboard channel is initialized (the server accepted our Format List).
    pub fn clipboard_ready(&self) -> bool {
        self.clipboard.ready
    }

    pub fn clipboard_counters(&self) -> ClipboardCounters {
        self.clipboard.counters
    }

    /// Pastes the server's clipboard: asks for its text (Format Data Request) and pumps until
    /// the answer comes, within `timeout`. Fails with [`SessionError::Unavailable`] when the
    /// server announced no text, refused, or did not answer in time.
    pub async fn paste(&mut self, timeout: Duration) -> Result<String, SessionError> {
        self.ensure_open()?;
        self.clipboard_channel()?;
        let Some(format) = self.clipboard.server_text_format() else {
            return Err(SessionError::Unavailable(format!(
                "the server's clipboard holds no text (formats {:?})",
                self.clipboard.server_formats
            )));
        };
        self.clipboard.pasted = None;
        let frame = self
            .stage
            .get_svc_processor_mut::<CliprdrClient>()
            .ok_or_else(|| SessionError::Unavailable("no clipboard channel".into()))?
            .initiate_paste(format)
            .map_err(|e| SessionError::Unavailable(format!("clipboard channel: {e}")))?;
        let frame = self
            .stage
            .process_svc_processor_messages(frame)
            .map_err(|e| SessionError::Unavailable(format!("clipboard channel: {}", e.report())))?;
        self.send(&frame).await?;
        if !self
            .pump_until(timeout, |c| c.clipboard.pasted.is_some())
            .await?
        {
            return Err(SessionError::Unavailable(format!(
                "the server did not send its clipboard within {timeout:?}"
            )));
        }
        match self.clipboard.pasted.take() {
            Some(Ok(text)) => Ok(text),
            Some(Err(why)) => Err(SessionError::Unavailable(why)),
            None => unreachable!("pumped until it came"),
        }
    }

    fn clipboard_channel(&mut self) -> Result<(), SessionError> {
        if self.stage.get_svc_processor::<CliprdrClient>().is_none() {
            return Err(SessionError::Unavailable(
                "no clipboard channel: connect with ClientConfig::clipboard".into(),
            ));
        }
        Ok(())
    }

    /// Send a Format List of what our clipboard holds.
    async fn announce_clipboard(&mut self) -> Result<(), SessionError> {
        let formats = self.clipboard.local_formats();
        let Some(cliprdr) = self.stage.get_svc_processor_mut::<CliprdrClient>() else {
            return Ok(());
        };
        let messages = cliprdr
            .initiate_copy(&formats)
            .map_err(|e| SessionError::Protocol(format!("clipboard channel: {e}")))?;
        let frame = self
            .stage
            .process_svc_processor_messages(messages)
            .map_err(|e| SessionError::Protocol(format!("clipboard channel: {}", e.report())))?;
        self.send(&frame).await
    }

    /// Act on what the clipboard channel noted in the last PDU.
    async fn take_clipboard(&mut self) -> Result<(), SessionError> {
        let Some(cliprdr) = self.stage.get_svc_processor_mut::<CliprdrClient>() else {
            return Ok(());
        };
        let Some(backend) = cliprdr.downcast_backend_mut::<ClipboardBackend>() else {
            return Ok(());
        };
        let notes = std::mem::take(&mut backend.notes);
        for note in notes {
            debug!(?note, "clipboard");
            match note {
                Note::FormatListWanted => self.announce_clipboard().await?,
                Note::Ready => self.clipboard.ready = true,
                Note::ServerCopied(formats) => {
                    self.clipboard.counters.format_lists += 1;
                    self.clipboard.server_formats =
                        Some(formats.iter().map(|f| f.value()).collect());
                }
                Note::DataRequested(format) => {
                    self.clipboard.counters.data_requests += 1;
                    let response = self.clipboard.answer(format);
                    let Some(cliprdr) = self.stage.get_svc_processor_mut::<CliprdrClient>() else {
                        return Ok(());
                    };
                    let messages = cliprdr
                        .submit_format_data(response)
                        .map_err(|e| SessionError::Protocol(format!("clipboard channel: {e}")))?;
                    let frame = self
                        .stage
                        .process_svc_processor_messages(messages)
                        .map_err(|e| {
                            SessionError::Protocol(format!("clipboard channel: {}", e.report()))
                        })?;
                    self.send(&frame).await?;
                }
                Note::DataArrived(data) => {
                    self.clipboard.counters.data_responses += 1;
                    let format = self
                        .clipboard
                        .server_text_format()
                        .unwrap_or(ironrdp_cliprdr::pdu::ClipboardFormatId::CF_UNICODETEXT);
                    self.clipboard.pasted = Some(match data {
                        Ok(data) => Ok(decode_text(&data, format)),
                        Err(()) => Err("the server refused to send its clipboard".into()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether the server opened the display control channel and sent its capabilities, so that
    /// [`request_resize`](Self::request_resize) can work.
    pub fn display_control_ready(&mut self) -> bool {
        self.stage.display_control_ready() == Some(true)
    }

    /// Processes incoming PDUs until `pred` holds (checked first, then after every PDU) or
    /// `timeout` passes (`Ok(false)`). If the server ends the session, returns
    /// [`SessionError::Closed`] with its error info.
    pub async fn pump_until<F: FnMut(&Client) -> bool>(
        &mut self,
        timeout: Duration,
        pred: F,
    ) -> Result<bool, SessionError> {
        let pumped = self.pump_until_or(timeout, pred, std::future::pending::<()>()).await?;
        Ok(pumped == Pumped::Met)
    }

    /// Like [`pump_until`](Self::pump_until), and also returns as soon as `interrupt` completes,
    /// with its output (a viewer's next input event, say). Only the wait for the server's next
    /// PDU is cut short: a PDU being read stays buffered for the next call, and one being
    /// handled (which may write) is always handled to the end.
    pub async fn pump_until_or<F: FnMut(&Client) -> bool, O>(
        &mut self,
        timeout: Duration,
        mut pred: F,
        interrupt: impl Future<Output = O>,
    ) -> Result<Pumped<O>, SessionError> {
        let deadline = Instant::now() + timeout;
        let mut interrupt = std::pin::pin!(interrupt);
        loop {
            if pred(self) {
                return Ok(Pumped::Met);
            }
            match self.pump_one_or(deadline, interrupt.as_mut()).await? {
                Step::Handled => {}
                Step::Deadline => return Ok(Pumped::TimedOut),
                Step::Interrupted(output) => return Ok(Pumped::Interrupted(output)),
            }
        }
    }

    /// Processes incoming PDUs for `d`.
    pub async fn pump_for(&mut self, d: Duration) -> Result<(), SessionError> {
        let deadline = Instant::now() + d;
        while self.pump_one(deadline).await? {}
        Ok(())
    }

    /// Processes incoming PDUs until the picture has been still for `quiet` after at least one
    /// update (`Ok(true)`), or `max` passes (`Ok(false)`).
    pub async fn pump_until_idle(
        &mut self,
        quiet: Duration,
        max: Duration,
    ) -> Result<bool, SessionError> {
        let end = Instant::now() + max;
        let mut last_change = Instant::now();
        let mut frames = self.frames;
        loop {
            let settle = last_change + quiet;
            if self.frames > 0 && Instant::now() >= settle {
                return Ok(true);
            }
            if Instant::now() >= end {
                return Ok(false);
            }
            self.pump_one(settle.min(end)).await?;
            if self.frames != frames {
                frames = self.frames;
                last_change = Instant::now();
            }
        }
    }

    /// Reads and handles one PDU. `Ok(false)` when `deadline` passed first.
    async fn pump_one(&mut self, deadline: Instant) -> Result<bool, SessionError> {
        let never = std::pin::pin!(std::future::pending::<()>());
        Ok(matches!(self.pump_one_or(deadline, never).await?, Step::Handled))
    }

    /// Reads and handles one PDU, unless `deadline` passes or `interrupt` completes while
    /// waiting for it (the framed read is cancel-safe: what it read stays in its buffer).
    async fn pump_one_or<O>(
        &mut self,
        deadline: Instant,
        interrupt: std::pin::Pin<&mut impl Future<Output = O>>,
    ) -> Result<Step<O>, SessionError> {
        self.ensure_open()?;
        // A timeout polls its future first: with data always waiting (a server sending faster
        // than we decode) it would never elapse, and `pump_for` would never return.
        if Instant::now() >= deadline {
            return Ok(Step::Deadline);
        }
        // The interrupt first: with data always waiting it would otherwise never be seen.
        let read = tokio::select! {
            biased;
            output = interrupt => return Ok(Step::Interrupted(output)),
            read = tokio::time::timeout_at(deadline, self.framed.read_pdu()) => read,
        };
        let (action, frame) = match read {
            Err(_elapsed) => return Ok(Step::Deadline),
            Ok(Err(e)) => return Err(self.io_failed(e)),
            Ok(Ok(pdu)) => pdu,
        };
        self.handle(action, &frame).await?;
        Ok(Step::Handled)
    }

    fn ensure_open(&self) -> Result<(), SessionError> {
        if self.closed {
            Err(SessionError::Closed {
                error_info: self.error_info,
            })
        } else {
            Ok(())
        }
    }

    /// A socket error: a hang-up is the server closing the session, anything else is I/O.
    fn io_failed(&mut self, e: io::Error) -> SessionError {
        if is_hangup(&e) {
            self.closed = true;
            SessionError::Closed {
                error_info: self.error_info,
            }
        } else {
            SessionError::Io(e)
        }
    }

    async fn handle(&mut self, action: Action, frame: &[u8]) -> Result<(), SessionError> {
        match action {
            Action::X224 => {
                if let Some(code) =
                    wire::set_error_info(frame, Some(self.io_channel_id)).filter(|&c| c != 0)
                {
                    // Handled here rather than by the session: it only keeps a description, and
                    // fails on codes IronRDP does not know. A Set Error Info is the server
                    // announcing the end of the session (MS-RDPBCGR 1.3.1.4.2).
                    debug!(code, "Set Error Info");
                    self.error_info = Some(code);
                    self.closed = true;
                    return Err(SessionError::Closed {
                        error_info: Some(code),
                    });
                }
                self.count_gfx_bytes(frame);
            }
            Action::FastPath => {
                self.codec_scratch.clear();
                wire::fastpath_codecs(frame, REMOTEFX_CODEC_ID, &mut self.codec_scratch);
                for &codec in &self.codec_scratch {
                    *self.codecs.entry(codec).or_default() += 1;
                }
                self.pointer_scratch.clear();
                wire::fastpath_pointer_updates(frame, &mut self.pointer_scratch);
                for &kind in &self.pointer_scratch {
                    *self.pointer_updates.entry(kind).or_default() += 1;
                }
            }
        }
        let outputs = self
            .stage
            .process(&mut self.image, action, frame, self.framed.last_read_at())
            .map_err(|e| SessionError::Protocol(e.report().to_string()))?;
        if action == Action::X224 {
            self.take_encomsp();
            self.take_clipboard().await?;
        }
        self.handle_outputs(outputs).await
    }

    /// Adds what `frame` carries on the EGFX channel, once the server has opened it.
    fn count_gfx_bytes(&mut self, frame: &[u8]) {
        let Some(drdynvc) = self.drdynvc_channel else {
            return;
        };
        let Some(dvc) = self
            .stage
            .get_dvc::<GraphicsPipelineClient>()
            .map(|c| c.channel_id())
        else {
            return;
        };
        let n = wire::dvc_payload_bytes(frame, drdynvc, dvc);
        if n > 0 {
            self.gfx.lock().counters.bytes += n;
        }
    }

    async fn handle_outputs(
        &mut self,
        outputs: Vec<ActiveStageOutput>,
    ) -> Result<(), SessionError> {
        for output in outputs {
            match output {
                ActiveStageOutput::ResponseFrame(frame) => self.send(&frame).await?,
                ActiveStageOutput::GraphicsUpdate(_) => self.frames += 1,
                ActiveStageOutput::SessionId(id) => self.session_id = Some(id),
                ActiveStageOutput::PointerDefault => self.pointer = Pointer::Default,
                ActiveStageOutput::PointerHidden => self.pointer = Pointer::Hidden,
                ActiveStageOutput::PointerBitmap(p) => {
                    self.pointer = Pointer::Shape(PointerShape {
                        width: p.width,
                        height: p.height,
                        hotspot_x: p.hotspot_x,
                        hotspot_y: p.hotspot_y,
                        rgba: p.bitmap_data.clone(),
                    })
                }
                ActiveStageOutput::DeactivateAll => self.reactivate().await?,
                ActiveStageOutput::Terminate(reason) => {
                    debug!(%reason, "server ended the session");
                    self.closed = true;
                    return Err(SessionError::Closed {
                        error_info: self.error_info,
                    });
                }
                ActiveStageOutput::MultitransportRequest(request) => {
                    // We have no UDP transport: decline (E_ABORT), the server stays on TCP.
                    let response = MultitransportResponsePdu {
                        security_header: BasicSecurityHeader {
                            flags: BasicSecurityHeaderFlags::TRANSPORT_RSP,
                        },
                        request_id: request.request_id,
                        hr_response: MultitransportResponsePdu::E_ABORT,
                    };
                    let frame = self
                        .stage
                        .encode_multitransport_response(&response)
                        .map_err(|e| SessionError::Protocol(e.report().to_string()))?;
                    self.send(&frame).await?;
                }
                ActiveStageOutput::ServerRedirection(redirection) => {
                    self.closed = true;
                    return Err(SessionError::Protocol(format!(
                        "server redirected us to session {}; this client does not follow redirections",
                        redirection.session_id
                    )));
                }
                ActiveStageOutput::LogonErrors(errors) => {
                    warn!(?errors, "server reported logon errors")
                }
                other => debug!(?other, "ignored session output"),
            }
        }
        Ok(())
    }

    /// The Deactivation-Reactivation sequence (a resize, or a session switch behind the same
    /// connection): capability exchange again, then a fresh framebuffer of the new size.
    async fn reactivate(&mut self) -> Result<(), SessionError> {
        let mut sequence = self.activation.create();
        let mut buf = WriteBuf::new();
        let mut error_info = None;
        loop {
            let stepped =
                connect::step(&mut self.framed, &mut sequence, &mut buf, &mut error_info).await;
            if let Some(code) = error_info {
                self.error_info = Some(code);
                self.closed = true;
                return Err(SessionError::Closed {
                    error_info: Some(code),
                });
            }
            match stepped {
                Ok(()) => {}
                Err(connect::StepError::Io(e)) => return Err(self.io_failed(e)),
                Err(connect::StepError::Connector(e)) => {
                    return Err(SessionError::Protocol(format!(
                        "reactivation: {}",
                        e.report()
                    )));
                }
            }
            match sequence.connection_activation_state() {
                ConnectionActivationState::Finalized {
                    desktop_size,
                    share_id,
                    input_flags,
                    static_channel_chunk_size,
                    enable_server_pointer,
                    pointer_software_rendering,
                    window_support_level,
                    refresh_rect_support,
                    suppress_output_support,
                    ..
                } => {
                    if !self.stage.reactivate(
                        self.io_channel_id,
                        self.user_channel_id,
                        share_id,
                        enable_server_pointer,
                        pointer_software_rendering,
                        static_channel_chunk_size,
                    ) {
                        return Err(SessionError::Protocol(
                            "reactivation: invalid virtual channel chunk size".into(),
                        ));
                    }
                    self.stage.set_window_support_level(window_support_level);
                    self.image = DecodedImage::new(
                        PixelFormat::RgbA32,
                        desktop_size.width,
                        desktop_size.height,
                    );
                    self.fastpath_input = fastpath_input_allowed(input_flags);
                    // The stage dropped its pointer cache; the server starts over too.
                    self.pointer = Pointer::Default;
                    self.refresh_rect = refresh_rect_support;
                    self.suppress_output = suppress_output_support;
                    debug!(
                        width = desktop_size.width,
                        height = desktop_size.height,
                        "reactivated"
                    );
                    return Ok(());
                }
                ConnectionActivationState::Redirected { redirection } => {
                    self.closed = true;
                    return Err(SessionError::Protocol(format!(
                        "server redirected us to session {} during reactivation",
                        redirection.session_id
                    )));
                }
                _ => {}
            }
        }
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), SessionError> {
        if frame.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.framed.write_all(frame).await {
            return Err(self.io_failed(e));
        }
        Ok(())
    }

    async fn send_input(&mut self, events: &[Input]) -> Result<(), SessionError> {
        self.ensure_open()?;
        if events.is_empty() {
            return Ok(());
        }
        if self.fastpath_input {
            let events: Vec<FastPathInputEvent> = events.iter().map(Input::fast_path).collect();
            let outputs = self
                .stage
                .process_fastpath_input(&mut self.image, &events)
                .map_err(|e| SessionError::Protocol(e.report().to_string()))?;
            self.handle_outputs(outputs).await
        } else {
            // The server did not allow fast-path input (MS-RDPBCGR 2.2.8.1.2): use the slow path.
            let pdu =
                ShareDataPdu::Input(InputEventPdu(events.iter().map(Input::slow_path).collect()));
            let mut buf = WriteBuf::new();
            self.stage
                .encode_static(&mut buf, pdu)
                .map_err(|e| SessionError::Protocol(e.report().to_string()))?;
            self.send(buf.filled()).await
        }
    }

    /// Presses or releases a key by set-1 scancode (`extended` for the E0-prefixed keys).
    pub async fn key(
        &mut self,
        scancode: u8,
        extended: bool,
        pressed: bool,
    ) -> Result<(), SessionError> {
        self.send_input(&[Input::Key {
            code: scancode,
            extended,
            pressed,
        }])
        .await
    }

    /// Types `text` as a US keyboard would: scancodes, Shift where needed, press then release;
    /// `'\n'` is Enter. Characters the US layout lacks are sent as Unicode key events.
    pub async fn type_text(&mut self, text: &str) -> Result<(), SessionError> {
        let events: Vec<Input> = keymap::strokes_for(text)
            .into_iter()
            .map(|stroke| match stroke {
                KeyStroke::Scancode { code, pressed } => Input::Key {
                    code,
                    extended: false,
                    pressed,
                },
                KeyStroke::Unicode { unit, pressed } => Input::Unicode { unit, pressed },
            })
            .collect();
        self.send_input(&events).await
    }

    /// Presses and releases `ch` as a Unicode key event (both UTF-16 units for astral characters).
    pub async fn unicode(&mut self, ch: char) -> Result<(), SessionError> {
        let mut units = [0u16; 2];
        let events: Vec<Input> = ch
            .encode_utf16(&mut units)
            .iter()
            .flat_map(|&unit| {
                [
                    Input::Unicode {
                        unit,
                        pressed: true,
                    },
                    Input::Unicode {
                        unit,
                        pressed: false,
                    },
                ]
            })
            .collect();
        self.send_input(&events).await
    }

    pub async fn mouse_move(&mut self, x: u16, y: u16) -> Result<(), SessionError> {
        self.mouse = (x, y);
        self.send_input(&[Input::Mouse {
            flags: PointerFlags::MOVE,
            wheel: 0,
            x,
            y,
        }])
        .await
    }

    /// Presses or releases a button at the last position given to [`mouse_move`](Self::mouse_move).
    pub async fn button(&mut self, button: Button, pressed: bool) -> Result<(), SessionError> {
        let (x, y) = self.mouse;
        let event = match button {
            Button::Left | Button::Middle | Button::Right => {
                let mut flags = match button {
                    Button::Left => PointerFlags::LEFT_BUTTON,
                    Button::Right => PointerFlags::RIGHT_BUTTON,
                    _ => PointerFlags::MIDDLE_BUTTON_OR_WHEEL,
                };
                if pressed {
                    flags |= PointerFlags::DOWN;
                }
                Input::Mouse {
                    flags,
                    wheel: 0,
                    x,
                    y,
                }
            }
            Button::X1 | Button::X2 => {
                let mut flags = if button == Button::X1 {
                    PointerXFlags::BUTTON1
                } else {
                    PointerXFlags::BUTTON2
                };
                if pressed {
                    flags |= PointerXFlags::DOWN;
                }
                Input::MouseX { flags, x, y }
            }
        };
        self.send_input(&[event]).await
    }

    /// Turns the wheel by `delta` (Windows units, 120 per notch; positive = away from the user,
    /// i.e. up, or right when `horizontal`). Large deltas are split into several events.
    pub async fn wheel(&mut self, delta: i16, horizontal: bool) -> Result<(), SessionError> {
        let (x, y) = self.mouse;
        let axis = if horizontal {
            PointerFlags::HORIZONTAL_WHEEL
        } else {
            PointerFlags::VERTICAL_WHEEL
        };
        let mut events = Vec::new();
        let mut left = i32::from(delta);
        while left != 0 {
            // The wire field is 9-bit two's complement: -256..=255.
            let step = left.clamp(-255, 255);
            events.push(Input::Mouse {
                flags: axis,
                wheel: step as i16,
                x,
                y,
            });
            left -= step;
        }
        self.send_input(&events).await
    }

    /// Asks the server for a new desktop size through the display control channel
    /// (MS-RDPEDISP). The server answers with a reactivation; pump until [`width`](Self::width)
    /// and [`height`](Self::height) change. Fails with [`SessionError::Unavailable`] if the
    /// server has not opened the channel.
    pub async fn request_resize(&mut self, w: u16, h: u16) -> Result<(), SessionError> {
        self.ensure_open()?;
        if !(200..=8192).contains(&w) || !(200..=8192).contains(&h) || !w.is_multiple_of(2) {
            return Err(SessionError::InvalidArgument(format!(
                "{w}x{h}: MS-RDPEDISP wants an even width and both sides in 200..=8192"
            )));
        }
        match self
            .stage
            .encode_resize(u32::from(w), u32::from(h), None, None)
        {
            None => Err(SessionError::Unavailable(
                "the server has not opened the display control channel (or sent its capabilities)"
                    .into(),
            )),
            Some(Err(e)) => Err(SessionError::Protocol(e.report().to_string())),
            Some(Ok(frame)) => self.send(&frame).await,
        }
    }

    /// Asks the server to send the whole screen again (Refresh Rect, or a Suppress Output
    /// off/on pair, whichever the server allows). Fails with [`SessionError::Unavailable`] if it
    /// allows neither.
    pub async fn request_refresh(&mut self) -> Result<(), SessionError> {
        self.ensure_open()?;
        let frames = self
            .stage
            .request_full_redraw(
                self.width(),
                self.height(),
                self.refresh_rect,
                self.suppress_output,
            )
            .map_err(|e| SessionError::Protocol(e.report().to_string()))?;
        if frames.is_empty() {
            return Err(SessionError::Unavailable(
                "the server allows neither Refresh Rect nor Suppress Output".into(),
            ));
        }
        for frame in frames {
            self.send(&frame).await?;
        }
        Ok(())
    }

    /// Ends the connection politely: Shutdown Request, wait (briefly) for the server's
    /// Shutdown Denied, MCS Disconnect Provider Ultimatum, TLS close. Already closed is fine.
    pub async fn disconnect(mut self) -> Result<(), SessionError> {
        if self.closed {
            return Ok(());
        }
        let request = self
            .stage
            .graceful_shutdown()
            .map_err(|e| SessionError::Protocol(e.report().to_string()))?;
        self.handle_outputs(request).await?;
        // The session answers Shutdown Denied with the ultimatum itself and reports the end.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.pump_one(deadline).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(SessionError::Closed { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        if !self.closed {
            // The server did not answer; leave anyway, the way the protocol says to.
            let ultimatum = McsMessage::DisconnectProviderUltimatum(
                DisconnectProviderUltimatum::from_reason(DisconnectReason::UserRequested),
            );
            let frame = ironrdp_core::encode_vec(&X224(ultimatum))
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
            self.send(&frame).await?;
        }
        self.closed = true;
        let (stream, _) = self.framed.get_inner_mut();
        // The peer may already be gone; nothing useful to report then.
        let _ = stream.shutdown().await;
        Ok(())
    }

    /// Writes the framebuffer as an 8-bit RGB PNG.
    pub fn save_png(&self, path: &Path) -> io::Result<()> {
        let mut encoder = png::Encoder::new(
            BufWriter::new(File::create(path)?),
            self.width().into(),
            self.height().into(),
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        // The decoders do not all set alpha; a screen is opaque, so drop it.
        let rgb: Vec<u8> = self
            .image
            .data()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        writer.write_image_data(&rgb).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)
    }
}

/// One input event, before choosing fast path or slow path.
#[derive(Debug, Clone, Copy)]
enum Input {
    Key {
        code: u8,
        extended: bool,
        pressed: bool,
    },
    Unicode {
        unit: u16,
        pressed: bool,
    },
    Mouse {
        flags: PointerFlags,
        wheel: i16,
        x: u16,
        y: u16,
    },
    MouseX {
        flags: PointerXFlags,
        x: u16,
        y: u16,
    },
}

impl Input {
    fn fast_path(&self) -> FastPathInputEvent {
        match *self {
            Input::Key {
                code,
                extended,
                pressed,
            } => {
                let mut flags = FastPathKeyboardFlags::empty();
                if !pressed {
                    flags |= FastPathKeyboardFlags::RELEASE;
                }
                if extended {
                    flags |= FastPathKeyboardFlags::EXTENDED;
                }
                FastPathInputEvent::KeyboardEvent(flags, code)
            }
            Input::Unicode { unit, pressed } => {
                let flags = if pressed {
                    FastPathKeyboardFlags::empty()
                } else {
                    FastPathKeyboardFlags::RELEASE
                };
                FastPathInputEvent::UnicodeKeyboardEvent(flags, unit)
            }
            Input::Mouse { flags, wheel, x, y } => FastPathInputEvent::MouseEvent(MousePdu {
                flags,
                number_of_wheel_rotation_units: wheel,
                x_position: x,
                y_position: y,
            }),
            Input::MouseX { flags, x, y } => FastPathInputEvent::MouseEventEx(MouseXPdu {
                flags,
                x_position: x,
                y_position: y,
            }),
        }
    }

    fn slow_path(&self) -> InputEvent {
        let key_flags = |pressed: bool, extended: bool| {
            let mut flags = if pressed {
                SlowPathKeyboardFlags::DOWN
            } else {
                SlowPathKeyboardFlags::RELEASE
            };
            if extended {
                flags |= SlowPathKeyboardFlags::EXTENDED;
            }
            flags
        };
        match *self {
            Input::Key {
                code,
                extended,
                pressed,
            } => InputEvent::ScanCode(ScanCodePdu {
                flags: key_flags(pressed, extended),
                key_code: code.into(),
            }),
            Input::Unicode { unit, pressed } => {
                // The Unicode event has its own flags type: only RELEASE, "down" is its absence.
                let flags = if pressed {
                    UnicodeKeyboardFlags::empty()
                } else {
                    UnicodeKeyboardFlags::RELEASE
                };
                InputEvent::Unicode(UnicodePdu {
                    flags,
                    unicode_code: unit,
                })
            }
            Input::Mouse { flags, wheel, x, y } => InputEvent::Mouse(MousePdu {
                flags,
                number_of_wheel_rotation_units: wheel,
                x_position: x,
                y_position: y,
            }),
            Input::MouseX { flags, x, y } => InputEvent::MouseX(MouseXPdu {
                flags,
                x_position: x,
                y_position: y,
            }),
        }
    }
}

// Tests and benchmarks move clients into spawned tasks.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Client>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_events_carry_release_and_extended_flags_on_both_paths() {
        let up = Input::Key {
            code: 0x4B,
            extended: true,
            pressed: false,
        };
        match up.fast_path() {
            FastPathInputEvent::KeyboardEvent(flags, 0x4B) => {
                assert_eq!(
                    flags,
                    FastPathKeyboardFlags::RELEASE | FastPathKeyboardFlags::EXTENDED
                )
            }
            other => panic!("{other:?}"),
        }
        match up.slow_path() {
            InputEvent::ScanCode(pdu) => {
                assert_eq!(pdu.key_code, 0x4B);
                assert_eq!(
                    pdu.flags,
                    SlowPathKeyboardFlags::RELEASE | SlowPathKeyboardFlags::EXTENDED
                );
            }
            other => panic!("{other:?}"),
        }
        match (Input::Key {
            code: 0x1E,
            extended: false,
            pressed: true,
        })
        .fast_path()
        {
            FastPathInputEvent::KeyboardEvent(flags, 0x1E) => assert!(flags.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
