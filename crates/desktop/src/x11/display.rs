//! Connecting to an X display with an explicit Xauthority file, and checking that it has what
//! capture and input need. The process environment (`DISPLAY`, `XAUTHORITY`) is never read or
//! changed: several desktops with different displays and cookies live in one host process.

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{ImageOrder, Screen, Setup, VisualClass};
use x11rb::protocol::{damage, randr, shm, xfixes, xtest};
use x11rb::rust_connection::{DefaultStream, RustConnection};
use x11rb::reexports::x11rb_protocol::parse_display::ConnectAddress;

use super::{X11Error, XDisplay, xauth};

/// An open connection and the facts about its screen that the rest of the module uses.
pub(crate) struct Connected {
    pub conn: RustConnection,
    pub root: u32,
    pub format: PixelFormat,
    /// RandR minor version (1.x): 1.3 has the cheap GetScreenResourcesCurrent.
    pub randr_minor: u32,
}

/// Open a connection to `display` with the cookie from its Xauthority file.
pub(crate) fn connect(display: &XDisplay) -> Result<Connected, X11Error> {
    let fail = |reason: String| X11Error::Connect { display: display.name.clone(), reason };
    let number = display.number().ok_or_else(|| fail("only local displays (\":N\") are supported".into()))?;
    let screen_num = screen_of(&display.name);
    let (auth_name, auth_data) = match &display.xauthority {
        Some(path) => match xauth::read_cookie(path, number) {
            Ok(Some(cookie)) => (cookie.name, cookie.data),
            Ok(None) => return Err(fail(format!("{} has no MIT-MAGIC-COOKIE-1 for display {number}", path.display()))),
            Err(e) => return Err(fail(format!("cannot read {}: {e}", path.display()))),
        },
        None => (Vec::new(), Vec::new()),
    };
    let socket = format!("/tmp/.X11-unix/X{number}");
    // DefaultStream tries the abstract socket first (it works across a private /tmp), then the file.
    let (stream, _peer) =
        DefaultStream::connect(&ConnectAddress::Socket(socket)).map_err(|e| fail(format!("cannot reach its socket: {e}")))?;
    let conn = RustConnection::connect_to_stream_with_auth_info(stream, screen_num, auth_name, auth_data).map_err(|e| fail(e.to_string()))?;
    let root = conn.setup().roots[screen_num].root;
    let format = PixelFormat::of(conn.setup(), &conn.setup().roots[screen_num]).map_err(fail)?;
    let randr_minor = check_extensions(&conn, &display.name)?;
    Ok(Connected { conn, root, format, randr_minor })
}

/// The screen in ":N.S" (0 when absent).
fn screen_of(name: &str) -> usize {
    name.rsplit_once(':').and_then(|(_, rest)| rest.split_once('.')).and_then(|(_, s)| s.parse().ok()).unwrap_or(0)
}

/// Ask each extension for its version (DAMAGE and XFIXES refuse requests until asked) and fail
/// naming the first one missing. Returns the RandR minor version.
fn check_extensions(conn: &RustConnection, display: &str) -> Result<u32, X11Error> {
    let missing = |extension: &'static str| X11Error::MissingExtension { display: display.to_string(), extension };
    for name in [damage::X11_EXTENSION_NAME, shm::X11_EXTENSION_NAME, xfixes::X11_EXTENSION_NAME, xtest::X11_EXTENSION_NAME, randr::X11_EXTENSION_NAME] {
        if conn.extension_information(name)?.is_none() {
            return Err(missing(name));
        }
    }
    let damage = damage::query_version(conn, 1, 1)?;
    let xfixes = xfixes::query_version(conn, 5, 0)?;
    let shm = shm::query_version(conn)?;
    let xtest = xtest::get_version(conn, 2, 2)?;
    let randr = randr::query_version(conn, 1, 6)?;
    damage.reply()?;
    // Cursor images need XFIXES 2 (1 has cursor notify only); regions need 2 as well.
    if xfixes.reply()?.major_version < 2 {
        return Err(missing("XFIXES 2"));
    }
    // Passing the segment as a file descriptor (no SysV shm ids to leak) is MIT-SHM 1.2.
    let shm = shm.reply()?;
    if (shm.major_version, shm.minor_version) < (1, 2) {
        return Err(missing("MIT-SHM 1.2"));
    }
    xtest.reply()?;
    let randr = randr.reply()?;
    if (randr.major_version, randr.minor_version) < (1, 2) {
        return Err(missing("RANDR 1.2"));
    }
    Ok(randr.minor_version)
}

/// How the server lays out the pixels of the root window in a ZPixmap image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelFormat {
    pub bits_per_pixel: u8,
    /// Bytes per image row are rounded up to this many bits.
    pub scanline_pad: u8,
    pub msb_first: bool,
    pub red_mask: u32,
    pub green_mask: u32,
    pub blue_mask: u32,
}

impl PixelFormat {
    fn of(setup: &Setup, screen: &Screen) -> Result<PixelFormat, String> {
        let depth = screen.root_depth;
        let format = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .ok_or_else(|| format!("the server lists no pixmap format for its root depth {depth}"))?;
        let visual = screen
            .allowed_depths
            .iter()
            .flat_map(|d| d.visuals.iter())
            .find(|v| v.visual_id == screen.root_visual)
            .ok_or_else(|| "the root visual is not in the screen's visual list".to_string())?;
        if visual.class != VisualClass::TRUE_COLOR && visual.class != VisualClass::DIRECT_COLOR {
            return Err(format!("the root visual is {:?}; only TrueColor screens can be captured", visual.class));
        }
        let pf = PixelFormat {
            bits_per_pixel: format.bits_per_pixel,
            scanline_pad: format.scanline_pad,
            msb_first: setup.image_byte_order == ImageOrder::MSB_FIRST,
            red_mask: visual.red_mask,
            green_mask: visual.green_mask,
            blue_mask: visual.blue_mask,
        };
        if !matches!(pf.bits_per_pixel, 16 | 32) {
            return Err(format!("the root depth {depth} uses {} bits per pixel; only 16 and 32 are supported", pf.bits_per_pixel));
        }
        Ok(pf)
    }

    /// The normal case (depth 24 in 32 bits, little-endian, red in bits 16..24): the server's
    /// bytes are already BGRX and rows copy unchanged.
    pub fn is_bgrx(&self) -> bool {
        self.bits_per_pixel == 32 && !self.msb_first && (self.red_mask, self.green_mask, self.blue_mask) == (0xFF_0000, 0xFF00, 0xFF)
    }

    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Bytes in one image row of `width` pixels.
    pub fn stride(&self, width: u16) -> usize {
        let pad = usize::from(self.scanline_pad.max(8));
        let bits = usize::from(width) * usize::from(self.bits_per_pixel);
        bits.div_ceil(pad) * pad / 8
    }

    /// Convert one row of server pixels to BGRX.
    pub fn convert_row(&self, src: &[u8], dst: &mut [u8]) {
        if self.is_bgrx() {
            dst.copy_from_slice(&src[..dst.len()]);
            return;
        }
        let channel = |mask: u32| (mask.trailing_zeros(), mask.count_ones());
        let (r, g, b) = (channel(self.red_mask), channel(self.green_mask), channel(self.blue_mask));
        let bpp = self.bytes_per_pixel();
        for (px, out) in src.chunks_exact(bpp).zip(dst.chunks_exact_mut(4)) {
            let value = match (bpp, self.msb_first) {
                (4, false) => u32::from_le_bytes([px[0], px[1], px[2], px[3]]),
                (4, true) => u32::from_be_bytes([px[0], px[1], px[2], px[3]]),
                (_, false) => u32::from(u16::from_le_bytes([px[0], px[1]])),
                (_, true) => u32::from(u16::from_be_bytes([px[0], px[1]])),
            };
            out[0] = scale(value, b);
            out[1] = scale(value, g);
            out[2] = scale(value, r);
            out[3] = 0;
        }
    }
}

/// One colour channel (shift, bits) of a pixel value, widened to 8 bits.
fn scale(value: u32, (shift, bits): (u32, u32)) -> u8 {
    if bits == 0 {
        return 0;
    }
    let v = (value >> shift) & ((1u32 << bits) - 1);
    if bits >= 8 {
        (v >> (bits - 8)) as u8
    } else {
        // Replicate the high bits into the low ones so full intensity stays 255.
        ((v * 255 + ((1 << bits) - 1) / 2) / ((1 << bits) - 1)) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screens_in_display_names() {
        assert_eq!(screen_of(":5"), 0);
        assert_eq!(screen_of(":5.1"), 1);
        assert_eq!(screen_of("unix:3.2"), 2);
    }

    #[test]
    fn pixel_formats_convert_to_bgrx() {
        let bgrx = PixelFormat { bits_per_pixel: 32, scanline_pad: 32, msb_first: false, red_mask: 0xFF_0000, green_mask: 0xFF00, blue_mask: 0xFF };
        assert!(bgrx.is_bgrx());
        assert_eq!(bgrx.stride(3), 12);
        let mut out = [0u8; 4];
        bgrx.convert_row(&[1, 2, 3, 4], &mut out);
        assert_eq!(out, [1, 2, 3, 4]);

        // Big-endian XRGB: bytes X R G B.
        let msb = PixelFormat { msb_first: true, ..bgrx };
        msb.convert_row(&[0, 0x30, 0x20, 0x10], &mut out);
        assert_eq!(out, [0x10, 0x20, 0x30, 0]);

        // RGB565, little-endian: pure red, green and blue become full intensity.
        let rgb565 = PixelFormat { bits_per_pixel: 16, scanline_pad: 32, msb_first: false, red_mask: 0xF800, green_mask: 0x07E0, blue_mask: 0x001F };
        assert_eq!(rgb565.stride(3), 8);
        let mut out = [0u8; 12];
        let src: Vec<u8> = [0xF800u16, 0x07E0, 0x001F].iter().flat_map(|v| v.to_le_bytes()).collect();
        rgb565.convert_row(&src, &mut out);
        assert_eq!(out, [0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 0]);
    }
}
