//! Screen capture: DAMAGE says what changed, MIT-SHM `GetImage` reads those rectangles into a
//! segment shared with the server. When the server's pixels are BGRX (depth 24, as our X
//! servers run) the canvas keeps its pixels in that segment and the server writes whole rows
//! straight into it, under the canvas lock; other formats are read into a segment of their own
//! and converted row by row into the canvas. The cursor image
//! comes from XFIXES.
//!
//! The damage object reports at level NonEmpty: one event when damage appears, then nothing
//! until we take it with `DamageSubtract`. So however much the screen changes between two
//! captures, the events cost nothing and the capture reads each pixel once.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use x11rb::connection::Connection;
use x11rb::errors::{ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::shm::ConnectionExt as _;
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ImageFormat, Rectangle};
use x11rb::rust_connection::RustConnection;

use super::display::PixelFormat;
use crate::{Canvas, CursorShape, PixelMemory, Rect, Size};

/// Cursor images larger than this are cropped (keeping the hotspot inside): 96x96 is the largest
/// pointer every RDP client accepts without the large-pointer capability, so a shape from here
/// is valid for any client. Real X cursors are 16–64 pixels.
pub(crate) const MAX_CURSOR: u16 = 96;

/// Above this many damage rectangles one read of their bounding box is cheaper than one
/// request each (text rendering damages glyph by glyph).
const MAX_RECTS: usize = 64;

/// Why a capture step failed.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The connection is gone: the desktop ends.
    Closed(ConnectionError),
    /// The server refused a request (a read outside a screen that just shrank): log, re-read
    /// the screen size, carry on.
    Refused(String),
}

impl From<ConnectionError> for Fault {
    fn from(e: ConnectionError) -> Self {
        Fault::Closed(e)
    }
}
impl From<ReplyError> for Fault {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::ConnectionError(e) => Fault::Closed(e),
            ReplyError::X11Error(e) => Fault::Refused(format!("{:?} in request {}", e.error_kind, e.major_opcode)),
        }
    }
}
impl From<ReplyOrIdError> for Fault {
    fn from(e: ReplyOrIdError) -> Self {
        match e {
            ReplyOrIdError::ConnectionError(e) => Fault::Closed(e),
            other => Fault::Refused(other.to_string()),
        }
    }
}

/// A memfd segment the server writes images into.
pub(crate) struct ShmSegment {
    seg: u32,
    mapping: Mapping,
}

/// Our mapping of a segment's memfd (the server maps its own).
pub(crate) struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; it is read and written only by whoever
// holds it (the capture thread, or the canvas under its lock).
unsafe impl Send for Mapping {}

impl ShmSegment {
    pub fn new(conn: &RustConnection, len: usize) -> Result<ShmSegment, Fault> {
        let len = len.max(4096);
        let fd = memfd(len).map_err(|e| Fault::Refused(format!("cannot create the capture segment: {e}")))?;
        // SAFETY: a fresh shared mapping of a file we just sized to `len`; checked for failure.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(Fault::Refused(format!("cannot map the capture segment: {}", std::io::Error::last_os_error())));
        }
        let mapping = Mapping { ptr, len };
        let seg = conn.generate_id()?;
        // The server maps its own copy from the fd it receives; ours can close after sending.
        conn.shm_attach_fd(seg, fd, false)?;
        Ok(ShmSegment { seg, mapping })
    }

    pub fn len(&self) -> usize {
        self.mapping.len
    }
}

impl PixelMemory for Mapping {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` bytes for as long as `self` lives. The server writes only
        // while a GetImage we sent is in flight, and we read only after its reply.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`; `&mut self` makes this the only reference of ours.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `ShmSegment::new` mapped, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn memfd(len: usize) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscalls on a name we own and the fd they return.
    unsafe {
        let fd = libc::memfd_create(c"rdhost-x11-capture".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// The capture of one screen: its damage object and the segment sized for it.
pub(crate) struct Capture {
    root: u32,
    format: PixelFormat,
    canvas: Arc<Canvas>,
    damage: u32,
    region: u32,
    size: Size,
    segment: Segment,
}

/// Where the server writes what the capture reads.
enum Segment {
    /// The canvas keeps its pixels in the segment (the server's pixels are BGRX, as the
    /// canvas'): the server writes rows straight into it while the canvas is locked.
    Canvas { seg: u32 },
    /// Other formats: into a segment of the capture's own, converted row by row into the canvas.
    Copied(ShmSegment),
}

impl Capture {
    /// Start watching the root window. Nothing is read yet: call [`full`](Self::full).
    pub fn new(conn: &RustConnection, root: u32, format: PixelFormat, canvas: Arc<Canvas>, size: Size) -> Result<Capture, Fault> {
        let damage = conn.generate_id()?;
        conn.damage_create(damage, root, damage::ReportLevel::NON_EMPTY)?;
        let region = conn.generate_id()?;
        conn.xfixes_create_region(region, &[])?;
        let segment = Segment::new(conn, format, &canvas, size)?;
        Ok(Capture { root, format, canvas, damage, region, size, segment })
    }

    /// The canvas this capture reads into.
    pub fn canvas(&self) -> &Arc<Canvas> {
        &self.canvas
    }

    pub fn size(&self) -> Size {
        self.size
    }

    /// Follow a new screen size: a new segment, the canvas resized, everything read again.
    pub fn set_size(&mut self, conn: &RustConnection, size: Size) -> Result<(), Fault> {
        if size != self.size {
            let needed = self.format.stride(size.width) * usize::from(size.height);
            match &self.segment {
                Segment::Copied(segment) if needed <= segment.len() && needed >= segment.len() / 4 => self.canvas.resize(size),
                _ => std::mem::replace(&mut self.segment, Segment::new(conn, self.format, &self.canvas, size)?).detach(conn),
            }
            self.size = size;
        }
        self.full(conn)
    }

    /// Read the whole screen (at start, and after a resize).
    pub fn full(&mut self, conn: &RustConnection) -> Result<(), Fault> {
        // Take the damage first: what changes from here on is damage again.
        conn.damage_subtract(self.damage, x11rb::NONE, x11rb::NONE)?;
        self.read(conn, &[self.size.rect()])
    }

    /// Read what changed since the last read.
    pub fn damaged(&mut self, conn: &RustConnection) -> Result<(), Fault> {
        conn.damage_subtract(self.damage, x11rb::NONE, self.region)?;
        let reply = conn.xfixes_fetch_region(self.region)?.reply()?;
        let bounds = self.size.rect();
        let mut rects: Vec<Rect> = reply.rectangles.iter().map(|r| clip(r, bounds)).filter(|r| !r.is_empty()).collect();
        if rects.len() > MAX_RECTS {
            rects = vec![rects.iter().fold(Rect::new(0, 0, 0, 0), |a, r| a.union(*r))];
        }
        self.read(conn, &rects)
    }

    fn read(&self, conn: &RustConnection, rects: &[Rect]) -> Result<(), Fault> {
        match &self.segment {
            Segment::Canvas { seg } => self.read_in_place(conn, *seg, rects),
            Segment::Copied(segment) => self.read_copied(conn, segment, rects),
        }
    }

    /// Read the rows `rects` lie in, whole, straight into the canvas (its segment `seg`), under
    /// the canvas' lock. Whole rows keep the server's image in the canvas' layout; the columns
    /// read beside a rectangle are the pixels already there, or newer ones.
    fn read_in_place(&self, conn: &RustConnection, seg: u32, rects: &[Rect]) -> Result<(), Fault> {
        let (root, width, stride) = (self.root, self.size.width, self.format.stride(self.size.width));
        let mut bands: Vec<(u16, u16)> = rects.iter().filter(|r| !r.is_empty()).map(|r| (r.y, r.y + r.height)).collect();
        bands.sort_unstable();
        bands.dedup_by(|next, band| {
            let overlaps = next.0 <= band.1;
            band.1 = if overlaps { band.1.max(next.1) } else { band.1 };
            overlaps
        });
        let mut result = Ok(());
        // The closure never touches the canvas' slice: the server writes the memory beneath it,
        // and only while the lock keeps every reader out.
        self.canvas.draw(|_, size| {
            if size != self.size {
                return Vec::new();
            }
            let cookies = bands.iter().map(|&(top, bottom)| {
                let y = i16::try_from(top).unwrap_or(i16::MAX);
                conn.shm_get_image(root, 0, y, width, bottom - top, !0, ImageFormat::Z_PIXMAP.into(), seg, (usize::from(top) * stride) as u32)
            });
            match cookies.collect::<Result<Vec<_>, _>>() {
                Ok(cookies) => {
                    for cookie in cookies {
                        if let Err(e) = cookie.reply() {
                            result = Err(e.into());
                        }
                    }
                }
                Err(e) => result = Err(e.into()),
            }
            // Even after an error: rows may have been written.
            rects.to_vec()
        });
        result
    }

    /// Read `rects` with one GetImage each, packed one after another in the segment, and draw
    /// them. The requests go out together and the replies are awaited together, so a frame
    /// costs one round trip per segment-full, not one per rectangle.
    fn read_copied(&self, conn: &RustConnection, segment: &ShmSegment, rects: &[Rect]) -> Result<(), Fault> {
        let mut rest = rects;
        while !rest.is_empty() {
            let mut offset = 0usize;
            let mut batch = Vec::new();
            for rect in rest {
                let bytes = self.format.stride(rect.width) * usize::from(rect.height);
                if offset + bytes > segment.len() {
                    break;
                }
                batch.push((*rect, offset));
                offset += bytes;
            }
            if batch.is_empty() {
                return Err(Fault::Refused(format!("{:?} does not fit the capture segment", rest[0])));
            }
            let cookies = batch
                .iter()
                .map(|(r, off)| {
                    let x = i16::try_from(r.x).unwrap_or(i16::MAX);
                    let y = i16::try_from(r.y).unwrap_or(i16::MAX);
                    conn.shm_get_image(self.root, x, y, r.width, r.height, !0, ImageFormat::Z_PIXMAP.into(), segment.seg, *off as u32)
                })
                .collect::<Result<Vec<_>, _>>()?;
            for cookie in cookies {
                cookie.reply()?;
            }
            let format = self.format;
            let src = segment.mapping.bytes();
            self.canvas.draw(|pixels, size| {
                let stride = usize::from(size.width) * 4;
                let mut drawn = Vec::with_capacity(batch.len());
                for (rect, off) in &batch {
                    // The canvas may have been resized by nobody but us; still, never write past it.
                    let rect = rect.intersect(size.rect());
                    if rect.is_empty() {
                        continue;
                    }
                    let src_stride = format.stride(rect.width);
                    let row_bytes = usize::from(rect.width) * 4;
                    for row in 0..usize::from(rect.height) {
                        let s = off + row * src_stride;
                        let d = (usize::from(rect.y) + row) * stride + usize::from(rect.x) * 4;
                        format.convert_row(&src[s..s + src_stride], &mut pixels[d..d + row_bytes]);
                    }
                    drawn.push(rect);
                }
                drawn
            });
            rest = &rest[batch.len()..];
        }
        Ok(())
    }
}

impl Segment {
    /// A segment for a screen of `size`, the canvas resized to it (into the segment when the
    /// server's pixels are BGRX).
    fn new(conn: &RustConnection, format: PixelFormat, canvas: &Canvas, size: Size) -> Result<Segment, Fault> {
        let segment = ShmSegment::new(conn, format.stride(size.width) * usize::from(size.height))?;
        if !format.is_bgrx() {
            canvas.resize(size);
            return Ok(Segment::Copied(segment));
        }
        let ShmSegment { seg, mapping } = segment;
        canvas.resize_into(size, Box::new(mapping));
        Ok(Segment::Canvas { seg })
    }

    /// Tell the server to let go of the segment (the canvas or the segment unmaps its memory).
    fn detach(&self, conn: &RustConnection) {
        let seg = match self {
            Segment::Canvas { seg } => *seg,
            Segment::Copied(segment) => segment.seg,
        };
        let _ = x11rb::protocol::shm::detach(conn, seg);
    }
}

fn clip(r: &Rectangle, bounds: Rect) -> Rect {
    let x0 = i32::from(r.x).max(0);
    let y0 = i32::from(r.y).max(0);
    let x1 = (i32::from(r.x) + i32::from(r.width)).min(bounds.right() as i32);
    let y1 = (i32::from(r.y) + i32::from(r.height)).min(bounds.bottom() as i32);
    if x1 <= x0 || y1 <= y0 {
        return Rect::new(0, 0, 0, 0);
    }
    Rect::new(x0 as u16, y0 as u16, (x1 - x0) as u16, (y1 - y0) as u16)
}

/// The pointer image now, as XFIXES has it.
pub(crate) fn cursor_image(conn: &RustConnection) -> Result<(u32, CursorShape), Fault> {
    let reply = conn.xfixes_get_cursor_image()?.reply()?;
    Ok((reply.cursor_serial, cursor_shape(&reply)))
}

/// XFIXES gives premultiplied ARGB, one u32 per pixel; the canvas' cursor is straight-alpha BGRA.
pub(crate) fn cursor_shape(reply: &xfixes::GetCursorImageReply) -> CursorShape {
    let (w, h) = (reply.width, reply.height);
    // Crop to MAX_CURSOR, moving the window so that the hotspot stays inside it.
    let (x0, width, hotspot_x) = crop_axis(w, reply.xhot);
    let (y0, height, hotspot_y) = crop_axis(h, reply.yhot);
    let mut bgra = Vec::with_capacity(usize::from(width) * usize::from(height) * 4);
    for y in y0..y0 + height {
        for x in x0..x0 + width {
            let argb = reply.cursor_image.get(usize::from(y) * usize::from(w) + usize::from(x)).copied().unwrap_or(0);
            bgra.extend_from_slice(&unpremultiply(argb));
        }
    }
    CursorShape { width, height, hotspot_x, hotspot_y, bgra }
}

/// (first pixel, length, hotspot) along one axis after cropping to MAX_CURSOR.
fn crop_axis(len: u16, hot: u16) -> (u16, u16, u16) {
    let hot = hot.min(len.saturating_sub(1));
    if len <= MAX_CURSOR {
        return (0, len, hot);
    }
    // Keep the hotspot at the same place in the window when it can, else slide the window.
    let start = hot.saturating_sub(MAX_CURSOR - 1).min(len - MAX_CURSOR);
    (start, MAX_CURSOR, hot - start)
}

fn unpremultiply(argb: u32) -> [u8; 4] {
    let a = (argb >> 24) as u8;
    if a == 0 {
        return [0, 0, 0, 0];
    }
    let channel = |shift: u32| {
        let c = (argb >> shift) & 0xFF;
        ((c * 255 + u32::from(a) / 2) / u32::from(a)).min(255) as u8
    };
    [channel(0), channel(8), channel(16), a]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premultiplied_argb_becomes_straight_bgra() {
        assert_eq!(unpremultiply(0xFF10_2030), [0x30, 0x20, 0x10, 0xFF]);
        assert_eq!(unpremultiply(0x0000_0000), [0, 0, 0, 0]);
        // Half-transparent white is stored as 0x80808080; straight it is white at alpha 0x80.
        assert_eq!(unpremultiply(0x8080_8080), [0xFF, 0xFF, 0xFF, 0x80]);
        // Half-transparent black stays black.
        assert_eq!(unpremultiply(0x8000_0000), [0, 0, 0, 0x80]);
    }

    #[test]
    fn big_cursors_are_cropped_around_the_hotspot() {
        assert_eq!(crop_axis(32, 5), (0, 32, 5));
        assert_eq!(crop_axis(200, 10), (0, MAX_CURSOR, 10));
        assert_eq!(crop_axis(200, 150), (55, MAX_CURSOR, 95));
        assert_eq!(crop_axis(200, 199), (104, MAX_CURSOR, 95));
        let reply = xfixes::GetCursorImageReply {
            sequence: 0,
            length: 0,
            x: 0,
            y: 0,
            width: 2,
            height: 1,
            xhot: 1,
            yhot: 0,
            cursor_serial: 7,
            cursor_image: vec![0xFF00_00FF, 0x0000_0000],
        };
        let shape = cursor_shape(&reply);
        assert_eq!((shape.width, shape.height, shape.hotspot_x, shape.hotspot_y), (2, 1, 1, 0));
        assert_eq!(shape.bgra, vec![0xFF, 0, 0, 0xFF, 0, 0, 0, 0]);
    }

    #[test]
    fn damage_rectangles_are_clipped_to_the_screen() {
        let bounds = Rect::new(0, 0, 100, 50);
        assert_eq!(clip(&Rectangle { x: -5, y: 10, width: 20, height: 100 }, bounds), Rect::new(0, 10, 15, 40));
        assert!(clip(&Rectangle { x: 200, y: 0, width: 5, height: 5 }, bounds).is_empty());
    }
}
