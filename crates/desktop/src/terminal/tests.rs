//! The terminal desktop with a real shell in a real PTY.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;

use crate::process::session_members;
use super::*;
use crate::Rect;
use crate::input::{MouseButton, Scancode};

const FONT_PX: f32 = 16.0;
const WAIT: Duration = Duration::from_secs(10);

fn token() -> String {
    format!("hi-{:08x}", RandomState::new().hash_one(std::process::id()) as u32)
}

/// Start /bin/sh (a plain shell: predictable screens).
fn start(size: Size) -> Arc<TerminalDesktop> {
    let opts = TerminalOptions {
        size,
        font_px: FONT_PX,
        shell: Some("/bin/sh".into()),
        // No rc file for the interactive shell: the screen holds only what the test types.
        env: vec![("ENV".into(), "/dev/null".into())],
        ..TerminalOptions::default()
    };
    TerminalDesktop::start(opts).expect("terminal desktop starts")
}

/// Type `text` as US scancodes (press and release, with Shift where needed).
fn type_text(desk: &TerminalDesktop, text: &str) {
    let us = layout_table(KeyboardLayout::US);
    let key = |code: u8, pressed: bool| InputEvent::Key { scancode: Scancode::new(code, false), pressed };
    for c in text.chars() {
        if c == '\r' || c == '\n' {
            desk.input(key(0x1C, true));
            desk.input(key(0x1C, false));
            continue;
        }
        let (code, shift) = us
            .keys
            .iter()
            .find_map(|k| {
                if k.normal == keymap::Sym::Char(c) {
                    Some((k.code, false))
                } else if k.shifted == keymap::Sym::Char(c) {
                    Some((k.code, true))
                } else {
                    None
                }
            })
            .unwrap_or_else(|| panic!("no US key types {c:?}"));
        if shift {
            desk.input(key(0x2A, true));
        }
        desk.input(key(code, true));
        desk.input(key(code, false));
        if shift {
            desk.input(key(0x2A, false));
        }
    }
}

/// The canvas as a client would decode it: RGBA.
fn rgba(canvas: &Canvas) -> (Vec<u8>, u32, u32) {
    let size = canvas.size();
    let bgrx = canvas.read(size.rect());
    (bgrx.chunks(4).flat_map(|p| [p[2], p[1], p[0], 255]).collect(), u32::from(size.width), u32::from(size.height))
}

/// Where `text` is on screen, searching only rows from `from_row` on.
fn find_from(canvas: &Canvas, text: &str, from_row: u32) -> Option<(u32, u32)> {
    let (img, w, h) = rgba(canvas);
    let ch = u32::from(font::Face::get(FONT_PX).metrics.height);
    let skip = (from_row * ch).min(h);
    let rest = &img[(skip * w * 4) as usize..];
    find_text(rest, w, h - skip, FONT_PX, text).map(|(c, r)| (c, r + from_row))
}

/// Wait (bounded) until `check` holds for the canvas, re-checking whenever it changes.
async fn wait_for<T>(desk: &TerminalDesktop, what: &str, mut check: impl FnMut(&Canvas) -> Option<T>) -> T {
    let mut sub = desk.canvas().subscribe();
    let waited = timeout(WAIT, async {
        loop {
            if let Some(v) = check(desk.canvas()) {
                return v;
            }
            sub.changed().await;
            sub.take();
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("timed out waiting for {what}; screen:\n{}", desk.screen_text()))
}

async fn ended(desk: &TerminalDesktop) -> DesktopEnd {
    let mut rx = desk.ended();
    let end = timeout(WAIT, rx.wait_for(Option::is_some)).await.expect("the desktop ends in time").expect("sender alive");
    end.clone().unwrap()
}

/// Every process of the shell's session is gone (bounded wait: init reaps the orphans).
async fn assert_session_gone(pid: u32) {
    let gone = timeout(WAIT, async {
        while !session_members(pid as i32).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "processes left in session {pid}: {:?}", session_members(pid as i32));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the shell {pid} was not reaped");
}

/// The login shell's profile sets the prompt: "$ " for users, "# " for root.
async fn wait_prompt(desk: &TerminalDesktop) {
    wait_for(desk, "the prompt", |c| find_from(c, "$", 0).or_else(|| find_from(c, "#", 0))).await;
}

#[tokio::test]
async fn typed_echo_shows_on_the_canvas_and_terminate_leaves_nothing() {
    let desk = start(Size::new(640, 400));
    let pid = desk.shell_pid();
    assert_eq!(desk.grid(), (64, 21));
    wait_prompt(&desk).await;

    // One typed character (echoed by the tty) damages its cell and the cursor's next one.
    let mut sub = desk.canvas().subscribe();
    sub.take();
    type_text(&desk, "x");
    wait_for(&desk, "the typed x", |c| find_from(c, "x", 0)).await;
    let frame = sub.take().expect("damage after typing");
    let m = desk.cell_metrics();
    let area: u64 = frame.regions.iter().map(|u| u.rect.area()).sum();
    assert!(area <= 2 * u64::from(m.width) * u64::from(m.height), "{:?}", frame.regions.iter().map(|u| u.rect).collect::<Vec<_>>());
    for pressed in [true, false] {
        desk.input(InputEvent::Key { scancode: Scancode::new(0x0E, false), pressed });
    }
    wait_for(&desk, "the x erased", |c| find_from(c, "x", 0).is_none().then_some(())).await;

    let token = token();
    type_text(&desk, &format!("echo {token}\r"));
    // The typed command line shows the token after the prompt; the command's output shows it
    // again at the start of a later row.
    let (col, row) = wait_for(&desk, "the typed command", |c| find_from(c, &token, 0)).await;
    assert!(col > 0, "the command line starts with the prompt");
    let output = wait_for(&desk, "the output", |c| find_from(c, &token, row + 1)).await;
    assert_eq!(output.0, 0);
    assert_eq!(desk.screen_text().matches(token.as_str()).count(), 2, "{}", desk.screen_text());

    // A background job in the same session goes too.
    type_text(&desk, "sleep 300 &\r");
    wait_for(&desk, "the background job", |_| (session_members(pid as i32).len() >= 2).then_some(())).await;

    desk.terminate();
    assert_eq!(ended(&desk).await, DesktopEnd::Terminated);
    assert_session_gone(pid).await;
    desk.terminate();
}

#[tokio::test]
async fn shell_exit_is_a_logoff_and_hangup_survivors_are_killed() {
    let desk = start(Size::new(400, 200));
    let pid = desk.shell_pid();
    wait_prompt(&desk).await;
    // Survives SIGHUP: only the SIGKILL after the grace period ends it.
    type_text(&desk, "nohup sleep 300 >/dev/null 2>&1 &\r");
    wait_for(&desk, "the background job", |_| (session_members(pid as i32).len() >= 2).then_some(())).await;
    type_text(&desk, "exit\r");
    assert_eq!(ended(&desk).await, DesktopEnd::UserLoggedOff);
    assert_session_gone(pid).await;
}

#[tokio::test]
async fn resize_reaches_the_shell_and_the_canvas() {
    let desk = start(Size::new(400, 200));
    wait_prompt(&desk).await;
    desk.resize(Size::new(505, 390));
    wait_for(&desk, "the new canvas size", |c| (c.size() == Size::new(505, 390)).then_some(())).await;
    assert_eq!(desk.grid(), (50, 20));
    type_text(&desk, "stty size\r");
    wait_for(&desk, "stty's answer", |c| find_from(c, "20 50", 1)).await;
    // Right of the grid is background.
    let px = desk.canvas().read(Rect::new(504, 10, 1, 1));
    assert_eq!(px, vec![0, 0, 0, 0]);
    // Absurd sizes are clamped, never zero.
    desk.resize(Size::new(0, 0));
    wait_for(&desk, "the clamped size", |c| (c.size() == Size::new(1, 1)).then_some(())).await;
    assert_eq!(desk.grid(), (1, 1));
    desk.terminate();
    assert_eq!(ended(&desk).await, DesktopEnd::Terminated);
}

#[tokio::test]
async fn wheel_scrolls_back_and_typing_returns_to_the_bottom() {
    let desk = start(Size::new(400, 200));
    let pid = desk.shell_pid();
    wait_prompt(&desk).await;
    type_text(&desk, "seq -f line-%03g 1 60\r");
    wait_for(&desk, "the last line", |c| find_from(c, "line-060", 0)).await;
    assert!(find_from(desk.canvas(), "line-005", 0).is_none());

    // 20 notches of 3 lines: far enough back to see line 5.
    for _ in 0..20 {
        desk.input(InputEvent::Wheel { axis: WheelAxis::Vertical, delta: 120, x: 10, y: 10 });
    }
    wait_for(&desk, "scrolled-back history", |c| find_from(c, "line-005", 0)).await;
    // Mouse buttons without mouse reporting do nothing.
    desk.input(InputEvent::Button { button: MouseButton::Left, pressed: true, x: 1, y: 1 });
    desk.input(InputEvent::Button { button: MouseButton::Left, pressed: false, x: 1, y: 1 });

    // A typed key jumps back to the live screen.
    type_text(&desk, "x");
    wait_for(&desk, "the live screen", |c| find_from(c, "line-060", 0)).await;
    assert!(find_from(desk.canvas(), "line-005", 0).is_none());
    desk.terminate();
    assert_eq!(ended(&desk).await, DesktopEnd::Terminated);
    assert_session_gone(pid).await;
}

#[tokio::test]
async fn unicode_input_and_layout_switch() {
    let desk = start(Size::new(400, 200));
    wait_prompt(&desk).await;
    // "echo é-" as Unicode events, then a German "z" key (0x15), then Enter.
    for unit in "echo \u{e9}-".encode_utf16() {
        desk.input(InputEvent::Unicode { code_unit: unit, pressed: true });
        desk.input(InputEvent::Unicode { code_unit: unit, pressed: false });
    }
    desk.set_keyboard_layout(KeyboardLayout::GERMAN);
    for pressed in [true, false] {
        desk.input(InputEvent::Key { scancode: Scancode::new(0x15, false), pressed });
    }
    for pressed in [true, false] {
        desk.input(InputEvent::Key { scancode: Scancode::new(0x1C, false), pressed });
    }
    wait_for(&desk, "the echoed text", |_| {
        let text = desk.screen_text();
        (text.lines().filter(|l| l.contains("\u{e9}-z")).count() >= 2).then_some(())
    })
    .await;
    desk.terminate();
    assert_eq!(ended(&desk).await, DesktopEnd::Terminated);
}

#[tokio::test]
async fn dropping_the_desktop_ends_its_session() {
    let desk = start(Size::new(200, 100));
    let pid = desk.shell_pid();
    let mut rx = desk.ended();
    drop(desk);
    timeout(WAIT, rx.wait_for(Option::is_some)).await.expect("ends in time").expect("sender alive");
    assert_session_gone(pid).await;
}

#[tokio::test]
async fn a_missing_shell_is_an_error() {
    let opts = TerminalOptions { shell: Some("/nonexistent/shell".into()), ..TerminalOptions::default() };
    match TerminalDesktop::start(opts) {
        Err(TerminalError::Spawn { shell, .. }) => assert_eq!(shell, std::path::PathBuf::from("/nonexistent/shell")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started a shell that does not exist"),
    }
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    assert!(matches!(TerminalDesktop::start(TerminalOptions::default()), Err(TerminalError::NoRuntime)));
}

#[test]
fn login_shell_environment() {
    assert_eq!(login_arg0(std::path::Path::new("/bin/bash")), OsString::from("-bash"));
    let who = Identity { user: "alice".into(), home: "/home/alice".into(), shell: None, switch: None };
    let env = session_env(&who, std::path::Path::new("/bin/zsh"), &[("LANG".into(), "de_DE.UTF-8".into()), ("X".into(), "1".into())]);
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone().into_string().unwrap());
    assert_eq!(get("HOME").as_deref(), Some("/home/alice"));
    assert_eq!(get("USER").as_deref(), Some("alice"));
    assert_eq!(get("LOGNAME").as_deref(), Some("alice"));
    assert_eq!(get("SHELL").as_deref(), Some("/bin/zsh"));
    assert_eq!(get("TERM").as_deref(), Some("xterm-256color"));
    assert_eq!(get("COLORTERM").as_deref(), Some("truecolor"));
    assert_eq!(get("LANG").as_deref(), Some("de_DE.UTF-8"));
    assert_eq!(get("X").as_deref(), Some("1"));
    assert!(get("PATH").is_some());
}

/// CPU time of the calling thread (the current-thread runtime runs every session task here).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to the pointer.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[tokio::test]
async fn idle_sessions_cost_no_cpu() {
    let desks: Vec<_> = (0..20).map(|_| start(Size::new(320, 200))).collect();
    for desk in &desks {
        wait_prompt(desk).await;
    }
    // Let start-up output settle, then measure a quiet second.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = thread_cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = thread_cpu() - before;
    assert!(used < Duration::from_millis(20), "20 idle sessions used {used:?} of CPU in 1 s");
    let pids: Vec<u32> = desks.iter().map(|d| d.shell_pid()).collect();
    for desk in &desks {
        desk.terminate();
    }
    for desk in &desks {
        assert_eq!(ended(desk).await, DesktopEnd::Terminated);
    }
    for pid in pids {
        assert_session_gone(pid).await;
    }
}

#[tokio::test]
async fn runs_as_another_user_when_root() {
    let nobody = RunAs { user: "nobody".into(), uid: 65534, gid: 65534, home: "/nonexistent".into(), shell: "/bin/sh".into() };
    let opts = TerminalOptions {
        size: Size::new(640, 200),
        run_as: Some(nobody),
        env: vec![("ENV".into(), "/dev/null".into())],
        ..TerminalOptions::default()
    };
    if !nix::unistd::geteuid().is_root() {
        // Without root there is no switching user: refused, not silently run as the host.
        assert!(matches!(TerminalDesktop::start(opts), Err(TerminalError::NotRoot { uid: 65534, .. })));
        return;
    }
    let desk = TerminalDesktop::start(opts).expect("starts as nobody");
    let pid = desk.shell_pid();
    wait_prompt(&desk).await;
    type_text(&desk, "id -u; id -G; pwd; echo $HOME $USER $LOGNAME $SHELL $0\r");
    wait_for(&desk, "the identity", |_| {
        let text = desk.screen_text();
        text.contains("/nonexistent nobody nobody /bin/sh -sh").then_some(())
    })
    .await;
    let text = desk.screen_text();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"65534"), "{text}");
    // Home does not exist: the shell starts in "/".
    assert!(lines.contains(&"/"), "{text}");
    desk.terminate();
    assert_eq!(ended(&desk).await, DesktopEnd::Terminated);
    assert_session_gone(pid).await;
}

fn click(desk: &TerminalDesktop, button: MouseButton, pressed: bool, (x, y): (u16, u16)) {
    desk.input(InputEvent::Button { button, pressed, x, y });
}

/// The pixel position of the middle of cell (`col`, `row`).
fn cell_centre(desk: &TerminalDesktop, col: u32, row: u32) -> (u16, u16) {
    let m = desk.cell_metrics();
    ((col as u16) * m.width + m.width / 2, (row as u16) * m.height + m.height / 2)
}

#[tokio::test]
async fn a_mouse_drag_copies_the_selected_text_and_shows_it_inverted() {
    let desk = start(Size::new(640, 400));
    wait_prompt(&desk).await;
    let mut clipboard = desk.clipboard();
    assert_eq!(*clipboard.borrow_and_update(), None);
    let token = token();
    type_text(&desk, &format!("echo {token}-tail\r"));
    let (col, row) = wait_for(&desk, "the output", |c| find_from(c, &format!("{token}-tail"), 1).filter(|&(col, _)| col == 0)).await;

    // Drag over the token (not "-tail"), right to left: the selection is the same.
    let last = col + token.len() as u32 - 1;
    click(&desk, MouseButton::Left, true, cell_centre(&desk, last, row));
    desk.input(InputEvent::PointerMove { x: cell_centre(&desk, 3, row).0, y: cell_centre(&desk, 3, row).1 });
    desk.input(InputEvent::PointerMove { x: cell_centre(&desk, col, row).0, y: cell_centre(&desk, col, row).1 });
    click(&desk, MouseButton::Left, false, cell_centre(&desk, col, row));
    timeout(WAIT, clipboard.changed()).await.expect("copied in time").unwrap();
    assert_eq!(clipboard.borrow_and_update().as_deref(), Some(token.as_str()));

    // The selected cells are drawn inverted: the first cell's background is the foreground.
    let m = desk.cell_metrics();
    let (x, y) = ((col as u16) * m.width, (row as u16) * m.height);
    wait_for(&desk, "the inverted selection", |c| (c.read(Rect::new(x, y, 1, 1))[..3] != [0, 0, 0]).then_some(())).await;
    // Typing hides it again.
    type_text(&desk, "x");
    wait_for(&desk, "the selection hidden", |c| (c.read(Rect::new(x, y, 1, 1))[..3] == [0, 0, 0]).then_some(())).await;
    // A click without a drag copies nothing.
    click(&desk, MouseButton::Left, true, cell_centre(&desk, 2, row));
    click(&desk, MouseButton::Left, false, cell_centre(&desk, 2, row));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!clipboard.has_changed().unwrap());
    desk.terminate();
}

#[tokio::test]
async fn a_double_click_copies_a_word_and_a_triple_click_a_line() {
    let desk = start(Size::new(640, 400));
    wait_prompt(&desk).await;
    let mut clipboard = desk.clipboard();
    let token = token();
    type_text(&desk, &format!("echo 'say {token}-word/x.y, then (more)'\r"));
    let (col, row) = wait_for(&desk, "the output", |c| find_from(c, "say ", 1).filter(|&(col, _)| col == 0)).await;
    let inside = cell_centre(&desk, col + 4 + 3, row);

    // Two clicks on one cell: the word under it, paths and all, as gnome-terminal takes it.
    for pressed in [true, false, true, false] {
        click(&desk, MouseButton::Left, pressed, inside);
    }
    timeout(WAIT, clipboard.changed()).await.expect("a word copied in time").unwrap();
    assert_eq!(clipboard.borrow_and_update().as_deref(), Some(format!("{token}-word/x.y,").as_str()));
    // Shown inverted: the word's first cell, not the blank before it.
    let m = desk.cell_metrics();
    let at = |c: u32| ((c as u16) * m.width, (row as u16) * m.height);
    let ((x, y), (bx, by)) = (at(col + 4), at(col + 3));
    wait_for(&desk, "the inverted word", |c| (c.read(Rect::new(x, y, 1, 1))[..3] != [0, 0, 0]).then_some(())).await;
    assert_eq!(desk.canvas().read(Rect::new(bx, by, 1, 1))[..3], [0, 0, 0], "the blank before the word is not selected");

    // Three clicks: the whole line, with its line end (as xterm copies it). (The second click
    // copies the word again on the way.)
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..3 {
        click(&desk, MouseButton::Left, true, inside);
        click(&desk, MouseButton::Left, false, inside);
    }
    let line = format!("say {token}-word/x.y, then (more)\n");
    let copied = timeout(WAIT, clipboard.wait_for(|t| t.as_deref() == Some(line.as_str()))).await.is_ok_and(|r| r.is_ok());
    assert!(copied, "the line was not copied: {:?}", clipboard.borrow().as_deref());
    clipboard.borrow_and_update();

    // Clicks far apart in time are single clicks: nothing copied.
    tokio::time::sleep(Duration::from_millis(700)).await;
    click(&desk, MouseButton::Left, true, inside);
    click(&desk, MouseButton::Left, false, inside);
    tokio::time::sleep(Duration::from_millis(700)).await;
    click(&desk, MouseButton::Left, true, inside);
    click(&desk, MouseButton::Left, false, inside);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!clipboard.has_changed().unwrap(), "{:?}", clipboard.borrow());
    desk.terminate();
}

#[tokio::test]
async fn pastes_type_the_clients_text_or_the_own_selection_into_the_shell() {
    let desk = start(Size::new(640, 400));
    wait_prompt(&desk).await;
    // Nothing to paste yet: Shift+Insert does nothing (and types no "~").
    let key = |code: u8, extended: bool, pressed: bool| InputEvent::Key { scancode: Scancode::new(code, extended), pressed };
    let shift_insert = |desk: &TerminalDesktop| {
        for event in [key(0x2A, false, true), key(0x52, true, true), key(0x52, true, false), key(0x2A, false, false)] {
            desk.input(event);
        }
    };
    shift_insert(&desk);

    // A client's copy is fetched only when pasted.
    let (offer, mut requests) = ClipboardOffer::remote(4);
    desk.clipboard_offer(Some(offer));
    let token = token();
    type_text(&desk, "echo ");
    shift_insert(&desk);
    let reply = timeout(WAIT, requests.recv()).await.expect("the paste asks the client").unwrap();
    reply.send(Ok(format!("{token}-pasted\n").into()));
    // The pasted line end is an Enter: the command runs.
    wait_for(&desk, "the pasted command's output", |c| find_from(c, &format!("{token}-pasted"), 1).filter(|&(col, _)| col == 0)).await;

    // Middle click pastes too; the terminal's own selection, once newer, wins over the client's.
    desk.clipboard_set(format!("echo {token}-middle\r"));
    click(&desk, MouseButton::Middle, true, (5, 5));
    click(&desk, MouseButton::Middle, false, (5, 5));
    let middle = format!("{token}-middle");
    let (_, line) = wait_for(&desk, "the middle-click paste", |c| find_from(c, &middle, 1).filter(|&(col, _)| col > 0)).await;
    wait_for(&desk, "the middle-click paste's output", |c| find_from(c, &middle, line + 1)).await;

    // A program that asked for bracketed pastes gets them bracketed; control characters never
    // reach it. `cat -v` shows what it read: ESC as "^[", BEL as "^G".
    type_text(&desk, "printf '\\033[?2004h'; cat -v\r");
    tokio::time::sleep(Duration::from_millis(300)).await;
    desk.clipboard_set(format!("{token}\x07b\n"));
    shift_insert(&desk);
    wait_for(&desk, "the bracketed paste", |c| find_from(c, &format!("^[[200~{token}b"), line + 2)).await;
    assert!(!desk.screen_text().contains("^G"), "{}", desk.screen_text());
    desk.terminate();
}
