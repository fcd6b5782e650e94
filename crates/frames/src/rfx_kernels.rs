//! AVX2 kernels for the RemoteFX tile encoder's two hottest loops that the compiler does not
//! vectorise well by itself (`rfx.rs` calls them from its AVX2 path): the colour conversion
//! and the horizontal DWT pass. Each is bit-exact with the scalar code in `rfx.rs` (tests there).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// Two i16 coefficients as the pair `madd_epi16` multiplies with lanes `(lo, hi)`.
const fn pair(lo: i32, hi: i32) -> i32 {
    (lo & 0xffff) | (hi << 16)
}

/// Eight BGRX pixels as i16 pairs `(b, g)` and `(r, 1)`, one pixel per i32 lane, in order.
#[target_feature(enable = "avx2")]
#[inline]
fn unpack_bgrx(pixels: __m256i) -> (__m256i, __m256i) {
    // pshufb works within 128-bit halves: each half is four whole pixels.
    let bg = _mm256_setr_epi8(0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1, 0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1);
    let r = _mm256_setr_epi8(2, -1, -1, -1, 6, -1, -1, -1, 10, -1, -1, -1, 14, -1, -1, -1, 2, -1, -1, -1, 6, -1, -1, -1, 10, -1, -1, -1, 14, -1, -1, -1);
    // The 1 multiplies the rounding constant paired with the red coefficient.
    let r1 = _mm256_or_si256(_mm256_shuffle_epi8(pixels, r), _mm256_set1_epi32(1 << 16));
    (_mm256_shuffle_epi8(pixels, bg), r1)
}

/// `(c_b*b + c_g*g + c_r*r + half) >> 10` per i32 lane: exact, the products and sum fit i32.
#[target_feature(enable = "avx2")]
#[inline]
fn channel(bg: __m256i, r1: __m256i, c_bg: __m256i, c_r1: __m256i) -> __m256i {
    _mm256_srai_epi32(_mm256_add_epi32(_mm256_madd_epi16(bg, c_bg), _mm256_madd_epi16(r1, c_r1)), 10)
}

/// Converts the leading pixels of one row of BGRX `src` into the three `planes` as `rfx.rs`'s
/// `bgrx_to_ycbcr` does: plane `c` gets `((r*coefs[c][0] + g*coefs[c][1] + b*coefs[c][2] +
/// half) >> 10) - offsets[c]`, with coefficients and `half` within i16 and results within i16.
/// In steps of 16 then 8 pixels; returns how many it converted (the caller does the rest, < 8).
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn bgrx_row_to_ycbcr(src: &[u8], planes: [&mut [i16]; 3], coefs: [[i32; 3]; 3], half: i32, offsets: [i16; 3]) -> usize {
    debug_assert!(coefs.iter().flatten().chain([&half]).all(|&c| i16::try_from(c).is_ok()));
    let n = planes.iter().fold(src.len() / 4, |n, plane| n.min(plane.len()));
    let coefs = coefs.map(|[r, g, b]| (_mm256_set1_epi32(pair(b, g)), _mm256_set1_epi32(pair(r, half))));
    // Subtracted after packing: the results fit i16, so packing is exact.
    let offsets = offsets.map(|o| _mm256_set1_epi16(o));
    let (src, planes) = (src.as_ptr(), planes.map(|plane| plane.as_mut_ptr()));
    let mut x = 0;
    while x + 16 <= n {
        // SAFETY: x + 16 <= n, so bytes 4x..4x+64 of src are in bounds.
        let (p0, p1) = unsafe { (_mm256_loadu_si256(src.add(4 * x).cast()), _mm256_loadu_si256(src.add(4 * x + 32).cast())) };
        let ((bg0, r0), (bg1, r1)) = (unpack_bgrx(p0), unpack_bgrx(p1));
        for c in 0..3 {
            let (c_bg, c_r1) = coefs[c];
            // packs interleaves the 128-bit halves (0-3, 8-11, 4-7, 12-15); the permute restores the order.
            let packed = _mm256_packs_epi32(channel(bg0, r0, c_bg, c_r1), channel(bg1, r1, c_bg, c_r1));
            let v = _mm256_sub_epi16(_mm256_permute4x64_epi64(packed, 0b11_01_10_00), offsets[c]);
            // SAFETY: x + 16 <= n, so i16s x..x+16 of each plane are in bounds.
            unsafe { _mm256_storeu_si256(planes[c].add(x).cast(), v) };
        }
        x += 16;
    }
    if x + 8 <= n {
        // SAFETY: x + 8 <= n, so bytes 4x..4x+32 of src are in bounds.
        let p = unsafe { _mm256_loadu_si256(src.add(4 * x).cast()) };
        let (bg, r1) = unpack_bgrx(p);
        for c in 0..3 {
            let (c_bg, c_r1) = coefs[c];
            let v = channel(bg, r1, c_bg, c_r1);
            let packed = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            let v = _mm_sub_epi16(packed, _mm256_castsi256_si128(offsets[c]));
            // SAFETY: x + 8 <= n, so i16s x..x+8 of each plane are in bounds.
            unsafe { _mm_storeu_si128(planes[c].add(x).cast(), v) };
        }
        x += 8;
    }
    x
}

/// One row of the DWT's horizontal pass, as `rfx.rs`'s `horizontal::<SW>`: `src` (2*SW
/// interleaved even/odd samples) into `high_out` and `low_out` (SW each). Works on 8 pairs at a
/// time as i32 lanes (even = low half, odd = high half), so no de-interleaving shuffles.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn dwt_horizontal<const SW: usize>(src: &[i16], high_out: &mut [i16], low_out: &mut [i16]) {
    const { assert!(SW >= 8 && SW.is_multiple_of(8)) };
    assert!(src.len() >= 2 * SW && high_out.len() >= SW && low_out.len() >= SW);
    let blocks = SW / 8;
    let s = src.as_ptr();
    let even_only = _mm256_set1_epi32(1);
    let mut prev_h = _mm256_setzero_si256();
    // Per block of 8 pairs: the high and low results as i32 lanes.
    let mut block = |k: usize| -> (__m256i, __m256i) {
        // SAFETY: k < SW / 8, so i16s 16k..16k+16 are within src's 2*SW.
        let v = unsafe { _mm256_loadu_si256(s.add(16 * k).cast()) };
        let even = _mm256_madd_epi16(v, even_only);
        let odd = _mm256_srai_epi32(v, 16);
        let next_even = if k + 1 < blocks {
            // Offset by one sample, each lane's high half is the next pair's even sample.
            // SAFETY: k + 1 < SW / 8, so i16s 16k+1..16k+17 are within src's 2*SW.
            _mm256_srai_epi32(unsafe { _mm256_loadu_si256(s.add(16 * k + 1).cast()) }, 16)
        } else {
            // The mirrored right edge: the last even sample repeated.
            _mm256_permutevar8x32_epi32(even, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7))
        };
        // Always within i16 ((odd - avg) / 2 of two i16s), so high()'s `as i16` changes nothing.
        let h = _mm256_srai_epi32(_mm256_sub_epi32(odd, _mm256_srai_epi32(_mm256_add_epi32(even, next_even), 1)), 1);
        let h_before = if k == 0 {
            // The mirrored left edge: the first high sample repeated.
            _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6))
        } else {
            // Shifted up one lane, the previous block's last in lane 0.
            _mm256_alignr_epi8(h, _mm256_permute2x128_si256(prev_h, h, 0x21), 12)
        };
        prev_h = h;
        // May exceed i16: low()'s `as i16` wraps, so keep only the low 16 bits (packus below
        // then packs them exactly).
        let l = _mm256_add_epi32(even, _mm256_srai_epi32(_mm256_add_epi32(h_before, h), 1));
        (h, _mm256_and_si256(l, _mm256_set1_epi32(0xffff)))
    };
    let (ho, lo) = (high_out.as_mut_ptr(), low_out.as_mut_ptr());
    for j in 0..blocks / 2 {
        let ((h0, l0), (h1, l1)) = (block(2 * j), block(2 * j + 1));
        // packs interleaves the 128-bit halves; the permute restores the order.
        let h = _mm256_permute4x64_epi64(_mm256_packs_epi32(h0, h1), 0b11_01_10_00);
        let l = _mm256_permute4x64_epi64(_mm256_packus_epi32(l0, l1), 0b11_01_10_00);
        // SAFETY: j < SW / 16, so i16s 16j..16j+16 are within the outputs' SW.
        unsafe {
            _mm256_storeu_si256(ho.add(16 * j).cast(), h);
            _mm256_storeu_si256(lo.add(16 * j).cast(), l);
        }
    }
    if !blocks.is_multiple_of(2) {
        let (h, l) = block(blocks - 1);
        let h = _mm_packs_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        let l = _mm_packus_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
        // SAFETY: the last 8 of the outputs' SW i16s.
        unsafe {
            _mm_storeu_si128(ho.add(SW - 8).cast(), h);
            _mm_storeu_si128(lo.add(SW - 8).cast(), l);
        }
    }
}
