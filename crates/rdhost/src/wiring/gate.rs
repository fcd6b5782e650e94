//! A terminal's input gate: where a terminal's keys, pointer, size and layout go, given the role
//! the model gave it (primary, or a viewer with a control level). It applies that role; it does
//! not decide it.

use std::sync::{Arc, Mutex};

use rdhost_desktop::{Desktop, InputEvent, KeyboardLayout, MessageBoard, Scancode, Size};
use rdhost_model::Role;
use rdhost_rdp::InputSink;

/// Ctrl + `*` on the numeric keypad: Windows' default hotkey to end shadowing.
const KEYPAD_MULTIPLY: Scancode = Scancode::new(0x37, false);
const CTRL_LEFT: Scancode = Scancode::new(0x1D, false);
const CTRL_RIGHT: Scancode = Scancode::new(0x1D, true);

pub struct Gate {
    desktop: Arc<dyn Desktop>,
    board: Arc<MessageBoard>,
    state: Mutex<GateState>,
    /// Called (at once, it must not block) when the terminal presses the shadow hotkey.
    on_hotkey: Box<dyn Fn() + Send + Sync>,
}

struct GateState {
    role: Role,
    /// What the client last asked for: the desktop takes it when this terminal becomes the one
    /// it follows.
    size: Option<Size>,
    layout: Option<KeyboardLayout>,
    ctrl_down: bool,
}

impl Gate {
    pub fn new(desktop: Arc<dyn Desktop>, board: Arc<MessageBoard>, role: Role, on_hotkey: Box<dyn Fn() + Send + Sync>) -> Arc<Gate> {
        Arc::new(Gate { desktop, board, state: Mutex::new(GateState { role, size: None, layout: None, ctrl_down: false }), on_hotkey })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_role(&self, role: Role) {
        self.lock().role = role;
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
                if scancode == CTRL_LEFT || scancode == CTRL_RIGHT {
                    state.ctrl_down = pressed;
                } else if scancode == KEYPAD_MULTIPLY && pressed && state.ctrl_down && matches!(state.role, Role::Viewer(_)) {
                    drop(state);
                    (self.on_hotkey)();
                    return;
                }
            }
            state.role
        };
        if !role.may_input() {
            return;
        }
        // A message box on the session takes the input it needs before the desktop sees it.
        if self.board.handle_input(&event) {
            return;
        }
        self.desktop.input(event);
    }

    fn resize(&self, size: Size) {
        let lead = {
            let mut state = self.lock();
            state.size = Some(size);
            state.role == Role::Primary
        };
        if lead {
            self.desktop.resize(size);
        }
    }

    fn keyboard_layout(&self, layout: KeyboardLayout) {
        let lead = {
            let mut state = self.lock();
            state.layout = Some(layout);
            state.role == Role::Primary
        };
        if lead {
            self.desktop.set_keyboard_layout(layout);
        }
    }
}
