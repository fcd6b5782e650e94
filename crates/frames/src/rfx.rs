//! RemoteFX (MS-RDPRFX) image-mode messages: a rectangle's pixels into one encoded message.
//!
//! The per-tile pipeline (MS-RDPRFX 3.1.8.1) is ours rather than ironrdp-graphics'
//! `to_64x64_ycbcr_tile` + `rfx_encode_component`, for speed and size (measured with
//! `examples/rfx_speed.rs`):
//! - colour conversion, DWT and quantisation are plain loops over rows that the compiler
//!   vectorises, with scratch buffers reused from tile to tile;
//! - RLGR writes through a 64-bit bit accumulator instead of a bit-slice per bit;
//! - quantisation rounds to nearest (ironrdp-graphics shifts, which floors): small negative
//!   coefficients become 0 instead of -1, so the high sub-bands are runs of zeros, which RLGR
//!   codes in a few bits; and the reconstruction error is centred instead of biased;
//! - chroma is quantised one step coarser than luma (the table xrdp uses for its RemoteFX
//!   progressive sessions); the eye sees colour detail less;
//! - partial tiles at a rectangle's right and bottom edges repeat their last column and row
//!   instead of black padding, so the padding adds no edge to code.
//!
//! The DWT is bit-exact with ironrdp-graphics' and RLGR decodes with its decoder (tests below).

use ironrdp_core::{Encode as _, WriteCursor};
use ironrdp_pdu::codecs::rfx::{
    self, Block, ChannelsPdu, CodecChannel, CodecVersionsPdu, ContextPdu, EntropyAlgorithm, FrameBeginPdu,
    FrameEndPdu, OperatingMode, Quant, RegionPdu, RfxChannel, RfxRectangle, SyncPdu, TileSetPdu,
};
use rdhost_desktop::canvas::BYTES_PER_PIXEL;
use rdhost_desktop::{Rect, Size};

use crate::encode::EncodeError;
use crate::tiles::{PixelsRef, solid_colour};

/// Tile edge and coefficients per tile component.
const TILE: usize = 64;
const TILE_COEFFS: usize = TILE * TILE;
/// Updates with fewer tiles per core than this are encoded on the calling thread.
const PARALLEL_MIN_TILES: usize = 16;

/// Luma quantisation: MS-RDPRFX's (and xrdp's) usual table, LL3 finest, HH1 coarsest.
const LUMA_QUANT: Quant = Quant { ll3: 6, lh3: 6, hl3: 6, hh3: 6, lh2: 7, hl2: 7, hh2: 8, lh1: 8, hl1: 8, hh1: 9 };
/// Chroma: one step coarser except the LL3 band (xrdp's chroma table for RemoteFX progressive).
const CHROMA_QUANT: Quant = Quant { ll3: 6, lh3: 7, hl3: 7, hh3: 7, lh2: 8, hl2: 8, hh2: 8, lh1: 9, hl1: 9, hh1: 9 };
/// Indices into the tileset's quantisation tables.
const LUMA: u8 = 0;
const CHROMA: u8 = 1;

fn codec_err(what: &'static str) -> impl Fn(ironrdp_core::EncodeError) -> EncodeError {
    move |e| EncodeError::Codec { what, detail: e.to_string() }
}

/// One RemoteFX image-mode message for the rectangle (tiles relative to its top-left corner).
pub(crate) fn encode_rfx(region: PixelsRef<'_>, desktop: Size, rlgr3: bool, frame_index: u32) -> Result<Vec<u8>, EncodeError> {
    let entropy_algorithm = if rlgr3 { EntropyAlgorithm::Rlgr3 } else { EntropyAlgorithm::Rlgr1 };
    let (width, height) = (usize::from(region.rect.width), usize::from(region.rect.height));
    let stride = region.stride;
    if !region.is_whole() {
        return Err(EncodeError::Codec {
            what: "remotefx",
            detail: format!("a {width}x{height} rectangle has {} bytes of pixels {stride} bytes a row, too few", region.data.len()),
        });
    }
    let tiles_x = width.div_ceil(TILE);
    let tiles_y = height.div_ceil(TILE);
    let tile_count = tiles_x * tiles_y;

    // Each tile's three components are coded into its own buffer; the tiles then borrow them.
    let mut coded: Vec<CodedTile> = (0..tile_count).map(|_| CodedTile::default()).collect();
    let encode_range = |first: usize, tiles: &mut [CodedTile]| {
        let mut scratch = Scratch::new();
        let mut solids = SolidTiles::default();
        for (i, tile) in tiles.iter_mut().enumerate() {
            let index = first + i;
            let (x, y) = ((index % tiles_x) * TILE, (index / tiles_x) * TILE);
            let (tw, th) = ((width - x).min(TILE), (height - y).min(TILE));
            let input = &region.data[y * stride + x * BYTES_PER_PIXEL..];
            let at = Rect::new(region.rect.x + x as u16, region.rect.y + y as u16, tw as u16, th as u16);
            match solid_colour(region, at) {
                Some(colour) => solids.code(colour, tile, |tile| encode_tile(input, stride, tw, th, entropy_algorithm, &mut scratch, tile)),
                None => encode_tile(input, stride, tw, th, entropy_algorithm, &mut scratch, tile),
            }
        }
    };
    // Tiles are independent: a large update is split across the cores (a full 1920x1080 frame
    // is 510 tiles); small ones (a typed character) are not worth a thread.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(tile_count / PARALLEL_MIN_TILES).max(1);
    if threads == 1 {
        encode_range(0, &mut coded);
    } else {
        let per = tile_count.div_ceil(threads);
        // The calling thread takes the first share itself: one thread fewer to start a frame.
        let panicked = std::thread::scope(|scope| {
            let mut shares = coded.chunks_mut(per);
            let first = shares.next().unwrap_or_default();
            let workers: Vec<_> = shares.enumerate().map(|(n, tiles)| scope.spawn(move || encode_range((n + 1) * per, tiles))).collect();
            encode_range(0, first);
            workers.into_iter().map(|w| w.join()).any(|r| r.is_err())
        });
        if panicked {
            return Err(EncodeError::Codec { what: "remotefx", detail: "an encoding thread panicked".into() });
        }
    }
    let tiles: Vec<rfx::Tile<'_>> = coded
        .iter()
        .enumerate()
        .map(|(index, tile)| {
            let (cb_start, cr_start) = (tile.lengths[0], tile.lengths[0] + tile.lengths[1]);
            rfx::Tile {
                y_quant_index: LUMA,
                cb_quant_index: CHROMA,
                cr_quant_index: CHROMA,
                x: (index % tiles_x) as u16,
                y: (index / tiles_x) as u16,
                y_data: &tile.bytes[..cb_start],
                cb_data: &tile.bytes[cb_start..cr_start],
                cr_data: &tile.bytes[cr_start..],
            }
        })
        .collect();

    let blocks = [
        Block::Sync(SyncPdu),
        Block::CodecChannel(CodecChannel::Context(ContextPdu { flags: OperatingMode::IMAGE_MODE, entropy_algorithm })),
        Block::Channels(ChannelsPdu(vec![RfxChannel { width: desktop.width as i16, height: desktop.height as i16 }])),
        Block::CodecVersions(CodecVersionsPdu),
        Block::CodecChannel(CodecChannel::FrameBegin(FrameBeginPdu { index: frame_index, number_of_regions: 1 })),
        Block::CodecChannel(CodecChannel::Region(RegionPdu {
            rectangles: vec![RfxRectangle { x: 0, y: 0, width: region.rect.width, height: region.rect.height }],
        })),
        Block::CodecChannel(CodecChannel::TileSet(TileSetPdu { entropy_algorithm, quants: vec![LUMA_QUANT, CHROMA_QUANT], tiles })),
        Block::CodecChannel(CodecChannel::FrameEnd(FrameEndPdu)),
    ];
    let size: usize = blocks.iter().map(|b| b.size()).sum();
    let mut out = vec![0u8; size];
    let mut cursor = WriteCursor::new(&mut out);
    for block in &blocks {
        block.encode(&mut cursor).map_err(codec_err("remotefx message"))?;
    }
    Ok(out)
}

/// Coded single-colour tiles of one encode, by colour. A tile of one colour codes the same
/// whatever its size (short tiles repeat their edge), so flat areas (backgrounds, a window
/// filled with one colour) are coded once per colour and copied: a 1024x768 solid-colour
/// change costs about a tenth of coding its 192 tiles.
#[derive(Default)]
struct SolidTiles {
    coded: Vec<([u8; 4], CodedTile)>,
}

impl SolidTiles {
    /// A handful of colours per encode is what flat screens have; beyond that, code afresh.
    const MAX: usize = 8;

    fn code(&mut self, colour: [u8; 4], tile: &mut CodedTile, encode: impl FnOnce(&mut CodedTile)) {
        if let Some((_, coded)) = self.coded.iter().find(|(c, _)| *c == colour) {
            tile.bytes.clear();
            tile.bytes.extend_from_slice(&coded.bytes);
            tile.lengths = coded.lengths;
            return;
        }
        encode(tile);
        if self.coded.len() < Self::MAX {
            self.coded.push((colour, tile.clone()));
        }
    }
}

/// One tile's coded components, Y then Cb then Cr, and the length of each.
#[derive(Default, Clone)]
struct CodedTile {
    bytes: Vec<u8>,
    lengths: [usize; 3],
}

/// Per-thread working memory for one tile at a time.
struct Scratch {
    planes: [[i16; TILE_COEFFS]; 3],
    temp: [i16; TILE_COEFFS],
}

impl Scratch {
    fn new() -> Box<Scratch> {
        Box::new(Scratch { planes: [[0; TILE_COEFFS]; 3], temp: [0; TILE_COEFFS] })
    }
}

/// Encode one tile: `input` starts at its top-left pixel, rows `stride` bytes apart, `tw`x`th`
/// real pixels (1..=64 each).
fn encode_tile(input: &[u8], stride: usize, tw: usize, th: usize, mode: EntropyAlgorithm, scratch: &mut Scratch, out: &mut CodedTile) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        return unsafe { encode_tile_avx2(input, stride, tw, th, mode, scratch, out) };
    }
    encode_tile_body::<false>(input, stride, tw, th, mode, scratch, out);
}

/// [`encode_tile`] compiled for AVX2 (the build's baseline is SSE2): the colour conversion, DWT
/// and quantisation, all inlined here, vectorise twice as wide, and the colour conversion and
/// horizontal DWT pass use the hand-written kernels of `rfx_kernels`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn encode_tile_avx2(input: &[u8], stride: usize, tw: usize, th: usize, mode: EntropyAlgorithm, scratch: &mut Scratch, out: &mut CodedTile) {
    encode_tile_body::<true>(input, stride, tw, th, mode, scratch, out);
}

/// `AVX2`: use the hand-written AVX2 kernels (`rfx_kernels`); only where the CPU has AVX2.
#[inline(always)]
fn encode_tile_body<const AVX2: bool>(input: &[u8], stride: usize, tw: usize, th: usize, mode: EntropyAlgorithm, scratch: &mut Scratch, out: &mut CodedTile) {
    let [y, cb, cr] = &mut scratch.planes;
    bgrx_to_ycbcr::<AVX2>(input, stride, tw, th, y, cb, cr);
    out.bytes.clear();
    // Quantised tiles of real pictures code to far less than this; it only saves regrowing.
    out.bytes.reserve(3 * 1024);
    for (n, (plane, quant)) in scratch.planes.iter_mut().zip([&LUMA_QUANT, &CHROMA_QUANT, &CHROMA_QUANT]).enumerate() {
        let start = out.bytes.len();
        dwt_encode::<AVX2>(plane, &mut scratch.temp);
        quantize(plane, quant);
        // LL3 (the last 64 coefficients) is coded as differences (MS-RDPRFX 3.1.8.1.7.1).
        differentiate(&mut plane[TILE_COEFFS - 64..]);
        rlgr_encode(mode, plane, &mut out.bytes);
        out.lengths[n] = out.bytes.len() - start;
    }
}

// Colour conversion (MS-RDPRFX 3.1.8.1.3) in fixed point: coefficients scaled by 2^15, results
// by 2^5 (the 11.5 fixed point the DWT works in), Y shifted by -128 << 5.
const Y_R: i32 = 9798; // 0.299
const Y_G: i32 = 19235; // 0.587
const Y_B: i32 = 3736; // 0.114
const CB_R: i32 = -5536; // -0.168935
const CB_G: i32 = -10868; // -0.331665
const CB_B: i32 = 16403; // 0.50059
const CR_R: i32 = 16377; // 0.499813
const CR_G: i32 = -13714; // -0.418531
const CR_B: i32 = -2663; // -0.081282
/// Rounding for the final shift by 10.
const HALF: i32 = 1 << 9;

/// BGRX pixels into Y, Cb and Cr planes of 64x64. Beyond `tw`x`th`, the last real column and
/// row are repeated.
/// `AVX2`: most of each row with `rfx_kernels` (only where the CPU has AVX2).
#[inline(always)]
fn bgrx_to_ycbcr<const AVX2: bool>(input: &[u8], stride: usize, tw: usize, th: usize, y: &mut [i16; TILE_COEFFS], cb: &mut [i16; TILE_COEFFS], cr: &mut [i16; TILE_COEFFS]) {
    for row in 0..th {
        let src = &input[row * stride..][..tw * BYTES_PER_PIXEL];
        let at = row * TILE;
        let (yr, cbr, crr) = (&mut y[at..at + tw], &mut cb[at..at + tw], &mut cr[at..at + tw]);
        #[allow(unused_mut)]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            let coefs = [[Y_R, Y_G, Y_B], [CB_R, CB_G, CB_B], [CR_R, CR_G, CR_B]];
            // SAFETY: AVX2 is true only where the CPU has AVX2 (encode_tile_avx2, checked tests).
            done = unsafe { crate::rfx_kernels::bgrx_row_to_ycbcr(src, [&mut *yr, &mut *cbr, &mut *crr], coefs, HALF, [4096, 0, 0]) };
        }
        // The rest (all of it without AVX2).
        let (src, yr, cbr, crr) = (&src[done * BYTES_PER_PIXEL..], &mut yr[done..], &mut cbr[done..], &mut crr[done..]);
        for (((px, y), cb), cr) in src.chunks_exact(BYTES_PER_PIXEL).zip(yr).zip(cbr).zip(crr) {
            let p = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
            let (b, g, r) = ((p & 0xff) as i32, ((p >> 8) & 0xff) as i32, ((p >> 16) & 0xff) as i32);
            *y = (((Y_R * r + Y_G * g + Y_B * b + HALF) >> 10) - 4096) as i16;
            *cb = ((CB_R * r + CB_G * g + CB_B * b + HALF) >> 10) as i16;
            *cr = ((CR_R * r + CR_G * g + CR_B * b + HALF) >> 10) as i16;
        }
        if tw < TILE {
            for plane in [&mut *y, &mut *cb, &mut *cr] {
                let last = plane[at + tw - 1];
                plane[at + tw..at + TILE].fill(last);
            }
        }
    }
    for plane in [y, cb, cr] {
        let (real, pad) = plane.split_at_mut(th * TILE);
        let last = &real[(th - 1) * TILE..];
        for row in pad.chunks_exact_mut(TILE) {
            row.copy_from_slice(last);
        }
    }
}

/// The three-level 2D DWT of one component (MS-RDPRFX 3.1.8.1.4), in place: sub-bands HL1, LH1,
/// HH1 (32x32 each), then HL2, LH2, HH2 (16x16), then HL3, LH3, HH3, LL3 (8x8).
#[inline(always)]
fn dwt_encode<const AVX2: bool>(buffer: &mut [i16; TILE_COEFFS], temp: &mut [i16; TILE_COEFFS]) {
    dwt_level::<32, AVX2>(&mut buffer[..], temp);
    dwt_level::<16, AVX2>(&mut buffer[3072..], temp);
    dwt_level::<8, AVX2>(&mut buffer[3840..], temp);
}

/// The high-pass lifting step: `(odd - ((even + next_even) >> 1)) >> 1`, truncated to 16 bits.
#[inline(always)]
fn high(odd: i16, even: i16, next_even: i16) -> i16 {
    ((i32::from(odd) - ((i32::from(even) + i32::from(next_even)) >> 1)) >> 1) as i16
}

/// The low-pass lifting step: `even + ((h_before + h) >> 1)`, truncated to 16 bits.
#[inline(always)]
fn low(even: i16, h_before: i16, h: i16) -> i16 {
    (i32::from(even) + ((i32::from(h_before) + i32::from(h)) >> 1)) as i16
}

/// One level on a `2*SW` square at the start of `buffer`: vertical into `temp` (L rows then H
/// rows), horizontal back into `buffer` as HL, LH, HH, LL. Each inner loop runs along a row of
/// independent lanes, so it vectorises.
#[inline(always)]
fn dwt_level<const SW: usize, const AVX2: bool>(buffer: &mut [i16], temp: &mut [i16]) {
    let tw = 2 * SW;
    let (l_rows, h_rows) = temp[..2 * SW * tw].split_at_mut(SW * tw);
    for n in 0..SW {
        let even = &buffer[2 * n * tw..][..tw];
        let odd = &buffer[(2 * n + 1) * tw..][..tw];
        let next = if n + 1 < SW { &buffer[(2 * n + 2) * tw..][..tw] } else { even };
        let h_row = &mut h_rows[n * tw..][..tw];
        for (((h, &o), &e), &ne) in h_row.iter_mut().zip(odd).zip(even).zip(next) {
            *h = high(o, e, ne);
        }
        let h_row = &h_rows[n * tw..][..tw];
        let h_before = if n == 0 { h_row } else { &h_rows[(n - 1) * tw..][..tw] };
        for (((l, &e), &hb), &h) in l_rows[n * tw..][..tw].iter_mut().zip(even).zip(h_before).zip(h_row) {
            *l = low(e, hb, h);
        }
    }
    let ssw = SW * SW;
    let (hl, rest) = buffer[..4 * ssw].split_at_mut(ssw);
    let (lh, rest) = rest.split_at_mut(ssw);
    let (hh, ll) = rest.split_at_mut(ssw);
    let (l_rows, h_rows) = temp[..2 * SW * tw].split_at(SW * tw);
    for row in 0..SW {
        horizontal::<SW, AVX2>(&l_rows[row * tw..][..tw], &mut hl[row * SW..][..SW], &mut ll[row * SW..][..SW]);
        horizontal::<SW, AVX2>(&h_rows[row * tw..][..tw], &mut hh[row * SW..][..SW], &mut lh[row * SW..][..SW]);
    }
}

/// One row of the horizontal pass: `src` (2*SW) into its high and low halves (SW each).
/// `AVX2`: with `rfx_kernels` (only where the CPU has AVX2); the compiler's own vectorisation of
/// the de-interleaving below is slow.
#[inline(always)]
fn horizontal<const SW: usize, const AVX2: bool>(src: &[i16], high_out: &mut [i16], low_out: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: AVX2 is true only where the CPU has AVX2 (encode_tile_avx2, checked tests).
        return unsafe { crate::rfx_kernels::dwt_horizontal::<SW>(src, high_out, low_out) };
    }
    // De-interleaved, with the mirrored right edge (the last even sample repeated) and the
    // left edge (the first high sample repeated) as one more lane each.
    let mut even = [0i16; 33];
    let mut odd = [0i16; 32];
    for n in 0..SW {
        even[n] = src[2 * n];
        odd[n] = src[2 * n + 1];
    }
    even[SW] = even[SW - 1];
    for n in 0..SW {
        high_out[n] = high(odd[n], even[n], even[n + 1]);
    }
    let mut h_before = [0i16; 32];
    h_before[0] = high_out[0];
    h_before[1..SW].copy_from_slice(&high_out[..SW - 1]);
    for n in 0..SW {
        low_out[n] = low(even[n], h_before[n], high_out[n]);
    }
}

/// Quantise the sub-bands (MS-RDPRFX 3.1.8.1.5) by 2^(q-1), rounding to nearest: the decoder
/// multiplies by the same factor.
#[inline(always)]
fn quantize(buffer: &mut [i16; TILE_COEFFS], quant: &Quant) {
    let bands: [(usize, usize, u8); 10] = [
        (0, 1024, quant.hl1),
        (1024, 1024, quant.lh1),
        (2048, 1024, quant.hh1),
        (3072, 256, quant.hl2),
        (3328, 256, quant.lh2),
        (3584, 256, quant.hh2),
        (3840, 64, quant.hl3),
        (3904, 64, quant.lh3),
        (3968, 64, quant.hh3),
        (4032, 64, quant.ll3),
    ];
    for (start, len, q) in bands {
        let shift = u32::from(q.max(1)) - 1;
        if shift == 0 {
            continue;
        }
        let half = 1i32 << (shift - 1);
        for v in &mut buffer[start..start + len] {
            *v = ((i32::from(*v) + half) >> shift) as i16;
        }
    }
}

/// Each value minus the one before it (the first stays).
#[inline(always)]
fn differentiate(band: &mut [i16]) {
    for i in (1..band.len()).rev() {
        band[i] = band[i].wrapping_sub(band[i - 1]);
    }
}

/// MSB-first bit writer over a 64-bit accumulator.
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits in `acc` not yet written (fewer than 32 between calls).
    count: u32,
}

impl<'a> Bits<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Bits { out, acc: 0, count: 0 }
    }

    /// Append the low `n` (0..=32) bits of `value`.
    #[inline(always)]
    fn put(&mut self, n: u32, value: u32) {
        debug_assert!(n <= 32);
        if n == 0 {
            return;
        }
        self.acc = (self.acc << n) | u64::from(value & (u32::MAX >> (32 - n)));
        self.count += n;
        if self.count >= 32 {
            self.count -= 32;
            self.out.extend_from_slice(&((self.acc >> self.count) as u32).to_be_bytes());
        }
    }

    /// `n` one bits.
    #[inline(always)]
    fn ones(&mut self, mut n: u32) {
        while n > 32 {
            self.put(32, u32::MAX);
            n -= 32;
        }
        self.put(n, u32::MAX);
    }

    /// Write what is left, the last byte padded with zeros.
    fn finish(self) {
        let left = self.count.div_ceil(8);
        let tail = ((self.acc << (32 - self.count)) as u32).to_be_bytes();
        self.out.extend_from_slice(&tail[..left as usize]);
    }
}

// RLGR adaptation constants (MS-RDPRFX 3.1.8.1.7.3).
const KP_MAX: u32 = 80;
const LS_GR: u32 = 3;
const UP_GR: u32 = 4;
const DN_GR: u32 = 6;
const UQ_GR: u32 = 3;
const DQ_GR: u32 = 3;

/// Golomb-Rice code of `value` with the adaptive parameter `krp`.
#[inline(always)]
fn code_gr(bits: &mut Bits<'_>, krp: &mut u32, value: u32) {
    let kr = *krp >> LS_GR;
    let vk = value >> kr;
    // vk ones, a zero, the low kr bits: one write when they fit (kr is at most 10).
    if vk + 1 + kr <= 32 {
        let ones = ((1u64 << vk) - 1) << (kr + 1);
        bits.put(vk + 1 + kr, (ones | u64::from(value & ((1 << kr) - 1))) as u32);
    } else {
        bits.ones(vk);
        bits.put(1, 0);
        bits.put(kr, value);
    }
    if vk == 0 {
        *krp = krp.saturating_sub(2);
    } else if vk > 1 {
        *krp = (*krp + vk).min(KP_MAX);
    }
}

/// 2 * magnitude - sign: the mapping of a signed value to a Golomb-Rice code.
#[inline(always)]
fn two_mag_sign(v: i16) -> u32 {
    let mag = u32::from(v.unsigned_abs());
    if v < 0 { 2 * mag - 1 } else { 2 * mag }
}

/// How many values `input` starts with that are zero. Sixteen at a time: quantised tiles have
/// long runs of zeros.
#[inline(always)]
fn zero_run(input: &[i16]) -> usize {
    let mut n = 0;
    for chunk in input.chunks_exact(16) {
        // No early exit inside a chunk: the OR of all sixteen vectorises.
        if chunk.iter().fold(0, |a, &v| a | v) != 0 {
            break;
        }
        n += 16;
    }
    n + input[n..].iter().take_while(|&&v| v == 0).count()
}

/// RLGR1/RLGR3 entropy coding (MS-RDPRFX 3.1.8.1.7.3) of `input`, appended to `out`.
#[inline(always)]
fn rlgr_encode(mode: EntropyAlgorithm, input: &[i16], out: &mut Vec<u8>) {
    let mut bits = Bits::new(out);
    let (mut kp, mut krp) = (1u32 << LS_GR, 1u32 << LS_GR);
    let mut k = kp >> LS_GR;
    let mut i = 0;
    while i < input.len() {
        if k != 0 {
            // Run-length mode: a run of zeros, then the value that ends it.
            let zeros = zero_run(&input[i..]);
            i += zeros;
            let mut run = zeros as u32;
            let mut run_max = 1u32 << k;
            while run >= run_max {
                bits.put(1, 0);
                run -= run_max;
                kp = (kp + UP_GR).min(KP_MAX);
                k = kp >> LS_GR;
                run_max = 1 << k;
            }
            bits.put(k + 1, (1 << k) | run);
            // A run to the end still gets a (zero) sign and magnitude code, as FreeRDP writes
            // it: Windows' decoder reads them; other decoders stop at the 4096th coefficient.
            let value = input.get(i).copied().unwrap_or(0);
            i += 1;
            bits.put(1, u32::from(value < 0));
            code_gr(&mut bits, &mut krp, u32::from(value.unsigned_abs()).saturating_sub(1));
            kp = kp.saturating_sub(DN_GR);
            k = kp >> LS_GR;
        } else if mode == EntropyAlgorithm::Rlgr1 {
            let code = two_mag_sign(input[i]);
            i += 1;
            code_gr(&mut bits, &mut krp, code);
            kp = if code == 0 { (kp + UQ_GR).min(KP_MAX) } else { kp.saturating_sub(DQ_GR) };
            k = kp >> LS_GR;
        } else {
            // RLGR3: two values share one Golomb-Rice code of their sum.
            let first = two_mag_sign(input[i]);
            let second = input.get(i + 1).map_or(0, |&v| two_mag_sign(v));
            i += 2;
            let sum = first + second;
            code_gr(&mut bits, &mut krp, sum);
            bits.put(32 - sum.leading_zeros(), first);
            if first != 0 && second != 0 {
                kp = kp.saturating_sub(2 * DQ_GR);
                k = kp >> LS_GR;
            } else if first == 0 && second == 0 {
                kp = (kp + 2 * UQ_GR).min(KP_MAX);
                k = kp >> LS_GR;
            }
        }
    }
    bits.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_graphics::rfx::{MessageDecoder, TileDecoder};
    use rdhost_desktop::{CanvasUpdate, Rect};

    /// Deterministic pseudo-random numbers.
    fn noise(seed: u32) -> u32 {
        let mut v = seed.wrapping_mul(2_654_435_761);
        v ^= v >> 15;
        v = v.wrapping_mul(2_246_822_519);
        v ^ (v >> 13)
    }

    /// A `w`x`h` rectangle whose BGRX pixels `colour(x, y)` gives (as RGB).
    fn picture(w: u16, h: u16, colour: impl Fn(usize, usize) -> [u8; 3]) -> CanvasUpdate {
        let mut pixels = Vec::new();
        for y in 0..usize::from(h) {
            for x in 0..usize::from(w) {
                let [r, g, b] = colour(x, y);
                pixels.extend([b, g, r, 0xff]);
            }
        }
        CanvasUpdate { rect: Rect::new(0, 0, w, h), pixels }
    }

    fn gradient(x: usize, y: usize) -> [u8; 3] {
        let i = (x + 3 * y) % 1024;
        [(i & 0xff) as u8, ((i >> 2) & 0xff) as u8, 0xff - (i & 0xff) as u8]
    }

    fn text(x: usize, y: usize) -> [u8; 3] {
        let glyph = (x / 9) % 3 != 2 && (y / 16) % 2 == 0 && ((x * 7 + y * 3) % 11 < 4);
        if glyph { [0xe0, 0xe0, 0xd0] } else { [0x20, 0x24, 0x30] }
    }

    fn photo(x: usize, y: usize) -> [u8; 3] {
        let n = noise((x * 7919 + y) as u32);
        let base = gradient(x, y);
        // A smooth picture with some grain.
        [base[0].wrapping_add((n & 7) as u8), base[1].wrapping_add((n >> 3 & 7) as u8), base[2].wrapping_add((n >> 6 & 7) as u8)]
    }

    #[test]
    fn the_dwt_is_ironrdps() {
        for seed in 0..20u32 {
            let mut ours = [0i16; TILE_COEFFS];
            for (i, v) in ours.iter_mut().enumerate() {
                // Y/Cb/Cr range, some tiles smooth, some noisy.
                *v = if seed % 2 == 0 { (noise(seed * 10_000 + i as u32) % 8192) as i16 - 4096 } else { ((i % 64) * 64 + i / 64) as i16 - 4096 + seed as i16 };
            }
            let mut theirs = ours.to_vec();
            let mut temp = [0i16; TILE_COEFFS];
            dwt_encode::<false>(&mut ours, &mut temp);
            ironrdp_graphics::dwt::encode(&mut theirs, &mut vec![0i16; TILE_COEFFS]);
            assert_eq!(ours.as_slice(), theirs.as_slice(), "seed {seed}");
        }
    }

    #[test]
    fn rlgr_decodes_with_ironrdps_decoder() {
        for mode in [EntropyAlgorithm::Rlgr1, EntropyAlgorithm::Rlgr3] {
            for seed in 0..40u32 {
                // Mostly zeros with some values (quantised high bands), dense values, large
                // values, and zero runs to the end.
                let input: Vec<i16> = (0..TILE_COEFFS as u32)
                    .map(|i| {
                        let n = noise(seed * 5000 + i);
                        match seed % 4 {
                            0 => if n % 9 == 0 { (n % 7) as i16 - 3 } else { 0 },
                            1 => (n % 41) as i16 - 20,
                            2 => if i < 3000 { (n % 30_001) as i16 - 15_000 } else { 0 },
                            _ => if i % 64 == 0 { (n % 3) as i16 - 1 } else { 0 },
                        }
                    })
                    .collect();
                let mut coded = Vec::new();
                rlgr_encode(mode, &input, &mut coded);
                let mut decoded = vec![0i16; TILE_COEFFS];
                ironrdp_graphics::rlgr::decode(mode, &coded, &mut decoded).unwrap();
                assert_eq!(decoded, input, "{mode:?} seed {seed}");
            }
        }
    }

    /// Decode a message's tiles into an RGBA picture `w`x`h`.
    fn decode(message: &[u8], w: usize, h: usize) -> Vec<u8> {
        let parsed = MessageDecoder::new().parse(message).unwrap();
        let mut out = vec![0u8; w * h * 4];
        let mut tiles = TileDecoder::new();
        for frame in &parsed.frames {
            for tile in &frame.tile_set.tiles {
                let rgba = tiles.decode(tile, &frame.tile_set.quants, frame.tile_set.entropy_algorithm).unwrap();
                for row in 0..TILE {
                    let y = usize::from(tile.y) * TILE + row;
                    let x = usize::from(tile.x) * TILE;
                    if y >= h || x >= w {
                        continue;
                    }
                    let n = (w - x).min(TILE);
                    out[(y * w + x) * 4..][..n * 4].copy_from_slice(&rgba[row * TILE * 4..][..n * 4]);
                }
            }
        }
        out
    }

    /// PSNR (dB) of a decoded RGBA picture against the BGRX original.
    fn psnr(original: &CanvasUpdate, rgba: &[u8]) -> f64 {
        let mut sum = 0f64;
        for (o, d) in original.pixels.chunks_exact(4).zip(rgba.chunks_exact(4)) {
            for (a, b) in [(o[2], d[0]), (o[1], d[1]), (o[0], d[2])] {
                sum += (f64::from(a) - f64::from(b)).powi(2);
            }
        }
        let mse = sum / (original.pixels.len() / 4 * 3) as f64;
        10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
    }

    #[test]
    fn pictures_decode_close_to_the_original() {
        // Odd sizes: partial tiles at the right and bottom.
        for (name, colour, min_db) in [("gradient", gradient as fn(usize, usize) -> [u8; 3], 40.0), ("text", text, 33.0), ("photo", photo, 36.0)] {
            for rlgr3 in [false, true] {
                let update = picture(200, 130, colour);
                let message = encode_rfx((&update).into(), Size::new(800, 600), rlgr3, 1).unwrap();
                let db = psnr(&update, &decode(&message, 200, 130));
                eprintln!("{name} rlgr3={rlgr3}: {} bytes, PSNR {db:.1} dB", message.len());
                assert!(db >= min_db, "{name}: PSNR {db:.1} dB");
            }
        }
    }

    #[test]
    fn solid_tiles_are_coded_as_a_full_encode_codes_them() {
        // Flat areas of three colours, partial tiles at the edges, one textured band, and a
        // tile that differs from its colour in one pixel only (it must not take the copy).
        let update = picture(200, 150, |x, y| match (x / 64, y) {
            _ if (70..80).contains(&y) => text(x, y),
            _ if (x, y) == (5, 140) => [1, 2, 3],
            (0, _) => [10, 200, 30],
            (1, _) => [250, 250, 250],
            _ => [0, 0, 90],
        });
        for rlgr3 in [false, true] {
            let message = encode_rfx((&update).into(), Size::new(200, 150), rlgr3, 1).unwrap();
            let parsed = MessageDecoder::new().parse(&message).unwrap();
            let tiles = &parsed.frames[0].tile_set.tiles;
            let mode = if rlgr3 { EntropyAlgorithm::Rlgr3 } else { EntropyAlgorithm::Rlgr1 };
            let mut scratch = Scratch::new();
            for tile in tiles {
                let (x, y) = (usize::from(tile.x) * TILE, usize::from(tile.y) * TILE);
                let (tw, th) = ((200 - x).min(TILE), (150 - y).min(TILE));
                let mut alone = CodedTile::default();
                encode_tile(&update.pixels[(y * 200 + x) * 4..], 200 * 4, tw, th, mode, &mut scratch, &mut alone);
                let got = [&tile.y_data[..], &tile.cb_data[..], &tile.cr_data[..]].concat();
                assert_eq!(got, alone.bytes, "tile ({}, {}) rlgr3={rlgr3}", tile.x, tile.y);
            }
            assert!(psnr(&update, &decode(&message, 200, 150)) > 30.0);
        }
        assert_eq!(solid_colour((&update).into(), Rect::new(0, 128, 64, 22)), None, "one odd pixel");
        assert_eq!(solid_colour((&update).into(), Rect::new(64, 128, 64, 22)), Some([0xfa, 0xfa, 0xfa, 0]));
        assert_eq!(solid_colour((&update).into(), Rect::new(192, 128, 8, 22)), Some([0x5a, 0, 0, 0]));
    }

    #[test]
    fn rounding_quantisation_is_smaller_and_at_least_as_faithful_as_flooring() {
        // What ironrdp-graphics' component encoder gives for the same tiles, on our colour
        // planes: flooring shifts turn small negative coefficients into -1s.
        let update = picture(256, 128, photo);
        let ours = encode_rfx((&update).into(), Size::new(256, 128), true, 1).unwrap();
        let mut floored = 0;
        let mut scratch = Scratch::new();
        for ty in 0..2 {
            for tx in 0..4 {
                let input = &update.pixels[(ty * 64 * 256 + tx * 64) * 4..];
                let [y, cb, cr] = &mut scratch.planes;
                bgrx_to_ycbcr::<false>(input, 256 * 4, 64, 64, y, cb, cr);
                for (plane, quant) in scratch.planes.iter_mut().zip([LUMA_QUANT, CHROMA_QUANT, CHROMA_QUANT]) {
                    let mut out = vec![0u8; 16 * 1024];
                    floored += ironrdp_graphics::rfx_encode_component(plane, &mut out, &quant, EntropyAlgorithm::Rlgr3).unwrap();
                }
            }
        }
        let header = 200; // the message's blocks around the tile data, generously
        assert!(ours.len() < floored + header, "ours {} bytes, floored components {floored}", ours.len());
        assert!(psnr(&update, &decode(&ours, 256, 128)) > 34.0);
    }

    /// Whether the AVX2 kernels can run here (the tests comparing them skip otherwise).
    fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return true;
        }
        eprintln!("no AVX2: skipped");
        false
    }

    /// Pixels for the kernel tests: noise, every channel at 0 and 255 (alone and together), and
    /// flat runs; `seed` picks the mix.
    fn test_pixels(seed: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| {
                let n = noise(seed * 100_003 + i);
                match (seed + i / 37) % 4 {
                    0 => n as u8,
                    1 => if n & 1 == 0 { 0 } else { 255 },
                    2 => [0, 255][(i as usize / 4 + seed as usize) % 2],
                    _ => (seed * 31) as u8,
                }
            })
            .collect()
    }

    #[test]
    fn the_avx2_colour_conversion_is_the_scalar_one() {
        if !has_avx2() {
            return;
        }
        let sizes = (0..40u32).map(|seed| (1 + noise(seed) as usize % 64, 1 + noise(seed + 999) as usize % 64));
        for (seed, (tw, th)) in sizes.chain([(64, 64), (1, 1), (8, 64), (16, 3), (24, 64), (63, 64), (64, 1), (7, 9)]).enumerate() {
            let stride = (tw + seed % 3) * BYTES_PER_PIXEL;
            let input = test_pixels(seed as u32, stride * th);
            let mut planes = [[[0i16; TILE_COEFFS]; 3]; 2];
            let [[y0, cb0, cr0], [y1, cb1, cr1]] = &mut planes;
            bgrx_to_ycbcr::<false>(&input, stride, tw, th, y0, cb0, cr0);
            bgrx_to_ycbcr::<true>(&input, stride, tw, th, y1, cb1, cr1);
            assert!(planes[0] == planes[1], "seed {seed}, {tw}x{th}");
        }
        // Every channel's extremes, in every combination, through the vector steps.
        let mut input = Vec::new();
        for n in 0..64u32 {
            let c = |bit: u32| if n >> bit & 1 == 0 { 0 } else { 255 };
            input.extend([c(0), c(1), c(2), c(3)]);
        }
        let mut planes = [[[0i16; TILE_COEFFS]; 3]; 2];
        let [[y0, cb0, cr0], [y1, cb1, cr1]] = &mut planes;
        bgrx_to_ycbcr::<false>(&input, 64 * BYTES_PER_PIXEL, 64, 1, y0, cb0, cr0);
        bgrx_to_ycbcr::<true>(&input, 64 * BYTES_PER_PIXEL, 64, 1, y1, cb1, cr1);
        assert!(planes[0] == planes[1], "extremes");
    }

    /// DWT input for the kernel tests: colour-plane values, noise over all of i16, and runs at
    /// i16's extremes (where the lifting steps wrap).
    fn test_coefficients(seed: u32, len: usize) -> Vec<i16> {
        (0..len as u32)
            .map(|i| {
                let n = noise(seed * 7_919 + i);
                match (seed + i / 29) % 4 {
                    0 => (n % 8192) as i16 - 4096,
                    1 => n as i16,
                    2 => [i16::MIN, i16::MAX, i16::MIN + 1, i16::MAX - 1][(n % 4) as usize],
                    _ => if n & 1 == 0 { i16::MAX } else { i16::MIN },
                }
            })
            .collect()
    }

    fn compare_horizontal<const SW: usize>(seed: u32) {
        let src = test_coefficients(seed, 2 * SW);
        let mut out = [[0i16; 64]; 2];
        let [h0, l0] = &mut out;
        horizontal::<SW, false>(&src, &mut h0[..SW], &mut l0[..SW]);
        let mut avx = [[0i16; 64]; 2];
        let [h1, l1] = &mut avx;
        horizontal::<SW, true>(&src, &mut h1[..SW], &mut l1[..SW]);
        assert_eq!(out, avx, "SW {SW}, seed {seed}");
    }

    #[test]
    fn the_avx2_horizontal_dwt_is_the_scalar_one() {
        if !has_avx2() {
            return;
        }
        for seed in 0..200 {
            compare_horizontal::<32>(seed);
            compare_horizontal::<16>(seed);
            compare_horizontal::<8>(seed);
        }
        for seed in 0..20 {
            let mut ours = [0i16; TILE_COEFFS];
            ours.copy_from_slice(&test_coefficients(seed, TILE_COEFFS));
            let mut avx = ours;
            let mut temp = [0i16; TILE_COEFFS];
            dwt_encode::<false>(&mut ours, &mut temp);
            dwt_encode::<true>(&mut avx, &mut temp);
            assert!(ours == avx, "seed {seed}");
        }
    }

    #[test]
    fn avx2_tiles_code_as_the_scalar_ones() {
        if !has_avx2() {
            return;
        }
        let update = picture(200, 150, |x, y| if (x / 64 + y / 64) % 2 == 0 { photo(x, y) } else { text(x, y) });
        for mode in [EntropyAlgorithm::Rlgr1, EntropyAlgorithm::Rlgr3] {
            let mut scratch = Scratch::new();
            for (x, y) in [(0, 0), (64, 0), (128, 64), (192, 128), (0, 128), (5, 3)] {
                let (tw, th) = ((200 - x).min(TILE), (150 - y).min(TILE));
                let input = &update.pixels[(y * 200 + x) * 4..];
                let (mut scalar, mut avx) = (CodedTile::default(), CodedTile::default());
                encode_tile_body::<false>(input, 200 * 4, tw, th, mode, &mut scratch, &mut scalar);
                encode_tile_body::<true>(input, 200 * 4, tw, th, mode, &mut scratch, &mut avx);
                assert_eq!((scalar.bytes, scalar.lengths), (avx.bytes, avx.lengths), "tile at ({x}, {y}) {mode:?}");
            }
        }
    }

    #[test]
    fn a_short_pixel_buffer_is_an_error() {
        let update = CanvasUpdate { rect: Rect::new(0, 0, 64, 64), pixels: vec![0; 64 * 63 * 4] };
        assert!(encode_rfx((&update).into(), Size::new(64, 64), true, 1).is_err());
    }
}
