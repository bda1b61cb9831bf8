//! Helpers shared by the model's unit tests.

use candle_core::Tensor;

/// The largest absolute elementwise difference of two tensors.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}
