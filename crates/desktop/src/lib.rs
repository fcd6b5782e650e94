//! Desktops: where a session's pixels come from and where its input goes.
//!
//! A desktop draws into a [`Canvas`] (pixels plus damage) and receives protocol-neutral
//! [`InputEvent`]s. Nothing here knows about RDP: scancodes are the PC/AT set-1 codes every
//! keyboard protocol uses, and pixels are plain 32-bit BGRX.

pub mod canvas;
pub mod clipboard;
pub mod input;
pub mod message;
pub mod process;
pub mod terminal;
pub mod x11;

pub use canvas::{Canvas, CanvasUpdate, Damage, Frame, InPlace, PixelMemory, Subscription};
pub use input::{Hotkey, InputEvent, KeyboardLayout, MouseButton, Scancode, WheelAxis};
pub use canvas::Overlay;
pub use clipboard::{ClipboardError, ClipboardOffer, ClipboardText, FetchReply, MAX_CLIPBOARD_BYTES};
pub use message::{Buttons, MessageAnswer, MessageBoard, MessageBox, MessageError, MessageId};
pub use terminal::{RunAs, TerminalDesktop, TerminalError, TerminalOptions};

use std::sync::Arc;

/// Width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    pub width: u16,
    pub height: u16,
}

impl Size {
    pub const fn new(width: u16, height: u16) -> Self {
        Self { width, height }
    }
    pub fn area(self) -> usize {
        usize::from(self.width) * usize::from(self.height)
    }
    pub fn rect(self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }
}

/// An axis-aligned rectangle in pixels; `width`/`height` may be 0 (empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Rect {
    pub const fn new(x: u16, y: u16, width: u16, height: u16) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }
    pub fn is_empty(self) -> bool {
        self.width == 0 || self.height == 0
    }
    pub fn right(self) -> u32 {
        u32::from(self.x) + u32::from(self.width)
    }
    pub fn bottom(self) -> u32 {
        u32::from(self.y) + u32::from(self.height)
    }
    pub fn area(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
    /// The smallest rectangle containing both.
    pub fn union(self, other: Rect) -> Rect {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let r = self.right().max(other.right());
        let b = self.bottom().max(other.bottom());
        Rect::new(x, y, (r - u32::from(x)) as u16, (b - u32::from(y)) as u16)
    }
    pub fn intersect(self, other: Rect) -> Rect {
        let x = self.x.max(other.x);
        let y = self.y.max(other.y);
        let r = self.right().min(other.right());
        let b = self.bottom().min(other.bottom());
        if r <= u32::from(x) || b <= u32::from(y) {
            return Rect::new(0, 0, 0, 0);
        }
        Rect::new(x, y, (r - u32::from(x)) as u16, (b - u32::from(y)) as u16)
    }
    /// True when the two overlap or touch edge to edge (so merging them wastes nothing on the shared edge).
    pub fn touches(self, other: Rect) -> bool {
        u32::from(self.x) <= other.right()
            && u32::from(other.x) <= self.right()
            && u32::from(self.y) <= other.bottom()
            && u32::from(other.y) <= self.bottom()
    }
}

/// Why a desktop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesktopEnd {
    /// The user's program (shell, session program) exited on its own: the user logged off.
    UserLoggedOff,
    /// The host ended it (logoff from outside, host shutdown).
    Terminated,
    /// It failed: the X server crashed, the PTY broke. The text says what happened.
    Failed(String),
}

/// A running desktop. Implementations are cheap to share (`Arc<dyn Desktop>`); every method
/// returns quickly and never blocks on the desktop's own work.
pub trait Desktop: Send + Sync {
    /// Where the desktop draws. The canvas outlives resizes: subscribers see a resize as an update.
    fn canvas(&self) -> &Arc<Canvas>;
    /// Deliver one input event. Events from all attached terminals arrive here in order.
    fn input(&self, event: InputEvent);
    /// Ask for a new size. The desktop may clamp it; the canvas reports the size it took.
    fn resize(&self, size: Size);
    /// The keyboard layout of the terminal now driving the desktop (it may change on reconnect).
    fn set_keyboard_layout(&self, layout: KeyboardLayout);
    /// Resolves when the desktop has ended, with why. Every call returns a fresh receiver.
    fn ended(&self) -> tokio::sync::watch::Receiver<Option<DesktopEnd>>;
    /// End the desktop and every process in it (logoff). Idempotent.
    fn terminate(&self);
    /// The pointer shape now, and its changes. `None` is the client's default arrow, which is
    /// all a desktop without a cursor of its own (the terminal desktop) ever shows.
    fn cursor(&self) -> tokio::sync::watch::Receiver<Option<Arc<CursorShape>>> {
        tokio::sync::watch::channel(None).1
    }
    /// How to recognise the session's processes (a caller's own session is found by them).
    /// Empty for a desktop that runs no processes of its own (an attached display).
    fn session_marks(&self) -> SessionMarks {
        SessionMarks::default()
    }
    /// Text copied inside the desktop, and its changes (`None` until something is copied).
    /// The wire offers it to the clients that take part; a desktop without a clipboard never
    /// changes it.
    fn clipboard(&self) -> tokio::sync::watch::Receiver<Option<ClipboardText>> {
        tokio::sync::watch::channel(None).1
    }
    /// A client's clipboard now holds text (`Some`), which the desktop fetches when one of its
    /// programs pastes, or holds text no more (`None`). The newest offer wins.
    fn clipboard_offer(&self, _offer: Option<ClipboardOffer>) {}
    /// Put known text on the desktop's clipboard, as a client's copy would.
    fn clipboard_set(&self, text: String) {
        match ClipboardOffer::ready(text) {
            Ok(offer) => self.clipboard_offer(Some(offer)),
            Err(e) => tracing::warn!("clipboard text not set: {e}"),
        }
    }
}

/// What identifies a desktop's processes, as the kernel keeps it (nothing a process could forge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMarks {
    /// The session's first process (its shell or session program): its descendants belong too.
    pub leader: Option<u32>,
    /// The session's cgroup (cgroup v2 path below the mount), when it has one: every member belongs.
    pub cgroup: Option<std::path::PathBuf>,
}

/// A pointer image, as the desktop draws it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorShape {
    pub width: u16,
    pub height: u16,
    /// The pixel that is the pointer's position, from the image's top-left corner.
    pub hotspot_x: u16,
    pub hotspot_y: u16,
    /// BGRA with straight (not premultiplied) alpha, rows top to bottom, `width * 4` bytes each.
    pub bgra: Vec<u8>,
}
