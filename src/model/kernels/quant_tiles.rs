//! Q4_1 and Q8_0 weights times f32 activations with AVX512-VNNI, reading
//! the weights as they are stored.
//!
//! candle multiplies Q4_1 on a generic path, and its fast Q8_0 kernel needs
//! rows that are a multiple of 256 wide, so the model used to be re-quantized
//! to Q8_0 and padded (576 -> 768 for SmolLM2): 181 MB read per generated
//! token where the file holds 96 MB. Decoding one token is bound by those
//! reads.
//!
//! A block holds 32 weights as `d * q + m`: Q4_1 stores 4-bit `q` with f16
//! `d` and `m`; Q8_0 stores 8-bit signed `q` and `d`, kept here as `q + 128`
//! with `m = -128 d` so both are unsigned times a scale plus an offset.
//! Activations are quantized per block of 32 to i8 with a scale `dx` (as
//! ggml's Q8_1), so a block's dot product is
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
/// Weight rows per tile: one output per 32-bit lane of a 512-bit vector.
const ROWS: usize = 16;
/// Activation rows that share one unpacking of a tile's weights.
const ACT_ROWS: usize = 4;

/// How a tile stores its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TileFormat {
    /// Four 64-byte vectors; in vector `g`, lane `r` (bytes `4r..4r + 4`)
    /// holds row `r`'s weights `4g..4g + 4` in the low nibbles and
    /// `4g + 16..4g + 20` in the high ones.
    Q4_1,
    /// Eight 64-byte vectors; in vector `g`, lane `r` holds row `r`'s
    /// weights `4g..4g + 4` plus 128.
    Q8_0,
}

impl TileFormat {
    fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q8_0 => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// Bytes of weights per tile.
    fn qs_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 256,
            Self::Q8_0 => 512,
        }
    }

    /// 64-byte lines per tile: the weights, then `d` and `m` (16 f16 each).
    fn lines(self) -> usize {
        self.qs_bytes() / 64 + 1
    }

    /// GGUF bytes per block of 32 weights.
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }
}

/// 64 bytes, aligned for vector loads.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// A `[rows, cols]` Q4_1 or Q8_0 matrix in tiles, applied as `x W^T`.
pub(crate) struct QuantTiles {
    format: TileFormat,
    rows: usize,
    cols: usize,
    /// Tile `(t, b)` (row tile `t`, block `b`) starts at line
    /// `(t * blocks_per_row + b) * format.lines()`.
    lines: Vec<Line>,
}

impl std::fmt::Debug for QuantTiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QuantTiles({:?}, {}x{})",
            self.format, self.rows, self.cols
        )
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

impl QuantTiles {
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
            && TileFormat::of(q.dtype()).is_some()
    }

    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        let Some(format) = TileFormat::of(q.dtype()) else {
            bail!("expected Q4_1 or Q8_0 weights, got {:?}", q.dtype());
        };
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
        let block_bytes = format.block_bytes();
        ensure!(
            data.len() == rows * bpr * block_bytes,
            "{format:?} data of {} bytes does not hold {rows}x{cols} weights",
            data.len()
        );
        let block = |row: usize, b: usize| &data[(row * bpr + b) * block_bytes..][..block_bytes];
        let mut lines = vec![Line([0; 64]); rows / ROWS * bpr * format.lines()];
        for (i, tile) in lines.chunks_exact_mut(format.lines()).enumerate() {
            let (t, b) = (i / bpr, i % bpr);
            let (qs, scales) = tile.split_at_mut(format.lines() - 1);
            let scales = &mut scales[0].0;
            for r in 0..ROWS {
                let src = block(t * ROWS + r, b);
                let d = f16::from_le_bytes([src[0], src[1]]);
                let m = match format {
                    TileFormat::Q4_1 => f16::from_le_bytes([src[2], src[3]]),
                    // Exact: a power-of-two multiple.
                    TileFormat::Q8_0 => f16::from_f32(-128.0 * d.to_f32()),
                };
                scales[2 * r..2 * r + 2].copy_from_slice(&d.to_le_bytes());
                scales[32 + 2 * r..32 + 2 * r + 2].copy_from_slice(&m.to_le_bytes());
                for g in 0..format.qs_bytes() / 64 {
                    for j in 0..4 {
                        let byte = match format {
                            // GGUF's byte k already holds weight k (low
                            // nibble) and k + 16 (high).
                            TileFormat::Q4_1 => src[4 + 4 * g + j],
                            TileFormat::Q8_0 => (src[2 + 4 * g + j] as i8 as i16 + 128) as u8,
                        };
                        qs[g].0[r * 4 + j] = byte;
                    }
                }
            }
        }
        Ok(Self {
            format,
            rows,
            cols,
            lines,
        })
    }

    /// The matrices one above the other (`x W^T` of the result is their
    /// products side by side), or `None` when their formats or widths
    /// differ. A row tile's lines do not depend on the rows around it, so
    /// stacking is concatenation.
    pub fn stack(parts: &[&QuantTiles]) -> Option<Self> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.format != first.format || p.cols != first.cols)
        {
            return None;
        }
        Some(Self {
            format: first.format,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            lines: parts.iter().flat_map(|p| p.lines.iter().copied()).collect(),
        })
    }

    /// `x W^T` for `x` of shape `[..., cols]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        ensure!(
            dims.last() == Some(&self.cols),
            "activations {dims:?} against a {:?} matrix of width {}",
            self.format,
            self.cols
        );
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            bail!("the quantized tile kernel takes f32 activations on the CPU");
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
        let out_ptr = OutPtr(out.as_mut_ptr());
        let out_len = out.len();
        self.for_tile_ranges(m, |range| {
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

    /// Run `f` over all row tiles, on candle's pool. One pass over the
    /// weights (up to [`ACT_ROWS`] activation rows: decoding) is short, a few
    /// microseconds per matrix, so the tiles are split into one contiguous
    /// range per thread: a shared cursor cost a cache-line round trip between
    /// the cores per grab, and small matrices run on the calling thread alone,
    /// where waking the other thread cost more than it saved (measured in
    /// BENCHMARKS.md). Longer calls share a cursor, so that a thread slowed
    /// by another process does not hold the others up.
    fn for_tile_ranges(&self, m: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
        /// Below this many bytes of weights one pass stays on one thread.
        const SPLIT_BYTES: usize = 128 << 10;
        let n_tiles = self.rows / ROWS;
        let pool = barrier_pool();
        if m > ACT_ROWS {
            pool.execute_chunked(n_tiles, f);
        } else if self.lines.len() * size_of::<Line>() < SPLIT_BYTES {
            f(0..n_tiles);
        } else {
            let per_thread = n_tiles.div_ceil(pool.n_workers() + 1);
            pool.execute(|tid| {
                let start = tid * per_thread;
                if start < n_tiles {
                    f(start..n_tiles.min(start + per_thread));
                }
            });
        }
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
        let per_tile = self.format.lines();
        let tiles = &self.lines[t * bpr * per_tile..(t + 1) * bpr * per_tile];
        assert!((first + rows) * bpr <= acts.dx.len());
        // SAFETY: `available()` was checked by `matmul`, and the slices the
        // kernel reads were bounds-checked above.
        unsafe {
            match (self.format, rows) {
                (TileFormat::Q4_1, 4) => simd::tile_rows::<false, 4>(tiles, acts, first, out),
                (TileFormat::Q4_1, 3) => simd::tile_rows::<false, 3>(tiles, acts, first, out),
                (TileFormat::Q4_1, 2) => simd::tile_rows::<false, 2>(tiles, acts, first, out),
                (TileFormat::Q4_1, _) => simd::tile_rows::<false, 1>(tiles, acts, first, out),
                (TileFormat::Q8_0, 4) => simd::tile_rows::<true, 4>(tiles, acts, first, out),
                (TileFormat::Q8_0, 3) => simd::tile_rows::<true, 3>(tiles, acts, first, out),
                (TileFormat::Q8_0, 2) => simd::tile_rows::<true, 2>(tiles, acts, first, out),
                (TileFormat::Q8_0, _) => simd::tile_rows::<true, 1>(tiles, acts, first, out),
            }
        }
    }

    /// The weights as f32, `[rows, cols]` (test reference).
    #[cfg(test)]
    fn dequantize(&self) -> Vec<f32> {
        let bpr = self.cols / BLOCK;
        let mut w = vec![0f32; self.rows * self.cols];
        for (i, tile) in self.lines.chunks_exact(self.format.lines()).enumerate() {
            let (t, b) = (i / bpr, i % bpr);
            let (qs, scales) = tile.split_at(tile.len() - 1);
            let scale =
                |at: usize| f16::from_le_bytes([scales[0].0[at], scales[0].0[at + 1]]).to_f32();
            for r in 0..ROWS {
                for k in 0..BLOCK {
                    let q = match self.format {
                        TileFormat::Q4_1 => {
                            let byte = qs[(k % 16) / 4].0[r * 4 + k % 4];
                            if k >= 16 { byte >> 4 } else { byte & 15 }
                        }
                        TileFormat::Q8_0 => qs[k / 4].0[r * 4 + k % 4],
                    };
                    w[(t * ROWS + r) * self.cols + b * BLOCK + k] =
                        scale(2 * r) * f32::from(q) + scale(32 + 2 * r);
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
    /// Needs the CPU features of [`QuantTiles::available`].
    fn new(x: &[f32], cols: usize) -> Self {
        assert!(QuantTiles::available(), "this CPU lacks AVX512-VNNI");
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_matrix(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> QTensor {
        let w = Tensor::randn(0f32, 1f32, (rows, cols), &Device::Cpu).unwrap();
        let w = (w + seed as f64 * 0.01).unwrap();
        QTensor::quantize(&w, dtype).unwrap()
    }

    /// `x W^T` in f64 from the dequantized weights and the same i8
    /// activations the kernel uses.
    fn reference(tiles: &QuantTiles, x: &[f32]) -> Vec<f32> {
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
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = random_matrix(32, 96, dtype, 1);
            let tiles = QuantTiles::from_qtensor(&q).unwrap();
            let expected = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
            let expected = expected.to_vec1::<f32>().unwrap();
            for (g, e) in tiles.dequantize().iter().zip(&expected) {
                // Q8_0's `d * (q + 128) - 128 d` rounds differently from `d * q`.
                assert!(
                    (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                    "{dtype:?}: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn matmul_matches_the_reference_for_every_batch_size() {
        if !QuantTiles::available() {
            eprintln!("skipped: this CPU lacks AVX512-VNNI");
            return;
        }
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (rows, cols) = (48, 160);
            let tiles = QuantTiles::from_qtensor(&random_matrix(rows, cols, dtype, 2)).unwrap();
            let x = Tensor::randn(0f32, 1f32, (7, cols), &Device::Cpu).unwrap();
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let expected = reference(&tiles, &xs);
            let got = tiles.forward(&x).unwrap();
            assert_eq!(got.dims(), [7, rows]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() <= 1e-5 * scale, "{dtype:?}: {g} vs {e}");
            }
            // Row by row gives the same bits as the batch of seven.
            for i in 0..7 {
                let one = tiles.forward(&x.narrow(0, i, 1).unwrap()).unwrap();
                let one = one.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(one, got[i * rows..(i + 1) * rows], "{dtype:?} row {i}");
            }
        }
    }

    #[test]
    fn decoding_passes_split_over_threads_and_stacked_matrices_agree() {
        if !QuantTiles::available() {
            eprintln!("skipped: this CPU lacks AVX512-VNNI");
            return;
        }
        // 80 row tiles of 8 Q8_0 blocks: 369 KB, so a pass of up to four
        // rows is split into one range per thread (smaller matrices stay on
        // the calling thread, larger batches share a cursor).
        let (top, bottom) = (
            QuantTiles::from_qtensor(&random_matrix(1024, 256, GgmlDType::Q8_0, 4)).unwrap(),
            QuantTiles::from_qtensor(&random_matrix(256, 256, GgmlDType::Q8_0, 5)).unwrap(),
        );
        let stacked = QuantTiles::stack(&[&top, &bottom]).unwrap();
        assert!(stacked.lines.len() * size_of::<Line>() > 128 << 10);
        let x = Tensor::randn(0f32, 1f32, (5, 256), &Device::Cpu).unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expected = reference(&stacked, &xs);
        let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs()));
        for m in 1..=5 {
            let got = stacked.forward(&x.narrow(0, 0, m).unwrap()).unwrap();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (g, e) in got.iter().zip(&expected[..m * 1280]) {
                assert!((g - e).abs() <= 1e-5 * scale, "{m} rows: {g} vs {e}");
            }
            // The stacked product is the two products side by side.
            let x = x.narrow(0, 0, m).unwrap();
            let parts =
                Tensor::cat(&[top.forward(&x).unwrap(), bottom.forward(&x).unwrap()], 1).unwrap();
            assert_eq!(parts.flatten_all().unwrap().to_vec1::<f32>().unwrap(), got);
        }
        let q4 = QuantTiles::from_qtensor(&random_matrix(16, 256, GgmlDType::Q4_1, 6)).unwrap();
        assert!(QuantTiles::stack(&[&top, &q4]).is_none(), "formats differ");
        let narrow = QuantTiles::from_qtensor(&random_matrix(16, 128, GgmlDType::Q8_0, 6)).unwrap();
        assert!(
            QuantTiles::stack(&[&top, &narrow]).is_none(),
            "widths differ"
        );
    }

    #[test]
    fn shapes_and_types_that_do_not_tile_are_refused() {
        let q = random_matrix(24, 64, GgmlDType::Q4_1, 3);
        assert!(!QuantTiles::fits(&q));
        assert!(QuantTiles::from_qtensor(&q).is_err());
        let q = random_matrix(32, 256, GgmlDType::Q4K, 3);
        assert!(!QuantTiles::fits(&q));
        assert!(QuantTiles::from_qtensor(&q).is_err());
    }
}
