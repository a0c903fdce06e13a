//! The decoder-only transformer: embeddings, decoder layers (pre-norm, or OLMo 2's post-norm),
//! final norm and LM head (tied to the embeddings or not), with or without a KV cache.

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Int, Tensor, backend::Backend};

use crate::attention::{Attention, LayerCache, Rotary, attention_mask};
use crate::config::{ModelConfig, NormPlacement};
use crate::layers::{Mlp, RmsNorm};
use crate::lora::Projection;

/// One decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub mlp: Mlp<B>,
    /// Pre-norm: before attention (`input_layernorm`); post-norm: after attention
    /// (`post_attention_layernorm`).
    pub attention_norm: RmsNorm<B>,
    /// Pre-norm: before the MLP (`post_attention_layernorm`); post-norm: after the MLP
    /// (`post_feedforward_layernorm`).
    pub mlp_norm: RmsNorm<B>,
    pub post_norm: bool,
    /// Sliding attention window of this layer, if any.
    pub window: Option<usize>,
}

impl<B: Backend> DecoderLayer<B> {
    /// `x` `[batch, new, hidden]`; `padding` `[batch, total]` covers cached and new tokens.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        padding: &Tensor<B, 2>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let mask = attention_mask(padding.clone(), self.window, x.dims()[1]);
        if self.post_norm {
            let attended = self.self_attn.forward(x.clone(), rotary, mask, cache);
            let h = x + self.attention_norm.forward(attended);
            h.clone() + self.mlp_norm.forward(self.mlp.forward(h))
        } else {
            let normed = self.attention_norm.forward(x.clone());
            let h = x + self.self_attn.forward(normed, rotary, mask, cache);
            h.clone() + self.mlp.forward(self.mlp_norm.forward(h))
        }
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// The seven projections with their HF names inside a layer (`self_attn.q_proj`, ...).
    pub fn projections(&self) -> [(&'static str, &Projection<B>); 7] {
        let (attn, mlp) = (&self.self_attn, &self.mlp);
        [
            ("self_attn.q_proj", &attn.q_proj),
            ("self_attn.k_proj", &attn.k_proj),
            ("self_attn.v_proj", &attn.v_proj),
            ("self_attn.o_proj", &attn.o_proj),
            ("mlp.gate_proj", &mlp.gate_proj),
            ("mlp.up_proj", &mlp.up_proj),
            ("mlp.down_proj", &mlp.down_proj),
        ]
    }

    /// [`DecoderLayer::projections`], mutably (for adapters to attach to).
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Projection<B>); 7] {
        let (attn, mlp) = (&mut self.self_attn, &mut self.mlp);
        [
            ("self_attn.q_proj", &mut attn.q_proj),
            ("self_attn.k_proj", &mut attn.k_proj),
            ("self_attn.v_proj", &mut attn.v_proj),
            ("self_attn.o_proj", &mut attn.o_proj),
            ("mlp.gate_proj", &mut mlp.gate_proj),
            ("mlp.up_proj", &mut mlp.up_proj),
            ("mlp.down_proj", &mut mlp.down_proj),
        ]
    }
}

/// Keys and values of every layer, for incremental decoding.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    pub layers: Vec<LayerCache<B>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| LayerCache::default()).collect(),
        }
    }

    /// Positions held (padding included).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A causal language model of any supported family.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when the head is tied to the embeddings.
    pub lm_head: Option<Linear<B>>,
    /// RoPE inverse frequencies `[head_dim / 2]` in f32 (whatever the model computes in): a
    /// constant, not a parameter.
    pub inverse_frequencies: Tensor<B, 1>,
}

impl<B: Backend> CausalLm<B> {
    /// Logits `[batch, seq, vocab]` for `input_ids` `[batch, seq]`, with `attention_mask`
    /// `[batch, seq]` (1 = token, 0 = padding) and `position_ids` `[batch, seq]` (left padding:
    /// 0 at the first real token; packing: restart at each sequence).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        position_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        self.head(self.hidden(input_ids, attention_mask, position_ids, None))
    }

    /// Logits `[batch, new, vocab]` for `new` tokens after those held in `cache`, which gains
    /// them. `attention_mask` `[batch, cached + new]` covers every token so far;
    /// `position_ids` `[batch, new]` the new ones.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        position_ids: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        self.head(self.hidden(input_ids, attention_mask, position_ids, Some(cache)))
    }

    /// The logits of the last position only, `[batch, vocab]` (what decoding needs: the LM head
    /// is the largest matmul of a step, so it is not run for the other positions).
    pub fn last_logits(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        position_ids: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 2> {
        let hidden = self.hidden(input_ids, attention_mask, position_ids, cache);
        let [batch, seq, width] = hidden.dims();
        let last = hidden.slice([0..batch, seq - 1..seq, 0..width]);
        self.head(last).squeeze_dim(1)
    }

    /// Hidden states `[batch, new, hidden]` after the last decoder layer.
    fn hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        position_ids: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let rotary = Rotary::new(position_ids, self.inverse_frequencies.clone());
        let mut x = self.embed_tokens.forward(input_ids);
        match cache {
            Some(cache) => {
                for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
                    x = layer.forward(x, &rotary, &attention_mask, Some(layer_cache));
                }
            }
            None => {
                for layer in &self.layers {
                    x = layer.forward(x, &rotary, &attention_mask, None);
                }
            }
        }
        x
    }

    pub(crate) fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.norm.forward(x);
        match &self.lm_head {
            Some(head) => head.forward(x),
            // Tied head: `(E · xᵀ)ᵀ` with E `[vocab, hidden]` as stored. `x · Eᵀ` would have
            // burn-ndarray copy the transposed `[hidden, vocab]` matrix on every call.
            None => self
                .embed_tokens
                .weight
                .val()
                .unsqueeze::<3>()
                .matmul(x.swap_dims(1, 2))
                .swap_dims(1, 2),
        }
    }

    /// Position ids for a batch from its attention mask: 0 at each row's first real token,
    /// counting only real tokens (what transformers' `generate` does for left padding).
    pub fn positions_from_mask(attention_mask: &Tensor<B, 2>) -> Tensor<B, 2, Int> {
        attention_mask
            .clone()
            .cumsum(1)
            .sub_scalar(1.0)
            .clamp_min(0.0)
            .int()
    }
}

/// Per-layer flags the config decides.
pub(crate) fn layer_shape(config: &ModelConfig, layer: usize) -> (bool, Option<usize>) {
    (
        config.norm_placement == NormPlacement::Post,
        config.layer_windows.get(layer).copied().flatten(),
    )
}
