//! The tile kernel on AVX512-VNNI: one `vpdpbusd` multiplies four weights of
//! each of a tile's 16 rows by the same four activation bytes.

use super::{ACT_ROWS, BLOCK, Line, QuantizedRows, ROWS};
use std::arch::x86_64::*;

/// How far ahead (in 64-byte lines) to prefetch weights.
const PREFETCH_LINES: usize = 40;

/// Quantize 32 activations to i8 with one scale (the largest magnitude
/// maps to 127, rounding to nearest even). Returns the scale and the sum
/// of the i8 values.
///
/// # Safety
/// Needs AVX512F and AVX512BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn quantize_block(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    assert!(xs.len() == BLOCK && qs.len() == BLOCK);
    // SAFETY: both slices hold 32 elements (asserted).
    unsafe {
        let a = _mm512_loadu_ps(xs.as_ptr());
        let b = _mm512_loadu_ps(xs.as_ptr().add(16));
        let max = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        let d = max / 127.0;
        let inv = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let ia = _mm512_cvtps_epi32(_mm512_mul_ps(a, inv));
        let ib = _mm512_cvtps_epi32(_mm512_mul_ps(b, inv));
        _mm_storeu_si128(qs.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(ia));
        _mm_storeu_si128(
            qs.as_mut_ptr().add(16) as *mut __m128i,
            _mm512_cvtepi32_epi8(ib),
        );
        (d, _mm512_reduce_add_epi32(_mm512_add_epi32(ia, ib)))
    }
}

/// `M` activation rows from `first` against one row tile's blocks
/// (`Q8`: Q8_0 tiles, else Q4_1).
///
/// # Safety
/// Needs AVX512F, AVX512BW and AVX512-VNNI; the caller checked that the
/// activation rows `first..first + M` exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn tile_rows<const Q8: bool, const M: usize>(
    tiles: &[Line],
    acts: &QuantizedRows,
    first: usize,
    out: &mut [[f32; ROWS]; ACT_ROWS],
) {
    let bpr = acts.blocks_per_row;
    let per_tile = if Q8 { 9 } else { 5 };
    assert!(tiles.len() == bpr * per_tile);
    let nibble = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); M];
    for (b, tile) in tiles.chunks_exact(per_tile).enumerate() {
        // The hardware prefetcher alone left the loads waiting
        // (measured: decode about 15% faster with this).
        let ahead = tile.as_ptr().wrapping_add(PREFETCH_LINES) as *const i8;
        for l in 0..per_tile {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * l));
        }
        // Vector g holds weights k(g)..k(g) + 4 of each row.
        let mut w = [_mm512_setzero_si512(); 8];
        // SAFETY: `Line`s are 64-byte aligned and the tile has
        // `per_tile` of them (asserted).
        unsafe {
            let p = tile.as_ptr() as *const __m512i;
            if Q8 {
                for (g, w) in w.iter_mut().enumerate() {
                    *w = _mm512_load_si512(p.add(g));
                }
            } else {
                for g in 0..4 {
                    let v = _mm512_load_si512(p.add(g));
                    w[g] = _mm512_and_si512(v, nibble);
                    w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
                }
            }
        }
        let k = |g: usize| if Q8 || g < 4 { 4 * g } else { 4 * (g - 4) + 16 };
        // SAFETY: the last line holds 16 f16 `d` then 16 f16 `m`.
        let (dw, mw) = unsafe {
            let scales = tile[per_tile - 1].0.as_ptr() as *const __m256i;
            (
                _mm512_cvtph_ps(_mm256_load_si256(scales)),
                _mm512_cvtph_ps(_mm256_load_si256(scales.add(1))),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = (first + r) * bpr + b;
            let x = &acts.x8[a * BLOCK..(a + 1) * BLOCK];
            let word = |k: usize| {
                i32::from_le_bytes([x[k] as u8, x[k + 1] as u8, x[k + 2] as u8, x[k + 3] as u8])
            };
            // Two chains, so that each waits on half as many adds.
            let mut even = _mm512_setzero_si512();
            let mut odd = _mm512_setzero_si512();
            for g in (0..8).step_by(2) {
                even = _mm512_dpbusd_epi32(even, w[g], _mm512_set1_epi32(word(k(g))));
                odd = _mm512_dpbusd_epi32(odd, w[g + 1], _mm512_set1_epi32(word(k(g + 1))));
            }
            let sums = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(acts.dx[a]));
            *acc = _mm512_fmadd_ps(sums, scale, *acc);
            *acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(acts.sx[a]), *acc);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: 16 floats into a 16-float array.
        unsafe { _mm512_storeu_ps(out[r].as_mut_ptr(), *acc) };
    }
}
