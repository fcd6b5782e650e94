//! The X11 desktop against a real Xvfb: damage reaches the canvas, the canvas follows RandR
//! resizes (ours and other clients'), cursor shapes arrive, and the desktop ends the right way
//! when the server dies or when we let go of it.
//!
//! Each test starts its own Xvfb with `-displayfd` (the server picks a free display, so tests
//! run in parallel) and kills it when the test ends, pass or fail.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdhost_desktop::x11::{AttachOptions, X11Desktop, XDisplay, xauth};
use rdhost_desktop::{Desktop, DesktopEnd, Rect, Size};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Rectangle, WindowClass};
use x11rb::reexports::x11rb_protocol::parse_display::ConnectAddress;
use x11rb::rust_connection::{DefaultStream, RustConnection};

const WAIT: Duration = Duration::from_secs(10);

/// An Xvfb of our own, killed on drop.
struct Xvfb {
    child: Child,
    display: XDisplay,
    dir: PathBuf,
}

impl Xvfb {
    /// Start an Xvfb with one screen of `size`. `None` (after saying why) when Xvfb is not
    /// installed and we are not in CI; in CI a missing Xvfb fails the test.
    fn start(size: Size, extra: &[&str]) -> Option<Xvfb> {
        Self::start_at_depth(size, 24, extra)
    }

    /// [`start`](Self::start) with a screen `depth` bits deep.
    fn start_at_depth(size: Size, depth: u8, extra: &[&str]) -> Option<Xvfb> {
        let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("Xvfb").is_file()));
        if !found {
            assert!(std::env::var_os("CI").is_none(), "Xvfb is not installed, and CI is set: X11 desktop tests cannot run");
            eprintln!("skipped: Xvfb is not installed");
            return None;
        }
        let mut args = vec!["-screen".to_string(), "0".into(), format!("{}x{}x{depth}", size.width, size.height)];
        args.extend(extra.iter().map(|a| a.to_string()));
        Some(Self::launch("Xvfb", args, |_| Vec::new()))
    }

    /// Start Xorg with the dummy driver at `size` (RandR up to 32767x32767). `None` (after
    /// saying why) when it is not installed or cannot run here (it needs root).
    fn start_xorg_dummy(size: Size) -> Option<Xvfb> {
        let xorg = "/usr/lib/xorg/Xorg";
        let driver = "/usr/lib/xorg/modules/drivers/dummy_drv.so";
        if !std::path::Path::new(xorg).exists() || !std::path::Path::new(driver).exists() {
            eprintln!("skipped: Xorg with the dummy driver (xserver-xorg-video-dummy) is not installed");
            return None;
        }
        // SAFETY: geteuid has no side effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: Xorg runs only as root here");
            return None;
        }
        Some(Self::launch(xorg, Vec::new(), |dir| {
            let config = dir.join("xorg.conf");
            // Enough video memory for 4096x4096 at 32 bits; monitor ranges wide enough for any mode.
            let text = format!(
                "Section \"Device\"\n  Identifier \"dummy\"\n  Driver \"dummy\"\n  VideoRam 65536\nEndSection\n\
                 Section \"Monitor\"\n  Identifier \"monitor\"\n  HorizSync 5.0 - 1000.0\n  VertRefresh 5.0 - 200.0\nEndSection\n\
                 Section \"Screen\"\n  Identifier \"screen\"\n  Device \"dummy\"\n  Monitor \"monitor\"\n  DefaultDepth 24\n\
                 SubSection \"Display\"\n    Depth 24\n    Modes \"{}x{}\"\n  EndSubSection\nEndSection\n",
                size.width, size.height
            );
            std::fs::write(&config, text).unwrap();
            let log = dir.join("Xorg.log");
            vec!["-config".into(), config.display().to_string(), "-logfile".into(), log.display().to_string(), "-novtswitch".into(), "-sharevts".into()]
        }))
    }

    /// Run `program` with the common arguments (display picked by the server, a private cookie,
    /// no TCP, no reset) plus `args` and what `more` adds for the server's own directory.
    fn launch(program: &str, args: Vec<String>, more: impl FnOnce(&std::path::Path) -> Vec<String>) -> Xvfb {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rdhost-x11-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let auth = dir.join("Xauthority");
        let cookie = xauth::Cookie::generate().unwrap();
        // The server takes every cookie in its -auth file whatever the display number; clients
        // look the number up, so the file is rewritten once the server has picked it.
        xauth::write_file(&auth, 0, &cookie).unwrap();

        let (read_end, write_end) = pipe();
        let write_fd = write_end.as_raw_fd();
        let mut command = Command::new(program);
        command
            .args(["-displayfd", &write_fd.to_string(), "-nolisten", "tcp", "-noreset", "-auth"])
            .arg(&auth)
            .args(args)
            .args(more(&dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl between fork and exec: the write end (close-on-exec, so that other
        // tests' children do not inherit it) is kept open for this one child.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(write_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        drop(write_end);
        let mut server = Xvfb { child, display: XDisplay { name: String::new(), xauthority: Some(auth.clone()) }, dir };
        // The server writes "N\n" when it accepts connections; EOF means it died.
        let mut text = String::new();
        std::fs::File::from(read_end).read_to_string(&mut text).ok();
        let number: u32 = text.trim().parse().unwrap_or_else(|_| panic!("{program} did not report a display number ({text:?})"));
        xauth::write_file(&auth, number, &cookie).unwrap();
        server.display.name = format!(":{number}");
        server
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client connection of our own, to draw with.
    fn client(&self) -> RustConnection {
        let number: u32 = self.display.name[1..].parse().unwrap();
        let cookie = xauth::read_cookie(self.display.xauthority.as_ref().unwrap(), number).unwrap().unwrap();
        let (stream, _) = DefaultStream::connect(&ConnectAddress::Socket(format!("/tmp/.X11-unix/X{number}"))).unwrap();
        RustConnection::connect_to_stream_with_auth_info(stream, 0, cookie.name, cookie.data).unwrap()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pipe whose write end Xvfb reports on (the display number arrives on a pipe, not the
/// read end of a file: it cannot be read before it is complete).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are fresh and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Fill `rect` of the root window with `rgb` (0xRRGGBB) and wait until the server did it.
fn fill(conn: &RustConnection, rect: Rect, rgb: u32) {
    let root = conn.setup().roots[0].root;
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, root, &CreateGCAux::new().foreground(rgb).subwindow_mode(xproto::SubwindowMode::INCLUDE_INFERIORS)).unwrap();
    let r = Rectangle { x: rect.x as i16, y: rect.y as i16, width: rect.width, height: rect.height };
    conn.poly_fill_rectangle(root, gc, &[r]).unwrap();
    conn.free_gc(gc).unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
}

/// The canvas pixels of `rect` are all `rgb`.
fn shows(desktop: &X11Desktop, rect: Rect, rgb: u32) -> bool {
    let bgrx = [rgb as u8, (rgb >> 8) as u8, (rgb >> 16) as u8];
    let pixels = desktop.canvas().read(rect);
    pixels.len() == rect.area() as usize * 4 && pixels.chunks_exact(4).all(|p| p[..3] == bgrx)
}

#[test]
fn x11_damage_reaches_the_canvas_without_rereading_the_screen() {
    let Some(xvfb) = Xvfb::start(Size::new(1024, 768), &[]) else { return };
    let desktop = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    assert_eq!(desktop.canvas().size(), Size::new(1024, 768));
    let client = xvfb.client();

    // The first capture happened at attach: what was drawn before shows at once.
    let before = Rect::new(0, 0, 64, 64);
    fill(&client, before, 0x123456);
    wait_until("the first fill", || shows(&desktop, before, 0x123456));

    let mut sub = desktop.canvas().subscribe();
    sub.take();
    let rect = Rect::new(100, 50, 200, 100);
    fill(&client, rect, 0xFF8040);
    wait_until("the fill to reach the canvas", || shows(&desktop, rect, 0xFF8040));
    assert!(shows(&desktop, before, 0x123456), "pixels outside the damage stay");

    // Only the damaged rectangle was read and reported: the canvas' damage is that rectangle.
    let frame = sub.take().expect("the fill is damage");
    let changed = frame.regions.iter().fold(Rect::new(0, 0, 0, 0), |a, r| a.union(r.rect));
    assert_eq!(changed, rect, "damage reported: {:?}", frame.regions.iter().map(|r| r.rect).collect::<Vec<_>>());

    // Two rectangles far apart are read as two, not as their bounding box.
    let (a, b) = (Rect::new(10, 700, 20, 20), Rect::new(990, 5, 30, 10));
    fill(&client, a, 0x00FF00);
    fill(&client, b, 0x0000FF);
    wait_until("both fills", || shows(&desktop, a, 0x00FF00) && shows(&desktop, b, 0x0000FF));
    let frame = sub.take().unwrap();
    let area: u64 = frame.regions.iter().map(|r| r.rect.area()).sum();
    assert!(area <= a.area() + b.area(), "{:?}", frame.regions.iter().map(|r| r.rect).collect::<Vec<_>>());
    desktop.terminate();
}

/// A 16-bit screen's pixels are not the canvas' BGRX: they are read into a segment of the
/// capture's own and converted (a 24-bit screen is read straight into the canvas).
#[test]
fn x11_depth_16_screens_are_converted() {
    let Some(xvfb) = Xvfb::start_at_depth(Size::new(320, 200), 16, &[]) else { return };
    let desktop = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    let client = xvfb.client();
    let (red, blue) = (Rect::new(10, 10, 50, 40), Rect::new(100, 150, 30, 20));
    // RGB 565 pixel values: full red, full blue.
    fill(&client, red, 0xF800);
    fill(&client, blue, 0x001F);
    wait_until("both fills, converted", || shows(&desktop, red, 0xFF0000) && shows(&desktop, blue, 0x0000FF));
    desktop.terminate();
}

#[test]
fn x11_canvas_follows_resizes_ours_and_other_clients() {
    let Some(xvfb) = Xvfb::start(Size::new(1920, 1080), &[]) else { return };
    let resizer = X11Desktop::attach(xvfb.display.clone(), AttachOptions { allow_resize: true, apply_layout: false }).unwrap();
    // A second desktop that may not resize: it still follows what the first one does.
    let watcher = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    let client = xvfb.client();
    for (i, size) in [Size::new(1024, 768), Size::new(800, 600), Size::new(1280, 800)].into_iter().enumerate() {
        resizer.resize(size);
        wait_until(&format!("the canvas to become {size:?}"), || resizer.canvas().size() == size && watcher.canvas().size() == size);
        let geometry = client.get_geometry(client.setup().roots[0].root).unwrap().reply().unwrap();
        assert_eq!((geometry.width, geometry.height), (size.width, size.height));
        // Capture goes on at the new size, up to its bottom-right corner.
        let corner = Rect::new(size.width - 50, size.height - 40, 50, 40);
        let colour = 0x102030 * (i as u32 + 1);
        fill(&client, corner, colour);
        wait_until("a fill at the new size", || shows(&resizer, corner, colour) && shows(&watcher, corner, colour));
    }
    // Larger than the server allows: clamped to its maximum (Xvfb's is its start size).
    resizer.resize(Size::new(4000, 3000));
    wait_until("the clamped size", || resizer.canvas().size() == Size::new(1920, 1080));
    // The watcher never resizes the display.
    watcher.resize(Size::new(640, 480));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watcher.canvas().size(), Size::new(1920, 1080));
}

#[test]
fn x11_xorg_dummy_grows_beyond_its_start_size() {
    let Some(xorg) = Xvfb::start_xorg_dummy(Size::new(1024, 768)) else { return };
    let desktop = X11Desktop::attach(xorg.display.clone(), AttachOptions { allow_resize: true, apply_layout: false }).unwrap();
    assert_eq!(desktop.canvas().size(), Size::new(1024, 768));
    let client = xorg.client();
    for size in [Size::new(2560, 1440), Size::new(1366, 768), Size::new(1920, 1200)] {
        desktop.resize(size);
        wait_until(&format!("the canvas to become {size:?}"), || desktop.canvas().size() == size);
        let corner = Rect::new(size.width - 10, size.height - 10, 10, 10);
        fill(&client, corner, 0x00C0FF);
        wait_until("a fill at the new size", || shows(&desktop, corner, 0x00C0FF));
    }
}

#[test]
fn x11_cursor_shapes_arrive() {
    let Some(xvfb) = Xvfb::start(Size::new(640, 480), &[]) else { return };
    let desktop = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    let mut cursor = desktop.cursor();
    let first = cursor.borrow_and_update().clone().expect("the pointer has a shape at start");
    assert!(first.width > 0 && first.height > 0 && first.bgra.len() == usize::from(first.width) * usize::from(first.height) * 4);

    // A window under the pointer with a 16x16 cursor made from bitmaps: opaque red, hotspot (3, 5).
    let client = xvfb.client();
    let screen = &client.setup().roots[0];
    let (root, depth) = (screen.root, screen.root_depth);
    let (source, mask, gc, cursor_id, window) =
        (client.generate_id().unwrap(), client.generate_id().unwrap(), client.generate_id().unwrap(), client.generate_id().unwrap(), client.generate_id().unwrap());
    client.create_pixmap(1, source, root, 16, 16).unwrap();
    client.create_pixmap(1, mask, root, 16, 16).unwrap();
    client.create_gc(gc, source, &CreateGCAux::new().foreground(1)).unwrap();
    let all = Rectangle { x: 0, y: 0, width: 16, height: 16 };
    client.poly_fill_rectangle(source, gc, &[all]).unwrap();
    client.poly_fill_rectangle(mask, gc, &[all]).unwrap();
    client.create_cursor(cursor_id, source, mask, 0xFFFF, 0, 0, 0, 0, 0, 3, 5).unwrap();
    client
        .create_window(depth, window, root, 0, 0, 640, 480, 0, WindowClass::INPUT_OUTPUT, 0, &CreateWindowAux::new().cursor(cursor_id).event_mask(EventMask::EXPOSURE))
        .unwrap();
    client.map_window(window).unwrap();
    client.warp_pointer(x11rb::NONE, window, 0, 0, 0, 0, 100, 100).unwrap();
    client.flush().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let shape = runtime.block_on(async {
        tokio::time::timeout(WAIT, async {
            loop {
                cursor.changed().await.expect("the desktop runs");
                let shape = cursor.borrow_and_update().clone();
                if let Some(shape) = shape.filter(|s| s.width == 16 && s.height == 16) {
                    return shape;
                }
            }
        })
        .await
        .expect("a 16x16 cursor shape")
    });
    assert_eq!((shape.hotspot_x, shape.hotspot_y), (3, 5));
    assert!(shape.bgra.chunks_exact(4).all(|p| p == [0, 0, 0xFF, 0xFF]), "opaque red: {:?}", &shape.bgra[..8]);
}

#[test]
fn x11_server_death_fails_the_desktop() {
    let Some(mut xvfb) = Xvfb::start(Size::new(320, 240), &[]) else { return };
    let desktop = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    let mut ended = desktop.ended();
    assert!(ended.borrow().is_none());
    xvfb.kill();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let end = runtime.block_on(async { tokio::time::timeout(WAIT, ended.wait_for(Option::is_some)).await.expect("an end").unwrap().clone() });
    assert_eq!(end, Some(DesktopEnd::Failed(format!("the X server of display {} closed the connection", xvfb.display.name))));
}

#[test]
fn x11_terminate_disconnects_and_leaves_the_server_running() {
    let Some(mut xvfb) = Xvfb::start(Size::new(320, 240), &[]) else { return };
    let desktop = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    let name = xvfb.display.name.clone();
    let threads = || x11_threads(&name);
    // Threads name themselves once running: wait for an event thread and a control thread.
    wait_until("the desktop's two threads", || threads() == 2);
    let started = Instant::now();
    desktop.terminate();
    assert_eq!(*desktop.ended().borrow(), Some(DesktopEnd::Terminated));
    wait_until("the desktop's threads to stop", || threads() == 0);
    assert!(started.elapsed() < Duration::from_secs(1), "terminate took {:?}", started.elapsed());
    desktop.terminate();
    assert_eq!(*desktop.ended().borrow(), Some(DesktopEnd::Terminated));
    assert!(xvfb.running(), "an attached display's server is not ours to stop");
    X11Desktop::probe(&xvfb.display).expect("the server still takes clients");

    // Dropping a desktop stops its threads too.
    let desktop = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    wait_until("the new desktop's two threads", || threads() == 2);
    drop(desktop);
    wait_until("the dropped desktop's threads to stop", || threads() == 0);
}

#[test]
fn x11_missing_extension_is_named() {
    let Some(xvfb) = Xvfb::start(Size::new(320, 240), &["-extension", "DAMAGE"]) else { return };
    let error = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).err().expect("no DAMAGE, no desktop");
    let text = error.to_string();
    assert!(text.contains("DAMAGE") && text.contains(&xvfb.display.name), "{text}");
}

#[test]
fn x11_wrong_cookie_is_refused() {
    let Some(xvfb) = Xvfb::start(Size::new(320, 240), &[]) else { return };
    let number: u32 = xvfb.display.name[1..].parse().unwrap();
    let wrong = xvfb.dir.join("wrong");
    xauth::write_file(&wrong, number, &xauth::Cookie::generate().unwrap()).unwrap();
    let display = XDisplay { name: xvfb.display.name.clone(), xauthority: Some(wrong) };
    let error = X11Desktop::attach(display, AttachOptions::default()).err().expect("a wrong cookie is refused");
    assert!(error.to_string().contains(&xvfb.display.name), "{error}");
}

/// How many of this process' threads serve display `name` ("x11 :N" and "x11 :N ctl").
fn x11_threads(name: &str) -> usize {
    thread_ticks(name).len()
}

/// (thread name, user+system CPU ticks) of this process' threads serving display `name`.
fn thread_ticks(name: &str) -> Vec<(String, u64)> {
    let prefix = format!("x11 {name}");
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim_end();
        if comm == prefix || comm == format!("{prefix} ctl") {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the ")" that ends the name: utime and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = fields.get(11).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0) + fields.get(12).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            found.push((comm.to_string(), ticks));
        }
    }
    found
}

/// A full-screen animation drawn as fast as an X client can: the desktop reads the screen at
/// most 60 times a second however much damage arrives (the figures themselves are
/// `rdhost-bench --x11`'s).
#[test]
fn x11_capture_rate_is_capped_under_a_full_screen_animation() {
    let Some(xvfb) = Xvfb::start(Size::new(1920, 1080), &[]) else { return };
    let desktop = X11Desktop::attach(xvfb.display.clone(), AttachOptions::default()).unwrap();
    let client = xvfb.client();
    let ticks = || thread_ticks(&xvfb.display.name).iter().map(|(_, t)| t).sum::<u64>();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let screen = Rect::new(0, 0, 1920, 1080);
    // Count canvas updates from a subscriber that takes each at once (one per capture).
    let mut sub = desktop.canvas().subscribe();
    sub.take();
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let counter = {
        let counting = Arc::clone(&counting);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let mut updates = 0u32;
            while counting.load(std::sync::atomic::Ordering::Relaxed) {
                if runtime.block_on(async { tokio::time::timeout(Duration::from_millis(50), sub.changed()).await }).is_ok() && sub.take().is_some() {
                    updates += 1;
                }
            }
            updates
        })
    };
    let busy_before = ticks();
    let start = Instant::now();
    // A full-screen animation as fast as the client can draw: the capture rate cap holds.
    let mut frames = 0u32;
    while start.elapsed() < Duration::from_secs(3) {
        fill(&client, screen, if frames.is_multiple_of(2) { 0x000000 } else { 0xFFFFFF });
        frames += 1;
    }
    let busy = ticks() - busy_before;
    counting.store(false, std::sync::atomic::Ordering::Relaxed);
    let updates = counter.join().unwrap();
    println!("animation: {frames} full-screen fills in 3 s; {updates} canvas updates; capture threads used {:.0} ms CPU", busy as f64 * 1000.0 / hz);
    assert!(updates <= 3 * 61, "the capture rate cap holds: {updates} updates in 3 s");
}

/// A private runtime directory for a session server, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("rdhost-x11-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn session_options(dir: &TempDir, command: &str) -> Option<rdhost_desktop::x11::server::SessionServerOptions> {
    use rdhost_desktop::x11::server::{SessionServerOptions, XServerKind, XServerPreference, find_x_server};
    // Xvfb: it starts at its largest, so the first size is RandR's work, which is what this checks.
    if find_x_server(XServerPreference::Xvfb).is_err() {
        assert!(std::env::var_os("CI").is_none(), "Xvfb is not installed, and CI is set");
        eprintln!("skipped: Xvfb is not installed");
        return None;
    }
    let mut options = SessionServerOptions::new(XServerKind::Xvfb, Size::new(1024, 768), dir.0.clone());
    options.session_command = command.into();
    options.user_xsession = false;
    Some(options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x11_session_desktop_starts_at_the_asked_size_and_ends_with_its_program() {
    let dir = TempDir::new("session-logoff");
    let Some(options) = session_options(&dir, "sleep 1") else { return };
    let desktop = X11Desktop::start_session(options, rdhost_desktop::KeyboardLayout::US).await.unwrap();
    assert_eq!(desktop.canvas().size(), Size::new(1024, 768), "the canvas starts at the asked size, not Xvfb's maximum");
    let mut ended = desktop.ended();
    let end = tokio::time::timeout(WAIT, ended.wait_for(Option::is_some)).await.expect("the session ends").unwrap().clone();
    assert_eq!(end, Some(DesktopEnd::UserLoggedOff), "the session program exiting is a logoff, not an X failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x11_session_desktop_resizes_and_terminates() {
    let dir = TempDir::new("session-terminate");
    let Some(options) = session_options(&dir, "sleep 60") else { return };
    let desktop = X11Desktop::start_session(options, rdhost_desktop::KeyboardLayout::US).await.unwrap();
    desktop.resize(Size::new(800, 600));
    let start = Instant::now();
    while desktop.canvas().size() != Size::new(800, 600) {
        assert!(start.elapsed() < WAIT, "the session screen did not resize");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let display = desktop.display().clone();
    desktop.terminate();
    assert_eq!(*desktop.ended().borrow(), Some(DesktopEnd::Terminated));
    // The session's server goes too (unlike an attached display's).
    let start = Instant::now();
    while X11Desktop::probe(&display).is_ok() {
        assert!(start.elapsed() < WAIT, "the session's X server still runs after terminate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
