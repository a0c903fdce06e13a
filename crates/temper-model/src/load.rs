//! Builds a [`CausalLm`] from a Hugging Face model directory: `config.json` plus safetensors
//! (f32, bf16 or f16, single or sharded), verified by name and shape first. Each tensor is
//! converted to f32 and moved to the device one at a time, so peak memory is the model plus one
//! tensor.
//!
//! [`load_model`] loads causal LMs; sequence-classification (reward) models load with
//! [`crate::load_reward_model`], so that code expecting logits over the vocabulary never gets
//! a score model by accident.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::{DType, Tensor, TensorData, backend::Backend};

use crate::attention::{Attention, qk_norm_widths};
use crate::config::{ConfigError, HeadKind, ModelConfig, QkNorm};
use crate::hf_names as names;
use crate::layers::{Mlp, RmsNorm};
use crate::lora::Projection;
use crate::model::{CausalLm, DecoderLayer, Head, ScoreHead, layer_shape};
use crate::rope::inverse_frequencies;
use crate::weights::{WeightFiles, WeightsError};

/// Why a model directory cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Config {
        path: std::path::PathBuf,
        source: ConfigError,
    },
    #[error(transparent)]
    WeightFiles(#[from] WeightsError),
    #[error(
        "{path}: a sequence-classification model ({architecture}), not a causal LM: it scores sequences and cannot generate; use it as a reward model (`reward_model` in `temper grpo|ppo`)"
    )]
    NotCausalLm {
        path: std::path::PathBuf,
        architecture: String,
    },
    #[error("{path}: the model's score head has {found} labels, not the {wanted} wanted")]
    Labels {
        path: std::path::PathBuf,
        found: usize,
        wanted: usize,
    },
    #[error("a score head needs at least one label (num_labels 0)")]
    NoLabels,
}

/// Loads the causal LM in `dir` (`config.json` and its weights) onto `device`. A
/// sequence-classification model is refused ([`LoadError::NotCausalLm`]).
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(ModelConfig, CausalLm<B>), LoadError> {
    let config = read_config(dir)?;
    if let HeadKind::SequenceClassification { .. } = config.head {
        return Err(LoadError::NotCausalLm {
            path: dir.to_path_buf(),
            architecture: config.family.sequence_classification_class().to_string(),
        });
    }
    let weights = WeightFiles::open(dir)?;
    let model = from_weights(&config, &weights, device)?;
    Ok((config, model))
}

/// `dir/config.json`, parsed and validated.
pub(crate) fn read_config(dir: &Path) -> Result<ModelConfig, LoadError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
        path: path.clone(),
        source,
    })?;
    ModelConfig::from_json(&text).map_err(|source| LoadError::Config { path, source })
}

/// Builds the model the config describes (LM head or score head) from its opened weight files,
/// after [`WeightFiles::verify`].
pub fn from_weights<B: Backend>(
    config: &ModelConfig,
    files: &WeightFiles,
    device: &B::Device,
) -> Result<CausalLm<B>, WeightsError> {
    files.verify(config)?;
    build_model(config, files, device, true)
}

/// The model of verified weight files; without `head`, neither an LM head nor a score head is
/// read (the decoder for a new head).
pub(crate) fn build_model<B: Backend>(
    config: &ModelConfig,
    files: &WeightFiles,
    device: &B::Device,
    head: bool,
) -> Result<CausalLm<B>, WeightsError> {
    let weights = Weights { files, device };
    let layers = (0..config.num_layers)
        .map(|layer| weights.layer(config, layer))
        .collect::<Result<Vec<_>, _>>()?;
    let frequencies: Vec<f32> = inverse_frequencies(config)
        .into_iter()
        .map(|f| f as f32)
        .collect();
    let count = frequencies.len();
    let embed_tokens = Embedding {
        weight: Param::from_tensor(weights.tensor(names::EMBED_TOKENS)?),
    };
    let norm = weights.norm(names::FINAL_NORM, config.rms_norm_eps)?;
    let head = match config.head {
        // The decoder alone: a placeholder its caller replaces with a new head.
        _ if !head => Head::TiedLm,
        HeadKind::LanguageModel if config.tie_word_embeddings => Head::TiedLm,
        HeadKind::LanguageModel => Head::Lm(weights.linear(names::LM_HEAD, false)?),
        HeadKind::SequenceClassification { .. } => Head::Score(ScoreHead {
            weight: weights.linear(names::SCORE, false)?.weight,
            pad_token_id: config.pad_token_id,
        }),
    };
    Ok(CausalLm::new(
        embed_tokens,
        layers,
        norm,
        head,
        Tensor::from_data(TensorData::new(frequencies, [count]), (device, DType::F32)),
    ))
}

struct Weights<'a, B: Backend> {
    files: &'a WeightFiles,
    device: &'a B::Device,
}

impl<B: Backend> Weights<'_, B> {
    fn layer(&self, config: &ModelConfig, layer: usize) -> Result<DecoderLayer<B>, WeightsError> {
        let name = |name: &str| names::in_layer(layer, name);
        let eps = config.rms_norm_eps;
        let norms = qk_norm_widths(
            config.qk_norm,
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
        );
        let (q_norm, k_norm) = match norms {
            Some(_) => (
                Some(self.norm(&name(names::Q_NORM), eps)?),
                Some(self.norm(&name(names::K_NORM), eps)?),
            ),
            None => (None, None),
        };
        let (post_norm, window) = layer_shape(config, layer);
        let [attention_norm, mlp_norm] = names::layer_norms(post_norm);
        let [q_proj, k_proj, v_proj, o_proj] = names::ATTENTION;
        let [gate_proj, up_proj, down_proj] = names::MLP;
        let attention = |proj: &str| self.projection(&name(proj), config.attention_bias);
        let mlp = |proj: &str| self.projection(&name(proj), config.mlp_bias);
        Ok(DecoderLayer {
            self_attn: Attention {
                q_proj: attention(q_proj)?,
                k_proj: attention(k_proj)?,
                v_proj: attention(v_proj)?,
                o_proj: self.projection(&name(o_proj), config.output_bias)?,
                q_norm,
                k_norm,
                num_heads: config.num_heads,
                num_kv_heads: config.num_kv_heads,
                head_dim: config.head_dim,
                per_head_norm: config.qk_norm == QkNorm::PerHead,
            },
            mlp: Mlp {
                gate_proj: mlp(gate_proj)?,
                up_proj: mlp(up_proj)?,
                down_proj: mlp(down_proj)?,
            },
            attention_norm: self.norm(&name(attention_norm), eps)?,
            mlp_norm: self.norm(&name(mlp_norm), eps)?,
            post_norm,
            window,
        })
    }

    fn projection(&self, prefix: &str, bias: bool) -> Result<Projection<B>, WeightsError> {
        Ok(Projection::new(self.linear(prefix, bias)?))
    }

    /// A linear layer from HF's `[out, in]` weight, transposed on the host to Burn's `[in, out]`
    /// so the device tensor is contiguous (a transposed view makes every matmul take the
    /// strided path).
    fn linear(&self, prefix: &str, bias: bool) -> Result<Linear<B>, WeightsError> {
        let (values, shape) = self.values(&format!("{prefix}.weight"), 2)?;
        let (rows, cols) = (shape[0], shape[1]);
        let mut transposed = vec![0.0f32; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                transposed[c * rows + r] = values[r * cols + c];
            }
        }
        let weight = Tensor::from_data(TensorData::new(transposed, [cols, rows]), self.device);
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: if bias {
                Some(Param::from_tensor(self.tensor(&format!("{prefix}.bias"))?))
            } else {
                None
            },
        })
    }

    fn norm(&self, name: &str, eps: f64) -> Result<RmsNorm<B>, WeightsError> {
        Ok(RmsNorm {
            weight: Param::from_tensor(self.tensor(name)?),
            eps,
        })
    }

    /// One stored tensor as f32 on the device.
    fn tensor<const D: usize>(&self, name: &str) -> Result<Tensor<B, D>, WeightsError> {
        let (values, shape) = self.values(name, D)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        ))
    }

    /// One stored tensor's values as f32 on the host, with its shape (`rank` dimensions).
    fn values(&self, name: &str, rank: usize) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let (values, shape) = self.files.read_f32(name)?;
        if shape.len() != rank {
            return Err(WeightsError::Mismatch {
                dir: self.files.dir().to_path_buf(),
                details: format!("{name} has {} dimensions, expected {rank}", shape.len()),
            });
        }
        Ok((values, shape))
    }
}
