//! The tile kernel on AVX2: a 64-byte tile line is two 256-bit halves, rows
//! 0-7 and rows 8-15, and `vpmaddubsw` multiplies four weights of each of a
//! half's 8 rows by the same four activation bytes.
//!
//! `vpmaddubsw` adds pairs of products into saturating i16. Q4_1's products
//! are at most 15 * 127, so a whole block (16 products per i16 lane) sums in
//! i16 without saturating, and one `vpmaddwd` per block widens it. Q8_0's
//! stored `q + 128` times an i8 could saturate a pair, so its weights are
//! taken back to signed `q` and multiplied as `|q| * (x * sign(q))` (at most
//! 2 * 128 * 127 per pair), widened per vector, and `128 * sum(x8)` is added
//! back: the same integer VNNI reaches, so the same bits come out.

use super::{ACT_ROWS, BLOCK, Line, QuantizedRows, ROWS};
use std::arch::x86_64::*;

/// How far ahead (in 64-byte lines) to prefetch weights.
const PREFETCH_LINES: usize = 40;

/// See [`super::quantize_block`]; the same bits as the scalar version.
///
/// # Safety
/// Needs AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_block(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    assert!(xs.len() == BLOCK && qs.len() == BLOCK);
    // SAFETY: both slices hold 32 elements (asserted).
    unsafe {
        let p = xs.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let sign = _mm256_set1_ps(-0.0);
        let abs = |x| _mm256_andnot_ps(sign, x);
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let d = _mm_cvtss_f32(m) / 127.0;
        let inv = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let i = v.map(|x| _mm256_cvtps_epi32(_mm256_mul_ps(x, inv)));
        // i32 -> i16 -> i8 with saturation packs lanes within 128-bit
        // halves; the permute puts the four groups of 8 back in order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let ordered =
            _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, ordered);
        let s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        (d, _mm_cvtsi128_si32(s))
    }
}

/// `M` activation rows from `first` against one row tile's blocks
/// (`Q8`: Q8_0 tiles, else Q4_1).
///
/// # Safety
/// Needs AVX2, FMA and F16C; the caller checked that the activation rows
/// `first..first + M` exist.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_rows<const Q8: bool, const M: usize>(
    tiles: &[Line],
    acts: &QuantizedRows,
    first: usize,
    out: &mut [[f32; ROWS]; ACT_ROWS],
) {
    let bpr = acts.blocks_per_row;
    let per_tile = if Q8 { 9 } else { 5 };
    assert!(tiles.len() == bpr * per_tile);
    assert!((first + M) * bpr <= acts.dx.len());
    let nibble = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(-128);
    // Per activation row, rows 0-7 then rows 8-15.
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    for (b, tile) in tiles.chunks_exact(per_tile).enumerate() {
        let ahead = tile.as_ptr().wrapping_add(PREFETCH_LINES) as *const i8;
        for l in 0..per_tile {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l));
        }
        let p = tile.as_ptr() as *const __m256i;
        // The last line holds 16 f16 `d` then 16 f16 `m`.
        let scales = tile[per_tile - 1].0.as_ptr() as *const __m128i;
        for half in 0..2 {
            // Vector g holds weights k(g)..k(g) + 4 of each of the half's rows.
            let mut w = [_mm256_setzero_si256(); 8];
            // SAFETY: the tile has `per_tile` aligned lines (asserted), two
            // 32-byte halves each.
            unsafe {
                if Q8 {
                    for (g, w) in w.iter_mut().enumerate() {
                        *w = _mm256_xor_si256(_mm256_load_si256(p.add(2 * g + half)), flip);
                    }
                } else {
                    for g in 0..4 {
                        let v = _mm256_load_si256(p.add(2 * g + half));
                        w[g] = _mm256_and_si256(v, nibble);
                        w[g + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
                    }
                }
            }
            let k = |g: usize| if Q8 || g < 4 { 4 * g } else { 4 * (g - 4) + 16 };
            // SAFETY: 8 f16 `d` at 16 * half bytes, 8 `m` 32 bytes later,
            // 16-byte aligned as the line is.
            let (dw, mw) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_load_si128(scales.add(half))),
                    _mm256_cvtph_ps(_mm_load_si128(scales.add(2 + half))),
                )
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = (first + r) * bpr + b;
                let x = &acts.x8[a * BLOCK..(a + 1) * BLOCK];
                let word = |k: usize| {
                    _mm256_set1_epi32(i32::from_le_bytes([
                        x[k] as u8,
                        x[k + 1] as u8,
                        x[k + 2] as u8,
                        x[k + 3] as u8,
                    ]))
                };
                let sums = if Q8 {
                    let mut even = _mm256_setzero_si256();
                    let mut odd = _mm256_setzero_si256();
                    for g in (0..8).step_by(2) {
                        let dot = |w: __m256i, x: __m256i| {
                            let pairs =
                                _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
                            _mm256_madd_epi16(pairs, ones)
                        };
                        even = _mm256_add_epi32(even, dot(w[g], word(k(g))));
                        odd = _mm256_add_epi32(odd, dot(w[g + 1], word(k(g + 1))));
                    }
                    let offset = _mm256_set1_epi32(128 * acts.isum[a]);
                    _mm256_add_epi32(_mm256_add_epi32(even, odd), offset)
                } else {
                    let mut even = _mm256_setzero_si256();
                    let mut odd = _mm256_setzero_si256();
                    for g in (0..8).step_by(2) {
                        even = _mm256_add_epi16(even, _mm256_maddubs_epi16(w[g], word(k(g))));
                        odd = _mm256_add_epi16(odd, _mm256_maddubs_epi16(w[g + 1], word(k(g + 1))));
                    }
                    _mm256_madd_epi16(_mm256_add_epi16(even, odd), ones)
                };
                let sums = _mm256_cvtepi32_ps(sums);
                let scale = _mm256_mul_ps(dw, _mm256_set1_ps(acts.dx[a]));
                acc[half] = _mm256_fmadd_ps(sums, scale, acc[half]);
                acc[half] = _mm256_fmadd_ps(mw, _mm256_set1_ps(acts.sx[a]), acc[half]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: 2 x 8 floats into a 16-float array.
        unsafe {
            _mm256_storeu_ps(out[r].as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(out[r].as_mut_ptr().add(8), acc[1]);
        }
    }
}
