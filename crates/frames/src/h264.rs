//! H.264 (AVC420) encoding of a whole screen for the graphics pipeline, over OpenH264.
//!
//! Settings chosen by measurement on the project's machine (research/h264.md): LOW complexity
//! and real-time camera usage (screen-content usage was 3x slower), frame skipping off (every
//! frame we encode is one a terminal waits for), no loop filter, one slice, one thread. OpenH264
//! is driven through its own interface (`openh264-sys2`, built from source), because the
//! `openh264` crate's encoder fixes the loop filter on. The picture handed to
//! OpenH264 is the screen rounded up to a multiple of 16 in both directions, padded with its
//! edge pixels; the EGFX surface keeps the real size and the client copies only the changed
//! rectangles out of the decoded picture.
//!
//! Colours: MS-RDPEGFX 3.3.8.3.1 has AVC420 pictures in full-range BT.709, which is what
//! FreeRDP and IronRDP convert back with. OpenH264's own RGB converter is limited-range BT.601,
//! so the conversion is the `yuv` crate's (already used by IronRDP's graphics).

use std::ptr::addr_of_mut;
use std::time::Instant;

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
    wels: Wels,
    size: Size,
    /// The picture [`encode`](Self::encode) converts into.
    picture: Picture,
    bitrate: u32,
    key_wanted: bool,
    started: Instant,
    frames: u64,
}

impl H264Encoder {
    /// The bit rate a screen of `size` starts with: 10 Mbit/s for 1280x800, growing as the
    /// area to the power 0.6, within 2..=40 Mbit/s (the floor: a small screen's pictures stay
    /// sharp). A larger picture needs fewer bits per pixel for the same look (more of it is
    /// predictable from its neighbours); streaming guides ask 1.6x the rate of 720p60 for
    /// 1080p60's 2.25x the pixels, which is this power. So 1920x1080 gets 15.3 Mbit/s and
    /// 3840x2160 35 (scaled by area they had 20 and 40). OpenH264's rate control shares the
    /// rate out over 60 pictures a second (the capture's most); fewer pictures simply come out
    /// smaller than it allows.
    pub fn default_bitrate(size: Size) -> u32 {
        let area = f64::from(size.width) * f64::from(size.height);
        (10e6 * (area / (1280.0 * 800.0)).powf(0.6)).clamp(2e6, 40e6) as u32
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
        let wels = Wels::new(padded, bitrate).map_err(err)?;
        Ok(Self { wels, size, picture: Picture::default(), bitrate, key_wanted: true, started: Instant::now(), frames: 0 })
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
            // SAFETY: SBitrateInfo is the type these two options take; OpenH264 copies it.
            let rc = unsafe { self.wels.set_option(option, addr_of_mut!(info).cast()) };
            if rc != 0 {
                return Err(EncodeError::Codec { what: "h264 bit rate", detail: format!("OpenH264 refused {bps} bit/s ({rc})") });
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
            self.wels.force_idr();
        }
        self.key_wanted = false;
        let millis = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (annexb, kind) = self.wels.encode(picture, millis).map_err(|detail| EncodeError::Codec { what: "h264 picture", detail })?;
        use openh264_sys2::{videoFrameTypeI, videoFrameTypeIDR, videoFrameTypeP};
        if annexb.is_empty() || ![videoFrameTypeIDR, videoFrameTypeI, videoFrameTypeP].contains(&kind) {
            // Frame skipping is off: this is OpenH264 failing, and its state is unknown.
            return Err(EncodeError::Codec { what: "h264 picture", detail: format!("OpenH264 produced a frame of type {kind} and {} bytes", annexb.len()) });
        }
        self.frames += 1;
        Ok(AccessUnit { annexb, key: kind == videoFrameTypeIDR, qp: self.last_qp() })
    }

    /// The average QP OpenH264 reports for the last picture; a middling 26 if it reports none.
    fn last_qp(&mut self) -> u8 {
        let mut stats = openh264_sys2::SEncoderStatistics::default();
        // SAFETY: GET_STATISTICS fills an SEncoderStatistics.
        let rc = unsafe { self.wels.get_option(openh264_sys2::ENCODER_OPTION_GET_STATISTICS, addr_of_mut!(stats).cast()) };
        match stats.uiAverageFrameQP {
            qp @ 1..=51 if rc == 0 => qp as u8,
            _ => 26,
        }
    }
}

/// OpenH264's encoder, initialised with parameters of our own: the `openh264` crate's encoder
/// fixes some we set otherwise (the loop filter among them).
struct Wels {
    encoder: *mut openh264_sys2::ISVCEncoder,
    padded: (usize, usize),
    /// Where OpenH264 reports the layers of the last picture (pointing into its own buffers).
    out: Box<openh264_sys2::SFrameBSInfo>,
}

// SAFETY: the encoder is used from one thread at a time (`&mut self`), and OpenH264 keeps no
// thread-local state for it (one thread: iMultipleThreadIdc = 1).
unsafe impl Send for Wels {}

impl Wels {
    /// Settings chosen by measurement (module docs, `examples/h264_speed`).
    fn new(padded: (usize, usize), bitrate: u32) -> Result<Self, String> {
        use openh264_sys2 as sys;
        let mut encoder = std::ptr::null_mut();
        // SAFETY: OpenH264's constructor writes the new encoder (or nothing) through the pointer.
        let rc = unsafe { sys::source::APILoader::WelsCreateSVCEncoder(&mut encoder) };
        if encoder.is_null() {
            return Err(format!("OpenH264 made no encoder ({rc})"));
        }
        // From here Drop uninitialises and destroys it (both are harmless on a failed start).
        let mut wels = Wels { encoder, padded, out: Box::default() };
        if rc != 0 {
            return Err(format!("OpenH264 failed to make an encoder ({rc})"));
        }
        let (w, h) = (padded.0 as i32, padded.1 as i32);
        let mut p = sys::SEncParamExt::default();
        let quiet = sys::WELS_LOG_QUIET;
        // SAFETY: the vtable is OpenH264's; each call gets the type its option or function takes.
        unsafe {
            // Before initialising, so that its start-up warnings stay quiet too.
            wels.set_option(sys::ENCODER_OPTION_TRACE_LEVEL, (&raw const quiet).cast_mut().cast());
            wels.vtbl().GetDefaultParams.ok_or("no GetDefaultParams")?(wels.encoder, &mut p);
        }
        p.iUsageType = sys::CAMERA_VIDEO_REAL_TIME;
        p.iComplexityMode = sys::LOW_COMPLEXITY;
        (p.iPicWidth, p.iPicHeight) = (w, h);
        p.iRCMode = sys::RC_BITRATE_MODE;
        p.iTargetBitrate = bitrate as i32;
        // The per-picture budget is the rate over this. At 30 a full-screen animation got
        // twice the bits we asked for (QP 14 at 60 pictures a second), and coding those bits
        // took a sixth of the encoder's time.
        p.fMaxFrameRate = 60.0;
        p.bEnableFrameSkip = false;
        // Text must stay readable until the lossless refinement arrives: never coarser.
        (p.iMinQp, p.iMaxQp) = (10, 40);
        p.iMultipleThreadIdc = 1;
        p.bEnableDenoise = false;
        p.bEnableSceneChangeDetect = false;
        p.bEnableBackgroundDetection = false;
        p.bEnableLongTermReference = false;
        p.uiIntraPeriod = 0;
        p.eSpsPpsIdStrategy = sys::CONSTANT_ID;
        // No loop filter: it took an eighth of the encoder's time (15.2 -> 13.2 ms a 1080p
        // picture of the benchmark's animation, h264_speed) and a share of every client's
        // decoding. What it smooths is block edges of pictures in motion; a screen at rest
        // is made exact by the lossless refinement.
        p.iLoopFilterDisableIdc = 1;
        (p.iSpatialLayerNum, p.iTemporalLayerNum) = (1, 1);
        let layer = &mut p.sSpatialLayers[0];
        (layer.iVideoWidth, layer.iVideoHeight) = (w, h);
        layer.fFrameRate = 60.0;
        (layer.iSpatialBitrate, layer.iMaxSpatialBitrate) = (bitrate as i32, bitrate as i32);
        layer.sSliceArgument.uiSliceMode = sys::SM_SINGLE_SLICE;
        layer.sSliceArgument.uiSliceNum = 1;
        let mut format = sys::videoFormatI420;
        // SAFETY: as above.
        unsafe {
            let rc = wels.vtbl().InitializeExt.ok_or("no InitializeExt")?(wels.encoder, &p);
            if rc != 0 {
                return Err(format!("OpenH264 refused the settings for {w}x{h} at {bitrate} bit/s ({rc})"));
            }
            wels.set_option(sys::ENCODER_OPTION_DATAFORMAT, (&raw mut format).cast());
        }
        Ok(wels)
    }

    fn vtbl(&self) -> &openh264_sys2::ISVCEncoderVtbl {
        // SAFETY: an ISVCEncoder is a pointer to OpenH264's vtable, alive as long as the encoder.
        unsafe { &**self.encoder }
    }

    /// Set an option; OpenH264's return code.
    ///
    /// # Safety
    /// `value` points to the type OpenH264 takes for `option`.
    unsafe fn set_option(&mut self, option: openh264_sys2::ENCODER_OPTION, value: *mut std::ffi::c_void) -> i32 {
        // SAFETY: the caller's promise about `value`; the encoder is alive.
        self.vtbl().SetOption.map_or(-1, |set| unsafe { set(self.encoder, option, value) })
    }

    /// Read an option into `value`; OpenH264's return code.
    ///
    /// # Safety
    /// `value` points to the type OpenH264 fills for `option`.
    unsafe fn get_option(&mut self, option: openh264_sys2::ENCODER_OPTION, value: *mut std::ffi::c_void) -> i32 {
        // SAFETY: as for `set_option`.
        self.vtbl().GetOption.map_or(-1, |get| unsafe { get(self.encoder, option, value) })
    }

    fn force_idr(&mut self) {
        if let Some(force) = self.vtbl().ForceIntraFrame {
            // SAFETY: the encoder is alive and initialised.
            unsafe { force(self.encoder, true) };
        }
    }

    /// Encode `picture` (of the padded size this encoder was made for): the access unit in
    /// Annex B form and OpenH264's frame type.
    fn encode(&mut self, picture: &Picture, millis: i64) -> Result<(Vec<u8>, openh264_sys2::EVideoFrameType), String> {
        let (pw, ph) = self.padded;
        if picture.padded != self.padded || picture.planes.len() < pw * ph * 3 / 2 {
            return Err(format!("a {:?} picture for a {pw}x{ph} encoder", picture.padded));
        }
        let luma = pw * ph;
        // OpenH264 only reads the source planes (its C signature is not const).
        let plane = |at: usize| picture.planes[at..].as_ptr().cast_mut();
        let source = openh264_sys2::SSourcePicture {
            iColorFormat: openh264_sys2::videoFormatI420,
            iStride: [pw as i32, (pw / 2) as i32, (pw / 2) as i32, 0],
            pData: [plane(0), plane(luma), plane(luma + luma / 4), std::ptr::null_mut()],
            iPicWidth: pw as i32,
            iPicHeight: ph as i32,
            uiTimeStamp: millis,
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        let encode = self.vtbl().EncodeFrame.ok_or("no EncodeFrame")?;
        // SAFETY: the planes are the picture's (checked long enough above) and outlive the call;
        // `out` is ours and OpenH264 fills it.
        let rc = unsafe { encode(self.encoder, &source, &mut *self.out) };
        if rc != 0 {
            return Err(format!("OpenH264 failed to encode ({rc})"));
        }
        let out = &*self.out;
        let mut annexb = Vec::with_capacity(usize::try_from(out.iFrameSizeInBytes).unwrap_or(0));
        for layer in out.sLayerInfo.iter().take(usize::try_from(out.iLayerNum).unwrap_or(0)) {
            let nals = usize::try_from(layer.iNalCount).unwrap_or(0);
            // SAFETY: OpenH264 reports `iNalCount` lengths, and the layer's buffer holds their
            // sum, both valid until the next EncodeFrame.
            let lengths = unsafe { std::slice::from_raw_parts(layer.pNalLengthInByte, nals) };
            let bytes = lengths.iter().map(|&n| usize::try_from(n).unwrap_or(0)).sum();
            annexb.extend_from_slice(unsafe { std::slice::from_raw_parts(layer.pBsBuf, bytes) });
        }
        Ok((annexb, out.eFrameType))
    }
}

impl Drop for Wels {
    fn drop(&mut self) {
        // SAFETY: the encoder was created by WelsCreateSVCEncoder and is not used after this.
        unsafe {
            if let Some(uninitialize) = self.vtbl().Uninitialize {
                uninitialize(self.encoder);
            }
            openh264_sys2::source::APILoader::WelsDestroySVCEncoder(self.encoder);
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

    #[test]
    fn the_default_rate_grows_slower_than_the_area() {
        let mbit = |w, h| f64::from(H264Encoder::default_bitrate(Size::new(w, h))) / 1e6;
        assert!((mbit(1280, 800) - 10.0).abs() < 0.01);
        assert!((15.0..15.5).contains(&mbit(1920, 1080)), "{}", mbit(1920, 1080));
        assert!((34.0..36.0).contains(&mbit(3840, 2160)), "{}", mbit(3840, 2160));
        assert_eq!(mbit(320, 200), 2.0, "the floor");
    }

    /// The rate can change before the first picture and between pictures, and the pictures
    /// after it still decode (the encoder is initialised when made).
    #[test]
    fn rate_changes_and_key_frames_keep_the_stream_decodable() {
        let size = Size::new(200, 120);
        let mut encoder = H264Encoder::new(size).unwrap();
        encoder.set_bitrate(4_000_000).unwrap();
        let mut pixels = vec![0u8; size.area() * BYTES_PER_PIXEL];
        let mut decoder = openh264::decoder::Decoder::new().unwrap();
        let mut keys = Vec::new();
        for frame in 0..6u8 {
            pixels.iter_mut().enumerate().for_each(|(i, p)| *p = (i as u8).wrapping_mul(frame | 1));
            if frame == 3 {
                encoder.set_bitrate(1_000_000).unwrap();
                encoder.request_key_frame();
            }
            let unit = encoder.encode(&pixels).unwrap();
            assert!(unit.annexb.starts_with(&[0, 0, 0, 1]), "Annex B start code");
            assert!((1..=51).contains(&unit.qp));
            assert!(decoder.decode(&unit.annexb).unwrap().is_some(), "picture {frame} decodes");
            keys.push(unit.key);
        }
        assert_eq!(keys, [true, false, false, true, false, false]);
        assert_eq!(encoder.bitrate(), 1_000_000);
    }

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
