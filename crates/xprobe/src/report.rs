//! What `rdhost-xrecorder` prints: one line per event, fields `name=value` separated by single
//! spaces, numbers decimal except `window`, `keysym`, `state` and `color` (hex, `0x` prefix).
//! Coordinates: `x`/`y` relative to the recorder's window, `root_x`/`root_y` on the screen.
//!
//! ```text
//! ready window=0x200001 x=0 y=0 w=1024 h=768 color=0x3366cc
//! key-press keycode=38 keysym=0x61 state=0x0 color=0xcc6633 text=a
//! key-release keycode=38 keysym=0x61 state=0x0 text=a
//! button-press button=2 x=100 y=200 root_x=100 root_y=200 state=0x0
//! button-release button=2 x=100 y=200 root_x=100 root_y=200 state=0x200
//! motion x=100 y=200 root_x=100 root_y=200 state=0x0
//! mapping-notify
//! ```
//!
//! `color` on `key-press` is the window's colour after that press toggled it. `text` is always
//! the last field: what the key types under the keymap and modifiers in force (empty for keys
//! that type nothing), with `\` written `\\` and whitespace and control characters written
//! `\u{hex}` (a space is `\u{20}`), so a line never ends in blanks.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Ready {
        window: u32,
        x: i16,
        y: i16,
        width: u16,
        height: u16,
        color: u32,
    },
    Key {
        pressed: bool,
        keycode: u8,
        keysym: u32,
        state: u16,
        color: Option<u32>,
        text: String,
    },
    Button {
        pressed: bool,
        button: u8,
        x: i16,
        y: i16,
        root_x: i16,
        root_y: i16,
        state: u16,
    },
    Motion {
        x: i16,
        y: i16,
        root_x: i16,
        root_y: i16,
        state: u16,
    },
    /// The keyboard mapping changed (and the recorder re-read it).
    MappingNotify,
    /// The screen (root window) took a new size; a full-screen recorder window follows it.
    Screen { width: u16, height: u16 },
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Ready {
                window,
                x,
                y,
                width,
                height,
                color,
            } => {
                write!(f, "ready window={window:#x} x={x} y={y} w={width} h={height} color={color:#08x}")
            }
            Report::Key {
                pressed,
                keycode,
                keysym,
                state,
                color,
                text,
            } => {
                let kind = if *pressed { "key-press" } else { "key-release" };
                write!(f, "{kind} keycode={keycode} keysym={keysym:#x} state={state:#x}")?;
                if let Some(color) = color {
                    write!(f, " color={color:#08x}")?;
                }
                write!(f, " text={}", escape(text))
            }
            Report::Button {
                pressed,
                button,
                x,
                y,
                root_x,
                root_y,
                state,
            } => {
                let kind = if *pressed { "button-press" } else { "button-release" };
                write!(f, "{kind} button={button} x={x} y={y} root_x={root_x} root_y={root_y} state={state:#x}")
            }
            Report::Motion { x, y, root_x, root_y, state } => {
                write!(f, "motion x={x} y={y} root_x={root_x} root_y={root_y} state={state:#x}")
            }
            Report::MappingNotify => write!(f, "mapping-notify"),
            Report::Screen { width, height } => write!(f, "screen w={width} h={height}"),
        }
    }
}

pub fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_whitespace() || c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

pub fn unescape(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('\\') {
            out.push('\\');
            rest = after;
        } else {
            let body = rest.strip_prefix("u{")?;
            let end = body.find('}')?;
            out.push(char::from_u32(u32::from_str_radix(&body[..end], 16).ok()?)?);
            rest = &body[end + 1..];
        }
    }
    out.push_str(rest);
    Some(out)
}

impl Report {
    /// Read one line as the recorder printed it; `None` for anything else.
    pub fn parse(line: &str) -> Option<Report> {
        let line = line.trim_end_matches(['\n', '\r']);
        let (head, text) = match line.split_once(" text=") {
            Some((head, text)) => (head, Some(unescape(text)?)),
            None => (line, None),
        };
        let mut words = head.split(' ');
        let kind = words.next()?;
        let fields: Vec<(&str, &str)> = words.map(|w| w.split_once('=')).collect::<Option<_>>()?;
        let get = |name: &str| fields.iter().find(|f| f.0 == name).map(|f| f.1);
        fn num<T: TryFrom<i64>>(v: Option<&str>) -> Option<T> {
            let v = v?;
            let n = match v.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16).ok()?,
                None => v.parse().ok()?,
            };
            T::try_from(n).ok()
        }
        Some(match kind {
            "ready" => Report::Ready {
                window: num(get("window"))?,
                x: num(get("x"))?,
                y: num(get("y"))?,
                width: num(get("w"))?,
                height: num(get("h"))?,
                color: num(get("color"))?,
            },
            "key-press" | "key-release" => Report::Key {
                pressed: kind == "key-press",
                keycode: num(get("keycode"))?,
                keysym: num(get("keysym"))?,
                state: num(get("state"))?,
                color: get("color").map(|c| num(Some(c))).map_or(Some(None), |c| c.map(Some))?,
                text: text?,
            },
            "button-press" | "button-release" => Report::Button {
                pressed: kind == "button-press",
                button: num(get("button"))?,
                x: num(get("x"))?,
                y: num(get("y"))?,
                root_x: num(get("root_x"))?,
                root_y: num(get("root_y"))?,
                state: num(get("state"))?,
            },
            "motion" => Report::Motion {
                x: num(get("x"))?,
                y: num(get("y"))?,
                root_x: num(get("root_x"))?,
                root_y: num(get("root_y"))?,
                state: num(get("state"))?,
            },
            "mapping-notify" => Report::MappingNotify,
            "screen" => Report::Screen { width: num(get("w"))?, height: num(get("h"))? },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back() {
        let reports = [
            Report::Ready {
                window: 0x200001,
                x: 0,
                y: 0,
                width: 1024,
                height: 768,
                color: 0x3366cc,
            },
            Report::Key {
                pressed: true,
                keycode: 38,
                keysym: 0x61,
                state: 0,
                color: Some(0xcc6633),
                text: "a".into(),
            },
            Report::Key {
                pressed: false,
                keycode: 65,
                keysym: 0x20,
                state: 1,
                color: None,
                text: " ".into(),
            },
            Report::Key {
                pressed: true,
                keycode: 50,
                keysym: 0xffe1,
                state: 0,
                color: Some(0x3366cc),
                text: String::new(),
            },
            Report::Key {
                pressed: true,
                keycode: 51,
                keysym: 0x5c,
                state: 0,
                color: Some(0x3366cc),
                text: "\\".into(),
            },
            Report::Key {
                pressed: true,
                keycode: 36,
                keysym: 0xff0d,
                state: 0,
                color: Some(0x3366cc),
                text: "\r".into(),
            },
            Report::Key {
                pressed: true,
                keycode: 255,
                keysym: 0x20ac,
                state: 0,
                color: Some(0x3366cc),
                text: "€ x=1".into(),
            },
            Report::Button {
                pressed: true,
                button: 2,
                x: 100,
                y: -3,
                root_x: 100,
                root_y: 200,
                state: 0x100,
            },
            Report::Motion {
                x: 1,
                y: 2,
                root_x: 3,
                root_y: 4,
                state: 0,
            },
            Report::MappingNotify,
        ];
        for r in reports {
            let line = r.to_string();
            assert!(!line.ends_with(' ') && !line.contains('\r'), "{line:?}");
            assert_eq!(Report::parse(&line), Some(r), "{line}");
        }
        assert_eq!(Report::parse("key-press keycode=38"), None);
        assert_eq!(Report::parse("hello"), None);
        assert_eq!(Report::to_string(&Report::MappingNotify), "mapping-notify");
        assert_eq!(escape(" a\u{7f}"), "\\u{20}a\\u{7f}");
    }
}
