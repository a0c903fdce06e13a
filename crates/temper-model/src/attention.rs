//! Grouped-query self-attention with RoPE in Hugging Face's half-rotation layout, optional
//! q/k RMSNorm (Qwen3 per head, OLMo 2 over all heads), and causal, padding and sliding-window
//! masks.

use burn::module::Module;
use burn::tensor::{Element, FloatDType, Int, Tensor, backend::Backend};
use temper_kernels::precision::narrowed;
use temper_kernels::{AttentionMask, KernelBackend};

use crate::config::QkNorm;
use crate::layers::RmsNorm;
use crate::lora::Projection;

/// RoPE's cosines and sines per token, `[batch, seq, head_dim]` each (the `head_dim / 2`
/// frequencies repeated twice, as transformers' `cat((freqs, freqs))`).
#[derive(Clone, Debug)]
pub struct Rotary<B: Backend> {
    pub cos: Tensor<B, 3>,
    pub sin: Tensor<B, 3>,
}

impl<B: Backend> Rotary<B> {
    /// From position ids `[batch, seq]` and inverse frequencies `[head_dim / 2]` (kept in
    /// f32). The angles are computed in f32 whatever the model's float type, as transformers
    /// does: bf16 holds integers exactly only up to 256.
    pub fn new(positions: Tensor<B, 2, Int>, inverse_frequencies: Tensor<B, 1>) -> Self {
        let [batch, seq] = positions.dims();
        let half = inverse_frequencies.dims()[0];
        let positions = positions.cast(FloatDType::F32).reshape([batch, seq, 1]);
        let angles = positions * inverse_frequencies.reshape([1, 1, half]);
        let angles = Tensor::cat(vec![angles.clone(), angles], 2);
        let dtype = <B::FloatElem as Element>::dtype();
        Self {
            cos: narrowed(angles.clone().cos(), dtype),
            sin: narrowed(angles.sin(), dtype),
        }
    }
}

impl<B: KernelBackend> Rotary<B> {
    /// Rotates `x` `[batch, seq, heads, head_dim]`: `x·cos + rotate_half(x)·sin` with
    /// `rotate_half([x₁, x₂]) = [−x₂, x₁]`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        temper_kernels::rope(x, self.cos.clone(), self.sin.clone())
    }
}

/// Self-attention of one decoder layer.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Projection<B>,
    pub k_proj: Projection<B>,
    pub v_proj: Projection<B>,
    pub o_proj: Projection<B>,
    pub q_norm: Option<RmsNorm<B>>,
    pub k_norm: Option<RmsNorm<B>>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub per_head_norm: bool,
}

impl<B: KernelBackend> Attention<B> {
    /// `x` `[batch, new, hidden]` (the new tokens), `mask` over the cached and new tokens,
    /// `cache` the keys and values of earlier tokens, extended by the new ones (`None`: no
    /// earlier tokens, nothing kept).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        mask: &AttentionMask<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (heads, kv_heads, dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let mut q = self.q_proj.forward(x.clone());
        let mut k = self.k_proj.forward(x.clone());
        let v = self.v_proj.forward(x);
        if !self.per_head_norm {
            q = norm_or_same(&self.q_norm, q);
            k = norm_or_same(&self.k_norm, k);
        }
        // `[batch, seq, heads, dim]` throughout: a view of the projections, no transposes.
        let split = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, dim]);
        let (mut q, mut k, v) = (split(q, heads), split(k, kv_heads), split(v, kv_heads));
        if self.per_head_norm {
            q = norm_or_same(&self.q_norm, q);
            k = norm_or_same(&self.k_norm, k);
        }
        let (q, k) = (rotary.apply(q), rotary.apply(k));
        let (k, v) = match cache {
            Some(cache) => cache.extend(k, v),
            None => (k, v),
        };
        let context = temper_kernels::attention(q, k, v, mask);
        self.o_proj
            .forward(context.reshape([batch, seq, heads * dim]))
    }
}

/// One layer's keys (after RoPE) and values of the tokens seen so far, `[batch, seq,
/// kv_heads, head_dim]` each.
#[derive(Clone, Debug, Default)]
pub struct LayerCache<B: Backend> {
    keys: Option<Tensor<B, 4>>,
    values: Option<Tensor<B, 4>>,
}

impl<B: Backend> LayerCache<B> {
    /// Appends the new tokens' keys and values; returns all of them.
    pub fn extend(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let join = |old: Option<Tensor<B, 4>>, new: Tensor<B, 4>| match old {
            Some(old) => Tensor::cat(vec![old, new], 1),
            None => new,
        };
        let keys = join(self.keys.take(), keys);
        let values = join(self.values.take(), values);
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        (keys, values)
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[1])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn norm_or_same<B: KernelBackend, const D: usize>(
    norm: &Option<RmsNorm<B>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    match norm {
        Some(norm) => norm.forward(x),
        None => x,
    }
}

/// The q/k norms a config asks for, with their widths.
pub fn qk_norm_widths(
    qk_norm: QkNorm,
    heads: usize,
    kv_heads: usize,
    dim: usize,
) -> Option<(usize, usize)> {
    match qk_norm {
        QkNorm::None => None,
        QkNorm::PerHead => Some((dim, dim)),
        QkNorm::AllHeads => Some((heads * dim, kv_heads * dim)),
    }
}
