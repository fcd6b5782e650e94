//! How fast the GFX encoders are on this machine: H.264 pictures of a whole screen (colour
//! conversion included) for worst-case motion, the benchmark's animation and a terminal, and lossless planar commands
//! of text-sized changes (what `Stage::SMALL_CHANGE` is chosen by).
//!
//! `cargo run --release -p rdhost-frames --example h264_speed [frames]`

use std::time::{Duration, Instant};

use rdhost_desktop::{CanvasUpdate, Rect, Size};
use rdhost_frames::{H264Encoder, planar_command};

/// Deterministic noise.
fn noise(i: u32) -> u8 {
    let mut v = i.wrapping_mul(2_654_435_761);
    v ^= v >> 15;
    v = v.wrapping_mul(2_246_822_519);
    v ^= v >> 13;
    v as u8
}

/// Worst case: a gradient moving every frame with +-8 of noise on every pixel.
fn motion(pixels: &mut [u8], size: Size, frame: u32) {
    let w = usize::from(size.width);
    for (i, p) in pixels.chunks_exact_mut(4).enumerate() {
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        let n = noise(i as u32 ^ frame.wrapping_mul(0x9E37_79B9)) as i32 % 17 - 8;
        let c = |v: u32| (v as i32 + n).clamp(0, 255) as u8;
        p.copy_from_slice(&[c((x + 3 * frame) & 0xFF), c((y + 2 * frame) & 0xFF), c((x + y + frame) & 0xFF), 0]);
    }
}

/// An 8x16 glyph cell at column `col`, row `row`: light strokes on a dark background.
fn glyph(pixels: &mut [u8], size: Size, col: u32, row: u32, ch: u32) {
    let w = usize::from(size.width);
    for gy in 0..16 {
        for gx in 0..8 {
            let on = (2..14).contains(&gy) && gx < 7 && noise(ch * 131 + gy * 8 + gx) & 3 == 0;
            let (x, y) = (col * 8 + gx, row * 16 + gy);
            let i = (y as usize * w + x as usize) * 4;
            pixels[i..i + 4].copy_from_slice(if on { &[0xD0, 0xE0, 0xE0, 0] } else { &[0x30, 0x24, 0x20, 0] });
        }
    }
}

/// What the benchmark's X session shows: `rdhost-xanimate`'s scrolling gradient and moving bar.
fn animation(pixels: &mut [u8], size: Size, frame: u32) {
    let pattern = rdhost_xprobe::animate::Pattern::new(size.width, size.height);
    let mut drawn = vec![0u32; pattern.len()];
    pattern.draw(u64::from(frame), &mut drawn);
    for (p, v) in pixels.chunks_exact_mut(4).zip(drawn) {
        p.copy_from_slice(&v.to_le_bytes());
    }
}

/// A terminal: three lines rewritten per frame.
fn terminal(pixels: &mut [u8], size: Size, frame: u32) {
    let (cols, rows) = (u32::from(size.width) / 8, u32::from(size.height) / 16);
    for line in 0..3 {
        let row = (frame * 3 + line) % rows;
        for col in 0..cols {
            glyph(pixels, size, col, row, frame * 7919 + row * 131 + col);
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let frames: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(150);
    println!("{frames} frames per run; median ms per frame (colour conversion included), KiB per frame, average QP");
    for size in [Size::new(1280, 800), Size::new(1920, 1080)] {
        for (name, paint) in [("motion", motion as fn(&mut [u8], Size, u32)), ("animation", animation), ("terminal", terminal)] {
            let mut pixels = vec![0u8; size.area() * 4];
            terminal_background(&mut pixels, size);
            let mut encoder = H264Encoder::new(size).expect("an encoder");
            let (mut times, mut bytes, mut qp) = (Vec::new(), 0usize, 0u64);
            for frame in 0..frames {
                paint(&mut pixels, size, frame);
                let start = Instant::now();
                let unit = encoder.encode(&pixels).expect("a picture");
                times.push(start.elapsed());
                bytes += unit.annexb.len();
                qp += u64::from(unit.qp);
                assert_eq!(unit.key, frame == 0, "only the first picture is an IDR");
            }
            let mean_kib = bytes as f64 / f64::from(frames) / 1024.0;
            let mbits = bytes as f64 * 8.0 / f64::from(frames) * 30.0 / 1e6;
            println!(
                "h264 {}x{} {name:9}: {:6.2} ms ({:5.1} fps), {mean_kib:7.1} KiB ({mbits:.1} Mbit/s at 30 fps), QP {:.1}, bit rate set {:.1} Mbit/s",
                size.width,
                size.height,
                ms(median(times.clone())),
                1000.0 / ms(median(times)),
                qp as f64 / f64::from(frames),
                f64::from(encoder.bitrate()) / 1e6
            );
        }
    }
    // Colour conversion alone.
    for size in [Size::new(1280, 800), Size::new(1920, 1080)] {
        let mut pixels = vec![0u8; size.area() * 4];
        motion(&mut pixels, size, 1);
        let (w, h) = (usize::from(size.width), usize::from(size.height));
        let padded = (w.div_ceil(16) * 16, h.div_ceil(16) * 16);
        let mut yuv = vec![0u8; padded.0 * padded.1 * 3 / 2];
        let times: Vec<Duration> = (0..frames)
            .map(|_| {
                let start = Instant::now();
                rdhost_frames::bgrx_to_i420_bt709(&pixels, w * 4, (w, h), padded, &mut yuv);
                start.elapsed()
            })
            .collect();
        println!("BGRX -> I420 BT.709 {}x{}: {:.2} ms", size.width, size.height, ms(median(times)));
    }
    // Planar of text: what a typed line or a few glyphs cost.
    let size = Size::new(1920, 1080);
    let mut pixels = vec![0u8; size.area() * 4];
    terminal_background(&mut pixels, size);
    for row in 0..size.height as u32 / 16 {
        for col in 0..size.width as u32 / 8 {
            glyph(&mut pixels, size, col, row, row * 977 + col);
        }
    }
    for (label, rect) in [
        ("one glyph 8x16", Rect::new(80, 32, 8, 16)),
        ("a word 64x16", Rect::new(80, 32, 64, 16)),
        ("a line 1280x16", Rect::new(0, 48, 1280, 16)),
        ("256x256 of text (64k px)", Rect::new(0, 64, 256, 256)),
        ("a 1280x800 screen of text", Rect::new(0, 0, 1280, 800)),
    ] {
        let stride = usize::from(size.width) * 4;
        let mut region = Vec::new();
        for y in rect.y..rect.y + rect.height {
            let start = usize::from(y) * stride + usize::from(rect.x) * 4;
            region.extend_from_slice(&pixels[start..start + usize::from(rect.width) * 4]);
        }
        let update = CanvasUpdate { rect, pixels: region };
        let runs = frames.clamp(10, 200);
        let mut len = 0;
        let times: Vec<Duration> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let command = planar_command(&update).expect("planar");
                let elapsed = start.elapsed();
                if let rdhost_frames::GfxCommand::Planar { data, .. } = command {
                    len = data.len();
                }
                elapsed
            })
            .collect();
        let t = median(times);
        println!(
            "planar {label:26}: {:7.3} ms, {:7.1} KiB, {:.2} ms per 100k px",
            ms(t),
            len as f64 / 1024.0,
            ms(t) * 100_000.0 / rect.area() as f64
        );
    }
}

fn terminal_background(pixels: &mut [u8], _size: Size) {
    for p in pixels.chunks_exact_mut(4) {
        p.copy_from_slice(&[0x30, 0x24, 0x20, 0]);
    }
}
