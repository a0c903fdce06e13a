//! The small pieces of a decoder layer, as transformers computes them: RMSNorm and the SwiGLU
//! MLP. Projections are burn-nn's `Linear` (weights stored `[in, out]`) with an optional LoRA.

use crate::lora::Projection;
use burn::module::{Module, Param};
use burn::tensor::{Tensor, backend::Backend};
use temper_kernels::KernelBackend;

/// RMSNorm: `w ⊙ x / sqrt(mean(x²) + ε)` over the last dimension (normalised in f32 when the
/// model computes in half precision).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: KernelBackend> RmsNorm<B> {
    /// `x`: `[..., width]` with `width` the weight's length.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        temper_kernels::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// SwiGLU: `down(silu(gate(x)) ⊙ up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Projection<B>,
    pub up_proj: Projection<B>,
    pub down_proj: Projection<B>,
}

impl<B: KernelBackend> Mlp<B> {
    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gated =
            temper_kernels::swiglu(self.gate_proj.forward(x.clone()), self.up_proj.forward(x));
        self.down_proj.forward(gated)
    }
}
