//! H.264 (AVC420) encoding of a whole screen for the graphics pipeline, over OpenH264.
//!
//! Settings chosen by measurement on the project's machine (research/h264.md): LOW complexity
//! and real-time camera usage (screen-content usage was 3x slower), frame skipping off (every
//! frame we encode is one a terminal waits for), one slice, one thread. The picture handed to
//! OpenH264 is the screen rounded up to a multiple of 16 in both directions, padded with its
//! edge pixels; the EGFX surface keeps the real size and the client copies only the changed
//! rectangles out of the decoded picture.
//!
//! Colours: MS-RDPEGFX 3.3.8.3.1 has AVC420 pictures in full-range BT.709, which is what
//! FreeRDP and IronRDP convert back with. OpenH264's own RGB converter is limited-range BT.601,
//! so the conversion is the `yuv` crate's (already used by IronRDP's graphics).

use std::ptr::addr_of_mut;
use std::time::Instant;

use openh264::encoder::{BitRate, Complexity, EncoderConfig, FrameRate, FrameType, QpRange, RateControlMode, UsageType};
use openh264::formats::YUVSlices;
use openh264::{OpenH264API, Timestamp};
use rdhost_desktop::Size;
use yuv::{BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};
use rdhost_desktop::canvas::BYTES_PER_PIXEL;

use crate::encode::EncodeError;

/// The largest picture OpenH264 encodes (level 5.2).
pub const MAX_PICTURE: (u16, u16) = (3840, 2160);

/// One encoded picture.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// The NAL units, Annex B (start codes), parameter sets first when `key`.
    pub annexb: Vec<u8>,
    /// An IDR: decodable without any earlier access unit.
    pub key: bool,
    /// The average quantisation parameter of the picture (0..=51).
    pub qp: u8,
}

/// A screen in the encoder's own format (I420 planes of the screen padded to multiples of 16),
/// converted where the pixels are (under the canvas lock, with no copy of the screen in
/// between) and encoded afterwards. Reused from frame to frame.
#[derive(Debug, Clone)]
pub struct Picture {
    size: Size,
    /// `size` rounded up to multiples of 16.
    padded: (usize, usize),
    planes: Vec<u8>,
}

impl Default for Picture {
    fn default() -> Self {
        Self { size: Size::new(0, 0), padded: (0, 0), planes: Vec::new() }
    }
}

impl Picture {
    /// The screen's size (unpadded); 0x0 before the first conversion.
    pub fn size(&self) -> Size {
        self.size
    }

    /// Convert a screen of `size` from BGRX `pixels` whose rows are `stride` bytes apart (the
    /// first at `pixels[0]`).
    ///
    /// Panics when `pixels` is too short for that.
    pub fn convert(&mut self, pixels: &[u8], stride: usize, size: Size) {
        let (w, h) = (usize::from(size.width), usize::from(size.height));
        let padded = (w.div_ceil(16) * 16, h.div_ceil(16) * 16);
        if self.padded != padded {
            self.planes = vec![0; padded.0 * padded.1 * 3 / 2];
        }
        (self.size, self.padded) = (size, padded);
        bgrx_to_i420_bt709(pixels, stride, (w, h), padded, &mut self.planes);
    }
}

/// An H.264 encoder for one screen size. A new size needs a new encoder (its first picture is
/// an IDR).
pub struct H264Encoder {
    inner: openh264::encoder::Encoder,
    size: Size,
    /// The picture [`encode`](Self::encode) converts into.
    picture: Picture,
    bitrate: u32,
    key_wanted: bool,
    started: Instant,
    frames: u64,
}

impl H264Encoder {
    /// The bit rate a screen of `size` starts with: 10 Mbit/s for 1280x800, scaled by area,
    /// within 2..=40 Mbit/s (the floor: a small screen's pictures stay sharp). OpenH264's rate
    /// control shares it out over 60 pictures a second (the capture's most); fewer pictures
    /// simply come out smaller than the rate allows.
    pub fn default_bitrate(size: Size) -> u32 {
        let area = u64::from(size.width) * u64::from(size.height);
        (10_000_000 * area / (1280 * 800)).clamp(2_000_000, 40_000_000) as u32
    }

    /// An encoder for screens of `size`; an error when H.264 cannot carry it (empty, or larger
    /// than [`MAX_PICTURE`] once padded).
    pub fn new(size: Size) -> Result<Self, EncodeError> {
        let err = |detail: String| EncodeError::Codec { what: "h264 encoder", detail };
        let padded = (usize::from(size.width).div_ceil(16) * 16, usize::from(size.height).div_ceil(16) * 16);
        if size.width == 0 || size.height == 0 {
            return Err(err(format!("{}x{} is no picture", size.width, size.height)));
        }
        let (max_w, max_h) = (usize::from(MAX_PICTURE.0), usize::from(MAX_PICTURE.1));
        if padded.0.max(padded.1) > max_w || padded.0.min(padded.1) > max_h {
            return Err(err(format!("{}x{} is larger than H.264 level 5.2 takes", size.width, size.height)));
        }
        let bitrate = Self::default_bitrate(size);
        let inner = Self::openh264(bitrate)?;
        Ok(Self { inner, size, picture: Picture::default(), bitrate, key_wanted: true, started: Instant::now(), frames: 0 })
    }

    fn openh264(bitrate: u32) -> Result<openh264::encoder::Encoder, EncodeError> {
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(Complexity::Low)
            .skip_frames(false)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate))
            // The per-picture budget is the rate over this. At 30 a full-screen animation got
            // twice the bits we asked for (QP 14 at 60 pictures a second), and coding those bits
            // took a sixth of the encoder's time (examples/h264_speed, the animation at 1080p:
            // 17.4 -> 14.8 ms a picture, QP 14 -> 25).
            .max_frame_rate(FrameRate::from_hz(60.0))
            // Text must stay readable until the lossless refinement arrives: never coarser.
            .qp(QpRange::new(10, 40))
            .num_threads(1)
            .scene_change_detect(false)
            .background_detection(false);
        openh264::encoder::Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| EncodeError::Codec { what: "h264 encoder", detail: e.to_string() })
    }

    pub fn size(&self) -> Size {
        self.size
    }

    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// Aim at `bps` bits per second from the next picture on (100 kbit/s to 200 Mbit/s).
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), EncodeError> {
        let bps = bps.clamp(100_000, 200_000_000);
        if bps == self.bitrate {
            return Ok(());
        }
        if self.frames == 0 {
            // OpenH264 is initialised by the first picture, from the config it was made with.
            self.inner = Self::openh264(bps)?;
        } else {
            // OpenH264 checks the layer's target against the layer's maximum at each step: raise
            // the maximum first, or lower it last. (SPATIAL_LAYER_ALL alone leaves the layer's
            // maximum where it was.)
            use openh264_sys2::{ENCODER_OPTION_BITRATE as TARGET, ENCODER_OPTION_MAX_BITRATE as MAX, SPATIAL_LAYER_0, SPATIAL_LAYER_ALL};
            let steps = if bps > self.bitrate {
                [(MAX, SPATIAL_LAYER_0), (MAX, SPATIAL_LAYER_ALL), (TARGET, SPATIAL_LAYER_ALL)]
            } else {
                [(TARGET, SPATIAL_LAYER_ALL), (MAX, SPATIAL_LAYER_0), (MAX, SPATIAL_LAYER_ALL)]
            };
            for (option, layer) in steps {
                let mut info = openh264_sys2::SBitrateInfo { iLayer: layer, iBitrate: bps as i32 };
                // SAFETY: the encoder is initialised (it encoded a picture) and SBitrateInfo is
                // the type these two options take; OpenH264 copies it before returning.
                let rc = unsafe { self.inner.raw_api().set_option(option, addr_of_mut!(info).cast()) };
                if rc != 0 {
                    return Err(EncodeError::Codec { what: "h264 bit rate", detail: format!("OpenH264 refused {bps} bit/s ({rc})") });
                }
            }
        }
        self.bitrate = bps;
        Ok(())
    }

    /// Make the next picture an IDR.
    pub fn request_key_frame(&mut self) {
        self.key_wanted = true;
    }

    /// Encode the whole screen: `pixels` are BGRX rows of `size().width * 4` bytes.
    pub fn encode(&mut self, pixels: &[u8]) -> Result<AccessUnit, EncodeError> {
        let (w, h) = (usize::from(self.size.width), usize::from(self.size.height));
        if pixels.len() != w * h * BYTES_PER_PIXEL {
            return Err(EncodeError::Codec {
                what: "h264 picture",
                detail: format!("{} bytes are not a {w}x{h} screen", pixels.len()),
            });
        }
        let mut picture = std::mem::take(&mut self.picture);
        picture.convert(pixels, w * BYTES_PER_PIXEL, self.size);
        let unit = self.encode_picture(&picture);
        self.picture = picture;
        unit
    }

    /// Encode a screen already converted (of `size()`).
    pub fn encode_picture(&mut self, picture: &Picture) -> Result<AccessUnit, EncodeError> {
        if picture.size != self.size {
            return Err(EncodeError::Codec {
                what: "h264 picture",
                detail: format!("a {:?} picture for a {:?} encoder", picture.size, self.size),
            });
        }
        if self.key_wanted && self.frames > 0 {
            self.inner.force_intra_frame();
        }
        self.key_wanted = false;
        let (pw, ph) = picture.padded;
        let luma = pw * ph;
        let (y, uv) = picture.planes.split_at(luma);
        let (u, v) = uv.split_at(luma / 4);
        let source = YUVSlices::new((y, u, v), (pw, ph), (pw, pw / 2, pw / 2));
        let now = Timestamp::from_millis(self.started.elapsed().as_millis() as u64);
        let stream = self.inner.encode_at(&source, now).map_err(|e| EncodeError::Codec { what: "h264 picture", detail: e.to_string() })?;
        let kind = stream.frame_type();
        let annexb = stream.to_vec();
        if annexb.is_empty() || !matches!(kind, FrameType::IDR | FrameType::I | FrameType::P) {
            // Frame skipping is off: this is OpenH264 failing, and its state is unknown.
            return Err(EncodeError::Codec { what: "h264 picture", detail: format!("OpenH264 produced a {kind:?} frame of {} bytes", annexb.len()) });
        }
        self.frames += 1;
        Ok(AccessUnit { annexb, key: kind == FrameType::IDR, qp: self.last_qp() })
    }

    /// The average QP OpenH264 reports for the last picture; a middling 26 if it reports none.
    fn last_qp(&mut self) -> u8 {
        let mut stats = openh264_sys2::SEncoderStatistics::default();
        // SAFETY: the encoder is initialised (it just encoded) and GET_STATISTICS fills an
        // SEncoderStatistics.
        let rc = unsafe { self.inner.raw_api().get_option(openh264_sys2::ENCODER_OPTION_GET_STATISTICS, addr_of_mut!(stats).cast()) };
        match stats.uiAverageFrameQP {
            qp @ 1..=51 if rc == 0 => qp as u8,
            _ => 26,
        }
    }
}

/// Convert BGRX pixels (`size`, rows `stride` bytes apart) into I420 planes of the `padded`
/// picture (even, at least `size`): full-range BT.709 by the `yuv` crate (SIMD), then the last
/// column and row repeated into the padding (padding like its neighbours costs almost no bits
/// and never bleeds a colour into the screen's edge).
pub fn bgrx_to_i420_bt709(pixels: &[u8], stride: usize, size: (usize, usize), padded: (usize, usize), yuv: &mut [u8]) {
    let (w, h) = size;
    let (pw, ph) = padded;
    assert!(pw >= w && ph >= h && pw % 2 == 0 && ph % 2 == 0 && w > 0 && h > 0 && stride >= w * BYTES_PER_PIXEL);
    assert!(pixels.len() >= (h - 1) * stride + w * BYTES_PER_PIXEL, "{} bytes are not a {w}x{h} screen", pixels.len());
    let pixels = &pixels[..(h - 1) * stride + w * BYTES_PER_PIXEL];
    let luma = pw * ph;
    let (y_plane, uv) = yuv.split_at_mut(luma);
    let (u_plane, v_plane) = uv.split_at_mut(luma / 4);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    // Planes cut to the rows in use: the converter finds an odd last row at their ends.
    let mut image = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(&mut y_plane[..pw * h]),
        y_stride: pw as u32,
        u_plane: BufferStoreMut::Borrowed(&mut u_plane[..pw / 2 * ch]),
        u_stride: (pw / 2) as u32,
        v_plane: BufferStoreMut::Borrowed(&mut v_plane[..pw / 2 * ch]),
        v_stride: (pw / 2) as u32,
        width: w as u32,
        height: h as u32,
    };
    // The X byte is never read as alpha: BGRA and BGRX convert alike.
    let converted = yuv::bgra_to_yuv420(&mut image, pixels, stride as u32, YuvRange::Full, YuvStandardMatrix::Bt709, YuvConversionMode::Balanced);
    debug_assert!(converted.is_ok(), "the planes were sized for the picture: {converted:?}");
    pad_plane(yuv, 0, pw, (w, h), ph);
    pad_plane(yuv, luma, pw / 2, (cw, ch), ph / 2);
    pad_plane(yuv, luma + luma / 4, pw / 2, (cw, ch), ph / 2);
}

/// Repeat the last column of the `used` part of a plane (at `at`, `stride` wide, `rows` high)
/// to its right, then its last row down.
fn pad_plane(yuv: &mut [u8], at: usize, stride: usize, used: (usize, usize), rows: usize) {
    let plane = &mut yuv[at..at + stride * rows];
    let (w, h) = used;
    if w < stride {
        for row in plane.chunks_exact_mut(stride).take(h) {
            let last = row[w - 1];
            row[w..].fill(last);
        }
    }
    for y in h..rows {
        plane.copy_within((h - 1) * stride..h * stride, y * stride);
    }
}

/// The inverse of [`bgrx_to_i420_bt709`] for one pixel, as MS-RDPEGFX clients do it (FreeRDP's
/// and IronRDP's integer form): for tests and our own decoding.
pub fn yuv_to_rgb_bt709(y: u8, u: u8, v: u8) -> [u8; 3] {
    let luma = 256 * i32::from(y);
    let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
    let c = |x: i32| (x >> 8).clamp(0, 255) as u8;
    [c(luma + 403 * v), c(luma - 48 * u - 120 * v), c(luma + 475 * u)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Convert a picture forth and back (4:2:0 loses only chroma detail, so flat 2x2 blocks
    /// come back within rounding); padding repeats the edges.
    #[test]
    fn colour_conversion_round_trips_through_the_clients_inverse() {
        let (w, h) = (37usize, 21usize);
        let (pw, ph) = (48usize, 32usize);
        let colour = |x: usize, y: usize| -> [u8; 4] {
            // Constant over each 2x2 block, so chroma subsampling loses nothing.
            let (bx, by) = (x / 2, y / 2);
            [(bx * 13 % 256) as u8, (by * 29 % 256) as u8, ((bx * by * 7) % 256) as u8, 0]
        };
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&colour(x, y));
            }
        }
        let mut yuv = vec![0; pw * ph * 3 / 2];
        bgrx_to_i420_bt709(&pixels, w * BYTES_PER_PIXEL, (w, h), (pw, ph), &mut yuv);
        let (yp, rest) = yuv.split_at(pw * ph);
        let (up, vp) = rest.split_at(pw * ph / 4);
        let at = |x: usize, y: usize| yuv_to_rgb_bt709(yp[y * pw + x], up[y / 2 * pw / 2 + x / 2], vp[y / 2 * pw / 2 + x / 2]);
        for y in 0..h - 1 {
            for x in 0..w - 1 {
                let [b, g, r, _] = colour(x, y);
                let got = at(x, y);
                for (c, want) in got.iter().zip([r, g, b]) {
                    assert!(c.abs_diff(want) <= 3, "({x},{y}): {got:?} for rgb {:?}", [r, g, b]);
                }
            }
        }
        // Padding repeats the last column and row.
        assert_eq!(yp[5 * pw + w], yp[5 * pw + w - 1]);
        assert_eq!(yp[(ph - 1) * pw + 3], yp[(h - 1) * pw + 3]);
    }
}
