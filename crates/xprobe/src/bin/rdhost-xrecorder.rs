//! rdhost-xrecorder: a window that reports every input event it gets, one line each on stdout
//! (format in `rdhost_xprobe::report`), and toggles its colour on every key press so a capture
//! sees each key arrive.
//!
//! Usage: rdhost-xrecorder [--geometry WxH+X+Y] [--override-redirect] [--title TEXT]
//! The display is `DISPLAY` (with `XAUTHORITY`). Defaults: the whole screen at 0,0.
//! Colours: 0x3366cc (blue, at start and after an even number of presses) and 0xcc6633 (orange).

use std::io::Write;
use std::time::Duration;

use rdhost_xprobe::keys::KeyboardMap;
use rdhost_xprobe::report::Report;
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, CreateWindowAux, EventMask, InputFocus, Mapping, PropMode, WindowClass,
};
use x11rb::wrapper::ConnectionExt as _;

const COLORS: [u32; 2] = [0x3366cc, 0xcc6633];

fn main() {
    if let Err(e) = run() {
        eprintln!("rdhost-xrecorder: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut geometry = None;
    let mut override_redirect = false;
    let mut title = String::from("rdhost-xrecorder");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--geometry" => {
                let g = args.next().ok_or("--geometry needs WxH+X+Y")?;
                geometry = Some(rdhost_xprobe::parse_geometry(&g).ok_or_else(|| format!("bad geometry {g:?}"))?);
            }
            "--override-redirect" => override_redirect = true,
            "--title" => title = args.next().ok_or("--title needs a value")?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    rdhost_xprobe::catch_termination();
    let (conn, screen) = x11rb::connect(None)?;
    let root = &conn.setup().roots[screen];
    let full_screen = geometry.is_none();
    let (width, height, x, y) = geometry.unwrap_or((root.width_in_pixels, root.height_in_pixels, 0, 0));
    let root_window = root.root;
    // Screen size changes are reported; a full-screen window follows them, like a maximised app.
    conn.change_window_attributes(root_window, &ChangeWindowAttributesAux::new().event_mask(EventMask::STRUCTURE_NOTIFY))?;
    let mut screen_size = (root.width_in_pixels, root.height_in_pixels);

    let window = conn.generate_id()?;
    let events = EventMask::KEY_PRESS
        | EventMask::KEY_RELEASE
        | EventMask::BUTTON_PRESS
        | EventMask::BUTTON_RELEASE
        | EventMask::POINTER_MOTION
        | EventMask::STRUCTURE_NOTIFY;
    let aux = CreateWindowAux::new()
        .background_pixel(COLORS[0])
        .override_redirect(u32::from(override_redirect))
        .event_mask(events);
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        window,
        root.root,
        x,
        y,
        width,
        height,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &aux,
    )?;
    conn.change_property8(PropMode::REPLACE, window, AtomEnum::WM_NAME, AtomEnum::STRING, title.as_bytes())?;
    let protocols = conn.intern_atom(false, b"WM_PROTOCOLS")?.reply()?.atom;
    let delete = conn.intern_atom(false, b"WM_DELETE_WINDOW")?.reply()?.atom;
    conn.change_property32(PropMode::REPLACE, window, protocols, AtomEnum::ATOM, &[delete])?;
    conn.map_window(window)?;
    conn.flush()?;

    let mut keymap = KeyboardMap::read(&conn)?;
    let mut color = 0usize;
    let out = std::io::stdout();
    let print = |report: Report| -> std::io::Result<()> {
        let mut out = out.lock();
        writeln!(out, "{report}")?;
        out.flush()
    };
    loop {
        if rdhost_xprobe::stop_requested() {
            break;
        }
        let Some(event) = conn.poll_for_event()? else {
            rdhost_xprobe::wait_readable(&conn, Duration::from_millis(100));
            continue;
        };
        match event {
            Event::MapNotify(e) if e.window == window => {
                // Keys go to the focus window whatever the pointer does (no window manager here
                // to give us the focus).
                conn.set_input_focus(InputFocus::PARENT, window, x11rb::CURRENT_TIME)?;
                conn.sync()?;
                print(Report::Ready {
                    window,
                    x,
                    y,
                    width,
                    height,
                    color: COLORS[color],
                })?;
            }
            Event::ConfigureNotify(e) if e.window == root_window && (e.width, e.height) != screen_size => {
                screen_size = (e.width, e.height);
                if full_screen {
                    conn.configure_window(window, &x11rb::protocol::xproto::ConfigureWindowAux::new().width(u32::from(e.width)).height(u32::from(e.height)))?;
                    conn.flush()?;
                }
                print(Report::Screen { width: e.width, height: e.height })?;
            }
            Event::MappingNotify(e) if e.request != Mapping::POINTER => {
                keymap = KeyboardMap::read(&conn)?;
                print(Report::MappingNotify)?;
            }
            Event::KeyPress(e) => {
                color ^= 1;
                conn.change_window_attributes(window, &ChangeWindowAttributesAux::new().background_pixel(COLORS[color]))?;
                conn.clear_area(false, window, 0, 0, 0, 0)?;
                conn.flush()?;
                let (keysym, text) = keymap.lookup(e.detail, u16::from(e.state));
                print(Report::Key {
                    pressed: true,
                    keycode: e.detail,
                    keysym,
                    state: e.state.into(),
                    color: Some(COLORS[color]),
                    text,
                })?;
            }
            Event::KeyRelease(e) => {
                let (keysym, text) = keymap.lookup(e.detail, u16::from(e.state));
                print(Report::Key {
                    pressed: false,
                    keycode: e.detail,
                    keysym,
                    state: e.state.into(),
                    color: None,
                    text,
                })?;
            }
            Event::ButtonPress(e) | Event::ButtonRelease(e) => print(Report::Button {
                pressed: e.response_type & 0x7f == x11rb::protocol::xproto::BUTTON_PRESS_EVENT,
                button: e.detail,
                x: e.event_x,
                y: e.event_y,
                root_x: e.root_x,
                root_y: e.root_y,
                state: e.state.into(),
            })?,
            Event::MotionNotify(e) => print(Report::Motion {
                x: e.event_x,
                y: e.event_y,
                root_x: e.root_x,
                root_y: e.root_y,
                state: e.state.into(),
            })?,
            Event::ClientMessage(e) if e.type_ == protocols && e.data.as_data32()[0] == delete => break,
            Event::DestroyNotify(e) if e.window == window => return Ok(()),
            _ => {}
        }
    }
    conn.destroy_window(window)?;
    conn.flush()?;
    Ok(())
}
