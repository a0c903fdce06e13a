//! AdamW as `torch.optim.AdamW` computes it (Loshchilov & Hutter 2019), with the parameter
//! groups of transformers' Trainer: weight decay on every parameter but biases and norm
//! weights. Burn's own AdamW keeps one decay for all parameters and its betas in f32; here the
//! scalar arithmetic is torch's (f64 on the host). Per parameter, the step count advances and
//! [`temper_kernels::adamw_update`] applies the update (one fused pass on burn-flex).
//!
//! State is kept by parameter name, so it saves to and loads from a safetensors file that a
//! resumed run (whose parameters have new ids) maps back.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use temper_kernels::{AdamWState, AdamWStep, KernelBackend, adamw_update};

use crate::parameters::{MapNamed, Named, decays};

/// AdamW's settings (keys `adam_beta1`, `adam_beta2`, `adam_epsilon`, `weight_decay`; their
/// defaults, transformers', are declared with the keys and reach here through
/// [`crate::TrainingArgs`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

/// One parameter's moments, flattened, and its own step count (torch counts per parameter: one
/// without a gradient at some step does not advance).
#[derive(Clone, Debug)]
struct Moments<B: Backend> {
    step: u64,
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
}

/// The optimizer: settings and per-parameter state on the inner (non-autodiff) backend.
#[derive(Clone, Debug)]
pub struct AdamW<B: Backend> {
    pub config: AdamWConfig,
    state: HashMap<String, Moments<B>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OptimizerStateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

impl<B: Backend> AdamW<B> {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            state: HashMap::new(),
        }
    }

    /// Writes the state (moments as f32 tensors `NAME.exp_avg` / `NAME.exp_avg_sq`, step counts
    /// and settings in the metadata) to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<(), OptimizerStateError> {
        let format = |reason: String| OptimizerStateError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let mut bytes: BTreeMap<String, (Vec<u8>, Vec<usize>)> = BTreeMap::new();
        let mut metadata = HashMap::new();
        for (name, moments) in &self.state {
            for (suffix, tensor) in [
                ("exp_avg", &moments.exp_avg),
                ("exp_avg_sq", &moments.exp_avg_sq),
            ] {
                let values = tensor
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| format(format!("{name}: {e:?}")))?;
                let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                bytes.insert(format!("{name}.{suffix}"), (raw, vec![values.len()]));
            }
            metadata.insert(format!("step.{name}"), moments.step.to_string());
        }
        let c = &self.config;
        metadata.insert(
            "adamw".into(),
            format!("{} {} {} {}", c.beta1, c.beta2, c.epsilon, c.weight_decay),
        );
        let views = bytes
            .iter()
            .map(|(name, (raw, shape))| {
                TensorView::new(Dtype::F32, shape.clone(), raw)
                    .map(|view| (name.clone(), view))
                    .map_err(|e| format(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        safetensors::serialize_to_file(views, Some(metadata), path)
            .map_err(|e| format(e.to_string()))
    }

    /// Reads state written by [`AdamW::save`] onto `device`.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, OptimizerStateError> {
        let format = |reason: String| OptimizerStateError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| OptimizerStateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let settings: Vec<f64> = metadata
            .get("adamw")
            .map(|s| s.split(' ').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let [beta1, beta2, epsilon, weight_decay] = settings[..] else {
            return Err(format("no AdamW settings in the metadata".into()));
        };
        let tensors =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
        let read = |name: &str| -> Result<Tensor<B, 1>, OptimizerStateError> {
            let view = tensors
                .tensor(name)
                .map_err(|e| format(format!("{name}: {e}")))?;
            if view.dtype() != Dtype::F32 || view.shape().len() != 1 {
                return Err(format(format!("{name}: expected a flat f32 tensor")));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let n = values.len();
            Ok(Tensor::from_data(TensorData::new(values, [n]), device))
        };
        let mut state = HashMap::new();
        for (key, step) in &metadata {
            let Some(name) = key.strip_prefix("step.") else {
                continue;
            };
            let step = step
                .parse()
                .map_err(|_| format(format!("{key}: not a step count")))?;
            let moments = Moments {
                step,
                exp_avg: read(&format!("{name}.exp_avg"))?,
                exp_avg_sq: read(&format!("{name}.exp_avg_sq"))?,
            };
            state.insert(name.to_string(), moments);
        }
        Ok(Self {
            config: AdamWConfig {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            },
            state,
        })
    }
}

impl<B: KernelBackend> AdamW<B> {
    /// Updates every parameter of `model` that has a gradient in `gradients` with learning rate
    /// `lr`, and returns the updated model.
    pub fn step<A, M>(&mut self, model: M, gradients: GradientsParams, lr: f64) -> M
    where
        A: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<A>,
    {
        let mut mapper = Named::new(Update {
            optimizer: self,
            gradients,
            lr,
        });
        model.map(&mut mapper)
    }
}

/// The mapping [`AdamW::step`] applies to each named parameter.
struct Update<'a, B: Backend> {
    optimizer: &'a mut AdamW<B>,
    gradients: GradientsParams,
    lr: f64,
}

impl<A: AutodiffBackend<InnerBackend: KernelBackend>> MapNamed<A> for Update<'_, A::InnerBackend> {
    fn map<const D: usize>(
        &mut self,
        name: &str,
        id: ParamId,
        value: Tensor<A, D>,
    ) -> Tensor<A, D> {
        let Some(gradient) = self.gradients.remove::<A::InnerBackend, D>(id) else {
            return value;
        };
        let trains = value.is_require_grad();
        let shape = value.shape();
        let flat = |t: Tensor<A::InnerBackend, D>| t.reshape([shape.num_elements()]);
        let (parameter, gradient) = (flat(value.inner()), flat(gradient));
        let c = self.optimizer.config;
        let weight_decay = if decays(name) { c.weight_decay } else { 0.0 };
        let moments = self
            .optimizer
            .state
            .entry(name.to_string())
            .or_insert_with(|| Moments {
                step: 0,
                exp_avg: parameter.zeros_like(),
                exp_avg_sq: parameter.zeros_like(),
            });
        moments.step += 1;
        let step = AdamWStep {
            lr: self.lr,
            weight_decay,
            beta1: c.beta1,
            beta2: c.beta2,
            epsilon: c.epsilon,
            step: moments.step,
        };
        // The moments are moved out (a zero-length placeholder left behind), so that their
        // buffers are held once and the fused kernel updates them in place.
        let empty = || Tensor::empty([0], &parameter.device());
        let state = AdamWState {
            exp_avg: std::mem::replace(&mut moments.exp_avg, empty()),
            exp_avg_sq: std::mem::replace(&mut moments.exp_avg_sq, empty()),
            parameter,
        };
        let updated = adamw_update(state, gradient, &step);
        moments.exp_avg = updated.exp_avg;
        moments.exp_avg_sq = updated.exp_avg_sq;
        let updated = Tensor::from_inner(updated.parameter.reshape(shape));
        if trains {
            updated.require_grad()
        } else {
            updated
        }
    }
}
