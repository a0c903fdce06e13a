//! The small pieces of a decoder layer, as transformers computes them: RMSNorm and the SwiGLU
//! MLP. Projections are burn-nn's `Linear` (weights stored `[in, out]`) with an optional LoRA.

use crate::lora::Projection;
use crate::precision::{narrowed, widened};
use burn::module::{Module, Param};
use burn::tensor::{Tensor, activation::silu, backend::Backend};

/// RMSNorm: `w ⊙ x / sqrt(mean(x²) + ε)` over the last dimension (normalised in f32 when the
/// model computes in half precision).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// `x`: `[..., width]` with `width` the weight's length.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x = widened(x);
        let mean_square = x.clone().square().mean_dim(D - 1);
        // A division, not `* sqrt(..).recip()`: burn-ndarray's SIMD reciprocal is approximate
        // (about 1e-4 relative) on aligned data, which made results depend on allocation.
        let normalized = narrowed(x / mean_square.add_scalar(self.eps).sqrt(), dtype);
        let width = self.weight.dims()[0];
        let mut shape = [1; D];
        shape[D - 1] = width;
        normalized * self.weight.val().reshape(shape)
    }
}

/// SwiGLU: `down(silu(gate(x)) ⊙ up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Projection<B>,
    pub up_proj: Projection<B>,
    pub down_proj: Projection<B>,
}

impl<B: Backend> Mlp<B> {
    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gated = silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x);
        self.down_proj.forward(gated)
    }
}
