//! Q4_1 and Q8_0 weights times f32 activations on AVX512-VNNI or AVX2,
//! reading the weights as they are stored.
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
//! interleaved per block (a tile) so that one instruction multiplies four
//! weights of each row by the same four activation bytes, with no
//! horizontal sums: on AVX512-VNNI one `vpdpbusd` covers all 16 rows
//! (`avx512.rs`), on AVX2 a `vpmaddubsw` covers 8 (`avx2.rs`). Both reach
//! the same exact integer sums and then round alike, so the two kernels
//! give the same bits. Each activation row is computed alike however many
//! rows a call has, so a batched prefill gives the same numbers as decoding
//! token by token.

use anyhow::{Result, bail, ensure};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::utils::barrier_pool;
use candle_core::{CpuStorage, Device, Storage, Tensor};
use half::f16;

use super::Kernel;

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
    /// [`Kernel::Avx2`] or [`Kernel::Avx512Vnni`], checked supported.
    kernel: Kernel,
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
            "QuantTiles({:?}, {}x{}, {})",
            self.format, self.rows, self.cols, self.kernel
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
    /// Per block: `sum(x8)`. The AVX2 kernel multiplies Q8_0's signed
    /// weights and adds `128 * sum(x8)` to reach the same integer as
    /// VNNI's `(q + 128) * x8`.
    isum: Vec<i32>,
}

impl QuantTiles {
    /// Whether `kernel` is one of the tile kernels (the others are
    /// candle's).
    pub fn runs_on(kernel: Kernel) -> bool {
        matches!(kernel, Kernel::Avx2 | Kernel::Avx512Vnni)
    }

    /// Whether a matrix of this type and shape can be tiled.
    pub fn fits(q: &QTensor) -> bool {
        matches!(q.shape().dims(), &[rows, cols] if rows % ROWS == 0 && cols % BLOCK == 0)
            && TileFormat::of(q.dtype()).is_some()
    }

    /// Tiles for `kernel`, which must be a tile kernel this CPU supports.
    pub fn from_qtensor(q: &QTensor, kernel: Kernel) -> Result<Self> {
        ensure!(
            Self::runs_on(kernel),
            "the {kernel} kernel does not multiply tiles"
        );
        ensure!(
            kernel.supported(),
            "the {kernel} kernel needs {}, which this CPU lacks",
            kernel.needs()
        );
        Self::pack(q, kernel)
    }

    /// The tiles, whether or not this CPU runs `kernel` (the layout is the
    /// same for every kernel).
    fn pack(q: &QTensor, kernel: Kernel) -> Result<Self> {
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
            kernel,
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
            .any(|p| p.format != first.format || p.cols != first.cols || p.kernel != first.kernel)
        {
            return None;
        }
        Some(Self {
            kernel: first.kernel,
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
        let acts = QuantizedRows::new(x, self.cols, self.kernel);
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
        if super::serial() {
            f(0..n_tiles);
        } else if m > ACT_ROWS {
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
        // SAFETY: `from_qtensor` checked that the CPU has the kernel's
        // features, and the slices the kernel reads were bounds-checked
        // above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            macro_rules! by_rows {
                ($kernel:ident, $q8:literal) => {
                    match rows {
                        4 => $kernel::tile_rows::<$q8, 4>(tiles, acts, first, out),
                        3 => $kernel::tile_rows::<$q8, 3>(tiles, acts, first, out),
                        2 => $kernel::tile_rows::<$q8, 2>(tiles, acts, first, out),
                        _ => $kernel::tile_rows::<$q8, 1>(tiles, acts, first, out),
                    }
                };
            }
            match (self.kernel, self.format) {
                (Kernel::Avx512Vnni, TileFormat::Q4_1) => by_rows!(avx512, false),
                (Kernel::Avx512Vnni, TileFormat::Q8_0) => by_rows!(avx512, true),
                (_, TileFormat::Q4_1) => by_rows!(avx2, false),
                (_, TileFormat::Q8_0) => by_rows!(avx2, true),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("tile kernels are built for x86-64 only: {tiles:?} {out:?}");
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
    /// Quantized with `kernel`'s instructions; every kernel rounds alike.
    fn new(x: &[f32], cols: usize, kernel: Kernel) -> Self {
        assert!(kernel.supported(), "this CPU lacks {}", kernel.needs());
        let blocks = x.len() / BLOCK;
        let mut acts = Self {
            blocks_per_row: cols / BLOCK,
            x8: vec![0; x.len()],
            dx: vec![0.0; blocks],
            sx: vec![0.0; blocks],
            isum: vec![0; blocks],
        };
        for (b, (xs, qs)) in x
            .chunks_exact(BLOCK)
            .zip(acts.x8.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            let (d, sum) = quantize_block(xs, qs, kernel);
            acts.dx[b] = d;
            acts.sx[b] = d * sum as f32;
            acts.isum[b] = sum;
        }
        acts
    }
}

/// Quantize 32 activations to i8 with one scale (the largest magnitude
/// maps to 127, rounding to nearest even). Returns the scale and the sum
/// of the i8 values.
fn quantize_block(xs: &[f32], qs: &mut [i8], kernel: Kernel) -> (f32, i32) {
    assert!(xs.len() == BLOCK && qs.len() == BLOCK);
    // SAFETY: the caller checked that the CPU has the kernel's features;
    // both slices hold a block (asserted).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match kernel {
            Kernel::Avx512Vnni => return avx512::quantize_block(xs, qs),
            Kernel::Avx2 => return avx2::quantize_block(xs, qs),
            Kernel::Generic => {}
        }
    }
    let _ = kernel;
    quantize_block_scalar(xs, qs)
}

/// [`quantize_block`] in plain Rust: the reference the vector versions
/// must equal bit for bit.
fn quantize_block_scalar(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let max = xs.iter().fold(0f32, |m, x| m.max(x.abs()));
    let d = max / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0;
    for (q, x) in qs.iter_mut().zip(xs) {
        let v = (x * inv).round_ties_even() as i32;
        *q = v as i8;
        sum += v;
    }
    (d, sum)
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests {
    use super::*;

    const TILE_KERNELS: [Kernel; 2] = [Kernel::Avx2, Kernel::Avx512Vnni];

    /// The tile kernels this CPU runs; says which it skips, so that a run
    /// on a CPU without one does not pass in silence.
    fn kernels_here(test: &str) -> Vec<Kernel> {
        TILE_KERNELS
            .into_iter()
            .filter(|k| {
                let here = k.supported();
                if !here {
                    eprintln!(
                        "{test}: skipped the {k} kernel: this CPU lacks {}",
                        k.needs()
                    );
                }
                here
            })
            .collect()
    }

    fn random_matrix(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> QTensor {
        let w = Tensor::randn(0f32, 1f32, (rows, cols), &Device::Cpu).unwrap();
        let w = (w + seed as f64 * 0.01).unwrap();
        QTensor::quantize(&w, dtype).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// `x W^T` in f64 from the dequantized weights and the same i8
    /// activations the kernel uses (quantized in plain Rust).
    fn reference(tiles: &QuantTiles, x: &[f32]) -> Vec<f32> {
        let w = tiles.dequantize();
        let acts = QuantizedRows::new(x, tiles.cols, Kernel::Generic);
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
            let tiles = QuantTiles::pack(&q, Kernel::Avx2).unwrap();
            let expected = values(&q.dequantize(&Device::Cpu).unwrap());
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
    fn every_kernel_quantizes_activations_as_plain_rust_does() {
        let x = values(&Tensor::randn(0f32, 3f32, (64, BLOCK), &Device::Cpu).unwrap());
        // Ties and extremes: halves round to even, the largest maps to 127,
        // an all-zero block has scale 0.
        let mut edge: Vec<f32> = (0..BLOCK).map(|i| i as f32 - 15.5).collect();
        edge[0] = 127.0;
        let zeros = vec![0f32; BLOCK];
        let want = QuantizedRows::new(&x, BLOCK, Kernel::Generic);
        for kernel in kernels_here("quantize") {
            let got = QuantizedRows::new(&x, BLOCK, kernel);
            assert_eq!(got.x8, want.x8, "{kernel}");
            assert_eq!(got.dx, want.dx, "{kernel}");
            assert_eq!(got.isum, want.isum, "{kernel}");
            for block in [&edge, &zeros] {
                let (mut a, mut b) = ([0i8; BLOCK], [0i8; BLOCK]);
                assert_eq!(
                    quantize_block(block, &mut a, kernel),
                    quantize_block_scalar(block, &mut b),
                    "{kernel}"
                );
                assert_eq!(a, b, "{kernel}");
            }
        }
        let (mut q, _) = ([0i8; BLOCK], ());
        assert_eq!(
            quantize_block_scalar(&edge, &mut q).1,
            q.iter().map(|&v| i32::from(v)).sum::<i32>()
        );
        assert_eq!(q[0], 127);
        assert_eq!(q[1], -14, "-14.5 rounds to even");
    }

    #[test]
    fn matmul_matches_the_reference_for_every_batch_size() {
        for kernel in kernels_here("matmul") {
            for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
                let (rows, cols) = (48, 160);
                let tiles =
                    QuantTiles::from_qtensor(&random_matrix(rows, cols, dtype, 2), kernel).unwrap();
                let x = Tensor::randn(0f32, 1f32, (7, cols), &Device::Cpu).unwrap();
                let expected = reference(&tiles, &values(&x));
                let got = tiles.forward(&x).unwrap();
                assert_eq!(got.dims(), [7, rows]);
                let got = values(&got);
                let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (g, e) in got.iter().zip(&expected) {
                    assert!(
                        (g - e).abs() <= 1e-5 * scale,
                        "{kernel} {dtype:?}: {g} vs {e}"
                    );
                }
                // Row by row gives the same bits as the batch of seven.
                for i in 0..7 {
                    let one = values(&tiles.forward(&x.narrow(0, i, 1).unwrap()).unwrap());
                    assert_eq!(
                        one,
                        got[i * rows..(i + 1) * rows],
                        "{kernel} {dtype:?} row {i}"
                    );
                }
            }
        }
    }

    /// The kernels reach the same integers and round alike, so they agree
    /// to the bit; this also holds Q8_0 weights of -128 (which ggml's
    /// quantizer never writes, but a file may hold) and activations of
    /// both extremes, where a saturating `vpmaddubsw` would show.
    #[test]
    fn avx2_and_avx512vnni_give_the_same_bits() {
        let kernels = kernels_here("same bits");
        if kernels.len() < 2 {
            eprintln!("same bits: skipped: needs both tile kernels on this CPU");
            return;
        }
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = random_matrix(64, 256, dtype, 7);
            let mut extreme = q.data().unwrap().into_owned();
            if dtype == GgmlDType::Q8_0 {
                // Block 0 of row 0: every weight -128 (byte 0x80).
                extreme[2..34].fill(0x80);
                // Block 1 of row 1: every weight 127.
                let at = (8 + 1) * 34;
                extreme[at + 2..at + 34].fill(0x7f);
            }
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtype,
                &extreme,
                vec![64, 256],
                &Device::Cpu,
            )
            .unwrap();
            let mut x = values(&Tensor::randn(0f32, 1f32, (5, 256), &Device::Cpu).unwrap());
            // One block of the largest magnitudes of both signs.
            for (i, v) in x[..BLOCK].iter_mut().enumerate() {
                *v = if i % 2 == 0 { 1.0 } else { -1.0 };
            }
            let a = QuantTiles::from_qtensor(&q, Kernel::Avx2).unwrap();
            let b = QuantTiles::from_qtensor(&q, Kernel::Avx512Vnni).unwrap();
            let x = Tensor::from_vec(x, (5, 256), &Device::Cpu).unwrap();
            for m in 1..=5 {
                let x = x.narrow(0, 0, m).unwrap();
                assert_eq!(
                    values(&a.forward(&x).unwrap()),
                    values(&b.forward(&x).unwrap()),
                    "{dtype:?}, {m} rows"
                );
            }
        }
    }

    #[test]
    fn decoding_passes_split_over_threads_and_stacked_matrices_agree() {
        for kernel in kernels_here("split") {
            // 80 row tiles of 8 Q8_0 blocks: 369 KB, so a pass of up to four
            // rows is split into one range per thread (smaller matrices stay on
            // the calling thread, larger batches share a cursor).
            let matrix = |rows, dtype, seed| {
                QuantTiles::from_qtensor(&random_matrix(rows, 256, dtype, seed), kernel).unwrap()
            };
            let (top, bottom) = (
                matrix(1024, GgmlDType::Q8_0, 4),
                matrix(256, GgmlDType::Q8_0, 5),
            );
            let stacked = QuantTiles::stack(&[&top, &bottom]).unwrap();
            assert!(stacked.lines.len() * size_of::<Line>() > 128 << 10);
            let x = Tensor::randn(0f32, 1f32, (5, 256), &Device::Cpu).unwrap();
            let expected = reference(&stacked, &values(&x));
            let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs()));
            for m in 1..=5 {
                let got = values(&stacked.forward(&x.narrow(0, 0, m).unwrap()).unwrap());
                for (g, e) in got.iter().zip(&expected[..m * 1280]) {
                    assert!(
                        (g - e).abs() <= 1e-5 * scale,
                        "{kernel}, {m} rows: {g} vs {e}"
                    );
                }
                // The stacked product is the two products side by side.
                let x = x.narrow(0, 0, m).unwrap();
                let parts =
                    Tensor::cat(&[top.forward(&x).unwrap(), bottom.forward(&x).unwrap()], 1)
                        .unwrap();
                assert_eq!(values(&parts), got, "{kernel}");
            }
            let q4 = matrix(16, GgmlDType::Q4_1, 6);
            assert!(QuantTiles::stack(&[&top, &q4]).is_none(), "formats differ");
            let narrow =
                QuantTiles::from_qtensor(&random_matrix(16, 128, GgmlDType::Q8_0, 6), kernel)
                    .unwrap();
            assert!(
                QuantTiles::stack(&[&top, &narrow]).is_none(),
                "widths differ"
            );
        }
    }

    #[test]
    fn shapes_types_and_kernels_that_do_not_tile_are_refused() {
        let q = random_matrix(24, 64, GgmlDType::Q4_1, 3);
        assert!(!QuantTiles::fits(&q));
        assert!(QuantTiles::from_qtensor(&q, Kernel::best()).is_err());
        let q = random_matrix(32, 256, GgmlDType::Q4K, 3);
        assert!(!QuantTiles::fits(&q));
        assert!(QuantTiles::from_qtensor(&q, Kernel::best()).is_err());
        let q = random_matrix(32, 256, GgmlDType::Q4_1, 3);
        assert!(QuantTiles::from_qtensor(&q, Kernel::Generic).is_err());
        for kernel in TILE_KERNELS {
            assert_eq!(
                QuantTiles::from_qtensor(&q, kernel).is_ok(),
                kernel.supported(),
                "{kernel}"
            );
        }
    }
}
