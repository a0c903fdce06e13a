//! Grouped-query self-attention with RoPE in Hugging Face's half-rotation layout, optional
//! q/k RMSNorm (Qwen3 per head, OLMo 2 over all heads), and causal, padding and sliding-window
//! masks.

use burn::module::Module;
use burn::tensor::{Bool, Element, FloatDType, Int, Tensor, activation::softmax, backend::Backend};

use crate::config::QkNorm;
use crate::layers::RmsNorm;
use crate::lora::Projection;
use crate::precision::{narrowed, widened};

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

    /// Rotates `x` `[batch, heads, seq, head_dim]`: `x·cos + rotate_half(x)·sin` with
    /// `rotate_half([x₁, x₂]) = [−x₂, x₁]`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, heads, seq, dim] = x.dims();
        let half = dim / 2;
        let first = x.clone().slice([0..batch, 0..heads, 0..seq, 0..half]);
        let second = x.clone().slice([0..batch, 0..heads, 0..seq, half..dim]);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        let cos = self.cos.clone().unsqueeze_dim::<4>(1);
        let sin = self.sin.clone().unsqueeze_dim::<4>(1);
        x * cos + rotated * sin
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

impl<B: Backend> Attention<B> {
    /// `x` `[batch, new, hidden]` (the new tokens), `mask` `[batch, 1, new, total]` (true = may
    /// attend), `cache` the keys and values of earlier tokens, extended by the new ones
    /// (`None`: no earlier tokens, nothing kept).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        mask: Tensor<B, 4, Bool>,
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
        let split = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, dim]);
        let (mut q, mut k, v) = (split(q, heads), split(k, kv_heads), split(v, kv_heads));
        if self.per_head_norm {
            q = norm_or_same(&self.q_norm, q);
            k = norm_or_same(&self.k_norm, k);
        }
        let q = rotary.apply(q.swap_dims(1, 2));
        let (k, v) = (rotary.apply(k.swap_dims(1, 2)), v.swap_dims(1, 2));
        let (k, v) = match cache {
            Some(cache) => cache.extend(k, v),
            None => (k, v),
        };
        let k = repeat_kv(k, heads / kv_heads);
        let v = repeat_kv(v, heads / kv_heads);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar((dim as f64).powf(-0.5));
        // Softmax in f32 also under half precision (transformers' eager attention), where
        // f32::MIN is a finite "minus infinity" that keeps fully masked rows free of NaN.
        let scores = widened(scores).mask_fill(mask.bool_not(), f32::MIN);
        let context = narrowed(softmax(scores, 3), v.dtype()).matmul(v);
        let context = context.swap_dims(1, 2).reshape([batch, seq, heads * dim]);
        self.o_proj.forward(context)
    }
}

/// One layer's keys (after RoPE) and values of the tokens seen so far, `[batch, kv_heads,
/// seq, head_dim]` each.
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
            Some(old) => Tensor::cat(vec![old, new], 2),
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
        self.keys.as_ref().map_or(0, |k| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn norm_or_same<B: Backend, const D: usize>(
    norm: &Option<RmsNorm<B>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    match norm {
        Some(norm) => norm.forward(x),
        None => x,
    }
}

/// `[batch, kv_heads, seq, dim]` → `[batch, kv_heads · n_rep, seq, dim]`, each kv head repeated
/// for its `n_rep` query heads in turn (transformers' `repeat_kv`).
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [batch, kv_heads, seq, dim] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .repeat_dim(2, n_rep)
        .reshape([batch, kv_heads * n_rep, seq, dim])
}

/// Which keys the last `queries` tokens may attend to, `[batch, 1, queries, total]`: earlier
/// or same index, not padding (`padding` `[batch, total]` is 0 there), and within `window`
/// indices when the layer slides. Indices count padding, as transformers' masks do.
pub fn attention_mask<B: Backend>(
    padding: Tensor<B, 2>,
    window: Option<usize>,
    queries: usize,
) -> Tensor<B, 4, Bool> {
    let [batch, total] = padding.dims();
    let device = padding.device();
    let start = (total - queries) as i64;
    let query = Tensor::<B, 1, burn::tensor::Int>::arange(start..total as i64, &device)
        .float()
        .reshape([queries, 1]);
    let key = Tensor::<B, 1, burn::tensor::Int>::arange(0..total as i64, &device)
        .float()
        .reshape([1, total]);
    let offset = query - key; // q_idx − kv_idx
    let mut allowed = offset.clone().greater_equal_elem(0.0);
    if let Some(window) = window {
        allowed = allowed.bool_and(offset.lower_elem(window as f64));
    }
    let keys = padding.greater_elem(0.0).reshape([batch, 1, 1, total]);
    allowed
        .reshape([1, 1, queries, total])
        .expand([batch, 1, queries, total])
        .bool_and(keys.expand([batch, 1, queries, total]))
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
