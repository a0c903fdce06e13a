//! From the keys to what a run uses: [`TrainConfig::resolve`] takes each key's checked value
//! ([`TrainConfig::values`]), checks the relations between keys, and builds [`RunSettings`].

use std::path::{Path, PathBuf};

use temper_data::columns::Columns;
use temper_data::dataset_info::DatasetEntry;
use temper_data::{Format, TokenizeOptions};
use temper_model::LoraConfig;
use temper_objectives::kto::{KtoConfig, KtoLoss};
use temper_objectives::preference::{DpoConfig, PreferenceLoss};
use temper_objectives::simpo::SimpoConfig;

use super::loss_type::{GrpoLoss, LossType};
use super::{ComputeBackend, ConfigError, KeyValues, TrainConfig, TrainerKind, bad};
use crate::grpo::GrpoSettings;
use crate::objective::Objective;
use crate::ppo::PpoSettings;
use crate::rollout::Sampling;
use crate::trainer::TrainingArgs;

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

/// How much of a training file a run takes (open-instruct's `dataset_mixer_list` amounts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Take {
    All,
    /// This fraction of its examples, rounded down; above 1, whole repeats first.
    Fraction(f64),
    /// This many examples; more than the file holds repeats it.
    Count(usize),
}

impl Take {
    /// An amount as open-instruct reads it: with a `.` a fraction, else a count.
    pub fn parse(text: &str) -> Result<Take, String> {
        let bad = || format!("`{text}` is not a fraction (with a `.`) or a count");
        if text.contains('.') {
            match text.parse::<f64>() {
                Ok(fraction) if fraction.is_finite() && fraction >= 0.0 => {
                    Ok(Take::Fraction(fraction))
                }
                _ => Err(bad()),
            }
        } else {
            text.parse().map(Take::Count).map_err(|_| bad())
        }
    }

    /// How many examples of a file of `available` this takes.
    pub fn count(self, available: usize) -> usize {
        match self {
            Take::All => available,
            Take::Fraction(fraction) => (fraction * available as f64) as usize,
            Take::Count(count) => count,
        }
    }
}

/// A training file, how much of it a run takes and how it is read.
#[derive(Clone, Debug, PartialEq)]
pub struct DataFile {
    pub path: PathBuf,
    pub take: Take,
    /// `None`: detected from the first record.
    pub format: Option<Format>,
    /// Record fields renamed before reading.
    pub columns: Columns,
}

impl DataFile {
    /// All of `path`, its format detected.
    pub fn whole(path: PathBuf) -> Self {
        DataFile {
            path,
            take: Take::All,
            format: None,
            columns: Columns::default(),
        }
    }

    /// This file read as `format` with `columns`.
    pub fn read_as(self, format: Option<Format>, columns: &Columns) -> Self {
        DataFile {
            format,
            columns: columns.clone(),
            ..self
        }
    }
}

/// A checked configuration, typed.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub kind: TrainerKind,
    /// The `temper` command's backend (the library runs on its caller's).
    pub backend: ComputeBackend,
    pub model: PathBuf,
    /// `data`'s files whole, `dataset_mixer_list`'s with their amounts, or `dataset`'s with
    /// their entries' formats and columns.
    pub data: Vec<DataFile>,
    /// `data_format`, for `data`, `dataset_mixer_list` and `eval_data`.
    pub data_format: Option<Format>,
    /// Record fields renamed before reading (`columns`), for the same files.
    pub columns: Columns,
    /// The verifiers of RLVR rows that name none (`verifier`).
    pub verifier: Option<Vec<String>>,
    pub output_dir: PathBuf,
    pub skip_invalid: bool,
    pub ref_model: Option<PathBuf>,
    /// The evaluation files (`eval_data`, or `eval_dataset` through `dataset_info.json`), each
    /// with how it is read; empty without evaluation.
    pub eval_data: Vec<DataFile>,
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

/// LLaMA-Factory's `dataset` names, each entry's files read with its format and columns.
fn dataset_files(dir: &Path, names: &[String]) -> Result<Vec<DataFile>, ConfigError> {
    let entries = temper_data::dataset_info::resolve(dir, names)
        .map_err(|e| bad("dataset", e.to_string()))?;
    Ok(entries
        .into_iter()
        .flat_map(DatasetEntry::into_files)
        .map(|(path, format, columns)| DataFile::whole(path).read_as(Some(format), &columns))
        .collect())
}

impl TrainConfig {
    /// Checks every value for `kind`, fills in TRL's defaults, and checks the relations
    /// between keys.
    pub fn resolve(&self, kind: TrainerKind) -> Result<RunSettings, ConfigError> {
        let values = self.values(kind)?;
        let args = TrainingArgs::from_values(&values, kind);
        let max_steps = args.max_steps;
        if max_steps.is_none() && values.num_train_epochs == 0.0 {
            return Err(bad("num_train_epochs", "is 0 and no max_steps is set"));
        }
        let evaluates = !values.eval_data.is_empty() || values.eval_dataset.is_some();
        if max_steps == Some(0) && !evaluates {
            return Err(bad(
                "max_steps",
                "0 evaluates the initial model only, which needs eval_data",
            ));
        }
        if self.eval_steps.is_some() && !evaluates {
            return Err(bad("eval_steps", "needs eval_data"));
        }
        if self.non_stop_penalty_value.is_some() && !values.non_stop_penalty {
            return Err(bad("non_stop_penalty_value", "needs non_stop_penalty"));
        }
        let data_format = values.data_format.format();
        let columns = match &values.columns {
            Some(pairs) => Columns::parse(pairs).map_err(|e| bad("columns", e))?,
            None => Columns::default(),
        };
        if self.dataset_dir.is_some() && values.dataset.is_none() && values.eval_dataset.is_none() {
            return Err(bad("dataset_dir", "needs dataset or eval_dataset"));
        }
        let eval_data = match &values.eval_dataset {
            Some(_) if !values.eval_data.is_empty() => {
                return Err(bad(
                    "eval_dataset",
                    "replaces eval_data: give one of the two",
                ));
            }
            Some(names) => dataset_files(&values.dataset_dir, names)?,
            None => values
                .eval_data
                .iter()
                .cloned()
                .map(|path| DataFile::whole(path).read_as(data_format, &columns))
                .collect(),
        };
        let data = match (
            &values.dataset,
            &values.dataset_mixer_list,
            values.data.is_empty(),
        ) {
            (Some(names), None, true) => {
                if (self.data_format.is_some() || self.columns.is_some())
                    && values.eval_data.is_empty()
                {
                    return Err(bad(
                        "dataset",
                        "dataset_info.json gives each dataset's format and columns: \
                         data_format and columns go with data or eval_data",
                    ));
                }
                dataset_files(&values.dataset_dir, names)?
            }
            (Some(_), _, _) => {
                return Err(bad(
                    "dataset",
                    "replaces data and dataset_mixer_list: give one of them",
                ));
            }
            (None, None, true) => return Err(bad("data", "required")),
            (None, None, false) => values
                .data
                .iter()
                .cloned()
                .map(|path| DataFile::whole(path).read_as(data_format, &columns))
                .collect(),
            (None, Some(_), false) => {
                return Err(bad(
                    "dataset_mixer_list",
                    "replaces data: give one of the two",
                ));
            }
            (None, Some(list), true) => list
                .chunks(2)
                .map(|pair| {
                    let take = Take::parse(&pair[1]).map_err(|e| bad("dataset_mixer_list", e))?;
                    Ok(DataFile {
                        take,
                        ..DataFile::whole(PathBuf::from(&pair[0])).read_as(data_format, &columns)
                    })
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        let peft = self.peft(&values)?;
        let method = match kind {
            TrainerKind::Grpo => Method::Grpo(grpo_settings(&values)),
            TrainerKind::Ppo => Method::Ppo(ppo_settings(&values)),
            TrainerKind::Sft => Method::Objective(Objective::Sft),
            TrainerKind::Dpo => Method::Objective(Objective::Dpo(dpo_config(&values)?)),
            TrainerKind::Orpo => Method::Objective(Objective::Orpo {
                beta: values.beta,
                nll: values.orpo_nll_span,
            }),
            TrainerKind::Simpo => Method::Objective(Objective::Simpo {
                config: SimpoConfig {
                    beta: values.beta,
                    gamma: values.simpo_gamma,
                    label_smoothing: values.label_smoothing,
                },
                cpo_alpha: values.cpo_alpha,
            }),
            TrainerKind::Reward => Method::Objective(Objective::Reward {
                center_rewards_coefficient: values.center_rewards_coefficient,
            }),
            TrainerKind::Kto => Method::Objective(Objective::Kto(kto_config(&values))),
        };
        let reference_cache_dir = values
            .reference_cache_dir
            .unwrap_or_else(|| values.output_dir.join("reference_logps"));
        Ok(RunSettings {
            kind,
            backend: values.backend,
            model: values.model,
            data,
            data_format,
            verifier: values.verifier.clone(),
            columns,
            output_dir: values.output_dir,
            skip_invalid: values.skip_invalid,
            ref_model: values.ref_model,
            eval_data,
            args,
            per_device_eval_batch_size: values.per_device_eval_batch_size,
            method,
            precompute_ref_log_probs: values.precompute_ref_log_probs,
            reference_cache_dir,
            tokenize: TokenizeOptions {
                loss_mask: values.loss_mask,
                max_length: Some(values.max_length),
                max_prompt_length: values.max_prompt_length,
                truncation: values.truncation_mode,
            },
            logging_steps: values.logging_steps,
            eval_steps: values.eval_steps,
            save_steps: values.save_steps,
            save_total_limit: values.save_total_limit,
            resume_from_checkpoint: values.resume_from_checkpoint,
            peft,
            rewards: RewardSettings {
                reward_model: values.reward_model,
                verification_reward: values.verification_reward,
                non_stop_penalty: values
                    .non_stop_penalty
                    .then_some(values.non_stop_penalty_value),
            },
            value_model: values.value_model,
            config: self.clone(),
        })
    }

    /// LoRA, when `use_peft`; the LoRA keys need it.
    fn peft(&self, values: &KeyValues) -> Result<Option<PeftSettings>, ConfigError> {
        if !values.use_peft {
            let given = [
                ("lora_r", self.lora_r.is_some()),
                ("lora_alpha", self.lora_alpha.is_some()),
                ("lora_dropout", self.lora_dropout.is_some()),
                ("lora_target_modules", self.lora_target_modules.is_some()),
                ("merge_lora", self.merge_lora.is_some()),
            ];
            return match given.into_iter().find(|(_, given)| *given) {
                Some((key, _)) => Err(bad(key, "needs use_peft")),
                None => Ok(None),
            };
        }
        let target_modules = if values.lora_target_modules == ["all-linear"] {
            temper_model::lora::TARGETS
                .iter()
                .map(|t| t.to_string())
                .collect()
        } else {
            values.lora_target_modules.clone()
        };
        Ok(Some(PeftSettings {
            lora: LoraConfig {
                rank: values.lora_r,
                alpha: values.lora_alpha,
                dropout: values.lora_dropout,
                use_rslora: false,
                target_modules,
            },
            merge: values.merge_lora,
        }))
    }
}

/// Sampling settings shared by GRPO and PPO.
fn sampling(values: &KeyValues, num_generations: usize) -> Sampling {
    Sampling {
        num_generations,
        max_completion_length: values.max_completion_length,
        temperature: values.temperature,
        top_p: Some(values.top_p).filter(|p| *p < 1.0),
        top_k: Some(values.top_k).filter(|k| *k > 0),
        repetition_penalty: values.repetition_penalty,
    }
}

/// GRPO: TRL's `GRPOConfig`.
fn grpo_settings(values: &KeyValues) -> GrpoSettings {
    let loss_type = match values.loss_type.as_slice() {
        [LossType::Grpo(loss)] => *loss,
        // The checks admit one GRPO loss type only; `dapo` is the default.
        _ => GrpoLoss::Dapo,
    };
    GrpoSettings {
        sampling: sampling(values, values.num_generations),
        beta: values.beta,
        epsilon_low: values.epsilon,
        epsilon_high: values.epsilon_high.unwrap_or(values.epsilon),
        loss_type,
        // With one update per round the ratio is 1 and this changes nothing; with more it
        // keeps the KL estimate unbiased.
        bias_corrected_kl: true,
        scale_rewards: values.scale_rewards,
        num_iterations: values.num_iterations,
    }
}

/// PPO: TRL's `PPOConfig` (`max_completion_length` is its `response_length`).
fn ppo_settings(values: &KeyValues) -> PpoSettings {
    PpoSettings {
        sampling: sampling(values, 1),
        num_ppo_epochs: values.num_ppo_epochs,
        num_mini_batches: values.num_mini_batches,
        kl_coef: values.kl_coef,
        kl_estimator: values.kl_estimator,
        cliprange: values.cliprange,
        vf_coef: values.vf_coef,
        cliprange_value: values.cliprange_value,
        gamma: values.gamma,
        lam: values.lam,
        whiten_rewards: values.whiten_rewards,
        missing_eos_penalty: values.missing_eos_penalty,
    }
}

/// KTO's loss (one `loss_type`, checked) and weights.
fn kto_config(values: &KeyValues) -> KtoConfig {
    let loss = match values.loss_type.as_slice() {
        [LossType::Kto(loss)] => *loss,
        _ => KtoLoss::Kto,
    };
    KtoConfig {
        beta: values.beta,
        desirable_weight: values.desirable_weight,
        undesirable_weight: values.undesirable_weight,
        loss,
    }
}

/// DPO's losses: `loss_type` (one or a list), `loss_weights` (one per loss), `rpo_alpha`
/// (adds the chosen NLL, as TRL does).
fn dpo_config(values: &KeyValues) -> Result<DpoConfig, ConfigError> {
    let losses: Vec<PreferenceLoss> = values
        .loss_type
        .iter()
        .filter_map(|loss| match loss {
            LossType::Preference(loss) => Some(*loss),
            LossType::Kto(_) | LossType::Grpo(_) => None,
        })
        .collect();
    let weights = match &values.loss_weights {
        None => vec![1.0; losses.len()],
        Some(weights) if weights.len() != losses.len() => {
            return Err(bad(
                "loss_weights",
                format!("{} weights for {} loss types", weights.len(), losses.len()),
            ));
        }
        Some(weights) => weights.clone(),
    };
    let mut losses: Vec<(PreferenceLoss, f64)> = losses.into_iter().zip(weights).collect();
    if let Some(alpha) = values.rpo_alpha {
        losses.push((PreferenceLoss::Sft, alpha));
    }
    Ok(DpoConfig {
        beta: values.beta,
        label_smoothing: values.label_smoothing,
        losses,
        ..DpoConfig::default()
    })
}
