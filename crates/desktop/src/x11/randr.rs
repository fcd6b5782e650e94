//! Resizing the screen with RandR 1.2+: a mode of exactly the asked size on the first connected
//! output, and the screen and CRTC changed in an order the server accepts at every step.
//!
//! This only asks; the capture follows the size the server reports (ConfigureNotify on the root
//! window), the same way it follows someone running `xrandr`.

use x11rb::protocol::randr::{self, ConnectionExt as _, ModeFlag, ModeInfo, Rotation, SetConfig};
use x11rb::protocol::xproto::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use super::X11Error;
use crate::Size;

/// Millimetres per pixel at 96 DPI, what desktops assume when a virtual screen has no real size.
const MM_PER_PIXEL: f64 = 25.4 / 96.0;
/// Refresh rate of the modes we create (nothing scans them out; clients only see the size).
const REFRESH_HZ: u64 = 60;

/// The smallest and largest screen the server allows.
pub(crate) fn size_range(conn: &RustConnection, root: u32) -> Result<(Size, Size), X11Error> {
    let r = conn.randr_get_screen_size_range(root)?.reply()?;
    Ok((Size::new(r.min_width, r.min_height), Size::new(r.max_width, r.max_height)))
}

/// Clamp `want` to the server's range.
pub(crate) fn clamp(want: Size, (min, max): (Size, Size)) -> Size {
    Size::new(want.width.clamp(min.width.max(1), max.width.max(1)), want.height.clamp(min.height.max(1), max.height.max(1)))
}

/// What GetScreenResources(Current) says; both replies carry the same fields.
struct Resources {
    config_timestamp: u32,
    crtcs: Vec<randr::Crtc>,
    outputs: Vec<randr::Output>,
    modes: Vec<ModeInfo>,
    names: Vec<u8>,
}

fn resources(conn: &RustConnection, root: u32, randr_minor: u32) -> Result<Resources, X11Error> {
    // GetScreenResources makes some drivers probe their outputs (slow); 1.3 has a cheap one.
    Ok(if randr_minor >= 3 {
        let r = conn.randr_get_screen_resources_current(root)?.reply()?;
        Resources { config_timestamp: r.config_timestamp, crtcs: r.crtcs, outputs: r.outputs, modes: r.modes, names: r.names }
    } else {
        let r = conn.randr_get_screen_resources(root)?.reply()?;
        Resources { config_timestamp: r.config_timestamp, crtcs: r.crtcs, outputs: r.outputs, modes: r.modes, names: r.names }
    })
}

/// Make the screen `want` (clamped to the server's range); returns the size asked of the server.
pub(crate) fn resize(conn: &RustConnection, root: u32, randr_minor: u32, want: Size) -> Result<Size, X11Error> {
    let size = clamp(want, size_range(conn, root)?);
    let res = resources(conn, root, randr_minor)?;
    let ts = res.config_timestamp;

    // The first connected output, preferring one that already has a CRTC.
    let mut chosen = None;
    for &output in &res.outputs {
        let info = conn.randr_get_output_info(output, ts)?.reply()?;
        if info.connection != randr::Connection::CONNECTED {
            continue;
        }
        let has_crtc = info.crtc != x11rb::NONE;
        if chosen.is_none() || has_crtc {
            chosen = Some((output, info));
        }
        if has_crtc {
            break;
        }
    }
    let (output, info) = chosen.ok_or_else(|| X11Error::Request("the X screen has no connected output to resize".into()))?;

    let mut crtcs = Vec::new();
    for &crtc in &res.crtcs {
        crtcs.push((crtc, conn.randr_get_crtc_info(crtc, ts)?.reply()?));
    }
    let crtc = if info.crtc != x11rb::NONE {
        info.crtc
    } else {
        // An output without a CRTC gets the first idle one it can use.
        *info
            .crtcs
            .iter()
            .find(|c| crtcs.iter().any(|(id, ci)| id == *c && ci.outputs.is_empty()))
            .ok_or_else(|| X11Error::Request("no free CRTC for the connected output".into()))?
    };
    let current = conn.get_geometry(root)?.reply()?;
    let current = Size::new(current.width, current.height);
    let crtc_info = &crtcs.iter().find(|(id, _)| *id == crtc).expect("the CRTC is one of the screen's").1;
    if current == size && crtc_info.mode != x11rb::NONE && (crtc_info.width, crtc_info.height) == (size.width, size.height) {
        return Ok(size);
    }

    let mode = find_or_create_mode(conn, root, &res, size)?;
    if !info.modes.contains(&mode) {
        conn.randr_add_output_mode(output, mode)?.check()?;
    }

    let fits = |x: i16, y: i16, w: u16, h: u16, s: Size| i32::from(x) + i32::from(w) <= i32::from(s.width) && i32::from(y) + i32::from(h) <= i32::from(s.height);
    // Other CRTCs that would hang off the new screen are switched off (as xrandr does), or the
    // screen size change is refused.
    for (id, ci) in &crtcs {
        if *id != crtc && ci.mode != x11rb::NONE && !fits(ci.x, ci.y, ci.width, ci.height, size) {
            set_crtc(conn, *id, ts, x11rb::NONE, &[])?;
        }
    }
    let mm_w = (f64::from(size.width) * MM_PER_PIXEL).round() as u32;
    let mm_h = (f64::from(size.height) * MM_PER_PIXEL).round() as u32;
    // The CRTC must fit the screen after each request: shrink the CRTC before the screen, grow
    // the screen before the CRTC; when neither order works (wider but lower), switch it off.
    if size.width <= current.width && size.height <= current.height {
        set_crtc(conn, crtc, ts, mode, &[output])?;
        conn.randr_set_screen_size(root, size.width, size.height, mm_w, mm_h)?.check()?;
    } else {
        let active = crtc_info.mode != x11rb::NONE;
        if active && !fits(crtc_info.x, crtc_info.y, crtc_info.width, crtc_info.height, size) {
            set_crtc(conn, crtc, ts, x11rb::NONE, &[])?;
        }
        conn.randr_set_screen_size(root, size.width, size.height, mm_w, mm_h)?.check()?;
        set_crtc(conn, crtc, ts, mode, &[output])?;
    }
    Ok(size)
}

fn set_crtc(conn: &RustConnection, crtc: randr::Crtc, config_ts: u32, mode: randr::Mode, outputs: &[randr::Output]) -> Result<(), X11Error> {
    // Timestamp 0 is CurrentTime: apply whatever the configuration is now.
    let reply = conn.randr_set_crtc_config(crtc, 0, config_ts, 0, 0, mode, Rotation::ROTATE0, outputs)?.reply()?;
    if reply.status != SetConfig::SUCCESS {
        return Err(X11Error::Request(format!("RandR refused the CRTC configuration ({:?})", reply.status)));
    }
    Ok(())
}

/// A mode of exactly `size`: an existing one (the server's own or one made before), else a new
/// one named "WxH".
fn find_or_create_mode(conn: &RustConnection, root: u32, res: &Resources, size: Size) -> Result<randr::Mode, X11Error> {
    let name = format!("{}x{}", size.width, size.height);
    let mut offset = 0usize;
    let mut same_size = None;
    for m in &res.modes {
        let m_name = res.names.get(offset..offset + usize::from(m.name_len)).unwrap_or_default();
        offset += usize::from(m.name_len);
        if (m.width, m.height) == (size.width, size.height) {
            if m_name == name.as_bytes() {
                return Ok(m.id);
            }
            same_size.get_or_insert(m.id);
        }
    }
    if let Some(id) = same_size {
        return Ok(id);
    }
    let info = mode_info(size, name.len() as u16);
    Ok(conn.randr_create_mode(root, info, name.as_bytes())?.reply()?.mode)
}

/// Plausible timings for a `size` mode at 60 Hz, CVT reduced blanking style (virtual screens
/// scan nothing out, but drivers check that the numbers are consistent).
fn mode_info(size: Size, name_len: u16) -> ModeInfo {
    let (w, h) = (size.width, size.height);
    let htotal = w.saturating_add(160);
    let vtotal = h.saturating_add(23);
    let clock = u64::from(htotal) * u64::from(vtotal) * REFRESH_HZ;
    ModeInfo {
        id: 0,
        width: w,
        height: h,
        dot_clock: u32::try_from(clock).unwrap_or(u32::MAX),
        hsync_start: w.saturating_add(48),
        hsync_end: w.saturating_add(80),
        htotal,
        hskew: 0,
        vsync_start: h.saturating_add(3),
        vsync_end: h.saturating_add(9),
        vtotal,
        name_len,
        mode_flags: ModeFlag::HSYNC_POSITIVE | ModeFlag::VSYNC_NEGATIVE,
    }
}

/// Ask for RRScreenChangeNotify on `root` (ConfigureNotify comes with StructureNotify).
pub(crate) fn select_screen_changes(conn: &RustConnection, root: u32) -> Result<(), X11Error> {
    conn.randr_select_input(root, randr::NotifyMask::SCREEN_CHANGE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped_to_the_range() {
        let range = (Size::new(320, 200), Size::new(1920, 1080));
        assert_eq!(clamp(Size::new(4000, 100), range), Size::new(1920, 200));
        assert_eq!(clamp(Size::new(1024, 768), range), Size::new(1024, 768));
    }

    #[test]
    fn mode_timings_are_consistent() {
        let m = mode_info(Size::new(1024, 768), 8);
        assert!(m.width < m.hsync_start && m.hsync_start < m.hsync_end && m.hsync_end < m.htotal);
        assert!(m.height < m.vsync_start && m.vsync_start < m.vsync_end && m.vsync_end < m.vtotal);
        let refresh = f64::from(m.dot_clock) / (f64::from(m.htotal) * f64::from(m.vtotal));
        assert!((refresh - 60.0).abs() < 0.01, "{refresh}");
        // The largest screens overflow a 60 Hz clock; the clock saturates instead of wrapping.
        assert_eq!(mode_info(Size::new(32767, 32767), 11).dot_clock, u32::MAX);
    }
}
