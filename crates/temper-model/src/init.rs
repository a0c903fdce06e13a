//! A model with random weights for a config: benchmarks at real shapes without downloading a
//! model, and tests. Linear weights ~ N(0, 0.02) as transformers' `initializer_range`,
//! norms 1, biases 0.

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::{DType, Distribution, Tensor, TensorData, backend::Backend};

use crate::attention::{Attention, qk_norm_widths};
use crate::config::{ModelConfig, QkNorm};
use crate::layers::{Mlp, RmsNorm};
use crate::lora::Projection;
use crate::model::{CausalLm, DecoderLayer, Head, ScoreHead, layer_shape};
use crate::rope::inverse_frequencies;

const STD: f64 = 0.02;

/// A randomly initialised model of `config`'s shape (with a score head for a
/// sequence-classification config).
pub fn random_model<B: Backend>(config: &ModelConfig, device: &B::Device) -> CausalLm<B> {
    let linear = |d_in: usize, d_out: usize, bias: bool| Linear {
        weight: Param::from_tensor(Tensor::random(
            [d_in, d_out],
            Distribution::Normal(0.0, STD),
            device,
        )),
        bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
    };
    let norm = |width: usize| RmsNorm {
        weight: Param::from_tensor(Tensor::ones([width], device)),
        eps: config.rms_norm_eps,
    };
    let (h, q, kv) = (
        config.hidden_size,
        config.num_heads * config.head_dim,
        config.num_kv_heads * config.head_dim,
    );
    let layers = (0..config.num_layers)
        .map(|layer| {
            let widths = qk_norm_widths(
                config.qk_norm,
                config.num_heads,
                config.num_kv_heads,
                config.head_dim,
            );
            let (post_norm, window) = layer_shape(config, layer);
            DecoderLayer {
                self_attn: Attention {
                    q_proj: Projection::new(linear(h, q, config.attention_bias)),
                    k_proj: Projection::new(linear(h, kv, config.attention_bias)),
                    v_proj: Projection::new(linear(h, kv, config.attention_bias)),
                    o_proj: Projection::new(linear(q, h, config.output_bias)),
                    q_norm: widths.map(|(w, _)| norm(w)),
                    k_norm: widths.map(|(_, w)| norm(w)),
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim: config.head_dim,
                    per_head_norm: config.qk_norm == QkNorm::PerHead,
                },
                mlp: Mlp {
                    gate_proj: Projection::new(linear(
                        h,
                        config.intermediate_size,
                        config.mlp_bias,
                    )),
                    up_proj: Projection::new(linear(h, config.intermediate_size, config.mlp_bias)),
                    down_proj: Projection::new(linear(
                        config.intermediate_size,
                        h,
                        config.mlp_bias,
                    )),
                },
                attention_norm: norm(h),
                mlp_norm: norm(h),
                post_norm,
                window,
            }
        })
        .collect();
    let frequencies: Vec<f32> = inverse_frequencies(config)
        .into_iter()
        .map(|f| f as f32)
        .collect();
    let count = frequencies.len();
    // Drawn in this order (embeddings, then the head), as before the head was one value.
    let embed_tokens = Embedding {
        weight: Param::from_tensor(Tensor::random(
            [config.vocab_size, h],
            Distribution::Normal(0.0, STD),
            device,
        )),
    };
    let head = match config.head.num_labels() {
        Some(labels) => Head::Score(ScoreHead {
            weight: linear(h, labels, false).weight,
            pad_token_id: config.pad_token_id,
        }),
        None if config.tie_word_embeddings => Head::TiedLm,
        None => Head::Lm(linear(h, config.vocab_size, false)),
    };
    CausalLm::new(
        embed_tokens,
        layers,
        norm(h),
        head,
        Tensor::from_data(TensorData::new(frequencies, [count]), (device, DType::F32)),
    )
}
