//! Mouse: the wheel scrolls the view back through history; when the program asked for mouse
//! reports (xterm modes 9/1000/1002/1003), buttons, motion and the wheel are reported to it.

use vt100::{MouseProtocolEncoding, MouseProtocolMode};

use super::keymap::Modifiers;
use crate::input::MouseButton;

/// Wheel units per notch, and lines scrolled per notch.
const NOTCH: i32 = 120;
const LINES_PER_NOTCH: i32 = 3;

/// The terminal modes and geometry the mouse needs (a snapshot taken after each render).
#[derive(Debug, Clone, Copy)]
pub struct MouseModes {
    pub mode: MouseProtocolMode,
    pub encoding: MouseProtocolEncoding,
    pub alternate_screen: bool,
    pub application_cursor: bool,
    pub cell_width: u16,
    pub cell_height: u16,
    pub cols: u16,
    pub rows: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MouseAction {
    None,
    Send(Vec<u8>),
    /// Scroll the view: positive is back into history.
    ScrollLines(i32),
}

#[derive(Debug, Default)]
pub struct Mouse {
    held: [bool; 3],
    last_cell: Option<(u16, u16)>,
    /// Wheel units not yet worth a line (high-resolution wheels send less than a notch).
    wheel_rest: i32,
}

impl Mouse {
    fn cell(modes: &MouseModes, x: u16, y: u16) -> (u16, u16) {
        let col = (x / modes.cell_width.max(1)).min(modes.cols.saturating_sub(1));
        let row = (y / modes.cell_height.max(1)).min(modes.rows.saturating_sub(1));
        (col, row)
    }

    /// Vertical wheel: positive `delta` scrolls up (back in history).
    pub fn wheel(&mut self, delta: i16, x: u16, y: u16, mods: Modifiers, modes: &MouseModes) -> MouseAction {
        self.wheel_rest += i32::from(delta) * LINES_PER_NOTCH;
        let lines = self.wheel_rest / NOTCH;
        self.wheel_rest -= lines * NOTCH;
        if lines == 0 {
            return MouseAction::None;
        }
        let count = lines.unsigned_abs().min(100) as usize;
        if modes.mode != MouseProtocolMode::None {
            let (col, row) = Self::cell(modes, x, y);
            let button = if lines > 0 { 64 } else { 65 };
            let one = encode(button | modifier_bits(mods), col, row, false, modes.encoding);
            return one.map_or(MouseAction::None, |seq| MouseAction::Send(seq.repeat(count)));
        }
        if modes.alternate_screen {
            // Full-screen programs (less, man, editors) have no scrollback: send arrows instead.
            let fin = if lines > 0 { b'A' } else { b'B' };
            let arrow = if modes.application_cursor { [0x1b, b'O', fin] } else { [0x1b, b'[', fin] };
            return MouseAction::Send(arrow.repeat(count));
        }
        MouseAction::ScrollLines(lines)
    }

    pub fn button(&mut self, button: MouseButton, pressed: bool, x: u16, y: u16, mods: Modifiers, modes: &MouseModes) -> MouseAction {
        let index = match button {
            MouseButton::Left => 0,
            MouseButton::Middle => 1,
            MouseButton::Right => 2,
            MouseButton::X1 | MouseButton::X2 => return MouseAction::None,
        };
        self.held[usize::from(index)] = pressed;
        let report = match modes.mode {
            MouseProtocolMode::None => false,
            MouseProtocolMode::Press => pressed,
            _ => true,
        };
        if !report {
            return MouseAction::None;
        }
        let (col, row) = Self::cell(modes, x, y);
        self.last_cell = Some((col, row));
        // Older encodings cannot say which button went up: release is button 3.
        let code = if !pressed && modes.encoding != MouseProtocolEncoding::Sgr { 3 } else { index };
        encode(code | modifier_bits(mods), col, row, !pressed, modes.encoding).map_or(MouseAction::None, MouseAction::Send)
    }

    pub fn moved(&mut self, x: u16, y: u16, mods: Modifiers, modes: &MouseModes) -> MouseAction {
        let held = self.held.iter().position(|&h| h);
        let code = match (modes.mode, held) {
            (MouseProtocolMode::ButtonMotion | MouseProtocolMode::AnyMotion, Some(i)) => 32 + i as u8,
            (MouseProtocolMode::AnyMotion, None) => 32 + 3,
            _ => return MouseAction::None,
        };
        let cell = Self::cell(modes, x, y);
        if self.last_cell == Some(cell) {
            return MouseAction::None;
        }
        self.last_cell = Some(cell);
        encode(code | modifier_bits(mods), cell.0, cell.1, false, modes.encoding).map_or(MouseAction::None, MouseAction::Send)
    }
}

fn modifier_bits(mods: Modifiers) -> u8 {
    4 * u8::from(mods.shift) + 8 * u8::from(mods.alt) + 16 * u8::from(mods.ctrl)
}

/// One xterm mouse report; `None` when the position cannot be expressed in the encoding.
fn encode(code: u8, col: u16, row: u16, release: bool, encoding: MouseProtocolEncoding) -> Option<Vec<u8>> {
    match encoding {
        MouseProtocolEncoding::Sgr => {
            let fin = if release { 'm' } else { 'M' };
            Some(format!("\x1b[<{code};{};{}{fin}", col + 1, row + 1).into_bytes())
        }
        MouseProtocolEncoding::Default => {
            let value = |v: u16| u8::try_from(u32::from(v) + 33).ok();
            Some(vec![0x1b, b'[', b'M', 32 + code, value(col)?, value(row)?])
        }
        MouseProtocolEncoding::Utf8 => {
            let mut out = b"\x1b[M".to_vec();
            for v in [u32::from(code) + 32, u32::from(col) + 33, u32::from(row) + 33] {
                if v > 2047 {
                    return None;
                }
                let mut buf = [0u8; 4];
                out.extend_from_slice(char::from_u32(v)?.encode_utf8(&mut buf).as_bytes());
            }
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(mode: MouseProtocolMode, encoding: MouseProtocolEncoding, alternate_screen: bool) -> MouseModes {
        MouseModes { mode, encoding, alternate_screen, application_cursor: false, cell_width: 10, cell_height: 20, cols: 80, rows: 24 }
    }

    #[test]
    fn wheel_scrolls_history_three_lines_per_notch() {
        let mut mouse = Mouse::default();
        let m = modes(MouseProtocolMode::None, MouseProtocolEncoding::Default, false);
        let none = Modifiers::default();
        assert_eq!(mouse.wheel(120, 0, 0, none, &m), MouseAction::ScrollLines(3));
        assert_eq!(mouse.wheel(-240, 0, 0, none, &m), MouseAction::ScrollLines(-6));
        // High-resolution wheels: 40 units is one line.
        assert_eq!(mouse.wheel(20, 0, 0, none, &m), MouseAction::None);
        assert_eq!(mouse.wheel(20, 0, 0, none, &m), MouseAction::ScrollLines(1));
    }

    #[test]
    fn wheel_in_full_screen_programs_sends_arrows() {
        let mut mouse = Mouse::default();
        let m = modes(MouseProtocolMode::None, MouseProtocolEncoding::Default, true);
        assert_eq!(mouse.wheel(-120, 0, 0, Modifiers::default(), &m), MouseAction::Send(b"\x1b[B\x1b[B\x1b[B".to_vec()));
    }

    #[test]
    fn reports_when_the_program_asks() {
        let mut mouse = Mouse::default();
        let none = Modifiers::default();
        let sgr = modes(MouseProtocolMode::ButtonMotion, MouseProtocolEncoding::Sgr, true);
        assert_eq!(mouse.button(MouseButton::Left, true, 25, 45, none, &sgr), MouseAction::Send(b"\x1b[<0;3;3M".to_vec()));
        assert_eq!(mouse.moved(26, 46, none, &sgr), MouseAction::None, "same cell");
        assert_eq!(mouse.moved(35, 46, none, &sgr), MouseAction::Send(b"\x1b[<32;4;3M".to_vec()));
        assert_eq!(mouse.button(MouseButton::Left, false, 35, 46, none, &sgr), MouseAction::Send(b"\x1b[<0;4;3m".to_vec()));
        assert_eq!(mouse.moved(55, 46, none, &sgr), MouseAction::None, "no button held");
        let x10 = modes(MouseProtocolMode::PressRelease, MouseProtocolEncoding::Default, false);
        assert_eq!(mouse.button(MouseButton::Right, true, 0, 0, none, &x10), MouseAction::Send(b"\x1b[M\x22\x21\x21".to_vec()));
        assert_eq!(mouse.button(MouseButton::Right, false, 0, 0, none, &x10), MouseAction::Send(b"\x1b[M\x23\x21\x21".to_vec()));
        let ctrl = Modifiers { ctrl: true, ..none };
        assert_eq!(mouse.wheel(120, 0, 0, ctrl, &sgr), MouseAction::Send(b"\x1b[<80;1;1M".repeat(3)));
    }
}
