//! The built-in terminal desktop: a login shell in a PTY, emulated by `vt100` and drawn with the
//! embedded DejaVu Sans Mono. Needs nothing installed on the machine.
//!
//! Each desktop is one tokio task, woken only by PTY output, the shell's exit (SIGCHLD), or a
//! request from `input`/`resize`/`terminate`: an idle session costs no CPU and no thread.

pub(crate) mod font;
mod keymap;
mod mouse;
pub mod probe;
mod pty;
mod render;
mod selection;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::process::Child;
use tokio::sync::{Notify, watch};

use crate::clipboard::{ClipboardOffer, ClipboardText, MAX_CLIPBOARD_BYTES, check_size, sanitize_paste};
use crate::input::{MouseButton, Scancode};
use crate::process::{self, Containment, Identity, IdentityError, SessionProcesses, identity, set_env};
use crate::{Canvas, Desktop, DesktopEnd, InputEvent, KeyboardLayout, Size, WheelAxis};

pub use font::CellMetrics;
pub use keymap::{LAYOUTS, LayoutTable, layout_table};
pub use probe::find_text;

use keymap::{KeyAction, KeyModes, Keyboard};
use mouse::{Mouse, MouseAction, MouseModes};
use render::{Renderer, grid_for};
use selection::{Extent, Selection, SelectionAction, Span};

/// How long processes get between SIGHUP and SIGKILL when a session ends.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Input not yet taken by the shell is dropped beyond this (the shell stopped reading).
const MAX_PENDING_INPUT: usize = 64 * 1024;
/// A paste may queue this much more: the whole of a clipboard, with its bracketed-paste marks.
const MAX_PENDING_PASTE: usize = MAX_PENDING_INPUT + MAX_CLIPBOARD_BYTES + 16;
/// PTY output handled before the screen is drawn, when the program writes faster than we read.
const MAX_READ_BURST: usize = 1024 * 1024;
/// Pixel sizes are clamped to this (the largest RDP desktop).
const MAX_PIXELS: u16 = 8192;

/// Run the session's shell as this user (only when the host is root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TerminalOptions {
    /// Pixel size; the grid is as many whole cells as fit.
    pub size: Size,
    pub font_px: f32,
    /// Default: `run_as`'s shell, else `$SHELL`, else `/bin/sh`.
    pub shell: Option<PathBuf>,
    /// Run this command line (with the shell's `-c`) instead of an interactive shell; the
    /// desktop ends when it exits.
    pub command: Option<String>,
    /// `None`: the host's own user.
    pub run_as: Option<RunAs>,
    /// Extra environment, applied last (it overrides the defaults).
    pub env: Vec<(String, String)>,
    pub layout: KeyboardLayout,
    pub scrollback_lines: usize,
}

impl Default for TerminalOptions {
    fn default() -> Self {
        Self {
            size: Size::new(1024, 768),
            font_px: 16.0,
            shell: None,
            command: None,
            run_as: None,
            env: Vec::new(),
            layout: KeyboardLayout::US,
            scrollback_lines: 2000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("the terminal desktop must be started inside a tokio runtime")]
    NoRuntime,
    #[error("cannot open a pseudo-terminal: {0}")]
    Pty(#[source] io::Error),
    #[error("cannot run a session as {user} (uid {uid}): the host is not root")]
    NotRoot { user: String, uid: u32 },
    #[error("cannot look up the groups of {user}: {source}")]
    Groups { user: String, source: nix::Error },
    #[error("invalid {what}: it contains a NUL byte")]
    Nul { what: &'static str },
    #[error("cannot start the shell {shell}: {source}")]
    Spawn { shell: PathBuf, source: io::Error },
}

/// Answers to the terminal queries programs wait for (vt100 parses but does not answer them).
#[derive(Default)]
struct Replies {
    out: Vec<u8>,
}

impl vt100::Callbacks for Replies {
    fn unhandled_csi(&mut self, screen: &mut vt100::Screen, i1: Option<u8>, _i2: Option<u8>, params: &[&[u16]], c: char) {
        let first = params.first().and_then(|p| p.first()).copied().unwrap_or(0);
        match (i1, c, first) {
            // Device status report: "OK", and the cursor position.
            (None, 'n', 5) => self.out.extend_from_slice(b"\x1b[0n"),
            (None, 'n', 6) => {
                let (row, col) = screen.cursor_position();
                self.out.extend_from_slice(format!("\x1b[{};{}R", row + 1, col + 1).as_bytes());
            }
            // Primary device attributes: a VT100 with advanced video, as xterm answers.
            (None, 'c', 0) => self.out.extend_from_slice(b"\x1b[?1;2c"),
            // Secondary device attributes: a VT220.
            (Some(b'>'), 'c', 0) => self.out.extend_from_slice(b"\x1b[>1;10;0c"),
            _ => {}
        }
    }
}

/// The emulator and what it last drew.
struct Term {
    parser: vt100::Parser<Replies>,
    renderer: Renderer,
    cols: u16,
    rows: u16,
}

/// Keyboard and mouse state, and the terminal modes they depend on.
struct InputState {
    keyboard: Keyboard,
    mouse: Mouse,
    modes: MouseModes,
    selection: Selection,
    /// The program asked for pastes to be bracketed (mode 2004).
    bracketed_paste: bool,
}

/// What a paste (middle click, Shift+Insert, Ctrl+Shift+V) puts into the shell: the newest of
/// the terminal's own selection and a client's copy.
#[derive(Clone, Default)]
enum PasteSource {
    #[default]
    Nothing,
    Own(ClipboardText),
    Offer(ClipboardOffer),
}

/// Bytes for the shell that the PTY did not take yet.
#[derive(Default)]
struct Outgoing {
    pending: Vec<u8>,
    /// The PTY's other side is gone: input is dropped.
    closed: bool,
    overflow_logged: bool,
}

/// What `input`, `resize` and `terminate` ask the session task to do.
#[derive(Default)]
struct Requests {
    resize: Option<Size>,
    /// Jump back to the live screen before applying `scroll_lines`.
    to_bottom: bool,
    scroll_lines: i64,
    scroll_pages: i64,
    terminate: bool,
    /// Show this selection (`Some(None)`: none).
    highlight: Option<Option<Extent>>,
    /// Copy the text of this selection to the clipboard.
    copy: Option<Extent>,
}

struct Shared {
    canvas: Arc<Canvas>,
    master: AsyncFd<OwnedFd>,
    term: Mutex<Term>,
    input: Mutex<InputState>,
    out: Mutex<Outgoing>,
    requests: Mutex<Requests>,
    wake: Notify,
    ended: watch::Sender<Option<DesktopEnd>>,
    pid: u32,
    /// The session's cgroup, when its processes have one.
    cgroup: Option<std::path::PathBuf>,
    metrics: CellMetrics,
    /// The terminal's own copies (mouse selections), for the clients that take part.
    clipboard: watch::Sender<Option<ClipboardText>>,
    paste: Mutex<PasteSource>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the session down with it; the state stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The built-in terminal desktop.
pub struct TerminalDesktop {
    shared: Arc<Shared>,
}

impl From<IdentityError> for TerminalError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::NotRoot { user, uid } => TerminalError::NotRoot { user, uid },
            IdentityError::Groups { user, source } => TerminalError::Groups { user, source },
            IdentityError::Nul { what } => TerminalError::Nul { what },
        }
    }
}

fn clamp_size(size: Size) -> Size {
    Size::new(size.width.clamp(1, MAX_PIXELS), size.height.clamp(1, MAX_PIXELS))
}

impl TerminalDesktop {
    /// Open a PTY, start the login shell in it, and start drawing. Call inside a tokio runtime.
    pub fn start(opts: TerminalOptions) -> Result<Arc<TerminalDesktop>, TerminalError> {
        tokio::runtime::Handle::try_current().map_err(|_| TerminalError::NoRuntime)?;
        let who = identity(opts.run_as.as_ref())?;
        let shell = opts.shell.clone().unwrap_or_else(|| who.login_shell());

        let face = font::Face::get(opts.font_px);
        let metrics = face.metrics;
        let size = clamp_size(opts.size);
        let (cols, rows) = grid_for(size, metrics);

        let pty = pty::open_pty(cols, rows, size.width, size.height).map_err(TerminalError::Pty)?;
        let spec = pty::ShellSpec {
            // A command is not a login: no profile scripts run before it.
            arg0: if opts.command.is_some() { shell.file_name().unwrap_or(OsStr::new("sh")).to_owned() } else { login_arg0(&shell) },
            args: opts.command.iter().flat_map(|c| [OsString::from("-c"), OsString::from(c)]).collect(),
            env: session_env(&who, &shell, &opts.env),
            home: who.home_cstring()?,
            switch: who.switch.clone(),
            program: shell.clone(),
        };
        // Dropped on any error below, it ends whatever was started.
        let procs = SessionProcesses::new(Containment::Auto);
        let child = pty::spawn_shell(spec, pty.slave, &procs).map_err(|source| TerminalError::Spawn { shell: shell.clone(), source })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        // SAFETY: the OwnedFd is a valid open fd, owned by the AsyncFd from here on.
        let master = unsafe { AsyncFd::register(pty.master) }.map_err(|e| TerminalError::Pty(io::Error::from(e)))?;

        let parser = vt100::Parser::new_with_callbacks(
            std::num::NonZeroU16::new(rows).expect("grid has at least one row"),
            std::num::NonZeroU16::new(cols).expect("grid has at least one column"),
            opts.scrollback_lines,
            Replies::default(),
        );
        let canvas = Canvas::new(size);
        let mut renderer = Renderer::new(face, cols, rows);
        renderer.render(parser.screen(), &canvas);
        let modes = MouseModes {
            mode: vt100::MouseProtocolMode::None,
            encoding: vt100::MouseProtocolEncoding::Default,
            alternate_screen: false,
            application_cursor: false,
            cell_width: metrics.width,
            cell_height: metrics.height,
            cols,
            rows,
        };
        let shared = Arc::new(Shared {
            canvas,
            master,
            term: Mutex::new(Term { parser, renderer, cols, rows }),
            input: Mutex::new(InputState {
                keyboard: Keyboard::new(opts.layout),
                mouse: Mouse::default(),
                modes,
                selection: Selection::default(),
                bracketed_paste: false,
            }),
            out: Mutex::new(Outgoing::default()),
            requests: Mutex::new(Requests::default()),
            wake: Notify::new(),
            ended: watch::Sender::new(None),
            pid,
            cgroup: match procs.mechanism() {
                process::Mechanism::Cgroup(dir) => Some(dir),
                process::Mechanism::ProcessSessions => None,
            },
            metrics,
            clipboard: watch::Sender::new(None),
            paste: Mutex::new(PasteSource::Nothing),
        });
        tracing::debug!(pid, user = %who.user, shell = %shell.display(), cols, rows, "terminal desktop started");
        // From here the task owns ending the session (`procs` dropped with the task covers a
        // runtime shutting down).
        tokio::spawn(run(Arc::clone(&shared), child, procs));
        Ok(Arc::new(TerminalDesktop { shared }))
    }

    /// The text on the screen (the live screen, not the scrolled-back view), for debugging.
    pub fn screen_text(&self) -> String {
        let mut term = lock(&self.shared.term);
        let screen = term.parser.screen_mut();
        // Look at the live screen and put the view back; nothing draws while the lock is held.
        let view = screen.scrollback();
        screen.set_scrollback(0);
        let text = screen.contents();
        screen.set_scrollback(view);
        text
    }

    /// The shell's pid, which is also its Unix session id.
    pub fn shell_pid(&self) -> u32 {
        self.shared.pid
    }

    /// Columns and rows of the grid now.
    pub fn grid(&self) -> (u16, u16) {
        let term = lock(&self.shared.term);
        (term.cols, term.rows)
    }

    /// Cell size and baseline for this desktop's font size.
    pub fn cell_metrics(&self) -> CellMetrics {
        self.shared.metrics
    }
}

/// The cell size (and baseline) the terminal desktop draws with at `font_px`: where on a
/// client's screen a given row and column are.
pub fn cell_metrics(font_px: f32) -> CellMetrics {
    font::Face::get(font_px).metrics
}

/// argv[0] of a login shell: its name with a leading dash ("-bash").
fn login_arg0(shell: &Path) -> OsString {
    let mut arg0 = OsString::from("-");
    arg0.push(shell.file_name().unwrap_or(OsStr::new("sh")));
    arg0
}

/// The login environment plus what a terminal needs, then the caller's extras (they win).
fn session_env(who: &Identity, shell: &Path, extra: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env = process::session_env(who, shell);
    set_env(&mut env, "TERM", "xterm-256color");
    set_env(&mut env, "COLORTERM", "truecolor");
    for (key, value) in extra {
        set_env(&mut env, key, value);
    }
    env
}

impl Shared {
    /// Queue bytes for the shell: written at once when the PTY takes them, else by the task.
    fn send(&self, bytes: &[u8]) {
        self.send_within(bytes, MAX_PENDING_INPUT);
    }

    /// `send`, dropping the bytes when more than `limit` would be waiting.
    fn send_within(&self, bytes: &[u8], limit: usize) {
        if bytes.is_empty() {
            return;
        }
        let mut out = lock(&self.out);
        if out.closed {
            return;
        }
        let mut rest = bytes;
        if out.pending.is_empty() {
            loop {
                match nix::unistd::write(self.master.get_ref(), rest) {
                    Ok(n) => {
                        rest = &rest[n..];
                        if rest.is_empty() {
                            return;
                        }
                    }
                    Err(nix::Error::EINTR) => {}
                    Err(nix::Error::EAGAIN) => break,
                    // EIO: the shell side is gone; the task will see it and end the session.
                    Err(_) => return,
                }
            }
        }
        if out.pending.len() + rest.len() > limit {
            if !out.overflow_logged {
                tracing::warn!(pid = self.pid, "terminal input dropped: the shell is not reading");
                out.overflow_logged = true;
            }
            return;
        }
        out.pending.extend_from_slice(rest);
        drop(out);
        self.wake.notify_one();
    }

    fn request(&self, f: impl FnOnce(&mut Requests)) {
        f(&mut lock(&self.requests));
        self.wake.notify_one();
    }

    /// Bytes from the keyboard: sent, the view jumps back to the live screen, and the
    /// selection is no longer shown.
    fn typed(&self, bytes: &[u8]) {
        self.send(bytes);
        self.request(|r| {
            r.to_bottom = true;
            r.scroll_lines = 0;
            r.scroll_pages = 0;
            r.highlight = Some(None);
        });
    }

    /// Paste what the newest copy holds. A client's text is fetched first (from the client,
    /// over the network): it is typed when it arrives.
    fn paste(self: &Arc<Self>) {
        let source = lock(&self.paste).clone();
        match source {
            PasteSource::Nothing => tracing::debug!(pid = self.pid, "paste: the clipboard is empty"),
            PasteSource::Own(text) => self.paste_text(&text),
            PasteSource::Offer(offer) => {
                let shared = Arc::downgrade(self);
                let pid = self.pid;
                offer.fetch(move |result| match result {
                    Ok(text) => {
                        if let Some(shared) = shared.upgrade() {
                            shared.paste_text(&text);
                        }
                    }
                    Err(e) => tracing::info!(pid, "paste failed: {e}"),
                });
            }
        }
    }

    /// Type `text` into the shell as a paste: control characters dropped, line ends as Enter,
    /// bracketed when the program asked for it (so a shell does not run pasted lines at once).
    fn paste_text(&self, text: &str) {
        if let Err(e) = check_size(text.len()) {
            tracing::warn!(pid = self.pid, "paste refused: {e}");
            return;
        }
        let body = sanitize_paste(text);
        let bracketed = lock(&self.input).bracketed_paste;
        let mut bytes = Vec::with_capacity(body.len() + 12);
        if bracketed {
            bytes.extend_from_slice(b"\x1b[200~");
        }
        bytes.extend_from_slice(body.as_bytes());
        if bracketed {
            bytes.extend_from_slice(b"\x1b[201~");
        }
        self.send_within(&bytes, MAX_PENDING_PASTE);
        self.request(|r| {
            r.to_bottom = true;
            r.scroll_lines = 0;
            r.scroll_pages = 0;
        });
    }

    fn selection(&self, action: SelectionAction) {
        match action {
            SelectionAction::None => {}
            SelectionAction::Highlight(span) => self.request(|r| r.highlight = Some(span)),
            SelectionAction::Copy(extent) => self.request(|r| {
                r.highlight = Some(Some(extent));
                r.copy = Some(extent);
            }),
        }
    }

    /// The selection's text becomes the clipboard: pasted here, offered to the clients.
    fn copy(&self, extent: Extent) {
        let text = selection::text_of_extent(lock(&self.term).parser.screen(), extent);
        if text.is_empty() {
            return;
        }
        if let Err(e) = check_size(text.len()) {
            tracing::warn!(pid = self.pid, "selection not copied: {e}");
            return;
        }
        let text = ClipboardText::from(text);
        *lock(&self.paste) = PasteSource::Own(Arc::clone(&text));
        self.clipboard.send_replace(Some(text));
    }

    /// Feed PTY output to the emulator, answer its queries, and draw what changed.
    fn process_output(&self, chunks: &[u8]) {
        let mut term = lock(&self.term);
        term.parser.process(chunks);
        let replies = std::mem::take(&mut term.parser.callbacks_mut().out);
        self.redraw(&mut term);
        drop(term);
        self.send(&replies);
    }

    /// Draw what changed and publish the modes input depends on.
    fn redraw(&self, term: &mut Term) {
        let Term { parser, renderer, cols, rows } = term;
        renderer.render(parser.screen(), &self.canvas);
        let screen = parser.screen();
        let mut input = lock(&self.input);
        input.modes.mode = screen.mouse_protocol_mode();
        input.modes.encoding = screen.mouse_protocol_encoding();
        input.modes.alternate_screen = screen.alternate_screen();
        input.modes.application_cursor = screen.application_cursor();
        input.modes.cols = *cols;
        input.modes.rows = *rows;
        input.bracketed_paste = screen.bracketed_paste();
    }

    fn apply_resize(&self, size: Size) {
        let size = clamp_size(size);
        let mut term = lock(&self.term);
        let (cols, rows) = grid_for(size, self.metrics);
        if size == self.canvas.size() && (cols, rows) == (term.cols, term.rows) {
            // A client reconnecting at the same size: nothing to redraw or to tell the shell.
            return;
        }
        if let Err(e) = pty::set_window_size(self.master.get_ref(), cols, rows, size.width, size.height) {
            tracing::warn!(pid = self.pid, "terminal resize: {e}");
        }
        if (cols, rows) != (term.cols, term.rows) {
            term.parser.set_size(
                std::num::NonZeroU16::new(rows).expect("at least one row"),
                std::num::NonZeroU16::new(cols).expect("at least one column"),
            );
            term.cols = cols;
            term.rows = rows;
            term.renderer.set_grid(cols, rows);
        }
        self.canvas.resize(size);
        term.renderer.invalidate();
        self.redraw(&mut term);
    }

    fn apply_scroll(&self, to_bottom: bool, lines: i64, pages: i64) {
        let mut term = lock(&self.term);
        let page = i64::from(term.rows.saturating_sub(1).max(1));
        let screen = term.parser.screen_mut();
        let from = if to_bottom { 0 } else { screen.scrollback() as i64 };
        let to = (from + lines + pages * page).max(0) as usize;
        if to == screen.scrollback() {
            return;
        }
        // vt100 clamps to the scrollback it has.
        screen.set_scrollback(to);
        self.redraw(&mut term);
    }

    /// Handle what `input`/`resize`/`terminate` asked for. Returns true to end the session.
    fn handle_requests(&self) -> bool {
        let r = std::mem::take(&mut *lock(&self.requests));
        if r.terminate {
            return true;
        }
        // The selection is in view cells: taken before the view moves, dropped when it does.
        // Which cells a word or a line covers is read from the screen here, not in `input`
        // (the input lock is taken under the term lock, never the other way round).
        if let Some(extent) = r.highlight {
            let span = extent.map(|e| selection::resolve(lock(&self.term).parser.screen(), e));
            self.set_highlight(span);
        }
        if let Some(extent) = r.copy {
            self.copy(extent);
        }
        if let Some(size) = r.resize {
            self.set_highlight(None);
            self.apply_resize(size);
        }
        if r.to_bottom || r.scroll_lines != 0 || r.scroll_pages != 0 {
            let before = lock(&self.term).parser.screen().scrollback();
            self.apply_scroll(r.to_bottom, r.scroll_lines, r.scroll_pages);
            if lock(&self.term).parser.screen().scrollback() != before {
                self.set_highlight(None);
            }
        }
        false
    }

    fn set_highlight(&self, span: Option<Span>) {
        let mut term = lock(&self.term);
        if term.renderer.highlight() == span {
            return;
        }
        term.renderer.set_highlight(span);
        self.redraw(&mut term);
    }
}

enum Burst {
    /// Read everything available (or a burst's worth).
    Data,
    /// The PTY's other side is closed (every process in the session let go of it).
    Closed,
    Failed(io::Error),
}

/// Read what the PTY has now (up to a burst) into the emulator, then draw once.
fn read_burst(shared: &Shared, guard: &mut AsyncFdReadyGuard<'_, OwnedFd>) -> Burst {
    let mut buf = [0u8; 16 * 1024];
    let mut chunk = Vec::new();
    let result = loop {
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref().as_fd(), &mut buf).map_err(io::Error::from)) {
            Ok(Ok(0)) => break Burst::Closed,
            Ok(Ok(n)) => {
                chunk.extend_from_slice(&buf[..n]);
                if chunk.len() >= MAX_READ_BURST {
                    break Burst::Data;
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            // Linux reports a PTY whose slave side is closed with EIO.
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => break Burst::Closed,
            Ok(Err(e)) => break Burst::Failed(e),
            // Drained: readiness is cleared and the next wake-up is the next output.
            Err(_would_block) => break Burst::Data,
        }
    };
    if !chunk.is_empty() {
        shared.process_output(&chunk);
    }
    result
}

/// Write queued input as far as the PTY takes it.
fn flush_pending(shared: &Shared, guard: &mut AsyncFdReadyGuard<'_, OwnedFd>) {
    let mut out = lock(&shared.out);
    while !out.pending.is_empty() {
        match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), &out.pending).map_err(io::Error::from)) {
            Ok(Ok(n)) => {
                out.pending.drain(..n);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => {
                out.pending.clear();
                out.closed = true;
            }
            Err(_would_block) => return,
        }
    }
    out.overflow_logged = false;
}

enum Exit {
    ShellExited,
    Terminate,
    Failed(String),
}

/// The session task: PTY output, the shell's exit, and requests, until the session ends.
async fn run(shared: Arc<Shared>, mut child: Child, procs: SessionProcesses) {
    let mut reading = true;
    let exit = loop {
        let want_write = reading && !lock(&shared.out).pending.is_empty();
        tokio::select! {
            status = child.wait() => {
                break match status {
                    Ok(status) => {
                        tracing::debug!(pid = shared.pid, %status, "shell exited");
                        Exit::ShellExited
                    }
                    Err(e) => Exit::Failed(format!("waiting for the shell: {e}")),
                };
            }
            ready = shared.master.readable(), if reading => {
                match ready {
                    Ok(mut ready) => match read_burst(&shared, &mut ready) {
                        Burst::Data => {}
                        Burst::Closed => {
                            // Keep waiting for the shell; the PTY has nothing more to say.
                            reading = false;
                            lock(&shared.out).closed = true;
                        }
                        Burst::Failed(e) => break Exit::Failed(format!("reading the terminal: {e}")),
                    },
                    Err(e) => break Exit::Failed(format!("waiting for the terminal: {e}")),
                }
            }
            ready = shared.master.writable(), if want_write => {
                match ready {
                    Ok(mut ready) => flush_pending(&shared, &mut ready),
                    Err(e) => break Exit::Failed(format!("writing to the terminal: {e}")),
                }
            }
            () = shared.wake.notified() => {
                if shared.handle_requests() {
                    break Exit::Terminate;
                }
            }
        }
    };
    if matches!(exit, Exit::ShellExited) && reading {
        // Show the shell's last words (a logout message) before the session goes.
        if let Ok(Ok(mut ready)) = tokio::time::timeout(Duration::ZERO, shared.master.readable()).await {
            read_burst(&shared, &mut ready);
        }
    }
    lock(&shared.out).closed = true;
    procs.end(&mut child, HANGUP_GRACE).await;
    let end = match exit {
        Exit::ShellExited => DesktopEnd::UserLoggedOff,
        Exit::Terminate => DesktopEnd::Terminated,
        Exit::Failed(msg) => {
            tracing::warn!(pid = shared.pid, "terminal desktop failed: {msg}");
            DesktopEnd::Failed(msg)
        }
    };
    tracing::debug!(pid = shared.pid, ?end, "terminal desktop ended");
    shared.ended.send_replace(Some(end));
}

impl Desktop for TerminalDesktop {
    fn canvas(&self) -> &Arc<Canvas> {
        &self.shared.canvas
    }
    fn session_marks(&self) -> crate::SessionMarks {
        crate::SessionMarks { leader: Some(self.shared.pid), cgroup: self.shared.cgroup.clone() }
    }

    fn input(&self, event: InputEvent) {
        let shared = &self.shared;
        let mut input = lock(&shared.input);
        let mods = input.keyboard.modifiers();
        let modes = input.modes;
        let key_modes = KeyModes { application_cursor: modes.application_cursor };
        let action = match event {
            InputEvent::Key { scancode, pressed } if pressed && is_paste_key(scancode, mods) => {
                drop(input);
                shared.paste();
                return;
            }
            InputEvent::Key { scancode, pressed } => input.keyboard.key(scancode, pressed, key_modes),
            InputEvent::Unicode { code_unit, pressed } => input.keyboard.unicode(code_unit, pressed),
            InputEvent::LockState { caps_lock, num_lock, .. } => {
                input.keyboard.set_locks(caps_lock, num_lock);
                KeyAction::None
            }
            InputEvent::Wheel { axis: WheelAxis::Vertical, delta, x, y } => match input.mouse.wheel(delta, x, y, mods, &modes) {
                MouseAction::Send(bytes) => KeyAction::Send(bytes),
                MouseAction::ScrollLines(lines) => {
                    drop(input);
                    shared.request(|r| r.scroll_lines += i64::from(lines));
                    return;
                }
                MouseAction::None => KeyAction::None,
            },
            InputEvent::Wheel { axis: WheelAxis::Horizontal, .. } => KeyAction::None,
            // Selecting and pasting with the mouse, unless the program wants the mouse (then
            // Shift held lets the user select all the same, as in xterm).
            InputEvent::Button { button: MouseButton::Left, pressed, x, y }
                if modes.mode == vt100::MouseProtocolMode::None || mods.shift || input.selection.dragging() =>
            {
                let cell = cell_at(&modes, x, y);
                let action = if pressed { input.selection.press(cell, std::time::Instant::now()) } else { input.selection.release(cell) };
                drop(input);
                shared.selection(action);
                return;
            }
            InputEvent::Button { button: MouseButton::Middle, pressed, .. } if modes.mode == vt100::MouseProtocolMode::None || mods.shift => {
                drop(input);
                if pressed {
                    shared.paste();
                }
                return;
            }
            InputEvent::PointerMove { x, y } if input.selection.dragging() => {
                let action = input.selection.moved(cell_at(&modes, x, y));
                drop(input);
                shared.selection(action);
                return;
            }
            InputEvent::Button { button, pressed, x, y } => match input.mouse.button(button, pressed, x, y, mods, &modes) {
                // Mouse reports go to the program without moving the view.
                MouseAction::Send(bytes) => {
                    drop(input);
                    shared.send(&bytes);
                    return;
                }
                _ => KeyAction::None,
            },
            InputEvent::PointerMove { x, y } => match input.mouse.moved(x, y, mods, &modes) {
                MouseAction::Send(bytes) => {
                    drop(input);
                    shared.send(&bytes);
                    return;
                }
                _ => KeyAction::None,
            },
        };
        drop(input);
        match action {
            KeyAction::Send(bytes) => shared.typed(&bytes),
            KeyAction::ScrollPages(pages) => shared.request(|r| r.scroll_pages += i64::from(pages)),
            KeyAction::None => {}
        }
    }

    fn resize(&self, size: Size) {
        self.shared.request(|r| r.resize = Some(size));
    }

    fn set_keyboard_layout(&self, layout: KeyboardLayout) {
        lock(&self.shared.input).keyboard.set_layout(layout);
    }

    fn ended(&self) -> watch::Receiver<Option<DesktopEnd>> {
        self.shared.ended.subscribe()
    }

    fn terminate(&self) {
        self.shared.request(|r| r.terminate = true);
    }

    fn clipboard(&self) -> watch::Receiver<Option<ClipboardText>> {
        self.shared.clipboard.subscribe()
    }

    fn clipboard_offer(&self, offer: Option<ClipboardOffer>) {
        let mut paste = lock(&self.shared.paste);
        match offer {
            Some(offer) => *paste = PasteSource::Offer(offer),
            // The client's clipboard holds no text any more: its old text is not pasted; the
            // terminal's own copy, if newer, still is.
            None => {
                if matches!(*paste, PasteSource::Offer(_)) {
                    *paste = PasteSource::Nothing;
                }
            }
        }
    }
}

/// Shift+Insert and Ctrl+Shift+V paste (as in xterm and most terminals); Ctrl+V alone stays
/// the shell's "insert next character literally".
fn is_paste_key(scancode: Scancode, mods: keymap::Modifiers) -> bool {
    const INSERT: Scancode = Scancode::new(0x52, true);
    const V: Scancode = Scancode::new(0x2F, false);
    (scancode == INSERT && mods.shift && !mods.ctrl && !mods.alt) || (scancode == V && mods.shift && mods.ctrl && !mods.alt)
}

/// The view cell (row, column) under a pointer position.
fn cell_at(modes: &MouseModes, x: u16, y: u16) -> (u16, u16) {
    let col = (x / modes.cell_width.max(1)).min(modes.cols.saturating_sub(1));
    let row = (y / modes.cell_height.max(1)).min(modes.rows.saturating_sub(1));
    (row, col)
}

impl Drop for TerminalDesktop {
    /// Nobody can reach the session any more: end it rather than leave its processes behind.
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests;
