//! Q4_1 weights times f32 activations with AVX512-VNNI, reading the 4-bit
//! weights as they are stored.
//!
//! candle multiplies Q4_1 on a generic path, so the model used to be
//! re-quantized to Q8_0 at load and padded to its fast kernel's width of 256
//! (576 -> 768 for SmolLM2): 181 MB read per generated token where the file
//! holds 84 MB. Decoding one token is bound by those reads.
//!
//! A Q4_1 block holds 32 weights as `d * q + m` (4-bit `q`, f16 `d` and
//! `m`). Activations are quantized per block of 32 to i8 with a scale `dx`
//! (as ggml's Q8_1), so a block's dot product is
//! `d * dx * sum(q * x8) + m * dx * sum(x8)`. Here 16 weight rows are
//! interleaved per block (a tile) so that one `vpdpbusd` multiplies four
//! weights of each of the 16 rows by the same four activation bytes: eight
//! such instructions cover the block for all 16 rows, with no horizontal
//! sums. Each activation row is computed alike however many rows a call
//! has, so a batched prefill gives the same numbers as decoding token by
//! token.

use anyhow::{Result, bail, ensure};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::utils::barrier_pool;
use candle_core::{CpuStorage, Device, Storage, Tensor};
use half::f16;

const BLOCK: usize = 32;
const BLOCK_BYTES: usize = 20;
/// Weight rows per tile: one output per 32-bit lane of a 512-bit vector.
const ROWS: usize = 16;
/// Activation rows that share one unpacking of a tile's nibbles.
const ACT_ROWS: usize = 4;

/// One block of 32 weights for 16 rows. `qs` is four 64-byte vectors; in
/// vector `g`, lane `r` (bytes `4r..4r + 4`) holds row `r`'s weights
/// `4g..4g + 4` in the low nibbles and `4g + 16..4g + 20` in the high ones.
#[repr(C, align(64))]
#[derive(Clone)]
struct Tile {
    qs: [u8; 256],
    d: [f16; ROWS],
    m: [f16; ROWS],
}

/// A `[rows, cols]` Q4_1 matrix in tiles, applied as `x W^T`.
pub(crate) struct Q4_1Tiles {
    rows: usize,
    cols: usize,
    /// Row tile `t`'s blocks are `tiles[t * blocks_per_row..][..blocks_per_row]`.
    tiles: Vec<Tile>,
}

impl std::fmt::Debug for Q4_1Tiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Q4_1Tiles({}x{})", self.rows, self.cols)
    }
}

/// Activation rows quantized per block of 32.
struct QuantizedRows {
    blocks_per_row: usize,
    x8: Vec<i8>,
    /// Per block: the scale.
    dx: Vec<f32>,
    /// Per block: `dx * sum(x8)`, what the weights' offset `m` multiplies.
    sx: Vec<f32>,
}

impl Q4_1Tiles {
    /// Whether this CPU runs the kernel (checked at run time, so one build
    /// serves machines with and without AVX512-VNNI).
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Whether a matrix of this type and shape can be tiled.
    pub fn fits(q: &QTensor) -> bool {
        matches!(q.shape().dims(), &[rows, cols] if rows % ROWS == 0 && cols % BLOCK == 0)
            && q.dtype() == GgmlDType::Q4_1
    }

    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        ensure!(
            q.dtype() == GgmlDType::Q4_1,
            "expected Q4_1 weights, got {:?}",
            q.dtype()
        );
        let (rows, cols) = match *q.shape().dims() {
            [rows, cols] => (rows, cols),
            ref dims => bail!("expected a matrix, got shape {dims:?}"),
        };
        ensure!(
            rows % ROWS == 0 && cols % BLOCK == 0,
            "a {rows}x{cols} matrix does not split into {ROWS}-row tiles of {BLOCK}-wide blocks"
        );
        let data = q.data()?;
        let bpr = cols / BLOCK;
        ensure!(
            data.len() == rows * bpr * BLOCK_BYTES,
            "Q4_1 data of {} bytes does not hold {rows}x{cols} weights",
            data.len()
        );
        let block = |row: usize, b: usize| &data[(row * bpr + b) * BLOCK_BYTES..][..BLOCK_BYTES];
        let mut tiles = Vec::with_capacity(rows / ROWS * bpr);
        for t in 0..rows / ROWS {
            for b in 0..bpr {
                let mut tile = Tile {
                    qs: [0; 256],
                    d: [f16::ZERO; ROWS],
                    m: [f16::ZERO; ROWS],
                };
                for r in 0..ROWS {
                    let src = block(t * ROWS + r, b);
                    tile.d[r] = f16::from_le_bytes([src[0], src[1]]);
                    tile.m[r] = f16::from_le_bytes([src[2], src[3]]);
                    // GGUF: byte j holds weight j (low nibble), j + 16 (high).
                    let q = |k: usize| {
                        let byte = src[4 + k % 16];
                        if k < 16 { byte & 15 } else { byte >> 4 }
                    };
                    for g in 0..4 {
                        for j in 0..4 {
                            tile.qs[g * 64 + r * 4 + j] = q(4 * g + j) | (q(4 * g + 16 + j) << 4);
                        }
                    }
                }
                tiles.push(tile);
            }
        }
        Ok(Self { rows, cols, tiles })
    }

    /// `x W^T` for `x` of shape `[..., cols]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        ensure!(
            dims.last() == Some(&self.cols),
            "activations {dims:?} against a Q4_1 matrix of width {}",
            self.cols
        );
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            bail!("the Q4_1 kernel takes f32 activations on the CPU");
        };
        let data = &data[layout.start_offset()..][..x.elem_count()];
        let m = data.len() / self.cols;
        let mut out = vec![0f32; m * self.rows];
        self.matmul(data, &mut out)?;
        let mut shape = dims;
        *shape.last_mut().expect("checked above") = self.rows;
        Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
    }

    /// `out[i][r] = sum_j x[i][j] * W[r][j]`, row-major `[m, cols]` and `[m, rows]`.
    fn matmul(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        ensure!(Self::available(), "this CPU lacks AVX512-VNNI");
        let acts = QuantizedRows::new(x, self.cols);
        let m = x.len() / self.cols;
        let n_tiles = self.rows / ROWS;
        let out_ptr = OutPtr(out.as_mut_ptr());
        let out_len = out.len();
        barrier_pool().execute_chunked(n_tiles, |range| {
            for t in range {
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min(ACT_ROWS);
                    let mut tile_out = [[0f32; ROWS]; ACT_ROWS];
                    self.tile_rows(t, &acts, i, rows, &mut tile_out);
                    for (r, values) in tile_out[..rows].iter().enumerate() {
                        let at = (i + r) * self.rows + t * ROWS;
                        assert!(at + ROWS <= out_len);
                        // SAFETY: in bounds (checked above); each task owns
                        // the columns of its own row tiles, so no two
                        // threads write the same element.
                        unsafe {
                            std::ptr::copy_nonoverlapping(values.as_ptr(), out_ptr.at(at), ROWS)
                        };
                    }
                    i += rows;
                }
            }
        });
        Ok(())
    }

    fn tile_rows(
        &self,
        t: usize,
        acts: &QuantizedRows,
        first: usize,
        rows: usize,
        out: &mut [[f32; ROWS]; ACT_ROWS],
    ) {
        let bpr = acts.blocks_per_row;
        let tiles = &self.tiles[t * bpr..(t + 1) * bpr];
        assert!((first + rows) * bpr <= acts.dx.len());
        // SAFETY: `available()` was checked by `matmul`, and the slices the
        // kernel reads were bounds-checked above.
        unsafe {
            match rows {
                4 => simd::tile_rows::<4>(tiles, acts, first, out),
                3 => simd::tile_rows::<3>(tiles, acts, first, out),
                2 => simd::tile_rows::<2>(tiles, acts, first, out),
                _ => simd::tile_rows::<1>(tiles, acts, first, out),
            }
        }
    }

    /// The weights as f32, `[rows, cols]` (test reference).
    #[cfg(test)]
    fn dequantize(&self) -> Vec<f32> {
        let bpr = self.cols / BLOCK;
        let mut w = vec![0f32; self.rows * self.cols];
        for (i, tile) in self.tiles.iter().enumerate() {
            let (t, b) = (i / bpr, i % bpr);
            for r in 0..ROWS {
                for k in 0..BLOCK {
                    let (g, j, high) = ((k % 16) / 4, k % 4, k >= 16);
                    let byte = tile.qs[g * 64 + r * 4 + j];
                    let q = if high { byte >> 4 } else { byte & 15 };
                    w[(t * ROWS + r) * self.cols + b * BLOCK + k] =
                        tile.d[r].to_f32() * f32::from(q) + tile.m[r].to_f32();
                }
            }
        }
        w
    }
}

/// The output buffer, shared by the tasks that fill disjoint parts of it.
struct OutPtr(*mut f32);
// SAFETY: used only for writes to disjoint ranges (see `matmul`).
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// # Safety
    /// `offset` must be inside the buffer.
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` in bounds.
        unsafe { self.0.add(offset) }
    }
}

impl QuantizedRows {
    /// Needs the CPU features of [`Q4_1Tiles::available`].
    fn new(x: &[f32], cols: usize) -> Self {
        assert!(Q4_1Tiles::available(), "this CPU lacks AVX512-VNNI");
        let blocks = x.len() / BLOCK;
        let mut acts = Self {
            blocks_per_row: cols / BLOCK,
            x8: vec![0; x.len()],
            dx: vec![0.0; blocks],
            sx: vec![0.0; blocks],
        };
        for (b, (xs, qs)) in x
            .chunks_exact(BLOCK)
            .zip(acts.x8.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            // SAFETY: the features were checked above; both slices hold a block.
            let (d, sum) = unsafe { simd::quantize_block(xs, qs) };
            acts.dx[b] = d;
            acts.sx[b] = d * sum as f32;
        }
        acts
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{ACT_ROWS, BLOCK, QuantizedRows, ROWS, Tile};
    use std::arch::x86_64::*;

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

    /// `M` activation rows from `first` against one row tile's blocks.
    ///
    /// # Safety
    /// Needs AVX512F, AVX512BW and AVX512-VNNI; the caller checked that the
    /// activation rows `first..first + M` exist.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile_rows<const M: usize>(
        tiles: &[Tile],
        acts: &QuantizedRows,
        first: usize,
        out: &mut [[f32; ROWS]; ACT_ROWS],
    ) {
        let bpr = acts.blocks_per_row;
        let nibble = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); M];
        for (b, tile) in tiles.iter().enumerate() {
            // SAFETY: `Tile` is 64-byte aligned and `qs` is its first field.
            let w: [__m512i; 8] = unsafe {
                let p = tile.qs.as_ptr() as *const __m512i;
                let v = [
                    _mm512_load_si512(p),
                    _mm512_load_si512(p.add(1)),
                    _mm512_load_si512(p.add(2)),
                    _mm512_load_si512(p.add(3)),
                ];
                [
                    _mm512_and_si512(v[0], nibble),
                    _mm512_and_si512(v[1], nibble),
                    _mm512_and_si512(v[2], nibble),
                    _mm512_and_si512(v[3], nibble),
                    _mm512_and_si512(_mm512_srli_epi16(v[0], 4), nibble),
                    _mm512_and_si512(_mm512_srli_epi16(v[1], 4), nibble),
                    _mm512_and_si512(_mm512_srli_epi16(v[2], 4), nibble),
                    _mm512_and_si512(_mm512_srli_epi16(v[3], 4), nibble),
                ]
            };
            // SAFETY: 16 f16 values each, read unaligned.
            let (dw, mw) = unsafe {
                (
                    _mm512_cvtph_ps(_mm256_loadu_si256(tile.d.as_ptr() as *const __m256i)),
                    _mm512_cvtph_ps(_mm256_loadu_si256(tile.m.as_ptr() as *const __m256i)),
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
                    // Vector g < 4 holds weights 4g.., vector g + 4 holds 4g + 16...
                    let k = |g: usize| if g < 4 { 4 * g } else { 4 * (g - 4) + 16 };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_q4_1(rows: usize, cols: usize, seed: u64) -> QTensor {
        let w = Tensor::randn(0f32, 1f32, (rows, cols), &Device::Cpu).unwrap();
        let w = (w + seed as f64 * 0.01).unwrap();
        QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()
    }

    /// `x W^T` in f64 from the dequantized weights and the same i8
    /// activations the kernel uses.
    fn reference(tiles: &Q4_1Tiles, x: &[f32]) -> Vec<f32> {
        let w = tiles.dequantize();
        let acts = QuantizedRows::new(x, tiles.cols);
        let m = x.len() / tiles.cols;
        let mut out = vec![0f32; m * tiles.rows];
        for i in 0..m {
            for r in 0..tiles.rows {
                let mut sum = 0f64;
                for k in 0..tiles.cols {
                    let a = i * tiles.cols / BLOCK + k / BLOCK;
                    let xk = f64::from(acts.x8[i * tiles.cols + k]) * f64::from(acts.dx[a]);
                    sum += f64::from(w[r * tiles.cols + k]) * xk;
                }
                out[i * tiles.rows + r] = sum as f32;
            }
        }
        out
    }

    #[test]
    fn tiles_hold_the_gguf_weights() {
        let q = random_q4_1(32, 96, 1);
        let tiles = Q4_1Tiles::from_qtensor(&q).unwrap();
        let expected = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
        assert_eq!(tiles.dequantize(), expected.to_vec1::<f32>().unwrap());
    }

    #[test]
    fn matmul_matches_the_reference_for_every_batch_size() {
        if !Q4_1Tiles::available() {
            eprintln!("skipped: this CPU lacks AVX512-VNNI");
            return;
        }
        let (rows, cols) = (48, 160);
        let tiles = Q4_1Tiles::from_qtensor(&random_q4_1(rows, cols, 2)).unwrap();
        let x = Tensor::randn(0f32, 1f32, (7, cols), &Device::Cpu).unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expected = reference(&tiles, &xs);
        let got = tiles.forward(&x).unwrap();
        assert_eq!(got.dims(), [7, rows]);
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-5 * scale, "{g} vs {e}");
        }
        // Row by row gives the same bits as the batch of seven.
        for i in 0..7 {
            let one = tiles.forward(&x.narrow(0, i, 1).unwrap()).unwrap();
            let one = one.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(one, got[i * rows..(i + 1) * rows]);
        }
    }

    #[test]
    fn shapes_that_do_not_tile_are_refused() {
        let q = random_q4_1(24, 64, 3);
        assert!(!Q4_1Tiles::fits(&q));
        assert!(Q4_1Tiles::from_qtensor(&q).is_err());
    }
}
