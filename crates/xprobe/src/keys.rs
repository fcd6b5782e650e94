//! What a key event types, computed the way a core X client (Xlib's `XLookupString`) does:
//! the server's keyboard mapping plus the event's modifier state → keysym → character.
//!
//! The core mapping of an XKB server has, per keycode, group 1 levels 1–2, group 2 levels 1–2,
//! then group 1 levels 3–4. Level 3 (AltGr) is whichever modifier ISO_Level3_Shift sets (Mod5 in
//! the stock keymaps), group 2 whichever Mode_switch sets. Caps Lock shifts keys whose two levels
//! are a case pair, and Shift+Caps Lock gives the lower case (XKB's ALPHABETIC type); Num Lock
//! picks the keypad's digits; Control turns `@`..`~` into control characters.

use rdhost_desktop::x11::keymap::{self, XK_ISO_LEVEL3_SHIFT, XK_MODE_SWITCH, XK_NUM_LOCK};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::ConnectionExt as _;

const SHIFT: u16 = 1 << 0;
const LOCK: u16 = 1 << 1;
const CONTROL: u16 = 1 << 2;

#[derive(Debug, Clone)]
pub struct KeyboardMap {
    min_keycode: u8,
    per_keycode: usize,
    keysyms: Vec<u32>,
    level3_mask: u16,
    group2_mask: u16,
    num_lock_mask: u16,
}

impl KeyboardMap {
    pub fn read(conn: &impl Connection) -> Result<KeyboardMap, x11rb::errors::ReplyError> {
        let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
        let keyboard = conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
        let modifiers = conn.get_modifier_mapping()?.reply()?;
        let per_mod = usize::from(modifiers.keycodes_per_modifier());
        let rows: Vec<Vec<u8>> = modifiers.keycodes.chunks(per_mod.max(1)).map(|r| r.to_vec()).collect();
        Ok(KeyboardMap::new(min, usize::from(keyboard.keysyms_per_keycode), keyboard.keysyms, &rows))
    }

    /// From a keyboard mapping (`per_keycode` keysyms per keycode from `min_keycode`) and the
    /// modifier map's eight rows of keycodes.
    pub fn new(min_keycode: u8, per_keycode: usize, keysyms: Vec<u32>, modifiers: &[Vec<u8>]) -> KeyboardMap {
        let mut map = KeyboardMap {
            min_keycode,
            per_keycode,
            keysyms,
            level3_mask: 0,
            group2_mask: 0,
            num_lock_mask: 0,
        };
        let mask_of = |keysym: u32| {
            let mut mask = 0u16;
            for (bit, row) in modifiers.iter().enumerate().take(8) {
                if row.iter().any(|&k| k != 0 && map.syms(k).first() == Some(&keysym)) {
                    mask |= 1 << bit;
                }
            }
            mask
        };
        let (level3, group2, num_lock) = (mask_of(XK_ISO_LEVEL3_SHIFT), mask_of(XK_MODE_SWITCH), mask_of(XK_NUM_LOCK));
        map.level3_mask = level3;
        map.group2_mask = group2;
        map.num_lock_mask = num_lock;
        map
    }

    fn syms(&self, keycode: u8) -> &[u32] {
        let Some(i) = keycode.checked_sub(self.min_keycode) else { return &[] };
        let start = usize::from(i) * self.per_keycode;
        self.keysyms.get(start..start + self.per_keycode).unwrap_or(&[])
    }

    /// The keysym and text of `keycode` pressed with modifier `state`.
    pub fn lookup(&self, keycode: u8, state: u16) -> (u32, String) {
        let syms = self.syms(keycode);
        let col = |i: usize| syms.get(i).copied().unwrap_or(0);
        let has = |a: usize| col(a) != 0 || col(a + 1) != 0;
        let first = if self.level3_mask != 0 && state & self.level3_mask != 0 && has(4) {
            4
        } else if self.group2_mask != 0 && state & self.group2_mask != 0 && has(2) {
            2
        } else {
            0
        };
        let (lower, mut upper) = (col(first), col(first + 1));
        if upper == 0 {
            upper = lower;
        }
        let shift = state & SHIFT != 0;
        let keysym = if self.num_lock_mask != 0 && state & self.num_lock_mask != 0 && keymap::is_keypad(upper) {
            if shift { lower } else { upper }
        } else if state & LOCK != 0 && is_case_pair(lower, upper) {
            if shift { lower } else { upper }
        } else if shift {
            upper
        } else {
            lower
        };
        let text = match keymap::keysym_to_char(keysym) {
            Some(c) if state & CONTROL != 0 && ('@'..='~').contains(&c) => char::from(c as u8 & 0x1f).to_string(),
            Some(c) => c.to_string(),
            None => String::new(),
        };
        (keysym, text)
    }
}

fn is_case_pair(lower: u32, upper: u32) -> bool {
    match (keymap::keysym_to_char(lower), keymap::keysym_to_char(upper)) {
        (Some(l), Some(u)) => l != u && l.to_uppercase().eq(std::iter::once(u)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keycodes 10.. as a German keymap presents them to core clients: q, 2, y (on the Z key),
    /// AltGr, Shift, KP_1.
    fn german() -> KeyboardMap {
        let rows: [[u32; 6]; 6] = [
            [0x71, 0x51, 0x71, 0x51, 0x40, 0x7d9],
            [0x32, 0x22, 0x32, 0x22, 0xb2, 0xac3],
            [0x79, 0x59, 0x79, 0x59, 0x3c, 0],
            [XK_ISO_LEVEL3_SHIFT, 0, 0, 0, 0, 0],
            [0xffe1, 0, 0, 0, 0, 0],
            [0xff9c, 0xffb1, 0xff9c, 0xffb1, 0, 0],
        ];
        let mut modifiers = vec![Vec::new(); 8];
        modifiers[0] = vec![14];
        modifiers[7] = vec![13]; // Mod5: level 3
        let num_lock = 16u8; // not in the keymap above: Num Lock's mask stays 0 unless mapped
        modifiers[4] = vec![num_lock];
        let mut keysyms: Vec<u32> = rows.iter().flatten().copied().collect();
        keysyms.extend([XK_NUM_LOCK, 0, 0, 0, 0, 0]);
        KeyboardMap::new(10, 6, keysyms, &modifiers)
    }

    #[test]
    fn german_levels_and_locks() {
        let m = german();
        let text = |keycode, state| m.lookup(keycode, state).1;
        assert_eq!(text(10, 0), "q");
        assert_eq!(text(10, SHIFT), "Q");
        assert_eq!(text(10, 0x80), "@");
        assert_eq!(text(11, SHIFT), "\"");
        assert_eq!(text(11, 0x80), "²");
        assert_eq!(text(12, 0), "y");
        assert_eq!(text(12, LOCK), "Y");
        assert_eq!(text(12, LOCK | SHIFT), "y");
        assert_eq!(text(11, LOCK), "2");
        assert_eq!(text(10, CONTROL), "\u{11}");
        assert_eq!(m.lookup(13, 0), (XK_ISO_LEVEL3_SHIFT, String::new()));
        assert_eq!(text(15, 0), "");
        assert_eq!(text(15, 0x10), "1"); // Num Lock (Mod2) picks KP_1
        assert_eq!(text(200, 0), "");
    }
}
