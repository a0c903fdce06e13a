//! The Hugging Face names of a decoder's tensors, written once: reading a model's weights
//! ([`crate::load`]), writing them ([`crate::save`]), checking weight files against a config
//! ([`crate::weights::expected_tensors`]) and naming a layer's projections
//! ([`crate::DecoderLayer::projections`]) all go through here.

/// The token embeddings (also the LM head when `tie_word_embeddings`).
pub const EMBED_TOKENS: &str = "model.embed_tokens.weight";
/// The norm after the last layer.
pub const FINAL_NORM: &str = "model.norm.weight";
/// The untied LM head (`lm_head.weight`).
pub const LM_HEAD: &str = "lm_head";
/// A sequence-classification model's head (`score.weight`).
pub const SCORE: &str = "score";
/// Within a layer: the query and key norms (per head for Qwen3, over all heads for OLMo 2).
pub const Q_NORM: &str = "self_attn.q_norm.weight";
pub const K_NORM: &str = "self_attn.k_norm.weight";
/// Within a layer: the attention projections, q, k, v, o.
pub const ATTENTION: [&str; 4] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
];
/// Within a layer: the MLP projections, gate, up, down.
pub const MLP: [&str; 3] = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

/// `name` inside layer `layer`: `model.layers.{layer}.{name}`.
pub fn in_layer(layer: usize, name: &str) -> String {
    format!("model.layers.{layer}.{name}")
}

/// A layer's two norm weights, the attention's then the MLP's. Pre-norm models (Llama, Qwen,
/// Mistral) normalise each block's input: `input_layernorm`, `post_attention_layernorm`.
/// Post-norm models (OLMo 2) normalise each block's output: `post_attention_layernorm`,
/// `post_feedforward_layernorm`. The same name means a different place in the two.
pub fn layer_norms(post_norm: bool) -> [&'static str; 2] {
    if post_norm {
        [
            "post_attention_layernorm.weight",
            "post_feedforward_layernorm.weight",
        ]
    } else {
        ["input_layernorm.weight", "post_attention_layernorm.weight"]
    }
}
