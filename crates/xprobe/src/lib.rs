//! Small real X clients for tests and benchmarks of X desktops.
//!
//! - [`report`]: the lines `rdhost-xrecorder` prints, and their parser.
//! - [`keys`]: what a key event types under the server's keymap, as an X client computes it.
//! - [`animate`]: the frames `rdhost-xanimate` draws (every pixel changes every frame).
//! - [`xvfb`]: a private Xvfb for a test, killed when dropped.

pub mod animate;
pub mod keys;
pub mod report;
pub mod xvfb;

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Make SIGTERM and SIGINT set a flag the programs' loops check ([`stop_requested`]), so they
/// exit through their normal path (flushed output, windows destroyed).
pub fn catch_termination() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// `WxH+X+Y` (or `WxH`, at 0,0), as X programs take `-geometry`.
pub fn parse_geometry(text: &str) -> Option<(u16, u16, i16, i16)> {
    let (size, position) = match text.find('+') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (w, h) = size.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    let (x, y) = match position {
        Some(p) => {
            let (x, y) = p.split_once('+')?;
            (x.parse().ok()?, y.parse().ok()?)
        }
        None => (0, 0),
    };
    (w > 0 && h > 0).then_some((w, h, x, y))
}

/// Wait until the connection has something to read or `timeout` passes (event loops that also
/// watch [`stop_requested`]).
pub fn wait_readable(conn: &x11rb::rust_connection::RustConnection, timeout: std::time::Duration) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: conn.stream().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, ms) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn geometries() {
        assert_eq!(super::parse_geometry("640x480+10+20"), Some((640, 480, 10, 20)));
        assert_eq!(super::parse_geometry("640x480"), Some((640, 480, 0, 0)));
        assert_eq!(super::parse_geometry("0x480"), None);
        assert_eq!(super::parse_geometry("640x480+10"), None);
        assert_eq!(super::parse_geometry("big"), None);
    }
}
