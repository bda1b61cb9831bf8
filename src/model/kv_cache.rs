//! The KV cache, kept outside the model so that edits can rearrange it.
//!
//! Slot `t` always holds the token at position `t`, with its key stored
//! already rotated to `t`. Moving entries therefore means re-rotating their
//! keys by the distance moved (PIE); values carry no position.
//!
//! Each slot also keeps its token's last hidden state (the model's output
//! before the final norm). It carries no position either, and it makes the
//! next-token logits after any exact prefix cost only the output layer
//! instead of a re-run of the prefix's last token through every layer.

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};

use super::kernels::{PairRotation, RowMove, move_rows};
use super::rope::Rope;

/// A run of cached entries that keeps its content but changes slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub from: usize,
    pub len: usize,
    pub to: usize,
}

/// `Clone` is deliberately not derived: see [`KvCache::deep_copy`].
#[derive(Debug)]
pub struct KvCache {
    /// Per layer `(K, V)`, each `[n_kv_heads, capacity, head_dim]`, f32.
    layers: Vec<(Tensor, Tensor)>,
    /// `[capacity, hidden]`, f32: the last hidden state of each slot's token.
    hidden: Tensor,
    len: usize,
    capacity: usize,
    n_kv_heads: usize,
    head_dim: usize,
    device: Device,
}

/// A copy with its own storage: `slice_set` refuses a source that shares the
/// destination's storage, which a contiguous `narrow` would.
fn detached(t: &Tensor) -> Result<Tensor> {
    Ok(if t.is_contiguous() {
        t.copy()?
    } else {
        t.contiguous()?
    })
}

impl KvCache {
    pub fn new(
        n_layers: usize,
        n_kv_heads: usize,
        head_dim: usize,
        hidden_size: usize,
        capacity: usize,
        device: &Device,
    ) -> Result<Self> {
        let capacity = capacity.max(16);
        let layers = (0..n_layers)
            .map(|_| {
                let shape = (n_kv_heads, capacity, head_dim);
                Ok((
                    Tensor::zeros(shape, DType::F32, device)?,
                    Tensor::zeros(shape, DType::F32, device)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            hidden: Tensor::zeros((capacity, hidden_size), DType::F32, device)?,
            len: 0,
            capacity,
            n_kv_heads,
            head_dim,
            device: device.clone(),
        })
    }

    /// A cache over tensors already laid out as a cache keeps them (per
    /// layer `[n_kv_heads, capacity, head_dim]`, hidden states
    /// `[capacity, hidden]`, f32), with slots `0..len` valid: a cache read
    /// back from disk, built without a copy.
    pub fn from_tensors(layers: Vec<(Tensor, Tensor)>, hidden: Tensor, len: usize) -> Result<Self> {
        let Some((k0, _)) = layers.first() else {
            bail!("a cache needs at least one layer");
        };
        let (n_kv_heads, capacity, head_dim) = k0.dims3()?;
        for (k, v) in &layers {
            if k.dims() != k0.dims() || v.dims() != k0.dims() {
                bail!("cache layers of different shapes");
            }
        }
        if hidden.dim(0)? != capacity || len > capacity {
            bail!("cache of capacity {capacity}: hidden states or length {len} do not fit");
        }
        Ok(Self {
            device: k0.device().clone(),
            layers,
            hidden,
            len,
            capacity,
            n_kv_heads,
            head_dim,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// An independent copy. (`Clone` would share the tensors' storage, and
    /// the in-place writes of one cache would show through the other.)
    pub fn deep_copy(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| Ok((k.copy()?, v.copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            hidden: self.hidden.copy()?,
            len: self.len,
            capacity: self.capacity,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            device: self.device.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// `(K, V)` of a layer for slots `0..len`, as views (no copy).
    pub fn view(&self, layer: usize, len: usize) -> Result<(Tensor, Tensor)> {
        if len > self.capacity {
            bail!(
                "cache view of {len} slots exceeds capacity {}",
                self.capacity
            );
        }
        let (k, v) = &self.layers[layer];
        Ok((k.narrow(1, 0, len)?, v.narrow(1, 0, len)?))
    }

    /// Grow (by doubling) so that `slots` entries fit; keeps the content.
    pub fn reserve(&mut self, slots: usize) -> Result<()> {
        if slots <= self.capacity {
            return Ok(());
        }
        let mut capacity = self.capacity;
        while capacity < slots {
            capacity *= 2;
        }
        let shape = (self.n_kv_heads, capacity, self.head_dim);
        for (k, v) in &mut self.layers {
            let new_k = Tensor::zeros(shape, DType::F32, &self.device)?;
            let new_v = Tensor::zeros(shape, DType::F32, &self.device)?;
            if self.len > 0 {
                new_k.slice_set(&detached(&k.narrow(1, 0, self.len)?)?, 1, 0)?;
                new_v.slice_set(&detached(&v.narrow(1, 0, self.len)?)?, 1, 0)?;
            }
            *k = new_k;
            *v = new_v;
        }
        let new_hidden = Tensor::zeros((capacity, self.hidden.dim(1)?), DType::F32, &self.device)?;
        if self.len > 0 {
            new_hidden.slice_set(&detached(&self.hidden.narrow(0, 0, self.len)?)?, 0, 0)?;
        }
        self.hidden = new_hidden;
        self.capacity = capacity;
        Ok(())
    }

    /// Store freshly computed `k`, `v` (`[n_kv_heads, n, head_dim]`, `k`
    /// rotated to positions `at..at + n`) in slots `at..at + n`.
    pub fn write(&mut self, layer: usize, at: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = k.dim(1)?;
        if at > self.len {
            bail!(
                "cache write at {at} leaves a gap after {} entries",
                self.len
            );
        }
        self.reserve(at + n)?;
        let (ck, cv) = &self.layers[layer];
        ck.slice_set(&detached(k)?, 1, at)?;
        cv.slice_set(&detached(v)?, 1, at)?;
        Ok(())
    }

    /// Store the last hidden states (`[n, hidden]`) of the tokens in slots
    /// `at..at + n`.
    pub fn write_hidden(&mut self, at: usize, hidden: &Tensor) -> Result<()> {
        let n = hidden.dim(0)?;
        if at > self.len {
            bail!(
                "hidden-state write at {at} leaves a gap after {} entries",
                self.len
            );
        }
        self.reserve(at + n)?;
        self.hidden.slice_set(&detached(hidden)?, 0, at)?;
        Ok(())
    }

    /// The last hidden states of slots `0..len`, `[len, hidden]`, as a view.
    pub fn hidden_view(&self, len: usize) -> Result<Tensor> {
        if len > self.len {
            bail!(
                "hidden states of {len} slots beyond cache length {}",
                self.len
            );
        }
        Ok(self.hidden.narrow(0, 0, len)?)
    }

    /// The last hidden state of slot `slot`'s token, `[1, hidden]`.
    pub fn hidden(&self, slot: usize) -> Result<Tensor> {
        if slot >= self.len {
            bail!(
                "hidden state of slot {slot} beyond cache length {}",
                self.len
            );
        }
        Ok(self.hidden.narrow(0, slot, 1)?)
    }

    /// Declare slots `0..len` valid after the writes of a forward pass.
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity {
            bail!("cache length {len} exceeds capacity {}", self.capacity);
        }
        self.len = len;
        Ok(())
    }

    /// Append entries for all layers at once (`per_layer[i] = (k, v)`).
    pub fn append(&mut self, per_layer: &[(Tensor, Tensor)]) -> Result<()> {
        if per_layer.len() != self.layers.len() {
            bail!(
                "append got {} layers, cache has {}",
                per_layer.len(),
                self.layers.len()
            );
        }
        let at = self.len;
        let n = per_layer.first().map_or(Ok(0), |(k, _)| k.dim(1))?;
        for (i, (k, v)) in per_layer.iter().enumerate() {
            self.write(i, at, k, v)?;
        }
        self.len = at + n;
        Ok(())
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Rearrange entries: every segment's entries move from `from` to `to`,
    /// their keys re-rotated by `to - from` when `rope` is given (PIE) or
    /// left as they are when it is not (the `Conflict` baseline). All
    /// segments are read before any is written, so they may overlap their
    /// old places. The new length is `new_len`; slots not covered by a
    /// segment are left for the caller to fill by a forward pass.
    pub fn move_segments(
        &mut self,
        segments: &[Segment],
        new_len: usize,
        rope: Option<&Rope>,
    ) -> Result<()> {
        for s in segments {
            if s.from + s.len > self.len || s.to + s.len > new_len {
                bail!(
                    "cache segment {s:?} out of range (len {}, new len {new_len})",
                    self.len
                );
            }
        }
        self.reserve(new_len)?;
        let rotations: Vec<Option<PairRotation>> = segments
            .iter()
            .map(|s| rope.map(|r| r.rotation_by(s.to as i64 - s.from as i64)))
            .collect();
        let key_moves: Vec<RowMove> = segments
            .iter()
            .zip(&rotations)
            .map(|(s, r)| RowMove {
                from: s.from,
                len: s.len,
                to: s.to,
                rotate: r.as_ref().filter(|_| s.from != s.to),
            })
            .collect();
        let plain_moves: Vec<RowMove> = key_moves
            .iter()
            .map(|m| RowMove { rotate: None, ..*m })
            .collect();
        for (k, v) in &self.layers {
            move_rows(k, &key_moves)?;
            move_rows(v, &plain_moves)?;
        }
        move_rows(&self.hidden, &plain_moves)?;
        self.len = new_len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize, base: f32) -> (Tensor, Tensor) {
        let data: Vec<f32> = (0..2 * n * 4).map(|i| base + i as f32).collect();
        let k = Tensor::from_vec(data.clone(), (2, n, 4), &Device::Cpu).unwrap();
        let v = (k.clone() * -1.0).unwrap();
        (k, v)
    }

    fn slots(cache: &KvCache) -> Vec<Vec<Vec<f32>>> {
        cache
            .view(0, cache.len())
            .unwrap()
            .1
            .to_vec3::<f32>()
            .unwrap()
    }

    #[test]
    fn append_grows_past_capacity_and_keeps_content() {
        let mut cache = KvCache::new(1, 2, 4, 3, 16, &Device::Cpu).unwrap();
        let (k, v) = entries(10, 0.0);
        cache.append(&[(k.clone(), v.clone())]).unwrap();
        let (k2, v2) = entries(10, 1000.0);
        cache.append(&[(k2, v2)]).unwrap();
        assert_eq!(cache.len(), 20);
        assert!(cache.capacity() >= 20);
        let got = cache.view(0, 10).unwrap().0.to_vec3::<f32>().unwrap();
        assert_eq!(got, k.to_vec3::<f32>().unwrap());
    }

    #[test]
    fn moving_the_suffix_without_rotation_works_both_ways() {
        let mut cache = KvCache::new(1, 2, 4, 3, 16, &Device::Cpu).unwrap();
        let (k, v) = entries(6, 0.0);
        cache.append(&[(k, v)]).unwrap();
        let before = slots(&cache);
        // Entries 1..3 replaced by four new slots: the suffix 3..6 moves to 5..8.
        let grow = Segment {
            from: 3,
            len: 3,
            to: 5,
        };
        cache.move_segments(&[grow], 8, None).unwrap();
        assert_eq!(cache.len(), 8);
        let after = slots(&cache);
        for h in 0..2 {
            assert_eq!(after[h][0], before[h][0]);
            assert_eq!(after[h][5..8], before[h][3..6]);
        }
        // Those four slots removed again: the suffix moves back, to 1..4.
        let shrink = Segment {
            from: 5,
            len: 3,
            to: 1,
        };
        cache.move_segments(&[shrink], 4, None).unwrap();
        assert_eq!(cache.len(), 4);
        let back = slots(&cache);
        for h in 0..2 {
            assert_eq!(back[h][1..4], before[h][3..6]);
        }
    }

    #[test]
    fn out_of_range_operations_are_errors() {
        let mut cache = KvCache::new(1, 2, 4, 3, 16, &Device::Cpu).unwrap();
        let past_the_end = Segment {
            from: 0,
            len: 1,
            to: 0,
        };
        assert!(cache.move_segments(&[past_the_end], 1, None).is_err());
        let (k, v) = entries(2, 0.0);
        assert!(cache.write(0, 5, &k, &v).is_err());
    }
}
