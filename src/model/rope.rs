//! Rotary position embedding: angle tables, rotation at positions, and the
//! re-rotation by a position shift that PIE applies to cached keys.
//!
//! Angles are computed in f64 and only cos/sin are rounded to f32: f32 angles
//! drift by about 4e-3 at position 32k, which would make a re-rotated key
//! disagree with one encoded at its new position.

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::config::{ModelConfig, RopeLayout};
use super::kernels::PairRotation;

#[derive(Debug, Clone)]
pub struct Rope {
    /// Per pair frequency, already divided by the linear scaling factor.
    inv_freq: Vec<f64>,
    layout: RopeLayout,
    device: Device,
}

/// cos/sin tables for a run of rows, each `[rows, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope {
    pub fn new(
        head_dim: usize,
        theta: f64,
        scaling: f64,
        layout: RopeLayout,
        device: &Device,
    ) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64) / scaling)
            .collect();
        Self {
            inv_freq,
            layout,
            device: device.clone(),
        }
    }

    pub fn for_config(config: &ModelConfig, device: &Device) -> Self {
        Self::new(
            config.head_dim,
            config.rope_theta,
            config.rope_scaling,
            config.rope_layout,
            device,
        )
    }

    pub fn layout(&self) -> RopeLayout {
        self.layout
    }

    /// Tables for rows rotated by the given (possibly negative) positions.
    pub fn tables(&self, positions: impl IntoIterator<Item = f64>) -> Result<RopeTables> {
        let half = self.inv_freq.len();
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        let mut rows = 0;
        for p in positions {
            rows += 1;
            for &f in &self.inv_freq {
                let angle = p * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(RopeTables {
            cos: Tensor::from_vec(cos, (rows, half), &self.device)?,
            sin: Tensor::from_vec(sin, (rows, half), &self.device)?,
        })
    }

    /// Tables for the contiguous positions `start .. start + len`.
    pub fn range_tables(&self, start: usize, len: usize) -> Result<RopeTables> {
        self.tables((start..start + len).map(|p| p as f64))
    }

    /// Rotate `x` (`[heads, rows, head_dim]` or `[1, heads, rows, head_dim]`)
    /// with one table row per `x` row.
    pub fn rotate(&self, x: &Tensor, tables: &RopeTables) -> Result<Tensor> {
        let squeeze = x.rank() == 3;
        let x4 = if squeeze { x.unsqueeze(0)? } else { x.clone() };
        let x4 = x4.contiguous()?;
        let y = match self.layout {
            RopeLayout::Interleaved => {
                candle_nn::rotary_emb::rope_i(&x4, &tables.cos, &tables.sin)?
            }
            RopeLayout::NeoX => candle_nn::rotary_emb::rope(&x4, &tables.cos, &tables.sin)?,
        };
        Ok(if squeeze { y.squeeze(0)? } else { y })
    }

    /// Rotate rows of `x` to positions `start, start + 1, ...`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let rows = x.dim(x.rank() - 2)?;
        self.rotate(x, &self.range_tables(start, rows)?)
    }

    /// Move already-rotated keys by `delta` positions: `R(delta) R(p) k = R(p + delta) k`.
    pub fn rerotate(&self, k: &Tensor, delta: i64) -> Result<Tensor> {
        let rows = k.dim(k.rank() - 2)?;
        self.rotate(k, &self.tables(std::iter::repeat_n(delta as f64, rows))?)
    }

    /// The rotation by `delta` positions as one cos/sin row (angles in f64),
    /// for moving cached keys without a table row per token.
    pub(crate) fn rotation_by(&self, delta: i64) -> PairRotation {
        let (sin, cos) = self
            .inv_freq
            .iter()
            .map(|&f| {
                let (s, c) = (delta as f64 * f).sin_cos();
                (s as f32, c as f32)
            })
            .unzip();
        PairRotation {
            cos,
            sin,
            layout: self.layout,
        }
    }

    /// Undo the rotation of keys stored at `start, start + 1, ...`: used by
    /// tests to compare the position-free content of cached keys.
    pub fn unrotate(&self, k: &Tensor, start: usize) -> Result<Tensor> {
        let rows = k.dim(k.rank() - 2)?;
        self.rotate(k, &self.tables((start..start + rows).map(|p| -(p as f64)))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::max_abs_diff;

    fn keys(heads: usize, rows: usize, dim: usize) -> Tensor {
        Tensor::randn(0f32, 1f32, (heads, rows, dim), &Device::Cpu).unwrap()
    }

    #[test]
    fn rerotation_composes_with_rotation_up_to_32k() {
        for layout in [RopeLayout::Interleaved, RopeLayout::NeoX] {
            for scaling in [1.0, 4.0] {
                let rope = Rope::new(64, 10_000.0, scaling, layout, &Device::Cpu);
                let k = keys(3, 1, 64);
                for p in [0usize, 1, 100, 4095, 8191, 16_000, 32_767] {
                    for delta in [-37i64, -1, 1, 5, 300] {
                        if (p as i64) + delta < 0 {
                            continue;
                        }
                        let two_step = rope.rerotate(&rope.apply(&k, p).unwrap(), delta).unwrap();
                        let direct = rope.apply(&k, (p as i64 + delta) as usize).unwrap();
                        let err = max_abs_diff(&two_step, &direct);
                        assert!(
                            err < 1e-5,
                            "{layout:?} scaling {scaling} p {p} delta {delta}: error {err}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_two_layouts_pair_different_coordinates() {
        let k = keys(1, 1, 8);
        let a = Rope::new(8, 10_000.0, 1.0, RopeLayout::Interleaved, &Device::Cpu);
        let b = Rope::new(8, 10_000.0, 1.0, RopeLayout::NeoX, &Device::Cpu);
        assert!(max_abs_diff(&a.apply(&k, 7).unwrap(), &b.apply(&k, 7).unwrap()) > 1e-3);
    }

    #[test]
    fn unrotate_inverts_apply() {
        let rope = Rope::new(16, 500_000.0, 2.0, RopeLayout::NeoX, &Device::Cpu);
        let k = keys(2, 5, 16);
        let back = rope.unrotate(&rope.apply(&k, 9000).unwrap(), 9000).unwrap();
        assert!(max_abs_diff(&back, &k) < 1e-5);
    }

    #[test]
    fn f64_angles_beat_f32_angles_at_long_range() {
        let head_dim = 64;
        let theta = 10_000.0f64;
        let p = 32_000usize;
        let mut err64 = 0f64;
        let mut err32 = 0f64;
        for i in 0..head_dim / 2 {
            let f64_freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let exact = (p as f64 * f64_freq).cos();
            let via_f64 = (p as f64 * f64_freq).cos() as f32;
            let f32_freq = 1.0f32 / (theta as f32).powf(2.0 * i as f32 / head_dim as f32);
            let via_f32 = (p as f32 * f32_freq).cos();
            err64 = err64.max((via_f64 as f64 - exact).abs());
            err32 = err32.max((via_f32 as f64 - exact).abs());
        }
        assert!(err64 < 1e-6, "f64 angle error {err64}");
        assert!(err32 > 10.0 * err64, "f32 {err32} vs f64 {err64}");
        // Check that the production tables use the f64 path.
        let rope = Rope::new(head_dim, theta, 1.0, RopeLayout::NeoX, &Device::Cpu);
        let cos = rope
            .range_tables(p, 1)
            .unwrap()
            .cos
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (i, c) in cos.iter().enumerate() {
            let exact = (p as f64 / theta.powf(2.0 * i as f64 / head_dim as f64)).cos();
            assert!((*c as f64 - exact).abs() < 1e-6);
        }
    }
}
