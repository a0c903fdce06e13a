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

/// One layer's keys (after RoPE) and values of the tokens seen so far.
///
/// They live in buffers `[batch, capacity, kv_heads, head_dim]`, allocated at the first
/// extension and written in place after it ([`temper_kernels::write_positions`]), so a
/// decoding step copies only its new tokens' keys and values, not the whole cache as
/// concatenation would. Attention reads the first `len` positions as a view of the buffers. A
/// step past the capacity moves the cache into buffers twice as large.
#[derive(Clone, Debug, Default)]
pub struct LayerCache<B: Backend> {
    keys: Option<Tensor<B, 4>>,
    values: Option<Tensor<B, 4>>,
    len: usize,
    /// Positions the first allocation makes room for (at least the first extension's).
    capacity: usize,
}

impl<B: KernelBackend> LayerCache<B> {
    /// An empty cache that will hold `capacity` positions before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Appends the new tokens' keys and values `[batch, new, kv_heads, head_dim]`; returns all
    /// of them, `[batch, len, kv_heads, head_dim]` (views of the buffers: drop them before the
    /// next extension, or it copies the buffers to keep the views intact).
    pub fn extend(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, new, kv_heads, dim] = keys.dims();
        let end = self.len + new;
        let (start, capacity) = (self.len, self.room_for(end));
        let write = |buffer: Option<Tensor<B, 4>>, new: Tensor<B, 4>| {
            let buffer = grown(buffer, &new, start, capacity);
            let buffer = temper_kernels::write_positions(buffer, start, new);
            let view = buffer
                .clone()
                .slice([0..batch, 0..end, 0..kv_heads, 0..dim]);
            (buffer, view)
        };
        let (key_buffer, keys) = write(self.keys.take(), keys);
        let (value_buffer, values) = write(self.values.take(), values);
        self.keys = Some(key_buffer);
        self.values = Some(value_buffer);
        self.len = end;
        (keys, values)
    }

    /// The capacity the buffers need to hold `positions`: unchanged while they fit, else
    /// doubled (or `positions`, if more).
    fn room_for(&mut self, positions: usize) -> usize {
        let allocated = self.keys.as_ref().map(|k| k.dims()[1]);
        self.capacity = match allocated {
            None => self.capacity.max(positions),
            Some(held) if positions <= held => held,
            Some(held) => positions.max(2 * held),
        };
        self.capacity
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `buffer` with room for `capacity` positions, its first `held` kept: itself when it has the
/// room, else a new zeroed buffer (of `new`'s batch, heads, type and device) holding them.
fn grown<B: Backend>(
    buffer: Option<Tensor<B, 4>>,
    new: &Tensor<B, 4>,
    held: usize,
    capacity: usize,
) -> Tensor<B, 4> {
    let [batch, _, kv_heads, dim] = new.dims();
    match buffer {
        Some(buffer) if buffer.dims()[1] >= capacity => buffer,
        old => {
            let options = (&new.device(), new.dtype());
            let fresh = Tensor::zeros([batch, capacity, kv_heads, dim], options);
            match old {
                Some(old) => {
                    let kept = old.slice([0..batch, 0..held, 0..kv_heads, 0..dim]);
                    fresh.slice_assign([0..batch, 0..held, 0..kv_heads, 0..dim], kept)
                }
                None => fresh,
            }
        }
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
