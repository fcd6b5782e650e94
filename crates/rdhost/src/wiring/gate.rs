//! A terminal's input gate: where a terminal's keys, pointer, size and layout go, given the role
//! the model gave it (primary, or a viewer with a control level). It applies that role; it does
//! not decide it.

use std::sync::{Arc, Mutex};

use rdhost_desktop::{Desktop, Hotkey, InputEvent, KeyboardLayout, MessageBoard, Size};
use rdhost_model::Role;
use rdhost_rdp::InputSink;

/// Set-1 codes of the modifier keys (left and right share a code; right ones are extended).
const CTRL: u8 = 0x1D;
const ALT: u8 = 0x38;
const SHIFT_LEFT: u8 = 0x2A;
const SHIFT_RIGHT: u8 = 0x36;

pub struct Gate {
    desktop: Arc<dyn Desktop>,
    board: Arc<MessageBoard>,
    state: Mutex<GateState>,
    /// The key that ends a shadow, and what it does (at once; it must not block).
    hotkey: Hotkey,
    on_hotkey: Box<dyn Fn() + Send + Sync>,
    /// A sharing attendee shown only the shared rectangle: where that rectangle starts, added
    /// to its pointer positions.
    offset: (u16, u16),
    /// A sharing attendee asked for a control level (view, interact).
    on_control_request: Option<Box<dyn Fn(bool, bool) + Send + Sync>>,
}

struct GateState {
    role: Role,
    /// What the client last asked for: the desktop takes it when this terminal becomes the one
    /// it follows.
    size: Option<Size>,
    layout: Option<KeyboardLayout>,
    ctrl: bool,
    alt: bool,
    shift: bool,
}

impl Gate {
    pub fn new(desktop: Arc<dyn Desktop>, board: Arc<MessageBoard>, role: Role, hotkey: Hotkey, on_hotkey: Box<dyn Fn() + Send + Sync>) -> Arc<Gate> {
        let state = GateState { role, size: None, layout: None, ctrl: false, alt: false, shift: false };
        Arc::new(Gate { desktop, board, state: Mutex::new(state), hotkey, on_hotkey, offset: (0, 0), on_control_request: None })
    }

    /// A gate for a sharing attendee: pointer positions shifted by the shared rectangle's
    /// origin, control requests handed to `on_control_request`.
    pub fn with_sharing(self: Arc<Self>, offset: (u16, u16), on_control_request: Box<dyn Fn(bool, bool) + Send + Sync>) -> Arc<Gate> {
        let gate = Arc::into_inner(self).expect("a new gate has one owner");
        Arc::new(Gate { offset, on_control_request: Some(on_control_request), ..gate })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note what the client asked for; true when this terminal drives the desktop now.
    fn remember(&self, note: impl FnOnce(&mut GateState)) -> bool {
        let mut state = self.lock();
        note(&mut state);
        state.role == Role::Primary
    }

    /// Returns the role it had.
    pub fn set_role(&self, role: Role) -> Role {
        std::mem::replace(&mut self.lock().role, role)
    }

    /// This terminal became the one the desktop follows: give the desktop its size and layout.
    pub fn lead(&self) {
        let (size, layout) = {
            let mut state = self.lock();
            state.role = Role::Primary;
            (state.size, state.layout)
        };
        if let Some(layout) = layout {
            self.desktop.set_keyboard_layout(layout);
        }
        if let Some(size) = size {
            self.desktop.resize(size);
        }
    }
}

impl InputSink for Gate {
    fn input(&self, event: InputEvent) {
        let role = {
            let mut state = self.lock();
            if let InputEvent::Key { scancode, pressed } = event {
                match scancode.code {
                    CTRL => state.ctrl = pressed,
                    ALT => state.alt = pressed,
                    SHIFT_LEFT | SHIFT_RIGHT => state.shift = pressed,
                    _ => {
                        let h = self.hotkey;
                        let held = (state.ctrl, state.alt, state.shift) == (h.ctrl, h.alt, h.shift);
                        if scancode == h.key && pressed && held && matches!(state.role, Role::Viewer(_)) {
                            drop(state);
                            (self.on_hotkey)();
                            return;
                        }
                    }
                }
            }
            state.role
        };
        if !role.may_input() {
            return;
        }
        // A message box on the session takes the input it needs before the desktop sees it.
        let event = shifted(event, self.offset);
        if self.board.handle_input(&event) {
            return;
        }
        self.desktop.input(event);
    }

    fn clipboard(&self) -> Option<tokio::sync::watch::Receiver<Option<rdhost_rdp::ClipboardText>>> {
        Some(self.desktop.clipboard())
    }

    /// The primary and interactive viewers share the session's clipboard; watchers do not. The
    /// role is checked at every exchange, so a viewer raised to interactive joins at its next.
    fn clipboard_allowed(&self) -> bool {
        self.lock().role.may_input()
    }

    fn clipboard_offer(&self, offer: Option<rdhost_rdp::ClipboardOffer>) {
        if self.clipboard_allowed() {
            self.desktop.clipboard_offer(offer);
        }
    }

    fn control_request(&self, request: rdhost_rdp::ControlRequest) {
        if let Some(on_request) = &self.on_control_request {
            on_request(request.view, request.interact);
        }
    }

    fn resize(&self, size: Size) {
        if self.remember(|state| state.size = Some(size)) {
            self.desktop.resize(size);
        }
    }

    fn keyboard_layout(&self, layout: KeyboardLayout) {
        if self.remember(|state| state.layout = Some(layout)) {
            self.desktop.set_keyboard_layout(layout);
        }
    }
}

/// Pointer positions from a client shown a rectangle of the desktop, in desktop coordinates.
fn shifted(event: InputEvent, (dx, dy): (u16, u16)) -> InputEvent {
    let at = |x: u16, y: u16| (x.saturating_add(dx), y.saturating_add(dy));
    match event {
        InputEvent::PointerMove { x, y } => {
            let (x, y) = at(x, y);
            InputEvent::PointerMove { x, y }
        }
        InputEvent::Button { button, pressed, x, y } => {
            let (x, y) = at(x, y);
            InputEvent::Button { button, pressed, x, y }
        }
        InputEvent::Wheel { axis, delta, x, y } => {
            let (x, y) = at(x, y);
            InputEvent::Wheel { axis, delta, x, y }
        }
        other => other,
    }
}
