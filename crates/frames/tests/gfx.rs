//! GFX profiles: H.264 pictures that decode to the canvas (OpenH264's decoder, converted back
//! as MS-RDPEGFX clients do), lossless planar commands, and the stage's rules for them: one
//! shared H.264 stream, planar for small changes and for refinement, and never a P-picture to a
//! feed that missed the picture before it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironrdp_graphics::rdp6::BitmapStreamDecoder;
use openh264::formats::YUVSource;
use rdhost_desktop::{Canvas, CanvasUpdate, Rect, Size};
use rdhost_frames::{CodecProfile, Feed, FeedProfile, GfxCommand, H264Encoder, Stage, Update, planar_command, yuv_to_rgb_bt709};

const GFX: FeedProfile = FeedProfile::new(CodecProfile::Avc420, 8 * 1024 * 1024);
/// Not a multiple of 16 either way: the H.264 picture is padded, the surface is not.
const SIZE: Size = Size::new(330, 200);

/// A smooth gradient with dark "text" (8x16 cells with strokes) over its top half: what a
/// desktop looks like, not noise. `seed` moves it.
fn picture(x: u16, y: u16, seed: u8) -> [u8; 4] {
    let (xs, ys) = (u32::from(x) + u32::from(seed) * 5, u32::from(y));
    let glyph = y < 96 && (x / 8 + y / 16 + u16::from(seed)) % 3 != 0 && (x % 8 < 6) && ((x % 8) * 3 + y % 16) % 5 < 2;
    if glyph {
        return [0x20, 0x20, 0x20, 0];
    }
    // BGRX
    [(xs * 255 / 500).min(255) as u8, (ys * 255 / 300).min(255) as u8, ((xs + ys) / 4).min(255) as u8, 0]
}

fn paint(canvas: &Canvas, rect: Rect, seed: u8) {
    canvas.draw(|pixels, size| {
        let rect = rect.intersect(size.rect());
        for y in rect.y..rect.y + rect.height {
            for x in rect.x..rect.x + rect.width {
                let i = (usize::from(y) * usize::from(size.width) + usize::from(x)) * 4;
                pixels[i..i + 4].copy_from_slice(&picture(x, y, seed));
            }
        }
        vec![rect]
    });
}

/// Mean absolute difference per colour channel and PSNR (dB) of two BGRX pictures.
fn difference(a: &[u8], b: &[u8]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut abs, mut sq, mut n) = (0u64, 0u64, 0u64);
    for (p, q) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for c in 0..3 {
            let d = u64::from(p[c].abs_diff(q[c]));
            abs += d;
            sq += d * d;
            n += 1;
        }
    }
    let mse = sq as f64 / n as f64;
    (abs as f64 / n as f64, if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0 * 255.0 / mse).log10() })
}

/// A decoded picture as BGRX `size` (the picture may be larger: padding).
fn to_bgrx(yuv: &impl YUVSource, size: Size) -> Vec<u8> {
    let (ys, us, vs) = yuv.strides();
    let (y, u, v) = (yuv.y(), yuv.u(), yuv.v());
    let mut out = Vec::with_capacity(size.area() * 4);
    for row in 0..usize::from(size.height) {
        for col in 0..usize::from(size.width) {
            let [r, g, b] = yuv_to_rgb_bt709(y[row * ys + col], u[row / 2 * us + col / 2], v[row / 2 * vs + col / 2]);
            out.extend_from_slice(&[b, g, r, 0]);
        }
    }
    out
}

fn rect_pixels(pixels: &[u8], width: u16, rect: Rect) -> Vec<u8> {
    let stride = usize::from(width) * 4;
    let mut out = Vec::new();
    for y in rect.y..rect.y + rect.height {
        let start = usize::from(y) * stride + usize::from(rect.x) * 4;
        out.extend_from_slice(&pixels[start..start + usize::from(rect.width) * 4]);
    }
    out
}

/// What an MS-RDPEGFX client showing one feed has on its surface: it decodes H.264 with its
/// own decoder (copying only each picture's rectangles) and planar exactly, and checks the
/// chain: its decoder's first picture must be an IDR.
struct Client {
    size: Size,
    pixels: Vec<u8>,
    decoder: Option<openh264::decoder::Decoder>,
    /// The commands of every update applied, in order: (avc, key, planar).
    log: Vec<(bool, bool, bool)>,
}

impl Client {
    fn new() -> Self {
        Self { size: Size::new(0, 0), pixels: Vec::new(), decoder: None, log: Vec::new() }
    }

    fn apply(&mut self, update: &Update) {
        assert!(update.parts.is_empty(), "a GFX update has no fast-path bytes");
        assert!(!update.gfx.is_empty(), "an update has something to send");
        if update.size != self.size {
            // A new surface at the new size: black, and a new decoder.
            self.size = update.size;
            self.pixels = vec![0; update.size.area() * 4];
            self.decoder = None;
        }
        for command in &update.gfx {
            match &**command {
                GfxCommand::Avc420 { annexb, rects, qp, key } => {
                    assert!(*qp <= 51);
                    assert!(self.decoder.is_some() || *key, "a P-picture reached a decoder that has no reference");
                    let decoder = self.decoder.get_or_insert_with(|| openh264::decoder::Decoder::new().expect("a decoder"));
                    let decoded = decoder.decode(annexb).expect("the picture decodes").expect("one picture per access unit");
                    let (w, h) = decoded.dimensions();
                    assert!(w >= usize::from(self.size.width) && h >= usize::from(self.size.height) && w % 16 == 0 && h % 16 == 0);
                    let picture = to_bgrx(&decoded, self.size);
                    for &rect in rects {
                        let pixels = rect_pixels(&picture, self.size.width, rect);
                        self.put(rect, &pixels);
                    }
                    self.log.push((true, *key, false));
                }
                GfxCommand::Planar { rect, data } => {
                    let mut rgb = Vec::new();
                    BitmapStreamDecoder::default()
                        .decode_bitmap_stream_to_rgb24(data, &mut rgb, usize::from(rect.width), usize::from(rect.height))
                        .expect("planar decodes");
                    let bgrx: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0], 0]).collect();
                    self.put(*rect, &bgrx);
                    self.log.push((false, false, true));
                }
                GfxCommand::SolidFill { bgr, rects } => {
                    for &rect in rects {
                        let pixels: Vec<u8> = (0..rect.area()).flat_map(|_| [bgr[0], bgr[1], bgr[2], 0]).collect();
                        self.put(rect, &pixels);
                    }
                    self.log.push((false, false, true));
                }
            }
        }
    }

    fn put(&mut self, rect: Rect, pixels: &[u8]) {
        assert!(rect.right() <= u32::from(self.size.width) && rect.bottom() <= u32::from(self.size.height), "{rect:?} past {:?}", self.size);
        let stride = usize::from(self.size.width) * 4;
        let row = usize::from(rect.width) * 4;
        for (i, src) in pixels.chunks_exact(row).enumerate() {
            let start = (usize::from(rect.y) + i) * stride + usize::from(rect.x) * 4;
            self.pixels[start..start + row].copy_from_slice(src);
        }
    }

    /// Mean abs difference and PSNR against the canvas.
    fn difference(&self, canvas: &Canvas) -> (f64, f64) {
        assert_eq!(self.size, canvas.size());
        difference(&self.pixels, &canvas.read(canvas.size().rect()))
    }

    fn exact(&self, canvas: &Canvas) -> bool {
        self.size == canvas.size() && self.pixels.chunks_exact(4).zip(canvas.read(canvas.size().rect()).chunks_exact(4)).all(|(a, b)| a[..3] == b[..3])
    }

    fn close(&self, canvas: &Canvas) -> bool {
        // Text-like strokes lose colour to 4:2:0 (see the encoder test), so the whole screen is
        // held loosely; the smooth rows below the text strictly. A picture decoded against the
        // wrong reference, or in the wrong colours, fails both.
        let (mad, psnr) = self.difference(canvas);
        let smooth = Rect::new(0, 120, self.size.width, self.size.height - 120);
        let (_, smooth_psnr) = difference(&rect_pixels(&self.pixels, self.size.width, smooth), &canvas.read(smooth));
        mad < 8.0 && psnr > 22.0 && smooth_psnr > 38.0
    }

    /// `rect` of the surface is exactly the canvas'.
    fn exact_at(&self, canvas: &Canvas, rect: Rect) -> bool {
        rect_pixels(&self.pixels, self.size.width, rect).chunks_exact(4).zip(canvas.read(rect).chunks_exact(4)).all(|(a, b)| a[..3] == b[..3])
    }
}

async fn next(feed: &mut Feed) -> Update {
    tokio::time::timeout(Duration::from_secs(20), feed.next()).await.expect("an update within 20 s").expect("encoding works")
}

/// Nothing comes for `wait`.
async fn quiet(feed: &mut Feed, wait: Duration) -> bool {
    tokio::time::timeout(wait, feed.next()).await.is_err()
}

fn kinds(update: &Update) -> (usize, usize, usize) {
    let mut avc = 0;
    let mut key = 0;
    let mut planar = 0;
    for c in &update.gfx {
        match &**c {
            GfxCommand::Avc420 { key: k, .. } => {
                avc += 1;
                key += usize::from(*k);
            }
            // Both lossless.
            GfxCommand::Planar { .. } | GfxCommand::SolidFill { .. } => planar += 1,
        }
    }
    (avc, key, planar)
}

#[test]
fn h264_pictures_decode_to_the_screen_with_the_right_colours() {
    // Odd sizes: the picture is padded to 336x208, the screen is 331x199.
    let size = Size::new(331, 199);
    let canvas = Canvas::new(size);
    paint(&canvas, size.rect(), 0);
    // Pure colours in corners: a swapped red and blue would show here.
    let swatches = [(Rect::new(0, 100, 32, 32), [0, 0, 255, 0]), (Rect::new(40, 100, 32, 32), [0, 255, 0, 0]), (Rect::new(80, 100, 32, 32), [255, 0, 0, 0])];
    for (rect, bgrx) in swatches {
        canvas.draw(|px, s| {
            for y in rect.y..rect.bottom() as u16 {
                for x in rect.x..rect.right() as u16 {
                    let i = (usize::from(y) * usize::from(s.width) + usize::from(x)) * 4;
                    px[i..i + 4].copy_from_slice(&bgrx);
                }
            }
            vec![rect]
        });
    }
    let mut encoder = H264Encoder::new(size).unwrap();
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    for seed in 0..4u8 {
        if seed > 0 {
            paint(&canvas, Rect::new(0, 0, size.width, 96), seed);
        }
        let pixels = canvas.read(size.rect());
        let unit = encoder.encode(&pixels).unwrap();
        assert_eq!(unit.key, seed == 0, "an IDR first, then P-pictures");
        let decoded = decoder.decode(&unit.annexb).unwrap().expect("a picture");
        assert_eq!(decoded.dimensions(), (336, 208));
        let got = to_bgrx(&decoded, size);
        // 1-pixel strokes lose colour to 4:2:0 (the refinement's job); smooth areas must not.
        let (mad, psnr) = difference(&got, &pixels);
        assert!(mad < 6.0 && psnr > 25.0, "picture {seed}: mean abs diff {mad:.2}, PSNR {psnr:.1} dB, QP {}, {} bytes", unit.qp, unit.annexb.len());
        let smooth = Rect::new(0, 136, size.width, 63);
        let (mad, psnr) = difference(&rect_pixels(&got, size.width, smooth), &rect_pixels(&pixels, size.width, smooth));
        assert!(mad < 2.0 && psnr > 40.0, "picture {seed}, gradient: mean abs diff {mad:.2}, PSNR {psnr:.1} dB");
        for (rect, bgrx) in swatches {
            let centre = rect_pixels(&got, size.width, Rect::new(rect.x + 12, rect.y + 12, 8, 8));
            for p in centre.chunks_exact(4) {
                for c in 0..3 {
                    assert!(p[c].abs_diff(bgrx[c]) <= 12, "swatch {bgrx:?} came out {p:?}");
                }
            }
        }
    }
    // A key frame on request, and bit rate changes are taken.
    encoder.set_bitrate(2_000_000).unwrap();
    assert_eq!(encoder.bitrate(), 2_000_000);
    encoder.request_key_frame();
    let unit = encoder.encode(&canvas.read(size.rect())).unwrap();
    assert!(unit.key);
    assert!(decoder.decode(&unit.annexb).unwrap().is_some());
    // Bad input is an error, not a panic.
    assert!(encoder.encode(&[0; 12]).is_err());
    assert!(H264Encoder::new(Size::new(0, 10)).is_err());
    assert!(H264Encoder::new(Size::new(4096, 2304)).is_err());
}

#[test]
fn planar_commands_are_lossless_top_down_and_exactly_their_rectangle() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 3);
    for rect in [Rect::new(0, 0, 330, 200), Rect::new(7, 5, 13, 9), Rect::new(329, 199, 1, 1), Rect::new(100, 50, 3, 40)] {
        let pixels = canvas.read(rect);
        let GfxCommand::Planar { rect: got, data } = planar_command(&CanvasUpdate { rect, pixels: pixels.clone() }).unwrap() else {
            panic!("a planar command");
        };
        assert_eq!(got, rect);
        let mut rgb = Vec::new();
        BitmapStreamDecoder::default().decode_bitmap_stream_to_rgb24(&data, &mut rgb, usize::from(rect.width), usize::from(rect.height)).unwrap();
        let expected: Vec<u8> = pixels.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0]]).collect();
        assert_eq!(rgb, expected, "{rect:?}: lossless, first row first");
        assert_eq!(data[0] & 0x20, 0x20, "no alpha plane (NA)");
    }
    // Noise: stored raw rather than expanded by RLE.
    let noisy: Vec<u8> = (0..64 * 64 * 4).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let GfxCommand::Planar { data, .. } = planar_command(&CanvasUpdate { rect: Rect::new(0, 0, 64, 64), pixels: noisy.clone() }).unwrap() else {
        panic!()
    };
    assert!(data.len() <= 64 * 64 * 3 + 1 + 1);
    let mut rgb = Vec::new();
    BitmapStreamDecoder::default().decode_bitmap_stream_to_rgb24(&data, &mut rgb, 64, 64).unwrap();
    assert_eq!(rgb, noisy.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0]]).collect::<Vec<_>>());
    assert!(planar_command(&CanvasUpdate { rect: Rect::new(0, 0, 4, 4), pixels: vec![0; 12] }).is_err());
}

#[tokio::test]
async fn small_changes_go_planar_large_ones_h264_and_refinement_makes_them_exact() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 0);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(GFX);
    let mut client = Client::new();

    // The first update: an IDR of the whole screen.
    let first = next(&mut feed).await;
    assert_eq!(first.size, SIZE);
    assert_eq!(kinds(&first), (1, 1, 0));
    let GfxCommand::Avc420 { rects, .. } = &*first.gfx[0] else { panic!() };
    assert_eq!(rects, &vec![SIZE.rect()]);
    client.apply(&first);
    assert!(client.close(&canvas), "{:?}", client.difference(&canvas));

    // Typing: a glyph goes lossless, no H.264 encode.
    let glyph = Rect::new(40, 16, 8, 16);
    canvas.draw(|px, s| {
        for y in glyph.y..glyph.bottom() as u16 {
            for x in glyph.x..glyph.right() as u16 {
                let i = (usize::from(y) * usize::from(s.width) + usize::from(x)) * 4;
                px[i..i + 4].copy_from_slice(&[0xEE, 0xDD, 0xCC, 0]);
            }
        }
        vec![glyph]
    });
    let typed = next(&mut feed).await;
    assert_eq!(kinds(&typed), (0, 0, 1));
    client.apply(&typed);
    assert_eq!(rect_pixels(&client.pixels, SIZE.width, glyph), rect_pixels(&canvas.read(SIZE.rect()), SIZE.width, glyph));

    // A large change: one P-picture whose rectangles are the change.
    let big = Rect::new(0, 0, 330, 120);
    paint(&canvas, big, 9);
    let started = Instant::now();
    let moved = next(&mut feed).await;
    assert_eq!(kinds(&moved), (1, 0, 0));
    let GfxCommand::Avc420 { rects, .. } = &*moved.gfx[0] else { panic!() };
    assert_eq!(rects, &vec![big]);
    client.apply(&moved);
    assert!(client.close(&canvas), "{:?}", client.difference(&canvas));
    assert!(!client.exact(&canvas), "H.264 is lossy: refinement has something to do");

    // Quiet: the refinement comes by itself, lossless, covering what went lossy.
    let refined = next(&mut feed).await;
    assert!(started.elapsed() >= Stage::REFINE_AFTER, "refined after {:?}", started.elapsed());
    assert_eq!(kinds(&refined).0, 0, "refinement is planar only");
    client.apply(&refined);
    assert!(client.exact(&canvas), "after refinement the screen is exact");
    assert!(quiet(&mut feed, Stage::REFINE_AFTER * 3).await, "refined once, then nothing");
    let stats = stage.stats();
    assert_eq!((stats.shared_encodes, stats.private_encodes), (4, 0));
}

#[test]
fn the_slowest_feed_sets_the_bit_rate_of_the_shared_encoder() {
    let canvas = Arc::new(Canvas::new(SIZE));
    let stage = Stage::new(Arc::clone(&canvas));
    let asked = |stage: &Stage| stage.stats().profile(GFX).unwrap().h264_bitrate;
    let (slow, fast, quiet) = (stage.feed(GFX), stage.feed(GFX), stage.feed(GFX));
    assert_eq!(asked(&stage), None, "nobody asked: by screen area");
    fast.set_bitrate(Some(8_000_000));
    slow.set_bitrate(Some(2_000_000));
    fast.set_bitrate(Some(9_000_000));
    assert_eq!(asked(&stage), Some(2_000_000), "the lowest ask, whoever asked last");
    drop(quiet);
    assert_eq!(asked(&stage), Some(2_000_000));
    drop(slow);
    assert_eq!(asked(&stage), Some(9_000_000), "a feed that leaves takes its ask with it");
    fast.set_bitrate(None);
    assert_eq!(asked(&stage), None);
}

#[tokio::test]
async fn feeds_of_one_profile_share_one_encode_per_change() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 0);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feeds: Vec<(Feed, Client)> = (0..20).map(|_| (stage.feed(GFX), Client::new())).collect();
    const CHANGES: u8 = 6;
    for change in 0..=CHANGES {
        if change > 0 {
            // Alternately large (H.264) and small (planar).
            let rect = if change % 2 == 1 { Rect::new(0, 0, 330, 150) } else { Rect::new(10, 10, 20, 16) };
            paint(&canvas, rect, change);
        }
        for (feed, client) in &mut feeds {
            let update = next(feed).await;
            client.apply(&update);
            assert!(client.close(&canvas));
        }
    }
    let stats = stage.stats();
    assert_eq!(stats.shared_encodes, 1 + u64::from(CHANGES), "one encode per change, whatever the number of feeds");
    assert_eq!(stats.private_encodes, 0);
    for (_, client) in &feeds {
        assert_eq!(client.log, feeds[0].1.log, "every feed got the same commands");
    }
}

#[tokio::test]
async fn a_feed_that_missed_a_picture_gets_planar_until_an_idr_brings_it_back() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 0);
    let stage = Stage::new(Arc::clone(&canvas));
    let (mut fast, mut slow) = (stage.feed(GFX), stage.feed(GFX));
    let (mut fast_client, mut slow_client) = (Client::new(), Client::new());
    fast_client.apply(&next(&mut fast).await);
    slow_client.apply(&next(&mut slow).await);
    let idr_at = Instant::now();

    // The slow feed misses three pictures.
    for seed in 1..=3 {
        paint(&canvas, Rect::new(0, 0, 330, 160), seed);
        let update = next(&mut fast).await;
        assert_eq!(kinds(&update), (1, 0, 0));
        fast_client.apply(&update);
    }
    // It is not given the newest P-picture: what it missed comes as planar.
    let caught_up = next(&mut slow).await;
    assert_eq!(kinds(&caught_up).0, 0, "no H.264 after a gap");
    slow_client.apply(&caught_up);
    assert!(slow_client.exact_at(&canvas, Rect::new(0, 0, 330, 160)), "what it missed, lossless");
    assert!(slow_client.close(&canvas));

    // Within the IDR rate limit, the next picture is a P-picture: still planar for the slow feed.
    paint(&canvas, Rect::new(0, 40, 330, 160), 4);
    let p = next(&mut fast).await;
    if idr_at.elapsed() < Stage::KEY_INTERVAL {
        assert_eq!(kinds(&p), (1, 0, 0), "IDRs are rate-limited");
    }
    fast_client.apply(&p);
    let planar = next(&mut slow).await;
    assert_eq!(kinds(&planar).0, 0);
    slow_client.apply(&planar);
    assert!(slow_client.exact_at(&canvas, Rect::new(0, 40, 330, 160)));
    assert!(slow_client.close(&canvas));

    // Once the rate limit allows, the group makes the IDR the slow feed asked for, and both
    // feeds share it and what follows.
    tokio::time::sleep(Stage::KEY_INTERVAL.saturating_sub(idr_at.elapsed())).await;
    for seed in 5..=7 {
        paint(&canvas, Rect::new(0, 0, 330, 180), seed);
        let update = next(&mut fast).await;
        assert_eq!(kinds(&update), (1, usize::from(seed == 5), 0), "picture {seed}");
        fast_client.apply(&update);
        let shared = next(&mut slow).await;
        assert_eq!(kinds(&shared), kinds(&update), "the slow feed is back on the shared stream");
        slow_client.apply(&shared);
        assert!(fast_client.close(&canvas) && slow_client.close(&canvas));
    }
    assert_eq!(fast_client.log.iter().filter(|l| l.2).count(), 0, "the fast feed never needed planar");
    let stats = stage.stats();
    assert_eq!(stats.private_encodes, 2, "the slow feed's two catch-ups");
}

#[tokio::test]
async fn a_late_feed_and_a_resize_start_from_an_idr_or_planar() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 0);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut first = stage.feed(GFX);
    let mut first_client = Client::new();
    first_client.apply(&next(&mut first).await);

    // Joining later: the whole screen privately, as planar (its decoder has no reference).
    let mut late = stage.feed(GFX);
    let mut late_client = Client::new();
    let joined = next(&mut late).await;
    assert_eq!(kinds(&joined).0, 0);
    late_client.apply(&joined);
    assert!(late_client.exact(&canvas));

    // A resize: a new encoder, an IDR of the whole new screen, shared by both.
    let bigger = Size::new(400, 240);
    canvas.resize(bigger);
    paint(&canvas, bigger.rect(), 2);
    for (feed, client) in [(&mut first, &mut first_client), (&mut late, &mut late_client)] {
        let update = next(feed).await;
        assert_eq!(update.size, bigger);
        assert_eq!(kinds(&update), (1, 1, 0));
        let GfxCommand::Avc420 { rects, .. } = &*update.gfx[0] else { panic!() };
        assert_eq!(rects, &vec![bigger.rect()]);
        client.apply(&update);
        assert!(client.close(&canvas));
    }
    // A feed whose client starts a new decoder gets planar, then rejoins at an IDR.
    late.restart_stream();
    let restarted = next(&mut late).await;
    assert_eq!(kinds(&restarted).0, 0);
    late_client.decoder = None;
    late_client.apply(&restarted);
    assert!(late_client.exact(&canvas));
}


#[tokio::test]
async fn flat_areas_go_as_solid_fills_and_the_rest_as_before() {
    let canvas = Canvas::new(SIZE);
    paint(&canvas, SIZE.rect(), 0);
    let stage = Stage::new(Arc::clone(&canvas));
    let mut feed = stage.feed(GFX);
    let mut client = Client::new();
    client.apply(&next(&mut feed).await);

    // The whole screen cleared to one colour: fills only, exact, and a few bytes.
    let flat = |px: &mut [u8], s: Size, rect: Rect, bgr: [u8; 3]| {
        for y in rect.y..rect.bottom() as u16 {
            for x in rect.x..rect.right() as u16 {
                let i = (usize::from(y) * usize::from(s.width) + usize::from(x)) * 4;
                px[i..i + 4].copy_from_slice(&[bgr[0], bgr[1], bgr[2], 0]);
            }
        }
    };
    canvas.draw(|px, s| {
        flat(px, s, s.rect(), [0x10, 0x80, 0xF0]);
        vec![s.rect()]
    });
    let cleared = next(&mut feed).await;
    assert!(cleared.gfx.iter().all(|c| matches!(&**c, GfxCommand::SolidFill { bgr: [0x10, 0x80, 0xF0], .. })), "{:?}", cleared.gfx);
    let filled: u64 = cleared.gfx.iter().map(|c| match &**c { GfxCommand::SolidFill { rects, .. } => rects.iter().map(|r| r.area()).sum(), _ => 0 }).sum();
    assert_eq!(filled, SIZE.rect().area(), "every pixel once");
    client.apply(&cleared);
    assert!(client.exact_at(&canvas, SIZE.rect()));

    // A picture over part of it: the picture's cells as before (H.264: it is large), the flat
    // rest as fills of the new colour.
    let picture = Rect::new(0, 0, 330, 130);
    canvas.draw(|px, s| {
        flat(px, s, s.rect(), [0x22, 0x22, 0x22]);
        vec![s.rect()]
    });
    paint(&canvas, picture, 4);
    let mixed = next(&mut feed).await;
    let (avc, _, _) = kinds(&mixed);
    assert_eq!(avc, 1, "{:?}", mixed.gfx.iter().map(|c| std::mem::discriminant(&**c)).collect::<Vec<_>>());
    assert!(mixed.gfx.iter().any(|c| matches!(&**c, GfxCommand::SolidFill { bgr: [0x22, 0x22, 0x22], .. })));
    client.apply(&mixed);
    assert!(client.close(&canvas), "{:?}", client.difference(&canvas));
    assert!(client.exact_at(&canvas, Rect::new(0, 192, 330, 8)), "the flat bottom rows are exact");
}
