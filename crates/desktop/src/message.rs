//! Message boxes over a desktop: `WTSSendMessage` (`rdhost msg`) and the shadow consent prompt.
//!
//! A [`MessageBoard`] belongs to one desktop. It draws the box it shows as a canvas
//! [`Overlay`], so every terminal showing the desktop sees it and the desktop's own pixels are
//! untouched underneath; this works alike for the terminal desktop and X desktops. One box is
//! shown at a time, the others wait in a bounded queue. Input from a terminal that drives the
//! session goes through [`MessageBoard::handle_input`] first: while a box is shown it takes the
//! keys and clicks, and answers the box.
//!
//! Text is drawn with the terminal desktop's embedded font, on the canvas' cell grid (cells of
//! that font, counted from the top-left corner), so the text of a box can be found in a
//! screenshot the way the terminal desktop's text is (`terminal::find_text`).
//!
//! Nothing here reads a clock: a timeout is the caller's timer calling [`MessageBoard::expire`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::canvas::{BYTES_PER_PIXEL, Canvas, Overlay};
use crate::{InputEvent, MouseButton, Rect, Scancode, Size};

// The terminal desktop's font: the same cells, and the glyph cache shared with it.
use crate::terminal::font::Face;

/// The font size a board draws with unless told otherwise: the terminal desktop's default.
pub const DEFAULT_FONT_PX: f32 = 16.0;
/// Boxes that may wait behind the one shown; `show` refuses more.
pub const MAX_WAITING: usize = 16;
/// Text is wrapped to at most this many columns.
const MAX_COLUMNS: usize = 60;
/// A box is at least this many columns wide (when the canvas allows), so short text still looks like a box.
const MIN_COLUMNS: usize = 24;
/// Text beyond this many lines is cut, the last line ending in an ellipsis.
const MAX_LINES: usize = 12;
/// Only this much of a message is ever looked at: the rest could not be shown anyway.
const MAX_TEXT_CHARS: usize = 4096;
/// Columns between the panel's edge and its text.
const MARGIN_COLUMNS: usize = 2;
/// Columns between two buttons, and the narrowest a button is.
const BUTTON_GAP_COLUMNS: usize = 2;
const BUTTON_MIN_COLUMNS: usize = 8;
/// The panel's border, drawn outside the cell grid so that no text cell holds border pixels.
const BORDER: i32 = 2;

const fn bgrx(r: u8, g: u8, b: u8) -> [u8; 4] {
    [b, g, r, 0]
}
const PANEL: [u8; 4] = bgrx(0xE4, 0xE4, 0xE4);
const PANEL_EDGE: [u8; 4] = bgrx(0x30, 0x30, 0x30);
const TITLE_BAR: [u8; 4] = bgrx(0x1F, 0x4E, 0x8C);
const TITLE_TEXT: [u8; 4] = bgrx(0xFF, 0xFF, 0xFF);
const TEXT: [u8; 4] = bgrx(0x10, 0x10, 0x10);
const BUTTON: [u8; 4] = bgrx(0xFA, 0xFA, 0xFA);
const BUTTON_EDGE: [u8; 4] = bgrx(0x70, 0x70, 0x70);
const FOCUS: [u8; 4] = bgrx(0x2A, 0x6F, 0xD6);
const FOCUS_EDGE: [u8; 4] = bgrx(0x0E, 0x2A, 0x66);
const FOCUS_TEXT: [u8; 4] = bgrx(0xFF, 0xFF, 0xFF);

/// PC/AT set-1 make codes the box answers to.
mod key {
    pub const ESCAPE: u8 = 0x01;
    pub const TAB: u8 = 0x0F;
    pub const Y: u8 = 0x15;
    pub const ENTER: u8 = 0x1C;
    pub const LEFT_SHIFT: u8 = 0x2A;
    pub const N: u8 = 0x31;
    pub const RIGHT_SHIFT: u8 = 0x36;
    pub const SPACE: u8 = 0x39;
    pub const LEFT: u8 = 0x4B;
    pub const RIGHT: u8 = 0x4D;
}

/// Which buttons a box has (`MB_OK`, `MB_OKCANCEL`, `MB_YESNO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Buttons {
    #[default]
    Ok,
    OkCancel,
    YesNo,
}

impl Buttons {
    /// The answers of the buttons, left to right; the first is the default button.
    pub fn answers(self) -> &'static [MessageAnswer] {
        match self {
            Buttons::Ok => &[MessageAnswer::Ok],
            Buttons::OkCancel => &[MessageAnswer::Ok, MessageAnswer::Cancel],
            Buttons::YesNo => &[MessageAnswer::Yes, MessageAnswer::No],
        }
    }

    /// What Escape answers: Cancel, No, or OK for a box that has nothing else.
    pub fn escape_answer(self) -> MessageAnswer {
        match self {
            Buttons::Ok => MessageAnswer::Ok,
            Buttons::OkCancel => MessageAnswer::Cancel,
            Buttons::YesNo => MessageAnswer::No,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Buttons::Ok => "ok",
            Buttons::OkCancel => "okcancel",
            Buttons::YesNo => "yesno",
        }
    }
}

impl FromStr for Buttons {
    type Err = MessageError;

    /// `ok`, `okcancel` or `yesno`, in any case (the CLI's `--buttons`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Buttons::Ok, Buttons::OkCancel, Buttons::YesNo]
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| MessageError::UnknownButtons(s.to_string()))
    }
}

impl fmt::Display for Buttons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `WTSSendMessage` response (spec §1.3): the button pressed, or why there was none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageAnswer {
    Ok,
    Cancel,
    Yes,
    No,
    /// The box was dismissed by its timeout.
    Timeout,
    /// The caller did not wait for an answer.
    Async,
}

impl MessageAnswer {
    const ALL: [MessageAnswer; 6] =
        [MessageAnswer::Ok, MessageAnswer::Cancel, MessageAnswer::Yes, MessageAnswer::No, MessageAnswer::Timeout, MessageAnswer::Async];

    /// The Windows response code: IDOK 1, IDCANCEL 2, IDYES 6, IDNO 7, IDTIMEOUT 32000, IDASYNC 32001.
    pub fn id(self) -> u32 {
        match self {
            MessageAnswer::Ok => 1,
            MessageAnswer::Cancel => 2,
            MessageAnswer::Yes => 6,
            MessageAnswer::No => 7,
            MessageAnswer::Timeout => 32000,
            MessageAnswer::Async => 32001,
        }
    }

    /// The Windows name: `IDOK`, `IDCANCEL`, `IDYES`, `IDNO`, `IDTIMEOUT`, `IDASYNC`.
    pub fn name(self) -> &'static str {
        match self {
            MessageAnswer::Ok => "IDOK",
            MessageAnswer::Cancel => "IDCANCEL",
            MessageAnswer::Yes => "IDYES",
            MessageAnswer::No => "IDNO",
            MessageAnswer::Timeout => "IDTIMEOUT",
            MessageAnswer::Async => "IDASYNC",
        }
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    /// The caption of the button that gives this answer.
    fn label(self) -> &'static str {
        match self {
            MessageAnswer::Ok => "OK",
            MessageAnswer::Cancel => "Cancel",
            MessageAnswer::Yes => "Yes",
            MessageAnswer::No => "No",
            MessageAnswer::Timeout | MessageAnswer::Async => "",
        }
    }
}

/// As `msg /w` prints it: `IDOK (1)`.
impl fmt::Display for MessageAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.id())
    }
}

/// One box: its title bar, its text (`\n` breaks lines; long lines are wrapped) and its buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBox {
    pub title: String,
    pub text: String,
    pub buttons: Buttons,
}

/// Which box, among those a board was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{MAX_WAITING} message boxes are already waiting on this desktop")]
    QueueFull,
    #[error("unknown buttons {0:?}: expected ok, okcancel or yesno")]
    UnknownButtons(String),
}

/// The message boxes of one desktop: one shown at a time, centred on the canvas, the rest
/// waiting (at most [`MAX_WAITING`]).
///
/// Re-centring after a canvas resize happens lazily in [`show`](Self::show),
/// [`handle_input`](Self::handle_input) and [`button_rects`](Self::button_rects); call
/// [`relayout`](Self::relayout) or run [`follow_resizes`](Self::follow_resizes) to have it
/// happen as soon as the canvas changes size. Dropping the board takes its box off the canvas;
/// receivers of boxes never answered then see their sender dropped.
pub struct MessageBoard {
    canvas: Arc<Canvas>,
    face: Arc<Face>,
    state: Mutex<BoardState>,
}

struct BoardState {
    next_id: u64,
    shown: Option<Shown>,
    waiting: VecDeque<Pending>,
    /// Keys and buttons whose press reached the desktop and are still down: their releases
    /// reach it too, box or no box, or the desktop would think them held for ever.
    down_at_desktop: Vec<Held>,
    /// Keys and buttons whose press a box took: their releases are taken too, even after the
    /// box is gone, so the desktop never sees a release without a press.
    down_at_board: Vec<Held>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Key(Scancode),
    Unicode(u16),
    Button(MouseButton),
}

struct Pending {
    id: MessageId,
    msg: MessageBox,
    reply: oneshot::Sender<MessageAnswer>,
}

struct Shown {
    pending: Pending,
    /// Index into the box's buttons.
    focus: usize,
    /// The button the left mouse button went down on: releasing over it answers.
    pressed: Option<usize>,
    layout: Layout,
}

impl MessageBoard {
    pub fn new(canvas: Arc<Canvas>) -> Arc<MessageBoard> {
        Self::with_font_px(canvas, DEFAULT_FONT_PX)
    }

    /// A board drawing at `font_px` (the terminal desktop's font size, so a box's text sits on
    /// the same cell grid as the terminal's).
    pub fn with_font_px(canvas: Arc<Canvas>, font_px: f32) -> Arc<MessageBoard> {
        Arc::new(MessageBoard {
            canvas,
            face: Face::get(font_px),
            state: Mutex::new(BoardState {
                next_id: 1,
                shown: None,
                waiting: VecDeque::new(),
                down_at_desktop: Vec::new(),
                down_at_board: Vec::new(),
            }),
        })
    }

    pub fn canvas(&self) -> &Arc<Canvas> {
        &self.canvas
    }

    /// Queue a box: shown at once when no other is, else after those before it are answered.
    /// The receiver gets its answer: a button, or `Timeout` from [`expire`](Self::expire).
    pub fn show(&self, mut msg: MessageBox) -> Result<(MessageId, oneshot::Receiver<MessageAnswer>), MessageError> {
        // Waiting boxes keep only what could ever be drawn of them.
        for text in [&mut msg.title, &mut msg.text] {
            if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
                text.truncate(cut);
            }
        }
        let mut state = self.lock();
        if state.shown.is_some() && state.waiting.len() >= MAX_WAITING {
            return Err(MessageError::QueueFull);
        }
        let id = MessageId(state.next_id);
        state.next_id += 1;
        let (reply, answer) = oneshot::channel();
        let pending = Pending { id, msg, reply };
        if state.shown.is_some() {
            state.waiting.push_back(pending);
            self.relayout_locked(&mut state);
        } else {
            self.present(&mut state, pending);
        }
        Ok((id, answer))
    }

    /// Input from a terminal allowed to drive the session, before it reaches the desktop.
    /// Returns true when the board took it: then it must not reach the desktop.
    ///
    /// While a box is shown it takes every key, typed character, mouse button and wheel event;
    /// pointer moves and lock-key state pass. The exception is the release of a key or button
    /// that went down before the box appeared: it passes, so nothing stays held at the desktop.
    /// Call this for every event, box or no box (it is cheap): that is how the board knows
    /// what the desktop saw go down.
    ///
    /// Keys: Enter or Space press the focused button (at first the default: OK or Yes); Escape
    /// answers Cancel, No, or OK when that is the only button; Y and N (set-1 codes, so the keys
    /// where a US keyboard has them, or the typed letters) answer Yes and No; Tab, Shift+Tab
    /// and the arrows move the focus. A left click (press and release on the same button)
    /// presses a button.
    pub fn handle_input(&self, event: &InputEvent) -> bool {
        let mut state = self.lock();
        self.relayout_locked(&mut state);
        let showing = state.shown.is_some();
        let (held, pressed) = match *event {
            InputEvent::Key { scancode, pressed } => (Held::Key(scancode), pressed),
            InputEvent::Unicode { code_unit, pressed } => (Held::Unicode(code_unit), pressed),
            InputEvent::Button { button, pressed, .. } => (Held::Button(button), pressed),
            InputEvent::Wheel { .. } => return showing,
            InputEvent::PointerMove { .. } | InputEvent::LockState { .. } => return false,
        };
        if !pressed {
            let theirs = remove(&mut state.down_at_desktop, held);
            let ours = remove(&mut state.down_at_board, held);
            if theirs {
                return false;
            }
            if showing && let InputEvent::Button { button: MouseButton::Left, x, y, .. } = *event {
                self.click_released(&mut state, x, y);
            }
            return ours || showing;
        }
        if !showing {
            insert(&mut state.down_at_desktop, held);
            return false;
        }
        // A key held down repeats its press: only the first one acts, so holding Enter does not
        // answer the boxes waiting behind this one as well.
        let repeat = state.down_at_desktop.contains(&held) || state.down_at_board.contains(&held);
        insert(&mut state.down_at_board, held);
        if !repeat {
            match *event {
                InputEvent::Key { scancode, .. } => self.key_pressed(&mut state, scancode),
                InputEvent::Unicode { code_unit, .. } => self.char_typed(&mut state, code_unit),
                InputEvent::Button { button: MouseButton::Left, x, y, .. } => self.click_pressed(&mut state, x, y),
                _ => {}
            }
        }
        true
    }

    /// Dismiss a box, shown or waiting, answering `Timeout`. An id already answered is ignored.
    pub fn expire(&self, id: MessageId) {
        let mut state = self.lock();
        if state.shown.as_ref().is_some_and(|s| s.pending.id == id) {
            self.answer(&mut state, MessageAnswer::Timeout);
        } else if let Some(i) = state.waiting.iter().position(|p| p.id == id) {
            let pending = state.waiting.remove(i).expect("the position was just found");
            let _ = pending.reply.send(MessageAnswer::Timeout);
        }
    }

    pub fn is_showing(&self) -> bool {
        self.lock().shown.is_some()
    }

    /// The box shown now, if any.
    pub fn shown(&self) -> Option<MessageId> {
        self.lock().shown.as_ref().map(|s| s.pending.id)
    }

    /// How many boxes wait behind the one shown.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// The button that Enter or Space would press now.
    pub fn focused(&self) -> Option<MessageAnswer> {
        let state = self.lock();
        state.shown.as_ref().map(|s| s.pending.msg.buttons.answers()[s.focus])
    }

    /// Where the shown box lies on the canvas (its visible part), after any pending re-centring.
    pub fn panel_rect(&self) -> Option<Rect> {
        let mut state = self.lock();
        self.relayout_locked(&mut state);
        let size = self.canvas.size();
        state.shown.as_ref().map(|s| s.layout.panel.clip(size))
    }

    /// The shown box's buttons and where they lie on the canvas (their visible parts), left to
    /// right, after any pending re-centring. Empty when no box is shown.
    pub fn button_rects(&self) -> Vec<(MessageAnswer, Rect)> {
        let mut state = self.lock();
        self.relayout_locked(&mut state);
        let size = self.canvas.size();
        state.shown.as_ref().map(|s| s.layout.buttons.iter().map(|b| (b.answer, b.rect.clip(size))).collect()).unwrap_or_default()
    }

    /// Re-centre the shown box if the canvas changed size since it was drawn.
    pub fn relayout(&self) {
        let mut state = self.lock();
        self.relayout_locked(&mut state);
    }

    /// Re-centre the shown box whenever the canvas changes size, for as long as the board
    /// lives (the future ends at the canvas' first change after the board is dropped).
    /// Spawn it once per board.
    pub fn follow_resizes(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let board = Arc::downgrade(self);
        let mut changes = self.canvas.changes();
        async move {
            while changes.changed().await.is_ok() {
                let Some(board) = board.upgrade() else { return };
                board.relayout();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn present(&self, state: &mut BoardState, pending: Pending) {
        let layout = Layout::new(&self.face, self.canvas.size(), &pending.msg);
        let shown = Shown { pending, focus: 0, pressed: None, layout };
        self.canvas.set_overlay(Some(shown.render(&self.face)));
        state.shown = Some(shown);
    }

    fn relayout_locked(&self, state: &mut BoardState) {
        let size = self.canvas.size();
        if let Some(shown) = &mut state.shown
            && shown.layout.canvas != size
        {
            shown.layout = Layout::new(&self.face, size, &shown.pending.msg);
            self.canvas.set_overlay(Some(shown.render(&self.face)));
        }
    }

    fn redraw(&self, state: &BoardState) {
        if let Some(shown) = &state.shown {
            self.canvas.set_overlay(Some(shown.render(&self.face)));
        }
    }

    /// Answer the shown box and show the next one, or clear the canvas of boxes.
    fn answer(&self, state: &mut BoardState, answer: MessageAnswer) {
        let Some(shown) = state.shown.take() else { return };
        // The caller may have stopped waiting (IDASYNC): the box was still shown, as on Windows.
        let _ = shown.pending.reply.send(answer);
        match state.waiting.pop_front() {
            Some(next) => self.present(state, next),
            None => self.canvas.set_overlay(None),
        }
    }

    fn key_pressed(&self, state: &mut BoardState, scancode: Scancode) {
        let Some(shown) = &mut state.shown else { return };
        let buttons = shown.pending.msg.buttons;
        let count = buttons.answers().len();
        let shift = [key::LEFT_SHIFT, key::RIGHT_SHIFT].into_iter().any(|code| {
            let held = Held::Key(Scancode::new(code, false));
            state.down_at_desktop.contains(&held) || state.down_at_board.contains(&held)
        });
        let answer = match scancode.code {
            key::ENTER | key::SPACE => Some(buttons.answers()[shown.focus]),
            key::ESCAPE => Some(buttons.escape_answer()),
            key::Y if buttons == Buttons::YesNo => Some(MessageAnswer::Yes),
            key::N if buttons == Buttons::YesNo => Some(MessageAnswer::No),
            key::TAB | key::LEFT | key::RIGHT => {
                let back = scancode.code == key::LEFT || scancode.code == key::TAB && shift;
                shown.focus = if back { (shown.focus + count - 1) % count } else { (shown.focus + 1) % count };
                self.redraw(state);
                None
            }
            _ => None,
        };
        if let Some(answer) = answer {
            self.answer(state, answer);
        }
    }

    fn char_typed(&self, state: &mut BoardState, code_unit: u16) {
        let Some(shown) = &state.shown else { return };
        if shown.pending.msg.buttons != Buttons::YesNo {
            return;
        }
        match char::from_u32(u32::from(code_unit)).map(|c| c.to_ascii_lowercase()) {
            Some('y') => self.answer(state, MessageAnswer::Yes),
            Some('n') => self.answer(state, MessageAnswer::No),
            _ => {}
        }
    }

    fn click_pressed(&self, state: &mut BoardState, x: u16, y: u16) {
        let Some(shown) = &mut state.shown else { return };
        shown.pressed = shown.layout.button_at(x, y);
        if let Some(i) = shown.pressed {
            shown.focus = i;
            self.redraw(state);
        }
    }

    fn click_released(&self, state: &mut BoardState, x: u16, y: u16) {
        let Some(shown) = &mut state.shown else { return };
        let pressed = shown.pressed.take();
        if let Some(i) = pressed
            && shown.layout.button_at(x, y) == Some(i)
        {
            let answer = shown.pending.msg.buttons.answers()[i];
            self.answer(state, answer);
        }
    }
}

impl Drop for MessageBoard {
    fn drop(&mut self) {
        if self.lock().shown.is_some() {
            self.canvas.set_overlay(None);
        }
    }
}

/// At most this many keys are remembered as held: a client that presses without releasing
/// (or a flood of typed characters) cannot grow the sets, it only loses its oldest entries.
const MAX_HELD: usize = 64;

fn insert(set: &mut Vec<Held>, held: Held) {
    if !set.contains(&held) {
        if set.len() >= MAX_HELD {
            set.remove(0);
        }
        set.push(held);
    }
}

fn remove(set: &mut Vec<Held>, held: Held) -> bool {
    let before = set.len();
    set.retain(|&h| h != held);
    set.len() != before
}

/// A rectangle in canvas pixels that may reach past the canvas' edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Area {
    x: i32,
    y: i32,
    width: i32,
    height: i32,
}

impl Area {
    fn contains(self, x: u16, y: u16) -> bool {
        self.contains_i32(i32::from(x), i32::from(y))
    }

    fn contains_i32(self, x: i32, y: i32) -> bool {
        x >= self.x && y >= self.y && x < self.x + self.width && y < self.y + self.height
    }

    /// The part on a canvas of `size`.
    fn clip(self, size: Size) -> Rect {
        let left = self.x.clamp(0, i32::from(size.width));
        let top = self.y.clamp(0, i32::from(size.height));
        let right = (self.x + self.width).clamp(left, i32::from(size.width));
        let bottom = (self.y + self.height).clamp(top, i32::from(size.height));
        Rect::new(left as u16, top as u16, (right - left) as u16, (bottom - top) as u16)
    }
}

struct ButtonPlace {
    answer: MessageAnswer,
    rect: Area,
    /// Where its label starts, in canvas pixels (on the cell grid).
    label_x: i32,
    label_y: i32,
}

/// Where everything of one box goes on a canvas of one size. The box is a grid of cells
/// aligned with the canvas' own cell grid: a title row, a blank row, the text, a blank row,
/// the buttons and a blank row, with margins left and right; its border lies just outside.
struct Layout {
    canvas: Size,
    title: String,
    lines: Vec<String>,
    /// Top-left of the cell grid, in canvas pixels.
    grid_x: i32,
    grid_y: i32,
    panel: Area,
    buttons: Vec<ButtonPlace>,
}

impl Layout {
    fn new(face: &Face, canvas: Size, msg: &MessageBox) -> Layout {
        let m = face.metrics;
        let (cw, ch) = (usize::from(m.width), usize::from(m.height));
        let canvas_cols = usize::from(canvas.width) / cw;
        let canvas_rows = usize::from(canvas.height) / ch;

        let answers = msg.buttons.answers();
        let widths: Vec<usize> = answers.iter().map(|a| (a.label().len() + 4).max(BUTTON_MIN_COLUMNS)).collect();
        let buttons_cols = widths.iter().sum::<usize>() + BUTTON_GAP_COLUMNS * (widths.len() - 1);

        // Leave a column of desktop visible on each side where the canvas is wide enough.
        let max_cols = MAX_COLUMNS.min(canvas_cols.saturating_sub(2 * MARGIN_COLUMNS + 2)).max(buttons_cols);
        let max_lines = MAX_LINES.min(canvas_rows.saturating_sub(7)).max(1);
        let mut lines = wrap(&clean(&msg.text, true), max_cols, max_lines + 1);
        if lines.len() > max_lines {
            lines.truncate(max_lines);
            let last = lines.last_mut().expect("at least one line");
            *last = ellipsize(last, max_cols, true);
        }
        if lines.is_empty() {
            lines.push(String::new());
        }
        let title = ellipsize(&clean(&msg.title, false), max_cols, false);

        let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let cols = longest.max(title.chars().count()).max(buttons_cols).max(MIN_COLUMNS.min(max_cols));
        let grid_cols = cols + 2 * MARGIN_COLUMNS;
        let grid_rows = lines.len() + 5;
        // A box larger than the canvas keeps its top-left corner (where the text starts) in view.
        let col0 = canvas_cols.saturating_sub(grid_cols) / 2;
        let row0 = canvas_rows.saturating_sub(grid_rows) / 2;
        let (grid_x, grid_y) = ((col0 * cw) as i32, (row0 * ch) as i32);
        let panel = Area {
            x: grid_x - BORDER,
            y: grid_y - BORDER,
            width: (grid_cols * cw) as i32 + 2 * BORDER,
            height: (grid_rows * ch) as i32 + 2 * BORDER,
        };

        // Buttons reach a little into the blank rows around theirs; the label stays on its row.
        let button_row = grid_rows - 2;
        let pad = (ch / 4) as i32;
        let mut col = MARGIN_COLUMNS + (cols - buttons_cols) / 2;
        let buttons = answers
            .iter()
            .zip(&widths)
            .map(|(&answer, &width)| {
                let place = ButtonPlace {
                    answer,
                    rect: Area {
                        x: grid_x + (col * cw) as i32,
                        y: grid_y + (button_row * ch) as i32 - pad,
                        width: (width * cw) as i32,
                        height: ch as i32 + 2 * pad,
                    },
                    label_x: grid_x + ((col + (width - answer.label().len()) / 2) * cw) as i32,
                    label_y: grid_y + (button_row * ch) as i32,
                };
                col += width + BUTTON_GAP_COLUMNS;
                place
            })
            .collect();
        Layout { canvas, title, lines, grid_x, grid_y, panel, buttons }
    }

    fn button_at(&self, x: u16, y: u16) -> Option<usize> {
        self.buttons.iter().position(|b| b.rect.contains(x, y))
    }
}

impl Shown {
    /// The box as an overlay: its pixels, cut to the canvas.
    fn render(&self, face: &Face) -> Overlay {
        let layout = &self.layout;
        let m = face.metrics;
        let (cw, ch) = (i32::from(m.width), i32::from(m.height));
        let panel = layout.panel;
        let mut image = Image { area: panel, pixels: PANEL_EDGE.repeat((panel.width * panel.height) as usize) };
        let inner = Area { x: panel.x + BORDER, y: panel.y + BORDER, width: panel.width - 2 * BORDER, height: panel.height - 2 * BORDER };
        image.fill(inner, PANEL);
        image.fill(Area { height: ch, ..inner }, TITLE_BAR);
        let text_x = layout.grid_x + MARGIN_COLUMNS as i32 * cw;
        image.text(face, text_x, layout.grid_y, &layout.title, TITLE_TEXT, true);
        for (i, line) in layout.lines.iter().enumerate() {
            image.text(face, text_x, layout.grid_y + (2 + i as i32) * ch, line, TEXT, false);
        }
        for (i, button) in layout.buttons.iter().enumerate() {
            let focused = i == self.focus;
            let (fill, edge, ink, edge_width) = if focused { (FOCUS, FOCUS_EDGE, FOCUS_TEXT, 2) } else { (BUTTON, BUTTON_EDGE, TEXT, 1) };
            let r = button.rect;
            image.fill(r, edge);
            image.fill(Area { x: r.x + edge_width, y: r.y + edge_width, width: r.width - 2 * edge_width, height: r.height - 2 * edge_width }, fill);
            image.text(face, button.label_x, button.label_y, button.answer.label(), ink, focused);
        }
        image.crop(layout.canvas)
    }
}

/// Pixels of an area of the canvas, drawn before they are cut to the canvas.
struct Image {
    area: Area,
    pixels: Vec<u8>,
}

impl Image {
    fn fill(&mut self, r: Area, colour: [u8; 4]) {
        let x0 = r.x.max(self.area.x);
        let y0 = r.y.max(self.area.y);
        let x1 = (r.x + r.width).min(self.area.x + self.area.width);
        let y1 = (r.y + r.height).min(self.area.y + self.area.height);
        for y in y0..y1 {
            for x in x0..x1 {
                let i = self.index(x, y);
                self.pixels[i..i + BYTES_PER_PIXEL].copy_from_slice(&colour);
            }
        }
    }

    /// Draw `text` one character per cell from (x, y), blending each glyph's coverage from
    /// what is underneath to `colour`, exactly as the terminal desktop draws its cells.
    fn text(&mut self, face: &Face, x: i32, y: i32, text: &str, colour: [u8; 4], bold: bool) {
        let m = face.metrics;
        let (cw, ch) = (i32::from(m.width), i32::from(m.height));
        for (n, c) in text.chars().enumerate() {
            if c == ' ' {
                continue;
            }
            let mask = face.cell_mask(c, bold, 1);
            let left = x + n as i32 * cw;
            for my in 0..ch {
                for mx in 0..cw {
                    let a = u32::from(mask[(my * cw + mx) as usize]);
                    let (px, py) = (left + mx, y + my);
                    if a == 0 || !self.area.contains_i32(px, py) {
                        continue;
                    }
                    let i = self.index(px, py);
                    for (channel, &ink) in self.pixels[i..i + 3].iter_mut().zip(&colour) {
                        let under = u32::from(*channel);
                        *channel = ((under * (255 - a) + u32::from(ink) * a + 127) / 255) as u8;
                    }
                }
            }
        }
    }

    fn index(&self, x: i32, y: i32) -> usize {
        (((y - self.area.y) * self.area.width + (x - self.area.x)) as usize) * BYTES_PER_PIXEL
    }

    /// The part on a canvas of `size`, as an overlay.
    fn crop(self, size: Size) -> Overlay {
        let rect = self.area.clip(size);
        if i32::from(rect.width) == self.area.width && i32::from(rect.height) == self.area.height {
            return Overlay { rect, pixels: self.pixels };
        }
        let row_bytes = usize::from(rect.width) * BYTES_PER_PIXEL;
        let mut pixels = Vec::with_capacity(row_bytes * usize::from(rect.height));
        for y in 0..i32::from(rect.height) {
            let start = self.index(i32::from(rect.x), i32::from(rect.y) + y);
            pixels.extend_from_slice(&self.pixels[start..start + row_bytes]);
        }
        Overlay { rect, pixels }
    }
}

/// The text with what cannot be drawn taken out: tabs become spaces, other control characters
/// go (line breaks stay when `keep_lines`), and only the first [`MAX_TEXT_CHARS`] count.
fn clean(text: &str, keep_lines: bool) -> String {
    text.chars()
        .take(MAX_TEXT_CHARS)
        .filter_map(|c| match c {
            '\n' if keep_lines => Some('\n'),
            '\t' | '\n' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Greedy word wrap to `width` columns (one character a column); words longer than a line
/// are broken. Stops after `limit` lines. Blank lines inside the text stay; trailing ones go.
fn wrap(text: &str, width: usize, limit: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    'paragraphs: for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut len = 0;
        for word in paragraph.split_whitespace() {
            let word: Vec<char> = word.chars().collect();
            if len > 0 && len + 1 + word.len() <= width {
                line.push(' ');
                line.extend(&word);
                len += 1 + word.len();
                continue;
            }
            if len > 0 {
                lines.push(std::mem::take(&mut line));
                if lines.len() >= limit {
                    break 'paragraphs;
                }
            }
            let mut chunks = word.chunks(width).peekable();
            while let Some(chunk) = chunks.next() {
                if chunks.peek().is_some() {
                    lines.push(chunk.iter().collect());
                    if lines.len() >= limit {
                        break 'paragraphs;
                    }
                } else {
                    line = chunk.iter().collect();
                    len = chunk.len();
                }
            }
        }
        lines.push(line);
        if lines.len() >= limit {
            break;
        }
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// `text` cut to `width` columns with an ellipsis where it was cut (or, with `always`, where
/// more text followed it anyway).
fn ellipsize(text: &str, width: usize, always: bool) -> String {
    let len = text.chars().count();
    if len <= width && !always {
        return text.to_string();
    }
    let keep = if always && len < width { len } else { width.saturating_sub(1) };
    text.chars().take(keep).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_have_the_windows_codes_and_names() {
        for (answer, id, name) in [
            (MessageAnswer::Ok, 1, "IDOK"),
            (MessageAnswer::Cancel, 2, "IDCANCEL"),
            (MessageAnswer::Yes, 6, "IDYES"),
            (MessageAnswer::No, 7, "IDNO"),
            (MessageAnswer::Timeout, 32000, "IDTIMEOUT"),
            (MessageAnswer::Async, 32001, "IDASYNC"),
        ] {
            assert_eq!((answer.id(), answer.name()), (id, name));
            assert_eq!(MessageAnswer::from_id(id), Some(answer));
        }
        assert_eq!(MessageAnswer::from_id(3), None);
        assert_eq!(MessageAnswer::Ok.to_string(), "IDOK (1)");
    }

    #[test]
    fn buttons_parse_from_the_cli_names() {
        assert_eq!("ok".parse(), Ok(Buttons::Ok));
        assert_eq!("OkCancel".parse(), Ok(Buttons::OkCancel));
        assert_eq!("yesno".parse(), Ok(Buttons::YesNo));
        assert_eq!("yes".parse::<Buttons>(), Err(MessageError::UnknownButtons("yes".into())));
        assert_eq!(Buttons::OkCancel.to_string(), "okcancel");
    }

    #[test]
    fn wrapping_breaks_at_words_and_splits_long_words() {
        assert_eq!(wrap("the quick brown fox", 10, 10), ["the quick", "brown fox"]);
        assert_eq!(wrap("abcdefghijklmnopqrstuvwxy z", 10, 10), ["abcdefghij", "klmnopqrst", "uvwxy z"]);
        assert_eq!(wrap("one\n\ntwo\n\n", 10, 10), ["one", "", "two"]);
        assert_eq!(wrap(&"word ".repeat(1000), 9, 3).len(), 3);
        assert!(wrap("   ", 10, 10).is_empty());
    }

    #[test]
    fn long_titles_and_text_are_cut_with_an_ellipsis() {
        assert_eq!(ellipsize("short", 10, false), "short");
        assert_eq!(ellipsize("a long title", 6, false), "a lon…");
        assert_eq!(ellipsize("cut here", 20, true), "cut here…");
        assert_eq!(ellipsize("0123456789", 10, true), "012345678…");
        assert_eq!(clean("a\tb\u{7}c\nd", true), "a bc\nd");
        assert_eq!(clean("a\nb", false), "a b");
    }

    #[test]
    fn a_board_is_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<MessageBoard>();
    }

    #[test]
    fn an_empty_canvas_gets_an_empty_overlay() {
        let canvas = Canvas::new(Size::new(0, 0));
        let board = MessageBoard::new(Arc::clone(&canvas));
        let (_, mut rx) = board.show(MessageBox { title: "t".into(), text: "x".repeat(100_000), buttons: Buttons::Ok }).unwrap();
        assert_eq!(canvas.overlay_rect(), Some(Rect::new(0, 0, 0, 0)));
        assert!(board.handle_input(&InputEvent::Key { scancode: Scancode::new(key::ENTER, false), pressed: true }));
        assert_eq!(rx.try_recv(), Ok(MessageAnswer::Ok));
    }

    #[test]
    fn a_box_wider_than_the_canvas_keeps_its_start_in_view() {
        let canvas = Canvas::new(Size::new(100, 60));
        let face = Face::get(DEFAULT_FONT_PX);
        let layout = Layout::new(&face, canvas.size(), &MessageBox { title: "T".into(), text: "x ".repeat(500), buttons: Buttons::YesNo });
        assert_eq!((layout.grid_x, layout.grid_y), (0, 0));
        assert_eq!(layout.lines.len(), 1, "one line fits the small canvas");
        assert!(layout.lines[0].ends_with('…'));
        let shown = Shown {
            pending: Pending { id: MessageId(1), msg: MessageBox { title: String::new(), text: String::new(), buttons: Buttons::Ok }, reply: oneshot::channel().0 },
            focus: 0,
            pressed: None,
            layout,
        };
        let overlay = shown.render(&face);
        assert_eq!(overlay.rect, Rect::new(0, 0, 100, 60));
        assert_eq!(overlay.pixels.len(), 100 * 60 * 4);
    }
}
