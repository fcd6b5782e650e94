//! X desktops: a session's own X server ([`server`]), or an X display that already exists
//! (attach), captured with DAMAGE + MIT-SHM + XFIXES and driven with XTEST.
//!
//! Who owns what:
//! - `mod.rs` (this file): [`X11Desktop`], the [`Desktop`](crate::Desktop) for both cases.
//! - `display`: connecting to a display with an explicit auth file.
//! - `capture`: damage → shared-memory reads → the canvas; the cursor image.
//! - `randr`: resizing the screen on request.
//! - `input`, `keymap`: XTEST input, scancodes → X keycodes, layouts, Unicode keys.
//! - `server`: starting a session's X server and session program, and ending every process.
//! - `xauth`: Xauthority files (the session server's private cookie).

pub mod xauth;

use std::path::PathBuf;

/// An X display to capture and drive: its name (":5") and the Xauthority file that lets us in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XDisplay {
    /// The display name as `DISPLAY` has it: ":5", ":5.0". Only local displays.
    pub name: String,
    /// `None`: the display needs no cookie (or it is in the host's own `XAUTHORITY`).
    pub xauthority: Option<PathBuf>,
}

impl XDisplay {
    /// The display number in ":N" or ":N.S" (local displays only).
    pub fn number(&self) -> Option<u32> {
        let rest = self
            .name
            .strip_prefix(':')
            .or_else(|| self.name.strip_prefix("unix:"))?;
        rest.split('.').next()?.parse().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    #[error("cannot connect to X display {display}: {reason}")]
    Connect { display: String, reason: String },
    #[error("X display {display} lacks the {extension} extension, which rdhost needs")]
    MissingExtension {
        display: String,
        extension: &'static str,
    },
    #[error("X request failed: {0}")]
    Request(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<x11rb::errors::ConnectionError> for X11Error {
    fn from(e: x11rb::errors::ConnectionError) -> Self {
        X11Error::Request(e.to_string())
    }
}
impl From<x11rb::errors::ReplyError> for X11Error {
    fn from(e: x11rb::errors::ReplyError) -> Self {
        X11Error::Request(e.to_string())
    }
}
impl From<x11rb::errors::ReplyOrIdError> for X11Error {
    fn from(e: x11rb::errors::ReplyOrIdError) -> Self {
        X11Error::Request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_numbers() {
        let d = |n: &str| {
            XDisplay {
                name: n.into(),
                xauthority: None,
            }
            .number()
        };
        assert_eq!(d(":5"), Some(5));
        assert_eq!(d(":12.0"), Some(12));
        assert_eq!(d("unix:3"), Some(3));
        assert_eq!(d("host:3"), None);
        assert_eq!(d(""), None);
    }
}
