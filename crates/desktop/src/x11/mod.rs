//! X desktops: a session's own X server ([`server`]), or an X display that already exists
//! (attach), captured with DAMAGE + MIT-SHM + XFIXES and driven with XTEST.
//!
//! Who owns what:
//! - `mod.rs` (this file): [`X11Desktop`], the [`Desktop`](crate::Desktop) for both cases.
//! - `display`: connecting to a display with an explicit auth file.
//! - `capture`: damage → shared-memory reads → the canvas; the cursor image.
//! - `clipboard`: the CLIPBOARD (and PRIMARY) selection between programs and clients.
//! - `randr`: resizing the screen on request.
//! - `input`, `keymap`: XTEST input, scancodes → X keycodes, layouts, Unicode keys.
//! - `server`: starting a session's X server and session program, and ending every process.
//! - `xauth`: Xauthority files (the session server's private cookie).
//!
//! Threads: each desktop has one OS thread blocked in `wait_for_event` on its X connection
//! (damage, cursor, screen-size and keymap events) and one blocked on a condition variable for
//! resize requests. Both sleep while nothing happens: an idle desktop costs no CPU. A thread
//! rather than tokio's `AsyncFd`: x11rb reads events into its own queue whenever any thread
//! waits for a reply, so the socket's readiness does not say whether events are waiting, and
//! an `AsyncFd` loop would have to re-poll the queue after every request to be correct. The
//! blocking `wait_for_event` is correct by construction. Ending the desktop shuts the socket
//! down, which wakes that thread at once.

mod capture;
mod clipboard;
mod display;
pub mod input;
pub mod keymap;
mod randr;
pub mod server;
pub mod xauth;

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ChangeWindowAttributesAux, ConnectionExt as _, EventMask};
use x11rb::rust_connection::RustConnection;

use crate::clipboard::{ClipboardOffer, ClipboardText};
use crate::{Canvas, CursorShape, Desktop, DesktopEnd, InputEvent, KeyboardLayout, Size};
use capture::{Capture, Fault};
use input::XInput;

/// At most this many captures per second. Damage that arrives sooner waits for the rest of the
/// interval (and is read together with whatever else changed meanwhile), so a full-screen
/// animation costs at most 60 reads of the screen a second instead of one per X drawing call.
const MAX_CAPTURES_PER_SECOND: u32 = 60;
const MIN_CAPTURE_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / MAX_CAPTURES_PER_SECOND as u64);
/// The longest a capture waits for a reader to take the last one (see
/// [`crate::Canvas::wait_for_reader`]): readers that all hold damage they never take (every terminal
/// paused) still see the screen at this pace.
const MAX_READER_WAIT: Duration = Duration::from_millis(100);

/// An X display to capture and drive: its name (":5") and the Xauthority file that lets us in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XDisplay {
    /// The display name as `DISPLAY` has it: ":5", ":5.0". Only local displays.
    pub name: String,
    /// `None`: the display needs no cookie (or it is in the host's own `XAUTHORITY`).
    pub xauthority: Option<PathBuf>,
}

impl XDisplay {
    /// The display number in ":N" or ":N.S" (local displays only).
    pub fn number(&self) -> Option<u32> {
        let rest = self
            .name
            .strip_prefix(':')
            .or_else(|| self.name.strip_prefix("unix:"))?;
        rest.split('.').next()?.parse().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    #[error("cannot connect to X display {display}: {reason}")]
    Connect { display: String, reason: String },
    #[error("X display {display} lacks the {extension} extension, which rdhost needs")]
    MissingExtension {
        display: String,
        extension: &'static str,
    },
    #[error("X request failed: {0}")]
    Request(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No X server to start sessions with; the text names the packages to install.
    #[error("{0}")]
    NoXServer(String),
    #[error("the X server did not start: {0}")]
    ServerStart(String),
    #[error("the session program did not start: {0}")]
    Session(String),
    /// The session ended while it started (its program failed at once, its server died); the
    /// text names what and why.
    #[error("{0}")]
    SessionFailed(String),
    #[error(transparent)]
    Identity(#[from] crate::process::IdentityError),
}

impl From<x11rb::errors::ConnectionError> for X11Error {
    fn from(e: x11rb::errors::ConnectionError) -> Self {
        X11Error::Request(e.to_string())
    }
}
impl From<x11rb::errors::ReplyError> for X11Error {
    fn from(e: x11rb::errors::ReplyError) -> Self {
        X11Error::Request(e.to_string())
    }
}
impl From<x11rb::errors::ReplyOrIdError> for X11Error {
    fn from(e: x11rb::errors::ReplyOrIdError) -> Self {
        X11Error::Request(e.to_string())
    }
}

/// How to treat a display we attach to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Follow the client's size with RandR. Off for someone's own display (its monitor decides);
    /// on for a session's X server.
    pub allow_resize: bool,
    /// Switch the display's keyboard layout to the client's. Off for someone's own display.
    pub apply_layout: bool,
}

/// The processes behind a display, when the desktop owns them (a session's X server and
/// program). An attached display has none: ending the desktop only disconnects from it.
pub(crate) trait DisplayOwner: Send + Sync + 'static {
    /// End every process (logoff). Returns quickly; called once.
    fn terminate(&self);
    /// How to recognise the session's processes.
    fn session_marks(&self) -> crate::SessionMarks {
        crate::SessionMarks::default()
    }
}

/// A desktop on an X display: its screen in the canvas, input by XTEST, resize by RandR.
pub struct X11Desktop {
    shared: Arc<Shared>,
    owner: Option<Box<dyn DisplayOwner>>,
}

struct Shared {
    display: XDisplay,
    conn: RustConnection,
    root: u32,
    randr_minor: u32,
    options: AttachOptions,
    canvas: Arc<Canvas>,
    cursor: watch::Sender<Option<Arc<CursorShape>>>,
    ended: watch::Sender<Option<DesktopEnd>>,
    /// Set once the desktop is ending: errors from the connection after this are ours.
    stopping: AtomicBool,
    /// The processes behind the display are ours: their owner reports the end.
    owned: bool,
    input: Mutex<XInput>,
    /// The latest resize not yet applied (later requests replace earlier ones).
    requests: Mutex<Requests>,
    wake: Condvar,
    /// `None` when its connection failed (the desktop works without a clipboard).
    clipboard: Option<Arc<clipboard::XClipboard>>,
}

#[derive(Default)]
struct Requests {
    /// Input and layout changes, in the order they came; applied by the control thread, since
    /// XTEST typing may wait (a layout being compiled, a spare keycode being rebound).
    input: VecDeque<InputWork>,
    /// Input was dropped because the queue was full (logged once per overflow).
    input_overflow: bool,
    resize: Option<Size>,
    stop: bool,
}

/// What the control thread applies for `input` and `set_keyboard_layout`.
enum InputWork {
    Event(InputEvent),
    Layout(KeyboardLayout),
}

/// Input events waiting beyond this are dropped: the X server is not taking them (a hung
/// server), and a queue that grows without bound would only replay stale input later.
const MAX_PENDING_INPUT: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic on one thread must not take the others down; the state stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl X11Desktop {
    /// Connect to `display` and check that it has every extension capture and input need, then
    /// disconnect: for reporting a wrong name or cookie before the first logon.
    pub fn probe(display: &XDisplay) -> Result<(), X11Error> {
        display::connect(display).map(drop)
    }

    /// Capture and drive an X display that already runs. Ending this desktop disconnects from
    /// the display and leaves its server and programs running. Blocks for a few round trips
    /// and one read of the screen.
    pub fn attach(display: XDisplay, options: AttachOptions) -> Result<Arc<X11Desktop>, X11Error> {
        Self::attach_owned(display, options, None, None)
    }

    /// Attach, and make `owner`'s processes part of the desktop: `terminate` ends them, and
    /// their end, forwarded with [`DesktopEnder::follow`], is the desktop's end (a broken X
    /// connection then only stops capture: the owner says why its server went). With
    /// `initial_size`, the screen is resized before the first capture, so the canvas starts at
    /// that size (a session's Xvfb starts at its largest).
    pub(crate) fn attach_owned(
        display: XDisplay,
        options: AttachOptions,
        owner: Option<Box<dyn DisplayOwner>>,
        initial_size: Option<Size>,
    ) -> Result<Arc<X11Desktop>, X11Error> {
        let connected = display::connect(&display)?;
        let display::Connected { conn, root, format, randr_minor } = connected;
        if let Some(size) = initial_size
            && let Err(e) = randr::resize(&conn, root, randr_minor, size)
        {
            let name = &display.name;
            tracing::warn!(display = %name, ?size, "cannot give the X screen its first size: {e}");
        }
        let geometry = conn.get_geometry(root)?.reply()?;
        let size = Size::new(geometry.width, geometry.height);
        // Sized by the capture, which also gives it its memory (the capture segment on a BGRX
        // screen): a screen-sized buffer allocated here only to be freed would move glibc's
        // mmap threshold up and leave frame-sized buffers sitting in its arenas (+3.4 MiB a
        // session, measured).
        let canvas = Canvas::new(Size::new(0, 0));

        // Events first, then the first reads: nothing that changes in between is missed.
        conn.change_window_attributes(root, &ChangeWindowAttributesAux::new().event_mask(EventMask::STRUCTURE_NOTIFY))?.check()?;
        randr::select_screen_changes(&conn, root)?;
        conn.xfixes_select_cursor_input(root, xfixes::CursorNotifyMask::DISPLAY_CURSOR)?.check()?;
        let mut capture = Capture::new(&conn, root, format, Arc::clone(&canvas), size).map_err(fault_error)?;
        capture.full(&conn).map_err(fault_error)?;
        let (serial, shape) = capture::cursor_image(&conn).map_err(fault_error)?;
        let input = XInput::new(&conn, root, &display)?;
        let clipboard = match clipboard::XClipboard::start(&display) {
            Ok(clipboard) => Some(clipboard),
            Err(e) => {
                let name = &display.name;
                tracing::warn!(display = %name, "no clipboard for this display: {e}");
                None
            }
        };

        let shared = Arc::new(Shared {
            display,
            conn,
            root,
            randr_minor,
            options,
            canvas,
            cursor: watch::Sender::new(Some(Arc::new(shape))),
            ended: watch::Sender::new(None),
            stopping: AtomicBool::new(false),
            owned: owner.is_some(),
            input: Mutex::new(input),
            requests: Mutex::new(Requests::default()),
            wake: Condvar::new(),
            clipboard,
        });
        let name = shared.display.name.clone();
        let events = Arc::clone(&shared);
        std::thread::Builder::new().name(format!("x11 {name}")).spawn(move || run_events(events, capture, serial))?;
        let control = Arc::clone(&shared);
        let spawned = std::thread::Builder::new().name(format!("x11 {name} ctl")).spawn(move || run_control(control));
        if let Err(e) = spawned {
            shared.finish(DesktopEnd::Failed(format!("cannot start a thread: {e}")));
            return Err(e.into());
        }
        tracing::debug!(display = %name, width = size.width, height = size.height, "attached to X display");
        Ok(Arc::new(X11Desktop { shared, owner }))
    }

    /// Start a session's own X server and session program ([`server::SessionServer`]) and show
    /// it: the screen follows the client's size and keyboard layout, and the desktop ends when
    /// the session does (the program exits: `UserLoggedOff`; the server dies: `Failed`).
    /// `terminate` ends every process of the session. Call inside a tokio runtime.
    pub async fn start_session(options: server::SessionServerOptions, layout: KeyboardLayout) -> Result<Arc<X11Desktop>, X11Error> {
        let size = options.size;
        let session = server::SessionServer::start(options).await?;
        let display = session.display().clone();
        let ended = session.ended();
        let attach = AttachOptions { allow_resize: true, apply_layout: true };
        // Attaching takes a few round trips and a full read: off the runtime's threads. If it
        // fails, `session` is dropped there, which ends the session's processes.
        let attached = tokio::task::spawn_blocking(move || X11Desktop::attach_owned(display, attach, Some(Box::new(session)), Some(size)))
            .await
            .map_err(|e| X11Error::Request(format!("attaching to the session's display: {e}")))?;
        let desktop = match attached {
            Ok(desktop) => desktop,
            // The session may have ended under the attach (its program failed at once, its
            // server died): then that is the error, not the broken X connection it caused.
            Err(e) => return Err(session_end_cause(ended).await.unwrap_or(e)),
        };
        desktop.ender().follow(ended);
        desktop.set_keyboard_layout(layout);
        Ok(desktop)
    }

    /// The display this desktop shows.
    pub fn display(&self) -> &XDisplay {
        &self.shared.display
    }

    /// Make the PRIMARY selection part of the clipboard too (off at first): text selected with
    /// the mouse is offered to the clients, and a client's copy is pasted by a middle click.
    pub fn follow_primary(&self, on: bool) {
        if let Some(clipboard) = &self.shared.clipboard {
            clipboard.follow_primary(on);
        }
    }

    /// A handle for the owner's watcher to end the desktop (the session program exited) without
    /// keeping the desktop alive.
    pub(crate) fn ender(&self) -> DesktopEnder {
        DesktopEnder { shared: Arc::downgrade(&self.shared) }
    }
}

impl DisplayOwner for server::SessionServer {
    fn terminate(&self) {
        server::SessionServer::terminate(self);
    }
    fn session_marks(&self) -> crate::SessionMarks {
        let cgroup = match self.mechanism() {
            crate::process::Mechanism::Cgroup(dir) => Some(dir.clone()),
            crate::process::Mechanism::ProcessSessions => None,
        };
        crate::SessionMarks { leader: Some(self.session_pid()), cgroup }
    }
}

/// Why a session whose attach failed ended, if it failed on its own. The session was dropped
/// with the failed attach, which ends it; a failure of its own shows first (the watcher
/// prefers it), an end we caused is `Terminated`.
async fn session_end_cause(mut ended: watch::Receiver<Option<DesktopEnd>>) -> Option<X11Error> {
    // Ending takes at most the hang-up and server graces plus the final kill.
    let end = tokio::time::timeout(Duration::from_secs(20), ended.wait_for(Option::is_some)).await.ok()?.ok()?.clone();
    match end {
        Some(DesktopEnd::Failed(why)) => Some(X11Error::SessionFailed(why)),
        _ => None,
    }
}

/// Ends a desktop from outside (see [`X11Desktop::ender`]). The first end reported wins.
#[derive(Clone)]
pub(crate) struct DesktopEnder {
    shared: Weak<Shared>,
}

impl DesktopEnder {
    pub fn end(&self, end: DesktopEnd) {
        if let Some(shared) = self.shared.upgrade() {
            shared.finish(end);
        }
    }

    /// End the desktop when the owner's `ended` reports (a task on the current runtime). An
    /// owner that goes away without a word ends it as failed.
    pub fn follow(self, mut ended: watch::Receiver<Option<DesktopEnd>>) {
        tokio::spawn(async move {
            let end = match ended.wait_for(Option::is_some).await {
                Ok(end) => end.clone().expect("waited for Some"),
                Err(_) => DesktopEnd::Failed("the session's X server went away unsupervised".into()),
            };
            self.end(end);
        });
    }
}

fn fault_error(f: Fault) -> X11Error {
    match f {
        Fault::Closed(e) => e.into(),
        Fault::Refused(reason) => X11Error::Request(reason),
    }
}

impl Shared {
    /// End the desktop with `end` unless it has ended already, and stop both threads.
    fn finish(&self, end: DesktopEnd) {
        self.ended.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            tracing::debug!(display = %self.display.name, ?end, "X desktop ended");
            *slot = Some(end);
            true
        });
        self.halt();
    }

    /// Stop both threads and disconnect.
    fn halt(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Shutting the socket down (not closing it: the fd stays valid for every thread) makes
        // the event thread's blocking read return at once, and any further request fail.
        // SAFETY: shutdown on a socket fd the connection keeps open; no memory involved.
        unsafe { libc::shutdown(self.conn.stream().as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(clipboard) = &self.clipboard {
            clipboard.halt();
        }
        lock(&self.requests).stop = true;
        self.wake.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn queue_input(&self, work: InputWork) {
        let mut requests = lock(&self.requests);
        if requests.input.len() >= MAX_PENDING_INPUT {
            if !requests.input_overflow {
                tracing::warn!(display = %self.display.name, "input dropped: the X server is not taking it");
                requests.input_overflow = true;
            }
            return;
        }
        requests.input.push_back(work);
        drop(requests);
        self.wake.notify_all();
    }

    /// How the desktop ended when the connection broke under us.
    fn connection_lost(&self, error: &x11rb::errors::ConnectionError) -> DesktopEnd {
        tracing::debug!(display = %self.display.name, %error, "X connection lost");
        DesktopEnd::Failed(format!("the X server of display {} closed the connection", self.display.name))
    }
}

/// What a batch of events asks the capture thread to do.
#[derive(Default)]
struct Work {
    damage: bool,
    screen: bool,
    cursor: Option<u32>,
    keymap: bool,
}

impl Work {
    fn note(&mut self, event: Event, root: u32, name: &str) {
        match event {
            Event::DamageNotify(_) => self.damage = true,
            Event::ConfigureNotify(e) if e.window == root => self.screen = true,
            Event::RandrScreenChangeNotify(_) => self.screen = true,
            Event::XfixesCursorNotify(e) => self.cursor = Some(e.cursor_serial),
            Event::MappingNotify(_) | Event::XkbNewKeyboardNotify(_) | Event::XkbMapNotify(_) => self.keymap = true,
            // Requests whose errors nobody waits for (damage subtract, XTEST input) report here.
            Event::Error(e) => tracing::debug!(display = name, error = ?e.error_kind, major = e.major_opcode, minor = e.minor_opcode, "X request failed"),
            _ => {}
        }
    }
}

/// The event thread: waits for X events and turns them into captures, cursor shapes and keymap
/// reloads, until the connection ends.
fn run_events(shared: Arc<Shared>, mut capture: Capture, mut cursor_serial: u32) {
    let end = event_loop(&shared, &mut capture, &mut cursor_serial);
    if shared.owned && !shared.stopping() {
        // A session's server going away is its owner's news (the session program may have
        // exited first: a logoff, not a failure), so only capture stops here.
        tracing::debug!(display = %shared.display.name, ?end, "X connection ended; waiting for the session's own end");
        shared.halt();
    } else {
        shared.finish(end);
    }
}

fn event_loop(shared: &Shared, capture: &mut Capture, cursor_serial: &mut u32) -> DesktopEnd {
    let conn = &shared.conn;
    let name = shared.display.name.as_str();
    let mut last_capture = Instant::now();
    loop {
        let event = match conn.wait_for_event() {
            Ok(event) => event,
            // After `finish` this is our own shutdown; the end is already recorded.
            Err(e) => return shared.connection_lost(&e),
        };
        let mut work = Work::default();
        work.note(event, shared.root, name);
        if work.damage && !work.screen {
            // The rate cap: a sleep only while damage is waiting, never a timer when idle.
            let since = last_capture.elapsed();
            if since < MIN_CAPTURE_INTERVAL {
                std::thread::sleep(MIN_CAPTURE_INTERVAL - since);
            }
            // Pacing: no read of the screen while every reader still has the last one to take
            // (an encoder slower than the desktop draws); the damage adds up in the server.
            capture.canvas().wait_for_reader(MAX_READER_WAIT);
        }
        // Coalesce: everything already queued is handled by this one pass.
        loop {
            match conn.poll_for_event() {
                Ok(Some(event)) => work.note(event, shared.root, name),
                Ok(None) => break,
                Err(e) => return shared.connection_lost(&e),
            }
        }
        if shared.stopping() {
            return DesktopEnd::Terminated;
        }
        if let Err(Fault::Closed(e)) = apply(shared, capture, &work, cursor_serial, &mut last_capture) {
            return shared.connection_lost(&e);
        }
    }
}

fn apply(shared: &Shared, capture: &mut Capture, work: &Work, cursor_serial: &mut u32, last_capture: &mut Instant) -> Result<(), Fault> {
    let conn = &shared.conn;
    let name = shared.display.name.as_str();
    if work.keymap {
        lock(&shared.input).keymap_changed();
    }
    if work.cursor.is_some_and(|s| s != *cursor_serial) {
        match capture::cursor_image(conn) {
            Ok((serial, shape)) => {
                *cursor_serial = serial;
                let shape = Arc::new(shape);
                // The same image under a new serial (a cursor recreated) is not news for clients.
                shared.cursor.send_if_modified(|now| {
                    if now.as_deref() == Some(&*shape) {
                        return false;
                    }
                    *now = Some(shape);
                    true
                });
            }
            Err(Fault::Refused(reason)) => tracing::debug!(display = name, %reason, "cursor image"),
            Err(e) => return Err(e),
        }
    }
    if work.screen || work.damage {
        *last_capture = Instant::now();
        let result = if work.screen { follow_screen_size(conn, shared.root, capture) } else { capture.damaged(conn) };
        if let Err(Fault::Refused(reason)) = result {
            // A read that raced a resize fails; the size it raced with is read again now.
            tracing::debug!(display = name, %reason, "capture refused; re-reading the screen size");
            return follow_screen_size(conn, shared.root, capture);
        }
        return result;
    }
    Ok(())
}

fn follow_screen_size(conn: &RustConnection, root: u32, capture: &mut Capture) -> Result<(), Fault> {
    let geometry = conn.get_geometry(root)?.reply()?;
    let size = Size::new(geometry.width, geometry.height);
    if size != capture.size() {
        tracing::debug!(width = size.width, height = size.height, "X screen size changed");
    }
    capture.set_size(conn, size)
}

/// The control thread: applies input, layouts and resizes (which take several round trips, or
/// wait) off the caller's thread, input first.
fn run_control(shared: Arc<Shared>) {
    loop {
        let (input, resize) = {
            let mut requests = lock(&shared.requests);
            while requests.input.is_empty() && requests.resize.is_none() && !requests.stop {
                requests = shared.wake.wait(requests).unwrap_or_else(|e| e.into_inner());
            }
            if requests.stop {
                return;
            }
            requests.input_overflow = false;
            (std::mem::take(&mut requests.input), requests.resize.take())
        };
        let mut xinput = lock(&shared.input);
        for work in input {
            let result = match work {
                InputWork::Event(event) => xinput.handle(&shared.conn, event),
                InputWork::Layout(layout) => xinput.set_layout(&shared.conn, layout),
            };
            if let Err(e) = result {
                tracing::debug!(display = %shared.display.name, "input not delivered: {e}");
            }
        }
        drop(xinput);
        if let Some(size) = resize {
            match randr::resize(&shared.conn, shared.root, shared.randr_minor, size) {
                Ok(got) => tracing::debug!(display = %shared.display.name, ?size, ?got, "X screen resized"),
                Err(e) if shared.stopping() => tracing::debug!(display = %shared.display.name, "resize abandoned: {e}"),
                Err(e) => tracing::warn!(display = %shared.display.name, ?size, "cannot resize the X screen: {e}"),
            }
        }
    }
}

impl Desktop for X11Desktop {
    fn canvas(&self) -> &Arc<Canvas> {
        &self.shared.canvas
    }
    fn session_marks(&self) -> crate::SessionMarks {
        self.owner.as_ref().map(|o| o.session_marks()).unwrap_or_default()
    }

    fn input(&self, event: InputEvent) {
        if self.shared.stopping() {
            return;
        }
        self.shared.queue_input(InputWork::Event(event));
    }

    fn resize(&self, size: Size) {
        if !self.shared.options.allow_resize {
            tracing::debug!(display = %self.shared.display.name, ?size, "resize ignored: this display keeps its own size");
            return;
        }
        lock(&self.shared.requests).resize = Some(size);
        self.shared.wake.notify_all();
    }

    fn set_keyboard_layout(&self, layout: KeyboardLayout) {
        if !self.shared.options.apply_layout || self.shared.stopping() {
            return;
        }
        // In order with the keys: those typed after it are typed under it.
        self.shared.queue_input(InputWork::Layout(layout));
    }

    fn ended(&self) -> watch::Receiver<Option<DesktopEnd>> {
        self.shared.ended.subscribe()
    }

    fn terminate(&self) {
        // The end is recorded before the server goes, so its disappearance does not read as a failure.
        self.shared.finish(DesktopEnd::Terminated);
        if let Some(owner) = &self.owner {
            owner.terminate();
        }
    }

    fn cursor(&self) -> watch::Receiver<Option<Arc<CursorShape>>> {
        self.shared.cursor.subscribe()
    }

    fn clipboard(&self) -> watch::Receiver<Option<ClipboardText>> {
        match &self.shared.clipboard {
            Some(clipboard) => clipboard.text(),
            None => watch::channel(None).1,
        }
    }

    fn clipboard_offer(&self, offer: Option<ClipboardOffer>) {
        if let Some(clipboard) = &self.shared.clipboard
            && !self.shared.stopping()
        {
            clipboard.offer(offer);
        }
    }
}

impl Drop for X11Desktop {
    fn drop(&mut self) {
        // The threads hold the shared state; ending it is what lets them (and the connection) go.
        self.shared.finish(DesktopEnd::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_CLIPBOARD_BYTES;

    #[tokio::test]
    async fn a_session_that_failed_under_the_attach_is_the_error() {
        let (tx, rx) = watch::channel(None);
        tx.send_replace(Some(DesktopEnd::Failed("the session program failed: exit status 3".into())));
        let e = session_end_cause(rx).await.expect("the session's own failure");
        assert_eq!(e.to_string(), "the session program failed: exit status 3");
        // Ended because the failed attach dropped it: the attach's own error stands.
        let (tx, rx) = watch::channel(None);
        tx.send_replace(Some(DesktopEnd::Terminated));
        assert!(session_end_cause(rx).await.is_none());
        let (tx, rx) = watch::channel(None);
        drop(tx);
        assert!(session_end_cause(rx).await.is_none());
    }

    #[test]
    fn display_numbers() {
        let d = |n: &str| {
            XDisplay {
                name: n.into(),
                xauthority: None,
            }
            .number()
        };
        assert_eq!(d(":5"), Some(5));
        assert_eq!(d(":12.0"), Some(12));
        assert_eq!(d("unix:3"), Some(3));
        assert_eq!(d("host:3"), None);
        assert_eq!(d(""), None);
    }

    /// A bare Xvfb standing in for a session's server (the full helper is in tests/x11_capture.rs).
    struct TestServer(std::process::Child, XDisplay, PathBuf);

    impl TestServer {
        fn start(size: Size) -> Option<TestServer> {
            use std::io::Read;
            use std::os::fd::{FromRawFd, OwnedFd};
            if std::process::Command::new("Xvfb").arg("-help").stderr(std::process::Stdio::null()).status().is_err() {
                assert!(std::env::var_os("CI").is_none(), "Xvfb is not installed, and CI is set");
                eprintln!("skipped: Xvfb is not installed");
                return None;
            }
            let dir = std::env::temp_dir().join(format!("rdhost-x11-owned-{}-{}", std::process::id(), size.width));
            std::fs::create_dir_all(&dir).unwrap();
            let auth = dir.join("Xauthority");
            let cookie = xauth::Cookie::generate().unwrap();
            xauth::write_file(&auth, 0, &cookie).unwrap();
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills two fresh fds, close-on-exec so that no other test's child
            // holds the write end (the read below waits for every writer to close it).
            let (read_end, write_end) = unsafe {
                assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
                (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
            };
            let write_fd = fds[1];
            let mut command = std::process::Command::new("Xvfb");
            command
                .args(["-displayfd", &write_fd.to_string(), "-nolisten", "tcp", "-noreset", "-auth"])
                .arg(&auth)
                .args(["-screen", "0", &format!("{}x{}x24", size.width, size.height)])
                .stderr(std::process::Stdio::null());
            // SAFETY: only fcntl between fork and exec, keeping the write end for this child.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::fcntl(write_fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command.spawn().unwrap();
            drop(write_end);
            let mut text = String::new();
            std::fs::File::from(read_end).read_to_string(&mut text).unwrap();
            let number: u32 = text.trim().parse().unwrap();
            xauth::write_file(&auth, number, &cookie).unwrap();
            Some(TestServer(child, XDisplay { name: format!(":{number}"), xauthority: Some(auth) }, dir))
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.2);
        }
    }

    /// The owner side as a session server has it: terminate asked, and an end to report.
    struct FakeOwner {
        terminated: Arc<AtomicBool>,
    }

    impl DisplayOwner for FakeOwner {
        fn terminate(&self) {
            self.terminated.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn owned_displays_end_with_their_owner() {
        let Some(mut server) = TestServer::start(Size::new(1600, 1000)) else { return };
        let terminated = Arc::new(AtomicBool::new(false));
        let owner = Box::new(FakeOwner { terminated: Arc::clone(&terminated) });
        let options = AttachOptions { allow_resize: true, apply_layout: false };
        let display = server.1.clone();
        let desktop = tokio::task::spawn_blocking(move || X11Desktop::attach_owned(display, options, Some(owner), Some(Size::new(800, 600))))
            .await
            .unwrap()
            .unwrap();
        // The first size is applied before the first capture.
        assert_eq!(desktop.canvas().size(), Size::new(800, 600));
        let (owner_end, owner_rx) = watch::channel(None);
        desktop.ender().follow(owner_rx);

        // The server goes first (the session program exited and the server was ended): the
        // desktop waits for the owner to say why instead of calling it a failure.
        let _ = server.0.kill();
        let _ = server.0.wait();
        let name = server.1.name.clone();
        let threads_gone = || {
            std::fs::read_dir("/proc/self/task").unwrap().flatten().all(|t| {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                !comm.trim_end().starts_with(&format!("x11 {name}"))
            })
        };
        let start = Instant::now();
        while !threads_gone() {
            assert!(start.elapsed() < Duration::from_secs(5), "capture did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*desktop.ended().borrow(), None);
        owner_end.send_replace(Some(DesktopEnd::UserLoggedOff));
        let mut ended = desktop.ended();
        let end = tokio::time::timeout(Duration::from_secs(5), ended.wait_for(Option::is_some)).await.unwrap().unwrap().clone();
        assert_eq!(end, Some(DesktopEnd::UserLoggedOff));
        // Terminate after the end changes nothing but still reaches the owner (idempotent there).
        desktop.terminate();
        assert!(terminated.load(Ordering::SeqCst));
        assert_eq!(*desktop.ended().borrow(), Some(DesktopEnd::UserLoggedOff));
    }

    #[tokio::test]
    async fn terminating_an_owned_display_ends_its_owner() {
        let Some(server) = TestServer::start(Size::new(640, 480)) else { return };
        let terminated = Arc::new(AtomicBool::new(false));
        let owner = Box::new(FakeOwner { terminated: Arc::clone(&terminated) });
        let display = server.1.clone();
        let desktop = tokio::task::spawn_blocking(move || X11Desktop::attach_owned(display, AttachOptions::default(), Some(owner), None)).await.unwrap().unwrap();
        let (_owner_end, owner_rx) = watch::channel(None);
        desktop.ender().follow(owner_rx);
        desktop.terminate();
        assert!(terminated.load(Ordering::SeqCst));
        assert_eq!(*desktop.ended().borrow(), Some(DesktopEnd::Terminated));
    }

    /// `xclip` with the test server's display and cookie. `None` when xclip is missing
    /// (outside CI: CI installs it).
    fn xclip(server: &TestServer, args: &[&str]) -> Option<std::process::Command> {
        if std::process::Command::new("xclip").arg("-version").stderr(std::process::Stdio::null()).status().is_err() {
            assert!(std::env::var_os("CI").is_none(), "xclip is not installed, and CI is set");
            eprintln!("skipped: xclip is not installed");
            return None;
        }
        let mut command = std::process::Command::new("xclip");
        command.args(args).env("DISPLAY", &server.1.name).env("XAUTHORITY", server.1.xauthority.as_ref().unwrap());
        Some(command)
    }

    /// Copy `text` into `selection` the way a program does (xclip keeps serving it).
    fn xclip_copy(server: &TestServer, selection: &str, text: &str) -> Option<std::process::Child> {
        use std::io::Write as _;
        let mut child = xclip(server, &["-selection", selection, "-i"])?
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        Some(child)
    }

    /// What a program pastes from `selection` (`-t` picks the target).
    async fn xclip_paste(server: &TestServer, selection: &str, target: &str) -> std::process::Output {
        let mut command = xclip(server, &["-selection", selection, "-o", "-t", target]).unwrap();
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }

    async fn attached(server: &TestServer) -> Arc<X11Desktop> {
        let display = server.1.clone();
        tokio::task::spawn_blocking(move || X11Desktop::attach(display, AttachOptions::default())).await.unwrap().unwrap()
    }

    async fn changed(rx: &mut watch::Receiver<Option<ClipboardText>>) -> Option<ClipboardText> {
        tokio::time::timeout(Duration::from_secs(10), rx.changed()).await.expect("the clipboard changes in time").unwrap();
        rx.borrow_and_update().clone()
    }

    #[tokio::test]
    async fn programs_copies_are_published_and_oversized_ones_refused() {
        let Some(server) = TestServer::start(Size::new(320, 200)) else { return };
        // Copied before we attach: read at once.
        let Some(mut early) = xclip_copy(&server, "clipboard", "before") else { return };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let desktop = attached(&server).await;
        let mut text = desktop.clipboard();
        let now = text.borrow_and_update().clone();
        let first = match now {
            Some(t) => Some(t),
            None => changed(&mut text).await,
        };
        assert_eq!(first.as_deref(), Some("before"));

        let mut copy = xclip_copy(&server, "clipboard", "héllo\nwörld ✓").unwrap();
        assert_eq!(changed(&mut text).await.as_deref(), Some("héllo\nwörld ✓"));

        // Over the limit: a log line, and the clipboard keeps what it had.
        let mut big = xclip_copy(&server, "clipboard", &"x".repeat(MAX_CLIPBOARD_BYTES + 10)).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!text.has_changed().unwrap(), "{:?}", text.borrow().as_ref().map(|t| t.len()));

        // PRIMARY counts only once asked for.
        let mut primary = xclip_copy(&server, "primary", "selected").unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!text.has_changed().unwrap());
        desktop.follow_primary(true);
        let mut primary2 = xclip_copy(&server, "primary", "selected again").unwrap();
        assert_eq!(changed(&mut text).await.as_deref(), Some("selected again"));
        for child in [&mut early, &mut copy, &mut big, &mut primary, &mut primary2] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[tokio::test]
    async fn a_clients_offer_is_fetched_when_a_program_pastes() {
        // Each test server's directory is named by its width.
        let Some(server) = TestServer::start(Size::new(336, 200)) else { return };
        if xclip(&server, &[]).is_none() {
            return;
        }
        let desktop = attached(&server).await;
        let text = desktop.clipboard();
        let (offer, mut requests) = crate::clipboard::ClipboardOffer::remote(4);
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&fetches);
        // The wire's side: answer each fetch, counting them.
        tokio::spawn(async move {
            while let Some(reply) = requests.recv().await {
                counted.fetch_add(1, Ordering::SeqCst);
                reply.send(Ok(ClipboardText::from("from the client: ünïcode")));
            }
        });
        desktop.clipboard_offer(Some(offer));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(fetches.load(Ordering::SeqCst), 0, "nothing is fetched before a paste");

        let targets = xclip_paste(&server, "clipboard", "TARGETS").await;
        let targets = String::from_utf8_lossy(&targets.stdout);
        assert!(targets.contains("UTF8_STRING") && targets.contains("STRING"), "{targets}");
        let pasted = xclip_paste(&server, "clipboard", "UTF8_STRING").await;
        assert_eq!(String::from_utf8_lossy(&pasted.stdout), "from the client: ünïcode");
        let latin1 = xclip_paste(&server, "clipboard", "STRING").await;
        assert_eq!(latin1.stdout, "from the client: \u{fc}n\u{ef}code".chars().map(|c| c as u8).collect::<Vec<_>>());
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "the text is fetched once and kept");
        // Our own ownership is not news for the clients.
        assert!(!text.has_changed().unwrap());

        // The client's text is gone: programs paste nothing.
        desktop.clipboard_offer(None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let nothing = xclip_paste(&server, "clipboard", "UTF8_STRING").await;
        assert!(!nothing.status.success() || nothing.stdout.is_empty());

        // A failed fetch is a refused paste, not a hang.
        let (offer, requests) = crate::clipboard::ClipboardOffer::remote(4);
        drop(requests);
        desktop.clipboard_offer(Some(offer));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = tokio::time::timeout(Duration::from_secs(10), xclip_paste(&server, "clipboard", "UTF8_STRING")).await.expect("no hang");
        assert!(refused.stdout.is_empty());
    }
}
