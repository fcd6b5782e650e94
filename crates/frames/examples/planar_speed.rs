//! How fast our RDP 6.0 planar encoder is against IronRDP's `BitmapStreamEncoder`, and how large
//! the streams are: one whole frame as one bitmap (RLE, no alpha, rows top-down), for a solid
//! colour at 1024x768, text-like content and noise at 1280x800. Also ours with an alpha plane and
//! rows bottom-up (what `CodecProfile::PlanarWithAlpha` sends), ours choosing raw planes when
//! smaller (what EGFX planar commands send), and the whole `Encoder` with `CodecProfile::Planar`
//! (strips, PDU framing).
//!
//! Usage: cargo run --release -p rdhost-frames --example planar_speed -- [--frames N]
//!
//! Prints per case the median wall time per frame and the bytes per frame; every stream is
//! checked to decode to the same pixels with IronRDP's decoder first.

use std::time::Instant;

use ironrdp_graphics::rdp6::{BgrAChannels, BitmapStreamDecoder, BitmapStreamEncoder};
use rdhost_desktop::{CanvasUpdate, Frame, Rect, Size};
use rdhost_frames::planar::{PlanarCompression, PlanarEncoder, PlanarSource};
use rdhost_frames::{CodecProfile, Encoder};

fn solid(width: usize, height: usize) -> Vec<u8> {
    [0x30, 0x24, 0x20, 0xff].repeat(width * height)
}

/// A terminal full of text on a dark background: glyph-like strokes in 9x16 cells.
fn text(width: usize, height: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(width * height * 4);
    for y in 0..height {
        let (cy, row) = (y % 16, (y / 16).wrapping_mul(2_654_435_761));
        for x in 0..width {
            let (cell, cx) = (x / 9, x % 9);
            let ch = (cell.wrapping_mul(40_503) ^ row).rotate_left(7).wrapping_mul(2_246_822_519) >> 7;
            let blank = ch % 7 == 0 || !(3..=13).contains(&cy) || cx > 6;
            let stroke = !blank
                && ((ch & 1 != 0 && cx == 1) || (ch & 2 != 0 && cx == 5) || (ch & 4 != 0 && cy == 4) || (ch & 8 != 0 && cy == 8) || (ch & 16 != 0 && cy == 12));
            let [r, g, b] = if stroke { [0xd8, 0xd8, 0xc8] } else { [0x1e, 0x22, 0x2a] };
            pixels.extend([b, g, r, 0xff]);
        }
    }
    pixels
}

fn noise(width: usize, height: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut pixels = Vec::with_capacity(width * height * 4);
    for _ in 0..width * height {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        pixels.extend([state as u8, (state >> 8) as u8, (state >> 16) as u8, 0xff]);
    }
    pixels
}

/// The median time of `frames` runs of `f` in milliseconds, and what the last run returned.
fn time<T>(frames: u32, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = f(); // warm up
    for _ in 0..frames {
        let start = Instant::now();
        last = f();
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last)
}

fn decode(stream: &[u8], width: usize, height: usize) -> Vec<u8> {
    let mut rgb = Vec::new();
    BitmapStreamDecoder::default().decode_bitmap_stream_to_rgb24(stream, &mut rgb, width, height).expect("decodable");
    rgb
}

fn main() {
    let mut frames = 20u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--frames" => frames = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).expect("--frames N (N > 0)"),
            other => {
                eprintln!("unknown argument {other}; usage: planar_speed [--frames N]");
                std::process::exit(2);
            }
        }
    }
    println!("RDP 6.0 planar, {frames} frames per case (median), one thread");
    println!("{:<18} {:<28} {:>10} {:>12}", "case", "encoder", "ms/frame", "bytes/frame");
    type Content = fn(usize, usize) -> Vec<u8>;
    let cases: [(&str, usize, usize, Content); 3] =
        [("1024x768 solid", 1024, 768, solid), ("1280x800 text", 1280, 800, text), ("1280x800 noise", 1280, 800, noise)];
    for (name, w, h, content) in cases {
        let pixels = content(w, h);
        let row = |encoder: &str, ms: f64, bytes: usize| println!("{name:<18} {encoder:<28} {ms:>10.3} {bytes:>12}");

        let (ms, theirs) = time(frames, || {
            let mut buf = vec![0u8; w * h * 4 + 1024];
            let len = BitmapStreamEncoder::new(w, h).encode_bitmap::<BgrAChannels>(&pixels, &mut buf, true).expect("encode");
            buf.truncate(len);
            buf
        });
        row("ironrdp BitmapStreamEncoder", ms, theirs.len());

        let mut ours = PlanarEncoder::new();
        let src = PlanarSource { pixels: &pixels, width: w, height: h, stride: w * 4, bottom_up: false, padded_width: w };
        let mut encode = |src: &PlanarSource<'_>, alpha: bool, compression: PlanarCompression| {
            time(frames, || {
                let mut out = Vec::new();
                ours.encode(src, alpha, compression, &mut out).expect("encode");
                out
            })
        };
        let (ms, stream) = encode(&src, false, PlanarCompression::Rle);
        assert!(decode(&stream, w, h) == decode(&theirs, w, h), "{name}: ours decodes to other pixels");
        row("ours (RLE)", ms, stream.len());
        let (ms, stream) = encode(&src, false, PlanarCompression::Smallest);
        assert!(decode(&stream, w, h) == decode(&theirs, w, h), "{name}: ours decodes to other pixels");
        row("ours (smallest: EGFX)", ms, stream.len());
        let (ms, stream) = encode(&PlanarSource { bottom_up: true, ..src }, true, PlanarCompression::Rle);
        row("ours (alpha, bottom-up)", ms, stream.len());

        let (width, height) = (w as u16, h as u16);
        let mut encoder = Encoder::new(CodecProfile::Planar, 8 * 1024 * 1024);
        let frame = Frame {
            size: Size::new(width, height),
            resized: false,
            regions: vec![CanvasUpdate { rect: Rect::new(0, 0, width, height), pixels: pixels.clone() }],
        };
        let (ms, out) = time(frames, || encoder.encode(&frame).expect("encode"));
        row("Encoder Planar (strips)", ms, out.len());
    }
}
