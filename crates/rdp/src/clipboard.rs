//! The server's end of the `cliprdr` static virtual channel (MS-RDPECLIP): text copy and paste
//! between a client and the session's desktop, CF_UNICODETEXT and CF_TEXT.
//!
//! IronRDP's `ironrdp-cliprdr` speaks the PDUs and the initialization; its backend only notes
//! what arrived, and [`ClipboardLink`] (the terminal's part) decides after every PDU:
//! - The desktop copied (its clipboard watch changed): a Format List tells the client; the
//!   text is sent when the client asks for it (Format Data Request).
//! - The client copied (Format List with text): the desktop gets a [`ClipboardOffer`]; when one
//!   of its programs pastes, we ask the client for the data (Format Data Request) and hand the
//!   answer back. Requests the client leaves unanswered fail after [`FETCH_TIMEOUT`].
//!
//! Whether this terminal takes part at all (a primary, an interactive viewer) is the sink's
//! answer ([`InputSink::clipboard_allowed`]), asked at every exchange. Texts over
//! [`MAX_CLIPBOARD_BYTES`](rdhost_desktop::MAX_CLIPBOARD_BYTES) are refused with a log line either way.

use std::collections::VecDeque;
use std::time::Duration;

use ironrdp_cliprdr::backend::CliprdrBackend;
use ironrdp_cliprdr::pdu::{
    ClipboardFormat, ClipboardFormatId, ClipboardGeneralCapabilityFlags, FileContentsRequest, FileContentsResponse,
    FormatDataRequest, FormatDataResponse, LockDataId, OwnedFormatDataResponse,
};
use ironrdp_cliprdr::{CliprdrServer, CliprdrSvcMessages, Server};
use ironrdp_core::impl_as_any;
use ironrdp_pdu::PduResult;
use ironrdp_svc::server_encode_svc_messages;
use rdhost_desktop::clipboard::{ClipboardError, ClipboardOffer, ClipboardText, FetchReply, check_size};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::active::InputSink;
use crate::state::ActiveState;

/// A client that does not answer a Format Data Request in this long fails that paste.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Format Data Requests sent and not yet answered, at most; pastes beyond fail at once.
const MAX_REQUESTS_IN_FLIGHT: usize = 8;
/// Pastes of one offer waiting to be sent on, at most.
const MAX_WAITING_FETCHES: usize = 16;
/// A virtual channel message (reassembled from its chunks) larger than this ends the
/// connection: a clipboard at the limit is 2 MiB as UTF-16, and nothing else comes close. Less
/// than this is reassembled in memory whole before anyone looks at it.
const MAX_CHANNEL_MESSAGE: u32 = 16 * 1024 * 1024;

/// Refuse a channel chunk announcing a message over [`MAX_CHANNEL_MESSAGE`]: every chunk
/// carries the whole message's length in its Channel PDU Header.
pub(crate) fn check_channel_message(user_data: &[u8]) -> Result<(), String> {
    let Some(length) = user_data.get(..4) else { return Ok(()) };
    let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]);
    if length > MAX_CHANNEL_MESSAGE {
        return Err(format!("virtual channel message of {length} bytes; the limit is {MAX_CHANNEL_MESSAGE}"));
    }
    Ok(())
}

/// The channel processor the acceptor attaches: joined by clients that list `cliprdr`.
pub(crate) fn server_channel() -> CliprdrServer {
    CliprdrServer::new(Box::new(Noted::default()))
}

/// What the channel said, kept for [`ClipboardLink`] to act on after the PDU.
#[derive(Debug)]
enum Note {
    /// The client's first Format List arrived: the channel is initialized.
    Ready,
    /// The client copied: the formats it has now.
    ClientCopied(Vec<ClipboardFormat>),
    /// The client pastes our text in this format.
    DataRequested(ClipboardFormatId),
    /// The client answered our oldest Format Data Request.
    DataArrived(Result<Vec<u8>, ()>),
}

/// The backend: notes, nothing more (it cannot reach the channel to answer by itself).
#[derive(Debug, Default)]
struct Noted {
    notes: Vec<Note>,
}

impl_as_any!(Noted);

impl CliprdrBackend for Noted {
    fn temporary_directory(&self) -> &str {
        ""
    }

    /// Text only: no files, no locking.
    fn client_capabilities(&self) -> ClipboardGeneralCapabilityFlags {
        ClipboardGeneralCapabilityFlags::empty()
    }

    fn on_ready(&mut self) {
        self.notes.push(Note::Ready);
    }

    fn on_request_format_list(&mut self) {}

    fn on_process_negotiated_capabilities(&mut self, _capabilities: ClipboardGeneralCapabilityFlags) {}

    fn on_remote_copy(&mut self, available_formats: &[ClipboardFormat]) {
        self.notes.push(Note::ClientCopied(available_formats.to_vec()));
    }

    fn on_format_data_request(&mut self, request: FormatDataRequest) {
        self.notes.push(Note::DataRequested(request.format));
    }

    fn on_format_data_response(&mut self, response: FormatDataResponse<'_>) {
        let data = if response.is_error() { Err(()) } else { Ok(response.data().to_vec()) };
        self.notes.push(Note::DataArrived(data));
    }

    fn on_file_contents_request(&mut self, _request: FileContentsRequest) {}

    fn on_file_contents_response(&mut self, _response: FileContentsResponse<'_>) {}

    fn on_lock(&mut self, _data_id: LockDataId) {}

    fn on_unlock(&mut self, _data_id: LockDataId) {}
}

/// A Format Data Request sent to the client, and the pastes waiting for its answer (none once
/// they timed out: the answer still comes, and must pair with this request).
struct Sent {
    format: ClipboardFormatId,
    deadline: Instant,
    waiting: Vec<FetchReply>,
}

/// Why the terminal's loop woke for the clipboard.
pub(crate) enum ClipboardWake {
    /// The desktop pastes the client's text.
    Fetch(FetchReply),
    /// The desktop's offer was dropped: no more fetches come.
    OfferDropped,
    /// Something was copied in the desktop.
    DesktopCopied,
    /// The oldest waiting request's time is up.
    Timeout,
}

/// A terminal's clipboard: the session's side (its clipboard watch, the offer it holds) and the
/// requests on the wire.
#[derive(Default)]
pub(crate) struct ClipboardLink {
    /// The desktop's clipboard, for the session shown now.
    desktop: Option<watch::Receiver<Option<ClipboardText>>>,
    /// The client's current text on offer, and where the desktop's fetches of it arrive.
    offer: Option<ClipboardOffer>,
    fetches: Option<mpsc::Receiver<FetchReply>>,
    /// The format we ask the client for: its newest Format List's best text format.
    client_format: Option<ClipboardFormatId>,
    sent: VecDeque<Sent>,
    ready: bool,
}

impl ClipboardLink {
    /// Wait for the next thing to do (cancel-safe: used in the terminal's `select!`).
    pub async fn next(&mut self) -> ClipboardWake {
        let deadline = self.sent.iter().filter(|s| !s.waiting.is_empty()).map(|s| s.deadline).min();
        tokio::select! {
            fetch = recv(&mut self.fetches) => match fetch {
                Some(reply) => ClipboardWake::Fetch(reply),
                None => ClipboardWake::OfferDropped,
            },
            Ok(()) = changed(&mut self.desktop) => ClipboardWake::DesktopCopied,
            () = sleep_until(deadline) => ClipboardWake::Timeout,
        }
    }

    /// The terminal shows a session (at first, and after every switch): follow its clipboard,
    /// give it the client's text on offer, and tell the client what it holds.
    pub fn show(&mut self, state: &mut ActiveState, sink: &dyn InputSink) -> Vec<u8> {
        self.desktop = sink.clipboard();
        if let Some(offer) = &self.offer
            && sink.clipboard_allowed()
        {
            sink.clipboard_offer(Some(offer.clone()));
        }
        self.announce(state, sink, false)
    }

    pub fn wake(&mut self, wake: ClipboardWake, state: &mut ActiveState, sink: &dyn InputSink) -> Vec<u8> {
        match wake {
            ClipboardWake::Fetch(reply) => self.fetch(reply, state, sink),
            ClipboardWake::OfferDropped => {
                self.fetches = None;
                Vec::new()
            }
            ClipboardWake::DesktopCopied => self.announce(state, sink, true),
            ClipboardWake::Timeout => {
                let now = Instant::now();
                for sent in self.sent.iter_mut().filter(|s| s.deadline <= now) {
                    for reply in sent.waiting.drain(..) {
                        reply.send(Err(ClipboardError::Failed(format!("the client did not send its clipboard within {FETCH_TIMEOUT:?}"))));
                    }
                }
                Vec::new()
            }
        }
    }

    /// Act on what the channel noted while it processed the client's last PDU.
    pub fn after_pdu(&mut self, state: &mut ActiveState, sink: &dyn InputSink) -> Vec<u8> {
        let Some(notes) = with_backend(state, |noted| std::mem::take(&mut noted.notes)) else { return Vec::new() };
        let mut out = Vec::new();
        for note in notes {
            match note {
                Note::Ready => {
                    debug!("clipboard channel ready");
                    self.ready = true;
                    out.extend(self.announce(state, sink, false));
                }
                Note::ClientCopied(formats) => self.client_copied(&formats, sink),
                Note::DataRequested(format) => out.extend(self.answer(format, state, sink)),
                Note::DataArrived(data) => self.arrived(data),
            }
        }
        out
    }

    /// Tell the client what the desktop's clipboard holds: a Format List, empty for nothing
    /// when `even_empty` (the desktop's text went away; an empty list at the start would only
    /// clear the client's own clipboard).
    fn announce(&mut self, state: &mut ActiveState, sink: &dyn InputSink, even_empty: bool) -> Vec<u8> {
        let Some(desktop) = self.desktop.as_mut() else { return Vec::new() };
        let has_text = desktop.borrow_and_update().is_some();
        if !self.ready || !sink.clipboard_allowed() || !(has_text || even_empty) {
            return Vec::new();
        }
        let formats: &[ClipboardFormat] = if has_text {
            &[ClipboardFormat::new(ClipboardFormatId::CF_UNICODETEXT), ClipboardFormat::new(ClipboardFormatId::CF_TEXT)]
        } else {
            &[]
        };
        debug!(has_text, "telling the client what the session's clipboard holds");
        call(state, "format list", |cliprdr| cliprdr.initiate_copy(formats))
    }

    fn client_copied(&mut self, formats: &[ClipboardFormat], sink: &dyn InputSink) {
        let ids: Vec<ClipboardFormatId> = formats.iter().map(ClipboardFormat::id).collect();
        self.client_format = [ClipboardFormatId::CF_UNICODETEXT, ClipboardFormatId::CF_TEXT].into_iter().find(|f| ids.contains(f));
        debug!(formats = ?ids, text = self.client_format.is_some(), "the client copied");
        if self.client_format.is_some() {
            let (offer, fetches) = ClipboardOffer::remote(MAX_WAITING_FETCHES);
            self.offer = Some(offer);
            // The old offer's waiting fetches answer Gone as its receiver drops.
            self.fetches = Some(fetches);
        } else {
            self.offer = None;
            self.fetches = None;
        }
        if sink.clipboard_allowed() {
            sink.clipboard_offer(self.offer.clone());
        }
    }

    /// The desktop pastes: ask the client (or join a request already on its way).
    fn fetch(&mut self, reply: FetchReply, state: &mut ActiveState, sink: &dyn InputSink) -> Vec<u8> {
        if !sink.clipboard_allowed() {
            reply.send(Err(ClipboardError::Failed("this client takes no part in the session's clipboard".into())));
            return Vec::new();
        }
        let Some(format) = self.client_format else {
            reply.send(Err(ClipboardError::Gone));
            return Vec::new();
        };
        if let Some(last) = self.sent.back_mut()
            && last.format == format
            && !last.waiting.is_empty()
        {
            last.waiting.push(reply);
            return Vec::new();
        }
        if self.sent.len() >= MAX_REQUESTS_IN_FLIGHT {
            reply.send(Err(ClipboardError::Failed("the client answers no clipboard requests".into())));
            return Vec::new();
        }
        let bytes = call(state, "format data request", |cliprdr| cliprdr.initiate_paste(format));
        if bytes.is_empty() {
            reply.send(Err(ClipboardError::Failed("the clipboard channel is not ready".into())));
            return bytes;
        }
        self.sent.push_back(Sent { format, deadline: Instant::now() + FETCH_TIMEOUT, waiting: vec![reply] });
        bytes
    }

    /// The client answered our oldest request.
    fn arrived(&mut self, data: Result<Vec<u8>, ()>) {
        let Some(sent) = self.sent.pop_front() else {
            debug!("clipboard data nobody asked for; dropped");
            return;
        };
        if sent.waiting.is_empty() {
            return;
        }
        let result = match data {
            Err(()) => Err(ClipboardError::Failed("the client refused to send its clipboard".into())),
            Ok(data) => decode_text(&data, sent.format),
        };
        match &result {
            Ok(text) => debug!(bytes = text.len(), "clipboard text from the client"),
            Err(e @ ClipboardError::TooLarge { .. }) => warn!("clipboard text from the client refused: {e}"),
            Err(e) => info!("no clipboard text from the client: {e}"),
        }
        for reply in sent.waiting {
            reply.send(result.clone());
        }
    }

    /// The client pastes the session's text.
    fn answer(&mut self, format: ClipboardFormatId, state: &mut ActiveState, sink: &dyn InputSink) -> Vec<u8> {
        let text = self.desktop.as_ref().and_then(|d| d.borrow().clone()).filter(|_| sink.clipboard_allowed());
        let response = match (text, format) {
            (Some(text), ClipboardFormatId::CF_UNICODETEXT) => OwnedFormatDataResponse::new_unicode_string(&with_crlf(&text)),
            (Some(text), ClipboardFormatId::CF_TEXT) => OwnedFormatDataResponse::new_data(to_ansi(&with_crlf(&text))),
            (text, format) => {
                debug!(?format, has_text = text.is_some(), "clipboard request refused");
                OwnedFormatDataResponse::new_error()
            }
        };
        call(state, "format data response", |cliprdr| cliprdr.submit_format_data(response))
    }
}

async fn recv(fetches: &mut Option<mpsc::Receiver<FetchReply>>) -> Option<FetchReply> {
    match fetches {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn changed(desktop: &mut Option<watch::Receiver<Option<ClipboardText>>>) -> Result<(), watch::error::RecvError> {
    match desktop {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Run `f` on the channel's backend; `None` when the client did not join `cliprdr`.
fn with_backend<T>(state: &mut ActiveState, f: impl FnOnce(&mut Noted) -> T) -> Option<T> {
    let channel = state.static_channels_mut().get_by_type_mut::<CliprdrServer>()?;
    let cliprdr = channel.channel_processor_downcast_mut::<CliprdrServer>()?;
    cliprdr.downcast_backend_mut::<Noted>().map(f)
}

/// Bytes to write for what `f` makes the channel say; empty (with a log line) when it cannot.
fn call(state: &mut ActiveState, what: &str, f: impl FnOnce(&mut CliprdrServer) -> PduResult<CliprdrSvcMessages<Server>>) -> Vec<u8> {
    let user = state.channels().user;
    let channels = state.static_channels_mut();
    let Some(channel_id) = channels.get_channel_id_by_type::<CliprdrServer>() else { return Vec::new() };
    let Some(cliprdr) = channels.get_by_type_mut::<CliprdrServer>().and_then(|c| c.channel_processor_downcast_mut::<CliprdrServer>())
    else {
        return Vec::new();
    };
    let encoded = f(cliprdr).map_err(|e| e.to_string()).and_then(|messages| {
        server_encode_svc_messages(messages.into(), channel_id, user).map_err(|e| e.to_string())
    });
    encoded.unwrap_or_else(|e| {
        warn!("clipboard {what} not sent: {e}");
        Vec::new()
    })
}

/// Clipboard text as Windows keeps it: CRLF line ends.
fn with_crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut previous = '\0';
    for c in text.chars() {
        if c == '\n' && previous != '\r' {
            out.push('\r');
        }
        out.push(c);
        previous = c;
    }
    out
}

/// CF_TEXT: one byte a character, NUL-terminated. Latin-1 covers what Windows-1252 shares with
/// it; anything else becomes '?'.
fn to_ansi(text: &str) -> Vec<u8> {
    let mut out: Vec<u8> = text.chars().map(|c| u8::try_from(u32::from(c)).ok().filter(|&b| b != 0).unwrap_or(b'?')).collect();
    out.push(0);
    out
}

/// A client's clipboard data as text: up to the first NUL, CRLF as LF, within the size limit.
fn decode_text(data: &[u8], format: ClipboardFormatId) -> Result<ClipboardText, ClipboardError> {
    let text: String = if format == ClipboardFormatId::CF_UNICODETEXT {
        let units = data.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).take_while(|&u| u != 0);
        char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
    } else {
        data.iter().take_while(|&&b| b != 0).map(|&b| char::from(b)).collect()
    };
    let text = text.replace("\r\n", "\n");
    check_size(text.len())?;
    Ok(ClipboardText::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdhost_desktop::MAX_CLIPBOARD_BYTES;

    #[test]
    fn text_goes_out_with_crlf_and_comes_back_with_lf() {
        assert_eq!(with_crlf("a\nb\r\nc"), "a\r\nb\r\nc");
        let utf16: Vec<u8> = "é\r\n✓\0junk".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode_text(&utf16, ClipboardFormatId::CF_UNICODETEXT).unwrap().as_ref(), "é\n✓");
        // An odd trailing byte and no NUL at all are fine.
        let mut odd: Vec<u8> = "ab".encode_utf16().flat_map(u16::to_le_bytes).collect();
        odd.push(0x41);
        assert_eq!(decode_text(&odd, ClipboardFormatId::CF_UNICODETEXT).unwrap().as_ref(), "ab");
        assert_eq!(decode_text(b"caf\xe9\r\n\0", ClipboardFormatId::CF_TEXT).unwrap().as_ref(), "café\n");
        assert_eq!(to_ansi("café ✓"), b"caf\xe9 ?\0");
    }

    #[test]
    fn oversized_text_from_a_client_is_refused() {
        let big: Vec<u8> = "x".repeat(MAX_CLIPBOARD_BYTES + 1).encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode_text(&big, ClipboardFormatId::CF_UNICODETEXT), Err(ClipboardError::TooLarge { bytes: MAX_CLIPBOARD_BYTES + 1 }));
    }

    #[test]
    fn huge_channel_messages_are_refused_by_their_header() {
        let header = |length: u32| [&length.to_le_bytes()[..], &[3, 0, 0, 0]].concat();
        assert!(check_channel_message(&header(2 * 1024 * 1024)).is_ok());
        assert!(check_channel_message(&header(MAX_CHANNEL_MESSAGE + 1)).unwrap_err().contains("limit"));
        assert!(check_channel_message(&[1, 2]).is_ok(), "too short to say: the channel decoder refuses it");
    }
}
