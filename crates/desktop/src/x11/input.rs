//! Input for X desktops: every [`InputEvent`] becomes XTEST fake input on the display.
//!
//! Keys travel as keycodes ([`keymap::scancode_to_keycode`]); what they type is the server's
//! keymap, which [`XInput::set_layout`] makes match the client's layout. Unicode events find
//! their character in the server's keyboard mapping (pressing Shift or AltGr as needed) or, if
//! no key has it, bind it to one of a few spare keycodes first.

use std::collections::{HashSet, VecDeque};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{self, ConnectionExt as _, ModMask};
use x11rb::protocol::xtest::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use super::keymap::{self, XK_CAPS_LOCK, XK_ISO_LEVEL3_SHIFT, XK_NUM_LOCK, XK_SHIFT_L, XK_SHIFT_R};
use super::{X11Error, XDisplay};
use crate::input::{InputEvent, KeyboardLayout, MouseButton, Scancode, WheelAxis};

/// One wheel notch in Windows units.
const NOTCH: i32 = 120;
/// How many keycodes Unicode input may take over for characters the keymap lacks. Reused
/// least-recently-used first, so the keymap never grows past this.
const SPARE_KEYS: usize = 12;
/// A client reads the keymap when it gets to the MappingNotify, which can be after we rebound
/// the key again: it would then see the newer character. So a spare key is rebound only this long
/// after it was typed (a long paste of characters the keymap lacks slows to 12 per this time).
const REUSE_AFTER: Duration = Duration::from_millis(150);
/// Longest we let setxkbmap run (it waits for the server to compile the keymap: ~0.1 s).
const LAYOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// XTEST event types (core event codes).
const KEY_PRESS: u8 = xproto::KEY_PRESS_EVENT;
const KEY_RELEASE: u8 = xproto::KEY_RELEASE_EVENT;
const BUTTON_PRESS: u8 = xproto::BUTTON_PRESS_EVENT;
const BUTTON_RELEASE: u8 = xproto::BUTTON_RELEASE_EVENT;
const MOTION: u8 = xproto::MOTION_NOTIFY_EVENT;

/// Applies input events to one X display with XTEST.
pub struct XInput {
    display: XDisplay,
    root: u32,
    min_keycode: u8,
    max_keycode: u8,
    /// The server's keyboard mapping, read when first needed after a change.
    mapping: Option<Mapping>,
    /// Keycodes we hold down (so modifiers can be lifted and restored around Unicode typing).
    pressed: Vec<u8>,
    /// Wheel rotation not yet worth a notch: [vertical, horizontal].
    wheel: [i32; 2],
    /// The first half of a surrogate pair, waiting for the second.
    high_surrogate: Option<u16>,
    /// Keycodes bound to characters for Unicode input, least recently used first.
    spare: VecDeque<SpareKey>,
    /// Scancodes already reported as unknown (each is logged once).
    unknown: HashSet<Scancode>,
    /// The layout last applied (or being applied), to skip repeats.
    layout: Option<keymap::XkbLayout>,
    /// A running setxkbmap: its result arrives here.
    layout_job: Option<(mpsc::Receiver<Result<(), String>>, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct SpareKey {
    keycode: u8,
    /// What we bound it to (0: nothing yet).
    keysym: u32,
    /// When it was last typed.
    used: Option<Instant>,
}

/// A snapshot of GetKeyboardMapping and GetModifierMapping.
struct Mapping {
    per_keycode: usize,
    /// `per_keycode` keysyms for each keycode from `min_keycode`.
    keysyms: Vec<u32>,
    shift_mask: u16,
    level3_mask: u16,
    num_lock_mask: u16,
    /// Keycodes per modifier (8 rows of the modifier map).
    modifiers: Vec<Vec<u8>>,
}

/// Where a character is on the keyboard: keycode and core-mapping column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    keycode: u8,
    shift: bool,
    level3: bool,
    /// Caps Lock would flip Shift on this key (its two levels are a case pair).
    cased: bool,
}

impl XInput {
    pub fn new(conn: &RustConnection, root: u32, display: &XDisplay) -> Result<XInput, X11Error> {
        if conn.extension_information(xtest::X11_EXTENSION_NAME)?.is_none() {
            return Err(X11Error::MissingExtension {
                display: display.name.clone(),
                extension: "XTEST",
            });
        }
        let setup = conn.setup();
        Ok(XInput {
            display: display.clone(),
            root,
            min_keycode: setup.min_keycode,
            max_keycode: setup.max_keycode,
            mapping: None,
            pressed: Vec::new(),
            wheel: [0; 2],
            high_surrogate: None,
            spare: VecDeque::new(),
            unknown: HashSet::new(),
            layout: None,
            layout_job: None,
        })
    }

    /// Apply one event with XTEST; flushes the connection.
    pub fn handle(&mut self, conn: &RustConnection, event: InputEvent) -> Result<(), X11Error> {
        match event {
            InputEvent::Key { scancode, pressed } => {
                self.finish_layout(conn);
                self.key(conn, scancode, pressed)?;
            }
            InputEvent::Unicode { code_unit, pressed } => {
                self.finish_layout(conn);
                self.unicode(conn, code_unit, pressed)?;
            }
            InputEvent::PointerMove { x, y } => self.motion(conn, x, y)?,
            InputEvent::Button { button, pressed, x, y } => {
                self.motion(conn, x, y)?;
                let button = match button {
                    MouseButton::Left => 1,
                    MouseButton::Middle => 2,
                    MouseButton::Right => 3,
                    MouseButton::X1 => 8,
                    MouseButton::X2 => 9,
                };
                self.fake(conn, if pressed { BUTTON_PRESS } else { BUTTON_RELEASE }, button)?;
            }
            // The wheel turns where the pointer is: FreeRDP sends (0, 0) as a wheel event's position.
            InputEvent::Wheel { axis, delta, .. } => {
                // X wheel buttons: 4 up, 5 down, 6 left, 7 right.
                let (slot, positive, negative) = match axis {
                    WheelAxis::Vertical => (0, 4, 5),
                    WheelAxis::Horizontal => (1, 7, 6),
                };
                for button in wheel_clicks(&mut self.wheel[slot], i32::from(delta), positive, negative) {
                    self.fake(conn, BUTTON_PRESS, button)?;
                    self.fake(conn, BUTTON_RELEASE, button)?;
                }
            }
            InputEvent::LockState {
                caps_lock,
                num_lock,
                scroll_lock: _,
            } => {
                // Scroll Lock has no modifier bit in X: nothing reads it, so nothing to sync.
                self.finish_layout(conn);
                self.sync_locks(conn, caps_lock, num_lock)?;
            }
        }
        conn.flush()?;
        Ok(())
    }

    /// Make the X server's keyboard layout match the client's (Windows KLID → XKB layout/variant).
    ///
    /// This runs `setxkbmap` rather than sending XkbGetKeyboardByName ourselves: setxkbmap reads
    /// the server's own rules (evdev on Xorg and Xvfb, with its model and options), turns the
    /// layout into keymap components the way every desktop does, and records the result in the
    /// root window's `_XKB_RULES_NAMES` so desktop settings and `setxkbmap -query` agree. It comes
    /// with the X servers we run (x11-xkb-utils). It runs on a thread with a timeout, so this
    /// returns at once; the next key event waits for it (bounded) so keys are never typed under
    /// a half-changed layout.
    pub fn set_layout(&mut self, conn: &RustConnection, layout: KeyboardLayout) -> Result<(), X11Error> {
        let Some(xkb) = keymap::xkb_layout(layout) else {
            tracing::info!(layout = format_args!("{:#010x}", layout.0), display = %self.display.name, "no XKB layout known for this keyboard layout; keeping the server's keymap");
            return Ok(());
        };
        if self.layout == Some(xkb) {
            return Ok(());
        }
        self.finish_layout(conn);
        let mut command = Command::new("setxkbmap");
        // The evdev rules, always: our scancode table gives evdev keycodes, and Xorg without
        // input devices (the dummy driver's sessions) starts with the xfree86 keycodes instead,
        // where right Alt would be keypad Enter.
        command.args(["-display", &self.display.name, "-rules", "evdev", "-model", "pc105", "-layout", xkb.layout, "-variant", xkb.variant]);
        if let Some(path) = &self.display.xauthority {
            command.env("XAUTHORITY", path);
        }
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let child = command.spawn().map_err(|e| X11Error::Request(format!("cannot run setxkbmap: {e}")))?;
        let (done, result) = mpsc::channel();
        std::thread::Builder::new()
            .name("setxkbmap".into())
            .spawn(move || {
                let _ = done.send(wait_bounded(child, LAYOUT_TIMEOUT));
            })
            .map_err(X11Error::Io)?;
        tracing::debug!(layout = xkb.layout, variant = xkb.variant, display = %self.display.name, "setting keyboard layout");
        self.layout = Some(xkb);
        self.layout_job = Some((result, Instant::now() + LAYOUT_TIMEOUT + Duration::from_secs(1)));
        Ok(())
    }

    /// The server's keymap changed (MappingNotify / XKB new keyboard): drop cached mappings.
    pub fn keymap_changed(&mut self) {
        self.mapping = None;
    }

    /// Wait for a running setxkbmap (bounded), so what follows is typed under the new layout.
    fn finish_layout(&mut self, _conn: &RustConnection) {
        let Some((result, deadline)) = self.layout_job.take() else { return };
        let outcome = result
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| Err("setxkbmap did not report back".into()));
        // A new keymap replaces every key, our spare bindings included.
        self.mapping = None;
        self.spare.clear();
        if let Err(reason) = outcome {
            tracing::warn!(display = %self.display.name, layout = ?self.layout, %reason, "keyboard layout not applied");
            self.layout = None;
        }
    }

    fn fake(&self, conn: &RustConnection, kind: u8, detail: u8) -> Result<(), X11Error> {
        conn.xtest_fake_input(kind, detail, x11rb::CURRENT_TIME, self.root, 0, 0, 0)?;
        Ok(())
    }

    fn motion(&self, conn: &RustConnection, x: u16, y: u16) -> Result<(), X11Error> {
        let clamp = |v: u16| i16::try_from(v).unwrap_or(i16::MAX);
        // detail 0: absolute coordinates on `root`.
        conn.xtest_fake_input(MOTION, 0, x11rb::CURRENT_TIME, self.root, clamp(x), clamp(y), 0)?;
        Ok(())
    }

    fn key(&mut self, conn: &RustConnection, scancode: Scancode, pressed: bool) -> Result<(), X11Error> {
        if keymap::is_fake_shift(scancode) {
            return Ok(());
        }
        let Some(keycode) = keymap::scancode_to_keycode(scancode) else {
            if self.unknown.insert(scancode) {
                tracing::debug!(
                    code = format_args!("{:#04x}", scancode.code),
                    extended = scancode.extended,
                    "unknown scancode dropped"
                );
            }
            return Ok(());
        };
        self.key_code(conn, keycode, pressed)
    }

    fn key_code(&mut self, conn: &RustConnection, keycode: u8, pressed: bool) -> Result<(), X11Error> {
        if pressed {
            if !self.pressed.contains(&keycode) {
                self.pressed.push(keycode);
            }
        } else {
            self.pressed.retain(|&k| k != keycode);
        }
        self.fake(conn, if pressed { KEY_PRESS } else { KEY_RELEASE }, keycode)
    }

    fn mapping(&mut self, conn: &RustConnection) -> Result<&Mapping, X11Error> {
        if self.mapping.is_none() {
            let mapping = Mapping::read(conn, self.min_keycode, self.max_keycode)?;
            // Our spare bindings survive a change someone else made (or our own
            // ChangeKeyboardMapping's MappingNotify) only where the key still has our keysym.
            let min = self.min_keycode;
            for spare in &mut self.spare {
                if spare.keysym != 0 && mapping.syms(min, spare.keycode).first() != Some(&spare.keysym) {
                    spare.keysym = 0;
                }
            }
            self.mapping = Some(mapping);
        }
        Ok(self.mapping.as_ref().expect("just read"))
    }

    fn unicode(&mut self, conn: &RustConnection, unit: u16, pressed: bool) -> Result<(), X11Error> {
        // A press types the character (press and release); releases have nothing left to do.
        if !pressed {
            return Ok(());
        }
        let c = match unit {
            0xD800..=0xDBFF => {
                self.high_surrogate = Some(unit);
                return Ok(());
            }
            0xDC00..=0xDFFF => {
                let Some(high) = self.high_surrogate.take() else { return Ok(()) };
                char::decode_utf16([high, unit]).next().and_then(Result::ok)
            }
            _ => {
                self.high_surrogate = None;
                char::from_u32(u32::from(unit))
            }
        };
        let Some(keysym) = c.and_then(keymap::char_to_keysym) else {
            return Ok(());
        };
        let min = self.min_keycode;
        let place = self.mapping(conn)?.find(min, keysym);
        let place = match place {
            Some(place) => {
                // Typing a spare key's character again makes it the most recently used.
                if let Some(i) = self.spare.iter().position(|s| s.keycode == place.keycode) {
                    let mut spare = self.spare.remove(i).expect("found");
                    spare.used = Some(Instant::now());
                    self.spare.push_back(spare);
                }
                place
            }
            None => self.bind_spare(conn, keysym)?,
        };
        self.type_at(conn, place)
    }

    /// Bind `keysym` to the least recently used spare keycode.
    fn bind_spare(&mut self, conn: &RustConnection, keysym: u32) -> Result<Place, X11Error> {
        let min = self.min_keycode;
        if self.spare.len() < SPARE_KEYS {
            let (max, taken): (u8, Vec<u8>) = (self.max_keycode, self.spare.iter().map(|s| s.keycode).collect());
            let mapping = self.mapping(conn)?;
            // Empty keycodes from the top: the bottom of the range holds real keys.
            // Keys a client's scancode reaches (F24, Yen…) only when nothing else is left.
            let empty = |k: &u8| !taken.contains(k) && mapping.syms(min, *k).iter().all(|&s| s == 0);
            let reachable = scancode_keycodes();
            let free = (min..=max)
                .rev()
                .filter(empty)
                .find(|k| !reachable.contains(k))
                .or_else(|| (min..=max).rev().find(empty));
            if let Some(keycode) = free {
                self.spare.push_front(SpareKey {
                    keycode,
                    keysym: 0,
                    used: None,
                });
            }
        }
        // The same character again: its key is still bound.
        if let Some(i) = self.spare.iter().position(|s| s.keysym == keysym) {
            let mut spare = self.spare.remove(i).expect("found");
            spare.used = Some(Instant::now());
            self.spare.push_back(spare);
            return Ok(Place {
                keycode: spare.keycode,
                shift: false,
                level3: false,
                cased: false,
            });
        }
        let Some(mut spare) = self.spare.pop_front() else {
            return Err(X11Error::Request("no keycode is free to type a character the keymap lacks".into()));
        };
        if let Some(wait) = spare.used.and_then(|used| REUSE_AFTER.checked_sub(used.elapsed())) {
            std::thread::sleep(wait);
        }
        spare.used = Some(Instant::now());
        // Both levels carry the character, so Shift being held does not matter.
        conn.change_keyboard_mapping(1, spare.keycode, 2, &[keysym, keysym])?.check()?;
        spare.keysym = keysym;
        self.spare.push_back(spare);
        // Our change makes the server send MappingNotify; the cache now has it already.
        if let Some(mapping) = &mut self.mapping {
            let row = mapping.row_mut(min, spare.keycode);
            row.fill(0);
            row[0] = keysym;
            if row.len() > 1 {
                row[1] = keysym;
            }
        }
        Ok(Place {
            keycode: spare.keycode,
            shift: false,
            level3: false,
            cased: false,
        })
    }

    /// Type the key at `place` with exactly the modifiers it needs, then restore the ones held.
    fn type_at(&mut self, conn: &RustConnection, place: Place) -> Result<(), X11Error> {
        let state = u16::from(conn.query_pointer(self.root)?.reply()?.mask);
        let min = self.min_keycode;
        let mapping = self.mapping(conn)?;
        let (shift_mask, level3_mask) = (mapping.shift_mask, mapping.level3_mask);
        let shift_keys = mapping.modifier_keys(shift_mask);
        let level3_keys = mapping.modifier_keys(level3_mask);
        let shift_key = mapping.keycode_of(min, XK_SHIFT_L).or_else(|| mapping.keycode_of(min, XK_SHIFT_R));
        let level3_key = mapping.keycode_of(min, XK_ISO_LEVEL3_SHIFT);

        let locked = state & u16::from(ModMask::LOCK) != 0;
        let want_shift = place.shift != (place.cased && locked);
        let have_shift = state & shift_mask != 0;
        let have_level3 = level3_mask != 0 && state & level3_mask != 0;

        let mut pressed_now = Vec::new();
        let mut lifted = Vec::new();
        let mut adjust = |want: bool, have: bool, held: &[u8], key: Option<u8>| {
            if want && !have {
                pressed_now.extend(key);
            } else if !want && have {
                lifted.extend(self.pressed.iter().copied().filter(|k| held.contains(k)));
            }
        };
        adjust(want_shift, have_shift, &shift_keys, shift_key);
        adjust(place.level3, have_level3, &level3_keys, level3_key);

        for &k in &lifted {
            self.fake(conn, KEY_RELEASE, k)?;
        }
        for &k in &pressed_now {
            self.fake(conn, KEY_PRESS, k)?;
        }
        self.fake(conn, KEY_PRESS, place.keycode)?;
        self.fake(conn, KEY_RELEASE, place.keycode)?;
        for &k in pressed_now.iter().rev() {
            self.fake(conn, KEY_RELEASE, k)?;
        }
        for &k in &lifted {
            self.fake(conn, KEY_PRESS, k)?;
        }
        Ok(())
    }

    fn sync_locks(&mut self, conn: &RustConnection, caps_lock: bool, num_lock: bool) -> Result<(), X11Error> {
        let state = u16::from(conn.query_pointer(self.root)?.reply()?.mask);
        let min = self.min_keycode;
        let mapping = self.mapping(conn)?;
        let num_lock_mask = mapping.num_lock_mask;
        // evdev keycodes of Caps Lock and Num Lock, for keymaps that do not name them.
        let caps_key = mapping.keycode_of(min, XK_CAPS_LOCK).unwrap_or(66);
        let num_key = mapping.keycode_of(min, XK_NUM_LOCK).unwrap_or(77);
        let caps_on = state & u16::from(ModMask::LOCK) != 0;
        let num_on = num_lock_mask != 0 && state & num_lock_mask != 0;
        if caps_on != caps_lock {
            self.fake(conn, KEY_PRESS, caps_key)?;
            self.fake(conn, KEY_RELEASE, caps_key)?;
        }
        if num_lock_mask != 0 && num_on != num_lock {
            self.fake(conn, KEY_PRESS, num_key)?;
            self.fake(conn, KEY_RELEASE, num_key)?;
        }
        Ok(())
    }
}

/// Every keycode some scancode maps to.
fn scancode_keycodes() -> Vec<u8> {
    (0..=u8::MAX)
        .flat_map(|code| [Scancode::new(code, false), Scancode::new(code, true)])
        .filter_map(keymap::scancode_to_keycode)
        .collect()
}

/// Add `delta` to the axis' remainder and return the buttons to click, one per whole notch.
/// A change of direction drops the old remainder, so a reversal acts at once.
fn wheel_clicks(remainder: &mut i32, delta: i32, positive: u8, negative: u8) -> Vec<u8> {
    if delta.signum() * remainder.signum() < 0 {
        *remainder = 0;
    }
    *remainder += delta;
    let notches = *remainder / NOTCH;
    *remainder -= notches * NOTCH;
    let button = if notches > 0 { positive } else { negative };
    vec![button; notches.unsigned_abs() as usize]
}

/// Wait for setxkbmap to exit, killing it after `limit`.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                return Err(format!("setxkbmap {status}: {}", stderr.trim()));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("setxkbmap took longer than {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl Mapping {
    fn read(conn: &RustConnection, min: u8, max: u8) -> Result<Mapping, X11Error> {
        let count = max - min + 1;
        let keyboard = conn.get_keyboard_mapping(min, count)?;
        let modifiers = conn.get_modifier_mapping()?;
        let keyboard = keyboard.reply()?;
        let modifiers = modifiers.reply()?;
        let per_mod = usize::from(modifiers.keycodes_per_modifier());
        let rows: Vec<Vec<u8>> = (0..8)
            .map(|m| {
                modifiers.keycodes[m * per_mod..(m + 1) * per_mod]
                    .iter()
                    .copied()
                    .filter(|&k| k != 0)
                    .collect()
            })
            .collect();
        let mut mapping = Mapping {
            per_keycode: usize::from(keyboard.keysyms_per_keycode),
            keysyms: keyboard.keysyms,
            shift_mask: u16::from(ModMask::SHIFT),
            level3_mask: 0,
            num_lock_mask: 0,
            modifiers: rows,
        };
        mapping.level3_mask = mapping.mask_of(min, XK_ISO_LEVEL3_SHIFT);
        mapping.num_lock_mask = mapping.mask_of(min, XK_NUM_LOCK);
        Ok(mapping)
    }

    fn syms(&self, min: u8, keycode: u8) -> &[u32] {
        let start = usize::from(keycode.wrapping_sub(min)) * self.per_keycode;
        self.keysyms.get(start..start + self.per_keycode).unwrap_or(&[])
    }

    fn row_mut(&mut self, min: u8, keycode: u8) -> &mut [u32] {
        let start = usize::from(keycode - min) * self.per_keycode;
        &mut self.keysyms[start..start + self.per_keycode]
    }

    fn keycodes(&self, min: u8) -> impl Iterator<Item = u8> + '_ {
        (0..self.keysyms.len() / self.per_keycode.max(1)).map(move |i| min + i as u8)
    }

    /// The first keycode whose first keysym is `keysym`.
    fn keycode_of(&self, min: u8, keysym: u32) -> Option<u8> {
        self.keycodes(min).find(|&k| self.syms(min, k).first() == Some(&keysym))
    }

    /// The modifier bit a key with `keysym` sets (0 if none does).
    fn mask_of(&self, min: u8, keysym: u32) -> u16 {
        let keys: Vec<u8> = self.keycodes(min).filter(|&k| self.syms(min, k).first() == Some(&keysym)).collect();
        (0..8)
            .filter(|&m| self.modifiers[m].iter().any(|k| keys.contains(k)))
            .fold(0, |mask, m| mask | 1 << m)
    }

    /// Keycodes that set any modifier in `mask`.
    fn modifier_keys(&self, mask: u16) -> Vec<u8> {
        (0..8)
            .filter(|&m| mask & (1 << m) != 0)
            .flat_map(|m| self.modifiers[m].iter().copied())
            .collect()
    }

    /// Where `keysym` is typed: the core mapping's columns are group 1 level 1 and 2, group 2
    /// level 1 and 2, then group 1 level 3 and 4 (how XKB presents itself to core clients). We
    /// use group 1 only: reaching group 2 means switching groups, which layouts do differently.
    fn find(&self, min: u8, keysym: u32) -> Option<Place> {
        for (column, shift, level3) in [(0, false, false), (1, true, false), (4, false, true), (5, true, true)] {
            if level3 && self.level3_mask == 0 {
                break;
            }
            for keycode in self.keycodes(min) {
                let syms = self.syms(min, keycode);
                if syms.get(column) == Some(&keysym) {
                    let pair = if level3 {
                        (syms.get(4), syms.get(5))
                    } else {
                        (syms.first(), syms.get(1))
                    };
                    return Some(Place {
                        keycode,
                        shift,
                        level3,
                        cased: is_case_pair(pair),
                    });
                }
            }
        }
        None
    }
}

/// The two levels of a key are the lower and upper case of one letter (Caps Lock shifts it).
fn is_case_pair((lower, upper): (Option<&u32>, Option<&u32>)) -> bool {
    let (Some(&lower), Some(&upper)) = (lower, upper) else { return false };
    let (Some(lower), Some(upper)) = (keymap::keysym_to_char(lower), keymap::keysym_to_char(upper)) else {
        return false;
    };
    lower != upper && lower.to_uppercase().eq(std::iter::once(upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_emits_whole_notches_and_keeps_the_rest() {
        let mut rest = 0;
        assert_eq!(wheel_clicks(&mut rest, 120, 4, 5), vec![4]);
        assert_eq!(rest, 0);
        assert_eq!(wheel_clicks(&mut rest, -360, 4, 5), vec![5, 5, 5]);
        // A touchpad's small steps add up.
        assert_eq!(wheel_clicks(&mut rest, 50, 4, 5), Vec::<u8>::new());
        assert_eq!(wheel_clicks(&mut rest, 50, 4, 5), Vec::<u8>::new());
        assert_eq!(wheel_clicks(&mut rest, 50, 4, 5), vec![4]);
        assert_eq!(rest, 30);
        // Reversing drops what was left of the other direction.
        assert_eq!(wheel_clicks(&mut rest, -100, 4, 5), Vec::<u8>::new());
        assert_eq!(rest, -100);
        assert_eq!(wheel_clicks(&mut rest, -20, 4, 5), vec![5]);
        assert_eq!(rest, 0);
    }

    fn mapping(rows: &[[u32; 6]]) -> Mapping {
        Mapping {
            per_keycode: 6,
            keysyms: rows.iter().flatten().copied().collect(),
            shift_mask: 1,
            level3_mask: 0x80,
            num_lock_mask: 0x10,
            modifiers: vec![vec![8]; 8],
        }
    }

    #[test]
    fn characters_are_found_at_their_level() {
        // keycode 8: q Q q Q @ Ω (German q), 9: 2 " 2 " ² ⅛, 10: nothing.
        let m = mapping(&[[0x71, 0x51, 0x71, 0x51, 0x40, 0x7d9], [0x32, 0x22, 0x32, 0x22, 0xb2, 0xac3], [0; 6]]);
        let at = |keycode, shift, level3, cased| {
            Some(Place {
                keycode,
                shift,
                level3,
                cased,
            })
        };
        assert_eq!(m.find(8, 0x71), at(8, false, false, true));
        assert_eq!(m.find(8, 0x51), at(8, true, false, true));
        assert_eq!(m.find(8, 0x40), at(8, false, true, false));
        assert_eq!(m.find(8, 0x22), at(9, true, false, false));
        assert_eq!(m.find(8, 0x20ac), None);
        let mut no_level3 = m;
        no_level3.level3_mask = 0;
        assert_eq!(no_level3.find(8, 0x40), None);
    }
}
