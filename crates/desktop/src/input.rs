//! Protocol-neutral input: what a terminal's keyboard and mouse did.

/// A PC/AT "set 1" make code, as keyboards and RDP send it. `extended` is the 0xE0 prefix
/// (right Ctrl/Alt, arrows, the navigation block, keypad Enter and /).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scancode {
    pub code: u8,
    pub extended: bool,
}

impl Scancode {
    pub const fn new(code: u8, extended: bool) -> Self {
        Self { code, extended }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MouseButton {
    Left,
    Middle,
    Right,
    /// "Back" (X button 1).
    X1,
    /// "Forward" (X button 2).
    X2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WheelAxis {
    Vertical,
    Horizontal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    Key { scancode: Scancode, pressed: bool },
    /// One UTF-16 code unit typed as text (surrogate pairs arrive as two events).
    Unicode { code_unit: u16, pressed: bool },
    PointerMove { x: u16, y: u16 },
    Button { button: MouseButton, pressed: bool, x: u16, y: u16 },
    /// Wheel rotation in RDP/Windows units (120 = one notch). Vertical: positive scrolls up
    /// (content moves down). Horizontal: positive scrolls right.
    Wheel { axis: WheelAxis, delta: i16, x: u16, y: u16 },
    /// The terminal's lock-key state (sent on focus and at connect).
    LockState { caps_lock: bool, num_lock: bool, scroll_lock: bool },
}

/// A Windows keyboard layout id (KLID low word), e.g. 0x0409 US, 0x0407 German, 0x040C French.
/// The client reports it at connect; desktops translate scancodes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyboardLayout(pub u32);

impl KeyboardLayout {
    pub const US: KeyboardLayout = KeyboardLayout(0x0409);
    pub const GERMAN: KeyboardLayout = KeyboardLayout(0x0407);

    /// The language id (low 16 bits); variants of a layout share it.
    pub fn language(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }
}

impl Default for KeyboardLayout {
    fn default() -> Self {
        Self::US
    }
}
