//! Our RDP 6.0 planar bitmap encoder (MS-RDPEGDI 2.2.2.5.1, the ARGB form: no colour loss, no
//! chroma subsampling), written for speed: the BGRA rows are split into plane rows in reusable
//! buffers, the delta of each row against the one above is a plain loop the compiler vectorises,
//! and the RLE looks for runs eight bytes at a time. A row equal to the one above (a solid area,
//! the common case) is one copy of the precomputed encoding of a zero row.
//!
//! The stream: a format header byte, then the planes (alpha when there is one, red, green,
//! blue), each either raw bytes or RLE segments scanline by scanline; a raw stream ends with one
//! pad byte.

use std::fmt;

/// The format header bit "RLE" (MS-RDPEGDI 2.2.2.5.1).
const HEADER_RLE: u8 = 0x10;
/// The format header bit "NA": there is no alpha plane.
const HEADER_NO_ALPHA: u8 = 0x20;

/// The most raw bytes (cRawBytes) and the most run bytes (nRunLength) one control byte takes.
const MAX_FIELD: usize = 15;
/// The longest run of one control byte: nRunLength 2 means a run of 32 + cRawBytes.
const MAX_LONG_RUN: usize = 47;

/// Pixels to encode: `height` rows of `width` BGRA (or BGRX) pixels, `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct PlanarSource<'a> {
    pub pixels: &'a [u8],
    pub width: usize,
    pub height: usize,
    /// Bytes from one row to the next, at least `width * 4`.
    pub stride: usize,
    /// Send the last row first (Bitmap Updates are bottom-up; EGFX surfaces are top-down).
    pub bottom_up: bool,
    /// The bitmap's width, at least `width`: the columns past `width` repeat each row's last
    /// pixel (cheap to compress; clients draw none of them).
    pub padded_width: usize,
}

/// How the planes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanarCompression {
    /// Delta + RLE: what Bitmap Updates must use (rdesktop takes nothing else).
    Rle,
    /// Raw planes.
    Raw,
    /// RLE unless raw planes are no larger (noise), then raw.
    Smallest,
}

/// A source whose sizes do not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanarSourceError(String);

impl fmt::Display for PlanarSourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanarSourceError {}

/// A planar encoder; it keeps its row buffers between bitmaps of the same width.
#[derive(Debug, Default)]
pub struct PlanarEncoder {
    /// The current and previous row of each colour plane, R, G, B (`padded_width` each).
    cur: [Vec<u8>; 3],
    prev: [Vec<u8>; 3],
    /// One row's deltas.
    delta: Vec<u8>,
    /// One row's RLE segments, worst case.
    line: Vec<u8>,
    /// The RLE of a row of zeros (a row equal to the one above) for the current width.
    zero_row: Vec<u8>,
    /// The width `zero_row` is for.
    zero_row_width: usize,
    /// The green and blue planes while the red one goes straight to the output.
    green: Vec<u8>,
    blue: Vec<u8>,
}

impl PlanarEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the planar stream of `src` to `out`; `alpha`: with an opaque alpha plane (the NA
    /// header bit clear). Returns the stream's length.
    pub fn encode(&mut self, src: &PlanarSource<'_>, alpha: bool, compression: PlanarCompression, out: &mut Vec<u8>) -> Result<usize, PlanarSourceError> {
        check(src)?;
        let start = out.len();
        let raw_len = 1 + src.padded_width * src.height * (3 + usize::from(alpha)) + 1;
        match compression {
            PlanarCompression::Raw => self.raw(src, alpha, out),
            PlanarCompression::Rle => {
                self.rle(src, alpha, usize::MAX, out);
            }
            PlanarCompression::Smallest => {
                // Equal sizes go as RLE, like before; the limit stops early on noise.
                if !self.rle(src, alpha, raw_len, out) {
                    out.truncate(start);
                    self.raw(src, alpha, out);
                }
            }
        }
        Ok(out.len() - start)
    }

    /// Raw planes and the pad byte.
    fn raw(&mut self, src: &PlanarSource<'_>, alpha: bool, out: &mut Vec<u8>) {
        let (w, h) = (src.padded_width, src.height);
        let plane = w * h;
        out.push(if alpha { 0 } else { HEADER_NO_ALPHA });
        if alpha {
            out.resize(out.len() + plane, 0xFF);
        }
        let base = out.len();
        out.resize(base + 3 * plane + 1, 0);
        let (r, rest) = out[base..].split_at_mut(plane);
        let (g, rest) = rest.split_at_mut(plane);
        let b = &mut rest[..plane];
        for y in 0..h {
            let row = source_row(src, y);
            let at = y * w;
            split_row(row, &mut r[at..at + w], &mut g[at..at + w], &mut b[at..at + w]);
        }
        // The pad byte is the last zero of the resize.
    }

    /// Delta + RLE planes; false (and `out` partly written) once the stream would exceed `limit`.
    fn rle(&mut self, src: &PlanarSource<'_>, alpha: bool, limit: usize, out: &mut Vec<u8>) -> bool {
        let (w, h) = (src.padded_width, src.height);
        self.prepare(w);
        let start = out.len();
        out.push(if alpha { HEADER_RLE } else { HEADER_RLE | HEADER_NO_ALPHA });
        if alpha {
            // Opaque: a first row of 0xFF, then rows equal to the one above.
            self.delta.fill(0xFF);
            let n = rle_row(&self.delta, &mut self.line);
            out.extend_from_slice(&self.line[..n]);
            for _ in 1..h {
                out.extend_from_slice(&self.zero_row);
            }
        }
        // Room for the worst case up front (untouched memory costs nothing): growing the
        // vectors as we go would copy noise's megabytes several times.
        let row_max = self.line.len();
        out.reserve(row_max * h * (3 + usize::from(alpha)));
        self.green.clear();
        self.blue.clear();
        self.green.reserve(row_max * h);
        self.blue.reserve(row_max * h);
        let mut above: Option<&[u8]> = None;
        for y in 0..h {
            let row = source_row(src, y);
            if above.is_some_and(|a| a == row) {
                // Every plane's deltas are zero.
                out.extend_from_slice(&self.zero_row);
                self.green.extend_from_slice(&self.zero_row);
                self.blue.extend_from_slice(&self.zero_row);
            } else {
                let [r, g, b] = &mut self.cur;
                split_row(row, r, g, b);
                let first = y == 0;
                for (p, plane_out) in [&mut *out, &mut self.green, &mut self.blue].into_iter().enumerate() {
                    let (cur, prev) = (&self.cur[p], &self.prev[p]);
                    if first {
                        let n = rle_row(cur, &mut self.line);
                        plane_out.extend_from_slice(&self.line[..n]);
                    } else if cur == prev {
                        plane_out.extend_from_slice(&self.zero_row);
                    } else {
                        delta_row(cur, prev, &mut self.delta);
                        let n = rle_row(&self.delta, &mut self.line);
                        plane_out.extend_from_slice(&self.line[..n]);
                    }
                }
                std::mem::swap(&mut self.cur, &mut self.prev);
            }
            above = Some(row);
            if out.len() - start + self.green.len() + self.blue.len() > limit {
                return false;
            }
        }
        out.extend_from_slice(&self.green);
        out.extend_from_slice(&self.blue);
        true
    }

    /// Sizes the row buffers for rows `w` wide.
    fn prepare(&mut self, w: usize) {
        for v in self.cur.iter_mut().chain(self.prev.iter_mut()) {
            v.resize(w, 0);
        }
        self.delta.resize(w, 0);
        // Raw bytes cost 16 per 15; runs and their control bytes never cost more than that.
        self.line.resize(w + w.div_ceil(MAX_FIELD) + 8, 0);
        if self.zero_row_width != w || self.zero_row.is_empty() {
            self.delta.fill(0);
            let n = rle_row(&self.delta, &mut self.line);
            self.zero_row.clear();
            self.zero_row.extend_from_slice(&self.line[..n]);
            self.zero_row_width = w;
        }
    }
}

fn check(src: &PlanarSource<'_>) -> Result<(), PlanarSourceError> {
    let err = |what: String| Err(PlanarSourceError(what));
    if src.width == 0 || src.height == 0 {
        return err(format!("an empty {}x{} bitmap", src.width, src.height));
    }
    if src.padded_width < src.width {
        return err(format!("padded width {} under width {}", src.padded_width, src.width));
    }
    let row = src.width.checked_mul(4);
    let need = row.and_then(|row| src.stride.checked_mul(src.height - 1)?.checked_add(row));
    match (row, need) {
        (Some(row), Some(need)) if src.stride >= row && src.pixels.len() >= need => Ok(()),
        _ => err(format!("{} bytes are not {} rows of {} pixels {} bytes apart", src.pixels.len(), src.height, src.width, src.stride)),
    }
}

/// Row `y` of the bitmap (in sending order): `width` BGRA pixels.
fn source_row<'a>(src: &PlanarSource<'a>, y: usize) -> &'a [u8] {
    let sy = if src.bottom_up { src.height - 1 - y } else { y };
    let at = sy * src.stride;
    &src.pixels[at..at + src.width * 4]
}

/// One BGRA row into red, green and blue rows, padded with the last pixel.
fn split_row(row: &[u8], r: &mut [u8], g: &mut [u8], b: &mut [u8]) {
    let w = row.len() / 4;
    // Sixteen pixels at a time (a plain per-pixel loop stays byte by byte).
    let (rw, gw, bw) = (&mut r[..w], &mut g[..w], &mut b[..w]);
    let whole = w / 16 * 16;
    for (i, px) in row[..whole * 4].chunks_exact(64).enumerate() {
        let at = i * 16..i * 16 + 16;
        split16(px.try_into().expect("64 bytes"), (&mut rw[at.clone()]).try_into().expect("16"), (&mut gw[at.clone()]).try_into().expect("16"), (&mut bw[at]).try_into().expect("16"));
    }
    for (k, px) in row.chunks_exact(4).enumerate().skip(whole) {
        bw[k] = px[0];
        gw[k] = px[1];
        rw[k] = px[2];
    }
    let last = &row[row.len() - 4..];
    r[w..].fill(last[2]);
    g[w..].fill(last[1]);
    b[w..].fill(last[0]);
}

/// Sixteen BGRA pixels into their red, green and blue bytes: SSE2 (every x86-64 has it) masks
/// and shifts each channel into 32-bit lanes and packs them down to bytes.
#[cfg(target_arch = "x86_64")]
fn split16(px: &[u8; 64], r: &mut [u8; 16], g: &mut [u8; 16], b: &mut [u8; 16]) {
    use std::arch::x86_64::{__m128i, _mm_and_si128, _mm_cvtsi32_si128, _mm_loadu_si128, _mm_packs_epi32, _mm_packus_epi16, _mm_set1_epi32, _mm_srl_epi32, _mm_storeu_si128};
    // SAFETY: SSE2 is in the x86-64 baseline; the loads read 64 bytes of `px` and the stores
    // write 16 bytes of each output array, unaligned accesses allowed.
    unsafe {
        let p = px.as_ptr().cast::<__m128i>();
        let v = [_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)), _mm_loadu_si128(p.add(2)), _mm_loadu_si128(p.add(3))];
        let mask = _mm_set1_epi32(0xFF);
        for (shift, out) in [(0, b), (8, g), (16, r)] {
            let count = _mm_cvtsi32_si128(shift);
            let c = v.map(|x| _mm_and_si128(_mm_srl_epi32(x, count), mask));
            // Lanes hold 0..=255, so the saturating packs keep them.
            let bytes = _mm_packus_epi16(_mm_packs_epi32(c[0], c[1]), _mm_packs_epi32(c[2], c[3]));
            _mm_storeu_si128(out.as_mut_ptr().cast::<__m128i>(), bytes);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn split16(px: &[u8; 64], r: &mut [u8; 16], g: &mut [u8; 16], b: &mut [u8; 16]) {
    for k in 0..16 {
        b[k] = px[4 * k];
        g[k] = px[4 * k + 1];
        r[k] = px[4 * k + 2];
    }
}

/// The deltas of a row against the one above (MS-RDPEGDI 3.1.9.2.1): the difference as a
/// signed byte, stored as 2d for d >= 0 and -2d - 1 for d < 0 (so small changes either way are
/// small values).
fn delta_row(cur: &[u8], prev: &[u8], out: &mut [u8]) {
    for ((o, &c), &p) in out.iter_mut().zip(cur).zip(prev) {
        let d = c.wrapping_sub(p);
        *o = (d << 1) ^ ((d as i8 >> 7) as u8);
    }
}

/// One row's RLE segments (MS-RDPEGDI 2.2.2.5.1.2) into `out`, which has room for the worst
/// case; returns their length. A run repeats the last byte before it in the row (0 at its start).
fn rle_row(d: &[u8], out: &mut [u8]) -> usize {
    let n = d.len();
    let mut o = 0;
    let mut raw_start = 0;
    // A row starting with zeros (deltas of an unchanged area): a run needs no raw byte.
    if n >= 3 && d[0] == 0 && d[1] == 0 && d[2] == 0 {
        let end = run_end(d, 3, 0);
        emit_run(out, &mut o, end);
        raw_start = end;
    }
    while let Some(k) = find_run(d, raw_start) {
        // d[k..end] is one value; the first goes raw, the rest as the run repeating it.
        let end = run_end(d, k + 4, d[k]);
        emit_segment(out, &mut o, &d[raw_start..=k], end - k - 1);
        raw_start = end;
    }
    if raw_start < n {
        emit_segment(out, &mut o, &d[raw_start..], 0);
    }
    o
}

fn load(d: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(d[at..at + 8].try_into().expect("eight bytes"))
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The first `k >= from` where four equal bytes start (a run of three after a raw byte: shorter
/// runs save nothing, nRunLength 1 and 2 mean long runs).
fn find_run(d: &[u8], from: usize) -> Option<usize> {
    let mut k = from;
    while k + 9 <= d.len() {
        // Byte m of `z` is zero where d[k + m] == d[k + m + 1].
        let z = load(d, k) ^ load(d, k + 1);
        let eq = !(((z & LOW7) + LOW7) | z) & HIGH;
        // Four equal bytes from k + m, for m in 0..6 (where all three flags are in the word).
        let four = eq & (eq >> 8) & (eq >> 16) & 0x0000_8080_8080_8080;
        if four != 0 {
            return Some(k + four.trailing_zeros() as usize / 8);
        }
        k += 6;
    }
    while k + 4 <= d.len() {
        if d[k] == d[k + 1] && d[k] == d[k + 2] && d[k] == d[k + 3] {
            return Some(k);
        }
        k += 1;
    }
    None
}

/// The end of the run of `v` that covers at least `d[..from]`'s tail.
fn run_end(d: &[u8], from: usize, v: u8) -> usize {
    let pattern = u64::from(v) * 0x0101_0101_0101_0101;
    let mut j = from;
    while j + 8 <= d.len() {
        let x = load(d, j) ^ pattern;
        if x != 0 {
            return j + x.trailing_zeros() as usize / 8;
        }
        j += 8;
    }
    while j < d.len() && d[j] == v {
        j += 1;
    }
    j
}

/// Raw bytes (at least one) followed by a run of `run` repeats of the last (0 or at least 3).
fn emit_segment(out: &mut [u8], o: &mut usize, mut raw: &[u8], run: usize) {
    debug_assert!(!raw.is_empty() && run != 1 && run != 2);
    while raw.len() > MAX_FIELD {
        out[*o] = (MAX_FIELD as u8) << 4;
        out[*o + 1..*o + 1 + MAX_FIELD].copy_from_slice(&raw[..MAX_FIELD]);
        *o += 1 + MAX_FIELD;
        raw = &raw[MAX_FIELD..];
    }
    // The run's first part rides on the raw bytes' control byte; never leave 1 or 2 over.
    let mut attach = run.min(MAX_FIELD);
    if matches!(run - attach, 1 | 2) {
        attach = run - 3;
    }
    out[*o] = ((raw.len() as u8) << 4) | attach as u8;
    out[*o + 1..*o + 1 + raw.len()].copy_from_slice(raw);
    *o += 1 + raw.len();
    emit_run(out, o, run - attach);
}

/// A run (0 or at least 3) of the last byte, in control bytes without raw bytes.
fn emit_run(out: &mut [u8], o: &mut usize, mut run: usize) {
    debug_assert!(run != 1 && run != 2);
    while run > 0 {
        if run <= MAX_FIELD {
            out[*o] = run as u8;
            *o += 1;
            return;
        }
        let mut c = run.min(MAX_LONG_RUN);
        if matches!(run - c, 1 | 2) {
            c = run - 3;
        }
        // nRunLength 1: 16 + cRawBytes; nRunLength 2: 32 + cRawBytes.
        out[*o] = if c < 32 { ((c - 16) as u8) << 4 | 1 } else { ((c - 32) as u8) << 4 | 2 };
        *o += 1;
        run -= c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_graphics::rdp6::BitmapStreamDecoder;

    /// BGRA pixels `w`x`h`, `stride` bytes a row, from `colour(x, y)` as RGB; the X byte varies
    /// (it must not matter).
    fn picture(w: usize, h: usize, stride: usize, colour: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
        let mut pixels = vec![0x5A; stride * h];
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] = colour(x, y);
                let at = y * stride + x * 4;
                pixels[at..at + 4].copy_from_slice(&[b, g, r, (x * 7 + y) as u8]);
            }
        }
        pixels
    }

    fn hash(x: usize, y: usize, seed: usize) -> u32 {
        let mut v = (x as u32).wrapping_mul(2_654_435_761) ^ (y as u32).wrapping_mul(40_503).rotate_left(13) ^ (seed as u32).wrapping_mul(0x9E37_79B9);
        v ^= v >> 15;
        v = v.wrapping_mul(2_246_822_519);
        v ^= v >> 13;
        v
    }

    fn solid(_: usize, _: usize) -> [u8; 3] {
        [0x20, 0x24, 0x30]
    }

    fn text_like(x: usize, y: usize) -> [u8; 3] {
        let glyph = (x / 9) % 3 != 2 && (y / 16).is_multiple_of(2) && (x * 7 + y * 3) % 11 < 4;
        if glyph { [0xE0, 0xE0, 0xD0] } else { [0x20, 0x24, 0x30] }
    }

    fn noise(x: usize, y: usize) -> [u8; 3] {
        let v = hash(x, y, 1);
        [v as u8, (v >> 8) as u8, (v >> 16) as u8]
    }

    fn gradient(x: usize, y: usize) -> [u8; 3] {
        [(x * 3) as u8, (y * 5) as u8, (x + y) as u8]
    }

    /// Mostly flat with rare changes: runs of every length, ending anywhere.
    fn sparse(x: usize, y: usize) -> [u8; 3] {
        let v = hash(x, y, 2);
        if v.is_multiple_of(13) { [v as u8, (v >> 8) as u8, 0] } else if v.is_multiple_of(29) { [0, 0, 0] } else { [9, 9, 9] }
    }

    /// What a client sees: the padded bitmap in sending order, RGB.
    fn expected(src: &PlanarSource<'_>) -> Vec<u8> {
        let mut rgb = Vec::new();
        for y in 0..src.height {
            let row = source_row(src, y);
            for x in 0..src.padded_width {
                let p = &row[x.min(src.width - 1) * 4..][..4];
                rgb.extend([p[2], p[1], p[0]]);
            }
        }
        rgb
    }

    /// A strict decoder of ours for what IronRDP's skips: every plane (alpha included) must
    /// decode to exactly `w * h` bytes, no segment crossing a row; returns the planes.
    fn planes(stream: &[u8], w: usize, h: usize) -> Vec<Vec<u8>> {
        let header = stream[0];
        let count = if header & HEADER_NO_ALPHA != 0 { 3 } else { 4 };
        let mut at = 1;
        let mut planes = Vec::new();
        for _ in 0..count {
            let mut plane = vec![0u8; w * h];
            if header & HEADER_RLE == 0 {
                plane.copy_from_slice(&stream[at..at + w * h]);
                at += w * h;
            } else {
                for y in 0..h {
                    let (mut x, mut last) = (0, 0u8);
                    while x < w {
                        let control = stream[at];
                        at += 1;
                        let (mut raw, mut run) = (usize::from(control >> 4), usize::from(control & 15));
                        match run {
                            1 => (run, raw) = (16 + raw, 0),
                            2 => (run, raw) = (32 + raw, 0),
                            _ => {}
                        }
                        assert!(raw + run > 0, "an empty segment");
                        assert!(x + raw + run <= w, "a segment crosses a row");
                        for _ in 0..raw {
                            last = stream[at];
                            at += 1;
                            plane[y * w + x] = last;
                            x += 1;
                        }
                        for _ in 0..run {
                            plane[y * w + x] = last;
                            x += 1;
                        }
                    }
                    if y > 0 {
                        for x in 0..w {
                            let d = plane[y * w + x];
                            let signed = if d & 1 == 1 { 0u8.wrapping_sub((d >> 1) + 1) } else { d >> 1 };
                            plane[y * w + x] = plane[(y - 1) * w + x].wrapping_add(signed);
                        }
                    }
                }
            }
            planes.push(plane);
        }
        let pad = usize::from(header & HEADER_RLE == 0);
        assert_eq!(at + pad, stream.len(), "the stream's length");
        planes
    }

    fn round_trip(src: &PlanarSource<'_>, alpha: bool, compression: PlanarCompression) -> Vec<u8> {
        let mut out = vec![0xEE]; // what is already in the output stays
        let len = PlanarEncoder::new().encode(src, alpha, compression, &mut out).unwrap();
        assert_eq!(out[0], 0xEE);
        let stream = &out[1..];
        assert_eq!(len, stream.len());
        let w = src.padded_width;
        let want = expected(src);
        let mut decoded = Vec::new();
        BitmapStreamDecoder::default().decode_bitmap_stream_to_rgb24(stream, &mut decoded, w, src.height).unwrap();
        assert!(decoded == want, "IronRDP decodes other pixels ({}x{} in {w})", src.width, src.height);
        let planes = planes(stream, w, src.height);
        assert_eq!(planes.len(), 3 + usize::from(alpha));
        if alpha {
            assert!(planes[0].iter().all(|&a| a == 0xFF), "opaque");
        }
        let [r, g, b] = [&planes[planes.len() - 3], &planes[planes.len() - 2], &planes[planes.len() - 1]];
        let ours: Vec<u8> = (0..w * src.height).flat_map(|i| [r[i], g[i], b[i]]).collect();
        assert!(ours == want, "our strict decoder decodes other pixels");
        stream.to_vec()
    }

    /// The length of the RLE of a zero row `w` wide: all runs.
    fn zero_row_len(w: usize) -> usize {
        match w {
            0 => 0,
            1 | 2 => 1 + w,
            // Runs from the row's start value 0: one control byte per 47 (the split avoids ending
            // on 1 or 2, which no run takes, at no cost in bytes).
            _ if w <= MAX_FIELD => 1,
            _ => w.div_ceil(MAX_LONG_RUN),
        }
    }

    type Colour = fn(usize, usize) -> [u8; 3];
    const PICTURES: [(&str, Colour); 5] = [("solid", solid), ("text", text_like), ("noise", noise), ("gradient", gradient), ("sparse", sparse)];

    #[test]
    fn small_bitmaps_round_trip() {
        for (_name, colour) in PICTURES {
            for w in 1..=9 {
                for h in [1, 2, 3, 5, 7] {
                    let stride = w * 4 + 8;
                    let pixels = picture(w, h, stride, colour);
                    for padded_width in [w, w.div_ceil(4) * 4, w + 5] {
                        for bottom_up in [false, true] {
                            let src = PlanarSource { pixels: &pixels, width: w, height: h, stride, bottom_up, padded_width };
                            for alpha in [false, true] {
                                for compression in [PlanarCompression::Rle, PlanarCompression::Raw, PlanarCompression::Smallest] {
                                    round_trip(&src, alpha, compression);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn large_bitmaps_round_trip() {
        for (name, colour) in PICTURES {
            for (w, h) in [(300, 31), (1024, 9), (97, 65)] {
                let pixels = picture(w, h, w * 4, colour);
                for bottom_up in [false, true] {
                    let src = PlanarSource { pixels: &pixels, width: w, height: h, stride: w * 4, bottom_up, padded_width: w.div_ceil(4) * 4 };
                    for alpha in [false, true] {
                        let rle = round_trip(&src, alpha, PlanarCompression::Rle);
                        let smallest = round_trip(&src, alpha, PlanarCompression::Smallest);
                        assert!(smallest.len() <= rle.len(), "{name}");
                        let raw = 2 + src.padded_width * h * (3 + usize::from(alpha));
                        assert_eq!(smallest[0] & HEADER_RLE != 0, rle.len() <= raw, "{name}: {} bytes", rle.len());
                        // Noise without an (all-run) alpha plane is where raw wins.
                        assert_eq!(rle.len() > raw, name == "noise" && !alpha, "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_run_length_round_trips() {
        // A row of 200 with a run of n of one value at every offset: the split of long runs
        // into control bytes (never 1 or 2 left over) for every length.
        for n in 0..=150 {
            for offset in [0, 1, 2, 3, 5, 17] {
                let colour = move |x: usize, y: usize| {
                    if (offset..offset + n).contains(&x) { [7, 7, 7] } else { [(x * 31 + y) as u8, (x * 17) as u8, 0] }
                };
                let pixels = picture(200, 2, 800, colour);
                let src = PlanarSource { pixels: &pixels, width: 200, height: 2, stride: 800, bottom_up: false, padded_width: 200 };
                round_trip(&src, false, PlanarCompression::Rle);
            }
            let zeros = vec![0u8; n + 1];
            let mut line = vec![0u8; 2 * n + 16];
            let len = rle_row(&zeros, &mut line);
            assert_eq!(len, zero_row_len(n + 1), "a zero row's length for {}", n + 1);
        }
    }

    #[test]
    fn a_solid_colour_is_a_few_bytes_a_row() {
        let pixels = picture(1024, 64, 4096, solid);
        let src = PlanarSource { pixels: &pixels, width: 1024, height: 64, stride: 4096, bottom_up: true, padded_width: 1024 };
        let stream = round_trip(&src, false, PlanarCompression::Rle);
        // 1024 / 47 control bytes a row and plane.
        assert!(stream.len() <= 1 + 3 * 64 * 22 + 16, "{} bytes", stream.len());
    }

    #[test]
    fn bad_sources_are_errors() {
        let pixels = vec![0u8; 4 * 4 * 4];
        let ok = PlanarSource { pixels: &pixels, width: 4, height: 4, stride: 16, bottom_up: false, padded_width: 4 };
        let mut out = Vec::new();
        let mut enc = PlanarEncoder::new();
        assert!(enc.encode(&ok, false, PlanarCompression::Rle, &mut out).is_ok());
        for bad in [
            PlanarSource { width: 0, ..ok },
            PlanarSource { height: 5, ..ok },
            PlanarSource { stride: 12, ..ok },
            PlanarSource { padded_width: 3, ..ok },
        ] {
            assert!(enc.encode(&bad, false, PlanarCompression::Rle, &mut out).is_err());
        }
    }
}
