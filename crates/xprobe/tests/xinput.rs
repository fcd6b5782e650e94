//! XInput (the X desktops' input path) against a real Xvfb, seen by a real X client: every test
//! starts its own Xvfb and `rdhost-xrecorder`, drives XTEST through `XInput`, and reads what the
//! recorder's window received.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rdhost_desktop::x11::input::XInput;
use rdhost_desktop::{InputEvent, KeyboardLayout, MouseButton, Scancode, WheelAxis};
use rdhost_xprobe::report::Report;
use rdhost_xprobe::xvfb::Xvfb;
use x11rb::connection::Connection;
use x11rb::rust_connection::RustConnection;

const WAIT: Duration = Duration::from_secs(10);

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Rig {
    input: XInput,
    conn: RustConnection,
    lines: Receiver<String>,
    seen: Vec<String>,
    _recorder: Killed,
    // Last: the server goes after its clients.
    _xvfb: Xvfb,
}

impl Rig {
    fn start() -> Option<Rig> {
        let xvfb = Xvfb::for_test(1024, 768)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_rdhost-xrecorder"))
            .args(["--override-redirect", "--geometry", "1024x768+0+0"])
            .envs(xvfb.env())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start rdhost-xrecorder");
        let stdout = child.stdout.take().unwrap();
        let recorder = Killed(child);
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let conn = xvfb.connect().expect("connect to Xvfb");
        let root = conn.setup().roots[0].root;
        let input = XInput::new(&conn, root, xvfb.display()).expect("XInput");
        let mut rig = Rig {
            input,
            conn,
            lines,
            seen: Vec::new(),
            _recorder: recorder,
            _xvfb: xvfb,
        };
        rig.next(|r| matches!(r, Report::Ready { .. }).then_some(()), "ready");
        Some(rig)
    }

    fn send(&mut self, event: InputEvent) {
        self.input.handle(&self.conn, event).expect("handle input");
    }

    fn key(&mut self, code: u8, extended: bool, pressed: bool) {
        self.send(InputEvent::Key {
            scancode: Scancode::new(code, extended),
            pressed,
        });
    }

    fn tap(&mut self, code: u8, extended: bool) {
        self.key(code, extended, true);
        self.key(code, extended, false);
    }

    fn unicode(&mut self, text: &str) {
        for unit in text.encode_utf16() {
            self.send(InputEvent::Unicode {
                code_unit: unit,
                pressed: true,
            });
            self.send(InputEvent::Unicode {
                code_unit: unit,
                pressed: false,
            });
        }
    }

    fn layout(&mut self, klid: u32) {
        self.input.set_layout(&self.conn, KeyboardLayout(klid)).expect("set_layout");
    }

    /// The first report for which `pick` says something, skipping the others.
    fn next<T>(&mut self, mut pick: impl FnMut(&Report) -> Option<T>, what: &str) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {WAIT:?}; recorder said:\n{}", self.seen.join("\n")),
                Err(RecvTimeoutError::Disconnected) => panic!("recorder ended before {what}; it said:\n{}", self.seen.join("\n")),
            };
            self.seen.push(line.clone());
            let report = Report::parse(&line).unwrap_or_else(|| panic!("recorder printed an unreadable line: {line:?}"));
            if let Some(found) = pick(&report) {
                return found;
            }
        }
    }

    /// The next button press or release: (button, pressed, x, y, root_x, root_y).
    fn button(&mut self) -> (u8, bool, i16, i16, i16, i16) {
        self.next(
            |r| match *r {
                Report::Button {
                    pressed,
                    button,
                    x,
                    y,
                    root_x,
                    root_y,
                    ..
                } => Some((button, pressed, x, y, root_x, root_y)),
                _ => None,
            },
            "button event",
        )
    }

    /// The text of the next key press that types something (modifier presses type nothing).
    fn typed(&mut self) -> String {
        self.next(
            |r| match r {
                Report::Key { pressed: true, text, .. } if !text.is_empty() => Some(text.clone()),
                _ => None,
            },
            "typed character",
        )
    }

    /// The next key press that types something: (keycode, state, text).
    fn typed_key(&mut self) -> (u8, u16, String) {
        self.next(
            |r| match r {
                Report::Key {
                    pressed: true,
                    keycode,
                    state,
                    text,
                    ..
                } if !text.is_empty() => Some((*keycode, *state, text.clone())),
                _ => None,
            },
            "typed character",
        )
    }

    fn typed_n(&mut self, count: usize) -> String {
        (0..count).map(|_| self.typed()).collect()
    }
}

fn click(rig: &mut Rig, button: MouseButton, x: u16, y: u16) {
    rig.send(InputEvent::Button { button, pressed: true, x, y });
    rig.send(InputEvent::Button {
        button,
        pressed: false,
        x,
        y,
    });
}

#[test]
fn clicks_arrive_where_they_were_sent() {
    let Some(mut rig) = Rig::start() else { return };
    click(&mut rig, MouseButton::Left, 100, 200);
    assert_eq!(rig.button(), (1, true, 100, 200, 100, 200));
    assert_eq!(rig.button(), (1, false, 100, 200, 100, 200));
    click(&mut rig, MouseButton::Middle, 1023, 767);
    assert_eq!(rig.button(), (2, true, 1023, 767, 1023, 767));
    assert_eq!(rig.button(), (2, false, 1023, 767, 1023, 767));
    click(&mut rig, MouseButton::Right, 0, 5);
    assert_eq!(rig.button(), (3, true, 0, 5, 0, 5));
    assert_eq!(rig.button(), (3, false, 0, 5, 0, 5));
    rig.send(InputEvent::PointerMove { x: 512, y: 384 });
    let at = rig.next(
        |r| {
            matches!(
                *r,
                Report::Motion {
                    root_x: 512,
                    root_y: 384,
                    ..
                }
            )
            .then_some(())
        },
        "motion to 512,384",
    );
    assert_eq!(at, ());
}

#[test]
fn side_buttons_are_8_and_9() {
    let Some(mut rig) = Rig::start() else { return };
    click(&mut rig, MouseButton::X1, 10, 20);
    assert_eq!(rig.button(), (8, true, 10, 20, 10, 20));
    assert_eq!(rig.button(), (8, false, 10, 20, 10, 20));
    click(&mut rig, MouseButton::X2, 30, 40);
    assert_eq!(rig.button(), (9, true, 30, 40, 30, 40));
    assert_eq!(rig.button(), (9, false, 30, 40, 30, 40));
}

#[test]
fn wheel_notches_become_buttons_4_to_7() {
    let Some(mut rig) = Rig::start() else { return };
    // The wheel turns where the pointer is, whatever position the event carries.
    rig.send(InputEvent::PointerMove { x: 50, y: 60 });
    let wheel = |rig: &mut Rig, axis, delta| rig.send(InputEvent::Wheel { axis, delta, x: 0, y: 0 });
    let clicks = |rig: &mut Rig, n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                let (press, p, x, y, ..) = rig.button();
                let (release, r, ..) = rig.button();
                assert_eq!((press, p, release, r, x, y), (press, true, press, false, 50, 60));
                press
            })
            .collect()
    };
    wheel(&mut rig, WheelAxis::Vertical, 120);
    assert_eq!(clicks(&mut rig, 1), [4]);
    wheel(&mut rig, WheelAxis::Vertical, -240);
    assert_eq!(clicks(&mut rig, 2), [5, 5]);
    wheel(&mut rig, WheelAxis::Horizontal, 120);
    assert_eq!(clicks(&mut rig, 1), [7]);
    wheel(&mut rig, WheelAxis::Horizontal, -120);
    assert_eq!(clicks(&mut rig, 1), [6]);
    // Half a notch is nothing yet (the left click comes first); the second half is one notch.
    wheel(&mut rig, WheelAxis::Vertical, 60);
    click(&mut rig, MouseButton::Left, 50, 60);
    assert_eq!(clicks(&mut rig, 1), [1]);
    wheel(&mut rig, WheelAxis::Vertical, 60);
    assert_eq!(clicks(&mut rig, 1), [4]);
}

#[test]
fn scancodes_type_under_us() {
    let Some(mut rig) = Rig::start() else { return };
    rig.layout(0x0409);
    // "Hi, x=1!" on a US keyboard.
    let shift = |rig: &mut Rig, pressed| rig.key(0x2A, false, pressed);
    shift(&mut rig, true);
    rig.tap(0x23, false); // H
    shift(&mut rig, false);
    rig.tap(0x17, false); // i
    rig.tap(0x33, false); // ,
    rig.tap(0x39, false); // space
    rig.tap(0x2D, false); // x
    rig.tap(0x0D, false); // =
    rig.tap(0x02, false); // 1
    shift(&mut rig, true);
    rig.tap(0x02, false); // !
    shift(&mut rig, false);
    rig.tap(0x4F, false); // keypad 1 (Num Lock is off: End, types nothing)
    rig.tap(0x35, true); // keypad /
    rig.tap(0x1C, true); // keypad Enter
    assert_eq!(rig.typed_n(10), "Hi, x=1!/\r");
    // Right Ctrl + c types a control character (the extended flag picks the right key).
    rig.key(0x1D, true, true);
    rig.tap(0x2E, false);
    rig.key(0x1D, true, false);
    assert_eq!(rig.typed_key(), (54, 0x4, "\u{3}".to_string()));
}

#[test]
fn german_layout_swaps_y_and_z_and_altgr_types_at() {
    let Some(mut rig) = Rig::start() else { return };
    rig.layout(0x0407);
    rig.tap(0x15, false); // the key labelled Y on US keyboards
    rig.tap(0x2C, false); // the key labelled Z
    rig.key(0x38, true, true); // AltGr
    rig.tap(0x10, false); // q
    rig.key(0x38, true, false);
    rig.key(0x2A, false, true);
    rig.tap(0x03, false); // 2
    rig.key(0x2A, false, false);
    rig.tap(0x0C, false); // ß on the US minus key
    assert_eq!(rig.typed_n(5), "zy@\"ß");
    // And back: US again.
    rig.layout(0x0409);
    rig.tap(0x15, false);
    assert_eq!(rig.typed(), "y");
}

#[test]
fn unicode_types_characters_on_and_off_the_keymap() {
    let Some(mut rig) = Rig::start() else { return };
    rig.layout(0x0409);
    // On the keymap: plain and shifted.
    rig.unicode("aA!");
    assert_eq!(rig.typed_n(3), "aA!");
    // Not on a US keymap: bound to spare keycodes. A surrogate pair is one character.
    // More characters than spare keycodes (12): the pool is reused, each still arrives right.
    let many = "€ж😀αβγδεζηθικλμνξοπρστυ";
    rig.unicode(many);
    let mut keycodes = std::collections::BTreeSet::new();
    let mut got = String::new();
    for _ in many.chars() {
        let (keycode, _, text) = rig.typed_key();
        keycodes.insert(keycode);
        got.push_str(&text);
    }
    assert_eq!(got, many);
    assert!(keycodes.len() <= 12, "the spare pool grew to {} keycodes: {keycodes:?}", keycodes.len());
    // Held Shift is lifted for a lower-case character and restored afterwards.
    rig.key(0x2A, false, true);
    rig.unicode("b");
    assert_eq!(rig.typed(), "b");
    rig.tap(0x2E, false);
    assert_eq!(rig.typed(), "C");
    rig.key(0x2A, false, false);
}

#[test]
fn caps_and_num_lock_follow_the_client() {
    let Some(mut rig) = Rig::start() else { return };
    rig.layout(0x0409);
    let locks = |rig: &mut Rig, caps_lock, num_lock| {
        rig.send(InputEvent::LockState {
            caps_lock,
            num_lock,
            scroll_lock: false,
        })
    };
    locks(&mut rig, true, true);
    rig.tap(0x1E, false); // a
    let (_, state, text) = rig.typed_key();
    assert_eq!(text, "A");
    assert_ne!(state & 0x2, 0, "Lock set in {state:#x}");
    rig.tap(0x4F, false); // keypad 1 with Num Lock
    assert_eq!(rig.typed(), "1");
    // Unicode under Caps Lock still types what was asked.
    rig.unicode("bC");
    assert_eq!(rig.typed_n(2), "bC");
    // Sending the same state again changes nothing.
    locks(&mut rig, true, true);
    rig.tap(0x1E, false);
    assert_eq!(rig.typed(), "A");
    locks(&mut rig, false, false);
    rig.tap(0x1E, false);
    rig.tap(0x4F, false); // End now: types nothing
    rig.tap(0x02, false);
    assert_eq!(rig.typed_n(2), "a1");
}
