//! Llama-family forward pass (Llama, SmolLM2, DeepSeek-Coder, Qwen2) over an
//! external KV cache.

use anyhow::{Result, bail};
use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, Module, Tensor};

use super::config::ModelConfig;
use super::kernels::{Kernel, KvPart, QuantTiles, grouped_attention, swiglu};
use super::kv_cache::KvCache;
use super::rope::{Rope, RopeTables};

/// A weight matrix `[out, in]` applied as `x W^T`.
pub(crate) enum Linear {
    /// On candle's kernels. `pad_in` zero columns were appended to `W` at
    /// load so that `in` is a multiple of 256: candle's repacked
    /// AVX512-VNNI Q8_0 kernel only takes such shapes, and is several times
    /// faster than its per-row path (SmolLM2's 576-wide rows miss it).
    Candle { weight: QMatMul, pad_in: usize },
    /// Q4_1 or Q8_0 as stored, on our own kernel (see [`QuantTiles`]).
    Tiled(QuantTiles),
    /// Matrices over the same input that could not be merged into one
    /// (see [`Linear::stack`]); their outputs are concatenated.
    Stack(Vec<Linear>),
}

impl Linear {
    pub fn new(weight: QMatMul) -> Self {
        Self::Candle { weight, pad_in: 0 }
    }

    /// The matrices one above the other, so that `x W^T` gives their
    /// products side by side from one kernel call. Decoding multiplies
    /// small matrices, where each call's hand-over to the second thread
    /// costs about as much as its arithmetic, so q/k/v and gate/up are
    /// stacked at load. Quantized matrices of different formats stay
    /// separate calls.
    pub fn stack(parts: Vec<Linear>) -> Result<Self> {
        let tiles: Vec<&QuantTiles> = parts
            .iter()
            .filter_map(|p| match p {
                Self::Tiled(t) => Some(t),
                _ => None,
            })
            .collect();
        if tiles.len() == parts.len()
            && let Some(stacked) = QuantTiles::stack(&tiles)
        {
            return Ok(Self::Tiled(stacked));
        }
        let dense: Vec<&Tensor> = parts
            .iter()
            .filter_map(|p| match p {
                Self::Candle {
                    weight: QMatMul::Tensor(w),
                    pad_in: 0,
                } => Some(w),
                _ => None,
            })
            .collect();
        if dense.len() == parts.len() {
            return Ok(Self::new(QMatMul::Tensor(Tensor::cat(&dense, 0)?)));
        }
        Ok(Self::Stack(parts))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle { weight, pad_in: 0 } => Ok(weight.forward(x)?),
            Self::Candle { weight, pad_in } => {
                Ok(weight.forward(&x.pad_with_zeros(D::Minus1, 0, *pad_in)?)?)
            }
            Self::Tiled(tiles) => tiles.forward(x),
            Self::Stack(parts) => {
                let outs = parts
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&outs, D::Minus1)?)
            }
        }
    }
}

pub(crate) struct Attention {
    /// q, k and v stacked (see [`Linear::stack`]): `[q_dim + 2 kv_dim, hidden]`.
    pub qkv: Linear,
    /// Qwen2's biases on q, k and v, concatenated like `qkv`.
    pub qkv_bias: Option<Tensor>,
    pub o: Linear,
}

pub(crate) struct Layer {
    pub attn_norm: Tensor,
    pub attn: Attention,
    pub ffn_norm: Tensor,
    /// gate and up stacked: `[2 ffn, hidden]`.
    pub gate_up: Linear,
    pub down: Linear,
}

/// A loaded model. Immutable, so one `Arc<Model>` serves several sessions.
pub struct Model {
    pub(crate) config: ModelConfig,
    pub(crate) rope: Rope,
    /// `[vocab, hidden]`, f32.
    pub(crate) embed: Tensor,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Tensor,
    pub(crate) output: Linear,
    /// What multiplies the quantized matrices.
    pub(crate) kernel: Kernel,
    pub(crate) device: Device,
}

/// Where the keys and values of the tokens of one forward pass go, and what
/// they attend to. A slot index is always the position of its token.
pub enum Attend<'a> {
    /// Write the new entries into `cache` at slots `at..at + n` (positions
    /// `at..`) and attend causally to `cache[0..at + n)`.
    Cache { cache: &'a mut KvCache, at: usize },
    /// Attend to `base[0..base_len)` and to `scratch`, where the new entries
    /// are appended; their positions continue from `base_len + scratch.len()`.
    /// `base` is not modified.
    Scratch {
        base: &'a KvCache,
        base_len: usize,
        scratch: &'a mut KvCache,
    },
    /// Several runs of new entries in one pass: the tokens are the runs
    /// one after the other, run `(at, len)` goes to slots `at..at + len`
    /// (ascending, not overlapping, each within or just after the cache),
    /// and each attends causally to `cache[0..at + len)`, which holds the
    /// earlier runs' new entries of the same layer. The same as one
    /// `Cache` pass per run, left to right, with the weights read once.
    Spans {
        cache: &'a mut KvCache,
        spans: &'a [(usize, usize)],
    },
    /// One new entry per scratch area, in one pass: token `i` is appended
    /// to `scratches[i]` at position `base_len + scratches[i].len()` and
    /// attends to `base[0..base_len)` and to that scratch area alone. The
    /// same as one `Scratch` pass per token, with the weights read once: a
    /// beam search steps all its hypotheses together. `base` is not
    /// modified.
    Rows {
        base: &'a KvCache,
        base_len: usize,
        scratches: &'a mut [KvCache],
    },
}

/// A forward pass into the scratch area stopped between two layers because
/// its caller asked (a newer keystroke arrived). Nothing was committed: the
/// scratch area keeps its previous length.
#[derive(Debug, thiserror::Error)]
#[error("forward pass interrupted")]
pub struct Interrupted;

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    None,
    /// `[vocab]` for the last token.
    Last,
    /// `[n, vocab]`.
    All,
}

fn linear(w: &Linear, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = w.forward(x)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

impl Model {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The kernel that multiplies the quantized matrices.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// An empty cache shaped for this model.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        KvCache::new(
            self.config.n_layers,
            self.config.n_kv_heads,
            self.config.head_dim,
            self.config.hidden,
            capacity,
            &self.device,
        )
    }

    /// Run `tokens` through the model; see [`Attend`] for where they sit.
    pub fn forward(
        &self,
        tokens: &[u32],
        attend: Attend<'_>,
        logits: Logits,
    ) -> Result<Option<Tensor>> {
        self.forward_interruptible(tokens, attend, logits, &|| false)
    }

    /// [`Model::forward`] that, for [`Attend::Scratch`], asks `interrupted`
    /// between layers and stops with an [`Interrupted`] error when it says
    /// so: a prediction step then gives way to a keystroke within about a
    /// layer's time instead of a whole pass. Cache passes always finish (the
    /// cache must stay whole).
    pub fn forward_interruptible(
        &self,
        tokens: &[u32],
        mut attend: Attend<'_>,
        logits: Logits,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Option<Tensor>> {
        let n = tokens.len();
        if n == 0 {
            bail!("forward pass over zero tokens");
        }
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            bail!(
                "token id {bad} outside the vocabulary of {}",
                self.config.vocab_size
            );
        }
        let start = match &attend {
            Attend::Cache { cache, at } => {
                if *at > cache.len() {
                    bail!(
                        "forward at slot {at} leaves a gap after {} cached entries",
                        cache.len()
                    );
                }
                *at
            }
            Attend::Scratch {
                base,
                base_len,
                scratch,
            } => {
                if *base_len > base.len() {
                    bail!(
                        "scratch base of {base_len} exceeds cache length {}",
                        base.len()
                    );
                }
                base_len + scratch.len()
            }
            Attend::Spans { cache, spans } => {
                let mut end = 0;
                for &(at, len) in spans.iter() {
                    if at < end || at > cache.len() || len == 0 {
                        bail!(
                            "forward span ({at}, {len}) out of order or leaves a gap (cache {})",
                            cache.len()
                        );
                    }
                    end = at + len;
                }
                if spans.iter().map(|s| s.1).sum::<usize>() != n {
                    bail!("forward spans do not cover the {n} tokens");
                }
                0
            }
            Attend::Rows {
                base,
                base_len,
                scratches,
            } => {
                if *base_len > base.len() {
                    bail!(
                        "scratch base of {base_len} exceeds cache length {}",
                        base.len()
                    );
                }
                if scratches.len() != n {
                    bail!("{n} tokens for {} scratch areas: one each", scratches.len());
                }
                0
            }
        };
        let tables = match &attend {
            Attend::Spans { spans, .. } => self.rope.tables(
                spans
                    .iter()
                    .flat_map(|&(at, len)| (at..at + len).map(|p| p as f64)),
            )?,
            Attend::Rows {
                base_len,
                scratches,
                ..
            } => self
                .rope
                .tables(scratches.iter().map(|s| (base_len + s.len()) as f64))?,
            _ => self.rope.range_tables(start, n)?,
        };
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        let eps = self.config.rms_eps as f32;
        let may_stop = matches!(attend, Attend::Scratch { .. } | Attend::Rows { .. });
        for (li, layer) in self.layers.iter().enumerate() {
            if may_stop && interrupted() {
                return Err(Interrupted.into());
            }
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let h = self.attention(li, layer, &h, &tables, &mut attend)?;
            x = (x + h)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let h = swiglu(&layer.gate_up.forward(&h)?)?;
            x = (x + layer.down.forward(&h)?)?;
        }
        match &mut attend {
            Attend::Cache { cache, at } => {
                cache.write_hidden(*at, &x)?;
                let end = (*at + n).max(cache.len());
                cache.set_len(end)?;
            }
            Attend::Scratch { scratch, .. } => {
                let end = scratch.len() + n;
                scratch.set_len(end)?;
            }
            Attend::Rows { scratches, .. } => {
                for scratch in scratches.iter_mut() {
                    let end = scratch.len() + 1;
                    scratch.set_len(end)?;
                }
            }
            Attend::Spans { cache, spans } => {
                let mut row = 0;
                let mut end = cache.len();
                for &(at, len) in spans.iter() {
                    cache.write_hidden(at, &x.narrow(0, row, len)?)?;
                    row += len;
                    end = end.max(at + len);
                }
                cache.set_len(end)?;
            }
        }
        let x = match logits {
            Logits::None => return Ok(None),
            Logits::Last => x.narrow(0, n - 1, 1)?,
            Logits::All => x,
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        let out = self.output.forward(&x)?;
        Ok(Some(if logits == Logits::Last {
            out.squeeze(0)?
        } else {
            out
        }))
    }

    /// Next-token logits (`[vocab]`) after the token in `slot`, from the
    /// hidden state its forward pass left in `cache`: the same numbers as
    /// re-running that token after `cache[0..slot)`, at the cost of the
    /// output layer alone. Valid while everything before `slot` is unchanged
    /// since that pass.
    pub fn logits_after(&self, cache: &KvCache, slot: usize) -> Result<Tensor> {
        let eps = self.config.rms_eps as f32;
        let x = candle_nn::ops::rms_norm(&cache.hidden(slot)?, &self.norm, eps)?;
        Ok(self.output.forward(&x)?.squeeze(0)?)
    }

    fn attention(
        &self,
        li: usize,
        layer: &Layer,
        h: &Tensor,
        tables: &RopeTables,
        attend: &mut Attend<'_>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let n = h.dim(0)?;
        let a = &layer.attn;
        let qkv = linear(&a.qkv, h, a.qkv_bias.as_ref())?;
        let [q_dim, kv_dim, _] = c.qkv_widths();
        let q = qkv.narrow(D::Minus1, 0, q_dim)?;
        let k = qkv.narrow(D::Minus1, q_dim, kv_dim)?;
        let v = qkv.narrow(D::Minus1, q_dim + kv_dim, kv_dim)?;
        let q = q
            .reshape((n, c.n_heads, c.head_dim))?
            .transpose(0, 1)?
            .contiguous()?;
        let k = k
            .reshape((n, c.n_kv_heads, c.head_dim))?
            .transpose(0, 1)?
            .contiguous()?;
        let v = v
            .reshape((n, c.n_kv_heads, c.head_dim))?
            .transpose(0, 1)?
            .contiguous()?;
        let q = self.rope.rotate(&q, tables)?;
        let k = self.rope.rotate(&k, tables)?;

        let parts = match attend {
            Attend::Cache { cache, at } => {
                cache.write(li, *at, &k, &v)?;
                let (k, v) = cache.view(li, *at + n)?;
                vec![KvPart {
                    k,
                    v,
                    causal_offset: Some(*at),
                }]
            }
            Attend::Scratch {
                base,
                base_len,
                scratch,
            } => {
                let s0 = scratch.len();
                scratch.write(li, s0, &k, &v)?;
                let (sk, sv) = scratch.view(li, s0 + n)?;
                let mut parts = Vec::with_capacity(2);
                if *base_len > 0 {
                    let (bk, bv) = base.view(li, *base_len)?;
                    parts.push(KvPart {
                        k: bk,
                        v: bv,
                        causal_offset: None,
                    });
                }
                parts.push(KvPart {
                    k: sk,
                    v: sv,
                    causal_offset: Some(s0),
                });
                parts
            }
            Attend::Spans { cache, spans } => {
                return self.span_attention(layer, li, &q, &k, &v, cache, spans);
            }
            Attend::Rows {
                base,
                base_len,
                scratches,
            } => {
                let base_part = match *base_len {
                    0 => None,
                    len => Some(base.view(li, len)?),
                };
                return self.row_attention(layer, li, &q, &k, &v, base_part, scratches);
            }
        };

        // Grouped-query attention without copying the cache per query head:
        // the query heads of one kv head become extra rows.
        let group = c.n_heads / c.n_kv_heads;
        let q = q.reshape((c.n_kv_heads, group * n, c.head_dim))?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let y = grouped_attention(&q, &parts, n, scale as f32)?;
        let y = y
            .reshape((c.n_heads, n, c.head_dim))?
            .transpose(0, 1)?
            .reshape((n, c.n_heads * c.head_dim))?;
        a.o.forward(&y)
    }

    /// Attention for [`Attend::Spans`]: every run's keys and values are
    /// written first, then each run's queries attend to the cache up to
    /// its own end.
    #[allow(clippy::too_many_arguments)]
    fn span_attention(
        &self,
        layer: &Layer,
        li: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut KvCache,
        spans: &[(usize, usize)],
    ) -> Result<Tensor> {
        let c = &self.config;
        let mut row = 0;
        for &(at, len) in spans {
            cache.write(li, at, &k.narrow(1, row, len)?, &v.narrow(1, row, len)?)?;
            row += len;
        }
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let mut outputs = Vec::with_capacity(spans.len());
        let mut row = 0;
        for &(at, len) in spans {
            let (ck, cv) = cache.view(li, at + len)?;
            let part = KvPart {
                k: ck,
                v: cv,
                causal_offset: Some(at),
            };
            let qj = q.narrow(1, row, len)?.contiguous()?.reshape((
                c.n_kv_heads,
                group * len,
                c.head_dim,
            ))?;
            let y = grouped_attention(&qj, &[part], len, scale as f32)?;
            outputs.push(y.reshape((c.n_heads, len, c.head_dim))?);
            row += len;
        }
        let y = Tensor::cat(&outputs, 1)?
            .transpose(0, 1)?
            .reshape((row, c.n_heads * c.head_dim))?;
        layer.attn.o.forward(&y)
    }

    /// Attention for [`Attend::Rows`]: row `i` writes its key and value
    /// into scratch area `i` and attends to the base part and that area.
    #[allow(clippy::too_many_arguments)]
    fn row_attention(
        &self,
        layer: &Layer,
        li: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        base: Option<(Tensor, Tensor)>,
        scratches: &mut [KvCache],
    ) -> Result<Tensor> {
        let c = &self.config;
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let mut outputs = Vec::with_capacity(scratches.len());
        for (row, scratch) in scratches.iter_mut().enumerate() {
            let s0 = scratch.len();
            scratch.write(li, s0, &k.narrow(1, row, 1)?, &v.narrow(1, row, 1)?)?;
            let (sk, sv) = scratch.view(li, s0 + 1)?;
            let mut parts = Vec::with_capacity(2);
            if let Some((bk, bv)) = &base {
                parts.push(KvPart {
                    k: bk.clone(),
                    v: bv.clone(),
                    causal_offset: None,
                });
            }
            parts.push(KvPart {
                k: sk,
                v: sv,
                causal_offset: Some(s0),
            });
            let qr =
                q.narrow(1, row, 1)?
                    .contiguous()?
                    .reshape((c.n_kv_heads, group, c.head_dim))?;
            let y = grouped_attention(&qr, &parts, 1, scale as f32)?;
            outputs.push(y.reshape((c.n_heads, 1, c.head_dim))?);
        }
        let y = Tensor::cat(&outputs, 1)?
            .transpose(0, 1)?
            .reshape((scratches.len(), c.n_heads * c.head_dim))?;
        layer.attn.o.forward(&y)
    }

    /// Prefill `tokens` into an empty cache at positions `0..n`, returning the
    /// logits of the last token.
    pub fn prefill(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Tensor> {
        cache.clear();
        self.forward_chunked(cache, 0, tokens, Logits::Last)
            .map(|l| l.expect("last logits requested"))
    }

    /// Encode `tokens` into `cache` starting at slot `at`, in chunks that keep
    /// the attention score matrices small.
    pub(crate) fn forward_chunked(
        &self,
        cache: &mut KvCache,
        at: usize,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<Option<Tensor>> {
        const CHUNK: usize = 512;
        let mut last = None;
        let chunks = tokens.len().div_ceil(CHUNK);
        for (i, chunk) in tokens.chunks(CHUNK).enumerate() {
            let want = if i + 1 == chunks {
                logits
            } else {
                Logits::None
            };
            last = self.forward(
                chunk,
                Attend::Cache {
                    cache,
                    at: at + i * CHUNK,
                },
                want,
            )?;
        }
        Ok(last)
    }

    /// The float type the model computes in (always f32 here).
    pub fn dtype(&self) -> DType {
        DType::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::max_abs_diff;

    fn causal_mask(
        group: usize,
        n: usize,
        len: usize,
        offset: usize,
        device: &Device,
    ) -> Result<Tensor> {
        let mut mask = Vec::with_capacity(group * n * len);
        for _ in 0..group {
            for i in 0..n {
                for j in 0..len {
                    mask.push(if j <= offset + i {
                        0f32
                    } else {
                        f32::NEG_INFINITY
                    });
                }
            }
        }
        Ok(Tensor::from_vec(mask, (group * n, len), device)?)
    }

    /// Attention through candle's matmul and softmax: the reference the
    /// kernel is checked against.
    fn batched_attention(
        q: &Tensor,
        parts: &[KvPart],
        group: usize,
        n: usize,
        scale: f64,
        device: &Device,
    ) -> Result<Tensor> {
        let mut scores = Vec::with_capacity(parts.len());
        for p in parts {
            let s = (q.matmul(&p.k.t()?)? * scale)?;
            let len = p.k.dim(1)?;
            let s = match p.causal_offset {
                Some(o) if n > 1 || len > o + 1 => {
                    let mask = causal_mask(group, n, len, o, device)?;
                    s.broadcast_add(&mask)?
                }
                _ => s,
            };
            scores.push(s);
        }
        let scores = if scores.len() == 1 {
            scores.pop().unwrap()
        } else {
            Tensor::cat(&scores, D::Minus1)?
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let mut out: Option<Tensor> = None;
        let mut offset = 0;
        for p in parts {
            let len = p.k.dim(1)?;
            let y = probs
                .narrow(D::Minus1, offset, len)?
                .contiguous()?
                .matmul(&p.v)?;
            offset += len;
            out = Some(match out {
                Some(acc) => (acc + y)?,
                None => y,
            });
        }
        Ok(out.expect("at least one attention part"))
    }

    /// A cache-shaped `[kv_heads, capacity, head_dim]` tensor viewed to `len`.
    fn cache_view(kv_heads: usize, len: usize, head_dim: usize, seed: f64) -> (Tensor, Tensor) {
        let dev = Device::Cpu;
        let full = |s: f64| {
            Tensor::randn(s as f32, 1.0, (kv_heads, len + 37, head_dim), &dev)
                .unwrap()
                .narrow(1, 0, len)
                .unwrap()
        };
        (full(seed), full(seed + 0.5))
    }

    /// A part's length and causal offset.
    type PartShape = (usize, Option<usize>);

    #[test]
    fn attention_kernel_matches_candles_matmul_and_softmax() {
        let dev = Device::Cpu;
        let (kv_heads, group, head_dim) = (3, 3, 64);
        // (new tokens, [(part length, causal offset)]): a decode step, an
        // edit of five tokens in the middle of the cache, a scratch step after
        // a base part, and lengths that span several parallel pieces and tiles.
        let cases: Vec<(usize, Vec<PartShape>)> = vec![
            (1, vec![(1, Some(0))]),
            (1, vec![(700, Some(699))]),
            (5, vec![(40, Some(20))]),
            (16, vec![(1500, Some(1484))]),
            (1, vec![(1300, None), (3, Some(2))]),
            (4, vec![(90, None), (6, Some(2))]),
            // The last tile (key 64) is visible to the last token only.
            (4, vec![(80, Some(61))]),
            (8, vec![(700, Some(632))]),
            // Prefill-sized passes: a chunk from the start, one after others.
            (64, vec![(64, Some(0))]),
            (40, vec![(600, Some(560))]),
        ];
        for (case, (n, shapes)) in cases.into_iter().enumerate() {
            let parts: Vec<KvPart> = shapes
                .iter()
                .enumerate()
                .map(|(i, &(len, causal_offset))| {
                    let (k, v) = cache_view(kv_heads, len, head_dim, (case * 10 + i) as f64 * 0.1);
                    KvPart {
                        k,
                        v,
                        causal_offset,
                    }
                })
                .collect();
            let q = Tensor::randn(0f32, 1.0, (kv_heads, group * n, head_dim), &dev).unwrap();
            let want = batched_attention(&q, &parts, group, n, 0.125, &dev).unwrap();
            let got = grouped_attention(&q, &parts, n, 0.125).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = max_abs_diff(&got, &want);
            // Float rounding over up to 1500 summed terms; a wrong mask or
            // merge shows as 1e-2 or more.
            assert!(diff < 5e-5, "case {case}: max difference {diff}");
        }
    }

    #[test]
    fn stacked_projections_give_the_products_side_by_side() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let dev = Device::Cpu;
        let matrix = |rows: usize, seed: f64| {
            (Tensor::randn(0f32, 1.0, (rows, 256), &dev).unwrap() + seed).unwrap()
        };
        let quantized = |w: &Tensor, dtype| QTensor::quantize(w, dtype).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 256), &dev).unwrap();
        // Dense weights merge into one matrix; a Q4K matrix beside a Q8_0
        // one cannot, and runs as two calls.
        let (a, b) = (matrix(32, 0.1), matrix(16, 0.2));
        let dense = || {
            vec![
                Linear::new(QMatMul::Tensor(a.clone())),
                Linear::new(QMatMul::Tensor(b.clone())),
            ]
        };
        let (c, d) = (matrix(32, 0.3), matrix(32, 0.4));
        let mixed = || {
            vec![
                Linear::new(QMatMul::from_qtensor(quantized(&c, GgmlDType::Q8_0)).unwrap()),
                Linear::new(QMatMul::from_qtensor(quantized(&d, GgmlDType::Q4K)).unwrap()),
            ]
        };
        for (name, parts) in [("dense", dense()), ("mixed", mixed())] {
            let separate: Vec<Tensor> = parts.iter().map(|p| p.forward(&x).unwrap()).collect();
            let want = Tensor::cat(&separate, 1).unwrap();
            let stacked = Linear::stack(parts).unwrap();
            assert_eq!(
                matches!(stacked, Linear::Stack(_)),
                name == "mixed",
                "{name}: merged into one matrix?"
            );
            let got = stacked.forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims(), "{name}");
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 1e-4, "{name}: max difference {diff}");
        }
    }

    #[test]
    fn attention_kernel_rejects_views_it_cannot_read() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((3, 3, 64), DType::F32, &dev).unwrap();
        // Rows not contiguous: a transposed view.
        let k = Tensor::zeros((3, 64, 10), DType::F32, &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let v = Tensor::zeros((3, 10, 64), DType::F32, &dev).unwrap();
        let part = KvPart {
            k,
            v: v.clone(),
            causal_offset: None,
        };
        assert!(grouped_attention(&q, &[part], 1, 0.125).is_err());
        // Keys and values of different lengths.
        let k = Tensor::zeros((3, 9, 64), DType::F32, &dev).unwrap();
        let part = KvPart {
            k,
            v: v.clone(),
            causal_offset: None,
        };
        assert!(grouped_attention(&q, &[part], 1, 0.125).is_err());
    }
}
