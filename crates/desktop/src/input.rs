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

/// A key with modifiers, as people write it: `ctrl+keypad-multiply`, `ctrl+alt+f12`, `shift+s`.
/// (Windows' shadow hotkey is a virtual key plus Shift/Ctrl/Alt; set-1 scancodes here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hotkey {
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
    pub key: Scancode,
}

impl Hotkey {
    /// Ctrl + `*` on the numeric keypad: Windows' default for ending a shadow.
    pub const SHADOW_DEFAULT: Hotkey = Hotkey { ctrl: true, alt: false, shift: false, key: Scancode::new(0x37, false) };
}

/// Key names a [`Hotkey`] may use, with their set-1 scancodes.
const HOTKEY_KEYS: &[(&str, u8, bool)] = &[
    ("keypad-multiply", 0x37, false),
    ("keypad-minus", 0x4A, false),
    ("keypad-plus", 0x4E, false),
    ("keypad-divide", 0x35, true),
    ("f1", 0x3B, false),
    ("f2", 0x3C, false),
    ("f3", 0x3D, false),
    ("f4", 0x3E, false),
    ("f5", 0x3F, false),
    ("f6", 0x40, false),
    ("f7", 0x41, false),
    ("f8", 0x42, false),
    ("f9", 0x43, false),
    ("f10", 0x44, false),
    ("f11", 0x57, false),
    ("f12", 0x58, false),
    ("home", 0x47, true),
    ("end", 0x4F, true),
    ("insert", 0x52, true),
    ("delete", 0x53, true),
    ("pause", 0x45, false),
];

const LETTER_ROWS: [(&str, u8); 3] = [("qwertyuiop", 0x10), ("asdfghjkl", 0x1E), ("zxcvbnm", 0x2C)];

impl std::str::FromStr for Hotkey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{s:?} is not a hotkey ({why}); write e.g. ctrl+keypad-multiply or ctrl+alt+f12");
        let mut hotkey = Hotkey { ctrl: false, alt: false, shift: false, key: Scancode::new(0, false) };
        let parts: Vec<String> = s.split('+').map(|p| p.trim().to_ascii_lowercase()).collect();
        let (key, modifiers) = parts.split_last().ok_or_else(|| bad("empty"))?;
        for m in modifiers {
            match m.as_str() {
                "ctrl" | "control" => hotkey.ctrl = true,
                "alt" => hotkey.alt = true,
                "shift" => hotkey.shift = true,
                other => return Err(bad(&format!("unknown modifier {other:?}: ctrl, alt or shift"))),
            }
        }
        if let Some(&(_, code, extended)) = HOTKEY_KEYS.iter().find(|(name, ..)| name == key) {
            hotkey.key = Scancode::new(code, extended);
        } else if let [c] = key.as_bytes() {
            let code = match c {
                b'1'..=b'9' => 0x02 + (c - b'1'),
                b'0' => 0x0B,
                _ => LETTER_ROWS
                    .iter()
                    .find_map(|(row, first)| row.bytes().position(|l| l == *c).map(|i| first + i as u8))
                    .ok_or_else(|| bad("unknown key"))?,
            };
            hotkey.key = Scancode::new(code, false);
        } else {
            return Err(bad("unknown key"));
        }
        if !(hotkey.ctrl || hotkey.alt || hotkey.shift) && !key.starts_with('f') && !key.starts_with("keypad") {
            return Err(bad("a letter, digit or editing key needs ctrl, alt or shift"));
        }
        Ok(hotkey)
    }
}

#[cfg(test)]
mod hotkey_tests {
    use super::*;

    #[test]
    fn hotkeys_parse_like_people_write_them() {
        assert_eq!("ctrl+keypad-multiply".parse::<Hotkey>().unwrap(), Hotkey::SHADOW_DEFAULT);
        let h: Hotkey = "Ctrl+Alt+F12".parse().unwrap();
        assert_eq!((h.ctrl, h.alt, h.shift, h.key), (true, true, false, Scancode::new(0x58, false)));
        assert_eq!("shift+s".parse::<Hotkey>().unwrap().key, Scancode::new(0x1F, false));
        assert_eq!("alt+0".parse::<Hotkey>().unwrap().key, Scancode::new(0x0B, false));
        assert_eq!("ctrl+home".parse::<Hotkey>().unwrap().key, Scancode::new(0x47, true));
        for bad in ["", "ctrl+", "meta+x", "ctrl+banana", "q"] {
            assert!(bad.parse::<Hotkey>().is_err(), "{bad:?}");
        }
    }
}
