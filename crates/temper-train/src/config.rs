//! A training run's configuration, with TRL's and transformers' key names: what a `--config`
//! file holds (snake_case keys) and what the command's flags set. [`TrainConfig`] is the raw
//! form (every key optional where TRL's is); [`TrainConfig::resolve`] checks every value and
//! turns it into the typed [`RunSettings`] a run uses, naming the key of anything wrong.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use temper_data::{DataKind, Format, LossMask, TokenizeOptions, TruncationSide};
use temper_model::LoraConfig;
use temper_objectives::grpo::{Aggregation, GrpoConfig, RewardScaling};
use temper_objectives::preference::{DpoConfig, PreferenceLoss};
use temper_objectives::simpo::SimpoConfig;

use crate::grpo::GrpoSettings;
use crate::objective::{NllSpan, Objective};
use crate::optimizer::AdamWConfig;
use crate::ppo::{KlEstimator, PpoSettings};
use crate::rollout::Sampling;
use crate::schedule::ScheduleKind;
use crate::trainer::TrainingArgs;

/// Which trainer a run is: the `temper` subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainerKind {
    Sft,
    Dpo,
    Orpo,
    Simpo,
    /// A reward model (`temper rm`, TRL's RewardTrainer).
    Reward,
    /// GRPO on prompts, rewarded by verifiers or a reward model (TRL's GRPOTrainer).
    Grpo,
    /// PPO with a value model (TRL's PPOTrainer).
    Ppo,
}

impl TrainerKind {
    pub const ALL: [TrainerKind; 7] = [
        TrainerKind::Sft,
        TrainerKind::Dpo,
        TrainerKind::Orpo,
        TrainerKind::Simpo,
        TrainerKind::Reward,
        TrainerKind::Grpo,
        TrainerKind::Ppo,
    ];

    pub fn command(self) -> &'static str {
        match self {
            TrainerKind::Sft => "sft",
            TrainerKind::Dpo => "dpo",
            TrainerKind::Orpo => "orpo",
            TrainerKind::Simpo => "simpo",
            TrainerKind::Reward => "rm",
            TrainerKind::Grpo => "grpo",
            TrainerKind::Ppo => "ppo",
        }
    }

    /// TRL's default learning rate of this trainer's config class.
    pub fn default_learning_rate(self) -> f64 {
        match self {
            TrainerKind::Sft => 2e-5,
            TrainerKind::Dpo | TrainerKind::Orpo | TrainerKind::Simpo => 1e-6,
            TrainerKind::Reward => 1e-4,
            TrainerKind::Grpo => 1e-6,
            TrainerKind::Ppo => 3e-6,
        }
    }

    /// The kind of data this trainer reads.
    pub fn data_kind(self) -> DataKind {
        match self {
            TrainerKind::Sft => DataKind::Sft,
            TrainerKind::Grpo | TrainerKind::Ppo => DataKind::Rlvr,
            _ => DataKind::Preference,
        }
    }

    /// Whether the trainer learns from rewards on its own completions (GRPO, PPO).
    pub fn is_rl(self) -> bool {
        matches!(self, TrainerKind::Grpo | TrainerKind::Ppo)
    }

    /// Keys that only some trainers have; any other key applies to every trainer.
    fn accepts(self, key: &str) -> bool {
        use TrainerKind::*;
        let owners: &[TrainerKind] = match key {
            "rpo_alpha" | "loss_weights" | "precompute_ref_log_probs" | "reference_cache_dir" => {
                &[Dpo]
            }
            "ref_model" => &[Dpo, Grpo, Ppo],
            "loss_type" => &[Dpo, Grpo],
            "label_smoothing" => &[Dpo, Simpo],
            "beta" => &[Dpo, Orpo, Simpo, Grpo],
            "num_generations" | "scale_rewards" | "epsilon" | "epsilon_high" | "num_iterations" => {
                &[Grpo]
            }
            "max_completion_length"
            | "temperature"
            | "top_p"
            | "top_k"
            | "repetition_penalty"
            | "reward_model"
            | "verification_reward"
            | "non_stop_penalty"
            | "non_stop_penalty_value" => &[Grpo, Ppo],
            "num_ppo_epochs"
            | "num_mini_batches"
            | "kl_coef"
            | "kl_estimator"
            | "cliprange"
            | "vf_coef"
            | "cliprange_value"
            | "gamma"
            | "lam"
            | "whiten_rewards"
            | "missing_eos_penalty"
            | "value_model" => &[Ppo],
            "max_length" | "truncation_mode" => &[Sft, Dpo, Orpo, Simpo, Reward],
            "simpo_gamma" | "cpo_alpha" => &[Simpo],
            "orpo_nll_span" => &[Orpo],
            "loss_mask" => &[Sft],
            "center_rewards_coefficient" => &[Reward],
            _ => return true,
        };
        owners.contains(&self)
    }
}

/// The compute backend the `temper` command runs a configuration on. The library runs on the
/// backend its caller instantiates [`crate::run`] with; it takes the key so that one config
/// file serves both, and records it with the run's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeBackend {
    /// burn-flex on the CPU, with temper's fused kernels.
    Flex,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-cuda.
    Cuda,
}

/// One value or a list (TRL's `loss_type` takes both).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(value) => vec![value.clone()],
            OneOrMany::Many(values) => values.clone(),
        }
    }
}

/// Every key of a training run. `None` means "the trainer's default" (TRL's), except for the
/// paths, where it means "not given".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Hugging Face model directory to start from (weights, config, tokenizer files).
    pub model: Option<PathBuf>,
    /// The `temper` command's compute backend (`flex`, `ndarray`, `cuda`); see
    /// [`ComputeBackend`].
    pub backend: Option<ComputeBackend>,
    /// Training data: one file or a list, concatenated (any temper-data format each).
    pub data: Option<OneOrMany<PathBuf>>,
    /// The data's format (`auto` or absent: detected from the first record).
    pub data_format: Option<String>,
    pub output_dir: Option<PathBuf>,
    /// Start a new run in an output directory that holds an earlier one.
    pub overwrite_output_dir: Option<bool>,
    /// Skip invalid records (counted and reported) instead of stopping.
    pub skip_invalid: Option<bool>,
    /// DPO's reference model; absent: the initial policy (with LoRA: the base, adapters off).
    pub ref_model: Option<PathBuf>,
    /// Held-out data: one file or a list.
    pub eval_data: Option<OneOrMany<PathBuf>>,

    pub max_steps: Option<i64>,
    pub num_train_epochs: Option<f64>,
    pub per_device_train_batch_size: Option<usize>,
    pub per_device_eval_batch_size: Option<usize>,
    pub gradient_accumulation_steps: Option<usize>,
    pub learning_rate: Option<f64>,
    pub lr_scheduler_type: Option<String>,
    pub warmup_steps: Option<usize>,
    pub warmup_ratio: Option<f64>,
    pub weight_decay: Option<f64>,
    pub adam_beta1: Option<f64>,
    pub adam_beta2: Option<f64>,
    pub adam_epsilon: Option<f64>,
    pub max_grad_norm: Option<f64>,
    pub seed: Option<u64>,

    pub beta: Option<f64>,
    pub loss_type: Option<OneOrMany<String>>,
    pub loss_weights: Option<Vec<f64>>,
    pub label_smoothing: Option<f64>,
    pub rpo_alpha: Option<f64>,
    pub simpo_gamma: Option<f64>,
    pub cpo_alpha: Option<f64>,
    /// ORPO's NLL: `prompt_and_completion` (TRL) or `completion` (LLaMA-Factory).
    pub orpo_nll_span: Option<String>,
    /// Reward models: weight of the penalty pushing rewards towards zero mean (TRL's).
    pub center_rewards_coefficient: Option<f64>,
    /// Compute the reference log-probs once before training (else every step).
    pub precompute_ref_log_probs: Option<bool>,
    /// Where precomputed reference log-probs are kept (default `OUTPUT/reference_logps`); runs
    /// that share it reuse each other's.
    pub reference_cache_dir: Option<PathBuf>,

    pub max_length: Option<usize>,
    pub max_prompt_length: Option<usize>,
    /// SFT: which tokens are trained (`completion`, `prompt`, `all-assistant`, `last-turn`).
    pub loss_mask: Option<String>,
    /// Which end of an over-long example is kept: `keep_start` or `keep_end`.
    pub truncation_mode: Option<String>,

    /// RL: completions sampled per prompt (GRPO's group).
    pub num_generations: Option<usize>,
    pub max_completion_length: Option<usize>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// 0: no top-k filtering.
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f64>,
    /// GRPO: `group`, `batch` or `none` (the std that divides the advantages).
    pub scale_rewards: Option<String>,
    /// The clipping range ε (GRPO; PPO's is `cliprange`).
    pub epsilon: Option<f64>,
    /// DAPO's upper clipping range (default: `epsilon`).
    pub epsilon_high: Option<f64>,
    /// GRPO: optimizer steps per round of completions (μ).
    pub num_iterations: Option<usize>,
    /// A reward model (`temper rm`'s output) scoring completions, beside or instead of the
    /// verifiers the rows name.
    pub reward_model: Option<PathBuf>,
    /// open-instruct: each verifier's score is multiplied by this.
    pub verification_reward: Option<f64>,
    /// open-instruct: a completion that does not end at eos gets `non_stop_penalty_value` as
    /// its whole reward.
    pub non_stop_penalty: Option<bool>,
    pub non_stop_penalty_value: Option<f64>,
    pub num_ppo_epochs: Option<usize>,
    pub num_mini_batches: Option<usize>,
    pub kl_coef: Option<f64>,
    /// `k1` or `k3`.
    pub kl_estimator: Option<String>,
    pub cliprange: Option<f64>,
    pub vf_coef: Option<f64>,
    pub cliprange_value: Option<f64>,
    pub gamma: Option<f64>,
    pub lam: Option<f64>,
    pub whiten_rewards: Option<bool>,
    pub missing_eos_penalty: Option<f64>,
    /// PPO's value model (a model with a score head, or a causal LM given a fresh one);
    /// default: the reward model, else the policy.
    pub value_model: Option<PathBuf>,

    pub logging_steps: Option<usize>,
    pub eval_steps: Option<usize>,
    pub save_steps: Option<usize>,
    pub save_total_limit: Option<usize>,
    pub resume_from_checkpoint: Option<PathBuf>,

    pub use_peft: Option<bool>,
    pub lora_r: Option<usize>,
    pub lora_alpha: Option<f64>,
    pub lora_dropout: Option<f64>,
    pub lora_target_modules: Option<OneOrMany<String>>,
    /// Save the final model with the adapters merged into the weights (else a PEFT adapter).
    pub merge_lora: Option<bool>,
    pub gradient_checkpointing: Option<bool>,
}

/// A key with a value out of range, of the wrong kind, or not for this trainer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn finite(key: &str, value: Option<f64>, default: f64) -> Result<f64, ConfigError> {
    match value {
        Some(v) if !v.is_finite() => Err(bad(key, format!("must be a finite number, not {v}"))),
        other => Ok(other.unwrap_or(default)),
    }
}

/// LoRA settings of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct PeftSettings {
    pub lora: LoraConfig,
    /// Whether the final output is merged weights (else a PEFT adapter directory).
    pub merge: bool,
}

/// What a run optimises.
#[derive(Clone, Debug)]
pub enum Method {
    /// A loss over fixed examples (SFT, the preference objectives, reward models).
    Objective(Objective),
    Grpo(GrpoSettings),
    Ppo(PpoSettings),
}

/// Where an RL run's rewards come from, besides the verifiers its rows name.
#[derive(Clone, Debug, PartialEq)]
pub struct RewardSettings {
    pub reward_model: Option<PathBuf>,
    /// Each verifier's score times this (open-instruct's `verification_reward`).
    pub verification_reward: f64,
    /// The reward of a completion that did not end at eos, when set.
    pub non_stop_penalty: Option<f64>,
}

/// A checked configuration, typed.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub kind: TrainerKind,
    pub model: PathBuf,
    pub data: Vec<PathBuf>,
    pub data_format: Option<Format>,
    pub output_dir: PathBuf,
    pub skip_invalid: bool,
    pub ref_model: Option<PathBuf>,
    /// Empty without evaluation.
    pub eval_data: Vec<PathBuf>,
    pub args: TrainingArgs,
    pub per_device_eval_batch_size: usize,
    pub method: Method,
    pub precompute_ref_log_probs: bool,
    pub reference_cache_dir: PathBuf,
    pub tokenize: TokenizeOptions,
    pub logging_steps: usize,
    pub eval_steps: Option<usize>,
    pub save_steps: usize,
    pub save_total_limit: Option<usize>,
    pub resume_from_checkpoint: Option<PathBuf>,
    pub peft: Option<PeftSettings>,
    /// RL runs' reward sources.
    pub rewards: RewardSettings,
    /// PPO's value model (default: the reward model, else the policy with a fresh head).
    pub value_model: Option<PathBuf>,
    /// The configuration as given, saved with every checkpoint.
    pub config: TrainConfig,
}

impl TrainConfig {
    /// Every key, in declaration order.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(TrainConfig::default()) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(key, _)| key).collect(),
            _ => Vec::new(),
        }
    }

    /// A configuration from `key → value` pairs (a parsed config file); an unknown key or a
    /// value of the wrong kind is an error naming the key.
    pub fn from_map(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, ConfigError> {
        let keys = Self::keys();
        for (key, value) in &map {
            if !keys.contains(key) {
                return Err(bad(key, "unknown key"));
            }
            // One key at a time, so a type error is attributed to its key.
            let single = serde_json::Map::from_iter([(key.clone(), value.clone())]);
            serde_json::from_value::<TrainConfig>(serde_json::Value::Object(single))
                .map_err(|e| bad(key, e.to_string()))?;
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| bad("config", e.to_string()))
    }

    /// `self` with every key that `overrides` sets replaced (flags over a config file).
    pub fn overridden_by(self, overrides: &TrainConfig) -> TrainConfig {
        let base = serde_json::to_value(self).unwrap_or_default();
        let over = serde_json::to_value(overrides).unwrap_or_default();
        let mut merged = base.as_object().cloned().unwrap_or_default();
        if let Some(over) = over.as_object() {
            for (key, value) in over {
                if !value.is_null() {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or_default()
    }

    /// The keys this configuration sets.
    pub fn keys_set(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, _)| key)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks every value for `kind` and fills in TRL's defaults.
    pub fn resolve(&self, kind: TrainerKind) -> Result<RunSettings, ConfigError> {
        for key in self.keys_set() {
            if !kind.accepts(&key) {
                return Err(bad(
                    &key,
                    format!("not an option of `temper {}`", kind.command()),
                ));
            }
        }
        let required =
            |key: &str, value: &Option<PathBuf>| value.clone().ok_or_else(|| bad(key, "required"));
        let model = required("model", &self.model)?;
        let data = match &self.data {
            Some(files) if !files.to_vec().is_empty() => files.to_vec(),
            _ => return Err(bad("data", "required")),
        };
        let output_dir = required("output_dir", &self.output_dir)?;
        let data_format = match self.data_format.as_deref() {
            None | Some("auto") => None,
            Some(name) => Some(name.parse::<Format>().map_err(|e| bad("data_format", e))?),
        };

        let positive = |key: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(bad(key, "must be at least 1")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let non_negative = |key: &str, value: Option<f64>, default: f64| match value {
            Some(v) if !(v.is_finite() && v >= 0.0) => {
                Err(bad(key, format!("must be a finite number ≥ 0, not {v}")))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let fraction = |key: &str, value: Option<f64>, default: f64, top_open: bool| match value {
            Some(v) if !(0.0..=1.0).contains(&v) || (top_open && v == 1.0) => {
                let range = if top_open { "[0, 1)" } else { "[0, 1]" };
                Err(bad(key, format!("must be in {range}, not {v}")))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        };

        let max_steps = match self.max_steps {
            None | Some(-1) => None,
            Some(v) if v < 0 => return Err(bad("max_steps", "must be ≥ 0 (or -1: use epochs)")),
            Some(v) => Some(v as usize),
        };
        let num_train_epochs = non_negative("num_train_epochs", self.num_train_epochs, 3.0)?;
        let learning_rate = non_negative(
            "learning_rate",
            self.learning_rate,
            kind.default_learning_rate(),
        )?;
        let lr_scheduler_type = match self.lr_scheduler_type.as_deref() {
            None => ScheduleKind::Linear,
            Some(name) => ScheduleKind::from_name(name).ok_or_else(|| {
                bad(
                    "lr_scheduler_type",
                    format!("`{name}` is not one of {}", ScheduleKind::NAMES.join(", ")),
                )
            })?,
        };
        let optimizer = AdamWConfig {
            beta1: fraction("adam_beta1", self.adam_beta1, 0.9, true)?,
            beta2: fraction("adam_beta2", self.adam_beta2, 0.999, true)?,
            epsilon: non_negative("adam_epsilon", self.adam_epsilon, 1e-8)?,
            weight_decay: non_negative("weight_decay", self.weight_decay, 0.0)?,
        };
        let args = TrainingArgs {
            max_steps,
            num_train_epochs,
            per_device_train_batch_size: positive(
                "per_device_train_batch_size",
                self.per_device_train_batch_size,
                8,
            )?,
            gradient_accumulation_steps: positive(
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
                1,
            )?,
            learning_rate,
            lr_scheduler_type,
            warmup_steps: self.warmup_steps.unwrap_or(0),
            warmup_ratio: fraction("warmup_ratio", self.warmup_ratio, 0.0, false)?,
            optimizer,
            max_grad_norm: non_negative("max_grad_norm", self.max_grad_norm, 1.0)?,
            seed: self.seed.unwrap_or(42),
            gradient_checkpointing: self.gradient_checkpointing.unwrap_or(false),
            ..TrainingArgs::default()
        };
        if max_steps.is_none() && num_train_epochs == 0.0 {
            return Err(bad("num_train_epochs", "is 0 and no max_steps is set"));
        }

        let beta = |default: f64| match self.beta {
            Some(v) if kind == TrainerKind::Grpo && !(v.is_finite() && v >= 0.0) => {
                Err(bad("beta", format!("must be a finite number ≥ 0, not {v}")))
            }
            Some(v) if kind != TrainerKind::Grpo && !(v.is_finite() && v > 0.0) => {
                Err(bad("beta", format!("must be a finite number > 0, not {v}")))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let label_smoothing = fraction("label_smoothing", self.label_smoothing, 0.0, false)?;
        let objective = match kind {
            TrainerKind::Grpo => Method::Grpo(self.grpo_settings(beta(0.0)?)?),
            TrainerKind::Ppo => Method::Ppo(self.ppo_settings()?),
            TrainerKind::Sft => Method::Objective(Objective::Sft),
            TrainerKind::Dpo => Method::Objective(Objective::Dpo(
                self.dpo_config(beta(0.1)?, label_smoothing)?,
            )),
            TrainerKind::Orpo => Method::Objective(Objective::Orpo {
                beta: beta(0.1)?,
                nll: match self.orpo_nll_span.as_deref() {
                    None | Some("prompt_and_completion") => NllSpan::PromptAndCompletion,
                    Some("completion") => NllSpan::Completion,
                    Some(other) => {
                        return Err(bad(
                            "orpo_nll_span",
                            format!(
                                "`{other}` is not `prompt_and_completion` (TRL) or `completion`"
                            ),
                        ));
                    }
                },
            }),
            TrainerKind::Simpo => Method::Objective(Objective::Simpo {
                config: SimpoConfig {
                    beta: beta(0.1)?,
                    gamma: non_negative("simpo_gamma", self.simpo_gamma, 0.5)?,
                    label_smoothing,
                },
                cpo_alpha: non_negative("cpo_alpha", self.cpo_alpha, 1.0)?,
            }),
            TrainerKind::Reward => Method::Objective(Objective::Reward {
                center_rewards_coefficient: match self.center_rewards_coefficient {
                    Some(v) if !(v.is_finite() && v >= 0.0) => {
                        return Err(bad(
                            "center_rewards_coefficient",
                            format!("must be ≥ 0, not {v}"),
                        ));
                    }
                    other => other,
                },
                // The tokenizer's, set when the run starts.
                pad_token_id: None,
            }),
        };

        let tokenize = TokenizeOptions {
            loss_mask: match self.loss_mask.as_deref() {
                None => LossMask::Completion,
                // Both spellings: `all-assistant` (temper data's flag) and `all_assistant`.
                Some(name) => LossMask::ALL
                    .into_iter()
                    .find(|mask| mask.name() == name.replace('_', "-"))
                    .ok_or_else(|| {
                        let names: Vec<&str> = LossMask::ALL.iter().map(|m| m.name()).collect();
                        bad(
                            "loss_mask",
                            format!("`{name}` is not one of {}", names.join(", ")),
                        )
                    })?,
            },
            max_length: match self.max_length {
                Some(0) => return Err(bad("max_length", "must be at least 1")),
                Some(v) => Some(v),
                None => Some(1024),
            },
            max_prompt_length: match self.max_prompt_length {
                Some(0) => return Err(bad("max_prompt_length", "must be at least 1")),
                other => other,
            },
            truncation: match self.truncation_mode.as_deref() {
                None | Some("keep_start") => TruncationSide::KeepStart,
                Some("keep_end") => TruncationSide::KeepEnd,
                Some(other) => {
                    return Err(bad(
                        "truncation_mode",
                        format!("`{other}` is not `keep_start` or `keep_end`"),
                    ));
                }
            },
        };

        let peft = if self.use_peft.unwrap_or(false) {
            let rank = positive("lora_r", self.lora_r, 16)?;
            let targets = match &self.lora_target_modules {
                None => vec!["q_proj".to_string(), "v_proj".to_string()],
                Some(modules) => {
                    let modules = modules.to_vec();
                    let names: Vec<String> = if modules == ["all-linear"] {
                        temper_model::lora::TARGETS
                            .iter()
                            .map(|t| t.to_string())
                            .collect()
                    } else {
                        modules
                    };
                    if let Some(unknown) = names
                        .iter()
                        .find(|m| !temper_model::lora::TARGETS.contains(&m.as_str()))
                    {
                        return Err(bad(
                            "lora_target_modules",
                            format!(
                                "`{unknown}` is not one of {} (or all-linear)",
                                temper_model::lora::TARGETS.join(", ")
                            ),
                        ));
                    }
                    if names.is_empty() {
                        return Err(bad("lora_target_modules", "is empty"));
                    }
                    names
                }
            };
            Some(PeftSettings {
                lora: LoraConfig {
                    rank,
                    alpha: non_negative("lora_alpha", self.lora_alpha, 32.0)?,
                    dropout: fraction("lora_dropout", self.lora_dropout, 0.05, true)?,
                    use_rslora: false,
                    target_modules: targets,
                },
                merge: self.merge_lora.unwrap_or(false),
            })
        } else {
            for key in [
                "lora_r",
                "lora_alpha",
                "lora_dropout",
                "lora_target_modules",
                "merge_lora",
            ] {
                if self.keys_set().iter().any(|k| k == key) {
                    return Err(bad(key, "needs use_peft"));
                }
            }
            None
        };

        let logging_steps = positive("logging_steps", self.logging_steps, 10)?;
        if max_steps == Some(0) && self.eval_data.is_none() {
            return Err(bad(
                "max_steps",
                "0 evaluates the initial model only, which needs eval_data",
            ));
        }
        let eval_steps = match self.eval_steps {
            Some(0) => return Err(bad("eval_steps", "must be at least 1")),
            Some(_) if self.eval_data.is_none() => {
                return Err(bad("eval_steps", "needs eval_data"));
            }
            other => other,
        };
        let save_steps = positive("save_steps", self.save_steps, 500)?;
        let save_total_limit = match self.save_total_limit {
            Some(0) => return Err(bad("save_total_limit", "must be at least 1")),
            other => other,
        };
        Ok(RunSettings {
            kind,
            reference_cache_dir: self
                .reference_cache_dir
                .clone()
                .unwrap_or_else(|| output_dir.join("reference_logps")),
            model,
            data,
            data_format,
            output_dir,
            skip_invalid: self.skip_invalid.unwrap_or(false),
            ref_model: self.ref_model.clone(),
            eval_data: self
                .eval_data
                .as_ref()
                .map_or_else(Vec::new, OneOrMany::to_vec),
            args,
            per_device_eval_batch_size: positive(
                "per_device_eval_batch_size",
                self.per_device_eval_batch_size,
                8,
            )?,
            method: objective,
            precompute_ref_log_probs: self.precompute_ref_log_probs.unwrap_or(true),
            tokenize,
            logging_steps,
            eval_steps,
            save_steps,
            save_total_limit,
            resume_from_checkpoint: self.resume_from_checkpoint.clone(),
            peft,
            rewards: RewardSettings {
                reward_model: self.reward_model.clone(),
                verification_reward: match self.verification_reward {
                    Some(v) if !v.is_finite() => {
                        return Err(bad("verification_reward", "must be a finite number"));
                    }
                    Some(v) => v,
                    None => 10.0,
                },
                non_stop_penalty: match (self.non_stop_penalty, self.non_stop_penalty_value) {
                    (Some(true), value) => Some(finite("non_stop_penalty_value", value, 0.0)?),
                    (_, Some(_)) => {
                        return Err(bad("non_stop_penalty_value", "needs non_stop_penalty"));
                    }
                    _ => None,
                },
            },
            value_model: self.value_model.clone(),
            config: self.clone(),
        })
    }

    /// Sampling settings shared by GRPO and PPO; `temperature` and the completion length
    /// default to the trainer's TRL defaults.
    fn sampling(
        &self,
        num_generations: usize,
        max_completion_length: usize,
        temperature: f64,
    ) -> Result<Sampling, ConfigError> {
        temper_model::check_sampling(self.temperature, self.top_p, self.repetition_penalty)
            .map_err(|e| bad(e.key, e.reason))?;
        let temperature = self.temperature.unwrap_or(temperature);
        let top_p = self.top_p.filter(|p| *p < 1.0);
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        let max_completion_length = match self.max_completion_length {
            Some(0) => return Err(bad("max_completion_length", "must be at least 1")),
            other => other.unwrap_or(max_completion_length),
        };
        Ok(Sampling {
            num_generations,
            max_completion_length,
            temperature,
            top_p,
            top_k: self.top_k.filter(|k| *k > 0),
            repetition_penalty,
            // The tokenizer's, set when the run starts.
            eos_token_ids: Vec::new(),
            pad_token_id: 0,
        })
    }

    /// GRPO: TRL's `GRPOConfig` keys and defaults.
    fn grpo_settings(&self, beta: f64) -> Result<GrpoSettings, ConfigError> {
        let num_generations = match self.num_generations {
            Some(n) if n < 2 => return Err(bad("num_generations", "must be at least 2")),
            other => other.unwrap_or(8),
        };
        let epsilon = match self.epsilon {
            Some(e) if !(0.0..1.0).contains(&e) => {
                return Err(bad("epsilon", format!("must be in [0, 1), not {e}")));
            }
            other => other.unwrap_or(0.2),
        };
        let epsilon_high = match self.epsilon_high {
            Some(e) if !(e.is_finite() && e >= 0.0) => {
                return Err(bad("epsilon_high", format!("must be ≥ 0, not {e}")));
            }
            other => other.unwrap_or(epsilon),
        };
        let names = self
            .loss_type
            .as_ref()
            .map_or_else(|| vec!["dapo".to_string()], OneOrMany::to_vec);
        let aggregation = match names.as_slice() {
            [name] => match name.as_str() {
                "grpo" => Aggregation::Grpo,
                "bnpo" => Aggregation::Bnpo,
                "dr_grpo" => Aggregation::DrGrpo {
                    max_completion_length: 0,
                },
                "dapo" => Aggregation::Dapo { total_tokens: 0.0 },
                other => {
                    return Err(bad(
                        "loss_type",
                        format!("`{other}` is not one of grpo, bnpo, dr_grpo, dapo"),
                    ));
                }
            },
            _ => return Err(bad("loss_type", "GRPO takes one loss type")),
        };
        Ok(GrpoSettings {
            sampling: self.sampling(num_generations, 512, 1.0)?,
            loss: GrpoConfig {
                beta,
                epsilon_low: epsilon,
                epsilon_high,
                aggregation,
                bias_corrected_kl: true,
            },
            scale_rewards: match self.scale_rewards.as_deref() {
                None | Some("group") => RewardScaling::Group,
                Some("batch") => RewardScaling::Batch,
                Some("none") => RewardScaling::None,
                Some(other) => {
                    return Err(bad(
                        "scale_rewards",
                        format!("`{other}` is not group, batch or none"),
                    ));
                }
            },
            num_iterations: match self.num_iterations {
                Some(0) => return Err(bad("num_iterations", "must be at least 1")),
                other => other.unwrap_or(1),
            },
        })
    }

    /// PPO: TRL's `PPOConfig` keys and defaults (`max_completion_length` is its
    /// `response_length`).
    fn ppo_settings(&self) -> Result<PpoSettings, ConfigError> {
        let positive = |key: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(bad(key, "must be at least 1")),
            other => Ok(other.unwrap_or(default)),
        };
        let unit = |key: &str, value: Option<f64>, default: f64| match value {
            Some(v) if !(0.0..=1.0).contains(&v) => {
                Err(bad(key, format!("must be in [0, 1], not {v}")))
            }
            other => Ok(other.unwrap_or(default)),
        };
        let non_negative = |key: &str, value: Option<f64>, default: f64| match value {
            Some(v) if !(v.is_finite() && v >= 0.0) => {
                Err(bad(key, format!("must be a finite number ≥ 0, not {v}")))
            }
            other => Ok(other.unwrap_or(default)),
        };
        Ok(PpoSettings {
            sampling: self.sampling(1, 53, 0.7)?,
            num_ppo_epochs: positive("num_ppo_epochs", self.num_ppo_epochs, 4)?,
            num_mini_batches: positive("num_mini_batches", self.num_mini_batches, 1)?,
            kl_coef: non_negative("kl_coef", self.kl_coef, 0.05)?,
            kl_estimator: match self.kl_estimator.as_deref() {
                None | Some("k1") => KlEstimator::K1,
                Some("k3") => KlEstimator::K3,
                Some(other) => {
                    return Err(bad("kl_estimator", format!("`{other}` is not k1 or k3")));
                }
            },
            cliprange: non_negative("cliprange", self.cliprange, 0.2)?,
            vf_coef: non_negative("vf_coef", self.vf_coef, 0.1)?,
            cliprange_value: non_negative("cliprange_value", self.cliprange_value, 0.2)?,
            gamma: unit("gamma", self.gamma, 1.0)?,
            lam: unit("lam", self.lam, 0.95)?,
            whiten_rewards: self.whiten_rewards.unwrap_or(false),
            missing_eos_penalty: match self.missing_eos_penalty {
                Some(v) if !v.is_finite() => {
                    return Err(bad("missing_eos_penalty", "must be a finite number"));
                }
                other => other,
            },
        })
    }

    /// DPO's losses: `loss_type` (one or a list), `loss_weights` (one per loss), `rpo_alpha`
    /// (adds the chosen NLL, as TRL does).
    fn dpo_config(&self, beta: f64, label_smoothing: f64) -> Result<DpoConfig, ConfigError> {
        let names = self
            .loss_type
            .as_ref()
            .map_or_else(|| vec!["sigmoid".to_string()], OneOrMany::to_vec);
        if names.is_empty() {
            return Err(bad("loss_type", "is empty"));
        }
        let mut losses = Vec::with_capacity(names.len());
        for name in &names {
            let loss = name
                .parse::<PreferenceLoss>()
                .map_err(|e| bad("loss_type", e.to_string()))?;
            losses.push(loss);
        }
        let weights = match &self.loss_weights {
            None => vec![1.0; losses.len()],
            Some(weights) if weights.len() != losses.len() => {
                return Err(bad(
                    "loss_weights",
                    format!("{} weights for {} loss types", weights.len(), losses.len()),
                ));
            }
            Some(weights) => {
                if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
                    return Err(bad("loss_weights", format!("{w} is not finite")));
                }
                weights.clone()
            }
        };
        let mut losses: Vec<(PreferenceLoss, f64)> = losses.into_iter().zip(weights).collect();
        if let Some(alpha) = self.rpo_alpha {
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(bad("rpo_alpha", format!("must be ≥ 0, not {alpha}")));
            }
            losses.push((PreferenceLoss::Sft, alpha));
        }
        Ok(DpoConfig {
            beta,
            label_smoothing,
            losses,
            ..DpoConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> TrainConfig {
        TrainConfig {
            model: Some("m".into()),
            data: Some(OneOrMany::One("d.jsonl".into())),
            output_dir: Some("out".into()),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn defaults_are_trls() {
        let settings = minimal().resolve(TrainerKind::Dpo).unwrap();
        assert_eq!(settings.args.learning_rate, 1e-6);
        assert_eq!(settings.args.per_device_train_batch_size, 8);
        assert_eq!(settings.args.lr_scheduler_type, ScheduleKind::Linear);
        assert_eq!(settings.logging_steps, 10);
        assert_eq!(settings.save_steps, 500);
        let Method::Objective(Objective::Dpo(dpo)) = settings.method else {
            panic!("a DPO run")
        };
        assert_eq!(dpo.beta, 0.1);
        assert_eq!(dpo.losses, vec![(PreferenceLoss::Sigmoid, 1.0)]);
        assert_eq!(
            minimal()
                .resolve(TrainerKind::Sft)
                .unwrap()
                .args
                .learning_rate,
            2e-5
        );
    }

    fn from_file(name: &str, text: &str) -> Result<TrainConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let map = read_config_file(&path).map_err(|e| e.to_string())?;
        TrainConfig::from_map(map).map_err(|e| e.to_string())
    }

    #[test]
    fn files_of_each_syntax_read_alike() {
        let yaml = from_file(
            "c.yaml",
            "learning_rate: 1e-6\nloss_type: [sigmoid, sft]\nuse_peft: true\n",
        )
        .unwrap();
        let toml = from_file(
            "c.toml",
            "learning_rate = 1e-6\nloss_type = [\"sigmoid\", \"sft\"]\nuse_peft = true\n",
        )
        .unwrap();
        assert_eq!(yaml, toml);
        assert_eq!(yaml.learning_rate, Some(1e-6));
    }

    /// The library once refused the `backend` key of the files the docs show (only the CLI
    /// took it out); it takes the same files as the command.
    #[test]
    fn the_library_takes_the_commands_backend_key() {
        let text = "model: m\ndata: d.jsonl\noutput_dir: out\nbackend: cuda\n";
        let config = from_file("c.yaml", text).unwrap();
        assert_eq!(config.backend, Some(ComputeBackend::Cuda));
        assert!(config.resolve(TrainerKind::Sft).is_ok());
        let error = from_file("c.yaml", "backend: tpu\n").unwrap_err();
        assert!(error.starts_with("backend: "), "{error}");
    }

    #[test]
    fn unknown_keys_and_wrong_kinds_are_named() {
        let error = from_file("c.yaml", "learning_rate: 1e-3\nlerning_rate: 2\n").unwrap_err();
        assert_eq!(error, "lerning_rate: unknown key");
        let error = from_file("c.toml", "bta = 0.1\n").unwrap_err();
        assert_eq!(error, "bta: unknown key");
        let error = from_file("c.yaml", "beta: high\n").unwrap_err();
        assert!(error.starts_with("beta: "), "{error}");
        let error = from_file("c.yaml", "- a list\n").unwrap_err();
        assert!(error.contains("not a table"), "{error}");
    }

    #[test]
    fn out_of_range_and_foreign_keys_are_named() {
        let cases = [
            (
                TrainConfig {
                    learning_rate: Some(-1.0),
                    ..minimal()
                },
                "learning_rate",
            ),
            (
                TrainConfig {
                    per_device_train_batch_size: Some(0),
                    ..minimal()
                },
                "per_device_train_batch_size",
            ),
            (
                TrainConfig {
                    loss_type: Some(OneOrMany::One("sigmod".into())),
                    ..minimal()
                },
                "loss_type",
            ),
            (
                TrainConfig {
                    loss_weights: Some(vec![1.0, 2.0]),
                    ..minimal()
                },
                "loss_weights",
            ),
            (
                TrainConfig {
                    warmup_ratio: Some(1.5),
                    ..minimal()
                },
                "warmup_ratio",
            ),
            (
                TrainConfig {
                    lora_r: Some(8),
                    ..minimal()
                },
                "lora_r",
            ),
            (
                TrainConfig {
                    eval_steps: Some(5),
                    ..minimal()
                },
                "eval_steps",
            ),
            (
                TrainConfig {
                    simpo_gamma: Some(1.0),
                    ..minimal()
                },
                "simpo_gamma",
            ),
            (
                TrainConfig {
                    model: None,
                    ..minimal()
                },
                "model",
            ),
        ];
        for (config, key) in cases {
            let error = config.resolve(TrainerKind::Dpo).unwrap_err();
            assert_eq!(error.key, key, "{error}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file: TrainConfig =
            yaml_serde::from_str("learning_rate: 1.0e-3\nbeta: 0.5\nloss_type: [sigmoid, sft]\n")
                .unwrap();
        let flags = TrainConfig {
            beta: Some(0.2),
            ..TrainConfig::default()
        };
        let merged = file.overridden_by(&flags);
        assert_eq!(merged.beta, Some(0.2));
        assert_eq!(merged.learning_rate, Some(1e-3));
        assert_eq!(
            merged.loss_type,
            Some(OneOrMany::Many(vec!["sigmoid".into(), "sft".into()]))
        );
    }

    #[test]
    fn rpo_alpha_adds_the_chosen_nll() {
        let settings = TrainConfig {
            rpo_alpha: Some(0.5),
            ..minimal()
        }
        .resolve(TrainerKind::Dpo)
        .unwrap();
        let Method::Objective(Objective::Dpo(dpo)) = settings.method else {
            panic!("a DPO run")
        };
        assert_eq!(
            dpo.losses,
            vec![(PreferenceLoss::Sigmoid, 1.0), (PreferenceLoss::Sft, 0.5)]
        );
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Syntax { path: PathBuf, reason: String },
}

/// The `key → value` table of a `.yaml`/`.yml`, `.toml` or `.json` config file.
pub fn read_config_file(
    path: &std::path::Path,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let syntax = |reason: String| ConfigFileError::Syntax {
        path: path.to_path_buf(),
        reason,
    };
    // YAML and TOML are read as themselves first: they have NaN and infinities, which JSON
    // has not, and the conversion would quietly turn such a value into "unset".
    let value: serde_json::Value = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => {
            let native: yaml_serde::Value =
                yaml_serde::from_str(&text).map_err(|e| syntax(e.to_string()))?;
            refuse_non_finite(yaml_floats(&native, ""), path)?;
            serde_json::to_value(native).map_err(|e| syntax(e.to_string()))?
        }
        Some("toml") => {
            let native: toml::Table =
                toml::from_str(&text).map_err(|e| syntax(e.message().to_string()))?;
            let floats = native
                .iter()
                .flat_map(|(key, value)| toml_floats(value, key))
                .collect();
            refuse_non_finite(floats, path)?;
            serde_json::to_value(native).map_err(|e| syntax(e.to_string()))?
        }
        Some("json") => serde_json::from_str(&text).map_err(|e| syntax(e.to_string()))?,
        _ => {
            return Err(syntax(
                "a config file ends in .yaml, .yml, .toml or .json".to_string(),
            ));
        }
    };
    match value {
        serde_json::Value::Object(map) => Ok(map),
        serde_json::Value::Null => Ok(serde_json::Map::new()),
        _ => Err(syntax("the file is not a table of keys".to_string())),
    }
}

/// Every float of a YAML value with the key it sits under.
fn yaml_floats(value: &yaml_serde::Value, key: &str) -> Vec<(String, f64)> {
    match value {
        yaml_serde::Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map(|f| (key.to_string(), f))
            .into_iter()
            .collect(),
        yaml_serde::Value::Sequence(items) => {
            items.iter().flat_map(|v| yaml_floats(v, key)).collect()
        }
        yaml_serde::Value::Mapping(map) => map
            .iter()
            .flat_map(|(k, v)| yaml_floats(v, k.as_str().unwrap_or(key)))
            .collect(),
        yaml_serde::Value::Tagged(tagged) => yaml_floats(&tagged.value, key),
        _ => Vec::new(),
    }
}

/// Every float of a TOML value with the key it sits under.
fn toml_floats(value: &toml::Value, key: &str) -> Vec<(String, f64)> {
    match value {
        toml::Value::Float(f) => vec![(key.to_string(), *f)],
        toml::Value::Array(items) => items.iter().flat_map(|v| toml_floats(v, key)).collect(),
        toml::Value::Table(table) => table.iter().flat_map(|(k, v)| toml_floats(v, k)).collect(),
        _ => Vec::new(),
    }
}

/// Refuses the first value that is not a finite number, naming its key.
fn refuse_non_finite(
    floats: Vec<(String, f64)>,
    path: &std::path::Path,
) -> Result<(), ConfigFileError> {
    match floats.into_iter().find(|(_, f)| !f.is_finite()) {
        Some((key, value)) => Err(ConfigFileError::Syntax {
            path: path.to_path_buf(),
            reason: format!("`{key}` must be a finite number, not {value}"),
        }),
        None => Ok(()),
    }
}
