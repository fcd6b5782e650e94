//! Message boxes over a canvas: the overlay the canvas composes over a desktop's pixels, and
//! the board that draws boxes into it and answers them from terminal input.

use std::sync::Arc;
use std::time::Duration;

use rdhost_desktop::message::{DEFAULT_FONT_PX, MAX_WAITING};
use rdhost_desktop::terminal::find_text;
use rdhost_desktop::{
    Buttons, Canvas, Damage, InputEvent, MessageAnswer, MessageBoard, MessageBox, MessageError, MouseButton, Overlay, Rect, Scancode,
    Size,
};
use tokio::sync::oneshot::Receiver;
use tokio::sync::oneshot::error::TryRecvError;

const ENTER: u8 = 0x1C;
const ESCAPE: u8 = 0x01;
const TAB: u8 = 0x0F;
const Y: u8 = 0x15;
const N: u8 = 0x31;
const A: u8 = 0x1E;
const LEFT_CTRL: u8 = 0x1D;

/// A canvas painted with a pattern that differs from pixel to pixel, as a desktop would draw it.
fn desktop(size: Size) -> Arc<Canvas> {
    let canvas = Canvas::new(size);
    canvas.draw(|px, size| {
        for (i, p) in px.chunks_exact_mut(4).enumerate() {
            let (x, y) = (i % usize::from(size.width), i / usize::from(size.width));
            p.copy_from_slice(&[(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8, 0]);
        }
        vec![size.rect()]
    });
    canvas
}

fn whole(canvas: &Canvas) -> Vec<u8> {
    canvas.read(canvas.size().rect())
}

fn pixel(image: &[u8], width: u16, x: u16, y: u16) -> [u8; 4] {
    let i = (usize::from(y) * usize::from(width) + usize::from(x)) * 4;
    image[i..i + 4].try_into().unwrap()
}

/// A cell of the embedded font at 16 px (the font's own tests pin these metrics).
const CELL: Size = Size::new(10, 19);

/// Where `text` starts on the canvas, in pixels, searched the way tests search a terminal
/// desktop's screen.
fn find(canvas: &Canvas, text: &str) -> Option<(u16, u16)> {
    let size = canvas.size();
    let mut rgba = whole(canvas);
    for p in rgba.chunks_exact_mut(4) {
        p.swap(0, 2);
        p[3] = 255;
    }
    let (col, row) = find_text(&rgba, size.width.into(), size.height.into(), DEFAULT_FONT_PX, text)?;
    Some((col as u16 * CELL.width, row as u16 * CELL.height))
}

fn contains(outer: Rect, inner: Rect) -> bool {
    inner.x >= outer.x && inner.y >= outer.y && inner.right() <= outer.right() && inner.bottom() <= outer.bottom()
}

fn message(title: &str, text: &str, buttons: Buttons) -> MessageBox {
    MessageBox { title: title.into(), text: text.into(), buttons }
}

fn key(board: &MessageBoard, code: u8) -> (bool, bool) {
    let scancode = Scancode::new(code, false);
    let down = board.handle_input(&InputEvent::Key { scancode, pressed: true });
    let up = board.handle_input(&InputEvent::Key { scancode, pressed: false });
    (down, up)
}

fn click(board: &MessageBoard, x: u16, y: u16) -> (bool, bool) {
    let down = board.handle_input(&InputEvent::Button { button: MouseButton::Left, pressed: true, x, y });
    let up = board.handle_input(&InputEvent::Button { button: MouseButton::Left, pressed: false, x, y });
    (down, up)
}

fn button(board: &MessageBoard, answer: MessageAnswer) -> Rect {
    board.button_rects().into_iter().find(|(a, _)| *a == answer).unwrap_or_else(|| panic!("no {answer:?} button")).1
}

fn centre(rect: Rect) -> (u16, u16) {
    (rect.x + rect.width / 2, rect.y + rect.height / 2)
}

fn answered(rx: &mut Receiver<MessageAnswer>) -> Option<MessageAnswer> {
    match rx.try_recv() {
        Ok(answer) => Some(answer),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => panic!("the board dropped the box unanswered"),
    }
}

#[test]
fn an_overlay_shows_in_frames_and_reads_and_clearing_restores_the_desktop_exactly() {
    let size = Size::new(200, 120);
    let canvas = desktop(size);
    let underneath = whole(&canvas);
    let mut sub = canvas.subscribe();
    sub.take();

    let rect = Rect::new(50, 30, 40, 20);
    let mut pixels = Vec::new();
    for i in 0..rect.area() {
        pixels.extend_from_slice(&[200, (i % 251) as u8, 17, 0]);
    }
    canvas.set_overlay(Some(Overlay { rect, pixels: pixels.clone() }));

    let frame = sub.take().expect("the overlay is damage");
    let mut damage = Damage::new();
    frame.regions.iter().for_each(|r| damage.add(r.rect));
    assert!(damage.covers(rect), "{damage:?}");
    let region = frame.regions.iter().find(|r| r.rect == rect).expect("exactly the overlay's rectangle");
    assert_eq!(region.pixels, pixels);
    assert_eq!(canvas.read(rect), pixels);
    let aligned = sub.canvas().read_aligned(Rect::new(51, 30, 2, 1), 16);
    assert_eq!(aligned.rect, Rect::new(48, 30, 16, 1));
    assert_eq!(&aligned.pixels[..8], &underneath[(30 * 200 + 48) * 4..(30 * 200 + 50) * 4], "left of the overlay: the desktop");
    assert_eq!(&aligned.pixels[8..], &pixels[..14 * 4], "on the overlay: the overlay");
    let all = whole(&canvas);
    assert_eq!(pixel(&all, 200, 49, 30), pixel(&underneath, 200, 49, 30));
    assert_eq!(pixel(&all, 200, 90, 49), pixel(&underneath, 200, 90, 49));

    canvas.set_overlay(None);
    let frame = sub.take().expect("clearing the overlay is damage");
    let region = frame.regions.iter().find(|r| r.rect == rect).expect("the overlay's old rectangle");
    assert_eq!(region.pixels, canvas.read(rect));
    assert_eq!(whole(&canvas), underneath, "every pixel is the desktop's again");
}

#[test]
fn a_box_is_drawn_centred_with_its_title_text_and_buttons() {
    let size = Size::new(800, 600);
    let canvas = desktop(size);
    let underneath = whole(&canvas);
    let board = MessageBoard::new(Arc::clone(&canvas));
    assert!(!board.is_showing());
    let (id, _rx) = board.show(message("Notice", "The system restarts at noon. Save your work.", Buttons::OkCancel)).unwrap();
    assert_eq!(board.shown(), Some(id));
    let panel = board.panel_rect().unwrap();
    assert_eq!(canvas.overlay_rect(), Some(panel));
    let (cx, cy) = centre(panel);
    assert!(cx.abs_diff(400) <= 12 && cy.abs_diff(300) <= 20, "centred: {panel:?}");

    let all = whole(&canvas);
    let differs = (panel.y..panel.y + panel.height)
        .flat_map(|y| (panel.x..panel.x + panel.width).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(&all, 800, x, y) != pixel(&underneath, 800, x, y))
        .count();
    assert!(differs as u64 > panel.area() * 9 / 10, "the panel hides the desktop: {differs} of {}", panel.area());
    // Outside the panel, the desktop as it was.
    for (x, y) in [(0, 0), (panel.x - 1, panel.y), (panel.x, panel.y - 1), (799, 599), (panel.right() as u16, cy)] {
        assert_eq!(pixel(&all, 800, x, y), pixel(&underneath, 800, x, y), "{x},{y}");
    }

    // The text is really drawn: glyphs of the font, found where the box is.
    for text in ["Notice", "The system restarts at noon.", "OK", "Cancel"] {
        let at = find(&canvas, text).unwrap_or_else(|| panic!("{text:?} is not on the canvas"));
        assert!(contains(panel, Rect::new(at.0, at.1, CELL.width, CELL.height)), "{text:?} at {at:?}, outside {panel:?}");
    }
    assert_eq!(find(&canvas, "Yes"), None);
    let buttons = board.button_rects();
    assert_eq!(buttons.iter().map(|(a, _)| *a).collect::<Vec<_>>(), [MessageAnswer::Ok, MessageAnswer::Cancel]);
    let ok_label = find(&canvas, "OK").unwrap();
    assert!(contains(buttons[0].1, Rect::new(ok_label.0, ok_label.1, 2 * CELL.width, CELL.height)), "the OK label is on the OK button");
    for (_, rect) in &buttons {
        assert!(contains(panel, *rect));
    }
    // The focused (default) button is highlighted: its fill differs from the other's.
    assert_eq!(board.focused(), Some(MessageAnswer::Ok));
    let fill = |r: Rect| pixel(&all, 800, r.x + 3, r.y + 3);
    assert_ne!(fill(buttons[0].1), fill(buttons[1].1));
    key(&board, TAB);
    assert_eq!(board.focused(), Some(MessageAnswer::Cancel));
    let after = whole(&canvas);
    assert_eq!(pixel(&after, 800, buttons[1].1.x + 3, buttons[1].1.y + 3), fill(buttons[0].1), "the highlight moved");
}

#[test]
fn long_text_is_wrapped_and_cut() {
    let canvas = desktop(Size::new(1024, 768));
    let board = MessageBoard::new(Arc::clone(&canvas));
    let text = "lorem ipsum dolor sit amet ".repeat(100);
    board.show(message("Long", &text, Buttons::Ok)).unwrap();
    let panel = board.panel_rect().unwrap();
    assert!(panel.width <= 66 * 10 && panel.height <= 20 * 19, "bounded: {panel:?}");
    assert!(find(&canvas, "lorem ipsum dolor sit amet lorem").is_some());
    let cut = find(&canvas, "…").expect("the cut is marked");
    assert!(contains(panel, Rect::new(cut.0, cut.1, CELL.width, CELL.height)));
}

#[test]
fn clicking_a_button_answers_it() {
    let canvas = desktop(Size::new(640, 480));
    let underneath = whole(&canvas);
    let board = MessageBoard::new(Arc::clone(&canvas));
    let (_, mut rx) = board.show(message("Question", "Proceed?", Buttons::OkCancel)).unwrap();
    let ok = button(&board, MessageAnswer::Ok);
    let panel = board.panel_rect().unwrap();

    // Outside the buttons, clicks are taken but answer nothing; pointer moves pass.
    assert_eq!(click(&board, panel.x + 2, panel.y + 2), (true, true));
    assert_eq!(click(&board, 1, 1), (true, true));
    assert!(!board.handle_input(&InputEvent::PointerMove { x: 5, y: 5 }));
    assert!(board.handle_input(&InputEvent::Wheel { axis: rdhost_desktop::WheelAxis::Vertical, delta: 120, x: 5, y: 5 }));
    // Pressed on OK, released elsewhere: no answer (as a real button).
    let (x, y) = centre(ok);
    assert!(board.handle_input(&InputEvent::Button { button: MouseButton::Left, pressed: true, x, y }));
    assert!(board.handle_input(&InputEvent::Button { button: MouseButton::Left, pressed: false, x: 2, y: 2 }));
    assert_eq!(answered(&mut rx), None);

    assert_eq!(click(&board, x, y), (true, true));
    assert_eq!(answered(&mut rx), Some(MessageAnswer::Ok));
    assert!(!board.is_showing());
    assert_eq!(canvas.overlay_rect(), None);
    assert_eq!(whole(&canvas), underneath, "the box is gone without a trace");
    // No box: everything passes.
    assert_eq!(click(&board, x, y), (false, false));

    let (_, mut rx) = board.show(message("Question", "Proceed?", Buttons::OkCancel)).unwrap();
    let (x, y) = centre(button(&board, MessageAnswer::Cancel));
    click(&board, x, y);
    assert_eq!(answered(&mut rx), Some(MessageAnswer::Cancel));
}

#[test]
fn keys_answer_as_on_windows() {
    let canvas = desktop(Size::new(640, 480));
    let board = MessageBoard::new(canvas);
    let cases: &[(Buttons, &[u8], MessageAnswer)] = &[
        (Buttons::Ok, &[ENTER], MessageAnswer::Ok),
        (Buttons::Ok, &[ESCAPE], MessageAnswer::Ok),
        (Buttons::OkCancel, &[ENTER], MessageAnswer::Ok),
        (Buttons::OkCancel, &[ESCAPE], MessageAnswer::Cancel),
        (Buttons::OkCancel, &[TAB, ENTER], MessageAnswer::Cancel),
        (Buttons::OkCancel, &[TAB, TAB, ENTER], MessageAnswer::Ok),
        (Buttons::YesNo, &[ENTER], MessageAnswer::Yes),
        (Buttons::YesNo, &[ESCAPE], MessageAnswer::No),
        (Buttons::YesNo, &[Y], MessageAnswer::Yes),
        (Buttons::YesNo, &[N], MessageAnswer::No),
        (Buttons::YesNo, &[A, TAB, ENTER], MessageAnswer::No),
        // Y and N mean nothing without Yes and No buttons.
        (Buttons::OkCancel, &[Y, N, ESCAPE], MessageAnswer::Cancel),
    ];
    for &(buttons, keys, expected) in cases {
        let (_, mut rx) = board.show(message("Keys", "Press a key", buttons)).unwrap();
        for &code in keys {
            assert_eq!(key(&board, code), (true, true), "{buttons:?} {keys:?}: every key is taken while a box shows");
        }
        assert_eq!(answered(&mut rx), Some(expected), "{buttons:?} {keys:?}");
        assert!(!board.is_showing());
    }

    // Typed letters (clients in Unicode input mode) answer Yes/No too.
    let (_, mut rx) = board.show(message("Keys", "Type", Buttons::YesNo)).unwrap();
    assert!(board.handle_input(&InputEvent::Unicode { code_unit: u16::from(b'q'), pressed: true }));
    assert_eq!(answered(&mut rx), None);
    assert!(board.handle_input(&InputEvent::Unicode { code_unit: u16::from(b'N'), pressed: true }));
    assert!(board.handle_input(&InputEvent::Unicode { code_unit: u16::from(b'N'), pressed: false }), "its release follows its press");
    assert_eq!(answered(&mut rx), Some(MessageAnswer::No));
}

#[test]
fn keys_held_across_a_box_reach_the_desktop_in_pairs() {
    let board = MessageBoard::new(desktop(Size::new(640, 480)));
    let ctrl = Scancode::new(LEFT_CTRL, false);
    let enter = Scancode::new(ENTER, false);
    // Ctrl goes down at the desktop, then a box appears.
    assert!(!board.handle_input(&InputEvent::Key { scancode: ctrl, pressed: true }));
    let (_, mut first) = board.show(message("A", "first", Buttons::Ok)).unwrap();
    let (_, mut second) = board.show(message("B", "second", Buttons::Ok)).unwrap();
    // Its repeats are taken and do nothing; its release goes to the desktop, which saw it go down.
    assert!(board.handle_input(&InputEvent::Key { scancode: ctrl, pressed: true }));
    assert!(!board.handle_input(&InputEvent::Key { scancode: ctrl, pressed: false }));
    // Enter answers the first box on its press; held, it repeats, and the repeats must not
    // answer the second box; its release, after the box, is still taken.
    assert!(board.handle_input(&InputEvent::Key { scancode: enter, pressed: true }));
    assert_eq!(answered(&mut first), Some(MessageAnswer::Ok));
    assert!(board.handle_input(&InputEvent::Key { scancode: enter, pressed: true }));
    assert_eq!(answered(&mut second), None);
    assert!(board.handle_input(&InputEvent::Key { scancode: enter, pressed: false }));
    assert_eq!(key(&board, ENTER), (true, true));
    assert_eq!(answered(&mut second), Some(MessageAnswer::Ok));
    // A key pressed in the box whose release comes after it: the release is still taken.
    let (_, mut third) = board.show(message("C", "third", Buttons::YesNo)).unwrap();
    let a = Scancode::new(A, false);
    assert!(board.handle_input(&InputEvent::Key { scancode: a, pressed: true }));
    key(&board, N);
    assert_eq!(answered(&mut third), Some(MessageAnswer::No));
    assert!(board.handle_input(&InputEvent::Key { scancode: a, pressed: false }));
    // Then the desktop has its keyboard back.
    assert_eq!(key(&board, A), (false, false));
    assert!(!board.handle_input(&InputEvent::LockState { caps_lock: true, num_lock: false, scroll_lock: false }));
}

#[test]
fn boxes_wait_their_turn_and_the_queue_is_bounded() {
    let canvas = desktop(Size::new(800, 600));
    let board = MessageBoard::new(Arc::clone(&canvas));
    let (first, mut rx1) = board.show(message("First", "first box", Buttons::Ok)).unwrap();
    let (second, mut rx2) = board.show(message("Second", "second box", Buttons::YesNo)).unwrap();
    assert_ne!(first, second);
    assert_eq!((board.shown(), board.waiting()), (Some(first), 1));
    assert!(find(&canvas, "first box").is_some());
    assert!(find(&canvas, "second box").is_none());

    key(&board, ENTER);
    assert_eq!(answered(&mut rx1), Some(MessageAnswer::Ok));
    assert_eq!(answered(&mut rx2), None);
    assert_eq!(board.shown(), Some(second));
    assert!(find(&canvas, "second box").is_some());
    assert!(find(&canvas, "first box").is_none());
    assert_eq!(board.button_rects().iter().map(|(a, _)| *a).collect::<Vec<_>>(), [MessageAnswer::Yes, MessageAnswer::No]);

    let mut waiting = Vec::new();
    for i in 0..MAX_WAITING {
        waiting.push(board.show(message("More", &format!("box {i}"), Buttons::Ok)).unwrap().1);
    }
    assert_eq!(board.show(message("More", "one too many", Buttons::Ok)).unwrap_err(), MessageError::QueueFull);
    key(&board, N);
    assert_eq!(answered(&mut rx2), Some(MessageAnswer::No));
    for mut rx in waiting {
        assert!(board.is_showing());
        key(&board, ESCAPE);
        assert_eq!(answered(&mut rx), Some(MessageAnswer::Ok));
    }
    assert!(!board.is_showing());
    assert_eq!(canvas.overlay_rect(), None);
}

#[test]
fn expiring_answers_timeout() {
    let canvas = desktop(Size::new(800, 600));
    let board = MessageBoard::new(Arc::clone(&canvas));
    let (first, mut rx1) = board.show(message("First", "first box", Buttons::Ok)).unwrap();
    let (second, mut rx2) = board.show(message("Second", "second box", Buttons::Ok)).unwrap();
    let (third, mut rx3) = board.show(message("Third", "third box", Buttons::Ok)).unwrap();

    // A waiting box times out without ever being shown.
    board.expire(second);
    assert_eq!(answered(&mut rx2), Some(MessageAnswer::Timeout));
    assert_eq!(board.shown(), Some(first));
    board.expire(first);
    assert_eq!(answered(&mut rx1), Some(MessageAnswer::Timeout));
    assert_eq!(board.shown(), Some(third));
    assert!(find(&canvas, "third box").is_some());
    // Expiring an answered box changes nothing.
    board.expire(first);
    assert_eq!(board.shown(), Some(third));
    board.expire(third);
    assert_eq!(answered(&mut rx3), Some(MessageAnswer::Timeout));
    assert!(!board.is_showing());
    assert_eq!(canvas.overlay_rect(), None);
}

#[test]
fn a_resize_re_centres_the_box() {
    let canvas = desktop(Size::new(800, 600));
    let board = MessageBoard::new(Arc::clone(&canvas));
    let (_, mut rx) = board.show(message("Resize", "I follow the canvas", Buttons::Ok)).unwrap();
    let before = board.panel_rect().unwrap();

    canvas.resize(Size::new(1280, 1024));
    let mut sub = canvas.subscribe();
    sub.take();
    board.relayout();
    let after = board.panel_rect().unwrap();
    assert_eq!((after.width, after.height), (before.width, before.height));
    let (cx, cy) = centre(after);
    assert!(cx.abs_diff(640) <= 12 && cy.abs_diff(512) <= 20, "re-centred: {after:?}");
    assert_eq!(canvas.overlay_rect(), Some(after));
    let frame = sub.take().expect("the move is damage");
    let mut damage = Damage::new();
    frame.regions.iter().for_each(|r| damage.add(r.rect));
    assert!(damage.covers(after), "{damage:?}");
    assert!(find(&canvas, "I follow the canvas").is_some());

    // Lazily, too: a click right after a shrink hits the button where it now is.
    canvas.resize(Size::new(400, 300));
    let (x, y) = centre(button(&board, MessageAnswer::Ok));
    assert!(x < 400 && y < 300);
    click(&board, x, y);
    assert_eq!(answered(&mut rx), Some(MessageAnswer::Ok));
}

#[tokio::test]
async fn following_resizes_re_centres_without_being_asked() {
    let canvas = desktop(Size::new(800, 600));
    let board = MessageBoard::new(Arc::clone(&canvas));
    let follower = tokio::spawn(board.follow_resizes());
    board.show(message("Resize", "follow", Buttons::Ok)).unwrap();
    canvas.resize(Size::new(1600, 1200));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rect = canvas.overlay_rect().unwrap();
        if centre(rect).0.abs_diff(800) <= 12 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not re-centred: {rect:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Dropping the board takes its box away and ends the follower at the next change.
    drop(board);
    assert_eq!(canvas.overlay_rect(), None);
    canvas.draw(|_, _| vec![Rect::new(0, 0, 1, 1)]);
    tokio::time::timeout(Duration::from_secs(5), follower).await.expect("the follower ends").unwrap();
}
