//! The window: winit (X11 or Wayland) with softbuffer, drawing the remote desktop 1:1 (a
//! smaller window crops it, a larger one pads it). The RDP client runs on the tokio runtime in
//! its own thread ([`link::drive`]); pictures come through a latest-only slot plus a wake-up
//! event, input goes back through a bounded channel.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use rdhost_client::{Button, Client, Pointer};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::keyboard::{KeyCode, ModifiersState, PhysicalKey};
use winit::window::{CursorIcon, CustomCursor, Window, WindowId};

use super::keys;
use super::link::{self, Input, Outcome, Screen, Status};
use super::plan::{Endpoint, Plan, Size};

/// Input events waiting for the connection; beyond this the window drops them (and says so).
const INPUT_QUEUE: usize = 1024;
/// After the connection ends by itself, the window stays this long with the reason in its title.
const LINGER: Duration = Duration::from_secs(5);
/// Around and outside the remote picture.
const BACKGROUND: u32 = 0x0020_2020;

/// Whether a window can be opened here at all.
pub fn display_available() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    set("DISPLAY") || set("WAYLAND_DISPLAY")
}

/// What the link thread wakes the window for.
#[derive(Debug)]
enum Wake {
    Frame,
    Status,
    Pointer,
    Ended(Outcome),
}

/// The newest picture, RGBA as the client decodes it.
#[derive(Default)]
struct Picture {
    width: usize,
    height: usize,
    rgba: Vec<u8>,
    fresh: bool,
}

#[derive(Default)]
struct Shared {
    picture: Mutex<Picture>,
    /// A Frame wake-up is on its way: do not send another (latest-only handoff).
    frame_pending: AtomicBool,
    status: Mutex<Option<Status>>,
    pointer: Mutex<Option<Pointer>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the window down with it; the data is plain values.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The link thread's view of the window.
struct WindowScreen {
    proxy: EventLoopProxy<Wake>,
    shared: Arc<Shared>,
}

impl Screen for WindowScreen {
    fn status(&self, status: &Status) {
        *lock(&self.shared.status) = Some(status.clone());
        let _ = self.proxy.send_event(Wake::Status);
    }

    fn frame(&self, client: &Client) {
        {
            let mut picture = lock(&self.shared.picture);
            picture.width = usize::from(client.width());
            picture.height = usize::from(client.height());
            picture.rgba.clear();
            picture.rgba.extend_from_slice(client.rgba());
            picture.fresh = true;
        }
        if !self.shared.frame_pending.swap(true, Ordering::AcqRel) {
            let _ = self.proxy.send_event(Wake::Frame);
        }
    }

    fn pointer(&self, pointer: &Pointer) {
        *lock(&self.shared.pointer) = Some(pointer.clone());
        let _ = self.proxy.send_event(Wake::Pointer);
    }
}

/// Opens the window and runs until it closes. The connection runs on `runtime` in another thread.
pub fn run(runtime: tokio::runtime::Runtime, plan: Plan, endpoint: Endpoint) -> anyhow::Result<ExitCode> {
    let event_loop = EventLoop::<Wake>::with_user_event().build().map_err(|e| {
        anyhow!(
            "cannot open a window on the display (DISPLAY={:?}, WAYLAND_DISPLAY={:?}): {e} — check that the \
             display is reachable, or use --snapshot FILE.png to save one picture without a window",
            std::env::var("DISPLAY").unwrap_or_default(),
            std::env::var("WAYLAND_DISPLAY").unwrap_or_default()
        )
    })?;
    let shared = Arc::new(Shared::default());
    let (inputs, mut input_rx) = mpsc::channel(INPUT_QUEUE);
    let screen = WindowScreen { proxy: event_loop.create_proxy(), shared: Arc::clone(&shared) };
    let mut app = App::new(shared, inputs, plan.target.is_sharer(), plan.size, plan.describe());
    let link = std::thread::Builder::new()
        .name("rdhost-view-link".into())
        .spawn(move || {
            let outcome = runtime.block_on(link::drive(&plan, endpoint, &screen, &mut input_rx));
            let _ = screen.proxy.send_event(Wake::Ended(outcome.clone()));
            outcome
        })
        .context("starting the connection thread")?;
    let ran = event_loop.run_app(&mut app);
    let user_closed = app.user_closed;
    let window_error = app.error.take();
    // Dropping the app drops the input sender: the link leaves if it has not yet.
    drop(app);
    let outcome = link.join().map_err(|_| anyhow!("the connection thread failed unexpectedly"))?;
    if let Some(e) = window_error {
        return Err(e);
    }
    ran.context("the window's event loop failed")?;
    match outcome {
        Outcome::Failed(why) if !user_closed => Err(anyhow!(why)),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The remote picture in softbuffer's pixel format (0RGB).
#[derive(Default)]
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u32>,
}

struct App {
    shared: Arc<Shared>,
    inputs: mpsc::Sender<Input>,
    sharer: bool,
    requested: Size,
    title: String,
    window: Option<Rc<Window>>,
    surface: Option<softbuffer::Surface<Rc<Window>, Rc<Window>>>,
    canvas: Canvas,
    /// The remote desktop size the window was last fitted to.
    fitted: Option<(usize, usize)>,
    modifiers: ModifiersState,
    /// Keys the remote side has seen go down and not yet up.
    pressed: HashSet<(u8, bool)>,
    /// The C of Ctrl+Alt+C went to us, not to the remote side: its release must not go either.
    swallowed_c: bool,
    last_mouse: Option<(u16, u16)>,
    /// Fractions of a wheel notch from touchpads, carried to the next event.
    wheel_rest: (f64, f64),
    ended: Option<Outcome>,
    linger_until: Option<Instant>,
    /// The user closed the window while the connection was still going (exit status 0).
    user_closed: bool,
    error: Option<anyhow::Error>,
}

impl App {
    fn new(shared: Arc<Shared>, inputs: mpsc::Sender<Input>, sharer: bool, requested: Size, target: String) -> App {
        let control = if sharer { "none" } else { "interactive" };
        App {
            shared,
            inputs,
            sharer,
            requested,
            title: format!("rdhost view — {target} — connecting — control: {control}"),
            window: None,
            surface: None,
            canvas: Canvas::default(),
            fitted: None,
            modifiers: ModifiersState::empty(),
            pressed: HashSet::new(),
            swallowed_c: false,
            last_mouse: None,
            wheel_rest: (0.0, 0.0),
            ended: None,
            linger_until: None,
            user_closed: false,
            error: None,
        }
    }

    fn send(&self, input: Input) {
        if self.ended.is_some() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(input)) = self.inputs.try_send(input) {
            link::dropped_input(&input);
        }
    }

    fn open(&mut self, event_loop: &ActiveEventLoop) -> anyhow::Result<()> {
        let attributes = Window::default_attributes()
            .with_title(&self.title)
            .with_inner_size(PhysicalSize::new(u32::from(self.requested.width), u32::from(self.requested.height)));
        let window = Rc::new(event_loop.create_window(attributes).context("creating the window")?);
        let context = softbuffer::Context::new(Rc::clone(&window))
            .map_err(|e| anyhow!("setting up drawing on the display: {e}"))?;
        let surface = softbuffer::Surface::new(&context, Rc::clone(&window))
            .map_err(|e| anyhow!("setting up drawing in the window: {e}"))?;
        self.window = Some(window);
        self.surface = Some(surface);
        Ok(())
    }

    fn redraw(&mut self) -> anyhow::Result<()> {
        let (Some(window), Some(surface)) = (&self.window, &mut self.surface) else { return Ok(()) };
        let size = window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else {
            return Ok(()); // minimised
        };
        surface.resize(w, h).map_err(|e| anyhow!("resizing the drawing surface: {e}"))?;
        let mut buffer = surface.buffer_mut().map_err(|e| anyhow!("getting the drawing buffer: {e}"))?;
        let (w, h) = (size.width as usize, size.height as usize);
        let canvas = &self.canvas;
        let cols = w.min(canvas.width);
        for (y, row) in buffer.chunks_exact_mut(w).take(h).enumerate() {
            if y < canvas.height {
                let src = &canvas.pixels[y * canvas.width..y * canvas.width + cols];
                row[..cols].copy_from_slice(src);
                row[cols..].fill(BACKGROUND);
            } else {
                row.fill(BACKGROUND);
            }
        }
        window.pre_present_notify();
        buffer.present().map_err(|e| anyhow!("showing the picture: {e}"))
    }

    fn take_picture(&mut self) {
        // Clear first: a picture that arrives while we copy gets its own wake-up.
        self.shared.frame_pending.store(false, Ordering::Release);
        {
            let mut picture = lock(&self.shared.picture);
            if !picture.fresh {
                return;
            }
            picture.fresh = false;
            let canvas = &mut self.canvas;
            canvas.width = picture.width;
            canvas.height = picture.height;
            canvas.pixels.resize(picture.width * picture.height, 0);
            for (dst, p) in canvas.pixels.iter_mut().zip(picture.rgba.chunks_exact(4)) {
                *dst = u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2]);
            }
        }
        let Some(window) = &self.window else { return };
        let remote = (self.canvas.width, self.canvas.height);
        if self.fitted != Some(remote) {
            // Fit the window once per remote size; a size the user chose later is kept.
            self.fitted = Some(remote);
            let _ = window.request_inner_size(PhysicalSize::new(remote.0 as u32, remote.1 as u32));
        }
        window.request_redraw();
    }

    fn show_pointer(&mut self, event_loop: &ActiveEventLoop) {
        let Some(pointer) = lock(&self.shared.pointer).take() else { return };
        let Some(window) = &self.window else { return };
        match pointer {
            Pointer::Default => {
                window.set_cursor(CursorIcon::Default);
                window.set_cursor_visible(true);
            }
            Pointer::Hidden => window.set_cursor_visible(false),
            Pointer::Shape(shape) => {
                match CustomCursor::from_rgba(shape.rgba, shape.width, shape.height, shape.hotspot_x, shape.hotspot_y) {
                    Ok(source) => {
                        window.set_cursor(event_loop.create_custom_cursor(source));
                        window.set_cursor_visible(true);
                    }
                    Err(e) => {
                        debug!("the remote pointer shape cannot be shown ({e}); using the default");
                        window.set_cursor(CursorIcon::Default);
                    }
                }
            }
        }
    }

    fn key(&mut self, code: Option<KeyCode>, pressed: bool, repeat: bool, text: Option<&str>) {
        // Ctrl+Alt+C asks the sharer for control (like xfreerdp); that C stays here, press,
        // repeats and release. A host session gets the keys as they are.
        if self.sharer && code == Some(KeyCode::KeyC) {
            if pressed && self.ctrl_alt() {
                if !repeat {
                    self.send(Input::ToggleControl);
                }
                self.swallowed_c = true;
                return;
            }
            if self.swallowed_c {
                self.swallowed_c = pressed;
                return;
            }
        }
        if let Some(scancode) = code.and_then(keys::scancode) {
            if pressed {
                self.pressed.insert(scancode);
            } else if !self.pressed.remove(&scancode) {
                // Pressed before the window had focus, or already released on focus loss.
                return;
            }
            self.send(Input::Key { code: scancode.0, extended: scancode.1, pressed });
            return;
        }
        // No scancode for this key: send the character it types, if any.
        if pressed {
            for ch in text.unwrap_or_default().chars().filter(|c| !c.is_control()) {
                self.send(Input::Text(ch));
            }
        }
    }

    fn ctrl_alt(&self) -> bool {
        self.modifiers.control_key() && self.modifiers.alt_key()
    }

    /// Focus went elsewhere: the remote side must not see keys held for ever.
    fn release_all_keys(&mut self) {
        for (code, extended) in std::mem::take(&mut self.pressed) {
            self.send(Input::Key { code, extended, pressed: false });
        }
        self.swallowed_c = false;
    }

    fn mouse_moved(&mut self, x: f64, y: f64) {
        if self.canvas.width == 0 || self.canvas.height == 0 {
            return;
        }
        // Drawn 1:1 from the top-left corner: window pixels are remote pixels.
        let clamp = |v: f64, n: usize| (v.max(0.0) as usize).min(n - 1).min(usize::from(u16::MAX)) as u16;
        let at = (clamp(x, self.canvas.width), clamp(y, self.canvas.height));
        if self.last_mouse != Some(at) {
            self.last_mouse = Some(at);
            self.send(Input::Move { x: at.0, y: at.1 });
        }
    }

    fn wheel(&mut self, delta: MouseScrollDelta) {
        // winit: positive y moves the content down (wheel up), positive x moves it right (wheel
        // left). RDP: positive is up, and right for the horizontal wheel; 120 per notch.
        let (x, y) = match delta {
            MouseScrollDelta::LineDelta(x, y) => (f64::from(x) * 120.0, f64::from(y) * 120.0),
            // Touchpads: about 48 pixels of travel per notch.
            MouseScrollDelta::PixelDelta(p) => (p.x * 2.5, p.y * 2.5),
        };
        let (rest_x, rest_y) = self.wheel_rest;
        let (x, y) = (x + rest_x, y + rest_y);
        let whole = |v: f64| v.trunc().clamp(f64::from(i16::MIN), f64::from(i16::MAX));
        self.wheel_rest = (x - whole(x), y - whole(y));
        if whole(y) != 0.0 {
            self.send(Input::Wheel { delta: whole(y) as i16, horizontal: false });
        }
        if whole(x) != 0.0 {
            self.send(Input::Wheel { delta: -whole(x) as i16, horizontal: true });
        }
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, e: anyhow::Error) {
        warn!("{e:#}");
        if self.error.is_none() {
            self.error = Some(e);
        }
        event_loop.exit();
    }
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_none()
            && let Err(e) = self.open(event_loop)
        {
            self.fail(event_loop, e);
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, wake: Wake) {
        match wake {
            Wake::Frame => self.take_picture(),
            Wake::Status => {
                if let Some(status) = lock(&self.shared.status).take() {
                    self.title = status.title();
                    if let Some(window) = &self.window {
                        window.set_title(&self.title);
                    }
                }
            }
            Wake::Pointer => self.show_pointer(event_loop),
            Wake::Ended(Outcome::Closed) => {
                self.ended = Some(Outcome::Closed);
                event_loop.exit();
            }
            Wake::Ended(outcome) => {
                // The title already says why (the last status); keep the window up a moment.
                self.ended = Some(outcome);
                self.linger_until = Some(Instant::now() + LINGER);
                if let Some(window) = &self.window {
                    window.set_cursor_visible(true);
                    window.set_cursor(CursorIcon::Default);
                }
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested | WindowEvent::Destroyed => {
                self.user_closed = self.ended.is_none();
                self.send(Input::Close);
                event_loop.exit();
            }
            WindowEvent::RedrawRequested => {
                if let Err(e) = self.redraw() {
                    self.fail(event_loop, e);
                }
            }
            WindowEvent::Resized(_) => {
                if let Some(window) = &self.window {
                    window.request_redraw();
                }
            }
            WindowEvent::ModifiersChanged(modifiers) => self.modifiers = modifiers.state(),
            WindowEvent::Focused(false) => self.release_all_keys(),
            WindowEvent::KeyboardInput { event, .. } => {
                let code = match event.physical_key {
                    PhysicalKey::Code(code) => Some(code),
                    PhysicalKey::Unidentified(_) => None,
                };
                let pressed = event.state == ElementState::Pressed;
                self.key(code, pressed, event.repeat, event.text.as_deref());
            }
            WindowEvent::CursorMoved { position, .. } => self.mouse_moved(position.x, position.y),
            WindowEvent::MouseInput { state, button, .. } => {
                let button = match button {
                    MouseButton::Left => Button::Left,
                    MouseButton::Right => Button::Right,
                    MouseButton::Middle => Button::Middle,
                    MouseButton::Back => Button::X1,
                    MouseButton::Forward => Button::X2,
                    MouseButton::Other(_) => return,
                };
                self.send(Input::Button { button, pressed: state == ElementState::Pressed });
            }
            WindowEvent::MouseWheel { delta, .. } => self.wheel(delta),
            _ => {}
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        if let Some(deadline) = self.linger_until {
            if Instant::now() >= deadline {
                event_loop.exit();
            } else {
                event_loop.set_control_flow(ControlFlow::WaitUntil(deadline));
            }
        }
    }
}
