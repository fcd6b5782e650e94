//! rdhost-xanimate: a window redrawn completely every frame (`rdhost_xprobe::animate`), for
//! measuring how fast a desktop carries full-screen motion.
//!
//! Usage: rdhost-xanimate [--geometry WxH+X+Y] [--override-redirect] [--fps N] [--frames N]
//! `--fps 0` draws as fast as the server takes frames (default 60); `--frames N` stops after N.
//! Every second it prints to stderr: `fps=59.9 frames=60 method=shm` (frames in that second;
//! method `shm` for MIT-SHM PutImage, `put-image` for plain PutImage in chunks).

use std::time::{Duration, Instant};

use rdhost_xprobe::animate::{self, Pattern};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::shm::ConnectionExt as _;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, ImageFormat, ImageOrder, WindowClass};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

fn main() {
    if let Err(e) = run() {
        eprintln!("rdhost-xanimate: {e}");
        std::process::exit(1);
    }
}

/// A System V shared-memory segment the server reads frames from.
struct Shm {
    seg: u32,
    addr: *mut u32,
    len: usize,
}

impl Shm {
    /// `None` when the server cannot share memory with us (no MIT-SHM, or not local).
    fn attach(conn: &RustConnection, pixels: usize) -> Option<Shm> {
        conn.extension_information(x11rb::protocol::shm::X11_EXTENSION_NAME).ok()??;
        let bytes = pixels * 4;
        // SAFETY: plain System V calls; the segment is checked before use and detached on drop.
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, bytes, libc::IPC_CREAT | 0o600);
            if id < 0 {
                return None;
            }
            let addr = libc::shmat(id, std::ptr::null(), 0);
            let seg = conn.generate_id().ok();
            let attached = match seg {
                Some(seg) if addr as isize != -1 => conn.shm_attach(seg, id as u32, true).ok().and_then(|c| c.check().ok()).is_some(),
                _ => false,
            };
            // Marked for removal now: it goes away when both of us detach, even if we crash.
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            if !attached {
                if addr as isize != -1 {
                    libc::shmdt(addr);
                }
                return None;
            }
            Some(Shm {
                seg: seg?,
                addr: addr.cast(),
                len: pixels,
            })
        }
    }

    fn pixels(&mut self) -> &mut [u32] {
        // SAFETY: `addr` maps `len` u32s for as long as `self` lives; the server only reads it
        // between our PutImage and the round trip that follows it.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: detaching what `attach` mapped.
        unsafe { libc::shmdt(self.addr.cast()) };
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut geometry = None;
    let mut override_redirect = false;
    let mut fps = 60u32;
    let mut max_frames = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--geometry" => {
                let g = args.next().ok_or("--geometry needs WxH+X+Y")?;
                geometry = Some(rdhost_xprobe::parse_geometry(&g).ok_or_else(|| format!("bad geometry {g:?}"))?);
            }
            "--override-redirect" => override_redirect = true,
            "--fps" => fps = args.next().and_then(|v| v.parse().ok()).ok_or("--fps needs a number")?,
            "--frames" => max_frames = Some(args.next().and_then(|v| v.parse::<u64>().ok()).ok_or("--frames needs a number")?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    rdhost_xprobe::catch_termination();
    let (conn, screen) = x11rb::connect(None)?;
    let setup = conn.setup();
    let root = &setup.roots[screen];
    if root.root_depth != 24 || !setup.pixmap_formats.iter().any(|f| f.depth == 24 && f.bits_per_pixel == 32) {
        return Err(format!("needs a 24-bit screen with 32-bit pixels (depth {})", root.root_depth).into());
    }
    let lsb_first = setup.image_byte_order == ImageOrder::LSB_FIRST;
    let (width, height, x, y) = geometry.unwrap_or((root.width_in_pixels, root.height_in_pixels, 0, 0));

    let window = conn.generate_id()?;
    let aux = CreateWindowAux::new()
        .background_pixel(0)
        .override_redirect(u32::from(override_redirect))
        .event_mask(EventMask::STRUCTURE_NOTIFY);
    conn.create_window(24, window, root.root, x, y, width, height, 0, WindowClass::INPUT_OUTPUT, 0, &aux)?;
    conn.change_property8(
        x11rb::protocol::xproto::PropMode::REPLACE,
        window,
        x11rb::protocol::xproto::AtomEnum::WM_NAME,
        x11rb::protocol::xproto::AtomEnum::STRING,
        b"rdhost-xanimate",
    )?;
    let gc = conn.generate_id()?;
    conn.create_gc(gc, window, &CreateGCAux::new().graphics_exposures(0))?;
    conn.map_window(window)?;
    conn.sync()?;

    let pattern = Pattern::new(width, height);
    // Shared memory holds LSB-first pixels only when our byte order is the server's.
    let mut shm = if lsb_first == cfg!(target_endian = "little") {
        Shm::attach(&conn, pattern.len())
    } else {
        None
    };
    let method = if shm.is_some() { "shm" } else { "put-image" };
    let mut pixels = vec![0u32; if shm.is_some() { 0 } else { pattern.len() }];
    let mut bytes = Vec::new();
    let row_bytes = usize::from(width) * 4;
    let rows_per_request = ((conn.maximum_request_bytes() - 64) / row_bytes).clamp(1, usize::from(height));

    let frame_time = (fps > 0).then(|| Duration::from_secs(1) / fps);
    let start = Instant::now();
    let mut next = start;
    let (mut second_start, mut second_frames) = (start, 0u32);
    let mut frame = 0u64;
    while !rdhost_xprobe::stop_requested() && max_frames.is_none_or(|max| frame < max) {
        while let Some(event) = conn.poll_for_event()? {
            if matches!(event, Event::DestroyNotify(_)) {
                return Ok(());
            }
        }
        match &mut shm {
            Some(shm) => {
                pattern.draw(frame, shm.pixels());
                conn.shm_put_image(
                    window,
                    gc,
                    width,
                    height,
                    0,
                    0,
                    width,
                    height,
                    0,
                    0,
                    24,
                    ImageFormat::Z_PIXMAP.into(),
                    false,
                    shm.seg,
                    0,
                )?;
            }
            None => {
                pattern.draw(frame, &mut pixels);
                animate::to_bytes(&pixels, lsb_first, &mut bytes);
                for (i, chunk) in bytes.chunks(rows_per_request * row_bytes).enumerate() {
                    let rows = (chunk.len() / row_bytes) as u16;
                    let top = (i * rows_per_request) as i16;
                    conn.put_image(ImageFormat::Z_PIXMAP, window, gc, width, rows, 0, top, 0, 24, chunk)?;
                }
            }
        }
        // The round trip: the server has taken the frame (and the shared buffer is ours again).
        conn.sync()?;
        frame += 1;
        second_frames += 1;
        let now = Instant::now();
        if now - second_start >= Duration::from_secs(1) {
            let rate = f64::from(second_frames) / (now - second_start).as_secs_f64();
            eprintln!("fps={rate:.1} frames={second_frames} method={method}");
            (second_start, second_frames) = (now, 0);
        }
        if let Some(frame_time) = frame_time {
            next += frame_time;
            match next.checked_duration_since(Instant::now()) {
                Some(wait) => std::thread::sleep(wait),
                // Behind: start again from now rather than racing to catch up.
                None => next = Instant::now(),
            }
        }
    }
    conn.destroy_window(window)?;
    conn.flush()?;
    Ok(())
}
