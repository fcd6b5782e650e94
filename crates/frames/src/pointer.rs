//! Pointer shapes as fast-path pointer updates (MS-RDPBCGR 2.2.9.1.2.1.5–2.2.9.1.2.1.11).
//!
//! A shape goes out as a New Pointer update (32 bpp XOR mask with alpha, plus a 1 bpp AND mask
//! for clients that ignore alpha) or, past 96 pixels, a Large Pointer update; both store it in
//! the client's pointer cache at an index the caller chooses, and a Cached Pointer update shows
//! a stored one again. Which index holds what is connection state: the caller keeps it.

use std::borrow::Cow;

use ironrdp_core::encode_vec;
use ironrdp_pdu::fast_path::UpdateCode;
use ironrdp_pdu::pointer::{CachedPointerAttribute, ColorPointerAttribute, LargePointerAttribute, Point16, PointerAttribute};
use rdhost_desktop::CursorShape;

use crate::encode::{EncodeError, EncodedFrame};
use crate::fastpath::fastpath_updates;

/// What one client accepts, from the Pointer, Large Pointer and Multifragment Update capability
/// sets it confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PointerLimits {
    /// Entries in the client's pointer cache: indices `0..cache_size`. 0 means the client takes
    /// no New Pointer updates at all (only the default and hidden pointers).
    pub cache_size: u16,
    /// Largest width and height of a New Pointer update: 96 when the client set the Large
    /// Pointer capability's 96x96 flag, else 32 (FreeRDP drops the connection beyond these).
    pub new_pointer_max: u16,
    /// Largest width and height of a Large Pointer update (384 with the 384x384 flag), or 0
    /// when the client takes none.
    pub large_pointer_max: u16,
}

impl PointerLimits {
    pub fn new(cache_size: u16, up_to_96: bool, up_to_384: bool, max_request_size: u32) -> Self {
        // A pointer is one logical update, so it must reassemble within the client's limit.
        let fit = |side: u16| {
            let mut side = side;
            while side > 1 && update_len(side, side) > max_request_size as usize {
                side -= 1;
            }
            side
        };
        Self {
            cache_size,
            new_pointer_max: fit(if up_to_96 { 96 } else { 32 }),
            large_pointer_max: if up_to_384 { fit(384) } else { 0 },
        }
    }

    /// The largest side any update may carry.
    pub fn max_side(&self) -> u16 {
        self.new_pointer_max.max(self.large_pointer_max)
    }
}

/// Upper bound of an encoded pointer update's payload for a `width` x `height` shape.
fn update_len(width: u16, height: u16) -> usize {
    let (w, h) = (usize::from(width), usize::from(height));
    // The larger (Large Pointer) header, plus both masks.
    20 + h * (w * 4 + and_stride(width))
}

/// Bytes per AND mask row: one bit per pixel, rows padded to 2 bytes.
fn and_stride(width: u16) -> usize {
    usize::from(width).div_ceil(8).next_multiple_of(2)
}

/// The update that stores `shape` at `cache_index` in the client's cache and shows it. A shape
/// larger than `limits` allow is scaled down to fit (aspect ratio and hotspot kept); an empty
/// shape (0 wide or high) hides the pointer.
pub fn pointer_update(shape: &CursorShape, cache_index: u16, limits: &PointerLimits) -> Result<EncodedFrame, EncodeError> {
    if shape.width == 0 || shape.height == 0 {
        return Ok(hidden_pointer());
    }
    let expected = usize::from(shape.width) * usize::from(shape.height) * 4;
    if shape.bgra.len() != expected {
        return Err(EncodeError::Codec {
            what: "pointer shape",
            detail: format!("{}x{} needs {expected} bytes of pixels, got {}", shape.width, shape.height, shape.bgra.len()),
        });
    }
    if cache_index >= limits.cache_size {
        return Err(EncodeError::Codec {
            what: "pointer shape",
            detail: format!("cache index {cache_index} outside the client's cache of {}", limits.cache_size),
        });
    }
    let max = limits.max_side();
    let shape = if shape.width > max || shape.height > max { Cow::Owned(shrink(shape, max)) } else { Cow::Borrowed(shape) };
    let (xor_mask, and_mask) = masks(&shape);
    // The hotspot must lie on the image (FreeRDP resets one outside to 0,0).
    let hot_spot = Point16 { x: shape.hotspot_x.min(shape.width - 1), y: shape.hotspot_y.min(shape.height - 1) };
    let err = |e: ironrdp_core::EncodeError| EncodeError::Codec { what: "pointer update", detail: e.to_string() };
    let mut out = Vec::new();
    if shape.width <= limits.new_pointer_max && shape.height <= limits.new_pointer_max {
        let update = PointerAttribute {
            xor_bpp: 32,
            color_pointer: ColorPointerAttribute {
                cache_index,
                hot_spot,
                width: shape.width,
                height: shape.height,
                xor_mask: &xor_mask,
                and_mask: &and_mask,
            },
        };
        fastpath_updates(UpdateCode::NewPointer, &encode_vec(&update).map_err(err)?, &mut out);
    } else {
        let update = LargePointerAttribute {
            xor_bpp: 32,
            cache_index,
            hot_spot,
            width: shape.width,
            height: shape.height,
            xor_mask: &xor_mask,
            and_mask: &and_mask,
        };
        fastpath_updates(UpdateCode::LargePointer, &encode_vec(&update).map_err(err)?, &mut out);
    }
    Ok(out)
}

/// Show the shape a previous [`pointer_update`] stored at `cache_index`.
pub fn cached_pointer(cache_index: u16) -> EncodedFrame {
    let mut out = Vec::new();
    // Two bytes into a fresh buffer: cannot fail.
    let data = encode_vec(&CachedPointerAttribute { cache_index }).expect("cached pointer attribute encodes");
    fastpath_updates(UpdateCode::CachedPointer, &data, &mut out);
    out
}

/// No pointer at all.
pub fn hidden_pointer() -> EncodedFrame {
    let mut out = Vec::new();
    fastpath_updates(UpdateCode::HiddenPointer, &[], &mut out);
    out
}

/// The XOR mask (32 bpp BGRA) and AND mask (1 bpp), both with rows bottom-up as the updates
/// carry them. Fully transparent pixels get AND 1 over black, which clients that ignore alpha
/// draw as transparent too; any other pixel gets AND 0 (white with AND 1 would mean "invert").
fn masks(shape: &CursorShape) -> (Vec<u8>, Vec<u8>) {
    let w = usize::from(shape.width);
    let stride = and_stride(shape.width);
    let mut xor = Vec::with_capacity(shape.bgra.len());
    let mut and = vec![0u8; stride * usize::from(shape.height)];
    for (out_row, row) in shape.bgra.chunks_exact(w * 4).rev().enumerate() {
        for (x, px) in row.chunks_exact(4).enumerate() {
            if px[3] == 0 {
                xor.extend_from_slice(&[0, 0, 0, 0]);
                and[out_row * stride + x / 8] |= 0x80 >> (x % 8);
            } else {
                xor.extend_from_slice(px);
            }
        }
    }
    (xor, and)
}

/// Scale `shape` down to fit `max` x `max`. Each output pixel averages the input pixels it
/// covers, weighted by alpha so that transparent neighbours do not darken the edges.
fn shrink(shape: &CursorShape, max: u16) -> CursorShape {
    let (w, h) = (usize::from(shape.width), usize::from(shape.height));
    let (longest, max) = (w.max(h), usize::from(max));
    let nw = ((w * max + longest / 2) / longest).clamp(1, max);
    let nh = ((h * max + longest / 2) / longest).clamp(1, max);
    let span = |d: usize, n: usize, len: usize| {
        let start = d * len / n;
        start..((d + 1) * len / n).max(start + 1)
    };
    let mut bgra = Vec::with_capacity(nw * nh * 4);
    for dy in 0..nh {
        let ys = span(dy, nh, h);
        for dx in 0..nw {
            let xs = span(dx, nw, w);
            let (mut sum, mut alpha, mut count) = ([0u64; 3], 0u64, 0u64);
            for y in ys.clone() {
                for x in xs.clone() {
                    let p = &shape.bgra[(y * w + x) * 4..][..4];
                    let a = u64::from(p[3]);
                    for c in 0..3 {
                        sum[c] += u64::from(p[c]) * a;
                    }
                    alpha += a;
                    count += 1;
                }
            }
            if alpha == 0 {
                bgra.extend_from_slice(&[0, 0, 0, 0]);
            } else {
                let colour = |c: usize| ((sum[c] + alpha / 2) / alpha) as u8;
                bgra.extend_from_slice(&[colour(0), colour(1), colour(2), ((alpha + count / 2) / count) as u8]);
            }
        }
    }
    let scale = |v: u16, from: usize, to: usize| ((usize::from(v) * to / from).min(to - 1)) as u16;
    CursorShape {
        width: nw as u16,
        height: nh as u16,
        hotspot_x: scale(shape.hotspot_x, w, nw),
        hotspot_y: scale(shape.hotspot_y, h, nh),
        bgra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::{Encode as _, decode};
    use ironrdp_graphics::pointer::{DecodedPointer, PointerBitmapTarget};
    use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdate, FastPathUpdatePdu, Fragmentation};
    use ironrdp_pdu::pointer::PointerUpdateData;

    const LIMITS: PointerLimits = PointerLimits { cache_size: 32, new_pointer_max: 96, large_pointer_max: 384 };

    /// Reassemble the fast-path PDUs in `bytes` into (update code, payload) pairs.
    fn updates(bytes: &[u8]) -> Vec<(UpdateCode, Vec<u8>)> {
        let mut rest = bytes;
        let mut out = Vec::new();
        let mut partial: Option<(UpdateCode, Vec<u8>)> = None;
        while !rest.is_empty() {
            let header: FastPathHeader = decode(rest).unwrap();
            let total = header.size() + header.data_length;
            let pdu: FastPathUpdatePdu<'_> = decode(&rest[header.size()..total]).unwrap();
            match pdu.fragmentation {
                Fragmentation::Single => out.push((pdu.update_code, pdu.data.to_vec())),
                Fragmentation::First => partial = Some((pdu.update_code, pdu.data.to_vec())),
                Fragmentation::Next => partial.as_mut().unwrap().1.extend_from_slice(pdu.data),
                Fragmentation::Last => {
                    let (code, mut data) = partial.take().unwrap();
                    data.extend_from_slice(pdu.data);
                    out.push((code, data));
                }
            }
            rest = &rest[total..];
        }
        assert!(partial.is_none(), "unfinished fragmented update");
        out
    }

    fn single(bytes: &[u8]) -> (UpdateCode, Vec<u8>) {
        let mut all = updates(bytes);
        assert_eq!(all.len(), 1);
        all.pop().unwrap()
    }

    /// What IronRDP's client makes of an encoded update: straight-alpha RGBA, top-down.
    fn client_view(code: UpdateCode, data: &[u8]) -> DecodedPointer {
        match FastPathUpdate::decode_with_code(data, code).unwrap() {
            FastPathUpdate::Pointer(PointerUpdateData::New(p)) => DecodedPointer::decode_pointer_attribute(&p, PointerBitmapTarget::Accelerated).unwrap(),
            FastPathUpdate::Pointer(PointerUpdateData::Large(p)) => {
                DecodedPointer::decode_large_pointer_attribute(&p, PointerBitmapTarget::Accelerated).unwrap()
            }
            other => panic!("not a pointer shape: {other:?}"),
        }
    }

    fn rgba(bgra: &[u8]) -> Vec<u8> {
        bgra.chunks(4).flat_map(|p| [p[2], p[1], p[0], p[3]]).collect()
    }

    /// Top-left opaque red, top-right half-transparent green, bottom-left transparent (with a
    /// colour that must not leak), bottom-right opaque white.
    fn two_by_two() -> CursorShape {
        CursorShape {
            width: 2,
            height: 2,
            hotspot_x: 1,
            hotspot_y: 0,
            bgra: vec![0, 0, 255, 255, 0, 255, 0, 128, 255, 255, 255, 0, 255, 255, 255, 255],
        }
    }

    #[test]
    fn new_pointer_layout_of_a_2x2_shape() {
        let (code, data) = single(&pointer_update(&two_by_two(), 7, &LIMITS).unwrap());
        assert_eq!(code, UpdateCode::NewPointer);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            32, 0,          // xorBpp
            7, 0,           // cacheIndex
            1, 0, 0, 0,     // hotSpot x, y
            2, 0, 2, 0,     // width, height
            4, 0,           // lengthAndMask: 2 rows of 2 bytes (1 bit per pixel, padded to 2 bytes)
            16, 0,          // lengthXorMask: 2 rows of 2 BGRA pixels
            // XOR mask, bottom row first: transparent (blackened), white; then red, green at half.
            0, 0, 0, 0,  255, 255, 255, 255,
            0, 0, 255, 255,  0, 255, 0, 128,
            // AND mask, bottom row first: only the transparent pixel (leftmost bit) is set.
            0x80, 0,
            0, 0,
        ];
        assert_eq!(data, expected);
    }

    #[test]
    fn ironrdp_decodes_what_we_encode() {
        let shape = two_by_two();
        let (code, data) = single(&pointer_update(&shape, 0, &LIMITS).unwrap());
        let seen = client_view(code, &data);
        assert_eq!((seen.width, seen.height, seen.hotspot_x, seen.hotspot_y), (2, 2, 1, 0));
        let mut expected = rgba(&shape.bgra);
        expected[8..12].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(seen.bitmap_data, expected);
    }

    #[test]
    fn odd_width_pads_and_mask_rows_to_two_bytes() {
        // 17 pixels need 3 bytes of AND bits, padded to 4.
        let shape = CursorShape { width: 17, height: 3, hotspot_x: 16, hotspot_y: 2, bgra: vec![0; 17 * 3 * 4] };
        let (code, data) = single(&pointer_update(&shape, 1, &LIMITS).unwrap());
        assert_eq!(&data[12..16], &[12, 0, 204, 0], "lengthAndMask 3*4, lengthXorMask 3*17*4");
        let and = &data[16 + 204..];
        assert_eq!(and, &[0xFF, 0xFF, 0x80, 0, 0xFF, 0xFF, 0x80, 0, 0xFF, 0xFF, 0x80, 0]);
        let seen = client_view(code, &data);
        assert!(seen.bitmap_data.iter().all(|&b| b == 0));
    }

    /// A 64x48 shape: left half blue and opaque, right half transparent, hotspot (40, 20).
    fn big(width: u16, height: u16) -> CursorShape {
        let mut bgra = Vec::new();
        for _y in 0..height {
            for x in 0..width {
                bgra.extend_from_slice(if x < width / 2 { &[255, 0, 0, 255] } else { &[0, 0, 0, 0] });
            }
        }
        CursorShape { width, height, hotspot_x: width * 5 / 8, hotspot_y: height * 5 / 12, bgra }
    }

    #[test]
    fn too_big_for_the_client_is_scaled_down_keeping_aspect_and_hotspot() {
        let limits = PointerLimits { cache_size: 20, new_pointer_max: 32, large_pointer_max: 0 };
        let (code, data) = single(&pointer_update(&big(64, 48), 3, &limits).unwrap());
        assert_eq!(code, UpdateCode::NewPointer);
        let seen = client_view(code, &data);
        assert_eq!((seen.width, seen.height, seen.hotspot_x, seen.hotspot_y), (32, 24, 20, 10));
        for (i, px) in seen.bitmap_data.chunks(4).enumerate() {
            let expected: &[u8] = if i % 32 < 16 { &[0, 0, 255, 255] } else { &[0, 0, 0, 0] };
            assert_eq!(px, expected, "pixel {i}");
        }
    }

    #[test]
    fn past_96_pixels_a_large_pointer_update_when_the_client_takes_one() {
        let (code, data) = single(&pointer_update(&big(128, 128), 5, &LIMITS).unwrap());
        assert_eq!(code, UpdateCode::LargePointer);
        let seen = client_view(code, &data);
        assert_eq!((seen.width, seen.height, seen.hotspot_x, seen.hotspot_y), (128, 128, 80, 53));
        assert_eq!(seen.bitmap_data, rgba(&big(128, 128).bgra));

        // Without the 384x384 flag the same shape shrinks to a New Pointer of 96.
        let limits = PointerLimits { large_pointer_max: 0, ..LIMITS };
        let (code, data) = single(&pointer_update(&big(128, 128), 5, &limits).unwrap());
        assert_eq!(code, UpdateCode::NewPointer);
        let seen = client_view(code, &data);
        assert_eq!((seen.width, seen.height), (96, 96));
    }

    #[test]
    fn limits_follow_the_capabilities_and_the_reassembly_limit() {
        assert_eq!(PointerLimits::new(20, false, false, 0x3F_0000), PointerLimits { cache_size: 20, new_pointer_max: 32, large_pointer_max: 0 });
        assert_eq!(PointerLimits::new(25, true, true, 0x3F_0000), PointerLimits { cache_size: 25, new_pointer_max: 96, large_pointer_max: 384 });
        // 64 KiB cannot hold a 384x384 pointer (about 600 KB); the largest square that fits is used.
        let small = PointerLimits::new(25, true, true, 65_535);
        assert_eq!(small.new_pointer_max, 96);
        assert!(small.large_pointer_max < 384 && update_len(small.large_pointer_max, small.large_pointer_max) <= 65_535);
        assert!(update_len(small.large_pointer_max + 1, small.large_pointer_max + 1) > 65_535);
    }

    #[test]
    fn cached_hidden_and_bad_shapes() {
        assert_eq!(single(&cached_pointer(9)), (UpdateCode::CachedPointer, vec![9, 0]));
        assert_eq!(single(&hidden_pointer()), (UpdateCode::HiddenPointer, vec![]));
        let empty = CursorShape { width: 0, height: 0, hotspot_x: 0, hotspot_y: 0, bgra: vec![] };
        assert_eq!(single(&pointer_update(&empty, 0, &LIMITS).unwrap()).0, UpdateCode::HiddenPointer);
        let short = CursorShape { bgra: vec![0; 12], ..two_by_two() };
        assert!(pointer_update(&short, 0, &LIMITS).is_err());
        assert!(pointer_update(&two_by_two(), 32, &LIMITS).is_err(), "index past the client's cache");
    }

    #[test]
    fn hotspot_outside_the_image_is_clamped() {
        let shape = CursorShape { hotspot_x: 9, hotspot_y: 2, ..two_by_two() };
        let (_, data) = single(&pointer_update(&shape, 0, &LIMITS).unwrap());
        assert_eq!(&data[4..8], &[1, 0, 1, 0]);
    }
}
