//! US keyboard layout: which set-1 scancode (and whether Shift) types a character.
//!
//! Tests type through scancodes rather than Unicode events because that is what stock clients
//! send for ordinary typing, so the host's layout handling is what gets exercised.

/// Left Shift.
pub const SHIFT: u8 = 0x2A;
pub const ENTER: u8 = 0x1C;
pub const BACKSPACE: u8 = 0x0E;
pub const TAB: u8 = 0x0F;
pub const ESCAPE: u8 = 0x01;
pub const LEFT_CTRL: u8 = 0x1D;
pub const LEFT_ALT: u8 = 0x38;
pub const SPACE: u8 = 0x39;

/// Keys in the order of the US layout's rows: (scancode, unshifted, shifted).
const KEYS: &[(u8, char, char)] = &[
    (0x29, '`', '~'),
    (0x02, '1', '!'),
    (0x03, '2', '@'),
    (0x04, '3', '#'),
    (0x05, '4', '$'),
    (0x06, '5', '%'),
    (0x07, '6', '^'),
    (0x08, '7', '&'),
    (0x09, '8', '*'),
    (0x0A, '9', '('),
    (0x0B, '0', ')'),
    (0x0C, '-', '_'),
    (0x0D, '=', '+'),
    (0x10, 'q', 'Q'),
    (0x11, 'w', 'W'),
    (0x12, 'e', 'E'),
    (0x13, 'r', 'R'),
    (0x14, 't', 'T'),
    (0x15, 'y', 'Y'),
    (0x16, 'u', 'U'),
    (0x17, 'i', 'I'),
    (0x18, 'o', 'O'),
    (0x19, 'p', 'P'),
    (0x1A, '[', '{'),
    (0x1B, ']', '}'),
    (0x2B, '\\', '|'),
    (0x1E, 'a', 'A'),
    (0x1F, 's', 'S'),
    (0x20, 'd', 'D'),
    (0x21, 'f', 'F'),
    (0x22, 'g', 'G'),
    (0x23, 'h', 'H'),
    (0x24, 'j', 'J'),
    (0x25, 'k', 'K'),
    (0x26, 'l', 'L'),
    (0x27, ';', ':'),
    (0x28, '\'', '"'),
    (0x2C, 'z', 'Z'),
    (0x2D, 'x', 'X'),
    (0x2E, 'c', 'C'),
    (0x2F, 'v', 'V'),
    (0x30, 'b', 'B'),
    (0x31, 'n', 'N'),
    (0x32, 'm', 'M'),
    (0x33, ',', '<'),
    (0x34, '.', '>'),
    (0x35, '/', '?'),
];

/// The scancode that types `ch` on a US keyboard and whether Shift must be held, or `None` if
/// the US layout has no key for it (callers then fall back to a Unicode key event).
pub fn us_scancode(ch: char) -> Option<(u8, bool)> {
    match ch {
        ' ' => return Some((SPACE, false)),
        '\n' | '\r' => return Some((ENTER, false)),
        '\t' => return Some((TAB, false)),
        '\u{8}' => return Some((BACKSPACE, false)),
        '\u{1b}' => return Some((ESCAPE, false)),
        _ => {}
    }
    KEYS.iter().find_map(|&(code, plain, shifted)| {
        if ch == plain {
            Some((code, false))
        } else if ch == shifted {
            Some((code, true))
        } else {
            None
        }
    })
}

/// One key transition, as [`Client::type_text`](crate::Client::type_text) sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStroke {
    Scancode { code: u8, pressed: bool },
    Unicode { unit: u16, pressed: bool },
}

/// The key transitions that type `text`: press+release per character, Shift around shifted
/// characters, Unicode events (per UTF-16 unit) for characters the US layout lacks.
pub fn strokes_for(text: &str) -> Vec<KeyStroke> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for ch in text.chars() {
        match us_scancode(ch) {
            Some((code, shift)) => {
                if shift {
                    out.push(KeyStroke::Scancode {
                        code: SHIFT,
                        pressed: true,
                    });
                }
                out.push(KeyStroke::Scancode {
                    code,
                    pressed: true,
                });
                out.push(KeyStroke::Scancode {
                    code,
                    pressed: false,
                });
                if shift {
                    out.push(KeyStroke::Scancode {
                        code: SHIFT,
                        pressed: false,
                    });
                }
            }
            None => {
                let mut units = [0u16; 2];
                for &unit in ch.encode_utf16(&mut units).iter() {
                    out.push(KeyStroke::Unicode {
                        unit,
                        pressed: true,
                    });
                    out.push(KeyStroke::Unicode {
                        unit,
                        pressed: false,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_punctuation_map_to_us_scancodes() {
        assert_eq!(us_scancode('a'), Some((0x1E, false)));
        assert_eq!(us_scancode('A'), Some((0x1E, true)));
        assert_eq!(us_scancode('z'), Some((0x2C, false)));
        assert_eq!(us_scancode('q'), Some((0x10, false)));
        assert_eq!(us_scancode('1'), Some((0x02, false)));
        assert_eq!(us_scancode('!'), Some((0x02, true)));
        assert_eq!(us_scancode('0'), Some((0x0B, false)));
        assert_eq!(us_scancode(')'), Some((0x0B, true)));
        assert_eq!(us_scancode('|'), Some((0x2B, true)));
        assert_eq!(us_scancode('"'), Some((0x28, true)));
        assert_eq!(us_scancode('~'), Some((0x29, true)));
        assert_eq!(us_scancode('/'), Some((0x35, false)));
        assert_eq!(us_scancode('?'), Some((0x35, true)));
        assert_eq!(us_scancode(' '), Some((0x39, false)));
        assert_eq!(us_scancode('\n'), Some((ENTER, false)));
        assert_eq!(us_scancode('é'), None);
    }

    #[test]
    fn every_printable_ascii_character_has_exactly_one_key() {
        for ch in (0x20u8..0x7F).map(char::from) {
            let hits =
                KEYS.iter().filter(|k| k.1 == ch || k.2 == ch).count() + usize::from(ch == ' ');
            assert_eq!(hits, 1, "{ch:?}");
            assert!(us_scancode(ch).is_some(), "{ch:?}");
        }
        let mut codes: Vec<u8> = KEYS.iter().map(|k| k.0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), KEYS.len(), "a scancode is listed twice");
    }

    #[test]
    fn strokes_wrap_shifted_characters_in_shift_and_end_lines_with_enter() {
        use KeyStroke::Scancode as S;
        assert_eq!(
            strokes_for("aB\n"),
            vec![
                S {
                    code: 0x1E,
                    pressed: true
                },
                S {
                    code: 0x1E,
                    pressed: false
                },
                S {
                    code: SHIFT,
                    pressed: true
                },
                S {
                    code: 0x30,
                    pressed: true
                },
                S {
                    code: 0x30,
                    pressed: false
                },
                S {
                    code: SHIFT,
                    pressed: false
                },
                S {
                    code: ENTER,
                    pressed: true
                },
                S {
                    code: ENTER,
                    pressed: false
                },
            ]
        );
    }

    #[test]
    fn characters_outside_the_layout_become_unicode_events_per_utf16_unit() {
        use KeyStroke::Unicode as U;
        assert_eq!(
            strokes_for("é"),
            vec![
                U {
                    unit: 0xE9,
                    pressed: true
                },
                U {
                    unit: 0xE9,
                    pressed: false
                }
            ]
        );
        // U+1F600 needs a surrogate pair.
        assert_eq!(
            strokes_for("\u{1F600}"),
            vec![
                U {
                    unit: 0xD83D,
                    pressed: true
                },
                U {
                    unit: 0xD83D,
                    pressed: false
                },
                U {
                    unit: 0xDE00,
                    pressed: true
                },
                U {
                    unit: 0xDE00,
                    pressed: false
                },
            ]
        );
    }
}
