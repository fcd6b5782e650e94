//! The clipboard between a desktop and the clients that take part in it: text only.
//!
//! Two directions, both lazy where it matters:
//! - Text copied inside the desktop (an X program takes the CLIPBOARD selection, a mouse
//!   selection in the terminal desktop) is published on [`Desktop::clipboard`](crate::Desktop::clipboard);
//!   the wire tells its clients that text is there and sends it when one pastes.
//! - Text a client copied arrives as a [`ClipboardOffer`]: nothing crosses the network until a
//!   program of the desktop pastes it ([`ClipboardOffer::fetch`]), as RDP's delayed rendering
//!   intends (a client may copy many times and paste never).
//!
//! Nothing here knows about RDP: line ends are `\n`, text is UTF-8, and at most
//! [`MAX_CLIPBOARD_BYTES`] of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

/// The largest clipboard text, in UTF-8 bytes, that goes either way. Larger texts are refused
/// with a log line: a clipboard is for snippets, and every byte of it is held in memory (and,
/// towards a client, as UTF-16).
pub const MAX_CLIPBOARD_BYTES: usize = 1024 * 1024;

/// Clipboard text: UTF-8, `\n` line ends, at most [`MAX_CLIPBOARD_BYTES`].
pub type ClipboardText = Arc<str>;

/// Why a paste got no text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClipboardError {
    /// The client that offered the text left, or offered something else since.
    #[error("the text on offer is gone (its client left or copied something else)")]
    Gone,
    #[error("clipboard text of {bytes} bytes refused: the limit is {MAX_CLIPBOARD_BYTES} bytes")]
    TooLarge { bytes: usize },
    /// The client refused or did not answer; the text says which.
    #[error("{0}")]
    Failed(String),
}

/// `Ok` when `bytes` of text fit the clipboard.
pub fn check_size(bytes: usize) -> Result<(), ClipboardError> {
    if bytes > MAX_CLIPBOARD_BYTES { Err(ClipboardError::TooLarge { bytes }) } else { Ok(()) }
}

type Done = Box<dyn FnOnce(Result<ClipboardText, ClipboardError>) + Send>;

/// One paste waiting for a client's text. Whoever holds it answers it once, with
/// [`send`](Self::send); dropping it unanswered answers [`ClipboardError::Gone`], so a paste
/// never waits for a client that went away.
pub struct FetchReply {
    done: Option<Done>,
}

impl FetchReply {
    pub fn send(mut self, result: Result<ClipboardText, ClipboardError>) {
        if let Some(done) = self.done.take() {
            done(result);
        }
    }
}

impl Drop for FetchReply {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(ClipboardError::Gone));
        }
    }
}

impl std::fmt::Debug for FetchReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchReply")
    }
}

enum Source {
    /// Known already ([`Desktop::clipboard_set`](crate::Desktop::clipboard_set), tests).
    Ready(ClipboardText),
    /// Asked of a client when pasted: the wire holds the other end.
    Remote(mpsc::Sender<FetchReply>),
}

/// Text a client has on its clipboard, which the desktop may paste. Cheap to clone; every
/// clone is the same offer.
#[derive(Clone)]
pub struct ClipboardOffer {
    source: Arc<Source>,
    id: u64,
}

impl std::fmt::Debug for ClipboardOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.source {
            Source::Ready(text) => format!("ready, {} bytes", text.len()),
            Source::Remote(_) => "remote".to_owned(),
        };
        write!(f, "ClipboardOffer({}, {kind})", self.id)
    }
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl ClipboardOffer {
    /// An offer of text already at hand.
    pub fn ready(text: impl Into<ClipboardText>) -> Result<Self, ClipboardError> {
        let text = text.into();
        check_size(text.len())?;
        Ok(Self { source: Arc::new(Source::Ready(text)), id: next_id() })
    }

    /// An offer whose text is fetched on demand: each [`fetch`](Self::fetch) arrives on the
    /// receiver, at most `waiting` of them at once (more fail at once). Dropping the receiver
    /// withdraws the offer: fetches waiting there, and later ones, get [`ClipboardError::Gone`].
    pub fn remote(waiting: usize) -> (Self, mpsc::Receiver<FetchReply>) {
        let (tx, rx) = mpsc::channel(waiting.max(1));
        (Self { source: Arc::new(Source::Remote(tx)), id: next_id() }, rx)
    }

    /// Tells offers apart: a new copy on the client is a new offer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Ask for the text; `done` is called once with it, or with why not, possibly at once and
    /// on this thread, else later from the wire's task. It must return quickly.
    pub fn fetch(&self, done: impl FnOnce(Result<ClipboardText, ClipboardError>) + Send + 'static) {
        match &*self.source {
            Source::Ready(text) => done(Ok(Arc::clone(text))),
            Source::Remote(requests) => match requests.try_send(FetchReply { done: Some(Box::new(done)) }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(reply)) => {
                    reply.send(Err(ClipboardError::Failed("too many pastes are waiting for the client".into())))
                }
                // The reply answers Gone as it drops.
                Err(mpsc::error::TrySendError::Closed(reply)) => drop(reply),
            },
        }
    }

    /// The text, awaited.
    pub async fn text(&self) -> Result<ClipboardText, ClipboardError> {
        let (tx, rx) = oneshot::channel();
        self.fetch(move |result| {
            let _ = tx.send(result);
        });
        rx.await.unwrap_or(Err(ClipboardError::Gone))
    }
}

/// Text for a terminal to paste: C0 and C1 control characters other than tab and line ends
/// are dropped (a pasted escape sequence must not drive the terminal), and line ends become
/// the carriage returns a typed Enter sends.
pub fn sanitize_paste(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\r');
            }
            '\n' => out.push('\r'),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn recorder() -> (Arc<Mutex<Vec<Result<ClipboardText, ClipboardError>>>>, impl Fn() -> Box<dyn FnOnce(Result<ClipboardText, ClipboardError>) + Send>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        (seen, move || {
            let s = Arc::clone(&s);
            Box::new(move |r| s.lock().unwrap().push(r))
        })
    }

    #[test]
    fn ready_offers_answer_at_once_and_refuse_oversized_text() {
        let offer = ClipboardOffer::ready("hello").unwrap();
        let (seen, done) = recorder();
        offer.fetch(done());
        assert_eq!(*seen.lock().unwrap(), vec![Ok(ClipboardText::from("hello"))]);
        let big = "x".repeat(MAX_CLIPBOARD_BYTES + 1);
        assert_eq!(ClipboardOffer::ready(big).unwrap_err(), ClipboardError::TooLarge { bytes: MAX_CLIPBOARD_BYTES + 1 });
        assert!(ClipboardOffer::ready("x".repeat(MAX_CLIPBOARD_BYTES)).is_ok());
    }

    #[test]
    fn remote_offers_queue_a_bounded_number_of_fetches() {
        let (offer, mut requests) = ClipboardOffer::remote(2);
        let (seen, done) = recorder();
        offer.fetch(done());
        offer.fetch(done());
        offer.fetch(done());
        // The third did not fit: failed at once, the others wait for the wire.
        assert!(matches!(seen.lock().unwrap().as_slice(), [Err(ClipboardError::Failed(_))]));
        requests.try_recv().unwrap().send(Ok("abc".into()));
        assert_eq!(seen.lock().unwrap()[1], Ok(ClipboardText::from("abc")));
        // An unanswered reply that is dropped (the client left) answers Gone.
        drop(requests.try_recv().unwrap());
        assert_eq!(seen.lock().unwrap()[2], Err(ClipboardError::Gone));
        // A withdrawn offer answers Gone too.
        drop(requests);
        offer.fetch(done());
        assert_eq!(seen.lock().unwrap()[3], Err(ClipboardError::Gone));
        assert_ne!(offer.id(), ClipboardOffer::remote(1).0.id());
    }

    #[tokio::test]
    async fn text_awaits_the_wire() {
        let (offer, mut requests) = ClipboardOffer::remote(1);
        let wire = tokio::spawn(async move { requests.recv().await.unwrap().send(Ok("from the client".into())) });
        assert_eq!(offer.text().await.unwrap().as_ref(), "from the client");
        wire.await.unwrap();
    }

    #[test]
    fn pastes_lose_control_characters_and_end_lines_with_cr() {
        assert_eq!(sanitize_paste("a\nb\r\nc\rd"), "a\rb\rc\rd");
        assert_eq!(sanitize_paste("tab\there\x1b[201~\x07\u{9b}x\u{7f}"), "tab\there[201~x");
        assert_eq!(sanitize_paste("héllo ✓"), "héllo ✓");
    }
}
