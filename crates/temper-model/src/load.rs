//! Builds a [`CausalLm`] from a checkpoint directory: `config.json` plus safetensors (f32, bf16
//! or f16, single or sharded), verified by name and shape first. Each tensor is converted to
//! f32 and moved to the device one at a time, so peak memory is the model plus one tensor.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::{DType, Tensor, TensorData, backend::Backend};

use crate::attention::{Attention, qk_norm_widths};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::{ConfigError, ModelConfig, QkNorm};
use crate::layers::{Mlp, RmsNorm};
use crate::lora::Projection;
use crate::model::{CausalLm, DecoderLayer, layer_shape};
use crate::rope::inverse_frequencies;

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
    Checkpoint(#[from] CheckpointError),
}

/// Loads `dir/config.json` and its weights onto `device`.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(ModelConfig, CausalLm<B>), LoadError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
        path: path.clone(),
        source,
    })?;
    let config =
        ModelConfig::from_json(&text).map_err(|source| LoadError::Config { path, source })?;
    let checkpoint = Checkpoint::open(dir)?;
    let model = from_checkpoint(&config, &checkpoint, device)?;
    Ok((config, model))
}

/// Builds the model from an opened checkpoint, after [`Checkpoint::verify`].
pub fn from_checkpoint<B: Backend>(
    config: &ModelConfig,
    checkpoint: &Checkpoint,
    device: &B::Device,
) -> Result<CausalLm<B>, CheckpointError> {
    checkpoint.verify(config)?;
    let weights = Weights { checkpoint, device };
    let layers = (0..config.num_layers)
        .map(|layer| weights.layer(config, layer))
        .collect::<Result<Vec<_>, _>>()?;
    let frequencies: Vec<f32> = inverse_frequencies(config)
        .into_iter()
        .map(|f| f as f32)
        .collect();
    let count = frequencies.len();
    Ok(CausalLm {
        embed_tokens: Embedding {
            weight: Param::from_tensor(weights.tensor("model.embed_tokens.weight")?),
        },
        layers,
        norm: weights.norm("model.norm.weight", config.rms_norm_eps)?,
        lm_head: if config.tie_word_embeddings {
            None
        } else {
            Some(weights.linear("lm_head", false)?)
        },
        inverse_frequencies: Tensor::from_data(
            TensorData::new(frequencies, [count]),
            (device, DType::F32),
        ),
    })
}

struct Weights<'a, B: Backend> {
    checkpoint: &'a Checkpoint,
    device: &'a B::Device,
}

impl<B: Backend> Weights<'_, B> {
    fn layer(
        &self,
        config: &ModelConfig,
        layer: usize,
    ) -> Result<DecoderLayer<B>, CheckpointError> {
        let prefix = format!("model.layers.{layer}");
        let attn = |name: &str| format!("{prefix}.self_attn.{name}");
        let eps = config.rms_norm_eps;
        let norms = qk_norm_widths(
            config.qk_norm,
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
        );
        let (q_norm, k_norm) = match norms {
            Some(_) => (
                Some(self.norm(&attn("q_norm.weight"), eps)?),
                Some(self.norm(&attn("k_norm.weight"), eps)?),
            ),
            None => (None, None),
        };
        let (post_norm, window) = layer_shape(config, layer);
        let (attention_norm, mlp_norm) = if post_norm {
            ("post_attention_layernorm", "post_feedforward_layernorm")
        } else {
            ("input_layernorm", "post_attention_layernorm")
        };
        Ok(DecoderLayer {
            self_attn: Attention {
                q_proj: self.projection(&attn("q_proj"), config.attention_bias)?,
                k_proj: self.projection(&attn("k_proj"), config.attention_bias)?,
                v_proj: self.projection(&attn("v_proj"), config.attention_bias)?,
                o_proj: self.projection(&attn("o_proj"), config.output_bias)?,
                q_norm,
                k_norm,
                num_heads: config.num_heads,
                num_kv_heads: config.num_kv_heads,
                head_dim: config.head_dim,
                per_head_norm: config.qk_norm == QkNorm::PerHead,
            },
            mlp: Mlp {
                gate_proj: self.projection(&format!("{prefix}.mlp.gate_proj"), config.mlp_bias)?,
                up_proj: self.projection(&format!("{prefix}.mlp.up_proj"), config.mlp_bias)?,
                down_proj: self.projection(&format!("{prefix}.mlp.down_proj"), config.mlp_bias)?,
            },
            attention_norm: self.norm(&format!("{prefix}.{attention_norm}.weight"), eps)?,
            mlp_norm: self.norm(&format!("{prefix}.{mlp_norm}.weight"), eps)?,
            post_norm,
            window,
        })
    }

    fn projection(&self, prefix: &str, bias: bool) -> Result<Projection<B>, CheckpointError> {
        Ok(Projection::new(self.linear(prefix, bias)?))
    }

    /// A linear layer from HF's `[out, in]` weight, transposed on the host to Burn's `[in, out]`
    /// so the device tensor is contiguous (a transposed view makes every matmul take the
    /// strided path).
    fn linear(&self, prefix: &str, bias: bool) -> Result<Linear<B>, CheckpointError> {
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

    fn norm(&self, name: &str, eps: f64) -> Result<RmsNorm<B>, CheckpointError> {
        Ok(RmsNorm {
            weight: Param::from_tensor(self.tensor(name)?),
            eps,
        })
    }

    /// One stored tensor as f32 on the device.
    fn tensor<const D: usize>(&self, name: &str) -> Result<Tensor<B, D>, CheckpointError> {
        let (values, shape) = self.values(name, D)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        ))
    }

    /// One stored tensor's values as f32 on the host, with its shape (`rank` dimensions).
    fn values(&self, name: &str, rank: usize) -> Result<(Vec<f32>, Vec<usize>), CheckpointError> {
        let (values, shape) = self.checkpoint.read_f32(name)?;
        if shape.len() != rank {
            return Err(CheckpointError::Mismatch {
                dir: self.checkpoint.dir().to_path_buf(),
                details: format!("{name} has {} dimensions, expected {rank}", shape.len()),
            });
        }
        Ok((values, shape))
    }
}
