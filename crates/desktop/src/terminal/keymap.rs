//! Keyboard: scancodes through a layout table into the bytes an xterm sends.
//!
//! A layout is data: for each key of the main block, what it types plain, shifted and with
//! AltGr, whether Caps Lock shifts it, and which keys are dead (accents). Everything that does
//! not depend on the layout (Enter, arrows, function keys, the keypad, control codes) is here in
//! code. Adding a layout is adding a table to [`LAYOUTS`].

use crate::input::{KeyboardLayout, Scancode};

/// What one key level types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sym {
    Char(char),
    /// A dead key: the accent combines with the next character typed.
    Dead(char),
}

#[derive(Debug, Clone, Copy)]
pub struct KeyDef {
    /// Set-1 make code (never extended: the extended keys are not layout-dependent).
    pub code: u8,
    pub normal: Sym,
    pub shifted: Sym,
    pub altgr: Option<Sym>,
    /// Caps Lock acts as Shift on this key (letters).
    pub caps: bool,
}

#[derive(Debug)]
pub struct LayoutTable {
    pub name: &'static str,
    /// Windows language ids (the KLID's low word) this table serves.
    pub languages: &'static [u16],
    pub keys: &'static [KeyDef],
    /// What the keypad's decimal key types with Num Lock on.
    pub keypad_decimal: char,
}

impl LayoutTable {
    fn key(&self, code: u8) -> Option<&KeyDef> {
        self.keys.iter().find(|k| k.code == code)
    }

    fn has_altgr(&self) -> bool {
        self.keys.iter().any(|k| k.altgr.is_some())
    }
}

const fn k(code: u8, normal: char, shifted: char) -> KeyDef {
    KeyDef { code, normal: Sym::Char(normal), shifted: Sym::Char(shifted), altgr: None, caps: false }
}
const fn kg(code: u8, normal: char, shifted: char, altgr: char) -> KeyDef {
    KeyDef { code, normal: Sym::Char(normal), shifted: Sym::Char(shifted), altgr: Some(Sym::Char(altgr)), caps: false }
}
/// A letter: Caps Lock shifts it.
const fn l(code: u8, lower: char, upper: char) -> KeyDef {
    KeyDef { code, normal: Sym::Char(lower), shifted: Sym::Char(upper), altgr: None, caps: true }
}
const fn lg(code: u8, lower: char, upper: char, altgr: char) -> KeyDef {
    KeyDef { code, normal: Sym::Char(lower), shifted: Sym::Char(upper), altgr: Some(Sym::Char(altgr)), caps: true }
}
const fn dead(code: u8, normal: Sym, shifted: Sym) -> KeyDef {
    KeyDef { code, normal, shifted, altgr: None, caps: false }
}

/// US (0x0409).
const US: LayoutTable = LayoutTable {
    name: "US",
    languages: &[0x0409],
    keypad_decimal: '.',
    keys: &[
        k(0x02, '1', '!'),
        k(0x03, '2', '@'),
        k(0x04, '3', '#'),
        k(0x05, '4', '$'),
        k(0x06, '5', '%'),
        k(0x07, '6', '^'),
        k(0x08, '7', '&'),
        k(0x09, '8', '*'),
        k(0x0A, '9', '('),
        k(0x0B, '0', ')'),
        k(0x0C, '-', '_'),
        k(0x0D, '=', '+'),
        l(0x10, 'q', 'Q'),
        l(0x11, 'w', 'W'),
        l(0x12, 'e', 'E'),
        l(0x13, 'r', 'R'),
        l(0x14, 't', 'T'),
        l(0x15, 'y', 'Y'),
        l(0x16, 'u', 'U'),
        l(0x17, 'i', 'I'),
        l(0x18, 'o', 'O'),
        l(0x19, 'p', 'P'),
        k(0x1A, '[', '{'),
        k(0x1B, ']', '}'),
        l(0x1E, 'a', 'A'),
        l(0x1F, 's', 'S'),
        l(0x20, 'd', 'D'),
        l(0x21, 'f', 'F'),
        l(0x22, 'g', 'G'),
        l(0x23, 'h', 'H'),
        l(0x24, 'j', 'J'),
        l(0x25, 'k', 'K'),
        l(0x26, 'l', 'L'),
        k(0x27, ';', ':'),
        k(0x28, '\'', '"'),
        k(0x29, '`', '~'),
        k(0x2B, '\\', '|'),
        l(0x2C, 'z', 'Z'),
        l(0x2D, 'x', 'X'),
        l(0x2E, 'c', 'C'),
        l(0x2F, 'v', 'V'),
        l(0x30, 'b', 'B'),
        l(0x31, 'n', 'N'),
        l(0x32, 'm', 'M'),
        k(0x33, ',', '<'),
        k(0x34, '.', '>'),
        k(0x35, '/', '?'),
        k(0x39, ' ', ' '),
        k(0x56, '\\', '|'),
    ],
};

/// German (0x0407): QWERTZ, umlauts, dead ^ ´ `, AltGr for @ € { [ ] } \ ~ | µ ² ³.
const GERMAN: LayoutTable = LayoutTable {
    name: "German",
    languages: &[0x0407],
    keypad_decimal: ',',
    keys: &[
        k(0x02, '1', '!'),
        kg(0x03, '2', '"', '²'),
        kg(0x04, '3', '§', '³'),
        k(0x05, '4', '$'),
        k(0x06, '5', '%'),
        k(0x07, '6', '&'),
        kg(0x08, '7', '/', '{'),
        kg(0x09, '8', '(', '['),
        kg(0x0A, '9', ')', ']'),
        kg(0x0B, '0', '=', '}'),
        kg(0x0C, 'ß', '?', '\\'),
        dead(0x0D, Sym::Dead('´'), Sym::Dead('`')),
        lg(0x10, 'q', 'Q', '@'),
        l(0x11, 'w', 'W'),
        lg(0x12, 'e', 'E', '€'),
        l(0x13, 'r', 'R'),
        l(0x14, 't', 'T'),
        l(0x15, 'z', 'Z'),
        l(0x16, 'u', 'U'),
        l(0x17, 'i', 'I'),
        l(0x18, 'o', 'O'),
        l(0x19, 'p', 'P'),
        l(0x1A, 'ü', 'Ü'),
        kg(0x1B, '+', '*', '~'),
        l(0x1E, 'a', 'A'),
        l(0x1F, 's', 'S'),
        l(0x20, 'd', 'D'),
        l(0x21, 'f', 'F'),
        l(0x22, 'g', 'G'),
        l(0x23, 'h', 'H'),
        l(0x24, 'j', 'J'),
        l(0x25, 'k', 'K'),
        l(0x26, 'l', 'L'),
        l(0x27, 'ö', 'Ö'),
        l(0x28, 'ä', 'Ä'),
        dead(0x29, Sym::Dead('^'), Sym::Char('°')),
        k(0x2B, '#', '\''),
        l(0x2C, 'y', 'Y'),
        l(0x2D, 'x', 'X'),
        l(0x2E, 'c', 'C'),
        l(0x2F, 'v', 'V'),
        l(0x30, 'b', 'B'),
        l(0x31, 'n', 'N'),
        lg(0x32, 'm', 'M', 'µ'),
        k(0x33, ',', ';'),
        k(0x34, '.', ':'),
        k(0x35, '-', '_'),
        k(0x39, ' ', ' '),
        kg(0x56, '<', '>', '|'),
    ],
};

/// Every layout known; the first is the fallback for layouts not listed.
pub static LAYOUTS: &[&LayoutTable] = &[&US, &GERMAN];

/// The table for a Windows layout id: matched on its language id; US when unknown.
pub fn layout_table(layout: KeyboardLayout) -> &'static LayoutTable {
    LAYOUTS.iter().copied().find(|t| t.languages.contains(&layout.language())).unwrap_or(LAYOUTS[0])
}

/// Accent + base letter. Unlisted pairs type the accent, then the letter.
fn compose(accent: char, base: char) -> Option<char> {
    let pairs: &str = match accent {
        '^' => "aâeêiîoôuûAÂEÊIÎOÔUÛ",
        '´' => "aáeéiíoóuúyýAÁEÉIÍOÓUÚYÝ",
        '`' => "aàeèiìoòuùAÀEÈIÌOÒUÙ",
        _ => return None,
    };
    let chars: Vec<char> = pairs.chars().collect();
    chars.chunks(2).find(|p| p[0] == base).map(|p| p[1])
}

/// What a key press asks of the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    None,
    /// Bytes for the program (the view jumps back to the live screen).
    Send(Vec<u8>),
    /// Scroll the view back (positive) or forward by whole pages; nothing is sent.
    ScrollPages(i32),
}

/// Terminal modes that change what keys send.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyModes {
    pub application_cursor: bool,
}

/// Held modifiers (for mouse reports too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modifiers {
    pub shift: bool,
    pub alt: bool,
    pub ctrl: bool,
}

/// Keyboard state of one desktop: layout, held modifiers, locks, a pending dead key and a
/// pending UTF-16 high surrogate.
#[derive(Debug)]
pub struct Keyboard {
    table: &'static LayoutTable,
    lshift: bool,
    rshift: bool,
    lctrl: bool,
    rctrl: bool,
    lalt: bool,
    ralt: bool,
    caps_lock: bool,
    num_lock: bool,
    dead: Option<char>,
    high_surrogate: Option<u16>,
}

const ESC: u8 = 0x1b;

impl Keyboard {
    pub fn new(layout: KeyboardLayout) -> Keyboard {
        Keyboard {
            table: layout_table(layout),
            lshift: false,
            rshift: false,
            lctrl: false,
            rctrl: false,
            lalt: false,
            ralt: false,
            caps_lock: false,
            num_lock: false,
            dead: None,
            high_surrogate: None,
        }
    }

    pub fn set_layout(&mut self, layout: KeyboardLayout) {
        self.table = layout_table(layout);
        self.dead = None;
    }

    pub fn set_locks(&mut self, caps_lock: bool, num_lock: bool) {
        self.caps_lock = caps_lock;
        self.num_lock = num_lock;
    }

    /// Right Alt is AltGr on layouts that have AltGr levels, plain Alt otherwise.
    fn altgr_layout(&self) -> bool {
        self.table.has_altgr()
    }

    pub fn modifiers(&self) -> Modifiers {
        Modifiers {
            shift: self.lshift || self.rshift,
            alt: self.lalt || (self.ralt && !self.altgr_layout()),
            ctrl: self.lctrl || self.rctrl,
        }
    }

    /// A key went down or up.
    pub fn key(&mut self, scancode: Scancode, pressed: bool, modes: KeyModes) -> KeyAction {
        let Scancode { code, extended } = scancode;
        let modifier = match (code, extended) {
            (0x2A, false) => Some(&mut self.lshift),
            (0x36, false) => Some(&mut self.rshift),
            (0x1D, false) => Some(&mut self.lctrl),
            (0x1D, true) => Some(&mut self.rctrl),
            (0x38, false) => Some(&mut self.lalt),
            (0x38, true) => Some(&mut self.ralt),
            _ => None,
        };
        if let Some(held) = modifier {
            *held = pressed;
            return KeyAction::None;
        }
        if !pressed {
            return KeyAction::None;
        }
        match (code, extended) {
            (0x3A, false) => {
                self.caps_lock = !self.caps_lock;
                return KeyAction::None;
            }
            (0x45, false) => {
                self.num_lock = !self.num_lock;
                return KeyAction::None;
            }
            // Fake shifts some keyboards wrap around navigation keys, Windows keys, Menu,
            // Scroll Lock, Print Screen, Pause: nothing for a terminal.
            (0x2A | 0x36 | 0x5B | 0x5C | 0x5D | 0x46 | 0x37 | 0x45, true) | (0x46, false) => return KeyAction::None,
            _ => {}
        }
        let m = self.modifiers();
        let param = 1 + u8::from(m.shift) + 2 * u8::from(m.alt) + 4 * u8::from(m.ctrl);
        let alt_prefixed = |bytes: &[u8]| {
            let mut out = Vec::with_capacity(bytes.len() + 1);
            if m.alt {
                out.push(ESC);
            }
            out.extend_from_slice(bytes);
            KeyAction::Send(out)
        };
        match (code, extended) {
            (0x01, false) => return alt_prefixed(&[ESC]),
            (0x0E, false) => return alt_prefixed(if m.ctrl { &[0x08] } else { &[0x7f] }),
            (0x0F, false) if m.shift => return KeyAction::Send(b"\x1b[Z".to_vec()),
            (0x0F, false) => return alt_prefixed(b"\t"),
            (0x1C, _) => return alt_prefixed(b"\r"),
            (0x3B..=0x44, false) => return KeyAction::Send(function_key(code - 0x3A, param)),
            (0x57, false) => return KeyAction::Send(function_key(11, param)),
            (0x58, false) => return KeyAction::Send(function_key(12, param)),
            (0x35, true) => return alt_prefixed(b"/"),
            (0x37, false) => return alt_prefixed(b"*"),
            (0x4A, false) => return alt_prefixed(b"-"),
            (0x4E, false) => return alt_prefixed(b"+"),
            (0x47..=0x53, true) => return self.navigation(code, param, modes),
            (0x47..=0x53, false) => {
                // Keypad: digits with Num Lock (Shift inverts it, as on Windows), else navigation.
                if self.num_lock && !m.shift {
                    let c = match code {
                        0x47 => '7',
                        0x48 => '8',
                        0x49 => '9',
                        0x4B => '4',
                        0x4C => '5',
                        0x4D => '6',
                        0x4F => '1',
                        0x50 => '2',
                        0x51 => '3',
                        0x52 => '0',
                        0x53 => self.table.keypad_decimal,
                        _ => return KeyAction::None,
                    };
                    let mut buf = [0u8; 4];
                    return alt_prefixed(c.encode_utf8(&mut buf).as_bytes());
                }
                return self.navigation(code, param, modes);
            }
            (_, true) => return KeyAction::None,
            _ => {}
        }
        self.character(code, m)
    }

    /// Arrows, Home/End, PgUp/PgDn, Insert/Delete (extended keys or the keypad without Num Lock).
    fn navigation(&self, code: u8, param: u8, modes: KeyModes) -> KeyAction {
        let shift_only = param == 2;
        let seq = match code {
            0x48 => cursor_key(b'A', param, modes),
            0x50 => cursor_key(b'B', param, modes),
            0x4D => cursor_key(b'C', param, modes),
            0x4B => cursor_key(b'D', param, modes),
            0x47 => cursor_key(b'H', param, modes),
            0x4F => cursor_key(b'F', param, modes),
            0x4C => cursor_key(b'E', param, KeyModes::default()),
            0x49 if shift_only => return KeyAction::ScrollPages(1),
            0x51 if shift_only => return KeyAction::ScrollPages(-1),
            0x52 => tilde_key(2, param),
            0x53 => tilde_key(3, param),
            0x49 => tilde_key(5, param),
            0x51 => tilde_key(6, param),
            _ => return KeyAction::None,
        };
        KeyAction::Send(seq)
    }

    /// A key of the main block, through the layout table.
    fn character(&mut self, code: u8, m: Modifiers) -> KeyAction {
        let Some(def) = self.table.key(code) else {
            return KeyAction::None;
        };
        // AltGr is right Alt, or Ctrl+Alt as Windows allows; it consumes Ctrl and Alt.
        let altgr = self.altgr_layout() && (self.ralt || (m.ctrl && self.lalt));
        let (sym, ctrl, alt) = if altgr {
            match def.altgr {
                Some(sym) => (sym, false, false),
                // Windows types nothing for AltGr on a key without an AltGr level.
                None => return KeyAction::None,
            }
        } else {
            let shifted = m.shift != (self.caps_lock && def.caps);
            (if shifted { def.shifted } else { def.normal }, m.ctrl, m.alt)
        };
        let mut text = String::new();
        match (sym, self.dead.take()) {
            (Sym::Dead(accent), None) => {
                self.dead = Some(accent);
                return KeyAction::None;
            }
            (Sym::Dead(accent), Some(pending)) => {
                text.push(pending);
                text.push(accent);
            }
            (Sym::Char(c), Some(pending)) => match compose(pending, c) {
                Some(composed) => text.push(composed),
                None if c == ' ' => text.push(pending),
                None => {
                    text.push(pending);
                    text.push(c);
                }
            },
            (Sym::Char(c), None) => {
                if let Some(byte) = control_code(c).filter(|_| ctrl) {
                    return KeyAction::Send(if alt { vec![ESC, byte] } else { vec![byte] });
                }
                text.push(c);
            }
        }
        let mut out = Vec::with_capacity(text.len() + 1);
        if alt {
            out.push(ESC);
        }
        out.extend_from_slice(text.as_bytes());
        KeyAction::Send(out)
    }

    /// A UTF-16 code unit typed as text. Surrogate pairs arrive as two events.
    pub fn unicode(&mut self, unit: u16, pressed: bool) -> KeyAction {
        if !pressed {
            return KeyAction::None;
        }
        let c = match unit {
            0xD800..=0xDBFF => {
                self.high_surrogate = Some(unit);
                return KeyAction::None;
            }
            0xDC00..=0xDFFF => {
                let Some(high) = self.high_surrogate.take() else {
                    return KeyAction::None;
                };
                char::decode_utf16([high, unit]).next().and_then(Result::ok)
            }
            _ => {
                self.high_surrogate = None;
                char::from_u32(u32::from(unit))
            }
        };
        match c {
            Some(c) => {
                let mut buf = [0u8; 4];
                KeyAction::Send(c.encode_utf8(&mut buf).as_bytes().to_vec())
            }
            None => KeyAction::None,
        }
    }
}

/// The control code Ctrl+`c` sends, as xterm does (letters, `@[\]^_?`, and the digit row).
fn control_code(c: char) -> Option<u8> {
    match c {
        'a'..='z' | 'A'..='Z' => Some(c as u8 & 0x1f),
        '@' | ' ' | '2' => Some(0x00),
        '[' | '3' => Some(0x1b),
        '\\' | '4' => Some(0x1c),
        ']' | '5' => Some(0x1d),
        '^' | '~' | '6' => Some(0x1e),
        '_' | '/' | '7' => Some(0x1f),
        '?' | '8' => Some(0x7f),
        _ => None,
    }
}

/// Arrows and Home/End: `ESC [ A`, `ESC O A` in application cursor mode, `ESC [ 1 ; m A` modified.
fn cursor_key(fin: u8, param: u8, modes: KeyModes) -> Vec<u8> {
    if param > 1 {
        format!("\x1b[1;{param}{}", fin as char).into_bytes()
    } else if modes.application_cursor {
        vec![ESC, b'O', fin]
    } else {
        vec![ESC, b'[', fin]
    }
}

/// `ESC [ n ~`, `ESC [ n ; m ~` modified.
fn tilde_key(n: u8, param: u8) -> Vec<u8> {
    if param > 1 { format!("\x1b[{n};{param}~").into_bytes() } else { format!("\x1b[{n}~").into_bytes() }
}

/// F1–F12 as xterm sends them.
fn function_key(n: u8, param: u8) -> Vec<u8> {
    match n {
        1..=4 => {
            let fin = (b'P' + n - 1) as char;
            if param > 1 { format!("\x1b[1;{param}{fin}").into_bytes() } else { format!("\x1bO{fin}").into_bytes() }
        }
        _ => {
            let code = [15, 17, 18, 19, 20, 21, 23, 24][usize::from(n - 5)];
            tilde_key(code, param)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSHIFT: Scancode = Scancode::new(0x2A, false);
    const LCTRL: Scancode = Scancode::new(0x1D, false);
    const LALT: Scancode = Scancode::new(0x38, false);
    const ALTGR: Scancode = Scancode::new(0x38, true);

    fn tap(kb: &mut Keyboard, code: u8, extended: bool) -> KeyAction {
        tap_in(kb, code, extended, KeyModes::default())
    }

    fn tap_in(kb: &mut Keyboard, code: u8, extended: bool, modes: KeyModes) -> KeyAction {
        let sc = Scancode::new(code, extended);
        let action = kb.key(sc, true, modes);
        assert_eq!(kb.key(sc, false, modes), KeyAction::None, "releases send nothing");
        action
    }

    fn with(kb: &mut Keyboard, held: &[Scancode], code: u8, extended: bool) -> KeyAction {
        for &m in held {
            kb.key(m, true, KeyModes::default());
        }
        let action = tap(kb, code, extended);
        for &m in held {
            kb.key(m, false, KeyModes::default());
        }
        action
    }

    fn send(s: &str) -> KeyAction {
        KeyAction::Send(s.as_bytes().to_vec())
    }

    #[test]
    fn us_letters_digits_shift_caps() {
        let mut kb = Keyboard::new(KeyboardLayout::US);
        assert_eq!(tap(&mut kb, 0x15, false), send("y"));
        assert_eq!(tap(&mut kb, 0x2C, false), send("z"));
        assert_eq!(tap(&mut kb, 0x02, false), send("1"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x03, false), send("@"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x1E, false), send("A"));
        assert_eq!(tap(&mut kb, 0x39, false), send(" "));
        // Caps Lock shifts letters only; Shift undoes it.
        tap(&mut kb, 0x3A, false);
        assert_eq!(tap(&mut kb, 0x1E, false), send("A"));
        assert_eq!(tap(&mut kb, 0x02, false), send("1"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x1E, false), send("a"));
        // The terminal's lock state overrides.
        kb.set_locks(false, false);
        assert_eq!(tap(&mut kb, 0x1E, false), send("a"));
        // US has no AltGr: right Alt is Alt (ESC prefix).
        assert_eq!(with(&mut kb, &[ALTGR], 0x10, false), send("\x1bq"));
    }

    #[test]
    fn german_qwertz_altgr_umlauts_dead_keys() {
        let mut kb = Keyboard::new(KeyboardLayout::GERMAN);
        assert_eq!(tap(&mut kb, 0x15, false), send("z"));
        assert_eq!(tap(&mut kb, 0x2C, false), send("y"));
        assert_eq!(with(&mut kb, &[ALTGR], 0x10, false), send("@"));
        // Windows clients send AltGr as left Ctrl + right Alt: still AltGr, not Ctrl.
        assert_eq!(with(&mut kb, &[LCTRL, ALTGR], 0x10, false), send("@"));
        assert_eq!(with(&mut kb, &[LCTRL, LALT], 0x08, false), send("{"));
        assert_eq!(with(&mut kb, &[ALTGR], 0x12, false), send("€"));
        assert_eq!(with(&mut kb, &[ALTGR], 0x56, false), send("|"));
        assert_eq!(tap(&mut kb, 0x27, false), send("ö"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x28, false), send("Ä"));
        assert_eq!(tap(&mut kb, 0x0C, false), send("ß"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x08, false), send("/"));
        assert_eq!(tap(&mut kb, 0x35, false), send("-"));
        // Dead keys: ^ then e is ê; ^ then space is ^; ´ then x is ´x.
        assert_eq!(tap(&mut kb, 0x29, false), KeyAction::None);
        assert_eq!(tap(&mut kb, 0x12, false), send("ê"));
        assert_eq!(tap(&mut kb, 0x29, false), KeyAction::None);
        assert_eq!(tap(&mut kb, 0x39, false), send("^"));
        assert_eq!(tap(&mut kb, 0x0D, false), KeyAction::None);
        assert_eq!(tap(&mut kb, 0x2D, false), send("´x"));
        // Ctrl+Z on the German Z key.
        assert_eq!(with(&mut kb, &[LCTRL], 0x15, false), send("\x1a"));
        // Keypad decimal with Num Lock is a comma.
        kb.set_locks(false, true);
        assert_eq!(tap(&mut kb, 0x53, false), send(","));
    }

    #[test]
    fn layouts_by_klid_with_us_fallback() {
        assert_eq!(layout_table(KeyboardLayout(0x0409)).name, "US");
        assert_eq!(layout_table(KeyboardLayout(0x0407)).name, "German");
        assert_eq!(layout_table(KeyboardLayout(0x0001_0407)).name, "German");
        assert_eq!(layout_table(KeyboardLayout(0x0411)).name, "US");
        let mut kb = Keyboard::new(KeyboardLayout(0x0411));
        assert_eq!(tap(&mut kb, 0x15, false), send("y"));
        kb.set_layout(KeyboardLayout::GERMAN);
        assert_eq!(tap(&mut kb, 0x15, false), send("z"));
    }

    #[test]
    fn control_and_alt() {
        let mut kb = Keyboard::new(KeyboardLayout::US);
        assert_eq!(with(&mut kb, &[LCTRL], 0x2E, false), send("\x03"));
        assert_eq!(with(&mut kb, &[Scancode::new(0x1D, true)], 0x20, false), send("\x04"));
        assert_eq!(with(&mut kb, &[LCTRL, LSHIFT], 0x2E, false), send("\x03"));
        assert_eq!(with(&mut kb, &[LCTRL], 0x1A, false), send("\x1b"));
        assert_eq!(with(&mut kb, &[LCTRL], 0x2B, false), send("\x1c"));
        assert_eq!(with(&mut kb, &[LCTRL], 0x1B, false), send("\x1d"));
        assert_eq!(with(&mut kb, &[LCTRL, LSHIFT], 0x07, false), send("\x1e"));
        assert_eq!(with(&mut kb, &[LCTRL, LSHIFT], 0x0C, false), send("\x1f"));
        assert_eq!(with(&mut kb, &[LCTRL], 0x39, false), send("\0"));
        assert_eq!(with(&mut kb, &[LALT], 0x30, false), send("\x1bb"));
        assert_eq!(with(&mut kb, &[LALT, LCTRL], 0x2E, false), send("\x1b\x03"));
        assert_eq!(with(&mut kb, &[LALT], 0x0E, false), send("\x1b\x7f"));
    }

    #[test]
    fn editing_and_function_keys() {
        let mut kb = Keyboard::new(KeyboardLayout::US);
        assert_eq!(tap(&mut kb, 0x1C, false), send("\r"));
        assert_eq!(tap(&mut kb, 0x1C, true), send("\r"));
        assert_eq!(tap(&mut kb, 0x0E, false), send("\x7f"));
        assert_eq!(tap(&mut kb, 0x0F, false), send("\t"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x0F, false), send("\x1b[Z"));
        assert_eq!(tap(&mut kb, 0x01, false), send("\x1b"));
        assert_eq!(tap(&mut kb, 0x3B, false), send("\x1bOP"));
        assert_eq!(tap(&mut kb, 0x3E, false), send("\x1bOS"));
        assert_eq!(tap(&mut kb, 0x3F, false), send("\x1b[15~"));
        assert_eq!(tap(&mut kb, 0x44, false), send("\x1b[21~"));
        assert_eq!(tap(&mut kb, 0x57, false), send("\x1b[23~"));
        assert_eq!(tap(&mut kb, 0x58, false), send("\x1b[24~"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x3B, false), send("\x1b[1;2P"));
        assert_eq!(with(&mut kb, &[LCTRL], 0x3F, false), send("\x1b[15;5~"));
        assert_eq!(tap(&mut kb, 0x47, true), send("\x1b[H"));
        assert_eq!(tap(&mut kb, 0x4F, true), send("\x1b[F"));
        assert_eq!(tap(&mut kb, 0x49, true), send("\x1b[5~"));
        assert_eq!(tap(&mut kb, 0x51, true), send("\x1b[6~"));
        assert_eq!(tap(&mut kb, 0x52, true), send("\x1b[2~"));
        assert_eq!(tap(&mut kb, 0x53, true), send("\x1b[3~"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x49, true), KeyAction::ScrollPages(1));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x51, true), KeyAction::ScrollPages(-1));
        // Modifier-only keys and unknown extended keys send nothing.
        assert_eq!(tap(&mut kb, 0x5B, true), KeyAction::None);
        assert_eq!(tap(&mut kb, 0x2A, false), KeyAction::None);
    }

    #[test]
    fn arrows_in_both_cursor_modes() {
        let mut kb = Keyboard::new(KeyboardLayout::US);
        let normal = KeyModes { application_cursor: false };
        let app = KeyModes { application_cursor: true };
        for (code, fin) in [(0x48, 'A'), (0x50, 'B'), (0x4D, 'C'), (0x4B, 'D')] {
            assert_eq!(tap_in(&mut kb, code, true, normal), send(&format!("\x1b[{fin}")));
            assert_eq!(tap_in(&mut kb, code, true, app), send(&format!("\x1bO{fin}")));
        }
        assert_eq!(with(&mut kb, &[LCTRL], 0x4D, true), send("\x1b[1;5C"));
        assert_eq!(with(&mut kb, &[LALT], 0x48, true), send("\x1b[1;3A"));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x4B, true), send("\x1b[1;2D"));
    }

    #[test]
    fn keypad_follows_num_lock() {
        let mut kb = Keyboard::new(KeyboardLayout::US);
        assert_eq!(tap(&mut kb, 0x48, false), send("\x1b[A"));
        assert_eq!(tap(&mut kb, 0x4F, false), send("\x1b[F"));
        tap(&mut kb, 0x45, false);
        assert_eq!(tap(&mut kb, 0x48, false), send("8"));
        assert_eq!(tap(&mut kb, 0x52, false), send("0"));
        assert_eq!(tap(&mut kb, 0x53, false), send("."));
        assert_eq!(with(&mut kb, &[LSHIFT], 0x48, false), send("\x1b[1;2A"));
        assert_eq!(tap(&mut kb, 0x37, false), send("*"));
        assert_eq!(tap(&mut kb, 0x35, true), send("/"));
        assert_eq!(tap(&mut kb, 0x4A, false), send("-"));
        assert_eq!(tap(&mut kb, 0x4E, false), send("+"));
        kb.set_locks(false, false);
        assert_eq!(tap(&mut kb, 0x48, false), send("\x1b[A"));
    }

    #[test]
    fn unicode_units_and_surrogate_pairs() {
        let mut kb = Keyboard::new(KeyboardLayout::US);
        assert_eq!(kb.unicode(u16::from(b'x'), true), send("x"));
        assert_eq!(kb.unicode(u16::from(b'x'), false), KeyAction::None);
        assert_eq!(kb.unicode(0x00E9, true), send("é"));
        // U+1F600 = D83D DE00.
        assert_eq!(kb.unicode(0xD83D, true), KeyAction::None);
        assert_eq!(kb.unicode(0xD83D, false), KeyAction::None);
        assert_eq!(kb.unicode(0xDE00, true), send("\u{1F600}"));
        // A lone low surrogate is dropped.
        assert_eq!(kb.unicode(0xDE00, true), KeyAction::None);
    }
}
