//! How fast RemoteFX encodes and how large its frames are: whole frames of motion-like and
//! text-like content at 1280x800 and 1920x1080 through `Encoder` with `CodecProfile::RemoteFx`.
//!
//! Usage: cargo run --release -p rdhost-frames --example rfx_speed -- [--frames N] [--rlgr1]
//!
//! Prints per case the median wall time per frame, the CPU time per frame (all threads: the
//! encoder splits large updates across cores) and the encoded bytes per frame.

use std::time::{Duration, Instant};

use rdhost_desktop::{CanvasUpdate, Frame, Rect, Size};
use rdhost_frames::{CodecProfile, Encoder};

/// A diagonal colour gradient that scrolls a few palette steps per frame, with a bar in
/// contrasting colours moving across: every pixel changes every frame, like a video or a
/// full-screen animation (the kind of picture `rdhost-xanimate` draws in the benchmarks).
fn motion(width: u16, height: u16, frame: u32) -> Vec<u8> {
    let (w, h) = (usize::from(width), usize::from(height));
    let shift = frame as usize * 5;
    let bar = (frame as usize * 24) % w;
    let mut pixels = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            let i = (x + 3 * y + shift) % 1024;
            let (mut r, mut g, mut b) = ((i & 0xff) as u8, ((i >> 2) & 0xff) as u8, 0xff - (i & 0xff) as u8);
            if (bar..bar + 16).contains(&x) {
                (r, g, b) = (r ^ 0x80, g ^ 0x80, b ^ 0x80);
            }
            pixels.extend([b, g, r, 0xff]);
        }
    }
    pixels
}

/// A terminal full of text on a dark background, scrolled by one line per frame: glyph-like
/// strokes in 9x16 cells, flat areas between them.
fn text(width: u16, height: u16, frame: u32) -> Vec<u8> {
    let (w, h) = (usize::from(width), usize::from(height));
    let mut pixels = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        let line = y / 16 + frame as usize;
        let (cy, row) = (y % 16, line.wrapping_mul(2_654_435_761));
        for x in 0..w {
            let (cell, cx) = (x / 9, x % 9);
            // A per-cell "character": a hash picks which strokes it has.
            let ch = (cell.wrapping_mul(40_503) ^ row).rotate_left(7).wrapping_mul(2_246_822_519) >> 7;
            let blank = ch % 7 == 0 || cy < 3 || cy > 13 || cx > 6;
            let stroke = !blank
                && ((ch & 1 != 0 && cx == 1) || (ch & 2 != 0 && cx == 5) || (ch & 4 != 0 && cy == 4) || (ch & 8 != 0 && cy == 8) || (ch & 16 != 0 && cy == 12) || (ch & 32 != 0 && cx == cy % 7));
            let [r, g, b] = if stroke { [0xd8, 0xd8, 0xc8] } else { [0x1e, 0x22, 0x2a] };
            pixels.extend([b, g, r, 0xff]);
        }
    }
    pixels
}

/// The process's CPU time (user + system) so far, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn main() {
    let mut frames = 30u32;
    let mut rlgr3 = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--frames" => frames = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).expect("--frames N (N > 0)"),
            "--rlgr1" => rlgr3 = false,
            other => {
                eprintln!("unknown argument {other}; usage: rfx_speed [--frames N] [--rlgr1]");
                std::process::exit(2);
            }
        }
    }
    println!("RemoteFX ({}), {frames} frames per case, {} cores", if rlgr3 { "RLGR3" } else { "RLGR1" }, std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("{:<10} {:<7} {:>10} {:>12} {:>14}", "size", "content", "ms/frame", "cpu ms/frame", "bytes/frame");
    for (width, height) in [(1280u16, 800u16), (1920, 1080)] {
        for (name, content) in [("motion", motion as fn(u16, u16, u32) -> Vec<u8>), ("text", text)] {
            // Pictures made before timing: only the encoder is measured.
            let pictures: Vec<Vec<u8>> = (0..frames.min(8)).map(|n| content(width, height, n)).collect();
            let mut encoder = Encoder::new(CodecProfile::RemoteFx { codec_id: 3, rlgr3 }, 8 * 1024 * 1024);
            let (mut times, mut bytes) = (Vec::new(), 0usize);
            let cpu_start = cpu_time();
            for n in 0..frames {
                let frame = Frame {
                    size: Size::new(width, height),
                    resized: false,
                    regions: vec![CanvasUpdate { rect: Rect::new(0, 0, width, height), pixels: pictures[n as usize % pictures.len()].clone() }],
                };
                let start = Instant::now();
                let out = encoder.encode(&frame).expect("encode");
                times.push(start.elapsed());
                bytes += out.len();
            }
            let cpu = cpu_time() - cpu_start;
            times.sort();
            let median = times[times.len() / 2];
            println!(
                "{:<10} {:<7} {:>10.2} {:>12.2} {:>14}",
                format!("{width}x{height}"),
                name,
                median.as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e3 / f64::from(frames),
                bytes / frames as usize
            );
        }
    }
}
