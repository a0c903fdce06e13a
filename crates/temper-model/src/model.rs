//! The decoder-only transformer: embeddings, decoder layers (pre-norm, or OLMo 2's post-norm),
//! final norm and a head: the LM head (tied to the embeddings or not), or a sequence-
//! classification `score` head (a reward model), with or without a KV cache.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Int, Tensor, backend::Backend};

use temper_kernels::{AttentionMask, HeadLogProbs, KernelBackend};

use crate::attention::{Attention, LayerCache, Rotary};
use crate::config::{ModelConfig, NormPlacement};
use crate::hf_names as names;
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

impl<B: KernelBackend> DecoderLayer<B> {
    /// `x` `[batch, new, hidden]`; `padding` `[batch, total]` covers cached and new tokens.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        padding: &Tensor<B, 2>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let mask = AttentionMask {
            padding: padding.clone(),
            window: self.window,
        };
        if self.post_norm {
            let attended = self.self_attn.forward(x.clone(), rotary, &mask, cache);
            let h = x + self.attention_norm.forward(attended);
            h.clone() + self.mlp_norm.forward(self.mlp.forward(h))
        } else {
            let normed = self.attention_norm.forward(x.clone());
            let h = x + self.self_attn.forward(normed, rotary, &mask, cache);
            h.clone() + self.mlp.forward(self.mlp_norm.forward(h))
        }
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// The seven projections with their HF names inside a layer (`self_attn.q_proj`, ...).
    pub fn projections(&self) -> [(&'static str, &Projection<B>); 7] {
        let (attn, mlp) = (&self.self_attn, &self.mlp);
        let ([q, k, v, o], [gate, up, down]) = (names::ATTENTION, names::MLP);
        [
            (q, &attn.q_proj),
            (k, &attn.k_proj),
            (v, &attn.v_proj),
            (o, &attn.o_proj),
            (gate, &mlp.gate_proj),
            (up, &mlp.up_proj),
            (down, &mlp.down_proj),
        ]
    }

    /// [`DecoderLayer::projections`], mutably (for adapters to attach to).
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Projection<B>); 7] {
        let (attn, mlp) = (&mut self.self_attn, &mut self.mlp);
        let ([q, k, v, o], [gate, up, down]) = (names::ATTENTION, names::MLP);
        [
            (q, &mut attn.q_proj),
            (k, &mut attn.k_proj),
            (v, &mut attn.v_proj),
            (o, &mut attn.o_proj),
            (gate, &mut mlp.gate_proj),
            (up, &mut mlp.up_proj),
            (down, &mut mlp.down_proj),
        ]
    }
}

/// Keys and values of every layer, for incremental decoding.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    pub layers: Vec<LayerCache<B>>,
}

impl<B: KernelBackend> KvCache<B> {
    /// An empty cache that grows as it is filled (see [`KvCache::with_capacity`]).
    pub fn new(num_layers: usize) -> Self {
        Self::with_capacity(num_layers, 0)
    }

    /// An empty cache whose buffers, allocated at the first forward pass, hold `capacity`
    /// positions (prompt and new tokens, padding included) before they grow.
    pub fn with_capacity(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: (0..num_layers)
                .map(|_| LayerCache::with_capacity(capacity))
                .collect(),
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

/// transformers' `score` head of `*ForSequenceClassification`: a linear layer without bias from
/// the final hidden state to `num_labels` scores. A reward model is one with one label.
#[derive(Module, Debug)]
pub struct ScoreHead<B: Backend> {
    /// `[hidden, num_labels]` (HF's `score.weight` `[num_labels, hidden]`, transposed). Named
    /// `score.weight` as a parameter of [`CausalLm`], as in transformers.
    pub weight: Param<Tensor<B, 2>>,
    /// transformers' `config.pad_token_id`: a row's score is read at its last token whose id is
    /// not this one (see [`crate::reward::last_token_indices`]); written back into
    /// `config.json` by [`crate::save_model`].
    pub pad_token_id: Option<u32>,
}

impl<B: Backend> ScoreHead<B> {
    pub fn num_labels(&self) -> usize {
        self.weight.dims()[1]
    }

    /// `[batch, seq, hidden]` → `[batch, seq, num_labels]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.matmul(self.weight.val().unsqueeze())
    }
}

/// What a model's final hidden states become.
#[derive(Debug)]
pub enum Head<B: Backend> {
    /// Logits through the embedding matrix (`tie_word_embeddings`).
    TiedLm,
    /// Logits through `lm_head`.
    Lm(Linear<B>),
    /// Scores `[.., num_labels]` through a sequence-classification head (a reward model), where
    /// a causal LM gives logits `[.., vocab]`.
    Score(ScoreHead<B>),
}

/// A model's [`Head`], borrowed.
#[derive(Debug)]
pub enum HeadRef<'a, B: Backend> {
    TiedLm,
    Lm(&'a Linear<B>),
    Score(&'a ScoreHead<B>),
}

/// A decoder-only transformer of any supported family: a causal language model, or, with a
/// [`ScoreHead`], transformers' `*ForSequenceClassification` (a reward model). Both are trained,
/// named, saved and given LoRA adapters the same way; only the [`Head`] differs.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    // The head is stored as two options, written only by `set_head` and read through `head`:
    // as fields they keep transformers' parameter names (`lm_head.weight`, `score.weight`),
    // which a training run's saved optimizer state is keyed by, where Burn would name an enum
    // module's parameters after its variants.
    lm_head: Option<Linear<B>>,
    score: Option<ScoreHead<B>>,
    /// RoPE inverse frequencies `[head_dim / 2]` in f32 (whatever the model computes in): a
    /// constant, not a parameter.
    pub inverse_frequencies: Tensor<B, 1>,
}

impl<B: Backend> CausalLm<B> {
    pub fn new(
        embed_tokens: Embedding<B>,
        layers: Vec<DecoderLayer<B>>,
        norm: RmsNorm<B>,
        head: Head<B>,
        inverse_frequencies: Tensor<B, 1>,
    ) -> Self {
        let mut model = Self {
            embed_tokens,
            layers,
            norm,
            lm_head: None,
            score: None,
            inverse_frequencies,
        };
        model.set_head(head);
        model
    }

    /// The model's head.
    pub fn head(&self) -> HeadRef<'_, B> {
        match (&self.lm_head, &self.score) {
            (_, Some(score)) => HeadRef::Score(score),
            (Some(lm_head), None) => HeadRef::Lm(lm_head),
            (None, None) => HeadRef::TiedLm,
        }
    }

    /// Replaces the head.
    pub fn set_head(&mut self, head: Head<B>) {
        (self.lm_head, self.score) = match head {
            Head::TiedLm => (None, None),
            Head::Lm(lm_head) => (Some(lm_head), None),
            Head::Score(score) => (None, Some(score)),
        };
    }

    /// The score head of a reward model, to change in place.
    pub fn score_head_mut(&mut self) -> Option<&mut ScoreHead<B>> {
        self.score.as_mut()
    }

    /// The score head of a reward model.
    pub fn score_head(&self) -> Option<&ScoreHead<B>> {
        match self.head() {
            HeadRef::Score(score) => Some(score),
            _ => None,
        }
    }
}

impl<B: KernelBackend> CausalLm<B> {
    /// Logits `[batch, seq, vocab]` (score model: scores `[batch, seq, num_labels]`) for
    /// `input_ids` `[batch, seq]`, with `attention_mask`
    /// `[batch, seq]` (1 = token, 0 = padding) and `position_ids` `[batch, seq]` (left padding:
    /// 0 at the first real token; packing: restart at each sequence).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        position_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        self.apply_head(self.hidden(input_ids, attention_mask, position_ids, None))
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
        self.apply_head(self.hidden(input_ids, attention_mask, position_ids, Some(cache)))
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
        self.apply_head(last).squeeze_dim(1)
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

    /// What transformers' `*ForSequenceClassification` forward returns as `logits`: each row's
    /// scores at its last non-padding token, `[batch, num_labels]` (see
    /// [`crate::reward::last_token_scores`]). `None` for a causal LM.
    pub fn sequence_scores(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        position_ids: Tensor<B, 2, Int>,
    ) -> Option<Tensor<B, 2>> {
        let head = self.score_head()?;
        let scores = self.forward(input_ids.clone(), attention_mask.clone(), position_ids);
        Some(crate::reward::last_token_scores(
            scores,
            input_ids,
            attention_mask,
            head.pad_token_id,
        ))
    }

    pub(crate) fn apply_head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.head_on_normed(self.norm.forward(x))
    }

    /// The head (LM or score) on hidden states the final norm has already normalised.
    fn head_on_normed(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // All positions as the rows of one matrix product, so the head's weight (the largest
        // matrix) is read once, not once per batch row.
        let [batch, seq, width] = x.dims();
        let rows = |x: Tensor<B, 3>| -> Tensor<B, 2> { x.reshape([batch * seq, width]) };
        let logits = match self.head() {
            HeadRef::Score(score) => return score.forward(x),
            HeadRef::Lm(head) => {
                let bias = head.bias.as_ref().map(|b| b.val());
                temper_kernels::linear(rows(x), head.weight.val(), bias)
            }
            // Tied head: `x · Eᵀ` with E `[vocab, hidden]` read as stored.
            HeadRef::TiedLm => {
                temper_kernels::transposed_product(rows(x), self.embed_tokens.weight.val())
            }
        };
        let vocab = logits.dims()[1];
        logits.reshape([batch, seq, vocab])
    }

    /// The final hidden states `[batch, seq, hidden]` of `input_ids`, after the final norm,
    /// with the head still to apply: what the token log-prob path takes (see [`HeadInput`]).
    pub fn head_input(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        position_ids: Tensor<B, 2, Int>,
    ) -> HeadInput<'_, B> {
        let hidden = self.hidden(input_ids, attention_mask, position_ids, None);
        HeadInput::new(self, hidden)
    }
}

/// A forward pass stopped before the head: the final hidden states, normalised, and the model
/// whose head turns them into logits or scores. A causal LM's token log-probs go from here
/// through the fused LM-head kernel (`temper_kernels::lm_head_log_probs`), which never holds
/// `[batch, seq, vocab]` logits; a reward model's scores through [`HeadInput::logits`].
pub struct HeadInput<'a, B: Backend> {
    /// `[batch, seq, hidden]`, after the final norm.
    pub hidden: Tensor<B, 3>,
    model: &'a CausalLm<B>,
}

impl<'a, B: KernelBackend> HeadInput<'a, B> {
    /// `hidden`: the last decoder layer's output, before the final norm.
    pub fn new(model: &'a CausalLm<B>, hidden: Tensor<B, 3>) -> Self {
        Self {
            hidden: model.norm.forward(hidden),
            model,
        }
    }

    /// A score model's `pad_token_id` (see [`ScoreHead::pad_token_id`]); `None` for a causal LM.
    pub fn score_pad_token_id(&self) -> Option<u32> {
        self.model.score_head().and_then(|head| head.pad_token_id)
    }

    /// The head's outputs `[batch, seq, vocab]` (a score model's `[batch, seq, num_labels]`),
    /// materialised.
    pub fn logits(&self) -> Tensor<B, 3> {
        self.model.head_on_normed(self.hidden.clone())
    }

    /// The LM head's weight `[vocab, hidden]`: the embeddings when tied, else the head's
    /// `[hidden, vocab]` weight transposed (a view). `None` for a score model, or a head with a
    /// bias (no supported family has one).
    pub fn lm_head_weight(&self) -> Option<Tensor<B, 2>> {
        match self.model.head() {
            HeadRef::Score(_) => None,
            HeadRef::Lm(head) if head.bias.is_some() => None,
            HeadRef::Lm(head) => Some(head.weight.val().transpose()),
            HeadRef::TiedLm => Some(self.model.embed_tokens.weight.val()),
        }
    }

    /// Log-probs `[batch, len]` of `labels` `[batch, len]` under `softmax(scale · logits)` at
    /// positions `start..start + len` (for next-token targets, position `t` scores token
    /// `t + 1`), with entropy, top-1 agreement and mean logit when `stats`. Through the fused
    /// LM-head kernel: never `[batch, len, vocab]` logits at once. Labels outside the
    /// vocabulary score 0 (mask such positions). A score model has no token probabilities:
    /// `None`.
    pub fn token_log_probs(
        &self,
        start: usize,
        labels: Tensor<B, 2, Int>,
        scale: f64,
        stats: bool,
    ) -> Option<HeadLogProbs<B, 2>> {
        let weight = self.lm_head_weight()?;
        let [batch, len] = labels.dims();
        let width = self.hidden.dims()[2];
        let hidden = self
            .hidden
            .clone()
            .slice([0..batch, start..start + len, 0..width])
            .reshape([batch * len, width]);
        let out = temper_kernels::lm_head_log_probs(
            hidden,
            weight,
            labels.reshape([batch * len]),
            scale,
            stats,
        );
        Some(out.into_rows(batch, len))
    }
}

impl<B: Backend> CausalLm<B> {
    /// Whether the head is a sequence-classification `score` head.
    pub fn is_score_model(&self) -> bool {
        self.score_head().is_some()
    }

    /// The score head's label count (`None` for a causal LM).
    pub fn num_labels(&self) -> Option<usize> {
        self.score_head().map(ScoreHead::num_labels)
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
