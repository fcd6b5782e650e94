//! The probe programs as benchmarks use them: the recorder's window and colour toggle, the
//! animation's full-window changes and frame rate, and both ending cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdhost_desktop::x11::input::XInput;
use rdhost_desktop::{InputEvent, MouseButton, Scancode};
use rdhost_xprobe::report::Report;
use rdhost_xprobe::xvfb::Xvfb;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat};
use x11rb::rust_connection::RustConnection;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM the program and expect a clean exit (status 0) soon after.
fn terminate_cleanly(child: &mut Killed) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "exit after SIGTERM: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pixels (0x00RRGGBB) of a rectangle of the screen.
fn grab(conn: &RustConnection, x: i16, y: i16, w: u16, h: u16) -> Vec<u32> {
    let root = conn.setup().roots[0].root;
    let image = conn.get_image(ImageFormat::Z_PIXMAP, root, x, y, w, h, !0).unwrap().reply().unwrap();
    image
        .data
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & 0xff_ffff)
        .collect()
}

fn wait_for_pixel(conn: &RustConnection, x: i16, y: i16, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = grab(conn, x, y, 1, 1)[0];
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "pixel {x},{y} is {got:#08x}, expected {want:#08x}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn recorder_window_reports_relative_positions_and_toggles_colour_per_key() {
    let Some(xvfb) = Xvfb::for_test(640, 480) else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_rdhost-xrecorder"))
        .args(["--override-redirect", "--geometry", "200x100+10+20", "--title", "probe"])
        .envs(xvfb.env())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut child = Killed(child);
    // Motion, and the MappingNotify the server sends when keys first come from the XTEST
    // device (its keymap is copied to the core keyboard), are not what this test is about.
    let mut next = move || loop {
        match Report::parse(&lines.next().expect("a line").unwrap()).expect("a report") {
            Report::Motion { .. } | Report::MappingNotify => continue,
            report => break report,
        }
    };
    let Report::Ready {
        window,
        x: 10,
        y: 20,
        width: 200,
        height: 100,
        color: 0x3366cc,
    } = next()
    else {
        panic!("not ready as asked")
    };
    assert_ne!(window, 0);
    let conn = xvfb.connect().unwrap();
    wait_for_pixel(&conn, 15, 25, 0x3366cc);

    let mut input = XInput::new(&conn, conn.setup().roots[0].root, xvfb.display()).unwrap();
    input
        .handle(
            &conn,
            InputEvent::Button {
                button: MouseButton::Left,
                pressed: true,
                x: 15,
                y: 25,
            },
        )
        .unwrap();
    let report = next();
    assert!(
        matches!(
            report,
            Report::Button {
                pressed: true,
                button: 1,
                x: 5,
                y: 5,
                root_x: 15,
                root_y: 25,
                ..
            }
        ),
        "{report}"
    );

    for (i, colour) in [0xcc6633, 0x3366cc, 0xcc6633].into_iter().enumerate() {
        input
            .handle(
                &conn,
                InputEvent::Key {
                    scancode: Scancode::new(0x1E, false),
                    pressed: true,
                },
            )
            .unwrap();
        let report = next();
        assert!(
            matches!(&report, Report::Key { pressed: true, keycode: 38, color: Some(c), .. } if *c == colour),
            "press {i}: {report}"
        );
        wait_for_pixel(&conn, 15, 25, colour);
        wait_for_pixel(&conn, 209, 119, colour);
        input
            .handle(
                &conn,
                InputEvent::Key {
                    scancode: Scancode::new(0x1E, false),
                    pressed: false,
                },
            )
            .unwrap();
        assert!(matches!(
            next(),
            Report::Key {
                pressed: false,
                keycode: 38,
                color: None,
                ..
            }
        ));
    }
    // Outside the window nothing changed.
    assert_eq!(grab(&conn, 300, 300, 1, 1)[0], 0);
    terminate_cleanly(&mut child);
}

#[test]
fn animation_changes_every_pixel_and_reports_its_rate() {
    let Some(xvfb) = Xvfb::for_test(320, 240) else { return };
    let child = Command::new(env!("CARGO_BIN_EXE_rdhost-xanimate"))
        // Not as fast as possible: at thousands of frames a second the 100 ms between grabs
        // could be a whole period of the pattern.
        .args(["--override-redirect", "--fps", "200"])
        .envs(xvfb.env())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let line = stderr.next().expect("a rate line").unwrap();
    let fps: f64 = line
        .strip_prefix("fps=")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a rate line: {line:?}"));
    assert!(fps >= 5.0, "{line}");
    assert!(line.ends_with("method=shm"), "Xvfb is local, so shared memory: {line}");

    let conn = xvfb.connect().unwrap();
    // Below the frame code (the frame number's cells keep their colour while that bit does).
    let code_height = rdhost_xprobe::animate::CODE_CELL as i16;
    let before = grab(&conn, 0, code_height, 320, 240 - code_height as u16);
    std::thread::sleep(Duration::from_millis(100));
    let after = grab(&conn, 0, code_height, 320, 240 - code_height as u16);
    let same = before.iter().zip(&after).filter(|(a, b)| a == b).count();
    // A grab can land between two frames' requests only with chunked PutImage; with one SHM
    // request per frame every pixel differs.
    assert_eq!(same, 0, "{same} of {} pixels did not change", before.len());
    terminate_cleanly(&mut child);
}

#[test]
fn animation_keeps_to_the_asked_rate() {
    let Some(xvfb) = Xvfb::for_test(320, 240) else { return };
    let child = Command::new(env!("CARGO_BIN_EXE_rdhost-xanimate"))
        .args(["--fps", "20", "--geometry", "100x100+0+0"])
        .envs(xvfb.env())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap()).lines();
    // The second second: the first includes start-up.
    let _ = stderr.next();
    let line = stderr.next().expect("a rate line").unwrap();
    let frames: u32 = line
        .split(' ')
        .find_map(|f| f.strip_prefix("frames="))
        .and_then(|v| v.parse().ok())
        .expect("frames=");
    assert!((17..=21).contains(&frames), "asked for 20 a second: {line}");
    terminate_cleanly(&mut child);
}
