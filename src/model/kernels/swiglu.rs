//! SwiGLU, `silu(gate) * up`, over the stacked gate/up projection.
//!
//! candle's `silu` then `mul` read and write the activations twice and call
//! libm's `expf` once per element; in a decode step that was two of the
//! small serial operations during which the second thread only waits.

use anyhow::{Result, bail, ensure};
use candle_core::{CpuStorage, Device, Storage, Tensor};
use wide::f32x8;

/// `silu(g) * u` for `gate_up` of shape `[..., 2 f]` whose last dimension
/// holds `g` then `u`; returns `[..., f]`.
pub(crate) fn swiglu(gate_up: &Tensor) -> Result<Tensor> {
    let mut dims = gate_up.dims().to_vec();
    let width = *dims.last().unwrap_or(&0);
    ensure!(
        width.is_multiple_of(2) && width > 0,
        "gate/up activations of odd or zero width {width}"
    );
    let ffn = width / 2;
    let gate_up = gate_up.contiguous()?;
    let (storage, layout) = gate_up.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        bail!("swiglu takes f32 activations on the CPU");
    };
    let data = &data[layout.start_offset()..][..gate_up.elem_count()];
    let mut out = vec![0f32; data.len() / 2];
    for (row, out) in data.chunks_exact(width).zip(out.chunks_exact_mut(ffn)) {
        let (gate, up) = row.split_at(ffn);
        let whole = ffn - ffn % 8;
        for ((g, u), o) in gate[..whole]
            .chunks_exact(8)
            .zip(up[..whole].chunks_exact(8))
            .zip(out[..whole].chunks_exact_mut(8))
        {
            o.copy_from_slice(&silu_mul(vector(g), vector(u)).to_array());
        }
        if whole < ffn {
            let tail = silu_mul(vector(&gate[whole..]), vector(&up[whole..])).to_array();
            out[whole..].copy_from_slice(&tail[..ffn - whole]);
        }
    }
    *dims.last_mut().expect("checked above") = ffn;
    Ok(Tensor::from_vec(out, dims, &Device::Cpu)?)
}

/// Up to eight floats, zero-padded.
fn vector(x: &[f32]) -> f32x8 {
    let mut lanes = [0f32; 8];
    lanes[..x.len()].copy_from_slice(x);
    f32x8::from(lanes)
}

/// `g * sigmoid(g) * u`, with the exponential of `-|g|` only, so that it
/// never overflows: `sigmoid(g)` is `1 / (1 + e)` for `g >= 0` and
/// `e / (1 + e)` below.
#[inline]
fn silu_mul(g: f32x8, u: f32x8) -> f32x8 {
    let e = (-g.abs()).exp();
    let numerator = g.simd_ge(f32x8::ZERO).select(f32x8::ONE, e);
    g * numerator / (f32x8::ONE + e) * u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_silu_times_up_in_f64() {
        // 2 rows of 21 (two vectors and a tail of five), with large
        // magnitudes where a naive exp(-g) would overflow.
        let ffn = 21;
        let values: Vec<f32> = (0..2 * 2 * ffn)
            .map(|i| ((i as f32) * 0.77).sin() * if i % 7 == 0 { 120.0 } else { 6.0 })
            .collect();
        let t = Tensor::from_vec(values.clone(), (2, 2 * ffn), &Device::Cpu).unwrap();
        let got = swiglu(&t).unwrap();
        assert_eq!(got.dims(), [2, ffn]);
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for r in 0..2 {
            for j in 0..ffn {
                let g = f64::from(values[r * 2 * ffn + j]);
                let u = f64::from(values[r * 2 * ffn + ffn + j]);
                let want = g / (1.0 + (-g).exp()) * u;
                let have = f64::from(got[r * ffn + j]);
                assert!(
                    (have - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "row {r} column {j}: {have} vs {want}"
                );
            }
        }
    }

    #[test]
    fn refuses_an_odd_width() {
        let t = Tensor::zeros((1, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(swiglu(&t).is_err());
    }
}
