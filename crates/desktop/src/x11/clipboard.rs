//! The X clipboard: the CLIPBOARD selection (and PRIMARY, when asked for) between a display's
//! programs and the clients that take part.
//!
//! - A program copies (takes CLIPBOARD): XFIXES tells us, we convert the selection to
//!   UTF8_STRING (else STRING) on our own window, INCR transfers included, and publish the text.
//! - A client copies: our window takes CLIPBOARD and answers the programs' SelectionRequests
//!   (TARGETS, TIMESTAMP, UTF8_STRING, TEXT, STRING, text/plain). The text is fetched from the
//!   client when the first request for it comes, and kept for the ones after.
//!
//! A connection and a thread of its own, blocked in `wait_for_event` like the capture thread
//! (see `mod.rs`): other threads post to a mailbox and wake it with a ClientMessage to its
//! window. Shutting the socket down ends it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use x11rb::connection::{Connection, RequestConnection as _};
use x11rb::protocol::Event;
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt as _, CreateWindowAux, EventMask, Property, PropMode, SelectionNotifyEvent,
    SelectionRequestEvent, Timestamp, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{CURRENT_TIME, NONE};

use super::{X11Error, XDisplay, display, lock};
use crate::clipboard::{ClipboardError, ClipboardOffer, ClipboardText, MAX_CLIPBOARD_BYTES, check_size};

// _RDHOST_SELECTION: where the selections we read are delivered, on our window.
// _RDHOST_WAKE: the ClientMessage that wakes the clipboard thread.
x11rb::atom_manager! {
    Atoms: AtomsCookie {
        CLIPBOARD,
        UTF8_STRING,
        TEXT,
        TARGETS,
        TIMESTAMP,
        INCR,
        MULTIPLE,
        TEXT_PLAIN_UTF8: b"text/plain;charset=utf-8",
        TEXT_PLAIN: b"text/plain",
        RDHOST_SELECTION: b"_RDHOST_SELECTION",
        RDHOST_WAKE: b"_RDHOST_WAKE",
    }
}

/// SelectionRequests waiting for a client's text beyond this are refused at once.
const MAX_WAITING_REQUESTS: usize = 64;

/// What other threads ask of the clipboard thread.
#[derive(Default)]
struct Mail {
    /// The newest offer from a client (`Some(None)`: the client's text is gone).
    offer: Option<Option<ClipboardOffer>>,
    /// Fetched texts, by offer id.
    fetched: Vec<(u64, Result<ClipboardText, ClipboardError>)>,
    primary: Option<bool>,
}

pub(crate) struct XClipboard {
    conn: RustConnection,
    window: Window,
    atoms: Atoms,
    display: String,
    mail: Mutex<Mail>,
    text: watch::Sender<Option<ClipboardText>>,
    stopping: AtomicBool,
}

impl XClipboard {
    /// Connect to `display` with a window of our own, and start the thread.
    pub fn start(display: &XDisplay) -> Result<Arc<XClipboard>, X11Error> {
        let display::Connected { conn, root, .. } = display::connect(display)?;
        let atoms = Atoms::new(&conn)?.reply()?;
        let window = conn.generate_id()?;
        conn.create_window(
            0,
            window,
            root,
            -1,
            -1,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?
        .check()?;
        let mask = xfixes::SelectionEventMask::SET_SELECTION_OWNER
            | xfixes::SelectionEventMask::SELECTION_WINDOW_DESTROY
            | xfixes::SelectionEventMask::SELECTION_CLIENT_CLOSE;
        for selection in [atoms.CLIPBOARD, AtomEnum::PRIMARY.into()] {
            conn.xfixes_select_selection_input(window, selection, mask)?.check()?;
        }
        let clipboard = Arc::new(XClipboard {
            conn,
            window,
            atoms,
            display: display.name.clone(),
            mail: Mutex::new(Mail::default()),
            text: watch::Sender::new(None),
            stopping: AtomicBool::new(false),
        });
        let thread = Arc::clone(&clipboard);
        std::thread::Builder::new().name(format!("x11 {} clip", display.name)).spawn(move || run(thread))?;
        Ok(clipboard)
    }

    /// Text copied by the display's programs.
    pub fn text(&self) -> watch::Receiver<Option<ClipboardText>> {
        self.text.subscribe()
    }

    pub fn offer(self: &Arc<Self>, offer: Option<ClipboardOffer>) {
        self.post(|mail| mail.offer = Some(offer));
    }

    pub fn follow_primary(self: &Arc<Self>, on: bool) {
        self.post(|mail| mail.primary = Some(on));
    }

    /// Stop the thread and disconnect.
    pub fn halt(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        use std::os::fd::AsRawFd as _;
        // SAFETY: shutdown on a socket fd the connection keeps open; no memory involved.
        unsafe { libc::shutdown(self.conn.stream().as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Leave something in the mailbox and wake the thread.
    fn post(&self, note: impl FnOnce(&mut Mail)) {
        note(&mut lock(&self.mail));
        let wake = ClientMessageEvent::new(32, self.window, self.atoms.RDHOST_WAKE, [0u32; 5]);
        let sent = self.conn.send_event(false, self.window, EventMask::NO_EVENT, wake).map(drop).and_then(|()| self.conn.flush());
        if let Err(e) = sent
            && !self.stopping.load(Ordering::SeqCst)
        {
            tracing::debug!(display = %self.display, "clipboard thread not woken: {e}");
        }
    }
}

/// A read of another program's selection in progress.
struct Reading {
    selection: Atom,
    /// The time our ConvertSelection named: its SelectionNotify carries it back.
    time: Timestamp,
    target: Atom,
    /// An INCR transfer: the chunks so far.
    incr: Option<Vec<u8>>,
}

/// What the clipboard thread keeps between events.
struct Local {
    /// The client's offer we own selections for, and those selections with the time we took them.
    offer: Option<ClipboardOffer>,
    owned: Vec<(Atom, Timestamp)>,
    /// The offer's text, once fetched (by offer id).
    fetched: Option<(u64, Result<ClipboardText, ClipboardError>)>,
    /// A fetch is on its way for this offer id.
    fetching: Option<u64>,
    /// Requests waiting for a fetch, with the offer id they wait for.
    waiting: Vec<(u64, SelectionRequestEvent)>,
    reading: Option<Reading>,
    primary: bool,
}

fn run(clip: Arc<XClipboard>) {
    let mut local =
        Local { offer: None, owned: Vec::new(), fetched: None, fetching: None, waiting: Vec::new(), reading: None, primary: false };
    // Text copied before we came (an attached display) is offered too.
    if let Ok(Ok(reply)) = clip.conn.get_selection_owner(clip.atoms.CLIPBOARD).map(|c| c.reply())
        && reply.owner != NONE
    {
        start_read(&clip, &mut local, clip.atoms.CLIPBOARD, CURRENT_TIME);
        let _ = clip.conn.flush();
    }
    let weak = Arc::downgrade(&clip);
    loop {
        let event = match clip.conn.wait_for_event() {
            Ok(event) => event,
            Err(e) => {
                if !clip.stopping.load(Ordering::SeqCst) {
                    tracing::debug!(display = %clip.display, "clipboard connection lost: {e}");
                }
                return;
            }
        };
        let mut next = Some(event);
        while let Some(event) = next {
            if let Err(e) = handle(&clip, &weak, &mut local, event) {
                tracing::debug!(display = %clip.display, "clipboard connection lost: {e}");
                return;
            }
            next = clip.conn.poll_for_event().ok().flatten();
        }
        if clip.conn.flush().is_err() {
            return;
        }
    }
}

type Res = Result<(), X11Error>;

fn handle(clip: &XClipboard, weak: &Weak<XClipboard>, local: &mut Local, event: Event) -> Res {
    let atoms = &clip.atoms;
    match event {
        Event::ClientMessage(e) if e.window == clip.window && e.type_ == atoms.RDHOST_WAKE => read_mail(clip, weak, local)?,
        Event::XfixesSelectionNotify(e) => {
            if e.owner == clip.window {
                // Our own take: note when, for TIMESTAMP.
                if let Some(owned) = local.owned.iter_mut().find(|(s, _)| *s == e.selection) {
                    owned.1 = e.selection_timestamp;
                }
                return Ok(());
            }
            local.owned.retain(|(s, _)| *s != e.selection);
            let wanted = e.selection == atoms.CLIPBOARD || (local.primary && e.selection == u32::from(AtomEnum::PRIMARY));
            // An owner going away leaves its text where it was: it was read when copied.
            if wanted && e.owner != NONE {
                start_read(clip, local, e.selection, e.timestamp);
            }
        }
        Event::SelectionClear(e) => local.owned.retain(|(s, _)| *s != e.selection),
        Event::SelectionNotify(e) if e.requestor == clip.window => read_selection(clip, local, e.selection, e.time, e.property)?,
        Event::PropertyNotify(e) if e.window == clip.window && e.atom == atoms.RDHOST_SELECTION && e.state == Property::NEW_VALUE => {
            read_chunk(clip, local)?
        }
        Event::SelectionRequest(e) => answer_request(clip, weak, local, e)?,
        Event::Error(e) => tracing::debug!(display = %clip.display, error = ?e.error_kind, "X clipboard request failed"),
        _ => {}
    }
    Ok(())
}

fn read_mail(clip: &XClipboard, weak: &Weak<XClipboard>, local: &mut Local) -> Res {
    let mail = std::mem::take(&mut *lock(&clip.mail));
    if let Some(primary) = mail.primary {
        local.primary = primary;
    }
    if let Some(offer) = mail.offer {
        take_selections(clip, local, offer)?;
    }
    for (id, result) in mail.fetched {
        if let Err(e) = &result {
            tracing::info!(display = %clip.display, "a program's paste got nothing: {e}");
        }
        if local.fetching == Some(id) {
            local.fetching = None;
        }
        if local.offer.as_ref().is_some_and(|o| o.id() == id) {
            local.fetched = Some((id, result.clone()));
        }
        let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut local.waiting).into_iter().partition(|(w, _)| *w == id);
        local.waiting = still;
        for (_, request) in ready {
            reply_text(clip, &request, result.as_ref().ok())?;
        }
    }
    // A fetch for an offer that was replaced meanwhile: the requests still waiting want the new one.
    if local.fetching.is_none() && !local.waiting.is_empty() {
        start_fetch(clip, weak, local);
    }
    Ok(())
}

/// A client offers text (own CLIPBOARD, and PRIMARY when following it), or no longer does.
fn take_selections(clip: &XClipboard, local: &mut Local, offer: Option<ClipboardOffer>) -> Res {
    let conn = &clip.conn;
    local.fetched = None;
    local.offer = offer;
    if local.offer.is_none() {
        for (selection, _) in std::mem::take(&mut local.owned) {
            conn.set_selection_owner(NONE, selection, CURRENT_TIME)?;
        }
        return Ok(());
    }
    let mut selections = vec![clip.atoms.CLIPBOARD];
    if local.primary {
        selections.push(AtomEnum::PRIMARY.into());
    }
    for selection in selections {
        conn.set_selection_owner(clip.window, selection, CURRENT_TIME)?;
        if conn.get_selection_owner(selection)?.reply()?.owner == clip.window {
            if !local.owned.iter().any(|(s, _)| *s == selection) {
                local.owned.push((selection, CURRENT_TIME));
            }
        } else {
            tracing::warn!(display = %clip.display, selection, "could not take the X selection for a client's copy");
        }
    }
    Ok(())
}

fn start_read(clip: &XClipboard, local: &mut Local, selection: Atom, time: Timestamp) {
    let target = clip.atoms.UTF8_STRING;
    local.reading = Some(Reading { selection, time, target, incr: None });
    if let Err(e) = clip.conn.convert_selection(clip.window, selection, target, clip.atoms.RDHOST_SELECTION, time) {
        tracing::debug!(display = %clip.display, "cannot ask for the selection: {e}");
        local.reading = None;
    }
}

/// The owner answered our ConvertSelection.
fn read_selection(clip: &XClipboard, local: &mut Local, selection: Atom, time: Timestamp, property: Atom) -> Res {
    let atoms = &clip.atoms;
    let Some(reading) = local.reading.as_mut().filter(|r| r.selection == selection && r.time == time && r.incr.is_none()) else {
        // An answer to a read given up for a newer copy.
        return Ok(());
    };
    if property == NONE {
        if reading.target == atoms.UTF8_STRING {
            // Older programs offer Latin-1 only.
            reading.target = AtomEnum::STRING.into();
            clip.conn.convert_selection(clip.window, selection, reading.target, atoms.RDHOST_SELECTION, time)?;
        } else {
            tracing::debug!(display = %clip.display, "the copied selection has no text");
            local.reading = None;
            clip.text.send_replace(None);
        }
        return Ok(());
    }
    let limit = (MAX_CLIPBOARD_BYTES / 4 + 1) as u32;
    let reply = clip.conn.get_property(true, clip.window, atoms.RDHOST_SELECTION, AtomEnum::ANY, 0, limit)?.reply()?;
    if reply.type_ == atoms.INCR {
        // The owner sends chunks, each once we deleted the last (we just did).
        let announced = reply.value32().and_then(|mut v| v.next()).unwrap_or(0) as usize;
        if let Err(e) = check_size(announced) {
            tracing::warn!(display = %clip.display, "copied text not offered to clients: {e}");
            local.reading = None;
            return Ok(());
        }
        reading.incr = Some(Vec::new());
        return Ok(());
    }
    if reply.bytes_after > 0 {
        let e = ClipboardError::TooLarge { bytes: reply.value.len() + reply.bytes_after as usize };
        tracing::warn!(display = %clip.display, "copied text not offered to clients: {e}");
        local.reading = None;
        return Ok(());
    }
    let target = reading.target;
    local.reading = None;
    publish(clip, &reply.value, reply.type_, target);
    Ok(())
}

/// A chunk of an INCR transfer arrived; an empty one ends it.
fn read_chunk(clip: &XClipboard, local: &mut Local) -> Res {
    let Some(reading) = local.reading.as_mut() else { return Ok(()) };
    let Some(chunks) = reading.incr.as_mut() else { return Ok(()) };
    let limit = (MAX_CLIPBOARD_BYTES / 4 + 1) as u32;
    let reply = clip.conn.get_property(true, clip.window, clip.atoms.RDHOST_SELECTION, AtomEnum::ANY, 0, limit)?.reply()?;
    if reply.value.is_empty() {
        let bytes = std::mem::take(chunks);
        let target = reading.target;
        local.reading = None;
        publish(clip, &bytes, reply.type_, target);
        return Ok(());
    }
    chunks.extend_from_slice(&reply.value);
    if let Err(e) = check_size(chunks.len() + reply.bytes_after as usize) {
        tracing::warn!(display = %clip.display, "copied text not offered to clients: {e}");
        local.reading = None;
    }
    Ok(())
}

/// Publish text a program copied.
fn publish(clip: &XClipboard, bytes: &[u8], type_: Atom, target: Atom) {
    let latin1 = type_ == u32::from(AtomEnum::STRING) || (type_ == NONE && target == u32::from(AtomEnum::STRING));
    let text: String = if latin1 { bytes.iter().map(|&b| char::from(b)).collect() } else { String::from_utf8_lossy(bytes).into_owned() };
    let text = text.trim_end_matches('\0');
    if let Err(e) = check_size(text.len()) {
        tracing::warn!(display = %clip.display, "copied text not offered to clients: {e}");
        return;
    }
    tracing::debug!(display = %clip.display, bytes = text.len(), "a program copied text");
    clip.text.send_replace(Some(ClipboardText::from(text)));
}

fn text_targets(atoms: &Atoms) -> [Atom; 5] {
    [atoms.UTF8_STRING, atoms.TEXT_PLAIN_UTF8, atoms.TEXT, AtomEnum::STRING.into(), atoms.TEXT_PLAIN]
}

/// A program pastes what a client copied.
fn answer_request(clip: &XClipboard, weak: &Weak<XClipboard>, local: &mut Local, e: SelectionRequestEvent) -> Res {
    let atoms = &clip.atoms;
    let conn = &clip.conn;
    // Obsolete requestors name no property: the target is the property then (ICCCM 2.2).
    let property = if e.property == NONE { e.target } else { e.property };
    let e = SelectionRequestEvent { property, ..e };
    let Some(&(_, since)) = local.owned.iter().find(|(s, _)| *s == e.selection).filter(|_| local.offer.is_some()) else {
        return refuse(clip, &e);
    };
    if e.target == atoms.TARGETS {
        let mut targets = vec![atoms.TARGETS, atoms.TIMESTAMP];
        targets.extend(text_targets(atoms));
        conn.change_property32(PropMode::REPLACE, e.requestor, property, AtomEnum::ATOM, &targets)?;
        return notify(clip, &e, property);
    }
    if e.target == atoms.TIMESTAMP {
        conn.change_property32(PropMode::REPLACE, e.requestor, property, AtomEnum::INTEGER, &[since])?;
        return notify(clip, &e, property);
    }
    if !text_targets(atoms).contains(&e.target) {
        // MULTIPLE and anything not text.
        return refuse(clip, &e);
    }
    let id = local.offer.as_ref().map(ClipboardOffer::id).unwrap_or_default();
    if let Some((fetched_id, result)) = &local.fetched
        && *fetched_id == id
    {
        let result = result.clone();
        return reply_text(clip, &e, result.as_ref().ok());
    }
    if local.waiting.len() >= MAX_WAITING_REQUESTS {
        tracing::debug!(display = %clip.display, "too many pastes waiting for the client; one refused");
        return refuse(clip, &e);
    }
    local.waiting.push((id, e));
    if local.fetching.is_none() {
        start_fetch(clip, weak, local);
    }
    Ok(())
}

/// Ask the client for its text; the answer comes back through the mailbox. Requests waiting
/// for an older offer are moved to this one.
fn start_fetch(clip: &XClipboard, weak: &Weak<XClipboard>, local: &mut Local) {
    let Some(offer) = local.offer.clone() else {
        for (_, request) in std::mem::take(&mut local.waiting) {
            let _ = refuse(clip, &request);
        }
        return;
    };
    let id = offer.id();
    for (waiting_for, _) in &mut local.waiting {
        *waiting_for = id;
    }
    local.fetching = Some(id);
    let weak = weak.clone();
    offer.fetch(move |result| {
        if let Some(clip) = weak.upgrade() {
            clip.post(|mail| mail.fetched.push((id, result)));
        }
    });
}

fn reply_text(clip: &XClipboard, e: &SelectionRequestEvent, text: Option<&ClipboardText>) -> Res {
    let Some(text) = text else { return refuse(clip, e) };
    let (type_, bytes): (Atom, Vec<u8>) = if e.target == u32::from(AtomEnum::STRING) {
        (AtomEnum::STRING.into(), text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect())
    } else if e.target == clip.atoms.TEXT {
        // TEXT lets the owner choose: UTF-8.
        (clip.atoms.UTF8_STRING, text.as_bytes().to_vec())
    } else {
        (e.target, text.as_bytes().to_vec())
    };
    // Past the request size limit it would take an INCR transfer; BIG-REQUESTS (every server
    // we start has it) allows far more than the clipboard limit.
    if bytes.len() + 64 > clip.conn.maximum_request_bytes() {
        tracing::warn!(display = %clip.display, bytes = bytes.len(), "paste refused: larger than one X request");
        return refuse(clip, e);
    }
    clip.conn.change_property8(PropMode::REPLACE, e.requestor, e.property, type_, &bytes)?;
    notify(clip, e, e.property)
}

fn refuse(clip: &XClipboard, e: &SelectionRequestEvent) -> Res {
    notify(clip, e, NONE)
}

fn notify(clip: &XClipboard, e: &SelectionRequestEvent, property: Atom) -> Res {
    let event = SelectionNotifyEvent {
        response_type: x11rb::protocol::xproto::SELECTION_NOTIFY_EVENT,
        sequence: 0,
        time: e.time,
        requestor: e.requestor,
        selection: e.selection,
        target: e.target,
        property,
    };
    clip.conn.send_event(false, e.requestor, EventMask::NO_EVENT, event)?;
    Ok(())
}
