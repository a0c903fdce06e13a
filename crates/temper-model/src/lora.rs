//! LoRA (Hu et al. 2021) on the model's projections, as PEFT defines it: `y = W x + s · B A
//! dropout(x)` with `s = α / r` (rsLoRA: `α / √r`), `A` Kaiming-uniform and `B` zero at
//! creation, base weights frozen. Adapters load from and save to PEFT directories
//! (`adapter_config.json`, `adapter_model.safetensors` with PEFT's key names), merge into the
//! base for export, and switch off so the same model serves as the DPO reference.
//!
//! On a model with a score head (a reward model) the head is trained in full beside the
//! adapters and saved with them, as PEFT does for `task_type="SEQ_CLS"` (`score` among its
//! `modules_to_save`, stored as `base_model.model.score.weight`).

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Dropout, Linear};
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use serde_json::{Value, json};
use temper_kernels::KernelBackend;

use crate::model::CausalLm;
use crate::weights::{WeightFiles, WeightsError};

/// The projection names LoRA can target, in PEFT's spelling.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// A linear projection with an optional LoRA adapter.
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    pub linear: Linear<B>,
    pub lora: Option<Lora<B>>,
}

impl<B: Backend> Projection<B> {
    pub fn new(linear: Linear<B>) -> Self {
        Self { linear, lora: None }
    }
}

impl<B: KernelBackend> Projection<B> {
    /// `[..., in]` → `[..., out]`, as one matrix product over all rows: multiplied as it is, a
    /// `[batch, seq, in]` input runs one product per batch row, each reading the whole weight
    /// (when decoding, `batch` matrix-vector products where one matrix product reads it once).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mut dims = x.dims();
        let width = dims[D - 1];
        let rows: Tensor<B, 2> = x.reshape([dims[..D - 1].iter().product(), width]);
        let y = match &self.lora {
            Some(lora) if lora.enabled => self.base(rows.clone()) + lora.forward(rows),
            _ => self.base(rows),
        };
        dims[D - 1] = y.dims()[1];
        y.reshape(dims)
    }

    /// The base weight's product, through the kernels' `linear` (its one-row fast path).
    fn base(&self, rows: Tensor<B, 2>) -> Tensor<B, 2> {
        let bias = self.linear.bias.as_ref().map(|b| b.val());
        temper_kernels::linear(rows, self.linear.weight.val(), bias)
    }
}

/// The low-rank update of one projection.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// `[in, rank]` (PEFT's `lora_A.weight` transposed).
    pub a: Param<Tensor<B, 2>>,
    /// `[rank, out]` (PEFT's `lora_B.weight` transposed).
    pub b: Param<Tensor<B, 2>>,
    pub scaling: f64,
    pub dropout: Dropout,
    /// Off: the projection is its base weight alone (the reference model of DPO).
    pub enabled: bool,
}

impl<B: Backend> Lora<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = self.dropout.forward(x);
        let [a, b] = [self.a.val(), self.b.val()];
        let low = x.matmul(a.unsqueeze());
        low.matmul(b.unsqueeze()).mul_scalar(self.scaling)
    }
}

/// LoRA settings, as PEFT's `LoraConfig` (and its `adapter_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Scale by `α / √r` instead of `α / r`.
    pub use_rslora: bool,
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            use_rslora: false,
            target_modules: TARGETS.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Reads PEFT's `adapter_config.json`.
    pub fn from_peft_json(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if v.get("peft_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "LORA")
        {
            return Err(format!("peft_type {} is not LORA", v["peft_type"]));
        }
        let rank = v.get("r").and_then(Value::as_u64).ok_or("no `r`")? as usize;
        let targets = match v.get("target_modules") {
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => return Err("no `target_modules` list".into()),
        };
        for unsupported in ["use_dora", "use_qalora"] {
            if v.get(unsupported).and_then(Value::as_bool) == Some(true) {
                return Err(format!("`{unsupported}` adapters are not supported"));
            }
        }
        Ok(Self {
            rank,
            alpha: v.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0),
            dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
            use_rslora: v
                .get("use_rslora")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            target_modules: targets,
        })
    }

    /// PEFT's `adapter_config.json` for these settings (a causal LM's adapter).
    pub fn to_peft_json(&self, base_model_class: &str) -> String {
        self.peft_json(base_model_class, false)
    }

    /// `sequence_classification`: PEFT's `SEQ_CLS` task, whose `score` head is saved in full.
    pub(crate) fn peft_json(
        &self,
        base_model_class: &str,
        sequence_classification: bool,
    ) -> String {
        let mut targets = self.target_modules.clone();
        targets.sort();
        let (task_type, modules_to_save) = if sequence_classification {
            ("SEQ_CLS", json!(["classifier", "score"]))
        } else {
            ("CAUSAL_LM", Value::Null)
        };
        let value = json!({
            "peft_type": "LORA",
            "task_type": task_type,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "use_rslora": self.use_rslora,
            "target_modules": targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_dora": false,
            "modules_to_save": modules_to_save,
            "base_model_name_or_path": null,
            "auto_mapping": {"base_model_class": base_model_class, "parent_library": "transformers"},
        });
        serde_json::to_string_pretty(&value).expect("JSON values serialise")
    }
}

/// The PEFT target name of a projection (`self_attn.q_proj` → `q_proj`).
fn target_name(hf_name: &str) -> &str {
    hf_name.rsplit('.').next().unwrap_or(hf_name)
}

/// PEFT's key of a sequence-classification model's `score` head in an adapter file.
pub const SCORE_KEY: &str = "base_model.model.score.weight";

/// Freezes every base weight, except a score head (PEFT's `SEQ_CLS` trains it in full).
fn freeze_base<B: Backend>(model: CausalLm<B>) -> CausalLm<B> {
    let mut model = model.no_grad();
    if let Some(score) = model.score_head_mut() {
        let weight = score.weight.clone().set_require_grad(true);
        score.weight = weight;
    }
    model
}

/// Adds fresh adapters (PEFT's init: `A` Kaiming-uniform, `B` zero, so the model is unchanged)
/// to every targeted projection and freezes every base weight (a score head stays trainable).
pub fn add_lora<B: Backend>(
    model: CausalLm<B>,
    config: &LoraConfig,
    device: &B::Device,
) -> CausalLm<B> {
    let mut model = freeze_base(model);
    for layer in model.layers.iter_mut() {
        for (name, projection) in layer.projections_mut() {
            if !config.target_modules.iter().any(|t| t == target_name(name)) {
                continue;
            }
            let [d_in, d_out] = projection.linear.weight.dims();
            // PEFT: kaiming_uniform_(a=√5) on A [r, in] → U(−1/√in, 1/√in).
            let bound = 1.0 / (d_in as f64).sqrt();
            let a = Tensor::random(
                [d_in, config.rank],
                Distribution::Uniform(-bound, bound),
                device,
            );
            let b = Tensor::zeros([config.rank, d_out], device);
            projection.lora = Some(new_lora(a, b, config));
        }
    }
    model
}

fn new_lora<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>, config: &LoraConfig) -> Lora<B> {
    Lora {
        a: Param::from_tensor(a),
        b: Param::from_tensor(b),
        scaling: config.scaling(),
        dropout: Dropout {
            prob: config.dropout,
        },
        enabled: true,
    }
}

/// Loads a PEFT adapter directory onto `model` (base weights frozen; a score head stays
/// trainable and takes the adapter's `score` weights when it has them).
pub fn load_adapter<B: Backend>(
    model: CausalLm<B>,
    dir: &Path,
    device: &B::Device,
) -> Result<(LoraConfig, CausalLm<B>), WeightsError> {
    let bad = |reason: String| WeightsError::Index {
        path: dir.join("adapter_config.json"),
        reason,
    };
    let text = std::fs::read_to_string(dir.join("adapter_config.json")).map_err(|source| {
        WeightsError::Io {
            path: dir.join("adapter_config.json"),
            source,
        }
    })?;
    let config = LoraConfig::from_peft_json(&text).map_err(bad)?;
    let weights = WeightFiles::open_file(&dir.join("adapter_model.safetensors"))?;
    let mut model = freeze_base(model);
    let mut used = 0;
    if let (Some(score), true) = (
        model.score_head_mut(),
        weights.tensors().contains_key(SCORE_KEY),
    ) {
        let (values, shape) = weights.read_f32(SCORE_KEY)?;
        let [hidden, labels] = score.weight.dims();
        if shape != [labels, hidden] {
            return Err(bad(format!(
                "{SCORE_KEY} is {shape:?}; this model's score head is [{labels}, {hidden}]"
            )));
        }
        let weight = Tensor::<B, 2>::from_data(TensorData::new(values, shape), device).transpose();
        score.weight = Param::from_tensor(weight);
        used += 1;
    }
    let layers = model.layers.len();
    for (index, layer) in model.layers.iter_mut().enumerate() {
        for (name, projection) in layer.projections_mut() {
            let prefix = format!("base_model.model.model.layers.{index}.{name}");
            let (a_name, b_name) = (
                format!("{prefix}.lora_A.weight"),
                format!("{prefix}.lora_B.weight"),
            );
            if !weights.tensors().contains_key(&a_name) && !weights.tensors().contains_key(&b_name)
            {
                continue;
            }
            let (a, b) = (weights.read_f32(&a_name)?, weights.read_f32(&b_name)?);
            let [d_in, d_out] = projection.linear.weight.dims();
            if a.1 != [config.rank, d_in] || b.1 != [d_out, config.rank] {
                return Err(bad(format!(
                    "{prefix}: lora_A {:?} / lora_B {:?} do not fit a [{d_out}, {d_in}] projection with r={}",
                    a.1, b.1, config.rank
                )));
            }
            // PEFT stores A [r, in] and B [out, r]; the forward here multiplies x [.., in] by
            // A^T [in, r] then B^T [r, out].
            let a = Tensor::<B, 2>::from_data(TensorData::new(a.0, a.1), device).transpose();
            let b = Tensor::<B, 2>::from_data(TensorData::new(b.0, b.1), device).transpose();
            projection.lora = Some(new_lora(a, b, &config));
            used += 2;
        }
    }
    let stored = weights.tensors().len();
    if used != stored {
        return Err(bad(format!(
            "{} of {stored} adapter tensors match this {layers}-layer model's projections",
            used
        )));
    }
    Ok((config, model))
}

/// Switches every adapter on or off (off: the base model, e.g. as DPO's reference).
pub fn set_adapters_enabled<B: Backend>(model: &mut CausalLm<B>, enabled: bool) {
    for layer in model.layers.iter_mut() {
        for (_, projection) in layer.projections_mut() {
            if let Some(lora) = projection.lora.as_mut() {
                lora.enabled = enabled;
            }
        }
    }
}

/// Folds every adapter into its base weight (`W + s · Aᵀ Bᵀ` in `[in, out]` layout) and drops it.
pub fn merge_adapters<B: Backend>(mut model: CausalLm<B>) -> CausalLm<B> {
    for layer in model.layers.iter_mut() {
        for (_, projection) in layer.projections_mut() {
            if let Some(lora) = projection.lora.take() {
                let delta = lora.a.val().matmul(lora.b.val()).mul_scalar(lora.scaling);
                let merged = projection.linear.weight.val() + delta;
                projection.linear.weight = Param::from_tensor(merged.detach());
            }
        }
    }
    model
}
