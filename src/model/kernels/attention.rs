//! Attention of new tokens to the KV cache, for every forward pass.
//!
//! Decoding, keystroke updates and repair steps run 1-8 new tokens against
//! up to several thousand cached ones. Through candle's matmul that shape
//! packs the whole key matrix for every call (measured at 2k cached tokens:
//! packing, gemm and softmax were more than half of a decode step). Here each
//! cached key and value row is read once per kv head and used by every query
//! row of that head's group, in tiles with a running softmax, split into
//! pieces that run in parallel and are merged by their softmax statistics.
//! Prefill chunks take the same path (measured no slower than the matmul
//! one), so that every update mode computes attention the same way: with
//! 8-bit activations downstream, two implementations' rounding differences
//! alone were enough to flip near-tied predictions between PIE and Full.

use anyhow::{Result, bail, ensure};
use candle_core::utils::barrier_pool;
use candle_core::{CpuStorage, Device, Layout, Storage, Tensor};
use std::sync::OnceLock;
use wide::f32x8;

/// One slice of keys and values, `[kv_heads, len, head_dim]`, that the
/// queries attend to; with `causal_offset: Some(o)` query token `i` sees
/// only its rows `j <= o + i`.
pub(crate) struct KvPart {
    pub k: Tensor,
    pub v: Tensor,
    pub causal_offset: Option<usize>,
}

/// A part's rows as raw slices: head `h`, row `j` starts at
/// `offset + h * head_stride + j * head_dim`.
struct RawPart<'a> {
    k: &'a [f32],
    v: &'a [f32],
    k_offset: usize,
    v_offset: usize,
    k_head_stride: usize,
    v_head_stride: usize,
    len: usize,
    causal_offset: Option<usize>,
}

impl RawPart<'_> {
    /// Rows visible to query token `i`.
    fn visible(&self, i: usize) -> usize {
        match self.causal_offset {
            Some(o) => self.len.min(o + i + 1),
            None => self.len,
        }
    }
}

/// `softmax(q K^T * scale) V` per kv head, for `q` of shape
/// `[kv_heads, group * n, head_dim]` (row `g * n + i` is query head `g` of
/// the group at new token `i`). Returns the same shape.
pub(crate) fn grouped_attention(
    q: &Tensor,
    parts: &[KvPart],
    n: usize,
    scale: f32,
) -> Result<Tensor> {
    let (kv_heads, rows, head_dim) = q.dims3()?;
    ensure!(rows.is_multiple_of(n), "{rows} query rows for {n} tokens");
    ensure!(
        head_dim.is_multiple_of(8),
        "attention needs a head size that is a multiple of 8, not {head_dim}"
    );
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let q_data = cpu_f32(&q_storage)?;
    let q_data = &q_data[q_layout.start_offset()..][..kv_heads * rows * head_dim];

    let guards: Vec<_> = parts
        .iter()
        .map(|p| (p.k.storage_and_layout(), p.v.storage_and_layout()))
        .collect();
    let mut raw = Vec::with_capacity(parts.len());
    for (p, ((ks, kl), (vs, vl))) in parts.iter().zip(&guards) {
        let (k_offset, k_head_stride, len) = rows_layout(kl, kv_heads, head_dim)?;
        let (v_offset, v_head_stride, v_len) = rows_layout(vl, kv_heads, head_dim)?;
        ensure!(
            len == v_len,
            "keys ({len}) and values ({v_len}) differ in length"
        );
        raw.push(RawPart {
            k: cpu_f32(ks)?,
            v: cpu_f32(vs)?,
            k_offset,
            v_offset,
            k_head_stride,
            v_head_stride,
            len,
            causal_offset: p.causal_offset,
        });
    }

    // Each task covers one kv head, a block of up to TOKENS new tokens and
    // a run of up to PIECE rows of one part, so that both threads have work
    // even with three kv heads, in decoding (one token, many keys) and in a
    // prefill chunk (many tokens, few keys) alike; the pieces of a head and
    // token block are merged by their softmax statistics.
    let group = rows / n;
    let token_blocks = n.div_ceil(TOKENS);
    let block_range = |b: usize| b * TOKENS..((b + 1) * TOKENS).min(n);
    let tasks: Vec<(usize, usize, usize, usize, usize)> = (0..kv_heads)
        .flat_map(|h| (0..token_blocks).map(move |b| (h, b)))
        .flat_map(|(h, b)| {
            let last_token = block_range(b).end - 1;
            raw.iter().enumerate().flat_map(move |(pi, p)| {
                let visible = p.visible(last_token);
                (0..visible.div_ceil(PIECE))
                    .map(move |c| (h, b, pi, c * PIECE, ((c + 1) * PIECE).min(visible)))
            })
        })
        .collect();
    // The query rows of each (head, token block), contiguous: row
    // `g * len + i` is query head `g` at the block's token `i`.
    let block_queries: Vec<Vec<f32>> = (0..kv_heads)
        .flat_map(|h| (0..token_blocks).map(move |b| (h, b)))
        .map(|(h, b)| {
            let tokens = block_range(b);
            let head = &q_data[h * rows * head_dim..(h + 1) * rows * head_dim];
            (0..group)
                .flat_map(|g| {
                    let first = (g * n + tokens.start) * head_dim;
                    head[first..first + tokens.len() * head_dim].iter().copied()
                })
                .collect()
        })
        .collect();
    // On candle's own worker threads: with a second pool (rayon) the two
    // oversubscribe the cores, candle's workers spinning between matmuls
    // while the other pool's threads attend.
    let partials: Vec<OnceLock<Partial>> = tasks.iter().map(|_| OnceLock::new()).collect();
    let run = |range: std::ops::Range<usize>| {
        for t in range {
            let (h, b, pi, j0, j1) = tasks[t];
            let q = &block_queries[h * token_blocks + b];
            let tokens = block_range(b);
            let _ = partials[t].set(attend_piece(
                q,
                &raw[pi],
                h,
                j0..j1,
                tokens,
                head_dim,
                scale,
            ));
        }
    };
    // A decoding step against a short context is a few microseconds of
    // work, less than handing half of it to the other thread costs.
    let scored: usize = tasks
        .iter()
        .map(|&(_, b, _, j0, j1)| group * block_range(b).len() * (j1 - j0))
        .sum();
    if scored < SERIAL_SCORES || super::serial() {
        run(0..tasks.len());
    } else {
        barrier_pool().execute_chunked(tasks.len(), run);
    }
    let partials: Vec<((usize, usize), Partial)> = tasks
        .iter()
        .zip(partials)
        .map(|(&(h, b, ..), p)| ((h, b), p.into_inner().expect("every attention task ran")))
        .collect();
    let mut out = vec![0f32; kv_heads * rows * head_dim];
    for (h, out) in out.chunks_exact_mut(rows * head_dim).enumerate() {
        for b in 0..token_blocks {
            let tokens = block_range(b);
            let mut merged = vec![0f32; group * tokens.len() * head_dim];
            merge(
                partials
                    .iter()
                    .filter(|(k, _)| *k == (h, b))
                    .map(|(_, p)| p),
                head_dim,
                &mut merged,
            );
            for (g, rows) in merged.chunks_exact(tokens.len() * head_dim).enumerate() {
                let first = (g * n + tokens.start) * head_dim;
                out[first..first + rows.len()].copy_from_slice(rows);
            }
        }
    }
    Ok(Tensor::from_vec(
        out,
        (kv_heads, rows, head_dim),
        &Device::Cpu,
    )?)
}

/// Keys per parallel task.
const PIECE: usize = 512;
/// Below this many query-key scores a pass runs on the calling thread.
const SERIAL_SCORES: usize = 4096;
/// New tokens per parallel task.
const TOKENS: usize = 64;
/// Keys whose scores are computed before they are folded into the running
/// softmax: the scores stay in L1 and the rescaling happens once per tile.
const TILE: usize = 64;
/// Output dimensions summed together in registers (eight 8-wide vectors).
const LANES: usize = 64;
/// Keys scored together against one query row: their dot products are
/// independent chains of fused multiply-adds, where one key at a time was a
/// single chain that waited on each add (measured below).
const KEY_BLOCK: usize = 8;

/// Softmax attention over some keys, unnormalized: per query row the largest
/// score, the sum of `exp(score - max)`, and the `exp`-weighted sum of values.
struct Partial {
    max: Vec<f32>,
    sum: Vec<f32>,
    out: Vec<f32>,
}

/// Attention of the query rows `q` (`[group * tokens.len(), head_dim]`,
/// row `g * tokens.len() + i` at new token `tokens.start + i`) to keys
/// `keys` of part `p`, head `h`.
fn attend_piece(
    q: &[f32],
    p: &RawPart<'_>,
    h: usize,
    keys: std::ops::Range<usize>,
    tokens: std::ops::Range<usize>,
    head_dim: usize,
    scale: f32,
) -> Partial {
    let rows = q.len() / head_dim;
    let n = tokens.len();
    let mut part = Partial {
        max: vec![f32::NEG_INFINITY; rows],
        sum: vec![0.0; rows],
        out: vec![0.0; rows * head_dim],
    };
    let visible: Vec<usize> = (0..rows).map(|r| p.visible(tokens.start + r % n)).collect();
    let q = lanes(q);
    let q_lanes = head_dim / 8;
    let mut scores = vec![0f32; rows * TILE];
    let mut t0 = keys.start;
    while t0 < keys.end {
        let t1 = (t0 + TILE).min(keys.end);
        let width = t1 - t0;
        let keys = &p.k[p.k_offset + h * p.k_head_stride + t0 * head_dim..][..width * head_dim];
        for r in 0..rows {
            let q = &q[r * q_lanes..(r + 1) * q_lanes];
            let s = &mut scores[r * TILE..r * TILE + width];
            let seen = visible[r].clamp(t0, t1) - t0;
            let mut blocks = keys[..seen * head_dim].chunks_exact(KEY_BLOCK * head_dim);
            let mut out = s[..seen].chunks_exact_mut(KEY_BLOCK);
            for (block, out) in (&mut blocks).zip(&mut out) {
                for (o, d) in out.iter_mut().zip(dot_block(q, block)) {
                    *o = d * scale;
                }
            }
            for (k, o) in blocks
                .remainder()
                .chunks_exact(head_dim)
                .zip(out.into_remainder())
            {
                *o = dot(q, k) * scale;
            }
            s[seen..].fill(f32::NEG_INFINITY);
        }
        for r in 0..rows {
            let s = &mut scores[r * TILE..r * TILE + width];
            let tile_max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if tile_max == f32::NEG_INFINITY {
                // Nothing in this tile is visible to this row (a later
                // token's keys): it must weigh the values by zero.
                s.fill(0.0);
                continue;
            }
            let old = part.max[r];
            if tile_max > old {
                if old > f32::NEG_INFINITY {
                    let c = (old - tile_max).exp();
                    part.sum[r] *= c;
                    part.out[r * head_dim..(r + 1) * head_dim]
                        .iter_mut()
                        .for_each(|o| *o *= c);
                }
                part.max[r] = tile_max;
            }
            exp_shifted(s, part.max[r]);
            part.sum[r] += s.iter().sum::<f32>();
        }
        // Weighted values, one query row and 64 dimensions at a time so the
        // sums stay in registers while the tile's value rows (in L1) pass.
        let values = &p.v[p.v_offset + h * p.v_head_stride + t0 * head_dim..][..width * head_dim];
        for r in 0..rows {
            let w = &scores[r * TILE..r * TILE + width];
            let out = &mut part.out[r * head_dim..(r + 1) * head_dim];
            for (d0, out) in out.chunks_mut(LANES).enumerate() {
                let values = &values[d0 * LANES..];
                if out.len() == LANES {
                    weigh_values::<{ LANES / 8 }>(w, values, head_dim, out);
                } else {
                    for (c, out) in out.chunks_exact_mut(8).enumerate() {
                        weigh_values::<1>(w, &values[c * 8..], head_dim, out);
                    }
                }
            }
        }
        t0 = t1;
    }
    part
}

/// Combine the pieces of one head and normalize.
fn merge<'a>(pieces: impl Iterator<Item = &'a Partial> + Clone, head_dim: usize, out: &mut [f32]) {
    let rows = out.len() / head_dim;
    for r in 0..rows {
        let max = pieces
            .clone()
            .map(|p| p.max[r])
            .fold(f32::NEG_INFINITY, f32::max);
        let o = &mut out[r * head_dim..(r + 1) * head_dim];
        o.fill(0.0);
        let mut sum = 0f32;
        for p in pieces.clone() {
            if p.max[r] == f32::NEG_INFINITY {
                continue;
            }
            let c = (p.max[r] - max).exp();
            sum += c * p.sum[r];
            axpy(c, &p.out[r * head_dim..(r + 1) * head_dim], o);
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `s = exp(s - shift)` elementwise, `-inf` to 0.
fn exp_shifted(s: &mut [f32], shift: f32) {
    for v in s.iter_mut() {
        *v = exp_approx(*v - shift);
    }
}

/// `exp(x)` for `x <= 0` in plain arithmetic (Cephes' expf: range reduction
/// by ln 2, degree-6 polynomial, relative error about 1e-7) so that loops
/// over it vectorize; libm's `expf` is a call per element.
#[inline]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MIN: f32 = -87.0;
    let clamped = x.max(MIN);
    let n = (clamped * LOG2E + 0.5).floor();
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let p = p.mul_add(r * r, r + 1.0);
    let pow2 = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < MIN { 0.0 } else { p * pow2 }
}

fn cpu_f32(storage: &Storage) -> Result<&[f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(data)) => Ok(data),
        _ => bail!("attention kernel needs f32 tensors on the CPU"),
    }
}

/// (start offset, head stride, rows) of a `[kv_heads, len, head_dim]` view
/// whose rows are contiguous.
fn rows_layout(layout: &Layout, kv_heads: usize, head_dim: usize) -> Result<(usize, usize, usize)> {
    let dims = layout.dims();
    let stride = layout.stride();
    ensure!(
        dims.len() == 3 && dims[0] == kv_heads && dims[2] == head_dim,
        "cache view {dims:?} does not fit {kv_heads} heads of {head_dim}"
    );
    ensure!(
        stride[2] == 1 && (dims[1] <= 1 || stride[1] == head_dim),
        "cache view rows are not contiguous (strides {stride:?})"
    );
    Ok((layout.start_offset(), stride[0], dims[1]))
}

/// `x` as 8-lane vectors (its length is a multiple of 8).
fn lanes(x: &[f32]) -> Vec<f32x8> {
    x.chunks_exact(8).map(load).collect()
}

#[inline]
fn load(x: &[f32]) -> f32x8 {
    f32x8::from(<[f32; 8]>::try_from(&x[..8]).expect("eight floats"))
}

/// Dot products of a query row with the `KEY_BLOCK` key rows of `keys`, one
/// vector accumulator per key so that their multiply-adds overlap. Written
/// with `wide`'s vectors: the same loop over plain arrays did not vectorize
/// and scored keys 2-3x slower (measured outside the crate, 30 layers of
/// 2048 keys: 16 ms against 7).
#[inline]
fn dot_block(q: &[f32x8], keys: &[f32]) -> [f32; KEY_BLOCK] {
    let head_dim = q.len() * 8;
    let mut acc = [f32x8::ZERO; KEY_BLOCK];
    for (c, &q) in q.iter().enumerate() {
        for (b, acc) in acc.iter_mut().enumerate() {
            *acc = q.mul_add(load(&keys[b * head_dim + c * 8..]), *acc);
        }
    }
    acc.map(|a| a.reduce_add())
}

/// One key's dot product, in the same order of operations as [`dot_block`].
#[inline]
fn dot(q: &[f32x8], key: &[f32]) -> f32 {
    let mut acc = f32x8::ZERO;
    for (c, &q) in q.iter().enumerate() {
        acc = q.mul_add(load(&key[c * 8..]), acc);
    }
    acc.reduce_add()
}

/// `out += sum_j w[j] * values[j * stride..][..8 * V]`, the sums held in
/// `V` vector registers while the value rows pass: a plain array of sums
/// stayed on the stack, each multiply-add waiting on a store and a reload.
#[inline]
fn weigh_values<const V: usize>(w: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    let mut acc = [f32x8::ZERO; V];
    for (j, &w) in w.iter().enumerate() {
        let w = f32x8::splat(w);
        let row = &values[j * stride..][..8 * V];
        for (c, acc) in acc.iter_mut().enumerate() {
            *acc = w.mul_add(load(&row[c * 8..]), *acc);
        }
    }
    for (out, acc) in out.chunks_exact_mut(8).zip(acc) {
        let sum = load(out) + acc;
        out.copy_from_slice(&sum.to_array());
    }
}

#[inline]
fn axpy(w: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = w.mul_add(*x, *y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_approx_is_within_a_few_ulps_of_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp_approx(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_approx(-100.0), 0.0);
        assert_eq!(exp_approx(0.0), 1.0);
    }
}
