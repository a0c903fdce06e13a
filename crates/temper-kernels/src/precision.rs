//! Half-precision compute (bf16 or f16, on burn-cuda) keeps the steps that lose most in half
//! precision in f32, as transformers does: RMSNorm's mean of squares and attention's softmax.
//! In f32 or f64 these are no-ops.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

/// `x` in f32 if it is in a half-precision type, else unchanged.
pub fn widened<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match x.dtype() {
        DType::F16 | DType::BF16 => x.cast(FloatDType::F32),
        _ => x,
    }
}

/// `x` back in `dtype` (what [`widened`] was given), if it is not already.
pub fn narrowed<B: Backend, const D: usize>(x: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if x.dtype() == dtype { x } else { x.cast(dtype) }
}
